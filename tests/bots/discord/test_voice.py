"""Discord voice end to end: the real DiscordPlatform (discord.py) joins voice and stage channels of the text
gateway emulator, plays ONE shared feed (the engine's FrameHub fed by a real ffmpeg), and the voice emulator
decrypts every RTP packet it receives. Asserts are on what was received: Opus frames, RTP headers, gateway
op 4s, voice-state PATCHes. Timings are printed (the pacing figures), never asserted."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import statistics
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import discord
import imageio_ffmpeg
import pytest

from bots.audio.bridge import Bridge
from bots.audio.feed import FrameHub
from bots.audio.ffmpeg import SourceProcess, offline_encode
from bots.discord.adapter import DiscordConfig, DiscordPlatform
from bots.discord.pump import THREAD_NAME as PUMP_THREAD
from core.audio import FRAME_SAMPLES, SILENCE_FRAME, AudioSource, LinkState, SourceKind
from core.errors import ChatUnavailable
from core.ports import FrameReader, VoiceBridge
from core.refs import ChatRef, Platform
from tests.bots.audio.conftest import make_audio
from tests.fakes.discord import (
    STAGE,
    VOICE,
    DcChannel,
    DcGuild,
    DiscordEmulator,
    Perm,
    pointed_at,
    shard_of,
)
from tests.fakes.discord_voice import RtpFrame, VoiceServer

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def ffmpeg_exe() -> str:
    return str(imageio_ffmpeg.get_ffmpeg_exe())


@dataclass
class World:
    dc: DiscordEmulator
    voice: VoiceServer
    platform: DiscordPlatform
    media: Path
    ffmpeg: str

    def ref(self, channel: DcChannel) -> ChatRef:
        return ChatRef(Platform.DISCORD, str(channel.id), scope=str(channel.guild_id))

    def source(self, name: str, hub: FrameHub) -> SourceProcess:
        return SourceProcess(
            AudioSource(SourceKind.FILE, name), ffmpeg=self.ffmpeg, media_dir=str(self.media), push=hub.push
        )

    async def wait(self, find: Callable[[], object], within: float = 20.0, what: str = "condition") -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not find():
            if loop.time() > deadline:
                raise TimeoutError(f"timed out waiting for {what}")
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def world(
    tmp_path: Path, ffmpeg_exe: str, build: Callable[[DiscordEmulator], None]
) -> AsyncIterator[World]:
    async with DiscordEmulator() as dc, VoiceServer() as voice:
        voice.attach(dc)
        build(dc)
        media = tmp_path / "media"
        media.mkdir(exist_ok=True)
        with pointed_at(dc):
            config = DiscordConfig(token=dc.token, guild_ready_timeout=0.05, ready_timeout=10.0)
            platform = DiscordPlatform(config, ssl_context=voice.client_ssl)
            # quick re-joins: a test must not sit through production's patience
            platform.voice.restore_grace = 3.0
            platform.voice.backoff_first = 0.1
            platform.voice.connect_timeout = 10.0
            try:
                await platform.start()
                yield World(dc, voice, platform, media, ffmpeg_exe)
            finally:
                await platform.stop()


def one_channel_each(
    chans: list[DcChannel], guilds: int = 1, kind: int = VOICE, name: str = "Live"
) -> Callable[[DiscordEmulator], None]:
    """A ``world`` build: ``guilds`` servers with one ``kind`` channel each, appended to ``chans``."""

    def build(dc: DiscordEmulator) -> None:
        for i in range(guilds):
            chans.append(dc.add_channel(dc.create_guild(f"G{i}"), name, kind))

    return build


def player_threads() -> list[threading.Thread]:
    """Threads sending voice packets: the pump's, and discord.py's own players (there must be none)."""
    return [
        t for t in threading.enumerate() if t.name.startswith(("audio-player", PUMP_THREAD)) and t.is_alive()
    ]


def intervals_ms(frames: list[RtpFrame]) -> list[float]:
    return [(b.arrived - a.arrived) * 1000 for a, b in itertools.pairwise(frames)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def assert_rtp_continuous(frames: list[RtpFrame]) -> None:
    """One connection's packets: consecutive sequence numbers, timestamps stepping 960 (one 20-ms frame)."""
    seqs = [f.sequence for f in frames]
    assert seqs == [(seqs[0] + i) % 65536 for i in range(len(seqs))]
    assert {(b.timestamp - a.timestamp) % 2**32 for a, b in itertools.pairwise(frames)} == {FRAME_SAMPLES}


