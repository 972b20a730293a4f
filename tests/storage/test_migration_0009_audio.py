"""0009_audio on a database that already holds Spaces: each gets its own random host key (never a shared or
empty one), bridged channels can be added, and a downgrade drops them without losing a Space."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text

from core.models import BridgedChannel
from core.refs import ChatRef, Platform, UserRef
from storage.db import make_engine, make_session_factory
from storage.migrate import current, downgrade, upgrade
from storage.stores import SqlUnitOfWork


async def test_spaces_written_before_the_migration_get_their_own_host_key(db_url: str) -> None:
    await upgrade(db_url, "0008_native_events")
    engine = make_engine(db_url)
    now = datetime(2026, 12, 1, tzinfo=UTC)
    try:
        async with engine.begin() as c:
            for n in range(3):
                await c.execute(
                    text(
                        "INSERT INTO space (id, title, description, host, chat, platform, starts_at, tz, "
                        "locale, created_at, status, revision) VALUES (:id, 't', '', 'discord:user:1', "
                        "'discord@9:chat:5', 'discord', :now, 'UTC', 'en', :now, 'live', 1)"
                    ),
                    {"id": f"sp{n}", "now": now},
                )
        await upgrade(db_url, "0009_audio")
        assert await current(db_url) == "0009_audio"
        async with SqlUnitOfWork(make_session_factory(engine)) as uow:
            spaces = [await uow.spaces.get(f"sp{n}") for n in range(3)]
            keys = [s.host_key for s in spaces if s is not None]
            assert len(keys) == 3 and len(set(keys)) == 3 and all(len(k) >= 32 for k in keys)
            voice = ChatRef(Platform.DISCORD, "7", scope="9")
            assert await uow.bridges.add(BridgedChannel("sp0", voice, UserRef(Platform.DISCORD, "1"), now))
            await uow.commit()
        async with SqlUnitOfWork(make_session_factory(engine), write_lock=False) as uow:
            assert [b.channel for b in await uow.bridges.list("sp0")] == [voice]
        await downgrade(db_url, "0008_native_events")
        async with engine.connect() as c:
            assert (await c.execute(text("SELECT count(*) FROM space"))).scalar_one() == 3
        await upgrade(db_url, "0009_audio")  # and up again: fresh keys, an empty table
        async with SqlUnitOfWork(make_session_factory(engine), write_lock=False) as uow:
            again = await uow.spaces.get("sp0")
            assert again is not None and again.host_key and again.host_key != keys[0]
            assert await uow.bridges.list("sp0") == []
    finally:
        await engine.dispose()
