"""Delivery engine benchmarks. Each figure is printed next to its floor or target.

1. throughput (SQLite and PostgreSQL): rows settled per second with a no-op platform, on a realistic mix —
   300 Spaces, fan-outs of skewed sizes to ~20,000 distinct recipients (live, moved and cancelled notices),
   host reminders, card edits, and 3 % of recipients known unreachable (their fallback mentions are
   written and sent in the run) — by one in-process worker and by 4 worker processes. Floor: 50/s, the
   fastest global send rate any platform allows (Discord): the engine must never be the bottleneck.
   Memory: the in-process worker's RSS growth over 20,000 more rows (new Spaces and recipients) once its
   caches are warm: per-row state kept by the engine, its budget or the database layer would show up here;
   the target is flat.
2. lateness (SQLite and PostgreSQL): 100,000 Spaces scheduled (200,000 future reminder rows), plus 1,000
   reminders coming due over a 20 s window, woken by the real Waker on the real clock: p50/p99 of send time
   − due time. Floor: about a second (the waker's promise).
3. fanout (PostgreSQL): live notices to Telegram subscribers through 4 real `spaces worker` processes and
   the Bot API emulator (tests/delivery/harness.py), counted at the emulator per recipient:
   - clean, 2,000 subscribers: time vs the floor (2,000 / 30 per second); a host's T-0 reminder for another
     Space that comes due during it (target: within ~2 s); notices marked "delayed" (target 0);
   - chaos, 2,000 subscribers: a worker SIGKILLed every 2–5 s and restarted, 2 % HTTP 500, 1 % connections
     cut after delivery: 0 lost, duplicates vs their bound, time vs the clean run (target ≤ 1.5 ×);
   - small, 57 subscribers, 4 idle workers: time (floor 57 / 30 per second = 1.9 s) and how many workers
     took part.

   - discord (bench/discord_fanout.py), 2,000 subscribers of one Discord Space, 4 workers, in real time
     against the Discord emulator: new DMs (open + message: floor 4,000 / 50 requests per second), then a
     later Space to the same audience (DM channels kept: floor 2,000 / 50 per second); 429s by route, lost
     and duplicates per recipient.

   - slack (bench/slack_fanout.py): live notices DMed in one Slack workspace, then in two at once (each
     paced by its own workspace's budget), in real time against the Slack emulator.

4. budget: the send budget shared by every process (bench/budget.py): acquires/s, pacing, a fan-out end to
   end.
5. webhook (bench/webhook_burst.py): /healthz latency while a real service handles a burst of 500 webhook
   updates (SQLite: `spaces run`; PostgreSQL: `spaces web` + `spaces worker`).
6. timeparse (bench/timeparse_accuracy.py): the time parser on its corpus of phrasings (exact readings,
   silent misreadings) and its speed.
7. audio (bench/audio.py): a live Space's audio — CPU and memory per second of audio of the service and its
   ffmpeg (one encode for every channel) vs discord.py's one ffmpeg per channel, 50 web listeners; voice
   packet pacing at the voice emulator, idle and during a 10,000-notification fan-out in the same process.

    python -m bench [--quick] [--only throughput|lateness|fanout|discord|slack|budget|webhook|timeparse|audio]
                    [--backend sqlite|postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
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

from bots.runtime.budget import Rate, TokenBucketBudget, Unlimited
from bots.runtime.clock import SystemClock
from bots.runtime.waker import Waker
from core import rules
from core.models import DeliveryKind, DeliveryStatus, SpaceStatus
from core.notices import Notice
from core.refs import ChatRef, MessageRef, Platform, UserRef
from core.services.deliveries import DeliveryEngine, EngineConfig
from storage.db import make_engine, make_session_factory
from storage.migrate import upgrade
from storage.stores import SqlOutbox, unit_of_work_factory
from storage.tables import delivery_t, space_t, user_t

ROOT = Path(__file__).resolve().parents[1]
THROUGHPUT_FLOOR = 50.0
LATENESS_FLOOR = 1.0
TELEGRAM_RATE = 30.0  # messages/s: the floor of a Telegram fan-out
CHAOS_TARGET = 1.5  # fan-out time under chaos, times the clean run's
T0_TARGET = 2.0  # seconds: a T-0 reminder due during a fan-out


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


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# ----------------------------------------------------------------------------------------------- databases


def _pg_base() -> str:
    return os.environ.get("SPACES_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")


@asynccontextmanager
async def database(backend: str) -> AsyncIterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as d:
            url = f"sqlite+aiosqlite:///{d}/bench.db"
            await upgrade(url)
            yield url
        return
    name = f"spaces_bench_{uuid.uuid4().hex[:8]}"
    admin = make_engine(_pg_base(), isolation_level="AUTOCOMMIT")
    async with admin.connect() as c:
        await c.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(_pg_base()).set(database=name).render_as_string(hide_password=False)
    try:
        await upgrade(url)
        yield url
    finally:
        async with admin.connect() as c:
            await c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


async def postgres_available() -> bool:
    engine = make_engine(_pg_base())
    try:
        async with engine.connect() as c:
            await c.execute(text("SELECT 1"))
        return True
    except Exception:
        return False
    finally:
        await engine.dispose()


def _space_row(space_id: str, starts_at: datetime, status: SpaceStatus) -> dict[str, object]:
    return dict(
        id=space_id,
        title=f"Space {space_id}",
        description="",
        host=f"console:user:host-{space_id}",
        chat=f"console:chat:chat-{space_id}",
        platform="console",
        starts_at=starts_at,
        tz="UTC",
        locale="en",
        created_at=starts_at - timedelta(days=1),
        audio_source=None,
        status=status.value,
        revision=1,
        started_at=starts_at if status is SpaceStatus.LIVE else None,
        ended_at=None,
    )


def _delivery_row(
    space_id: str,
    kind: DeliveryKind,
    due: datetime,
    recipient: str,
    *,
    key: str | None = None,
    subject: str | None = None,
    about: DeliveryKind | None = None,
) -> dict[str, object]:
    return dict(
        key=key or f"space:{space_id}:{kind}:{recipient}",
        kind=kind.value,
        platform="console",
        recipient=recipient,
        subject=subject,
        about=about.value if about else None,
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
        priority=rules.priority(kind),
        claim_token=None,
    )


async def seed_mix(url: str, rows_wanted: int, *, prefix: str, seed: int) -> int:
    """A realistic outbox: 300 Spaces (70 % live, 15 % about to start, 15 % cancelled), fan-outs of skewed
    sizes (a few large communities, many small ones) to distinct recipients, host reminders, card edits,
    and 3 % of the recipients known unreachable. Returns the number of rows written."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    n_spaces = 300
    weights = [rng.paretovariate(1.2) for _ in range(n_spaces)]
    scale = rows_wanted / sum(weights)
    spaces, rows, unreachable = [], [], []
    for i in range(n_spaces):
        sid = f"{prefix}{i:04d}"
        size = max(1, int(weights[i] * scale))
        roll = rng.random()
        status, kind = (
            (SpaceStatus.LIVE, DeliveryKind.LIVE_NOTICE)
            if roll < 0.7
            else (SpaceStatus.SCHEDULED, DeliveryKind.RESCHEDULED_NOTICE)
            if roll < 0.85
            else (SpaceStatus.CANCELLED, DeliveryKind.CANCELLED_NOTICE)
        )
        due = now - timedelta(seconds=rng.uniform(0, 5))
        spaces.append(_space_row(sid, now + timedelta(minutes=5), status))
        chat = f"console:chat:chat-{sid}"
        rows.append(_delivery_row(sid, DeliveryKind.CARD_EDIT, due, f"console:msg:chat-{sid}:1"))
        if status is SpaceStatus.SCHEDULED:
            rows.append(_delivery_row(sid, DeliveryKind.HOST_T30, due, f"console:user:host-{sid}"))
        for j in range(size):
            user = f"console:user:{prefix}{i}-{j}"
            # subscribed from the Space's chat: mentioned there when unreachable by DM
            rows.append(_delivery_row(sid, kind, due, user, key=f"{sid}:{kind}:{user}", subject=chat))
            if rng.random() < 0.03:
                unreachable.append({"user_ref": user, "platform": "console", "dm_reachable": False})
    engine = make_engine(url)
    try:
        async with engine.begin() as c:
            await c.execute(insert(space_t), spaces)
            if unreachable:
                await c.execute(insert(user_t), unreachable)
        for start in range(0, len(rows), 5_000):
            async with engine.begin() as c:
                await c.execute(insert(delivery_t), rows[start : start + 5_000])
    finally:
        await engine.dispose()
    return len(rows)


