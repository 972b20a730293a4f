"""End-to-end harness: the real python-telegram-bot (long polling) against the Bot API emulator, on the
real core, storage (SQLite) and delivery engine. Core time is a FakeClock; the send budget and the
emulator's flood windows share a virtual clock, so pacing is real but no test sleeps for it.

The bot's answers go through the outbox like everything else: an :class:`AutoDeliver` runs the engine in the
background whenever something is due at the (fake) current time, so a test waits for an answer where it
arrives — at the emulator (``tg.wait_for_message``). A send the budget (or a 429) puts back for a few
seconds is waited for in Telegram time, and the engine's clock (:class:`EngineClock`) moves on by as much,
as the real one would have; the test's clock stands still. Later times (reminders) still wait for the test
to move the clock and call ``env.deliver()``."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from bots.router import Router
from bots.runtime.budget import TokenBucketBudget
from bots.telegram.adapter import TelegramConfig, TelegramPlatform
from bots.web.app import WebDeps, make_web_app
from core.models import Delivery, DeliveryStatus
from core.services.deliveries import DeliveryEngine, EngineConfig
from core.services.profiles import ProfileService
from core.services.replies import RepliesService
from core.services.spaces import SpaceService
from storage.db import make_engine, make_session_factory
from storage.migrate import upgrade
from storage.stores import SqlOutbox, unit_of_work_factory
from storage.tables import delivery_from_row, delivery_t
from tests.fakes.clock import FakeClock
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


class EngineClock:
    """The delivery engine's clock in these tests: the test's FakeClock, plus the time the engine spent
    waiting for its send budget (which the real engine spends on the real clock)."""

    def __init__(self, base: FakeClock) -> None:
        self.base = base
        self.waited = timedelta(0)

    def now(self) -> datetime:
        return self.base.now() + self.waited


PACING_HORIZON = timedelta(seconds=20)  # a row put back for up to this long is waited for, in Telegram time


class AutoDeliver:
    """core.ports.WakeUps for the end-to-end tests: whatever is armed for now or earlier (an answer, a
    card) is delivered at once by a background run of the engine, one run at a time (``lock``, shared
    with :meth:`TgEnv.deliver`). A row paced a few seconds later is waited for (virtual time) and sent;
    anything further away waits for the test's clock."""

    def __init__(self, clock: FakeClock, engine_clock: EngineClock, vt: VirtualTime) -> None:
        self._clock = clock
        self.engine_clock = engine_clock
        self._vt = vt
        self._due = asyncio.Event()
        self.lock = asyncio.Lock()
        self.armed: list[datetime] = []
        self.running = False

    @property
    def idle(self) -> bool:
        return not self.running and not self._due.is_set()

    def arm(self, at: datetime) -> None:
        self.armed.append(at)
        if at <= self._clock.now():
            self._due.set()

    async def run(self, engine: DeliveryEngine, outbox: SqlOutbox) -> None:
        while True:
            self.running = False
            await self._due.wait()
            self._due.clear()
            self.running = True
            while True:
                async with self.lock:
                    await engine.deliver_due()
                nxt = await outbox.next_due()
                gap = (nxt - self.engine_clock.now()) if nxt is not None else None
                if gap is None or gap > PACING_HORIZON:
                    break
                if gap <= timedelta(0):
                    await asyncio.sleep(0.01)  # due already (written meanwhile): another run
                else:
                    await self._vt.sleep(gap.total_seconds())
                    self.engine_clock.waited += gap


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
    wake: AutoDeliver
    replies: RepliesService
    web_url: str = ""  # webhook mode: the web app serving the webhook and /healthz

    async def deliver(self, *, rounds: int = 200) -> None:
        """Run the engine until nothing is due now (honouring retry_after by moving the fake clock)."""
        for _ in range(rounds):
            async with self.wake.lock:
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

    async def settled(self, within: float = 10.0) -> None:
        """The explicit signal that nothing more will reach the emulator unless the test moves its clock:
        every update confirmed (so handled), the engine idle, no row claimed or due within the pacing
        horizon. What a "nothing else happened" assertion waits on."""
        await self.tg.wait_updates_consumed(within)

        async def quiet() -> bool:
            if not self.wake.idle or (await self.outbox.counts()).get("claimed", 0):
                return False
            nxt = await self.outbox.next_due()
            return nxt is None or nxt > self.wake.engine_clock.now() + PACING_HORIZON

        await self.eventually(quiet, within)

    async def rows(self) -> list[Delivery]:
        async with self.db.connect() as c:
            return [delivery_from_row(r) for r in await c.execute(select(delivery_t))]

    async def count(self, status: DeliveryStatus) -> int:
        return (await self.outbox.counts()).get(str(status), 0)


