"""The send budget every process shares, kept in the database (core.ports.Budget).

The limits are the platform's, not a process's: 4 workers and a web process must together stay under
Telegram's 30 messages/s, 1 message/s per chat and 20 messages/min per group, and a 429 met by one of them
must hold back all of them. So the state lives in one table, ``send_budget``, one row per key:

* ``<platform>``               the platform-wide limit: sends at least ``interval`` apart;
* ``<platform>:chat:<id>``     one chat (a group, or a private chat — a DM): at least ``chat_interval`` apart;
* ``<platform>:group:<id>``    one group: at most ``group_count`` sends in any ``group_window`` seconds.

**Reserve ahead.** An acquire computes the earliest instant (the *slot*) at which this send keeps every rule,
writes the slot into each key's row, and returns how long to wait for it; the caller sleeps until then. Rules
are kept on the slots themselves, so the sliding-window counts are exact, whatever the number of processes:

* spacing keys (platform, chat) keep a GCRA "theoretical arrival time" ``tat``: the next free slot;
* the platform key also keeps *islands*: slots taken ahead of ``tat`` by sends that a chat rule holds back
  (a group's next minute, a chat's next second). The bulk queue flows around them instead of waiting behind
  them (no head-of-line blocking: one busy group never stalls every DM);
* the group key keeps its last ``group_count`` slots: the next is at least ``group_window`` after the
  ``group_count``-th last.

Every pair of the platform's slots is at least ``interval`` apart, so any ``count + 1`` of them span at least
``count × interval``: with ``interval = (1 s + margin) / 30`` no sliding second ever holds more than 30, and the
margin absorbs the jitter between our clock and the platform's arrival times. A slot can only be wasted (a send
skipped after its wait), never doubled.

**Atomic, one round trip.** PostgreSQL: one call of the ``spaces_budget_acquire`` function (migration
0005_budget), which locks the rows in a fixed order (platform, chat, group: every caller locks the platform's
row first, so no two acquires can deadlock) and runs the same algorithm as :func:`plan` — the Python reference,
used as is on SQLite inside ``BEGIN IMMEDIATE``. The tests run both on the same scenarios. Each process keeps
one connection with the call prepared on it and makes one reservation at a time (they queue on the
platform's row anyway); the table is UNLOGGED (no disk flush per send).

**Time base.** PostgreSQL: the database server's clock (``clock_timestamp()``, read once the platform's row
is locked), so processes on several machines share one clock and no clock skew between them can break a
window. Each process estimates the offset of that clock to its own NTP-style, from its tightest round trip,
and sleeps until the slot on its own clock — not for the returned wait, which a reply read late would turn
into a late send. SQLite is one machine: its wall clock. Tests inject a controllable clock (``clock=``),
passed to the database explicitly.

**Late wake-ups.** A message that leaves well after its slot crowds the window of the slots after it (the
margin in ``interval`` is all the room there is). A send that wakes more than :data:`LATE_LIMIT` after its
slot gives it up (wasted, never doubled) and takes another.

**429s.** :meth:`SqlBudget.penalise` stores ``held_until`` on the platform's (or the chat's) row: every later
acquire, in every process, gets a slot after it. Sends already waiting for a slot learn of it too: on
PostgreSQL the hold is announced on the ``spaces_budget`` channel (LISTEN/NOTIFY) and a waiting send whose slot
falls inside a hold asks again when it wakes; without a listener (SQLite, or a lost connection) a send that
waited a second or more re-reads its keys' holds before it goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import asyncpg
from sqlalchemy import delete, literal_column, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from core.refs import Platform
from storage.db import WRITE_TX
from storage.stores import _insert
from storage.tables import send_budget_t

log = logging.getLogger(__name__)

CHANNEL: Final = "spaces_budget"
#: without a listener, a send that waited this long re-reads the holds (a 429 elsewhere holds it back)
RECHECK_AFTER: Final = 1.0
#: rows whose every rule ended this long ago are deleted by :meth:`SqlBudget.prune`
PRUNE_AFTER: Final = 60.0
#: a send that wakes more than this after its slot gives the slot up and takes another (see acquire);
#: part of the platform margin's room for jitter, the rest is for the network and the platform
LATE_LIMIT: Final = 0.010
MAX_MISSED: Final = 3  # … at most this many times in a row: then it goes, late
_DRIFT: Final = 1e-4  # how fast two clocks may drift apart (s/s): ages the clock-offset estimate
_HOLDS_KEPT: Final = 10_000  # holds heard from other processes, kept in memory (LRU)
_LISTEN_RETRY: Final = 5.0  # seconds between attempts to (re)open the listening connection


@dataclass(frozen=True, slots=True)
class SendLimits:
    """One platform's limits as the shared budget enforces them, margins included (seconds)."""

    interval: float  # the platform: at least this long between two of its sends (1 / rate)
    chat_interval: float | None = None  # one chat: at least this long between two sends to it
    group_count: int | None = None  # one group: at most this many sends …
    group_window: float = 0.0  # … in any window of this many seconds
    is_group: Callable[[str], bool] | None = None  # which chat ids are groups (Telegram: negative ids)
    per_scope: bool = False  # ``interval`` holds per workspace (Slack), not per platform

    def keys(
        self, platform: Platform, chat: str | None, scope: str | None = None
    ) -> tuple[str, str | None, str | None]:
        """The rows a send to ``chat`` draws from: platform (of ``scope``, for per-scope limits), chat,
        group (None where no rule applies)."""
        chat_key = f"{platform}:chat:{chat}" if chat is not None and self.chat_interval else None
        group_key = (
            f"{platform}:group:{chat}"
            if chat is not None and self.group_count and self.is_group is not None and self.is_group(chat)
            else None
        )
        platform_key = f"{platform}@{scope}" if self.per_scope and scope is not None else str(platform)
        return platform_key, chat_key, group_key


