"""The core's persistence ports on SQL (SQLite or PostgreSQL): unit of work, stores, outbox, heartbeats.

Statements are SQLAlchemy Core, executed on the unit of work's connection: the stores never hold ORM objects,
so nothing can lazy-load or go stale, and every store method is one or two statements.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import and_, case, delete, func, literal, null, or_, select, update
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.schema import Table

from core import rules
from core.models import (
    Announcement,
    BridgedChannel,
    Community,
    Conversation,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    NativeEvent,
    Outcome,
    Space,
    SpaceStatus,
    Subscription,
    UserProfile,
)
from core.refs import ChatRef, Platform, UserRef, parse_chat, parse_user
from storage.db import WRITE_TX
from storage.tables import (
    announcement_from_row,
    announcement_t,
    announcement_values,
    bridge_from_row,
    bridge_t,
    bridge_values,
    chat_scope,
    community_from_row,
    community_t,
    community_values,
    conversation_from_row,
    conversation_t,
    conversation_values,
    delivery_from_row,
    delivery_t,
    delivery_values,
    feed_token_t,
    heartbeat_t,
    inbound_t,
    link_t,
    native_event_from_row,
    native_event_t,
    native_event_values,
    space_from_row,
    space_t,
    space_values,
    subscription_from_row,
    subscription_t,
    subscription_values,
    user_from_row,
    user_t,
    user_values,
)

if TYPE_CHECKING:  # the ports are Protocols: conformance is structural, checked by mypy below
    from core import ports

_OPEN: Final = (str(SpaceStatus.SCHEDULED), str(SpaceStatus.LIVE))
_IN_CHUNK: Final = 500  # bound parameters per IN (…) list: well under SQLite's and asyncpg's limits
CHAT_GROUP: Final = "chat"  # link_member.kind: a chat of a chat group
PERSON: Final = "person"  # link_member.kind: an account of a person
# link_member writes are serialized on PostgreSQL by this transaction-scoped advisory lock (any constant:
# it only has to be the same everywhere); SQLite's write lock (BEGIN IMMEDIATE) already does it
_LINK_LOCK: Final = 0x5C1141_4C494E4B


def new_claim_token() -> str:
    """A claim's fencing token: unique per claim, so an outcome never lands on a later claim of its row."""
    return secrets.token_hex(16)


def _claim_order(d: Delivery) -> tuple[int, datetime, int]:
    return (d.priority if d.priority is not None else rules.PRIORITY_OTHER, d.due_at, d.id or 0)


def _insert(dialect: str, table: Table) -> Any:
    """INSERT with ON CONFLICT support for the dialect at hand (both spell it the same way)."""
    if dialect == "postgresql":
        return pg.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"storage supports SQLite and PostgreSQL, not {dialect}")


class _Tx:
    """The unit of work's connection, begun on first use (BEGIN IMMEDIATE on SQLite unless read-only)."""

    def __init__(self, write_lock: bool) -> None:
        self.session: AsyncSession | None = None
        self.dialect = ""
        self._options = WRITE_TX if write_lock else {}

    async def conn(self) -> AsyncConnection:
        session = self.session
        if session is None:
            raise RuntimeError("use the unit of work inside 'async with uow:'")
        if session.in_transaction():
            return await session.connection()
        # also after a commit: the next statement starts a fresh transaction with the same lock mode
        return await session.connection(execution_options=self._options)


class SqlSpaceStore:
    def __init__(self, tx: _Tx) -> None:
        self._tx = tx

    async def add(self, space: Space) -> None:
        conn = await self._tx.conn()
        await conn.execute(space_t.insert().values(space_values(space)))

    async def get(self, space_id: str) -> Space | None:
        conn = await self._tx.conn()
        row = (await conn.execute(select(space_t).where(space_t.c.id == space_id))).first()
        return space_from_row(row) if row is not None else None

    async def get_for_update(self, space_id: str) -> Space | None:
        # PostgreSQL: row lock until the unit of work ends. SQLite ignores FOR UPDATE; there the unit of
        # work already holds the database's single write lock (BEGIN IMMEDIATE).
        conn = await self._tx.conn()
        stmt = select(space_t).where(space_t.c.id == space_id).with_for_update()
        row = (await conn.execute(stmt)).first()
        return space_from_row(row) if row is not None else None

    async def save(self, space: Space) -> None:
        conn = await self._tx.conn()
        values = space_values(space)
        del values["id"]
        result = await conn.execute(update(space_t).where(space_t.c.id == space.id).values(values))
        if result.rowcount == 0:
            raise LookupError(f"no space {space.id!r} to save")

    async def count_open_by_host(self, host: UserRef) -> int:
        conn = await self._tx.conn()
        stmt = (
            select(func.count())
            .select_from(space_t)
            .where(space_t.c.host == str(host), space_t.c.status.in_(_OPEN))
        )
        return int((await conn.execute(stmt)).scalar_one())

    async def upcoming_in_chat(self, chat: ChatRef, limit: int = 20) -> list[Space]:
        return await self.upcoming_in_chats([chat], limit)

    async def upcoming_in_chats(self, chats: Sequence[ChatRef], limit: int) -> list[Space]:
        # "announced in": scheduled there, or its card was posted there (announcement.chat is indexed)
        conn = await self._tx.conn()
        names = [str(c) for c in chats]
        announced = select(announcement_t.c.space_id).where(announcement_t.c.chat.in_(names))
        stmt = (
            select(space_t)
            .where(
                space_t.c.status.in_(_OPEN),
                or_(space_t.c.chat.in_(names), space_t.c.id.in_(announced)),
            )
            .order_by(space_t.c.starts_at, space_t.c.id)
            .limit(limit)
        )
        return [space_from_row(r) for r in (await conn.execute(stmt)).all()]

    async def list_stale(
        self, *, scheduled_before: datetime, live_before: datetime, limit: int
    ) -> list[Space]:
        conn = await self._tx.conn()
        stmt = (
            select(space_t)
            .where(
                or_(
                    and_(
                        space_t.c.status == str(SpaceStatus.SCHEDULED), space_t.c.starts_at < scheduled_before
                    ),
                    and_(space_t.c.status == str(SpaceStatus.LIVE), space_t.c.started_at < live_before),
                )
            )
            .order_by(space_t.c.starts_at, space_t.c.id)
            .limit(limit)
        )
        return [space_from_row(r) for r in (await conn.execute(stmt)).all()]

    async def open_by_host(self, host: UserRef, *, limit: int, text: str = "") -> list[Space]:
        return await self._open(space_t.c.host == str(host), limit=limit, text=text)

    async def open_in_scope(self, where: ChatRef, *, limit: int, text: str = "") -> list[Space]:
        if where.scope is None:
            return await self._open(space_t.c.chat == str(where), limit=limit, text=text)
        in_scope = and_(space_t.c.platform == str(where.platform), space_t.c.scope == where.scope)
        return await self._open(in_scope, limit=limit, text=text)

    async def open_followed_by(self, user: UserRef, *, limit: int) -> list[Space]:
        followed = select(subscription_t.c.space_id).where(subscription_t.c.user_ref == str(user))
        return await self._open(space_t.c.id.in_(followed), limit=limit, text="")

    async def live_with_source(self, *, limit: int) -> list[Space]:
        conn = await self._tx.conn()
        stmt = (
            select(space_t)
            .where(space_t.c.status == str(SpaceStatus.LIVE), space_t.c.audio_source.is_not(None))
            .order_by(space_t.c.started_at, space_t.c.id)
            .limit(max(limit, 0))
        )
        return [space_from_row(r) for r in (await conn.execute(stmt)).all()]

    async def _open(self, where: ColumnElement[bool], *, limit: int, text: str) -> list[Space]:
        conn = await self._tx.conn()
        stmt = select(space_t).where(where, space_t.c.status.in_(_OPEN))
        text = text.strip().lower()
        if text:
            stmt = stmt.where(
                or_(
                    func.lower(space_t.c.title).contains(text, autoescape=True),
                    space_t.c.id.startswith(text, autoescape=True),
                )
            )
        stmt = stmt.order_by(space_t.c.starts_at, space_t.c.id).limit(max(limit, 0))
        return [space_from_row(r) for r in (await conn.execute(stmt)).all()]


