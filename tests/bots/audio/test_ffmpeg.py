"""ffmpeg's arguments, and one supervised ffmpeg on real inputs: frames equal to the offline encode, a killed
ffmpeg replaced (the file resuming, not restarting), a source that never works reported once."""

from __future__ import annotations

import ctypes
import http.server
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bots.audio.ffmpeg import (
    SourceError,
    SourceProcess,
    encode_args,
    explain,
    offline_encode,
    redact,
    resolve_file,
)
from core.audio import AudioSource, LinkState, SourceKind
from tests.bots.audio.conftest import children, wait_until
from tests.fakes.secrets import CANARY


def _after(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_encode_args_per_kind(media_dir: Path, tone: Path) -> None:
    url = encode_args(AudioSource(SourceKind.URL, "https://radio.example/live?key=s3cret"), media_dir=None)
    i = url.index("-i")
    assert _after(url, "-reconnect") == "1" and url.index("-reconnect") < i
    assert _after(url, "-reconnect_streamed") == "1" and _after(url, "-reconnect_delay_max") == "5"
    assert "-rw_timeout" in url[:i] and "file" not in _after(url, "-protocol_whitelist").split(",")
    assert "-re" not in url and "-nostdin" in url
    for flag, value in {
        "-ac": "2",
        "-ar": "48000",
        "-c:a": "libopus",
        "-b:a": "96k",
        "-frame_duration": "20",
        "-application": "audio",
        "-f": "ogg",
        "-page_duration": "20000",
        "-flush_packets": "1",
        "-loglevel": "warning",
    }.items():
        assert _after(url, flag) == value, flag
    assert "-vn" in url and url[url.index("-vn") :].count("pipe:1") == 1

    rtmp = encode_args(AudioSource(SourceKind.URL, "rtmp://live.example/app/key"), media_dir=None)
    assert "-reconnect" not in rtmp and "-rw_timeout" in rtmp

    f = encode_args(AudioSource(SourceKind.FILE, "tone.wav"), media_dir=str(media_dir), bitrate_kbps=64)
    assert "-re" in f[: f.index("-i")] and _after(f, "-i") == "file:" + str(tone.resolve())
    assert _after(f, "-b:a") == "64k" and "-ss" not in f
    resumed = encode_args(AudioSource(SourceKind.FILE, "tone.wav"), media_dir=str(media_dir), start_s=1.24)
    assert _after(resumed, "-ss") == "1.240" and resumed.index("-ss") < resumed.index("-i")

    b = encode_args(AudioSource(SourceKind.BROWSER), media_dir=None)
    assert _after(b, "-i") == "pipe:0" and "-nostdin" not in b


def test_files_stay_inside_the_media_folder(media_dir: Path, tone: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret.wav"
    outside.write_bytes(tone.read_bytes())
    (media_dir / "escape.wav").symlink_to(outside)
    (media_dir / "sub").mkdir()
    (media_dir / "sub" / "ok.wav").symlink_to(tone)
    assert resolve_file("sub/ok.wav", str(media_dir)) == tone.resolve()
    with pytest.raises(SourceError, match="outside the media folder"):
        resolve_file("escape.wav", str(media_dir))
    with pytest.raises(SourceError, match="file not found"):
        resolve_file("missing.wav", str(media_dir))
    with pytest.raises(SourceError, match="disabled"):
        resolve_file("tone.wav", None)
    with pytest.raises(SourceError, match="file not found"):
        encode_args(AudioSource(SourceKind.FILE, "sub"), media_dir=str(media_dir))  # a folder


def test_redact_and_explain() -> None:
    line = "[http @ 0x1] http://bob:hunter2@radio.example/live.mp3?token=abc: Server returned 404 Not Found"
    assert (
        "hunter2" not in redact(line) and "token=abc" not in redact(line) and "radio.example" in redact(line)
    )
    assert explain([line], 1) == "404 Not Found"
    assert explain(["tcp://127.0.0.1:9: Connection refused"], 1) == "connection refused"
    assert explain(["Output file #0 does not contain any stream"], 1) == "no audio stream"
    assert explain([], -9) == "ffmpeg killed by signal 9"
    tls = ["[tls @ 0x1] error:0A000086:SSL routines::certificate verify failed", "Error opening input files"]
    assert explain(tls, 1) == "TLS certificate not trusted"
    assert "s3cret" not in explain(["rtmp://u:s3cret@h/app?k=s3cret something odd"], 1)


def _run(
    source: AudioSource, ffmpeg: str, media_dir: Path | None, **kw: object
) -> tuple[SourceProcess, list[bytes], list[str]]:
    frames: list[bytes] = []
    failures: list[str] = []
    proc = SourceProcess(
        source,
        ffmpeg=ffmpeg,
        media_dir=str(media_dir) if media_dir else None,
        push=frames.append,
        on_failed=failures.append,
        space_id="sp1",
        **kw,  # type: ignore[arg-type]
    )
    proc.start()
    return proc, frames, failures


def test_file_frames_equal_the_offline_encode(
    ffmpeg_exe: str, media_dir: Path, tone: Path, no_leftovers: None
) -> None:
    reference = offline_encode(str(tone), ffmpeg=ffmpeg_exe)
    proc, frames, failures = _run(AudioSource(SourceKind.FILE, "tone.wav"), ffmpeg_exe, media_dir)
    try:
        wait_until(lambda: proc.health().state is LinkState.STOPPED, what="the file to finish")
    finally:
        proc.stop()
    assert frames == reference  # byte for byte, in order
    assert proc.health().detail == "finished" and proc.health().reconnects == 0
    assert not failures and len(proc.pids) == 1


def test_killed_ffmpeg_is_replaced_and_the_file_resumes(
    ffmpeg_exe: str, media_dir: Path, no_leftovers: None
) -> None:
    from tests.bots.audio.conftest import make_audio

    make_audio(ffmpeg_exe, media_dir / "long.wav", seconds=3.0)
    reference = offline_encode(str(media_dir / "long.wav"), ffmpeg=ffmpeg_exe)
    states: list[LinkState] = []
    proc, frames, failures = _run(AudioSource(SourceKind.FILE, "long.wav"), ffmpeg_exe, media_dir)

    def watch() -> None:
        while proc.health().state is not LinkState.STOPPED:
            s = proc.health().state
            if not states or states[-1] is not s:
                states.append(s)
            time.sleep(0.001)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        wait_until(lambda: len(frames) >= 50, what="a second of frames")
        first = proc.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: proc.pid not in (None, first), what="a new ffmpeg")
        wait_until(lambda: proc.health().state is LinkState.STOPPED, what="the end of the file")
    finally:
        proc.stop()
        watcher.join()
    assert frames[:50] == reference[:50]
    # resumed where it was: about as many frames as the file has, not the part already played twice
    assert abs(len(frames) - len(reference)) <= 10, (len(frames), len(reference))
    assert LinkState.RECONNECTING in states and states.index(LinkState.RECONNECTING) < len(states) - 1
    assert states[states.index(LinkState.RECONNECTING) + 1] is LinkState.PLAYING
    assert proc.health().reconnects == 1 and proc.health().detail == "finished" and not failures


def test_missing_file_reported_once(ffmpeg_exe: str, media_dir: Path, no_leftovers: None) -> None:
    proc, _frames, failures = _run(
        AudioSource(SourceKind.FILE, "gone.wav"), ffmpeg_exe, media_dir, backoff_s=0.01, max_backoff_s=0.05
    )
    try:
        wait_until(lambda: proc.health().reconnects >= 6, what="retries")
    finally:
        proc.stop()
    assert failures == ["file not found"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def http_404() -> Iterator[str]:
    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(404, "Not Found")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    # credentials and a token in the URL, as hosts paste them: the session's log check finds any leak
    yield f"http://user:{CANARY}-pw@127.0.0.1:{server.server_address[1]}/live.mp3?token={CANARY}-token"
    server.shutdown()
    server.server_close()
    t.join()


@pytest.mark.parametrize("kind", ["closed port", "404"])
def test_source_that_never_works_is_reported_once(
    kind: str, ffmpeg_exe: str, http_404: str, no_leftovers: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="bots.audio")
    url = f"http://127.0.0.1:{_closed_port()}/live" if kind == "closed port" else http_404
    proc, frames, failures = _run(
        AudioSource(SourceKind.URL, url), ffmpeg_exe, None, backoff_s=0.05, max_backoff_s=0.2
    )
    try:
        wait_until(lambda: proc.health().reconnects >= 5, what="retries")
    finally:
        proc.stop()
    expected = "connection refused" if kind == "closed port" else "404 Not Found"
    assert failures == [expected]
    assert not frames
    assert proc.health().state is LinkState.STOPPED
    assert len(proc.pids) >= 5  # kept retrying after the report
    assert caplog.records and not [r for r in caplog.records if CANARY in str(r.__dict__)]


def test_killed_service_leaves_no_ffmpeg(ffmpeg_exe: str) -> None:
    """PR_SET_PDEATHSIG: a service killed with SIGKILL (no cleanup at all) takes its ffmpeg with it, even an
    ffmpeg that would not notice on its own: this one waits on a server that never answers (no broken pipe
    to die of, for 10 s of rw_timeout)."""
    libc = ctypes.CDLL(None, use_errno=True)
    silent = socket.create_server(("127.0.0.1", 0))  # accepts connections (kernel backlog), never answers
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/live"
    script = (
        "import sys, time\n"
        "from bots.audio.ffmpeg import SourceProcess\n"
        "from core.audio import AudioSource, SourceKind\n"
        "p = SourceProcess(AudioSource(SourceKind.URL, sys.argv[2]), ffmpeg=sys.argv[1], media_dir=None,"
        " push=lambda f: None)\n"
        "p.start()\n"
        "while p.pid is None: time.sleep(0.01)\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    # the orphaned ffmpeg becomes our child (not init's, which may never reap it here), so we can reap it
    libc.prctl(_PR_SET_CHILD_SUBREAPER, 1)
    try:
        service = subprocess.Popen(
            [sys.executable, "-c", script, ffmpeg_exe, url],
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": os.getcwd()},
        )
        try:
            assert service.stdout is not None
            ffmpeg_pid = int(service.stdout.readline())
            assert b"ffmpeg" in Path(f"/proc/{ffmpeg_pid}/cmdline").read_bytes()
        finally:
            service.kill()
            service.wait()
            service.stdout.close()  # type: ignore[union-attr]
        try:
            wait_until(
                lambda: os.waitpid(ffmpeg_pid, os.WNOHANG)[0] == ffmpeg_pid, timeout=5, what="ffmpeg's end"
            )
        except AssertionError:
            os.kill(ffmpeg_pid, signal.SIGKILL)
            os.waitpid(ffmpeg_pid, 0)
            raise
    finally:
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 0)
        silent.close()


_PR_SET_CHILD_SUBREAPER = 36


def test_stop_mid_stream_leaves_nothing(
    ffmpeg_exe: str, media_dir: Path, tone: Path, no_leftovers: None
) -> None:
    proc, frames, _ = _run(AudioSource(SourceKind.FILE, "tone.wav"), ffmpeg_exe, media_dir)
    wait_until(lambda: len(frames) >= 5, what="frames")
    proc.stop()
    proc.stop()  # idempotent
    assert proc.health().state is LinkState.STOPPED
    assert not children()


def test_file_that_is_not_audio_reported_plainly(
    ffmpeg_exe: str, media_dir: Path, no_leftovers: None
) -> None:
    (media_dir / "notes.mp3").write_bytes(b"this is not audio\n" * 100)
    proc, frames, failures = _run(
        AudioSource(SourceKind.FILE, "notes.mp3"), ffmpeg_exe, media_dir, backoff_s=0.01, max_backoff_s=0.05
    )
    try:
        wait_until(lambda: bool(failures), what="the report")
    finally:
        proc.stop()
    assert failures == ["not an audio stream"] and not frames
