"""Opaque references to platform objects, stored in the database as strings.

``str(ref)`` always parses back with :func:`parse_user`, :func:`parse_chat` or :func:`parse_message`, so a
reference survives a round trip through a text column without a table per platform.

A reference may carry a ``scope``: the Discord guild or Slack workspace it lives in. Permissions, budgets,
community settings and (on Slack) tokens are per scope, so the scope travels with the reference instead of
being looked up again. The text form names it after the platform (``discord@<scope>:chat:<id>``); an
unscoped reference keeps the form it always had (``telegram:chat:<id>``), so rows written before scopes
existed read back unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Platform(StrEnum):
    CONSOLE = "console"
    DISCORD = "discord"
    TELEGRAM = "telegram"
    SLACK = "slack"


# the id of the pseudo-chat that stands for a whole scope (a guild's or workspace's own settings)
WHOLE_SCOPE = "*"


def _check_scope(scope: str | None) -> None:
    # ':' would end the head of the text form early and '@' would split it twice: neither round-trips
    if scope is not None and (not scope or ":" in scope or "@" in scope):
        raise ValueError(f"not a scope: {scope!r}")


def _head(platform: Platform, scope: str | None) -> str:
    return f"{platform}@{scope}" if scope is not None else str(platform)


def _split(text: str, kind: str, parts: int) -> tuple[Platform, str | None, list[str]]:
    # ids may themselves contain ':' (Slack thread ts never does, but be lenient): split from the left only
    head = text.split(":", 2)
    if len(head) != 3 or head[1] != kind:
        raise ValueError(f"not a {kind} reference: {text!r}")
    name, at, scope = head[0].partition("@")
    if at and (not scope or "@" in scope):
        raise ValueError(f"not a {kind} reference: {text!r}")
    platform = Platform(name)
    rest = head[2].split(":", parts - 1) if parts > 1 else [head[2]]
    if len(rest) != parts or not all(rest):
        raise ValueError(f"not a {kind} reference: {text!r}")
    return platform, (scope if at else None), rest


@dataclass(frozen=True, slots=True)
class UserRef:
    """A person. On Discord user ids are global: users carry no scope there (Slack's are per workspace)."""

    platform: Platform
    id: str
    scope: str | None = None

    def __post_init__(self) -> None:
        _check_scope(self.scope)

    def __str__(self) -> str:
        return f"{_head(self.platform, self.scope)}:user:{self.id}"


@dataclass(frozen=True, slots=True)
class ChatRef:
    """A place messages are posted: a group, a channel, a DM channel or a thread.

    ``scope`` is the guild (Discord) or workspace (Slack) the chat belongs to; None where the platform has
    no such thing (Telegram, the console) and for Discord DM channels."""

    platform: Platform
    id: str
    scope: str | None = None

    def __post_init__(self) -> None:
        _check_scope(self.scope)

    @property
    def community(self) -> ChatRef:
        """Where per-community settings of this chat live: the whole guild or workspace for a scoped chat
        (one zone, language and moderator role for all its channels), the chat itself otherwise."""
        if self.scope is None:
            return self
        return ChatRef(self.platform, WHOLE_SCOPE, scope=self.scope)

    def __str__(self) -> str:
        return f"{_head(self.platform, self.scope)}:chat:{self.id}"


@dataclass(frozen=True, slots=True)
class MessageRef:
    platform: Platform
    chat_id: str
    id: str
    scope: str | None = None

    def __post_init__(self) -> None:
        _check_scope(self.scope)

    @property
    def chat(self) -> ChatRef:
        return ChatRef(self.platform, self.chat_id, scope=self.scope)

    def __str__(self) -> str:
        return f"{_head(self.platform, self.scope)}:msg:{self.chat_id}:{self.id}"


def parse_user(text: str) -> UserRef:
    platform, scope, (uid,) = _split(text, "user", 1)
    return UserRef(platform, uid, scope=scope)


def parse_chat(text: str) -> ChatRef:
    platform, scope, (cid,) = _split(text, "chat", 1)
    return ChatRef(platform, cid, scope=scope)


def parse_message(text: str) -> MessageRef:
    # chat ids never contain ':' on any platform; message ids may (none do today)
    platform, scope, (cid, mid) = _split(text, "msg", 2)
    return MessageRef(platform, cid, mid, scope=scope)
