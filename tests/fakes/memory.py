"""In-memory implementations of the core's persistence ports, for fast core tests.

A unit of work copies the state on entry and swaps it in on commit, so an exception inside ``async with``
leaves nothing behind — the same all-or-nothing the SQL stores give. tests/core/test_store_contract.py runs
the same contract against these and against storage/ on SQLite and PostgreSQL, so every observable behaviour
here mirrors storage/stores.py: orderings, what a duplicate or a dangling reference does (rejected, like a
primary or foreign key), which fields ``settle`` keeps, and ``counts`` listing every status.

Not modelled: isolation between concurrent units of work (a commit replaces the whole state; the tests run
one unit of work at a time) and ``get_for_update``'s lock.
"""

from __future__ import annotations

import copy
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import TracebackType

from core import rules
from core.ids import new_short_code, normal_short_code
from core.models import (
    Announcement,
    BridgedChannel,
    Community,
    Conversation,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    LeaseGrant,
    NativeEvent,
    Outcome,
    Space,
    SpaceStatus,
    Subscription,
    UserProfile,
)
from core.refs import ChatRef, Platform, UserRef, parse_chat, parse_user


@dataclass
class _State:
    spaces: dict[str, Space] = field(default_factory=dict)
    subs: dict[tuple[str, UserRef], Subscription] = field(default_factory=dict)
    deliveries: dict[int, Delivery] = field(default_factory=dict)
    keys: set[str] = field(default_factory=set)
    announcements: list[Announcement] = field(default_factory=list)
    users: dict[UserRef, UserProfile] = field(default_factory=dict)
    communities: dict[ChatRef, Community] = field(default_factory=dict)
    inbound: dict[tuple[str, str], tuple[str, datetime]] = field(default_factory=dict)
    events: dict[tuple[str, ChatRef], NativeEvent] = field(default_factory=dict)
    conversations: dict[tuple[ChatRef, UserRef], Conversation] = field(default_factory=dict)
    bridges: dict[tuple[str, ChatRef], BridgedChannel] = field(default_factory=dict)
    # link_member: (kind, member text) → group id
    links: dict[tuple[str, str], str] = field(default_factory=dict)
    feeds: dict[ChatRef, str] = field(default_factory=dict)  # feed_token: chat → token
    next_id: int = 1


class MemoryDB:
    def __init__(self) -> None:
        self.state = _State()

    def uow(self) -> MemoryUnitOfWork:
        return MemoryUnitOfWork(self)

    def outbox(self) -> MemoryOutbox:
        return MemoryOutbox(self)

    def deliveries(self) -> list[Delivery]:
        return sorted(self.state.deliveries.values(), key=lambda d: d.id or 0)


class _Stores:
    def __init__(self, st: _State) -> None:
        self.st = st

    def _space_exists(self, space_id: str) -> None:
        """The foreign key every Space-owned row has in storage/."""
        if space_id not in self.st.spaces:
            raise LookupError(f"no space {space_id!r} (foreign key)")


