"""Workers' metric snapshots (storage/metrics.py): what a web process's /metrics reads, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from storage.metrics import SqlMetricSnapshots
from storage.stores import SqlHeartbeats

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
TTL = timedelta(seconds=30)


async def test_the_fleet_is_the_live_workers_and_their_latest_snapshots(engine: AsyncEngine) -> None:
    beats, snaps = SqlHeartbeats(engine, ttl=TTL), SqlMetricSnapshots(engine, ttl=TTL)
    assert await snaps.fleet(T0) == (0, {})
    await beats.beat("w1", T0)
    await beats.beat("w2", T0)
    await snaps.publish("w1", T0, "one")
    await snaps.publish("w1", T0 + timedelta(seconds=1), "one, later")  # replaced, not added
    assert await snaps.fleet(T0 + timedelta(seconds=1)) == (
        2,
        {"w1": "one, later"},
    )  # w2: alive, no figures yet

    await snaps.publish("w2", T0 + timedelta(seconds=2), "two")
    await beats.beat("w2", T0 + timedelta(seconds=25))
    await snaps.publish("w2", T0 + timedelta(seconds=25), "two, later")
    # w1 went silent: past the heartbeat's ttl it no longer counts, nor do its figures
    assert await snaps.fleet(T0 + timedelta(seconds=40)) == (1, {"w2": "two, later"})

    await snaps.forget("w2")
    assert await snaps.fleet(T0 + timedelta(seconds=40)) == (1, {})


async def test_a_snapshot_without_a_heartbeat_is_not_shown(engine: AsyncEngine) -> None:
    snaps = SqlMetricSnapshots(engine, ttl=TTL)
    await snaps.publish("ghost", T0, "boo")  # its heartbeat was forgotten (a clean stop raced the publish)
    assert await snaps.fleet(T0) == (0, {})
