"""PostgreSQL LISTEN/NOTIFY: a change made in one process wakes the workers at once, not at their sweep."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bots.app import Role, build
from config.settings import Settings
from core.commands import ScheduleSpace
from core.refs import ChatRef, Platform, UserRef
from core.rules import Actor
from storage.db import make_engine, normalize_url
from storage.migrate import upgrade
from storage.notify import PgWakeChannel
from tests.databases import new_database
from tests.fakes.clock import FakeClock


@pytest.fixture
def pg_url(tmp_path: Path) -> Iterator[str]:
    with new_database("postgres", tmp_path) as url:
        yield url


async def test_a_notification_reaches_a_listener_in_another_connection(pg_url: str) -> None:
    a, b = make_engine(normalize_url(pg_url)), make_engine(normalize_url(pg_url))
    heard: list[datetime] = []
    listener, publisher = PgWakeChannel(a), PgWakeChannel(b)
    try:
        await listener.listen(heard.append)
        await listener.listen(heard.append)  # idempotent while connected
        at = datetime(2026, 11, 25, 16, 0, tzinfo=UTC)
        await publisher.publish(at)
        for _ in range(200):
            if heard:
                break
            await asyncio.sleep(0.01)
        assert heard == [at]
    finally:
        await listener.close()
        await publisher.close()
        await a.dispose()
        await b.dispose()


async def test_a_space_scheduled_by_the_web_process_is_posted_by_the_worker_at_once(pg_url: str) -> None:
    await upgrade(pg_url)
    env = {"DATABASE_URL": pg_url, "PORT": "0", "SPACES_SWEEP_SECONDS": "300"}  # the sweep can't be it
    clock = FakeClock()
    worker_out = io.StringIO()
    worker = await build(
        Settings.from_env({**env, "SPACES_WORKER_ID": "w"}), role=Role.WORKER, clock=clock, out=worker_out
    )
    web_only = await build(
        Settings.from_env({**env, "SPACES_WORKER_ID": "web"}), role=Role.WEB, clock=clock, out=io.StringIO()
    )
    await worker.start()
    await web_only.start()
    try:
        await worker.waker.idle() if worker.waker else None  # the boot catch-up found nothing
        # what a webhook handler in the web process does:
        chat = ChatRef(Platform.CONSOLE, "main")
        await web_only.spaces.schedule(
            ScheduleSpace(Actor(UserRef(Platform.CONSOLE, "you")), chat, "Heard at once", "in 2 hours")
        )
        for _ in range(300):
            if "Heard at once" in worker_out.getvalue():
                break
            await asyncio.sleep(0.01)
        assert "Heard at once" in worker_out.getvalue()  # the worker posted the card within 3 s, not 300
    finally:
        await web_only.stop()
        await worker.stop()


async def test_a_burst_of_arms_for_the_same_future_time_is_announced_once(pg_url: str) -> None:
    from datetime import timedelta

    engine = make_engine(normalize_url(pg_url))
    channel = PgWakeChannel(engine)
    sent: list[datetime] = []

    async def record(at: datetime) -> bool:
        sent.append(at)
        return True

    channel.publish = record  # type: ignore[method-assign]
    soon = datetime.now(UTC) + timedelta(minutes=5)
    for _ in range(100):
        channel.arm(soon)
    channel.arm(soon - timedelta(minutes=1))  # earlier: announced
    channel.arm(soon + timedelta(minutes=1))  # later than one still ahead: not
    await channel.close()
    await engine.dispose()
    assert sent == [soon, soon - timedelta(minutes=1)]