async def _outbox_open(outbox: SqlOutbox) -> int:
    counts = await outbox.counts()
    return counts.get("pending", 0) + counts.get("claimed", 0)


# ----------------------------------------------------------------------------------------------- throughput


async def throughput_in_process(url: str, n: int) -> tuple[float, float, dict[str, int]]:
    """Rows/s over a first mix of ``n`` rows; then the RSS growth over two more mixes of ``n / 2`` after a
    warm-up one (same process, same engine): the caches that fill up (prepared statements, the budget's
    per-chat buckets) are bounded, per-row state would grow without end."""
    engine = make_engine(url)
    outbox = SqlOutbox(engine)
    uow = unit_of_work_factory(make_session_factory(engine))
    # a real token-bucket budget, far above any platform: its per-chat buckets are kept (LRU) like in prod
    budget = TokenBucketBudget(
        {Platform.CONSOLE: Rate(1e6, 1e6)}, per_chat={Platform.CONSOLE: Rate(1e6, 1e6)}, per_group={}
    )
    eng = DeliveryEngine(
        outbox,
        uow,
        NoopPlatform(),
        SystemClock(),
        budget,
        Links(),
        NoWake(),
        EngineConfig(worker_id="bench", batch=200, concurrency=32),
        read_uow=unit_of_work_factory(make_session_factory(engine), write_lock=False),
    )
    rate = 0.0
    rss: list[float] = []
    try:
        for round_, size in enumerate((n, n // 2, n // 2, n // 2)):
            rows = await seed_mix(url, size, prefix=f"r{round_}x", seed=round_)
            t0 = time.perf_counter()
            while await _outbox_open(outbox):
                await eng.deliver_due()
            if round_ == 0:
                rate = rows / (time.perf_counter() - t0)
            rss.append(_rss_mb())
        counts = {k: v for k, v in (await outbox.counts()).items() if v}
    finally:
        await engine.dispose()
    return rate, rss[-1] - rss[1], counts


def throughput_processes(url: str, n: int, workers: int) -> float:
    """Rows/s from the first claim to the last outcome (the workers' start-up and exit are not counted)."""
    rows = asyncio.run(seed_mix(url, n, prefix="p", seed=3))
    with tempfile.TemporaryDirectory() as d:
        log = Path(d) / "sent.log"
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "tests.delivery.worker", url, f"w{i}", str(log), "--lease", "12"],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            for i in range(workers)
        ]
        first, last = asyncio.run(_claim_span(url))
        for p in procs:
            if p.wait() != 0:
                raise RuntimeError("a worker failed")
    return rows / (last - first)


