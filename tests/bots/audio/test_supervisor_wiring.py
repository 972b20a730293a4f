"""The composition root runs the live audio: a `spaces run` process (SQLite) with a live Space whose source is a
media file plays it (real ffmpeg, the real Bridge), shows it on /healthz and /metrics, and ending the Space
through the core stops it at once — its ffmpeg reaped, its lease released. A worker-only process has no audio."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bots.app import Role, build
from bots.audio.supervisor import AudioSupervisor, lease_name
from bots.cli import prepare_database
from config.settings import Settings
from core.audio import LinkState
from core.commands import EndSpace
from core.ids import new_space_id
from core.models import SpaceStatus
from core.refs import ChatRef, Platform, UserRef
from core.rules import Actor
from storage.db import make_engine, make_session_factory
from storage.lease import SqlGatewayLease
from storage.stores import SqlUnitOfWork
from tests.bots.audio.conftest import ffmpeg_reading, tone_folder
from tests.builders import space as space_sample

HOST = UserRef(Platform.CONSOLE, "you")
CHAT = ChatRef(Platform.CONSOLE, "main")


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tone_folder(tmp_path_factory.mktemp("media"), seconds=120)


def _settings(tmp_path: Path, media: Path) -> Settings:
    return Settings.from_env(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'spaces.db'}",
            "SPACES_WORKER_ID": "audio-1",
            "SPACES_MEDIA_DIR": str(media),
            "HOST": "127.0.0.1",
            "PORT": "0",
        }
    )


async def _live_space(settings: Settings, source: str = "file:tone.ogg") -> str:
    space_id = new_space_id()
    engine = make_engine(settings.database_url)
    try:
        uow = SqlUnitOfWork(make_session_factory(engine))
        now = datetime.now(UTC)
        sp = space_sample(
            space_id,
            host=HOST,
            chat=CHAT,
            locale="en",
            status=SpaceStatus.LIVE,
            starts_at=now,
            started_at=now,
            created_at=now,
            audio_source=source,
        )
        async with uow:
            await uow.spaces.add(sp)
            await uow.commit()
    finally:
        await engine.dispose()
    return space_id


async def _playing(audio: AudioSupervisor[Any], space_id: str) -> None:
    for _ in range(400):  # at most ~20 s on a loaded machine; a few tenths usually
        if audio.health()[space_id].source.state is LinkState.PLAYING:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the source never played: {audio.health()[space_id]}")


async def test_a_live_space_plays_in_the_process_and_ending_it_stops_its_audio(
    tmp_path: Path, media: Path
) -> None:
    settings = _settings(tmp_path, media)
    assert await prepare_database(settings) is None
    space_id = await _live_space(settings)
    service = await build(settings, role=Role.RUN, out=io.StringIO())
    try:
        await service.start()  # the supervisor's first round runs in start(): the Space is taken now
        assert service.audio is not None
        bridge = service.audio.local(space_id)
        assert bridge is not None
        await _playing(service.audio, space_id)  # frames come: ffmpeg runs (started by the source's thread)
        assert len(ffmpeg_reading(media)) == 1
        grant = await SqlGatewayLease(service.db).current(lease_name(space_id))
        assert grant is not None and grant.holder.endswith(f" {service.web_url}")

        async with aiohttp.ClientSession() as http:
            async with http.get(f"{service.web_url}/healthz") as resp:
                body = await resp.json()
            assert resp.status == 200 and body["status"] == "ok"
            assert body["audio"][space_id]["source"]["state"] == "playing"
            async with http.get(f"{service.web_url}/metrics") as resp:
                text = await resp.text()
            assert 'spaces_audio_bridges{worker="audio-1"} 1.0' in text  # run delivers: its own label
            # the web app serves the live stream from this process's bridge, and the host's page by key only
            async with http.get(f"{service.web_url}/s/{space_id}/listen") as resp:
                assert resp.status == 200 and resp.headers["Content-Type"] == "audio/ogg"
                first = await resp.content.readexactly(4)
            assert first == b"OggS"
            async with http.get(f"{service.web_url}/s/{space_id}/host?key=wrong") as resp:
                assert resp.status == 404

        # ended through the core: the next round (kicked by the end itself, or this one) stops it
        await service.spaces.end(EndSpace(Actor(HOST), space_id))
        await service.audio.step()
        assert service.audio.local(space_id) is None and ffmpeg_reading(media) == []
        grant = await SqlGatewayLease(service.db).current(lease_name(space_id))
        assert grant is not None and grant.until <= datetime.now(UTC)
    finally:
        await service.stop()
    assert ffmpeg_reading(media) == []


async def test_a_worker_process_runs_no_audio(tmp_path: Path, media: Path) -> None:
    settings = _settings(tmp_path, media)
    assert await prepare_database(settings) is None
    worker = await build(settings, role=Role.WORKER, out=io.StringIO())
    assert worker.audio is None
    await worker.db.dispose()


async def test_a_source_that_never_plays_is_told_to_the_host_once(tmp_path: Path, media: Path) -> None:
    settings = _settings(tmp_path, media)
    assert await prepare_database(settings) is None
    space_id = await _live_space(settings, source="file:missing.ogg")
    out = io.StringIO()  # the console platform: where the host ("you") receives direct messages
    service = await build(settings, role=Role.RUN, out=out)
    try:
        await service.start()
        assert service.audio is not None and service.audio.local(space_id) is not None
        told = "isn't working: the source can't be read"
        for _ in range(600):  # ffmpeg fails three times (with backoff) before the bridge gives up: ~4 s
            if told in out.getvalue():
                break
            await asyncio.sleep(0.05)
        for _ in range(3):  # more rounds, and the source keeps failing: no second message
            await service.audio.step()
        await service.engine.deliver_due()
        assert out.getvalue().count(told) == 1, out.getvalue()
        assert "[DM → you]" in out.getvalue()
        health = service.audio.health()[space_id]
        assert health.source.state is not LinkState.PLAYING
    finally:
        await service.stop()
    assert ffmpeg_reading(media) == []