def _span(indices: list[int]) -> str:
    return f"{indices[0]}..{indices[-1]} ({len(indices)})" if indices else "none"


def is_subsequence(part: list[bytes], whole: list[bytes]) -> bool:
    it = iter(whole)
    return all(any(x == y for y in it) for x in part)


# ------------------------------------------------------------------------------------------ the tests


async def test_the_platform_is_a_voice_bridge(tmp_path: Path, ffmpeg_exe: str) -> None:
    chans: list[DcChannel] = []

    async with world(tmp_path, ffmpeg_exe, one_channel_each(chans, name="Voice")) as w:
        assert isinstance(w.platform, VoiceBridge)
        assert w.platform.can_join(w.ref(chans[0]))
        text = next(c for c in w.dc.channels.values() if c.type == 0)
        assert not w.platform.can_join(w.ref(text))
        assert not w.platform.can_join(ChatRef(Platform.DISCORD, "123", scope="456"))  # not on our shards
        assert w.platform.voice_health(w.ref(chans[0])).state is LinkState.STOPPED


async def test_five_channels_receive_the_one_encode_byte_for_byte(tmp_path: Path, ffmpeg_exe: str) -> None:
    chans: list[DcChannel] = []

    async with world(tmp_path, ffmpeg_exe, one_channel_each(chans, guilds=5)) as w:
        tone = make_audio(ffmpeg_exe, w.media / "tone.wav", seconds=4.0)
        reference = offline_encode(str(tone), ffmpeg=ffmpeg_exe)
        hub = FrameHub()
        for channel in chans:  # every channel listens before the source starts: each must get all of it
            await w.platform.join(w.ref(channel), hub)
        assert [t.name for t in player_threads()] == [PUMP_THREAD]  # one sender thread for five channels
        source = w.source("tone.wav", hub)
        source.start()
        try:
            await w.wait(
                lambda: all(len(w.voice.opus_frames(c.guild_id or 0)) >= len(reference) for c in chans),
                within=30,
                what="the whole tone in every channel",
            )
        except TimeoutError:
            got = [len(w.voice.opus_frames(c.guild_id or 0)) for c in chans]
            raise AssertionError(f"received {got} of {len(reference)}, pushed {hub.pushed}") from None
        finally:
            await asyncio.to_thread(source.stop)
        assert hub.pushed == len(reference)  # one encode for five channels
        gaps: list[float] = []  # between two audio frames (a silence the reader filled in widens it)
        packets: list[float] = []  # between two RTP packets, whatever they carry: the transport's rhythm
        for channel in chans:
            [conn] = w.voice.connections_of(channel.guild_id or 0)
            assert conn.identify["max_dave_protocol_version"] >= 1  # DAVE offered; the emulator answers 0
            assert conn.undecryptable == 0
            # the whole tone: every frame, byte for byte, in order, nothing more
            assert conn.opus_frames() == reference
            assert_rtp_continuous(conn.frames)
            audio = [f for f in conn.frames if f.opus in set(reference)]
            gaps += intervals_ms(audio)
            packets += intervals_ms(conn.frames)
            assert w.platform.voice_health(w.ref(channel)).state is LinkState.PLAYING
        print(
            f"\nvoice pacing, 5 channels x {len(reference)} frames: RTP inter-packet p50 "
            f"{statistics.median(packets):.1f} ms, p99 {percentile(packets, 0.99):.1f} ms, max "
            f"{max(packets):.1f} ms; between audio frames p50 {statistics.median(gaps):.1f} ms, p99 "
            f"{percentile(gaps, 0.99):.1f} ms, max {max(gaps):.1f} ms"
        )
        for channel in chans:
            await w.platform.leave(w.ref(channel))
        assert player_threads() == []


