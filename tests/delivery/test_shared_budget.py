"""The send budget shared through the database (storage/budget.py), on SQLite and PostgreSQL.

Time is a controllable clock handed to the database (``clock=``): every slot is computed, never slept for.
Another engine is another process: it has its own connections and nothing in memory in common.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bots.runtime.budget import SHARED_LIMITS
from core.refs import Platform
from storage.budget import RECHECK_AFTER, KeyState, SendLimits, SqlBudget, plan
from storage.db import make_engine
from storage.migrate import upgrade
from storage.tables import send_budget_t

TG = Platform.TELEGRAM
LIMITS = SHARED_LIMITS[TG]
GROUP = "-1001"


def max_in_window(stamps: Iterable[float], window: float) -> int:
    """The most stamps in any window (t - window, t] — how Telegram (and the emulator) count."""
    s = sorted(stamps)
    best, lo = 0, 0
    for hi, t in enumerate(s):
        while s[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


@dataclass
class FakeTime:
    """Seconds on a controllable clock. ``sleep`` records; it moves time only when ``advancing``."""

    now: float = 1_800_000_000.0
    advancing: bool = True
    slept: list[float] = field(default_factory=list)
    during_sleep: Callable[[], Awaitable[None]] | None = None

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        hook, self.during_sleep = self.during_sleep, None
        if hook is not None:
            await hook()
        if self.advancing:
            self.now += seconds


@pytest.fixture
async def url(db_url: str) -> str:
    await upgrade(db_url)
    return db_url


@pytest.fixture
async def engines(url: str) -> AsyncIterator[Callable[[], AsyncEngine]]:
    """Engines on the test database, as many as a test wants (each one: another process)."""
    made: list[AsyncEngine] = []

    def new() -> AsyncEngine:
        e = make_engine(url, pool_pre_ping=False) if url.startswith("postgres") else make_engine(url)
        made.append(e)
        return e

    yield new
    for e in made:
        await e.dispose()


def budget(engine: AsyncEngine, ft: FakeTime, limits: SendLimits = LIMITS) -> SqlBudget:
    return SqlBudget(engine, {TG: limits}, clock=ft.clock, sleep=ft.sleep)


async def slots_of(b: SqlBudget, ft: FakeTime, chats: Sequence[str | None]) -> list[float]:
    """Acquire for each chat in turn; the instants the sends would go out at."""
    out = []
    for chat in chats:
        waited = await b.acquire(TG, chat)
        assert waited >= 0
        out.append(ft.now if ft.advancing else ft.now + waited)
    return out


# ------------------------------------------------------------------------------------------ exact windows


async def test_the_global_rate_holds_in_every_sliding_second_and_runs_close_to_it(
    engines: Callable[[], AsyncEngine],
) -> None:
    ft = FakeTime()
    b = budget(engines(), ft)
    t0 = ft.now
    stamps = await slots_of(b, ft, [str(1000 + i) for i in range(300)])  # 300 DMs, one per person
    assert max_in_window(stamps, 1.0) <= 30
    rate = (len(stamps) - 1) / (stamps[-1] - t0)
    assert 28.6 <= rate <= 30.0, rate  # ≥ 0.95 x the limit: the fan-out floor ratio stays ≤ 1.05


async def test_a_private_chat_gets_one_message_a_second(engines: Callable[[], AsyncEngine]) -> None:
    ft = FakeTime()
    b = budget(engines(), ft)
    stamps = await slots_of(b, ft, ["42"] * 5)
    assert max_in_window(stamps, 1.0) == 1
    before = ft.now
    await b.acquire(TG, "43")  # another chat is not held back by that one
    assert ft.now - before < 0.1


async def test_a_group_gets_twenty_a_minute_and_one_a_second(engines: Callable[[], AsyncEngine]) -> None:
    ft = FakeTime()
    b = budget(engines(), ft)
    stamps = await slots_of(b, ft, [GROUP] * 45)
    assert max_in_window(stamps, 60.0) == 20
    assert max_in_window(stamps, 1.0) == 1
    assert stamps[19] - stamps[0] < 25  # the first twenty go at once, a second apart, not 3 s apart


async def test_a_busy_group_does_not_hold_up_the_other_sends(engines: Callable[[], AsyncEngine]) -> None:
    """The group's next slot is a minute away: DMs keep flowing around it (no head-of-line blocking)."""
    ft = FakeTime(advancing=False)  # reservations ahead, as many waiting senders make them
    b = budget(engines(), ft)
    for _ in range(20):
        await b.acquire(TG, GROUP)
    assert await b.acquire(TG, GROUP, max_wait=5.0) < -30  # not granted: far ahead, nothing taken
    waited = await b.acquire(TG, GROUP)  # a sender willing to wait (a reply) takes the slot a minute ahead
    assert waited > 30
    dm_waits = [await b.acquire(TG, str(5000 + i)) for i in range(10)]
    assert max(dm_waits) < 1.0  # around the group's slots, not behind its 21st


