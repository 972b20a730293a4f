"""Send budgets: pace every send under each platform's global limit and per-chat limit.

Two implementations of core.ports.Budget:

* :class:`TokenBucketBudget`, in memory, for one process alone (``spaces run`` on SQLite, the embedded
  default): one bucket per platform, plus a keyed bucket per chat where the platform limits chats.
* ``storage.budget.SqlBudget``, in the database, whenever several processes can send (any PostgreSQL
  deployment, and ``spaces web`` / ``spaces worker`` on SQLite): the limits are the platform's, so every
  process — workers and the web process's replies alike — takes its slots from the same rows, and a 429 met
  by one holds back all. :data:`SHARED_LIMITS` are its limits.

The budget paces; a 429 is the exception that proves the pacing wrong — ``penalise`` holds the platform back.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from core.refs import Platform
from storage.budget import SendLimits


@dataclass(frozen=True, slots=True)
class Rate:
    per_second: float
    burst: float


# Published or observed limits, kept a little under the edge. A bucket lets ``burst + rate`` through in
# its first second, and the platforms count in sliding windows: burst + rate stays under the limit.
DEFAULT_GLOBAL: dict[Platform, Rate] = {
    Platform.DISCORD: Rate(42.0, 5.0),  # 50 requests/s global
    Platform.TELEGRAM: Rate(25.0, 3.0),  # ~30 messages/s
    Platform.SLACK: Rate(10.0, 3.0),  # chat.postMessage is special-tier; per-channel is the real limit
    Platform.CONSOLE: Rate(1000.0, 1000.0),
}
# TELEGRAM_PAID_BROADCAST: Telegram lets paid broadcasts through at up to 1,000 messages/s
PAID_TELEGRAM = Rate(900.0, 50.0)
DEFAULT_PER_CHAT: dict[Platform, Rate] = {
    Platform.TELEGRAM: Rate(
        0.8, 1.0
    ),  # 1/s per chat read strictly (no burst), as the shared budget: 1.25 s apart
    Platform.SLACK: Rate(1.0, 3.0),
    Platform.DISCORD: Rate(1.0, 4.0),  # 5 messages / 5 s per channel
}
# Telegram also allows a group 20 messages a minute (its group and supergroup ids are negative):
# 2 + 0.3 x 60 = 20 in any minute.
DEFAULT_PER_GROUP: dict[Platform, Rate] = {Platform.TELEGRAM: Rate(0.3, 2.0)}
# Slack's limits are per app per workspace: each workspace has its own platform budget (core.ports.Budget)
PER_SCOPE: frozenset[Platform] = frozenset({Platform.SLACK})


def is_group(platform: Platform, chat: str) -> bool:
    return platform is Platform.TELEGRAM and chat.startswith("-")


def spacing(count: int, seconds: float, margin: float) -> float:
    """The interval that keeps ``count`` sends in any ``seconds``, with ``margin`` s of room for the jitter
    between our slots and the platform's arrival times: ``count + 1`` slots span ``seconds + margin``."""
    return (seconds + margin) / count


def _telegram_group(chat: str) -> bool:
    return is_group(Platform.TELEGRAM, chat)


# The shared budget's limits: the platforms' published ones, each with a margin for jitter (how much later
# than its slot a message may arrive without crowding the window of the ones after it). The global margin
# costs throughput — 30 / 1.04 = 28.8 messages/s sustained, the fan-out floor x 1.04 — so it is tight: 40 ms,
# of which storage.budget.LATE_LIMIT (10 ms) is for waking up, the rest for the send itself. Chats and groups
# are not throughput-bound: they get a quarter of a second.
CHAT_INTERVAL = 1.25
SHARED_LIMITS: dict[Platform, SendLimits] = {
    # ~30 messages/s; 1 message/s per chat (private or group); 20 messages/min per group (negative ids)
    Platform.TELEGRAM: SendLimits(
        interval=spacing(30, 1.0, 0.04),
        chat_interval=CHAT_INTERVAL,
        group_count=20,
        group_window=61.0,
        is_group=_telegram_group,
    ),
    Platform.DISCORD: SendLimits(
        interval=spacing(50, 1.0, 0.04), chat_interval=CHAT_INTERVAL
    ),  # 50/s; 5 per 5 s
    Platform.SLACK: SendLimits(
        interval=spacing(10, 1.0, 0.04), chat_interval=CHAT_INTERVAL, per_scope=True
    ),  # ~1/s per channel; the platform's rate is per workspace
}
# TELEGRAM_PAID_BROADCAST: up to 1,000 messages/s
PAID_TELEGRAM_SHARED = SendLimits(
    interval=spacing(1000, 1.0, 0.04),
    chat_interval=CHAT_INTERVAL,
    group_count=20,
    group_window=61.0,
    is_group=_telegram_group,
)


