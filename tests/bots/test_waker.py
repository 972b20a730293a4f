"""bots/runtime/waker.py: the Waker only wakes the delivery engine — one run at a time, none lost.

The engine run is a fake whose progress the test gates with asyncio.Events, so "a kick during a run" and
"no two runs overlap" are shown step by step, not by timing. Where APScheduler's real-time date trigger is
involved, the waker gets a clock that returns real time and the test waits a few tenths of a second.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest
from apscheduler.events import EVENT_JOB_SUBMITTED, JobSubmissionEvent

from bots.runtime.waker import SWEEP_JOB, WAKE_JOB, Waker
from core.ports import Clock
from tests.fakes.clock import FakeClock

# Long enough that the sweep never fires during a test: every run below comes from start(), arm() or kick().
NO_SWEEP = timedelta(hours=1)


class RealClock:
    """core.ports.Clock on wall time: for the tests where APScheduler's date trigger must actually fire."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FakeRun:
    """The engine run. Records every call, and how many were in flight at once.

    ``hold()`` makes the next runs wait until ``release()``; ``fail_next`` makes runs raise.
    """

    def __init__(self) -> None:
        self.calls = 0
        self.active = 0
        self.max_active = 0
        self.cancelled = 0
        self.fail_next = 0
        self.started = asyncio.Event()
        self._gate: asyncio.Event | None = None

    def hold(self) -> None:
        self._gate = asyncio.Event()

    def release(self) -> None:
        gate, self._gate = self._gate, None
        if gate is not None:
            gate.set()

    async def __call__(self) -> int:
        self.calls += 1
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        self.started.set()
        try:
            if self._gate is not None:
                await self._gate.wait()
            if self.fail_next:
                self.fail_next -= 1
                raise RuntimeError("database is away")
            return 0
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.active -= 1

    async def wait_started(self) -> None:
        await asyncio.wait_for(self.started.wait(), timeout=1)
        self.started.clear()


@pytest.fixture
def run() -> FakeRun:
    return FakeRun()


@pytest.fixture
async def make_waker(run: FakeRun) -> AsyncIterator[Callable[..., Waker]]:
    """Build wakers that are stopped at the end of the test, whatever happens."""
    made: list[Waker] = []

    def make(clock: Clock | None = None) -> Waker:
        waker = Waker(run, clock or FakeClock(datetime.now(UTC)), sweep_every=NO_SWEEP)
        made.append(waker)
        return waker

    yield make
    for waker in made:
        await waker.stop()


def wake_job_at(waker: Waker) -> datetime | None:
    scheduler = waker._scheduler
    assert scheduler is not None
    job = scheduler.get_job(WAKE_JOB)
    return None if job is None else job.next_run_time


async def started(waker: Waker, run: FakeRun) -> Waker:
    """Start the waker and let its boot catch-up run finish."""
    await waker.start()
    await asyncio.wait_for(waker.idle(), timeout=1)
    assert run.calls == 1
    return waker


# ------------------------------------------------------------------------------------------ boot


async def test_start_performs_a_catch_up_run(run: FakeRun, make_waker: Callable[..., Waker]) -> None:
    waker = make_waker()
    await waker.start()
    await asyncio.wait_for(waker.idle(), timeout=1)
    assert run.calls == 1 == waker.runs
    scheduler = waker._scheduler
    assert scheduler is not None and scheduler.running
    assert scheduler.get_job(SWEEP_JOB) is not None  # the safety sweep is in place
    assert scheduler.get_job(WAKE_JOB) is None  # nothing armed yet


# ------------------------------------------------------------------------------------------ arm


async def test_arm_never_postpones_an_earlier_armed_wake(
    run: FakeRun, make_waker: Callable[..., Waker]
) -> None:
    clock = FakeClock(datetime.now(UTC))
    waker = await started(make_waker(clock), run)
    now = clock.now()
    waker.arm(now + timedelta(hours=2))
    assert wake_job_at(waker) == now + timedelta(hours=2)
    waker.arm(now + timedelta(hours=3))  # later: ignored
    waker.arm(now + timedelta(hours=2))  # the same: ignored
    assert wake_job_at(waker) == now + timedelta(hours=2)
    waker.arm(now + timedelta(hours=1))  # earlier: moves the wake forward
    assert wake_job_at(waker) == now + timedelta(hours=1)
    await asyncio.sleep(0)
    assert run.calls == 1  # arming a future time runs nothing now