async def _claim_span(url: str) -> tuple[float, float]:
    """Wait until the outbox is settled; return (first send, last send) as perf_counter times, sampled
    every 20 ms (a condition wait, not a measure of sleeping)."""
    engine = make_engine(url)
    outbox = SqlOutbox(engine)
    try:
        total = sum((await outbox.counts()).values())
        first = None
        while True:
            open_rows = await _outbox_open(outbox)
            now = time.perf_counter()
            if first is None and open_rows < total:
                first = now
            if open_rows == 0:
                return first or now, now
            await asyncio.sleep(0.02)
    finally:
        await engine.dispose()


# ----------------------------------------------------------------------------------------------- lateness


async def lateness(url: str, spaces: int, probes: int, window: float) -> dict[str, float]:
    now = datetime.now(UTC)
    engine = make_engine(url)
    # far-future Spaces: two host reminders each, all in the future (the claim query must not mind them)
    chunk = 5_000
    for start in range(0, spaces, chunk):
        srows, drows = [], []
        for i in range(start, min(spaces, start + chunk)):
            sid = f"far{i:07d}"
            at = now + timedelta(hours=1) + timedelta(seconds=(i * 25.92) % (30 * 86400))
            srows.append(_space_row(sid, at, SpaceStatus.SCHEDULED))
            host = f"console:user:host-{sid}"
            drows.append(_delivery_row(sid, DeliveryKind.HOST_T30, at - timedelta(minutes=30), host))
            drows.append(_delivery_row(sid, DeliveryKind.HOST_T0, at, host))
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
        drows.append(_delivery_row(sid, DeliveryKind.HOST_T0, due, f"console:user:host-{sid}"))
    async with engine.begin() as c:
        await c.execute(insert(space_t), srows)
        await c.execute(insert(delivery_t), drows)

    outbox = SqlOutbox(engine)
    uow = unit_of_work_factory(make_session_factory(engine))
    clock = SystemClock()
    eng: DeliveryEngine
    waker = Waker(
        lambda: eng.deliver_due(),
        clock,
        sweep_every=timedelta(seconds=15),
        renew_every=timedelta(seconds=4),
        on_renew=lambda: eng.renew_leases(),
    )
    eng = DeliveryEngine(
        outbox, uow, NoopPlatform(), clock, Unlimited(), Links(), waker, EngineConfig(worker_id="bench")
    )
    await waker.start()
    await asyncio.sleep((t_start - datetime.now(UTC)).total_seconds() + window + 3)  # the probes' window
    await waker.stop()
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
        "future_rows": float(pending_far),
    }


