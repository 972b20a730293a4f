"""0012_feeds from 0011 on SQLite and PostgreSQL: the feed store works on the new table, concurrent first
asks for one chat's token (each in its own transaction and connection) all get the one token stored, a token
is unique, and downgrade removes the table."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy.exc import IntegrityError

from core.refs import ChatRef, Platform
from storage.db import make_engine, make_session_factory
from storage.migrate import current, downgrade, head, upgrade
from storage.stores import SqlUnitOfWork

NOW = datetime(2026, 12, 7, 21, 0, tzinfo=UTC)
TG = ChatRef(Platform.TELEGRAM, "-100")
DC = ChatRef(Platform.DISCORD, "55", scope="9")
CONCURRENT = 6  # first asks at once (PostgreSQL: one connection each; SQLite: queued on its write lock)


async def test_from_0011_tokens_are_made_once_and_found(db_url: str) -> None:
    await upgrade(db_url, "0011_links")
    await upgrade(db_url)
    assert await current(db_url) == head()
    engine = make_engine(db_url, pool_size=CONCURRENT, max_overflow=0) if "postgresql" in db_url else None
    engine = engine or make_engine(db_url)
    try:
        sessions = make_session_factory(engine)

        async def ask(n: int) -> str:
            async with SqlUnitOfWork(sessions) as uow:
                token = await uow.feeds.token(TG, new=f"token-{n:02d}-{'x' * 20}", now=NOW)
                await uow.commit()
            return token

        tokens = await asyncio.gather(*(ask(n) for n in range(CONCURRENT)))
        assert len(set(tokens)) == 1 and tokens[0].startswith("token-")
        async with SqlUnitOfWork(sessions) as uow:
            assert await uow.feeds.chat(tokens[0]) == TG
            assert await uow.feeds.chat("nope") is None
            assert await uow.feeds.known(TG) == tokens[0] and await uow.feeds.known(DC) is None
            assert await uow.feeds.token(TG, new="another", now=NOW) == tokens[0]  # kept
        with pytest.raises(IntegrityError):  # a token names one chat
            async with SqlUnitOfWork(sessions) as uow:
                await uow.feeds.token(DC, new=tokens[0], now=NOW)
    finally:
        await engine.dispose()
    await downgrade(db_url, "0011_links")
    assert await current(db_url) == "0011_links"
    await upgrade(db_url)
