"""ffmpeg, the one decoder/encoder of a live Space: the arguments that turn a host's source into 20-ms Opus
frames (pure), the same encode run offline (the reference a test compares live frames with), and
:class:`SourceProcess`, one supervised ffmpeg whose frames go to a callback.

Threads, not the event loop: ffmpeg's stdout is read, demuxed and handed on by a thread of its own, so a busy
loop never makes the audio stutter, and a stalled ffmpeg never blocks the loop.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import re
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import ffmpeg as ffmpeg_python

from bots.audio.ogg import OggReader, is_header, opus_packets
from core.audio import CHANNELS, FRAME_MS, SAMPLE_RATE, AudioSource, LinkHealth, LinkState, SourceKind
from core.errors import SpacesError

log = logging.getLogger(__name__)

# how long ffmpeg waits on a silent network read before giving up (then we restart it): microseconds
RW_TIMEOUT_US = 10_000_000
INITIAL_BURST_S = 0.1
# the protocols a host's URL may make ffmpeg open, nested ones included (an HLS playlist naming segments,
# TLS under HTTPS, RTP under RTSP); never file:, pipe:, concat: … (core.audio checks only the outer scheme)
URL_PROTOCOLS = "http,https,tcp,tls,crypto,hls,httpproxy,rtmp,rtmps,rtmpt,rtmpts,rtmpe,srt,rtsp,rtsps,rtp,udp"


class SourceError(SpacesError):
    """A source that cannot be opened at all (a file missing or outside the media folder). ``detail`` is
    plain English, safe for logs and the host's report."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def resolve_file(location: str, media_dir: str | None) -> Path:
    """The real path of a FILE source, which MUST stay inside ``media_dir`` once symlinks are followed."""
    if not media_dir:
        raise SourceError("file sources are disabled (no media folder)")
    root = Path(media_dir).resolve()
    path = (root / location).resolve()
    if not path.is_relative_to(root):
        raise SourceError("file outside the media folder")
    if not path.is_file():
        raise SourceError("file not found")
    return path


def _output(stream: Any, bitrate_kbps: int) -> Any:
    # The Ogg muxer buffers about a second of pages by default: one page per 20-ms packet, flushed at once,
    # keeps the latency at the encoder's
    return stream.output(
        "pipe:1",
        vn=None,
        ac=CHANNELS,
        ar=SAMPLE_RATE,
        frame_duration=FRAME_MS,
        application="audio",
        f="ogg",
        page_duration=FRAME_MS * 1000,
        flush_packets=1,
        **{"c:a": "libopus", "b:a": f"{bitrate_kbps}k"},
    )


def encode_args(
    source: AudioSource, *, media_dir: str | None, bitrate_kbps: int = 96, start_s: float = 0.0
) -> list[str]:
    """ffmpeg's arguments (without the executable) decoding ``source`` once into 48-kHz stereo Opus in 20-ms
    frames, as Ogg on stdout. BROWSER reads what the host's MediaRecorder sends (webm or ogg) on stdin; FILE
    is read at real-time speed from inside ``media_dir`` (``start_s``: where a restarted file resumes).
    Raises :class:`SourceError` for a FILE that is missing or escapes the media folder."""
    opts: dict[str, Any] = {}
    if source.kind is SourceKind.URL:
        target = source.location
        opts["rw_timeout"] = RW_TIMEOUT_US
        opts["protocol_whitelist"] = URL_PROTOCOLS
        if target.lower().startswith(("http://", "https://")):
            # a dropped HTTP stream is re-opened by ffmpeg itself before we restart the process
            opts.update(reconnect=1, reconnect_streamed=1, reconnect_delay_max=5)
    elif source.kind is SourceKind.FILE:
        # "file:" so that a name with a colon is never read as another protocol
        target = "file:" + str(resolve_file(source.location, media_dir))
        opts["re"] = None
        # ffmpeg reads the first half second at once by default (and 0 means that default): the burst would
        # sit in every consumer's buffer as latency, or make a voice reader skip it. 0.1 s primes the encoder
        # (measured: the output then leads real time by about 7 frames instead of 28)
        opts["readrate_initial_burst"] = INITIAL_BURST_S
        if start_s > 0:
            opts["ss"] = f"{start_s:.3f}"
    else:
        target = "pipe:0"
    stream = _output(ffmpeg_python.input(target, **opts), bitrate_kbps)
    global_args = ["-hide_banner", "-loglevel", "warning"]
    if source.kind is not SourceKind.BROWSER:
        global_args.append("-nostdin")  # stdin is ours (BROWSER) or nobody's: never the terminal's
    args: list[str] = stream.global_args(*global_args).get_args()
    return args


