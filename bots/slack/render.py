"""Core notices → Slack messages (``text`` + Block Kit ``blocks``, as ``chat.postMessage`` takes them). Pure.

User text (titles, descriptions, names) is escaped by :func:`escape`: ``&``, ``<`` and ``>`` become entities,
so no ``<!channel>``, ``<!here>``, ``<@U…>`` or ``<https://…|link>`` can be injected, and the mrkdwn markers
``* _ ~ ``` are fenced with zero-width spaces (Slack has no backslash escape; a marker that touches a
zero-width space on both sides opens or closes nothing), so ``*bold*`` shows as typed. Every mrkdwn object
is ``verbatim``, so Slack's automatic parsing does not turn a typed ``@channel``, ``#general`` or URL into a
live one. Headers are ``plain_text``: nothing in them is parsed, so they are cut but never escaped.

Every message fits Block Kit's limits (header 150, section 3,000, button text 75, value 2,000, url 3,000,
50 blocks): user text is cut *before* escaping, at a character boundary with "…", so a cut never splits an
entity or a fence. Slack counts in UTF-16 code units for some fields; we measure in them everywhere, which
is never more generous than counting characters.

Times: the instant a notice states (``Notice.when_text``) becomes a ``<!date^…>`` token (:func:`date_token`):
each reader's Slack shows it in their own zone and language, the core's wording as the fallback.

action_id values (the handlers route on them): our callback buttons all carry :data:`PRESS` (the value is
``core.notices.callback(verb, space_id)``), Reschedule :data:`RESCHEDULE`, link buttons :data:`LINK`. Slack
wants action_ids unique *within a block*, so one actions block holds at most one button of each action_id:
the buttons are laid out in rows on that rule (which also keeps the host's row apart).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from core.ids import looks_like_space_id
from core.markup import as_subcommands, with_code_spans
from core.models import SpaceStatus
from core.notices import REPLY, Action, ActionKind, Notice, Verb, callback, parse_callback
from core.texts import t

PRESS = "space.press"  # value: core.notices.callback(verb, space_id)
RESCHEDULE = "space.reschedule"  # value: the space id → the handlers open the reschedule modal
LINK = "space.link"  # URL buttons: Slack still sends block_actions for them (ack and ignore)

# Block Kit limits (https://docs.slack.dev/reference/block-kit)
BLOCKS_LIMIT = 50  # blocks in a message
HEADER_LIMIT = 150
SECTION_LIMIT = 3000
BUTTON_TEXT_LIMIT = 75
VALUE_LIMIT = 2000
URL_LIMIT = 3000
BUTTONS_PER_BLOCK = 25
TEXT_LIMIT = 40000  # chat.postMessage's top-level text (truncated by Slack beyond; we stay far under)
FALLBACK_LIMIT = 3000  # what we put in ``text``: a notification preview needs far less than 40,000
CONFIRM_TITLE_LIMIT = 100
CONFIRM_TEXT_LIMIT = 300
CONFIRM_BUTTON_LIMIT = 30
MENTIONS_PER_MESSAGE = 50  # <@U…> per message: render_mention takes at most this many ids
ELLIPSIS = "…"

_ZWSP = "\u200b"
_MARKERS = re.compile(r"([*_~`])")
# bidi embeddings, overrides and isolates: an unterminated one would reorder the text after the user's
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")
_FSI, _PDI = "\u2068", "\u2069"
# Slack user ids: U… or W… (Enterprise Grid), upper-case letters and digits
_USER_ID = re.compile(r"^[UW][A-Z0-9]{1,20}$")
# a placeholder for the stated time while the text around it is escaped: a Unicode noncharacter, never
# typed by anyone (and removed from user text first, so it cannot be forged)
_WHEN = "\ufdd0"


def units(text: str) -> int:
    """Length in UTF-16 code units (an emoji outside the BMP counts 2): how Slack's limits are safest read."""
    return len(text.encode("utf-16-le")) // 2


