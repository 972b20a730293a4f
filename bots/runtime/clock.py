from __future__ import annotations

from datetime import UTC, datetime


class SystemClock:
    """The real clock (core.ports.Clock). Tests use tests.fakes.clock.FakeClock instead."""

    def now(self) -> datetime:
        return datetime.now(UTC)
