"""Stand-ins for the audio supervisor's tests: the live Spaces and the host's reports (AudioService), a bridge
running a real ffmpeg child, a voice connection that can or cannot reach a channel, and one "process"."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import imageio_ffmpeg
from sqlalchemy.ext.asyncio import AsyncEngine

from bots.audio.supervisor import AudioSupervisor, LiveSpaceAudio
from core.audio import AudioSource, LinkHealth, LinkState, SourceKind
from core.ports import GatewayLease
from core.refs import ChatRef, Platform
from storage.lease import SqlGatewayLease
from tests.fakes.clock import FakeClock

VOICE = ChatRef(Platform.DISCORD, "500", scope="9")
BRIDGED = ChatRef(Platform.DISCORD, "501", scope="9")
OTHER_GUILD = ChatRef(Platform.DISCORD, "700", scope="7")
SOURCE = AudioSource(SourceKind.URL, "https://radio.example/live.ogg")


@dataclass(frozen=True, slots=True)
class Live:
    space_id: str
    source: AudioSource = SOURCE
    channels: tuple[ChatRef, ...] = (VOICE,)


@dataclass
class FakeAudio:
    """AudioService's two methods the supervisor uses: the live Spaces, and the reports to hosts."""

    live: dict[str, Live] = field(default_factory=dict)
    reports: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    async def live_audio(self, limit: int = 500) -> list[Live]:
        return list(self.live.values())[:limit]

    async def report_problem(self, space_id: str, key: str, **params: str) -> None:
        self.reports.append((space_id, key, params))


@dataclass(frozen=True, slots=True)
class Health:
    source: LinkHealth
    channels: dict[str, LinkHealth]
    listeners: int


class FakeBridge:
    """A bridge whose source is a real ffmpeg child (a sine, decoded to nowhere) and whose channels are a
    list: what the supervisor asked of it is what these tests check."""

    def __init__(
        self,
        live: LiveSpaceAudio,
        on_source_failed: Callable[[str], None],
        *,
        fail: bool,
        running: asyncio.Event,
    ) -> None:
        self.space_id = live.space_id
        self.source = live.source
        self.on_source_failed = on_source_failed
        self.linked: list[ChatRef] = []
        self.joins: list[ChatRef] = []
        self.proc: asyncio.subprocess.Process | None = None
        self.stopped = False
        self.fail = fail
        self.source_state = LinkState.PLAYING
        self.running = running
        self.failed_channels: dict[ChatRef, str] = {}  # channel → why the bridge gave up on it

    async def start(self) -> None:
        if self.fail:
            raise OSError("ffmpeg could not start")
        self.proc = await asyncio.create_subprocess_exec(
            imageio_ffmpeg.get_ffmpeg_exe(),
            *("-nostdin", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "sine=frequency=440"),
            *("-f", "null", "-"),
            stdin=asyncio.subprocess.DEVNULL,
        )
        self.running.set()

    async def stop(self) -> None:
        self.stopped = True
        self.linked.clear()
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    async def link(self, channel: ChatRef) -> None:
        self.joins.append(channel)
        self.linked.append(channel)

    async def unlink(self, channel: ChatRef) -> None:
        self.linked.remove(channel)

    def health(self) -> Health:
        states = {
            str(c): LinkHealth(LinkState.FAILED, self.failed_channels[c])
            if c in self.failed_channels
            else LinkHealth(LinkState.PLAYING)
            for c in self.linked
        }
        return Health(LinkHealth(self.source_state, reconnects=2), states, 3)


@dataclass
class Voice:
    """A VoiceBridge that can (or cannot) reach a channel from this process."""

    reachable: set[ChatRef]
    platform: Platform = Platform.DISCORD

    def can_join(self, channel: ChatRef) -> bool:
        return channel in self.reachable

    async def join(self, channel: ChatRef, feed: object) -> None:
        raise AssertionError("the supervisor never joins by itself: its bridge does")

    async def leave(self, channel: ChatRef) -> None:
        pass

    def voice_health(self, channel: ChatRef) -> LinkHealth:
        return LinkHealth(LinkState.STOPPED)


class Process:
    """One process: its supervisor and the bridges it built."""

    def __init__(
        self,
        name: str,
        engine: AsyncEngine | GatewayLease,
        audio: FakeAudio,
        clock: FakeClock,
        *,
        voice: Sequence[Voice] = (),
        fail_start: bool = False,
    ) -> None:
        self.url = f"http://10.0.0.{len(name)}:{8000 + ord(name[0])}"
        self.bridges: list[FakeBridge] = []
        self.fail_start = fail_start
        self.started = asyncio.Event()  # set when one of its bridges has started
        self.sup: AudioSupervisor[FakeBridge] = AudioSupervisor(
            audio,
            SqlGatewayLease(engine) if isinstance(engine, AsyncEngine) else engine,
            self._make,
            worker_id=name,
            clock=clock,
            voice=voice,
            internal_url=lambda: self.url,
        )

    def _make(self, live: LiveSpaceAudio, on_failed: Callable[[str], None]) -> FakeBridge:
        bridge = FakeBridge(live, on_failed, fail=self.fail_start, running=self.started)
        self.bridges.append(bridge)
        return bridge

    def running(self) -> list[FakeBridge]:
        return [b for b in self.bridges if not b.stopped and b.proc is not None]
