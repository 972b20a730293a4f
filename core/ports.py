"""Ports: what the core needs from the outside world, as contracts.

Implementations: ``storage`` (persistence), ``bots/<platform>`` (ChatPlatform), ``bots`` (clock, wake-ups,
budgets). Tests inject fakes that honour the same contracts (tests/core/test_store_contract.py runs one suite
against every store implementation).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Protocol, runtime_checkable

from core.audio import LinkHealth
from core.models import (
    Announcement,
    BridgedChannel,
    Community,
    Conversation,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    EventSpec,
    LeaseGrant,
    NativeEvent,
    Outcome,
    Space,
    Subscription,
    UserProfile,
)
from core.notices import Notice
from core.refs import ChatRef, MessageRef, Platform, UserRef


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, aware UTC. Tests drive it; nothing in core calls datetime.now()."""
        ...


# --------------------------------------------------------------------------- platforms


@runtime_checkable
class ChatPlatform(Protocol):
    platform: Platform

    async def start(self) -> None:
        """Connect (gateway, polling, socket). Returns once the platform can send."""
        ...

    async def stop(self) -> None:
        """Disconnect. MUST be idempotent and safe to call if start() failed half-way."""
        ...

    async def post(self, chat: ChatRef, notice: Notice, *, key: str) -> MessageRef:
        """Post ``notice`` in ``chat`` and return its handle (never None).

        Raises RateLimited (honour retry_after), ChatUnavailable (gone, no access), TransientError.
        ``key`` is the delivery's idempotency key, passed as a nonce where the platform has one.
        """
        ...

    async def edit(self, message: MessageRef, notice: Notice) -> None:
        """Replace a posted message's content. An edit that changes nothing MUST succeed silently."""
        ...

    async def direct(self, user: UserRef, notice: Notice, *, key: str) -> MessageRef:
        """Send a private message. Raises RecipientUnreachable when the user cannot be DMed."""
        ...

    async def mention(
        self, chat: ChatRef, users: Mapping[UserRef, str], notice: Notice, *, key: str
    ) -> MessageRef:
        """Post ``notice`` in ``chat`` mentioning every user (the DM fallback), within one message.
        ``users`` maps each user to the display name to show (platforms that mention by id may ignore it)."""
        ...


@runtime_checkable
class NativeEvents(Protocol):
    """Platforms with their own event object (Discord's Scheduled Events) implement it; the router checks
    ``isinstance(p, NativeEvents)``. The delivery engine drives it from ``event_create`` / ``event_update``
    outbox rows, like card edits: same budget, retries and outcomes (RateLimited, ChatUnavailable,
    TransientError as for ChatPlatform)."""

    async def create_event(self, chat: ChatRef, spec: EventSpec, *, key: str) -> str:
        """Create the event for the announcement chat ``chat`` (its scope is the guild) and return the
        platform's event id. ``key`` is the delivery's idempotency key (a retried create may repeat)."""
        ...

    async def update_event(self, chat: ChatRef, event_id: str, spec: EventSpec) -> str | None:
        """Make the event show ``spec``, status included (ACTIVE, COMPLETED, CANCELED). An update that
        changes nothing, or a status the event already has, MUST succeed silently. Returns the event's new
        id when the update replaced the platform's object (Slack's Call exists only while the Space is live:
        created at ACTIVE), which the engine then stores; None when the id stays."""
        ...


