"""core.ports.GatewayLease on SQL: one owning process per gateway connection (or shard group).

One row per lease name. Taking a free or expired lease is one ``INSERT … ON CONFLICT DO UPDATE … WHERE``
statement, so two contenders can never both win (the row is written by one of them; the other's WHERE sees
the winner's unexpired lease and updates nothing). The fence grows at every change of holder and every
renewal or release names it: a holder that stalled past its lease, and was taken over meanwhile, finds its
fence outdated and learns it lost the lease instead of extending someone else's.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Update, case, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from core.models import LeaseGrant
from storage.stores import _insert, _WriteTx
from storage.tables import lease_from_row, platform_lease_t

if TYPE_CHECKING:
    from core import ports


class SqlGatewayLease:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name

    async def acquire(self, name: str, holder: str, *, now: datetime, ttl: timedelta) -> LeaseGrant | None:
        t = platform_lease_t
        stmt = _insert(self._dialect, t).values(name=name, holder=holder, until=now + ttl, fence=1)
        mine = t.c.holder == holder
        stmt = stmt.on_conflict_do_update(
            index_elements=["name"],
            set_={
                "holder": holder,
                "until": now + ttl,
                # the same holder keeps its fence (a re-acquire is a renewal); a new holder gets the next one
                "fence": case((mine, t.c.fence), else_=t.c.fence + 1),
            },
            where=mine | (t.c.until <= now),
        ).returning(t.c.name, t.c.holder, t.c.until, t.c.fence)
        async with _WriteTx(self._engine) as conn:
            row = (await conn.execute(stmt)).first()
        return lease_from_row(row) if row is not None else None

    async def renew(self, grant: LeaseGrant, *, now: datetime, ttl: timedelta) -> LeaseGrant | None:
        t = platform_lease_t.c
        stmt = _held(grant).values(until=now + ttl).returning(t.name, t.holder, t.until, t.fence)
        async with _WriteTx(self._engine) as conn:
            row = (await conn.execute(stmt)).first()
        return lease_from_row(row) if row is not None else None

    async def release(self, grant: LeaseGrant, *, now: datetime) -> bool:
        # the row stays (with its fence): the next holder's fence must be greater than every earlier one
        stmt = _held(grant).values(until=now).returning(platform_lease_t.c.name)
        async with _WriteTx(self._engine) as conn:
            row = (await conn.execute(stmt)).first()
        return row is not None

    async def current(self, name: str) -> LeaseGrant | None:
        stmt = select(platform_lease_t).where(platform_lease_t.c.name == name)
        async with self._engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        return lease_from_row(row) if row is not None else None


def _held(grant: LeaseGrant) -> Update:
    """The lease's row, only while it is still held under this grant (holder and fence)."""
    t = platform_lease_t.c
    return update(platform_lease_t).where(
        t.name == grant.name, t.holder == grant.holder, t.fence == grant.fence
    )


if TYPE_CHECKING:

    def _conforms(engine: AsyncEngine) -> None:
        _lease: ports.GatewayLease = SqlGatewayLease(engine)
