"""The hub of a live Space's audio: frames pushed once by the source's thread, read by every consumer.

Two kinds of consumer with opposite needs:

- a voice connection's player thread (discord.py) asks for one frame every 20 ms and MUST never wait: a
  :class:`HubReader` answers from the ring at once, silence when nothing is ready;
- a web listener lives on the event loop and wants frames as they come: a :class:`Listener` is woken by the
  hub, one ``call_soon_threadsafe`` per pushed frame and loop (not one per listener), and takes every frame it
  has not had in one batch. A listener that falls ``backlog`` frames behind is dropped: the others never wait.

Every frame has an absolute index (how many were pushed before it); the ring keeps the last
:data:`RING_FRAMES`, so a position is just an index, checked against the ring's bounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator

from core.audio import FRAMES_PER_SECOND, SILENCE_FRAME

RING_FRAMES = 10 * FRAMES_PER_SECOND  # 10 s of audio
# a reader further behind the live edge than this jumps forward (a stalled player thread, a burst from ffmpeg)
MAX_LAG_FRAMES = FRAMES_PER_SECOND // 2


class FrameHub:
    """Implements ``core.ports.FrameFeed``. ``push`` from one thread (the source's); ``reader`` from any;
    ``listen`` and iteration on an event loop. ``close`` ends every reader and listener."""

    def __init__(self, capacity: int = RING_FRAMES) -> None:
        self._ring: list[bytes] = [b""] * capacity
        self._cap = capacity
        self._next = 0  # index the next pushed frame gets
        self._lock = threading.Lock()
        self._closed = False
        # the listeners of each loop; a push schedules one dispatch per loop
        self._loops: dict[asyncio.AbstractEventLoop, set[Listener]] = {}

    # ----------------------------------------------------------------- the source side

    def push(self, frame: bytes) -> None:
        """Append one Opus packet (any thread; never blocks on a consumer)."""
        with self._lock:
            if self._closed:
                return
            self._ring[self._next % self._cap] = frame
            self._next += 1
            loops = [loop for loop, ls in self._loops.items() if ls]
        for loop in loops:
            try:
                loop.call_soon_threadsafe(self._dispatch, loop)
            except RuntimeError:  # that loop is closed: its listeners are gone with it
                with self._lock:
                    self._loops.pop(loop, None)

    @property
    def pushed(self) -> int:
        """How many frames were ever pushed."""
        with self._lock:
            return self._next

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Idempotent: readers return b"", listeners end after the frames they were owed."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loops = list(self._loops)
        for loop in loops:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._dispatch, loop)

    def nudge(self) -> None:
        """Wake every listener without a frame (its ``next_batch`` returns []): the bridge's tick while the
        source is quiet, so that listeners can fill the gap with silence without a timer each."""
        with self._lock:
            loops = [loop for loop, ls in self._loops.items() if ls]
        for loop in loops:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._dispatch, loop, True)

    # ----------------------------------------------------------------- voice (threads)

    def reader(self, *, margin: int = 3) -> HubReader:
        """A reader ``margin`` frames behind the live edge, so that the jitter of ffmpeg's pipe is absorbed
        by frames already there rather than heard as silence."""
        with self._lock:
            return HubReader(self, max(0, self._next - margin), margin)

    def _read(self, reader: HubReader) -> bytes:
        with self._lock:
            if self._closed:
                return b""
            lag = self._next - reader.position
            if lag > MAX_LAG_FRAMES or reader.position < self._next - self._cap:
                reader.position = self._next - min(reader.margin, self._next)
                lag = self._next - reader.position
            if lag <= 0:
                return SILENCE_FRAME
            frame = self._ring[reader.position % self._cap]
            reader.position += 1
            return frame

    # ----------------------------------------------------------------- web (event loop)

    def listen(self, *, backlog: int = 150) -> Listener:
        """A listener from the live edge, on the running loop. Iterate it (``async for batch in ...``)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            listener = Listener(self, loop, self._next, min(backlog, self._cap))
            if not self._closed:
                self._loops.setdefault(loop, set()).add(listener)
            else:
                listener._ended = True
        return listener

    @property
    def listeners(self) -> int:
        with self._lock:
            return sum(len(ls) for ls in self._loops.values())

    def _dispatch(self, loop: asyncio.AbstractEventLoop, nudge: bool = False) -> None:
        # on ``loop``: wake each of its listeners, dropping those that fell too far behind
        with self._lock:
            listeners = list(self._loops.get(loop, ()))
            edge, closed = self._next, self._closed
        for listener in listeners:
            if edge - listener.position > listener.backlog:
                listener._drop()
            else:
                if closed:
                    listener._ended = True
                if nudge:
                    listener._nudged = True
                listener._wake.set()

    def _take(self, listener: Listener) -> list[bytes] | None:
        """The frames ``listener`` has not had yet; None when it fell too far behind (to be dropped)."""
        with self._lock:
            start, edge = listener.position, self._next
            if edge - start > listener.backlog or start < edge - self._cap:
                return None
            listener.position = edge
            return [self._ring[i % self._cap] for i in range(start, edge)]

    def _forget(self, listener: Listener) -> None:
        with self._lock:
            ls = self._loops.get(listener.loop)
            if ls is not None:
                ls.discard(listener)
                if not ls:
                    del self._loops[listener.loop]


class HubReader:
    """Implements ``core.ports.FrameReader`` over a :class:`FrameHub` (thread-safe, never blocks)."""

    def __init__(self, hub: FrameHub, position: int, margin: int) -> None:
        self._hub = hub
        self.position = position  # the index of the next frame to read (guarded by the hub's lock)
        self.margin = margin
        self._closed = False

    def read(self) -> bytes:
        if self._closed:
            return b""
        return self._hub._read(self)

    def close(self) -> None:
        self._closed = True


class Listener:
    """One web listener: an async iterator of batches (lists) of frames, in order, none skipped. Iteration
    ends when the hub closes (after the frames already pushed) or when this listener fell ``backlog`` frames
    behind (it is dropped: nothing more is kept for it). ``dropped`` tells which."""

    def __init__(self, hub: FrameHub, loop: asyncio.AbstractEventLoop, position: int, backlog: int) -> None:
        self._hub = hub
        self.loop = loop
        self.position = position
        self.backlog = backlog
        self._wake = asyncio.Event()
        self._nudged = False
        self._ended = False
        self.dropped = False

    def __aiter__(self) -> AsyncIterator[list[bytes]]:
        return self

    async def __anext__(self) -> list[bytes]:
        batch = await self.next_batch()
        if batch is None:
            raise StopAsyncIteration
        return batch

    async def next_batch(self, wait_s: float | None = None) -> list[bytes] | None:
        """The frames pushed since the last batch, waiting for at least one; [] when ``wait_s`` seconds
        passed without any, or when the hub was nudged; None once the listener ended (the hub closed, or
        this listener was dropped)."""
        while True:
            if self.dropped:
                return None
            batch = self._hub._take(self)
            if batch is None:
                self._drop()
                return None
            if batch:
                return batch
            if self._ended or self._hub.closed:
                self.close()
                return None
            if self._nudged:
                self._nudged = False
                return []
            self._wake.clear()
            if wait_s is None:
                await self._wake.wait()
                continue
            try:
                async with asyncio.timeout(wait_s):
                    await self._wake.wait()
            except TimeoutError:
                return []

    def _drop(self) -> None:
        self.dropped = True
        self._hub._forget(self)
        self._wake.set()

    def close(self) -> None:
        """Stop listening (idempotent)."""
        self._ended = True
        self._hub._forget(self)
        self._wake.set()
