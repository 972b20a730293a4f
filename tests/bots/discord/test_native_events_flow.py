"""Scheduled Events both ways, end to end: the real discord.py against the emulator, on the real core, SQLite
storage and delivery engine. Scheduling mirrors the Space as a Guild Scheduled Event; "Interested" in
Discord subscribes; a moderator starting the event in Discord's UI starts the Space (subscribers DMed once,
the card live); ending it by command completes the event."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bots.discord.adapter import ACTIVE, COMPLETED, EXTERNAL, SCHEDULED, DiscordConfig, DiscordPlatform
from bots.router import Router
from bots.runtime.budget import TokenBucketBudget
from core.commands import EndSpace, ScheduleSpace
from core.models import DeliveryStatus, SpaceStatus
from core.refs import ChatRef, Platform, UserRef
from core.rules import Actor
from core.services.deliveries import DeliveryEngine
from core.services.events import EventsService
from core.services.spaces import SpaceService
from storage.db import make_engine, make_session_factory
from storage.migrate import upgrade
from storage.stores import SqlOutbox, unit_of_work_factory
from tests.bots.discord.conftest import deliver_until_quiet, sql_engine
from tests.bots.telegram.conftest import EngineClock, VirtualTime
from tests.fakes.clock import FakeClock, RecordingWake
from tests.fakes.discord import DcGuild, DiscordEmulator, Perm, pointed_at


@dataclass
class Env:
    dc: DiscordEmulator
    guild: DcGuild
    chat: ChatRef
    host: UserRef
    spaces: SpaceService
    engine: DeliveryEngine
    outbox: SqlOutbox
    engine_clock: EngineClock
    vt: VirtualTime

    async def deliver(self, rounds: int = 500) -> None:
        await deliver_until_quiet(self.engine, self.outbox, self.engine_clock, self.vt, rounds)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    vt = VirtualTime()
    url = f"sqlite:///{tmp_path / 'spaces.db'}"
    await upgrade(url)
    db = make_engine(url)
    uow = unit_of_work_factory(make_session_factory(db))
    # Discord refuses events in the past: the core's clock starts at the emulator's (wall) now
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    engine_clock = EngineClock(clock)
    wake = RecordingWake()
    spaces = SpaceService(uow, clock, wake, default_tz="Europe/Paris")
    events = EventsService(uow, spaces)
    budget = TokenBucketBudget(monotonic=vt.monotonic, sleep=vt.sleep)
    async with DiscordEmulator(clock=vt.monotonic) as dc:
        with pointed_at(dc):
            guild = dc.create_guild("Builders")
            (text,) = guild.channels.values()
            platform = DiscordPlatform(
                DiscordConfig(token=dc.token, guild_ready_timeout=0.05), uow=uow, budget=budget
            )
            platform.attach_events(events)
            router = Router([platform])
            spaces.mirror_native_events(router.native_event_platforms())
            engine, outbox = sql_engine(db, uow, router, engine_clock, budget, wake)
            await platform.start()
            try:
                yield Env(
                    dc,
                    guild,
                    ChatRef(Platform.DISCORD, str(text.id), scope=str(guild.id)),
                    UserRef(Platform.DISCORD, str(guild.owner_id)),
                    spaces,
                    engine,
                    outbox,
                    engine_clock,
                    vt,
                )
            finally:
                await platform.stop()
                await db.dispose()


async def test_events_both_ways(env: Env) -> None:
    dc = env.dc
    space = await env.spaces.schedule(
        ScheduleSpace(Actor(env.host), env.chat, "Weekly AMA", "tomorrow 20:00")
    )
    await env.deliver()
    (card,) = dc.messages_in(int(env.chat.id))
    (event,) = env.guild.events.values()
    assert event.name == "Weekly AMA" and event.status == SCHEDULED
    assert event.fields["entity_type"] == EXTERNAL
    assert event.fields["entity_metadata"]["location"].endswith(space.id)

    fan = dc.add_member(env.guild, "fan")
    await dc.mark_interested(event, fan)

    async def subscribed() -> bool:
        return await env.spaces.subscriber_count(space.id) == 1

    await _eventually(subscribed)

    mod = dc.add_member(env.guild, "mod", roles=[dc.add_role(env.guild, "Event team", Perm.MANAGE_EVENTS)])
    await dc.start_event_in_ui(event, mod)

    async def live() -> bool:
        return (await env.spaces.get(space.id)).status is SpaceStatus.LIVE

    await _eventually(live)
    await env.deliver()
    assert len(dc.dm_counts(containing="is live now")) == 1
    assert len(dc.dms_to(fan)) == 1
    assert "LIVE" in card.embeds[0]["title"]
    assert event.status == ACTIVE

    await env.spaces.end(EndSpace(Actor(env.host), space.id))
    await env.deliver()
    assert event.status == COMPLETED
    assert (await env.outbox.counts()).get(str(DeliveryStatus.DEAD), 0) == 0


async def _eventually(check: Any, within: float = 5.0) -> None:
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)