@pytest.mark.parametrize("ago", [timedelta(0), timedelta(minutes=5)])
async def test_arm_at_or_before_now_kicks_immediately(
    run: FakeRun, make_waker: Callable[..., Waker], ago: timedelta
) -> None:
    clock = FakeClock(datetime.now(UTC))
    waker = await started(make_waker(clock), run)
    waker.arm(clock.now() - ago)
    await asyncio.wait_for(waker.idle(), timeout=1)
    assert run.calls == 2
    assert wake_job_at(waker) is None  # no date job for a time already reached


async def test_armed_wake_fires_and_a_later_arm_after_it_is_scheduled_again(
    run: FakeRun, make_waker: Callable[..., Waker]
) -> None:
    clock = RealClock()
    waker = await started(make_waker(clock), run)
    waker.arm(clock.now() + timedelta(seconds=0.05))
    await asyncio.sleep(0.2)
    await asyncio.wait_for(waker.idle(), timeout=1)
    assert run.calls == 2
    assert wake_job_at(waker) is None  # the date job is gone once it fired
    # the fired wake must not block the next one (it is no longer "an earlier armed wake")
    waker.arm(clock.now() + timedelta(seconds=0.05))
    await asyncio.sleep(0.2)
    await asyncio.wait_for(waker.idle(), timeout=1)
    assert run.calls == 3


# ------------------------------------------------------------------------------------------ kick


async def test_kick_during_a_run_runs_exactly_once_more_afterwards(
    run: FakeRun, make_waker: Callable[..., Waker]
) -> None:
    waker = make_waker()
    run.hold()
    waker.kick()
    await run.wait_started()
    for _ in range(3):  # several kicks during one run coalesce into one more run
        waker.kick()
    await asyncio.sleep(0.01)
    assert run.calls == 1  # not started in parallel
    run.release()  # the first run ends at the next loop step ...
    run.hold()  # ... and the second, which can only start after it, is held in turn
    await run.wait_started()
    assert run.calls == 2
    run.release()
    await asyncio.wait_for(waker.idle(), timeout=1)
    assert run.calls == 2  # exactly one more: not lost, not repeated
    assert run.max_active == 1  # never two runs at once
    assert waker.runs == 2


async def test_kick_when_idle_starts_a_new_run(run: FakeRun, make_waker: Callable[..., Waker]) -> None:
    waker = make_waker()
    waker.kick()
    await asyncio.wait_for(waker.idle(), timeout=1)
    waker.kick()
    await asyncio.wait_for(waker.idle(), timeout=1)
    assert run.calls == 2
    assert run.max_active == 1


async def test_a_failing_run_is_logged_and_the_next_kick_still_runs(
    run: FakeRun, make_waker: Callable[..., Waker], caplog: pytest.LogCaptureFixture
) -> None:
    waker = make_waker()
    run.fail_next = 1
    with caplog.at_level(logging.ERROR, logger="bots.runtime.waker"):
        waker.kick()
        await asyncio.wait_for(waker.idle(), timeout=1)
    failures = [r for r in caplog.records if r.name == "bots.runtime.waker"]
    assert [r.getMessage() for r in failures] == ["delivery run failed"]
    assert failures[0].exc_info is not None and "database is away" in str(failures[0].exc_info[1])
    waker.kick()
    await asyncio.wait_for(waker.idle(), timeout=1)
    assert run.calls == 2


async def test_a_failing_run_does_not_lose_a_kick_made_during_it(
    run: FakeRun, make_waker: Callable[..., Waker], caplog: pytest.LogCaptureFixture
) -> None:
    waker = make_waker()
    run.fail_next = 1
    run.hold()
    with caplog.at_level(logging.ERROR, logger="bots.runtime.waker"):
        waker.kick()
        await run.wait_started()
        waker.kick()
        run.release()
        await asyncio.wait_for(waker.idle(), timeout=1)
    assert run.calls == 2
    assert run.max_active == 1