def offline_encode(path: str, *, ffmpeg: str, bitrate_kbps: int = 96) -> list[bytes]:
    """The same encoder settings on a file, as fast as possible: the Opus packets (OpusHead/OpusTags
    removed) that the live frames of a FILE source MUST equal byte for byte (libopus is deterministic)."""
    stream = _output(ffmpeg_python.input("file:" + str(Path(path).resolve())), bitrate_kbps)
    args = stream.global_args("-hide_banner", "-loglevel", "error", "-nostdin").get_args()
    done = subprocess.run([ffmpeg, *args], capture_output=True, check=False, timeout=120)
    if done.returncode != 0:
        raise SourceError(explain(done.stderr.decode("utf-8", "replace").splitlines(), done.returncode))
    return [p for p in opus_packets(done.stdout) if not is_header(p)]


# --------------------------------------------------------------------------- what went wrong, in plain words

_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@'\"]+@")
_QUERY = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^\s'\"?#]*)[?#][^\s'\"]*")


def redact(text: str) -> str:
    """``text`` without a URL's ``user:pass@`` and query string (stream keys and tokens live there)."""
    return _QUERY.sub(r"\1?…", _CREDENTIALS.sub(r"\1…@", text))


_EXPLANATIONS = (
    (re.compile(r"(?i)connection refused"), "connection refused"),
    (re.compile(r"(?i)timed out|timeout"), "connection timed out"),
    (re.compile(r"(?i)failed to resolve|name or service not known|could not resolve"), "unknown host"),
    (re.compile(r"(?i)no such file or directory"), "file not found"),
    (
        re.compile(r"(?i)does not contain any stream|matches no streams|no audio|output file .* does not"),
        "no audio stream",
    ),
    (re.compile(r"(?i)invalid data found"), "not an audio stream"),
    (re.compile(r"(?i)protocol .* not on whitelist"), "protocol not allowed"),
    # ffmpeg 9 verifies certificates: a self-signed or expired one is refused
    (re.compile(r"(?i)certificate verify failed"), "TLS certificate not trusted"),
)
_HTTP_STATUS = re.compile(r"(?i)server returned (\d{3}[^\r\n]*)")


def explain(lines: list[str], returncode: int | None) -> str:
    """A plain English reason for ffmpeg's failure, from the last lines of its stderr (redacted)."""
    for line in reversed(lines):
        status = _HTTP_STATUS.search(line)
        if status:
            return status.group(1).strip()
    for line in reversed(lines):
        for pattern, detail in _EXPLANATIONS:
            if pattern.search(line):
                return detail
    for line in reversed(lines):
        if line.strip():
            return redact(line.strip())[:200]
    if returncode is not None and returncode < 0:
        return f"ffmpeg killed by signal {-returncode}"
    return f"ffmpeg exited with code {returncode}"


# --------------------------------------------------------------------------- the supervised process

_PR_SET_PDEATHSIG = 1


@functools.cache
def _prctl() -> Any:
    # looked up before the fork: dlopen in the child (between fork and exec) is not safe in a threaded parent
    return ctypes.CDLL(None, use_errno=True).prctl


def _die_with_parent() -> None:
    """In the child, before exec: the kernel SIGKILLs ffmpeg when the *thread* that spawned it ends (so a
    killed service leaves no orphan encoding for nobody). That is why the long-lived supervisor thread
    spawns, never a pool thread. Only one prctl call here (already resolved)."""
    _prctl()(_PR_SET_PDEATHSIG, signal.SIGKILL)


FAIL_AFTER = 3  # attempts without a single frame before the host is told
RESET_AFTER_S = 30.0  # a run this long with frames brings the backoff back to its start
STOP_GRACE_S = 2.0
STDERR_LINES = 20