async def test_the_audio_flows_while_the_event_loop_is_blocked(tmp_path: Path, ffmpeg_exe: str) -> None:
    """The audio path never touches the event loop: with the loop stuck for a second (a CPU-bound handler),
    ffmpeg's thread keeps pushing and the pump thread keeps sending on every channel. The emulator, on that same
    loop, reads the queued datagrams afterwards: their count and unbroken sequence numbers show they were sent
    during the block (a path through the loop would have sent none)."""
    chans: list[DcChannel] = []

    async with world(tmp_path, ffmpeg_exe, one_channel_each(chans, guilds=3)) as w:
        tone = make_audio(ffmpeg_exe, w.media / "tone.wav", seconds=6.0)
        reference = offline_encode(str(tone), ffmpeg=ffmpeg_exe)
        hub = FrameHub()
        for channel in chans:
            await w.platform.join(w.ref(channel), hub)
        source = w.source("tone.wav", hub)
        source.start()
        try:
            await w.wait(lambda: hub.pushed >= 50, what="a second of audio")
            before = [len(w.voice.received(c.guild_id or 0)) for c in chans]
            pushed = hub.pushed
            time.sleep(1.0)  # noqa: ASYNC251 — the point: the loop is blocked for a second
            blocked_pushes = hub.pushed - pushed
            for _ in range(5):  # let the emulator read what queued up, without time for much more
                await asyncio.sleep(0)
            await asyncio.sleep(0.02)
            during = [len(w.voice.received(c.guild_id or 0)) - b for c, b in zip(chans, before, strict=True)]
        finally:
            await asyncio.to_thread(source.stop)
        print(
            f"\nloop blocked 1 s: ffmpeg pushed {blocked_pushes} frames, the channels sent {during} packets"
        )
        assert blocked_pushes >= 25  # the source's thread went on (50 frames a second)
        assert all(n >= 25 for n in during)  # so did the pump, on every channel
        for channel in chans:
            [conn] = w.voice.connections_of(channel.guild_id or 0)
            assert_rtp_continuous(conn.frames)
            assert is_subsequence(conn.opus_frames(), reference)


@pytest.mark.parametrize("drop", ["close-4015", "close-4006", "tcp-reset"])
async def test_a_dropped_voice_connection_resumes_playing(tmp_path: Path, ffmpeg_exe: str, drop: str) -> None:
    chans: list[DcChannel] = []

    async with world(tmp_path, ffmpeg_exe, one_channel_each(chans)) as w:
        tone = make_audio(ffmpeg_exe, w.media / "long.wav", seconds=12.0)
        reference = offline_encode(str(tone), ffmpeg=ffmpeg_exe)
        hub = FrameHub()
        ref, gid = w.ref(chans[0]), chans[0].guild_id or 0
        await w.platform.join(ref, hub)
        source = w.source("long.wav", hub)
        source.start()
        states: list[LinkState] = []

        def seen() -> LinkState:
            state = w.platform.voice_health(ref).state
            if not states or states[-1] is not state:
                states.append(state)
            return state

        try:
            await w.wait(lambda: len(w.voice.opus_frames(gid)) >= 50, what="a second of audio")
            if drop == "tcp-reset":
                dropped = w.voice.hard_drop(gid)
            else:
                dropped = await w.voice.drop(gid, int(drop.split("-")[1]))
            before = len(w.voice.opus_frames(gid))
            await w.wait(lambda: seen() is LinkState.RECONNECTING, within=10, what="the drop noticed")
            await w.wait(
                lambda: seen() is LinkState.PLAYING and len(w.voice.opus_frames(gid)) >= before + 50,
                within=30,
                what="audio after the drop",
            )
        finally:
            await asyncio.to_thread(source.stop)
        health = w.platform.voice_health(ref)
        assert health.reconnects >= 1
        assert states[:1] == [LinkState.PLAYING] and LinkState.RECONNECTING in states
        received = w.voice.opus_frames(gid)
        conns = w.voice.connections_of(gid)
        index = {frame: i for i, frame in enumerate(reference)}
        # what was heard after the drop is the same encode, in order (the live edge may have moved on)
        assert is_subsequence(received, reference), [
            [(index.get(f.opus, -1), f.sequence) for f in c.frames if f.opus in index] for c in conns
        ]
        after = [f for c in conns for f in c.frames if f.arrived > dropped.frames[-1].arrived]
        assert any(f.opus in set(reference) for f in after)
        for conn in conns:
            assert conn.undecryptable == 0
        print(
            f"\n{drop}: {len(conns)} voice session(s), {sum(c.resumes for c in conns)} resume(s), "
            f"reconnects={health.reconnects}, states={[s.value for s in states]}, reference frames per "
            f"session: {[_span([index.get(f.opus, -1) for f in c.frames if f.opus in index]) for c in conns]}"
        )
        await w.platform.leave(ref)
        assert player_threads() == []


