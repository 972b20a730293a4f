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


# --------------------------------------------------------------------------- untrusted update shapes


def _is_int(v: object) -> bool:
    return type(v) is int  # not bool


def _user_problem(v: object, where: str) -> str | None:
    if not isinstance(v, dict):
        return f"{where} is not an object"
    if not _is_int(v.get("id")) or not isinstance(v.get("first_name", ""), str):
        return f"{where} has no usable id or name"
    if not isinstance(v.get("is_bot", False), bool) or not isinstance(v.get("language_code", ""), str | None):
        return f"{where} has odd fields"
    return None


def _chat_problem(v: object, where: str) -> str | None:
    if not isinstance(v, dict) or not _is_int(v.get("id")) or not isinstance(v.get("type"), str):
        return f"{where} has no usable id or type"
    return None


def _message_problem(v: object, where: str, *, depth: int = 0) -> str | None:
    if not isinstance(v, dict):
        return f"{where} is not an object"
    if not _is_int(v.get("message_id")) or not _is_int(v.get("date")):
        return f"{where} has no usable message_id or date"
    problem = _chat_problem(v.get("chat"), f"{where}.chat")
    if problem:
        return problem
    if "from" in v and (problem := _user_problem(v["from"], f"{where}.from")):
        return problem
    if "sender_chat" in v and (problem := _chat_problem(v["sender_chat"], f"{where}.sender_chat")):
        return problem
    if not isinstance(v.get("text", ""), str):
        return f"{where}.text is not a string"
    entities = v.get("entities", [])
    if not isinstance(entities, list) or not all(
        isinstance(e, dict)
        and isinstance(e.get("type"), str)
        and _is_int(e.get("offset"))
        and _is_int(e.get("length"))
        for e in entities
    ):
        return f"{where}.entities are malformed"
    if "reply_to_message" in v:
        if depth > 0:  # Telegram nests one level: a reply's reply is not included
            return f"{where} nests replies"
        return _message_problem(v["reply_to_message"], f"{where}.reply_to_message", depth=depth + 1)
    return None


def update_problem(data: dict[str, object]) -> str | None:
    """Why an update (untrusted JSON) cannot be handled, or None. Checks the parts our handlers read, with
    their types: what Telegram sends always passes; anything else (a forged or corrupted update) is
    refused here, as one plain log line, rather than failing deep in a handler with a traceback."""
    for kind in ("message", "edited_message"):
        if kind in data:
            return _message_problem(data[kind], kind)
    if "callback_query" in data:
        q = data["callback_query"]
        if not isinstance(q, dict) or not isinstance(q.get("id"), str):
            return "callback_query has no usable id"
        if problem := _user_problem(q.get("from"), "callback_query.from"):
            return problem
        if not isinstance(q.get("data", ""), str) or not isinstance(q.get("chat_instance", ""), str):
            return "callback_query has odd fields"
        if "message" in q:
            return _message_problem(q["message"], "callback_query.message")
        return None
    if "my_chat_member" in data:
        m = data["my_chat_member"]
        if not isinstance(m, dict) or not _is_int(m.get("date")):
            return "my_chat_member is malformed"
        if problem := _chat_problem(m.get("chat"), "my_chat_member.chat") or _user_problem(
            m.get("from"), "my_chat_member.from"
        ):
            return problem
        for side in ("old_chat_member", "new_chat_member"):
            member = m.get(side)
            if not isinstance(member, dict) or not isinstance(member.get("status"), str):
                return f"my_chat_member.{side} is malformed"
            if problem := _user_problem(member.get("user"), f"my_chat_member.{side}.user"):
                return problem
        return None
    return None  # a kind we did not ask for: nothing will handle it
