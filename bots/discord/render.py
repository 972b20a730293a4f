"""Core notices → Discord message payloads (JSON, as the REST API takes them). Pure: sends nothing.

Titles, descriptions and names are user input: they are escaped so that ``**x**`` shows as typed and
``@everyone`` / ``<@123>`` / ``<@&1>`` show as text, and every payload carries ``allowed_mentions`` so that
even a mention that slipped through pings nobody (the DM fallback's mentions name exactly its users). Every
payload fits Discord's limits (content 2,000, embed title 256, description 4,096, button label 80,
custom_id 100): whole lines are dropped, never a cut inside an escape.

Times: when a notice says which substring of its text states its instant (``when_text``), that substring
becomes ``<t:…:F> (<t:…:R>)``: each reader's Discord client shows it in their own zone and language.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from bots.discord.translate import discord_commands
from core.markup import with_code_spans
from core.models import SpaceStatus
from core.notices import REPLY, Action, ActionKind, Notice
from core.refs import ChatRef, Platform, UserRef
from core.texts import t

CONTENT_LIMIT = 2000
TITLE_LIMIT = 256
DESCRIPTION_LIMIT = 4096
LABEL_LIMIT = 80
CUSTOM_ID_LIMIT = 100
URL_LIMIT = 512
BUTTONS_PER_ROW = 5
ROWS_LIMIT = 5
MENTIONS_LIMIT = 100  # user ids in one message's allowed_mentions
RAW_LINE_LIMIT = 900  # characters of one line before escaping (escaping at most doubles it)
EPHEMERAL = 1 << 6  # message flag: only the person who asked sees it (interaction responses only)
EMBED_COLOR = 0x5865F2  # Discord blurple; a live Space's card is purple like its marker
LIVE_COLOR = 0x9B59B6

# action row / button component types, button styles
ACTION_ROW, BUTTON = 1, 2
PRIMARY, SECONDARY, LINK = 1, 2, 5

NO_MENTIONS: dict[str, Any] = {"parse": []}

# Markdown Discord interprets anywhere in a line, plus '<' (mentions, channels, timestamps, emoji) and the
# line-start markers (headings, quotes, lists): escaped one by one with a backslash (Discord drops a
# backslash before ASCII punctuation, so the text shows exactly as typed).
_SPECIAL = re.compile(r"([\\*_~`|>#\-\[\]()<])")
# @everyone and @here are parsed without '<': a zero-width space after the '@' makes them plain text
_BROADCAST = re.compile(r"@(everyone|here)", re.IGNORECASE)


def escape(text: str) -> str:
    """User text → Discord markdown that shows exactly ``text`` and mentions nobody."""
    return _BROADCAST.sub("@\u200b\\1", _SPECIAL.sub(r"\\\1", text))


def rich(text: str) -> str:
    """A line from core.texts: escaped, with its `code` spans kept (Discord renders them natively, and
    nothing inside a code span is a mention)."""
    return with_code_spans(text, plain=escape, code=lambda inner: f"`{inner}`")


def timestamp(when: datetime) -> str:
    """Discord's native time: full date and time, then relative ("in 2 hours"), in the reader's zone."""
    unix = int(when.timestamp())
    return f"<t:{unix}:F> (<t:{unix}:R>)"


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _line(text: str, when_text: str | None = None, native: str | None = None) -> str:
    """One line escaped; with ``when_text``, its last occurrence replaced by the native timestamp."""
    text = _cap(text, RAW_LINE_LIMIT)
    if when_text and native and when_text in text:
        before, after = text.rsplit(when_text, 1)
        return f"{rich(before)}{native}{rich(after)}"
    return rich(text)


def _lines(notice: Notice) -> list[str]:
    """The lines escaped, the stated time made native where the core's rule puts it: the last occurrence
    of ``when_text``, searching the lines from the end. Stated in the title only: embed titles show no
    timestamps, so the title keeps its own words and the native time leads the body."""
    when_text, native = _when(notice)
    at = next(
        (i for i in range(len(notice.lines) - 1, -1, -1) if when_text and when_text in notice.lines[i]), None
    )
    lines = [
        _line(line, when_text, native) if i == at else _line(line) for i, line in enumerate(notice.lines)
    ]
    if native and at is None and when_text and when_text in notice.title:
        lines.insert(0, f"🗓 {native}")
    return lines


def _fit(lines: Sequence[str], limit: int) -> str:
    """Join, dropping trailing whole lines (never half an escape) until it fits."""
    parts = list(lines)
    text = "\n".join(parts)
    while len(text) > limit and len(parts) > 1:
        parts = parts[:-1]
        text = "\n".join([*parts, "…"])
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _title(notice: Notice) -> str:
    """The embed title, escaped and within 256 characters: the raw title is shortened before escaping, so
    a cut never separates a backslash from the character it escapes."""
    head = f"{notice.marker} {notice.title}" if notice.marker else notice.title
    raw = head
    while True:
        out = escape(raw)
        if len(out) <= TITLE_LIMIT:
            return out
        raw = raw[: max(1, len(raw) - (len(out) - TITLE_LIMIT) - 1)].rstrip() + "…"


def _when(notice: Notice) -> tuple[str | None, str | None]:
    """(when_text, native timestamp) when the notice carries its instant; else (None, None)."""
    if notice.when is None or not notice.when_text:
        return None, None
    return notice.when_text, timestamp(notice.when)


def button(action: Action) -> dict[str, Any]:
    label = _cap(action.label, LABEL_LIMIT)
    if action.kind is ActionKind.URL:
        if len(action.value) > URL_LIMIT:
            raise ValueError(f"link button URL over {URL_LIMIT} characters")
        return {"type": BUTTON, "style": LINK, "label": label, "url": action.value}
    if len(action.value) > CUSTOM_ID_LIMIT:  # never: ids are 10 characters. Fail loudly, not at Discord.
        raise ValueError(f"custom_id over {CUSTOM_ID_LIMIT} characters: {action.value!r}")
    style = SECONDARY if action.host_only else PRIMARY
    return {"type": BUTTON, "style": style, "label": label, "custom_id": action.value}


def components(actions: Sequence[Action]) -> list[dict[str, Any]]:
    """Everyone's buttons first, the host's (Start, End) on their own row below; five per row."""
    rows: list[dict[str, Any]] = []
    for group in ([a for a in actions if not a.host_only], [a for a in actions if a.host_only]):
        for i in range(0, len(group), BUTTONS_PER_ROW):
            rows.append(
                {"type": ACTION_ROW, "components": [button(a) for a in group[i : i + BUTTONS_PER_ROW]]}
            )
    if len(rows) > ROWS_LIMIT:
        raise ValueError(f"more than {ROWS_LIMIT} rows of buttons")
    return rows


@dataclass(frozen=True, slots=True)
class Rendered:
    """A message, ready for ``POST /channels/{id}/messages`` (:meth:`payload`) or an interaction response
    (:meth:`interaction_data`)."""

    content: str | None = None
    embeds: tuple[dict[str, Any], ...] = ()
    components: tuple[dict[str, Any], ...] = ()
    allowed_mentions: dict[str, Any] = field(default_factory=lambda: dict(NO_MENTIONS))
    reply_to: str | None = None  # the message (in the same channel) this one answers
    ephemeral: bool = False

    def payload(self, *, nonce: str | None = None) -> dict[str, Any]:
        """The body of a create message (or, without nonce and reply, of an edit: every field is set, so
        an edit replaces the whole message and a field that went away is cleared)."""
        body: dict[str, Any] = {
            "content": self.content or "",
            "embeds": list(self.embeds),
            "components": list(self.components),
            "allowed_mentions": self.allowed_mentions,
        }
        if nonce is not None:
            # Discord drops a second message with the same nonce for a few minutes: a resend after a
            # timeout (the first one did arrive) is not shown twice
            body["nonce"] = nonce
            body["enforce_nonce"] = True
        if self.reply_to is not None:
            body["message_reference"] = {"message_id": self.reply_to, "fail_if_not_exists": False}
        return body

    def interaction_data(self) -> dict[str, Any]:
        """The ``data`` of an interaction response or follow-up (ephemeral when meant for the asker)."""
        body: dict[str, Any] = {
            "content": self.content or "",
            "embeds": list(self.embeds),
            "components": list(self.components),
            "allowed_mentions": self.allowed_mentions,
        }
        if self.ephemeral:
            body["flags"] = EPHEMERAL
        return body


def embed(notice: Notice) -> dict[str, Any]:
    lines = _lines(notice)
    body: dict[str, Any] = {"type": "rich"}
    title = _title(notice)
    if title:  # Discord refuses an empty title; a notice without one shows its lines only
        body["title"] = title
    if lines:
        body["description"] = _fit(lines, DESCRIPTION_LIMIT)
    if notice.link and len(notice.link) <= URL_LIMIT:
        body["url"] = notice.link  # the title opens the Space's page
    live = notice.marker is not None and "🟣" in notice.marker
    body["color"] = LIVE_COLOR if live else EMBED_COLOR
    return body


def voice_link(channel: ChatRef) -> str | None:
    """The link that opens a guild's voice or stage channel in Discord (and joins it in one more click)."""
    if channel.platform is not Platform.DISCORD or channel.scope is None:
        return None
    return f"https://discord.com/channels/{channel.scope}/{channel.id}"


