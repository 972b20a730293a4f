"""Live-notice fan-outs through real `spaces worker` processes, counted at the Telegram emulator.

Used by the chaos test (tests/delivery/test_chaos.py, a few hundred subscribers) and the benchmark
(``python -m bench --only fanout``, 2,000). The production code path end to end: the CLI's worker role on
PostgreSQL, python-telegram-bot over real HTTP to the emulator (tests/fakes/telegram.py) running in this
process. Everything counted is what the emulator RECEIVED per recipient, never what a worker believes it
sent; the workers may be SIGKILLed at random and restarted (same worker id, as a supervisor would), and the
emulator may fail sends (HTTP 500, not delivered) or cut the connection after delivering them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from bots.runtime.clock import SystemClock
from bots.telegram.translate import chat_ref, user_ref
from core.commands import ScheduleSpace, StartSpace, Subscribe
from core.models import DeliveryStatus, Space
from core.rules import Actor
from core.services.deliveries import EngineConfig
from core.services.spaces import SpaceService
from storage.db import make_engine, make_session_factory, normalize_url
from storage.migrate import upgrade
from storage.notify import PgWakeChannel
from storage.stores import unit_of_work_factory
from storage.tables import delivery_t, heartbeat_t
from tests.delivery.fleet import steady_emulator
from tests.fakes.telegram import TelegramEmulator, TgUser

ROOT = Path(__file__).resolve().parents[2]
LIVE_TEXT = "is live now"
DELAYED_TEXT = "delayed by"
#: sends one worker may have in flight, unrecorded, at the instant it is killed (the engine's concurrency)
SENDS_IN_FLIGHT_PER_WORKER = EngineConfig(worker_id="-").concurrency


@dataclass(frozen=True)
class Chaos:
    """SIGKILL a random worker every ``kill_every`` seconds (uniform) and restart it; emulator faults."""

    seed: int = 10
    kill_every: tuple[float, float] = (2.0, 5.0)
    error_rate: float = 0.02  # HTTP 500, not delivered
    reset_rate: float = 0.01  # delivered, then the connection is cut before the answer


@dataclass
class FanOutResult:
    subscribers: int
    workers: int
    kills: int
    received: Counter[int]  # live notices received, per subscriber
    seconds: float  # start → the last subscriber's first copy
    marked_delayed: int  # live notices carrying the "delayed" mark
    errors_injected: int
    resets_injected: int
    count_429: int
    probe_lateness: float | None  # the T-0 reminder due during the fan-out: received − due, seconds
    by_worker: Counter[str] = field(
        default_factory=Counter
    )  # live notices sent, by the worker that sent them
    log_dir: Path = field(default=Path("."))

    @property
    def lost(self) -> int:
        return self.subscribers - len(self.received)

    @property
    def duplicates(self) -> int:
        return sum(c - 1 for c in self.received.values())

    @property
    def duplicate_bound(self) -> int:
        """What a crash may legitimately repeat (Telegram has no idempotency key): the sends in flight of each
        killed worker, and each send whose connection was cut after delivery."""
        return self.kills * SENDS_IN_FLIGHT_PER_WORKER + self.resets_injected


class Fleet:
    """`spaces worker` processes (the CLI, as deployed), each with its own SPACES_WORKER_ID."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self._env = env
        self._log_dir = log_dir
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self._starts: Counter[str] = Counter()

    async def spawn(self, worker: str) -> None:
        self._starts[worker] += 1
        n = self._starts[worker]
        out = self._log_dir / f"{worker}.{n}.out"
        err = self._log_dir / f"{worker}.{n}.err"
        with out.open("wb") as o, err.open("wb") as e:
            self.procs[worker] = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bots.cli",
                "worker",
                cwd=ROOT,
                env={**os.environ, **self._env, "SPACES_WORKER_ID": worker, "PYTHONPATH": str(ROOT)},
                stdout=o,
                stderr=e,
            )

    async def ready(self, worker: str, within: float = 60.0) -> None:
        """Wait for the worker's start-up banner (printed once its engine and waker run)."""
        out = self._log_dir / f"{worker}.{self._starts[worker]}.out"
        deadline = time.monotonic() + within
        while "— worker" not in (out.read_text() if out.exists() else ""):
            proc = self.procs[worker]
            if proc.returncode is not None:
                raise RuntimeError(f"{worker} exited with {proc.returncode}: {self.stderr(worker)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{worker} did not start within {within:g} s: {self.stderr(worker)}")
            await asyncio.sleep(0.05)

    def stderr(self, worker: str) -> str:
        err = self._log_dir / f"{worker}.{self._starts[worker]}.err"
        return err.read_text()[-3000:] if err.exists() else ""

    async def kill(self, worker: str) -> None:
        proc = self.procs[worker]
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGKILL)
        await proc.wait()

    async def stop(self) -> None:
        """A clean stop (SIGTERM) of every worker still running; SIGKILL after 20 s."""
        for proc in self.procs.values():
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()


