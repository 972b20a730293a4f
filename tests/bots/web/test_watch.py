"""bots/web/watch.py: one poller per watched Space whatever the number of viewers, the newest state only
for a slow viewer, a read that fails costs one round, and the poller stops with its last viewer."""

from __future__ import annotations

import asyncio

import pytest

from bots.web.watch import Closed, SpaceWatch, State, TooManyStreams
from tests.bots.web.conftest import eventually


class Store:
    def __init__(self) -> None:
        self.state: State | None = {"status": "scheduled", "n": 0}
        self.reads = 0
        self.fail = False

    async def read(self, space_id: str) -> State | None:
        self.reads += 1
        if self.fail:
            raise ConnectionError("database is down")
        return dict(self.state) if self.state is not None else None


async def test_viewers_share_one_poller_and_get_the_newest_state() -> None:
    store = Store()
    watch = SpaceWatch(store.read, interval=0.01)
    first = {"status": "scheduled", "n": 0}
    async with watch.follow("sp2345abcd", first) as a, watch.follow("sp2345abcd", first) as b:
        assert watch.polling == 1 and watch.streams == 2
        for n in (1, 2, 3):  # nobody reads a meanwhile: it keeps the newest only
            store.state = {"status": "scheduled", "n": n}
            await eventually(lambda n=n: b.qsize() and b.get_nowait() == {"status": "scheduled", "n": n})
        assert a.qsize() == 1 and a.get_nowait() == {"status": "scheduled", "n": 3}
        store.fail = True
        reads = store.reads
        await eventually(lambda: store.reads > reads + 2)  # a failing read: tried again, nothing sent
        assert a.empty()
        store.fail, store.state = False, None
        assert await asyncio.wait_for(a.get(), 30) is None  # the Space is gone
    await eventually(lambda: watch.polling == 0 and watch.streams == 0)


async def test_the_number_of_viewers_is_bounded_and_close_ends_them() -> None:
    watch = SpaceWatch(Store().read, interval=0.01, max_streams=2)
    async with watch.follow("sp2345abcd", {}) as a, watch.follow("sp2345abcd", {}):
        with pytest.raises(TooManyStreams):
            async with watch.follow("sp2345abcd", {}):
                pass
        await watch.close()
        assert isinstance(await asyncio.wait_for(a.get(), 30), Closed)
    with pytest.raises(TooManyStreams):
        async with watch.follow("sp2345abcd", {}):
            pass
