"""The Discord adapter against the emulator: the real discord.py, pointed at tests/fakes/discord.py."""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from bots.discord.adapter import DiscordConfig, DiscordPlatform
from core.ports import Budget, ChatPlatform, UnitOfWorkFactory, WakeUps
from core.refs import Platform, UserRef
from core.services.deliveries import DeliveryEngine, EngineConfig
from storage.stores import SqlOutbox
from tests.bots.telegram.conftest import EngineClock, Links, VirtualTime
from tests.fakes.discord import DiscordEmulator, pointed_at


@dataclass
class Sink:
    """Records what the gateway's scheduled-event dispatches asked of the core's EventsService."""

    calls: list[tuple[Any, ...]] = field(default_factory=list)

    async def status_changed(
        self, platform: Platform, scope: str, event_id: str, status: Any, actor: UserRef | None
    ) -> None:
        self.calls.append(("status", scope, event_id, str(getattr(status, "name", status)), actor))

    async def interest(
        self, platform: Platform, scope: str, event_id: str, user: UserRef, interested: bool
    ) -> None:
        self.calls.append(("interest", scope, event_id, user.id, interested))


@pytest_asyncio.fixture
async def dc() -> AsyncIterator[DiscordEmulator]:
    async with DiscordEmulator() as emulator:
        with pointed_at(emulator):
            yield emulator


@contextlib.asynccontextmanager
async def running(dc: DiscordEmulator, **options: Any) -> AsyncIterator[DiscordPlatform]:
    """A started DiscordPlatform (gateway connected unless ``receive=False``), stopped on exit."""
    receive = options.pop("receive", True)
    events = options.pop("events", None)
    uow = options.pop("uow", None)
    budget = options.pop("budget", None)
    config = DiscordConfig(token=dc.token, guild_ready_timeout=0.05, ready_timeout=10.0, **options)
    p = DiscordPlatform(config, receive=receive, events=events, uow=uow, budget=budget)
    try:
        await p.start()
        yield p
    finally:
        await p.stop()


async def deliver_until_quiet(
    engine: DeliveryEngine, outbox: SqlOutbox, engine_clock: EngineClock, vt: VirtualTime, rounds: int = 500
) -> None:
    """Run the engine until nothing is due soon; a row the budget (or a 429) put back a few seconds is
    waited for in Discord time, and the engine's clock moves on by as much."""
    for _ in range(rounds):
        await engine.deliver_due()
        if (await outbox.counts()).get("claimed", 0):
            continue
        nxt = await outbox.next_due()
        if nxt is None:
            return
        gap = nxt - engine_clock.now()
        if gap > timedelta(minutes=1):
            return
        if gap > timedelta(0):
            await vt.sleep(gap.total_seconds())
            engine_clock.waited += gap
    raise AssertionError("deliveries did not settle")


def sql_engine(
    db: AsyncEngine,
    uow: UnitOfWorkFactory,
    platforms: ChatPlatform,
    clock: EngineClock,
    budget: Budget,
    wake: WakeUps,
    *,
    worker_id: str = "test",
    seed: int = 3,
) -> tuple[DeliveryEngine, SqlOutbox]:
    """The delivery engine these tests run on SQL: its outbox, and a seeded jitter (repeatable runs)."""
    outbox = SqlOutbox(db)
    engine = DeliveryEngine(
        outbox,
        uow,
        platforms,
        clock,
        budget,
        Links(),
        wake,
        EngineConfig(worker_id=worker_id),
        rng=random.Random(seed),
    )
    return engine, outbox
