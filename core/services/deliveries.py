"""The delivery engine: claim due outbox rows under a lease, decide, render, send, record (ENGINE.md).

Promises: nothing is lost (every row ends sent, skipped with a reason, fallen back or dead with the error);
nothing is sent twice by the engine (outcomes are recorded only while the lease is ours, and a row whose
lease is nearly over is given back unsent) — only a crash can repeat the sends whose outcomes were not yet
recorded, at most the batch in hand, and the platform's idempotency key removes those where it has one;
lateness is bounded by the waker; a late message says so.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Protocol

from core import notices, rules
from core.errors import ChatUnavailable, RateLimited, RecipientUnreachable
from core.models import (
    Announcement,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Outcome,
    Space,
    SpaceView,
    UserProfile,
)
from core.ports import Budget, ChatPlatform, Clock, Links, Outbox, UnitOfWorkFactory, WakeUps
from core.refs import MessageRef, UserRef, parse_chat, parse_message, parse_user

log = logging.getLogger(__name__)

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


SPACE_FRESHNESS = timedelta(seconds=1)  # how long a batch may use its copy of a Space before re-reading it
# A send waits at most this long for its budget inside a batch; a longer wait (a busy group's 20/min, a
# 429 hold) puts the row back, due when the budget allows, instead of holding a slot and the lease.
MAX_INLINE_WAIT = 5.0
# Outcomes are recorded at the latest this long after the send: far inside any lease.
FLUSH_AFTER = timedelta(seconds=5)


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
    worker_id: str
    lease: timedelta = timedelta(minutes=2)  # several times a send's worst case (timeouts are ~30 s)
    batch: int = 100
    concurrency: int = 16  # sends in flight per worker; the budget paces them
    mention_chunk: int = 20  # users per fallback mention message (within every platform's length limit)
    flush_every: int = (
        25  # outcomes recorded per transaction: fewer write locks, a slightly wider crash window
    )


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
        self._outcomes: list[tuple[Delivery, Outcome]] = []
        self._outcomes_since = self._clock.now()  # when the oldest queued outcome was queued
        self._stopping = False
        self._flush_pause = 0.5  # seconds before retrying a failed outcome write (doubling)

    def request_stop(self) -> None:
        """Finish the batch in hand, claim no more (shutdown: what is left stays pending for the next run)."""
        self._stopping = True

    async def deliver_due(self, max_batches: int | None = None) -> int:
        """Claim and settle batches until nothing is due. Returns the number of rows handled."""
        handled = 0
        batches = 0
        # outcomes a failed write left queued: recorded first, while their leases still hold
        await self._flush(final=True)
        while (max_batches is None or batches < max_batches) and not self._stopping:
            t0 = time.perf_counter()
            rows = await self._outbox.claim_due(
                now=self._clock.now(),
                worker=self.config.worker_id,
                lease=self.config.lease,
                batch=self.config.batch,
            )
            self._obs.claimed(len(rows), time.perf_counter() - t0)
            if not rows:
                break
            try:
                await self._handle_batch(rows)
            finally:
                await self._flush(final=True)
            handled += len(rows)
            batches += 1
        nxt = await self._outbox.next_due()
        if nxt is not None:
            self._wake.arm(nxt)
        return handled

    # ------------------------------------------------------------------ batch

    async def _handle_batch(self, rows: Sequence[Delivery]) -> None:
        rows = await self._drop_poison(rows)
        ctx = await self._load_context(rows)
        mentions: dict[tuple[str, str, str], list[Delivery]] = {}
        singles: list[Delivery] = []
        for row in rows:
            if row.kind is DeliveryKind.MENTION:
                mentions.setdefault((row.recipient, row.space_id, str(row.about)), []).append(row)
            else:
                singles.append(row)
        sem = asyncio.Semaphore(self.config.concurrency)

        async def guarded(coro_rows: Sequence[Delivery], mention: bool) -> None:
            async with sem:
                try:
                    if mention:
                        await self._handle_mentions(coro_rows, ctx)
                    else:
                        await self._handle_one(coro_rows[0], ctx)
                except Exception:  # a bug: the lease expires, the row is retried, and _drop_poison caps it
                    log.exception("delivery crashed", extra={"delivery_id": coro_rows[0].id})

        tasks = [guarded([r], False) for r in singles]
        for group in mentions.values():
            for i in range(0, len(group), self.config.mention_chunk):
                tasks.append(guarded(group[i : i + self.config.mention_chunk], True))
        await asyncio.gather(*tasks)

    async def _drop_poison(self, rows: Sequence[Delivery]) -> list[Delivery]:
        """Dead-letter rows that can never be handled: unparsable references, or rows whose handling
        crashed so often (claimed, lease expired, claimed again) that they would block the queue's head."""
        keep: list[Delivery] = []
        for row in rows:
            try:
                _recipient_chat(row)
                if row.kind is DeliveryKind.MENTION and row.subject:
                    parse_user(row.subject)
            except ValueError as e:
                await self._settle(row, DeliveryStatus.DEAD, error=f"malformed delivery: {e}")
                continue
            if row.attempts > rules.MAX_ATTEMPTS + 2:
                await self._settle(row, DeliveryStatus.DEAD, error=f"gave up after {row.attempts} attempts")
                continue
            keep.append(row)
        return keep

    async def _load_context(self, rows: Sequence[Delivery]) -> _Context:
        ctx = _Context()
        users: set[UserRef] = set()
        async with self._read() as uow:
            for sid in {r.space_id for r in rows}:
                space = await uow.spaces.get(sid)
                ctx.spaces[sid] = space
                ctx.loaded[sid] = self._clock.now()
                if space is not None:
                    users.add(space.host)
                    community = await uow.communities.get(space.chat)
                    ctx.chat_zones[sid] = community.tz if community else None
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

    async def _current(self, space_id: str, ctx: _Context) -> Space | None:
        """The Space as it is now, not as it was when the batch was claimed: budget waits can be long,
        and a reminder must not go out for a Space cancelled or moved meanwhile (re-read at most 1/s)."""
        now = self._clock.now()
        read_at = ctx.loaded.get(space_id)
        if read_at is None or now - read_at > SPACE_FRESHNESS:
            async with self._read() as uow:
                ctx.spaces[space_id] = await uow.spaces.get(space_id)
            ctx.loaded[space_id] = now
        return ctx.spaces.get(space_id)

    # ------------------------------------------------------------------ one row

    async def _handle_one(self, row: Delivery, ctx: _Context) -> None:
        user = parse_user(row.recipient) if row.kind.to_user else None
        profile = ctx.profiles.get(user) if user is not None else None
        chat_key = _recipient_chat(row)
        try:
            if user is not None and profile is not None and profile.dm_reachable is False:
                # don't knock on a closed door: on Discord failed DMs count toward the IP ban
                space = await self._current(row.space_id, ctx)
                if space is not None and isinstance(rules.decide(row, space, self._clock.now()), rules.Send):
                    await self._fall_back(row, space, "known unreachable")
                    return
            await self._spend(row, chat_key)
        except _LeaseTooShort:
            await self._give_back(row)
            return
        except _NotYet as e:
            await self._give_back(row, after=e.wait)
            return
        space = await self._current(row.space_id, ctx)  # decided after the budget wait, on today's Space
        verdict = rules.decide(row, space, self._clock.now())
        if isinstance(verdict, rules.Skip):
            await self._settle(row, DeliveryStatus.SKIPPED, error=verdict.reason)
            return
        assert space is not None
        # cards show the time in the chat's zone; DMs in the reader's (else the host's, as scheduled)
        view = SpaceView(
            space, ctx.counts.get(space.id, 0), self._links.space(space.id), zone=ctx.chat_zones.get(space.id)
        )
        host_name = self._name(space.host, ctx)
        try:
            if row.kind is DeliveryKind.CARD_POST:
                ref = await self._platform.post(
                    parse_chat(row.recipient),
                    notices.card(view, host_name, space.locale),
                    key=nonce_for(row.key),
                )
            elif row.kind is DeliveryKind.CARD_EDIT:
                await self._platform.edit(
                    parse_message(row.recipient), notices.card(view, host_name, space.locale)
                )
                ref = None
            else:
                assert user is not None
                locale = (profile.locale if profile else None) or space.locale
                reader = replace(view, zone=profile.tz if profile and profile.tz else view.zone)
                notice = notices.for_delivery(row.kind, reader, host_name, locale, verdict.late_by)
                ref = await self._platform.direct(user, notice, key=nonce_for(row.key))
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
                    await uow.deliveries.add(
                        [
                            Delivery(
                                key=f"space:{rendered.id}:edit:catch-up:{ref}",
                                kind=DeliveryKind.CARD_EDIT,
                                platform=ref.platform,
                                recipient=str(ref),
                                space_id=rendered.id,
                                revision=now_space.revision,
                                due_at=self._clock.now(),
                            )
                        ]
                    )
                    self._wake.arm(self._clock.now())
                await uow.commit()
        except Exception:
            # never retry a posted card over this: a second card is worse than one that misses an edit
            log.exception(
                "could not store the card's handle", extra={"space_id": rendered.id, "ref": str(ref)}
            )

    async def _handle_mentions(self, rows: Sequence[Delivery], ctx: _Context) -> None:
        chat = parse_chat(rows[0].recipient)
        try:
            await self._spend(rows[0], chat.id)
        except _LeaseTooShort:
            for row in rows:
                await self._give_back(row)
            return
        except _NotYet as e:
            for row in rows:
                await self._give_back(row, after=e.wait)
            return
        now = self._clock.now()
        space = await self._current(rows[0].space_id, ctx)
        live: list[Delivery] = []
        for row in rows:
            verdict = rules.decide(row, space, now)
            if isinstance(verdict, rules.Skip):
                await self._settle(row, DeliveryStatus.SKIPPED, error=verdict.reason)
            else:
                live.append(row)
        if not live or space is None:
            return
        about = live[0].about or DeliveryKind.LIVE_NOTICE
        view = SpaceView(space, 0, self._links.space(space.id), zone=ctx.chat_zones.get(space.id))
        late_by = max(0.0, (now - min(r.due_at for r in live)).total_seconds())
        notice = notices.for_delivery(about, view, self._name(space.host, ctx), space.locale, late_by)
        users = {u: self._name(u, ctx) for u in (parse_user(r.subject) for r in live if r.subject)}
        # the batch's nonce: the sorted keys, so the same batch retried is recognised as the same message
        key = nonce_for("|".join(sorted(r.key for r in live)))
        try:
            ref = await self._platform.mention(chat, users, notice, key=key)
        except RateLimited as e:
            for row in live:
                await self._rate_limited(row, e, chat.id)
            return
        except ChatUnavailable as e:
            for row in live:  # no DM and no chat: unreachable, counted and shown to the host
                await self._settle(
                    row, DeliveryStatus.DEAD, error=f"unreachable: no DM, chat unavailable: {e}"
                )
            return
        except Exception as e:
            for row in live:
                await self._retry(row, e)
            return
        for row in live:
            await self._settle(row, DeliveryStatus.SENT, sent_ref=str(ref), late_by=late_by)

    # ------------------------------------------------------------------ outcomes

    async def _spend(self, row: Delivery, chat: str | None) -> None:
        """Wait for the send budget, then make sure the lease still covers the send.

        A long wait is not slept here: the row goes back to pending, due when the budget allows (_NotYet),
        so a busy chat never holds a concurrency slot or a lease. A row whose lease is about to run out is
        given back unsent (_LeaseTooShort): past its lease another worker may own it, and sending then is
        how duplicates happen."""
        if self._outcomes and self._clock.now() - self._outcomes_since >= FLUSH_AFTER:
            await self._flush()
        margin = min(timedelta(seconds=30), self.config.lease / 4)
        left = (
            (row.lease_until - self._clock.now() - margin).total_seconds()
            if row.lease_until
            else MAX_INLINE_WAIT
        )
        if chat is None and row.kind.to_user:  # a DM lands in a private chat, whose per-chat limit counts too
            chat = parse_user(row.recipient).id
        waited = await self._budget.acquire(row.platform, chat, max_wait=max(0.0, min(MAX_INLINE_WAIT, left)))
        if waited < 0:
            raise _NotYet(-waited)
        if waited:
            self._obs.budget_waited(row.platform, waited)
        if row.lease_until is not None and self._clock.now() + margin >= row.lease_until:
            raise _LeaseTooShort()

    async def _fall_back(self, row: Delivery, space: Space, reason: str) -> None:
        """Next step of the recipient's chain: a mention in the chat they subscribed from (or the Space's)."""
        chat = row.subject or str(space.chat)
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
        self._obs.rate_limited(row.platform)
        await self._budget.penalise(row.platform, e.retry_after, chat=chat)
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
        """Queue the outcome; :meth:`_flush` records the batch's outcomes in one transaction.

        One write per batch instead of one per row: on SQLite every write takes the database lock, and four
        workers settling row by row spend their leases queueing for it."""
        assert row.id is not None
        if not self._outcomes:
            self._outcomes_since = self._clock.now()
        outcome = Outcome(
            row.id, status, sent_ref, error, late_by, due_at, refund, lease_until=row.lease_until
        )
        self._outcomes.append((row, outcome))
        if (
            len(self._outcomes) >= self.config.flush_every
            or self._clock.now() - self._outcomes_since >= FLUSH_AFTER
        ):
            await self._flush()

    async def _flush(self, *, final: bool = False) -> None:
        """Record the queued outcomes in one transaction. A failed write keeps them queued (they are sent:
        forgetting them would send them again after the lease); the batch's final flush retries, then
        gives up loudly — the rows stay claimed and, if the database never answers, are redone later."""
        attempts = 3 if final else 1
        for attempt in range(attempts):
            pending, self._outcomes = self._outcomes, []
            if not pending:
                return
            try:
                recorded = await self._outbox.settle_many(
                    [o for _, o in pending], worker=self.config.worker_id, now=self._clock.now()
                )
            except Exception:
                self._outcomes = pending + self._outcomes
                log.exception("recording outcomes failed", extra={"count": len(pending)})
                if attempt + 1 < attempts:
                    await asyncio.sleep(self._flush_pause * 2**attempt)
                    continue
                if final:
                    # kept: the next run records them first (deliver_due), before any new claim
                    raise
                return
            for (row, outcome), ok in zip(pending, recorded, strict=True):
                if not ok:
                    # another worker took the row over after our lease expired; it will settle it
                    self._obs.lease_lost()
                    log.warning("lease lost", extra={"delivery_id": row.id, "key": row.key})
                    continue
                self._obs.settled(row.platform, row.kind, outcome.status, outcome.late_by)
                if outcome.due_at is not None:
                    self._wake.arm(outcome.due_at)
            return

    @staticmethod
    def _name(user: UserRef, ctx: _Context) -> str:
        profile = ctx.profiles.get(user)
        return (profile.display_name if profile and profile.display_name else None) or user.id
