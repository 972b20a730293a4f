"""Wakes the delivery engine: it only ever holds the NEXT due time, plus two periodic jobs.

One "wake" timer, re-armed to the earliest time something becomes claimable (a pending row's
due time, or a claimed row's lease end — a dead worker's rows come back then), an interval sweep, and a
catch-up at boot. The database is the truth; losing this process loses nothing but a wake-up, which the
sweep of any worker (or the boot catch-up) makes up for. A third job renews the leases of the rows this
worker holds, so that they can be short: a dead worker's rows come back within one lease.

Time is the injected clock's and timers are injected too (``Timers``: the event loop on the system clock
in production, a controllable clock in tests). APScheduler 3 was used here before; it reads the system
time internally, so its triggers cannot run on a controllable clock, and the waker needs only one date
timer and two intervals.

A kick that arrives while the engine runs must not be lost, nor start a second run beside the first: the
engine runs in one task, and a kick meanwhile makes exactly one more run after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from bots.runtime.clock import LoopTimers, Timer, Timers
from core.ports import Clock

log = logging.getLogger(__name__)


async def _finish(task: asyncio.Task[None] | None, grace: float) -> None:
    """Let a running task finish within ``grace`` seconds, then cancel it; never raises."""
    if task is None or task.done():
        return
    if grace > 0:
        with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
            await asyncio.wait_for(asyncio.shield(task), grace)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


class _Every:
    """A periodic job: ``job`` every ``interval`` from start(); a run still going when the next is due
    makes that one skip (never two at once), and a failing run is logged and the next one still runs."""

    def __init__(
        self,
        name: str,
        interval: timedelta,
        job: Callable[[], Awaitable[object]],
        clock: Clock,
        timers: Timers,
    ) -> None:
        self.name = name
        self._interval = interval
        self._job = job
        self._clock = clock
        self._timers = timers
        self._timer: Timer | None = None
        self._task: asyncio.Task[None] | None = None
        self.runs = 0

    def start(self) -> None:
        self._timer = self._timers.call_at(self._clock.now() + self._interval, self._fire)

    def _fire(self) -> None:
        self.start()  # the next one first: a slow run never shifts the schedule
        if self._task is not None and not self._task.done():
            return
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"waker-{self.name}")

    async def _run(self) -> None:
        self.runs += 1
        try:
            await self._job()
        except Exception:
            log.exception("%s failed", self.name)

    async def idle(self) -> None:
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def stop(self, grace: float = 0.0) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        task, self._task = self._task, None
        await _finish(task, grace)


class Waker:
    """Implements core.ports.WakeUps on the service's event loop."""

    def __init__(
        self,
        run: Callable[[], Awaitable[object]],
        clock: Clock,
        *,
        timers: Timers | None = None,
        sweep_every: timedelta = timedelta(seconds=15),
        on_sweep: Callable[[], Awaitable[object]] | None = None,
        renew_every: timedelta | None = None,
        on_renew: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self._run = run
        self._clock = clock
        self._timers: Timers = timers if timers is not None else LoopTimers(clock)
        self._on_sweep = on_sweep
        self._jobs = [_Every("sweep", sweep_every, self._sweep, clock, self._timers)]
        if renew_every is not None and on_renew is not None:
            # lease renewal is a job of its own: it must go on while a long engine run holds the rows
            self._jobs.append(_Every("renew", renew_every, on_renew, clock, self._timers))
        self._started = False
        self._stopped = False
        self._early: datetime | None = None  # armed before start(): scheduled by start()
        self._wake: Timer | None = None
        self._wake_at: datetime | None = None
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self.runs = 0

    @property
    def armed_at(self) -> datetime | None:
        """The pending wake-up, if any (tests and the doctor)."""
        return self._wake_at

    def job_runs(self, name: str) -> int:
        return next((j.runs for j in self._jobs if j.name == name), 0)

    async def start(self) -> None:
        if self._started or self._stopped:
            return
        self._started = True
        for job in self._jobs:
            job.start()
        if self._early is not None:
            early, self._early = self._early, None
            self.arm(early)
        self.kick()  # catch-up at boot: whatever came due while we were down

    async def stop(self, grace: float = 0.0) -> None:
        """No new runs from now on (late arms or kicks are ignored); give the run in progress ``grace``
        seconds to finish its batch (its sends are recorded, not repeated later), then cancel it. The lease
        renewal goes on during that grace: the rows in hand must not be taken over while they are sent."""
        self._stopped = True
        if self._wake is not None:
            self._wake.cancel()
            self._wake, self._wake_at = None, None
        for job in self._jobs:
            if job.name != "renew":
                await job.stop()
        task, self._task = self._task, None
        await _finish(task, grace)
        for job in self._jobs:
            await job.stop()

    def arm(self, at: datetime) -> None:
        """core.ports.WakeUps.arm: never postpones an earlier armed wake."""
        if self._stopped:
            return
        if at <= self._clock.now():
            self.kick()
            return
        if not self._started:
            self._early = at if self._early is None else min(self._early, at)
            return
        if self._wake_at is not None and self._wake_at <= at:
            return  # an earlier (or the same) wake is armed and has not fired: it stays
        if self._wake is not None:
            self._wake.cancel()
        self._wake_at = at
        self._wake = self._timers.call_at(at, self._fire)

    def kick(self) -> None:
        """Run the engine now, or once more right after the run in progress."""
        if self._stopped:
            return
        if self._task is not None and not self._task.done():
            self._again = True
            return
        try:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="waker-run")
        except RuntimeError:  # no loop (called from a test's sync code): the next sweep will run it
            self._again = True

    async def idle(self) -> None:
        """Wait until no run is in progress or requested, nor any periodic job (tests)."""
        while True:
            for job in self._jobs:
                await job.idle()
            if self._task is None or self._task.done():
                return
            await asyncio.shield(self._task)

    def _fire(self) -> None:
        self._wake, self._wake_at = None, None
        self.kick()

    async def _sweep(self) -> None:
        if self._on_sweep is not None:
            try:
                await self._on_sweep()
            except Exception:
                log.exception("sweep hook failed")
        self.kick()

    async def _loop(self) -> None:
        while True:
            self._again = False
            try:
                self.runs += 1
                await self._run()
            except Exception:  # the database may be briefly away; the sweep retries
                log.exception("delivery run failed")
            if not self._again:
                return