class SqlSubscriptionStore:
    def __init__(self, tx: _Tx) -> None:
        self._tx = tx

    async def add(self, sub: Subscription) -> bool:
        conn = await self._tx.conn()
        stmt = (
            _insert(self._tx.dialect, subscription_t)
            .values(subscription_values(sub))
            .on_conflict_do_nothing(index_elements=["space_id", "user_ref"])
            .returning(subscription_t.c.space_id)
        )
        return (await conn.execute(stmt)).first() is not None

    async def remove(self, space_id: str, user: UserRef) -> bool:
        conn = await self._tx.conn()
        stmt = delete(subscription_t).where(
            subscription_t.c.space_id == space_id, subscription_t.c.user_ref == str(user)
        )
        return (await conn.execute(stmt)).rowcount > 0

    async def exists(self, space_id: str, user: UserRef) -> bool:
        conn = await self._tx.conn()
        stmt = select(literal(1)).where(
            subscription_t.c.space_id == space_id, subscription_t.c.user_ref == str(user)
        )
        return (await conn.execute(stmt)).first() is not None

    async def count(self, space_id: str) -> int:
        # people, not accounts: a person's linked accounts count once (their person's group id)
        conn = await self._tx.conn()
        s, lk = subscription_t.c, link_t.c
        person = func.coalesce(lk.group_id, s.user_ref)
        stmt = (
            select(func.count(person.distinct()))
            .select_from(subscription_t.outerjoin(link_t, and_(lk.kind == PERSON, lk.member == s.user_ref)))
            .where(s.space_id == space_id)
        )
        return int((await conn.execute(stmt)).scalar_one())

    async def list(self, space_id: str) -> list[Subscription]:
        conn = await self._tx.conn()
        stmt = (
            select(subscription_t)
            .where(subscription_t.c.space_id == space_id)
            .order_by(subscription_t.c.created_at, subscription_t.c.user_ref)
        )
        return [subscription_from_row(r) for r in (await conn.execute(stmt)).all()]