class MemorySpaceStore(_Stores):
    async def add(self, space: Space) -> None:
        if space.id in self.st.spaces:
            raise ValueError(f"space {space.id!r} exists (primary key)")
        self.st.spaces[space.id] = copy.copy(space)

    async def get(self, space_id: str) -> Space | None:
        s = self.st.spaces.get(space_id)
        return copy.copy(s) if s else None

    async def get_for_update(self, space_id: str) -> Space | None:
        return await self.get(space_id)

    async def save(self, space: Space) -> None:
        if space.id not in self.st.spaces:
            raise LookupError(f"no space {space.id!r} to save")
        self.st.spaces[space.id] = copy.copy(space)

    async def count_open_by_host(self, host: UserRef) -> int:
        return sum(1 for s in self.st.spaces.values() if s.host == host and s.status.is_open)

    async def upcoming_in_chat(self, chat: ChatRef, limit: int = 20) -> list[Space]:
        return await self.upcoming_in_chats([chat], limit)

    async def upcoming_in_chats(self, chats: Sequence[ChatRef], limit: int) -> list[Space]:
        # "announced in": scheduled there, or its card was posted there
        where = set(chats)
        announced = {a.space_id for a in self.st.announcements if a.message.chat in where}
        found = [
            s for s in self.st.spaces.values() if s.status.is_open and (s.chat in where or s.id in announced)
        ]
        found.sort(key=lambda s: (s.starts_at, s.id))
        return [copy.copy(s) for s in found[: max(limit, 0)]]

    async def list_stale(
        self, *, scheduled_before: datetime, live_before: datetime, limit: int
    ) -> list[Space]:
        found = [
            s
            for s in self.st.spaces.values()
            if (s.status is SpaceStatus.SCHEDULED and s.starts_at < scheduled_before)
            or (s.status is SpaceStatus.LIVE and s.started_at is not None and s.started_at < live_before)
        ]
        found.sort(key=lambda s: (s.starts_at, s.id))
        return [copy.copy(s) for s in found[: max(limit, 0)]]

    async def open_by_host(self, host: UserRef, *, limit: int, text: str = "") -> list[Space]:
        return self._open(lambda s: s.host == host, limit, text)

    async def open_in_scope(self, where: ChatRef, *, limit: int, text: str = "") -> list[Space]:
        if where.scope is None:
            return self._open(lambda s: s.chat == where, limit, text)
        return self._open(
            lambda s: s.chat.platform == where.platform and s.chat.scope == where.scope, limit, text
        )

    async def open_followed_by(self, user: UserRef, *, limit: int) -> list[Space]:
        followed = {sid for sid, u in self.st.subs if u == user}
        return self._open(lambda s: s.id in followed, limit, "")

    async def live_with_source(self, *, limit: int) -> list[Space]:
        found = [
            s for s in self.st.spaces.values() if s.status is SpaceStatus.LIVE and s.audio_source is not None
        ]
        found.sort(key=lambda s: (s.started_at or s.starts_at, s.id))
        return [copy.copy(s) for s in found[: max(limit, 0)]]

    def _open(self, keep: Callable[[Space], bool], limit: int, text: str) -> list[Space]:
        text = text.strip().lower()
        found = [
            s
            for s in self.st.spaces.values()
            if s.status.is_open and keep(s) and (not text or text in s.title.lower() or s.id.startswith(text))
        ]
        found.sort(key=lambda s: (s.starts_at, s.id))
        return [copy.copy(s) for s in found[: max(limit, 0)]]


class MemorySubscriptionStore(_Stores):
    async def add(self, sub: Subscription) -> bool:
        self._space_exists(sub.space_id)
        k = (sub.space_id, sub.user)
        if k in self.st.subs:
            return False
        self.st.subs[k] = sub
        return True

    async def remove(self, space_id: str, user: UserRef) -> bool:
        return self.st.subs.pop((space_id, user), None) is not None

    async def exists(self, space_id: str, user: UserRef) -> bool:
        return (space_id, user) in self.st.subs

    async def count(self, space_id: str) -> int:
        # people, not accounts (storage: distinct person group, or the account when not linked)
        return len(
            {self.st.links.get(("person", str(u)), str(u)) for sid, u in self.st.subs if sid == space_id}
        )

    async def list(self, space_id: str) -> list[Subscription]:
        found = [s for (sid, _), s in self.st.subs.items() if sid == space_id]
        return sorted(found, key=lambda s: (s.created_at, str(s.user)))


