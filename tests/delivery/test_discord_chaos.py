"""Chaos on Discord: 4 `spaces worker` processes on PostgreSQL (the CLI, as deployed, with the real discord.py)
fan a live notice out to a few hundred Discord members while a random worker is SIGKILLed every 2–5 s and
restarted, and the emulator answers 2 % of the sends with HTTP 500 (not delivered) and cuts 1 % of the
connections after delivering the message.

Counted at the emulator, per DM channel: nobody is lost and nobody gets the notice twice. Unlike Telegram,
Discord has an idempotency key — every send carries the delivery's key as ``nonce`` with ``enforce_nonce`` —
so a send repeated after a crash or a lost answer is answered with the message already shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from bots.runtime.clock import SystemClock
from core.commands import ScheduleSpace, StartSpace, Subscribe
from core.refs import ChatRef, Platform, UserRef
from core.rules import Actor
from core.services.spaces import SpaceService
from storage.db import make_engine, make_session_factory, normalize_url
from storage.migrate import upgrade
from storage.notify import PgWakeChannel
from storage.stores import unit_of_work_factory
from tests.databases import new_database
from tests.delivery.fleet import steady_emulator
from tests.delivery.harness import (
    LIVE_TEXT,
    Chaos,
    Fleet,
    _kill_at_random,
    _settled,
    _wait,
    start_workers,
)
from tests.fakes.discord import DiscordEmulator, RateRule

SUBSCRIBERS = 400
WORKERS = 4


@pytest.fixture
def pg_url(tmp_path: Path) -> Iterator[str]:
    with new_database("postgres", tmp_path) as url:
        yield url


@pytest.mark.slow
async def test_a_discord_fan_out_survives_killed_workers_with_no_duplicate(
    pg_url: str, tmp_path: Path
) -> None:
    logs = tmp_path / "workers"
    logs.mkdir()
    chaos = Chaos(seed=10)
    await upgrade(pg_url)
    db = make_engine(normalize_url(pg_url))
    channel = PgWakeChannel(db)

    spaces = SpaceService(
        unit_of_work_factory(make_session_factory(db)), SystemClock(), channel, default_tz="UTC"
    )
    fleet: Fleet | None = None
    chaos_task: asyncio.Task[None] | None = None
    steady = contextlib.ExitStack()
    try:
        # Discord publishes no limit for opening DMs: here they open at the global rate (see test_fanout.py)
        async with DiscordEmulator(dm_open_rate=RateRule(50, 1.0)) as dc:
            guild = dc.create_guild("Fans")
            (text,) = guild.channels.values()
            chat = ChatRef(Platform.DISCORD, str(text.id), scope=str(guild.id))
            host = UserRef(Platform.DISCORD, str(guild.owner_id))
            fans = dc.add_members(guild, SUBSCRIBERS, prefix="fan")
            space = await spaces.schedule(ScheduleSpace(Actor(host), chat, "Launch", "in 2 hours"))
            for fan in fans:
                user = UserRef(Platform.DISCORD, str(fan.user.id))
                await spaces.subscribe(Subscribe(user, space.id, via_chat=chat))
            fleet = await start_workers(
                {"DISCORD_BOT_TOKEN": dc.token, "DISCORD_API_BASE": dc.base_url}, pg_url, logs, WORKERS, 120
            )
            await _wait(lambda: _settled(pg_url, [space.id], due_only=True), 120, "the card was not posted")
            assert len(dc.messages_in(text)) == 1  # the card
            dc.inject_faults(seed=chaos.seed, error_rate=chaos.error_rate, reset_rate=chaos.reset_rate)
            steady.enter_context(steady_emulator())
            t0 = time.monotonic()
            await spaces.start(StartSpace(Actor(host), space.id))
            kills = [0]
            chaos_task = asyncio.create_task(_kill_at_random(fleet, list(fleet.procs), chaos, kills))

            async def all_received() -> bool:
                return len(dc.received(containing=LIVE_TEXT)) >= SUBSCRIBERS

            await _wait(all_received, 300, "not every subscriber received the live notice")
            seconds = time.monotonic() - t0
            chaos_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await chaos_task
            await _wait(lambda: _settled(pg_url, [space.id]), 120, "the outbox did not settle")
            steady.close()
            await fleet.stop()
            fleet = None
            dm_channels = {dc.dm_channel(f).id for f in fans if dc.dm_channel(f) is not None}  # type: ignore[union-attr]
            received = Counter(
                {cid: n for cid, n in dc.received(containing=LIVE_TEXT).items() if cid in dm_channels}
            )
            print(
                f"\ndiscord chaos: {SUBSCRIBERS} subscribers, {WORKERS} workers, {kills[0]} SIGKILLs, "
                f"{dc.faults_injected['error']} × HTTP 500, {dc.faults_injected['reset']} answers lost, "
                f"{sum(dc.nonce_hits.values())} resends answered by nonce, {dc.count_429} × 429: "
                f"lost {SUBSCRIBERS - len(received)}, duplicates {sum(n - 1 for n in received.values())}, "
                f"fan-out {seconds:.1f} s"
            )
            assert kills[0] >= 3, "the chaos did not happen: the fan-out ended too soon"
            assert len(received) == SUBSCRIBERS  # 0 lost
            assert set(received.values()) == {1}  # 0 duplicates: the nonce
            assert not dc.pings  # nobody was mentioned: every DM got through
    finally:
        steady.close()
        if chaos_task is not None and not chaos_task.done():
            chaos_task.cancel()
        if fleet is not None:
            await fleet.stop()
        await channel.close()
        await db.dispose()
