"""Every time limit of the delivery engine, derived in ONE place from two settings.

* ``lease`` (SPACES_LEASE_SECONDS, default 12 s): how long a claimed row stays a worker's without news from
  it. The worker renews its leases every ``lease / 3`` while it lives, so a lease can be short: a killed
  worker's rows are claimable again at most one lease after its last renewal.
* ``send_timeout`` (SPACES_SEND_TIMEOUT, default 5 s): the longest one platform call may take. The engine
  cancels a call at that point (a TransientError: retried with backoff), and the HTTP client's own
  timeouts (what the Telegram adapter gives python-telegram-bot) are set under it, so they usually answer
  first with a precise error.
* ``lease_margin`` = send_timeout + 1 s: a send starts only if the lease holds at least that much longer,
  so that its outcome is recorded before anyone else may take the row over (1 s to record it).

Why these relations: just before a renewal a lease still has ``lease - renew_every`` left; the margin must
fit in it (with a second to spare for a late renewal), or rows would be given back unsent between renewals.
Hence ``lease >= 1.5 × (send_timeout + 2)``: 10.5 s for the default 5 s timeout.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

RECORD_ALLOWANCE = 1.0  # seconds to record an outcome after the platform answered
RENEWAL_SLACK = 1.0  # seconds a renewal may run late without a send being given back


@dataclass(frozen=True, slots=True)
class Timings:
    lease_seconds: float = 12.0
    send_timeout: float = 5.0

    def __post_init__(self) -> None:
        if self.send_timeout <= 0:
            raise ValueError("SPACES_SEND_TIMEOUT must be more than 0 seconds")
        if self.lease_seconds < min_lease(self.send_timeout):
            raise ValueError(
                f"SPACES_LEASE_SECONDS must be at least 1.5 × (SPACES_SEND_TIMEOUT + 2) = "
                f"{min_lease(self.send_timeout):g} s with SPACES_SEND_TIMEOUT={self.send_timeout:g}: "
                "a send must fit in a lease between two renewals"
            )

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.lease_seconds)

    @property
    def renew_every(self) -> timedelta:
        return self.lease / 3

    @property
    def lease_margin(self) -> timedelta:
        return timedelta(seconds=self.send_timeout + RECORD_ALLOWANCE)

    # the HTTP client's timeouts, per phase; the engine's send_timeout bounds their sum
    @property
    def http_connect(self) -> float:
        return self.send_timeout / 2

    @property
    def http_write(self) -> float:
        return self.send_timeout / 2

    @property
    def http_read(self) -> float:
        return self.send_timeout

    @property
    def http_pool(self) -> float:
        return self.send_timeout / 2


def min_lease(send_timeout: float) -> float:
    """The shortest lease that leaves room for a send between two renewals (see the module docstring)."""
    return 1.5 * (send_timeout + RECORD_ALLOWANCE + RENEWAL_SLACK)
