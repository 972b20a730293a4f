"""The gateway lease on SQLite and PostgreSQL: one holder at a time, fencing, takeover after expiry — and
LeasedGateway on top of it (two processes, one connection), with a controllable clock."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bots.runtime.gateway import LeasedGateway, lease_name, shard_lease_name
from core.refs import Platform
from storage.lease import SqlGatewayLease
from tests.fakes.clock import FakeClock
from tests.fakes.memory import MemoryGatewayLease
from tests.fakes.platform import FakePlatform

TTL = timedelta(seconds=15)


@pytest.fixture(params=["sql", "memory"])
def lease(request: pytest.FixtureRequest, engine: AsyncEngine) -> SqlGatewayLease | MemoryGatewayLease:
    """The storage implementation, and the in-memory fake held to the same behaviour."""
    return SqlGatewayLease(engine) if request.param == "sql" else MemoryGatewayLease()


async def test_one_holder_at_a_time_and_a_new_fence_for_each_new_holder(
    lease: SqlGatewayLease | MemoryGatewayLease,
) -> None:
    clock = FakeClock()
    a = await lease.acquire("discord", "a", now=clock.now(), ttl=TTL)
    assert a is not None and (a.holder, a.fence, a.until) == ("a", 1, clock.now() + TTL)
    assert await lease.acquire("discord", "b", now=clock.now(), ttl=TTL) is None
    clock.advance(timedelta(seconds=5))
    again = await lease.acquire("discord", "a", now=clock.now(), ttl=TTL)  # the holder itself: a renewal
    assert again is not None and again.fence == 1 and again.until == clock.now() + TTL
    renewed = await lease.renew(a, now=clock.now(), ttl=TTL)
    assert renewed is not None and renewed.fence == 1

    clock.advance(TTL + timedelta(seconds=1))  # the holder stopped renewing: it ran out
    b = await lease.acquire("discord", "b", now=clock.now(), ttl=TTL)
    assert b is not None and b.holder == "b" and b.fence == 2
    # the old holder wakes up: its renewal and its release are refused (fenced), the new holder keeps it
    assert await lease.renew(a, now=clock.now(), ttl=TTL) is None
    assert await lease.release(a, now=clock.now()) is False
    current = await lease.current("discord")
    assert current is not None and (current.holder, current.fence) == ("b", 2)


async def test_a_lease_that_ran_out_untaken_is_still_renewed_and_a_release_frees_it_at_once(
    lease: SqlGatewayLease | MemoryGatewayLease,
) -> None:
    clock = FakeClock()
    a = await lease.acquire("discord", "a", now=clock.now(), ttl=TTL)
    assert a is not None
    clock.advance(TTL * 2)  # a long pause, but nobody took it meanwhile
    a2 = await lease.renew(a, now=clock.now(), ttl=TTL)
    assert a2 is not None and a2.fence == 1
    assert await lease.release(a2, now=clock.now()) is True
    b = await lease.acquire("discord", "b", now=clock.now(), ttl=TTL)  # no wait for it to run out
    assert b is not None and b.fence == 2
    assert await lease.current("nothing") is None


async def test_shard_groups_are_leased_apart(lease: SqlGatewayLease | MemoryGatewayLease) -> None:
    clock = FakeClock()
    first = await lease.acquire("discord:shards:0-1", "p1", now=clock.now(), ttl=TTL)
    second = await lease.acquire("discord:shards:2-3", "p2", now=clock.now(), ttl=TTL)
    assert first is not None and second is not None
    assert await lease.acquire("discord:shards:0-1", "p2", now=clock.now(), ttl=TTL) is None


async def test_concurrent_contenders_one_wins(engine: AsyncEngine) -> None:
    clock = FakeClock()
    leases = [SqlGatewayLease(engine) for _ in range(6)]
    grants = await asyncio.gather(
        *(lease.acquire("discord", f"p{i}", now=clock.now(), ttl=TTL) for i, lease in enumerate(leases))
    )
    assert len([g for g in grants if g is not None]) == 1
    clock.advance(TTL)
    grants = await asyncio.gather(
        *(lease.acquire("discord", f"q{i}", now=clock.now(), ttl=TTL) for i, lease in enumerate(leases))
    )
    (winner,) = [g for g in grants if g is not None]
    assert winner.fence == 2


@dataclass
class Process:
    """One ``web`` process's Discord adapter, started under the lease."""

    platform: FakePlatform
    gateway: LeasedGateway


def process(lease: SqlGatewayLease | MemoryGatewayLease, clock: FakeClock, holder: str) -> Process:
    platform = FakePlatform(platform=Platform.DISCORD)
    platform.needs_gateway_lease = True  # type: ignore[attr-defined]

    async def never(seconds: float) -> None:  # the background loop is driven by the test through step()
        await asyncio.Event().wait()

    return Process(platform, LeasedGateway(platform, lease, holder=holder, clock=clock, ttl=TTL, sleep=never))


