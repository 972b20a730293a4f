"""SQLModel rows and their mapping to the core's models.

References (users, chats, messages) are stored as their ``str()`` form and parsed back with ``core.refs``;
datetimes use SQLModel's ``UTCDateTime`` (aware UTC in, aware UTC out — also on SQLite, which stores them
without an offset). Changing a table here needs a migration in ``storage/migrations/versions``; the storage
tests fail when the two disagree.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel
from sqlmodel.sql.sqltypes import UTCDateTime

from core import rules
from core.models import (
    Announcement,
    BridgedChannel,
    Community,
    Conversation,
    ConversationStep,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    LeaseGrant,
    NativeEvent,
    Space,
    SpaceStatus,
    Subscription,
    UserProfile,
)
from core.refs import ChatRef, Platform, parse_chat, parse_message, parse_user

# lengths: generous for every platform's ids; PostgreSQL enforces them, SQLite ignores them
REF = 255  # str(UserRef) / str(ChatRef) / str(MessageRef)
SHORT = 32  # enums, platform names
ZONE = 64  # IANA zone names, locales


# names for constraints, so later migrations (batch mode on SQLite) can refer to them
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
# 64-bit ids where rows accumulate (a fan-out writes one per subscriber); SQLite needs INTEGER for rowid
BIGID = BigInteger().with_variant(Integer(), "sqlite")


def _utc(nullable: bool) -> Any:
    return Field(default=None, sa_type=UTCDateTime, nullable=nullable)


class SpaceRow(SQLModel, table=True):
    __tablename__ = "space"
    __table_args__ = (
        Index("ix_space_host_status", "host", "status"),
        Index("ix_space_chat_status_starts", "chat", "status", "starts_at"),
        # the open Spaces of a guild/workspace (a moderator's autocomplete, at every keystroke)
        Index("ix_space_platform_scope_status", "platform", "scope", "status"),
    )

    id: str = Field(primary_key=True, max_length=64)
    title: str = Field(max_length=500)
    description: str = Field(default="", max_length=4000)
    host: str = Field(max_length=REF)
    chat: str = Field(max_length=REF)
    platform: str = Field(max_length=SHORT)
    # the chat's scope (guild/workspace id), None when unscoped: a copy of what ``chat`` says, as a column
    # so that "every open Space of this guild" is an index lookup
    scope: str | None = Field(default=None, max_length=REF)
    voice: str | None = Field(default=None, max_length=REF)  # str(ChatRef) of a voice/stage channel
    starts_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    tz: str = Field(max_length=ZONE)
    locale: str = Field(max_length=ZONE)
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    audio_source: str | None = Field(default=None, max_length=2000)
    status: str = Field(max_length=SHORT)
    revision: int = Field(default=1)
    started_at: datetime | None = _utc(nullable=True)
    ended_at: datetime | None = _utc(nullable=True)
    # the secret of the host's private page (core.ids.new_host_key); the server default only serves rows
    # inserted by hand: migration 0009 gave every existing Space its own random key
    host_key: str = Field(default="", max_length=64, sa_column_kwargs={"server_default": ""})


class BridgeRow(SQLModel, table=True):
    """A voice channel a Space's audio is also played in (core.models.BridgedChannel)."""

    __tablename__ = "space_bridge"

    space_id: str = Field(foreign_key="space.id", ondelete="CASCADE", primary_key=True, max_length=64)
    channel: str = Field(primary_key=True, max_length=REF)  # str(ChatRef) of a voice or stage channel
    added_by: str = Field(max_length=REF)
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)


class SubscriptionRow(SQLModel, table=True):
    __tablename__ = "subscription"
    # "the Spaces I follow": by user (the primary key leads with the Space)
    __table_args__ = (Index("ix_subscription_user_ref", "user_ref"),)

    space_id: str = Field(foreign_key="space.id", ondelete="CASCADE", primary_key=True, max_length=64)
    # "user" is reserved in PostgreSQL: user_ref everywhere
    user_ref: str = Field(primary_key=True, max_length=REF)
    platform: str = Field(max_length=SHORT)
    via_chat: str | None = Field(default=None, max_length=REF)
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)