@runtime_checkable
class Places(Protocol):
    """Links to where a Space lives on a platform, and a person's picture, for the public share page
    (bots/places.py). Platforms that can implement it (Discord, Telegram, Slack); the router checks
    ``isinstance(p, Places)``.

    The page is public and read often: every method MUST NOT raise (None on any failure or when the platform
    has no such link), the link methods are pure (no network: the answer comes from the ref and what the
    adapter already knows), and :meth:`avatar_url` keeps its answers in a bounded cache with a TTL. Every
    link is absolute (https://, or tg://); never one that carries a secret (a bot token)."""

    def message_link(self, message: MessageRef) -> str | None:
        """A link that opens the posted ``message`` (or at least its chat) for a member of the chat."""
        ...

    def event_link(self, chat: ChatRef, event_id: str) -> str | None:
        """A link to the platform's own event ``event_id`` mirrored in the announcement chat ``chat``."""
        ...

    def subscribe_link(self, space_id: str) -> str | None:
        """A link that subscribes whoever follows it to the Space (Telegram's deep link into the bot's
        private chat); None where subscribing happens on the card itself, or while it cannot be built yet."""
        ...

    async def avatar_url(self, user: UserRef) -> str | None:
        """``user``'s picture as a public https:// URL, or None (none set, unknown, or the platform only
        serves it behind the bot's token). Bounded in time: a slow platform costs the picture only."""
        ...


class FrameReader(Protocol):
    """One consumer's place in a live Space's audio (core.audio: Opus, 48 kHz, 20-ms packets).

    Thread-safe: a voice connection reads it from its own player thread, every 20 ms, off the event loop."""

    def read(self) -> bytes:
        """The next Opus packet, in order, or ``core.audio.SILENCE_FRAME`` when none is ready yet. MUST NOT
        block (the caller keeps the 20-ms rhythm) and never returns b"" while the reader is open. A reader
        that fell far behind skips ahead to stay live."""
        ...

    def close(self) -> None:
        """Idempotent; ``read`` returns b"" afterwards (the player stops)."""
        ...


class FrameFeed(Protocol):
    """A live Space's audio, encoded once, for any number of consumers."""

    def reader(self) -> FrameReader:
        """A new reader positioned at the live edge (plus a small jitter margin)."""
        ...


@runtime_checkable
class VoiceBridge(Protocol):
    """Platforms whose bot can speak in a voice channel implement it (Discord); the audio supervisor checks
    ``isinstance(p, VoiceBridge)``. All methods run on the event loop; the audio itself flows off it."""

    def can_join(self, channel: ChatRef) -> bool:
        """This process's connection can carry voice into ``channel`` now (its gateway and shard are here)."""
        ...

    async def join(self, channel: ChatRef, feed: FrameFeed) -> None:
        """Connect to the voice or stage channel and play ``feed`` until :meth:`leave`; on a stage, become a
        speaker. Returns once playing. Raises ``ChatUnavailable`` when it can never work (missing Connect or
        Speak, channel gone) and ``TransientError`` otherwise. A connection that drops later is re-joined by
        the implementation with backoff, reported through :meth:`voice_health`."""
        ...

    async def leave(self, channel: ChatRef) -> None:
        """Stop playing and disconnect. MUST be idempotent and leave no connection or thread behind."""
        ...

    def voice_health(self, channel: ChatRef) -> LinkHealth:
        """Where the link to ``channel`` stands (STOPPED when never joined or left)."""
        ...


# --------------------------------------------------------------------------- persistence


