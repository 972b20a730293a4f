"""Core notices → Telegram messages (HTML parse mode). Pure: builds PTB objects, sends nothing.

Every piece of user text is escaped for HTML (titles are user input: ``<b>``, ``&`` and ``@everyone`` must
show as typed), and the result always fits Telegram's limits (4096 characters, 64-byte callback data).
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass

from telegram import ForceReply, InlineKeyboardButton, InlineKeyboardMarkup

from bots.telegram.translate import share_link
from core.markup import with_code_spans
from core.notices import REPLY, Action, ActionKind, Notice
from core.refs import UserRef

TEXT_LIMIT = 4096
CALLBACK_LIMIT = 64  # bytes
NAME_LIMIT = 32  # characters of a person's name in a mention (20 of them always fit in one message)


@dataclass(frozen=True, slots=True)
class Rendered:
    text: str
    markup: InlineKeyboardMarkup | ForceReply | None
    reply_to: int | None = None  # the message (in the same chat) this one answers


def rich(text: str) -> str:
    """Plain text from core.texts → HTML: escaped, with `code` spans kept as <code>."""
    return with_code_spans(
        text,
        plain=lambda part: html.escape(part, quote=False),
        code=lambda inner: f"<code>{html.escape(inner, quote=False)}</code>",
    )


def _fit(parts: list[str]) -> str:
    """Join, dropping trailing lines rather than cutting an HTML tag in half."""
    text = "\n".join(parts)
    while len(text) > TEXT_LIMIT and len(parts) > 1:
        parts = parts[:-1]
        text = "\n".join([*parts, "…"])
    return text[:TEXT_LIMIT]


def _button(action: Action, title: str) -> InlineKeyboardButton:
    if action.kind is ActionKind.URL:
        url = share_link(action.value, title) if action.share else action.value
        return InlineKeyboardButton(action.label, url=url)
    data = action.value
    if len(data.encode()) > CALLBACK_LIMIT:  # never: ids are 10 characters. Fail loudly, not at Telegram.
        raise ValueError(f"callback data over {CALLBACK_LIMIT} bytes: {data!r}")
    return InlineKeyboardButton(action.label, callback_data=data)


def keyboard(notice: Notice) -> InlineKeyboardMarkup | None:
    """Everyone's buttons on the first row, the host's (Start, End) on their own row below."""
    if not notice.actions:
        return None
    public = [_button(a, notice.title) for a in notice.actions if not a.host_only]
    host = [_button(a, notice.title) for a in notice.actions if a.host_only]
    rows = [r for r in (public, host) if r]
    return InlineKeyboardMarkup(rows)


def render(notice: Notice) -> Rendered:
    if notice.kind == REPLY:
        return render_reply(notice)
    head = html.escape(f"{notice.marker} {notice.title}" if notice.marker else notice.title, quote=False)
    if notice.link:  # the title opens the Space's page (details, each viewer's local time)
        head = f'<a href="{html.escape(notice.link)}">{head}</a>'
    parts = [f"<b>{head}</b>", *(rich(line) for line in notice.lines)]
    return Rendered(_fit(parts), keyboard(notice))


def mention(user_id: str, name: str) -> str:
    short = name if len(name) <= NAME_LIMIT else name[: NAME_LIMIT - 1] + "…"
    return f'<a href="tg://user?id={int(user_id)}">{html.escape(short, quote=False)}</a>'


def render_mentions(users: Mapping[UserRef, str], notice: Notice, prefix_template: str) -> Rendered:
    """The DM fallback: ``@a, @b — I couldn't message you privately:`` then the notice."""
    names = ", ".join(mention(u.id, n) for u, n in users.items())
    body = render(notice)
    intro = html.escape(prefix_template, quote=False).replace("{mentions}", names)
    return Rendered(_fit([intro, body.text]), body.markup)


RAW_LINE_LIMIT = 700  # escaped, even 700 '&' stay under 4096: a cut never lands inside an entity


def _line(text: str) -> str:
    return rich(text if len(text) <= RAW_LINE_LIMIT else text[: RAW_LINE_LIMIT - 1] + "…")


def plain(text: str) -> Rendered:
    return plain_lines(text.split("\n"))


def plain_lines(lines: list[str]) -> Rendered:
    """Replies and lists (``/spaces``): each line capped before escaping, whole lines dropped to fit —
    never a cut inside an HTML entity (an echoed 1,000-character input included)."""
    return Rendered(_fit([_line(line) for line in lines]), None)


def render_reply(notice: Notice) -> Rendered:
    """An answer (core.notices.reply): plain lines, its buttons, or a reply box when it asks a question
    (ForceReply, selective: in a group only the person asked gets the box — and privacy mode lets their
    reply through to us)."""
    body = plain_lines(list(notice.lines))
    markup: InlineKeyboardMarkup | ForceReply | None = (
        ForceReply(selective=True) if notice.ask else keyboard(notice)
    )
    target = notice.reply_to
    reply_to = int(target) if target is not None and target.isdigit() else None
    return Rendered(body.text, markup, reply_to)