async def test_a_refused_acquire_takes_nothing(engines: Callable[[], AsyncEngine]) -> None:
    ft = FakeTime(advancing=False)
    b = budget(engines(), ft)
    await b.acquire(TG, "7")
    refused = await b.acquire(TG, "7", max_wait=0.5)
    assert refused == pytest.approx(-LIMITS.chat_interval, abs=1e-4)
    assert await b.acquire(TG, "7") == pytest.approx(
        LIMITS.chat_interval, abs=1e-4
    )  # the same slot: still free


async def test_an_unlimited_platform_costs_no_round_trip(engines: Callable[[], AsyncEngine]) -> None:
    ft = FakeTime()
    b = budget(engines(), ft)
    for _ in range(100):
        assert await b.acquire(Platform.CONSOLE, "main") == 0.0
    assert b.reserves == 0


# ------------------------------------------------------------------------------------------ the reference


def _ops(seed: int, n: int) -> list[tuple[float, str | None, float]]:
    """A random mix: bursts and lulls; DMs to many people, a few busy chats and groups; impatient senders."""
    rng = random.Random(seed)
    chats: list[str | None] = [None, GROUP, "-1002", "77", "78"]
    ops = []
    for _ in range(n):
        dt = rng.choice([0.0, 0.0, 0.0, 0.01, 0.03, 0.2, 1.5])
        chat = rng.choice(chats) if rng.random() < 0.3 else str(rng.randrange(10_000, 10_200))
        max_wait = rng.choice([5.0, 5.0, 0.5, 90.0])
        ops.append((dt, chat, max_wait))
    return ops


@pytest.mark.parametrize("seed", [1, 2])
async def test_the_database_takes_exactly_the_slots_of_the_reference_algorithm(
    engines: Callable[[], AsyncEngine], seed: int
) -> None:
    """spaces_budget_acquire (PostgreSQL) and the SQLite path compute what storage.budget.plan computes,
    to the last bit, and what they take keeps every window."""
    ft = FakeTime(advancing=False)
    b = budget(engines(), ft)
    states: dict[str, KeyState] = {}
    stamps: dict[str, list[float]] = {}
    everything: list[float] = []
    for dt, chat, max_wait in _ops(seed, 400):
        ft.now += dt
        got = await b.acquire(TG, chat, max_wait=max_wait)
        keys = LIMITS.keys(TG, chat)
        platform, c, g = (None if k is None else states.setdefault(k, KeyState()) for k in keys)
        assert platform is not None
        want = plan(ft.now, max_wait, LIMITS, platform, c, g)
        assert got == (want.wait if want.granted else -want.wait)
        if want.granted:
            everything.append(want.slot)
            stamps.setdefault(chat or "", []).append(want.slot)
    assert max_in_window(everything, 1.0) <= 30
    gaps = [b - a for a, b in itertools.pairwise(sorted(everything))]
    assert min(gaps) >= LIMITS.interval - 1e-6
    for chat, s in stamps.items():
        if chat:
            assert max_in_window(s, 1.0) == 1, chat
        if chat.startswith("-"):
            assert max_in_window(s, 60.0) <= 20, chat


# ------------------------------------------------------------------------------------------ many processes


