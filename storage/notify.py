"""Cross-process wake-ups over PostgreSQL LISTEN/NOTIFY (docs/architecture.md, "Roles").

A process that writes outbox rows (a `web` process handling a webhook, or any worker) publishes the earliest
due time on the ``spaces_wake`` channel; every worker listens and arms its own waker. Without it, other
processes learn of new rows only at their next sweep. Notifications are hints: a lost one costs at most a
sweep interval, never a notification, because the database stays the truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)

CHANNEL = "spaces_wake"


class PgWakeChannel:
    def __init__(self, engine: AsyncEngine) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError("LISTEN/NOTIFY needs PostgreSQL")
        self._engine = engine
        self._listen_conn: AsyncConnection | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._published: datetime | None = None  # the earliest future time already announced

    # ------------------------------------------------------------------ publishing

    def arm(self, at: datetime) -> None:
        """core.ports.WakeUps for the other processes: a service given this channel as its WakeUps arms every
        worker listening. Fire and forget (called from sync code paths).
        A time no earlier than one already announced and still ahead is not announced again: the workers
        are armed for it (a burst of subscriptions is one notification, not hundreds)."""
        if self._published is not None and self._published <= at and self._published > datetime.now(UTC):
            return
        self._published = at
        task = asyncio.get_running_loop().create_task(self._announce(at))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _announce(self, at: datetime) -> None:
        if not await self.publish(at) and self._published == at:
            self._published = None  # it did not go out: the next arm must try again, not assume it

    async def publish(self, at: datetime) -> bool:
        try:
            async with self._engine.connect() as conn:
                await conn.execute(
                    text("SELECT pg_notify(:channel, :at)"), {"channel": CHANNEL, "at": at.isoformat()}
                )
                await conn.commit()
            return True
        except Exception as e:  # a hint only: the sweep covers a lost one
            log.warning("wake notification not sent: %s", e)
            return False

    # ------------------------------------------------------------------ listening

    async def listen(self, on_wake: Callable[[datetime], None]) -> None:
        """Call ``on_wake(due_at)`` for every notification, until :meth:`close`. (Re)connects as needed:
        call it again from the sweep; it returns at once while the listening connection is alive."""
        if self._listen_conn is not None and not self._listen_conn.closed:
            raw = await self._listen_conn.get_raw_connection()
            if not raw.driver_connection.is_closed():  # type: ignore[union-attr]
                return
        await self._close_listener()

        def handler(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            try:
                on_wake(datetime.fromisoformat(payload))
            except ValueError:
                log.warning("ignored a malformed wake notification: %r", payload[:100])

        conn = await self._engine.connect()
        raw = await conn.get_raw_connection()
        await raw.driver_connection.add_listener(CHANNEL, handler)  # type: ignore[union-attr]
        self._listen_conn = conn

    async def close(self) -> None:
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._close_listener()

    async def _close_listener(self) -> None:
        conn, self._listen_conn = self._listen_conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()
