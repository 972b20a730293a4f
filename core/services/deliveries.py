"""The delivery engine: claim due outbox rows under a lease, decide, render, send, record.

Promises: nothing is lost (every row ends sent, skipped with a reason, fallen back or dead with the error);
nothing is sent twice by the engine (outcomes are recorded only under the claim they belong to, and a row
whose lease is nearly over is given back unsent) — only a crash can repeat a send: the ones in flight at
that instant, because each outcome is made durable right after the platform answers (group commit), and
the platform's idempotency key removes even those where it has one; lateness is bounded by the waker, and
urgent rows go ahead of bulk ones; a notice late because of an outage says so.

Claims are small (what this worker sends in about a second) and leases short and renewed (``renew_leases``,
called by the waker every lease / 3): a dead worker's rows come back within one lease, a T-0 reminder due
in the middle of a 2,000-person fan-out is claimed at the next claim, and a small fan-out spreads over every
idle worker instead of being swallowed by the first one.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from core import notices, rules
from core.errors import ChatUnavailable, RateLimited, RecipientUnreachable
from core.hostlink import host_link
from core.models import (
    Announcement,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    EventSpec,
    Outcome,
    Space,
    SpaceView,
    UserProfile,
)
from core.ports import (
    Budget,
    ChatPlatform,
    Clock,
    Links,
    NativeEvents,
    Outbox,
    UnitOfWork,
    UnitOfWorkFactory,
    WakeUps,
)
from core.refs import ChatRef, MessageRef, Platform, UserRef, parse_chat, parse_message, parse_user
from core.services.events import event_spec
from core.services.profiles import community_zone
from core.services.replies import send_reply

log = logging.getLogger(__name__)
T = TypeVar("T")

# Discord's nonce is at most 25 characters: the engine hands platforms a short digest of the row's key
NONCE_LENGTH = 25


def nonce_for(key: str) -> str:
    return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()[:NONCE_LENGTH]


class EngineObserver(Protocol):
    """Metrics hooks (Prometheus in production). Every method MUST be cheap and never raise."""

    def settled(self, platform: str, kind: str, outcome: str, late_by: float | None) -> None: ...

    def claimed(self, count: int, seconds: float) -> None: ...

    def lease_lost(self) -> None: ...

    def rate_limited(self, platform: str) -> None: ...

    def budget_waited(self, platform: str, seconds: float) -> None: ...


class NullObserver:
    def settled(self, platform: str, kind: str, outcome: str, late_by: float | None) -> None:
        pass

    def claimed(self, count: int, seconds: float) -> None:
        pass

    def lease_lost(self) -> None:
        pass

    def rate_limited(self, platform: str) -> None:
        pass

    def budget_waited(self, platform: str, seconds: float) -> None:
        pass


# why an event update was not sent: its create is still to go out, and will show the Space as it is then
EVENT_NOT_CREATED_YET = "folded into the event's create (not sent yet)"
SPACE_FRESHNESS = timedelta(seconds=1)  # how long a batch may use its copy of a Space before re-reading it
# A send waits at most this long for its budget inside a claim; a longer wait (a busy group's 20/min, a
# 429 hold) puts the row back, due when the budget allows, instead of holding a slot and the lease.
MAX_INLINE_WAIT = 5.0
# … and where limits are per workspace (EngineConfig.per_scope), at most this long: then the workspace's
# lane is skipped by the claims until its budget frees up (DeliveryEngine._lanes_to_skip)
SCOPED_INLINE_WAIT = 1.0
MAX_SKIPPED_LANES = 100  # lanes left out of one claim at most (the claim's WHERE stays short)
# Rows of one per-workspace lane a worker holds at most (about a second of Slack's pace, its budget's queue):
# beyond, the lane is skipped by the claims, so another workspace's rows due behind its fan-out are claimed
LANE_IN_HAND = 8
# How far back the engine looks to measure its own sending pace (rows finished per second).
PACE_WINDOW = 3.0


_EVENT_KINDS = (DeliveryKind.EVENT_CREATE, DeliveryKind.EVENT_UPDATE)


def _sending_platform(row: Delivery) -> Platform:
    """The platform a row's send goes through, and whose budget it spends: a card edit's is the card's
    (the MessageRef's), whatever Space it is about."""
    if row.kind is DeliveryKind.CARD_EDIT:
        return parse_message(row.recipient).platform
    return row.platform


def _sending_scope(row: Delivery) -> str | None:
    """The workspace or guild a row's send lands in (per-workspace budgets: core.ports.Budget), or None."""
    try:
        if row.kind.to_user:
            return parse_user(row.recipient).scope
        if row.kind is DeliveryKind.CARD_EDIT:
            return parse_message(row.recipient).scope
        return parse_chat(row.recipient).scope
    except ValueError:
        return None  # malformed: the send itself dead-letters it


def _recipient_chat(row: Delivery) -> str | None:
    """The chat a row posts in (the key of per-chat limits); None for a DM. Raises ValueError if malformed."""
    if row.kind.to_user:
        parse_user(row.recipient)
        return None
    if row.kind is DeliveryKind.CARD_EDIT:
        return parse_message(row.recipient).chat_id
    return parse_chat(row.recipient).id


class _LeaseTooShort(Exception):
    """Raised by _spend: give the row back rather than risk sending it twice."""


class _NotYet(Exception):
    """Raised by _spend: the budget allows this send only in ``wait`` seconds; the row comes back then."""

    def __init__(self, wait: float) -> None:
        super().__init__(wait)
        self.wait = wait


class SendTimedOut(Exception):
    """A platform call took longer than EngineConfig.send_timeout; whether it arrived is unknown."""


@dataclass(slots=True)
class _Context:
    """What a claimed batch needs to render, loaded once per batch."""

    spaces: dict[str, Space | None] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    loaded: dict[str, datetime] = field(default_factory=dict)  # space id → when it was read (core clock)
    chat_zones: dict[str, str | None] = field(default_factory=dict)  # space id → its chat's zone
    profiles: dict[UserRef, UserProfile] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """The engine's limits. In production they come from config.timing.Timings (one place for every time
    limit); the defaults here are the same."""

    worker_id: str
    lease: timedelta = timedelta(seconds=12)  # renewed every lease / 3 while the worker lives
    # a send starts only if the lease holds this much longer: its worst case plus the time to record it
    lease_margin: timedelta = timedelta(seconds=6)
    send_timeout: float = 5.0  # seconds one platform call may take, whatever the HTTP client does
    batch: int = 200  # the most rows one claim takes
    min_claim: int = 8  # the fewest (while the pace is unknown: start small, so idle workers share the work)
    claim_horizon: float = 1.0  # seconds of sending one worker holds, at the pace it achieves
    concurrency: int = 16  # rows handled at once per worker (sends in flight at most); the budget paces them
    mention_chunk: int = 20  # users per fallback mention message (within every platform's length limit)
    # platforms whose send limits are per workspace (core.ports.Budget: Slack's, per app per workspace):
    # their sends wait at most SCOPED_INLINE_WAIT inline, and a workspace whose budget is busy for longer is
    # left out of the claims meanwhile (its "lane"), so the rows of another workspace due behind its
    # fan-out are claimed and paced by their own budget, side by side
    per_scope: frozenset[Platform] = frozenset({Platform.SLACK})

    def __post_init__(self) -> None:
        if not timedelta(seconds=self.send_timeout) < self.lease_margin < self.lease:
            raise ValueError("EngineConfig: send_timeout < lease_margin < lease")
        if not 1 <= self.min_claim <= self.batch:
            raise ValueError("EngineConfig: 1 <= min_claim <= batch")


@dataclass(eq=False, slots=True)
class _Entry:
    """One outcome on its way to the database; ``done`` is set once it is recorded (or kept after a failed
    write)."""

    row: Delivery
    outcome: Outcome
    done: asyncio.Event = field(default_factory=asyncio.Event)


class _Recorder:
    """Group commit: every outcome is written as soon as the write before it finished, all the outcomes that
    arrived meanwhile in one transaction. A send's outcome is durable a few milliseconds after the platform
    answered, so a crash repeats at most the sends in flight; and there is one write per burst of answers,
    not one per row (SQLite has one writer).

    A failed write keeps its outcomes (they were sent: forgetting them would send them again after the
    lease) and sets ``failing``: the engine then sends nothing more until a write succeeds."""

    def __init__(
        self, outbox: Outbox, worker: str, clock: Clock, on_recorded: Callable[[_Entry, bool], None]
    ) -> None:
        self._outbox = outbox
        self._worker = worker
        self._clock = clock
        self._on_recorded = on_recorded
        self._queue: list[_Entry] = []
        self._writing: set[int] = set()
        self._task: asyncio.Task[None] | None = None
        self.failing = False
        self.writes = 0  # transactions written (tests, metrics)
        self.error: BaseException | None = None

    @property
    def queued(self) -> int:
        return len(self._queue)

    def queued_ids(self) -> set[int]:
        """Rows whose outcome is queued or being written (their claim must stay renewed)."""
        return {e.outcome.delivery_id for e in self._queue} | self._writing

    async def record(self, entries: Sequence[_Entry]) -> None:
        """Queue and wait until recorded (or kept: the database is failing)."""
        self._queue.extend(entries)
        if self.failing:
            return
        self._start()
        await asyncio.gather(*(e.done.wait() for e in entries))

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._write_all(), name="engine-recorder")

    async def _write_all(self) -> None:
        while self._queue and not self.failing:
            batch, self._queue = self._queue, []
            self._writing = {e.outcome.delivery_id for e in batch}
            try:
                recorded = await self._outbox.settle_many(
                    [e.outcome for e in batch], worker=self._worker, now=self._clock.now()
                )
            except Exception as e:
                log.exception("recording outcomes failed", extra={"count": len(batch)})
                self._queue = batch + self._queue
                self._writing = set()
                self.failing, self.error = True, e
                for entry in batch:  # kept, not recorded: the sends wait no longer, and no new one starts
                    entry.done.set()
                return
            self.writes += 1
            self._writing = set()
            self.failing, self.error = False, None
            for entry, ok in zip(batch, recorded, strict=True):
                self._on_recorded(entry, ok)
                entry.done.set()

    async def flush(self, *, attempts: int = 3, pause: float = 0.5) -> None:
        """Wait until everything queued is recorded; retry a failing database ``attempts`` times (pauses
        doubling), then raise — the outcomes stay queued and the next run records them first."""
        for attempt in range(attempts):
            if self._task is not None:
                await asyncio.shield(self._task)
            if not self._queue:
                return
            if attempt:
                await asyncio.sleep(pause * 2 ** (attempt - 1))
            self.failing = False
            self._start()
        if self._task is not None:
            await asyncio.shield(self._task)
        if self._queue:
            assert self.error is not None
            raise self.error