# ----------------------------------------------------------------------------------------------- fan-outs


async def fanouts(quick: bool) -> None:
    from tests.delivery.harness import SENDS_IN_FLIGHT_PER_WORKER, Chaos, fan_out

    n = 500 if quick else 2_000
    floor = n / TELEGRAM_RATE
    with tempfile.TemporaryDirectory() as logs:
        async with database("postgres") as url:
            clean = await fan_out(url, Path(logs), subscribers=n, probe_after=n / TELEGRAM_RATE / 2)
        ok = clean.lost == 0 and clean.duplicates == 0
        print(
            f"[postgres] fan-out, clean, {n:,} subscribers, 4 workers: {clean.seconds:6.1f} s "
            f"(floor {floor:.1f} s at {TELEGRAM_RATE:.0f}/s: ratio {clean.seconds / floor:.3f}; target ≤ 1.05) "
            f"lost {clean.lost}, duplicates {clean.duplicates} {'OK' if ok else 'WRONG'}; "
            f"{clean.count_429} × 429; {clean.marked_delayed} marked delayed (target 0); "
            f"by worker {dict(sorted(clean.by_worker.items()))}"
        )
        late = clean.probe_lateness if clean.probe_lateness is not None else float("nan")
        print(
            f"[postgres] T-0 reminder due mid-fan-out: received {late:.2f} s after its due time "
            f"(target ≤ {T0_TARGET:.0f} s) {'OK' if late <= T0_TARGET else 'ABOVE'}"
        )
        async with database("postgres") as url:
            chaos = await fan_out(url, Path(logs), subscribers=n, chaos=Chaos(seed=11))
        ratio = chaos.seconds / clean.seconds
        print(
            f"[postgres] fan-out, chaos, {n:,} subscribers: {chaos.seconds:6.1f} s = {ratio:.2f} × clean "
            f"(target ≤ {CHAOS_TARGET}) {'OK' if ratio <= CHAOS_TARGET else 'ABOVE'}; "
            f"{chaos.kills} SIGKILLs, {chaos.errors_injected} × HTTP 500, {chaos.resets_injected} connections "
            f"cut after delivery; lost {chaos.lost} (target 0); duplicates {chaos.duplicates} "
            f"(bound {chaos.kills} kills × {SENDS_IN_FLIGHT_PER_WORKER} in flight + {chaos.resets_injected} "
            f"resets = {chaos.duplicate_bound}) {'OK' if chaos.duplicates <= chaos.duplicate_bound else 'ABOVE'}; "
            f"{chaos.count_429} × 429; {chaos.marked_delayed} marked delayed"
        )
        async with database("postgres") as url:
            small = await fan_out(url, Path(logs), subscribers=57)
        small_floor = 57 / TELEGRAM_RATE
        print(
            f"[postgres] small fan-out, 57 subscribers, 4 idle workers: {small.seconds:.1f} s "
            f"(floor {small_floor:.1f} s; was 7.3 s from one worker) sent by "
            f"{len(small.by_worker)} workers {dict(sorted(small.by_worker.items()))}; "
            f"lost {small.lost}, duplicates {small.duplicates}"
        )