class SqlDeliveryStore:
    def __init__(self, tx: _Tx) -> None:
        self._tx = tx

    async def add(self, deliveries: Sequence[Delivery]) -> int:
        if not deliveries:
            return 0
        conn = await self._tx.conn()
        rows = []
        for d in deliveries:
            values = delivery_values(d)
            values.pop("id", None)  # the database numbers rows
            rows.append(values)
        stmt = (
            _insert(self._tx.dialect, delivery_t)
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(delivery_t.c.id)
        )
        # executemany + RETURNING: SQLAlchemy batches it into multi-row INSERTs ("insertmanyvalues")
        return len((await conn.execute(stmt, rows)).all())

    async def fan_out(
        self, space_id: str, revision: int, kind: DeliveryKind, due_at: datetime, key_prefix: str
    ) -> int:
        conn = await self._tx.conn()
        s, u, d = subscription_t.c, user_t.c, delivery_t.c
        # known unreachable by DM: settled as a fallback at once, its mention due with the first DMs
        # (a mention only in the group they subscribed from: someone who subscribed privately has none —
        # unreachable, recorded, never named in a chat they may not even be in)
        closed = u.dm_reachable.is_(False)
        status = case(
            (and_(closed, s.via_chat.is_not(None)), str(DeliveryStatus.FALLBACK)),
            (closed, str(DeliveryStatus.DEAD)),
            else_=str(DeliveryStatus.PENDING),
        )
        reason = case(
            (and_(closed, s.via_chat.is_not(None)), literal(rules.KNOWN_UNREACHABLE)),
            (closed, literal(rules.NO_GROUP_TO_MENTION)),
            else_=null(),
        )
        # one row per PERSON: of a person's linked accounts subscribed to the Space, only the one subscribed
        # last (created_at, then user_ref) gets it — on the platform they chose last. An account not linked
        # has no link row: its group_id is NULL, which equals nothing, so no newer "same person" exists.
        mine, other, other_sub = (
            link_t.alias("mine"),
            link_t.alias("other"),
            subscription_t.alias("other_sub"),
        )
        o = other_sub.c
        # driven from the person's own accounts (ix_link_member_kind_group_id: a handful of rows), each
        # looked up in the Space's subscriptions by primary key: never a scan of the subscriber list per
        # subscriber (a 10,000-subscriber fan-out stays linear)
        newer_account = (
            select(literal(1))
            .select_from(other.join(other_sub, and_(o.space_id == s.space_id, o.user_ref == other.c.member)))
            .where(
                other.c.kind == PERSON,
                other.c.group_id == mine.c.group_id,
                or_(o.created_at > s.created_at, and_(o.created_at == s.created_at, o.user_ref > s.user_ref)),
            )
            .exists()
        )
        subscribers = subscription_t.outerjoin(user_t, u.user_ref == s.user_ref).outerjoin(
            mine, and_(mine.c.kind == PERSON, mine.c.member == s.user_ref)
        )
        source = (
            select(
                literal(key_prefix + ":") + s.user_ref,
                literal(str(kind)),
                s.platform,
                s.user_ref,
                s.via_chat,
                s.space_id,
                literal(revision),
                literal(due_at, type_=d.due_at.type),
                status,
                reason,
                literal(0),
                literal(rules.priority(kind)),
            )
            .select_from(subscribers)
            # SQLite needs a WHERE in INSERT … SELECT … ON CONFLICT: it has one
            .where(s.space_id == space_id, ~newer_account)
        )
        columns = [
            d.key,
            d.kind,
            d.platform,
            d.recipient,
            d.subject,
            d.space_id,
            d.revision,
            d.due_at,
            d.status,
            d.last_error,
            d.attempts,
            d.priority,
        ]
        stmt = (
            _insert(self._tx.dialect, delivery_t)
            .from_select(columns, source)
            .on_conflict_do_nothing(index_elements=["key"])
        )
        inserted = int((await conn.execute(stmt)).rowcount)
        fallen = delivery_t.alias("fallen")
        mentions = (
            select(
                literal(key_prefix + ":") + s.user_ref + literal(":mention"),
                literal(str(DeliveryKind.MENTION)),
                s.platform,
                s.via_chat,
                s.user_ref,
                literal(str(kind)),
                s.space_id,
                literal(revision),
                literal(due_at, type_=d.due_at.type),
                literal(str(DeliveryStatus.PENDING)),
                literal(0),
                literal(rules.priority(DeliveryKind.MENTION)),
            )
            .select_from(subscription_t.join(space_t, space_t.c.id == s.space_id))
            .where(
                s.space_id == space_id,
                # only for the rows this fan-out just settled as a fallback (not for a row that existed)
                select(literal(1))
                .where(
                    fallen.c.key == literal(key_prefix + ":") + s.user_ref,
                    fallen.c.status == str(DeliveryStatus.FALLBACK),
                )
                .exists(),
            )
        )
        stmt = (
            _insert(self._tx.dialect, delivery_t)
            .from_select(
                [
                    d.key,
                    d.kind,
                    d.platform,
                    d.recipient,
                    d.subject,
                    d.about,
                    d.space_id,
                    d.revision,
                    d.due_at,
                    d.status,
                    d.attempts,
                    d.priority,
                ],
                mentions,
            )
            .on_conflict_do_nothing(index_elements=["key"])
        )
        await conn.execute(stmt)
        return inserted

    async def withdraw(
        self, space_id: str, kinds: Sequence[DeliveryKind], reason: str, *, recipient: str | None = None
    ) -> int:
        if not kinds:
            return 0
        conn = await self._tx.conn()
        stmt = update(delivery_t).where(
            delivery_t.c.space_id == space_id,
            delivery_t.c.kind.in_([str(k) for k in kinds]),
            delivery_t.c.status == str(DeliveryStatus.PENDING),
        )
        if recipient is not None:
            stmt = stmt.where(delivery_t.c.recipient == recipient)
        stmt = stmt.values(status=str(DeliveryStatus.WITHDRAWN), last_error=reason)
        return int((await conn.execute(stmt)).rowcount)

    async def tally(
        self, space_id: str
    ) -> dict[tuple[DeliveryKind, DeliveryKind | None, DeliveryStatus], int]:
        conn = await self._tx.conn()
        d = delivery_t.c
        stmt = (
            select(d.kind, d.about, d.status, func.count())
            .where(d.space_id == space_id)
            .group_by(d.kind, d.about, d.status)
        )
        return {
            (DeliveryKind(kind), DeliveryKind(about) if about else None, DeliveryStatus(status)): int(n)
            for kind, about, status, n in (await conn.execute(stmt)).all()
        }

    async def list_for_space(self, space_id: str) -> list[Delivery]:
        conn = await self._tx.conn()
        stmt = (
            select(delivery_t)
            .where(delivery_t.c.space_id == space_id)
            .order_by(delivery_t.c.due_at, delivery_t.c.id)
        )
        return [delivery_from_row(r) for r in (await conn.execute(stmt)).all()]

    async def get_by_key(self, key: str) -> Delivery | None:
        conn = await self._tx.conn()
        row = (await conn.execute(select(delivery_t).where(delivery_t.c.key == key))).first()
        return delivery_from_row(row) if row is not None else None