class UserIdentityRow(SQLModel, table=True):
    """One row per platform user (a Discord user and a Slack user are two identities)."""

    __tablename__ = "user_identity"

    user_ref: str = Field(primary_key=True, max_length=REF)
    platform: str = Field(max_length=SHORT)
    tz: str | None = Field(default=None, max_length=ZONE)
    locale: str | None = Field(default=None, max_length=ZONE)
    dm_reachable: bool | None = Field(default=None)
    dm_channel: str | None = Field(default=None, max_length=REF)
    display_name: str | None = Field(default=None, max_length=255)


class CommunityRow(SQLModel, table=True):
    __tablename__ = "community"

    chat: str = Field(primary_key=True, max_length=REF)
    platform: str = Field(max_length=SHORT)
    tz: str | None = Field(default=None, max_length=ZONE)
    locale: str | None = Field(default=None, max_length=ZONE)
    moderator_role: str | None = Field(default=None, max_length=255)


class AnnouncementRow(SQLModel, table=True):
    __tablename__ = "announcement"

    id: int | None = Field(default=None, primary_key=True)
    space_id: str = Field(foreign_key="space.id", ondelete="CASCADE", index=True, max_length=64)
    message: str = Field(max_length=REF, unique=True)  # the edit handle; idempotent on it
    chat: str = Field(max_length=REF, index=True)  # message's chat: "Spaces announced in this chat"
    platform: str = Field(max_length=SHORT)


class DeliveryRow(SQLModel, table=True):
    """The outbox (docs/architecture.md). Claimed with a lease; settled only under the claim's token."""

    __tablename__ = "delivery"
    __table_args__ = (
        Index("ix_delivery_status_due", "status", "due_at"),
        # the hot set of the claim query stays small however many rows were ever sent (PostgreSQL only)
        Index("ix_delivery_pending_due", "due_at", postgresql_where=text("status = 'pending'")).ddl_if(
            dialect="postgresql"
        ),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BIGID)
    key: str = Field(max_length=255, unique=True)
    kind: str = Field(max_length=SHORT)
    platform: str = Field(max_length=SHORT)
    recipient: str = Field(max_length=REF)
    subject: str | None = Field(default=None, max_length=REF)
    about: str | None = Field(default=None, max_length=SHORT)
    # NULL for replies (kind "reply"): an answer to a message is about no Space
    space_id: str | None = Field(
        default=None, foreign_key="space.id", ondelete="CASCADE", index=True, max_length=64, nullable=True
    )
    revision: int
    due_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    status: str = Field(max_length=SHORT)
    claimed_by: str | None = Field(default=None, max_length=255)
    lease_until: datetime | None = _utc(nullable=True)
    attempts: int = Field(default=0)
    last_error: str | None = Field(default=None)
    sent_ref: str | None = Field(default=None, max_length=REF)
    sent_at: datetime | None = _utc(nullable=True)
    late_by: float | None = Field(default=None)
    payload: str | None = Field(default=None, sa_type=Text, nullable=True)  # a reply's content (JSON)
    priority: int = Field(default=rules.PRIORITY_OTHER)  # claim order, lower first (core.rules.priority)
    claim_token: str | None = Field(default=None, max_length=SHORT)  # fencing token of the current claim


class InboundRequestRow(SQLModel, table=True):
    """Inbound request ids already acted on (platforms retry webhooks and interactions)."""

    __tablename__ = "inbound_request"
    __table_args__ = (UniqueConstraint("platform", "request_id"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BIGID)
    platform: str = Field(max_length=SHORT)
    request_id: str = Field(max_length=255)
    result: str
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False, index=True)  # for pruning