class SourceProcess:
    """One supervised ffmpeg for a Space's source: frames (OpusHead/OpusTags skipped) go to ``push``, from
    the supervisor thread.

    URL and FILE: restarted with backoff (``backoff_s`` doubling to ``max_backoff_s``) when ffmpeg exits
    while not stopping; a FILE resumes where it was, and a FILE that ended normally stops (STOPPED
    "finished"). ``on_failed(detail)`` is called once (from the supervisor thread) when :data:`FAIL_AFTER`
    attempts in a row produced no frame; the process keeps retrying at the maximum backoff, and may report
    again after it worked. BROWSER (``stdin`` given bytes through :meth:`write_input`) runs once: a host
    session is one ffmpeg, restarted by a new session, not here; ``on_failed`` is called if that ffmpeg
    failed without a single frame (what the browser sent is not audio ffmpeg reads).
    """

    def __init__(
        self,
        source: AudioSource,
        *,
        ffmpeg: str,
        media_dir: str | None,
        push: Callable[[bytes], None],
        bitrate_kbps: int = 96,
        on_failed: Callable[[str], None] | None = None,
        space_id: str = "",
        backoff_s: float = 0.5,
        max_backoff_s: float = 10.0,
    ) -> None:
        self.source = source
        self._ffmpeg = ffmpeg
        self._media_dir = media_dir
        self._push = push
        self._bitrate = bitrate_kbps
        self._on_failed = on_failed
        self._space_id = space_id
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._spawned = threading.Event()  # BROWSER: the process exists (or never will): input may flow
        self._thread: threading.Thread | None = None
        self._health = LinkHealth(LinkState.STARTING)
        self._frames = 0  # frames pushed since the start of the source (a FILE resumes from here)
        self._attempts = 0  # spawns so far
        self._pids: list[int] = []  # every ffmpeg spawned, for tests and logs

    # ----------------------------------------------------------------- public, any thread

    def start(self) -> None:
        """Start the supervisor thread (which spawns ffmpeg: see :func:`_die_with_parent`). Returns at once."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, name=f"ffmpeg-{self._space_id or 'source'}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Blocking (up to about ``STOP_GRACE_S``): terminate ffmpeg, kill it if it lingers, reap it, join the
        threads. Idempotent. A BROWSER process is first given the end of its input, to flush what it has."""
        self._stopping.set()
        proc = self._proc
        if proc is not None:
            _close_quietly(proc.stdin)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.5 if self.source.kind is SourceKind.BROWSER else 0)
            if proc.poll() is None:
                proc.terminate()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        with self._lock:
            if not self._finished():
                self._set(LinkState.STOPPED, "stopped")

    def write_input(self, chunk: bytes) -> bool:
        """BROWSER: hand ``chunk`` to ffmpeg's stdin. Blocking (call it off the loop); False when ffmpeg is
        gone or stopping (the chunk is dropped)."""
        self._spawned.wait(timeout=STOP_GRACE_S)
        proc = self._proc
        if proc is None or proc.stdin is None or self._stopping.is_set():
            return False
        try:
            proc.stdin.write(chunk)
            proc.stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            return False
        return True

    def health(self) -> LinkHealth:
        with self._lock:
            return self._health

    @property
    def frames(self) -> int:
        return self._frames

    @property
    def pids(self) -> list[int]:
        return list(self._pids)

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    # ----------------------------------------------------------------- the supervisor thread

    def _set(self, state: LinkState, detail: str = "") -> None:
        self._health = LinkHealth(state, detail, self._health.reconnects)

    def _finished(self) -> bool:
        return self._health.detail == "finished"

    def _run(self) -> None:
        backoff = self._backoff_s
        empty_runs = 0
        reported = False
        try:
            while not self._stopping.is_set():
                started = time.monotonic()
                frames_before = self._frames
                rc, lines = self._run_once()
                if self._stopping.is_set():
                    return
                produced = self._frames - frames_before
                kind = self.source.kind
                # a file that ended (resumed at its very end, it may produce nothing more)
                if kind is SourceKind.FILE and rc == 0 and (produced > 0 or self._frames > 0):
                    with self._lock:
                        self._set(LinkState.STOPPED, "finished")
                    log.info("source finished", extra={"space_id": self._space_id})
                    return
                detail = explain(lines, rc) if rc != 0 or produced == 0 else "stream ended"
                if rc is None:  # not even spawned (a file that vanished): ``lines`` holds the reason
                    detail = lines[0] if lines else "cannot start ffmpeg"
                if kind is SourceKind.BROWSER:
                    # one host session, one ffmpeg: nothing to restart (the input is gone); what the host's
                    # browser sent could not be decoded at all → told once, like a source that never works
                    with self._lock:
                        self._set(LinkState.STOPPED if rc == 0 else LinkState.FAILED, detail)
                    if rc != 0 and not produced:
                        self._report(detail)
                    return
                if produced:
                    empty_runs, reported = 0, False
                    if time.monotonic() - started >= RESET_AFTER_S:
                        backoff = self._backoff_s
                else:
                    empty_runs += 1
                failing = empty_runs >= FAIL_AFTER
                with self._lock:
                    self._health = LinkHealth(
                        LinkState.FAILED if failing else LinkState.RECONNECTING,
                        detail,
                        self._health.reconnects + 1,
                    )
                log.warning(
                    "source dropped, restarting",
                    extra={"space_id": self._space_id, "detail": detail, "in_s": backoff},
                )
                if failing and not reported:
                    reported = True
                    backoff = self._max_backoff_s
                    self._report(detail)
                if self._stopping.wait(backoff):
                    return
                backoff = min(backoff * 2, self._max_backoff_s)
        finally:
            self._spawned.set()

    def _report(self, detail: str) -> None:
        if self._on_failed is None:
            return
        try:
            self._on_failed(detail)
        except Exception:
            log.exception("on_failed raised", extra={"space_id": self._space_id})

    def _run_once(self) -> tuple[int | None, list[str]]:
        """One ffmpeg from spawn to exit; pushes its frames. Returns its exit code (None: never spawned) and
        the last lines of its stderr."""
        start_s = self._frames * FRAME_MS / 1000 if self.source.kind is SourceKind.FILE else 0.0
        try:
            args = encode_args(
                self.source, media_dir=self._media_dir, bitrate_kbps=self._bitrate, start_s=start_s
            )
        except SourceError as e:
            return None, [e.detail]
        browser = self.source.kind is SourceKind.BROWSER
        _prctl()
        try:
            proc = subprocess.Popen(
                [self._ffmpeg, *args],
                stdin=subprocess.PIPE if browser else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                preexec_fn=_die_with_parent,
                close_fds=True,
                # unbuffered: stop() closes stdin while a write may be blocked on a full pipe (a buffered
                # writer's close would wait for that write's lock), and stdout is read as it comes
                bufsize=0,
            )
        except OSError as e:
            return None, [f"cannot start ffmpeg: {e.strerror}"]
        self._attempts += 1
        self._pids.append(proc.pid)
        with self._lock:
            self._proc = proc
            if self._health.state is LinkState.STARTING or self._health.state is LinkState.STOPPED:
                self._set(LinkState.STARTING)
        self._spawned.set()
        if self._stopping.is_set():  # stop() ran between the check and the spawn: it could not see proc
            proc.kill()
        log.info("ffmpeg started", extra={"space_id": self._space_id, "pid": proc.pid, "start_s": start_s})
        lines: deque[str] = deque(maxlen=STDERR_LINES)
        drain = threading.Thread(target=_drain, args=(proc.stderr, lines), daemon=True)
        drain.start()
        try:
            self._pump(proc)
        finally:
            if proc.poll() is None and self._stopping.is_set():
                proc.terminate()
            try:
                rc = proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
            drain.join()
            _close_quietly(proc.stdout)
            _close_quietly(proc.stdin)
        for line in lines:
            log.debug("ffmpeg: %s", line, extra={"space_id": self._space_id})
        return rc, list(lines)

    def _pump(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        reader = OggReader()
        out = proc.stdout
        while True:
            # one read() of the raw pipe: whatever it has (a 20-ms page is a few hundred bytes), never more
            chunk = out.read(65536)
            if not chunk:
                return
            for packet in reader.feed(chunk):
                if is_header(packet):
                    continue
                if self._health.state is not LinkState.PLAYING:
                    with self._lock:
                        self._set(LinkState.PLAYING)
                self._frames += 1
                self._push(packet)


def _drain(stream: IO[bytes] | None, lines: deque[str]) -> None:
    """Read ffmpeg's stderr to its end (a full pipe would stall ffmpeg), keeping the last lines, redacted."""
    if stream is None:
        return
    try:
        for raw in stream:
            lines.append(redact(raw.decode("utf-8", "replace").rstrip()))
    except (OSError, ValueError):
        pass
    finally:
        _close_quietly(stream)


def _close_quietly(stream: IO[bytes] | None) -> None:
    if stream is None:
        return
    with contextlib.suppress(OSError, ValueError):
        stream.close()


__all__ = [
    "SourceError",
    "SourceProcess",
    "encode_args",
    "explain",
    "offline_encode",
    "redact",
    "resolve_file",
]
