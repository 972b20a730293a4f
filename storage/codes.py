"""core.ports.OneTimeCodes on SQL: one row per unredeemed code, in the service's database.

Redeeming is one ``DELETE … WHERE purpose = ? AND code_hash = ? AND expires_at > now RETURNING``: of two
consumers racing on the same code (two processes, a double-clicked link) the database lets exactly one delete
the row, and only that one sees it returned. Only the code's SHA-256 is stored (a code is 256 random bits, so
no salt is needed): a copy of the table redeems nothing. A short code (50 bits, typed by a person) has its
hash stored the same way: offline a copy of the table could be brute-forced in hours, but a row lives 10
minutes and the table holds no secret beyond what it would unlock — the subject it carries is stored in
clear anyway. Expired rows are swept at each issue, a few at a
time, so the table stays the size of the codes in flight.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from core.ids import new_short_code, normal_short_code
from storage.stores import _WriteTx
from storage.tables import one_time_code_t

if TYPE_CHECKING:
    from core import ports

CODE_BYTES = 32  # 256 random bits → 43 URL-safe characters
_CODE_RE = re.compile(r"[A-Za-z0-9_-]{16,64}")


def code_key(code: str) -> str | None:
    """What a code is stored as: its hash — a short code's canonical form hashed, so any way of typing it
    finds the row; None for what is no code at all (hostile input never reaches the database)."""
    if isinstance(code, str) and _CODE_RE.fullmatch(code):
        return _hash(code)
    short = normal_short_code(code)
    return _hash(short) if short is not None else None


SWEEP = 100  # expired rows deleted at each issue (bounded: an issue never holds the write lock long)


def _hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


class SqlOneTimeCodes:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def issue(
        self, purpose: str, *, now: datetime, ttl: timedelta, subject: str = "", short: bool = False
    ) -> str:
        if ttl <= timedelta(0):
            raise ValueError("a one-time code needs a positive ttl")
        if len(subject) > 255:
            raise ValueError("a one-time code's subject is at most 255 characters")
        code = new_short_code() if short else secrets.token_urlsafe(CODE_BYTES)
        key = code_key(code)
        assert key is not None
        t = one_time_code_t
        expired = select(t.c.purpose, t.c.code_hash).where(t.c.expires_at <= now).limit(SWEEP)
        async with _WriteTx(self._engine) as conn:
            old = (await conn.execute(expired)).all()
            for row_purpose, row_hash in old:
                await conn.execute(delete(t).where(t.c.purpose == row_purpose, t.c.code_hash == row_hash))
            await conn.execute(
                t.insert().values(purpose=purpose, code_hash=key, expires_at=now + ttl, subject=subject)
            )
        return code

    async def consume(self, purpose: str, code: str, *, now: datetime) -> bool:
        return await self.redeem(purpose, code, now=now) is not None

    async def redeem(self, purpose: str, code: str, *, now: datetime) -> str | None:
        key = code_key(code)
        if key is None:
            return None  # hostile input never reaches the database
        t = one_time_code_t
        stmt = (
            delete(t)
            .where(t.c.purpose == purpose, t.c.code_hash == key, t.c.expires_at > now)
            .returning(t.c.subject)
        )
        async with _WriteTx(self._engine) as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else str(row[0] or "")


if TYPE_CHECKING:

    def _conforms(engine: AsyncEngine) -> None:
        _codes: ports.OneTimeCodes = SqlOneTimeCodes(engine)