class ConversationRow(SQLModel, table=True):
    """A conversation in progress (``/space`` alone: the title, then the time), one per (chat, user): it
    survives a restart and any web process continues it. ``state`` and ``before`` are JSON
    (core.models.ConversationStep)."""

    __tablename__ = "conversation"

    chat: str = Field(primary_key=True, max_length=REF)  # str(ChatRef): the platform is part of it
    user_ref: str = Field(primary_key=True, max_length=REF)
    platform: str = Field(max_length=SHORT)
    step: str = Field(max_length=SHORT)
    state: str = Field(sa_type=Text)
    before: str | None = Field(default=None, sa_type=Text, nullable=True)
    request_id: str | None = Field(default=None, max_length=255)
    expires_at: datetime = Field(sa_type=UTCDateTime, nullable=False, index=True)  # for pruning


class WorkerHeartbeatRow(SQLModel, table=True):
    """Live workers (the spaces_live_workers metric)."""

    __tablename__ = "worker_heartbeat"

    worker_id: str = Field(primary_key=True, max_length=255)
    last_seen: datetime = Field(sa_type=UTCDateTime, nullable=False, index=True)
    # since when some worker has been alive without a gap, as this worker inherited it when it joined: the
    # oldest value among live rows tells whether the service was running when a notification came due
    fleet_since: datetime | None = _utc(nullable=True)


class WorkerMetricsRow(SQLModel, table=True):
    """Each worker's latest metrics (a JSON snapshot, written at every heartbeat), so that one scrape of a web
    process shows every worker's figures: workers serve no HTTP (a PaaS worker dyno cannot be reached)."""

    __tablename__ = "worker_metrics"

    worker_id: str = Field(primary_key=True, max_length=255)
    updated_at: datetime = Field(sa_type=UTCDateTime, nullable=False, index=True)
    snapshot: str


class SendBudgetRow(SQLModel, table=True):
    """The send budget every process shares (storage/budget.py): one row per platform, chat and group.
    Times are seconds since the epoch on the budget's clock (PostgreSQL's, on PostgreSQL). On PostgreSQL the
    migration makes the table UNLOGGED: rewritten at every send, it needs no WAL and no disk flush."""

    __tablename__ = "send_budget"

    key: str = Field(primary_key=True, max_length=300)  # "telegram", "telegram:chat:<id>", "…:group:<id>"
    tat: float = Field(default=0.0)  # spacing keys: the next free slot
    slots: str = Field(default="")  # the platform's islands, or a group's last slots: ascending, spaced
    held_until: float = Field(default=0.0)  # a 429's hold
    expires: float = Field(default=0.0)  # when the row stops constraining anything (pruning)


class NativeEventRow(SQLModel, table=True):
    """A Space mirrored as a platform's own event (Discord Scheduled Event), one per announcement chat."""

    __tablename__ = "native_event"
    __table_args__ = (Index("ix_native_event_lookup", "platform", "event_id"),)

    space_id: str = Field(foreign_key="space.id", ondelete="CASCADE", primary_key=True, max_length=64)
    chat: str = Field(primary_key=True, max_length=REF)
    platform: str = Field(max_length=SHORT)
    scope: str | None = Field(default=None, max_length=REF)  # the guild / workspace: inbound lookups
    event_id: str | None = Field(default=None, max_length=REF)  # None until the create was sent


class PlatformLeaseRow(SQLModel, table=True):
    """One owner per gateway connection (or shard group) across processes (storage/lease.py)."""

    __tablename__ = "platform_lease"

    name: str = Field(primary_key=True, max_length=255)  # "discord", "discord:shards:0-1"
    holder: str = Field(max_length=255)
    until: datetime = Field(sa_type=UTCDateTime, nullable=False)
    fence: int = Field(default=1, sa_type=BIGID)  # grows at every change of holder