class SqlBridgeStore:
    def __init__(self, tx: _Tx) -> None:
        self._tx = tx

    async def add(self, bridge: BridgedChannel) -> bool:
        conn = await self._tx.conn()
        stmt = (
            _insert(self._tx.dialect, bridge_t)
            .values(bridge_values(bridge))
            .on_conflict_do_nothing(index_elements=["space_id", "channel"])
            .returning(bridge_t.c.space_id)
        )
        return (await conn.execute(stmt)).first() is not None

    async def remove(self, space_id: str, channel: ChatRef) -> bool:
        conn = await self._tx.conn()
        stmt = delete(bridge_t).where(bridge_t.c.space_id == space_id, bridge_t.c.channel == str(channel))
        return (await conn.execute(stmt)).rowcount > 0

    async def count(self, space_id: str) -> int:
        conn = await self._tx.conn()
        stmt = select(func.count()).select_from(bridge_t).where(bridge_t.c.space_id == space_id)
        return int((await conn.execute(stmt)).scalar_one())

    async def list_many(self, space_ids: Sequence[str]) -> dict[str, list[BridgedChannel]]:
        conn = await self._tx.conn()
        found: dict[str, list[BridgedChannel]] = {}
        ids = sorted(set(space_ids))
        for i in range(0, len(ids), _IN_CHUNK):
            stmt = (
                select(bridge_t)
                .where(bridge_t.c.space_id.in_(ids[i : i + _IN_CHUNK]))
                .order_by(bridge_t.c.space_id, bridge_t.c.created_at, bridge_t.c.channel)
            )
            for r in (await conn.execute(stmt)).all():
                found.setdefault(r.space_id, []).append(bridge_from_row(r))
        return found

    async def list(self, space_id: str) -> list[BridgedChannel]:
        return (await self.list_many([space_id])).get(space_id, [])


class SqlAnnouncementStore:
    def __init__(self, tx: _Tx) -> None:
        self._tx = tx

    async def add(self, ann: Announcement) -> None:
        conn = await self._tx.conn()
        stmt = (
            _insert(self._tx.dialect, announcement_t)
            .values(announcement_values(ann))
            .on_conflict_do_nothing(index_elements=["message"])
        )
        await conn.execute(stmt)

    async def list(self, space_id: str) -> list[Announcement]:
        conn = await self._tx.conn()
        stmt = (
            select(announcement_t).where(announcement_t.c.space_id == space_id).order_by(announcement_t.c.id)
        )
        return [announcement_from_row(r) for r in (await conn.execute(stmt)).all()]


class SqlUserStore:
    def __init__(self, tx: _Tx) -> None:
        self._tx = tx

    async def get(self, user: UserRef) -> UserProfile | None:
        conn = await self._tx.conn()
        row = (await conn.execute(select(user_t).where(user_t.c.user_ref == str(user)))).first()
        return user_from_row(row) if row is not None else None

    async def get_many(self, users: Sequence[UserRef]) -> dict[UserRef, UserProfile]:
        conn = await self._tx.conn()
        keys = sorted({str(u) for u in users})
        found: dict[UserRef, UserProfile] = {}
        for i in range(0, len(keys), _IN_CHUNK):
            stmt = select(user_t).where(user_t.c.user_ref.in_(keys[i : i + _IN_CHUNK]))
            for row in (await conn.execute(stmt)).all():
                profile = user_from_row(row)
                found[profile.user] = profile
        return found

    async def upsert(self, profile: UserProfile) -> None:
        """Insert or replace the whole profile (read, change, upsert)."""
        conn = await self._tx.conn()
        values = user_values(profile)
        stmt = _insert(self._tx.dialect, user_t).values(values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["user_ref"], set_={k: v for k, v in values.items() if k != "user_ref"}
        )
        await conn.execute(stmt)

    async def set_reachable(self, user: UserRef, reachable: bool) -> None:
        conn = await self._tx.conn()
        stmt = _insert(self._tx.dialect, user_t).values(
            user_ref=str(user), platform=str(user.platform), dm_reachable=reachable
        )
        stmt = stmt.on_conflict_do_update(index_elements=["user_ref"], set_={"dm_reachable": reachable})
        await conn.execute(stmt)

    async def lock(self, user: UserRef) -> None:
        conn = await self._tx.conn()
        # a row to lock first: a concurrent insert of the same user waits on the unique key, then finds it
        create = (
            _insert(self._tx.dialect, user_t)
            .values(user_ref=str(user), platform=str(user.platform))
            .on_conflict_do_nothing(index_elements=["user_ref"])
        )
        await conn.execute(create)
        if self._tx.dialect == "postgresql":  # SQLite: BEGIN IMMEDIATE already serialises writers
            await conn.execute(
                select(user_t.c.user_ref).where(user_t.c.user_ref == str(user)).with_for_update()
            )


class SqlCommunityStore:
    def __init__(self, tx: _Tx) -> None:
        self._tx = tx

    async def get(self, chat: ChatRef) -> Community | None:
        conn = await self._tx.conn()
        row = (await conn.execute(select(community_t).where(community_t.c.chat == str(chat)))).first()
        return community_from_row(row) if row is not None else None

    async def upsert(self, community: Community) -> None:
        """Insert or replace the whole row."""
        conn = await self._tx.conn()
        values = community_values(community)
        stmt = _insert(self._tx.dialect, community_t).values(values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["chat"], set_={k: v for k, v in values.items() if k != "chat"}
        )
        await conn.execute(stmt)


class SqlFeedStore:
    def __init__(self, tx: _Tx) -> None:
        self._tx = tx

    async def token(self, chat: ChatRef, *, new: str, now: datetime) -> str:
        conn = await self._tx.conn()
        # insert-if-absent then read: of two first asks at once, the second's insert does nothing (the
        # chat is the key) and both read the first's token
        stmt = (
            _insert(self._tx.dialect, feed_token_t)
            .values(chat=str(chat), token=new, created_at=now)
            .on_conflict_do_nothing(index_elements=["chat"])
        )
        await conn.execute(stmt)
        found = await self.known(chat)
        assert found is not None  # inserted just now, or there already
        return found

    async def known(self, chat: ChatRef) -> str | None:
        conn = await self._tx.conn()
        found = await conn.scalar(select(feed_token_t.c.token).where(feed_token_t.c.chat == str(chat)))
        return str(found) if found is not None else None

    async def chat(self, token: str) -> ChatRef | None:
        conn = await self._tx.conn()
        found = await conn.scalar(select(feed_token_t.c.chat).where(feed_token_t.c.token == token))
        return parse_chat(found) if found is not None else None


