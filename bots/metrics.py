"""Prometheus metrics: the delivery engine's observer plus outbox gauges refreshed on scrape.

Everything lives in a per-service ``CollectorRegistry`` (never the global one): a test can build many services
in one process, and ``/metrics`` shows exactly this service's figures.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

log = logging.getLogger(__name__)

# lateness: what users feel. Sub-second is the waker's promise; minutes mean a restart or a backlog.
LATENESS_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600)
BATCH_BUCKETS = (0, 1, 2, 5, 10, 25, 50, 100, 250, 500)
SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    """Implements core.services.deliveries.EngineObserver. Every hook is cheap and never raises."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.deliveries = Counter(
            "spaces_deliveries",
            "Outbox rows settled, by platform, kind and outcome (sent, skipped, fallback, "
            "dead, pending = retry).",
            ["platform", "kind", "outcome"],
            registry=r,
        )
        self.lateness = Histogram(
            "spaces_delivery_lateness_seconds",
            "Send time minus due time of sent deliveries.",
            ["platform"],
            buckets=LATENESS_BUCKETS,
            registry=r,
        )
        self.claim_batch = Histogram(
            "spaces_claim_batch_size",
            "Rows returned by one claim.",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.claim_seconds = Histogram(
            "spaces_claim_duration_seconds",
            "Duration of one claim transaction.",
            buckets=SECONDS_BUCKETS,
            registry=r,
        )
        self.budget_wait = Histogram(
            "spaces_budget_wait_seconds",
            "Time a send waited for its platform's budget.",
            ["platform"],
            buckets=SECONDS_BUCKETS,
            registry=r,
        )
        self.rate_limits = Counter(
            "spaces_rate_limited",
            "429 answers from a platform (the budget's pacing was wrong).",
            ["platform"],
            registry=r,
        )
        self.lease_losses = Counter(
            "spaces_lease_lost",
            "Outcomes not recorded because another worker took the row over.",
            registry=r,
        )
        self.outbox_rows = Gauge(
            "spaces_outbox_rows",
            "Outbox rows by status (refreshed on scrape).",
            ["status"],
            registry=r,
        )
        self.live_workers = Gauge(
            "spaces_live_workers",
            "Worker processes with a fresh heartbeat, as last seen by this one.",
            registry=r,
        )
        self.outbox_up = Gauge(
            "spaces_database_up",
            "1 if the last outbox count succeeded, else 0.",
            registry=r,
        )

    # ----------------------------------------------------------------- EngineObserver

    def settled(self, platform: str, kind: str, outcome: str, late_by: float | None) -> None:
        try:
            self.deliveries.labels(str(platform), str(kind), str(outcome)).inc()
            if late_by is not None and str(outcome) == "sent":
                self.lateness.labels(str(platform)).observe(max(0.0, late_by))
        except Exception:  # an observer must never break a delivery
            log.debug("metrics: settled failed", exc_info=True)

    def claimed(self, count: int, seconds: float) -> None:
        try:
            self.claim_batch.observe(count)
            self.claim_seconds.observe(seconds)
        except Exception:
            log.debug("metrics: claimed failed", exc_info=True)

    def lease_lost(self) -> None:
        try:
            self.lease_losses.inc()
        except Exception:
            log.debug("metrics: lease_lost failed", exc_info=True)

    def rate_limited(self, platform: str) -> None:
        try:
            self.rate_limits.labels(str(platform)).inc()
        except Exception:
            log.debug("metrics: rate_limited failed", exc_info=True)

    def budget_waited(self, platform: str, seconds: float) -> None:
        try:
            self.budget_wait.labels(str(platform)).observe(seconds)
        except Exception:
            log.debug("metrics: budget_waited failed", exc_info=True)

    # ----------------------------------------------------------------- gauges

    def outbox_counts(self, counts: Mapping[str, int] | None) -> None:
        """Refresh the outbox gauges; ``None`` records that the database could not be counted."""
        if counts is None:
            self.outbox_up.set(0)
            return
        self.outbox_up.set(1)
        for status, n in counts.items():
            self.outbox_rows.labels(str(status)).set(n)

    def workers(self, live: int) -> None:
        self.live_workers.set(live)