class EndingFirstReader:
    """The hub, but its first reader ends (b"") after ``after`` frames, as a reader of a feed that broke."""

    def __init__(self, hub: FrameHub, after: int) -> None:
        self.hub, self.after, self.readers = hub, after, 0

    def reader(self) -> FrameReader:
        self.readers += 1
        inner = self.hub.reader()
        if self.readers > 1:
            return inner
        left = [self.after]

        class Ending:
            def read(self) -> bytes:
                left[0] -= 1
                return inner.read() if left[0] >= 0 else b""

            def close(self) -> None:
                inner.close()

        return Ending()


async def test_a_reader_that_ended_is_replaced_by_a_new_one(tmp_path: Path, ffmpeg_exe: str) -> None:
    chans: list[DcChannel] = []

    async with world(tmp_path, ffmpeg_exe, one_channel_each(chans)) as w:
        tone = make_audio(ffmpeg_exe, w.media / "tone.wav", seconds=6.0)
        reference = offline_encode(str(tone), ffmpeg=ffmpeg_exe)
        hub = FrameHub()
        feed = EndingFirstReader(hub, after=60)
        ref, gid = w.ref(chans[0]), chans[0].guild_id or 0
        source = w.source("tone.wav", hub)
        source.start()
        try:
            await w.platform.join(ref, feed)
            await w.wait(lambda: feed.readers == 2, what="a second reader")
            await w.wait(lambda: len(w.voice.opus_frames(gid)) >= 100, what="audio from the new reader")
        finally:
            await asyncio.to_thread(source.stop)
        health = w.platform.voice_health(ref)
        assert health.state is LinkState.PLAYING and health.reconnects == 1
        [conn] = w.voice.connections_of(gid)  # the same voice connection: only the reader was replaced
        assert is_subsequence(conn.opus_frames(), reference)
        await w.platform.leave(ref)
        assert player_threads() == []


async def test_a_bot_a_moderator_disconnected_stays_out(tmp_path: Path, ffmpeg_exe: str) -> None:
    chans: list[DcChannel] = []
    async with world(tmp_path, ffmpeg_exe, one_channel_each(chans)) as w:
        guilds = [w.dc.guilds[chans[0].guild_id]]
        ref = w.ref(chans[0])
        await w.platform.join(ref, FrameHub())
        joins = len([u for u in w.dc.voice_updates if u["channel_id"]])
        await w.dc.disconnect_from_voice(guilds[0])
        await w.wait(lambda: w.platform.voice_health(ref).state is LinkState.FAILED, what="the link given up")
        assert "moderator" in w.platform.voice_health(ref).detail
        await w.wait(lambda: player_threads() == [], what="the player gone")
        assert len([u for u in w.dc.voice_updates if u["channel_id"]]) == joins  # no re-join
        assert w.dc.voice_state(guilds[0]) is None
        await w.platform.join(ref, FrameHub())  # linked again on purpose: it plays again
        assert w.platform.voice_health(ref).state is LinkState.PLAYING
        await w.platform.leave(ref)