class _Bucket:
    __slots__ = ("rate", "tokens", "updated")

    def __init__(self, rate: Rate, now: float) -> None:
        self.rate = rate
        self.tokens = rate.burst
        self.updated = now

    def need(self, now: float, per_second: float) -> float:
        """How long a send would have to wait for a token now (nothing is taken)."""
        tokens = min(self.rate.burst, self.tokens + (now - self.updated) * per_second)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / per_second

    def take(self, now: float, per_second: float) -> None:
        self.tokens = min(self.rate.burst, self.tokens + (now - self.updated) * per_second) - 1.0
        self.updated = now


class TokenBucketBudget:
    """core.ports.Budget for one process alone (see the module docstring)."""

    MAX_CHATS = 10_000  # keyed buckets kept (LRU): memory stays flat whatever the number of chats

    def __init__(
        self,
        global_rates: dict[Platform, Rate] | None = None,
        per_chat: dict[Platform, Rate] | None = None,
        per_group: dict[Platform, Rate] | None = None,
        *,
        per_scope: frozenset[Platform] = PER_SCOPE,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._global_rates = dict(DEFAULT_GLOBAL if global_rates is None else global_rates)
        self._chat_rates = dict(DEFAULT_PER_CHAT if per_chat is None else per_chat)
        self._group_rates = dict(DEFAULT_PER_GROUP if per_group is None else per_group)
        self._per_scope = per_scope
        self._monotonic = monotonic
        self._sleep = sleep
        # the platform's own bucket and hold, per scope where its limits are per scope (else scope None)
        self._global: dict[tuple[Platform, str | None], _Bucket] = {}
        self._chats: OrderedDict[tuple[Platform, str], _Bucket] = OrderedDict()
        self._held_until: dict[tuple[Platform, str | None], float] = {}
        self._chat_held_until: OrderedDict[tuple[Platform, str], float] = OrderedDict()

    def _scoped(self, platform: Platform, scope: str | None) -> tuple[Platform, str | None]:
        return (platform, scope if platform in self._per_scope else None)

    async def penalise(
        self, platform: Platform, retry_after: float, *, chat: str | None = None, scope: str | None = None
    ) -> None:
        until = self._monotonic() + retry_after
        if chat is None:
            key = self._scoped(platform, scope)
            self._held_until[key] = max(self._held_until.get(key, 0.0), until)
            return
        key = (platform, chat)
        self._chat_held_until[key] = max(self._chat_held_until.get(key, 0.0), until)
        self._chat_held_until.move_to_end(key)
        if len(self._chat_held_until) > self.MAX_CHATS:
            self._chat_held_until.popitem(last=False)

    def _chat_bucket(self, key: tuple[Platform, str], rate: Rate, now: float) -> _Bucket:
        bucket = self._chats.get(key)
        if bucket is None:
            bucket = self._chats[key] = _Bucket(rate, now)
            if len(self._chats) > self.MAX_CHATS:
                self._chats.popitem(last=False)
        else:
            self._chats.move_to_end(key)
        return bucket

    def _buckets(
        self, platform: Platform, chat: str | None, scope: str | None, now: float
    ) -> list[tuple[_Bucket, float]]:
        """Every bucket a send to ``chat`` draws from, with its rate."""
        found: list[tuple[_Bucket, float]] = []
        rate = self._global_rates.get(platform)
        if rate is not None:
            key = self._scoped(platform, scope)
            bucket = self._global.get(key)
            if bucket is None:
                bucket = self._global[key] = _Bucket(rate, now)
            found.append((bucket, rate.per_second))
        if chat is not None:
            chat_rate = self._chat_rates.get(platform)
            if chat_rate is not None:
                found.append((self._chat_bucket((platform, chat), chat_rate, now), chat_rate.per_second))
            group_rate = self._group_rates.get(platform)
            if group_rate is not None and is_group(platform, chat):
                bucket = self._chat_bucket((platform, f"group:{chat}"), group_rate, now)
                found.append((bucket, group_rate.per_second))
        return found

    async def acquire(
        self,
        platform: Platform,
        chat: str | None = None,
        *,
        max_wait: float = math.inf,
        scope: str | None = None,
    ) -> float:
        now = self._monotonic()
        wait = max(0.0, self._held_until.get(self._scoped(platform, scope), 0.0) - now)
        if chat is not None:
            wait = max(wait, self._chat_held_until.get((platform, chat), 0.0) - now)
        buckets = self._buckets(platform, chat, scope, now)
        for bucket, per_second in buckets:
            wait = max(wait, bucket.need(now, per_second))
        if wait > max_wait:
            return -wait  # not granted, nothing taken: the caller comes back later instead of sleeping here
        for bucket, per_second in buckets:
            bucket.take(now, per_second)
        if wait > 0:
            await self._sleep(wait)
        return wait


class Unlimited:
    """A budget that never waits (benchmarks of the engine itself, console-only runs)."""

    async def penalise(
        self, platform: Platform, retry_after: float, *, chat: str | None = None, scope: str | None = None
    ) -> None:
        pass

    async def acquire(
        self,
        platform: Platform,
        chat: str | None = None,
        *,
        max_wait: float = math.inf,
        scope: str | None = None,
    ) -> float:
        return 0.0
