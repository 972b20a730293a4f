"""The delivery engine: claim due outbox rows under a lease, decide, render, send, record (ENGINE.md).

Promises: nothing is lost (every row ends sent, skipped with a reason, fallen back or dead with the error),
nothing is sent twice by the engine (outcomes are recorded only while the lease is ours), lateness is
bounded by the waker, and a late message says so.
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
from core.refs import UserRef, parse_chat, parse_message, parse_user

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


class _LeaseTooShort(Exception):
    """Raised by _spend: give the row back rather than risk sending it twice."""


@dataclass(slots=True)
class _Context:
    """What a claimed batch needs to render, loaded once per batch."""

    spaces: dict[str, Space | None] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    chat_zones: dict[str, str | None] = field(default_factory=dict)  # space id → its chat's zone
    profiles: dict[UserRef, UserProfile] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EngineConfig:
    worker_id: str
    lease: timedelta = timedelta(minutes=2)  # several times a send's worst case (timeouts are ~30 s)
    batch: int = 100
    concurrency: int = 16  # sends in flight per worker; the budget paces them
    mention_chunk: int = 20  # users per fallback mention message (within every platform's length limit)
    flush_every: int = 25  # outcomes recorded per transaction (a crash can repeat at most these sends)


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
    ) -> None:
        self._outbox = outbox
        self._uow = uow
        self._platform = platform  # the router: dispatches on each ref's platform
        self._clock = clock
        self._budget = budget
        self._links = links
        self._wake = wake
        self.config = config
        self._obs: EngineObserver = observer or NullObserver()
        self._rng = rng or random.Random()
        self._outcomes: list[tuple[Delivery, Outcome]] = []

    async def deliver_due(self, max_batches: int | None = None) -> int:
        """Claim and settle batches until nothing is due. Returns the number of rows handled."""
        handled = 0
        batches = 0
        while max_batches is None or batches < max_batches:
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
                await self._flush()
            handled += len(rows)
            batches += 1
        nxt = await self._outbox.next_due()
        if nxt is not None:
            self._wake.arm(nxt)
        return handled

    # ------------------------------------------------------------------ batch

    async def _handle_batch(self, rows: Sequence[Delivery]) -> None:
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
                except Exception:  # never let one row take the batch down; its lease will expire and retry
                    log.exception("delivery crashed", extra={"delivery_id": coro_rows[0].id})

        tasks = [guarded([r], False) for r in singles]
        for group in mentions.values():
            for i in range(0, len(group), self.config.mention_chunk):
                tasks.append(guarded(group[i : i + self.config.mention_chunk], True))
        await asyncio.gather(*tasks)

    async def _load_context(self, rows: Sequence[Delivery]) -> _Context:
        ctx = _Context()
        users: set[UserRef] = set()
        async with self._uow() as uow:
            for sid in {r.space_id for r in rows}:
                space = await uow.spaces.get(sid)
                ctx.spaces[sid] = space
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

    # ------------------------------------------------------------------ one row

    async def _handle_one(self, row: Delivery, ctx: _Context) -> None:
        now = self._clock.now()
        space = ctx.spaces.get(row.space_id)
        verdict = rules.decide(row, space, now)
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
                chat = parse_chat(row.recipient)
                notice = notices.card(view, host_name, space.locale)
                await self._spend(row, chat.id)
                ref = await self._platform.post(chat, notice, key=nonce_for(row.key))
                async with self._uow() as uow:  # the handle is what every later edit targets
                    await uow.announcements.add(Announcement(space.id, ref))
                    await uow.commit()
                await self._settle(row, DeliveryStatus.SENT, sent_ref=str(ref), late_by=verdict.late_by)
            elif row.kind is DeliveryKind.CARD_EDIT:
                msg = parse_message(row.recipient)
                await self._spend(row, msg.chat_id)
                await self._platform.edit(msg, notices.card(view, host_name, space.locale))
                await self._settle(row, DeliveryStatus.SENT, sent_ref=row.recipient, late_by=verdict.late_by)
            else:
                user = parse_user(row.recipient)
                profile = ctx.profiles.get(user)
                if profile is not None and profile.dm_reachable is False:
                    # don't knock on a closed door: on Discord failed DMs count toward the IP ban
                    await self._fall_back(row, space, "known unreachable")
                    return
                locale = (profile.locale if profile else None) or space.locale
                reader = replace(view, zone=profile.tz if profile and profile.tz else view.zone)
                notice = notices.for_delivery(row.kind, reader, host_name, locale, verdict.late_by)
                await self._spend(row, None)
                ref = await self._platform.direct(user, notice, key=nonce_for(row.key))
                await self._settle(row, DeliveryStatus.SENT, sent_ref=str(ref), late_by=verdict.late_by)
        except _LeaseTooShort:
            await self._give_back(row)
        except RecipientUnreachable as e:
            await self._mark_unreachable(parse_user(row.recipient))
            await self._fall_back(row, space, f"unreachable: {e}")
        except RateLimited as e:
            await self._rate_limited(row, e)
        except ChatUnavailable as e:
            await self._settle(row, DeliveryStatus.DEAD, error=f"chat unavailable: {e}")
        except Exception as e:  # transient or unknown: retry with backoff, then dead-letter with the reason
            await self._retry(row, e)

    async def _handle_mentions(self, rows: Sequence[Delivery], ctx: _Context) -> None:
        now = self._clock.now()
        space = ctx.spaces.get(rows[0].space_id)
        live: list[Delivery] = []
        for row in rows:
            verdict = rules.decide(row, space, now)
            if isinstance(verdict, rules.Skip):
                await self._settle(row, DeliveryStatus.SKIPPED, error=verdict.reason)
            else:
                live.append(row)
        if not live or space is None:
            return
        chat = parse_chat(live[0].recipient)
        about = live[0].about or DeliveryKind.LIVE_NOTICE
        view = SpaceView(space, 0, self._links.space(space.id), zone=ctx.chat_zones.get(space.id))
        late_by = max(0.0, (now - min(r.due_at for r in live)).total_seconds())
        notice = notices.for_delivery(about, view, self._name(space.host, ctx), space.locale, late_by)
        users = {u: self._name(u, ctx) for u in (parse_user(r.subject) for r in live if r.subject)}
        # the batch's nonce: the sorted keys, so the same batch retried is recognised as the same message
        key = nonce_for("|".join(sorted(r.key for r in live)))
        try:
            await self._spend(live[0], chat.id)
            ref = await self._platform.mention(chat, users, notice, key=key)
        except _LeaseTooShort:
            for row in live:
                await self._give_back(row)
            return
        except RateLimited as e:
            for row in live:
                await self._rate_limited(row, e)
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

        A row whose lease is about to run out (a long budget wait, a slow database) is put back instead of
        sent: past its lease another worker may already own it, and sending then is how duplicates happen.
        """
        waited = await self._budget.acquire(row.platform, chat)
        if waited:
            self._obs.budget_waited(row.platform, waited)
        margin = min(timedelta(seconds=30), self.config.lease / 4)
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
            due_at=self._clock.now(),
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

    async def _rate_limited(self, row: Delivery, e: RateLimited) -> None:
        self._obs.rate_limited(row.platform)
        self._budget.penalise(row.platform, e.retry_after)
        due = self._clock.now() + timedelta(seconds=e.retry_after)
        await self._settle(row, DeliveryStatus.PENDING, error=str(e), due_at=due, refund=True)

    async def _give_back(self, row: Delivery) -> None:
        log.warning("lease too short to send; released", extra={"delivery_id": row.id, "key": row.key})
        await self._settle(
            row,
            DeliveryStatus.PENDING,
            error="released: lease nearly expired before the send",
            due_at=self._clock.now(),
            refund=True,
        )

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
        self._outcomes.append((row, Outcome(row.id, status, sent_ref, error, late_by, due_at, refund)))
        if len(self._outcomes) >= self.config.flush_every:
            await self._flush()

    async def _flush(self) -> None:
        pending, self._outcomes = self._outcomes, []
        if not pending:
            return
        recorded = await self._outbox.settle_many(
            [o for _, o in pending], worker=self.config.worker_id, now=self._clock.now()
        )
        for (row, outcome), ok in zip(pending, recorded, strict=True):
            if not ok:
                # another worker took the row over after our lease expired; it will settle it
                self._obs.lease_lost()
                log.warning("lease lost", extra={"delivery_id": row.id, "key": row.key})
                continue
            self._obs.settled(row.platform, row.kind, outcome.status, outcome.late_by)
            if outcome.due_at is not None:
                self._wake.arm(outcome.due_at)

    @staticmethod
    def _name(user: UserRef, ctx: _Context) -> str:
        profile = ctx.profiles.get(user)
        return (profile.display_name if profile and profile.display_name else None) or user.id
