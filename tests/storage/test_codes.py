"""storage.codes.SqlOneTimeCodes (core.ports.OneTimeCodes) on SQLite and PostgreSQL: single use, expiry,
purposes kept apart, and races between consumers on separate connections won by exactly one."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.codes import SqlOneTimeCodes
from storage.db import make_engine
from storage.tables import one_time_code_t

NOW = datetime(2026, 12, 7, 20, 0, tzinfo=UTC)
TTL = timedelta(minutes=10)


async def test_a_code_is_redeemed_once(engine: AsyncEngine) -> None:
    codes = SqlOneTimeCodes(engine)
    code = await codes.issue("slack-oauth", now=NOW, ttl=TTL)
    assert len(code) <= 64 and code.replace("-", "").replace("_", "").isalnum()
    assert await codes.consume("slack-oauth", code, now=NOW + timedelta(seconds=5))
    assert not await codes.consume("slack-oauth", code, now=NOW + timedelta(seconds=6))


async def test_expired_unknown_and_other_purposes_are_refused(engine: AsyncEngine) -> None:
    codes = SqlOneTimeCodes(engine)
    code = await codes.issue("slack-oauth", now=NOW, ttl=TTL)
    assert not await codes.consume("link-chat", code, now=NOW)  # another purpose
    assert not await codes.consume("slack-oauth", code, now=NOW + TTL)  # expired at issue + ttl
    assert not await codes.consume("slack-oauth", "x" * 43, now=NOW)
    assert not await codes.consume("slack-oauth", "' OR 1=1 --", now=NOW)
    assert not await codes.consume("slack-oauth", "", now=NOW)
    assert await codes.issue("slack-oauth", now=NOW, ttl=TTL) != await codes.issue(
        "slack-oauth", now=NOW, ttl=TTL
    )


async def test_only_hashes_are_stored_and_expired_rows_are_swept(engine: AsyncEngine) -> None:
    codes = SqlOneTimeCodes(engine)
    old = await codes.issue("slack-oauth", now=NOW, ttl=TTL)
    fresh = await codes.issue("slack-oauth", now=NOW + 2 * TTL, ttl=TTL)  # sweeps the expired one
    async with engine.connect() as conn:
        rows = (await conn.execute(select(one_time_code_t))).all()
    assert len(rows) == 1
    assert fresh not in {r.code_hash for r in rows} and old not in {r.code_hash for r in rows}


async def test_racing_consumers_in_separate_connections_win_once(
    engine: AsyncEngine, migrated_url: str
) -> None:
    """Eight consumers, each with its own engine (as separate processes would be), redeem the same codes at
    once: every code is won exactly once."""
    issuer = SqlOneTimeCodes(engine)
    issued = [await issuer.issue("slack-oauth", now=NOW, ttl=TTL) for _ in range(5)]
    engines = [make_engine(migrated_url) for _ in range(8)]
    try:
        consumers = [SqlOneTimeCodes(e) for e in engines]
        for code in issued:
            wins = await asyncio.gather(*(c.consume("slack-oauth", code, now=NOW) for c in consumers))
            assert sum(wins) == 1
    finally:
        for e in engines:
            await e.dispose()


async def test_short_codes_carry_a_subject_and_read_back_however_typed(engine: AsyncEngine) -> None:
    """Link codes (core.services.links): 10 Crockford characters shown XXXXX-XXXXX, accepted in any case,
    without the dash, with O for 0 and I/L for 1; the subject comes back once."""
    codes = SqlOneTimeCodes(engine)
    code = await codes.issue("link-chat", now=NOW, ttl=TTL, subject="telegram:chat:-100", short=True)
    assert len(code) == 11 and code[5] == "-"
    typed = code.replace("-", " ").lower().replace("0", "o").replace("1", "l")
    assert await codes.redeem("link-person", typed, now=NOW) is None  # a group's code is not a person's
    assert await codes.redeem("link-chat", typed, now=NOW) == "telegram:chat:-100"
    assert await codes.redeem("link-chat", code, now=NOW) is None  # single use
    late = await codes.issue("link-chat", now=NOW, ttl=TTL, subject="x", short=True)
    assert await codes.redeem("link-chat", late, now=NOW + TTL) is None  # expired
    assert await codes.redeem("link-chat", "K7QM-4ZP9X", now=NOW) is None  # too short: never a query
    # a code without a subject (OAuth states) redeems as "" and still consumes
    plain = await codes.issue("slack-oauth", now=NOW, ttl=TTL)
    assert await codes.redeem("slack-oauth", plain, now=NOW) == ""


async def test_racing_redeemers_of_a_short_code_win_once(engine: AsyncEngine, migrated_url: str) -> None:
    """Two moderators type the same link code at once (two processes): one links, the other is refused."""
    code = await SqlOneTimeCodes(engine).issue("link-chat", now=NOW, ttl=TTL, subject="s", short=True)
    engines = [make_engine(migrated_url) for _ in range(4)]
    try:
        got = await asyncio.gather(*(SqlOneTimeCodes(e).redeem("link-chat", code, now=NOW) for e in engines))
        assert sorted(got, key=str) == [None, None, None, "s"]
    finally:
        for e in engines:
            await e.dispose()
