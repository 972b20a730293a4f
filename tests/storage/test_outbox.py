"""The delivery engine's outbox: claim under a lease, concurrent claimers, settle; heartbeats."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from core.models import Delivery, DeliveryStatus, Space
from storage.db import make_engine
from storage.stores import Fleet, SqlHeartbeats, SqlOutbox, SqlUnitOfWork
from storage.tables import delivery_t
from tests.builders import LEASE, row, row_id

NOW = datetime(2026, 3, 14, 18, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]  # the project, for the worker subprocesses' PYTHONPATH


async def add(uow: SqlUnitOfWork, rows: list[Delivery]) -> None:
    async with uow:
        await uow.deliveries.add(rows)
        await uow.commit()


async def test_claim_due_takes_due_rows_oldest_first(
    uow: SqlUnitOfWork, space: Space, engine: AsyncEngine
) -> None:
    await add(
        uow,
        [
            row(space.id, "late", NOW - timedelta(minutes=5)),
            row(space.id, "now", NOW),
            row(space.id, "future", NOW + timedelta(seconds=1)),
            row(space.id, "early", NOW - timedelta(hours=1)),
            row(space.id, "sent", NOW - timedelta(hours=2), status=DeliveryStatus.SENT),
            row(space.id, "withdrawn", NOW - timedelta(hours=2), status=DeliveryStatus.WITHDRAWN),
        ],
    )
    outbox = SqlOutbox(engine)
    first = await outbox.claim_due(now=NOW, worker="w1", lease=LEASE, batch=2)
    assert [d.key for d in first] == ["early", "late"]
    for d in first:
        assert d.status is DeliveryStatus.CLAIMED and d.claimed_by == "w1"
        assert d.lease_until == NOW + LEASE and d.lease_until.tzinfo is UTC
        assert d.attempts == 1 and d.id is not None
    second = await outbox.claim_due(now=NOW, worker="w2", lease=LEASE, batch=10)
    assert [d.key for d in second] == ["now"]
    assert await outbox.claim_due(now=NOW, worker="w2", lease=LEASE, batch=10) == []
    assert await outbox.claim_due(now=NOW, worker="w2", lease=LEASE, batch=0) == []
    later = await outbox.claim_due(now=NOW + timedelta(seconds=1), worker="w2", lease=LEASE, batch=10)
    assert [d.key for d in later] == ["future"]


async def test_expired_lease_is_claimed_again(uow: SqlUnitOfWork, space: Space, engine: AsyncEngine) -> None:
    await add(uow, [row(space.id, "a", NOW)])
    outbox = SqlOutbox(engine)
    (mine,) = await outbox.claim_due(now=NOW, worker="w1", lease=LEASE, batch=5)
    assert mine.id is not None
    # lease still held until its last instant
    almost = NOW + LEASE - timedelta(microseconds=1)
    assert await outbox.claim_due(now=almost, worker="w2", lease=LEASE, batch=5) == []
    # w1 died: from the end of the lease, w2 takes it over
    (taken,) = await outbox.claim_due(now=NOW + LEASE, worker="w2", lease=LEASE, batch=5)
    assert taken.id == mine.id and taken.claimed_by == "w2" and taken.attempts == 2
    # w1 comes back and tries to record: refused, the row is w2's
    assert not await outbox.settle(
        row_id(mine),
        worker="w1",
        status=DeliveryStatus.SENT,
        now=NOW + LEASE * 2,
        sent_ref="telegram:msg:1:1",
    )
    assert await outbox.settle(
        row_id(mine),
        worker="w2",
        status=DeliveryStatus.SENT,
        now=NOW + LEASE * 2,
        sent_ref="telegram:msg:1:2",
        late_by=124.0,
    )
    async with uow:
        (final,) = await uow.deliveries.list_for_space(space.id)
    assert final.status is DeliveryStatus.SENT and final.sent_ref == "telegram:msg:1:2"
    assert final.sent_at == NOW + LEASE * 2 and final.late_by == 124.0 and final.lease_until is None


async def test_settle_outcomes(uow: SqlUnitOfWork, space: Space, engine: AsyncEngine) -> None:
    keys = ["skip", "dead", "fallback", "retry", "ratelimited"]
    await add(uow, [row(space.id, k, NOW) for k in keys])
    outbox = SqlOutbox(engine)
    claimed = {d.key: d for d in await outbox.claim_due(now=NOW, worker="w", lease=LEASE, batch=10)}
    ids = {k: row_id(claimed[k]) for k in keys}
    later = NOW + timedelta(seconds=5)

    assert await outbox.settle(
        ids["skip"], worker="w", status=DeliveryStatus.SKIPPED, now=later, error="already live"
    )
    assert await outbox.settle(ids["dead"], worker="w", status=DeliveryStatus.DEAD, now=later, error="500 x5")
    assert await outbox.settle(
        ids["fallback"], worker="w", status=DeliveryStatus.FALLBACK, now=later, error="dm closed"
    )
    assert await outbox.settle(
        ids["retry"],
        worker="w",
        status=DeliveryStatus.PENDING,
        now=later,
        error="timeout",
        due_at=later + timedelta(seconds=30),
    )
    assert await outbox.settle(
        ids["ratelimited"],
        worker="w",
        status=DeliveryStatus.PENDING,
        now=later,
        due_at=later + timedelta(seconds=3),
        refund_attempt=True,
    )
    # settling twice is refused: the row is no longer claimed
    assert not await outbox.settle(ids["skip"], worker="w", status=DeliveryStatus.SENT, now=later)
    assert not await outbox.settle(999_999, worker="w", status=DeliveryStatus.SENT, now=later)
    with pytest.raises(ValueError):
        await outbox.settle(ids["skip"], worker="w", status=DeliveryStatus.CLAIMED, now=later)

    async with uow:
        by_key = {d.key: d for d in await uow.deliveries.list_for_space(space.id)}
    assert by_key["skip"].status is DeliveryStatus.SKIPPED and by_key["skip"].last_error == "already live"
    assert by_key["dead"].status is DeliveryStatus.DEAD and by_key["dead"].attempts == 1
    assert by_key["fallback"].status is DeliveryStatus.FALLBACK
    retry = by_key["retry"]
    assert retry.status is DeliveryStatus.PENDING and retry.due_at == later + timedelta(seconds=30)
    assert retry.claimed_by is None and retry.lease_until is None and retry.attempts == 1
    assert retry.last_error == "timeout"
    limited = by_key["ratelimited"]
    assert limited.status is DeliveryStatus.PENDING and limited.attempts == 0  # refunded
    assert limited.due_at == later + timedelta(seconds=3)

    assert await outbox.next_due() == later + timedelta(seconds=3)
    assert await outbox.claim_due(now=later + timedelta(seconds=2), worker="w", lease=LEASE, batch=10) == []
    again = await outbox.claim_due(now=later + timedelta(seconds=30), worker="w2", lease=LEASE, batch=10)
    assert {d.key: d.attempts for d in again} == {"ratelimited": 1, "retry": 2}


async def test_next_due_and_counts(uow: SqlUnitOfWork, space: Space, engine: AsyncEngine) -> None:
    outbox = SqlOutbox(engine)
    assert await outbox.next_due() is None
    counts = await outbox.counts()
    assert set(counts) == {str(s) for s in DeliveryStatus} and sum(counts.values()) == 0
    await add(
        uow,
        [
            row(space.id, "a", NOW + timedelta(hours=1)),
            row(space.id, "b", NOW + timedelta(minutes=1)),
            row(space.id, "c", NOW - timedelta(days=1), status=DeliveryStatus.SENT),
            row(space.id, "d", NOW - timedelta(days=2), status=DeliveryStatus.DEAD),
        ],
    )
    nxt = await outbox.next_due()
    assert nxt == NOW + timedelta(minutes=1) and nxt is not None and nxt.tzinfo is not None
    assert nxt.utcoffset() == timedelta(0)
    counts = await outbox.counts()
    assert counts["pending"] == 2 and counts["sent"] == 1 and counts["dead"] == 1 and counts["claimed"] == 0


@pytest.mark.slow
async def test_concurrent_claimers_never_share_a_row(
    uow: SqlUnitOfWork, space: Space, migrated_url: str
) -> None:
    n, claimers = 2_000, 6
    await add(uow, [row(space.id, f"k{i:05d}", NOW - timedelta(seconds=i % 97)) for i in range(n)])
    # one engine per claimer: separate connections, as separate worker processes would have
    engines = [make_engine(migrated_url) for _ in range(claimers)]
    try:

        async def claimer(name: str, engine: AsyncEngine) -> list[int]:
            outbox = SqlOutbox(engine)
            got: list[int] = []
            while True:
                batch = await outbox.claim_due(now=NOW, worker=name, lease=LEASE, batch=37)
                if not batch:
                    return got
                assert all(d.claimed_by == name and d.status is DeliveryStatus.CLAIMED for d in batch)
                got.extend(d.id for d in batch if d.id is not None)
                await asyncio.sleep(0)

        results = await asyncio.gather(*(claimer(f"w{i}", e) for i, e in enumerate(engines)))
    finally:
        for e in engines:
            await e.dispose()

    everything = [i for r in results for i in r]
    duplicates = [i for i, c in Counter(everything).items() if c > 1]
    assert duplicates == []
    assert len(everything) == n  # complete: nothing left behind
    assert sum(1 for r in results if r) >= 2, "the claimers did not actually run side by side"
    async with uow:
        rows = await uow.deliveries.list_for_space(space.id)
    assert all(d.status is DeliveryStatus.CLAIMED and d.attempts == 1 for d in rows)
    owner = {i: f"w{k}" for k, r in enumerate(results) for i in r}
    assert all(owner[d.id] == d.claimed_by for d in rows if d.id is not None)


async def test_settle_after_lease_lost_to_concurrent_claimer(
    uow: SqlUnitOfWork, space: Space, engine: AsyncEngine
) -> None:
    await add(uow, [row(space.id, "x", NOW)])
    outbox = SqlOutbox(engine)
    (d,) = await outbox.claim_due(now=NOW, worker="slow", lease=timedelta(seconds=1), batch=1)
    assert d.id is not None
    later = NOW + timedelta(seconds=2)
    (d2,) = await outbox.claim_due(now=later, worker="fast", lease=LEASE, batch=1)
    assert await outbox.settle(row_id(d2), worker="fast", status=DeliveryStatus.SENT, now=later)
    # the slow worker's retry request must not resurrect a sent row
    assert not await outbox.settle(
        row_id(d), worker="slow", status=DeliveryStatus.PENDING, now=later, due_at=later
    )
    async with engine.connect() as conn:
        status = (await conn.execute(select(delivery_t.c.status))).scalar_one()
    assert status == "sent"


# --------------------------------------------------------------------------- heartbeats


async def test_heartbeats(engine: AsyncEngine) -> None:
    beats = SqlHeartbeats(engine, ttl=timedelta(seconds=30))
    assert await beats.beat("a", NOW) == 1
    assert await beats.beat("b", NOW + timedelta(seconds=5)) == 2
    assert await beats.beat("a", NOW + timedelta(seconds=10)) == 2  # own row updated, not duplicated
    # b went silent for more than the TTL: gone
    assert await beats.beat("a", NOW + timedelta(seconds=40)) == 1
    assert await beats.beat("c", NOW + timedelta(seconds=41)) == 2
    await beats.forget("c")
    await beats.forget("never-seen")
    assert await beats.beat("a", NOW + timedelta(seconds=42)) == 1


async def test_the_fleet_is_up_since_its_last_gap(engine: AsyncEngine) -> None:
    """Workers replacing each other one at a time keep the fleet's uptime; all of them gone starts anew."""
    beats = SqlHeartbeats(engine, ttl=timedelta(seconds=30))
    s = timedelta(seconds=1)
    assert await beats.beat_status("a", NOW) == Fleet(1, NOW)
    assert await beats.beat_status("b", NOW + 10 * s) == Fleet(2, NOW)  # joins a running fleet
    await beats.forget("a")  # a rolling restart: a goes, c comes while b runs
    assert await beats.beat_status("c", NOW + 20 * s) == Fleet(2, NOW)
    assert await beats.beat_status("b", NOW + 40 * s) == Fleet(2, NOW)
    # everyone silent (killed) longer than the TTL: the service was down; the next worker starts a new period
    later = NOW + 40 * s + 31 * s
    assert await beats.beat_status("d", later) == Fleet(1, later)
    await beats.forget("d")  # a clean stop of the last worker is a gap too
    assert await beats.beat_status("d", later + s) == Fleet(1, later + s)


