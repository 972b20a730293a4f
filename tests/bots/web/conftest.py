"""What the live-audio web tests share: a directory of bridges, host keys, a web app served on a real port,
ffmpeg to make and decode sound, and Chromium with a fake microphone.

The directory and the host keys are the smallest honest implementations of the ports bots/web/listen.py
declares (the audio supervisor and AudioService provide the real ones).
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import imageio_ffmpeg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bots.audio.ogg import OggReader, is_header
from bots.metrics import Metrics
from bots.web.app import WebDeps, make_web_app
from bots.web.listen import LiveBridge
from core.audio import SILENCE_FRAME
from core.errors import NotFound
from core.models import Space, SpaceStatus
from tests.builders import space as make_space
from tests.fakes.memory import MemoryDB
from tests.fakes.secrets import CANARY

SPACE_ID = "sp2345abcd"  # looks like a real id (core.ids)
HOST_KEY = f"{CANARY}HostKey0123456789abcdef"  # the session log check fails if it is ever logged
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()

if TYPE_CHECKING:
    from playwright.async_api import Page


@dataclass
class Directory:
    """bots/web/listen.AudioDirectory: bridges this "process" owns, and other processes' URLs."""

    bridges: dict[str, LiveBridge] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)  # owner_url lookups, to show relay=1 never asks

    def local(self, space_id: str) -> LiveBridge | None:
        return self.bridges.get(space_id)

    async def owner_url(self, space_id: str) -> str | None:
        self.asked.append(space_id)
        return self.owners.get(space_id)


@dataclass
class Spaces:
    """The share page's SpaceReader and AudioService.check_host_key over a dict."""

    spaces: dict[str, tuple[Space, str]] = field(default_factory=dict)

    def add(self, space: Space, key: str = HOST_KEY) -> Space:
        self.spaces[space.id] = (space, key)
        return space

    async def get(self, space_id: str) -> Space:
        if space_id not in self.spaces:
            raise NotFound("space.not_found", space_id=space_id)
        return self.spaces[space_id][0]

    async def subscriber_count(self, space_id: str) -> int:
        return 0

    async def check_host_key(self, space_id: str, key: str) -> Space:
        found = self.spaces.get(space_id)
        if found is None or found[1] != key:
            raise NotFound("space.not_found", space_id=space_id)
        return found[0]


def live_space(space_id: str = SPACE_ID, source: str | None = "browser") -> Space:
    return make_space(space_id, title="Friday jam", status=SpaceStatus.LIVE, audio_source=source, locale="en")


def web_app(spaces: Spaces, directory: Directory | None) -> web.Application:
    metrics = Metrics()
    deps = WebDeps(
        spaces=spaces,
        outbox=MemoryDB().outbox(),
        registry=metrics.registry,
        audio=directory,
        host_keys=spaces,
    )
    return make_web_app(deps)


@pytest.fixture
def spaces() -> Spaces:
    return Spaces()


@pytest.fixture
def directory() -> Directory:
    return Directory()


@pytest.fixture
async def client(
    spaces: Spaces, directory: Directory
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(web_app(spaces, directory))) as c:
        yield c


# ------------------------------------------------------------------------------------------- sound


def make_tone(path: Path, *, hz: int = 440, seconds: float = 3.0) -> Path:
    """A 48 kHz stereo 16-bit WAV sine (what Chromium's fake microphone and a FILE source read)."""
    sine = f"sine=frequency={hz}:duration={seconds}"
    subprocess.run(
        [
            FFMPEG,
            *["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"],
            sine,
            *["-ar", "48000", "-ac", "2", "-c:a", "pcm_s16le"],
            str(path),
        ],
        check=True,
        timeout=30,
    )
    return path


def decode_pcm(data: bytes) -> array.array[int]:
    """Any container ffmpeg reads (Ogg/Opus, WebM) → 48 kHz stereo signed 16-bit samples, interleaved."""
    done = subprocess.run(
        [
            FFMPEG,
            "-nostdin",
            "-v",
            "error",
            "-i",
            "pipe:0",
            "-f",
            "s16le",
            "-ar",
            "48000",
            "-ac",
            "2",
            "pipe:1",
        ],
        input=data,
        capture_output=True,
        check=True,
        timeout=60,
    )
    pcm = array.array("h")
    pcm.frombytes(done.stdout)
    return pcm


