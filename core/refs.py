"""Opaque references to platform objects, stored in the database as strings.

``str(ref)`` always parses back with :func:`parse_user`, :func:`parse_chat` or :func:`parse_message`, so a
reference survives a round trip through a text column without a table per platform.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Platform(StrEnum):
    CONSOLE = "console"
    DISCORD = "discord"
    TELEGRAM = "telegram"
    SLACK = "slack"


def _split(text: str, kind: str, parts: int) -> tuple[Platform, list[str]]:
    # ids may themselves contain ':' (Slack thread ts never does, but be lenient): split from the left only
    head = text.split(":", 2)
    if len(head) != 3 or head[1] != kind:
        raise ValueError(f"not a {kind} reference: {text!r}")
    platform = Platform(head[0])
    rest = head[2].split(":", parts - 1) if parts > 1 else [head[2]]
    if len(rest) != parts or not all(rest):
        raise ValueError(f"not a {kind} reference: {text!r}")
    return platform, rest


@dataclass(frozen=True, slots=True)
class UserRef:
    platform: Platform
    id: str

    def __str__(self) -> str:
        return f"{self.platform}:user:{self.id}"


@dataclass(frozen=True, slots=True)
class ChatRef:
    """A place messages are posted: a group, a channel, a DM channel or a thread."""

    platform: Platform
    id: str

    def __str__(self) -> str:
        return f"{self.platform}:chat:{self.id}"


@dataclass(frozen=True, slots=True)
class MessageRef:
    platform: Platform
    chat_id: str
    id: str

    @property
    def chat(self) -> ChatRef:
        return ChatRef(self.platform, self.chat_id)

    def __str__(self) -> str:
        return f"{self.platform}:msg:{self.chat_id}:{self.id}"


def parse_user(text: str) -> UserRef:
    platform, (uid,) = _split(text, "user", 1)
    return UserRef(platform, uid)


def parse_chat(text: str) -> ChatRef:
    platform, (cid,) = _split(text, "chat", 1)
    return ChatRef(platform, cid)


def parse_message(text: str) -> MessageRef:
    # chat ids never contain ':' on any platform; message ids may (none do today)
    platform, (cid, mid) = _split(text, "msg", 2)
    return MessageRef(platform, cid, mid)
