"""bots/runtime/waker.py: the Waker only wakes the delivery engine — one run at a time, none lost.

Time is a FakeClock whose timers fire when the test moves it (the waker takes the clock's timers): "the wake
fires at its instant, not before" is shown by moving the clock, never by sleeping. The engine run is a fake
whose progress the test gates with asyncio.Events, so "a kick during a run" and "no two runs overlap" are
shown step by step too. One test checks the production timers (LoopTimers) on the real event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest

from bots.runtime.clock import LoopTimers, SystemClock
from bots.runtime.waker import Waker
from tests.fakes.clock import FakeClock

SWEEP = timedelta(seconds=15)
NO_SWEEP = timedelta(days=7)  # for the tests where the sweep must not run: every run comes from arm/kick
RENEW = timedelta(seconds=4)
S = timedelta(seconds=1)


class FakeRun:
    """The engine run (or a periodic job). Records every call, and how many were in flight at once.

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
        await asyncio.wait_for(self.started.wait(), timeout=5)
        self.started.clear()


@pytest.fixture
def run() -> FakeRun:
    return FakeRun()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def make_waker(run: FakeRun, clock: FakeClock) -> AsyncIterator[Callable[..., Waker]]:
    """Build wakers on the fake clock's timers; stopped at the end of the test, whatever happens."""
    made: list[Waker] = []

    def make(**kw: object) -> Waker:
        kw.setdefault("sweep_every", NO_SWEEP)
        waker = Waker(run, clock, timers=clock, **kw)  # type: ignore[arg-type]
        made.append(waker)
        return waker

    yield make
    for waker in made:
        await waker.stop()


async def started(waker: Waker, run: FakeRun) -> Waker:
    """Start the waker and let its boot catch-up run finish."""
    await waker.start()
    await asyncio.wait_for(waker.idle(), timeout=5)
    assert run.calls == 1
    return waker


async def settled(waker: Waker) -> None:
    """Let the runs that the last clock move started finish (an explicit signal: the run task is done)."""
    await asyncio.sleep(0)  # a timer's callback created the task: let it start
    await asyncio.wait_for(waker.idle(), timeout=5)


# ------------------------------------------------------------------------------------------ boot


async def test_start_performs_a_catch_up_run(
    run: FakeRun, clock: FakeClock, make_waker: Callable[..., Waker]
) -> None:
    waker = make_waker()
    await waker.start()
    await asyncio.wait_for(waker.idle(), timeout=5)
    assert run.calls == 1 == waker.runs
    assert clock.timers == [clock.now() + NO_SWEEP]  # the safety sweep is in place, nothing armed yet
    assert waker.armed_at is None


# ------------------------------------------------------------------------------------------ arm


async def test_an_armed_wake_fires_at_its_instant_and_not_before(
    run: FakeRun, clock: FakeClock, make_waker: Callable[..., Waker]
) -> None:
    waker = await started(make_waker(), run)
    at = clock.now() + 10 * S
    waker.arm(at)
    clock.advance(10 * S - timedelta(microseconds=1))
    await settled(waker)
    assert run.calls == 1 and waker.armed_at == at  # one microsecond early: nothing
    clock.advance(timedelta(microseconds=1))
    await settled(waker)
    assert run.calls == 2 and waker.armed_at is None
    # the fired wake does not block the next one (it is no longer "an earlier armed wake")
    waker.arm(clock.now() + 5 * S)
    clock.advance(5 * S)
    await settled(waker)
    assert run.calls == 3


async def test_arm_never_postpones_an_earlier_armed_wake(
    run: FakeRun, clock: FakeClock, make_waker: Callable[..., Waker]
) -> None:
    waker = await started(make_waker(), run)
    now = clock.now()
    waker.arm(now + timedelta(hours=2))
    assert waker.armed_at == now + timedelta(hours=2)
    waker.arm(now + timedelta(hours=3))  # later: ignored
    waker.arm(now + timedelta(hours=2))  # the same: ignored
    assert waker.armed_at == now + timedelta(hours=2)
    waker.arm(now + timedelta(hours=1))  # earlier: moves the wake forward
    assert waker.armed_at == now + timedelta(hours=1)
    await settled(waker)
    assert run.calls == 1  # arming a future time runs nothing now
    clock.advance(timedelta(hours=1))
    await settled(waker)
    assert run.calls == 2
    clock.advance(timedelta(hours=1))  # the replaced wake is gone: no second run for it
    await settled(waker)
    assert run.calls == 2