async def test_tasks_and_processes_acquiring_at_once_never_share_a_slot(
    engines: Callable[[], AsyncEngine],
) -> None:
    """Three engines (three processes) x 20 tasks, all at the same instant: 60 distinct slots, spaced."""
    ft = FakeTime(advancing=False)
    budgets = [budget(engines(), ft) for _ in range(3)]
    waits = await asyncio.gather(
        *(b.acquire(TG, str(100 * n + i)) for n, b in enumerate(budgets) for i in range(20))
    )
    slots = sorted(ft.now + w for w in waits)
    assert len(slots) == 60
    assert min(y - x for x, y in itertools.pairwise(slots)) >= LIMITS.interval - 1e-6
    assert slots[-1] - slots[0] == pytest.approx(59 * LIMITS.interval, abs=1e-4)  # and no slot wasted


async def test_a_new_process_starts_where_the_others_are(engines: Callable[[], AsyncEngine]) -> None:
    """No overshoot from a worker that just started: it sees the queue the others built."""
    ft = FakeTime(advancing=False)
    old = budget(engines(), ft)
    for i in range(30):
        await old.acquire(TG, str(i))
    new = budget(engines(), ft)
    assert await new.acquire(TG, "999") == pytest.approx(30 * LIMITS.interval, abs=1e-4)


async def test_one_process_may_use_the_whole_rate(engines: Callable[[], AsyncEngine]) -> None:
    """No static rate ÷ N: while three others are idle, one sends at the full rate."""
    ft = FakeTime()
    idle = [budget(engines(), ft) for _ in range(3)]
    for b in idle:
        await b.acquire(TG, "1")
    busy = budget(engines(), ft)
    t0 = ft.now
    stamps = await slots_of(busy, ft, [str(2000 + i) for i in range(60)])
    assert (stamps[-1] - t0) == pytest.approx(60 * LIMITS.interval, abs=0.05)


# ------------------------------------------------------------------------------------------ 429s


async def test_a_platform_429_holds_back_every_process(engines: Callable[[], AsyncEngine]) -> None:
    ft = FakeTime(advancing=False)
    a, b = budget(engines(), ft), budget(engines(), ft)
    await a.penalise(TG, 7.0)
    assert await b.acquire(TG, "5") == pytest.approx(7.0, abs=1e-4)
    assert await b.acquire(TG, GROUP, max_wait=5.0) == pytest.approx(-(7.0 + LIMITS.interval), abs=1e-4)


async def test_a_chat_429_holds_back_that_chat_only_in_every_process(
    engines: Callable[[], AsyncEngine],
) -> None:
    ft = FakeTime(advancing=False)
    a, b = budget(engines(), ft), budget(engines(), ft)
    await a.penalise(TG, 30.0, chat=GROUP)
    assert await b.acquire(TG, "7") == 0.0  # other chats and DMs go on
    assert await b.acquire(TG, GROUP) == pytest.approx(30.0, abs=1e-4)


async def test_a_429_elsewhere_holds_back_a_send_already_waiting_for_its_slot(
    engines: Callable[[], AsyncEngine],
) -> None:
    """B took a slot 2 s ahead and sleeps; meanwhile A meets a 429: B does not send at its slot."""
    ft = FakeTime()
    a, b = budget(engines(), ft), budget(engines(), ft)
    await b.acquire(TG, "9")
    await b.acquire(TG, "9")  # advances the clock past the first; the next one is 1.1 s ahead
    assert await b.acquire(TG, "9", max_wait=0.0) < 0
    # a third acquire for chat 9 reserves ≥ RECHECK_AFTER ahead: long enough for SQLite's re-read too
    assert LIMITS.chat_interval >= RECHECK_AFTER

    async def meanwhile() -> None:
        await a.penalise(TG, 20.0)
        if b._listen:  # PostgreSQL: B hears it on the channel, within a moment
            for _ in range(500):
                if b._holds:
                    break
                await asyncio.sleep(0.01)
            assert b._holds, "the hold was not heard"

    ft.during_sleep = meanwhile
    start = ft.now
    waited = await b.acquire(TG, "9")
    assert ft.now - start == pytest.approx(waited, abs=1e-4)
    assert waited >= 20.0 - 1e-6  # it waited out the hold, then took a new slot
    assert ft.slept[-2] == pytest.approx(LIMITS.chat_interval, abs=1e-4)


