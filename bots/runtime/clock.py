"""The real clock, and timers that fire at an instant of a Clock (the waker's only notion of time).

The waker arms timers with ``Timers.call_at(at, callback)`` in the core's time (aware UTC datetimes), never
with the event loop's seconds: tests hand it a controllable clock whose timers fire when the test moves
time (tests/fakes/clock.py), production hands it :class:`LoopTimers` on the system clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from core.ports import Clock

# A timer re-checks the clock at least this often (seconds): if the wall clock jumps (NTP, a suspended
# laptop), a wake-up is at most this late, and never early.
MAX_TIMER_STEP = 30.0


class SystemClock:
    """The real clock (core.ports.Clock). Tests use tests.fakes.clock.FakeClock instead."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class Timer(Protocol):
    def cancel(self) -> None:
        """Never fire (safe after it fired, and twice)."""
        ...


@runtime_checkable
class Timers(Protocol):
    def call_at(self, at: datetime, callback: Callable[[], object]) -> Timer:
        """Call ``callback`` (synchronously, on the service's event loop) once the clock reads ``at`` or
        later. Must be called from the loop."""
        ...


class LoopTimers:
    """Timers on the running event loop, for the instants of ``clock`` (the system clock in production)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def call_at(self, at: datetime, callback: Callable[[], object]) -> Timer:
        return _LoopTimer(self._clock, at, callback)


class _LoopTimer:
    def __init__(self, clock: Clock, at: datetime, callback: Callable[[], object]) -> None:
        self._clock = clock
        self._at = at
        self._callback = callback
        self._loop = asyncio.get_running_loop()
        self._handle: asyncio.TimerHandle | None = None
        self._arm()

    def _arm(self) -> None:
        delay = (self._at - self._clock.now()).total_seconds()
        self._handle = self._loop.call_later(min(max(0.0, delay), MAX_TIMER_STEP), self._fire)

    def _fire(self) -> None:
        if self._clock.now() < self._at:  # a long wait in steps, or the wall clock moved back: not yet
            self._arm()
            return
        self._handle = None
        self._callback()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
