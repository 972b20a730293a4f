"""Slack payload pieces → core values. Pure functions: no I/O, no client.

Everything here reads untrusted input (a slash command's text, a modal's ``view.state.values``, a button's
``action``): odd shapes give None, a usage answer from the core, or field errors — never an exception deep
in a handler.

Block and action ids of the modals (bots.slack.views builds them, these functions read them) follow
``core.errors.FIELDS`` where they map, so a core ``UserError.field`` names the block to show it under
(:func:`error_block`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from bots.slack.render import PRESS, RESCHEDULE
from core.ids import looks_like_space_id
from core.notices import Verb, parse_callback
from core.refs import ChatRef, Platform, UserRef
from core.services.inbound import (
    Command,
    Help,
    ListSpaces,
    Manage,
    Press,
    Rename,
    Reschedule,
    Schedule,
    SetChatZone,
    SetSource,
    SetZone,
    id_or_link,
    link_words,
)
from core.texts import pick_locale, t

MAX_INPUT = 1000  # characters of a command's text we parse (the core refuses longer arguments plainly)
REQUEST_PREFIX = "sl"

# the modals' blocks (block_id) and their elements (action_id)
TITLE_BLOCK, TITLE_ACTION = "title", "title"
DESCRIPTION_BLOCK, DESCRIPTION_ACTION = "description", "description"
DATE_BLOCK, DATE_ACTION = "when", "date"  # the date picker: core's "when" errors show under it
TIME_BLOCK, TIME_ACTION = "time", "time"
ZONE_BLOCK, ZONE_ACTION = "timezone", "timezone"

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME = re.compile(r"^\d{2}:\d{2}$")
_ZONE = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+){0,2}$")
_SLACK_ID = re.compile(r"^[A-Z0-9]{2,32}$")


# --------------------------------------------------------------------------- references


def user_ref(team_id: str, user_id: str) -> UserRef:
    """A Slack user: ids are per workspace, so the team id travels as the scope."""
    return UserRef(Platform.SLACK, user_id, scope=team_id)


def chat_ref(team_id: str, channel_id: str) -> ChatRef:
    """A channel ("C…", "G…") or DM ("D…") of the workspace ``team_id``."""
    return ChatRef(Platform.SLACK, channel_id, scope=team_id)


def is_slack_id(value: object) -> bool:
    """Team, user and channel ids: upper-case letters and digits (what Slack sends; anything else is not)."""
    return isinstance(value, str) and bool(_SLACK_ID.match(value))


def request_id(team_id: str, trigger_or_event_id: str) -> str:
    """The core's idempotency key: ``sl:<team>:<trigger_id>`` (commands, interactions) or
    ``sl:<team>:<event_id>`` (events)."""
    return f"{REQUEST_PREFIX}:{team_id}:{trigger_or_event_id}"


def locale_of(user_info: Mapping[str, Any] | None) -> str:
    """``users.info(include_locale=True)["user"]``'s ``locale`` ("fr-FR") → the core's locale ("fr")."""
    loc = user_info.get("locale") if isinstance(user_info, Mapping) else None
    return pick_locale(loc if isinstance(loc, str) and len(loc) <= 16 else None)


# --------------------------------------------------------------------------- /space


_MANAGE = {
    "start": Verb.START,
    "live": Verb.START,
    "end": Verb.END,
    "cancel": Verb.CANCEL,
    "subscribe": Verb.SUBSCRIBE,
    "sub": Verb.SUBSCRIBE,
    "unsubscribe": Verb.UNSUBSCRIBE,
    "unsub": Verb.UNSUBSCRIBE,
}
_WITH_ID = frozenset({*_MANAGE, "reschedule", "rename", "source"})


_FORMATTED = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>")


def unformat(text: str) -> str:
    """Text as Slack delivers it in a command → as the person typed it. Slack encodes ``& < >`` as
    entities, and (with escaping on, or for some clients) wraps links, mentions and channels as
    ``<https://x|x>``, ``<@U1|ana>``, ``<#C1|general>``, ``<!here>``: a title keeps its words, a source its
    full URL. The result is raw text again, escaped whenever it is shown (bots.slack.render)."""

    def plain(m: re.Match[str]) -> str:
        target, label = m.group(1), m.group(2)
        if target.startswith(("@", "#")):
            return target[0] + (label or target[1:])
        if target.startswith("!"):
            name = target[1:].split("^", 1)[0]
            return label if label and label.startswith("@") else f"@{label or name}"
        if target.startswith("mailto:"):
            return label or target[len("mailto:") :]
        return target

    text = _FORMATTED.sub(plain, text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _cut(text: str) -> str:
    """Text longer than we parse is cut just past the limit: the core then refuses it plainly."""
    return text[: MAX_INPUT + 1]


def slash_command(text: str) -> Command | None:
    """``/space``'s text → the core's command; None for a bare ``/space`` (the handlers open the modal).

    Subcommands are English words for everyone (French speakers type them too): ``list``, ``help``,
    ``start|end|cancel|subscribe|unsubscribe <id>``, ``reschedule <id> <when>``, ``rename <id> <title>``,
    ``zone <IANA>`` (mine), ``chatzone <IANA>`` (the workspace's, admins), ``source <id> <source>``,
    ``schedule <when> <title>``, ``link [code]`` and ``unlink`` (core.services.links). Anything else is a Space to
    schedule ("tomorrow 20:00 Weekly AMA"). A word that would be a subcommand but is followed by something
    that is not a Space id or link ("cancel culture debate friday 20:00") is a title, not a subcommand; the
    word alone gets the core's usage answer. ``text`` is as Slack sends it (entities, maybe ``<…>``
    links): see :func:`unformat`."""
    text = _cut(unformat(text).strip())
    if not text:
        return None
    parts = text.split(maxsplit=1)
    word, rest = parts[0].lower(), (parts[1].strip() if len(parts) > 1 else "")
    if word == "schedule":
        return Schedule(text=rest) if rest else None
    if word in ("list", "spaces") and not rest:
        return ListSpaces()
    if word in ("help", "?") and not rest:
        return Help()
    if (linking := link_words(word, rest)) is not None:  # link [code], unlink: chats across platforms
        return linking
    if word in ("zone", "tz", "chatzone", "chattz") and (not rest or (" " not in rest and _ZONE.match(rest))):
        return SetZone(rest) if word in ("zone", "tz") else SetChatZone(rest)
    if word in _WITH_ID:
        words = rest.split(maxsplit=1)
        first, args = (words[0], words[1]) if len(words) > 1 else (rest, "")
        space_id = id_or_link(first) if first else ""
        if space_id is None:
            return Schedule(text=text)  # "start …", "end …" that names no Space: a title
        args = args.strip()
        if word in _MANAGE:
            verb = _MANAGE[word]
            source = args if verb is Verb.START else ""
            return Manage(verb, space_id, command=f"space {word}", source=source)
        if word == "reschedule":
            return Reschedule(space_id, args)
        if word == "rename":
            return Rename(space_id, args)
        return SetSource(space_id, args)
    return Schedule(text=text)


# --------------------------------------------------------------------------- modals


def _value(state_values: Mapping[str, Any], block: str, action: str) -> Mapping[str, Any]:
    """One element's state (``{"type": …, "value": …}``), or {} when absent or odd."""
    blk = state_values.get(block) if isinstance(state_values, Mapping) else None
    element = blk.get(action) if isinstance(blk, Mapping) else None
    return element if isinstance(element, Mapping) else {}


