"""Run the Alembic migrations from code: no alembic.ini, no dependence on the working directory::

await upgrade(url)         # alembic upgrade head
await current(url)         # the database's revision, None when empty
head()                     # the code's revision
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from storage.db import WRITE_TX, make_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

T = TypeVar("T")


def alembic_config(url: str | None = None) -> Config:
    """An Alembic Config pointing at the migrations shipped in this package."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["configure_logging"] = False
    if url is not None:
        cfg.attributes["url"] = url  # not set_main_option: ConfigParser would choke on '%' in passwords
    return cfg


def head() -> str:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"expected one migration head, found {heads}")
    return heads[0]


@contextmanager
def foreign_keys_off(connection: Connection) -> Iterator[None]:
    """SQLite: batch migrations copy and drop tables; with foreign keys on, dropping ``space`` would cascade
    and delete every subscription. The pragma only takes effect outside a transaction, so set it on the raw
    connection before Alembic begins, and check integrity before turning it back on."""
    if connection.dialect.name != "sqlite":
        yield
        return
    raw = connection.connection.dbapi_connection
    assert raw is not None

    def pragma(sql: str) -> list[Any]:
        cursor = raw.cursor()
        try:
            cursor.execute(sql)
            return list(cursor.fetchall())
        finally:
            cursor.close()

    pragma("PRAGMA foreign_keys = OFF")
    try:
        yield
        broken = pragma("PRAGMA foreign_key_check")
        if broken:
            raise RuntimeError(f"migration left dangling foreign keys: {broken[:10]}")
    finally:
        pragma("PRAGMA foreign_keys = ON")


async def _run(url: str, fn: Callable[[Connection], T]) -> T:
    engine = make_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            conn = await conn.execution_options(**WRITE_TX)  # SQLite: one migrator at a time
            result = await conn.run_sync(fn)
            if conn.in_transaction():
                await conn.commit()
            return result
    finally:
        await engine.dispose()


async def upgrade(url: str, revision: str = "head") -> None:
    """``alembic upgrade head`` on ``url`` (any form :func:`storage.db.normalize_url` accepts)."""

    def run(connection: Connection) -> None:
        cfg = alembic_config(url)
        cfg.attributes["connection"] = connection
        with foreign_keys_off(connection):
            command.upgrade(cfg, revision)

    await _run(url, run)


async def downgrade(url: str, revision: str) -> None:
    def run(connection: Connection) -> None:
        cfg = alembic_config(url)
        cfg.attributes["connection"] = connection
        with foreign_keys_off(connection):
            command.downgrade(cfg, revision)

    await _run(url, run)


async def current(url: str) -> str | None:
    """The revision the database is at; None for a database never migrated."""

    def run(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    return await _run(url, run)
