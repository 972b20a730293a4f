"""Following a Space from its share page: one poller per watched Space, shared by all its viewers.

``GET /s/<id>/events`` (server-sent events) subscribes a viewer here. The first viewer of a Space starts a
task that reads the Space every ``interval`` seconds (one ``get`` and one count: cheap, by primary key) and
hands each change to every viewer of it in this process; the last one to leave stops it. A thousand readers
of one popular Space cost the database the same as one.

Each viewer holds the latest state only (a queue of one): a slow reader skips intermediate states and gets
the newest, which is all a page needs. The number of viewers in the process is bounded (``max_streams``):
beyond it a new stream is refused (the page keeps working without it; a reload later follows again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

State = dict[str, object]
# reads the Space's shared state (bots.web.share.state), None once it is gone
Reader = Callable[[str], Awaitable[State | None]]

POLL_INTERVAL = 2.0  # seconds between two reads of a watched Space
MAX_STREAMS = 1000  # open event streams in this process, all Spaces together


class TooManyStreams(Exception):
    """This process already serves ``max_streams`` event streams."""


class Closed:
    """Sent to a viewer when the watch is shut down (the app is stopping)."""


CLOSED = Closed()


@dataclass(slots=True)
class _Feed:
    viewers: set[asyncio.Queue[State | Closed | None]] = field(default_factory=set)
    latest: State | None = None
    task: asyncio.Task[None] | None = None


class SpaceWatch:
    def __init__(
        self, read: Reader, *, interval: float = POLL_INTERVAL, max_streams: int = MAX_STREAMS
    ) -> None:
        self._read = read
        self.interval = interval
        self.max_streams = max_streams
        self._feeds: dict[str, _Feed] = {}
        self._streams = 0
        self._closed = False

    @property
    def streams(self) -> int:
        return self._streams

    @property
    def polling(self) -> int:
        """Spaces being read right now (one task each, whatever the number of viewers)."""
        return sum(1 for f in self._feeds.values() if f.task is not None and not f.task.done())

    @contextlib.asynccontextmanager
    async def follow(
        self, space_id: str, first: State
    ) -> AsyncIterator[asyncio.Queue[State | Closed | None]]:
        """A viewer of ``space_id`` who already shows ``first``: the queue yields each newer state, None when
        the Space is gone, :data:`CLOSED` when the app stops. Raises :class:`TooManyStreams`."""
        if self._closed or self._streams >= self.max_streams:
            raise TooManyStreams
        queue: asyncio.Queue[State | Closed | None] = asyncio.Queue(maxsize=1)
        feed = self._feeds.setdefault(space_id, _Feed())
        if feed.latest is not None and feed.latest != first:
            queue.put_nowait(feed.latest)  # a newer state than the viewer's page: send it at once
        elif feed.latest is None:
            feed.latest = first
        feed.viewers.add(queue)
        self._streams += 1
        if feed.task is None or feed.task.done():
            feed.task = asyncio.create_task(self._poll(space_id, feed), name=f"watch-{space_id}")
        try:
            yield queue
        finally:
            self._streams -= 1
            feed.viewers.discard(queue)
            if not feed.viewers:
                if feed.task is not None:
                    feed.task.cancel()
                if self._feeds.get(space_id) is feed:
                    del self._feeds[space_id]

    async def close(self) -> None:
        """Refuse new viewers, end every stream, stop every poller (the app's on_shutdown)."""
        self._closed = True
        tasks = []
        for feed in list(self._feeds.values()):
            for queue in feed.viewers:
                _offer(queue, CLOSED)
            if feed.task is not None:
                feed.task.cancel()
                tasks.append(feed.task)
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _poll(self, space_id: str, feed: _Feed) -> None:
        while feed.viewers:
            await asyncio.sleep(self.interval)
            try:
                current = await self._read(space_id)
            except Exception:
                # a database hiccup costs this round only; the viewers keep what they show
                log.warning("reading Space %s for its page failed", space_id, exc_info=True)
                continue
            if current == feed.latest:
                continue
            feed.latest = current
            for queue in feed.viewers:
                _offer(queue, current)
            if current is None:
                return


def _offer(queue: asyncio.Queue[State | Closed | None], item: State | Closed | None) -> None:
    """Put ``item`` in a queue of one, replacing what the viewer has not taken yet (only the newest counts)."""
    with contextlib.suppress(asyncio.QueueEmpty):
        if queue.full():
            queue.get_nowait()
    queue.put_nowait(item)