# ----------------------------------------------------------------------------------------------- main


async def amain(args: argparse.Namespace) -> None:
    backends = [args.backend] if args.backend else ["sqlite", "postgres"]
    pg = await postgres_available()
    if "postgres" in backends and not pg:
        print("!! PostgreSQL not reachable (set SPACES_TEST_POSTGRES_URL): PostgreSQL figures skipped")
        backends.remove("postgres")
    n = 5_000 if args.quick else 20_000
    spaces = 10_000 if args.quick else 100_000
    for backend in backends:
        if args.only in (None, "throughput"):
            async with database(backend) as url:
                rate, growth, counts = await throughput_in_process(url, n)
            print(
                f"[{backend:8}] throughput, 1 worker in-process : {rate:8.0f} rows/s "
                f"(floor {THROUGHPUT_FLOOR:.0f}/s: Discord's global limit) "
                f"{'OK' if rate > THROUGHPUT_FLOOR else 'BELOW'}; mix settled as {counts}"
            )
            print(
                f"[{backend:8}] memory: RSS growth over {n:,} more rows, after {n * 3 // 2:,} (warm caches): "
                f"{growth:+.1f} MiB (target flat: nothing kept per row)"
            )
            async with database(backend) as url:
                rate4 = await asyncio.to_thread(throughput_processes, url, n, 4)
            print(
                f"[{backend:8}] throughput, 4 worker processes  : {rate4:8.0f} rows/s "
                f"(floor {THROUGHPUT_FLOOR:.0f}/s) {'OK' if rate4 > THROUGHPUT_FLOOR else 'BELOW'}"
            )
        if args.only in (None, "lateness"):
            async with database(backend) as url:
                r = await lateness(url, spaces, 1_000, 20.0)
            print(
                f"[{backend:8}] lateness with {spaces:,} Spaces scheduled ({int(r['future_rows']):,} future "
                f"rows): p50 {r['p50'] * 1000:.0f} ms, p99 {r['p99'] * 1000:.0f} ms, max {r['max'] * 1000:.0f} "
                f"ms (floor ≤ {LATENESS_FLOOR:.0f} s) {'OK' if r['p99'] <= LATENESS_FLOOR else 'ABOVE'}"
            )
    if args.only in (None, "fanout") and "postgres" in backends:
        await fanouts(args.quick)
    if args.only in (None, "discord") and "postgres" in backends:
        from bench.discord_fanout import run as discord_fan_outs

        await discord_fan_outs(args.quick)
    if args.only in (None, "slack"):
        from bench.slack_fanout import run as slack_fan_outs

        await slack_fan_outs(args.quick)
    if args.only in (None, "webhook"):
        from bench.webhook_burst import run as webhook_burst

        for backend in backends:
            await webhook_burst(100 if args.quick else 500, backend)
    if args.only in (None, "timeparse"):
        from bench.timeparse_accuracy import main as timeparse_accuracy

        timeparse_accuracy([])
    if args.only in (None, "budget") and "postgres" in backends:
        from bench.budget import run as budget_benchmarks  # the shared send budget: bench/budget.py

        await budget_benchmarks(args.quick, None)
    if args.only in (None, "audio"):
        from bench.audio import run as audio_benchmarks  # live audio: bench/audio.py

        await audio_benchmarks(args.quick)


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument(
        "--only",
        choices=[
            "throughput",
            "lateness",
            "fanout",
            "discord",
            "slack",
            "budget",
            "webhook",
            "timeparse",
            "audio",
        ],
    )
    ap.add_argument("--backend", choices=["sqlite", "postgres"])
    asyncio.run(amain(ap.parse_args()))


if __name__ == "__main__":
    main()