class SpaceStore(Protocol):
    async def add(self, space: Space) -> None: ...

    async def get(self, space_id: str) -> Space | None: ...

    async def get_for_update(self, space_id: str) -> Space | None:
        """Like get, but the row stays locked until the unit of work ends (PostgreSQL FOR UPDATE)."""
        ...

    async def save(self, space: Space) -> None:
        """Persist every field of an existing Space."""
        ...

    async def count_open_by_host(self, host: UserRef) -> int: ...

    async def upcoming_in_chat(self, chat: ChatRef, limit: int = 20) -> list[Space]:
        """Scheduled or live Spaces announced in ``chat``, soonest first."""
        ...

    async def upcoming_in_chats(self, chats: Sequence[ChatRef], limit: int) -> list[Space]:
        """Scheduled or live Spaces announced in any of ``chats`` (each once), soonest first (then id)."""
        ...

    async def list_stale(
        self, *, scheduled_before: datetime, live_before: datetime, limit: int
    ) -> list[Space]:
        """Scheduled Spaces whose start is before ``scheduled_before`` (never started), and live Spaces
        started before ``live_before`` (never ended), oldest first."""
        ...

    # The three queries below feed autocomplete (called at every keystroke): each is one indexed query.
    # ``text`` narrows them to Spaces whose title contains it (case-insensitive; SQLite folds ASCII only)
    # or whose id starts with it; "" matches every Space. All return open Spaces, soonest first (then id).

    async def open_by_host(self, host: UserRef, *, limit: int, text: str = "") -> list[Space]:
        """Scheduled or live Spaces hosted by ``host``, wherever they were scheduled."""
        ...

    async def open_in_scope(self, where: ChatRef, *, limit: int, text: str = "") -> list[Space]:
        """Scheduled or live Spaces scheduled in ``where``'s scope: any chat of the same guild/workspace
        when ``where`` is scoped, ``where`` itself otherwise (a Telegram group, the console)."""
        ...

    async def open_followed_by(self, user: UserRef, *, limit: int) -> list[Space]:
        """Scheduled or live Spaces ``user`` is subscribed to."""
        ...

    async def live_with_source(self, *, limit: int) -> list[Space]:
        """Live Spaces that have an audio source (``audio_source`` not None), in one query, by start
        (``started_at``, then id): the Spaces whose audio must be playing somewhere."""
        ...


class SubscriptionStore(Protocol):
    async def add(self, sub: Subscription) -> bool:
        """True if new; False if the user was already subscribed (nothing changes)."""
        ...

    async def remove(self, space_id: str, user: UserRef) -> bool: ...

    async def exists(self, space_id: str, user: UserRef) -> bool: ...

    async def count(self, space_id: str) -> int: ...

    async def list(self, space_id: str) -> list[Subscription]: ...


class DeliveryStore(Protocol):
    """The outbox, inside a unit of work (written in the same transaction as the change causing it)."""

    async def add(self, deliveries: Sequence[Delivery]) -> int:
        """Insert rows; a row whose key exists already is ignored. Returns how many were inserted."""
        ...

    async def fan_out(
        self, space_id: str, revision: int, kind: DeliveryKind, due_at: datetime, key_prefix: str
    ) -> int:
        """One row per subscriber of the Space, in one statement (INSERT … SELECT), key
        ``f"{key_prefix}:{user}"``, recipient the user, subject the user's ``via_chat``. Returns the count.

        A subscriber already known unreachable by DM (``dm_reachable`` False) gets that row as FALLBACK
        ("known unreachable") and, in the same statement's transaction, its MENTION row (key
        ``f"{key_prefix}:{user}:mention"``, in ``via_chat``, ``about`` ``kind``): their mentions are due with
        the first DMs instead of after every DM was tried. One who subscribed privately (no ``via_chat``) has
        no group to be mentioned in: the row is DEAD (``rules.NO_GROUP_TO_MENTION``), never a mention in a
        private chat."""
        ...

    async def withdraw(
        self, space_id: str, kinds: Sequence[DeliveryKind], reason: str, *, recipient: str | None = None
    ) -> int:
        """Pending rows of those kinds for the Space (only ``recipient``'s, if given) become WITHDRAWN with
        ``reason``. Returns the count."""
        ...

    async def tally(
        self, space_id: str
    ) -> dict[tuple[DeliveryKind, DeliveryKind | None, DeliveryStatus], int]:
        """How many of the Space's rows there are by (kind, about, status) — counted in the database."""
        ...

    async def list_for_space(self, space_id: str) -> list[Delivery]: ...

    async def get_by_key(self, key: str) -> Delivery | None:
        """The row with this idempotency key, or None (e.g. to learn which message a sent reply became)."""
        ...