def _actions(notice: Notice) -> tuple[Action, ...]:
    """The notice's buttons; while live, "Join voice" first when the Space is held in a voice channel."""
    link = voice_link(notice.voice) if notice.voice is not None else None
    if notice.status is not SpaceStatus.LIVE or link is None or notice.kind == REPLY:
        return notice.actions
    join = Action(t(notice.locale, "button.join_voice"), ActionKind.URL, link)
    return (join, *notice.actions)


def render(notice: Notice) -> Rendered:
    if notice.kind == REPLY:
        return render_reply(notice)
    # a notice naming a command (the host's audio problem: "`/source <id> …`") names Discord's own
    notice = replace(notice, lines=tuple(discord_commands(line) for line in notice.lines))
    return Rendered(
        embeds=(embed(notice),),
        components=tuple(components(_actions(notice))),
        ephemeral=notice.ephemeral,
    )


def render_reply(notice: Notice) -> Rendered:
    """An answer: plain content (no embed), its buttons; quoting what it answers when that is known."""
    lines = _lines(notice)
    target = notice.reply_to
    return Rendered(
        content=_fit(lines, CONTENT_LIMIT),
        components=tuple(components(notice.actions)),
        reply_to=target if target is not None and target.isdigit() else None,
        ephemeral=notice.ephemeral,
    )


