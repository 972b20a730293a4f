"""Live audio, platform-neutral: what a Space's audio source is, the frame format every bridge shares, and the
words for its health.

Pure: no I/O. Whether a file exists or a URL answers is learned by the process that runs ffmpeg
(``bots/audio``); here a source is only read and checked for shape, so that a host's typo is refused at once,
in the host's language, before anything is stored.

The frame format is Discord's: Opus, 48 kHz, stereo, one packet per 20 ms (960 samples per channel). Every
consumer of a live Space — each voice channel and each web listener — receives these same packets, encoded once.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from core.errors import UserError

SAMPLE_RATE = 48_000
CHANNELS = 2
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000  # 960: the RTP timestamp step between two frames
FRAMES_PER_SECOND = 1000 // FRAME_MS
# Opus "silence" (a 20-ms CELT frame that decodes to zeros): what a consumer plays when no frame is ready,
# so a source that drops sounds like a pause, not an error (Discord sends five of them before going quiet)
SILENCE_FRAME = b"\xf8\xff\xfe"

# The protocols ffmpeg may open for a host's URL. Everything else ffmpeg knows (file:, pipe:, concat:,
# subfile:, data:, tcp:, udp: …) would let a host read the server's files or probe its network.
URL_SCHEMES = frozenset({"http", "https", "rtmp", "rtmps", "srt", "rtsp", "rtsps"})
# what a host types to speak from the Space page in a browser instead of giving a stream
BROWSER_WORDS = frozenset({"browser", "mic", "microphone", "micro", "navigateur"})
MAX_SOURCE_LEN = 2000


class SourceKind(StrEnum):
    URL = "url"  # a live stream ffmpeg reads (Icecast/HTTP, HLS, RTMP, SRT, RTSP)
    FILE = "file"  # a file in the operator's media folder (SPACES_MEDIA_DIR), played at real-time speed
    BROWSER = "browser"  # the host's microphone, streamed from the private host page over a websocket


@dataclass(frozen=True, slots=True)
class AudioSource:
    kind: SourceKind
    # URL: the URL as given; FILE: the path relative to the media folder (no "..", not absolute);
    # BROWSER: ""
    location: str = ""

    def __str__(self) -> str:
        """The stored form (``Space.audio_source``); :func:`parse_source` reads it back."""
        if self.kind is SourceKind.BROWSER:
            return "browser"
        if self.kind is SourceKind.FILE:
            return f"file:{self.location}"
        return self.location

    @property
    def realtime(self) -> bool:
        """A file must be read at real-time speed (ffmpeg ``-re``); a live stream or a browser paces itself."""
        return self.kind is SourceKind.FILE


def parse_source(text: str) -> AudioSource:
    """Read what a host typed (or what was stored) as a source. Raises ``UserError("audio.bad_source")`` with
    an example when it is none of: a URL of an allowed scheme, ``file:<path>`` inside the media folder,
    or one of :data:`BROWSER_WORDS`."""
    raw = text.strip()
    if not raw or len(raw) > MAX_SOURCE_LEN or any(c.isspace() or ord(c) < 32 for c in raw):
        raise UserError("audio.bad_source", text=raw[:80])
    if raw.lower() in BROWSER_WORDS:
        return AudioSource(SourceKind.BROWSER)
    if raw.lower().startswith("file:"):
        path = raw[len("file:") :].lstrip()
        parts = path.replace("\\", "/").split("/")
        if not path or path.startswith(("/", "~")) or ".." in parts or path.startswith("-"):
            raise UserError("audio.bad_file", text=raw[:80])
        return AudioSource(SourceKind.FILE, path)
    try:
        parts_url = urlsplit(raw)
    except ValueError:
        raise UserError("audio.bad_source", text=raw[:80]) from None
    if parts_url.scheme.lower() not in URL_SCHEMES or not parts_url.hostname:
        raise UserError("audio.bad_source", text=raw[:80])
    return AudioSource(SourceKind.URL, raw)


class LinkState(StrEnum):
    """Where one consumer of a live Space's audio stands (a voice channel; the source itself)."""

    STARTING = "starting"
    PLAYING = "playing"
    RECONNECTING = "reconnecting"  # dropped; being re-joined / re-read with backoff, listeners hear silence
    FAILED = "failed"  # gave up or refused (a permission, a source that never worked); ``detail`` says why
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class LinkHealth:
    state: LinkState
    detail: str = ""  # English, for logs, /healthz and the host's report (translated there by key)
    reconnects: int = 0
