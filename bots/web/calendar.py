"""A Space as a calendar entry: the ``.ics`` file behind "Add to calendar", and the Google / Outlook links.

Pure functions of the Space as it is now. A calendar that imported or subscribed to ``<share link>.ics``
learns of a reschedule or a cancel by reading the same UID again with a higher SEQUENCE (RFC 5545 §3.8.7.4),
so the UID never changes and the SEQUENCE never goes down.

Decisions, and why:

- Times are written in UTC (``DTSTART:20260314T183000Z``), not with the host's TZID. The core stores the
  start as one UTC instant (``Space.starts_at``) and that instant is the truth every reader shares; a TZID
  would need a VTIMEZONE block that clients read differently (Outlook maps zones to its own Windows names)
  and would promise a wall-clock time we never re-resolve if a zone's rules change. UTC has no DST gap or
  overlap, and every client shows it in the reader's own zone.
- No ORGANIZER. Its value must be an address (RFC 5545 §3.8.4.3: a cal-address, in practice ``mailto:``),
  and we have none for a chat user: a made-up one would make clients offer to e-mail the organizer or treat
  the entry as an invitation to answer. The host's name goes in DESCRIPTION instead, where everyone reads it.
- The text is in the host's language (``Space.locale``), as the card in the chat is: the file must be the
  same for every reader, or a poller would see it change with its Accept-Language header.
- The link is both URL (Apple, Thunderbird) and LOCATION (Google and Outlook ignore URL): it is where the
  Space takes place.
- Folding (75 octets, never inside a UTF-8 sequence) and TEXT escaping (``\\,`` ``\\;`` ``\\n``) are the
  icalendar library's; we only remove what a TEXT value may not contain at all (control characters).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlencode, urlsplit

from icalendar import Alarm, Calendar, Event, vDuration

from core.models import EventStatus, Space, SpaceStatus
from core.services.events import event_spec
from core.texts import t

PRODID = "-//Spaces//Space calendar//EN"
ALARM_BEFORE = timedelta(minutes=30)  # the subscribers' reminder: the host's own T-30 matches it
# how often a calendar that subscribed to the link should read it again (RFC 7986 REFRESH-INTERVAL, and
# X-PUBLISHED-TTL that Outlook and Apple read): a cancel reaches it within the hour. An import ignores both.
REFRESH = timedelta(hours=1)
ICS_SUFFIX = ".ics"
FEED_NAME = "Spaces"  # a feed's calendar name when the community's is unknown

FeedEntry = tuple[Space, str]  # a Space of a feed and its share link

# any fixed instant: what the version hash renders instead of "now" (DTSTAMP alone must not change it)
_VERSION_STAMP = datetime(2000, 1, 1, tzinfo=UTC)
# line breaks a title or description may carry in any of their Unicode spellings
_BREAKS = re.compile(r"\r\n|[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]")


def space_ics(space: Space, *, link: str, host_name: str, now: datetime) -> bytes:
    """The Space as an RFC 5545 calendar (METHOD PUBLISH) holding one VEVENT, UTF-8, CRLF line ends.

    ``link``: the absolute share link (its host names the UID: ``<space id>@<host>``). ``host_name``: shown
    in DESCRIPTION; empty when unknown. ``now``: aware, written as DTSTAMP (when this copy was made).
    Served for every status: a cancelled Space is STATUS:CANCELLED (a calendar must learn of it), and so is
    one that ended without ever going live (as on the platforms' own events, see core.services.events)."""
    return _calendar(space, link=link, host_name=host_name, stamp=now).to_ical()


def feed_ics(entries: Sequence[FeedEntry], *, name: str, now: datetime) -> bytes:
    """A community's feed: one calendar (named ``name``, :data:`FEED_NAME` when empty) holding the VEVENT of
    each ``(space, share link)``, in the order given, each as :func:`space_ics` writes it (same UID and
    SEQUENCE: a calendar that also imported one Space's file keeps one entry). No host name: the feed is
    read in one query, without a profile per Space (the share link names the host)."""
    return _feed(entries, name=name, stamp=now).to_ical()


def feed_version(entries: Sequence[FeedEntry], *, name: str) -> str:
    """Like :func:`ics_version`, for :func:`feed_ics`."""
    body = _feed(entries, name=name, stamp=_VERSION_STAMP).to_ical()
    return hashlib.sha256(body).hexdigest()[:32]


def ics_version(space: Space, *, link: str, host_name: str) -> str:
    """A hash of everything :func:`space_ics` writes except DTSTAMP: equal versions, same calendar entry
    (an HTTP validator; DTSTAMP differs in every copy and means nothing to a poller)."""
    body = _calendar(space, link=link, host_name=host_name, stamp=_VERSION_STAMP).to_ical()
    return hashlib.sha256(body).hexdigest()[:32]


def sequence(space: Space) -> int:
    """RFC 5545 SEQUENCE: 0 as scheduled, +1 per reschedule (``Space.revision`` starts at 1), +1 once the
    Space is over (cancelled: STATUS changes; ended: DTEND becomes the real end). Never decreases: a Space
    is only rescheduled while scheduled, and a closed Space never reopens (core.rules)."""
    return space.revision - 1 + (0 if space.status.is_open else 1)


def ics_filename(space: Space) -> str:
    """A download name safe in any header and file system: the title folded to ASCII letters, digits and
    dashes (``friday-jam.ics``), ``space-<id>.ics`` when nothing of it is left."""
    ascii_title = unicodedata.normalize("NFKD", space.title).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")[:50].rstrip("-")
    return f"{slug or f'space-{space.id}'}{ICS_SUFFIX}"


def google_calendar_url(space: Space, link: str) -> str:
    """Google Calendar's "create event" page, filled in (times in UTC: Google shows them in the reader's
    zone). For a scheduled or live Space: the page adds a new entry, it cannot cancel one."""
    start, end = _times(space, link)
    query = {
        "action": "TEMPLATE",
        "text": _line(space.title),
        "dates": f"{_compact(start)}/{_compact(end)}",
        "details": _details(space, link, host_name=""),
        "location": link,
    }
    return "https://calendar.google.com/calendar/render?" + _query(query)


def outlook_calendar_url(space: Space, link: str, *, work: bool = False) -> str:
    """Outlook on the web's "new event" form, filled in: outlook.live.com (personal accounts), or
    outlook.office.com with ``work=True`` (Microsoft 365 accounts sign in there)."""
    start, end = _times(space, link)
    query = {
        "path": "/calendar/action/compose",
        "rru": "addevent",
        "subject": _line(space.title),
        "startdt": _iso(start),
        "enddt": _iso(end),
        "body": _details(space, link, host_name=""),
        "location": link,
    }
    host = "outlook.office.com" if work else "outlook.live.com"
    return f"https://{host}/calendar/0/action/compose?" + _query(query)


# ------------------------------------------------------------------------------------------------ inside


def _calendar(space: Space, *, link: str, host_name: str, stamp: datetime) -> Calendar:
    cal = _vcalendar()
    cal.add_component(_vevent(space, link=link, host_name=host_name, stamp=stamp))
    return cal


def _vcalendar(name: str | None = None) -> Calendar:
    """The VCALENDAR around the events: published (not an invitation), re-read every :data:`REFRESH`."""
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("method", "PUBLISH")
    if name is not None:
        # the subscribed calendar's name: RFC 7986 NAME, and X-WR-CALNAME that Apple, Google and Outlook read
        cal.add("name", name)
        cal.add("x-wr-calname", name)
    cal.add("refresh-interval", vDuration(REFRESH), parameters={"VALUE": "DURATION"})
    cal.add("x-published-ttl", vDuration(REFRESH))
    return cal


def _vevent(space: Space, *, link: str, host_name: str, stamp: datetime) -> Event:
    """The Space's VEVENT, the same in its own file and in a feed (one UID: a calendar holding both sees
    one entry)."""
    spec = event_spec(space, link)
    cancelled = spec.status is EventStatus.CANCELED
    summary = _line(space.title)
    if cancelled:
        # Google and Outlook keep an imported cancelled entry on the grid: the title has to say it
        summary = f"{t(space.locale, 'card.cancelled')} · {summary}"

    event = Event()
    event.add("uid", f"{space.id}@{_host(link)}")
    event.add("dtstamp", _utc(stamp))
    event.add("created", _utc(space.created_at))
    event.add("dtstart", _utc(spec.starts_at))
    event.add("dtend", _utc(spec.ends_at))
    event.add("sequence", sequence(space))
    event.add("status", "CANCELLED" if cancelled else "CONFIRMED")
    event.add("summary", summary)
    event.add("description", _details(space, link, host_name=host_name))
    event.add("location", link)
    event.add("url", link)
    if space.status is SpaceStatus.SCHEDULED:
        # a reminder only for what is still ahead: a live, ended or cancelled Space has nothing to announce
        alarm = Alarm()
        alarm.add("action", "DISPLAY")
        alarm.add("trigger", -ALARM_BEFORE)  # relative to DTSTART: follows a reschedule by itself
        alarm.add("description", summary)  # DISPLAY alarms MUST have one (RFC 5545 §3.6.6)
        event.add_component(alarm)
    return event


def _feed(entries: Sequence[FeedEntry], *, name: str, stamp: datetime) -> Calendar:
    cal = _vcalendar(_line(name) or FEED_NAME)
    for space, link in entries:
        cal.add_component(_vevent(space, link=link, host_name="", stamp=stamp))
    return cal


def _details(space: Space, link: str, *, host_name: str) -> str:
    parts = []
    if space.description:
        parts.append(_text(space.description))
    if host_name:
        parts.append(t(space.locale, "card.host", host=_line(host_name)))
    parts.append(link)
    return "\n\n".join(parts)


def _text(value: str) -> str:
    """A multi-line TEXT value: every line break spelled ``\\n``, other control characters removed
    (RFC 5545 §3.3.11 allows none but tab; a NUL or an escape code breaks parsers and terminals)."""
    value = _BREAKS.sub("\n", value)
    return "".join(c for c in value if c in "\t\n" or unicodedata.category(c) != "Cc").strip()


def _line(value: str) -> str:
    """A one-line TEXT value (a title, a name): breaks and runs of spaces become one space."""
    return " ".join(_text(value).split())


def _times(space: Space, link: str) -> tuple[datetime, datetime]:
    spec = event_spec(space, link)
    return _utc(spec.starts_at), _utc(spec.ends_at)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment.isoformat()}: the core's times are aware UTC")
    # whole seconds: DATE-TIME has no fraction (the library would drop it; say so here instead)
    return moment.astimezone(UTC).replace(microsecond=0)


def _compact(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%SZ")


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _query(fields: dict[str, str]) -> str:
    # %20, never "+": Outlook's compose form shows a "+" as a plus sign
    return urlencode(fields, quote_via=quote, safe="/:")


def _host(link: str) -> str:
    host = urlsplit(link).hostname
    if not host:
        raise ValueError(f"not an absolute link: {link!r}")
    return host
