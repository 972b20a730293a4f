"""Delivery engine benchmarks, on SQLite and (when a server is reachable) PostgreSQL.

1. throughput: deliveries/s with a no-op platform — one in-process worker, and 4 worker processes.
   Floor: 50/s, the fastest global send rate any platform allows (Discord); the engine must never be the
   bottleneck of a fan-out.
2. lateness: 100,000 Spaces scheduled (200,000 future reminder rows), plus 1,000 reminders coming due over
   a 20 s window, woken by the real Waker (APScheduler) on the real clock: p50/p99 of send time − due time.
   Floor: about a second (ENGINE.md promise 3). Also the process's RSS growth while holding them all:
   the waker holds only the next due time, so it must stay flat (promise 4).

3. the send budget shared by every process (bench/budget.py): acquires/s, pacing, a fan-out end to end.

    python -m bench [--quick] [--only throughput|lateness|budget] [--backend sqlite|postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, select, text
from sqlalchemy.engine import make_url

from bots.runtime.budget import Unlimited
from bots.runtime.clock import SystemClock
from bots.runtime.waker import Waker
from core.models import DeliveryKind, DeliveryStatus, SpaceStatus
from core.notices import Notice
from core.refs import ChatRef, MessageRef, Platform, UserRef
from core.services.deliveries import DeliveryEngine, EngineConfig
from storage.db import make_engine, make_session_factory
from storage.migrate import upgrade
from storage.stores import SqlOutbox, unit_of_work_factory
from storage.tables import delivery_t, space_t

ROOT = Path(__file__).resolve().parents[1]
THROUGHPUT_FLOOR = 50.0
LATENESS_FLOOR = 1.0


class NoopPlatform:
    platform = Platform.CONSOLE
    sent = 0

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def post(self, chat: ChatRef, notice: Notice, *, key: str) -> MessageRef:
        return self._ref(chat.id)

    async def edit(self, message: MessageRef, notice: Notice) -> None:
        self.sent += 1

    async def direct(self, user: UserRef, notice: Notice, *, key: str) -> MessageRef:
        return self._ref("dm")

    async def mention(
        self, chat: ChatRef, users: Mapping[UserRef, str], notice: Notice, *, key: str
    ) -> MessageRef:
        return self._ref(chat.id)

    def _ref(self, chat: str) -> MessageRef:
        self.sent += 1
        return MessageRef(Platform.CONSOLE, chat, str(self.sent))


class Links:
    def space(self, space_id: str) -> str:
        return f"http://127.0.0.1/s/{space_id}"


class NoWake:
    def arm(self, at: datetime) -> None:
        pass


# ----------------------------------------------------------------------------------------------- databases


@asynccontextmanager
async def database(backend: str) -> AsyncIterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as d:
            url = f"sqlite+aiosqlite:///{d}/bench.db"
            await upgrade(url)
            yield url
        return
    base = os.environ.get("SPACES_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
    name = f"spaces_bench_{uuid.uuid4().hex[:8]}"
    admin = make_engine(base, isolation_level="AUTOCOMMIT")
    async with admin.connect() as c:
        await c.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    try:
        await upgrade(url)
        yield url
    finally:
        async with admin.connect() as c:
            await c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


async def postgres_available() -> bool:
    base = os.environ.get("SPACES_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
    engine = make_engine(base)
    try:
        async with engine.connect() as c:
            await c.execute(text("SELECT 1"))
        return True
    except Exception:
        return False
    finally:
        await engine.dispose()


async def insert_space(url: str, space_id: str, starts_at: datetime, status: SpaceStatus) -> None:
    engine = make_engine(url)
    async with engine.begin() as c:
        await c.execute(insert(space_t), [_space_row(space_id, starts_at, status)])
    await engine.dispose()


def _space_row(space_id: str, starts_at: datetime, status: SpaceStatus) -> dict[str, object]:
    return dict(
        id=space_id,
        title=f"Space {space_id}",
        description="",
        host="console:user:host",
        chat="console:chat:main",
        platform="console",
        starts_at=starts_at,
        tz="UTC",
        locale="en",
        created_at=starts_at - timedelta(days=1),
        audio_source=None,
        status=status.value,
        revision=1,
        started_at=None,
        ended_at=None,
    )


def _delivery_row(space_id: str, kind: DeliveryKind, due: datetime, n: int) -> dict[str, object]:
    return dict(
        key=f"space:{space_id}:r1:{kind}:{n}",
        kind=kind.value,
        platform="console",
        recipient="console:user:host",
        subject=None,
        about=None,
        space_id=space_id,
        revision=1,
        due_at=due,
        status=DeliveryStatus.PENDING.value,
        claimed_by=None,
        lease_until=None,
        attempts=0,
        last_error=None,
        sent_ref=None,
        sent_at=None,
        late_by=None,
    )


async def seed_live_notices(url: str, n: int) -> None:
    now = datetime.now(UTC)
    await insert_space(url, "benchlive1", now, SpaceStatus.LIVE)
    engine = make_engine(url)
    for start in range(0, n, 10_000):
        rows = [
            _delivery_row("benchlive1", DeliveryKind.LIVE_NOTICE, now - timedelta(seconds=1), i)
            for i in range(start, min(n, start + 10_000))
        ]
        async with engine.begin() as c:
            await c.execute(insert(delivery_t), rows)
    await engine.dispose()


# ----------------------------------------------------------------------------------------------- throughput


async def throughput_in_process(url: str, n: int) -> float:
    await seed_live_notices(url, n)
    engine = make_engine(url)
    outbox = SqlOutbox(engine)
    uow = unit_of_work_factory(make_session_factory(engine))
    platform = NoopPlatform()
    eng = DeliveryEngine(
        outbox,
        uow,
        platform,
        SystemClock(),
        Unlimited(),
        Links(),
        NoWake(),
        EngineConfig(worker_id="bench", batch=200, concurrency=32),
    )
    t0 = time.perf_counter()
    await eng.deliver_due()
    elapsed = time.perf_counter() - t0
    counts = {k: v for k, v in (await outbox.counts()).items() if v}
    await engine.dispose()
    assert counts == {"sent": n}, counts
    return n / elapsed


def throughput_processes(url: str, n: int, workers: int) -> float:
    asyncio.run(seed_live_notices(url, n))
    with tempfile.TemporaryDirectory() as d:
        log = Path(d) / "sent.log"
        t0 = time.perf_counter()
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.delivery.worker",
                    url,
                    f"w{i}",
                    str(log),
                    "--batch",
                    "200",
                    "--lease",
                    "60",
                ],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            for i in range(workers)
        ]
        for p in procs:
            if p.wait() != 0:
                raise RuntimeError("a worker failed")
        elapsed = time.perf_counter() - t0
        lines = log.read_text().count("\n")
    assert lines == n, (lines, n)
    return n / elapsed


# ----------------------------------------------------------------------------------------------- lateness


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def lateness(url: str, spaces: int, probes: int, window: float) -> dict[str, float]:
    now = datetime.now(UTC)
    engine = make_engine(url)
    # 100,000 Spaces over the next 30 days: two host reminders each, all in the future
    chunk = 5_000
    for start in range(0, spaces, chunk):
        srows, drows = [], []
        for i in range(start, min(spaces, start + chunk)):
            sid = f"far{i:07d}"
            at = now + timedelta(hours=1) + timedelta(seconds=(i * 25.92) % (30 * 86400))
            srows.append(_space_row(sid, at, SpaceStatus.SCHEDULED))
            drows.append(_delivery_row(sid, DeliveryKind.HOST_T30, at - timedelta(minutes=30), 0))
            drows.append(_delivery_row(sid, DeliveryKind.HOST_T0, at, 0))
        async with engine.begin() as c:
            await c.execute(insert(space_t), srows)
            await c.execute(insert(delivery_t), drows)
    # the probes: reminders coming due while we watch, spread over the window
    t_start = datetime.now(UTC) + timedelta(seconds=3)
    srows, drows = [], []
    for i in range(probes):
        sid = f"probe{i:06d}"
        due = t_start + timedelta(seconds=window * i / probes)
        srows.append(_space_row(sid, due, SpaceStatus.SCHEDULED))
        drows.append(_delivery_row(sid, DeliveryKind.HOST_T0, due, 0))
    async with engine.begin() as c:
        await c.execute(insert(space_t), srows)
        await c.execute(insert(delivery_t), drows)

    outbox = SqlOutbox(engine)
    uow = unit_of_work_factory(make_session_factory(engine))
    clock = SystemClock()
    rss_before = _rss_mb()
    eng: DeliveryEngine
    waker = Waker(lambda: eng.deliver_due(), clock, sweep_every=timedelta(seconds=15))
    eng = DeliveryEngine(
        outbox,
        uow,
        NoopPlatform(),
        clock,
        Unlimited(),
        Links(),
        waker,
        EngineConfig(worker_id="bench", batch=200),
    )
    await waker.start()
    await asyncio.sleep((t_start - datetime.now(UTC)).total_seconds() + window + 3)
    await waker.stop()
    rss_after = _rss_mb()
    async with engine.connect() as c:
        rows = (
            await c.execute(
                select(delivery_t.c.due_at, delivery_t.c.sent_at).where(
                    delivery_t.c.space_id.like("probe%"), delivery_t.c.status == "sent"
                )
            )
        ).all()
        pending_far = (
            await c.execute(text("SELECT count(*) FROM delivery WHERE status = 'pending'"))
        ).scalar_one()
    await engine.dispose()
    lates = sorted((r.sent_at - r.due_at).total_seconds() for r in rows)
    if len(lates) != probes:
        raise RuntimeError(f"only {len(lates)} of {probes} probes were sent")
    return {
        "p50": statistics.median(lates),
        "p99": lates[int(0.99 * (len(lates) - 1))],
        "max": lates[-1],
        "rss_growth_mb": rss_after - rss_before,
        "future_rows": float(pending_far),
    }


# ----------------------------------------------------------------------------------------------- main


async def amain(args: argparse.Namespace) -> None:
    backends = [args.backend] if args.backend else ["sqlite", "postgres"]
    if "postgres" in backends and not await postgres_available():
        print("!! PostgreSQL not reachable (set SPACES_TEST_POSTGRES_URL): PostgreSQL figures skipped")
        backends.remove("postgres")
    n = 5_000 if args.quick else 20_000
    spaces = 10_000 if args.quick else 100_000
    for backend in backends:
        if args.only in (None, "throughput"):
            async with database(backend) as url:
                rate = await throughput_in_process(url, n)
            print(
                f"[{backend:8}] throughput, 1 worker in-process : {rate:8.0f} deliveries/s "
                f"(floor {THROUGHPUT_FLOOR:.0f}/s: Discord's global limit) {'OK' if rate > THROUGHPUT_FLOOR else 'BELOW'}"
            )
            async with database(backend) as url:
                rate4 = await asyncio.to_thread(throughput_processes, url, n, 4)
            print(
                f"[{backend:8}] throughput, 4 worker processes  : {rate4:8.0f} deliveries/s "
                f"(floor {THROUGHPUT_FLOOR:.0f}/s) {'OK' if rate4 > THROUGHPUT_FLOOR else 'BELOW'}"
            )
        if args.only in (None, "lateness"):
            async with database(backend) as url:
                r = await lateness(url, spaces, 1_000, 20.0)
            print(
                f"[{backend:8}] lateness with {spaces:,} Spaces scheduled: p50 {r['p50'] * 1000:.0f} ms, "
                f"p99 {r['p99'] * 1000:.0f} ms, max {r['max'] * 1000:.0f} ms "
                f"(floor ≤ {LATENESS_FLOOR:.0f} s) {'OK' if r['p99'] <= LATENESS_FLOOR else 'ABOVE'}; "
                f"RSS growth while armed {r['rss_growth_mb']:.1f} MiB for {int(r['future_rows']):,} future rows"
            )
    if args.only in (None, "budget") and "postgres" in backends:
        from bench.budget import run as budget_benchmarks  # the shared send budget: bench/budget.py

        await budget_benchmarks(args.quick, None)


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", choices=["throughput", "lateness", "budget"])
    ap.add_argument("--backend", choices=["sqlite", "postgres"])
    asyncio.run(amain(ap.parse_args()))


if __name__ == "__main__":
    main()