async def _settled(url: str, space_ids: list[str], *, due_only: bool = False) -> bool:
    """No row of these Spaces is pending or claimed any more (every notification reached its end);
    ``due_only``: none that is due now (the host reminders of a Space hours away wait, that is fine)."""
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            d = delivery_t.c
            pending = d.status == str(DeliveryStatus.PENDING)
            if due_only:
                pending = pending & (d.due_at <= datetime.now(UTC))
            open_rows = select(func.count()).where(
                d.space_id.in_(space_ids), pending | (d.status == str(DeliveryStatus.CLAIMED))
            )
            return int((await conn.execute(open_rows)).scalar_one()) == 0
    finally:
        await engine.dispose()


async def fan_out(
    url: str,
    log_dir: Path,
    *,
    subscribers: int,
    workers: int = 4,
    chaos: Chaos | None = None,
    probe_after: float | None = None,
    within: float = 600.0,
) -> FanOutResult:
    """One live notice to ``subscribers`` Telegram users, sent by ``workers`` worker processes.

    ``probe_after``: another host's Space starts that many seconds after the fan-out begins; its T-0
    reminder's lateness is measured (urgent rows must go ahead of the fan-out). ``log_dir`` (existing) gets
    each worker process's stdout and stderr."""
    await upgrade(url)
    db = make_engine(normalize_url(url))
    channel = PgWakeChannel(db)
    clock = SystemClock()

    uow = unit_of_work_factory(make_session_factory(db))
    spaces = SpaceService(uow, clock, channel, default_tz="UTC")
    fleet: Fleet | None = None
    chaos_task: asyncio.Task[None] | None = None
    steady = contextlib.ExitStack()
    try:
        async with TelegramEmulator() as tg:
            host = tg.create_user("Hana", started=True)
            group = tg.create_group("Fans", creator=host)
            fans = [tg.create_user(f"Fan{i}", started=True) for i in range(subscribers)]
            space = await spaces.schedule(
                ScheduleSpace(Actor(user_ref(host.id)), chat_ref(group.id), "Launch", "in 2 hours")
            )
            for fan in fans:
                await spaces.subscribe(Subscribe(user_ref(fan.id), space.id, via_chat=chat_ref(group.id)))
            fleet = await start_workers(
                {"TELEGRAM_BOT_TOKEN": tg.token, "TELEGRAM_API_BASE": tg.base_url},
                url,
                log_dir,
                workers,
                within,
            )
            await _wait(lambda: _settled(url, [space.id], due_only=True), within, "the card was not posted")
            if chaos is not None:
                tg.inject_faults(seed=chaos.seed, error_rate=chaos.error_rate, reset_rate=chaos.reset_rate)
            # a wall-clock reading for the emulator's monotonic times (the probe's lateness)
            wall_minus_mono = time.time() - time.monotonic()
            steady.enter_context(steady_emulator())  # its arrival stamps must not bunch up behind our pauses
            t0 = time.monotonic()
            await spaces.start(StartSpace(Actor(user_ref(host.id)), space.id))
            probe: tuple[TgUser, Space] | None = None
            if probe_after is not None:
                probe = await _schedule_probe(tg, spaces, group.id, probe_after)
            kills = [0]
            if chaos is not None:
                chaos_task = asyncio.create_task(_kill_at_random(fleet, list(fleet.procs), chaos, kills))

            async def all_received() -> bool:
                return len(tg.received(containing=LIVE_TEXT)) >= subscribers

            await _wait(all_received, within, "not every subscriber received the live notice")
            ids = [space.id] + ([probe[1].id] if probe else [])
            await _wait(lambda: _settled(url, ids), within, "the outbox did not settle")
            steady.close()
            if chaos_task is not None:
                chaos_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await chaos_task
            await fleet.stop()
            fleet = None
            by_worker = await _senders(url, space.id)
            fan_ids = {f.id for f in fans}
            received = Counter(
                {cid: n for cid, n in tg.received(containing=LIVE_TEXT).items() if cid in fan_ids}
            )
            firsts = [
                min(m.versions[0].time for m in tg.bot_messages(f.id) if LIVE_TEXT in m.versions[0].text)
                for f in fans
                if received[f.id]
            ]
            marked = sum(
                1
                for f in fans
                for m in tg.bot_messages(f.id)
                if LIVE_TEXT in m.versions[0].text and DELAYED_TEXT in m.versions[0].text
            )
            probe_lateness = None
            if probe is not None:
                user, probe_space = probe
                (t0_dm, *_) = [m for m in tg.bot_messages(user.id) if probe_space.title in m.text]
                received_at = t0_dm.versions[0].time + wall_minus_mono
                probe_lateness = received_at - probe_space.starts_at.timestamp()
            return FanOutResult(
                subscribers=subscribers,
                workers=workers,
                kills=kills[0],
                received=received,
                seconds=max(firsts) - t0 if firsts else float("nan"),
                marked_delayed=marked,
                errors_injected=tg.faults_injected["error"],
                resets_injected=tg.faults_injected["reset"],
                count_429=tg.count_429,
                probe_lateness=probe_lateness,
                by_worker=by_worker,
                log_dir=log_dir,
            )
    finally:
        steady.close()
        if chaos_task is not None and not chaos_task.done():
            chaos_task.cancel()
        if fleet is not None:
            await fleet.stop()
        await channel.close()
        await db.dispose()