class BridgeStore(Protocol):
    """The voice channels a Space's audio is bridged into, besides its own (core.models.BridgedChannel)."""

    async def add(self, bridge: BridgedChannel) -> bool:
        """True if new; False if the channel was already bridged to that Space (the first record is kept)."""
        ...

    async def remove(self, space_id: str, channel: ChatRef) -> bool:
        """True if it was bridged (and no longer is)."""
        ...

    async def count(self, space_id: str) -> int: ...

    async def list_many(self, space_ids: Sequence[str]) -> dict[str, list[BridgedChannel]]:
        """The bridged channels of several Spaces in one query, each list ordered as :meth:`list`; a Space
        without any is absent from the result."""
        ...

    async def list(self, space_id: str) -> list[BridgedChannel]:
        """The Space's bridged channels, in the order they were added (created_at, then channel)."""
        ...


class AnnouncementStore(Protocol):
    async def add(self, ann: Announcement) -> None:
        """Idempotent on the message handle."""
        ...

    async def list(self, space_id: str) -> list[Announcement]: ...


class NativeEventStore(Protocol):
    """Which platform event mirrors a Space in which announcement chat (core.ports.NativeEvents)."""

    async def add(self, event: NativeEvent) -> bool:
        """Record that the Space has (or will have) an event in ``event.chat``. True if new; an existing
        record for the same (space, chat) is kept unchanged (False)."""
        ...

    async def list(self, space_id: str) -> list[NativeEvent]:
        """The Space's events, by chat."""
        ...

    async def set_id(self, space_id: str, chat: ChatRef, event_id: str) -> None:
        """The create was sent: remember the platform's id (what later updates and inbound changes use)."""
        ...

    async def find(self, platform: Platform, scope: str | None, event_id: str) -> NativeEvent | None:
        """The record of a platform event (inbound: a status change or an "Interested" click), or None
        when it is not one of ours. ``scope``: the guild or workspace the dispatch came from; a record in
        another scope never matches, one recorded without a scope matches any (the id decides)."""
        ...


class UserStore(Protocol):
    async def get(self, user: UserRef) -> UserProfile | None: ...

    async def get_many(self, users: Sequence[UserRef]) -> dict[UserRef, UserProfile]: ...

    async def upsert(self, profile: UserProfile) -> None: ...

    async def set_reachable(self, user: UserRef, reachable: bool) -> None: ...

    async def lock(self, user: UserRef) -> None:
        """Create the user's row if there is none, and hold it locked until the unit of work ends: a
        check-then-insert rule about one user (the host quota) or a read-modify-write of their profile then
        runs one at a time, across processes (PostgreSQL ``FOR UPDATE``; SQLite's write lock already does)."""
        ...


class CommunityStore(Protocol):
    async def get(self, chat: ChatRef) -> Community | None: ...

    async def upsert(self, community: Community) -> None: ...


class InboundStore(Protocol):
    """Processed inbound request ids: platforms retry, and a retried command must not act twice."""

    async def remember(self, platform: Platform, request_id: str, result: str) -> str | None:
        """Record ``request_id`` with ``result``. If it was already recorded, return the earlier result
        (and record nothing). Runs in the caller's transaction, so it commits with the change it guards."""
        ...

    async def recall(self, platform: Platform, request_id: str) -> str | None:
        """The result recorded for ``request_id``, or None if it was never recorded. Reads only."""
        ...


class ConversationStore(Protocol):
    """Conversations in progress, one per (chat, user) — the chat's platform is part of the key."""

    async def get(self, chat: ChatRef, user: UserRef) -> Conversation | None:
        """The conversation of ``user`` in ``chat``, expired or not (the caller judges expiry with its
        clock), or None."""
        ...

    async def put(self, conversation: Conversation) -> None:
        """Insert or replace the conversation of its (chat, user)."""
        ...

    async def delete(self, chat: ChatRef, user: UserRef) -> None:
        """Forget the conversation of ``user`` in ``chat`` (nothing happens if there is none)."""
        ...