class SqlInboundStore:
    def __init__(self, tx: _Tx) -> None:
        self._tx = tx

    async def remember(self, platform: Platform, request_id: str, result: str) -> str | None:
        conn = await self._tx.conn()
        # created_at is bookkeeping (pruning old ids): wall-clock time rather than the core's Clock
        stmt = (
            _insert(self._tx.dialect, inbound_t)
            .values(
                platform=str(platform), request_id=request_id, result=result, created_at=datetime.now(UTC)
            )
            .on_conflict_do_nothing(index_elements=["platform", "request_id"])
            .returning(inbound_t.c.id)
        )
        if (await conn.execute(stmt)).first() is not None:
            return None
        earlier = select(inbound_t.c.result).where(
            inbound_t.c.platform == str(platform), inbound_t.c.request_id == request_id
        )
        return str((await conn.execute(earlier)).scalar_one())

    async def recall(self, platform: Platform, request_id: str) -> str | None:
        conn = await self._tx.conn()
        stmt = select(inbound_t.c.result).where(
            inbound_t.c.platform == str(platform), inbound_t.c.request_id == request_id
        )
        value = (await conn.execute(stmt)).scalar()
        return None if value is None else str(value)


class SqlNativeEventStore:
    def __init__(self, tx: _Tx) -> None:
        self._tx = tx

    async def add(self, event: NativeEvent) -> bool:
        conn = await self._tx.conn()
        stmt = (
            _insert(self._tx.dialect, native_event_t)
            .values(native_event_values(event))
            .on_conflict_do_nothing(index_elements=["space_id", "chat"])
            .returning(native_event_t.c.space_id)
        )
        return (await conn.execute(stmt)).first() is not None

    async def list(self, space_id: str) -> list[NativeEvent]:
        conn = await self._tx.conn()
        t = native_event_t.c
        stmt = select(native_event_t).where(t.space_id == space_id).order_by(t.chat)
        return [native_event_from_row(r) for r in (await conn.execute(stmt)).all()]

    async def set_id(self, space_id: str, chat: ChatRef, event_id: str) -> None:
        conn = await self._tx.conn()
        t = native_event_t.c
        stmt = (
            update(native_event_t)
            .where(t.space_id == space_id, t.chat == str(chat))
            .values(event_id=event_id, scope=chat_scope(chat))
        )
        if (await conn.execute(stmt)).rowcount == 0:
            raise LookupError(f"no event recorded for space {space_id!r} in {chat}")

    async def find(self, platform: Platform, scope: str | None, event_id: str) -> NativeEvent | None:
        conn = await self._tx.conn()
        t = native_event_t.c
        # the platform's ids are unique by themselves (Discord's snowflakes); the scope, when both sides
        # know it, only makes sure one guild's dispatch never acts on another's event
        stmt = select(native_event_t).where(
            t.platform == str(platform),
            t.event_id == event_id,
            t.scope.is_(None) | (t.scope == scope) if scope is not None else t.scope.is_(None),
        )
        row = (await conn.execute(stmt.limit(1))).first()
        return native_event_from_row(row) if row is not None else None


class SqlLinkStore:
    """core.ports.LinkStore: both kinds in ``link_member``, one row per member."""

    def __init__(self, tx: _Tx) -> None:
        self._tx = tx

    async def chats(self, chat: ChatRef) -> list[ChatRef]:
        return [parse_chat(m) for m in await self._group(CHAT_GROUP, str(chat))]

    async def link_chats(self, a: ChatRef, b: ChatRef, *, now: datetime) -> bool:
        return await self._join(CHAT_GROUP, str(a), str(b), now)

    async def unlink_chat(self, chat: ChatRef) -> list[ChatRef]:
        return [parse_chat(m) for m in await self._leave(CHAT_GROUP, str(chat))]

    async def accounts(self, user: UserRef) -> list[UserRef]:
        return [parse_user(m) for m in await self._group(PERSON, str(user))]

    async def link_accounts(self, a: UserRef, b: UserRef, *, now: datetime) -> bool:
        return await self._join(PERSON, str(a), str(b), now)

    async def unlink_account(self, user: UserRef) -> list[UserRef]:
        return [parse_user(m) for m in await self._leave(PERSON, str(user))]

    async def _group(self, kind: str, member: str) -> list[str]:
        conn = await self._tx.conn()
        lk = link_t.c
        mine = select(lk.group_id).where(lk.kind == kind, lk.member == member).scalar_subquery()
        stmt = select(lk.member).where(lk.kind == kind, lk.group_id == mine).order_by(lk.member)
        found = [str(m) for m in (await conn.execute(stmt)).scalars()]
        return found or [member]

    async def _serialize(self, conn: AsyncConnection) -> None:
        """Link writes one at a time across processes: a merge reads the groups it joins as they are, and
        nothing can join a group while another merge renames it (rare writes: one lock is enough)."""
        if self._tx.dialect == "postgresql":
            await conn.execute(select(func.pg_advisory_xact_lock(_LINK_LOCK)))

    async def _join(self, kind: str, a: str, b: str, now: datetime) -> bool:
        if a == b:
            return False
        conn = await self._tx.conn()
        await self._serialize(conn)
        lk = link_t.c
        rows = await conn.execute(
            select(lk.member, lk.group_id).where(lk.kind == kind, lk.member.in_([a, b]))
        )
        groups = {str(m): str(g) for m, g in rows.all()}
        ga, gb = groups.get(a), groups.get(b)
        if ga is not None and ga == gb:
            return False
        # a group that exists keeps its id (a chat joining it rewrites one row); two groups: b's joins a's
        target = ga or gb or secrets.token_hex(8)
        if gb is not None and gb != target:
            await conn.execute(
                update(link_t).where(lk.kind == kind, lk.group_id == gb).values(group_id=target)
            )
        new = [m for m, g in ((a, ga), (b, gb)) if g is None]
        if new:
            await conn.execute(
                link_t.insert(),
                [{"kind": kind, "member": m, "group_id": target, "linked_at": now} for m in new],
            )
        return True

    async def _leave(self, kind: str, member: str) -> list[str]:
        conn = await self._tx.conn()
        await self._serialize(conn)
        lk = link_t.c
        group = (await conn.execute(select(lk.group_id).where(lk.kind == kind, lk.member == member))).scalar()
        if group is None:
            return []
        others = [
            str(m)
            for m in (
                await conn.execute(
                    select(lk.member)
                    .where(lk.kind == kind, lk.group_id == group, lk.member != member)
                    .order_by(lk.member)
                )
            ).scalars()
        ]
        gone = [member, *others] if len(others) <= 1 else [member]  # a group of one is no group
        await conn.execute(delete(link_t).where(lk.kind == kind, lk.member.in_(gone)))
        return others


