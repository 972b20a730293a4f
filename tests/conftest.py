"""Shared fixtures. ``core_env`` wires the core services over in-memory stores, a fake platform and a
controllable clock — the cosmic-python "bootstrap with fakes" shape."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

import pytest

from bots.runtime.budget import Unlimited
from core.refs import ChatRef, Platform, UserRef
from core.rules import Actor
from core.services.deliveries import DeliveryEngine, EngineConfig
from core.services.spaces import SpaceService
from tests.fakes.clock import FakeClock, RecordingWake
from tests.fakes.memory import MemoryDB
from tests.fakes.platform import FakePlatform


class StaticLinks:
    def space(self, space_id: str) -> str:
        return f"https://spaces.test/s/{space_id}"


@dataclass
class CoreEnv:
    clock: FakeClock
    db: MemoryDB
    platform: FakePlatform
    wake: RecordingWake
    spaces: SpaceService
    engine: DeliveryEngine

    chat = ChatRef(Platform.CONSOLE, "main")
    host = UserRef(Platform.CONSOLE, "host")

    def actor(self, name: str = "host", *, mod: bool = False, locale: str = "en") -> Actor:
        return Actor(UserRef(Platform.CONSOLE, name), is_moderator=mod, locale=locale)

    async def run(self) -> int:
        return await self.engine.deliver_due()

    async def advance(self, delta: timedelta) -> int:
        self.clock.advance(delta)
        return await self.run()


@pytest.fixture
def core_env() -> CoreEnv:
    clock = FakeClock()
    db = MemoryDB()
    platform = FakePlatform()
    wake = RecordingWake()
    spaces = SpaceService(db.uow, clock, wake, default_tz="Europe/Paris")
    engine = DeliveryEngine(
        db.outbox(),
        db.uow,
        platform,
        clock,
        Unlimited(),
        StaticLinks(),
        wake,
        EngineConfig(worker_id="w1"),
        rng=random.Random(7),
    )
    return CoreEnv(clock, db, platform, wake, spaces, engine)
