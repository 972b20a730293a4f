"""One owning process per gateway connection, however many ``web`` processes run.

A platform that receives through a persistent connection (Discord's gateway) must open it in one process
only: two connections with the same shards would each receive every command and answer it twice. Such an
adapter declares ``needs_gateway_lease = True``; the composition root then starts it through
:class:`LeasedGateway`, which connects only while this process holds the lease named by the adapter
(``gateway_lease_name``: e.g. ``discord:shards:0-1``, so processes can split the shards by group), renews it
every ``ttl / 3``, and disconnects as soon as it is lost. The others keep trying to acquire it every
``retry_every`` seconds, so one of them takes over within about ``ttl`` of the holder's death.

An adapter may split its start: with ``start_gateway()`` / ``stop_gateway()``, ``start()`` / ``stop()`` run in
every process (what sending needs: an HTTP session) and only the gateway waits for the lease. Without them
the whole ``start()`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Protocol, runtime_checkable

from core.models import LeaseGrant
from core.ports import ChatPlatform, Clock, GatewayLease

log = logging.getLogger(__name__)

LEASE_TTL = timedelta(seconds=15)
RETRY_EVERY = 3.0  # seconds between a standby's attempts to take the lease
RETRY_MAX = 60.0  # at most this long between attempts after connections failed in a row


@runtime_checkable
class SplitGateway(Protocol):
    """An adapter whose gateway can be connected apart from the rest of its start (see the module notes)."""

    async def start_gateway(self) -> None: ...

    async def stop_gateway(self) -> None: ...


def needs_gateway_lease(platform: object) -> bool:
    """Does this adapter instance open a connection that must have one owner across processes?"""
    return getattr(platform, "needs_gateway_lease", False) is True


def shard_lease_name(platform: str, shard_ids: Sequence[int] | None) -> str:
    """The lease of one group of shards: ``discord:shards:0-1`` (a run), ``discord:shards:0,2`` (a set),
    ``discord`` when the process runs every shard. Processes configured with the same group stand by for
    each other; processes with disjoint groups each connect theirs."""
    if not shard_ids:
        return platform
    ids = sorted(set(shard_ids))
    run = ids == list(range(ids[0], ids[-1] + 1))
    group = f"{ids[0]}-{ids[-1]}" if run and len(ids) > 1 else ",".join(str(i) for i in ids)
    return f"{platform}:shards:{group}"


def lease_name(platform: ChatPlatform) -> str:
    """The adapter's lease name (``gateway_lease_name``); else its shard group, when its config names one
    (``config.shard_ids``); else the platform's name."""
    name = getattr(platform, "gateway_lease_name", None)
    if isinstance(name, str) and name:
        return name
    shard_ids = getattr(getattr(platform, "config", None), "shard_ids", None)
    if isinstance(shard_ids, Sequence) and all(isinstance(i, int) for i in shard_ids):
        return shard_lease_name(str(platform.platform), shard_ids)
    return str(platform.platform)


class LeasedGateway:
    """The router's starter for a platform that needs the gateway lease (bots/router.py ``Startable``).

    :meth:`step` is one round of the loop (acquire when not holding, renew when holding), so tests drive it
    with a controllable clock; :meth:`start` runs it in the background."""

    def __init__(
        self,
        platform: ChatPlatform,
        lease: GatewayLease,
        *,
        holder: str,
        clock: Clock,
        ttl: timedelta = LEASE_TTL,
        retry_every: float = RETRY_EVERY,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if ttl <= timedelta(0) or retry_every <= 0:
            raise ValueError("LeasedGateway: ttl and retry_every must be positive")
        self.platform = platform
        self.name = lease_name(platform)
        self.holder = holder
        self._lease = lease
        self._clock = clock
        self._ttl = ttl
        self._retry_every = retry_every
        self._sleep = sleep
        self._split = isinstance(platform, SplitGateway)
        self.grant: LeaseGrant | None = None
        self.connected = False
        self._task: asyncio.Task[None] | None = None

    @property
    def state(self) -> str:
        """For /healthz: "up (gateway holder)" here, "standby" while another process holds it."""
        return f"up (holds {self.name})" if self.connected else f"standby ({self.name} held elsewhere)"

    async def start(self) -> None:
        """Start what every process runs, try for the lease once (connecting if it is ours), then keep going
        in the background. Raises only if this process's own start fails (the router retries it)."""
        if self._split:
            await self.platform.start()
        await self.step()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"lease-{self.name}")

    async def stop(self) -> None:
        """Disconnect and give the lease up at once (a standby takes over without waiting for it to run out)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._disconnect()
        grant, self.grant = self.grant, None
        if grant is not None:
            try:
                await self._lease.release(grant, now=self._clock.now())
            except Exception:
                log.warning(
                    "releasing the gateway lease %s failed: it runs out by itself", self.name, exc_info=True
                )
        if self._split:
            await self.platform.stop()

    async def step(self) -> None:
        """One round: take the lease if free (and connect), or renew it (and disconnect if it was lost)."""
        now = self._clock.now()
        if self.grant is None:
            grant = await self._lease.acquire(self.name, self.holder, now=now, ttl=self._ttl)
            if grant is None:
                return
            self.grant = grant
            log.info("holding the gateway lease %s (fence %d)", self.name, grant.fence)
            try:
                await self._connect()
            except BaseException:
                # let another process try: this one could not connect
                self.grant = None
                with contextlib.suppress(Exception):
                    await self._lease.release(grant, now=self._clock.now())
                raise
            return
        try:
            renewed = await self._lease.renew(self.grant, now=now, ttl=self._ttl)
        except Exception:
            # the database did not answer: still ours until it runs out, then assume it is someone else's
            if now >= self.grant.until:
                log.warning("gateway lease %s ran out unrenewed: disconnecting", self.name, exc_info=True)
                self.grant = None
                await self._disconnect()
            else:
                log.warning("renewing the gateway lease %s failed; retrying", self.name, exc_info=True)
            return
        if renewed is None:
            log.warning("gateway lease %s was taken over: disconnecting", self.name)
            self.grant = None
            await self._disconnect()
            return
        self.grant = renewed

    async def _run(self) -> None:
        failures = 0  # connections failed in a row: the next try waits longer (at most a minute)
        while True:
            if self.grant is not None:
                pause = self._ttl.total_seconds() / 3
            else:
                pause = min(self._retry_every * 2**failures, max(RETRY_MAX, self._retry_every))
            await self._sleep(pause)
            try:
                await self.step()
            except Exception:
                failures += 1
                log.exception("gateway lease %s: connecting failed; another process may take it", self.name)
            else:
                failures = 0

    async def _connect(self) -> None:
        if self.connected:
            return
        if isinstance(self.platform, SplitGateway):
            await self.platform.start_gateway()
        else:
            await self.platform.start()
        self.connected = True

    async def _disconnect(self) -> None:
        if not self.connected:
            return
        self.connected = False
        try:
            if isinstance(self.platform, SplitGateway):
                await self.platform.stop_gateway()
            else:
                await self.platform.stop()
        except Exception:
            log.warning("disconnecting the gateway %s failed", self.name, exc_info=True)
