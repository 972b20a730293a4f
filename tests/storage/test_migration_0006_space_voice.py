"""0006_space_voice on a database that already holds Spaces: they read back unscoped, with no voice channel,
and the columns go away again on downgrade without losing a Space."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text

from core.refs import ChatRef, Platform
from storage.db import make_engine, make_session_factory
from storage.migrate import current, downgrade, upgrade
from storage.stores import SqlUnitOfWork


async def test_spaces_written_before_the_migration_have_no_voice_and_no_scope(db_url: str) -> None:
    await upgrade(db_url, "0005_budget")
    engine = make_engine(db_url)
    try:
        async with engine.begin() as c:
            now = datetime(2026, 12, 1, tzinfo=UTC)
            await c.execute(
                text(
                    "INSERT INTO space (id, title, description, host, chat, platform, starts_at, tz, locale, "
                    "created_at, status, revision) VALUES ('sp', 't', '', 'telegram:user:h', "
                    "'telegram:chat:-1', 'telegram', :now, 'UTC', 'en', :now, 'scheduled', 1)"
                ),
                {"now": now},
            )
        await upgrade(db_url, "0006_space_voice")
        assert await current(db_url) == "0006_space_voice"
        await upgrade(db_url)  # the stores read today's schema; what 0006 did to old rows is kept since
        async with SqlUnitOfWork(make_session_factory(engine), write_lock=False) as uow:
            space = await uow.spaces.get("sp")
            assert (
                space is not None and space.voice is None and space.chat == ChatRef(Platform.TELEGRAM, "-1")
            )
            assert [s.id for s in await uow.spaces.open_in_scope(space.chat, limit=5)] == ["sp"]
        await downgrade(db_url, "0005_budget")
        async with engine.connect() as c:
            assert (await c.execute(text("SELECT count(*) FROM space"))).scalar_one() == 1
    finally:
        await engine.dispose()
