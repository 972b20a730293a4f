"""Workers' metrics in the database: one scrape of a web process covers every worker.

Workers serve no HTTP (on a PaaS a worker dyno cannot even be reached), so each worker writes a snapshot of
its metrics at every heartbeat, and a web process's ``/metrics`` reads the snapshots of the workers that are
alive (a fresh row in ``worker_heartbeat``). The snapshot is opaque text here: ``bots.metrics`` writes and
reads it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.stores import _insert, _WriteTx
from storage.tables import heartbeat_t, worker_metrics_t


class SqlMetricSnapshots:
    """``ttl``: the heartbeats' (a worker silent that long is presumed dead, and so are its figures)."""

    def __init__(self, engine: AsyncEngine, *, ttl: timedelta) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name
        self.ttl = ttl

    async def publish(self, worker_id: str, now: datetime, snapshot: str) -> None:
        """Replace ``worker_id``'s snapshot; forget the snapshots of workers silent for ``ttl``."""
        m = worker_metrics_t.c
        upsert = _insert(self._dialect, worker_metrics_t).values(
            worker_id=worker_id, updated_at=now, snapshot=snapshot
        )
        upsert = upsert.on_conflict_do_update(
            index_elements=["worker_id"], set_={"updated_at": now, "snapshot": snapshot}
        )
        async with _WriteTx(self._engine) as conn:
            await conn.execute(upsert)
            await conn.execute(delete(worker_metrics_t).where(m.updated_at < now - self.ttl))

    async def fleet(self, now: datetime) -> tuple[int, dict[str, str]]:
        """(how many workers are alive, {worker id: latest snapshot} of those that published one)."""
        h, m = heartbeat_t.c, worker_metrics_t.c
        since = now - self.ttl
        async with self._engine.connect() as conn:
            live = {
                str(w)
                for w in (await conn.execute(select(h.worker_id).where(h.last_seen >= since))).scalars()
            }
            rows = (await conn.execute(select(m.worker_id, m.snapshot).where(m.updated_at >= since))).all()
        return len(live), {str(w): str(snap) for w, snap in rows if w in live}

    async def forget(self, worker_id: str) -> None:
        """A clean shutdown: this worker's figures leave the scrape with it."""
        async with _WriteTx(self._engine) as conn:
            await conn.execute(delete(worker_metrics_t).where(worker_metrics_t.c.worker_id == worker_id))
