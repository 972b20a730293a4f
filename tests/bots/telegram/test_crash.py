"""No update is lost when the receiving process dies: real ``spaces web`` and ``spaces worker`` processes
(the CLI, on PostgreSQL) against the Bot API emulator in this process. A burst of 50 ``/start s_<id>`` deep
links reaches the web process, which is killed with SIGKILL while it handles them, then restarted.

Counted where it matters — at the emulator, per person: everyone got exactly one "Reminder set", and everyone
is subscribed. Polling (the offset moves only past handled updates) and webhook (200 only once handled;
Telegram retries everything else).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from bots.telegram.translate import chat_ref, user_ref
from core.commands import ScheduleSpace
from core.rules import Actor
from core.services.spaces import SpaceService
from storage.db import make_engine, make_session_factory
from storage.migrate import upgrade
from storage.stores import unit_of_work_factory
from storage.tables import delivery_t, inbound_t
from tests.databases import new_database
from tests.fakes.clock import RecordingWake
from tests.fakes.telegram import TelegramEmulator

ROOT = Path(__file__).resolve().parents[3]
FANS = 50
SECRET = "crash-test-secret_0"

pytestmark = pytest.mark.slow


@pytest.fixture
def pg_url(tmp_path: Path) -> Iterator[str]:
    with new_database("postgres", tmp_path) as url:
        yield url


class Process:
    """A `spaces …` process; its output goes to a log file (read back for tracebacks and secrets)."""

    def __init__(self, role: str, env: dict[str, str], log: Path) -> None:
        self.role, self.env, self.log = role, env, log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        out = self.log.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bots.cli",
            self.role,
            cwd=self.log.parent,
            env=self.env,
            stdout=out,
            stderr=out,
        )
        out.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 20)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def world(pg_url: str, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    await upgrade(pg_url)
    db = make_engine(pg_url)
    uow = unit_of_work_factory(make_session_factory(db))
    spaces = SpaceService(uow, _WallClock(), RecordingWake(), default_tz="Europe/Paris")
    async with TelegramEmulator(webhook_max_attempts=10_000, webhook_retry_delay=0.2) as tg:
        host = tg.create_user("Hana", started=True)
        group = tg.create_group("Builders", creator=host)
        space = await spaces.schedule(
            ScheduleSpace(Actor(user_ref(host.id)), chat_ref(group.id), "Crash-proof AMA", "tomorrow 20:00")
        )
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "DATABASE_URL": pg_url,
            "TELEGRAM_BOT_TOKEN": tg.token,
            "TELEGRAM_API_BASE": tg.base_url,
            "HOST": "127.0.0.1",
            "SPACES_SWEEP_SECONDS": "1",
            "SPACES_LOG_LEVEL": "INFO",
        }
        try:
            yield {"tg": tg, "spaces": spaces, "space": space, "env": env, "db": db, "tmp": tmp_path}
        finally:
            await db.dispose()


class _WallClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


async def _burst_survives_a_kill(world: dict[str, Any], *, webhook: bool) -> None:
    tg: TelegramEmulator = world["tg"]
    spaces: SpaceService = world["spaces"]
    space = world["space"]
    tmp: Path = world["tmp"]
    port = _free_port()
    env = {**world["env"], "PORT": str(port), "SPACES_WORKER_ID": "web-1"}
    if webhook:
        env |= {
            "TELEGRAM_MODE": "webhook",
            "TELEGRAM_WEBHOOK_SECRET": SECRET,
            "SPACES_PUBLIC_URL": f"http://127.0.0.1:{port}",
        }
    worker = Process("worker", {**world["env"], "SPACES_WORKER_ID": "worker-1"}, tmp / "worker.log")
    web = Process("web", env, tmp / "web.log")
    fans = [tg.create_user(f"Fan{i}") for i in range(FANS)]
    await worker.start()
    try:
        if webhook:
            await web.start()
            await tg.wait_for_call("setWebhook", within=60)
            for fan in fans:
                await tg.user_starts_bot(fan, f"s_{space.id}")
            await tg.wait_for_call("sendMessage", lambda c: c.ok, within=60)  # answers are flowing
        else:
            for fan in fans:  # the burst waits for the bot: its first getUpdates takes all 50
                await tg.user_starts_bot(fan, f"s_{space.id}")
            await web.start()
            await tg.wait_for_call("getUpdates", lambda c: bool(c.result), within=60)  # handed over
        # SIGKILL while the burst is being handled: some updates done, others not (or not yet confirmed)
        done_at_kill = await _kill_mid_burst(web, spaces, space.id)
        await web.proc.wait()  # type: ignore[union-attr]
        marked = await _handled_marks(world["db"])
        await web.start()
        for fan in fans:
            await tg.wait_for_message(fan.id, lambda m: "Reminder set" in m.text, within=60)
        await tg.wait_updates_consumed(within=60)  # every update confirmed
        await _answers_settled(world["db"])
    finally:
        await web.stop()
        await worker.stop()
    told = {fan.id: [m for m in tg.bot_messages(fan.id) if "Reminder set" in m.text] for fan in fans}
    if webhook:
        handed = f"{len(tg.webhook_deliveries)} webhook attempts"
    else:
        handed = (
            f"{sum(len(c.result or []) for c in tg.calls('getUpdates'))} updates handed over by getUpdates"
        )
    print(
        f"\n{'webhook' if webhook else 'polling'}: SIGKILL with {done_at_kill}/{FANS} subscribed and "
        f"{marked} updates marked handled; {handed}; at the emulator: "
        f"{sum(len(v) for v in told.values())} 'Reminder set' for {FANS} people, "
        f"max {max(len(v) for v in told.values())} per person"
    )
    assert {len(v) for v in told.values()} == {1}, {k: len(v) for k, v in told.items() if len(v) != 1}
    assert await spaces.subscriber_count(space.id) == FANS
    # nothing but these answers was sent to the fans, and no process logged a secret
    for fan in fans:
        assert len(tg.bot_messages(fan.id)) == 1
    logs = (tmp / "web.log").read_text(errors="replace") + (tmp / "worker.log").read_text(errors="replace")
    assert SECRET not in logs
    assert "Traceback" not in logs, logs[-3000:]


async def _kill_mid_burst(web: Process, spaces: SpaceService, space_id: str) -> int:
    """Kill as soon as part of the burst is handled (or after 3 s, whichever first)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 3.0
    done = 0
    while loop.time() < deadline:
        done = await spaces.subscriber_count(space_id)
        if done >= 5:
            break
        await asyncio.sleep(0.002)
    web.kill()
    return done


async def _handled_marks(db: Any) -> int:
    i = inbound_t.c
    async with db.connect() as conn:
        stmt = select(func.count()).where(i.request_id.like("%:handled"))
        return int((await conn.execute(stmt)).scalar_one())


async def _answers_settled(db: Any) -> None:
    """Every answer in the outbox is settled (sent, or dead with a reason): nothing more is on its way."""
    d = delivery_t.c
    waiting = select(func.count()).where(d.kind == "reply", d.status.in_(["pending", "claimed"]))
    for _ in range(600):
        async with db.connect() as conn:
            left = int((await conn.execute(waiting)).scalar_one())
        if left == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{left} answers still on their way")


async def test_polling_web_process_killed_mid_burst_answers_everyone_once(world: dict[str, Any]) -> None:
    await _burst_survives_a_kill(world, webhook=False)


async def test_webhook_web_process_killed_mid_burst_answers_everyone_once(world: dict[str, Any]) -> None:
    await _burst_survives_a_kill(world, webhook=True)