@dataclass(slots=True)
class KeyState:
    """One ``send_budget`` row: ``tat`` the next free slot (spacing keys), ``slots`` the platform's islands
    or a group's last slots (ascending), ``held_until`` the end of a 429's hold."""

    tat: float = 0.0
    slots: list[float] = field(default_factory=list)
    held_until: float = 0.0


@dataclass(frozen=True, slots=True)
class Reservation:
    wait: float  # seconds from now to the slot
    slot: float  # the slot, in the budget's time base
    granted: bool  # False: wait > max_wait, nothing was taken


def plan(
    now: float,
    max_wait: float,
    limits: SendLimits,
    platform: KeyState,
    chat: KeyState | None = None,
    group: KeyState | None = None,
) -> Reservation:
    """The earliest slot at which a send keeps every rule; when granted, the states are updated to hold it.

    The reference algorithm: ``spaces_budget_acquire`` (PostgreSQL) is the same, step for step."""
    interval = limits.interval
    base = max(now, platform.held_until)  # a platform-wide hold delays the whole queue
    earliest = base
    if chat is not None:
        earliest = max(earliest, chat.held_until, chat.tat)
    if group is not None:
        count = limits.group_count or 1
        ring = group.slots
        earliest = max(earliest, group.held_until)
        if ring:
            earliest = max(earliest, ring[-1])  # a group's sends keep their order
        if len(ring) >= count:
            earliest = max(earliest, ring[len(ring) - count] + limits.group_window)
    frontier = max(platform.tat, base)
    fifo = earliest <= frontier  # the common case: this send joins the platform's queue
    slot = frontier if fifo else earliest  # else: an island ahead of the queue, where the chat allows it
    for island in platform.slots:  # ascending, pairwise >= interval apart
        if island - interval < slot < island + interval:
            slot = island + interval
    wait = slot - now
    if wait > max_wait:
        return Reservation(wait, slot, False)
    if fifo:
        platform.tat = slot + interval
        islands = platform.slots
    else:
        islands = sorted([*platform.slots, slot])
    # an island no later slot can come near is forgotten: later slots are >= max(tat, now)
    horizon = max(platform.tat, now)
    platform.slots = [i for i in islands if i + interval > horizon]
    if chat is not None:
        chat.tat = slot + (limits.chat_interval or 0.0)
    if group is not None:
        group.slots = [*group.slots, slot][-(limits.group_count or 1) :]
    return Reservation(wait, slot, True)


def _expires(state: KeyState, window: float) -> float:
    """When the row stops constraining anything (for pruning)."""
    last = state.slots[-1] + window if state.slots else 0.0
    return max(state.tat, state.held_until, last)


