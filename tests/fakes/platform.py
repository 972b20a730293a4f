"""A recording in-memory ChatPlatform with switchable failures (the contract suite runs it too).

Every send is recorded, repeats included: a platform without an idempotency key (Telegram, Slack) shows a
repeated message twice, and the engine tests count duplicates from what was received here. A test that
wants Discord's ``enforce_nonce`` (a repeated key shown once) asks for ``dedupe_nonces=True``; the repeats
are still counted in ``repeats``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from core.errors import ChatUnavailable, RateLimited, RecipientUnreachable, TransientError
from core.models import EventSpec, EventStatus
from core.notices import Notice
from core.refs import ChatRef, MessageRef, Platform, UserRef


@dataclass
class Sent:
    op: str  # post | edit | direct | mention
    target: str
    notice: Notice
    key: str | None = None
    users: tuple[UserRef, ...] = ()


@dataclass
class EventCall:
    op: str  # create | update
    chat: ChatRef
    event_id: str
    spec: EventSpec
    key: str | None = None


@dataclass
class FakePlatform:
    platform: Platform = Platform.CONSOLE
    closed_dms: set[UserRef] = field(default_factory=set)
    gone_chats: set[ChatRef] = field(default_factory=set)
    rate_limit_next: list[float] = field(default_factory=list)  # each entry: one 429 with that retry_after
    fail_next: int = 0  # that many TransientErrors
    dedupe_nonces: bool = False  # True: like Discord's enforce_nonce, a repeated key is not shown twice
    sent: list[Sent] = field(default_factory=list)  # what recipients received
    repeats: int = 0  # sends whose key was seen before (shown or not, depending on dedupe_nonces)
    # called at the start of every send (after the failure switches): tests observe the world mid-send
    on_send: Callable[[str, str], Awaitable[None]] | None = None
    _next_id: int = 0
    _seen_keys: dict[str, MessageRef] = field(default_factory=dict)
    started: bool = False
    fail_start: int = 0  # start() raises that many times before it succeeds
    start_attempts: int = 0
    # core.ports.NativeEvents: every create / update received, and each event as it stands now
    event_calls: list[EventCall] = field(default_factory=list)
    events: dict[str, EventSpec] = field(default_factory=dict)
    # an update to this status makes a new platform object (Slack's Call at ACTIVE) and returns its id
    replace_event_on: EventStatus | None = None

    async def start(self) -> None:
        self.start_attempts += 1
        if self.fail_start > 0:
            self.fail_start -= 1
            raise ConnectionError(f"{self.platform}: cannot reach the platform")
        self.started = True

    async def stop(self) -> None:
        self.started = False

    def _gate(self) -> None:
        if self.rate_limit_next:
            raise RateLimited(self.rate_limit_next.pop(0))
        if self.fail_next > 0:
            self.fail_next -= 1
            raise TransientError("HTTP 502")

    async def _observe(self, op: str, target: str) -> None:
        if self.on_send is not None:
            await self.on_send(op, target)

    def _msg(self, chat_id: str, key: str | None) -> MessageRef:
        if key is not None and key in self._seen_keys:
            self.repeats += 1
            if self.dedupe_nonces:
                return self._seen_keys[key]
        self._next_id += 1
        ref = MessageRef(self.platform, chat_id, str(self._next_id))
        if key is not None:
            self._seen_keys[key] = ref
        return ref

    async def post(self, chat: ChatRef, notice: Notice, *, key: str) -> MessageRef:
        self._gate()
        await self._observe("post", str(chat))
        if chat in self.gone_chats:
            raise ChatUnavailable(f"{chat} gone")
        dup = self.dedupe_nonces and key in self._seen_keys
        ref = self._msg(chat.id, key)
        if not dup:
            self.sent.append(Sent("post", str(chat), notice, key))
        return ref

    async def edit(self, message: MessageRef, notice: Notice) -> None:
        self._gate()
        await self._observe("edit", str(message))
        if message.chat in self.gone_chats:
            raise ChatUnavailable("message gone")
        self.sent.append(Sent("edit", str(message), notice))

    async def direct(self, user: UserRef, notice: Notice, *, key: str) -> MessageRef:
        self._gate()
        await self._observe("direct", str(user))
        if user in self.closed_dms:
            raise RecipientUnreachable(f"{user} has closed DMs")
        dup = self.dedupe_nonces and key in self._seen_keys
        ref = self._msg(f"dm-{user.id}", key)
        if not dup:
            self.sent.append(Sent("direct", str(user), notice, key))
        return ref

    async def mention(
        self, chat: ChatRef, users: Mapping[UserRef, str], notice: Notice, *, key: str
    ) -> MessageRef:
        self._gate()
        await self._observe("mention", str(chat))
        if chat in self.gone_chats:
            raise ChatUnavailable(f"{chat} gone")
        dup = self.dedupe_nonces and key in self._seen_keys
        ref = self._msg(chat.id, key)
        if not dup:
            self.sent.append(Sent("mention", str(chat), notice, key, tuple(users)))
        return ref

    async def create_event(self, chat: ChatRef, spec: EventSpec, *, key: str) -> str:
        self._gate()
        await self._observe("create_event", str(chat))
        if chat in self.gone_chats:
            raise ChatUnavailable(f"{chat} gone")
        self._next_id += 1
        event_id = f"ev{self._next_id}"
        self.events[event_id] = spec
        self.event_calls.append(EventCall("create", chat, event_id, spec, key))
        return event_id

    async def update_event(self, chat: ChatRef, event_id: str, spec: EventSpec) -> str | None:
        self._gate()
        await self._observe("update_event", str(chat))
        if chat in self.gone_chats or event_id not in self.events:
            raise ChatUnavailable(f"no event {event_id} in {chat}")
        if self.replace_event_on is not None and spec.status is self.replace_event_on:
            # like Slack's Call, made anew when the Space goes live: the engine must store the new id
            self._next_id += 1
            new_id = f"ev{self._next_id}"
            self.events[new_id] = spec
            self.event_calls.append(EventCall("update", chat, new_id, spec))
            return new_id
        self.events[event_id] = spec
        self.event_calls.append(EventCall("update", chat, event_id, spec))
        return None

    # --- inspection helpers ---
    def of(self, op: str) -> list[Sent]:
        return [s for s in self.sent if s.op == op]

    def dms_to(self, user: UserRef) -> list[Sent]:
        return [s for s in self.sent if s.op == "direct" and s.target == str(user)]

    def received(self, op: str = "direct") -> Counter[str]:
        """How many messages each recipient received (count duplicates from here, not from keys)."""
        return Counter(s.target for s in self.sent if s.op == op)