class MemoryDeliveryStore(_Stores):
    async def add(self, deliveries: Sequence[Delivery]) -> int:
        n = 0
        for d in deliveries:
            if d.space_id is not None:  # a reply has no Space (storage: a NULL foreign key)
                self._space_exists(d.space_id)
            if d.key in self.st.keys:
                continue
            row = replace(
                d,
                id=self.st.next_id,
                priority=d.priority if d.priority is not None else rules.priority(d.kind),
            )
            self.st.next_id += 1
            self.st.deliveries[row.id or 0] = row
            self.st.keys.add(d.key)
            n += 1
        return n

    async def fan_out(
        self, space_id: str, revision: int, kind: DeliveryKind, due_at: datetime, key_prefix: str
    ) -> int:
        space = self.st.spaces.get(space_id)
        rows: list[Delivery] = []
        mentions: list[Delivery] = []

        def rank(sub: Subscription) -> tuple[datetime, str]:
            return (sub.created_at, str(sub.user))

        # per person, the account subscribed last (storage: NOT EXISTS a newer one of the same person)
        last: dict[str, Subscription] = {}
        for (sid, _), s in self.st.subs.items():
            if sid != space_id:
                continue
            person = self.st.links.get(("person", str(s.user)), str(s.user))
            if person not in last or rank(s) > rank(last[person]):
                last[person] = s
        for (sid, _), s in self.st.subs.items():
            if sid != space_id or s not in last.values():
                continue
            profile = self.st.users.get(s.user)
            closed = profile is not None and profile.dm_reachable is False
            key = f"{key_prefix}:{s.user}"
            rows.append(
                Delivery(
                    key=key,
                    kind=kind,
                    platform=s.user.platform,
                    recipient=str(s.user),
                    space_id=space_id,
                    revision=revision,
                    due_at=due_at,
                    subject=str(s.via_chat) if s.via_chat else None,
                    status=(
                        DeliveryStatus.PENDING
                        if not closed
                        else DeliveryStatus.FALLBACK
                        if s.via_chat
                        else DeliveryStatus.DEAD
                    ),
                    last_error=(
                        None
                        if not closed
                        else rules.KNOWN_UNREACHABLE
                        if s.via_chat
                        else rules.NO_GROUP_TO_MENTION
                    ),
                )
            )
            if closed and s.via_chat and key not in self.st.keys and space is not None:
                mentions.append(
                    Delivery(
                        key=f"{key}:mention",
                        kind=DeliveryKind.MENTION,
                        platform=s.user.platform,
                        recipient=str(s.via_chat),
                        space_id=space_id,
                        revision=revision,
                        due_at=due_at,
                        subject=str(s.user),
                        about=kind,
                    )
                )
        inserted = await self.add(rows)
        await self.add(mentions)
        return inserted

    async def withdraw(
        self, space_id: str, kinds: Sequence[DeliveryKind], reason: str, *, recipient: str | None = None
    ) -> int:
        n = 0
        for d in self.st.deliveries.values():
            if recipient is not None and d.recipient != recipient:
                continue
            if d.space_id == space_id and d.kind in kinds and d.status is DeliveryStatus.PENDING:
                d.status = DeliveryStatus.WITHDRAWN
                d.last_error = reason
                n += 1
        return n

    async def tally(
        self, space_id: str
    ) -> dict[tuple[DeliveryKind, DeliveryKind | None, DeliveryStatus], int]:
        out: dict[tuple[DeliveryKind, DeliveryKind | None, DeliveryStatus], int] = {}
        for d in self.st.deliveries.values():
            if d.space_id == space_id:
                k = (d.kind, d.about, d.status)
                out[k] = out.get(k, 0) + 1
        return out

    async def list_for_space(self, space_id: str) -> list[Delivery]:
        found = [copy.copy(d) for d in self.st.deliveries.values() if d.space_id == space_id]
        return sorted(found, key=lambda d: (d.due_at, d.id or 0))

    async def get_by_key(self, key: str) -> Delivery | None:
        found = next((d for d in self.st.deliveries.values() if d.key == key), None)
        return copy.copy(found) if found else None


class MemoryAnnouncementStore(_Stores):
    async def add(self, ann: Announcement) -> None:
        self._space_exists(ann.space_id)
        # idempotent on the message handle alone (storage: UNIQUE (message)), whatever the space_id
        if all(a.message != ann.message for a in self.st.announcements):
            self.st.announcements.append(ann)

    async def list(self, space_id: str) -> list[Announcement]:
        return [a for a in self.st.announcements if a.space_id == space_id]