async def test_on_a_stage_the_bot_becomes_a_speaker(tmp_path: Path, ffmpeg_exe: str) -> None:
    guilds: list[DcGuild] = []
    chans: list[DcChannel] = []

    def build(dc: DiscordEmulator) -> None:
        guild = dc.create_guild("Stage guild")
        dc.bot_role(guild).permissions |= Perm.MUTE_MEMBERS | Perm.MOVE_MEMBERS | Perm.MANAGE_CHANNELS
        guilds.append(guild)
        chans.append(dc.add_channel(guild, "Stage", STAGE))

    async with world(tmp_path, ffmpeg_exe, build) as w:
        hub = FrameHub()
        await w.platform.join(w.ref(chans[0]), hub)
        gid = guilds[0].id
        [(patched, body)] = w.dc.voice_state_patches
        assert patched == gid and str(body.pop("channel_id")) == str(chans[0].id)
        assert body == {"suppress": False, "request_to_speak_timestamp": None}
        state = w.dc.voice_state(guilds[0])
        assert state is not None and state["channel_id"] == str(chans[0].id) and state["suppress"] is False
        # discord.py saw the VOICE_STATE_UPDATE that made it a speaker
        guild = w.platform.client.get_guild(gid)
        assert guild is not None and guild.me.voice is not None
        await w.wait(lambda: guild.me.voice is not None and not guild.me.voice.suppress, what="unsuppressed")
        assert w.platform.voice_health(w.ref(chans[0])).state is LinkState.PLAYING
        await w.platform.leave(w.ref(chans[0]))


async def test_on_a_stage_without_moderator_rights_the_bot_requests_to_speak(
    tmp_path: Path, ffmpeg_exe: str
) -> None:
    guilds: list[DcGuild] = []
    chans: list[DcChannel] = []

    def build(dc: DiscordEmulator) -> None:
        guilds.append(dc.create_guild("Stage guild"))
        chans.append(dc.add_channel(guilds[0], "Stage", STAGE))

    async with world(tmp_path, ffmpeg_exe, build) as w:
        await w.platform.join(w.ref(chans[0]), FrameHub())
        [(gid, body)] = w.dc.voice_state_patches
        assert gid == guilds[0].id and body["request_to_speak_timestamp"] and "suppress" not in body
        state = w.dc.voice_state(guilds[0])
        assert state is not None and state["suppress"] is True and state["request_to_speak_timestamp"]
        health = w.platform.voice_health(w.ref(chans[0]))
        assert health.state is LinkState.STARTING and "moderator" in health.detail
        await w.dc.invite_to_speak(guilds[0])  # a moderator accepts: the bot is heard
        await w.wait(
            lambda: w.platform.voice_health(w.ref(chans[0])).state is LinkState.PLAYING, what="a speaker"
        )
        assert w.platform.voice_health(w.ref(chans[0])).detail == ""
        await w.platform.leave(w.ref(chans[0]))


