"""The frame hub: voice readers that never block, web listeners woken once per frame and loop, slow ones dropped."""

from __future__ import annotations

import asyncio
import threading

from bots.audio.feed import MAX_LAG_FRAMES, RING_FRAMES, FrameHub
from core.audio import SILENCE_FRAME
from core.ports import FrameFeed, FrameReader


def frame(i: int) -> bytes:
    return b"F" + i.to_bytes(4, "big")


def test_reader_margin_silence_skip_and_close() -> None:
    hub = FrameHub()
    feed: FrameFeed = hub  # the port, as a voice bridge sees it
    for i in range(10):
        hub.push(frame(i))
    r: FrameReader = feed.reader()
    # three frames behind the live edge: what the pipe's jitter eats instead of the listener's ears
    assert [r.read() for _ in range(3)] == [frame(7), frame(8), frame(9)]
    assert r.read() == SILENCE_FRAME  # nothing ready: silence, at once
    hub.push(frame(10))
    assert r.read() == frame(10)
    # a reader whose thread stalled comes back near the live edge, not 2 s late
    for i in range(11, 11 + MAX_LAG_FRAMES + 50):
        hub.push(frame(i))
    edge = 11 + MAX_LAG_FRAMES + 50
    assert r.read() == frame(edge - 3)
    r.close()
    assert r.read() == b""
    r2 = hub.reader(margin=0)
    assert r2.read() == SILENCE_FRAME
    hub.close()
    assert r2.read() == b""


def test_reader_across_ring_wrap_from_a_thread() -> None:
    hub = FrameHub(capacity=64)
    r = hub.reader(margin=0)
    got: list[bytes] = []

    def player() -> None:  # like discord.py's player thread: one read per tick, never waiting
        while not got or got[-1] != frame(299):
            f = r.read()
            if f != SILENCE_FRAME:
                got.append(f)

    t = threading.Thread(target=player)
    t.start()
    for i in range(300):
        hub.push(frame(i))
        while r.position < i - 8 and t.is_alive():
            pass  # the 20-ms rhythm keeps the player near the edge; here the pusher waits for it
    t.join(timeout=10)
    assert not t.is_alive()
    # in order and without repeats; only skips forward when it fell behind
    idx = [int.from_bytes(f[1:], "big") for f in got]
    assert idx == sorted(set(idx))
    assert idx[-1] == 299


async def test_listeners_batches_one_dispatch_per_frame_and_close() -> None:
    hub = FrameHub()
    loop = asyncio.get_running_loop()
    listeners = [hub.listen() for _ in range(3)]
    assert hub.listeners == 3
    calls = 0
    original = loop.call_soon_threadsafe

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        return original(*args, **kwargs)

    loop.call_soon_threadsafe = counting  # type: ignore[method-assign, assignment]
    try:

        def push_all() -> None:
            for i in range(40):
                hub.push(frame(i))

        pusher = threading.Thread(target=push_all)
        pusher.start()
        pusher.join()
    finally:
        del loop.call_soon_threadsafe
    assert calls == 40  # one per pushed frame for the three listeners of this loop, not 120
    got: list[list[bytes]] = [[] for _ in listeners]

    async def drain(i: int) -> None:
        async for batch in listeners[i]:
            assert isinstance(batch, list)
            got[i].extend(batch)

    tasks = [asyncio.create_task(drain(i)) for i in range(3)]
    await asyncio.sleep(0)
    hub.push(frame(40))
    hub.close()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert all(g == [frame(i) for i in range(41)] for g in got)
    assert hub.listeners == 0


async def test_slow_listener_dropped_fast_one_keeps_everything() -> None:
    hub = FrameHub()
    slow = hub.listen(backlog=50)  # never reads
    fast = hub.listen(backlog=50)
    got: list[bytes] = []

    async def drain() -> None:
        async for batch in fast:
            got.extend(batch)

    task = asyncio.create_task(drain())
    for i in range(300):
        hub.push(frame(i))
        if i % 10 == 0:
            await asyncio.sleep(0)  # the loop runs between pushes, as with a real source thread
    await asyncio.sleep(0)
    assert slow.dropped and hub.listeners == 1
    hub.close()
    await asyncio.wait_for(task, 5)
    assert got == [frame(i) for i in range(300)]
    assert [b async for b in slow] == []  # a dropped listener's iteration ends


async def test_listener_on_a_closed_hub_ends_and_readers_start_empty() -> None:
    hub = FrameHub()
    assert len(hub.reader().read()) == len(SILENCE_FRAME)
    assert RING_FRAMES == 500
    hub.close()
    assert [b async for b in hub.listen()] == []


async def test_nudge_wakes_listeners_without_frames() -> None:
    hub = FrameHub()
    listener = hub.listen()
    waiting = asyncio.create_task(listener.next_batch())
    await asyncio.sleep(0)
    assert not waiting.done()
    hub.nudge()  # from the bridge's tick: no frame, but a chance to fill the quiet with silence
    assert await asyncio.wait_for(waiting, 5) == []
    hub.push(frame(0))
    assert await asyncio.wait_for(listener.next_batch(), 5) == [frame(0)]
    assert await listener.next_batch(wait_s=0.01) == []
    hub.close()
    assert await listener.next_batch() is None
