"""Engine set-up: URL forms, SQLite pragmas and BEGIN modes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text

from storage.db import WRITE_TX, make_engine, normalize_url


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@db.example.com:5432/d1", "postgresql+asyncpg://u:p@db.example.com:5432/d1"),
        ("postgresql://u:p@db.example.com/d1", "postgresql+asyncpg://u:p@db.example.com/d1"),
        (
            "postgres://u:p@ec2.compute.amazonaws.com:5432/d1?sslmode=require",
            "postgresql+asyncpg://u:p@ec2.compute.amazonaws.com:5432/d1?ssl=require",
        ),
        ("postgresql+asyncpg://u@h/d", "postgresql+asyncpg://u@h/d"),
        ("postgresql+psycopg://u@h/d", "postgresql+psycopg://u@h/d"),  # explicit driver kept
        ("sqlite:///var/spaces.db", "sqlite+aiosqlite:///var/spaces.db"),
        ("sqlite:////abs/spaces.db", "sqlite+aiosqlite:////abs/spaces.db"),
        ("sqlite://", "sqlite+aiosqlite://"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
    ],
)
def test_normalize_url(given: str, expected: str) -> None:
    assert normalize_url(given) == expected


def test_normalize_url_keeps_special_characters_in_password() -> None:
    url = normalize_url("postgres://user:p%40ss%25w@host/db")
    assert url == "postgresql+asyncpg://user:p%40ss%25w@host/db"


async def test_heroku_url_builds_an_asyncpg_engine() -> None:
    engine = make_engine("postgres://u:p@localhost:5432/d1")  # no connection is made
    try:
        assert engine.dialect.name == "postgresql"
        assert engine.dialect.driver == "asyncpg"
        assert engine.url.database == "d1"
    finally:
        await engine.dispose()


async def test_sqlite_pragmas(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
            assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar() == 30_000
    finally:
        await engine.dispose()


async def test_sqlite_write_tx_takes_the_lock_at_begin(tmp_path: Path) -> None:
    path = tmp_path / "lock.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (x INTEGER)"))
        other = sqlite3.connect(path, timeout=0.05, isolation_level=None)
        try:
            # a plain (deferred) transaction holds no lock until it writes
            async with engine.connect() as conn:
                await conn.begin()
                other.execute("BEGIN IMMEDIATE")
                other.execute("ROLLBACK")
                await conn.rollback()
            # a write transaction holds the write lock from BEGIN on
            async with engine.connect() as conn:
                conn = await conn.execution_options(**WRITE_TX)
                await conn.begin()
                with pytest.raises(sqlite3.OperationalError, match="locked"):
                    other.execute("BEGIN IMMEDIATE")
                await conn.rollback()
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
        finally:
            other.close()
    finally:
        await engine.dispose()


async def test_sqlite_transactions_roll_back(tmp_path: Path) -> None:
    # with pysqlite's own BEGIN disabled, SQLAlchemy's BEGIN must still make rollback work (DDL included)
    engine = make_engine(f"sqlite:///{tmp_path / 'rb.db'}")
    try:
        async with engine.connect() as conn:
            await conn.begin()
            await conn.execute(text("CREATE TABLE t (x INTEGER)"))
            await conn.execute(text("INSERT INTO t VALUES (1)"))
            await conn.rollback()
        async with engine.connect() as conn:
            names = (await conn.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))).all()
            assert names == []
    finally:
        await engine.dispose()
