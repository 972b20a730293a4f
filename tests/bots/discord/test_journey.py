"""One Space's whole life on Discord, as its members live it: the real discord.py (through the adapter and its
handlers) against the emulator, on the real core, SQLite storage and delivery engine, with a controllable
clock. Everything is counted at the emulator: what each member received, what the channel shows, what the
guild's scheduled event says.

schedule by command → card + event · subscribe by the button and by "Interested" · host reminders at T-30 and
T-0 · a moderator starts the event in Discord's UI → the Space is live, every subscriber notified once (a
closed DM becomes one mention), the card live, the event ACTIVE · the host ends by command → event COMPLETED,
card ended · a second Space rescheduled then cancelled → its event follows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bots.discord.adapter import ACTIVE, CANCELED, COMPLETED, SCHEDULED, DiscordConfig, DiscordPlatform
from bots.discord.handlers import Handlers
from bots.router import Router
from bots.runtime.budget import TokenBucketBudget
from core.models import SpaceStatus
from core.refs import ChatRef, Platform
from core.services.deliveries import DeliveryEngine
from core.services.events import EventsService
from core.services.inbound import InboundService
from core.services.profiles import ProfileService
from core.services.replies import RepliesService
from core.services.spaces import SpaceService
from storage.db import make_engine, make_session_factory
from storage.migrate import upgrade
from storage.stores import SqlOutbox, unit_of_work_factory
from tests.bots.discord.conftest import deliver_until_quiet, sql_engine
from tests.bots.telegram.conftest import EngineClock, Links, VirtualTime
from tests.fakes.clock import FakeClock, RecordingWake
from tests.fakes.discord import DcChannel, DcGuild, DcMember, DcMessage, DiscordEmulator, Perm, pointed_at


@dataclass
class Journey:
    dc: DiscordEmulator
    guild: DcGuild
    channel: DcChannel
    clock: FakeClock
    spaces: SpaceService
    engine: DeliveryEngine
    outbox: SqlOutbox
    engine_clock: EngineClock
    vt: VirtualTime

    @property
    def chat(self) -> ChatRef:
        return ChatRef(Platform.DISCORD, str(self.channel.id), scope=str(self.guild.id))

    async def command(self, who: DcMember, name: str, **options: object) -> str:
        rec = await self.dc.run_command(self.guild, self.channel, who, f"space {name}", options)
        [answer] = await self.dc.wait_for_followups(rec)
        assert rec.ephemeral and answer.ephemeral  # deferred privately, answered privately
        return answer.content

    async def press(self, card: DcMessage, custom_id: str, who: DcMember) -> str:
        rec = await self.dc.press_button(card, custom_id, who)
        [answer] = await self.dc.wait_for_followups(rec)
        assert answer.ephemeral
        return answer.content

    async def deliver(self) -> None:
        """Send everything due now (and what a budget or a 429 put back by a few seconds)."""
        await deliver_until_quiet(self.engine, self.outbox, self.engine_clock, self.vt)

    async def at(self, instant: datetime) -> None:
        self.clock.set(instant)
        await self.deliver()


@pytest.fixture
async def journey(tmp_path: Path) -> AsyncIterator[Journey]:
    vt = VirtualTime()
    url = f"sqlite:///{tmp_path / 'spaces.db'}"
    await upgrade(url)
    db = make_engine(url)
    uow = unit_of_work_factory(make_session_factory(db))
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    engine_clock = EngineClock(clock)
    wake = RecordingWake()
    spaces = SpaceService(uow, clock, wake, default_tz="Europe/Paris")
    replies = RepliesService(uow, clock, wake)
    budget = TokenBucketBudget(monotonic=vt.monotonic, sleep=vt.sleep)
    # Discord judges event times by its own wall clock: here, the core's controllable one
    async with DiscordEmulator(clock=vt.monotonic, wall_clock=lambda: clock.now().timestamp()) as dc:
        with pointed_at(dc):
            guild = dc.create_guild("Builders")
            channel = next(c for c in guild.channels.values() if c.name == "general")
            platform = DiscordPlatform(
                DiscordConfig(
                    token=dc.token, application_id=str(dc.application_id), guild_ready_timeout=0.05
                ),
                uow=uow,
                budget=budget,
            )
            inbound = InboundService(
                spaces=spaces,
                profiles=ProfileService(uow),
                replies=replies,
                links=Links(),
                clock=clock,
                uow=uow,
            )
            platform.attach(
                Handlers(
                    spaces=spaces,
                    inbound=inbound,
                    replies=replies,
                    links=Links(),
                    clock=clock,
                    is_moderator=platform.is_moderator,
                    api_base=dc.base_url,
                )
            )
            platform.attach_events(EventsService(uow, spaces))
            router = Router([platform])
            spaces.mirror_native_events(router.native_event_platforms())
            engine, outbox = sql_engine(
                db, uow, router, engine_clock, budget, wake, worker_id="journey", seed=11
            )
            await platform.start()
            await platform.start_gateway()
            try:
                yield Journey(dc, guild, channel, clock, spaces, engine, outbox, engine_clock, vt)
            finally:
                await platform.stop()
                await db.dispose()


def _card_text(card: DcMessage) -> str:
    embed = card.embeds[0]
    return f"{embed.get('title', '')}\n{embed.get('description', '')}"


def _labels(card: DcMessage) -> list[str]:
    return [b.get("label", "") for row in card.components for b in row.get("components", [])]


async def test_a_space_from_schedule_to_end_as_members_live_it(journey: Journey) -> None:
    j, dc = journey, journey.dc
    host = dc.add_member(j.guild, "hana")
    managers = dc.add_role(j.guild, "Event Managers", Perm.MANAGE_EVENTS)
    mod = dc.add_member(j.guild, "mo", roles=[managers])
    alice = dc.add_member(j.guild, "alice")  # the card's button
    bob = dc.add_member(j.guild, "bob")  # Discord's own "Interested"
    carol = dc.add_member(j.guild, "carol")  # the button, but her DMs are closed
    dc.close_dms(carol)

    # --- schedule: a private confirmation, a public card with a native time, a mirrored event
    answer = await j.command(host, "schedule", title="Weekly AMA", when="in 45 minutes")
    assert "Weekly AMA" in answer and "<t:" in answer, answer
    [space] = await j.spaces.upcoming(j.chat)
    await j.deliver()
    [card] = dc.messages_in(j.channel)
    assert "Weekly AMA" in _card_text(card)
    assert f"<t:{int(space.starts_at.timestamp())}:F>" in _card_text(card)  # each reader's own zone
    [event] = j.guild.events.values()
    assert event.name == "Weekly AMA" and event.status == SCHEDULED

    # --- subscribe three ways; a second press of the same state changes nothing
    assert "remind" in (await j.press(card, f"sub:{space.id}", alice)).lower()
    await j.press(card, f"sub:{space.id}", alice)
    await j.press(card, f"sub:{space.id}", carol)
    await dc.mark_interested(event, bob)

    async def three() -> bool:
        return await j.spaces.subscriber_count(space.id) == 3

    for _ in range(100):
        if await three():
            break
        await dc.wait_until(lambda: True, within=0.05)
    assert await three()

    # --- the host's two reminders, by DM, at T-30 and T-0
    await j.at(space.starts_at - timedelta(minutes=30))
    assert len(dc.dms_to(host)) == 1
    await j.at(space.starts_at)
    assert len(dc.dms_to(host)) == 2
    assert not dc.dms_to(alice)  # listeners hear when the host actually starts, not before

    # --- a moderator starts the event in Discord's UI: the Space goes live everywhere
    await dc.start_event_in_ui(event, mod)

    async def live() -> bool:
        return (await j.spaces.get(space.id)).status is SpaceStatus.LIVE

    for _ in range(100):
        if await live():
            break
        await dc.wait_until(lambda: True, within=0.05)
    assert await live()
    await j.deliver()
    assert [len(dc.dms_to(m)) for m in (alice, bob)] == [1, 1]  # each notified once
    assert not dc.dms_to(carol)
    mentions = [m for m in dc.messages_in(j.channel) if carol.user.id in m.pinged]
    assert len(mentions) == 1  # her closed DMs became one mention in the channel
    assert all(m.pinged <= {carol.user.id} for m in mentions)  # nobody else pinged by it
    assert "LIVE" in _card_text(card)  # the same message, edited in place
    assert event.status == ACTIVE

    # --- the host ends it by command: the event completes, the card says ended, nobody is notified again
    assert await j.command(host, "end", space=space.id)
    await j.deliver()
    assert (await j.spaces.get(space.id)).status is SpaceStatus.ENDED
    assert event.status == COMPLETED
    assert "LIVE" not in _card_text(card)
    assert [len(dc.dms_to(m)) for m in (alice, bob)] == [1, 1]


async def test_reschedule_and_cancel_reach_the_card_and_the_event(journey: Journey) -> None:
    j, dc = journey, journey.dc
    host = dc.add_member(j.guild, "hana")
    bob = dc.add_member(j.guild, "bob")
    await j.command(host, "schedule", title="Design review", when="tomorrow 18:00")
    [space] = await j.spaces.upcoming(j.chat)
    await j.deliver()
    [event] = j.guild.events.values()
    start0 = event.fields["scheduled_start_time"]

    # a stranger cannot move it; the host can
    refused = await j.command(bob, "reschedule", space=space.id, when="tomorrow 19:00")
    assert "only" in refused.lower() or "can't" in refused.lower() or "cannot" in refused.lower(), refused
    await j.command(host, "reschedule", space=space.id, when="tomorrow 19:00")
    await j.deliver()
    moved = await j.spaces.get(space.id)
    assert moved.starts_at != space.starts_at
    assert event.fields["scheduled_start_time"] != start0
    [card] = [m for m in dc.messages_in(j.channel) if m.embeds]
    assert f"<t:{int(moved.starts_at.timestamp())}:F>" in _card_text(card)

    await j.command(host, "cancel", space=space.id)
    await j.deliver()
    assert (await j.spaces.get(space.id)).status is SpaceStatus.CANCELLED
    assert event.status == CANCELED


async def test_a_space_in_a_voice_channel_is_a_voice_event_and_its_live_card_joins_it(
    journey: Journey,
) -> None:
    j, dc = journey, journey.dc
    host = dc.add_member(j.guild, "hana")
    stage = dc.add_channel(j.guild, "Town Hall", 13)  # a stage channel
    await j.command(host, "schedule", title="Town hall", when="in 2 hours", voice_channel=str(stage.id))
    [space] = await j.spaces.upcoming(j.chat)
    await j.deliver()
    [event] = j.guild.events.values()
    assert event.fields["entity_type"] == 1 and int(event.fields["channel_id"]) == stage.id  # STAGE_INSTANCE
    [card] = [m for m in dc.messages_in(j.channel) if m.embeds]

    await j.command(host, "start", space=space.id)
    await j.deliver()
    assert event.status == ACTIVE
    links = [b.get("url") for row in card.components for b in row.get("components", [])]
    assert links[0] == f"https://discord.com/channels/{j.guild.id}/{stage.id}"  # 🔊 Join voice, first
    assert "🔊" in _labels(card)[0]