_WORKER = """
import asyncio, json, sys
from datetime import datetime, timedelta
from storage.db import make_engine
from storage.stores import SqlOutbox

async def main(url, name, now):
    engine = make_engine(url)
    outbox = SqlOutbox(engine)
    got = []
    while batch := await outbox.claim_due(now=now, worker=name, lease=timedelta(minutes=5), batch=25):
        got.extend(d.id for d in batch)
    await engine.dispose()
    print(json.dumps(got))

asyncio.run(main(sys.argv[1], sys.argv[2], datetime.fromisoformat(sys.argv[3])))
"""


@pytest.mark.slow
async def test_claimers_in_separate_processes(uow: SqlUnitOfWork, space: Space, migrated_url: str) -> None:
    n, workers = 2_000, 4
    await add(uow, [row(space.id, f"p{i:05d}", NOW - timedelta(seconds=i % 61)) for i in range(n)])
    root = str(ROOT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _WORKER,
            migrated_url,
            f"proc{i}",
            NOW.isoformat(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=root,
        )
        for i in range(workers)
    ]
    outputs = await asyncio.gather(*(p.communicate() for p in procs))
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err.decode()
    claimed = [i for out, _ in outputs for i in json.loads(out)]
    assert len(claimed) == n and len(set(claimed)) == n