async def start_workers(
    platform_env: dict[str, str], url: str, log_dir: Path, workers: int, within: float
) -> Fleet:
    """``workers`` `spaces worker` processes on ``url`` with the platform's variables, started and ready, each
    having beaten since the last one joined (so each knows its share of the budget before a fan-out)."""
    fleet = Fleet(
        {
            "DATABASE_URL": url,
            **platform_env,
            "SPACES_LOG_LEVEL": "WARNING",
            # heartbeats every 2 s: each worker learns its share of the send budget soon after start
            "SPACES_SWEEP_SECONDS": "2",
        },
        log_dir,
    )
    names = [f"w{i}" for i in range(workers)]
    for name in names:
        await fleet.spawn(name)
    for name in names:
        await fleet.ready(name)
    joined = datetime.now(UTC)
    await _wait(lambda: _all_beaten_since(url, joined, workers), within, "heartbeats")
    return fleet


async def _all_beaten_since(url: str, since: datetime, workers: int) -> bool:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            h = heartbeat_t.c
            rows = (await conn.execute(select(h.last_seen))).scalars().all()
            return len(rows) >= workers and all(seen > since for seen in rows)
    finally:
        await engine.dispose()


async def _senders(url: str, space_id: str) -> Counter[str]:
    """Live notices sent, by worker (claimed_by stays on a settled row: who sent it)."""
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            d = delivery_t.c
            stmt = (
                select(d.claimed_by, func.count())
                .where(d.space_id == space_id, d.kind == "live_notice", d.status == str(DeliveryStatus.SENT))
                .group_by(d.claimed_by)
            )
            return Counter({str(w): int(n) for w, n in (await conn.execute(stmt)).all()})
    finally:
        await engine.dispose()


async def _kill_at_random(fleet: Fleet, names: list[str], chaos: Chaos, kills: list[int]) -> None:
    """Every 2–5 s (seeded): SIGKILL a random worker, then start it again under the same id."""
    rng = random.Random(chaos.seed)
    while True:
        await asyncio.sleep(rng.uniform(*chaos.kill_every))  # the chaos schedule itself, not a check
        victim = rng.choice(names)
        await fleet.kill(victim)
        kills[0] += 1
        await fleet.spawn(victim)


async def _schedule_probe(
    tg: TelegramEmulator, spaces: SpaceService, group_id: int, after: float
) -> tuple[TgUser, Space]:
    other = tg.create_user("Otto", started=True)
    at = datetime.now(UTC) + timedelta(seconds=after)
    space = await spaces.schedule(
        ScheduleSpace(
            Actor(user_ref(other.id)), chat_ref(group_id), "Probe", at.strftime("%Y-%m-%dT%H:%M:%SZ")
        )
    )
    return other, space


async def _wait(check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    """Wait for a condition (checked every 50 ms, up to ``within`` seconds)."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {within:g} s")
        await asyncio.sleep(0.05)