class SqlConversationStore:
    def __init__(self, tx: _Tx) -> None:
        self._tx = tx

    def _key(self, chat: ChatRef, user: UserRef) -> Any:
        return and_(conversation_t.c.chat == str(chat), conversation_t.c.user_ref == str(user))

    async def get(self, chat: ChatRef, user: UserRef) -> Conversation | None:
        conn = await self._tx.conn()
        row = (await conn.execute(select(conversation_t).where(self._key(chat, user)))).first()
        return conversation_from_row(row) if row is not None else None

    async def put(self, conversation: Conversation) -> None:
        conn = await self._tx.conn()
        values = conversation_values(conversation)
        stmt = _insert(self._tx.dialect, conversation_t).values(values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["chat", "user_ref"],
            set_={k: v for k, v in values.items() if k not in ("chat", "user_ref")},
        )
        await conn.execute(stmt)

    async def delete(self, chat: ChatRef, user: UserRef) -> None:
        conn = await self._tx.conn()
        await conn.execute(delete(conversation_t).where(self._key(chat, user)))


class SqlUnitOfWork:
    """One transaction over all the stores: ``async with uow: …; await uow.commit()``.

    Leaving the block rolls back whatever was not committed. On SQLite the transaction begins with
    ``BEGIN IMMEDIATE`` (``write_lock=True``, the default): a unit of work that reads then writes can never
    die with SQLITE_BUSY half-way; writers queue on ``busy_timeout`` instead. Pass ``write_lock=False`` for
    read-only work (WAL readers never wait). On PostgreSQL the flag changes nothing.

    After ``commit()`` the unit of work stays usable: the next statement begins a new transaction.
    """

    def __init__(self, session_factory: async_sessionmaker[AsyncSession], *, write_lock: bool = True) -> None:
        self._factory = session_factory
        self._tx = _Tx(write_lock)
        # typed as the ports: mypy checks each Sql*Store against its Protocol here
        self.spaces: ports.SpaceStore = SqlSpaceStore(self._tx)
        self.subscriptions: ports.SubscriptionStore = SqlSubscriptionStore(self._tx)
        self.deliveries: ports.DeliveryStore = SqlDeliveryStore(self._tx)
        self.announcements: ports.AnnouncementStore = SqlAnnouncementStore(self._tx)
        self.users: ports.UserStore = SqlUserStore(self._tx)
        self.communities: ports.CommunityStore = SqlCommunityStore(self._tx)
        self.inbound: ports.InboundStore = SqlInboundStore(self._tx)
        self.events: ports.NativeEventStore = SqlNativeEventStore(self._tx)
        self.conversations: ports.ConversationStore = SqlConversationStore(self._tx)
        self.bridges: ports.BridgeStore = SqlBridgeStore(self._tx)
        self.links: ports.LinkStore = SqlLinkStore(self._tx)
        self.feeds: ports.FeedStore = SqlFeedStore(self._tx)

    async def __aenter__(self) -> SqlUnitOfWork:
        if self._tx.session is not None:
            raise RuntimeError("this unit of work is already in use; make one per operation")
        session = self._factory()
        self._tx.session = session
        try:
            self._tx.dialect = (await self._tx.conn()).dialect.name  # begins now: takes the lock up front
        except BaseException:
            self._tx.session = None
            await session.close()
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        session, self._tx.session = self._tx.session, None
        if session is None:
            return
        try:
            if session.in_transaction():
                await session.rollback()
        finally:
            await session.close()

    async def commit(self) -> None:
        session = self._tx.session
        if session is None:
            raise RuntimeError("commit() outside 'async with uow:'")
        await session.commit()

    async def rollback(self) -> None:
        if self._tx.session is not None:
            await self._tx.session.rollback()


def unit_of_work_factory(
    session_factory: async_sessionmaker[AsyncSession], *, write_lock: bool = True
) -> ports.UnitOfWorkFactory:
    """What the services take: a callable making a fresh unit of work per operation."""
    return lambda: SqlUnitOfWork(session_factory, write_lock=write_lock)


# --------------------------------------------------------------------------- the engine's outbox