class LinkStore(Protocol):
    """Links across platforms (issue 14): chats whose Spaces are announced in one another (a chat group), and
    one person's accounts on several platforms (a person). Both are groups of members: a member is in at most
    one group of its kind (the member is the key: two concurrent merges can never put it in two), and a group
    has at least two members (one left alone is no longer linked at all).

    Writes run in the caller's transaction and are serialized across processes (a link changes when a
    moderator types a command: rare), so a merge reads the groups it joins as they are."""

    async def chats(self, chat: ChatRef) -> list[ChatRef]:
        """The chats of ``chat``'s group, ``chat`` included, ordered by their text form; ``[chat]`` alone when
        it is not linked."""
        ...

    async def link_chats(self, a: ChatRef, b: ChatRef, *, now: datetime) -> bool:
        """Put ``a`` and ``b`` in one group: the union of their groups (a merge) when both are linked
        already. False (nothing changes) when they already share a group, or ``a == b``."""
        ...

    async def unlink_chat(self, chat: ChatRef) -> list[ChatRef]:
        """Take ``chat`` out of its group; returns the chats that were in it with ``chat`` (ordered like
        :meth:`chats`), ``[]`` when it was not linked. The last chat left alone is unlinked too."""
        ...

    async def accounts(self, user: UserRef) -> list[UserRef]:
        """The accounts of ``user``'s person, ``user`` included, like :meth:`chats`."""
        ...

    async def link_accounts(self, a: UserRef, b: UserRef, *, now: datetime) -> bool:
        """Like :meth:`link_chats`, for a person's accounts."""
        ...

    async def unlink_account(self, user: UserRef) -> list[UserRef]:
        """Like :meth:`unlink_chat`, for a person's accounts."""
        ...


class FeedStore(Protocol):
    """The secret tokens of chats' calendar feeds (``/feeds/<token>.ics``). A token belongs to one chat for
    good: linking or unlinking chats never changes a URL a calendar subscribed to (the feed reads the chat's
    link group when it is served)."""

    async def token(self, chat: ChatRef, *, new: str, now: datetime) -> str:
        """``chat``'s token: the stored one, else ``new`` stored now. Safe under concurrent first asks (in
        several processes): every caller gets the one token that was stored first."""
        ...

    async def chat(self, token: str) -> ChatRef | None:
        """The chat whose token ``token`` is, or None (one indexed read)."""
        ...

    async def known(self, chat: ChatRef) -> str | None:
        """``chat``'s token if it has one (reads only)."""
        ...


