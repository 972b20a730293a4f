"""Telegram replies (answers to commands) go through the send budget the deliveries use, and wait flood
limits out instead of being dropped after a few rejections. Real PTB against the emulator; the budget is the
shared one (on SQLite) on a controllable clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bots.runtime.budget import SHARED_LIMITS
from bots.telegram.adapter import REPLY_PATIENCE
from bots.telegram.render import plain
from core.refs import Platform
from storage.budget import SqlBudget
from storage.db import make_engine
from storage.migrate import upgrade
from tests.bots.telegram.conftest import TgEnv

TG = Platform.TELEGRAM


@dataclass
class FakeTime:
    now: float = 1_800_000_000.0
    slept: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
async def budgeted(tg_env: TgEnv, tmp_path: Path) -> AsyncIterator[tuple[TgEnv, SqlBudget, FakeTime]]:
    url = f"sqlite:///{tmp_path / 'budget.db'}"
    await upgrade(url)
    engine = make_engine(url)
    ft = FakeTime()
    budget = SqlBudget(engine, SHARED_LIMITS, clock=ft.clock, sleep=ft.sleep)
    tg_env.platform._budget = budget
    try:
        yield tg_env, budget, ft
    finally:
        await engine.dispose()


async def test_replies_are_paced_with_the_deliveries(budgeted: tuple[TgEnv, SqlBudget, FakeTime]) -> None:
    env, budget, ft = budgeted
    group = env.tg.create_group("Builders")
    await budget.acquire(TG, str(group.id))  # a card went out in this group a moment ago (another process)
    start = ft.now
    assert await env.platform.reply(group.id, plain("one")) is not None
    assert await env.platform.reply(group.id, plain("two")) is not None
    assert ft.now - start == pytest.approx(2 * SHARED_LIMITS[TG].chat_interval, abs=1e-3)
    assert [m.text for m in env.tg.bot_messages(group)] == ["one", "two"]


async def test_a_reply_waits_flood_limits_out_instead_of_being_dropped(
    budgeted: tuple[TgEnv, SqlBudget, FakeTime],
) -> None:
    env, _budget, ft = budgeted
    user = env.tg.create_user("Ada", started=True)
    env.tg.fail_next("sendMessage", 429, "Too Many Requests: retry after 5", retry_after=5, times=6)
    start = ft.now
    assert await env.platform.reply(user.id, plain("Reminder set")) is not None
    assert [m.text for m in env.tg.dms_to(user)] == ["Reminder set"]  # once, after six rejections
    assert ft.now - start >= 6 * 5  # each hold waited out — and held every process (the shared budget)
    assert len(env.tg.calls("sendMessage")) == 7


async def test_a_reply_gives_up_only_after_a_long_wait(budgeted: tuple[TgEnv, SqlBudget, FakeTime]) -> None:
    env, _budget, ft = budgeted
    user = env.tg.create_user("Ada", started=True)
    env.tg.fail_next("sendMessage", 429, "Too Many Requests: retry after 40", retry_after=40, times=10)
    start = ft.now
    assert await env.platform.reply(user.id, plain("too late to matter")) is None
    assert REPLY_PATIENCE - 40 <= ft.now - start <= REPLY_PATIENCE
    assert not env.tg.dms_to(user)
