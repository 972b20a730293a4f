"""Engines: URL normalisation and the per-dialect connection set-up.

Nothing here runs at import time: the composition root calls :func:`make_engine` once at start-up.

SQLite notes (the embedded default):

* WAL lets readers run beside the one writer; ``busy_timeout`` makes a second writer wait instead of failing.
* pysqlite (and aiosqlite on top of it) issues its own ``BEGIN`` lazily, before the first DML statement, and
  never ``BEGIN IMMEDIATE``. We switch that off (``isolation_level = None``) and emit ``BEGIN`` ourselves in
  the engine's ``begin`` event — the recipe from the SQLAlchemy SQLite dialect documentation — so that a
  transaction that will write can take the write lock *first* (``BEGIN IMMEDIATE``). A deferred transaction
  that reads and then writes fails at once with SQLITE_BUSY (busy_timeout cannot help it) when another writer
  committed in between; an immediate one just waits its turn.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

#: execution option read by the ``begin`` hook on SQLite: "DEFERRED" (plain BEGIN), "IMMEDIATE" or "EXCLUSIVE"
SQLITE_BEGIN: Final = "spaces_sqlite_begin"
#: execution options that make a SQLite transaction take the write lock at BEGIN (ignored on PostgreSQL)
WRITE_TX: Final[dict[str, Any]] = {SQLITE_BEGIN: "IMMEDIATE"}

SQLITE_BUSY_TIMEOUT_MS: Final = 30_000

_ASYNC_DRIVERS: Final = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
}


def normalize_url(url: str | URL) -> str:
    """Turn a configured database URL into one for an async driver.

    ``postgres://`` and ``postgresql://`` (the Heroku / Render / libpq forms) become ``postgresql+asyncpg://``
    (libpq's ``sslmode`` query parameter becomes asyncpg's ``ssl``); ``sqlite:///path`` becomes
    ``sqlite+aiosqlite:///path``. A URL naming its driver explicitly (``postgresql+psycopg://``) is kept.
    """
    parsed = make_url(url) if isinstance(url, str) else url
    driver = _ASYNC_DRIVERS.get(parsed.drivername)
    if driver is None:
        return parsed.render_as_string(hide_password=False)
    parsed = parsed.set(drivername=driver)
    if driver == "postgresql+asyncpg" and "sslmode" in parsed.query:
        query = dict(parsed.query)
        sslmode = query.pop("sslmode")
        query.setdefault("ssl", sslmode)
        parsed = parsed.set(query=query)
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str | URL, *, echo: bool = False, **kwargs: Any) -> AsyncEngine:
    """The process's engine. ``kwargs`` go to :func:`create_async_engine` (pool size …) and win over ours."""
    normalized = make_url(normalize_url(url))
    if normalized.get_backend_name() == "sqlite":
        engine = create_async_engine(normalized, echo=echo, **kwargs)
        _configure_sqlite(engine)
        return engine
    options: dict[str, Any] = {"pool_pre_ping": True}  # managed PostgreSQL drops idle connections
    if "poolclass" not in kwargs:
        options.update(pool_size=10, max_overflow=10, pool_recycle=1800, pool_timeout=30)
    options.update(kwargs)
    return create_async_engine(normalized, echo=echo, **options)


def make_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions for :class:`storage.stores.SqlUnitOfWork`: no expiry on commit (lazy loads fail in async)."""
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def _configure_sqlite(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # hand transaction control to us (see module docstring); also makes PRAGMAs below run outside a tx
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if engine.url.database not in (None, "", ":memory:"):
                cursor.execute("PRAGMA journal_mode = WAL")
                # safe with WAL: a power cut may lose the last commits, never corrupt the database
                cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = str(conn.get_execution_options().get(SQLITE_BEGIN, "DEFERRED")).upper()
        if mode not in ("DEFERRED", "IMMEDIATE", "EXCLUSIVE"):
            raise ValueError(f"unknown SQLite BEGIN mode {mode!r}")
        conn.exec_driver_sql("BEGIN" if mode == "DEFERRED" else f"BEGIN {mode}")