class UnitOfWork(Protocol):
    links: LinkStore
    feeds: FeedStore
    spaces: SpaceStore
    subscriptions: SubscriptionStore
    deliveries: DeliveryStore
    announcements: AnnouncementStore
    users: UserStore
    communities: CommunityStore
    inbound: InboundStore
    events: NativeEventStore
    conversations: ConversationStore
    bridges: BridgeStore

    async def __aenter__(self) -> UnitOfWork: ...

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Roll back anything not committed."""
        ...

    async def commit(self) -> None: ...


UnitOfWorkFactory = Callable[[], UnitOfWork]


class Outbox(Protocol):
    """The delivery engine's view of the outbox. Each method is its own short transaction."""

    async def claim_due(
        self, *, now: datetime, worker: str, lease: timedelta, batch: int, skip: Sequence[str] = ()
    ) -> list[Delivery]:
        """Atomically claim up to ``batch`` rows that are pending and due (``due_at <= now``), or claimed
        with an expired lease (``lease_until <= now``: the claimer died), most urgent first: by
        ``priority``, then ``due_at``, then id. Each becomes CLAIMED with claimed_by=worker,
        lease_until=now+lease, attempts+1 and a new ``claim`` token (one per call). Concurrent callers
        (other processes) MUST never receive the same row while its lease holds. Returned in that order.

        ``skip``: lanes whose rows are left alone this time — a lane is the head of a recipient's text
        form, before its first ':' (``slack@T123`` for every row to that workspace): the engine skips a
        workspace whose own budget is busy for longer than a claim lasts, so another's rows due behind
        its fan-out are claimed meanwhile."""
        ...

    async def renew(
        self, claims: Sequence[str], *, worker: str, now: datetime, lease: timedelta
    ) -> dict[str, set[int]]:
        """Extend the lease of every row still CLAIMED under one of these ``claims`` tokens to now+lease
        (the claimer is alive and still working on them). Returns, per token, the ids renewed: a row
        missing from its token's set was taken over by another worker (its lease had run out) or settled."""
        ...

    async def release(self, *, worker: str, now: datetime) -> int:
        """At a worker's start: every row still CLAIMED under its worker id belongs to an earlier process of
        that id which died (worker ids are unique among running workers). Those rows become PENDING at once
        (their due time kept), instead of waiting for their lease to run out. Returns the count."""
        ...

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
        """Record an outcome, only if ``worker`` still holds the claim (and, given ``claim``, that very
        claim). PENDING means retry at ``due_at`` (``refund_attempt`` gives back the attempt, for rate
        limits). Returns False if the claim was lost."""
        ...

    async def settle_many(self, outcomes: Sequence[Outcome], *, worker: str, now: datetime) -> list[bool]:
        """Record several outcomes in ONE transaction (one write lock on SQLite, one commit), each only if
        ``worker`` still holds its claim (``Outcome.claim``, when given); same semantics as :meth:`settle`.
        Returns, per outcome, whether it was recorded (False: the claim was lost)."""
        ...

    async def next_due(self) -> datetime | None:
        """When the engine next has something to claim: the earliest ``due_at`` of pending rows or
        ``lease_until`` of claimed ones (a lease that runs out frees its rows: whoever wakes then takes them
        over), or None."""
        ...

    async def counts(self) -> dict[str, int]:
        """Rows by status, for metrics and the doctor."""
        ...

    async def prune(self, *, settled_before: datetime, requests_before: datetime, chunk: int = 5000) -> int:
        """Housekeeping. Delete settled rows (sent, skipped, fallback, withdrawn — dead rows are kept for
        investigation) due before ``settled_before`` whose Space is over (ended or cancelled: no service
        ever inserts its keys again, so deleting them cannot let a message through twice) or that are
        replies (no Space; their event's request id is pruned much earlier), inbound
        request ids recorded before ``requests_before`` and conversations that expired before it (a retried
        request could no longer find its step either), in transactions of at most ``chunk`` rows (never one
        long lock). Returns the number of rows deleted."""
        ...


class GatewayLease(Protocol):
    """One owner per named connection across processes (a Discord gateway, or one group of its shards:
    ``discord:shards:0-1``). Each method is its own short transaction; ``now`` comes from the core's Clock
    (every process's clock is assumed in step to well under a lease's length)."""

    async def acquire(self, name: str, holder: str, *, now: datetime, ttl: timedelta) -> LeaseGrant | None:
        """Take the lease if it is free, expired (``until <= now``) or already ``holder``'s, until
        ``now + ttl``; None if another holder has it. A new holder gets a greater fence than any before."""
        ...

    async def renew(self, grant: LeaseGrant, *, now: datetime, ttl: timedelta) -> LeaseGrant | None:
        """Extend a held lease to ``now + ttl``; None if it was lost (taken over: its fence changed).
        A lease that ran out but that nobody took meanwhile is still ours: it is renewed."""
        ...

    async def release(self, grant: LeaseGrant, *, now: datetime) -> bool:
        """Give the lease up at once (a clean shutdown), if still held under this grant's fence."""
        ...

    async def current(self, name: str) -> LeaseGrant | None:
        """Who holds the lease (expired or not), or None if nobody ever did. For health and the doctor."""
        ...


# --------------------------------------------------------------------------- runtime


