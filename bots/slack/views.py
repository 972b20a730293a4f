"""Slack views: the schedule and reschedule modals, the App Home. Pure: dicts for ``views.open`` /
``views.publish``, nothing sent.

Block and action ids are bots.slack.translate's (which reads the submitted state back). Every view fits
Slack's limits: 100 blocks, title/submit/close 24 characters, labels 2,000, placeholders 150, option text
75, ``private_metadata`` 3,000 (refused here, loudly, rather than by Slack).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bots.slack.render import cut, date_token, escape, mrkdwn, rich, units
from bots.slack.translate import (
    DATE_ACTION,
    DATE_BLOCK,
    DESCRIPTION_ACTION,
    DESCRIPTION_BLOCK,
    TIME_ACTION,
    TIME_BLOCK,
    TITLE_ACTION,
    TITLE_BLOCK,
    ZONE_ACTION,
    ZONE_BLOCK,
)
from core.models import Space, SpaceStatus
from core.rules import DESCRIPTION_MAX, TITLE_MAX
from core.texts import t
from core.timeparse import format_local

SCHEDULE_VIEW = "space.schedule"  # callback_id of the schedule modal (view_submission routes on it)
RESCHEDULE_VIEW = "space.reschedule"

VIEW_BLOCKS_LIMIT = 100
VIEW_TITLE_LIMIT = 24  # a modal's title, submit and close texts
LABEL_LIMIT = 2000
PLACEHOLDER_LIMIT = 150
OPTION_TEXT_LIMIT = 75
OPTIONS_LIMIT = 100  # options of a static_select
METADATA_LIMIT = 3000
ITEMS_PER_LIST = 15  # Spaces per App Home list (3 lists stay far under 100 blocks)
# placeholders for what is put into a core text after it is escaped (a date token, an escaped title):
# Unicode noncharacters, which nobody types
_WHEN, _TITLE = "\ufdd0", "\ufdd1"

# the zones offered in the modal's select (Slack's static_select takes 100 options; IANA has ~600 names):
# one or two per populated offset, where communities are. The person's own Slack zone is always offered
# (added first when missing here) and preselected.
ZONES = (
    "Pacific/Honolulu",
    "America/Anchorage",
    "America/Los_Angeles",
    "America/Denver",
    "America/Phoenix",
    "America/Chicago",
    "America/Mexico_City",
    "America/New_York",
    "America/Toronto",
    "America/Bogota",
    "America/Halifax",
    "America/Santiago",
    "America/Sao_Paulo",
    "America/Argentina/Buenos_Aires",
    "Atlantic/Azores",
    "UTC",
    "Europe/London",
    "Europe/Dublin",
    "Europe/Lisbon",
    "Africa/Casablanca",
    "Africa/Lagos",
    "Europe/Paris",
    "Europe/Berlin",
    "Europe/Madrid",
    "Europe/Rome",
    "Europe/Amsterdam",
    "Europe/Brussels",
    "Europe/Zurich",
    "Europe/Stockholm",
    "Europe/Warsaw",
    "Africa/Johannesburg",
    "Africa/Cairo",
    "Europe/Athens",
    "Europe/Kyiv",
    "Europe/Istanbul",
    "Africa/Nairobi",
    "Europe/Moscow",
    "Asia/Dubai",
    "Asia/Karachi",
    "Asia/Kolkata",
    "Asia/Dhaka",
    "Asia/Bangkok",
    "Asia/Jakarta",
    "Asia/Singapore",
    "Asia/Shanghai",
    "Asia/Hong_Kong",
    "Asia/Manila",
    "Asia/Seoul",
    "Asia/Tokyo",
    "Australia/Perth",
    "Australia/Adelaide",
    "Australia/Brisbane",
    "Australia/Sydney",
    "Pacific/Auckland",
)


def _pt(text: str, limit: int) -> dict[str, Any]:
    shown = cut(" ".join(text.split()), limit, shown=lambda s: s)
    return {"type": "plain_text", "text": shown or " ", "emoji": True}


def _md(text: str) -> dict[str, Any]:
    return mrkdwn(text)


@functools.cache
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _offset(name: str, at: datetime) -> str:
    """``UTC+05:30`` as the zone stands at ``at`` (so summer time shows as it is now)."""
    zone = _zone(name)
    delta = at.astimezone(zone).utcoffset() if zone is not None else None
    minutes = int(delta.total_seconds() // 60) if delta is not None else 0
    sign = "+" if minutes >= 0 else "-"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _option(name: str, at: datetime) -> dict[str, Any]:
    city = name.rsplit("/", 1)[-1].replace("_", " ")
    label = f"({_offset(name, at)}) {city} — {name}" if "/" in name else f"({_offset(name, at)}) {name}"
    return {"text": _pt(label, OPTION_TEXT_LIMIT), "value": name}


def user_zone(tz: str | None) -> str:
    """The person's Slack zone (``users.info`` ``tz``) when it is one we know, else UTC."""
    return tz if tz and len(tz) <= 64 and _zone(tz) is not None else "UTC"


