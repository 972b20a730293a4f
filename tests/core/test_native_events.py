"""Native events both ways, on every persistence backend: the outbox rows each change writes, what the
engine sends (the spec rendered at send time, updates folded into a create not sent yet, the catch-up after
a create in flight), and the platform's own status changes and "Interested" clicks turned into the core's
commands."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from bots.router import Router
from bots.runtime.budget import Unlimited
from core.commands import (
    CancelSpace,
    EndSpace,
    RenameSpace,
    RescheduleSpace,
    ScheduleSpace,
    StartSpace,
    Subscribe,
)
from core.errors import ChatUnavailable, TransientError
from core.models import (
    Announcement,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    EventStatus,
    NativeEvent,
    Space,
    SpaceStatus,
)
from core.refs import ChatRef, MessageRef, Platform, UserRef
from core.rules import Actor
from core.services.deliveries import EVENT_NOT_CREATED_YET, DeliveryEngine, EngineConfig
from core.services.events import DEFAULT_EVENT_LENGTH, EventsService, event_spec
from core.services.spaces import SpaceService
from tests.backends import StoreBackend
from tests.conftest import StaticLinks
from tests.core.test_store_contract import REJECTED
from tests.fakes.clock import FakeClock, RecordingWake
from tests.fakes.platform import FakePlatform

D = Platform.DISCORD
GUILD = "g1"
CHAT = ChatRef(D, "announcements")
HOST = UserRef(D, "host")
LINK = "https://spaces.test/s/"


@dataclass
class Env:
    clock: FakeClock
    db: StoreBackend
    platform: FakePlatform
    spaces: SpaceService
    events: EventsService
    engine: DeliveryEngine

    def actor(self, name: str = "host", *, mod: bool = False) -> Actor:
        return Actor(UserRef(D, name), is_moderator=mod)

    async def run(self) -> int:
        return await self.engine.deliver_due()

    async def rows(self, kind: DeliveryKind | None = None) -> list[Delivery]:
        return [d for d in await self.db.all_deliveries() if kind is None or d.kind is kind]

    async def record(self, space_id: str) -> NativeEvent:
        async with self.db.uow() as uow:
            (event,) = await uow.events.list(space_id)
        return event

    async def schedule(self, title: str = "Weekly AMA", when: str = "2026-11-25 20:00") -> Space:
        return await self.spaces.schedule(ScheduleSpace(self.actor(), CHAT, title, when))


def make_engine(db: StoreBackend, platform: object, clock: FakeClock, worker: str = "w1") -> DeliveryEngine:
    return DeliveryEngine(
        db.outbox(),
        db.uow,
        platform,  # type: ignore[arg-type]
        clock,
        Unlimited(),
        StaticLinks(),
        RecordingWake(),
        EngineConfig(worker_id=worker),
        rng=random.Random(3),
    )


@pytest.fixture
def env(store_backend: StoreBackend) -> Env:
    clock = FakeClock()  # 2026-11-25 16:00 UTC
    platform = FakePlatform(platform=D)
    spaces = SpaceService(
        store_backend.uow, clock, RecordingWake(), default_tz="Europe/Paris", native_events={D}
    )
    engine = make_engine(store_backend, platform, clock)
    return Env(clock, store_backend, platform, spaces, EventsService(store_backend.uow, spaces), engine)


# ------------------------------------------------------------------------------------------ outbound


async def test_scheduling_creates_the_event_with_the_card(env: Env) -> None:
    space = await env.schedule()
    (create,) = await env.rows(DeliveryKind.EVENT_CREATE)
    assert (create.recipient, create.platform, create.due_at) == (str(CHAT), D, env.clock.now())
    assert (await env.record(space.id)).event_id is None  # recorded with the Space, in one transaction
    await env.run()
    (call,) = env.platform.event_calls
    assert (call.op, call.chat) == ("create", CHAT)
    assert call.spec.title == "Weekly AMA" and call.spec.status is EventStatus.SCHEDULED
    assert call.spec.starts_at == datetime(2026, 11, 25, 19, 0, tzinfo=UTC)
    assert call.spec.ends_at == call.spec.starts_at + DEFAULT_EVENT_LENGTH
    assert call.spec.location == LINK + space.id and call.spec.channel is None
    assert (await env.record(space.id)).event_id == call.event_id
    (create,) = await env.rows(DeliveryKind.EVENT_CREATE)
    assert create.status is DeliveryStatus.SENT and create.sent_ref == call.event_id
    assert len(env.platform.of("post")) == 1  # and the card


async def test_a_platform_without_native_events_gets_no_event_rows(store_backend: StoreBackend) -> None:
    spaces = SpaceService(store_backend.uow, FakeClock(), RecordingWake(), default_tz="UTC")
    await spaces.schedule(ScheduleSpace(Actor(HOST), CHAT, "AMA", "2026-11-25 20:00"))
    kinds = {d.kind for d in await store_backend.all_deliveries()}
    assert DeliveryKind.EVENT_CREATE not in kinds and DeliveryKind.CARD_POST in kinds


async def test_every_change_keeps_the_event_in_step(env: Env) -> None:
    space = await env.schedule()
    await env.run()
    (created,) = env.platform.event_calls
    event_id = created.event_id

    await env.spaces.reschedule(RescheduleSpace(env.actor(), space.id, "2026-11-25 21:00"))
    await env.spaces.rename(RenameSpace(env.actor(), space.id, "Bigger AMA"))
    await env.run()
    spec = env.platform.events[event_id]
    assert spec.starts_at == datetime(2026, 11, 25, 20, 0, tzinfo=UTC) and spec.title == "Bigger AMA"

    env.clock.set(datetime(2026, 11, 25, 20, 2, tzinfo=UTC))
    await env.spaces.start(StartSpace(env.actor(), space.id))
    await env.run()
    assert env.platform.events[event_id].status is EventStatus.ACTIVE

    env.clock.set(datetime(2026, 11, 25, 21, 30, tzinfo=UTC))
    await env.spaces.end(EndSpace(env.actor(), space.id))
    await env.run()
    spec = env.platform.events[event_id]
    assert spec.status is EventStatus.COMPLETED and spec.ends_at == env.clock.now()
    updates = [c for c in env.platform.event_calls if c.op == "update"]
    assert len(updates) == 4 and {c.event_id for c in updates} == {event_id}  # one per change, no create


async def test_an_update_that_makes_a_new_object_moves_later_updates_to_it(env: Env) -> None:
    """Slack's Call exists only while the Space is live: the update to ACTIVE creates it and returns its id,
    which the engine stores, so the end reaches the Call and not the placeholder of the schedule."""
    env.platform.replace_event_on = EventStatus.ACTIVE
    space = await env.schedule()
    await env.run()
    (created,) = env.platform.event_calls
    env.clock.set(datetime(2026, 11, 25, 20, 2, tzinfo=UTC))
    await env.spaces.start(StartSpace(env.actor(), space.id))
    await env.run()
    live_id = env.platform.event_calls[-1].event_id
    assert live_id != created.event_id and (await env.record(space.id)).event_id == live_id
    env.clock.set(datetime(2026, 11, 25, 21, 0, tzinfo=UTC))
    await env.spaces.end(EndSpace(env.actor(), space.id))
    await env.run()
    ended = env.platform.event_calls[-1]
    assert ended.event_id == live_id and env.platform.events[live_id].status is EventStatus.COMPLETED


async def test_cancel_cancels_the_event(env: Env) -> None:
    space = await env.schedule()
    await env.run()
    await env.spaces.cancel(CancelSpace(env.actor(), space.id))
    await env.run()
    (event_id,) = env.platform.events
    assert env.platform.events[event_id].status is EventStatus.CANCELED


async def test_an_update_before_the_create_is_sent_is_folded_into_it(env: Env) -> None:
    space = await env.schedule()

    async def refuse_creates(op: str, target: str) -> None:
        if op == "create_event":
            raise TransientError("HTTP 502")

    env.platform.on_send = refuse_creates
    await env.run()  # the card is posted; the create failed, and is retried later
    env.platform.on_send = None
    await env.spaces.rename(RenameSpace(env.actor(), space.id, "Renamed before it went out"))
    await env.run()
    assert env.platform.event_calls == []
    (update,) = await env.rows(DeliveryKind.EVENT_UPDATE)
    assert update.status is DeliveryStatus.SKIPPED and update.last_error == EVENT_NOT_CREATED_YET
    env.clock.advance(timedelta(minutes=5))
    await env.run()
    (call,) = env.platform.event_calls  # one create, showing the Space as it was when it went out
    assert call.op == "create" and call.spec.title == "Renamed before it went out"


async def test_a_change_while_the_create_is_in_flight_is_caught_up(env: Env) -> None:
    space = await env.schedule()
    other = make_engine(env.db, env.platform, env.clock, worker="w2")
    folded: list[int] = []

    async def meanwhile(op: str, target: str) -> None:
        if op == "create_event" and not folded:
            # the Space changes while the create is on its way, and another worker handles that update
            # before the create's id is stored: it is folded, and the create must catch up
            await env.spaces.rename(RenameSpace(env.actor(), space.id, "Changed mid-flight"))
            folded.append(await other.deliver_due())

    env.platform.on_send = meanwhile
    await env.run()
    await env.run()
    assert folded and folded[0] >= 1  # the update (and the card edit the rename queued)
    (event_id,) = env.platform.events
    assert env.platform.events[event_id].title == "Changed mid-flight"
    updates = {d.key: d for d in await env.rows(DeliveryKind.EVENT_UPDATE)}
    assert sorted(d.status for d in updates.values()) == [DeliveryStatus.SENT, DeliveryStatus.SKIPPED]
    assert any("catch-up" in k and d.status is DeliveryStatus.SENT for k, d in updates.items())


async def test_a_space_over_before_its_create_went_out_gets_no_event(env: Env) -> None:
    space = await env.schedule()
    await env.spaces.cancel(CancelSpace(env.actor(), space.id))
    await env.run()
    assert env.platform.event_calls == []
    (create,) = await env.rows(DeliveryKind.EVENT_CREATE)
    assert create.status is DeliveryStatus.SKIPPED and "cancelled" in (create.last_error or "")


async def test_the_spec_of_a_space_without_voice_channel_is_located_at_its_link() -> None:
    now = datetime(2026, 11, 25, 16, 0, tzinfo=UTC)
    space = Space("s1", "AMA", HOST, CHAT, now + timedelta(hours=2), "UTC", "en", now, description="About")
    spec = event_spec(space, LINK + "s1")
    assert spec.channel is None and spec.location == LINK + "s1" and spec.description == "About"
    space.status, space.started_at, space.ended_at = (
        SpaceStatus.ENDED,
        space.starts_at,
        now + timedelta(hours=3),
    )
    assert event_spec(space, LINK).ends_at == now + timedelta(hours=3)
    assert event_spec(space, LINK).status is EventStatus.COMPLETED
    space.ended_at = now + timedelta(hours=1)  # ended before its planned start: the event keeps a length
    assert event_spec(space, LINK).ends_at == space.starts_at + DEFAULT_EVENT_LENGTH


async def test_the_router_sends_events_only_to_platforms_that_have_them(env: Env) -> None:
    class NoEvents:
        platform = Platform.TELEGRAM

        def __getattr__(self, name: str) -> object:
            raise AttributeError(name)

    discord = FakePlatform(platform=D)
    router = Router([discord, NoEvents()])  # type: ignore[list-item]
    assert router.native_event_platforms() == frozenset({D})
    spec = event_spec(await env.schedule(), LINK)
    event_id = await router.create_event(CHAT, spec, key="k")
    await router.update_event(CHAT, event_id, spec)
    assert [c.op for c in discord.event_calls] == ["create", "update"]
    with pytest.raises(ChatUnavailable):
        await router.create_event(ChatRef(Platform.TELEGRAM, "1"), spec, key="k")


# ------------------------------------------------------------------------------------------ inbound


async def _created(env: Env) -> tuple[Space, str]:
    space = await env.schedule()
    await env.run()
    return space, env.platform.event_calls[-1].event_id


async def test_an_event_started_in_the_platform_starts_the_space_everywhere(env: Env) -> None:
    space, event_id = await _created(env)
    fan = UserRef(D, "fan")
    await env.spaces.subscribe(Subscribe(fan, space.id, via_chat=CHAT))
    await env.run()
    moderator = UserRef(D, "mod")  # not the host: the platform already checked Manage Events

    started = await env.events.status_changed(D, None, event_id, EventStatus.ACTIVE, moderator)
    assert started is not None and started.status is SpaceStatus.LIVE
    await env.run()
    assert len(env.platform.dms_to(fan)) == 1  # subscribers told once
    assert [c.op for c in env.platform.event_calls] == ["create"]  # no echo back to the event itself
    assert any(s.op == "edit" for s in env.platform.sent)  # the card goes live

    # the same dispatch again (a platform retry, or our own update's echo): nothing more happens
    before = len(await env.rows())
    again = await env.events.status_changed(D, None, event_id, EventStatus.ACTIVE, moderator)
    assert again is not None and again.status is SpaceStatus.LIVE
    assert len(await env.rows()) == before

    ended = await env.events.status_changed(D, None, event_id, EventStatus.COMPLETED, moderator)
    assert ended is not None and ended.status is SpaceStatus.ENDED
    assert await env.events.status_changed(D, None, event_id, EventStatus.COMPLETED, None) is not None
    await env.run()
    assert [c.op for c in env.platform.event_calls] == ["create"]


async def test_our_own_update_echoed_back_changes_nothing(env: Env) -> None:
    space, event_id = await _created(env)
    await env.spaces.start(StartSpace(env.actor(), space.id))
    await env.run()
    assert env.platform.events[event_id].status is EventStatus.ACTIVE
    before = await env.rows()
    echoed = await env.events.status_changed(D, None, event_id, EventStatus.ACTIVE, None)
    assert echoed is not None and echoed.status is SpaceStatus.LIVE
    assert len(await env.rows()) == len(before)


async def test_an_event_cancelled_in_the_platform_cancels_the_space(env: Env) -> None:
    _, event_id = await _created(env)
    cancelled = await env.events.status_changed(D, None, event_id, EventStatus.CANCELED, None)
    assert cancelled is not None and cancelled.status is SpaceStatus.CANCELLED
    await env.run()
    assert [c.op for c in env.platform.event_calls] == ["create"]
    # a completion that a Space cannot make (it never started) is ignored
    _, event2 = await _created(env)
    kept = await env.events.status_changed(D, None, event2, EventStatus.COMPLETED, None)
    assert kept is not None and kept.status is SpaceStatus.SCHEDULED


async def test_an_event_that_is_not_ours_is_ignored(env: Env) -> None:
    await _created(env)
    assert await env.events.status_changed(D, None, "someone-else", EventStatus.ACTIVE, None) is None
    assert await env.events.status_changed(D, GUILD, "ev-unknown", EventStatus.ACTIVE, None) is None
    assert await env.events.interest(D, None, "someone-else", UserRef(D, "fan"), True) is None


async def test_interested_subscribes_and_one_audience_gets_one_notice(env: Env) -> None:
    space, event_id = await _created(env)
    both, clicker = UserRef(D, "both"), UserRef(D, "clicker")
    await env.spaces.subscribe(Subscribe(both, space.id, via_chat=CHAT))  # the card's button …
    result = await env.events.interest(D, None, event_id, both, True)  # … and "Interested"
    assert result is not None and result.subscribed and not result.changed
    result = await env.events.interest(D, None, event_id, clicker, True)
    assert result is not None and result.changed and result.subscribers == 2
    async with env.db.uow() as uow:
        subs = {s.user: s for s in await uow.subscriptions.list(space.id)}
    assert subs[clicker].via_chat == CHAT  # a closed DM falls back to a mention where the event is

    await env.spaces.start(StartSpace(env.actor(), space.id))
    await env.run()
    assert len(env.platform.dms_to(both)) == 1 and len(env.platform.dms_to(clicker)) == 1

    gone = await env.events.interest(D, None, event_id, clicker, False)
    assert gone is not None and not gone.subscribed and gone.subscribers == 1
    # the host marking their own event "Interested" is not a subscription, and not an error
    assert await env.events.interest(D, None, event_id, HOST, True) is None


async def test_card_edits_are_charged_to_the_platform_that_holds_the_card(
    store_backend: StoreBackend,
) -> None:
    clock = FakeClock()
    console, discord = FakePlatform(platform=Platform.CONSOLE), FakePlatform(platform=D)
    charged: list[tuple[Platform, str | None]] = []

    class Recording(Unlimited):
        async def acquire(
            self,
            platform: Platform,
            chat: str | None = None,
            *,
            max_wait: float = 1e9,
            scope: str | None = None,
        ) -> float:
            charged.append((platform, chat))
            return 0.0

    spaces = SpaceService(store_backend.uow, clock, RecordingWake(), default_tz="UTC")
    engine = DeliveryEngine(
        store_backend.outbox(),
        store_backend.uow,
        Router([console, discord]),
        clock,
        Recording(),
        StaticLinks(),
        RecordingWake(),
        EngineConfig(worker_id="w1"),
    )
    host = Actor(UserRef(Platform.CONSOLE, "host"))
    space = await spaces.schedule(
        ScheduleSpace(host, ChatRef(Platform.CONSOLE, "main"), "AMA", "2026-11-25 20:00")
    )
    await engine.deliver_due()
    card = MessageRef(D, "elsewhere", "42")  # the same Space's card, shared into a Discord channel
    async with store_backend.uow() as uow:
        await uow.announcements.add(Announcement(space.id, card))
        # a row written before edits were sent as their card's platform: charged by its recipient too
        await uow.deliveries.add(
            [
                Delivery(
                    key="old-row",
                    kind=DeliveryKind.CARD_EDIT,
                    platform=Platform.CONSOLE,
                    recipient=str(card),
                    space_id=space.id,
                    revision=1,
                    due_at=clock.now(),
                )
            ]
        )
        await uow.commit()
    charged.clear()
    await spaces.rename(RenameSpace(host, space.id, "AMA, renamed"))
    edits = [d for d in await store_backend.all_deliveries() if d.kind is DeliveryKind.CARD_EDIT]
    assert sorted((d.recipient == str(card), d.platform) for d in edits if d.key != "old-row") == [
        (False, Platform.CONSOLE),
        (True, D),
    ]
    await engine.deliver_due()
    assert sorted(charged) == sorted([(Platform.CONSOLE, "main"), (D, "elsewhere"), (D, "elsewhere")])
    assert len(discord.of("edit")) == 2 and len(console.of("edit")) == 1


# ------------------------------------------------------------------------------------------ the store


async def test_the_event_store_records_once_and_finds_by_platform_and_id(env: Env) -> None:
    space = await env.schedule()
    other = ChatRef(D, "elsewhere")
    async with env.db.uow() as uow:
        assert await uow.events.add(NativeEvent(space.id, other)) is True
        assert await uow.events.add(NativeEvent(space.id, other, "ignored")) is False  # kept unchanged
        await uow.events.set_id(space.id, other, "ev-9")
        with pytest.raises(LookupError):
            await uow.events.set_id(space.id, ChatRef(D, "never-recorded"), "ev-10")
        await uow.commit()
    async with env.db.uow() as uow:
        assert [e.chat for e in await uow.events.list(space.id)] == sorted([CHAT, other], key=str)
        found = await uow.events.find(D, None, "ev-9")
        assert found == NativeEvent(space.id, other, "ev-9")
        assert await uow.events.find(D, GUILD, "ev-9") == found  # recorded unscoped: the id decides
        assert await uow.events.find(Platform.SLACK, None, "ev-9") is None
        assert await uow.events.find(D, None, "ev-404") is None
        with pytest.raises(REJECTED):  # a Space's events belong to it (foreign key)
            await uow.events.add(NativeEvent("no-such-space", CHAT))


async def test_a_change_from_one_event_updates_the_spaces_other_events(env: Env) -> None:
    space, first = await _created(env)
    elsewhere = ChatRef(D, "other-guild-announcements")
    second = await env.platform.create_event(elsewhere, event_spec(space, LINK), key="k2")
    async with env.db.uow() as uow:  # the same Space, mirrored in a second chat
        await uow.events.add(NativeEvent(space.id, elsewhere))
        await uow.events.set_id(space.id, elsewhere, second)
        await uow.commit()
    await env.events.status_changed(D, None, first, EventStatus.ACTIVE, None)
    await env.run()
    updates = [c for c in env.platform.event_calls if c.op == "update"]
    assert [(c.chat, c.event_id) for c in updates] == [(elsewhere, second)]  # not back to the first
    assert env.platform.events[second].status is EventStatus.ACTIVE


async def test_an_event_row_for_a_platform_without_events_is_dead_lettered(
    store_backend: StoreBackend,
) -> None:
    class NoEvents:
        """A platform with messages only: FakePlatform's, without its events."""

        platform = D

        def __init__(self) -> None:
            self.fake = FakePlatform(platform=D)
            self.post, self.edit = self.fake.post, self.fake.edit
            self.direct, self.mention = self.fake.direct, self.fake.mention
            self.start, self.stop = self.fake.start, self.fake.stop

    clock = FakeClock()
    plain = NoEvents()
    spaces = SpaceService(store_backend.uow, clock, RecordingWake(), default_tz="UTC", native_events={D})
    engine = make_engine(store_backend, Router([plain]), clock)  # type: ignore[list-item]
    await spaces.schedule(ScheduleSpace(Actor(HOST), CHAT, "AMA", "2026-11-25 20:00"))
    await engine.deliver_due()
    (create,) = [d for d in await store_backend.all_deliveries() if d.kind is DeliveryKind.EVENT_CREATE]
    assert create.status is DeliveryStatus.DEAD and "no native events" in (create.last_error or "")
    assert len(plain.fake.of("post")) == 1  # the card still went out


