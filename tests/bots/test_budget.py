from __future__ import annotations

import math
from pathlib import Path

import pytest

from bots.runtime.budget import Rate, TokenBucketBudget, Unlimited
from core.refs import Platform
from tests.conftest import CoreEnv


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def ft() -> FakeTime:
    return FakeTime()


def budget(
    ft: FakeTime, rate: float = 10, burst: float = 10, chat: Rate | None = None, group: Rate | None = None
) -> TokenBucketBudget:
    return TokenBucketBudget(
        {Platform.TELEGRAM: Rate(rate, burst)},
        {Platform.TELEGRAM: chat} if chat else {},
        {Platform.TELEGRAM: group} if group else {},
        monotonic=ft.monotonic,
        sleep=ft.sleep,
    )


async def test_global_rate_paces_a_fan_out(ft: FakeTime) -> None:
    b = budget(ft)
    for _ in range(110):
        await b.acquire(Platform.TELEGRAM)
    # 10 burst + 100 at 10/s: about 10 seconds, never faster than the limit
    assert ft.now == pytest.approx(10.0, abs=0.2)


async def test_per_chat_limit(ft: FakeTime) -> None:
    b = budget(ft, rate=100, burst=100, chat=Rate(1.0, 1.0))
    for _ in range(5):
        await b.acquire(Platform.TELEGRAM, "100")
    assert ft.now == pytest.approx(4.0)
    before = ft.now
    await b.acquire(Platform.TELEGRAM, "200")  # another chat is not held back
    assert ft.now == before


async def test_penalty_after_a_429_holds_every_sender(ft: FakeTime) -> None:
    b = budget(ft)
    await b.penalise(Platform.TELEGRAM, 5.0)
    waited = await b.acquire(Platform.TELEGRAM)
    assert waited == pytest.approx(5.0)


async def test_unlisted_platform_is_not_paced(ft: FakeTime) -> None:
    b = budget(ft)
    for _ in range(1000):
        await b.acquire(Platform.SLACK)
    assert ft.now == 0.0


async def test_telegram_groups_get_at_most_20_messages_a_minute(ft: FakeTime) -> None:
    b = TokenBucketBudget(monotonic=ft.monotonic, sleep=ft.sleep)  # production defaults
    stamps = []
    for _ in range(60):
        await b.acquire(Platform.TELEGRAM, "-1001")
        stamps.append(ft.now)
    # in any sliding minute, at most 20 (Telegram's group limit)
    assert max(sum(1 for t in stamps if s <= t < s + 60) for s in stamps) <= 20
    before = ft.now
    await b.acquire(Platform.TELEGRAM, "42")  # a DM is not a group
    assert ft.now - before < 1


async def test_a_telegram_chat_gets_at_most_one_message_in_any_second(ft: FakeTime) -> None:
    b = TokenBucketBudget(monotonic=ft.monotonic, sleep=ft.sleep)  # production defaults: no burst
    stamps = []
    for _ in range(5):
        await b.acquire(Platform.TELEGRAM, "42")
        stamps.append(ft.now)
    assert max(sum(1 for t in stamps if s <= t < s + 1) for s in stamps) == 1


async def test_global_defaults_fit_a_sliding_second(ft: FakeTime) -> None:
    b = TokenBucketBudget(monotonic=ft.monotonic, sleep=ft.sleep)
    stamps = []
    for i in range(200):
        await b.acquire(Platform.TELEGRAM, str(i))
        stamps.append(ft.now)
    assert max(sum(1 for t in stamps if s <= t < s + 1) for s in stamps) <= 30  # ~30 messages/s


async def test_a_chat_429_holds_back_that_chat_only(ft: FakeTime) -> None:
    b = budget(ft, chat=Rate(100, 100))
    await b.penalise(Platform.TELEGRAM, 30.0, chat="-100")
    assert await b.acquire(Platform.TELEGRAM, "7") == 0  # other chats and DMs go on
    assert await b.acquire(Platform.TELEGRAM) == 0
    assert await b.acquire(Platform.TELEGRAM, "-100") == pytest.approx(30.0)


def test_paid_telegram_broadcasts_lift_the_telegram_rate_only() -> None:
    from bots.app import budget_rates
    from bots.runtime.budget import DEFAULT_GLOBAL, PAID_TELEGRAM
    from config.settings import Settings

    free = budget_rates(Settings.from_env({}))
    paid = budget_rates(Settings.from_env({"TELEGRAM_PAID_BROADCAST": "true"}))
    assert free == DEFAULT_GLOBAL
    assert (
        paid[Platform.TELEGRAM] == PAID_TELEGRAM
        and paid[Platform.DISCORD] == DEFAULT_GLOBAL[Platform.DISCORD]
    )