def zone_options(tz: str | None, now: datetime) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(options, initial option) of the zone select: :data:`ZONES` by offset at ``now``; the person's own
    zone first when it is not among them, and preselected."""
    mine = user_zone(tz)
    names = sorted(ZONES, key=lambda z: (_sort_offset(z, now), z))
    if mine not in names:
        names = [mine, *names]
    options = [_option(z, now) for z in names[:OPTIONS_LIMIT]]
    initial = next(o for o in options if o["value"] == mine)
    return options, initial


def _sort_offset(name: str, at: datetime) -> float:
    zone = _zone(name)
    delta = at.astimezone(zone).utcoffset() if zone is not None else None
    return delta.total_seconds() if delta is not None else 0.0


def _input(
    block_id: str,
    label: str,
    element: dict[str, Any],
    *,
    optional: bool = False,
    hint: str | None = None,
) -> dict[str, Any]:
    block: dict[str, Any] = {
        "type": "input",
        "block_id": block_id,
        "label": _pt(label, LABEL_LIMIT),
        "element": element,
        "optional": optional,
    }
    if hint:
        block["hint"] = _pt(hint, LABEL_LIMIT)
    return block


def _when_blocks(locale: str, tz: str, at: datetime | None, now: datetime) -> list[dict[str, Any]]:
    """Date, time and zone inputs; preset to ``at`` in ``tz`` when given (reschedule), else the date only
    (today in the person's zone: the time is theirs to pick, never a default they might not notice)."""
    zone = user_zone(tz)
    date_el: dict[str, Any] = {
        "type": "datepicker",
        "action_id": DATE_ACTION,
        "placeholder": _pt(t(locale, "sl.modal.date_hint"), PLACEHOLDER_LIMIT),
    }
    time_el: dict[str, Any] = {
        "type": "timepicker",
        "action_id": TIME_ACTION,
        "placeholder": _pt(t(locale, "sl.modal.time_hint"), PLACEHOLDER_LIMIT),
    }
    local_zone = _zone(zone)
    if at is not None:
        local = at.astimezone(local_zone)
        date_el["initial_date"] = local.strftime("%Y-%m-%d")
        time_el["initial_time"] = local.strftime("%H:%M")
    else:
        date_el["initial_date"] = now.astimezone(local_zone).strftime("%Y-%m-%d")
    options, initial = zone_options(zone, now)
    zone_el = {
        "type": "static_select",
        "action_id": ZONE_ACTION,
        "placeholder": _pt(t(locale, "sl.modal.timezone_hint"), PLACEHOLDER_LIMIT),
        "options": options,
        "initial_option": initial,
    }
    return [
        _input(DATE_BLOCK, t(locale, "sl.modal.date"), date_el),
        _input(TIME_BLOCK, t(locale, "sl.modal.time"), time_el),
        _input(ZONE_BLOCK, t(locale, "sl.modal.timezone"), zone_el),
    ]


def _modal(
    callback_id: str, locale: str, title_key: str, submit_key: str, blocks: list[dict[str, Any]], meta: str
) -> dict[str, Any]:
    if len(meta) > METADATA_LIMIT:
        raise ValueError(f"private_metadata over {METADATA_LIMIT} characters")
    if len(blocks) > VIEW_BLOCKS_LIMIT:
        raise ValueError(f"{len(blocks)} blocks: a view takes at most {VIEW_BLOCKS_LIMIT}")
    return {
        "type": "modal",
        "callback_id": callback_id,
        "title": _pt(t(locale, title_key), VIEW_TITLE_LIMIT),
        "submit": _pt(t(locale, submit_key), VIEW_TITLE_LIMIT),
        "close": _pt(t(locale, "sl.modal.close"), VIEW_TITLE_LIMIT),
        "private_metadata": meta,
        "blocks": blocks,
    }


def schedule_modal(locale: str, *, tz: str, now: datetime, private_metadata: str) -> dict[str, Any]:
    """The modal a bare ``/space`` opens: title, description, date, time, zone (the person's Slack zone
    preselected). Submitted state is read by ``translate.schedule_from_view``."""
    title_el = {
        "type": "plain_text_input",
        "action_id": TITLE_ACTION,
        "max_length": TITLE_MAX,
        "focus_on_load": True,
        "placeholder": _pt(t(locale, "sl.modal.title_hint"), PLACEHOLDER_LIMIT),
    }
    description_el = {
        "type": "plain_text_input",
        "action_id": DESCRIPTION_ACTION,
        "multiline": True,
        "max_length": DESCRIPTION_MAX,
        "placeholder": _pt(t(locale, "sl.modal.description_hint"), PLACEHOLDER_LIMIT),
    }
    blocks = [
        _input(TITLE_BLOCK, t(locale, "sl.modal.title"), title_el),
        _input(DESCRIPTION_BLOCK, t(locale, "sl.modal.description"), description_el, optional=True),
        *_when_blocks(locale, tz, None, now),
    ]
    return _modal(SCHEDULE_VIEW, locale, "sl.modal.schedule", "sl.modal.submit", blocks, private_metadata)


def _space_line(space: Space, locale: str, key: str, **params: str) -> str:
    """A core text naming a Space's title and time, escaped, its time a date token."""
    fallback = format_local(space.starts_at, space.tz, locale)
    text = rich(t(locale, key, when=_WHEN, **params))
    return text.replace(_WHEN, date_token(space.starts_at, fallback))


def reschedule_modal(locale: str, space: Space, *, tz: str, private_metadata: str) -> dict[str, Any]:
    """The modal of a card's Reschedule button: the Space's title and current time, then date, time and
    zone preset to the current start in ``tz``. Read back by ``translate.reschedule_from_view``."""
    # the title, escaped on its own, goes in after the text around it is escaped
    title = cut(space.title.replace(_TITLE, ""), 200, shown=escape)
    current = _space_line(space, locale, "sl.modal.current", title=_TITLE).replace(_TITLE, title)
    blocks = [
        {"type": "section", "text": _md(current)},
        *_when_blocks(locale, tz, space.starts_at, space.starts_at),
    ]
    return _modal(
        RESCHEDULE_VIEW, locale, "sl.modal.reschedule", "sl.modal.reschedule_submit", blocks, private_metadata
    )


# --------------------------------------------------------------------------- the App Home


def _link(url: str, text: str) -> str:
    """``<url|text>`` when the url cannot break out of the link syntax; else the text alone."""
    if not url or any(c in url for c in "<>| \n") or units(url) > 2000:
        return text
    return f"<{url}|{text}>"


def _item(space: Space, locale: str, link: Callable[[str], str]) -> dict[str, Any]:
    marker = f"{t(locale, 'card.live')} " if space.status is SpaceStatus.LIVE else ""
    title = cut(space.title, 200, shown=escape)
    head = f"*{escape(marker)}{_link(link(space.id), title)}*"
    line = _space_line(space, locale, "sl.home.item", space_id=space.id)
    return {"type": "section", "text": _md(f"{head}\n{line}")}


def _list(
    locale: str, heading: str, empty: str, spaces: Sequence[Space], link: Callable[[str], str]
) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [{"type": "header", "text": _pt(t(locale, heading), 150)}]
    if not spaces:
        return [*blocks, {"type": "context", "elements": [_md(rich(t(locale, empty)))]}]
    blocks += [_item(s, locale, link) for s in spaces[:ITEMS_PER_LIST]]
    if len(spaces) > ITEMS_PER_LIST:
        more = rich(t(locale, "sl.home.more", count=len(spaces) - ITEMS_PER_LIST))
        blocks.append({"type": "context", "elements": [_md(more)]})
    return blocks


def home_view(
    locale: str,
    *,
    mine: Sequence[Space],
    followed: Sequence[Space],
    workspace: Sequence[Space] | None,
    link: Callable[[str], str],
) -> dict[str, Any]:
    """The App Home tab: my upcoming Spaces, the ones I follow, and for admins (``workspace`` not None)
    the workspace's; each with its time (a date token: the reader's own zone) and its link. Empty lists
    say what to do. ``link(space_id)`` is the Space's share link."""
    blocks = _list(locale, "sl.home.mine", "sl.home.mine_empty", mine, link)
    blocks += [
        {"type": "divider"},
        *_list(locale, "sl.home.followed", "sl.home.followed_empty", followed, link),
    ]
    if workspace is not None:
        blocks += [
            {"type": "divider"},
            *_list(locale, "sl.home.workspace", "sl.home.workspace_empty", workspace, link),
        ]
    blocks += [{"type": "divider"}, {"type": "context", "elements": [_md(rich(t(locale, "sl.home.help")))]}]
    if len(blocks) > VIEW_BLOCKS_LIMIT:  # never: three lists of ITEMS_PER_LIST
        raise ValueError(f"{len(blocks)} blocks: a view takes at most {VIEW_BLOCKS_LIMIT}")
    return {"type": "home", "blocks": blocks}
