"""End to end through the composition root: a `spaces run` process with the real DiscordPlatform (discord.py,
against the text gateway and voice emulators) and a live Space whose source is a media file. The supervisor
takes the Space, its bridge joins the Space's voice channel and a channel bridged from another server, and the
voice emulator receives the same Opus frames in both; un-bridging leaves that channel; ending the Space leaves
the other and reaps ffmpeg. Asserts are on what the emulators received."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import imageio_ffmpeg
import pytest

from bots.app import Role, build
from bots.cli import prepare_database
from bots.discord.adapter import DiscordConfig, DiscordPlatform
from config.settings import Settings
from core.audio import LinkState
from core.commands import EndSpace
from core.ids import new_space_id
from core.models import BridgedChannel, SpaceStatus
from core.refs import ChatRef, Platform, UserRef
from core.rules import Actor
from storage.db import make_engine, make_session_factory
from storage.stores import SqlUnitOfWork
from tests.bots.audio.conftest import ffmpeg_reading, make_audio
from tests.builders import space as space_sample
from tests.fakes.discord import VOICE, DiscordEmulator, pointed_at
from tests.fakes.discord_voice import VoiceServer

pytestmark = pytest.mark.timeout(120)
HOST = UserRef(Platform.DISCORD, "4242")


async def _until(check: Callable[[], object], what: str, within: float = 30.0) -> None:
    for _ in range(int(within / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {within:.0f} s: {what}")


async def test_a_live_space_plays_in_its_voice_channel_and_a_bridged_one(tmp_path: Path) -> None:
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    media = tmp_path / "media"
    media.mkdir()
    make_audio(ffmpeg, media / "tone.wav", seconds=30.0)
    settings = Settings.from_env(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'spaces.db'}",
            "SPACES_WORKER_ID": "voice-1",
            "SPACES_MEDIA_DIR": str(media),
            "HOST": "127.0.0.1",
            "PORT": "0",
        }
    )
    assert await prepare_database(settings) is None
    async with DiscordEmulator() as dc, VoiceServer() as voice:
        voice.attach(dc)
        home, other = dc.create_guild("Home"), dc.create_guild("Other")
        own = dc.add_channel(home, "Stage door", VOICE)
        bridged = dc.add_channel(other, "Listening room", VOICE)
        own_ref = ChatRef(Platform.DISCORD, str(own.id), scope=str(home.id))
        bridged_ref = ChatRef(Platform.DISCORD, str(bridged.id), scope=str(other.id))
        text = next(c for c in dc.channels.values() if c.type == 0 and c.guild_id == home.id)

        space_id = new_space_id()
        engine = make_engine(settings.database_url)
        uow = SqlUnitOfWork(make_session_factory(engine))
        now = datetime.now(UTC)
        async with uow:
            await uow.spaces.add(
                space_sample(
                    space_id,
                    host=HOST,
                    chat=ChatRef(Platform.DISCORD, str(text.id), scope=str(home.id)),
                    locale="en",
                    status=SpaceStatus.LIVE,
                    starts_at=now,
                    started_at=now,
                    created_at=now,
                    audio_source="file:tone.wav",
                    voice=own_ref,
                )
            )
            await uow.bridges.add(BridgedChannel(space_id, bridged_ref, HOST, now))
            await uow.commit()

        with pointed_at(dc):
            config = DiscordConfig(token=dc.token, guild_ready_timeout=0.05, ready_timeout=10.0)
            platform = DiscordPlatform(config, ssl_context=voice.client_ssl)
            service = await build(settings, role=Role.RUN, platforms=[platform], out=io.StringIO())
            try:
                await service.start()
                audio = service.audio
                assert audio is not None
                await _until(lambda: audio.local(space_id) is not None, "the Space taken")
                await _until(
                    lambda: all(len(voice.opus_frames(g.id)) >= 50 for g in (home, other)),
                    "a second of audio in both channels",
                )
                # the same encode in both (each channel joined at its own moment: compare a run of frames)
                run = voice.opus_frames(other.id)[10:30]
                await _until(lambda: len(voice.opus_frames(home.id)) >= len(voice.opus_frames(other.id)), "")
                mine = voice.opus_frames(home.id)
                assert any(mine[i : i + len(run)] == run for i in range(len(mine)))
                health = audio.health()[space_id]
                assert health.source.state is LinkState.PLAYING
                assert {c: h.state for c, h in health.channels.items()} == {
                    str(own_ref): LinkState.PLAYING,
                    str(bridged_ref): LinkState.PLAYING,
                }

                async with uow:  # the other server's moderator un-bridges it
                    await uow.bridges.remove(space_id, bridged_ref)
                    await uow.commit()
                await audio.step()
                await _until(lambda: voice.live(other.id) is None, "the bridged channel left")
                assert voice.live(home.id) is not None
                assert str(bridged_ref) not in audio.health()[space_id].channels

                await service.spaces.end(EndSpace(Actor(HOST), space_id))
                await audio.step()
                assert audio.local(space_id) is None and ffmpeg_reading(media) == []
                await _until(lambda: voice.live(home.id) is None, "the Space's own channel left")
            finally:
                await service.stop()
                await engine.dispose()
    assert ffmpeg_reading(media) == []