@pytest.mark.parametrize("ago", [timedelta(0), timedelta(minutes=5)])
async def test_arm_at_or_before_now_kicks_immediately(
    run: FakeRun, clock: FakeClock, make_waker: Callable[..., Waker], ago: timedelta
) -> None:
    waker = await started(make_waker(), run)
    waker.arm(clock.now() - ago)
    await asyncio.wait_for(waker.idle(), timeout=5)
    assert run.calls == 2
    assert waker.armed_at is None  # no timer for a time already reached


async def test_a_wake_armed_before_start_fires_after_it(
    run: FakeRun, clock: FakeClock, make_waker: Callable[..., Waker]
) -> None:
    waker = make_waker()
    waker.arm(clock.now() + 3 * S)  # e.g. Telegram polling started first and scheduled something
    await started(waker, run)
    assert waker.armed_at == clock.now() + 3 * S
    clock.advance(3 * S)
    await settled(waker)
    assert run.calls == 2


async def test_a_wake_armed_while_the_previous_one_fires_is_kept(
    run: FakeRun, clock: FakeClock, make_waker: Callable[..., Waker]
) -> None:
    waker = await started(make_waker(), run)
    second = clock.now() + 10 * S
    run.hold()
    waker.arm(clock.now() + 5 * S)
    clock.advance(5 * S)
    await run.wait_started()  # the first wake is running; meanwhile something arms the next one
    waker.arm(second)
    waker.arm(clock.now() + timedelta(minutes=10))  # later than `second`: must not postpone it
    run.release()
    await settled(waker)
    assert run.calls == 2 and waker.armed_at == second
    clock.set(second)
    await settled(waker)
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
    assert run.calls == 1 and run.active == 1  # not started in parallel
    run.release()  # the first run ends at the next loop step ...
    run.hold()  # ... and the second, which can only start after it, is held in turn
    await run.wait_started()
    assert run.calls == 2
    run.release()
    await asyncio.wait_for(waker.idle(), timeout=5)
    assert run.calls == 2  # exactly one more: not lost, not repeated
    assert run.max_active == 1  # never two runs at once
    assert waker.runs == 2


async def test_kick_when_idle_starts_a_new_run(run: FakeRun, make_waker: Callable[..., Waker]) -> None:
    waker = make_waker()
    waker.kick()
    await asyncio.wait_for(waker.idle(), timeout=5)
    waker.kick()
    await asyncio.wait_for(waker.idle(), timeout=5)
    assert run.calls == 2
    assert run.max_active == 1


async def test_a_failing_run_is_logged_and_the_next_kick_still_runs(
    run: FakeRun, make_waker: Callable[..., Waker], caplog: pytest.LogCaptureFixture
) -> None:
    waker = make_waker()
    run.fail_next = 1
    with caplog.at_level(logging.ERROR, logger="bots.runtime.waker"):
        waker.kick()
        await asyncio.wait_for(waker.idle(), timeout=5)
    failures = [r for r in caplog.records if r.name == "bots.runtime.waker"]
    assert [r.getMessage() for r in failures] == ["delivery run failed"]
    assert failures[0].exc_info is not None and "database is away" in str(failures[0].exc_info[1])
    waker.kick()
    await asyncio.wait_for(waker.idle(), timeout=5)
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
        await asyncio.wait_for(waker.idle(), timeout=5)
    assert run.calls == 2
    assert run.max_active == 1


# ------------------------------------------------------------------------------------------ periodic jobs


async def test_the_sweep_runs_its_hook_then_the_engine_every_interval(
    run: FakeRun, clock: FakeClock, make_waker: Callable[..., Waker]
) -> None:
    beats: list[datetime] = []

    async def heartbeat() -> None:
        beats.append(clock.now())

    waker = await started(make_waker(sweep_every=SWEEP, on_sweep=heartbeat), run)
    t0 = clock.now()
    clock.advance(SWEEP - S)
    await settled(waker)
    assert beats == [] and run.calls == 1
    for i in (1, 2, 3):
        clock.advance(SWEEP if i > 1 else S)
        await settled(waker)
        assert beats[-1] == t0 + i * SWEEP and run.calls == 1 + i


