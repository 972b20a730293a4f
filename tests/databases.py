"""Throwaway databases for tests: a SQLite file, or a fresh PostgreSQL database on the test server.

PostgreSQL comes from SPACES_TEST_POSTGRES_URL (scripts/with-postgres sets it). Unreachable: the postgres
half is skipped with a loud reason — or fails when CI=true, where a skipped half would hide a regression.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
PG_BASE = os.environ.get("SPACES_TEST_POSTGRES_URL", DEFAULT_PG)
BACKENDS = ["sqlite", "postgres"]

_pg_problem: list[str] = []  # cached: probe the server once per session


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _pg_admin(sql: str) -> None:
    conn = await asyncpg.connect(_asyncpg_dsn(PG_BASE), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def require_postgres() -> None:
    if not _pg_problem:
        try:
            asyncio.run(_pg_admin("SELECT 1"))
            _pg_problem.append("")
        except Exception as exc:  # any failure to reach the server
            _pg_problem.append(f"{type(exc).__name__}: {exc}")
    problem = _pg_problem[0]
    if problem:
        reason = (
            f"!!! PostgreSQL at {make_url(PG_BASE).render_as_string()} is unreachable ({problem}): "
            "these tests did NOT run on PostgreSQL. Start it or set SPACES_TEST_POSTGRES_URL."
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)


@contextmanager
def new_database(backend: str, directory: Path) -> Iterator[str]:
    """Yield the URL of a fresh, empty database of ``backend``; dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{directory / 'spaces.sqlite3'}"
        return
    require_postgres()
    name = f"spaces_test_{secrets.token_hex(6)}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_BASE).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def empty_tables(engine: AsyncEngine) -> None:
    """Every table of the schema emptied (ids restarted on PostgreSQL): a module-scoped database reused by
    each test as if new."""
    from storage.tables import TABLES

    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            names = ", ".join(t.name for t in TABLES)
            await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(TABLES):  # children first
                await conn.execute(table.delete())
