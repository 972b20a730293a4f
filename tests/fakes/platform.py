"""A recording in-memory ChatPlatform with switchable failures (the contract suite runs it too)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from core.errors import ChatUnavailable, RateLimited, RecipientUnreachable, TransientError
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
class FakePlatform:
    platform: Platform = Platform.CONSOLE
    closed_dms: set[UserRef] = field(default_factory=set)
    gone_chats: set[ChatRef] = field(default_factory=set)
    rate_limit_next: list[float] = field(default_factory=list)  # each entry: one 429 with that retry_after
    fail_next: int = 0  # that many TransientErrors
    dedupe_nonces: bool = True  # like Discord's enforce_nonce: a repeated key is not shown twice
    sent: list[Sent] = field(default_factory=list)
    _next_id: int = 0
    _seen_keys: dict[str, MessageRef] = field(default_factory=dict)
    started: bool = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.started = False

    def _gate(self) -> None:
        if self.rate_limit_next:
            raise RateLimited(self.rate_limit_next.pop(0))
        if self.fail_next > 0:
            self.fail_next -= 1
            raise TransientError("HTTP 502")

    def _msg(self, chat_id: str, key: str | None) -> MessageRef:
        if key is not None and self.dedupe_nonces and key in self._seen_keys:
            return self._seen_keys[key]
        self._next_id += 1
        ref = MessageRef(self.platform, chat_id, str(self._next_id))
        if key is not None:
            self._seen_keys[key] = ref
        return ref

    async def post(self, chat: ChatRef, notice: Notice, *, key: str) -> MessageRef:
        self._gate()
        if chat in self.gone_chats:
            raise ChatUnavailable(f"{chat} gone")
        dup = self.dedupe_nonces and key in self._seen_keys
        ref = self._msg(chat.id, key)
        if not dup:
            self.sent.append(Sent("post", str(chat), notice, key))
        return ref

    async def edit(self, message: MessageRef, notice: Notice) -> None:
        self._gate()
        if message.chat in self.gone_chats:
            raise ChatUnavailable("message gone")
        self.sent.append(Sent("edit", str(message), notice))

    async def direct(self, user: UserRef, notice: Notice, *, key: str) -> MessageRef:
        self._gate()
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
        if chat in self.gone_chats:
            raise ChatUnavailable(f"{chat} gone")
        ref = self._msg(chat.id, key)
        self.sent.append(Sent("mention", str(chat), notice, key, tuple(users)))
        return ref

    # --- inspection helpers ---
    def of(self, op: str) -> list[Sent]:
        return [s for s in self.sent if s.op == op]

    def dms_to(self, user: UserRef) -> list[Sent]:
        return [s for s in self.sent if s.op == "direct" and s.target == str(user)]
