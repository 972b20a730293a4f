"""A delivery worker process for the multi-process tests and the benchmark.

The real engine on the real storage, woken by the real Waker (lease renewal included), sending through a
platform that appends one line per send to a shared file (O_APPEND writes of one line are atomic on Linux),
so the parent can count, per recipient, what was received — even when this process is killed with SIGKILL
mid-batch. It exits once the outbox has nothing pending or claimed.

    python -m tests.delivery.worker URL WORKER_ID LOG [--lease S] [--delay S] [--batch N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Mapping
from datetime import timedelta

from bots.runtime.budget import Unlimited
from bots.runtime.clock import SystemClock
from bots.runtime.waker import Waker
from core.notices import Notice
from core.refs import ChatRef, MessageRef, Platform, UserRef
from core.services.deliveries import DeliveryEngine, EngineConfig
from storage.db import make_engine, make_session_factory
from storage.stores import SqlOutbox, unit_of_work_factory


class AppendLogPlatform:
    """Records every send as ``<recipient>\t<nonce>\t<worker>``: what each recipient received."""

    platform = Platform.CONSOLE

    def __init__(self, path: str, worker: str, delay: float) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._worker = worker
        self._delay = delay
        self._n = 0

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def _send(self, chat: str, key: str) -> MessageRef:
        if self._delay:
            await asyncio.sleep(self._delay)  # the platform's answer takes a while
        os.write(self._fd, f"{chat}\t{key}\t{self._worker}\n".encode())
        self._n += 1
        return MessageRef(Platform.CONSOLE, chat, str(self._n))

    async def post(self, chat: ChatRef, notice: Notice, *, key: str) -> MessageRef:
        return await self._send(chat.id, key)

    async def edit(self, message: MessageRef, notice: Notice) -> None:
        await self._send(message.chat_id, "edit")

    async def direct(self, user: UserRef, notice: Notice, *, key: str) -> MessageRef:
        return await self._send(f"dm-{user.id}", key)

    async def mention(
        self, chat: ChatRef, users: Mapping[UserRef, str], notice: Notice, *, key: str
    ) -> MessageRef:
        return await self._send(chat.id, key)


class _Links:
    def space(self, space_id: str) -> str:
        return f"http://127.0.0.1/s/{space_id}"


async def run(url: str, worker: str, log: str, lease: float, delay: float, batch: int) -> None:
    engine = make_engine(url)
    outbox = SqlOutbox(engine)
    uow = unit_of_work_factory(make_session_factory(engine))
    clock = SystemClock()
    done = asyncio.Event()
    deliveries: DeliveryEngine

    async def deliver() -> int:
        handled = await deliveries.deliver_due()
        counts = await outbox.counts()
        if counts.get("pending", 0) + counts.get("claimed", 0) == 0:
            done.set()
        return handled

    lease_td = timedelta(seconds=lease)
    waker = Waker(
        deliver,
        clock,
        sweep_every=lease_td,  # the safety net; the lease ends of others' rows wake it anyway
        renew_every=lease_td / 3,
        on_renew=lambda: deliveries.renew_leases(),
    )
    deliveries = DeliveryEngine(
        outbox,
        uow,
        AppendLogPlatform(log, worker, delay),
        clock,
        Unlimited(),
        _Links(),
        waker,
        EngineConfig(
            worker_id=worker,
            lease=lease_td,
            lease_margin=lease_td / 2,
            send_timeout=lease / 4,
            batch=batch,
            concurrency=16,
        ),
    )
    try:
        await waker.start()
        await done.wait()
    finally:
        await waker.stop(grace=lease)
        await engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("worker")
    ap.add_argument("log")
    ap.add_argument("--lease", type=float, default=3.0)
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--batch", type=int, default=50)
    a = ap.parse_args()
    asyncio.run(run(a.url, a.worker, a.log, a.lease, a.delay, a.batch))


if __name__ == "__main__":
    main()
