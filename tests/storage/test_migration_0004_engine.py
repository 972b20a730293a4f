"""0004_engine on a database that already holds an outbox: every stored row gets its kind's priority."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text

from core import rules
from core.models import DeliveryKind
from storage.db import make_engine
from storage.migrate import current, downgrade, upgrade

KINDS = [DeliveryKind.LIVE_NOTICE, DeliveryKind.HOST_T0, DeliveryKind.CARD_EDIT, DeliveryKind.MENTION]


async def test_rows_written_before_the_migration_get_their_kinds_priority(db_url: str) -> None:
    await upgrade(db_url, "0003_replies")
    engine = make_engine(db_url)
    try:
        async with engine.begin() as c:
            now = datetime(2026, 12, 1, tzinfo=UTC)
            await c.execute(
                text(
                    "INSERT INTO space (id, title, description, host, chat, platform, starts_at, tz, locale, "
                    "created_at, status, revision) VALUES ('sp', 't', '', 'console:user:h', "
                    "'console:chat:c', 'console', :now, 'UTC', 'en', :now, 'live', 1)"
                ),
                {"now": now},
            )
            for i, kind in enumerate([*KINDS, "some_future_kind"]):
                await c.execute(
                    text(
                        "INSERT INTO delivery (key, kind, platform, recipient, space_id, revision, due_at, "
                        "status, attempts) VALUES (:key, :kind, 'console', 'console:user:u', 'sp', 1, :now, "
                        "'pending', 0)"
                    ),
                    {"key": f"k{i}", "kind": str(kind), "now": now},
                )
        await upgrade(db_url, "0004_engine")
        assert await current(db_url) == "0004_engine"
        async with engine.connect() as c:
            got = dict((await c.execute(text("SELECT kind, priority FROM delivery"))).all())
        assert got == {**{str(k): rules.priority(k) for k in KINDS}, "some_future_kind": rules.PRIORITY_OTHER}
        await downgrade(db_url, "0003_replies")  # and back: the rows stay
        async with engine.connect() as c:
            assert (await c.execute(text("SELECT count(*) FROM delivery"))).scalar_one() == 5
    finally:
        await engine.dispose()