async def test_leases_are_renewed_every_interval_even_during_a_long_run(
    run: FakeRun, clock: FakeClock, make_waker: Callable[..., Waker]
) -> None:
    renewals: list[datetime] = []
    renewed = asyncio.Event()

    async def renew() -> None:
        renewals.append(clock.now())
        renewed.set()

    waker = await started(make_waker(renew_every=RENEW, on_renew=renew), run)
    t0 = clock.now()
    run.hold()
    waker.kick()
    await run.wait_started()  # a long fan-out is running
    for i in (1, 2, 3):
        renewed.clear()
        clock.advance(RENEW)
        await asyncio.wait_for(renewed.wait(), timeout=5)
        assert renewals[-1] == t0 + i * RENEW
    run.release()
    await settled(waker)
    assert len(renewals) == 3


async def test_a_slow_periodic_job_is_never_run_twice_at_once(
    run: FakeRun, clock: FakeClock, make_waker: Callable[..., Waker]
) -> None:
    gate = asyncio.Event()
    active: list[int] = [0, 0]  # now, most

    async def slow_renew() -> None:
        active[0] += 1
        active[1] = max(active)
        await gate.wait()
        active[0] -= 1

    waker = await started(make_waker(renew_every=RENEW, on_renew=slow_renew), run)
    for _ in range(3):  # three intervals pass while the first renewal hangs (a slow database)
        clock.advance(RENEW)
        await asyncio.sleep(0)
    assert active == [1, 1] and waker.job_runs("renew") == 1
    gate.set()
    await settled(waker)  # the slow renewal ended
    clock.advance(RENEW)
    await settled(waker)
    assert active[1] == 1 and waker.job_runs("renew") == 2


# ------------------------------------------------------------------------------------------ stop


async def test_stop_cancels_an_in_flight_run_and_is_idempotent(
    run: FakeRun, clock: FakeClock, make_waker: Callable[..., Waker]
) -> None:
    waker = make_waker()
    run.hold()  # the boot catch-up run never finishes on its own
    await waker.start()
    await run.wait_started()
    await asyncio.wait_for(waker.stop(), timeout=5)
    assert run.cancelled == 1 and run.active == 0
    assert clock.timers == []  # the sweep's timer is gone too
    await asyncio.wait_for(waker.stop(), timeout=5)  # again: nothing to do, no error
    assert run.calls == 1


async def test_stop_lets_the_run_in_progress_finish_within_the_grace_and_keeps_renewing(
    run: FakeRun, clock: FakeClock, make_waker: Callable[..., Waker]
) -> None:
    renewed = asyncio.Event()

    async def renew() -> None:
        renewed.set()

    waker = await started(make_waker(renew_every=RENEW, on_renew=renew), run)
    run.hold()
    waker.kick()
    await run.wait_started()
    stopping = asyncio.create_task(waker.stop(grace=60))
    await asyncio.sleep(0)
    clock.advance(RENEW)  # the rows in hand are still being sent: their leases must hold
    await asyncio.wait_for(renewed.wait(), timeout=5)
    run.release()
    await asyncio.wait_for(stopping, timeout=5)
    assert run.cancelled == 0 and run.calls == 2  # finished, not cancelled
    assert clock.timers == []


async def test_stop_before_start_is_harmless(make_waker: Callable[..., Waker]) -> None:
    waker = make_waker()
    await waker.stop()
    await waker.stop()


async def test_no_run_starts_after_stop(
    run: FakeRun, clock: FakeClock, make_waker: Callable[..., Waker]
) -> None:
    waker = await started(make_waker(), run)
    waker.arm(clock.now() + S)
    await waker.stop()
    waker.arm(clock.now())
    waker.kick()
    clock.advance(timedelta(hours=1))  # neither the armed wake nor the sweep fires any more
    await settled(waker)
    assert run.calls == 1 and clock.timers == []


# ------------------------------------------------------------------------------------------ real timers


async def test_loop_timers_fire_on_the_system_clock_and_can_be_cancelled() -> None:
    """The production Timers: the event loop's call_later, for an instant of the system clock."""
    clock = SystemClock()
    timers = LoopTimers(clock)
    fired = asyncio.Event()
    cancelled_fired: list[bool] = []
    at = clock.now() + timedelta(milliseconds=20)
    timers.call_at(at, fired.set)
    timers.call_at(at, lambda: cancelled_fired.append(True)).cancel()
    await asyncio.wait_for(fired.wait(), timeout=5)
    assert datetime.now(UTC) >= at  # never early
    assert cancelled_fired == []
