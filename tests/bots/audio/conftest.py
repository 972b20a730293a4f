"""Real ffmpeg for the audio tests: inputs made by ffmpeg itself into a media folder, and decoding back to PCM
to compare what a consumer received with what the encoder made offline."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import imageio_ffmpeg
import pytest


@pytest.fixture(scope="session")
def ffmpeg_exe() -> str:
    return str(imageio_ffmpeg.get_ffmpeg_exe())


def make_audio(ffmpeg: str, path: Path, *, seconds: float = 2.0, extra: tuple[str, ...] = ()) -> Path:
    """A tone that changes every half second (so that a file resumed from the start is told apart), written by
    ffmpeg; ``extra`` chooses the codec/container (default: WAV from the extension)."""
    expr = f"sine=frequency=440:duration={seconds},volume=0.5"
    subprocess.run(
        [
            ffmpeg,
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-y",
            "-f",
            "lavfi",
            "-i",
            expr,
            "-af",
            "vibrato=f=2:d=0.5",
            "-ac",
            "2",
            "-ar",
            "48000",
            *extra,
            str(path),
        ],
        check=True,
        timeout=30,
    )
    return path


@pytest.fixture
def media_dir(tmp_path: Path) -> Path:
    d = tmp_path / "media"
    d.mkdir()
    return d


@pytest.fixture
def tone(ffmpeg_exe: str, media_dir: Path) -> Path:
    return make_audio(ffmpeg_exe, media_dir / "tone.wav", seconds=2.0)


def decode_ogg(ffmpeg: str, data: bytes) -> bytes:
    """An Ogg/Opus byte string decoded by ffmpeg to 48-kHz stereo s16le PCM."""
    done = subprocess.run(
        [
            ffmpeg,
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-f",
            "ogg",
            "-i",
            "pipe:0",
            "-f",
            "s16le",
            "-ac",
            "2",
            "-ar",
            "48000",
            "pipe:1",
        ],
        input=data,
        capture_output=True,
        check=True,
        timeout=60,
    )
    return done.stdout


def encode_ogg_file(ffmpeg: str, path: Path, bitrate_kbps: int = 96) -> bytes:
    """ffmpeg's own Ogg/Opus output of ``path`` with the project's encoder settings."""
    from bots.audio.ffmpeg import encode_args  # the arguments under test, on a plain file
    from core.audio import AudioSource, SourceKind

    args = encode_args(
        AudioSource(SourceKind.FILE, path.name), media_dir=str(path.parent), bitrate_kbps=bitrate_kbps
    )
    args = [a for a in args if a != "-re"]
    return subprocess.run([ffmpeg, *args], capture_output=True, check=True, timeout=60).stdout


def children() -> list[tuple[int, str]]:
    """The live child processes of this process (pid, command name), from /proc."""
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may contain spaces, so split after its closing parenthesis
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == me and fields[0] != "Z":
            found.append((int(entry), name))
        elif int(fields[1]) == me:
            found.append((int(entry), name + " <zombie>"))
    return found


def wait_until(cond: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    """Poll ``cond`` (real processes: there is no clock to drive); fails after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what or cond}")
        time.sleep(0.02)


@pytest.fixture
def no_leftovers() -> Iterator[None]:
    """Fails the test if it leaves a child process or a thread behind."""
    threads_before = set(threading.enumerate())
    yield
    wait_until(lambda: not children(), timeout=5, what="no child process")
    extra = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]
    # asyncio's default executor threads are the test loop's, not ours
    extra = [t for t in extra if not t.name.startswith(("asyncio_", "ThreadPoolExecutor"))]
    assert not extra, f"threads left: {extra}"


def ffmpeg_reading(folder: Path) -> list[int]:
    """Every process on this machine whose command line names ``folder`` (an ffmpeg reading a file there),
    whoever its parent: a service process's ffmpeg is a grandchild of the test."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if str(folder).encode() in cmdline:
                pids.append(int(entry))
    return pids


def tone_folder(folder: Path, *, seconds: int, name: str = "tone.ogg") -> Path:
    """``folder`` with a 440 Hz Opus tone of ``seconds`` in it (low bitrate: encoded in a few seconds), for a
    ``file:`` source that outlives the test."""
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            *(
                "-nostdin",
                "-loglevel",
                "error",
                "-f",
                "lavfi",
                "-i",
                f"sine=frequency=440:duration={seconds}",
            ),
            *("-ac", "2", "-ar", "48000", "-c:a", "libopus", "-b:a", "16k", str(folder / name)),
        ],
        check=True,
        timeout=120,
    )
    return folder