def test_paid_telegram_broadcasts_lift_the_shared_telegram_rate_only() -> None:
    from bots.app import shared_limits
    from bots.runtime.budget import PAID_TELEGRAM_SHARED, SHARED_LIMITS
    from config.settings import Settings

    free = shared_limits(Settings.from_env({}))
    paid = shared_limits(Settings.from_env({"TELEGRAM_PAID_BROADCAST": "true"}))
    assert free == SHARED_LIMITS
    assert (
        paid[Platform.TELEGRAM] == PAID_TELEGRAM_SHARED and paid[Platform.DISCORD] == free[Platform.DISCORD]
    )
    assert 1 / PAID_TELEGRAM_SHARED.interval > 900


def test_the_budget_is_shared_whenever_another_process_can_send() -> None:
    from bots.app import Role, shares_budget
    from config.settings import Settings

    sqlite = Settings.from_env({"DATABASE_URL": "sqlite:///x.db"})
    pg = Settings.from_env({"DATABASE_URL": "postgresql://u@h/db"})
    assert not shares_budget(sqlite, Role.RUN)  # one process alone: in memory
    assert shares_budget(sqlite, Role.WORKER) and shares_budget(sqlite, Role.WEB)  # web + worker on one file
    assert all(shares_budget(pg, role) for role in Role)


async def test_the_composition_root_picks_the_budget_by_role(tmp_path: Path) -> None:
    from bots.app import Role, build
    from config.settings import Settings
    from storage.budget import SqlBudget

    url = f"sqlite:///{tmp_path / 'spaces.db'}"
    for role, shared in ((Role.RUN, False), (Role.WEB, True), (Role.WORKER, True)):
        service = await build(Settings.from_env({"DATABASE_URL": url, "PORT": "0"}), role=role)
        try:
            assert isinstance(service.budget, SqlBudget) is shared
            assert service.engine._budget is service.budget
        finally:
            await service.stop()


async def test_a_dm_counts_against_its_private_chats_limit(core_env: CoreEnv) -> None:
    """A DM lands in the person's private chat: the engine asks the budget for that chat (the user's id,
    which is also the private chat's id on Telegram), so a DM and a reply to the same person are spaced."""
    from core.commands import ScheduleSpace, StartSpace, Subscribe
    from core.refs import UserRef

    env = core_env
    asked: list[str | None] = []

    class Recording(Unlimited):
        async def acquire(
            self,
            platform: Platform,
            chat: str | None = None,
            *,
            max_wait: float = math.inf,
            scope: str | None = None,
        ) -> float:
            asked.append(chat)
            return 0.0

    env.engine._budget = Recording()
    space = await env.spaces.schedule(ScheduleSpace(env.actor(), env.chat, "Weekly AMA", "2026-11-25 20:00"))
    alice = UserRef(env.chat.platform, "alice")
    await env.spaces.subscribe(Subscribe(alice, space.id))
    await env.run()
    asked.clear()
    await env.spaces.start(StartSpace(env.actor(), space.id))
    await env.run()
    assert "alice" in asked  # the live notice to alice
    assert env.chat.id in asked  # the card's edit, in the chat
    assert None not in asked


async def test_slack_workspaces_have_a_platform_budget_each(ft: FakeTime) -> None:
    """Slack limits an app per workspace: one busy workspace never slows another; Discord's global limit is
    the bot's, whatever guild a send goes to."""
    b = TokenBucketBudget(
        {Platform.SLACK: Rate(1.0, 1.0), Platform.DISCORD: Rate(1.0, 1.0)},
        {},
        {},
        monotonic=ft.monotonic,
        sleep=ft.sleep,
    )
    for _ in range(3):
        await b.acquire(Platform.SLACK, scope="T1")
    assert ft.now == pytest.approx(2.0)
    before = ft.now
    await b.acquire(Platform.SLACK, scope="T2")
    assert ft.now == before  # another workspace: its own budget
    await b.penalise(Platform.SLACK, 30.0, scope="T1")
    await b.acquire(Platform.SLACK, scope="T3")
    assert ft.now == before  # a 429 in T1 holds back T1 only
    assert await b.acquire(Platform.SLACK, scope="T1", max_wait=1.0) < -29
    await b.acquire(Platform.DISCORD, scope="G1")
    assert await b.acquire(Platform.DISCORD, scope="G2", max_wait=0.5) < 0  # one bot, one global limit


def test_the_shared_budget_keys_slack_by_workspace() -> None:
    from bots.runtime.budget import SHARED_LIMITS

    slack, discord = SHARED_LIMITS[Platform.SLACK], SHARED_LIMITS[Platform.DISCORD]
    assert slack.keys(Platform.SLACK, "C1", "T1") == ("slack@T1", "slack:chat:C1", None)
    assert slack.keys(Platform.SLACK, None, None)[0] == "slack"
    assert discord.keys(Platform.DISCORD, "1", "G1")[0] == "discord"
