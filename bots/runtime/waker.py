"""Wakes the delivery engine: APScheduler (memory job store) only ever holds the NEXT due time.

The design (docs/architecture.md, Flow B): one date job "wake", re-armed to the earliest pending due_at, plus an interval sweep and a
catch-up at boot. The database is the truth; losing this process loses nothing but a wake-up, which the
sweep of any worker (or the boot catch-up) makes up for.

APScheduler with max_instances=1 *skips* a run that fires while the previous one is still going. A wake
armed during a long fan-out must not be lost that way, so the job only calls :meth:`Waker.kick`, which runs
the engine in one task and, if kicked again meanwhile, runs it once more when it finishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from core.ports import Clock

log = logging.getLogger(__name__)

WAKE_JOB = "wake"
SWEEP_JOB = "sweep"


class Waker:
    """Implements core.ports.WakeUps on the service's event loop."""

    def __init__(
        self,
        run: Callable[[], Awaitable[object]],
        clock: Clock,
        *,
        sweep_every: timedelta = timedelta(seconds=15),
        on_sweep: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self._run = run
        self._clock = clock
        self._sweep_every = sweep_every
        self._on_sweep = on_sweep
        self._scheduler: AsyncIOScheduler | None = None
        self._early: datetime | None = None  # armed before start(): scheduled by start()
        self._stopped = False
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self.runs = 0

    async def start(self) -> None:
        if self._scheduler is not None or self._stopped:
            return
        scheduler = AsyncIOScheduler(
            job_defaults={"misfire_grace_time": None, "coalesce": True, "max_instances": 1}
        )
        scheduler.add_job(
            self._sweep, IntervalTrigger(seconds=self._sweep_every.total_seconds()), id=SWEEP_JOB
        )
        scheduler.start()
        self._scheduler = scheduler
        if self._early is not None:
            early, self._early = self._early, None
            self.arm(early)
        self.kick()  # catch-up at boot: whatever came due while we were down

    async def stop(self, grace: float = 0.0) -> None:
        """No new runs from now on (late arms or kicks are ignored); give the run in progress ``grace``
        seconds to finish its batch (its sends are recorded, not repeated later), then cancel it."""
        self._stopped = True
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        task, self._task = self._task, None
        if task is None or task.done():
            return
        if grace > 0:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(task), grace)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    def arm(self, at: datetime) -> None:
        """core.ports.WakeUps.arm: never postpones an earlier armed wake."""
        if self._stopped:
            return
        if at <= self._clock.now():
            self.kick()
            return
        if self._scheduler is None:
            self._early = at if self._early is None else min(self._early, at)
            return
        # the scheduler's own record of the pending wake is the truth: a wake that is due but has not fired
        # yet (a busy loop) still counts as armed, and must not be pushed back
        job = self._scheduler.get_job(WAKE_JOB)
        if job is not None and job.next_run_time is not None and job.next_run_time <= at:
            return
        self._scheduler.add_job(self._fire, DateTrigger(run_date=at), id=WAKE_JOB, replace_existing=True)

    def kick(self) -> None:
        """Run the engine now, or once more right after the run in progress."""
        if self._stopped:
            return
        if self._task is not None and not self._task.done():
            self._again = True
            return
        try:
            self._task = asyncio.get_running_loop().create_task(self._loop())
        except RuntimeError:  # no loop (called from a test's sync code): the next sweep will run it
            self._again = True

    async def idle(self) -> None:
        """Wait until no run is in progress or requested (tests)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def _fire(self) -> None:
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