def _text(state_values: Mapping[str, Any], block: str, action: str) -> str:
    v = _value(state_values, block, action).get("value")
    return _cut(v.strip()) if isinstance(v, str) else ""


def _selected(state_values: Mapping[str, Any], block: str, action: str) -> str | None:
    element = _value(state_values, block, action)
    option = element.get("selected_option")
    v = option.get("value") if isinstance(option, Mapping) else None
    return v if isinstance(v, str) and len(v) <= 64 else None


def _when(state_values: Mapping[str, Any], locale: str) -> tuple[str, dict[str, str]]:
    """``"YYYY-MM-DD HH:MM"`` from the date and time pickers, or the errors (block id → text)."""
    errors: dict[str, str] = {}
    date = _value(state_values, DATE_BLOCK, DATE_ACTION).get("selected_date")
    time = _value(state_values, TIME_BLOCK, TIME_ACTION).get("selected_time")
    if not (isinstance(date, str) and _DATE.match(date)):
        errors[DATE_BLOCK] = t(locale, "sl.error.date")
    if not (isinstance(time, str) and _TIME.match(time)):
        errors[TIME_BLOCK] = t(locale, "sl.error.time")
    return ("" if errors else f"{date} {time}"), errors


def _zone(state_values: Mapping[str, Any], locale: str) -> tuple[str | None, dict[str, str]]:
    zone = _selected(state_values, ZONE_BLOCK, ZONE_ACTION)
    if zone is None:
        return None, {}  # none picked: the core uses the person's zone
    if not _ZONE.match(zone):
        return None, {ZONE_BLOCK: t(locale, "sl.error.zone")}
    return zone, {}