class _Pace:
    """This worker's sending pace: rows finished per second over the last few seconds of activity (since
    the run began, if that is more recent). What sizes claims: about a second's worth of rows."""

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self._monotonic = monotonic
        self._done: deque[float] = deque()
        self._since = monotonic()

    def begin(self) -> None:
        """A run starts: its pace is measured from now (an idle gap before it is not slowness, and what was
        sent before it, e.g. a card, says nothing of the fan-out now due)."""
        self._since = self._monotonic()
        self._done.clear()

    def finished(self, n: int = 1) -> None:
        now = self._monotonic()
        self._done.extend([now] * n)
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._done and self._done[0] < now - PACE_WINDOW:
            self._done.popleft()

    def per_second(self) -> float:
        now = self._monotonic()
        self._trim(now)
        # at least a second: the first sends of a run go out on the budget's burst, faster than its pace
        span = min(PACE_WINDOW, now - self._since)
        return len(self._done) / max(span, 1.0)


class DeliveryEngine:
    def __init__(
        self,
        outbox: Outbox,
        uow: UnitOfWorkFactory,
        platform: ChatPlatform,
        clock: Clock,
        budget: Budget,
        links: Links,
        wake: WakeUps,
        config: EngineConfig,
        *,
        observer: EngineObserver | None = None,
        rng: random.Random | None = None,
        read_uow: UnitOfWorkFactory | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._outbox = outbox
        self._uow = uow
        self._read = read_uow or uow  # the batch's context and re-reads: no write lock needed on SQLite
        self._platform = platform  # the router: dispatches on each ref's platform
        self._clock = clock
        self._budget = budget
        self._links = links
        self._wake = wake
        self.config = config
        self._obs: EngineObserver = observer or NullObserver()
        self._rng = rng or random.Random()
        self._stopping = False
        self._flush_pause = 0.5  # seconds before retrying a failed outcome write (doubling)
        self._recorder: _Recorder | None = None
        self._pace = _Pace(monotonic)
        self._returned: set[int | None] = set()  # rows of the sends in hand given back unsent (_give_back)
        self._busy: dict[str, datetime] = {}  # per-workspace lane → when its budget frees up (engine clock)
        self._lane_rows: Counter[str] = Counter()  # per-workspace lane → its rows in hand
        # the claims in hand: token → lease end (renewed), and the rows of each not yet durably settled
        self._leases: dict[str, datetime] = {}
        self._held: dict[str, set[int]] = {}
        self._lost: set[int] = set()  # rows a renewal found taken over: never sent by us
        # since when the delivery service has been up without a gap (heartbeats); None: unknown
        self.up_since: datetime | None = None
        self._holds: dict[str, int] = {}  # platform → platform-wide 429s seen (sends waiting re-check)
        self.sends_in_flight = 0  # platform calls started and not yet answered
        self.max_sends_in_flight = 0

    @property
    def recorder(self) -> _Recorder:
        # made on first use: it needs the running loop (asyncio.Event), which build() may not have yet
        if self._recorder is None:
            self._recorder = _Recorder(self._outbox, self.config.worker_id, self._clock, self._recorded)
        return self._recorder

    def request_stop(self) -> None:
        """Finish the rows in hand, claim no more (shutdown: what is left stays pending for the next run)."""
        self._stopping = True

    async def recover(self) -> int:
        """At start, before the first claim: take back what an earlier process with this worker id still
        held when it died (a supervisor restarting it under the same name), at once rather than one lease
        later. Returns the number of rows released."""
        if self._held:
            raise RuntimeError("recover() is for start-up: this engine holds claims")
        released = await self._outbox.release(worker=self.config.worker_id, now=self._clock.now())
        if released:
            log.warning("released the claims of an earlier process", extra={"count": released})
        return released

    def claim_size(self) -> int:
        """How many rows to hold: about ``claim_horizon`` seconds of sending at this worker's pace."""
        c = self.config
        return max(c.min_claim, min(c.batch, math.ceil(self._pace.per_second() * c.claim_horizon)))

    async def deliver_due(self, max_batches: int | None = None) -> int:
        """Claim and send until nothing is due. Claims are topped up while sending (never more in hand
        than about ``claim_horizon`` seconds of work). ``max_batches``: claim at most that many times.
        Returns the number of rows claimed."""
        recorder = self.recorder
        # outcomes a failed write left queued: recorded first, while their claims still hold
        await recorder.flush(attempts=3, pause=self._flush_pause)
        self._pace.begin()
        self._lane_rows.clear()  # nothing is in hand between runs (one run at a time)
        handled = 0
        claims = 0
        running: set[asyncio.Task[None]] = set()
        in_hand = [0]
        sem = asyncio.Semaphore(self.config.concurrency)
        try:
            while not self._stopping and not recorder.failing:
                if max_batches is not None and claims >= max_batches:
                    break
                want = self.claim_size()
                skip = self._lanes_to_skip()
                # rows of lanes left out of this claim do not fill the hand for the others: a workspace's
                # fan-out paced by its own budget never keeps another workspace's rows from being claimed
                held = in_hand[0] - sum(self._lane_rows.get(lane, 0) for lane in skip)
                if running and held > want // 2:
                    # enough in hand: top up when half of it is sent, not before (urgent rows claimed
                    # meanwhile by any worker would otherwise queue behind ours)
                    await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                    continue
                t0 = time.perf_counter()
                rows = await self._outbox.claim_due(
                    now=self._clock.now(),
                    worker=self.config.worker_id,
                    lease=self.config.lease,
                    batch=want - held,
                    skip=skip,
                )
                self._obs.claimed(len(rows), time.perf_counter() - t0)
                claims += 1
                if not rows:
                    if not running:
                        break
                    # nothing more is due now (outside the lanes left out); what is in hand may still add
                    # rows (a fallback's mention, a row given back) or free a lane: claim once more after
                    await asyncio.wait(
                        running, return_when=asyncio.FIRST_COMPLETED if skip else asyncio.ALL_COMPLETED
                    )
                    continue
                handled += len(rows)
                in_hand[0] += len(rows)
                for row in rows:
                    lane = self._lane(row)
                    if lane is not None:
                        self._lane_rows[lane] += 1
                self._hold(rows)
                try:
                    tasks = await self._start(rows, sem, in_hand)
                except BaseException:
                    self._abandon(rows)  # not renewed any more: back to any worker after their lease
                    raise
                for task in tasks:
                    running.add(task)
                    task.add_done_callback(running.discard)
        finally:
            if running:
                await asyncio.gather(*running, return_exceptions=True)
            await recorder.flush(attempts=3, pause=self._flush_pause)
        nxt = await self._outbox.next_due()
        if nxt is not None:
            busy = [self._busy[lane] for lane in self._lanes_to_skip() if lane in self._busy]
            if busy and nxt <= self._clock.now():
                # what is due now may be rows of busy lanes only: come back when the first of them frees
                # up, not at once and again and again (a full hand is empty again by now: nothing runs)
                nxt = max(nxt, min(busy))
            self._wake.arm(nxt)
        return handled

    def _lane(self, row: Delivery) -> str | None:
        """The row's per-workspace lane (``slack@T1``: the head of its recipient), None where the platform's
        limits are not per workspace."""
        platform = _sending_platform(row)
        if platform not in self.config.per_scope:
            return None
        scope = _sending_scope(row)
        return f"{platform}@{scope}" if scope is not None else None

    def _out_of_hand(self, rows: Sequence[Delivery]) -> None:
        for row in rows:
            lane = self._lane(row)
            if lane is not None:
                self._lane_rows[lane] -= 1
                if self._lane_rows[lane] <= 0:
                    del self._lane_rows[lane]

    def _lanes_to_skip(self) -> list[str]:
        """The per-workspace lanes not to claim from now (core.ports.Outbox.claim_due ``skip``): those
        holding LANE_IN_HAND rows here already (their budget has work queued), and those whose budget said
        it is busy for longer than a send waits inline."""
        horizon = self._clock.now() + timedelta(seconds=SCOPED_INLINE_WAIT)
        for lane in [lane for lane, until in self._busy.items() if until <= horizon]:
            del self._busy[lane]
        full = [lane for lane, n in self._lane_rows.items() if n >= LANE_IN_HAND]
        busy = sorted(self._busy, key=self._busy.__getitem__)
        return list(dict.fromkeys([*full, *busy]))[:MAX_SKIPPED_LANES]

    async def renew_leases(self) -> int:
        """Extend the lease of every claim in hand (the waker calls this every lease / 3). A row that was
        taken over meanwhile (our lease ran out: a stall) is marked lost and will not be sent by us.
        Returns the number of rows renewed."""
        tokens = [t for t, ids in self._held.items() if ids]
        if not tokens:
            return 0
        now = self._clock.now()
        renewed = await self._outbox.renew(
            tokens, worker=self.config.worker_id, now=now, lease=self.config.lease
        )
        count = 0
        for token, ids in renewed.items():
            held = self._held.get(token)
            if held is None:
                continue
            lost = held - ids
            if lost:
                self._lost |= lost
                log.warning("claims taken over by another worker", extra={"count": len(lost)})
            self._leases[token] = now + self.config.lease
            count += len(ids)
        return count

    # ------------------------------------------------------------------ claims in hand

    def _hold(self, rows: Sequence[Delivery]) -> None:
        for row in rows:
            if row.claim is None or row.id is None:
                continue
            self._held.setdefault(row.claim, set()).add(row.id)
            if row.lease_until is not None:
                self._leases[row.claim] = max(self._leases.get(row.claim, row.lease_until), row.lease_until)

    def _release(self, row: Delivery) -> None:
        """The row's outcome is durable (or it was lost): no more renewals for it."""
        if row.id is None:
            return
        self._lost.discard(row.id)
        token = row.claim
        if token is None:
            return
        ids = self._held.get(token)
        if ids is not None:
            ids.discard(row.id)
            if not ids:
                del self._held[token]
                self._leases.pop(token, None)

    def _abandon(self, rows: Sequence[Delivery]) -> None:
        """Stop renewing rows whose handling failed without an outcome: their lease runs out and they are
        claimed again (a bug's row is retried, then dead-lettered by _drop_poison — never held forever)."""
        queued = self.recorder.queued_ids()
        for row in rows:
            if row.id not in queued:
                self._release(row)

    def _recorded(self, entry: _Entry, ok: bool) -> None:
        row, outcome = entry.row, entry.outcome
        self._release(row)
        if not ok:
            # another worker took the row over after our lease ran out; it will settle it
            self._obs.lease_lost()
            log.warning("lease lost", extra={"delivery_id": row.id, "key": row.key})
            return
        self._obs.settled(row.platform, row.kind, outcome.status, outcome.late_by)
        if outcome.due_at is not None:
            self._wake.arm(outcome.due_at)

    # ------------------------------------------------------------------ batch

    async def _start(
        self, rows: Sequence[Delivery], sem: asyncio.Semaphore, in_hand: list[int]
    ) -> list[asyncio.Task[None]]:
        """Start handling one claim's rows, most urgent first (they come in claim order)."""
        rows = await self._drop_poison(rows, in_hand)
        if not rows:
            return []
        ctx = await self._load_context(rows)
        units: list[list[Delivery]] = []
        mentions: dict[tuple[str, str | None, str], list[Delivery]] = {}
        for row in rows:
            if row.kind is DeliveryKind.MENTION:
                # a problem report's mention says that problem: its payload is part of what groups them
                about = f"{row.about}:{row.payload}" if row.payload else str(row.about)
                group = mentions.setdefault((row.recipient, row.space_id, about), [])
                if not group:
                    units.append(group)  # in the claim order of its first row
                group.append(row)
            else:
                units.append([row])
        loop = asyncio.get_running_loop()
        tasks: list[asyncio.Task[None]] = []
        for unit in units:
            if unit[0].kind is DeliveryKind.MENTION:
                for i in range(0, len(unit), self.config.mention_chunk):
                    chunk = unit[i : i + self.config.mention_chunk]
                    tasks.append(loop.create_task(self._guarded(chunk, True, ctx, sem, in_hand)))
            else:
                tasks.append(loop.create_task(self._guarded(unit, False, ctx, sem, in_hand)))
        return tasks

    async def _guarded(
        self,
        rows: Sequence[Delivery],
        mention: bool,
        ctx: _Context,
        sem: asyncio.Semaphore,
        in_hand: list[int],
    ) -> None:
        try:
            async with sem:
                if mention:
                    await self._handle_mentions(rows, ctx)
                else:
                    await self._handle_one(rows[0], ctx)
        except Exception:  # a bug: the lease expires, the row is retried, and _drop_poison caps it
            log.exception("delivery crashed", extra={"delivery_id": rows[0].id})
            self._abandon(rows)
        finally:
            in_hand[0] -= len(rows)
            self._out_of_hand(rows)
            # the pace is what was sent: rows given back for later are not (counting them would size the
            # next claims by the give-backs, and the more rows come back, the bigger the claims)
            returned = sum(1 for r in rows if r.id in self._returned)
            self._returned.difference_update(r.id for r in rows)
            self._pace.finished(len(rows) - returned)

    async def _drop_poison(self, rows: Sequence[Delivery], in_hand: list[int]) -> list[Delivery]:
        """Dead-letter rows that can never be handled: unparsable references, or rows whose handling
        crashed so often (claimed, lease expired, claimed again) that they would block the queue's head."""
        keep: list[Delivery] = []
        dead: list[tuple[Delivery, str]] = []
        for row in rows:
            try:
                _recipient_chat(row)
                if row.kind is DeliveryKind.MENTION and row.subject:
                    parse_user(row.subject)
            except ValueError as e:
                dead.append((row, f"malformed delivery: {e}"))
                continue
            if row.attempts > rules.MAX_ATTEMPTS + 2:
                dead.append((row, f"gave up after {row.attempts} attempts"))
                continue
            keep.append(row)
        if dead:
            await asyncio.gather(*(self._settle(r, DeliveryStatus.DEAD, error=why) for r, why in dead))
            in_hand[0] -= len(dead)
            self._out_of_hand([r for r, _ in dead])
        return keep

    async def _load_context(self, rows: Sequence[Delivery]) -> _Context:
        ctx = _Context()
        users: set[UserRef] = set()
        async with self._read() as uow:
            for sid in {r.space_id for r in rows if r.space_id is not None}:
                space = await uow.spaces.get(sid)
                ctx.spaces[sid] = space
                ctx.loaded[sid] = self._clock.now()
                if space is not None:
                    users.add(space.host)
                    ctx.chat_zones[sid] = await community_zone(uow, space.chat)  # a guild-wide zone counts
                    if any(
                        r.space_id == sid and r.kind in (DeliveryKind.CARD_POST, DeliveryKind.CARD_EDIT)
                        for r in rows
                    ):
                        ctx.counts[sid] = await uow.subscriptions.count(sid)
            for r in rows:
                if r.kind.to_user:
                    users.add(parse_user(r.recipient))
                elif r.kind is DeliveryKind.MENTION and r.subject:
                    users.add(parse_user(r.subject))
            ctx.profiles = await uow.users.get_many(sorted(users, key=str))
        return ctx

    async def _current(self, space_id: str | None, ctx: _Context) -> Space | None:
        """The Space as it is now, not as it was when the batch was claimed: budget waits can be long,
        and a reminder must not go out for a Space cancelled or moved meanwhile (re-read at most 1/s)."""
        if space_id is None:
            return None
        now = self._clock.now()
        read_at = ctx.loaded.get(space_id)
        if read_at is None or now - read_at > SPACE_FRESHNESS:
            async with self._read() as uow:
                ctx.spaces[space_id] = await uow.spaces.get(space_id)
            ctx.loaded[space_id] = now
        return ctx.spaces.get(space_id)

    # ------------------------------------------------------------------ one row

    def _decide(self, row: Delivery, space: Space | None) -> rules.Send | rules.Skip:
        return rules.decide(row, space, self._clock.now(), up_since=self.up_since)

    async def _handle_one(self, row: Delivery, ctx: _Context) -> None:
        if row.kind is DeliveryKind.REPLY:
            await self._handle_reply(row)
            return
        if row.kind in _EVENT_KINDS:
            await self._handle_event(row, ctx)
            return
        user = parse_user(row.recipient) if row.kind.to_user else None
        profile = ctx.profiles.get(user) if user is not None else None
        chat_key = _recipient_chat(row)
        if user is not None and profile is not None and profile.dm_reachable is False:
            # don't knock on a closed door: on Discord failed DMs count toward the IP ban
            space = await self._current(row.space_id, ctx)
            if space is not None and isinstance(self._decide(row, space), rules.Send):
                await self._fall_back(row, space, rules.KNOWN_UNREACHABLE)
                return
        if not await self._budgeted([row], chat_key):
            return
        space = await self._current(row.space_id, ctx)  # decided after the budget wait, on today's Space
        verdict = self._decide(row, space)
        if isinstance(verdict, rules.Skip):
            await self._settle(row, DeliveryStatus.SKIPPED, error=verdict.reason)
            return
        assert space is not None
        # cards show the time in the chat's zone; DMs in the reader's (else the host's, as scheduled)
        view = SpaceView(
            space, ctx.counts.get(space.id, 0), self._links.space(space.id), zone=ctx.chat_zones.get(space.id)
        )
        host_name = self._name(space.host, ctx)
        ref: MessageRef | None = None
        try:
            if row.kind is DeliveryKind.CARD_POST:
                card = notices.card(view, host_name, space.locale)
                ref = await self._send(
                    self._platform.post(parse_chat(row.recipient), card, key=nonce_for(row.key))
                )
            elif row.kind is DeliveryKind.CARD_EDIT:
                card = notices.card(view, host_name, space.locale)
                await self._send(self._platform.edit(parse_message(row.recipient), card))
            else:
                assert user is not None
                locale = (profile.locale if profile else None) or space.locale
                reader = replace(view, zone=profile.tz if profile and profile.tz else view.zone)
                # the host's private page goes in a DM to the host only (a mention fallback never has it)
                private = (
                    host_link(view.link, space.host_key) if user == space.host and space.host_key else None
                )
                notice = notices.for_delivery(
                    row.kind,
                    reader,
                    host_name,
                    locale,
                    verdict.shown_late_by,
                    host_link=private,
                    payload=row.payload,
                )
                ref = await self._send(self._platform.direct(user, notice, key=nonce_for(row.key)))
        except RecipientUnreachable as e:
            assert user is not None
            await self._mark_unreachable(user)
            await self._fall_back(row, space, f"unreachable: {e}")
            return
        except RateLimited as e:
            await self._rate_limited(row, e, chat_key)
            return
        except ChatUnavailable as e:
            await self._settle(row, DeliveryStatus.DEAD, error=f"chat unavailable: {e}")
            return
        except Exception as e:  # transient or unknown: retry with backoff, then dead-letter with the reason
            await self._retry(row, e)
            return
        # sent: from here on nothing may lead to sending it again
        if row.kind is DeliveryKind.CARD_POST and ref is not None:
            await self._remember_card(space, ref)
        sent_ref = str(ref) if ref is not None else row.recipient
        await self._settle(row, DeliveryStatus.SENT, sent_ref=sent_ref, late_by=verdict.late_by)

    async def _handle_reply(self, row: Delivery) -> None:
        """An answer to someone who wrote to us (core.services.replies): its content is in the row, there
        is no Space to decide on. Same budget, lease guard and outcomes as everything else: a flood limit
        or an outage delays it, never drops it."""
        if not await self._budgeted([row], _recipient_chat(row)):
            return
        try:
            ref = await self._send(send_reply(self._platform, row, key=nonce_for(row.key)))
        except ValueError as e:
            await self._settle(row, DeliveryStatus.DEAD, error=f"malformed reply: {e}")
            return
        except RateLimited as e:
            await self._rate_limited(row, e, _recipient_chat(row))
            return
        except ChatUnavailable as e:
            await self._settle(row, DeliveryStatus.DEAD, error=f"chat unavailable: {e}")
            return
        except Exception as e:
            await self._retry(row, e)
            return
        late_by = max(0.0, (self._clock.now() - row.due_at).total_seconds())
        await self._settle(row, DeliveryStatus.SENT, sent_ref=str(ref), late_by=late_by)

    async def _handle_event(self, row: Delivery, ctx: _Context) -> None:
        """Create or update the platform's own event in one announcement chat, from the Space as it is now.

        An update for an event whose create has not been sent yet (pending, retrying, in flight) is folded
        into it: the create renders the Space as it is when it goes out, and one in flight while the Space
        changed queues a catch-up update once its id is stored (:meth:`_remember_event`). If the create never
        succeeds, there is no event to update either."""
        chat = parse_chat(row.recipient)
        events = self._platform if isinstance(self._platform, NativeEvents) else None
        if events is None:
            await self._settle(row, DeliveryStatus.DEAD, error="this platform has no native events")
            return
        async with self._read() as uow:
            records = await uow.events.list(row.space_id) if row.space_id is not None else []
        event_id = next((e.event_id for e in records if e.chat == chat), None)
        if row.kind is DeliveryKind.EVENT_CREATE and event_id is not None:
            # created and stored by an earlier claim of this row that died before recording it: creating
            # again would make a second event (platforms have no idempotency key for events)
            await self._settle(row, DeliveryStatus.SENT, sent_ref=event_id, error="already created")
            return
        if row.kind is DeliveryKind.EVENT_UPDATE and event_id is None:
            await self._settle(row, DeliveryStatus.SKIPPED, error=EVENT_NOT_CREATED_YET)
            return
        if not await self._budgeted([row], chat.id):
            return
        space = await self._current(row.space_id, ctx)
        verdict = self._decide(row, space)
        if isinstance(verdict, rules.Skip):
            await self._settle(row, DeliveryStatus.SKIPPED, error=verdict.reason)
            return
        assert space is not None
        spec = event_spec(space, self._links.space(space.id))
        try:
            if event_id is None:
                event_id = await self._send(events.create_event(chat, spec, key=nonce_for(row.key)))
            else:
                replaced = await self._send(events.update_event(chat, event_id, spec))
                if replaced is not None and replaced != event_id:
                    event_id = replaced
                    await self._store_event_id(space, chat, event_id)
        except RateLimited as e:
            await self._rate_limited(row, e, chat.id)
            return
        except ChatUnavailable as e:
            await self._settle(row, DeliveryStatus.DEAD, error=f"chat unavailable: {e}")
            return
        except Exception as e:
            await self._retry(row, e)
            return
        if row.kind is DeliveryKind.EVENT_CREATE:
            await self._remember_event(space, chat, event_id, spec)
        await self._settle(row, DeliveryStatus.SENT, sent_ref=event_id, late_by=verdict.late_by)

    async def _store_event_id(self, space: Space, chat: ChatRef, event_id: str) -> None:
        """An update replaced the platform's object (core.ports.NativeEvents.update_event): later updates
        must reach the new one. Not storing it is logged, never retried (the object exists already)."""
        try:
            async with self._uow() as uow:
                await uow.events.set_id(space.id, chat, event_id)
                await uow.commit()
        except Exception:
            log.exception(
                "could not store the event's new id",
                extra={"space_id": space.id, "chat": str(chat), "event_id": event_id},
            )

    async def _remember_event(self, rendered: Space, chat: ChatRef, event_id: str, spec: EventSpec) -> None:
        """Store the event's id (what updates and inbound changes use). If the Space changed while the create
        was on its way, the updates that change queued were folded into this create, which could not show
        it: queue one now."""
        try:
            async with self._uow() as uow:
                await uow.events.set_id(rendered.id, chat, event_id)
                now_space = await uow.spaces.get(rendered.id)
                if now_space is not None and event_spec(now_space, self._links.space(now_space.id)) != spec:
                    await self._catch_up(
                        uow, now_space, DeliveryKind.EVENT_UPDATE, chat.platform, str(chat), tag="event"
                    )
                await uow.commit()
        except Exception:
            # never retry a created event over this: a second event is worse than one that misses updates
            log.exception(
                "could not store the event's id",
                extra={"space_id": rendered.id, "chat": str(chat), "event_id": event_id},
            )

    async def _send(self, call: Awaitable[T]) -> T:
        """One platform call, bounded by ``send_timeout`` whatever the HTTP client does (a call still going
        when the lease is taken over would be a duplicate). A timed-out send may have arrived: it is
        retried like any transient error."""
        self.sends_in_flight += 1
        self.max_sends_in_flight = max(self.max_sends_in_flight, self.sends_in_flight)
        try:
            async with asyncio.timeout(self.config.send_timeout):
                return await call
        except TimeoutError as e:
            raise SendTimedOut(f"no answer within {self.config.send_timeout:g} s") from e
        finally:
            self.sends_in_flight -= 1

    async def _catch_up(
        self,
        uow: UnitOfWork,
        space: Space,
        kind: DeliveryKind,
        platform: Platform,
        recipient: str,
        *,
        tag: str,
    ) -> None:
        """Queue one more change for a handle just stored (a card, an event): the Space changed while it was
        on its way, and the change's own rows could not know it yet."""
        now = self._clock.now()
        row = Delivery(
            key=f"space:{space.id}:{tag}:catch-up:{recipient}",
            kind=kind,
            platform=platform,
            recipient=recipient,
            space_id=space.id,
            revision=space.revision,
            due_at=now,
        )
        await uow.deliveries.add([row])
        self._wake.arm(now)

    async def _remember_card(self, rendered: Space, ref: MessageRef) -> None:
        """Store the card's handle (what every later edit targets). If the Space changed while the card was
        on its way (started, moved), the edit that change queued could not know this card: queue one now."""
        try:
            async with self._uow() as uow:
                await uow.announcements.add(Announcement(rendered.id, ref))
                now_space = await uow.spaces.get(rendered.id)
                if now_space is not None and (
                    now_space.status,
                    now_space.revision,
                    now_space.title,
                    now_space.description,
                ) != (rendered.status, rendered.revision, rendered.title, rendered.description):
                    await self._catch_up(
                        uow, now_space, DeliveryKind.CARD_EDIT, ref.platform, str(ref), tag="edit"
                    )
                await uow.commit()
        except Exception:
            # never retry a posted card over this: a second card is worse than one that misses an edit
            log.exception(
                "could not store the card's handle", extra={"space_id": rendered.id, "ref": str(ref)}
            )

    async def _handle_mentions(self, rows: Sequence[Delivery], ctx: _Context) -> None:
        chat = parse_chat(rows[0].recipient)
        if not await self._budgeted(rows, chat.id):
            return
        space = await self._current(rows[0].space_id, ctx)
        live: list[tuple[Delivery, rules.Send]] = []
        skipped: list[tuple[Delivery, str]] = []
        for row in rows:
            verdict = self._decide(row, space)
            if isinstance(verdict, rules.Skip):
                skipped.append((row, verdict.reason))
            else:
                live.append((row, verdict))
        if skipped:
            await asyncio.gather(
                *(self._settle(row, DeliveryStatus.SKIPPED, error=why) for row, why in skipped)
            )
        if not live or space is None:
            return
        about = live[0][0].about or DeliveryKind.LIVE_NOTICE
        view = SpaceView(space, 0, self._links.space(space.id), zone=ctx.chat_zones.get(space.id))
        # one message for all: marked if any of them is late because of an outage, by the most late of those
        shown = max((v.shown_late_by for _, v in live if v.shown_late_by is not None), default=None)
        notice = notices.for_delivery(
            about, view, self._name(space.host, ctx), space.locale, shown, payload=live[0][0].payload
        )
        users = {u: self._name(u, ctx) for u in (parse_user(r.subject) for r, _ in live if r.subject)}
        # the batch's nonce: the sorted keys, so the same batch retried is recognised as the same message
        key = nonce_for("|".join(sorted(r.key for r, _ in live)))
        try:
            ref = await self._send(self._platform.mention(chat, users, notice, key=key))
        except RateLimited as e:
            await asyncio.gather(*(self._rate_limited(row, e, chat.id) for row, _ in live))
            return
        except ChatUnavailable as e:
            # no DM and no chat: unreachable, counted and shown to the host
            error = f"unreachable: no DM, chat unavailable: {e}"
            await asyncio.gather(*(self._settle(row, DeliveryStatus.DEAD, error=error) for row, _ in live))
            return
        except Exception as e:
            await asyncio.gather(*(self._retry(row, e) for row, _ in live))
            return
        await asyncio.gather(
            *(self._settle(row, DeliveryStatus.SENT, sent_ref=str(ref), late_by=v.late_by) for row, v in live)
        )

    # ------------------------------------------------------------------ outcomes

    async def _budgeted(self, rows: Sequence[Delivery], chat: str | None) -> bool:
        """Spend the budget of one send carrying ``rows``; False if they were given back instead (the lease
        too short to send safely, or the budget allows the send only later: then they come back due then)."""
        try:
            await self._spend(rows[0], chat, also=rows[1:])
        except _LeaseTooShort:
            await asyncio.gather(*(self._give_back(row) for row in rows))
            return False
        except _NotYet as e:
            await asyncio.gather(*(self._give_back(row, after=e.wait) for row in rows))
            return False
        return True

    async def _spend(self, row: Delivery, chat: str | None, *, also: Sequence[Delivery] = ()) -> None:
        """Wait for the send budget, then make sure the claim still covers the send.

        A long wait is not slept here: the row goes back to pending, due when the budget allows (_NotYet),
        so a busy chat never holds a concurrency slot or a lease. A row whose lease is about to run out (its
        renewals failed), or was taken over, is given back unsent (_LeaseTooShort): past its lease another
        worker may own it, and sending then is how duplicates happen. While outcomes cannot be recorded,
        nothing more is sent either (each unrecorded send is one a crash would repeat)."""
        self._check_claim(row, *also)
        if chat is None and row.kind.to_user:  # a DM lands in a private chat, whose per-chat limit counts too
            chat = parse_user(row.recipient).id
        waited = 0.0
        platform = _sending_platform(row)
        scope = _sending_scope(row)
        lane = self._lane(row)
        inline = MAX_INLINE_WAIT if lane is None else SCOPED_INLINE_WAIT
        while True:
            holds = self._holds.get(platform, 0)
            wait = await self._budget.acquire(platform, chat, max_wait=inline - waited, scope=scope)
            if wait < 0:
                if lane is not None and row.kind.to_user:
                    # a DM waits on its workspace's budget (its private chat's own limit is rarely what
                    # holds it: one message each); a channel's busy limit must not close the whole lane
                    until = self._clock.now() + timedelta(seconds=-wait)
                    self._busy[lane] = max(self._busy.get(lane, until), until)
                raise _NotYet(-wait)
            waited += wait
            # a 429 for the whole platform arrived while this send waited for its turn: the turn it was
            # given predates the hold, so it asks again (the budget now makes it wait the hold out)
            if self._holds.get(platform, 0) == holds or waited >= inline:
                break
        if waited:
            self._obs.budget_waited(platform, waited)
        self._check_claim(row, *also)

    def _check_claim(self, *rows: Delivery) -> None:
        if self.recorder.failing:
            raise _LeaseTooShort()
        deadline = self._clock.now() + self.config.lease_margin
        for row in rows:
            if row.id in self._lost:
                raise _LeaseTooShort()
            lease = self._leases.get(row.claim) if row.claim is not None else row.lease_until
            if lease is not None and deadline >= lease:
                raise _LeaseTooShort()

    async def _fall_back(self, row: Delivery, space: Space, reason: str) -> None:
        """Next step of the recipient's chain: a mention in the group they subscribed from (the host: the
        Space's chat). Never anywhere else: someone who subscribed privately has no group to be named in
        (naming them in one they may not even be in would publish their subscription) — unreachable,
        recorded, and shown to the host as a count."""
        if row.subject is not None:
            chat = row.subject
        elif row.kind in (DeliveryKind.HOST_T30, DeliveryKind.HOST_T0, DeliveryKind.HOST_PROBLEM):
            chat = str(space.chat)
        else:
            await self._settle(row, DeliveryStatus.DEAD, error=f"{reason}; no group to mention them in")
            return
        mention = Delivery(
            key=f"{row.key}:mention",
            kind=DeliveryKind.MENTION,
            platform=row.platform,
            recipient=chat,
            space_id=row.space_id,
            revision=row.revision,
            due_at=row.due_at,  # claimable at once, and its lateness (the "delayed" mark) stays true
            subject=row.recipient,
            about=row.kind,
            payload=row.payload,  # a problem report's mention says the same problem
        )
        async with self._uow() as uow:
            await uow.deliveries.add([mention])
            await uow.commit()
        await self._settle(row, DeliveryStatus.FALLBACK, error=reason)
        self._wake.arm(mention.due_at)

    async def _mark_unreachable(self, user: UserRef) -> None:
        async with self._uow() as uow:
            await uow.users.set_reachable(user, False)
            await uow.commit()

    async def _rate_limited(self, row: Delivery, e: RateLimited, chat: str | None) -> None:
        """A 429. For a chat's message, hold back that chat (one busy group must not stall every DM of
        the platform); for a DM, the platform-wide limit was hit: hold back the whole platform."""
        platform = _sending_platform(row)
        self._obs.rate_limited(platform)
        await self._budget.penalise(platform, e.retry_after, chat=chat, scope=_sending_scope(row))
        if chat is None:
            self._holds[platform] = self._holds.get(platform, 0) + 1
        due = self._clock.now() + timedelta(seconds=e.retry_after)
        await self._settle(row, DeliveryStatus.PENDING, error=str(e), due_at=due, refund=True)

    async def _give_back(self, row: Delivery, *, after: float | None = None) -> None:
        """Back to pending unsent, the attempt refunded: now (lease nearly over) or when the budget allows."""
        if after is None:
            log.warning("lease too short to send; released", extra={"delivery_id": row.id, "key": row.key})
            reason, due = "released: lease nearly expired before the send", self._clock.now()
        else:
            reason, due = (
                f"paced: the send budget allows it in {after:.1f}s",
                self._clock.now() + timedelta(seconds=after),
            )
        if row.id is not None:
            self._returned.add(row.id)
        await self._settle(row, DeliveryStatus.PENDING, error=reason, due_at=due, refund=True)

    async def _retry(self, row: Delivery, e: Exception) -> None:
        reason = f"{type(e).__name__}: {e}"[:500]
        if row.attempts >= rules.MAX_ATTEMPTS:
            log.error("dead letter", extra={"delivery_id": row.id, "key": row.key, "error": reason})
            await self._settle(row, DeliveryStatus.DEAD, error=reason)
            return
        due = self._clock.now() + timedelta(seconds=rules.backoff(row.attempts, self._rng))
        log.warning("retrying", extra={"delivery_id": row.id, "key": row.key, "error": reason})
        await self._settle(row, DeliveryStatus.PENDING, error=reason, due_at=due)

    async def _settle(
        self,
        row: Delivery,
        status: DeliveryStatus,
        *,
        sent_ref: str | None = None,
        error: str | None = None,
        late_by: float | None = None,
        due_at: datetime | None = None,
        refund: bool = False,
    ) -> None:
        """Record the outcome under this row's claim, and return once it is durable (group commit: the
        outcomes of every send answered meanwhile go in the same transaction)."""
        assert row.id is not None
        outcome = Outcome(row.id, status, sent_ref, error, late_by, due_at, refund, claim=row.claim)
        await self.recorder.record([_Entry(row, outcome)])

    @staticmethod
    def _name(user: UserRef, ctx: _Context) -> str:
        profile = ctx.profiles.get(user)
        return (profile.display_name if profile and profile.display_name else None) or user.id
