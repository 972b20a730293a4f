"""End to end through the delivery engine: a Space scheduled in a Discord channel, its card, 2,000 subscribers
DMed once each when it goes live (the real discord.py against the emulator's limits), counted per recipient
at the emulator; and the DM fallback when DMs are closed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bots.discord.adapter import DiscordConfig, DiscordPlatform
from bots.discord.render import escape
from bots.router import Router
from bots.runtime.budget import TokenBucketBudget
from core.commands import ScheduleSpace, StartSpace, Subscribe
from core.models import DeliveryStatus
from core.refs import ChatRef, Platform, UserRef
from core.rules import Actor
from core.services.deliveries import DeliveryEngine
from core.services.spaces import SpaceService
from storage.db import make_engine, make_session_factory
from storage.migrate import upgrade
from storage.stores import SqlOutbox, unit_of_work_factory
from tests.bots.discord.conftest import deliver_until_quiet, sql_engine
from tests.bots.telegram.conftest import EngineClock, VirtualTime
from tests.fakes.clock import FakeClock, RecordingWake
from tests.fakes.discord import DcGuild, DiscordEmulator, RateRule, pointed_at


@dataclass
class Env:
    dc: DiscordEmulator
    guild: DcGuild
    chat: ChatRef
    host: UserRef
    spaces: SpaceService
    engine: DeliveryEngine
    outbox: SqlOutbox
    clock: FakeClock
    engine_clock: EngineClock
    vt: VirtualTime

    async def deliver(self, rounds: int = 3000) -> None:
        await deliver_until_quiet(self.engine, self.outbox, self.engine_clock, self.vt, rounds)

    async def count(self, status: DeliveryStatus) -> int:
        return (await self.outbox.counts()).get(str(status), 0)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    vt = VirtualTime()
    url = f"sqlite:///{tmp_path / 'spaces.db'}"
    await upgrade(url)
    db = make_engine(url)
    uow = unit_of_work_factory(make_session_factory(db))
    clock = FakeClock(datetime(2026, 11, 25, 16, 0, tzinfo=UTC))
    engine_clock = EngineClock(clock)
    wake = RecordingWake()
    spaces = SpaceService(uow, clock, wake, default_tz="Europe/Paris")
    budget = TokenBucketBudget(monotonic=vt.monotonic, sleep=vt.sleep)
    # Discord publishes no limit for opening DMs; the emulator's cautious default (10 per 10 s) would make
    # this a test of that guess. Here DM channels open at the global rate: every request — each open and
    # each message — must then stay under the global 50 requests/s together.
    async with DiscordEmulator(clock=vt.monotonic, dm_open_rate=RateRule(50, 1.0)) as dc:
        with pointed_at(dc):
            guild = dc.create_guild("Builders")
            (text,) = guild.channels.values()
            platform = DiscordPlatform(
                DiscordConfig(token=dc.token, guild_ready_timeout=0.05), receive=False, uow=uow, budget=budget
            )
            engine, outbox = sql_engine(db, uow, Router([platform]), engine_clock, budget, wake)
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
                    clock,
                    engine_clock,
                    vt,
                )
            finally:
                await platform.stop()
                await db.dispose()


async def _scheduled(env: Env, title: str = "Weekly AMA") -> str:
    space = await env.spaces.schedule(ScheduleSpace(Actor(env.host), env.chat, title, "tomorrow 20:00"))
    await env.deliver()
    (card,) = env.dc.messages_in(int(env.chat.id))
    assert card.embeds[0]["title"] == escape(title)
    return space.id


@pytest.mark.slow
async def test_two_thousand_subscribers_notified_once_under_the_limits(env: Env) -> None:
    space_id = await _scheduled(env)
    fans = env.dc.add_members(env.guild, 2000, prefix="fan")
    for fan in fans:
        user = UserRef(Platform.DISCORD, str(fan.user.id))
        await env.spaces.subscribe(Subscribe(user, space_id, via_chat=env.chat))
    await env.spaces.start(StartSpace(Actor(env.host), space_id))
    t0 = env.vt.t
    await env.deliver()
    received = env.dc.dm_counts(containing="is live now")
    assert len(received) == 2000 and set(received.values()) == {1}  # 0 lost, 0 duplicates
    assert {f.user.id for f in fans} == set(received)
    assert await env.count(DeliveryStatus.DEAD) == 0
    assert sum(env.dc.dm_opens.values()) == 2000  # each DM channel opened once
    seconds = env.vt.t - t0
    print(f"\n2,000 live notices on Discord: {env.dc.count_429} × 429, {seconds:.0f} s of Discord time")
    print(f"most requests tried in any second: {env.dc.max_in_window(1.0)}")
    # The budget paces; 429s are the exception, each retried after retry_after without loss or duplicate
    # (asserted above). Unpaced, most of the 4,000 requests would be refused; the few left come from
    # network jitter at a window's edge, which the test clock (running 4x fast) magnifies.
    assert env.dc.count_429 < 100
    assert seconds >= 4000 / 50  # 2,000 opens + 2,000 messages, never faster than 50 requests/s
    assert not env.dc.pings  # nobody was mentioned


async def test_closed_dms_fall_back_to_one_mention_in_the_channel(env: Env) -> None:
    space_id = await _scheduled(env, "@everyone <@&1> party")
    open_fans = env.dc.add_members(env.guild, 3, prefix="open")
    shy = env.dc.add_members(env.guild, 3, prefix="shy")
    for fan in shy:
        env.dc.close_dms(fan)
    for fan in (*open_fans, *shy):
        await env.spaces.subscribe(
            Subscribe(UserRef(Platform.DISCORD, str(fan.user.id)), space_id, via_chat=env.chat)
        )
    await env.spaces.start(StartSpace(Actor(env.host), space_id))
    await env.deliver()
    assert {f.user.id: len(env.dc.dms_to(f)) for f in open_fans} == {f.user.id: 1 for f in open_fans}
    assert all(env.dc.dms_to(f) == [] for f in shy)
    # the closed ones are pinged, once each, and nobody else (the title's @everyone and role stay text)
    assert dict(env.dc.pings) == {f.user.id: 1 for f in shy}
    messages = env.dc.messages_in(int(env.chat.id))
    assert not any(m.mention_everyone or m.mention_roles for m in messages)
    assert await env.count(DeliveryStatus.DEAD) == 0


@pytest.mark.slow  # discord.py sleeps (1 s, then 3 s …) before retrying a 500 itself
async def test_lost_answers_and_server_errors_lose_nothing_and_duplicate_nothing(env: Env) -> None:
    """Sends fail at random: 500s that delivered nothing (retried), and answers lost after the message
    landed (the retry carries the same nonce: Discord shows the original, never a second message)."""
    space_id = await _scheduled(env)
    fans = env.dc.add_members(env.guild, 300, prefix="fan")
    for fan in fans:
        await env.spaces.subscribe(
            Subscribe(UserRef(Platform.DISCORD, str(fan.user.id)), space_id, via_chat=env.chat)
        )
    env.dc.inject_faults(seed=11, error_rate=0.05, reset_rate=0.1)
    await env.spaces.start(StartSpace(Actor(env.host), space_id))
    await env.deliver()
    env.dc.inject_faults(seed=11)  # off
    received = env.dc.received(containing="is live now")
    assert len(received) == 300 and set(received.values()) == {1}  # per DM channel: 0 lost, 0 duplicates
    assert {env.dc.dm_channel(f).id for f in fans} == set(received)  # type: ignore[union-attr]
    assert sum(env.dc.faults_injected.values()) > 0 and sum(env.dc.nonce_hits.values()) > 0
    assert await env.count(DeliveryStatus.DEAD) == 0
