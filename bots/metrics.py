"""Prometheus metrics: the delivery engine's observer, fleet gauges refreshed on scrape, and the merge that
lets one scrape show every worker.

Everything lives in a per-service ``CollectorRegistry`` (never the global one): a test can build many services
in one process. Workers serve no HTTP, so each publishes :meth:`Metrics.snapshot` at its heartbeat (through
the database), and a web process's ``/metrics`` (:func:`render`) shows its own series plus every live worker's,
each labelled ``worker="<SPACES_WORKER_ID>"``. The fleet gauges (:data:`FLEET_FAMILIES`: the outbox, the
database, the live workers) are read from the database on each scrape and carry no worker label.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

if TYPE_CHECKING:
    from bots.audio.supervisor import SpaceAudioHealth

log = logging.getLogger(__name__)

# lateness: what users feel. Sub-second is the waker's promise; minutes mean a restart or a backlog.
LATENESS_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600)
BATCH_BUCKETS = (0, 1, 2, 5, 10, 25, 50, 100, 250, 500)
SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


# series that describe the whole deployment (read from the database on scrape), not one process
FLEET_FAMILIES = frozenset({"spaces_outbox_rows", "spaces_database_up", "spaces_live_workers"})
WORKER_LABEL = "worker"
SNAPSHOT_VERSION = 1


@dataclass(frozen=True, slots=True)
class FleetView:
    """What a scrape learns from the database: live workers, and each one's latest :meth:`Metrics.snapshot`."""

    live_workers: int
    snapshots: Mapping[str, str] = field(default_factory=dict)


class Metrics:
    """Implements core.services.deliveries.EngineObserver. Every hook is cheap and never raises.

    ``delivers=False`` (the web role): the engine's series are kept out of the registry — this process sends
    nothing, and its scrape shows the workers' series instead of a set of zeros."""

    def __init__(self, registry: CollectorRegistry | None = None, *, delivers: bool = True) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry if delivers else None
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
            registry=self.registry,
        )
        self.live_workers = Gauge(
            "spaces_live_workers",
            "Worker processes with a fresh heartbeat (read from the database on scrape).",
            registry=self.registry,
        )
        self.outbox_up = Gauge(
            "spaces_database_up",
            "1 if the last outbox count succeeded, else 0.",
            registry=self.registry,
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

    def fleet_seen(self, fleet: FleetView | None) -> None:
        """A scrape read the fleet from the database (None: it could not)."""
        if fleet is not None:
            self.live_workers.set(fleet.live_workers)

    def watch_audio(self, health: Callable[[], Mapping[str, SpaceAudioHealth]]) -> None:
        """Show the live audio run by this process (its supervisor's :meth:`health`), read on each scrape."""
        self.registry.register(AudioCollector(health))

    # ----------------------------------------------------------------- publishing

    def snapshot(self) -> str:
        """This process's own series (not the fleet gauges), as text for the database."""
        families = [_encode(m) for m in self.registry.collect() if m.name not in FLEET_FAMILIES]
        return json.dumps({"v": SNAPSHOT_VERSION, "families": families}, separators=(",", ":"))


class AudioCollector(Collector):
    """The live audio this process runs, read from its bridges at scrape time (gauges: a bridge that stops
    takes its figures with it, so its Space's listeners and restarts are counted while it runs here)."""

    def __init__(self, health: Callable[[], Mapping[str, SpaceAudioHealth]]) -> None:
        self._health = health

    def collect(self) -> Iterable[Metric]:
        bridges = GaugeMetricFamily("spaces_audio_bridges", "Live Spaces whose audio runs in this process.")
        listeners = GaugeMetricFamily("spaces_audio_listeners", "Web listeners of the audio run here.")
        sources = GaugeMetricFamily(
            "spaces_audio_sources", "Audio sources run here, by state.", labels=["state"]
        )
        channels = GaugeMetricFamily(
            "spaces_audio_voice_channels", "Voice channels fed from here, by state.", labels=["state"]
        )
        restarts = GaugeMetricFamily(
            "spaces_audio_source_restarts",
            "Times the sources of the bridges running here were reconnected (ffmpeg restarted).",
        )
        try:
            health = self._health()
        except Exception:  # a scrape never fails because of the audio
            log.warning("metrics: reading the audio health failed", exc_info=True)
            health = {}
        by_source: dict[str, int] = {}
        by_channel: dict[str, int] = {}
        for h in health.values():
            by_source[str(h.source.state)] = by_source.get(str(h.source.state), 0) + 1
            for link in h.channels.values():
                by_channel[str(link.state)] = by_channel.get(str(link.state), 0) + 1
        bridges.add_metric([], len(health))
        listeners.add_metric([], sum(h.listeners for h in health.values()))
        restarts.add_metric([], sum(h.source.reconnects for h in health.values()))
        for state, n in sorted(by_source.items()):
            sources.add_metric([state], n)
        for state, n in sorted(by_channel.items()):
            channels.add_metric([state], n)
        return [bridges, listeners, sources, channels, restarts]


def render(
    registry: CollectorRegistry, *, own_worker: str | None = None, fleet: FleetView | None = None
) -> bytes:
    """The Prometheus text for one scrape: ``registry`` (its series labelled ``worker=own_worker``, except the
    fleet gauges), merged with every other live worker's snapshot, labelled with its id."""
    merged = _Merged()
    for metric in registry.collect():
        merged.add(metric, None if metric.name in FLEET_FAMILIES else own_worker)
    if fleet is not None:
        for worker, snapshot in sorted(fleet.snapshots.items()):
            if worker == own_worker:  # our own figures are fresher in memory
                continue
            for metric in decode(snapshot):
                merged.add(metric, worker)
    return generate_latest(merged)


def decode(snapshot: str) -> list[Metric]:
    """A snapshot back into metric families; an unreadable one (another version's) is skipped, and said so."""
    try:
        data = json.loads(snapshot)
        if data.get("v") != SNAPSHOT_VERSION:
            raise ValueError(f"snapshot version {data.get('v')!r}")
        families = []
        for f in data["families"]:
            metric = Metric(str(f["name"]), str(f["help"]), str(f["type"]), str(f.get("unit", "")))
            for name, labels, value in f["samples"]:
                metric.samples.append(
                    Sample(str(name), {str(k): str(v) for k, v in labels.items()}, float(value))
                )
            families.append(metric)
        return families
    except Exception as e:
        log.warning("a worker's metrics snapshot could not be read: %s", e)
        return []


def _encode(metric: Metric) -> dict[str, Any]:
    return {
        "name": metric.name,
        "type": metric.type,
        "help": metric.documentation,
        "unit": metric.unit,
        "samples": [[s.name, s.labels, s.value] for s in metric.samples],
    }


class _Merged:
    """A collector of families merged by name (Prometheus wants each family once per exposition)."""

    def __init__(self) -> None:
        self._families: dict[str, Metric] = {}

    def add(self, metric: Metric, worker: str | None) -> None:
        family = self._families.get(metric.name)
        if family is None:
            family = self._families[metric.name] = Metric(
                metric.name, metric.documentation, metric.type, metric.unit
            )
        elif family.type != metric.type:  # workers of two versions disagree: keep the first kind
            log.warning("metric %s is a %s here and a %s elsewhere", metric.name, family.type, metric.type)
            return
        for sample in metric.samples:
            labels = dict(sample.labels)
            if worker is not None:
                labels[WORKER_LABEL] = worker
            family.samples.append(sample._replace(labels=labels))

    def collect(self) -> Iterable[Metric]:
        return list(self._families.values())
