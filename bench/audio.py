"""Live audio: what a live Space's audio costs, and whether its voice packets keep their 20-ms rhythm.

The service is THIS process: the real DiscordPlatform (discord.py) joins voice channels of the Discord
emulator, the engine's Bridge (bots/audio/bridge.py) encodes one source file with one ffmpeg and every channel
plays that one encode. The emulators run in processes of their own (bench/audio_peers.py, spawned): their
arrival stamps cannot be skewed by the service's busy loop, and their CPU is not counted as the service's.

1. cost, per second of audio, over a steady window (from 2 s after every channel plays to before the source
   ends): CPU (user + sys seconds) of this process — the sampler thread's own CPU taken out — and of its
   ffmpeg children, read from /proc/<pid>/stat while they run (getrusage(RUSAGE_CHILDREN) only counts reaped
   children); the sender threads apart, from /proc/self/task/<tid>/stat (ours: the one pump thread of
   bots/discord/pump.py for every channel; naive: discord.py's player thread per voice connection);
   memory: peak RSS of this process plus its ffmpeg children. For
   - ours: a Bridge with 1 voice channel; with 10; with 10 and 50 web listeners reading the Ogg stream
     (``bridge.ogg_stream()``, served by a tiny aiohttp app in this process) over real HTTP from another
     process;
   - the naive peer: discord.py's ``FFmpegOpusAudio(path, executable=ffmpeg, bitrate=96)`` per channel, one
     ffmpeg each (1 and 10 channels).
   The figure that matters: what one more channel costs, ours vs naive (target: ours ≤ 10 % of naive), and
   one more web listener.
2. pacing: intervals between consecutive RTP packets of each voice connection as the voice emulator
   received them (p50, p99, max over every connection), idle and while the delivery engine in this same
   process sends a 10,000-notification fan-out (live notices, SQLite) through the real TelegramPlatform to
   the Bot API emulator (rate limits lifted) in a third process. Target p99 ≤ 25 ms. The fan-out's duration,
   its count at the emulator, the CPU of the service and of the emulator meanwhile, and the service's
   garbage collections (a collection holds the GIL: the sender thread waits) are printed too. Our one pump
   thread sends the channels' packets one after another, each send releasing the GIL: a loop busy in Python
   can hold each channel's packet for up to a switch interval. Four runs,
   another Space each time: without ``gc.freeze()``; the same at production's pace (the send budget as
   deployed: Telegram's 30 messages/s, 900 subscribers); as deployed (``spaces`` freezes what start-up built
   out of the collector's full passes); with the GIL switch interval at 1 ms too.

The source is a file made by ffmpeg's lavfi (speech-like modulated tones, a chord, pink noise), so that the
Opus encoder does real work: 30 s (--quick: 16 s, and a 2,000-notification fan-out). The machine is shared:
each line ends with its load average; figures are noisy, run twice before reading much into a few percent.

    python -m bench --only audio [--quick]
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import multiprocessing
import os
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from types import SimpleNamespace
from typing import IO, Any, cast

import discord
import imageio_ffmpeg
from aiohttp import web
from sqlalchemy import insert

from bench.audio_peers import FAN_BASE, GROUP_ID, HOST_ID, listeners_peer, telegram_peer, voice_peer
from bots.audio.bridge import Bridge
from bots.discord.adapter import DiscordConfig, DiscordPlatform
from bots.discord.pump import THREAD_NAME as PUMP_THREAD
from bots.router import Router
from bots.runtime.budget import TokenBucketBudget, Unlimited
from bots.runtime.clock import SystemClock
from bots.runtime.waker import Waker
from bots.telegram.adapter import TelegramConfig, TelegramPlatform
from bots.telegram.translate import chat_ref, user_ref
from core.audio import AudioSource, LinkState, SourceKind
from core.commands import ScheduleSpace, StartSpace
from core.ports import Budget
from core.refs import ChatRef, Platform
from core.rules import Actor
from core.services.deliveries import DeliveryEngine, EngineConfig
from core.services.profiles import ProfileService
from core.services.replies import RepliesService
from core.services.spaces import SpaceService
from storage.db import make_engine, make_session_factory
from storage.migrate import upgrade
from storage.stores import SqlOutbox, unit_of_work_factory
from storage.tables import subscription_t
from tests.fakes.discord import DiscordEmulator, pointed_at

BITRATE = 96  # kb/s, the service's default (SPACES_AUDIO_BITRATE)
MARGINAL_TARGET = 0.10  # one more channel, ours / naive
PACING_TARGET_MS = 25.0  # p99 of the intervals between two packets of a connection
LIVE_TEXT = "is live now"
SAMPLE_EVERY = 0.25  # seconds between two looks at the ffmpeg children (one that exits loses at most this)
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20


# ----------------------------------------------------------------------------------------------- the source


def make_source(ffmpeg: str, path: Path, seconds: float) -> Path:
    """Realistic content for the encoder: two voices (tones gliding like intonation, cut into syllables by a
    ~4 Hz envelope), a soft chord under them, pink noise — stereo, 48 kHz."""
    voices = (
        "0.35*sin(2*PI*(140+30*sin(2*PI*0.7*t))*t)*(0.5+0.5*sin(2*PI*3.7*t))*(0.6+0.4*sin(2*PI*0.23*t))"
        "|0.30*sin(2*PI*(210+45*sin(2*PI*0.5*t))*t)*(0.5+0.5*sin(2*PI*4.3*t+1))*(0.6+0.4*sin(2*PI*0.19*t))"
    )
    subprocess.run(
        [
            ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
            "-f", "lavfi", "-i", f"aevalsrc='{voices}':s=48000:d={seconds}",
            "-f", "lavfi", "-i", f"sine=f=220:d={seconds}:r=48000",
            "-f", "lavfi", "-i", f"sine=f=277:d={seconds}:r=48000",
            "-f", "lavfi", "-i", f"anoisesrc=c=pink:a=0.08:d={seconds}:r=48000",
            "-filter_complex",
            "[1][2]amix=inputs=2,volume=0.3,aformat=channel_layouts=stereo[chord];"
            "[3]aformat=channel_layouts=stereo[noise];"
            "[0][chord][noise]amix=inputs=3:duration=shortest:normalize=0[out]",
            "-map", "[out]", "-ac", "2", "-ar", "48000", str(path),
        ],
        check=True,
    )  # fmt: skip
    return path


# ----------------------------------------------------------------------------------------------- the meter


def _proc_stat(path: str) -> tuple[int, float] | None:
    """(parent pid, user + sys CPU seconds) of /proc/<pid>[/task/<tid>]/stat, None once it is gone."""
    try:
        with open(path) as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2 :].split()  # after "(comm)": state, ppid, … utime is the 12th
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK


def _rss_mb(pid: int | str) -> float:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE_MB
    except OSError:
        return 0.0


@dataclass(frozen=True)
class Measured:
    own: float  # CPU seconds of this process (the meter's thread left out)
    ffmpeg: float  # … of its ffmpeg children
    ffmpegs: int  # how many ran
    players: float  # … of the sender threads (part of ``own``): our pump, or a player per connection


def _players_cpu() -> dict[int, float]:
    """The threads sending voice packets — our pump (one for every channel), discord.py's audio players
    (one per voice connection, the naive peer's) — native id → CPU seconds."""
    out = {}
    for t in threading.enumerate():
        sender = isinstance(t, discord.player.AudioPlayer) or t.name == PUMP_THREAD
        if sender and t.native_id is not None:
            stat = _proc_stat(f"/proc/self/task/{t.native_id}/stat")
            if stat is not None:
                out[t.native_id] = stat[1]
    return out


class Meter:
    """CPU and RSS of this process and of its ffmpeg children, sampled by a thread while they run.

    A child's CPU is its last reading minus its reading at :meth:`begin` (0 if it started later); one that
    exits keeps its last reading. The sampler thread's own CPU is left out of the process's figure."""

    def __init__(self, ffmpeg: str) -> None:
        self.ffmpeg = ffmpeg
        self.pid = os.getpid()
        self._ffmpegs: set[int] = set()  # pids seen running our ffmpeg
        self.cpu: dict[int, float] = {}  # ffmpeg pid → its last CPU reading
        self.rss: dict[int, float] = {}  # ffmpeg pid → its last RSS (0 once gone)
        self._base: dict[int, float] = {}
        self._players0: dict[int, float] = {}
        self._self0 = self._sampler0 = 0.0
        self.peak_self = self.peak_children = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._tid = 0
        self._thread = threading.Thread(target=self._run, name="bench-meter", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        self._tid = threading.get_native_id()
        while not self._stop.wait(SAMPLE_EVERY):
            self.sample()

    def _children(self) -> list[int]:
        pids: list[int] = []
        for task in os.listdir("/proc/self/task"):
            with contextlib.suppress(OSError), open(f"/proc/self/task/{task}/children") as f:
                pids += [int(p) for p in f.read().split()]
        return pids

    def _is_ffmpeg(self, pid: int) -> bool:
        # only a yes is kept: between fork and exec a child still shows this Python's command line
        if pid not in self._ffmpegs:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if f.read().split(b"\0")[0].decode() != self.ffmpeg:
                        return False
            except OSError:
                return False
            self._ffmpegs.add(pid)
        return True

    def sample(self) -> None:
        with self._lock:
            seen = set()
            for pid in self._children():
                if not self._is_ffmpeg(pid):
                    continue
                stat = _proc_stat(f"/proc/{pid}/stat")
                if stat is None or stat[0] != self.pid:
                    continue
                seen.add(pid)
                self.cpu[pid] = stat[1]
                self.rss[pid] = _rss_mb(pid)
            for pid in self.rss:
                if pid not in seen:
                    self.rss[pid] = 0.0
            self.peak_self = max(self.peak_self, _rss_mb("self"))
            self.peak_children = max(self.peak_children, sum(self.rss.values()))

    def _self_cpu(self) -> tuple[float, float]:
        t = os.times()
        sampler = _proc_stat(f"/proc/self/task/{self._tid}/stat") if self._tid else None
        return t.user + t.system, sampler[1] if sampler else 0.0

    def begin(self) -> None:
        self.sample()
        with self._lock:
            self._base = dict(self.cpu)
            self.peak_self = self.peak_children = 0.0
            self._self0, self._sampler0 = self._self_cpu()
            self._players0 = _players_cpu()
        self.sample()

    def end(self) -> Measured:
        """What ran since :meth:`begin`."""
        self.sample()
        with self._lock:
            own, sampler = self._self_cpu()
            children = sum(v - self._base.get(pid, 0.0) for pid, v in self.cpu.items())
            ran = sum(1 for pid in self.cpu if pid in self._base or self.cpu[pid] > 0)
            players = _players_cpu()
            return Measured(
                (own - self._self0) - (sampler - self._sampler0),
                children,
                ran,
                sum(v - self._players0.get(tid, 0.0) for tid, v in players.items()),
            )

    def forget(self) -> None:
        with self._lock:
            self.cpu.clear()
            self.rss.clear()
            self._base.clear()


class GcPauses:
    """The service's garbage collections (they hold the GIL: the sender thread waits), recorded through
    ``gc.callbacks`` while installed: (generation, seconds) each."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append((info["generation"], time.perf_counter() - self._started))

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def text(self) -> str:
        full = [d for g, d in self.pauses if g == 2]
        longest = max((d for _, d in self.pauses), default=0.0)
        return (
            f"{len(self.pauses)} GC runs in the service ({len(full)} full), longest {longest * 1000:.0f} ms"
        )


# ----------------------------------------------------------------------------------------------- peers


class Peer:
    """A spawned peer process (bench/audio_peers.py) and its end of the pipe."""

    def __init__(self, conn: Connection, process: Any, info: Any) -> None:
        self.conn = conn
        self.process = process
        self.info = info

    async def ask(self, command: Any, within: float = 60.0) -> Any:
        self.conn.send(command)
        return await _recv(self.conn, within)


async def _recv(conn: Connection, within: float) -> Any:
    def recv() -> Any:
        if not conn.poll(within):
            raise TimeoutError("a benchmark peer did not answer")
        return conn.recv()

    return await asyncio.to_thread(recv)


@contextlib.asynccontextmanager
async def peer(target: Callable[..., None], *args: Any, within: float = 120.0) -> AsyncIterator[Peer]:
    ctx = multiprocessing.get_context("spawn")
    mine, theirs = ctx.Pipe()
    process = ctx.Process(target=target, args=(theirs, *args), daemon=True)
    process.start()
    try:
        info = await _recv(mine, within)
        yield Peer(mine, process, info)
    finally:
        with contextlib.suppress(Exception):
            mine.send("stop")
            await _recv(mine, 20.0)
        await asyncio.to_thread(process.join, 10)
        if process.is_alive():
            process.kill()
            await asyncio.to_thread(process.join)
        mine.close()


@contextlib.asynccontextmanager
async def discord_service(info: dict[str, Any]) -> AsyncIterator[DiscordPlatform]:
    """The real DiscordPlatform, logged in to the emulator of a voice peer (its voice TLS certificate trusted)."""
    target = cast(
        DiscordEmulator, SimpleNamespace(base_url=info["base_url"], gateway_url=info["gateway_url"])
    )
    with pointed_at(target):
        config = DiscordConfig(token=info["token"], guild_ready_timeout=0.05, ready_timeout=10.0)
        platform = DiscordPlatform(config, ssl_context=ssl.create_default_context(cadata=info["ca"]))
        await platform.start()
        try:
            yield platform
        finally:
            await platform.stop()


def _refs(info: dict[str, Any]) -> list[ChatRef]:
    return [ChatRef(Platform.DISCORD, str(cid), scope=str(gid)) for gid, cid in info["channels"]]


async def _until(check: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


# ----------------------------------------------------------------------------------------------- figures


@dataclass(frozen=True)
class Pacing:
    p50: float
    p99: float
    max: float
    connections: int
    fewest: int  # packets received by the connection that received the fewest in the window
    expected: int  # packets a connection should have received in the window (one per 20 ms)

    @classmethod
    def of(cls, arrivals: dict[str, list[float]], w0: float, w1: float) -> Pacing:
        gaps: list[float] = []
        counts = []
        for stamps in arrivals.values():
            inside = [t for t in stamps if w0 <= t <= w1]
            counts.append(len(inside))
            gaps += [(b - a) * 1000 for a, b in itertools.pairwise(inside)]
        gaps.sort()
        if not gaps:
            return cls(float("nan"), float("nan"), float("nan"), len(arrivals), 0, int((w1 - w0) / 0.02))
        return cls(
            gaps[len(gaps) // 2],
            gaps[min(len(gaps) - 1, int(0.99 * len(gaps)))],
            gaps[-1],
            len(arrivals),
            min(counts),
            int((w1 - w0) / 0.02),
        )

    def text(self) -> str:
        ok = "OK" if self.p99 <= PACING_TARGET_MS else "ABOVE"
        return (
            f"p50 {self.p50:.1f} / p99 {self.p99:.1f} / max {self.max:.1f} ms (target p99 ≤ {PACING_TARGET_MS:.0f}) "
            f"{ok}; fewest packets {self.fewest} of {self.expected}"
        )


@dataclass(frozen=True)
class Cost:
    label: str
    channels: int
    listeners: int
    seconds: float  # the window: seconds of audio played
    cpu_self: float  # CPU seconds per second of audio, this process
    cpu_ffmpeg: float  # … its ffmpeg children
    ffmpegs: int
    cpu_players: float  # … the sender threads (pump or players), part of cpu_self
    rss_self: float  # peak MB
    rss_ffmpeg: float
    pacing: Pacing
    note: str = ""
    load: float = 0.0  # the machine's 1-minute load average at the end (2 cores, shared)

    @property
    def cpu(self) -> float:
        return self.cpu_self + self.cpu_ffmpeg

    @property
    def rss(self) -> float:
        return self.rss_self + self.rss_ffmpeg

    def line(self) -> str:
        what = f"{self.channels} voice channel{'s' if self.channels > 1 else ''}" + (
            f" + {self.listeners} web listeners" if self.listeners else ""
        )
        return (
            f"[audio] {self.label:5}, {what:34}: CPU {self.cpu:.4f} s/s (service {self.cpu_self:.4f}, of which "
            f"sender threads {self.cpu_players:.4f}; + "
            f"{self.ffmpegs} ffmpeg {self.cpu_ffmpeg:.4f}); RSS {self.rss:6.1f} MB (service {self.rss_self:.1f} "
            f"+ ffmpeg {self.rss_ffmpeg:.1f}); pacing {self.pacing.text()}{self.note}; load {self.load:.1f}"
        )


@dataclass
class Work:
    ffmpeg: str
    media: Path
    name: str  # the source file, in media
    seconds: float  # its length
    window: float  # the steady window measured in each run
    meter: Meter

    @property
    def path(self) -> str:
        return str(self.media / self.name)


def _cost(
    work: Work,
    m: Measured,
    label: str,
    channels: int,
    listeners: int,
    pacing: Pacing,
    w: float,
    note: str = "",
) -> Cost:
    return Cost(
        label, channels, listeners, w, m.own / w, m.ffmpeg / w, m.ffmpegs, m.players / w,
        work.meter.peak_self, work.meter.peak_children, pacing, note, os.getloadavg()[0],
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------- ours


def _listen_app(bridge: Bridge) -> web.Application:
    """What /s/<id>/listen serves, without the web package: the bridge's Ogg stream, as it comes."""

    async def listen(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "audio/ogg", "Cache-Control": "no-store"})
        await response.prepare(request)
        stream = bridge.ogg_stream()
        try:
            async for chunk in stream:
                await response.write(chunk)
        except ConnectionResetError:
            pass  # the listener went
        finally:
            closing = getattr(stream, "aclose", None)
            if closing is not None:
                await closing()
        return response

    app = web.Application()
    app.router.add_get("/s/bench/listen", listen)
    return app


@contextlib.asynccontextmanager
async def ours_running(
    work: Work, channels: int, name: str | None = None
) -> AsyncIterator[tuple[Peer, Bridge]]:
    """The voice peer, the platform, a started Bridge playing in every channel."""
    async with peer(voice_peer, channels) as vp, discord_service(vp.info) as platform:
        bridge = Bridge(
            "bench",
            AudioSource(SourceKind.FILE, name or work.name),
            ffmpeg=work.ffmpeg,
            media_dir=str(work.media),
            bitrate_kbps=BITRATE,
            voice=[platform],
        )
        await bridge.start()
        try:
            # ffmpeg -re hands over its first moment in one burst: the channels join on the steady rhythm
            await _until(lambda: bridge.feed.pushed >= 35, 20, "the source's first frames")
            for ref in _refs(vp.info):
                await bridge.link(ref)
            await _until(
                lambda: all(h.state is LinkState.PLAYING for h in bridge.health().channels.values()),
                60,
                "every channel playing",
            )
            yield vp, bridge
        finally:
            await bridge.stop()


async def ours(work: Work, channels: int, listeners: int) -> Cost:
    async with ours_running(work, channels) as (vp, bridge), contextlib.AsyncExitStack() as stack:
        note = ""
        lp: Peer | None = None
        if listeners:
            runner = web.AppRunner(
                _listen_app(bridge), access_log=None, handle_signals=False, shutdown_timeout=1
            )
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            url = f"http://127.0.0.1:{runner.addresses[0][1]}/s/bench/listen"
            lp = await stack.enter_async_context(peer(listeners_peer, url, listeners))
            await _until(lambda: bridge.health().listeners >= listeners, 30, "every web listener")
        w0 = time.monotonic() + 2.0
        await asyncio.sleep(2.0)
        work.meter.begin()
        await asyncio.sleep(work.window)
        w1 = time.monotonic()
        measured = work.meter.end()
        if lp is not None:
            before = (await lp.ask("count"))[1]
            await asyncio.sleep(1.0)
            connected, after = await lp.ask("count")
            per_s = sorted(b - a for a, b in zip(before, after, strict=True))
            note = (
                f"; listeners still connected {connected}/{listeners}, slowest received "
                f"{per_s[0] * 8 / 1000:.0f} kb/s"
            )
        pacing = Pacing.of(await vp.ask("arrivals"), w0, w1)
        return _cost(work, measured, "ours", channels, listeners, pacing, w1 - w0, note)


# ----------------------------------------------------------------------------------------------- naive


def _devnull() -> IO[bytes]:
    return open(os.devnull, "wb")


async def naive(work: Work, channels: int) -> Cost:
    """discord.py as its documentation shows it: one FFmpegOpusAudio (one ffmpeg encoding the file) per
    voice connection."""
    async with (
        peer(voice_peer, channels) as vp,
        discord_service(vp.info) as platform,
    ):
        clients: list[discord.VoiceClient] = []
        devnull = _devnull()  # ffmpeg's warnings kept out of the report; closed after the players
        try:
            for _, cid in vp.info["channels"]:
                channel = platform.client.get_channel(int(cid))
                assert isinstance(channel, discord.VoiceChannel)
                clients.append(await channel.connect(timeout=20.0))
            for vc in clients:
                vc.play(
                    discord.FFmpegOpusAudio(
                        work.path, executable=work.ffmpeg, bitrate=BITRATE, stderr=devnull
                    )
                )
            w0 = time.monotonic() + 2.0
            await asyncio.sleep(2.0)
            work.meter.begin()
            await asyncio.sleep(work.window)
            w1 = time.monotonic()
            measured = work.meter.end()
            pacing = Pacing.of(await vp.ask("arrivals"), w0, w1)
            return _cost(work, measured, "naive", channels, 0, pacing, w1 - w0)
        finally:
            for vc in clients:
                vc.stop()
                with contextlib.suppress(Exception):
                    await vc.disconnect(force=True)
            devnull.close()


# ----------------------------------------------------------------------------------------------- fan-out


class _Links:
    def space(self, space_id: str) -> str:
        return f"http://127.0.0.1/s/{space_id}"


@dataclass(frozen=True)
class Variant:
    label: str
    paced: bool = False  # the production send budget (Telegram: 30 messages/s) instead of none
    freeze: bool = False  # gc.freeze() first
    switch_s: float | None = None  # the interpreter's GIL switch interval (5 ms by default)


VARIANTS = (
    Variant("without gc.freeze()"),
    Variant("without gc.freeze(), at Telegram's 30/s", paced=True),
    # `spaces run|web|worker` freeze what start-up built (bots/cli.py): this is the service as deployed
    Variant("as deployed (gc.freeze())", freeze=True),
    Variant("as deployed + GIL switch 1 ms", freeze=True, switch_s=0.001),
)
TITLES = ("Launch", "Encore", "Finale", "Reprise")
TELEGRAM_RATE = 30.0  # messages/s: what Telegram allows a bot (and the budget lets through)
PACED_SECONDS = 30.0  # how long the paced fan-out lasts: 30 s of Telegram's 30 messages/s


@dataclass(frozen=True)
class FanOut:
    label: str
    notices: int
    seconds: float  # spaces.start() → the last live notice received at the emulator
    received: int  # distinct subscribers with a copy, counted at the emulator
    copies: int
    idle: Pacing
    busy: Pacing
    idle_gc: str
    busy_gc: str
    service_cpu: float  # CPU seconds per second of the fan-out: this process (bridge, pump, engine)…
    emulator_cpu: float  # … and the Bot API emulator's process


async def fan_out_runs(work: Work, fans: int, db_dir: Path, quick: bool) -> list[FanOut]:
    """Fan-outs (a Space each, the same ``fans`` subscribers) while a Bridge plays in 10 channels: the service
    without ``gc.freeze()``; the same at production's pace (Telegram's 30 messages/s, the send budget as deployed: what
    a real fan-out costs the audio) to fewer subscribers; as deployed, after ``gc.freeze()`` (what the service's objects at
    start-up cost every full collection: a full collection holds the GIL, the sender thread waits); and
    with the interpreter's GIL switch interval down from 5 ms to 1 ms too (how long the sender thread waits
    for a busy event loop to hand the GIL over)."""
    url = f"sqlite+aiosqlite:///{db_dir}/fanout.db"
    await upgrade(url)
    db = make_engine(url)
    uow = unit_of_work_factory(make_session_factory(db))
    clock = SystemClock()
    eng: DeliveryEngine
    waker = Waker(
        lambda: eng.deliver_due(),
        clock,
        sweep_every=timedelta(seconds=15),
        renew_every=timedelta(seconds=4),
        on_renew=lambda: eng.renew_leases(),
    )
    spaces = SpaceService(uow, clock, waker, default_tz="UTC")
    results: list[FanOut] = []
    switch = sys.getswitchinterval()
    try:
        async with peer(telegram_peer, fans) as tp:
            platform = TelegramPlatform(
                TelegramConfig(
                    token=tp.info["token"], api_base=tp.info["base_url"], file_base=tp.info["file_url"]
                ),
                spaces=spaces,
                profiles=ProfileService(uow),
                replies=RepliesService(uow, clock, waker),
                links=_Links(),
                clock=clock,
                receive=False,
            )

            def engine(budget: Budget) -> DeliveryEngine:
                return DeliveryEngine(
                    SqlOutbox(db), uow, Router([platform]), clock, budget, _Links(), waker,
                    EngineConfig(worker_id="bench"),
                )  # fmt: skip

            eng = engine(Unlimited())
            await platform.start()
            await waker.start()
            try:
                host, group = user_ref(HOST_ID), chat_ref(GROUP_ID)
                now = datetime.now(UTC)
                paced_fans = int(PACED_SECONDS * TELEGRAM_RATE) // (3 if quick else 1)
                sizes = [paced_fans if v.paced else fans for v in VARIANTS]
                ids = []
                for n, title in enumerate(TITLES):
                    space = await spaces.schedule(ScheduleSpace(Actor(host), group, title, "in 2 hours"))
                    ids.append(space.id)
                    rows = [
                        dict(space_id=space.id, user_ref=str(user_ref(FAN_BASE + i)), platform="telegram",
                             via_chat=str(group), created_at=now)
                        for i in range(sizes[n])
                    ]  # fmt: skip
                    async with db.begin() as c:
                        await c.execute(insert(subscription_t), rows)
                async with ours_running(work, 10, work.name) as (vp, _bridge):
                    for space_id, title, n, variant in zip(ids, TITLES, sizes, VARIANTS, strict=True):
                        if variant.freeze:
                            gc.collect()
                            gc.freeze()
                        if variant.switch_s is not None:
                            sys.setswitchinterval(variant.switch_s)
                        eng = engine(TokenBucketBudget() if variant.paced else Unlimited())
                        i0 = time.monotonic() + 1.0
                        with GcPauses() as idle_gc:
                            await asyncio.sleep(work.window / 2 + 1.0)
                        i1 = t0 = time.monotonic()
                        emulator = f"/proc/{tp.process.pid}/stat"
                        e0 = _proc_stat(emulator)
                        work.meter.begin()
                        with GcPauses() as busy_gc:
                            await spaces.start(StartSpace(Actor(host), space_id))
                            deadline = t0 + 600
                            while True:
                                received, copies, last = await tp.ask(("received", LIVE_TEXT, title))
                                if received >= n or time.monotonic() > deadline:
                                    break
                                await asyncio.sleep(0.5)
                        t1 = time.monotonic()
                        m = work.meter.end()
                        e1 = _proc_stat(emulator)
                        emulator_cpu = (e1[1] - e0[1]) if e0 and e1 else float("nan")
                        arrivals = await vp.ask("arrivals")
                        results.append(
                            FanOut(
                                variant.label, n, last - t0, received,
                                copies, Pacing.of(arrivals, i0, i1), Pacing.of(arrivals, t0, t1), idle_gc.text(),
                                busy_gc.text(), m.own / (t1 - t0), emulator_cpu / (t1 - t0),
                            )
                        )  # fmt: skip
                        await asyncio.sleep(1.0)  # the last sends recorded before the next idle window
                return results
            finally:
                gc.unfreeze()
                sys.setswitchinterval(switch)
                await waker.stop()
                await platform.stop()
    finally:
        await db.dispose()


# ----------------------------------------------------------------------------------------------- main


async def run(quick: bool) -> None:
    ffmpeg = str(imageio_ffmpeg.get_ffmpeg_exe())  # what Settings().ffmpeg_path() gives without SPACES_FFMPEG
    seconds = 16.0 if quick else 30.0
    fans = 2_000 if quick else 10_000
    with tempfile.TemporaryDirectory(prefix="bench-audio-") as tmp:
        media = Path(tmp) / "media"
        media.mkdir()
        make_source(ffmpeg, media / "talk.wav", seconds)
        make_source(ffmpeg, media / "long.wav", seconds * 14)  # every fan-out long
        meter = Meter(ffmpeg)
        meter.start()
        try:
            # the window ends before the naive ffmpegs reach the end of the file: discord.py's pipe lets them
            # run ~5 s ahead of the playback
            work = Work(ffmpeg, media, "talk.wav", seconds, seconds - 10.0, meter)
            print(
                f"[audio] source: {seconds:.0f} s file (speech-like tones, a chord, pink noise), Opus "
                f"{BITRATE} kb/s; each figure over {work.window:.0f} s of steady playing; service = this "
                f"process (discord.py, the bridge, the web app), the emulators in other processes"
            )
            costs: dict[str, Cost] = {}
            for key, make in (
                ("ours1", lambda: ours(work, 1, 0)),
                ("ours10", lambda: ours(work, 10, 0)),
                ("ours10L", lambda: ours(work, 10, 50)),
                ("naive1", lambda: naive(work, 1)),
                ("naive10", lambda: naive(work, 10)),
            ):
                meter.forget()
                costs[key] = await make()
                print(costs[key].line(), flush=True)
            ours_one = (costs["ours10"].cpu - costs["ours1"].cpu) / 9
            naive_one = (costs["naive10"].cpu - costs["naive1"].cpu) / 9
            ratio = ours_one / naive_one if naive_one > 0 else float("nan")
            ours_mb = (costs["ours10"].rss - costs["ours1"].rss) / 9
            naive_mb = (costs["naive10"].rss - costs["naive1"].rss) / 9
            ours_player = (costs["ours10"].cpu_players - costs["ours1"].cpu_players) / 9
            naive_player = (costs["naive10"].cpu_players - costs["naive1"].cpu_players) / 9
            print(
                f"[audio] one more voice channel: ours {ours_one:+.4f} s/s (in the pump {ours_player:+.4f}), "
                f"{ours_mb:+.1f} MB; naive {naive_one:+.4f} s/s (its player thread {naive_player:.4f}, its "
                f"ffmpeg the rest), {naive_mb:+.1f} MB: ours = {ratio:.0%} of naive's CPU "
                f"(target ≤ {MARGINAL_TARGET:.0%}) {'OK' if ratio <= MARGINAL_TARGET else 'ABOVE'}; "
                f"{ours_mb / naive_mb:.1%} of its memory"
            )
            listener = (costs["ours10L"].cpu - costs["ours10"].cpu) / 50
            listener_mb = (costs["ours10L"].rss - costs["ours10"].rss) / 50
            print(f"[audio] one more web listener: {listener:+.5f} s/s, {listener_mb:+.2f} MB")
            meter.forget()
            long = Work(ffmpeg, media, "long.wav", seconds * 14, 10.0, meter)
            for f in await fan_out_runs(long, fans, Path(tmp), quick):
                ok = f.received == f.notices
                limits = "the send budget as deployed" if "30/s" in f.label else "no send budget"
                print(
                    f"[audio] {f.label}: pacing, ours, 10 voice channels, idle: {f.idle.text()}; {f.idle_gc}\n"
                    f"[audio] {f.label}: pacing, ours, 10 voice channels, during a {f.notices:,}-notification "
                    f"fan-out in the same process: {f.busy.text()}; {f.busy_gc}\n"
                    f"[audio] {f.label}: the fan-out (SQLite, TelegramPlatform, {limits}, emulator rate limits "
                    f"lifted): {f.seconds:.1f} s ({f.notices / f.seconds:,.0f}/s); received by {f.received:,} of "
                    f"{f.notices:,} subscribers ({f.copies:,} copies) {'OK' if ok else 'MISSING'}; CPU meanwhile: "
                    f"service {f.service_cpu:.2f} s/s, emulator {f.emulator_cpu:.2f} s/s; load "
                    f"{os.getloadavg()[0]:.1f}",
                    flush=True,
                )
        finally:
            meter.close()
