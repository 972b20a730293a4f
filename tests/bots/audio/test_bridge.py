"""A live Space's bridge on real ffmpeg: what a voice channel's player thread and a web listener *received*,
compared with the offline encode; voice links through a VoiceBridge that honours the port; browser sessions."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bots.audio.bridge import Bridge
from bots.audio.ffmpeg import offline_encode
from bots.audio.ogg import is_header, opus_packets
from core.audio import SILENCE_FRAME, AudioSource, LinkHealth, LinkState, SourceKind
from core.errors import ChatUnavailable, TransientError
from core.ports import FrameFeed, FrameReader, VoiceBridge
from core.refs import ChatRef, Platform
from tests.bots.audio.conftest import children, decode_ogg, encode_ogg_file, make_audio


def chan(n: int) -> ChatRef:
    return ChatRef(Platform.DISCORD, f"guild{n}", f"voice{n}")


class FakeVoice:
    """A VoiceBridge as the port says: join plays the feed from a player thread (like discord.py's), which
    reads one frame at a time without waiting; leave stops it. ``failures`` are raised by the next joins."""

    def __init__(self, *, joinable: bool = True, failures: list[Exception] | None = None) -> None:
        self.joinable = joinable
        self.failures = list(failures or [])
        self.joins: list[ChatRef] = []
        self.leaves: list[ChatRef] = []
        self.received: dict[str, list[bytes]] = {}
        self.got_empty: dict[str, bool] = {}
        self._players: dict[str, tuple[FrameReader, threading.Thread, threading.Event]] = {}

    def can_join(self, channel: ChatRef) -> bool:
        return self.joinable

    async def join(self, channel: ChatRef, feed: FrameFeed) -> None:
        self.joins.append(channel)
        if self.failures:
            raise self.failures.pop(0)
        key = str(channel)
        reader, stop = feed.reader(), threading.Event()
        got = self.received.setdefault(key, [])
        self.got_empty[key] = False

        def play() -> None:
            while not stop.is_set():
                frame = reader.read()
                if frame == b"":
                    self.got_empty[key] = True
                    return
                if frame != SILENCE_FRAME:
                    got.append(frame)
                time.sleep(0.004)  # faster than the 20-ms rhythm: nothing skipped in a test

        t = threading.Thread(target=play, name=f"player-{key}")
        self._players[key] = (reader, t, stop)
        t.start()

    async def leave(self, channel: ChatRef) -> None:
        self.leaves.append(channel)
        player = self._players.pop(str(channel), None)
        if player is not None:
            reader, t, stop = player
            stop.set()
            await asyncio.to_thread(t.join)
            reader.close()

    def voice_health(self, channel: ChatRef) -> LinkHealth:
        return LinkHealth(LinkState.PLAYING if str(channel) in self._players else LinkState.STOPPED)


async def until(cond: Callable[[], bool], what: str, within_s: float = 15.0) -> None:
    """Poll ``cond`` on the loop (real processes: no clock to drive); fails after ``within_s`` seconds."""
    end = time.monotonic() + within_s
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def collect(stream: AsyncIterator[bytes]) -> bytes:
    out = bytearray()
    async for chunk in stream:
        out += chunk
    return bytes(out)


def grown(bridge: Bridge, by: int) -> Callable[[], bool]:
    """True once ``by`` more frames than now were pushed to the bridge's hub."""
    start = bridge.feed.pushed
    return lambda: bridge.feed.pushed >= start + by


def bridge_for(source: AudioSource, ffmpeg: str, media_dir: Path | None, **kw: object) -> Bridge:
    return Bridge(
        "sp1",
        source,
        ffmpeg=ffmpeg,
        media_dir=str(media_dir) if media_dir else None,
        link_backoff_s=0.01,
        source_backoff_s=0.05,
        source_max_backoff_s=0.2,
        **kw,  # type: ignore[arg-type]
    )


async def test_file_reaches_voice_and_web_byte_for_byte(
    ffmpeg_exe: str, media_dir: Path, tone: Path, no_leftovers: None
) -> None:
    reference = offline_encode(str(tone), ffmpeg=ffmpeg_exe)
    voice = FakeVoice()
    assert isinstance(voice, VoiceBridge)
    bridge = bridge_for(AudioSource(SourceKind.FILE, "tone.wav"), ffmpeg_exe, media_dir, voice=[voice])
    await bridge.link(chan(1))
    await until(lambda: bridge.health().channels[str(chan(1))].state is LinkState.PLAYING, what="joined")
    web = asyncio.create_task(collect(bridge.ogg_stream()))
    await until(lambda: bridge.health().listeners == 1, what="listener")
    await bridge.start()
    await until(lambda: bridge.health().source.detail == "finished", what="the file's end")
    await until(lambda: len(voice.received[str(chan(1))]) >= len(reference), what="the player")
    await bridge.stop()
    data = await asyncio.wait_for(web, 10)

    assert voice.received[str(chan(1))] == reference
    assert voice.leaves == [chan(1)] and voice.got_empty[str(chan(1))] is False
    packets = [p for p in opus_packets(data) if not is_header(p)]
    assert [p for p in packets if p != SILENCE_FRAME] == reference
    # what a browser would play: the PCM of ffmpeg's own encode (ours may carry silence after the end)
    heard = await asyncio.to_thread(decode_ogg, ffmpeg_exe, data)
    expected = await asyncio.to_thread(decode_ogg, ffmpeg_exe, encode_ogg_file(ffmpeg_exe, tone))
    assert heard[: len(expected)] == expected
    assert bridge.health().source.state is LinkState.STOPPED and bridge.health().listeners == 0
    await bridge.stop()  # idempotent


async def test_killed_ffmpeg_keeps_the_players_playing(
    ffmpeg_exe: str, media_dir: Path, no_leftovers: None
) -> None:
    make_audio(ffmpeg_exe, media_dir / "long.wav", seconds=3.0)
    reference = offline_encode(str(media_dir / "long.wav"), ffmpeg=ffmpeg_exe)
    voice = FakeVoice()
    bridge = bridge_for(AudioSource(SourceKind.FILE, "long.wav"), ffmpeg_exe, media_dir, voice=[voice])
    key = str(chan(1))
    await bridge.link(chan(1))
    await until(lambda: bridge.health().channels[key].state is LinkState.PLAYING, what="joined")
    await bridge.start()
    seen: list[LinkState] = []

    async def watch() -> None:
        while True:
            s = bridge.health().source.state
            if not seen or seen[-1] is not s:
                seen.append(s)
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    try:
        await until(lambda: len(voice.received.get(key, ())) >= 30, what="frames")
        pid = bridge._process.pid if bridge._process else None
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        before = len(voice.received[key])
        await until(lambda: len(voice.received[key]) > before + 20, what="frames after the kill")
        await until(lambda: bridge.health().source.detail == "finished", what="the file's end")
        await until(lambda: len(voice.received[key]) >= bridge.feed.pushed - 3, what="the player")
    finally:
        watcher.cancel()
        await bridge.stop()
    assert voice.got_empty[key] is False  # the player never saw the end of the feed
    assert seen.index(LinkState.RECONNECTING) < len(seen) - 1
    assert seen[seen.index(LinkState.RECONNECTING) + 1] is LinkState.PLAYING
    assert bridge._process is not None and len(bridge._process.pids) == 2
    # resumed, not restarted: about the file's length in all, none played twice
    assert abs(len(voice.received[key]) - len(reference)) <= 10
    assert voice.received[key][:30] == reference[:30]


async def test_links_retry_fail_and_leave(
    ffmpeg_exe: str, media_dir: Path, tone: Path, no_leftovers: None
) -> None:
    flaky = FakeVoice(failures=[TransientError("gateway busy"), TransientError("timeout")])
    refusing = FakeVoice(failures=[ChatUnavailable("missing Connect permission")])
    nowhere = FakeVoice(joinable=False)
    bridge = bridge_for(AudioSource(SourceKind.FILE, "tone.wav"), ffmpeg_exe, media_dir, voice=[flaky])
    await bridge.start()
    await bridge.link(chan(1))
    await bridge.link(chan(1))  # already linked: nothing more
    await until(lambda: bridge.health().channels[str(chan(1))].state is LinkState.PLAYING, what="joined")
    assert flaky.joins == [chan(1)] * 3
    await until(lambda: len(flaky.received[str(chan(1))]) > 5, what="frames in the channel")

    b2 = bridge_for(
        AudioSource(SourceKind.FILE, "tone.wav"), ffmpeg_exe, media_dir, voice=[nowhere, refusing]
    )
    await b2.link(chan(2))
    await until(lambda: b2.health().channels[str(chan(2))].state is LinkState.FAILED, what="refused")
    assert b2.health().channels[str(chan(2))].detail == "missing Connect permission"
    assert nowhere.joins == [] and refusing.joins == [chan(2)]

    b3 = bridge_for(AudioSource(SourceKind.FILE, "tone.wav"), ffmpeg_exe, media_dir, voice=[nowhere])
    await b3.link(chan(3))
    await until(lambda: b3.health().channels[str(chan(3))].reconnects >= 2, what="retries")
    assert b3.health().channels[str(chan(3))].state is LinkState.RECONNECTING
    assert b3.channels() == [chan(3)]
    await b3.unlink(chan(3))
    assert b3.channels() == [] and b3.health().channels == {}

    await bridge.link(chan(4))
    await until(lambda: str(chan(4)) in flaky._players, what="second channel")
    await bridge.unlink(chan(4))
    assert flaky.leaves == [chan(4)]
    await bridge.stop()
    await b2.stop()
    await b3.stop()
    assert flaky.leaves == [chan(4), chan(1)] and refusing.leaves == [chan(2)]
    assert bridge.health().channels == {}


async def test_source_failure_reported_once_on_the_loop(ffmpeg_exe: str, no_leftovers: None) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    reports: list[tuple[str, bool]] = []
    loop_thread = threading.get_ident()

    bridge = bridge_for(
        AudioSource(SourceKind.URL, f"http://127.0.0.1:{port}/live"),
        ffmpeg_exe,
        None,
        on_source_failed=lambda d: reports.append((d, threading.get_ident() == loop_thread)),
    )
    await bridge.start()
    await until(lambda: bridge.health().source.reconnects >= 5, what="retries")
    assert bridge.health().source.state is LinkState.FAILED
    await bridge.stop()
    assert reports == [("connection refused", True)]


async def test_slow_web_listener_dropped(
    ffmpeg_exe: str, media_dir: Path, tone: Path, no_leftovers: None
) -> None:
    bridge = bridge_for(AudioSource(SourceKind.FILE, "tone.wav"), ffmpeg_exe, media_dir)
    slow = bridge.ogg_stream(backlog=50)  # 1 s
    assert (await anext(slow)).startswith(b"OggS")  # headers, then it never reads again
    fast = asyncio.create_task(collect(bridge.ogg_stream()))
    await bridge.start()
    await until(lambda: bridge.health().listeners == 1, what="the slow one dropped")
    await until(lambda: bridge.health().source.detail == "finished", what="the file's end")
    await bridge.stop()
    got = [p for p in opus_packets(await fast) if not is_header(p) and p != SILENCE_FRAME]
    assert got == offline_encode(str(tone), ffmpeg=ffmpeg_exe)
    assert [c async for c in slow] == []


@pytest.fixture
def webm(ffmpeg_exe: str, tmp_path: Path) -> bytes:
    path = make_audio(ffmpeg_exe, tmp_path / "mic.webm", seconds=1.0, extra=("-c:a", "libopus", "-f", "webm"))
    return path.read_bytes()


async def test_browser_sessions(ffmpeg_exe: str, webm: bytes, no_leftovers: None) -> None:
    bridge = bridge_for(AudioSource(SourceKind.BROWSER), ffmpeg_exe, None)
    await bridge.start()
    assert bridge.health().source == LinkHealth(LinkState.STARTING, "waiting for the host", 0)
    most = 0
    sampling = True

    def sample() -> None:  # how many ffmpeg run at once, all along
        nonlocal most
        while sampling:
            most = max(most, sum(1 for _pid, name in children() if "ffmpeg" in name))
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    reader = bridge.feed.reader()
    web = bridge.ogg_stream()
    web_packets: list[bytes] = []

    async def listen() -> None:
        async for chunk in web:
            web_packets.extend(opus_packets(chunk))

    listener = asyncio.create_task(listen())
    try:
        for session_no in range(3):
            session = bridge.browser_input()
            arrived = grown(bridge, 45)
            for i in range(0, len(webm), 4096):
                await session.write(webm[i : i + 4096])
            await until(arrived, what=f"session {session_no} frames")
            assert bridge.health().source.state is LinkState.PLAYING
            if session_no < 2:
                await session.close()  # the host went away
                assert bridge.health().source.state is LinkState.RECONNECTING
                assert bridge.health().source.detail == "waiting for the host"
                # the web listener is kept going with silence, paced in real time (~0.5 s to wait)
                await until(lambda: SILENCE_FRAME in web_packets, what="silence on the web")
            # else: the third session is replaced by the bridge's stop
        # between sessions and after, readers hear silence rather than the end
        while (frame := reader.read()) != SILENCE_FRAME:
            assert frame != b""
        assert reader.read() == SILENCE_FRAME
        # a fourth session replaces the third without closing it first: still one ffmpeg at a time
        fourth = bridge.browser_input()
        await fourth.write(webm[:4096])
        await bridge.stop()
        await asyncio.wait_for(listener, 10)
    finally:
        sampling = False
        await asyncio.to_thread(sampler.join)
    assert most == 1
    assert reader.read() == b""
    # the web listener heard the three sessions (about 50 frames each) and paced silence while none played
    audio = [p for p in web_packets if not is_header(p) and p != SILENCE_FRAME]
    assert 3 * 45 <= len(audio) <= 3 * 55
    assert SILENCE_FRAME in web_packets
    assert bridge.health().source.state is LinkState.STOPPED
    with pytest.raises(ValueError):
        bridge_for(AudioSource(SourceKind.FILE, "x.wav"), ffmpeg_exe, None).browser_input()


@pytest.fixture
def video_only(ffmpeg_exe: str, tmp_path: Path) -> bytes:
    """What a recorder sending video only would send: a webm without an audio track."""
    video = tmp_path / "camera.webm"
    subprocess.run(
        [
            ffmpeg_exe,
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-f",
            "lavfi",
            "-i",
            "testsrc=duration=1:size=64x64:rate=10",
            "-c:v",
            "libvpx",
            "-f",
            "webm",
            str(video),
        ],
        check=True,
        timeout=30,
    )
    return video.read_bytes()


async def test_browser_session_without_audio_reported(
    ffmpeg_exe: str, video_only: bytes, no_leftovers: None
) -> None:
    reports: list[str] = []
    bridge = bridge_for(AudioSource(SourceKind.BROWSER), ffmpeg_exe, None, on_source_failed=reports.append)
    await bridge.start()
    session = bridge.browser_input()
    await session.write(video_only)  # the session stays open: ffmpeg gives up by itself
    await until(lambda: bool(reports), what="the report")
    assert reports == ["no audio stream"]
    assert bridge.health().source.state is LinkState.FAILED
    await bridge.stop()


async def test_stop_survives_a_cancelled_caller(
    ffmpeg_exe: str, media_dir: Path, tone: Path, no_leftovers: None
) -> None:
    voice = FakeVoice()
    bridge = bridge_for(AudioSource(SourceKind.FILE, "tone.wav"), ffmpeg_exe, media_dir, voice=[voice])
    await bridge.start()
    await bridge.link(chan(1))
    await until(lambda: bridge.feed.pushed > 5, what="frames")
    caller = asyncio.create_task(bridge.stop())
    await asyncio.sleep(0)
    caller.cancel()  # e.g. the supervisor's task cancelled at shutdown
    with pytest.raises(asyncio.CancelledError):
        await caller
    await bridge.stop()  # the same stop, carried on to its end
    assert voice.leaves == [chan(1)] and bridge.feed.closed and not children()
