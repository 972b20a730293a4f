from __future__ import annotations

from datetime import UTC, datetime, timedelta


class FakeClock:
    """A controllable core.ports.Clock: time moves only when a test says so."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 11, 25, 16, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        self._now += delta
        return self._now

    def set(self, at: datetime) -> None:
        self._now = at


class RecordingWake:
    """core.ports.WakeUps that remembers the earliest armed time (tests run the engine themselves)."""

    def __init__(self) -> None:
        self.armed: list[datetime] = []

    def arm(self, at: datetime) -> None:
        self.armed.append(at)

    @property
    def earliest(self) -> datetime | None:
        return min(self.armed) if self.armed else None
