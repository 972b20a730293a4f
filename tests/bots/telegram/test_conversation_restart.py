"""A ``/space`` conversation survives the receiving process: real ``spaces web`` and ``spaces worker``
processes (the CLI, on PostgreSQL) against the Bot API emulator in this process. The host sends ``/space``
alone in a group and is asked for the title; the web process is killed with SIGKILL and started again; the
host's answers (replies to the bot's questions, as privacy mode requires) are taken up by the new process,
which asks for the time and schedules the Space — counted at the emulator: each question once, one
confirmation, one Space.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bots.telegram.translate import chat_ref
from core.services.spaces import SpaceService
from storage.db import make_engine, make_session_factory
from storage.migrate import upgrade
from storage.stores import unit_of_work_factory
from tests.bots.telegram.test_crash import Process, _free_port, _WallClock
from tests.databases import new_database
from tests.fakes.clock import RecordingWake
from tests.fakes.telegram import TelegramEmulator

ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.slow


@pytest.fixture
def pg_url(tmp_path: Path) -> Iterator[str]:
    with new_database("postgres", tmp_path) as url:
        yield url


@pytest.fixture
async def world(pg_url: str, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    await upgrade(pg_url)
    db = make_engine(pg_url)
    spaces = SpaceService(unit_of_work_factory(make_session_factory(db)), _WallClock(), RecordingWake())
    async with TelegramEmulator() as tg:
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
            yield {"tg": tg, "spaces": spaces, "env": env, "tmp": tmp_path}
        finally:
            await db.dispose()


async def test_a_conversation_goes_on_after_the_web_process_is_killed(world: dict[str, Any]) -> None:
    tg: TelegramEmulator = world["tg"]
    spaces: SpaceService = world["spaces"]
    tmp: Path = world["tmp"]
    host = tg.create_user("Hana", started=True)
    group = tg.create_group("Builders", creator=host)
    env = {**world["env"], "PORT": str(_free_port()), "SPACES_WORKER_ID": "web-1"}
    worker = Process("worker", {**world["env"], "SPACES_WORKER_ID": "worker-1"}, tmp / "worker.log")
    web = Process("web", env, tmp / "web.log")
    await worker.start()
    try:
        await web.start()
        await tg.user_sends(host, group, "/space")
        ask = await tg.wait_for_message(group.id, lambda m: "the title of your Space" in m.text, within=60)
        await tg.wait_updates_consumed(within=60)
        web.kill()  # the process that asked is gone, with everything it held in memory
        await web.proc.wait()  # type: ignore[union-attr]
        await web.start()
        await tg.user_sends(host, group, "Weekly AMA", reply_to=ask)
        ask_time = await tg.wait_for_message(group.id, lambda m: "When does" in m.text, within=60)
        await tg.user_sends(host, group, "tomorrow 20:00", reply_to=ask_time)
        await tg.wait_for_message(group.id, lambda m: "Scheduled ✓" in m.text, within=60)
        await tg.wait_updates_consumed(within=60)
    finally:
        await web.stop()
        await worker.stop()
    (space,) = await spaces.upcoming(chat_ref(group.id))
    assert space.title == "Weekly AMA"
    said = [m.text for m in tg.bot_messages(group.id)]
    for words in ("the title of your Space", "When does", "Scheduled ✓"):
        assert sum(words in text for text in said) == 1, said
    logs = (tmp / "web.log").read_text(errors="replace") + (tmp / "worker.log").read_text(errors="replace")
    assert "Traceback" not in logs, logs[-3000:]
