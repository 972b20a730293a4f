"""Alembic: empty database → head, the models match the migration, downgrade and back."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from storage.db import make_engine
from storage.migrate import current, downgrade, head, upgrade
from storage.tables import TABLES, include_object_for, metadata

EXPECTED_TABLES = {
    "space",
    "space_bridge",
    "subscription",
    "user_identity",
    "community",
    "announcement",
    "delivery",
    "inbound_request",
    "conversation",
    "worker_heartbeat",
    "worker_metrics",
    "send_budget",
    "native_event",
    "platform_lease",
    "one_time_code",
    "link_member",
    "feed_token",
}
# slack_sdk's installation store (bots/slack/workspaces.py): made by 0010_slack, not part of our models
SLACK_SDK_TABLES = {"slack_installations", "slack_bots"}


async def _inspect(url: str) -> dict[str, Any]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:

            def run(sync: Connection) -> dict[str, Any]:
                insp = inspect(sync)
                tables = set(insp.get_table_names())
                return {
                    "dialect": sync.dialect.name,
                    "tables": tables,
                    "delivery_indexes": {ix["name"]: ix for ix in insp.get_indexes("delivery")}
                    if "delivery" in tables
                    else {},
                }

            return await conn.run_sync(run)
    finally:
        await engine.dispose()


async def _diff(url: str) -> list[Any]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:

            def run(sync: Connection) -> list[Any]:
                ctx = MigrationContext.configure(
                    sync,
                    opts={
                        "compare_type": True,
                        "include_object": include_object_for(sync.dialect.name),
                        "target_metadata": metadata,
                    },
                )
                return list(compare_metadata(ctx, metadata))

            return await conn.run_sync(run)
    finally:
        await engine.dispose()


async def test_upgrade_from_empty_to_head(db_url: str) -> None:
    assert await current(db_url) is None
    assert (await _inspect(db_url))["tables"] == set()

    await upgrade(db_url)

    assert await current(db_url) == head()
    info = await _inspect(db_url)
    assert info["tables"] == EXPECTED_TABLES | SLACK_SDK_TABLES | {"alembic_version"}
    assert {t.name for t in TABLES} == EXPECTED_TABLES
    indexes = info["delivery_indexes"]
    assert indexes["ix_delivery_status_due"]["column_names"] == ["status", "due_at"]
    if info["dialect"] == "postgresql":
        assert "status" in str(indexes["ix_delivery_pending_due"]["dialect_options"]["postgresql_where"])
    else:
        assert "ix_delivery_pending_due" not in indexes  # PostgreSQL only


async def test_models_match_the_migration(db_url: str) -> None:
    """`alembic check`: autogenerate finds nothing to add — tables.py and the migration agree."""
    await upgrade(db_url)
    assert await _diff(db_url) == []


async def test_upgrade_is_idempotent(db_url: str) -> None:
    await upgrade(db_url)
    await upgrade(db_url)
    assert await current(db_url) == head()


async def test_downgrade_to_base_and_back(db_url: str) -> None:
    await upgrade(db_url)
    await downgrade(db_url, "base")
    assert await current(db_url) is None
    assert (await _inspect(db_url))["tables"] == {"alembic_version"}
    await upgrade(db_url)
    assert await current(db_url) == head()
    assert await _diff(db_url) == []