async def test_a_space_closed_as_stale_without_starting_cancels_its_event(env: Env) -> None:
    space, event_id = await _created(env)
    env.clock.set(space.starts_at + timedelta(hours=13))  # nobody started it
    assert await env.spaces.close_stale() == 1
    await env.run()
    assert env.platform.events[event_id].status is EventStatus.CANCELED


async def test_a_create_retried_after_its_id_was_stored_makes_no_second_event(env: Env) -> None:
    space = await env.schedule()
    (create,) = await env.rows(DeliveryKind.EVENT_CREATE)
    async with env.db.uow() as uow:  # an earlier claim created the event and stored its id, then died
        await uow.events.set_id(space.id, CHAT, "ev-earlier")
        await uow.commit()
    await env.run()
    assert env.platform.event_calls == []
    (create,) = await env.rows(DeliveryKind.EVENT_CREATE)
    assert create.status is DeliveryStatus.SENT and create.sent_ref == "ev-earlier"


# ------------------------------------------------------------------------------------------ scopes and voice


async def test_an_event_is_found_only_from_its_own_guild(env: Env) -> None:
    chat = ChatRef(D, "announcements", scope=GUILD)
    space = await env.spaces.schedule(ScheduleSpace(env.actor(), chat, "Guild AMA", "2026-11-25 20:00"))
    await env.run()
    event_id = env.platform.event_calls[-1].event_id
    assert env.platform.event_calls[-1].chat == chat
    found = await env.events.find(D, GUILD, event_id)
    assert found is not None and found.space_id == space.id and found.chat == chat
    assert await env.events.find(D, "another-guild", event_id) is None  # never another guild's dispatch
    started = await env.events.status_changed(D, GUILD, event_id, EventStatus.ACTIVE, None)
    assert started is not None and started.status is SpaceStatus.LIVE
    result = await env.events.interest(D, GUILD, event_id, UserRef(D, "fan"), True)
    assert result is not None and result.subscribers == 1


async def test_an_event_is_tied_to_the_spaces_voice_channel() -> None:
    now = datetime(2026, 11, 25, 16, 0, tzinfo=UTC)
    stage = ChatRef(D, "stage", scope=GUILD)
    space = Space("s1", "AMA", HOST, CHAT, now + timedelta(hours=2), "UTC", "en", now, voice=stage)
    spec = event_spec(space, LINK + "s1")
    assert spec.channel == stage and spec.location is None