class WakeUps(Protocol):
    def arm(self, at: datetime) -> None:
        """Make sure the delivery engine runs at (or soon after) ``at``. Arming later than an already
        armed earlier time MUST NOT postpone it. Safe to call from any coroutine of the service's loop."""
        ...


class Budget(Protocol):
    """The platforms' send limits. Implementations may be shared by every process (the limits are the
    platform's, not a process's): then what one process takes or learns (a 429) holds for all of them."""

    async def acquire(
        self,
        platform: Platform,
        chat: str | None = None,
        *,
        max_wait: float = math.inf,
        scope: str | None = None,
    ) -> float:
        """Wait until a send to ``platform`` (and to ``chat``, for per-chat limits) is within budget, and
        take that send's share. ``chat`` is where the message lands: a chat's id, or for a DM the person's
        private chat (keyed by the user's id). ``scope`` is the workspace or guild the send goes to: where a
        platform's limits are per workspace (Slack: per app per workspace) each scope has its own platform
        budget; elsewhere (one limit per bot token: Discord, Telegram) it is ignored. Returns the seconds
        waited. If the wait would be longer than ``max_wait``,
        take nothing, wait not at all, and return minus the wait needed: the caller comes back then.
        (A hold that another process sets while this one waits can still end the wait that way: the
        seconds already waited are then lost, never the limit.)"""
        ...

    async def penalise(
        self, platform: Platform, retry_after: float, *, chat: str | None = None, scope: str | None = None
    ) -> None:
        """A 429 arrived: hold back sends to ``chat`` (or, with no chat, every send of the platform — of
        ``scope`` alone where limits are per scope, as in :meth:`acquire`) for ``retry_after`` seconds — in
        every process sharing this budget."""
        ...


class OneTimeCodes(Protocol):
    """Short-lived secrets handed to someone once and redeemed once: OAuth ``state`` values (Slack's
    install), codes that link two chats or two accounts (``/space link``). Shared by every process of the
    service (the database).

    ``purpose`` keeps uses apart: a code issued for one purpose is never accepted for another. A code may
    carry a ``subject`` (what it was issued for: the chat or the account to link), returned by
    :meth:`redeem`."""

    async def issue(
        self, purpose: str, *, now: datetime, ttl: timedelta, subject: str = "", short: bool = False
    ) -> str:
        """A new code, valid from ``now`` until ``now + ttl``, carrying ``subject`` (at most 255 characters).

        By default the code MUST be unguessable offline too (at least 128 random bits), URL-safe
        (``[A-Za-z0-9_-]``) and at most 64 characters: it travels in URLs (OAuth state).

        ``short``: a code a person types: 10 characters of Crockford's base32 (50 random bits) shown as
        ``XXXXX-XXXXX``, read back in any case, with or without the dash, ``O`` as ``0`` and ``I``/``L`` as
        ``1``. 50 bits are enough only because it is guessed online alone: each guess is one chat command
        (rate-limited by the platform), one code lives minutes (the caller's ``ttl``: 10 minutes for links)
        and dies at its first redeem — a million guesses a second for those 10 minutes would find one code
        with odds of about 1 in 2,000,000. Never use it for anything a copy of a URL could replay."""
        ...

    async def redeem(self, purpose: str, code: str, *, now: datetime) -> str | None:
        """Like :meth:`consume`, returning the code's ``subject`` ("" when issued without one) instead of
        True, and None instead of False."""
        ...

    async def consume(self, purpose: str, code: str, *, now: datetime) -> bool:
        """Redeem ``code``: True exactly once per issued code, for its purpose, before it expires (at
        ``now >= issued + ttl`` it is refused). Single use even when several consumers race, in several
        processes: at most one of them gets True. An unknown, expired, reused or malformed code is False
        (never an exception: the caller shows the user a plain "this link has expired")."""
        ...


class Links(Protocol):
    def space(self, space_id: str) -> str:
        """Absolute URL of the Space's share page."""
        ...
