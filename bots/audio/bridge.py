"""One live Space's audio in this process: its source decoded once (a supervised ffmpeg, or one per host
session for the browser microphone), the hub of frames, the voice channels it plays in, and its web listeners.

Everything here runs on the event loop except what must not: ffmpeg's output is read by the source's thread,
and writes to a browser session's ffmpeg go through a worker thread. Voice connections read the hub from their
own player threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from bots.audio.feed import FrameHub, Listener
from bots.audio.ffmpeg import SourceProcess
from bots.audio.ogg import OggWriter
from core.audio import FRAME_MS, SILENCE_FRAME, AudioSource, LinkHealth, LinkState, SourceKind
from core.errors import ChatUnavailable, TransientError
from core.ports import VoiceBridge
from core.refs import ChatRef

log = logging.getLogger(__name__)

LINK_BACKOFF_S = 1.0  # first wait before re-trying a voice join; doubles up to LINK_MAX_BACKOFF_S
LINK_MAX_BACKOFF_S = 30.0
# A web listener that has had no frame for this long hears silence frames, paced in real time, so that its
# player keeps its place (and no proxy closes a quiet connection). Before its first frame it waits longer:
# an Opus decoder primed with silence decodes the first ~200 ms of the real stream slightly differently, and
# a source that is starting is usually there within that time.
FILL_AFTER_S = 0.5
FIRST_FILL_AFTER_S = 2.0
FILL_TICK_S = 0.1


@dataclass(frozen=True, slots=True)
class BridgeHealth:
    source: LinkHealth
    channels: dict[str, LinkHealth] = field(default_factory=dict)  # keyed by str(ChatRef)
    listeners: int = 0


@dataclass(slots=True)
class _Link:
    channel: ChatRef
    voice: VoiceBridge | None = None  # the bridge that joined (or is joining)
    task: asyncio.Task[None] | None = None
    health: LinkHealth = field(default_factory=lambda: LinkHealth(LinkState.STARTING))
    joined: bool = False


class Bridge:
    """A live Space's audio. ``on_source_failed(detail)`` is called on the event loop when the source never
    produced a frame in several attempts (once; it keeps being retried), or when a host session's browser
    audio could not be decoded at all (once per session); the supervisor tells the host."""

    def __init__(
        self,
        space_id: str,
        source: AudioSource,
        *,
        ffmpeg: str,
        media_dir: str | None,
        bitrate_kbps: int = 96,
        voice: Sequence[VoiceBridge] = (),
        on_source_failed: Callable[[str], None] | None = None,
        source_backoff_s: float = 0.5,
        source_max_backoff_s: float = 10.0,
        link_backoff_s: float = LINK_BACKOFF_S,
        link_max_backoff_s: float = LINK_MAX_BACKOFF_S,
    ) -> None:
        self.space_id = space_id
        self.source = source
        self._ffmpeg = ffmpeg
        self._media_dir = media_dir
        self._bitrate = bitrate_kbps
        self._voice = tuple(voice)
        self._on_source_failed = on_source_failed
        self._source_backoff = (source_backoff_s, source_max_backoff_s)
        self._link_backoff = (link_backoff_s, link_max_backoff_s)
        self._hub = FrameHub()
        self._process: SourceProcess | None = None
        self._session: BrowserInput | None = None
        self._sessions = 0
        self._links: dict[str, _Link] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False
        self._stopped = False
        self._stopping: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """ffmpeg running (BROWSER: waiting for the host's first session), the hub live. Idempotent."""
        if self._started or self._stopped:
            return
        self._started = True
        self._loop = asyncio.get_running_loop()
        if self.source.kind is not SourceKind.BROWSER:
            self._process = self._spawn()
            self._process.start()
        self._ticker = asyncio.create_task(self._tick(), name=f"audio-tick-{self.space_id}")
        log.info("audio bridge started", extra={"space_id": self.space_id, "kind": str(self.source.kind)})

    async def stop(self) -> None:
        """Every channel left, every ffmpeg killed and reaped, every listener ended. Idempotent; concurrent
        calls all return once it is done, and a caller cancelled while waiting does not cut it short."""
        if self._stopping is None:
            self._stopped = True
            self._stopping = asyncio.get_running_loop().create_task(self._shutdown())
        await asyncio.shield(self._stopping)

    async def _shutdown(self) -> None:
        await asyncio.gather(*(self.unlink(link.channel) for link in list(self._links.values())))
        if self._session is not None:
            await self._session.close()
        if self._process is not None:
            await asyncio.to_thread(self._process.stop)
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        self._hub.close()
        log.info("audio bridge stopped", extra={"space_id": self.space_id})

    async def _tick(self) -> None:
        """While no frame comes, wake the web listeners every FILL_TICK_S (they fill the gap with silence)."""
        seen = self._hub.pushed
        while True:
            await asyncio.sleep(FILL_TICK_S)
            pushed = self._hub.pushed
            if pushed == seen:
                self._hub.nudge()
            seen = pushed

    def _spawn(self) -> SourceProcess:
        return SourceProcess(
            self.source,
            ffmpeg=self._ffmpeg,
            media_dir=self._media_dir,
            push=self._hub.push,
            bitrate_kbps=self._bitrate,
            on_failed=self._source_failed,
            space_id=self.space_id,
            backoff_s=self._source_backoff[0],
            max_backoff_s=self._source_backoff[1],
        )

    def _source_failed(self, detail: str) -> None:
        # from the source's thread: the callback belongs to the loop
        loop = self._loop
        if loop is None or self._on_source_failed is None:
            return
        log.warning("source failing", extra={"space_id": self.space_id, "detail": detail})
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody left to tell
            loop.call_soon_threadsafe(self._report, detail)

    def _report(self, detail: str) -> None:
        if not self._stopped and self._on_source_failed is not None:
            self._on_source_failed(detail)

    # ----------------------------------------------------------------- voice channels

    async def link(self, channel: ChatRef) -> None:
        """Play in ``channel`` through whichever VoiceBridge ``can_join`` it. Returns at once; the join runs in
        the background, retried with backoff on TransientError (or while no bridge can reach the channel),
        given up on ChatUnavailable (FAILED, ``detail`` saying why). Linking a linked channel does nothing."""
        key = str(channel)
        if self._stopped or key in self._links:
            return
        link = _Link(channel)
        self._links[key] = link
        link.task = asyncio.create_task(self._keep_joined(link), name=f"voice-join-{self.space_id}-{key}")

    async def _keep_joined(self, link: _Link) -> None:
        backoff, max_backoff = self._link_backoff
        attempts = 0
        extra = {"space_id": self.space_id, "channel": str(link.channel)}
        while True:
            voice = next((v for v in self._voice if v.can_join(link.channel)), None)
            if voice is None:
                link.health = LinkHealth(
                    LinkState.RECONNECTING, "no voice connection here can reach this channel", attempts
                )
            else:
                link.voice = voice
                try:
                    await voice.join(link.channel, self._hub)
                except ChatUnavailable as e:
                    link.health = LinkHealth(LinkState.FAILED, str(e) or "channel unavailable", attempts)
                    log.warning("voice channel refused", extra={**extra, "detail": link.health.detail})
                    return
                except TransientError as e:
                    link.health = LinkHealth(LinkState.RECONNECTING, str(e) or "voice join failed", attempts)
                except Exception as e:  # a bug in a bridge must not end the retries, but is logged as one
                    log.exception("voice join raised", extra=extra)
                    link.health = LinkHealth(LinkState.RECONNECTING, type(e).__name__, attempts)
                else:
                    link.joined = True
                    link.health = LinkHealth(LinkState.PLAYING, "", attempts)
                    log.info("voice channel joined", extra=extra)
                    return
            attempts += 1
            log.info("voice join retry", extra={**extra, "detail": link.health.detail, "in_s": backoff})
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_backoff)

    async def unlink(self, channel: ChatRef) -> None:
        """Stop playing in ``channel`` and leave it (idempotent)."""
        link = self._links.pop(str(channel), None)
        if link is None:
            return
        if link.task is not None and not link.task.done():
            link.task.cancel()
            try:
                await link.task
            except asyncio.CancelledError:
                # ours, unless this coroutine itself is being cancelled: then propagate
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
        if link.voice is not None:
            try:
                await link.voice.leave(channel)
            except Exception:
                log.exception(
                    "voice leave raised", extra={"space_id": self.space_id, "channel": str(channel)}
                )

    def channels(self) -> list[ChatRef]:
        return [link.channel for link in self._links.values()]

    # ----------------------------------------------------------------- consumers

    @property
    def feed(self) -> FrameHub:
        return self._hub

    def ogg_stream(self, *, backlog: int = 150) -> AsyncIterator[bytes]:
        """One web listener, from the live edge: the Ogg headers, then pages as frames come (silence when the
        source is quiet). Ends, with an end-of-stream page, when the bridge stops; ends at once when the
        listener falls ``backlog`` frames behind (a slow client: 3 s by default). Close it (``aclose``) when the client goes."""
        return self._ogg(self._hub.listen(backlog=backlog))

    async def _ogg(self, listener: Listener) -> AsyncIterator[bytes]:
        writer = OggWriter()
        loop = asyncio.get_running_loop()
        quiet_since = loop.time()
        threshold = FIRST_FILL_AFTER_S
        filled = 0  # silence frames sent since quiet_since
        try:
            yield writer.headers()
            while True:
                # no timer per listener: the bridge's tick nudges every listener while the source is quiet
                batch = await listener.next_batch()
                if batch is None:
                    break
                if batch:
                    quiet_since, threshold, filled = loop.time(), FILL_AFTER_S, 0
                    yield writer.pages(batch)
                    continue
                idle = loop.time() - quiet_since
                if idle < threshold:
                    continue
                # paced in real time: as many 20-ms silences as the quiet lasted
                due = int(idle * 1000 / FRAME_MS) - filled
                if due > 0:
                    filled += due
                    yield writer.pages([SILENCE_FRAME] * due)
            if not listener.dropped:
                yield writer.pages([], eos=True)
        finally:
            listener.close()

    def browser_input(self) -> BrowserInput:
        """A new host session (BROWSER sources only): it replaces the previous one, whose ffmpeg is ended
        before this one's starts (one ffmpeg at a time). Between sessions listeners hear silence."""
        if self.source.kind is not SourceKind.BROWSER:
            raise ValueError("not a browser source")
        previous = self._session
        session = BrowserInput(self, previous, closed=self._stopped)
        self._session = session
        if previous is not None:
            # its writes stop now; its ffmpeg ends in the background (the new session's first write waits)
            previous._begin_closing()
        self._sessions += 1
        return session

    # ----------------------------------------------------------------- health

    def health(self) -> BridgeHealth:
        channels = {}
        for key, link in self._links.items():
            if link.joined and link.voice is not None:
                channels[key] = link.voice.voice_health(link.channel)
            else:
                channels[key] = link.health
        return BridgeHealth(self._source_health(), channels, self._hub.listeners)

    def _source_health(self) -> LinkHealth:
        if self._stopped:
            return LinkHealth(LinkState.STOPPED, "stopped")
        if self.source.kind is not SourceKind.BROWSER:
            return self._process.health() if self._process is not None else LinkHealth(LinkState.STARTING)
        reconnects = max(0, self._sessions - 1)
        session = self._session
        if session is None:
            return LinkHealth(LinkState.STARTING, "waiting for the host", 0)
        process = session._process
        if session.closed or process is None:
            if session.closed or self._sessions > 1:
                return LinkHealth(LinkState.RECONNECTING, "waiting for the host", reconnects)
            return LinkHealth(LinkState.STARTING, "waiting for the host", 0)
        h = process.health()
        if h.state is LinkState.STOPPED:
            return LinkHealth(LinkState.RECONNECTING, "waiting for the host", reconnects)
        return LinkHealth(h.state, h.detail, reconnects)