async def test_holds_survive_in_the_table_for_processes_started_later(
    engines: Callable[[], AsyncEngine],
) -> None:
    ft = FakeTime(advancing=False)
    await budget(engines(), ft).penalise(TG, 12.0)
    late = budget(engines(), ft)
    assert await late.acquire(TG, "1") == pytest.approx(12.0, abs=1e-4)


# ------------------------------------------------------------------------------------------ housekeeping


async def test_prune_forgets_chats_nothing_constrains_any_more(engines: Callable[[], AsyncEngine]) -> None:
    ft = FakeTime(advancing=False)
    engine = engines()
    b = budget(engine, ft)
    for i in range(10):
        await b.acquire(TG, str(i))
    await b.acquire(TG, GROUP)
    ft.now += 30
    assert await b.prune() == 0  # the group's minute is not over, and the rest just ended
    ft.now += 120
    assert await b.prune() == 13  # ten chats, the group's chat and group rows, the platform's
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(send_budget_t))).scalar_one() == 0


async def test_the_database_clock_is_the_default_on_postgresql(engines: Callable[[], AsyncEngine]) -> None:
    engine = engines()
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite is one machine: its wall clock")
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    # this checks whose clock the slots are on, not waking on time: a loaded machine's slow round trip must
    # not count as a missed slot here (that rule has its own tests below)
    b = SqlBudget(engine, {TG: LIMITS}, sleep=sleep, late_limit=1.0)
    try:
        assert await b.acquire(TG, "1") < 0.05
        second = await b.acquire(TG, "1")  # a second apart on the server's clock, whatever ours says
        assert LIMITS.chat_interval - 0.5 < second <= LIMITS.chat_interval
    finally:
        await b.close()


# ------------------------------------------------------------------------------------------ waking on time


async def test_a_send_that_wakes_too_late_for_its_slot_takes_another(
    engines: Callable[[], AsyncEngine],
) -> None:
    """Sent 50 ms after its slot, a message would crowd the window of the slots after it: the slot is given
    up (wasted, never doubled) and the send takes a new one."""
    ft = FakeTime(advancing=False)
    b = budget(engines(), ft)
    for i in range(5):
        await b.acquire(TG, str(i))  # a queue: five slots taken, the next is 5 intervals ahead
    ft.advancing = True

    async def busy() -> None:
        ft.now += 0.05  # the process was busy: it wakes 50 ms late

    ft.during_sleep = busy
    first = 5 * LIMITS.interval
    # the new slot also keeps chat 9's spacing from the one given up (a cost of one message, never a risk)
    second = LIMITS.chat_interval - 0.05
    assert await b.acquire(TG, "9") == pytest.approx(first + second, abs=1e-4)
    assert b.missed == 1
    assert ft.slept[-2:] == [pytest.approx(first, abs=1e-4), pytest.approx(second, abs=1e-4)]
    other = budget(engines(), ft)
    assert await other.acquire(TG, "10", max_wait=0) == pytest.approx(-LIMITS.interval, abs=1e-4)


async def test_the_database_clocks_offset_is_taken_from_the_tightest_round_trip(
    engines: Callable[[], AsyncEngine],
) -> None:
    from storage.budget import Reservation

    engine = engines()
    if engine.dialect.name != "postgresql":
        pytest.skip("only PostgreSQL has a clock of its own")
    b = SqlBudget(engine, {TG: LIMITS})
    # the database said "now is 1000.0, your slot is 0.5 s ahead"; the round trip took 2 ms on our clock
    assert b._local_slot(Reservation(0.5, 1000.5, True), 10.0, 10.002) == pytest.approx(10.501, abs=1e-9)
    # a slow round trip later (200 ms) tells less: the first estimate stands
    assert b._local_slot(Reservation(0.5, 1001.5, True), 11.0, 11.2) == pytest.approx(11.501, abs=1e-9)
    # a tighter one replaces it
    assert b._local_slot(Reservation(0.0, 1002.0, True), 12.0, 12.0) == pytest.approx(12.0, abs=1e-9)
