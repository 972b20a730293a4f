"""The Space lifecycle: schedule, reschedule, cancel, start, end, and subscriptions.

Every change and the notifications it causes are written in ONE transaction (the outbox pattern): a crash
can never leave a cancelled Space whose subscribers were not told, or a reminder for a Space that moved.
After the commit, the wake-up is armed; the delivery engine does the sending.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from core import confirmations, rules
from core.commands import (
    CancelSpace,
    EndSpace,
    RenameSpace,
    RescheduleSpace,
    ScheduleSpace,
    StartSpace,
    Subscribe,
    Unsubscribe,
)
from core.errors import NotFound, UserError, WrongState
from core.ids import new_host_key, new_space_id
from core.models import (
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    NativeEvent,
    Space,
    SpaceStatus,
    Subscription,
    UserProfile,
)
from core.notices import Notice, reply
from core.ports import Clock, UnitOfWork, UnitOfWorkFactory, WakeUps
from core.refs import ChatRef, Platform, UserRef
from core.services.profiles import community_zone
from core.texts import TextKey, pick_locale
from core.timeparse import check_zone, format_local, parse_when, split_when_and_title

log = logging.getLogger(__name__)

# Subscriber counts on cards are refreshed at most once per window per card: a popular Space must not turn
# every subscription into a card edit (Telegram allows a group 20 messages a minute).
CARD_COUNT_WINDOW = timedelta(seconds=30)
# user kinds withdrawn when the Space stops being "scheduled"
_HOST_REMINDERS = (DeliveryKind.HOST_T30, DeliveryKind.HOST_T0)
_ALL_PENDING_NOTICES = (*_HOST_REMINDERS, DeliveryKind.RESCHEDULED_NOTICE, DeliveryKind.LIVE_NOTICE)


@dataclass(frozen=True, slots=True)
class SubscribeResult:
    space: Space
    subscribed: bool  # the state after the call
    changed: bool  # False when it already was in that state
    subscribers: int


@dataclass(frozen=True, slots=True)
class SchedulePreview:
    """What :meth:`SpaceService.schedule` would do with a command, found without doing it."""

    starts_at: datetime  # aware UTC
    tz: str  # the zone the time was read in (IANA)
    title: str  # cleaned (or split from the time, when the command gave time and title in one string)
    description: str  # cleaned
    voice: ChatRef | None
    locale: str  # of the texts below
    when_text: str  # the start in ``tz``, as every confirmation states it
    text: str  # the preview to show ("About to schedule: …"); contains ``when_text``

    def notice(self, *, ephemeral: bool = True) -> Notice:
        """The preview as an answer to the one who asked (private by default), carrying the start as data."""
        return reply(
            self.text,
            locale=self.locale,
            when=self.starts_at,
            when_text=self.when_text,
            status=SpaceStatus.SCHEDULED,
            ephemeral=ephemeral,
        )


@dataclass(frozen=True, slots=True)
class _Draft:
    """A schedule command read and checked: everything but the host quota (which needs the host's lock)."""

    title: str
    description: str
    starts_at: datetime
    tz: str
    locale: str
    audio_source: str | None  # as stored (str(AudioSource))


@dataclass(frozen=True, slots=True)
class Reach:
    """How the live notice reached the subscribers — what the host is told when the Space ends."""

    messaged: int  # DMed
    mentioned: int  # DMs closed: mentioned in the chat instead
    unreachable: int  # neither worked (reason recorded on the row)
    pending: int  # still on their way


@dataclass(frozen=True, slots=True)
class StartResult:
    space: Space
    notified: int  # live notices queued
    already_live: bool = False  # a double tap or a retried request: nothing was done again


class SpaceService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        wake: WakeUps,
        *,
        default_tz: str = "UTC",
        new_id: Callable[[], str] = new_space_id,
        new_key: Callable[[], str] = new_host_key,
        read_uow: UnitOfWorkFactory | None = None,
        native_events: Collection[Platform] = frozenset(),
    ) -> None:
        self._uow = uow
        # the platforms whose adapter implements core.ports.NativeEvents (the composition root knows):
        # a Space announced there is mirrored as the platform's own event, kept in step by the outbox
        self._native_events = frozenset(native_events)
        # queries that never write: on SQLite they must not queue for the one write lock
        self._read = read_uow or uow
        self._clock = clock
        self._wake = wake
        self._default_tz = default_tz
        self._new_id = new_id
        self._new_key = new_key

    @property
    def wake(self) -> WakeUps:
        """The wake-up the services sharing this one's outbox arm (core.services.links)."""
        return self._wake

    def mirror_native_events(self, platforms: Collection[Platform]) -> None:
        """Which platforms implement core.ports.NativeEvents: set by the composition root once the adapters
        exist (they are built with this service), before anything is scheduled."""
        self._native_events = frozenset(platforms)

    # ------------------------------------------------------------------ queries

    async def get(self, space_id: str) -> Space:
        async with self._read() as uow:
            return await self._load(uow, space_id)

    async def upcoming(self, chat: ChatRef, limit: int = 20) -> list[Space]:
        async with self._read() as uow:
            return await uow.spaces.upcoming_in_chat(chat, limit)

    async def subscriber_count(self, space_id: str) -> int:
        async with self._read() as uow:
            return await uow.subscriptions.count(space_id)

    async def reach(self, space_id: str) -> Reach:
        async with self._read() as uow:
            tally = await uow.deliveries.tally(space_id)

        def count(kind: DeliveryKind, about: DeliveryKind | None, *statuses: DeliveryStatus) -> int:
            return sum(tally.get((kind, about, s), 0) for s in statuses)

        live, mention = (DeliveryKind.LIVE_NOTICE, None), (DeliveryKind.MENTION, DeliveryKind.LIVE_NOTICE)
        waiting = (DeliveryStatus.PENDING, DeliveryStatus.CLAIMED)
        return Reach(
            messaged=count(*live, DeliveryStatus.SENT),
            mentioned=count(*mention, DeliveryStatus.SENT),
            unreachable=count(*live, DeliveryStatus.DEAD) + count(*mention, DeliveryStatus.DEAD),
            pending=count(*live, *waiting) + count(*mention, *waiting),
        )

    async def zone_for(self, user: UserRef, chat: ChatRef | None, override: str | None = None) -> str:
        async with self._read() as uow:
            return await self._zone(uow, user, chat, override)

    async def manageable(
        self, user: UserRef, where: ChatRef, *, is_moderator: bool, limit: int = 25, prefix: str = ""
    ) -> list[Space]:
        """Open Spaces ``user`` may manage, soonest first: their own, and when they moderate ``where``
        (the adapter decides that, as for :class:`core.rules.Actor`) every open Space scheduled in its
        scope (its guild/workspace; the chat itself where there is none). ``prefix`` is what the member has
        typed so far: it keeps Spaces whose title contains it or whose id starts with it. Reads only: cheap
        enough for autocomplete at every keystroke."""
        async with self._read() as uow:
            found = await uow.spaces.open_by_host(user, limit=limit, text=prefix)
            if is_moderator:
                found += await uow.spaces.open_in_scope(where, limit=limit, text=prefix)
        unique = {s.id: s for s in found}  # a moderator's own Spaces in the scope come twice
        return sorted(unique.values(), key=lambda s: (s.starts_at, s.id))[: max(limit, 0)]

    async def following(self, user: UserRef, limit: int = 25) -> list[Space]:
        """Open Spaces ``user`` is subscribed to, soonest first (reads only)."""
        async with self._read() as uow:
            return await uow.spaces.open_followed_by(user, limit=limit)

    async def preview(self, cmd: ScheduleSpace) -> SchedulePreview:
        """What :meth:`schedule` would do with ``cmd``, writing nothing: the same reading of the time and
        title, and the same checks (title, description, voice channel, time, the host's quota), raising
        the same UserError (with its ``field``) where schedule would. ``request_id`` is ignored. A form
        calls it to show the parsed time before the member sends; schedule() checks everything again."""
        now = self._clock.now()
        async with self._read() as uow:
            draft = await self._draft(uow, cmd, now)
            rules.check_host_quota(await uow.spaces.count_open_by_host(cmd.actor.user))
        when = format_local(draft.starts_at, draft.tz, draft.locale)
        return SchedulePreview(
            starts_at=draft.starts_at,
            tz=draft.tz,
            title=draft.title,
            description=draft.description,
            voice=cmd.voice,
            locale=draft.locale,
            when_text=when,
            text=confirmations.preview(draft.title, when, draft.locale),
        )

    # ------------------------------------------------------------------ commands

    async def schedule(self, cmd: ScheduleSpace) -> Space:
        now = self._clock.now()
        async with self._uow() as uow:
            if cmd.request_id is not None:
                space_id = self._new_id()
                earlier = await uow.inbound.remember(cmd.chat.platform, cmd.request_id, space_id)
                if earlier is not None:  # a platform retry of a command we already executed
                    return await self._load(uow, earlier)
            else:
                space_id = self._new_id()
            draft = await self._draft(uow, cmd, now)
            # one schedule per host at a time, until commit: 15 concurrent /space commands on PostgreSQL
            # must not all count 9 open Spaces and all insert (check-then-insert needs the lock)
            await uow.users.lock(cmd.actor.user)
            rules.check_host_quota(await uow.spaces.count_open_by_host(cmd.actor.user))
            space = Space(
                id=space_id,
                title=draft.title,
                description=draft.description,
                host=cmd.actor.user,
                chat=cmd.chat,
                starts_at=draft.starts_at,
                tz=draft.tz,
                locale=draft.locale,
                created_at=now,
                audio_source=draft.audio_source,
                voice=cmd.voice,
                host_key=self._new_key(),
            )
            await uow.spaces.add(space)
            await self._remember_user(uow, cmd.actor)
            rows = self._host_reminders(space, now)
            # a card (and a native event where the platform has them) in every chat linked with this one
            rows += await self.announcements(uow, space, await uow.links.chats(cmd.chat), now)
            await uow.deliveries.add(rows)
            await uow.commit()
        log.info("scheduled", extra={"space_id": space.id, "starts_at": space.starts_at.isoformat()})
        self._arm(rows)
        return space

    async def reschedule(self, cmd: RescheduleSpace) -> Space:
        now = self._clock.now()
        async with self._uow() as uow:
            if await self._seen(uow, cmd.actor.user, cmd.request_id):
                return await self._load(uow, cmd.space_id)
            space = await self._load(uow, cmd.space_id, for_update=True)
            rules.check_may_manage(cmd.actor, space, "reschedule")
            rules.check_transition(space, "reschedule")
            tz = check_zone(cmd.tz) if cmd.tz else space.tz
            locale = pick_locale(cmd.actor.locale)
            parsed = parse_when(cmd.when_text, now=now, tz=tz, locale=locale)
            shown = format_local(parsed.at, parsed.tz, locale)
            rules.check_start_time(parsed.at, now, shown)
            if parsed.at == space.starts_at:
                raise UserError("space.same_time", field="when", when=shown)
            space.starts_at, space.tz = parsed.at, parsed.tz
            space.revision += 1
            await uow.spaces.save(space)
            await uow.deliveries.withdraw(
                space.id, (*_HOST_REMINDERS, DeliveryKind.RESCHEDULED_NOTICE), "rescheduled"
            )
            rows = self._host_reminders(space, now)
            rows += await self._card_edits(uow, space, now, tag=f"r{space.revision}")
            rows += await self._event_updates(uow, space, now, tag=f"r{space.revision}")
            await uow.deliveries.add(rows)
            await uow.deliveries.fan_out(
                space.id,
                space.revision,
                DeliveryKind.RESCHEDULED_NOTICE,
                now,
                f"space:{space.id}:r{space.revision}:{DeliveryKind.RESCHEDULED_NOTICE}",
            )
            await uow.commit()
        self._wake.arm(now)
        self._arm(rows)
        return space

    async def rename(self, cmd: RenameSpace) -> Space:
        """Give a scheduled or live Space a new title (host or moderator); its cards show it. Idempotent on
        the request id; the same title again changes nothing."""
        now = self._clock.now()
        title = rules.clean_title(cmd.title)
        rows: list[Delivery] = []
        async with self._uow() as uow:
            if await self._seen(uow, cmd.actor.user, cmd.request_id):
                return await self._load(uow, cmd.space_id)
            space = await self._load(uow, cmd.space_id, for_update=True)
            rules.check_may_manage(cmd.actor, space, "edit")
            rules.check_transition(space, "edit")
            if title != space.title:
                # a fresh edit key per rename: A -> B -> A must edit the card three times
                tag = f"title-{self._new_id()}"
                space.title = title
                await uow.spaces.save(space)
                rows = await self._card_edits(uow, space, now, tag=tag)
                rows += await self._event_updates(uow, space, now, tag=tag)
                await uow.deliveries.add(rows)
            await uow.commit()
        if rows:
            log.info("renamed", extra={"space_id": space.id})
        self._arm(rows)
        return space

    async def cancel(self, cmd: CancelSpace, *, echo_of: ChatRef | None = None) -> Space:
        """``echo_of``: the announcement chat whose native event was cancelled in the platform's own UI
        (it shows the change already: no update is sent to it)."""
        now = self._clock.now()
        async with self._uow() as uow:
            if await self._seen(uow, cmd.actor.user, cmd.request_id):
                return await self._load(uow, cmd.space_id)
            space = await self._load(uow, cmd.space_id, for_update=True)
            rules.check_may_manage(cmd.actor, space, "cancel")
            rules.check_transition(space, "cancel")
            await self._finish(
                uow, space, SpaceStatus.CANCELLED, now, _ALL_PENDING_NOTICES, "cancelled", echo_of=echo_of
            )
            await uow.deliveries.fan_out(
                space.id,
                space.revision,
                DeliveryKind.CANCELLED_NOTICE,
                now,
                f"space:{space.id}:{DeliveryKind.CANCELLED_NOTICE}",
            )
            await uow.commit()
        self._wake.arm(now)
        return space

    async def start(self, cmd: StartSpace, *, echo_of: ChatRef | None = None) -> StartResult:
        """``echo_of``: the announcement chat whose native event was started in the platform's own UI
        (it shows the change already: no update is sent to it)."""
        now = self._clock.now()
        source = rules.clean_source(cmd.audio_source)  # refused before anything is done
        async with self._uow() as uow:
            if await self._seen(uow, cmd.actor.user, cmd.request_id):
                space = await self._load(uow, cmd.space_id)
                return StartResult(space, 0, already_live=space.status is SpaceStatus.LIVE)
            space = await self._load(uow, cmd.space_id, for_update=True)
            rules.check_may_manage(cmd.actor, space, "start")
            if space.status is SpaceStatus.LIVE:  # a double tap on "Start": already done, say so kindly
                return StartResult(space, 0, already_live=True)
            rules.check_transition(space, "start")
            space.status = SpaceStatus.LIVE
            space.started_at = now
            if source is not None:
                space.audio_source = source
            await uow.spaces.save(space)
            await uow.deliveries.withdraw(
                space.id, (*_HOST_REMINDERS, DeliveryKind.RESCHEDULED_NOTICE), "started"
            )
            await uow.deliveries.add(await self._card_edits(uow, space, now, tag="live"))
            await uow.deliveries.add(await self._event_updates(uow, space, now, tag="live", echo_of=echo_of))
            # subscribers are told when the host actually starts — not at the scheduled time
            notified = await uow.deliveries.fan_out(
                space.id,
                space.revision,
                DeliveryKind.LIVE_NOTICE,
                now,
                f"space:{space.id}:{DeliveryKind.LIVE_NOTICE}",
            )
            await uow.commit()
        log.info("started", extra={"space_id": space.id, "notified": notified})
        self._wake.arm(now)
        return StartResult(space, notified)

    async def end(self, cmd: EndSpace, *, echo_of: ChatRef | None = None) -> Space:
        """``echo_of``: the announcement chat whose native event was ended in the platform's own UI
        (it shows the change already: no update is sent to it)."""
        now = self._clock.now()
        async with self._uow() as uow:
            if await self._seen(uow, cmd.actor.user, cmd.request_id):
                return await self._load(uow, cmd.space_id)
            space = await self._load(uow, cmd.space_id, for_update=True)
            rules.check_may_manage(cmd.actor, space, "end")
            if space.status is SpaceStatus.ENDED:
                return space
            rules.check_transition(space, "end")
            # pending live notices would now point at a finished Space (decide() also skips claimed ones)
            await self._finish(
                uow, space, SpaceStatus.ENDED, now, (DeliveryKind.LIVE_NOTICE,), "ended", echo_of=echo_of
            )
            await uow.commit()
        self._wake.arm(now)
        return space

    async def close_stale(self, limit: int = 100) -> int:
        """End Spaces that were never started, or never ended, ``rules.STALE_AFTER`` after their start
        (the worker's sweep calls this). Their pending notifications are withdrawn and their cards show
        "Ended"; nobody is notified. Returns how many were closed."""
        now = self._clock.now()
        closed = 0
        async with self._uow() as uow:
            stale = await uow.spaces.list_stale(
                scheduled_before=now - rules.STALE_AFTER, live_before=now - rules.STALE_AFTER, limit=limit
            )
        for candidate in stale:
            async with self._uow() as uow:
                space = await self._load(uow, candidate.id, for_update=True)
                if space.status != candidate.status:  # someone acted on it meanwhile
                    continue
                await self._finish(uow, space, SpaceStatus.ENDED, now, _ALL_PENDING_NOTICES, "closed: stale")
                await uow.commit()
            closed += 1
            log.info("closed a stale space", extra={"space_id": space.id})
        if closed:
            self._wake.arm(now)
        return closed

    async def subscribe(self, cmd: Subscribe) -> SubscribeResult:
        return await self._set_subscription(cmd.user, cmd.space_id, True, cmd.via_chat, cmd.locale)

    async def unsubscribe(self, cmd: Unsubscribe) -> SubscribeResult:
        return await self._set_subscription(cmd.user, cmd.space_id, False, None, None)

    # ------------------------------------------------------------------ helpers

    async def _set_subscription(
        self, user: UserRef, space_id: str, on: bool, via: ChatRef | None, locale: str | None
    ) -> SubscribeResult:
        now = self._clock.now()
        async with self._uow() as uow:
            # locked: a subscription committing after start()'s fan-out read the subscribers would get no
            # live notice (PostgreSQL; SQLite's write lock already serialises the two)
            space = await self._load(uow, space_id, for_update=True)
            if on:
                if not space.status.is_open:
                    raise WrongState("sub.closed", status=TextKey(f"status.{space.status.value}"))
                if user == space.host:
                    raise UserError("sub.host")
                changed = await uow.subscriptions.add(Subscription(space.id, user, now, via_chat=via))
                if locale:
                    await self._remember_user(uow, rules.Actor(user, locale=locale))
            else:
                changed = await uow.subscriptions.remove(space.id, user)
                # whatever was still on its way to them about this Space stays unsent
                await uow.deliveries.withdraw(
                    space.id,
                    (
                        DeliveryKind.LIVE_NOTICE,
                        DeliveryKind.RESCHEDULED_NOTICE,
                        DeliveryKind.CANCELLED_NOTICE,
                    ),
                    "unsubscribed",
                    recipient=str(user),
                )
            rows: list[Delivery] = []
            if changed:
                # one coalesced card refresh per window: the key is per window, the edit renders the count then
                window = int(now.timestamp() // CARD_COUNT_WINDOW.total_seconds())
                due = datetime.fromtimestamp((window + 1) * CARD_COUNT_WINDOW.total_seconds(), tz=now.tzinfo)
                rows = await self._card_edits(uow, space, due, tag=f"count{window}")
                await uow.deliveries.add(rows)
            count = await uow.subscriptions.count(space.id)
            await uow.commit()
        self._arm(rows)
        return SubscribeResult(space, on, changed, count)

    async def _finish(
        self,
        uow: UnitOfWork,
        space: Space,
        status: SpaceStatus,
        now: datetime,
        withdraw: Sequence[DeliveryKind],
        reason: str,
        *,
        echo_of: ChatRef | None = None,
    ) -> None:
        """The end of a Space's life (ended, cancelled, closed as stale): save, withdraw what no longer makes
        sense, and turn every card."""
        space.status = status
        space.ended_at = now
        await uow.spaces.save(space)
        await uow.deliveries.withdraw(space.id, withdraw, reason)
        tag = reason.replace(" ", "")
        await uow.deliveries.add(await self._card_edits(uow, space, now, tag=tag))
        await uow.deliveries.add(await self._event_updates(uow, space, now, tag=tag, echo_of=echo_of))

    async def _draft(self, uow: UnitOfWork, cmd: ScheduleSpace, now: datetime) -> _Draft:
        """Read and check a schedule command (reads only): schedule() and preview() share every rule."""
        # an empty title means the time and the title came typed together; split them once the zone is known
        title = rules.clean_title(cmd.title) if cmd.title.strip() else ""
        description = rules.clean_description(cmd.description)
        source = rules.clean_source(cmd.audio_source)
        rules.check_voice(cmd.voice, cmd.chat)
        tz = await self._zone(uow, cmd.actor.user, cmd.chat, cmd.tz)
        locale = pick_locale(cmd.actor.locale)
        if title:
            parsed = parse_when(cmd.when_text, now=now, tz=tz, locale=locale)
        else:  # a time alone is refused by the parser (title.missing), showing the time it read
            parsed, rest = split_when_and_title(cmd.when_text, now=now, tz=tz, locale=locale)
            title = rules.clean_title(rest)
        rules.check_start_time(parsed.at, now, format_local(parsed.at, parsed.tz, locale))
        return _Draft(title, description, parsed.at, parsed.tz, locale, source)

    async def _load(self, uow: UnitOfWork, space_id: str, *, for_update: bool = False) -> Space:
        space = await (uow.spaces.get_for_update(space_id) if for_update else uow.spaces.get(space_id))
        if space is None:
            raise NotFound("space.not_found", space_id=space_id[:40])
        return space

    async def _seen(self, uow: UnitOfWork, user: UserRef, request_id: str | None) -> bool:
        if request_id is None:
            return False
        return await uow.inbound.remember(user.platform, request_id, "done") is not None

    async def _zone(self, uow: UnitOfWork, user: UserRef, chat: ChatRef | None, override: str | None) -> str:
        """The zone to read a time in: explicit, else the user's, else the community's, else the default."""
        if override:
            return check_zone(override)
        profile = await uow.users.get(user)
        if profile and profile.tz:
            return profile.tz
        if chat is not None and (zone := await community_zone(uow, chat)):
            return zone
        return self._default_tz

    async def _remember_user(self, uow: UnitOfWork, actor: rules.Actor) -> None:
        await uow.users.lock(actor.user)  # read-modify-write: a concurrent profile change must not be lost
        profile = await uow.users.get(actor.user) or UserProfile(actor.user)
        new_locale = pick_locale(actor.locale) if actor.locale else profile.locale
        if new_locale != profile.locale:
            profile.locale = new_locale
            await uow.users.upsert(profile)

    def _row(
        self,
        space: Space,
        kind: DeliveryKind,
        recipient: str,
        due: datetime,
        *,
        key: str,
        platform: Platform | None = None,
    ) -> Delivery:
        """``platform``: where the row is sent, when not the Space's own (a card posted elsewhere)."""
        return Delivery(
            key=key,
            kind=kind,
            platform=platform or space.platform,
            recipient=recipient,
            space_id=space.id,
            revision=space.revision,
            due_at=due,
        )

    def _host_reminders(self, space: Space, now: datetime) -> list[Delivery]:
        return [
            self._row(
                space,
                kind,
                str(space.host),
                due,
                key=f"space:{space.id}:r{space.revision}:{kind}:{space.host}",
            )
            for kind, due in rules.host_reminder_plan(space.starts_at, now)
        ]

    async def announcements(
        self, uow: UnitOfWork, space: Space, chats: Sequence[ChatRef], now: datetime
    ) -> list[Delivery]:
        """Inside the caller's unit of work: the rows that announce ``space`` in each of ``chats`` — its card,
        and its native event where the chat's platform has them (the event's record is added here). Keys
        are per (Space, chat): announcing again where it was announced adds nothing (the outbox ignores a
        known key). core.services.links calls it when two chats are linked."""
        rows: list[Delivery] = []
        for chat in chats:
            rows.append(
                self._row(
                    space,
                    DeliveryKind.CARD_POST,
                    str(chat),
                    now,
                    key=f"space:{space.id}:card:{chat}",
                    platform=chat.platform,
                )
            )
            if chat.platform in self._native_events:
                await uow.events.add(NativeEvent(space.id, chat))
                rows.append(
                    self._row(
                        space,
                        DeliveryKind.EVENT_CREATE,
                        str(chat),
                        now,
                        key=f"space:{space.id}:event:create:{chat}",
                        platform=chat.platform,
                    )
                )
        return rows

    async def linked_chats(self, chat: ChatRef) -> list[ChatRef]:
        """The chats of ``chat``'s link group, ``chat`` included (core.ports.LinkStore.chats)."""
        async with self._read() as uow:
            return await uow.links.chats(chat)

    async def _card_edits(self, uow: UnitOfWork, space: Space, due: datetime, *, tag: str) -> list[Delivery]:
        anns = await uow.announcements.list(space.id)
        return [
            self._row(
                space,
                DeliveryKind.CARD_EDIT,
                str(a.message),
                due,
                key=f"space:{space.id}:edit:{tag}:{a.message}",
                # the platform that holds the card sends (and is charged for) the edit
                platform=a.message.platform,
            )
            for a in anns
        ]

    async def _event_updates(
        self, uow: UnitOfWork, space: Space, due: datetime, *, tag: str, echo_of: ChatRef | None = None
    ) -> list[Delivery]:
        """One update per native event of the Space (built at send time from the Space as it is then),
        except the one whose change this is an echo of."""
        return [
            self._row(
                space,
                DeliveryKind.EVENT_UPDATE,
                str(e.chat),
                due,
                key=f"space:{space.id}:event:{tag}:{e.chat}",
                platform=e.chat.platform,
            )
            for e in await uow.events.list(space.id)
            if e.chat != echo_of and e.chat.platform in self._native_events
        ]

    def _arm(self, rows: Sequence[Delivery]) -> None:
        if rows:
            self._wake.arm(min(r.due_at for r in rows))