@pytest.mark.parametrize("missing", ["speak", "connect", "stage"])
async def test_a_missing_permission_is_refused_before_any_connection(
    tmp_path: Path, ffmpeg_exe: str, missing: str
) -> None:
    chans: list[DcChannel] = []

    def build(dc: DiscordEmulator) -> None:
        guild = dc.create_guild("G")
        channel = dc.add_channel(guild, "Live", STAGE if missing == "stage" else VOICE)
        deny = {"speak": Perm.SPEAK, "connect": Perm.CONNECT, "stage": Perm.REQUEST_TO_SPEAK}[missing]
        dc.set_overwrite(channel, dc.bot_role(guild), deny=deny)
        chans.append(channel)

    async with world(tmp_path, ffmpeg_exe, build) as w:
        with pytest.raises(ChatUnavailable) as refused:
            await w.platform.join(w.ref(chans[0]), FrameHub())
        expected = {"speak": "Speak", "connect": "Connect", "stage": "Mute Members"}[missing]
        assert expected in str(refused.value) and "Live" in str(refused.value)
        assert w.dc.voice_updates == []  # no gateway op 4 ever reached Discord
        assert w.voice.connections == []
        assert w.platform.voice_health(w.ref(chans[0])).state is LinkState.STOPPED


async def test_leave_disconnects_and_leaves_no_sender_thread(tmp_path: Path, ffmpeg_exe: str) -> None:
    chans: list[DcChannel] = []
    async with world(tmp_path, ffmpeg_exe, one_channel_each(chans)) as w:
        guilds = [w.dc.guilds[chans[0].guild_id]]
        ref = w.ref(chans[0])
        await w.platform.join(ref, FrameHub())
        await w.platform.join(ref, FrameHub())  # a retried join: still one connection
        assert len(w.voice.connections) == 1 and len(player_threads()) == 1
        await w.platform.leave(ref)
        assert w.dc.voice_updates[-1]["channel_id"] is None
        assert str(w.dc.voice_updates[-1]["guild_id"]) == str(guilds[0].id)
        assert w.dc.voice_state(guilds[0]) is None
        assert w.voice.leaves == [str(guilds[0].id)]
        assert player_threads() == []
        assert w.platform.voice_health(ref).state is LinkState.STOPPED
        guild = w.platform.client.get_guild(guilds[0].id)
        assert guild is not None and guild.voice_client is None
        await w.platform.leave(ref)  # idempotent
        assert sum(1 for u in w.dc.voice_updates if u["channel_id"] is None) == 1


async def test_one_voice_connection_per_server_and_a_stale_one_replaced(
    tmp_path: Path, ffmpeg_exe: str
) -> None:
    chans: list[DcChannel] = []

    def build(dc: DiscordEmulator) -> None:
        guild = dc.create_guild("G")
        chans.extend(dc.add_channel(guild, name, VOICE) for name in ("One", "Two"))

    async with world(tmp_path, ffmpeg_exe, build) as w:
        # a voice client left registered by someone else (an earlier life of the link): replaced
        channel = w.platform.client.get_channel(chans[0].id)
        assert isinstance(channel, discord.VoiceChannel)
        await channel.connect(timeout=10)
        await w.platform.join(w.ref(chans[0]), FrameHub())
        assert w.platform.voice_health(w.ref(chans[0])).state is LinkState.PLAYING
        assert len(w.voice.connections) == 2 and w.voice.connections[0].ended
        with pytest.raises(ChatUnavailable, match="one voice connection per server"):
            await w.platform.join(w.ref(chans[1]), FrameHub())
        await w.platform.leave(w.ref(chans[0]))
        assert player_threads() == []


async def test_stopping_the_platform_leaves_every_channel(tmp_path: Path, ffmpeg_exe: str) -> None:
    chans: list[DcChannel] = []

    async with world(tmp_path, ffmpeg_exe, one_channel_each(chans, guilds=2)) as w:
        for channel in chans:
            await w.platform.join(w.ref(channel), FrameHub())
        await w.platform.stop()
        assert sorted(w.voice.leaves) == sorted(str(c.guild_id) for c in chans)
        assert player_threads() == []
        assert all(w.platform.voice_health(w.ref(c)).state is LinkState.STOPPED for c in chans)


