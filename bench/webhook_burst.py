"""/healthz during a burst of Telegram updates: a real service process, its webhook and its probe.

A burst of updates (``/start s_<id>`` deep links: a subscription and an answer each) is posted to the
webhook of a real ``spaces`` process the way Telegram does it — up to 40 connections at once (setWebhook's
default ``max_connections``), coming back after a 503 — while ``/healthz`` is probed every 20 ms. Prints the
probe's latency (p50, p99, max) next to the target, the burst's handling time, and how many people got
their answer (counted at the Bot API emulator).

    python -m bench.webhook_burst [--updates 500] [--backend sqlite|postgres]

SQLite runs ``spaces run`` (web and worker in one process, the embedded default); PostgreSQL runs
``spaces web`` plus ``spaces worker``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import socket
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
HEALTHZ_TARGET_P99 = 0.100  # seconds: a load balancer's probe must never see a busy service as dead
WEBHOOK_SECRET = "bench-secret_0"
CONNECTIONS = 40  # Telegram's default max_connections for a webhook


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Clock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class _NoWake:
    def arm(self, at: datetime) -> None:
        pass


async def _database(backend: str, workdir: Path) -> tuple[str, Any]:
    """A fresh database URL and a cleanup coroutine factory."""
    if backend == "sqlite":
        return f"sqlite:///{workdir / 'bench.db'}", None
    import asyncpg
    from sqlalchemy.engine import make_url

    base = os.environ.get("SPACES_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
    name = f"spaces_bench_{secrets.token_hex(4)}"
    dsn = make_url(base).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()

    async def drop() -> None:
        c = await asyncpg.connect(dsn)
        await c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await c.close()

    return make_url(base).set(database=name).render_as_string(hide_password=False), drop


async def run(updates: int, backend: str) -> None:
    from bots.telegram.translate import chat_ref, user_ref
    from core.commands import ScheduleSpace
    from core.rules import Actor
    from core.services.spaces import SpaceService
    from storage.db import make_engine, make_session_factory
    from storage.migrate import upgrade
    from storage.stores import unit_of_work_factory
    from tests.fakes.telegram import TelegramEmulator

    workdir = Path(tempfile.mkdtemp(prefix="spaces-bench-"))
    url, drop = await _database(backend, workdir)
    await upgrade(url)
    db = make_engine(url)
    spaces = SpaceService(unit_of_work_factory(make_session_factory(db)), _Clock(), _NoWake())
    procs: list[asyncio.subprocess.Process] = []
    try:
        async with TelegramEmulator(webhook_max_attempts=1) as tg:
            host = tg.create_user("Hana", started=True)
            group = tg.create_group("Builders", creator=host)
            space = await spaces.schedule(
                ScheduleSpace(Actor(user_ref(host.id)), chat_ref(group.id), "Busy AMA", "tomorrow 20:00")
            )
            port = _free_port()
            web = f"http://127.0.0.1:{port}"
            env = {
                **os.environ,
                "PYTHONPATH": str(ROOT),
                "DATABASE_URL": url,
                "TELEGRAM_BOT_TOKEN": tg.token,
                "TELEGRAM_API_BASE": tg.base_url,
                "TELEGRAM_MODE": "webhook",
                "TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "SPACES_PUBLIC_URL": web,
                "HOST": "127.0.0.1",
                "PORT": str(port),
                "SPACES_LOG_LEVEL": "WARNING",
            }
            roles = [["run", "--no-console"]] if backend == "sqlite" else [["web"], ["worker"]]
            log = (workdir / "service.log").open("ab")
            for i, role in enumerate(roles):
                procs.append(
                    await asyncio.create_subprocess_exec(
                        sys.executable,
                        "-m",
                        "bots.cli",
                        *role,
                        cwd=workdir,
                        env={**env, "SPACES_WORKER_ID": f"bench-{i}"},
                        stdout=log,
                        stderr=log,
                    )
                )
            await tg.wait_for_call("setWebhook", within=60)
            await _wait_listening(web)
            tg.webhook_url = ""  # this script plays Telegram's side of the webhook itself (40 connections)
            fans = [tg.create_user(f"Fan{i}") for i in range(updates)]
            for fan in fans:
                fan.started = True  # the deep link opens the DM
            payloads = [_start_update(1_000 + i, fan.id, space.id) for i, fan in enumerate(fans)]
            latencies, burst, retries = await _burst(web, payloads)
            answered = await _answered(tg, fans, within=120)
    finally:
        for p in procs:
            if p.returncode is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                await asyncio.wait_for(p.wait(), 30)
            except TimeoutError:
                p.kill()
        await db.dispose()
        if drop is not None:
            await drop()
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[max(0, int(len(latencies) * 0.99) - 1)]
    verdict = "ok" if p99 <= HEALTHZ_TARGET_P99 else "ABOVE TARGET"
    print(f"backend {backend}: {updates} updates handled in {burst:.1f} s ({retries} × 503 retried)")
    print(
        f"  /healthz during the burst: {len(latencies)} probes, p50 {p50 * 1000:.0f} ms, "
        f"p99 {p99 * 1000:.0f} ms (target ≤ {HEALTHZ_TARGET_P99 * 1000:.0f} ms: {verdict}), "
        f"max {latencies[-1] * 1000:.0f} ms"
    )
    print(f"  answered (at the emulator): {answered}/{updates}")


async def _wait_listening(web: str) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(600):
            try:
                async with http.get(f"{web}/healthz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("the service did not start; see its log")


def _start_update(update_id: int, user_id: int, space_id: str) -> dict[str, Any]:
    text = f"/start s_{space_id}"
    return {
        "update_id": update_id,
        "message": {
            "message_id": 1,
            "date": int(time.time()),
            "chat": {"id": user_id, "type": "private", "first_name": "Fan"},
            "from": {"id": user_id, "is_bot": False, "first_name": "Fan", "language_code": "en"},
            "text": text,
            "entities": [{"type": "bot_command", "offset": 0, "length": 6}],
        },
    }


async def _burst(web: str, payloads: list[dict[str, Any]]) -> tuple[list[float], float, int]:
    latencies: list[float] = []
    loop_latencies: list[float] = []
    retries = 0
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for p in payloads:
        queue.put_nowait(p)
    done = asyncio.Event()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONNECTIONS + 2)) as http:

        async def probe() -> None:
            while not done.is_set():
                t0 = time.perf_counter()
                async with http.get(f"{web}/healthz") as r:
                    await r.read()
                latencies.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                async with http.get(f"{web}/") as r:  # no database: the event loop alone
                    await r.read()
                loop_latencies.append(time.perf_counter() - t0)
                await asyncio.sleep(0.02)

        async def connection() -> None:
            nonlocal retries
            while not queue.empty():
                update = queue.get_nowait()
                while True:
                    async with http.post(
                        f"{web}/telegram/webhook",
                        json=update,
                        headers={"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET},
                    ) as r:
                        await r.read()
                        if r.status == 200:
                            break
                        retries += 1
                        await asyncio.sleep(float(r.headers.get("Retry-After", "1")))

        prober = asyncio.create_task(probe())
        t0 = time.perf_counter()
        await asyncio.gather(*(connection() for _ in range(CONNECTIONS)))
        elapsed = time.perf_counter() - t0
        done.set()
        await prober
    loop_latencies.sort()
    print(
        f"  (a page without the database: p50 {statistics.median(loop_latencies) * 1000:.0f} ms, "
        f"p99 {loop_latencies[max(0, int(len(loop_latencies) * 0.99) - 1)] * 1000:.0f} ms)"
    )
    return latencies, elapsed, retries


async def _answered(tg: Any, fans: list[Any], *, within: float) -> int:
    deadline = time.monotonic() + within
    while True:
        n = sum(1 for f in fans if any("Reminder set" in m.text for m in tg.bot_messages(f.id)))
        if n == len(fans) or time.monotonic() > deadline:
            return n
        await asyncio.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=500)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    asyncio.run(run(args.updates, args.backend))


if __name__ == "__main__":
    main()
