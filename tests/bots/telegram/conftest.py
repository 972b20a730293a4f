"""End-to-end harness: the real python-telegram-bot (long polling) against the Bot API emulator, on the
real core, storage (SQLite) and delivery engine. Core time is a FakeClock; the send budget and the
emulator's flood windows share a virtual clock, so pacing is real but no test sleeps for it."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bots.router import Router
from bots.runtime.budget import TokenBucketBudget
from bots.telegram.adapter import TelegramConfig, TelegramPlatform
from core.models import Delivery, DeliveryStatus
from core.services.deliveries import DeliveryEngine, EngineConfig
from core.services.profiles import ProfileService
from core.services.spaces import SpaceService
from storage.db import make_engine, make_session_factory
from storage.migrate import upgrade
from storage.stores import SqlOutbox, unit_of_work_factory
from storage.tables import delivery_from_row, delivery_t
from tests.fakes.clock import FakeClock, RecordingWake
from tests.fakes.telegram import TelegramEmulator


class VirtualTime:
    """Telegram time, running SCALE times faster than the wall clock (not more: it also magnifies network jitter): the send budget and the emulator's
    flood windows both read it, so pacing and limits are exactly as in production, just quicker."""

    SCALE = 4.0

    def __init__(self) -> None:
        self._origin = time.monotonic()

    @property
    def t(self) -> float:
        return self.monotonic()

    def monotonic(self) -> float:
        return 1000.0 + (time.monotonic() - self._origin) * self.SCALE

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds / self.SCALE)


class Links:
    def space(self, space_id: str) -> str:
        return f"https://spaces.example/s/{space_id}"


@dataclass
class TgEnv:
    tg: TelegramEmulator
    platform: TelegramPlatform
    spaces: SpaceService
    profiles: ProfileService
    engine: DeliveryEngine
    outbox: SqlOutbox
    clock: FakeClock
    vt: VirtualTime
    db: Any

    async def deliver(self, *, rounds: int = 200) -> None:
        """Run the engine until nothing is due now (honouring retry_after by moving the fake clock)."""
        for _ in range(rounds):
            await self.engine.deliver_due()
            counts = await self.outbox.counts()
            if counts.get("claimed", 0) == 0:
                nxt = await self.outbox.next_due()
                if nxt is None or nxt > self.clock.now() + _RETRY_HORIZON:
                    return
                self.clock.set(max(self.clock.now(), nxt))
        raise AssertionError("deliveries did not settle")

    async def eventually(self, check: Callable[[], Awaitable[Any]], within: float = 5.0) -> Any:
        """Wait for PTB (polling in the background) to have handled what the test just did."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            result = await check()
            if result:
                return result
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("condition not met in time")
            await asyncio.sleep(0.01)

    async def rows(self) -> list[Delivery]:
        async with self.db.connect() as c:
            return [delivery_from_row(r) for r in await c.execute(select(delivery_t))]

    async def count(self, status: DeliveryStatus) -> int:
        return (await self.outbox.counts()).get(str(status), 0)


_RETRY_HORIZON = timedelta(minutes=5)


@pytest.fixture
async def tg_env(tmp_path: Path) -> AsyncIterator[TgEnv]:
    vt = VirtualTime()
    url = f"sqlite:///{tmp_path / 'spaces.db'}"
    await upgrade(url)
    db = make_engine(url)
    uow = unit_of_work_factory(make_session_factory(db))
    clock = FakeClock(datetime(2026, 11, 25, 16, 0, tzinfo=UTC))  # a Wednesday, 17:00 in Paris
    wake = RecordingWake()
    spaces = SpaceService(uow, clock, wake, default_tz="Europe/Paris")
    profiles = ProfileService(uow)
    async with TelegramEmulator(clock=vt.monotonic) as tg:
        platform = TelegramPlatform(
            TelegramConfig(
                token=tg.token, api_base=tg.base_url, file_base=tg.base_file_url, poll_timeout=1.0
            ),
            spaces=spaces,
            profiles=profiles,
            links=Links(),
            clock=clock,
            sleep=vt.sleep,
        )
        outbox = SqlOutbox(db)
        engine = DeliveryEngine(
            outbox,
            uow,
            Router([platform]),
            clock,
            TokenBucketBudget(monotonic=vt.monotonic, sleep=vt.sleep),
            Links(),
            wake,
            EngineConfig(worker_id="test"),
            rng=random.Random(3),
        )
        await platform.start()
        try:
            yield TgEnv(tg, platform, spaces, profiles, engine, outbox, clock, vt, db)
        finally:
            await platform.stop()
            await db.dispose()
