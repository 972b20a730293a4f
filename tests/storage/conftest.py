"""Storage fixtures: every test runs on SQLite and on PostgreSQL (ids ``[sqlite]`` / ``[postgres]``).

* ``db_url`` — a fresh, empty database per test module (SQLite file in a tmp dir; PostgreSQL database
  ``spaces_test_<random>`` on SPACES_TEST_POSTGRES_URL), dropped afterwards.
* ``migrated_url`` — the same database at ``alembic upgrade head`` (once per module).
* ``engine`` — an engine on it for one test; all tables are emptied before the test.

PostgreSQL unreachable: the postgres half is skipped with a loud reason, or fails when CI=true.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.models import Space
from storage.db import make_engine, make_session_factory
from storage.migrate import upgrade
from storage.stores import SqlUnitOfWork
from tests.builders import space as space_sample
from tests.databases import BACKENDS, empty_tables, new_database


@pytest.fixture(scope="module", params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with new_database(request.param, tmp_path_factory.mktemp("db")) as url:
        yield url


@pytest.fixture(scope="module")
def migrated_url(db_url: str) -> str:
    asyncio.run(upgrade(db_url))
    return db_url


@pytest.fixture
async def engine(migrated_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(migrated_url)
    await empty_tables(eng)
    try:
        yield eng
    finally:
        await eng.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_session_factory(engine)


@pytest.fixture
def uow(sessions: async_sessionmaker[AsyncSession]) -> SqlUnitOfWork:
    return SqlUnitOfWork(sessions)


# --------------------------------------------------------------------------- sample data


@pytest.fixture
def new_space() -> Callable[..., Space]:
    """``new_space(id="…", title=…)``: a scheduled Telegram Space at 2026-03-14 18:30 UTC."""

    def make(space_id: str = "abcdefghjk", **overrides: Any) -> Space:
        return space_sample(space_id, **overrides)

    return make


@pytest.fixture
async def space(uow: SqlUnitOfWork, new_space: Callable[..., Space]) -> Space:
    """A Space already stored (deliveries and subscriptions reference one)."""
    sp = new_space()
    async with uow:
        await uow.spaces.add(sp)
        await uow.commit()
    return sp
