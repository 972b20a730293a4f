"""Telegram payload pieces → core values. Pure functions: no I/O, no PTB objects needed."""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.ids import looks_like_space_id
from core.refs import ChatRef, Platform, UserRef

# t.me/<bot>?start=<payload>: at most 64 characters of A-Za-z0-9_- (Telegram's deep-link rule)
START_PREFIX = "s_"
_PAYLOAD_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
GROUP_TYPES = frozenset({"group", "supergroup"})
MAX_INPUT = 1000  # characters of a command's arguments we are willing to parse


# Placeholder senders Telegram uses for posts that hide the person: anonymous group admins
# (GroupAnonymousBot), posts sent "as a channel" (Channel_Bot), and channel posts forwarded to a discussion.
ANONYMOUS_SENDERS = frozenset({1087968824, 136817688, 777000})


def is_anonymous(user_id: int | None, has_sender_chat: bool) -> bool:
    return has_sender_chat or user_id is None or user_id in ANONYMOUS_SENDERS


def user_ref(user_id: int) -> UserRef:
    return UserRef(Platform.TELEGRAM, str(user_id))


def chat_ref(chat_id: int) -> ChatRef:
    return ChatRef(Platform.TELEGRAM, str(chat_id))


def tg_id(ref_id: str) -> int:
    """Telegram ids are integers (negative for groups); refs store them as text."""
    return int(ref_id)


def display_name(first_name: str | None, last_name: str | None, username: str | None) -> str:
    name = " ".join(p for p in (first_name, last_name) if p).strip()
    return name or (f"@{username}" if username else "someone")


def deep_link(bot_username: str, space_id: str) -> str:
    """The link that opens the bot's DM and completes a subscription there."""
    return f"https://t.me/{bot_username}?start={START_PREFIX}{space_id}"


def share_link(link: str, title: str) -> str:
    from urllib.parse import quote

    return f"https://t.me/share/url?url={quote(link, safe='')}&text={quote(title, safe='')}"


def parse_start_payload(payload: str | None) -> str | None:
    """``s_<space id>`` → the space id; anything else (hostile, stale, other bots' formats) → None."""
    if not payload or not _PAYLOAD_RE.match(payload) or not payload.startswith(START_PREFIX):
        return None
    space_id = payload[len(START_PREFIX) :]
    return space_id if looks_like_space_id(space_id) else None


@dataclass(frozen=True, slots=True)
class CommandText:
    command: str  # lower-case, without "/" and "@bot"
    args: str  # the rest, stripped
    addressed_to_other_bot: bool = False


def parse_command(text: str, bot_username: str) -> CommandText | None:
    """``/space@MyBot tomorrow 20:00 AMA`` → CommandText("space", "tomorrow 20:00 AMA")."""
    if not text.startswith("/"):
        return None
    head, _, rest = text.partition(" ")
    name, _, target = head[1:].partition("@")
    other = bool(target) and target.lower() != bot_username.lower()
    return CommandText(name.lower(), rest.strip(), other)


def split_id(args: str) -> tuple[str | None, str]:
    """``<id> rest…`` → (id, rest); the id is normalised (lower-case) and validated."""
    first, _, rest = args.strip().partition(" ")
    candidate = first.strip().lower()
    return (candidate if looks_like_space_id(candidate) else None), rest.strip()