class OneTimeCodeRow(SQLModel, table=True):
    """An unredeemed one-time code (storage/codes.py): OAuth states, chat-linking codes. Only the code's
    SHA-256 is kept: whoever reads the table cannot redeem what it holds. Redeeming deletes the row."""

    __tablename__ = "one_time_code"
    __table_args__ = (Index("ix_one_time_code_expires_at", "expires_at"),)

    purpose: str = Field(primary_key=True, max_length=SHORT)
    code_hash: str = Field(primary_key=True, max_length=64)  # hex SHA-256 of the code
    expires_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    # what the code was issued for (the chat or account to link); "" for none (OAuth states)
    subject: str = Field(default="", max_length=REF, sa_column_kwargs={"server_default": ""})


class LinkRow(SQLModel, table=True):
    """A member of a link group (core.ports.LinkStore): a chat of a chat group (``kind`` "chat") or an
    account of a person (``kind`` "person"). The member is the key: it is in one group at most, whatever
    two merges do at once."""

    __tablename__ = "link_member"
    __table_args__ = (Index("ix_link_member_kind_group_id", "kind", "group_id"),)

    kind: str = Field(primary_key=True, max_length=SHORT)
    member: str = Field(primary_key=True, max_length=REF)  # str(ChatRef) or str(UserRef)
    group_id: str = Field(max_length=SHORT)
    linked_at: datetime = Field(sa_type=UTCDateTime, nullable=False)


class FeedTokenRow(SQLModel, table=True):
    """The secret of a chat's calendar feed (``/feeds/<token>.ics``, core.ports.FeedStore). The token
    belongs to the chat, not to its link group: a merge or an unlink never changes a URL someone subscribed
    to (the feed lists the Spaces of the chat's group as it is when read). Unique: a lookup by token is one
    index read, and two processes that make a chat's token at once agree on the first one stored."""

    __tablename__ = "feed_token"

    chat: str = Field(primary_key=True, max_length=REF)
    token: str = Field(max_length=64, unique=True)
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)


metadata = SQLModel.metadata
space_t = SpaceRow.__table__  # type: ignore[attr-defined]
subscription_t = SubscriptionRow.__table__  # type: ignore[attr-defined]
user_t = UserIdentityRow.__table__  # type: ignore[attr-defined]
community_t = CommunityRow.__table__  # type: ignore[attr-defined]
announcement_t = AnnouncementRow.__table__  # type: ignore[attr-defined]
delivery_t = DeliveryRow.__table__  # type: ignore[attr-defined]
inbound_t = InboundRequestRow.__table__  # type: ignore[attr-defined]
conversation_t = ConversationRow.__table__  # type: ignore[attr-defined]
heartbeat_t = WorkerHeartbeatRow.__table__  # type: ignore[attr-defined]
worker_metrics_t = WorkerMetricsRow.__table__  # type: ignore[attr-defined]
send_budget_t = SendBudgetRow.__table__  # type: ignore[attr-defined]
native_event_t = NativeEventRow.__table__  # type: ignore[attr-defined]
platform_lease_t = PlatformLeaseRow.__table__  # type: ignore[attr-defined]
bridge_t = BridgeRow.__table__  # type: ignore[attr-defined]
one_time_code_t = OneTimeCodeRow.__table__  # type: ignore[attr-defined]
link_t = LinkRow.__table__  # type: ignore[attr-defined]
feed_token_t = FeedTokenRow.__table__  # type: ignore[attr-defined]

TABLES = (
    space_t,
    subscription_t,
    user_t,
    community_t,
    announcement_t,
    delivery_t,
    inbound_t,
    conversation_t,
    heartbeat_t,
    worker_metrics_t,
    send_budget_t,
    native_event_t,
    platform_lease_t,
    bridge_t,
    one_time_code_t,
    link_t,
    feed_token_t,
)