def mention(user_id: str) -> str:
    if not user_id.isdigit():  # ids are snowflakes; anything else would be text we did not escape
        raise ValueError(f"not a Discord user id: {user_id!r}")
    return f"<@{user_id}>"


def render_mentions(
    users: Mapping[UserRef, str] | Sequence[UserRef], notice: Notice, prefix_template: str
) -> list[Rendered]:
    """The DM fallback: ``<@a>, <@b> — I couldn't message you privately:`` and the notice's embed.

    As many mentions per message as fit in 2,000 characters (one message for the engine's batches; more
    only if a batch were ever too long, never a dropped user). Each message may ping exactly the users it
    names: ``allowed_mentions`` lists them and parses nothing else (never @everyone, never a role)."""
    ids = [u.id for u in users]
    body = render(notice)
    intro_parts = escape(prefix_template).split(escape("{mentions}"))
    if len(intro_parts) != 2:
        intro_parts = [escape(prefix_template) + " ", ""]
    before, after = intro_parts
    room = CONTENT_LIMIT - len(before) - len(after)
    messages: list[Rendered] = []
    batch: list[str] = []
    used = 0
    for uid in ids:
        token = mention(uid)
        extra = len(token) + (2 if batch else 0)
        if batch and (used + extra > room or len(batch) >= MENTIONS_LIMIT):
            messages.append(_mention_message(before, after, batch, body))
            batch, used = [], 0
            extra = len(token)
        batch.append(uid)
        used += extra
    if batch:
        messages.append(_mention_message(before, after, batch, body))
    return messages


def _mention_message(before: str, after: str, batch: list[str], body: Rendered) -> Rendered:
    names = ", ".join(mention(u) for u in batch)
    return Rendered(
        content=f"{before}{names}{after}",
        embeds=body.embeds,
        components=body.components,
        # users: exactly these ids (at most 100, Discord's limit); parse stays empty
        allowed_mentions={"parse": [], "users": list(batch)},
    )
