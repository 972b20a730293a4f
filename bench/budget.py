"""Send budget benchmarks, on PostgreSQL: the budget shared by every process.

1. capacity — acquires/s of the shared budget: one task (one round trip at a time: the latency of a send's
   acquire), then 4 processes x 16 tasks (the contention on the platform's row). Every acquire is for a new
   chat, as in a fan-out (one row per recipient). The limits are set far above any platform's so that no
   acquire waits: the figure is the database's, not a rate's. Floor: 1,000/s, Telegram's paid broadcasts.
2. pacing — 4 processes x 16 tasks take Telegram's real limits (30/s) for N sends to N people, on the real
   clock, sleeping until their slots: the sustained rate against the 30/s limit, the time against the floor
   N / 30 s (target ≤ 1.05 x), the busiest sliding second (≤ 30), the slots given up for waking too late.
3. fan-out — N live notices delivered by 4 real ``spaces worker`` processes through the Telegram emulator with
   Telegram's limits read strictly: time from the start to the last notice received against the floor
   N / 30 s (target ≤ 1.05 x, the issue measured 1.20), 429s (target 0), the busiest windows.

    python -m bench.budget [--quick] [--only capacity|pacing|fanout]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bots.runtime.budget import SHARED_LIMITS
from core.refs import Platform
from storage.budget import SendLimits, SqlBudget
from storage.db import make_engine

ROOT = Path(__file__).resolve().parents[1]
TG = Platform.TELEGRAM
PROCESSES = 4
TASKS = 16
CAPACITY_FLOOR = 1_000.0  # acquires/s: Telegram's paid broadcasts
RATIO_TARGET = 1.05


def _max_in_window(times: list[float], window: float) -> int:
    ordered = sorted(times)
    best = lo = 0
    for hi, t in enumerate(ordered):
        while ordered[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


# ----------------------------------------------------------------------------------------------- children


async def _no_sleep(seconds: float) -> None:
    pass


async def child(url: str, mode: str, tasks: int, count: int, prefix: str, start_at: float) -> None:
    """One process: ``tasks`` tasks share ``count`` acquires for chats ``<prefix><n>``; prints the instant
    each was granted (wall clock), one per line."""
    engine = make_engine(url, pool_pre_ping=False, pool_size=2, max_overflow=2)
    if mode == "capacity":
        limits = SendLimits(interval=1e-9, chat_interval=1e-9)  # no wait: the database's speed alone
        budget = SqlBudget(engine, {TG: limits}, sleep=_no_sleep, late_limit=math.inf)
    else:
        budget = SqlBudget(engine, {TG: SHARED_LIMITS[TG]})
    numbers = iter(range(count))
    granted: list[float] = []

    async def run() -> None:
        for n in numbers:
            await budget.acquire(TG, f"{prefix}{n}")
            granted.append(time.time())

    await budget.acquire(TG, f"{prefix}warm-up")  # the connection and the prepared statement
    await asyncio.sleep(max(0.0, start_at - time.time()))
    await asyncio.gather(*(run() for _ in range(tasks)))
    await budget.close()
    await engine.dispose()
    sys.stdout.write("".join(f"{t!r}\n" for t in granted) + f"missed {budget.missed}\n")


async def _fleet_of_children(
    url: str, mode: str, processes: int, tasks: int, total: int
) -> tuple[list[float], int]:
    start_at = time.time() + 3.0  # every child connected and warmed up by then
    per = math.ceil(total / processes)
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.budget",
            "--child",
            url,
            mode,
            str(tasks),
            str(per),
            f"p{i}-",
            repr(start_at),
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=asyncio.subprocess.PIPE,
        )
        for i in range(processes)
    ]
    times: list[float] = []
    missed = 0
    for p in procs:
        out, _ = await p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"a benchmark process failed ({p.returncode})")
        for line in out.decode().splitlines():
            if line.startswith("missed "):
                missed += int(line.split()[1])
            elif line:
                times.append(float(line))
    return times, missed


# ----------------------------------------------------------------------------------------------- 1, 2


async def capacity(url: str, n: int) -> tuple[float, float]:
    """(acquires/s for one task, for 4 processes x 16 tasks)."""
    engine = make_engine(url, pool_pre_ping=False, pool_size=2, max_overflow=2)
    limits = SendLimits(interval=1e-9, chat_interval=1e-9)
    budget = SqlBudget(engine, {TG: limits}, sleep=_no_sleep, late_limit=math.inf)
    await budget.acquire(TG, "warm-up")
    t0 = time.perf_counter()
    for i in range(n):
        await budget.acquire(TG, f"solo-{i}")
    solo = n / (time.perf_counter() - t0)
    await budget.close()
    await engine.dispose()
    times, _ = await _fleet_of_children(url, "capacity", PROCESSES, TASKS, 4 * n)
    return solo, len(times) / (max(times) - min(times))


async def pacing(url: str, n: int) -> dict[str, float]:
    times, missed = await _fleet_of_children(url, "pacing", PROCESSES, TASKS, n)
    span = max(times) - min(times)
    return {
        "sends": float(len(times)),
        "seconds": span,
        "rate": (len(times) - 1) / span,
        "ratio": span / ((len(times) - 1) / 30.0),
        "busiest_second": float(_max_in_window(times, 1.0)),
        "missed": float(missed),
    }


# ----------------------------------------------------------------------------------------------- 3


async def fanout(url: str, n: int) -> dict[str, float]:
    """N live notices through 4 `spaces worker` processes and the emulator (tests/delivery/fleet.py)."""
    from bots.runtime.clock import SystemClock
    from bots.telegram.translate import chat_ref, user_ref
    from core.commands import ScheduleSpace, StartSpace, Subscribe
    from core.rules import Actor
    from core.services.spaces import SpaceService
    from storage.db import make_session_factory
    from storage.notify import PgWakeChannel
    from storage.stores import unit_of_work_factory
    from tests.delivery.fleet import Fleet, steady_emulator
    from tests.fakes.telegram import STRICT_LIMITS, TelegramEmulator

    db = make_engine(url)
    channel = PgWakeChannel(db)

    class Wake:
        def arm(self, at: datetime) -> None:
            channel.arm(at)

    spaces = SpaceService(unit_of_work_factory(make_session_factory(db)), SystemClock(), Wake())
    try:
        async with TelegramEmulator(**STRICT_LIMITS) as tg:
            host = tg.create_user("Hana", started=True)
            fans = [tg.create_user(f"Fan{i}", started=True) for i in range(n)]
            group = tg.create_group("Builders", creator=host)
            when = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%d %H:%M")
            space = await spaces.schedule(
                ScheduleSpace(Actor(user_ref(host.id)), chat_ref(group.id), "Bench", when, tz="UTC")
            )
            for fan in fans:
                await spaces.subscribe(Subscribe(user_ref(fan.id), space.id, via_chat=chat_ref(group.id)))
            with tempfile.TemporaryDirectory() as logs, steady_emulator():
                fleet = Fleet(url, tg, Path(logs))
                try:
                    for i in range(PROCESSES):
                        await fleet.spawn("worker", f"w{i}")
                    await fleet.until(lambda: tg.bot_messages(group), 120, "the card")
                    await asyncio.sleep(2.0)  # the workers idle, as before a live notice
                    started = time.monotonic()
                    await spaces.start(StartSpace(Actor(user_ref(host.id)), space.id))

                    def received() -> int:
                        return sum(1 for m in list(tg.messages.values()) if m.from_bot and m.chat_id > 0)

                    await fleet.until(lambda: received() >= n, 30 + 3 * n / 30, f"{n} live notices")
                    elapsed = time.monotonic() - started
                finally:
                    await fleet.stop()
            maxima = tg.window_maxima()
            return {
                "seconds": elapsed,
                "ratio": elapsed / (n / 30.0),
                "429": float(tg.count_429),
                "busiest_second": float(maxima["all chats, any 1 s"]),
                "busiest_chat_second": float(maxima["one private chat, any 1 s"]),
            }
    finally:
        await channel.close()
        await db.dispose()


# ----------------------------------------------------------------------------------------------- main


async def run(quick: bool, only: str | None) -> None:
    from bench.__main__ import database, postgres_available

    if not await postgres_available():
        print("!! PostgreSQL not reachable (set SPACES_TEST_POSTGRES_URL): budget figures skipped")
        return
    if only in (None, "capacity"):
        async with database("postgres") as url:
            solo, fleet = await capacity(url, 500 if quick else 2_000)
        print(
            f"[postgres] budget capacity: {solo:6.0f} acquires/s from one task ({1000 / solo:.2f} ms a send), "
            f"{fleet:6.0f} acquires/s from {PROCESSES} processes x {TASKS} tasks "
            f"(floor {CAPACITY_FLOOR:.0f}/s: paid broadcasts) {'OK' if fleet >= CAPACITY_FLOOR else 'BELOW'}"
        )
    if only in (None, "pacing"):
        n = 600 if quick else 2_000
        async with database("postgres") as url:
            r = await pacing(url, n)
        print(
            f"[postgres] budget pacing, {PROCESSES} processes x {TASKS} tasks: {int(r['sends'])} sends in "
            f"{r['seconds']:.1f} s = {r['rate']:.2f}/s (limit 30/s); floor ratio {r['ratio']:.3f} "
            f"(target ≤ {RATIO_TARGET}) {'OK' if r['ratio'] <= RATIO_TARGET else 'ABOVE'}; busiest second "
            f"{int(r['busiest_second'])} (limit 30); {int(r['missed'])} slots given up for waking late"
        )
    if only in (None, "fanout"):
        n = 500 if quick else 2_000
        async with database("postgres") as url:
            f = await fanout(url, n)
        print(
            f"[postgres] fan-out, {PROCESSES} x spaces worker + emulator: {n:,} live notices in "
            f"{f['seconds']:.1f} s (floor {n / 30:.1f} s): ratio {f['ratio']:.3f} (target ≤ {RATIO_TARGET}) "
            f"{'OK' if f['ratio'] <= RATIO_TARGET else 'ABOVE'}; {int(f['429'])} x 429 (target 0); busiest "
            f"second {int(f['busiest_second'])} (limit 30), busiest private chat second "
            f"{int(f['busiest_chat_second'])} (limit 1)"
        )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        url, mode, tasks, count, prefix, start_at = sys.argv[2:8]
        asyncio.run(child(url, mode, int(tasks), int(count), prefix, float(start_at)))
        return
    ap = argparse.ArgumentParser(prog="python -m bench.budget")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", choices=["capacity", "pacing", "fanout"])
    a = ap.parse_args()
    asyncio.run(run(a.quick, a.only))


if __name__ == "__main__":
    main()
