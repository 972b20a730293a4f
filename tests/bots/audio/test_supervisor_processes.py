"""Real processes: two ``spaces web`` on one PostgreSQL database and a live Space whose source is a media file.
Exactly one of them runs its audio; ``kill -9`` that one and the other takes the Space over after the lease
runs out, its bridge playing (its /healthz says so), and the dead owner's ffmpeg did not outlive it.

What is checked is what each process reports on /healthz and which processes exist (/proc), never timing."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from core.ids import new_space_id
from core.models import SpaceStatus
from storage.db import make_engine, make_session_factory
from storage.migrate import upgrade
from storage.stores import SqlUnitOfWork
from tests.bots.audio.conftest import ffmpeg_reading, tone_folder
from tests.builders import space as space_sample
from tests.databases import new_database

ROOT = Path(__file__).resolve().parents[3]
TONE = "tone.ogg"


@pytest.fixture(scope="module")
def pg_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with new_database("postgres", tmp_path_factory.mktemp("db")) as url:
        asyncio.run(upgrade(url))
        yield url


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A media folder with a 10-minute tone (long enough to outlive the test)."""
    return tone_folder(tmp_path_factory.mktemp("media"), seconds=600, name=TONE)


async def _live_space(url: str) -> str:
    space_id = new_space_id()
    engine = make_engine(url)
    try:
        uow = SqlUnitOfWork(make_session_factory(engine))
        now = datetime.now(UTC)
        sp = space_sample(
            space_id,
            status=SpaceStatus.LIVE,
            starts_at=now,
            started_at=now,
            created_at=now,
            audio_source=f"file:{TONE}",
        )
        async with uow:
            await uow.spaces.add(sp)
            await uow.commit()
    finally:
        await engine.dispose()
    return space_id


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class WebProcess:
    def __init__(self, name: str, url: str, media: Path, logs: Path) -> None:
        self.name = name
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = logs / f"{name}.log"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bots.cli", "web"],
                cwd=logs,  # no stray .env file
                env={
                    **os.environ,
                    "PYTHONPATH": str(ROOT),
                    "DATABASE_URL": url,
                    "SPACES_WORKER_ID": name,
                    "SPACES_MEDIA_DIR": str(media),
                    "SPACES_LOG_LEVEL": "INFO",
                    "HOST": "127.0.0.1",
                    "PORT": str(self.port),
                },
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )

    async def health(self, http: aiohttp.ClientSession) -> dict[str, Any] | None:
        try:
            async with http.get(f"{self.base}/healthz", timeout=aiohttp.ClientTimeout(total=5)) as resp:
                body: dict[str, Any] = await resp.json()
                return body
        except (aiohttp.ClientError, TimeoutError):
            return None

    def tail(self) -> str:
        lines = self.log.read_text(errors="replace").splitlines()[-25:] if self.log.exists() else []
        return f"--- {self.name}\n" + "\n".join(lines)


@pytest.fixture
async def processes(pg_url: str, media: Path, tmp_path: Path) -> AsyncIterator[list[WebProcess]]:
    procs = [WebProcess(name, pg_url, media, tmp_path) for name in ("web-a", "web-b")]
    try:
        yield procs
    finally:
        for p in procs:
            if p.proc.poll() is None:
                p.proc.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.proc.kill()
                p.proc.wait()


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])  # after "pid (comm) state": the parent's pid


async def _until(check: Any, within: float, what: str, procs: list[WebProcess]) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = await check()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"not within {within:.0f} s: {what}\n" + "\n".join(p.tail() for p in procs))
        await asyncio.sleep(0.2)


async def test_a_killed_owner_is_replaced_and_its_ffmpeg_does_not_outlive_it(
    pg_url: str, media: Path, processes: list[WebProcess]
) -> None:
    space_id = await _live_space(pg_url)
    async with aiohttp.ClientSession() as http:

        async def owners() -> list[tuple[WebProcess, dict[str, Any]]] | None:
            found = []
            for p in processes:
                body = await p.health(http)
                audio = (body or {}).get("audio", {})
                if space_id in audio and audio[space_id]["source"]["state"] == "playing":
                    found.append((p, audio[space_id]))
            return found or None

        async def both_up_one_playing() -> list[dict[str, Any]] | None:
            bodies = [await p.health(http) for p in processes]
            if any(b is None for b in bodies) or not await owners():
                return None
            return [b for b in bodies if b is not None]

        bodies = await _until(both_up_one_playing, 60, "both up, one playing the Space", processes)
        assert [space_id in b.get("audio", {}) for b in bodies].count(True) == 1  # exactly one owner
        first = await owners()
        assert first is not None and len(first) == 1
        owner = first[0][0]
        survivor = next(p for p in processes if p is not owner)
        assert ffmpeg_reading(media), "the owner's ffmpeg runs"

        owner.proc.send_signal(signal.SIGKILL)
        owner.proc.wait()

        async def taken_over() -> list[tuple[WebProcess, dict[str, Any]]] | None:
            found = await owners()
            return found if found and found[0][0] is survivor else None

        await _until(taken_over, 60, "the survivor playing the Space after the lease ran out", processes)

        # one ffmpeg left: the survivor's (the dead owner's died with it)
        async def one_ffmpeg() -> bool:
            return len(ffmpeg_reading(media)) == 1

        await _until(one_ffmpeg, 20, "the dead owner's ffmpeg gone", processes)
        assert _parent(ffmpeg_reading(media)[0]) == survivor.proc.pid

    survivor.proc.send_signal(signal.SIGTERM)
    assert survivor.proc.wait(timeout=30) == 0
    assert ffmpeg_reading(media) == []  # a clean stop reaps it
