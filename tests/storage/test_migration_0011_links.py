"""0011_links from 0010 on SQLite and PostgreSQL: a code issued before (no subject column) still redeems,
as "", the link store works on the new table, and downgrade removes it."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from core.refs import ChatRef, Platform
from storage.codes import SqlOneTimeCodes
from storage.db import make_engine, make_session_factory
from storage.migrate import current, downgrade, head, upgrade
from storage.stores import SqlUnitOfWork

NOW = datetime(2026, 12, 7, 21, 0, tzinfo=UTC)
TG = ChatRef(Platform.TELEGRAM, "-100")
DC = ChatRef(Platform.DISCORD, "55", scope="9")
STATE = "s" * 43  # an OAuth state issued before the upgrade


async def test_from_0010_codes_keep_working_and_links_are_stored(db_url: str) -> None:
    await upgrade(db_url, "0010_slack")
    engine = make_engine(db_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text("INSERT INTO one_time_code (purpose, code_hash, expires_at) VALUES (:p, :h, :e)"),
                {
                    "p": "slack-oauth",
                    "h": hashlib.sha256(STATE.encode()).hexdigest(),
                    "e": NOW + timedelta(minutes=5),
                },
            )
    finally:
        await engine.dispose()
    await upgrade(db_url)
    assert await current(db_url) == head()
    engine = make_engine(db_url)
    try:
        assert await SqlOneTimeCodes(engine).redeem("slack-oauth", STATE, now=NOW) == ""
        sessions = make_session_factory(engine)
        async with SqlUnitOfWork(sessions) as uow:
            assert await uow.links.link_chats(TG, DC, now=NOW)
            await uow.commit()
        async with SqlUnitOfWork(sessions) as uow:
            assert await uow.links.chats(DC) == sorted([TG, DC], key=str)
    finally:
        await engine.dispose()
    await downgrade(db_url, "0010_slack")
    assert await current(db_url) == "0010_slack"
    await upgrade(db_url)