def entities(text: str) -> str:
    """``&``, ``<``, ``>`` as Slack's three entities: nothing between ``<`` and ``>`` is parsed any more."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape(text: str) -> str:
    """User text → mrkdwn that shows exactly ``text`` and mentions nobody.

    Entities for ``& < >`` (no mention, broadcast, link or date token can be written); each of ``* _ ~ ```
    between two zero-width spaces (formatting needs a marker next to a word, so none applies); text with a
    bidi control (e.g. U+202E) is wrapped in an isolate (FSI…PDI), so it cannot reverse what follows it."""
    out = _MARKERS.sub(_ZWSP + r"\1" + _ZWSP, entities(text))
    if _BIDI.search(text):
        out = f"{_FSI}{out}{_PDI}"
    return out


def rich(text: str) -> str:
    """A line from core.texts: escaped, with its `code` spans kept as code (nothing in them is formatted;
    only the entities are needed there)."""
    return with_code_spans(text, plain=escape, code=lambda inner: f"`{entities(inner)}`")


def cut(text: str, limit: int, shown: Callable[[str], str] = escape) -> str:
    """``shown(text)`` within ``limit`` UTF-16 units: the *raw* text is shortened (at a character boundary,
    with "…") until its shown form fits, so an entity or a fence is never cut in half."""
    # shown() never shortens (escaping only adds), so the first `limit` characters are a safe start
    raw = text if len(text) <= limit else text[: limit - 1] + ELLIPSIS
    out = shown(raw)
    while units(out) > limit:
        excess = units(out) - limit
        keep = max(0, len(raw) - max(1, excess // 5) - 1)  # escaping multiplies by at most 5 (&amp;)
        raw = raw[:keep].rstrip() + ELLIPSIS if keep else ELLIPSIS
        out = shown(raw)
        if raw == ELLIPSIS:
            break
    return out


def date_token(when: datetime, fallback: str) -> str:
    """Slack's date token: the long date and the time in each reader's own zone; ``fallback`` (the core's
    wording) where a client cannot show it (notifications, old clients)."""
    unix = int(when.timestamp())
    return f"<!date^{unix}^{{date_long_pretty}} {{time}}|{entities(fallback)}>"


def calendar_url(share_link: str) -> str:
    """The Space's iCalendar file (the web app serves ``/s/<id>.ics`` next to ``/s/<id>``)."""
    return f"{share_link}.ics"


# --------------------------------------------------------------------------- text


def _plain(text: str, limit: int) -> str:
    """``plain_text`` (headers, button texts, confirm dialogs): shown as is, only cut to the limit."""
    return cut(" ".join(text.split()), limit, shown=lambda s: s)


def mrkdwn(text: str) -> dict[str, Any]:
    """A mrkdwn text object. ``verbatim``: Slack does not auto-parse it — a plain ``@channel``, ``#general``
    or URL typed in a title stays text (our own ``<@U…>`` and ``<!date…>`` strings are still honoured)."""
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": mrkdwn(text)}


def _pt(text: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": _plain(text, limit) or " ", "emoji": True}


def _with_token(line: str, token: str | None, limit: int, shown: Callable[[str], str] = rich) -> str:
    """One line, escaped (``shown``), its time placeholder (if any) replaced by the date token; the parts
    around the token are cut so that the whole fits ``limit``."""
    if token is None or _WHEN not in line:
        return cut(line.replace(_WHEN, ""), limit, shown=shown)
    before, _, after = line.rpartition(_WHEN)
    before, after = before.replace(_WHEN, ""), after.replace(_WHEN, "")
    room = max(2, limit - units(token))
    # the text after the time gets at most half the room, the text before it the rest
    head = cut(before, room - min(units(shown(after)), room // 2), shown=shown)
    tail = cut(after, max(1, room - units(head)), shown=shown)
    return f"{head}{token}{tail}"


def _prepared(notice: Notice) -> tuple[Notice, str | None]:
    """The notice with its stated time replaced by a placeholder (``Notice.with_when``, the core's rule for
    which occurrence is meant) and the date token that goes there (None: the notice states no time)."""
    clean = replace(
        notice,
        title=notice.title.replace(_WHEN, ""),
        lines=tuple(line.replace(_WHEN, "") for line in notice.lines),
    )
    if clean.when is None or not clean.when_text:
        return clean, None
    token = date_token(clean.when, clean.when_text)
    if notice.kind == "card":
        # a card's title is its header (plain_text: a token would show raw): only its lines take the token
        marked = replace(clean, title="").with_when(lambda _: _WHEN)
        return replace(marked, title=clean.title), token
    return clean.with_when(lambda _: _WHEN), token


def _sections(
    lines: Sequence[str], token: str | None, escaped: Callable[[str], str] = rich
) -> list[dict[str, Any]]:
    """Lines as mrkdwn sections of at most 3,000 units: whole lines per section (a line too long alone is
    cut); never a section cut inside an escape or a token."""
    shown = [_with_token(line, token, SECTION_LIMIT, escaped) for line in lines]
    sections: list[str] = []
    current: list[str] = []
    for line in shown:
        candidate = "\n".join([*current, line])
        if current and units(candidate) > SECTION_LIMIT:
            sections.append("\n".join(current))
            current = [line]
        else:
            current.append(line)
    if current and any(current):
        sections.append("\n".join(current))
    return [section(s) for s in sections if s.strip()]


def _fallback(parts: Sequence[str]) -> str:
    """The notification text: whole lines while they fit :data:`FALLBACK_LIMIT`."""
    kept: list[str] = []
    for part in parts:
        if not part:
            continue
        if units("\n".join([*kept, part])) > FALLBACK_LIMIT:
            if not kept:
                kept.append(cut(part, FALLBACK_LIMIT, shown=lambda s: s))
            break
        kept.append(part)
    return "\n".join(kept)


# --------------------------------------------------------------------------- buttons


def _confirm(verb: Verb, locale: str) -> dict[str, Any]:
    """The dialog before an irreversible press (Cancel, End), in the reader's language."""
    name = "cancel" if verb is Verb.CANCEL else "end"
    return {
        "title": _pt(t(locale, f"sl.confirm.{name}.title"), CONFIRM_TITLE_LIMIT),
        "text": _pt(t(locale, f"sl.confirm.{name}.text"), CONFIRM_TEXT_LIMIT),
        "confirm": _pt(t(locale, f"sl.confirm.{name}.yes"), CONFIRM_BUTTON_LIMIT),
        "deny": _pt(t(locale, f"sl.confirm.{name}.no"), CONFIRM_BUTTON_LIMIT),
        "style": "danger",
    }


def button(action: Action, locale: str) -> dict[str, Any]:
    """One Slack button for a core action (or a Slack-only one, see :func:`_card_actions`)."""
    if action.kind is ActionKind.URL:
        if len(action.value) > URL_LIMIT:
            raise ValueError(f"link button URL over {URL_LIMIT} characters")
        body: dict[str, Any] = {
            "type": "button",
            "action_id": LINK,
            "text": _pt(action.label, BUTTON_TEXT_LIMIT),
            "url": action.value,
        }
        return body
    if len(action.value) > VALUE_LIMIT:  # never: values are a verb and a 10-character id
        raise ValueError(f"button value over {VALUE_LIMIT} characters: {action.value[:40]!r}…")
    parsed = parse_callback(action.value)
    if parsed is None and not looks_like_space_id(action.value):
        raise ValueError(f"not a button value of ours: {action.value[:40]!r}")
    # a bare space id is Slack's own Reschedule (see _reschedule); everything else a core callback
    action_id = PRESS if parsed is not None else RESCHEDULE
    body = {
        "type": "button",
        "action_id": action_id,
        "text": _pt(action.label, BUTTON_TEXT_LIMIT),
        "value": action.value,
    }
    if parsed is not None and parsed[0] in (Verb.CANCEL, Verb.END):
        body["style"] = "danger"
        body["confirm"] = _confirm(parsed[0], locale)
    elif parsed is not None and parsed[0] is Verb.SUBSCRIBE:
        body["style"] = "primary"
    return body


def _reschedule(space_id: str, locale: str) -> Action:
    # a CALLBACK whose value is not a core callback: button() gives it the RESCHEDULE action_id
    return Action(t(locale, "sl.button.reschedule"), ActionKind.CALLBACK, space_id, host_only=True)


def _card_actions(notice: Notice) -> tuple[Action, ...]:
    """The core card's buttons, plus Slack's own: Add to calendar (after Set reminder), a plain Share link,
    and for the host and admins Reschedule and Cancel after Start (the core refuses them politely to
    anyone else, as it does Start)."""
    if notice.kind != "card" or notice.space_id is None:
        return notice.actions
    locale, space_id = notice.locale, notice.space_id
    out: list[Action] = []
    for action in notice.actions:
        if action.kind is ActionKind.URL and action.share:
            out.append(replace(action, label=t(locale, "sl.button.share"), share=False))
            continue
        out.append(action)
        parsed = parse_callback(action.value) if action.kind is ActionKind.CALLBACK else None
        if parsed is None:
            continue
        if parsed[0] is Verb.SUBSCRIBE and notice.link:
            out.append(Action(t(locale, "sl.button.calendar"), ActionKind.URL, calendar_url(notice.link)))
        if parsed[0] is Verb.START and notice.status is SpaceStatus.SCHEDULED:
            out.append(_reschedule(space_id, locale))
            out.append(
                Action(
                    t(locale, "sl.button.cancel"),
                    ActionKind.CALLBACK,
                    callback(Verb.CANCEL, space_id),
                    host_only=True,
                )
            )
    return tuple(out)


def actions_blocks(actions: Sequence[Action], locale: str) -> list[dict[str, Any]]:
    """Everyone's buttons first, the host's (Start, Reschedule, Cancel, End) in rows of their own below.
    A row (an actions block) never holds two buttons with the same action_id (Slack refuses that)."""
    blocks: list[dict[str, Any]] = []
    for group in ([a for a in actions if not a.host_only], [a for a in actions if a.host_only]):
        row: list[dict[str, Any]] = []
        for action in group:
            element = button(action, locale)
            taken = {e["action_id"] for e in row}
            if element["action_id"] in taken or len(row) >= BUTTONS_PER_BLOCK:
                blocks.append({"type": "actions", "elements": row})
                row = []
            row.append(element)
        if row:
            blocks.append({"type": "actions", "elements": row})
    return blocks


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class Rendered:
    """A message: ``text`` is the notification / fallback text (mrkdwn, escaped), ``blocks`` the Block Kit
    body. ``ephemeral``: an answer meant for the asker alone (``chat.postEphemeral`` / response_type)."""

    text: str
    blocks: list[dict[str, Any]]
    ephemeral: bool = False

    def message(self) -> dict[str, Any]:
        """The keyword arguments of ``chat.postMessage`` / ``chat.update`` for it (with ``channel``/``ts``
        added by the caller). Every field is always set, so an update replaces the whole message."""
        return {"text": self.text, "blocks": list(self.blocks)}


def render(notice: Notice) -> Rendered:
    """Every Notice kind: a card (header, lines, buttons), a DM or reminder (bold title, lines, buttons),
    a reply (plain mrkdwn sections, see :func:`render_reply`)."""
    if notice.kind == REPLY:
        return render_reply(notice)
    prepared, token = _prepared(replace(notice, lines=tuple(slack_commands(x) for x in notice.lines)))
    head = f"{prepared.marker} {prepared.title}" if prepared.marker else prepared.title
    blocks: list[dict[str, Any]] = []
    # a card's lines are the description and names (user text) and core texts without `code`: all
    # escaped as typed. Other notices are core texts (which name commands in `code`) quoting a title.
    shown = escape if prepared.kind == "card" else rich
    if prepared.kind == "card":
        if head.strip():
            blocks.append({"type": "header", "text": _pt(head, HEADER_LIMIT)})
        body = list(prepared.lines)
        title_text = cut(" ".join(head.split()), FALLBACK_LIMIT)
    else:
        # a notice's title is a sentence that may state the time: bold mrkdwn (takes a token), not a header
        title_line = _with_token(head, token, SECTION_LIMIT - 2) if head.strip() else ""
        body = list(prepared.lines)
        blocks += [section(f"*{title_line}*")] if title_line else []
        title_text = title_line
    blocks += _sections(body, token, shown)
    blocks += actions_blocks(_card_actions(prepared), prepared.locale)
    _check(blocks)
    text = _fallback([title_text, *(_with_token(line, token, SECTION_LIMIT, shown) for line in body)])
    return Rendered(text=text, blocks=blocks, ephemeral=notice.ephemeral)


def render_reply(notice: Notice) -> Rendered:
    """An answer: its lines as plain mrkdwn sections (`code` spans kept as code), its buttons; no header."""
    prepared, token = _prepared(replace(notice, lines=tuple(slack_commands(x) for x in notice.lines)))
    blocks = _sections(prepared.lines, token)
    blocks += actions_blocks(prepared.actions, prepared.locale)
    _check(blocks)
    text = _fallback([_with_token(line, token, SECTION_LIMIT) for line in prepared.lines])
    return Rendered(text=text or " ", blocks=blocks, ephemeral=notice.ephemeral)


def mention(user_id: str) -> str:
    if not _USER_ID.match(user_id):  # anything else would be text we did not escape
        raise ValueError(f"not a Slack user id: {user_id!r}")
    return f"<@{user_id}>"


def render_mention(user_ids: Sequence[str], notice: Notice) -> Rendered:
    """The DM fallback in a channel: ``<@U1> <@U2> — I couldn't message you privately:`` then the notice.

    Contract: takes 1 to :data:`MENTIONS_PER_MESSAGE` user ids (``U…``/``W…``), all of one message; the
    caller (the adapter) splits a longer list into several messages. Raises ValueError otherwise — losing
    a user silently would be worse than failing loudly."""
    if not 1 <= len(user_ids) <= MENTIONS_PER_MESSAGE:
        raise ValueError(f"render_mention takes 1 to {MENTIONS_PER_MESSAGE} user ids, not {len(user_ids)}")
    names = " ".join(mention(u) for u in user_ids)
    template = t(notice.locale, "notice.mention", mentions="\x00")
    before, _, after = template.partition("\x00")
    intro = f"{escape(before)}{names}{escape(after)}"
    body = render(notice)
    blocks = [section(intro), *body.blocks]
    _check(blocks)
    return Rendered(text=_fallback([intro, body.text]), blocks=blocks)


def render_call(call_id: str, title: str) -> Rendered:
    """The message that shows a live Call (``calls.add``'s id): Slack draws the call's own card and Join
    button from the ``call`` block; ``text`` (the notification) names the Space, escaped like any title —
    a raw ``<!channel>`` there would notify the whole channel."""
    return Rendered(
        text=f"🟣 {cut(' '.join(title.split()), FALLBACK_LIMIT - 2)}",
        blocks=[{"type": "call", "call_id": call_id}],
    )


def _check(blocks: Sequence[dict[str, Any]]) -> None:
    # never: a notice has a handful of lines and buttons. Fail loudly here rather than at Slack.
    if len(blocks) > BLOCKS_LIMIT:
        raise ValueError(f"{len(blocks)} blocks: Slack takes at most {BLOCKS_LIMIT}")


# --------------------------------------------------------------------------- command names

# the core's texts name the commands as typed in a chat ("/rename <id> …"); on Slack there is one slash
# command, /space, and the others are its subcommands
_AS_SUBCOMMAND = {
    "spaces": "list",
    "live": "start",
    "start": "start",
    "end": "end",
    "cancel": "cancel",
    "reschedule": "reschedule",
    "rename": "rename",
    "source": "source",
    "tz": "zone",
    "chattz": "chatzone",
    "subscribe": "subscribe",
    "unsubscribe": "unsubscribe",
}


def slack_commands(text: str) -> str:
    """The commands a text names (in `code` spans) as Slack's: `/rename <id> …` → `/space rename <id> …`,
    `/spaces` → `/space list`, `/tz` → `/space zone`. `/space …` stays; commands Slack lacks stay too."""
    return as_subcommands(text, _AS_SUBCOMMAND)