def include_object_for(dialect_name: str) -> Any:
    """Alembic ``include_object`` hook: leave out objects whose DDL is for another dialect (``ddl_if``), so
    autogenerate on SQLite does not ask for the PostgreSQL-only partial index."""

    def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        ddl_if = getattr(obj, "_ddl_if", None)
        if ddl_if is not None and ddl_if.dialect is not None:
            wanted = ddl_if.dialect
            return dialect_name in ((wanted,) if isinstance(wanted, str) else tuple(wanted))
        if type_ == "table" and reflected and compare_to is None:
            return name in metadata.tables  # tables of other tools in the same database are not ours
        return True

    return include_object


# --------------------------------------------------------------------------- rows ↔ core models


def space_values(space: Space) -> dict[str, Any]:
    return {
        "id": space.id,
        "title": space.title,
        "description": space.description,
        "host": str(space.host),
        "chat": str(space.chat),
        "platform": str(space.chat.platform),
        "scope": space.chat.scope,
        "voice": str(space.voice) if space.voice is not None else None,
        "starts_at": space.starts_at,
        "tz": space.tz,
        "locale": space.locale,
        "created_at": space.created_at,
        "audio_source": space.audio_source,
        "status": str(space.status),
        "revision": space.revision,
        "started_at": space.started_at,
        "ended_at": space.ended_at,
        "host_key": space.host_key,
    }


def space_from_row(row: Any) -> Space:
    return Space(
        id=row.id,
        title=row.title,
        host=parse_user(row.host),
        chat=parse_chat(row.chat),
        starts_at=row.starts_at,
        tz=row.tz,
        locale=row.locale,
        created_at=row.created_at,
        description=row.description,
        audio_source=row.audio_source,
        voice=parse_chat(row.voice) if row.voice is not None else None,
        status=SpaceStatus(row.status),
        revision=row.revision,
        started_at=row.started_at,
        ended_at=row.ended_at,
        host_key=row.host_key,
    )


def bridge_values(bridge: BridgedChannel) -> dict[str, Any]:
    return {
        "space_id": bridge.space_id,
        "channel": str(bridge.channel),
        "added_by": str(bridge.added_by),
        "created_at": bridge.created_at,
    }


def bridge_from_row(row: Any) -> BridgedChannel:
    return BridgedChannel(
        space_id=row.space_id,
        channel=parse_chat(row.channel),
        added_by=parse_user(row.added_by),
        created_at=row.created_at,
    )


def subscription_values(sub: Subscription) -> dict[str, Any]:
    return {
        "space_id": sub.space_id,
        "user_ref": str(sub.user),
        "platform": str(sub.user.platform),
        "via_chat": str(sub.via_chat) if sub.via_chat is not None else None,
        "created_at": sub.created_at,
    }


def subscription_from_row(row: Any) -> Subscription:
    return Subscription(
        space_id=row.space_id,
        user=parse_user(row.user_ref),
        created_at=row.created_at,
        via_chat=parse_chat(row.via_chat) if row.via_chat is not None else None,
    )


def delivery_values(d: Delivery) -> dict[str, Any]:
    values: dict[str, Any] = {
        "key": d.key,
        "kind": str(d.kind),
        "platform": str(d.platform),
        "recipient": d.recipient,
        "subject": d.subject,
        "about": str(d.about) if d.about is not None else None,
        "space_id": d.space_id,
        "revision": d.revision,
        "due_at": d.due_at,
        "status": str(d.status),
        "claimed_by": d.claimed_by,
        "lease_until": d.lease_until,
        "attempts": d.attempts,
        "last_error": d.last_error,
        "sent_ref": d.sent_ref,
        "sent_at": d.sent_at,
        "late_by": d.late_by,
        "payload": d.payload,
        "priority": d.priority if d.priority is not None else rules.priority(d.kind),
        "claim_token": d.claim,
    }
    if d.id is not None:
        values["id"] = d.id
    return values