class MemoryUserStore(_Stores):
    async def get(self, user: UserRef) -> UserProfile | None:
        p = self.st.users.get(user)
        return copy.copy(p) if p else None

    async def get_many(self, users: Sequence[UserRef]) -> dict[UserRef, UserProfile]:
        return {u: copy.copy(self.st.users[u]) for u in users if u in self.st.users}

    async def upsert(self, profile: UserProfile) -> None:
        self.st.users[profile.user] = copy.copy(profile)

    async def set_reachable(self, user: UserRef, reachable: bool) -> None:
        p = self.st.users.get(user) or UserProfile(user)  # creates the profile if missing
        p.dm_reachable = reachable
        self.st.users[user] = p

    async def lock(self, user: UserRef) -> None:
        # the row exists afterwards, as in storage/; the lock itself is not modelled (see the module notes)
        self.st.users.setdefault(user, UserProfile(user))


class MemoryCommunityStore(_Stores):
    async def get(self, chat: ChatRef) -> Community | None:
        c = self.st.communities.get(chat)
        return copy.copy(c) if c else None

    async def upsert(self, community: Community) -> None:
        self.st.communities[community.chat] = copy.copy(community)


class MemoryInboundStore(_Stores):
    async def remember(self, platform: Platform, request_id: str, result: str) -> str | None:
        k = (str(platform), request_id)
        if k in self.st.inbound:
            return self.st.inbound[k][0]
        self.st.inbound[k] = (result, datetime.now(UTC))  # bookkeeping time, as the SQL store
        return None

    async def recall(self, platform: Platform, request_id: str) -> str | None:
        found = self.st.inbound.get((str(platform), request_id))
        return found[0] if found else None


def _scope(chat: ChatRef) -> str | None:
    return chat.scope  # as storage.tables.chat_scope


class MemoryNativeEventStore(_Stores):
    async def add(self, event: NativeEvent) -> bool:
        self._space_exists(event.space_id)
        k = (event.space_id, event.chat)
        if k in self.st.events:
            return False
        self.st.events[k] = event
        return True

    async def list(self, space_id: str) -> list[NativeEvent]:
        found = [e for (sid, _), e in self.st.events.items() if sid == space_id]
        return sorted(found, key=lambda e: str(e.chat))

    async def set_id(self, space_id: str, chat: ChatRef, event_id: str) -> None:
        k = (space_id, chat)
        if k not in self.st.events:
            raise LookupError(f"no event recorded for space {space_id!r} in {chat}")
        self.st.events[k] = replace(self.st.events[k], event_id=event_id)

    async def find(self, platform: Platform, scope: str | None, event_id: str) -> NativeEvent | None:
        for e in self.st.events.values():
            stored = _scope(e.chat)
            if e.chat.platform == platform and e.event_id == event_id and stored in (None, scope):
                return e
        return None


class MemoryBridgeStore(_Stores):
    async def add(self, bridge: BridgedChannel) -> bool:
        self._space_exists(bridge.space_id)
        k = (bridge.space_id, bridge.channel)
        if k in self.st.bridges:
            return False
        self.st.bridges[k] = bridge
        return True

    async def remove(self, space_id: str, channel: ChatRef) -> bool:
        return self.st.bridges.pop((space_id, channel), None) is not None

    async def count(self, space_id: str) -> int:
        return sum(1 for sid, _ in self.st.bridges if sid == space_id)

    async def list_many(self, space_ids: Sequence[str]) -> dict[str, list[BridgedChannel]]:
        wanted = set(space_ids)
        found: dict[str, list[BridgedChannel]] = {}
        for b in sorted(self.st.bridges.values(), key=lambda b: (b.created_at, str(b.channel))):
            if b.space_id in wanted:
                found.setdefault(b.space_id, []).append(b)
        return found

    async def list(self, space_id: str) -> list[BridgedChannel]:
        return (await self.list_many([space_id])).get(space_id, [])