# ------------------------------------------------------------------------------------------ stop


async def test_stop_cancels_an_in_flight_run_and_is_idempotent(
    run: FakeRun, make_waker: Callable[..., Waker]
) -> None:
    waker = make_waker()
    run.hold()  # the boot catch-up run never finishes on its own
    await waker.start()
    await run.wait_started()
    await asyncio.wait_for(waker.stop(), timeout=1)
    assert run.cancelled == 1 and run.active == 0
    assert waker._scheduler is None and waker._task is None
    await asyncio.wait_for(waker.stop(), timeout=1)  # again: nothing to do, no error
    assert run.calls == 1


async def test_stop_before_start_is_harmless(make_waker: Callable[..., Waker]) -> None:
    waker = make_waker()
    await waker.stop()
    await waker.stop()


async def test_stop_removes_armed_wakes(run: FakeRun, make_waker: Callable[..., Waker]) -> None:
    clock = RealClock()
    waker = await started(make_waker(clock), run)
    waker.arm(clock.now() + timedelta(seconds=0.05))
    await waker.stop()
    await asyncio.sleep(0.1)
    assert run.calls == 1


# ------------------------------------------------------------------------------------------ regressions


async def test_a_wake_armed_before_start_still_fires(run: FakeRun, make_waker: Callable[..., Waker]) -> None:
    clock = RealClock()
    waker = make_waker(clock)
    waker.arm(clock.now() + timedelta(seconds=0.1))
    await started(waker, run)
    await asyncio.sleep(0.2)
    await asyncio.wait_for(waker.idle(), timeout=1)
    assert run.calls == 2


async def test_arm_later_does_not_replace_a_due_wake_that_has_not_fired_yet(
    run: FakeRun, make_waker: Callable[..., Waker]
) -> None:
    clock = RealClock()
    waker = await started(make_waker(clock), run)
    waker.arm(clock.now() + timedelta(seconds=0.03))
    time.sleep(0.06)  # noqa: ASYNC251 — on purpose: the loop is busy while the wake comes due
    waker.arm(clock.now() + timedelta(minutes=10))
    await asyncio.sleep(0.15)
    await asyncio.wait_for(waker.idle(), timeout=1)
    assert run.calls >= 2  # the due wake ran (a fix may also kick at once: not lost is what matters)


async def test_a_wake_armed_while_the_previous_one_fires_is_kept(
    run: FakeRun, make_waker: Callable[..., Waker]
) -> None:
    clock = RealClock()
    waker = await started(make_waker(clock), run)
    second = clock.now() + timedelta(seconds=0.2)

    armed: list[datetime] = []

    def arm_second(event: JobSubmissionEvent) -> None:
        # runs inside APScheduler's _process_jobs, after the first wake was submitted, before _fire() runs
        if event.job_id == WAKE_JOB and not armed:
            armed.append(second)
            waker.arm(second)

    assert waker._scheduler is not None
    waker._scheduler.add_listener(arm_second, EVENT_JOB_SUBMITTED)
    waker.arm(clock.now() + timedelta(seconds=0.05))
    await asyncio.sleep(0.12)  # the first wake fired and ran
    await asyncio.wait_for(waker.idle(), timeout=1)
    assert run.calls == 2
    waker.arm(clock.now() + timedelta(minutes=10))  # later than `second`: must not postpone it
    await asyncio.sleep(0.2)
    await asyncio.wait_for(waker.idle(), timeout=1)
    assert run.calls == 3


async def test_no_run_starts_after_stop(run: FakeRun, make_waker: Callable[..., Waker]) -> None:
    clock = FakeClock(datetime.now(UTC))
    waker = await started(make_waker(clock), run)
    await waker.stop()
    waker.arm(clock.now())
    waker.kick()
    await asyncio.sleep(0.01)
    assert run.calls == 1