def delivery_from_row(row: Any) -> Delivery:
    return Delivery(
        id=row.id,
        key=row.key,
        kind=DeliveryKind(row.kind),
        platform=Platform(row.platform),
        recipient=row.recipient,
        subject=row.subject,
        about=DeliveryKind(row.about) if row.about is not None else None,
        space_id=row.space_id,
        revision=row.revision,
        due_at=row.due_at,
        status=DeliveryStatus(row.status),
        claimed_by=row.claimed_by,
        lease_until=row.lease_until,
        attempts=row.attempts,
        last_error=row.last_error,
        sent_ref=row.sent_ref,
        sent_at=row.sent_at,
        late_by=row.late_by,
        payload=row.payload,
        priority=row.priority,
        claim=row.claim_token,
    )


def announcement_values(ann: Announcement) -> dict[str, Any]:
    return {
        "space_id": ann.space_id,
        "message": str(ann.message),
        "chat": str(ann.message.chat),
        "platform": str(ann.message.platform),
    }


def announcement_from_row(row: Any) -> Announcement:
    return Announcement(space_id=row.space_id, message=parse_message(row.message))


def user_values(profile: UserProfile) -> dict[str, Any]:
    return {
        "user_ref": str(profile.user),
        "platform": str(profile.user.platform),
        "tz": profile.tz,
        "locale": profile.locale,
        "dm_reachable": profile.dm_reachable,
        "dm_channel": profile.dm_channel,
        "display_name": profile.display_name,
    }


def user_from_row(row: Any) -> UserProfile:
    return UserProfile(
        user=parse_user(row.user_ref),
        tz=row.tz,
        locale=row.locale,
        dm_reachable=row.dm_reachable,
        dm_channel=row.dm_channel,
        display_name=row.display_name,
    )


def community_values(c: Community) -> dict[str, Any]:
    return {
        "chat": str(c.chat),
        "platform": str(c.chat.platform),
        "tz": c.tz,
        "locale": c.locale,
        "moderator_role": c.moderator_role,
    }


def community_from_row(row: Any) -> Community:
    return Community(
        chat=parse_chat(row.chat), tz=row.tz, locale=row.locale, moderator_role=row.moderator_role
    )


def chat_scope(chat: ChatRef) -> str | None:
    """The guild / workspace a chat belongs to (None: unscoped, as every reference written before scopes)."""
    return chat.scope


def native_event_values(event: NativeEvent) -> dict[str, Any]:
    return {
        "space_id": event.space_id,
        "chat": str(event.chat),
        "platform": str(event.chat.platform),
        "scope": chat_scope(event.chat),
        "event_id": event.event_id,
    }


def native_event_from_row(row: Any) -> NativeEvent:
    return NativeEvent(space_id=row.space_id, chat=parse_chat(row.chat), event_id=row.event_id)


def lease_from_row(row: Any) -> LeaseGrant:
    return LeaseGrant(name=row.name, holder=row.holder, fence=int(row.fence), until=row.until)


def _step_json(step: ConversationStep) -> str:
    return json.dumps(
        {"step": step.step, "fields": dict(step.fields), "questions": list(step.questions)},
        ensure_ascii=False,
        separators=(",", ":"),
    )


def _step_from_json(text: str) -> ConversationStep:
    body = json.loads(text)
    return ConversationStep(
        step=str(body["step"]),
        fields=tuple((str(k), str(v)) for k, v in body.get("fields", {}).items()),
        questions=tuple(str(q) for q in body.get("questions", [])),
    )


def conversation_values(c: Conversation) -> dict[str, Any]:
    return {
        "chat": str(c.chat),
        "user_ref": str(c.user),
        "platform": str(c.chat.platform),
        "step": c.state.step,
        "state": _step_json(c.state),
        "before": _step_json(c.before) if c.before is not None else None,
        "request_id": c.request_id,
        "expires_at": c.expires_at,
    }


def conversation_from_row(row: Any) -> Conversation:
    return Conversation(
        chat=parse_chat(row.chat),
        user=parse_user(row.user_ref),
        state=_step_from_json(row.state),
        expires_at=row.expires_at,
        request_id=row.request_id,
        before=_step_from_json(row.before) if row.before is not None else None,
    )