async def test_the_audio_bridge_plays_through_the_platform(tmp_path: Path, ffmpeg_exe: str) -> None:
    """The engine's Bridge with the platform as its VoiceBridge: linked while live, left when it stops."""
    chans: list[DcChannel] = []

    async with world(tmp_path, ffmpeg_exe, one_channel_each(chans, guilds=2)) as w:
        tone = make_audio(ffmpeg_exe, w.media / "tone.wav", seconds=4.0)
        reference = offline_encode(str(tone), ffmpeg=ffmpeg_exe)
        bridge = Bridge(
            "space-1",
            AudioSource(SourceKind.FILE, "tone.wav"),
            ffmpeg=ffmpeg_exe,
            media_dir=str(w.media),
            voice=[w.platform],
        )
        await bridge.start()
        try:
            for channel in chans:
                await bridge.link(w.ref(channel))
            await w.wait(
                lambda: all(len(w.voice.opus_frames(c.guild_id or 0)) >= 50 for c in chans), what="audio"
            )
            health = bridge.health()
            assert [h.state for h in health.channels.values()] == [LinkState.PLAYING] * 2
        finally:
            await bridge.stop()
        for channel in chans:
            assert is_subsequence(w.voice.opus_frames(channel.guild_id or 0), reference)
        assert sorted(w.voice.leaves) == sorted(str(c.guild_id) for c in chans)
        assert player_threads() == []


async def test_can_join_only_guilds_on_this_process_shards(tmp_path: Path) -> None:
    async with DiscordEmulator() as dc, VoiceServer() as voice:
        dc.voice = voice.on_voice_state
        channels = [dc.add_channel(dc.create_guild(f"G{i}"), "Live", VOICE) for i in range(6)]
        by_shard = {shard_of(c.guild_id or 0, 2): c for c in channels}
        assert set(by_shard) == {0, 1}
        with pointed_at(dc):
            config = DiscordConfig(
                token=dc.token, guild_ready_timeout=0.05, ready_timeout=10.0, shard_count=2, shard_ids=(0,)
            )
            platform = DiscordPlatform(config, ssl_context=voice.client_ssl)
            try:
                await platform.start()
                ours, theirs = (
                    ChatRef(Platform.DISCORD, str(c.id), scope=str(c.guild_id))
                    for c in (by_shard[0], by_shard[1])
                )
                assert platform.can_join(ours) and not platform.can_join(theirs)
                await platform.join(ours, FrameHub())
                assert platform.voice_health(ours).state is LinkState.PLAYING
            finally:
                await platform.stop()
        assert not platform.can_join(ours)  # stopped: nothing can be joined from here