class SqlOutbox:
    """The delivery engine's side of the outbox: claim with a renewable lease, settle if the claim is still ours.

    Each method is its own short transaction on a connection of its own from ``engine``'s pool.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name

    async def claim_due(
        self, *, now: datetime, worker: str, lease: timedelta, batch: int, skip: Sequence[str] = ()
    ) -> list[Delivery]:
        if batch <= 0:
            return []
        d = delivery_t.c
        due = (
            select(d.id)
            .where(
                or_(
                    and_(d.status == str(DeliveryStatus.PENDING), d.due_at <= now),
                    and_(d.status == str(DeliveryStatus.CLAIMED), d.lease_until <= now),
                ),
                # a lane is the recipient's head: "slack@T1:…" (LIKE with the head's own % and _ escaped)
                *(~d.recipient.startswith(f"{lane}:", autoescape=True) for lane in skip),
            )
            # most urgent first: a host's T-0 reminder is not claimed behind a 2,000-person fan-out
            .order_by(d.priority, d.due_at, d.id)
            .limit(batch)
        )
        if self._dialect == "postgresql":
            # rows another worker is claiming right now are skipped, not waited for; a row whose claim
            # committed meanwhile is re-checked against the WHERE under the lock and drops out
            due = due.with_for_update(skip_locked=True)
        stmt = (
            update(delivery_t)
            .where(d.id.in_(due.scalar_subquery()))
            .values(
                status=str(DeliveryStatus.CLAIMED),
                claimed_by=worker,
                lease_until=now + lease,
                attempts=d.attempts + 1,
                claim_token=new_claim_token(),
            )
            .returning(*delivery_t.c)
        )
        async with self._write() as conn:
            rows = (await conn.execute(stmt)).all()
        claimed = [delivery_from_row(r) for r in rows]
        claimed.sort(key=_claim_order)  # RETURNING order is unspecified
        return claimed

    async def renew(
        self, claims: Sequence[str], *, worker: str, now: datetime, lease: timedelta
    ) -> dict[str, set[int]]:
        renewed: dict[str, set[int]] = {c: set() for c in claims}
        if not claims:
            return renewed
        d = delivery_t.c
        tokens = sorted(set(claims))
        async with self._write() as conn:  # one short write for every claim in hand
            for i in range(0, len(tokens), _IN_CHUNK):
                mine = (
                    select(d.id)
                    .where(
                        d.claim_token.in_(tokens[i : i + _IN_CHUNK]),
                        d.claimed_by == worker,
                        d.status == str(DeliveryStatus.CLAIMED),
                    )
                    .order_by(d.id)
                )
                if self._dialect == "postgresql":
                    mine = mine.with_for_update()  # locked in id order, as settle_many does: no deadlock
                stmt = (
                    update(delivery_t)
                    .where(d.id.in_(mine.scalar_subquery()), d.status == str(DeliveryStatus.CLAIMED))
                    .values(lease_until=now + lease)
                    .returning(d.id, d.claim_token)
                )
                for rid, token in (await conn.execute(stmt)).all():
                    renewed[token].add(int(rid))
        return renewed

    async def release(self, *, worker: str, now: datetime) -> int:
        d = delivery_t.c
        stmt = (
            update(delivery_t)
            .where(d.claimed_by == worker, d.status == str(DeliveryStatus.CLAIMED))
            .values(
                status=str(DeliveryStatus.PENDING),
                claimed_by=None,
                lease_until=None,
                claim_token=None,
                last_error="released: its worker restarted",
            )
        )
        async with self._write() as conn:
            return int((await conn.execute(stmt)).rowcount or 0)

    async def settle(
        self,
        delivery_id: int,
        *,
        worker: str,
        status: DeliveryStatus,
        now: datetime,
        sent_ref: str | None = None,
        error: str | None = None,
        late_by: float | None = None,
        due_at: datetime | None = None,
        refund_attempt: bool = False,
        claim: str | None = None,
    ) -> bool:
        outcome = Outcome(delivery_id, status, sent_ref, error, late_by, due_at, refund_attempt, claim)
        return (await self.settle_many([outcome], worker=worker, now=now))[0]

    async def settle_many(self, outcomes: Sequence[Outcome], *, worker: str, now: datetime) -> list[bool]:
        if not outcomes:
            return []
        statements = [self._settle_stmt(o, worker, now) for o in outcomes]
        # rows are locked in id order by every statement that locks several (settle, renew): two
        # transactions of one worker (a renewal and a group commit) never wait for each other in a circle
        order = sorted(range(len(outcomes)), key=lambda i: outcomes[i].delivery_id)
        recorded = [False] * len(outcomes)
        async with self._write() as conn:  # one write lock and one commit for the whole batch
            for i in order:
                recorded[i] = (await conn.execute(statements[i])).rowcount == 1
        return recorded

    def _settle_stmt(self, o: Outcome, worker: str, now: datetime) -> Any:
        if o.status is DeliveryStatus.CLAIMED:
            raise ValueError("settle() records an outcome; CLAIMED is not one")
        d = delivery_t.c
        values: dict[str, Any] = {"status": str(o.status), "lease_until": None, "claim_token": None}
        if o.error is not None:
            values["last_error"] = o.error
        if o.sent_ref is not None:
            values["sent_ref"] = o.sent_ref
        if o.late_by is not None:
            values["late_by"] = o.late_by
        if o.status is DeliveryStatus.SENT or o.sent_ref is not None:
            values["sent_at"] = now
        if o.status is DeliveryStatus.PENDING:
            values["due_at"] = o.due_at if o.due_at is not None else now
            values["claimed_by"] = None  # back in the pool for any worker
            if o.refund_attempt:
                # max() of two values is SQLite's spelling of greatest()
                greatest = func.max if self._dialect == "sqlite" else func.greatest
                values["attempts"] = greatest(d.attempts - 1, 0)
        # claimed_by stays on settled rows: who sent it, for the logs
        stmt = update(delivery_t).where(
            d.id == o.delivery_id, d.claimed_by == worker, d.status == str(DeliveryStatus.CLAIMED)
        )
        if o.claim is not None:  # fencing: this claim, not a later one of the same worker id
            stmt = stmt.where(d.claim_token == o.claim)
        return stmt.values(values)

    async def next_due(self) -> datetime | None:
        d = delivery_t.c
        pending = select(func.min(d.due_at)).where(d.status == str(DeliveryStatus.PENDING))
        leases = select(func.min(d.lease_until)).where(d.status == str(DeliveryStatus.CLAIMED))
        async with self._engine.connect() as conn:
            values = [(await conn.execute(stmt)).scalar() for stmt in (pending, leases)]
        # min() is typed like its argument: UTCDateTime, aware UTC on both dialects
        found = [v for v in values if v is not None]
        assert all(isinstance(v, datetime) for v in found)
        return min(found) if found else None

    async def counts(self) -> dict[str, int]:
        stmt = select(delivery_t.c.status, func.count()).group_by(delivery_t.c.status)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        result = {str(s): 0 for s in DeliveryStatus}
        result.update({str(status): int(n) for status, n in rows})
        return result

    async def prune(self, *, settled_before: datetime, requests_before: datetime, chunk: int = 5000) -> int:
        """In chunks of ``chunk`` rows, each its own short transaction: a month of a large community must
        not hold SQLite's one write lock (or a long PostgreSQL transaction) while deliveries wait."""
        d = delivery_t.c
        over = select(space_t.c.id).where(
            space_t.c.status.in_([str(SpaceStatus.ENDED), str(SpaceStatus.CANCELLED)])
        )
        settled = [
            str(s)
            for s in (
                DeliveryStatus.SENT,
                DeliveryStatus.SKIPPED,
                DeliveryStatus.FALLBACK,
                DeliveryStatus.WITHDRAWN,
            )
        ]
        old_rows = (
            select(d.id)
            .where(
                d.status.in_(settled),
                d.due_at < settled_before,
                # a reply has no Space: its key (the inbound event's) is never written again once the
                # event's request id is pruned (KEEP_REQUEST_IDS, much shorter than KEEP_SETTLED)
                or_(d.space_id.in_(over), and_(d.space_id.is_(None), d.kind == str(DeliveryKind.REPLY))),
            )
            .limit(chunk)
            .scalar_subquery()
        )
        old_ids = (
            select(inbound_t.c.id)
            .where(inbound_t.c.created_at < requests_before)
            .limit(chunk)
            .scalar_subquery()
        )
        total = 0
        for stmt in (
            delete(delivery_t).where(d.id.in_(old_rows)),
            delete(inbound_t).where(inbound_t.c.id.in_(old_ids)),
            # at most one row per person who talked to the bot in the last minutes: one statement is short
            delete(conversation_t).where(conversation_t.c.expires_at < requests_before),
        ):
            while True:
                async with self._write() as conn:
                    n = int((await conn.execute(stmt)).rowcount or 0)
                total += n
                if n < chunk:
                    break
        return total

    def _write(self) -> _WriteTx:
        return _WriteTx(self._engine)