class MemoryGatewayLease:
    """core.ports.GatewayLease in memory, with storage/lease.py's semantics (the lease tests run both)."""

    def __init__(self) -> None:
        self.leases: dict[str, LeaseGrant] = {}

    async def acquire(self, name: str, holder: str, *, now: datetime, ttl: timedelta) -> LeaseGrant | None:
        held = self.leases.get(name)
        if held is None:
            grant = LeaseGrant(name, holder, 1, now + ttl)
        elif held.holder == holder:
            grant = replace(held, until=now + ttl)
        elif held.until <= now:
            grant = LeaseGrant(name, holder, held.fence + 1, now + ttl)
        else:
            return None
        self.leases[name] = grant
        return grant

    async def renew(self, grant: LeaseGrant, *, now: datetime, ttl: timedelta) -> LeaseGrant | None:
        held = self.leases.get(grant.name)
        if held is None or (held.holder, held.fence) != (grant.holder, grant.fence):
            return None
        self.leases[grant.name] = renewed = replace(held, until=now + ttl)
        return renewed

    async def release(self, grant: LeaseGrant, *, now: datetime) -> bool:
        held = self.leases.get(grant.name)
        if held is None or (held.holder, held.fence) != (grant.holder, grant.fence):
            return False
        self.leases[grant.name] = replace(held, until=now)
        return True

    async def current(self, name: str) -> LeaseGrant | None:
        return self.leases.get(name)


class MemoryConversationStore(_Stores):
    async def get(self, chat: ChatRef, user: UserRef) -> Conversation | None:
        return self.st.conversations.get((chat, user))

    async def put(self, conversation: Conversation) -> None:
        self.st.conversations[(conversation.chat, conversation.user)] = conversation  # frozen: no copy

    async def delete(self, chat: ChatRef, user: UserRef) -> None:
        self.st.conversations.pop((chat, user), None)


class MemoryFeedStore(_Stores):
    async def token(self, chat: ChatRef, *, new: str, now: datetime) -> str:
        return self.st.feeds.setdefault(chat, new)

    async def known(self, chat: ChatRef) -> str | None:
        return self.st.feeds.get(chat)

    async def chat(self, token: str) -> ChatRef | None:
        return next((c for c, tok in self.st.feeds.items() if tok == token), None)


class MemoryLinkStore(_Stores):
    async def chats(self, chat: ChatRef) -> list[ChatRef]:
        return [parse_chat(m) for m in self._group("chat", str(chat))]

    async def link_chats(self, a: ChatRef, b: ChatRef, *, now: datetime) -> bool:
        return self._join("chat", str(a), str(b))

    async def unlink_chat(self, chat: ChatRef) -> list[ChatRef]:
        return [parse_chat(m) for m in self._leave("chat", str(chat))]

    async def accounts(self, user: UserRef) -> list[UserRef]:
        return [parse_user(m) for m in self._group("person", str(user))]

    async def link_accounts(self, a: UserRef, b: UserRef, *, now: datetime) -> bool:
        return self._join("person", str(a), str(b))

    async def unlink_account(self, user: UserRef) -> list[UserRef]:
        return [parse_user(m) for m in self._leave("person", str(user))]

    def _members(self, kind: str, group: str) -> list[str]:
        return sorted(m for (k, m), g in self.st.links.items() if k == kind and g == group)

    def _group(self, kind: str, member: str) -> list[str]:
        group = self.st.links.get((kind, member))
        return self._members(kind, group) if group is not None else [member]

    def _join(self, kind: str, a: str, b: str) -> bool:
        ga, gb = self.st.links.get((kind, a)), self.st.links.get((kind, b))
        if a == b or (ga is not None and ga == gb):
            return False
        target = ga or gb or secrets.token_hex(8)
        for key, g in list(self.st.links.items()):
            if key[0] == kind and g == gb:
                self.st.links[key] = target
        self.st.links[(kind, a)] = target
        self.st.links[(kind, b)] = target
        return True

    def _leave(self, kind: str, member: str) -> list[str]:
        group = self.st.links.get((kind, member))
        if group is None:
            return []
        others = [m for m in self._members(kind, group) if m != member]
        for m in [member, *others] if len(others) <= 1 else [member]:
            del self.st.links[(kind, m)]
        return others


