"""The persistence backends the core tests run on: ``memory`` (tests/fakes/memory.py), ``sqlite`` and
``postgres`` (storage/ on a throwaway database, see tests/databases.py).

A :class:`StoreBackend` gives the ports (a unit-of-work factory and the engine's outbox) plus a few
read-only helpers for assertions that the ports do not offer (every delivery of every Space, the number of
Spaces). The fixtures in tests/conftest.py migrate one database per test module and backend, and empty it
before each test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.models import Delivery
from core.ports import Outbox, UnitOfWork
from storage.db import make_engine, make_session_factory
from storage.migrate import upgrade
from storage.stores import SqlOutbox, SqlUnitOfWork
from storage.tables import TABLES, delivery_from_row, delivery_t, space_t
from tests.databases import BACKENDS, new_database
from tests.fakes.memory import MemoryDB

#: test ids, in the order the suites run
BACKEND_IDS = ("memory", *BACKENDS)


class StoreBackend(Protocol):
    name: str

    def uow(self) -> UnitOfWork:
        """A fresh unit of work (the UnitOfWorkFactory the services take)."""
        ...

    def outbox(self) -> Outbox: ...

    async def all_deliveries(self) -> list[Delivery]:
        """Every outbox row of every Space, in insertion (id) order."""
        ...

    async def space_count(self) -> int: ...


class MemoryBackend(MemoryDB):
    name = "memory"

    async def all_deliveries(self) -> list[Delivery]:
        return self.deliveries()

    async def space_count(self) -> int:
        return len(self.state.spaces)


class SqlBackend:
    """storage/ on one database; :meth:`open` empties every table first."""

    def __init__(self, name: str, engine: AsyncEngine) -> None:
        self.name = name
        self.engine = engine
        self._sessions = make_session_factory(engine)
        self._outbox = SqlOutbox(engine)

    @classmethod
    async def open(cls, name: str, url: str) -> SqlBackend:
        engine = make_engine(url)
        try:
            await truncate(engine)
        except BaseException:
            await engine.dispose()
            raise
        return cls(name, engine)

    async def close(self) -> None:
        await self.engine.dispose()

    def uow(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self._sessions)

    def outbox(self) -> SqlOutbox:
        return self._outbox

    async def all_deliveries(self) -> list[Delivery]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(delivery_t).order_by(delivery_t.c.id))).all()
        return [delivery_from_row(r) for r in rows]

    async def space_count(self) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(space_t))).scalar_one())


#: tables the migrations make but storage/tables.py does not describe: slack_sdk's installation store
#: (migration 0010_slack). Emptied too: every emulator numbers its workspaces from T0…1 again, so a test
#: would otherwise find the previous test's installs (and tokens) under its own workspaces' ids
FOREIGN_TABLES = ("slack_bots", "slack_installations")


async def truncate(engine: AsyncEngine) -> None:
    """Empty every table (PostgreSQL: TRUNCATE … RESTART IDENTITY CASCADE; SQLite: children first)."""
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            names = ", ".join([t.name for t in TABLES] + list(FOREIGN_TABLES))
            await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(TABLES):
                await conn.execute(table.delete())
            for name in FOREIGN_TABLES:
                await conn.execute(text(f"DELETE FROM {name}"))


@contextmanager
def migrated_database(backend: str, directory: Path) -> Iterator[str | None]:
    """A fresh database of ``backend`` at ``alembic upgrade head`` (None for ``memory``); dropped after."""
    if backend == "memory":
        yield None
        return
    with new_database(backend, directory) as url:
        asyncio.run(upgrade(url))
        yield url


async def open_backend(backend: str, url: str | None) -> StoreBackend:
    if url is None:
        return MemoryBackend()
    return await SqlBackend.open(backend, url)


async def close_backend(db: StoreBackend) -> None:
    if isinstance(db, SqlBackend):
        await db.close()
