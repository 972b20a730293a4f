from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta


class FakeTimer:
    def __init__(self, clock: FakeClock, at: datetime, callback: Callable[[], object]) -> None:
        self.at = at
        self.callback = callback
        self.cancelled = False
        self.fired = False
        self._clock = clock

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """A controllable core.ports.Clock: time moves only when a test says so.

    It is also the waker's ``Timers`` (bots/runtime/clock.py): a timer fires, synchronously and in time
    order, when :meth:`advance` or :meth:`set` moves the clock to its instant or past it."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 11, 25, 16, 0, tzinfo=UTC)
        self._timers: list[tuple[datetime, int, FakeTimer]] = []
        self._seq = itertools.count()

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        self.set(self._now + delta)
        return self._now

    def set(self, at: datetime) -> None:
        # step through the due timers in order, so a timer set by a callback for an instant before ``at``
        # fires too, and every callback sees the clock at its own instant
        while True:
            due = [t for t in self._timers if t[0] <= at and not t[2].cancelled]
            if not due:
                break
            when, seq, timer = min(due, key=lambda t: (t[0], t[1]))
            self._timers.remove((when, seq, timer))
            self._now = max(self._now, when)
            timer.fired = True
            timer.callback()
        self._timers = [t for t in self._timers if not t[2].cancelled]
        self._now = at

    def call_at(self, at: datetime, callback: Callable[[], object]) -> FakeTimer:
        timer = FakeTimer(self, at, callback)
        self._timers.append((at, next(self._seq), timer))
        return timer

    @property
    def timers(self) -> list[datetime]:
        """The instants of the timers still to fire, soonest first."""
        return sorted(t[0] for t in self._timers if not t[2].cancelled)


class RecordingWake:
    """core.ports.WakeUps that remembers the earliest armed time (tests run the engine themselves)."""

    def __init__(self) -> None:
        self.armed: list[datetime] = []

    def arm(self, at: datetime) -> None:
        self.armed.append(at)

    @property
    def earliest(self) -> datetime | None:
        return min(self.armed) if self.armed else None