class _WriteTx:
    """A short write transaction on its own connection (BEGIN IMMEDIATE on SQLite)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._conn: AsyncConnection | None = None

    async def __aenter__(self) -> AsyncConnection:
        conn = await self._engine.connect()
        try:
            conn = await conn.execution_options(**WRITE_TX)
            await conn.begin()
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        return conn

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        conn, self._conn = self._conn, None
        assert conn is not None
        try:
            if et is None:
                await conn.commit()
            else:
                await conn.rollback()
        finally:
            await conn.close()


# --------------------------------------------------------------------------- shared send budgets


@dataclass(frozen=True, slots=True)
class Fleet:
    """What a heartbeat learns: how many workers are alive, and since when the service has been running
    without a gap (some worker alive at every instant since then)."""

    live: int
    up_since: datetime


class SqlHeartbeats:
    """Live workers, registered by heartbeat (``spaces_live_workers``, and since when the service is up).

    Call :meth:`beat` every few seconds (well under ``ttl``); a worker silent for ``ttl`` is presumed dead and
    its row is deleted by whoever beats next.

    Each row also carries ``fleet_since``: a worker joining while others are alive inherits the oldest of
    theirs (the service never stopped: rolling restarts and crashes of single workers keep it), one joining
    an empty fleet starts a new period at ``now``. The oldest value among live rows is when the service last
    came up — what tells a notice late because of an outage from one merely queued (core.rules).
    """

    def __init__(self, engine: AsyncEngine, *, ttl: timedelta = timedelta(seconds=30)) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name
        self.ttl = ttl

    async def beat(self, worker_id: str, now: datetime) -> int:
        """Record that ``worker_id`` is alive at ``now``; forget the silent ones. Returns the live count (≥ 1)."""
        return (await self.beat_status(worker_id, now)).live

    async def beat_status(self, worker_id: str, now: datetime) -> Fleet:
        """:meth:`beat`, also returning since when the fleet has been up without a gap."""
        h = heartbeat_t.c
        async with _WriteTx(self._engine) as conn:
            await conn.execute(delete(heartbeat_t).where(h.last_seen < now - self.ttl))
            inherited = (await conn.execute(select(func.min(h.fleet_since)))).scalar()
            since = min(inherited, now) if isinstance(inherited, datetime) else now
            upsert = _insert(self._dialect, heartbeat_t).values(
                worker_id=worker_id, last_seen=now, fleet_since=since
            )
            upsert = upsert.on_conflict_do_update(
                index_elements=["worker_id"], set_={"last_seen": now, "fleet_since": since}
            )
            await conn.execute(upsert)
            live = (await conn.execute(select(func.count()).select_from(heartbeat_t))).scalar_one()
        return Fleet(max(int(live), 1), since)

    async def forget(self, worker_id: str) -> None:
        """A clean shutdown: the others take over this worker's slice at their next beat."""
        async with _WriteTx(self._engine) as conn:
            await conn.execute(delete(heartbeat_t).where(heartbeat_t.c.worker_id == worker_id))


if TYPE_CHECKING:  # mypy: the implementations satisfy the core's ports

    def _conforms(engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> None:
        _uow: ports.UnitOfWork = SqlUnitOfWork(sessions)
        _outbox: ports.Outbox = SqlOutbox(engine)


__all__ = [
    "Fleet",
    "SqlAnnouncementStore",
    "SqlBridgeStore",
    "SqlCommunityStore",
    "SqlDeliveryStore",
    "SqlHeartbeats",
    "SqlInboundStore",
    "SqlNativeEventStore",
    "SqlOutbox",
    "SqlSpaceStore",
    "SqlSubscriptionStore",
    "SqlUnitOfWork",
    "SqlUserStore",
    "unit_of_work_factory",
]