def code_key(code: str) -> str | None:
    """storage.codes.code_key's rule (a short code in any typing is one key); hashing is storage's concern."""
    if isinstance(code, str) and re.fullmatch(r"[A-Za-z0-9_-]{16,64}", code):
        return code
    short = normal_short_code(code)
    return f"short:{short}" if short is not None else None


class MemoryOneTimeCodes:
    """core.ports.OneTimeCodes in memory (storage/codes.py's rules: hashed key, purpose, expiry, single use)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], tuple[datetime, str]] = {}

    async def issue(
        self, purpose: str, *, now: datetime, ttl: timedelta, subject: str = "", short: bool = False
    ) -> str:
        code = new_short_code() if short else secrets.token_urlsafe(32)
        key = code_key(code)
        assert key is not None
        self.rows[(purpose, key)] = (now + ttl, subject)
        return code

    async def consume(self, purpose: str, code: str, *, now: datetime) -> bool:
        return await self.redeem(purpose, code, now=now) is not None

    async def redeem(self, purpose: str, code: str, *, now: datetime) -> str | None:
        key = code_key(code)
        found = self.rows.get((purpose, key)) if key is not None else None
        if found is None or now >= found[0]:
            return None
        del self.rows[(purpose, key or "")]
        return found[1]


class MemoryUnitOfWork:
    def __init__(self, db: MemoryDB) -> None:
        self._db = db

    async def __aenter__(self) -> MemoryUnitOfWork:
        self._work = copy.deepcopy(self._db.state)
        self.spaces = MemorySpaceStore(self._work)
        self.subscriptions = MemorySubscriptionStore(self._work)
        self.deliveries = MemoryDeliveryStore(self._work)
        self.announcements = MemoryAnnouncementStore(self._work)
        self.users = MemoryUserStore(self._work)
        self.communities = MemoryCommunityStore(self._work)
        self.inbound = MemoryInboundStore(self._work)
        self.events = MemoryNativeEventStore(self._work)
        self.conversations = MemoryConversationStore(self._work)
        self.bridges = MemoryBridgeStore(self._work)
        self.links = MemoryLinkStore(self._work)
        self.feeds = MemoryFeedStore(self._work)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        del self._work

    async def commit(self) -> None:
        self._db.state = copy.deepcopy(self._work)


class MemoryOutbox:
    def __init__(self, db: MemoryDB) -> None:
        self._db = db

    async def claim_due(
        self, *, now: datetime, worker: str, lease: timedelta, batch: int, skip: Sequence[str] = ()
    ) -> list[Delivery]:
        if batch <= 0:
            return []
        heads = tuple(f"{lane}:" for lane in skip)
        due = [
            d
            for d in self._db.state.deliveries.values()
            if (
                (d.status is DeliveryStatus.PENDING and d.due_at <= now)
                or (d.status is DeliveryStatus.CLAIMED and d.lease_until is not None and d.lease_until <= now)
            )
            and not (heads and d.recipient.startswith(heads))
        ]
        due.sort(key=lambda d: (d.priority if d.priority is not None else 0, d.due_at, d.id or 0))
        token = secrets.token_hex(16)
        out = []
        for d in due[:batch]:
            d.status, d.claimed_by, d.lease_until = DeliveryStatus.CLAIMED, worker, now + lease
            d.attempts += 1
            d.claim = token
            out.append(copy.copy(d))
        return out

    async def renew(
        self, claims: Sequence[str], *, worker: str, now: datetime, lease: timedelta
    ) -> dict[str, set[int]]:
        renewed: dict[str, set[int]] = {c: set() for c in claims}
        for d in self._db.state.deliveries.values():
            if (
                d.claim in renewed
                and d.claimed_by == worker
                and d.status is DeliveryStatus.CLAIMED
                and d.id is not None
            ):
                d.lease_until = now + lease
                renewed[d.claim].add(d.id)
        return renewed

    async def release(self, *, worker: str, now: datetime) -> int:
        n = 0
        for d in self._db.state.deliveries.values():
            if d.claimed_by == worker and d.status is DeliveryStatus.CLAIMED:
                d.status, d.claimed_by, d.lease_until, d.claim = DeliveryStatus.PENDING, None, None, None
                d.last_error = "released: its worker restarted"
                n += 1
        return n

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
        # one transaction, as SqlOutbox: an invalid outcome anywhere in the batch records none of them
        if any(o.status is DeliveryStatus.CLAIMED for o in outcomes):
            raise ValueError("settle() records an outcome; CLAIMED is not one")
        return [self._settle_one(o, worker, now) for o in outcomes]

    def _settle_one(self, o: Outcome, worker: str, now: datetime) -> bool:
        if o.status is DeliveryStatus.CLAIMED:
            raise ValueError("settle() records an outcome; CLAIMED is not one")
        d = self._db.state.deliveries.get(o.delivery_id)
        if d is None or d.claimed_by != worker or d.status is not DeliveryStatus.CLAIMED:
            return False
        if o.claim is not None and d.claim != o.claim:
            return False
        d.status = o.status
        d.lease_until = None
        d.claim = None
        if o.error is not None:
            d.last_error = o.error
        if o.sent_ref is not None:
            d.sent_ref = o.sent_ref
        if o.late_by is not None:
            d.late_by = o.late_by
        if o.status is DeliveryStatus.SENT or o.sent_ref is not None:
            d.sent_at = now
        if o.status is DeliveryStatus.PENDING:
            d.due_at = o.due_at if o.due_at is not None else now
            d.claimed_by = None
            if o.refund_attempt:
                d.attempts = max(0, d.attempts - 1)
        return True

    async def next_due(self) -> datetime | None:
        times = [
            d.due_at if d.status is DeliveryStatus.PENDING else d.lease_until
            for d in self._db.state.deliveries.values()
            if d.status in (DeliveryStatus.PENDING, DeliveryStatus.CLAIMED)
        ]
        found = [t for t in times if t is not None]
        return min(found) if found else None

    async def prune(self, *, settled_before: datetime, requests_before: datetime, chunk: int = 5000) -> int:
        st = self._db.state
        over = {sid for sid, s in st.spaces.items() if s.status in (SpaceStatus.ENDED, SpaceStatus.CANCELLED)}
        settled = {
            DeliveryStatus.SENT,
            DeliveryStatus.SKIPPED,
            DeliveryStatus.FALLBACK,
            DeliveryStatus.WITHDRAWN,
        }
        gone = [
            i
            for i, d in st.deliveries.items()
            if d.status in settled
            and (d.space_id in over or (d.space_id is None and d.kind is DeliveryKind.REPLY))
            and d.due_at < settled_before
        ]
        for i in gone:
            st.keys.discard(st.deliveries.pop(i).key)
        old = [k for k, (_, at) in st.inbound.items() if at < requests_before]
        for k in old:
            del st.inbound[k]
        over_convs = [k for k, c in st.conversations.items() if c.expires_at < requests_before]
        for ck in over_convs:
            del st.conversations[ck]
        return len(gone) + len(old) + len(over_convs)

    async def counts(self) -> dict[str, int]:
        """Rows by status; every status is listed, with 0 when it has no rows (as SqlOutbox.counts)."""
        out = {str(s): 0 for s in DeliveryStatus}
        for d in self._db.state.deliveries.values():
            out[str(d.status)] += 1
        return out