def _slots_text(slots: list[float]) -> str:
    return " ".join(repr(s) for s in slots)


def _slots_parse(raw: str | None) -> list[float]:
    return [float(x) for x in raw.split()] if raw else []


class SqlBudget:
    """core.ports.Budget shared by every process using the database (see the module docstring).

    ``engine``: give it its own small engine without ``pool_pre_ping`` (the composition root does): a ping
    per checkout would double the round trips of the hot path. ``clock``: seconds, for tests (default: the
    database server's clock on PostgreSQL, the wall clock on SQLite). ``sleep``: how waits are slept."""

    def __init__(
        self,
        engine: AsyncEngine,
        limits: Mapping[Platform, SendLimits],
        *,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        listen: bool = True,
        late_limit: float = LATE_LIMIT,
    ) -> None:
        self._engine = engine
        self._pg = engine.dialect.name == "postgresql"
        self._auto = engine.execution_options(isolation_level="AUTOCOMMIT") if self._pg else engine
        self._limits = dict(limits)
        self._clock = clock
        self._sleep = sleep
        self._listen = listen and self._pg
        self._holds: OrderedDict[str, float] = OrderedDict()  # key → held_until heard on the channel
        self._listener: AsyncConnection | None = None
        self._listener_driver: Any = None  # the asyncpg connection under it (its health is checked per send)
        self._listen_again_at = 0.0
        self._listen_lock = asyncio.Lock()
        self._reserving = asyncio.Lock()
        self._reserving_conn: AsyncConnection | None = None  # PostgreSQL: held while the process lives
        self._statement: Any = None  # … with spaces_budget_acquire prepared on it
        self.late_limit = late_limit
        self._offset: tuple[float, float, float] | None = None  # (error bound, database − local, taken at)
        self.reserves = 0  # round trips taken for reservations (the benchmark and tests read it)
        self.missed = 0  # slots given up because we woke too late for them

    # ------------------------------------------------------------------ core.ports.Budget

    async def acquire(
        self,
        platform: Platform,
        chat: str | None = None,
        *,
        max_wait: float = math.inf,
        scope: str | None = None,
    ) -> float:
        limits = self._limits.get(platform)
        if limits is None:
            return 0.0  # a platform without limits (the console)
        keys = limits.keys(platform, chat, scope)
        await self._ensure_listener()
        waited = 0.0
        missed = 0
        while True:
            # one reservation at a time per process: the platform's row serialises them anyway, and a
            # crowd of this process's tasks queueing on its lock in the database only slows every process
            async with self._reserving:
                t0 = self._local()
                r = await self._reserve(limits, keys, max_wait - waited)
                t1 = self._local()
            if not r.granted:
                return -r.wait
            target = self._local_slot(r, t0, t1)  # the slot on our clock: sleep until it, not for `wait`
            delay = target - self._local()
            if delay > 0:
                await self._sleep(delay)
            waited += r.wait
            if await self._held_meanwhile(keys, r):
                continue  # a 429 elsewhere while we waited: the slot is given up, the next is after the hold
            late = self._local() - target
            if late > self.late_limit and missed < MAX_MISSED:
                # we woke too late (a busy loop, a slow round trip): sent now, this message could crowd
                # the window of the slots that follow ours. Give the slot up (wasted, never doubled).
                missed += 1
                self.missed += 1
                log.debug("budget: slot missed by %.3f s; taking another", late)
                continue
            return waited

    def _local(self) -> float:
        return self._clock() if self._clock is not None else time.time()

    def _local_slot(self, r: Reservation, t0: float, t1: float) -> float:
        """Our clock's time for the slot. PostgreSQL reads its own clock: its offset to ours is estimated
        NTP-style from the round trips (the tightest one wins, allowing for drift as it ages), so a reply we
        read late does not make us send late."""
        if not self._pg or self._clock is not None:
            return r.slot  # the slot was computed on our clock
        db_now = r.slot - r.wait
        error = (t1 - t0) / 2
        best = self._offset
        if best is None or error <= best[0] + (t1 - best[2]) * _DRIFT:
            self._offset = best = (error, db_now - (t0 + t1) / 2, t1)
        return r.slot - best[1]

    async def penalise(
        self, platform: Platform, retry_after: float, *, chat: str | None = None, scope: str | None = None
    ) -> None:
        limits = self._limits.get(platform)
        if limits is None:
            return
        key, chat_key, _ = limits.keys(platform, chat, scope)
        if chat is not None:
            key = chat_key or f"{platform}:chat:{chat}"
        until = await self._hold(key, max(0.0, retry_after))
        self._heard(key, until)

    # ------------------------------------------------------------------ housekeeping

    async def prune(self) -> int:
        """Delete the rows of chats that no rule constrains any more (one per chat ever messaged)."""
        t = send_budget_t.c
        now = self._db_now_param()
        async with self._auto.connect() as conn:
            now_expr: Any = literal_column(_DB_NOW) if now is None else now
            stmt = delete(send_budget_t).where(t.expires < now_expr - PRUNE_AFTER)
            if self._pg:
                result = await conn.execute(stmt)
            else:
                conn = await conn.execution_options(**WRITE_TX)
                async with conn.begin():
                    result = await conn.execute(stmt)
        return int(result.rowcount or 0)

    async def close(self) -> None:
        await self._close_listener()
        conn, self._reserving_conn, self._statement = self._reserving_conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _close_listener(self) -> None:
        conn, self._listener, self._listener_driver = self._listener, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    # ------------------------------------------------------------------ reservations

    def _db_now_param(self) -> float | None:
        """``now`` to pass to the database: None lets PostgreSQL read its own clock."""
        if self._clock is not None:
            return self._clock()
        return None if self._pg else time.time()

    async def _reserve(
        self, limits: SendLimits, keys: tuple[str, str | None, str | None], max_wait: float
    ) -> Reservation:
        self.reserves += 1
        if not self._pg:
            return await self._reserve_sqlite(limits, keys, max_wait)
        for attempt in (1, 2):
            try:
                return await self._reserve_pg(limits, keys, max_wait)
            except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError):
                # the server dropped our connection (a restart, a failover): once more, on a fresh one
                await self._drop_reserving_connection()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _reserve_pg(
        self, limits: SendLimits, keys: tuple[str, str | None, str | None], max_wait: float
    ) -> Reservation:
        """One round trip on this process's reserving connection: a prepared statement on the bare driver
        (the pool's checkout and SQLAlchemy's execution cost twice the round trip itself)."""
        if self._statement is None:
            conn = await self._auto.connect()
            try:
                driver = (await conn.get_raw_connection()).driver_connection
                self._statement = await driver.prepare(_ACQUIRE_SQL)  # type: ignore[union-attr]
            except BaseException:
                await conn.close()
                raise
            self._reserving_conn = conn
        platform_key, chat_key, group_key = keys
        row = await self._statement.fetchrow(
            platform_key,
            limits.interval,
            chat_key,
            limits.chat_interval,
            group_key,
            limits.group_count,
            limits.group_window,
            self._db_now_param(),
            max_wait,
        )
        return Reservation(float(row["wait"]), float(row["slot"]), bool(row["granted"]))

    async def _drop_reserving_connection(self) -> None:
        conn, self._reserving_conn, self._statement = self._reserving_conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.invalidate()  # never back to the pool: it is broken
            with contextlib.suppress(Exception):
                await conn.close()

    async def _reserve_sqlite(
        self, limits: SendLimits, keys: tuple[str, str | None, str | None], max_wait: float
    ) -> Reservation:
        wanted = [k for k in keys if k is not None]
        t = send_budget_t.c
        async with self._engine.connect() as conn:
            conn = await conn.execution_options(**WRITE_TX)
            async with conn.begin():
                now = self._db_now_param()  # once the write lock is ours
                assert now is not None
                rows = (await conn.execute(select(send_budget_t).where(t.key.in_(wanted)))).all()
                found = {r.key: KeyState(r.tat, _slots_parse(r.slots), r.held_until) for r in rows}
                states = [found.get(k, KeyState()) if k is not None else None for k in keys]
                platform, chat, group = states
                assert platform is not None
                r = plan(now, max_wait, limits, platform, chat, group)
                if r.granted:
                    windows = (0.0, 0.0, limits.group_window)
                    values = [
                        {
                            "key": k,
                            "tat": s.tat,
                            "slots": _slots_text(s.slots),
                            "held_until": s.held_until,
                            "expires": _expires(s, w),
                        }
                        for k, s, w in zip(keys, states, windows, strict=True)
                        if k is not None and s is not None
                    ]
                    upsert = _insert("sqlite", send_budget_t)
                    upsert = upsert.on_conflict_do_update(
                        index_elements=["key"],
                        set_={c: upsert.excluded[c] for c in ("tat", "slots", "held_until", "expires")},
                    )
                    await conn.execute(upsert, values)
        return r

    async def _hold(self, key: str, retry_after: float) -> float:
        now = self._db_now_param()
        if self._pg:
            async with self._auto.connect() as conn:
                return float(
                    (
                        await conn.execute(_HOLD, {"key": key, "retry_after": retry_after, "now": now})
                    ).scalar_one()
                )
        assert now is not None
        t = send_budget_t.c
        async with self._engine.connect() as conn:
            conn = await conn.execution_options(**WRITE_TX)
            async with conn.begin():
                held = (await conn.execute(select(t.held_until, t.expires).where(t.key == key))).first()
                until = max(held.held_until if held else 0.0, now + retry_after)
                expires = max(held.expires if held else 0.0, until)
                upsert = _insert("sqlite", send_budget_t).values(
                    key=key, tat=0.0, slots="", held_until=until, expires=expires
                )
                upsert = upsert.on_conflict_do_update(
                    index_elements=["key"], set_={"held_until": until, "expires": expires}
                )
                await conn.execute(upsert)
        return until

    # ------------------------------------------------------------------ holds set while we waited

    async def _held_meanwhile(self, keys: tuple[str, str | None, str | None], r: Reservation) -> bool:
        """Did a hold that covers our slot arrive after we took it? (Holds known then are behind the slot.)"""
        wanted = [k for k in keys if k is not None]
        if self._listener_alive():
            return any(self._holds.get(k, 0.0) > r.slot for k in wanted)
        if r.wait < RECHECK_AFTER:
            return False  # "within a second": the sends of the next second go as planned
        t = send_budget_t.c
        async with self._auto.connect() as conn:
            holds = (await conn.execute(select(t.held_until).where(t.key.in_(wanted)))).scalars().all()
        return any(h > r.slot for h in holds)

    def _heard(self, key: str, until: float) -> None:
        self._holds[key] = max(self._holds.get(key, 0.0), until)
        self._holds.move_to_end(key)
        if len(self._holds) > _HOLDS_KEPT:
            self._holds.popitem(last=False)

    def _listener_alive(self) -> bool:
        driver = self._listener_driver
        return self._listener is not None and driver is not None and not driver.is_closed()

    async def _ensure_listener(self) -> None:
        """PostgreSQL: hear every process's holds (LISTEN). Lost: reopened at most every few seconds, and
        meanwhile long waits re-read the holds from the table."""
        if not self._listen or self._listener_alive():
            return
        loop = asyncio.get_running_loop()
        if loop.time() < self._listen_again_at:
            return
        async with self._listen_lock:
            if self._listener_alive() or loop.time() < self._listen_again_at:
                return
            self._listen_again_at = loop.time() + _LISTEN_RETRY
            await self._close_listener()

            def on_hold(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
                key, _, until = payload.rpartition(" ")
                try:
                    self._heard(key, float(until))
                except ValueError:
                    log.warning("ignored a malformed budget notification: %r", payload[:100])

            try:
                conn = await self._engine.connect()
                raw = await conn.get_raw_connection()
                await raw.driver_connection.add_listener(CHANNEL, on_hold)  # type: ignore[union-attr]
            except Exception as e:  # the table still holds the truth; long waits re-read it meanwhile
                log.warning("budget: cannot listen for holds (%s); re-reading them instead", e)
                return
            self._listener, self._listener_driver = conn, raw.driver_connection


# PostgreSQL: the functions of migration 0005_budget (one round trip each, run in autocommit)
_ACQUIRE_SQL = "SELECT wait, slot, granted FROM spaces_budget_acquire($1, $2, $3, $4, $5, $6, $7, $8, $9)"
_DB_NOW = "extract(epoch from clock_timestamp())::double precision"
_HOLD = text("SELECT spaces_budget_hold(:key, :retry_after, :now)")


__all__ = ["CHANNEL", "KeyState", "Reservation", "SendLimits", "SqlBudget", "plan"]