async def test_the_pump_speaks_before_sending_and_says_goodbye_on_leave(
    tmp_path: Path, ffmpeg_exe: str
) -> None:
    """What discord.py's player does around its packets, done by the pump per channel: speaking set before
    the first packet, five silence frames and speaking unset when the channel leaves."""
    chans: list[DcChannel] = []

    async with world(tmp_path, ffmpeg_exe, one_channel_each(chans, guilds=2)) as w:
        hub = FrameHub()
        for channel in chans:
            await w.platform.join(w.ref(channel), hub)

        async def push() -> None:  # a live feed: any bytes (the pump forwards, never decodes)
            for i in itertools.count():
                hub.push(bytes([0xFC, i % 256, i // 256 % 256]))
                await asyncio.sleep(0.015)

        pusher = asyncio.create_task(push())
        gids = [c.guild_id or 0 for c in chans]
        try:
            await w.wait(lambda: all(len(w.voice.opus_frames(g)) >= 20 for g in gids), what="audio")
            await w.platform.leave(w.ref(chans[0]))
        finally:
            pusher.cancel()
        [first] = w.voice.connections_of(gids[0])
        await w.wait(lambda: [s["speaking"] for s in first.speaking] == [0, 1, 0], what="speaking unset")
        assert [f.opus for f in first.frames[-5:]] == [SILENCE_FRAME] * 5  # the goodbye, as the player's
        assert [f.opus[:1] for f in first.frames[-25:-5]] == [b"\xfc"] * 20  # audio until the goodbye
        # the other channel plays on, in the same thread
        [second] = w.voice.connections_of(gids[1])
        before = len(second.frames)
        await w.wait(lambda: len(second.frames) >= before + 10, what="the other channel going on")
        assert SILENCE_FRAME in [f.opus for f in second.frames[before:]]  # the feed paused: silence filled in
        assert [s["speaking"] for s in second.speaking] == [0, 1]
        assert [t.name for t in player_threads()] == [PUMP_THREAD]
        await w.platform.leave(w.ref(chans[1]))
        assert player_threads() == []


async def test_one_channel_failing_does_not_hold_the_others(tmp_path: Path, ffmpeg_exe: str) -> None:
    """Two channels of one feed: one loses its connection (a TCP reset), then another's sends raise (a
    surprise from discord.py, injected). The pump never waits on either: the healthy channel's packets keep
    their unbroken sequence throughout, the failures are counted and both links come back."""
    chans: list[DcChannel] = []

    async with world(tmp_path, ffmpeg_exe, one_channel_each(chans, guilds=2)) as w:
        tone = make_audio(ffmpeg_exe, w.media / "long.wav", seconds=20.0)
        hub = FrameHub()
        refs = [w.ref(c) for c in chans]
        gids = [c.guild_id or 0 for c in chans]
        for ref in refs:
            await w.platform.join(ref, hub)
        source = w.source(tone.name, hub)
        source.start()
        try:
            await w.wait(lambda: all(len(w.voice.opus_frames(g)) >= 50 for g in gids), what="audio")
            # 1. a connection lost: its lane is skipped, the other goes on
            w.voice.hard_drop(gids[0])
            await w.wait(
                lambda: w.platform.voice_health(refs[0]).state is LinkState.RECONNECTING, what="drop"
            )
            [healthy] = w.voice.connections_of(gids[1])
            during = len(healthy.frames)
            await w.wait(
                lambda: w.platform.voice_health(refs[0]).state is LinkState.PLAYING, within=30, what="back"
            )
            sent_meanwhile = len(healthy.frames) - during
            # 2. sends that raise on the healthy one: counted, then treated as a lost connection
            guild = w.platform.client.get_guild(gids[1])
            assert guild is not None and guild.voice_client is not None
            vc = guild.voice_client

            def broken(data: bytes, *, encode: bool = True) -> None:
                raise RuntimeError("injected")

            vc.send_audio_packet = broken  # type: ignore[attr-defined,method-assign]
            await w.wait(
                lambda: "failing" in w.platform.voice_health(refs[1]).detail, within=10, what="failing seen"
            )
            assert w.platform.voice_health(refs[1]).state is LinkState.RECONNECTING
            lost_at = len(w.voice.opus_frames(gids[0]))
            await w.wait(
                lambda: (
                    w.platform.voice_health(refs[1]).state is LinkState.PLAYING
                    and len(w.voice.opus_frames(gids[1])) > 0
                    and len(w.voice.connections_of(gids[1])) == 2
                    and len(w.voice.connections_of(gids[1])[-1].frames) >= 25
                ),
                within=30,
                what="the failing channel re-joined and playing",
            )
            recovered_at = len(w.voice.opus_frames(gids[0]))
        finally:
            await asyncio.to_thread(source.stop)
        print(
            f"\nwhile channel 1 re-connected, channel 2 received {sent_meanwhile} packets; while channel 2 "
            f"failed and re-joined, channel 1 received {recovered_at - lost_at}"
        )
        assert sent_meanwhile >= 25  # at least half a second of the re-connection, sent on the healthy one
        assert recovered_at - lost_at >= 25
        assert_rtp_continuous(healthy.frames)  # never a gap in its sequence while the other was down
        assert_rtp_continuous(w.voice.connections_of(gids[0])[-1].frames)
        assert w.platform.voice_health(refs[1]).reconnects >= 1
        for ref in refs:
            await w.platform.leave(ref)
        assert player_threads() == []