def dominant_hz(pcm: array.array[int], *, threshold: int = 500) -> float:
    """The frequency of a tone from its zero crossings (left channel), over its audible 20-ms blocks only
    (silence before the microphone starts, or between two sessions, would dilute the count). A crossing is
    counted when the signal goes from below -hysteresis to above +hysteresis or back: codec noise around
    zero would otherwise count twice."""
    left = pcm[0::2]
    block, hysteresis = 960, threshold // 4
    crossings, seconds, sign = 0, 0.0, 0
    for start in range(0, len(left) - block + 1, block):
        chunk = left[start : start + block]
        if max(abs(s) for s in chunk) < threshold:
            sign = 0  # the next audible block starts afresh
            continue
        seconds += block / 48000
        for s in chunk:
            now = 1 if s > hysteresis else -1 if s < -hysteresis else sign
            crossings += sign != 0 and now != sign
            sign = now
    assert seconds >= 0.5, f"only {seconds:.2f} s of sound"
    return crossings / 2 / seconds


# -------------------------------------------------------------------------------------- a web listener


class Received:
    """One web listener's bytes, and the Opus packets they carry."""

    def __init__(self) -> None:
        self.raw = bytearray()
        self.packets: list[bytes] = []
        self._reader = OggReader()

    def take(self, chunk: bytes) -> None:
        self.raw += chunk
        self.packets += [p for p in self._reader.feed(chunk) if not is_header(p)]

    def audio(self) -> list[bytes]:
        """The packets without the paced silence a bridge sends while its source is quiet."""
        start, end = 0, len(self.packets)
        while start < end and self.packets[start] == SILENCE_FRAME:
            start += 1
        while end > start and self.packets[end - 1] == SILENCE_FRAME:
            end -= 1
        return self.packets[start:end]

    def complete(self) -> bytes:
        """The bytes up to the last complete Ogg page: what a player that stopped reading here had."""
        pos = 0
        while len(self.raw) >= pos + 27:
            nseg = self.raw[pos + 26]
            size = 27 + nseg + sum(self.raw[pos + 27 : pos + 27 + nseg])
            if len(self.raw) < pos + 27 + nseg or len(self.raw) < pos + size:
                break
            pos += size
        return bytes(self.raw[:pos])


async def listen(client: TestClient[web.Request, web.Application], got: Received) -> None:
    async with client.get(f"/s/{SPACE_ID}/listen") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "audio/ogg"
        assert resp.headers["Cache-Control"] == "no-store"
        assert resp.headers.get("Transfer-Encoding") == "chunked"
        async for chunk in resp.content.iter_any():
            got.take(chunk)


# ----------------------------------------------------------------------------------------- Chromium

CHROMIUM = os.environ.get("SPACES_TEST_CHROMIUM", "/usr/bin/chromium")


def chromium_or_skip() -> str:
    """The Chromium binary, or a loud skip (a failure under CI=true: scripts/with-chromium installs it)."""
    found = CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")
    reason = f"!!! no Chromium at {CHROMIUM}: the browser tests did NOT run (make test installs it)."
    if found is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        import playwright  # noqa: F401
    except ImportError:
        pytest.fail("the playwright package is missing: `make test` installs the dev extra")
    return found


@dataclass
class Browser:
    page: Page
    errors: list[str]  # the page's uncaught errors and console errors (a CSP violation is one)


@contextlib.asynccontextmanager
async def chromium(mic: Path, *, answer_prompts: bool = True, **page_options: Any) -> AsyncIterator[Browser]:
    """Headless Chromium with ``mic`` as its microphone, one page open; closed (and its processes gone)
    on exit. ``answer_prompts=False``: nobody accepts the permission prompt (headless Chromium denies it)."""
    executable = chromium_or_skip()
    from playwright.async_api import async_playwright

    args = [a for a in chromium_args(mic) if answer_prompts or a != "--use-fake-ui-for-media-stream"]
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=executable, args=args, headless=True)
        try:
            page = await browser.new_page(**page_options)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            yield Browser(page, errors)
        finally:
            await browser.close()


def chromium_args(fake_mic: Path) -> list[str]:
    return [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={fake_mic}",
        "--autoplay-policy=no-user-gesture-required",
    ]


async def eventually(check: Callable[[], object], *, within: float = 30.0, what: str = "") -> None:
    """Poll ``check()`` (sync or async, truthy when done) every 50 ms; fail after ``within`` s (a hang
    guard, not a timing assert)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"not reached within {within} s: {what}")
        await asyncio.sleep(0.05)