_RETRY_HORIZON = timedelta(minutes=5)


@contextlib.asynccontextmanager
async def open_env(
    tmp_path: Path,
    *,
    webhook: bool = False,
    emulator: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
) -> AsyncIterator[TgEnv]:
    """The harness. ``webhook``: Telegram posts updates to the real web app (bots/web/app.py, with
    /healthz) instead of the bot polling; ``emulator``/``config``: TelegramEmulator/TelegramConfig options."""
    vt = VirtualTime()
    url = f"sqlite:///{tmp_path / 'spaces.db'}"
    await upgrade(url)
    db = make_engine(url)
    uow = unit_of_work_factory(make_session_factory(db))
    clock = FakeClock(datetime(2026, 11, 25, 16, 0, tzinfo=UTC))  # a Wednesday, 17:00 in Paris
    engine_clock = EngineClock(clock)
    wake = AutoDeliver(clock, engine_clock, vt)
    spaces = SpaceService(uow, clock, wake, default_tz="Europe/Paris")
    profiles = ProfileService(uow)
    replies = RepliesService(uow, clock, wake)
    async with TelegramEmulator(clock=vt.monotonic, **(emulator or {})) as tg:
        options: dict[str, Any] = {"poll_timeout": 1.0, **(config or {})}
        if webhook:
            options.update(mode="webhook", webhook_secret=WEBHOOK_SECRET)
        platform = TelegramPlatform(
            TelegramConfig(token=tg.token, api_base=tg.base_url, file_base=tg.base_file_url, **options),
            spaces=spaces,
            profiles=profiles,
            replies=replies,
            links=Links(),
            clock=clock,
            sleep=vt.sleep,
        )
        outbox = SqlOutbox(db)
        engine = DeliveryEngine(
            outbox,
            uow,
            Router([platform]),
            engine_clock,
            TokenBucketBudget(monotonic=vt.monotonic, sleep=vt.sleep),
            Links(),
            wake,
            EngineConfig(worker_id="test"),
            rng=random.Random(3),
        )
        runner: web.AppRunner | None = None
        web_url = ""
        if webhook:  # the real web app, as `spaces web` serves it
            app = make_web_app(
                WebDeps(
                    spaces=spaces, outbox=outbox, registry=CollectorRegistry(), routes=platform.web_routes()
                )
            )
            runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            web_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
            platform.config = dataclasses.replace(platform.config, public_url=web_url)
        await platform.start()
        deliverer = asyncio.create_task(wake.run(engine, outbox), name="auto-deliver")
        env = TgEnv(tg, platform, spaces, profiles, engine, outbox, clock, vt, db, wake, replies, web_url)
        try:
            yield env
        finally:
            deliverer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await deliverer
            await platform.stop()
            if runner is not None:
                await runner.cleanup()
            await db.dispose()


WEBHOOK_SECRET = "s3cret-Token_1"


@pytest.fixture
async def tg_env(tmp_path: Path) -> AsyncIterator[TgEnv]:
    async with open_env(tmp_path) as env:
        yield env


@pytest.fixture
async def hook_env(tmp_path: Path) -> AsyncIterator[TgEnv]:
    """Webhook mode: updates reach the web app over HTTP; ``env.web_url`` is the app's address."""
    async with open_env(tmp_path, webhook=True) as env:
        yield env
