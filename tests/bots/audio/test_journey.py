"""A host speaks from a browser, and the whole room hears it: the pieces of live audio wired as the composition
root wires them, each one real.

A Space is scheduled on Discord in a voice channel with the browser as its source and started through the
core; the audio supervisor (the composition root's own builder, on SQLite with the real lease) takes it and
its bridge joins the voice channel through the real DiscordPlatform (discord.py against the text and voice
emulators); headless Chromium, with a 440 Hz WAV as its microphone, opens the host's private link, and
keyboard-presses Start. What the voice emulator decrypts and what a web listener of /s/<id>/listen receives
both decode to that tone. Ending the Space leaves the voice channel and no ffmpeg behind.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bots.app import live_audio
from bots.audio.ogg import OggWriter
from bots.discord.adapter import DiscordConfig, DiscordPlatform
from bots.metrics import Metrics
from bots.runtime.clock import SystemClock
from bots.web.app import WebDeps, make_web_app
from config.settings import Settings
from core.audio import SILENCE_FRAME, LinkState
from core.commands import EndSpace, ScheduleSpace, StartSpace
from core.hostlink import host_link
from core.refs import ChatRef, Platform, UserRef
from core.rules import Actor
from core.services.spaces import SpaceService
from storage.db import make_engine, make_session_factory
from storage.lease import SqlGatewayLease
from storage.migrate import upgrade
from storage.stores import SqlOutbox, unit_of_work_factory
from tests.bots.audio.conftest import children
from tests.bots.web.conftest import (
    Received,
    chromium,
    chromium_or_skip,
    decode_pcm,
    dominant_hz,
    eventually,
    make_tone,
)
from tests.fakes.clock import RecordingWake
from tests.fakes.discord import VOICE, DiscordEmulator, pointed_at
from tests.fakes.discord_voice import VoiceServer

pytestmark = pytest.mark.timeout(180)


class Links:
    def __init__(self, base: str) -> None:
        self.base = base

    def space(self, space_id: str) -> str:
        return f"{self.base}/s/{space_id}"


def ffmpeg_children() -> list[int]:
    return [pid for pid, name in children() if "ffmpeg" in name]


def as_ogg(frames: list[bytes]) -> bytes:
    writer = OggWriter()
    return writer.headers() + writer.pages(frames)


async def test_the_hosts_browser_reaches_the_voice_channel_and_the_web_listeners(tmp_path: Path) -> None:
    chromium_or_skip()
    url = f"sqlite:///{tmp_path / 'spaces.db'}"
    await upgrade(url)
    db = make_engine(url)
    uow = unit_of_work_factory(make_session_factory(db))
    clock, wake = SystemClock(), RecordingWake()
    settings = Settings.from_env({"DATABASE_URL": url, "SPACES_WORKER_ID": "journey"})
    spaces = SpaceService(uow, clock, wake, default_tz="UTC")
    async with DiscordEmulator() as dc, VoiceServer() as voice:
        dc.voice = voice.on_voice_state
        guild = dc.create_guild("Jam club")
        (text,) = guild.channels.values()
        stage = dc.add_channel(guild, "Jam room", VOICE)
        chat = ChatRef(Platform.DISCORD, str(text.id), scope=str(guild.id))
        room = ChatRef(Platform.DISCORD, str(stage.id), scope=str(guild.id))
        host = UserRef(Platform.DISCORD, str(guild.owner_id))
        with pointed_at(dc):
            platform = DiscordPlatform(
                DiscordConfig(token=dc.token, guild_ready_timeout=0.05, ready_timeout=10.0),
                uow=uow,
                ssl_context=voice.client_ssl,
            )
            await platform.start()
            # the web app first: the host's link and the listeners' stream are on it
            metrics = Metrics()
            links = Links("http://unused")
            audio_service, supervisor = live_audio(
                settings,
                clock,
                uow,
                uow,
                wake,
                links,
                SqlGatewayLease(db),
                [platform],
                internal_url=lambda: None,
            )
            deps = WebDeps(
                spaces=spaces,
                outbox=SqlOutbox(db),
                registry=metrics.registry,
                audio=supervisor,
                host_keys=audio_service,
            )
            async with TestClient(TestServer(make_web_app(deps))) as web:
                links.base = str(web.make_url("")).rstrip("/")
                try:
                    space = await spaces.schedule(
                        ScheduleSpace(
                            Actor(host), chat, "Friday jam", "in 1 hour", audio_source="browser", voice=room
                        )
                    )
                    await spaces.start(StartSpace(Actor(host), space.id))
                    await supervisor.start()
                    bridge = supervisor.local(space.id)
                    assert bridge is not None, "the supervisor took the live Space"
                    await eventually(
                        lambda: platform.voice_health(room).state is LinkState.PLAYING,
                        what="the bridge playing in the voice channel",
                    )

                    got = Received()

                    async def listen() -> None:
                        async with web.get(f"/s/{space.id}/listen") as resp:
                            assert resp.status == 200
                            async for chunk in resp.content.iter_any():
                                got.take(chunk)

                    listening = asyncio.create_task(listen())
                    mic = make_tone(tmp_path / "voice.wav", hz=440, seconds=6)
                    link = host_link(links.space(space.id), (await spaces.get(space.id)).host_key)
                    assert link.startswith(f"{links.base}/s/{space.id}/host?key=")
                    try:
                        async with chromium(mic) as browser:
                            await browser.page.goto(link)
                            await browser.page.keyboard.press("Tab")
                            await browser.page.keyboard.press("Enter")

                            def heard() -> bool:
                                in_voice = [f for f in voice.opus_frames(guild.id) if f != SILENCE_FRAME]
                                on_web = [p for p in got.packets if p != SILENCE_FRAME]
                                return len(in_voice) >= 150 and len(on_web) >= 150

                            await eventually(heard, within=60, what="3 s of the host in voice and on the web")
                            assert browser.errors == [], browser.errors
                    finally:
                        listening.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await listening

                    in_voice = dominant_hz(decode_pcm(as_ogg(voice.opus_frames(guild.id))))
                    on_web = dominant_hz(decode_pcm(got.complete()))
                    print(f"\nbrowser → voice channel {in_voice:.1f} Hz, → web listener {on_web:.1f} Hz")
                    assert 425 < in_voice < 455 and 425 < on_web < 455

                    # the host ends it: the next round tears everything down
                    await spaces.end(EndSpace(Actor(host), space.id))
                    await supervisor.step()
                    assert supervisor.local(space.id) is None
                    assert platform.voice_health(room).state is LinkState.STOPPED
                    assert ffmpeg_children() == []
                finally:
                    await supervisor.stop()
                    await platform.stop()
                    await db.dispose()
    assert ffmpeg_children() == []
