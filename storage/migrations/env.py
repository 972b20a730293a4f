"""Alembic environment for Spaces.

Two ways in:

* programmatic (``storage.migrate.upgrade``): the caller opens the async connection and passes its sync
  face in ``config.attributes["connection"]``; we run on it.
* the ``alembic`` CLI (config/alembic.ini): the URL comes from ``-x url=…``, else ``SPACES_DATABASE_URL`` /
  ``DATABASE_URL``, else ``sqlalchemy.url`` in the ini; we build an async engine and ``run_sync``.
"""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection

from storage.db import WRITE_TX, make_engine, normalize_url
from storage.migrate import foreign_keys_off
from storage.tables import include_object_for, metadata

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = metadata


def _url() -> str:
    url = (
        context.get_x_argument(as_dictionary=True).get("url")
        or config.attributes.get("url")
        or os.environ.get("SPACES_DATABASE_URL")
        or os.environ.get("DATABASE_URL")
        or config.get_main_option("sqlalchemy.url")
    )
    if not url:
        raise RuntimeError("no database URL: pass -x url=…, or set SPACES_DATABASE_URL")
    return normalize_url(url)


def _configure(**kwargs: Any) -> None:
    dialect = kwargs["connection"].dialect.name if "connection" in kwargs else kwargs.pop("dialect_name")
    context.configure(
        target_metadata=target_metadata,
        render_as_batch=dialect == "sqlite",  # SQLite cannot ALTER most things: copy-and-move tables
        include_object=include_object_for(dialect),
        compare_type=True,
        **kwargs,
    )


def run_migrations_offline() -> None:
    url = _url()
    _configure(
        url=url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        dialect_name=url.split("+")[0].split(":")[0],
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations_cli(connection: Connection) -> None:
    with foreign_keys_off(connection):
        do_run_migrations(connection)


async def run_async_migrations() -> None:
    engine = make_engine(_url(), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            connection = await connection.execution_options(**WRITE_TX)
            await connection.run_sync(do_run_migrations_cli)
            if connection.in_transaction():
                await connection.commit()
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        do_run_migrations(connection)
    else:
        asyncio.run(run_async_migrations())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