async def test_only_the_holder_connects_and_a_standby_takes_over_when_it_dies(
    lease: SqlGatewayLease | MemoryGatewayLease,
) -> None:
    clock = FakeClock()
    a, b = process(lease, clock, "web-1"), process(lease, clock, "web-2")
    await a.gateway.start()
    await b.gateway.start()
    try:
        assert a.platform.started and not b.platform.started
        assert a.gateway.state.startswith("up") and b.gateway.state.startswith("standby")
        for _ in range(3):  # the holder renews every ttl / 3; the standby keeps asking
            clock.advance(TTL / 3)
            await a.gateway.step()
            await b.gateway.step()
            assert a.platform.started and not b.platform.started

        # web-1 freezes (killed, or its loop stalled): no more renewals. Within a lease, web-2 takes over
        clock.advance(TTL / 2)
        await b.gateway.step()
        assert not b.platform.started
        clock.advance(TTL / 2 + timedelta(seconds=1))
        await b.gateway.step()
        assert b.platform.started and b.gateway.grant is not None and b.gateway.grant.fence == 2

        # web-1 comes back: its renewal is fenced off, and it disconnects at once
        await a.gateway.step()
        assert not a.platform.started and a.gateway.grant is None
        assert a.gateway.state.startswith("standby")
    finally:
        await a.gateway.stop()
        await b.gateway.stop()


async def test_a_clean_stop_hands_the_gateway_over_without_waiting(
    lease: SqlGatewayLease | MemoryGatewayLease,
) -> None:
    clock = FakeClock()
    a, b = process(lease, clock, "web-1"), process(lease, clock, "web-2")
    await a.gateway.start()
    await b.gateway.start()
    await a.gateway.stop()  # a deploy: the lease is released
    assert not a.platform.started
    await b.gateway.step()
    assert b.platform.started
    await b.gateway.stop()


class Ticks:
    """A LeasedGateway's sleep that returns when the test says (one tick per wait), recording each wait."""

    def __init__(self) -> None:
        self.asked: list[float] = []
        self._queue: asyncio.Queue[None] = asyncio.Queue()

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        await self._queue.get()

    def tick(self) -> None:
        self._queue.put_nowait(None)


async def test_the_background_loop_renews_and_takes_over(lease: SqlGatewayLease | MemoryGatewayLease) -> None:
    clock = FakeClock()
    ticks_a, ticks_b = Ticks(), Ticks()
    a_platform, b_platform = FakePlatform(platform=Platform.DISCORD), FakePlatform(platform=Platform.DISCORD)
    a = LeasedGateway(a_platform, lease, holder="web-1", clock=clock, ttl=TTL, sleep=ticks_a)
    b = LeasedGateway(b_platform, lease, holder="web-2", clock=clock, ttl=TTL, sleep=ticks_b, retry_every=2.0)
    await a.start()
    await b.start()
    try:
        for _ in range(20):
            await asyncio.sleep(0)
        assert ticks_a.asked == [TTL.total_seconds() / 3] and ticks_b.asked == [2.0]  # renew / retry pace
        assert a_platform.started and not b_platform.started

        assert a._task is not None
        a._task.cancel()  # web-1 dies: no renewal, no release
        clock.advance(TTL + timedelta(seconds=1))
        ticks_b.tick()
        for _ in range(200):
            if b_platform.started:
                break
            await asyncio.sleep(0.01)
        assert b_platform.started and b.grant is not None and b.grant.fence == 2
    finally:
        await a.stop()
        await b.stop()


def test_lease_names_per_shard_group() -> None:
    assert shard_lease_name("discord", None) == "discord"
    assert shard_lease_name("discord", [1, 0]) == "discord:shards:0-1"
    assert shard_lease_name("discord", [4]) == "discord:shards:4"
    assert shard_lease_name("discord", [0, 2, 5]) == "discord:shards:0,2,5"

    @dataclass
    class Config:
        shard_ids: tuple[int, ...] | None

    platform = FakePlatform(platform=Platform.DISCORD)
    assert lease_name(platform) == "discord"
    platform.config = Config((2, 3))  # type: ignore[attr-defined]
    assert lease_name(platform) == "discord:shards:2-3"
    platform.gateway_lease_name = "discord:custom"  # type: ignore[attr-defined]
    assert lease_name(platform) == "discord:custom"


async def test_a_holder_that_cannot_connect_lets_go_and_backs_off(
    lease: SqlGatewayLease | MemoryGatewayLease,
) -> None:
    clock = FakeClock()
    ticks = Ticks()
    broken = FakePlatform(platform=Platform.DISCORD, fail_start=3)
    gateway = LeasedGateway(broken, lease, holder="web-1", clock=clock, ttl=TTL, sleep=ticks, retry_every=2.0)
    with pytest.raises(ConnectionError):
        await gateway.start()  # the router marks it down and retries the whole start
    assert gateway.grant is None  # released: another process may connect instead
    current = await lease.current(gateway.name)
    assert current is not None and current.until <= clock.now()
    gateway._task = asyncio.get_running_loop().create_task(gateway._run())  # as a later, failing round
    for _ in range(3):
        ticks.tick()
        for _ in range(50):
            await asyncio.sleep(0)
    for _ in range(100):
        if broken.started:
            break
        await asyncio.sleep(0.01)
    assert broken.started and ticks.asked[:3] == [2.0, 4.0, 8.0]  # two failures: waits doubled
    await gateway.stop()
