"""core.ports.OneTimeCodes on SQL: one row per unredeemed code, in the service's database.

Redeeming is one ``DELETE … WHERE purpose = ? AND code_hash = ? AND expires_at > now RETURNING``: of two
consumers racing on the same code (two processes, a double-clicked link) the database lets exactly one delete
the row, and only that one sees it returned. Only the code's SHA-256 is stored (a code is 256 random bits, so
no salt is needed): a copy of the table redeems nothing. Expired rows are swept at each issue, a few at a
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

from storage.stores import _WriteTx
from storage.tables import one_time_code_t

if TYPE_CHECKING:
    from core import ports

CODE_BYTES = 32  # 256 random bits → 43 URL-safe characters
_CODE_RE = re.compile(r"[A-Za-z0-9_-]{16,64}")
SWEEP = 100  # expired rows deleted at each issue (bounded: an issue never holds the write lock long)


def _hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


class SqlOneTimeCodes:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def issue(self, purpose: str, *, now: datetime, ttl: timedelta) -> str:
        if ttl <= timedelta(0):
            raise ValueError("a one-time code needs a positive ttl")
        code = secrets.token_urlsafe(CODE_BYTES)
        t = one_time_code_t
        expired = select(t.c.purpose, t.c.code_hash).where(t.c.expires_at <= now).limit(SWEEP)
        async with _WriteTx(self._engine) as conn:
            old = (await conn.execute(expired)).all()
            for row_purpose, row_hash in old:
                await conn.execute(delete(t).where(t.c.purpose == row_purpose, t.c.code_hash == row_hash))
            await conn.execute(
                t.insert().values(purpose=purpose, code_hash=_hash(code), expires_at=now + ttl)
            )
        return code

    async def consume(self, purpose: str, code: str, *, now: datetime) -> bool:
        if not isinstance(code, str) or not _CODE_RE.fullmatch(code):
            return False  # hostile input never reaches the database
        t = one_time_code_t
        stmt = (
            delete(t)
            .where(t.c.purpose == purpose, t.c.code_hash == _hash(code), t.c.expires_at > now)
            .returning(t.c.code_hash)
        )
        async with _WriteTx(self._engine) as conn:
            row = (await conn.execute(stmt)).first()
        return row is not None


if TYPE_CHECKING:

    def _conforms(engine: AsyncEngine) -> None:
        _codes: ports.OneTimeCodes = SqlOneTimeCodes(engine)