class BrowserInput:
    """One host session of a BROWSER source: the MediaRecorder's bytes (webm or ogg), in order, into one
    ffmpeg of its own. The loop never blocks on ffmpeg: each write waits in a worker thread, one at a time."""

    def __init__(self, bridge: Bridge, previous: BrowserInput | None, *, closed: bool = False) -> None:
        self._bridge = bridge
        self._previous = previous
        self._process: SourceProcess | None = None
        self._lock = asyncio.Lock()
        self._closing: asyncio.Task[None] | None = None
        self.closed = closed

    async def write(self, chunk: bytes) -> None:
        """Hand the next chunk to ffmpeg. Dropped silently once the session is closed or replaced, or if its
        ffmpeg is gone (the host's page reconnects: a new session)."""
        async with self._lock:
            if self.closed:
                return
            if self._process is None:
                if self._previous is not None:
                    await self._previous.close()
                    self._previous = None
                if self.closed or self._bridge._stopped:
                    return
                self._process = self._bridge._spawn()
                self._process.start()
            process = self._process
            await asyncio.to_thread(process.write_input, chunk)

    async def close(self) -> None:
        """The session ended: ffmpeg gets the end of its input, is given a moment to flush, then is stopped
        and reaped. Idempotent; concurrent calls return once it is done (a cancelled caller does not cut it
        short)."""
        await asyncio.shield(self._begin_closing())

    def _begin_closing(self) -> asyncio.Task[None]:
        """No more writes from now on; ffmpeg's end runs in a task of its own (the one close() awaits)."""
        self.closed = True
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(self._shutdown())
        return self._closing

    async def _shutdown(self) -> None:
        if self._previous is not None:
            await self._previous.close()
            self._previous = None
        # not under the lock: a write blocked on a full pipe is released by stopping ffmpeg
        if self._process is not None:
            await asyncio.to_thread(self._process.stop)