def schedule_from_view(state_values: Mapping[str, Any], *, locale: str) -> Schedule | dict[str, str]:
    """The schedule modal's ``view.state.values`` → ``Schedule(title, when="YYYY-MM-DD HH:MM", tz, …)``, or
    ``{block_id: error text}`` for the modal's ``response_action: errors``. Checks presence and shape only:
    the core decides whether the time is past, the zone known, the title too long."""
    title = " ".join(_text(state_values, TITLE_BLOCK, TITLE_ACTION).split())
    description = _text(state_values, DESCRIPTION_BLOCK, DESCRIPTION_ACTION)
    errors: dict[str, str] = {}
    if not title:
        errors[TITLE_BLOCK] = t(locale, "sl.error.title")
    when, when_errors = _when(state_values, locale)
    zone, zone_errors = _zone(state_values, locale)
    errors |= when_errors | zone_errors
    if errors:
        return errors
    return Schedule(title=title, when=when, tz=zone, description=description)


_BLOCKS = {"title": TITLE_BLOCK, "description": DESCRIPTION_BLOCK, "when": DATE_BLOCK, "timezone": ZONE_BLOCK}


def error_block(field: str | None) -> str | None:
    """A core ``UserError.field`` → the modal block to show the error under (None: no such block; the
    handlers then answer with the text instead)."""
    return _BLOCKS.get(field) if field is not None else None


def metadata(space_id: str | None = None, channel_id: str | None = None) -> str:
    """A modal's ``private_metadata`` (≤ 3,000 characters): the Space it is about and the channel it was
    opened from (where answers go)."""
    data = {k: v for k, v in (("space", space_id), ("channel", channel_id)) if v}
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def read_metadata(private_metadata: object) -> dict[str, str]:
    """Inverse of :func:`metadata`; {} for anything else (a bare Space id is read as ``{"space": id}``).
    Values are checked: a Space id looks like one, a channel like a Slack id."""
    if not isinstance(private_metadata, str) or len(private_metadata) > 3000:
        return {}
    if looks_like_space_id(private_metadata):
        return {"space": private_metadata}
    try:
        data = json.loads(private_metadata)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    out: dict[str, str] = {}
    space, channel = data.get("space"), data.get("channel")
    if isinstance(space, str) and looks_like_space_id(space):
        out["space"] = space
    if is_slack_id(channel):
        out["channel"] = str(channel)
    return out


def reschedule_from_view(state_values: Mapping[str, Any], private_metadata: str) -> Reschedule:
    """The reschedule modal → ``Reschedule(space_id, "YYYY-MM-DD HH:MM Zone")``. Missing pieces give an
    empty id or time, which the core answers with its usage text (the modal marks them required, so Slack
    itself does not submit without them)."""
    space_id = read_metadata(private_metadata).get("space", "")
    when, errors = _when(state_values, "en")
    zone, zone_errors = _zone(state_values, "en")
    if errors:
        return Reschedule(space_id, "")
    return Reschedule(space_id, f"{when} {zone}" if zone and not zone_errors else when)


# --------------------------------------------------------------------------- buttons


def press_from_action(action: Mapping[str, Any], *, via_chat: ChatRef | None) -> Press | None:
    """A ``block_actions`` action → Press; None for anything we did not produce (another action_id, a value
    that is not ``<verb>:<space id>``, an odd shape) — hostile or stale buttons do nothing."""
    if not isinstance(action, Mapping) or action.get("action_id") != PRESS:
        return None
    if action.get("type", "button") != "button":
        return None
    value = action.get("value")
    if not isinstance(value, str) or len(value) > 64:
        return None
    parsed = parse_callback(value)
    if parsed is None or not looks_like_space_id(parsed[1]):
        return None
    return Press(parsed[0], parsed[1], via_chat=via_chat)


def reschedule_from_action(action: Mapping[str, Any]) -> str | None:
    """A Reschedule button (:data:`bots.slack.render.RESCHEDULE`) → the Space id; None otherwise."""
    if not isinstance(action, Mapping) or action.get("action_id") != RESCHEDULE:
        return None
    value = action.get("value")
    return value if isinstance(value, str) and looks_like_space_id(value) else None
