"""Read the time part of a slash command ("tomorrow 20:00", "demain 20h30", "in 2 hours", ...) as an instant.

The heavy lifting is dateparser's. Around it, this module only does what dateparser cannot know:

* which IANA zone the user means (a leading/trailing ``Europe/Paris`` or ``UTC`` overrides the default),
* explicit offsets or the zone's own abbreviations (``+02:00``, ``CEST``), which is how a user picks one of
  the two readings of a wall time that happens twice when the clocks go back,
* a little pre-normalisation of French and evening forms dateparser misreads ("20h", "ce soir"),
* DST: dateparser returns a *naive* wall time; a wall time in a spring-forward gap or a fall-back overlap is
  refused with the valid alternatives instead of being silently shifted,
* relative durations ("in 2 hours") are exact elapsed time from ``now``, not wall-clock arithmetic.

No clock is read here: the caller passes ``now``. Nothing is built at import time; dateparser parsers and zone
tables are created on first use and cached.
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from core.errors import InvalidTime

EXAMPLE = "tomorrow 20:00"
# a time expression is a few words; anything much longer is not one (and would only cost parsing time)
MAX_TEXT = 120
# split_when_and_title tries leading runs of at most this many words
MAX_WHEN_WORDS = 6


@dataclass(frozen=True, slots=True)
class ParsedTime:
    at: datetime  # aware, UTC
    tz: str  # IANA zone the text was read in (from the text, else the default passed in)
    local: datetime  # aware, in tz (what the user meant)


# --------------------------------------------------------------------------------------------------- zones


@functools.cache
def _zone_names() -> dict[str, str]:
    """Lower-cased IANA name -> its proper spelling (so `europe/paris` is accepted). Read once, lazily."""
    return {name.lower(): name for name in zoneinfo.available_timezones()}


def check_zone(name: str) -> str:
    """The proper IANA spelling of ``name`` (case-insensitive); raises InvalidTime("time.unknown_zone")."""
    canonical = _zone_names().get(name.strip().lower()) if name and len(name) <= 64 else None
    if canonical is None:
        raise InvalidTime("time.unknown_zone", zone=name)
    return canonical


# "Area/Location[/More]" starting with a letter ("1/12" is a date, not a zone), or UTC/GMT on their own
_ZONE_LIKE = re.compile(r"[A-Za-z][\w+\-]*(?:/[\w+\-]+)+|utc|gmt", re.IGNORECASE)


def _take_zone(words: list[str], index: int) -> str | None:
    """Pop and return the IANA zone written at ``words[index]`` (0 or -1), if that word looks like one.

    A word that looks like a zone but is none ("Mars/Olympus") raises unknown_zone rather than being fed to
    dateparser, which would only say "unreadable"."""
    if len(words) < 2 or not _ZONE_LIKE.fullmatch(words[index]):
        return None
    return check_zone(words.pop(index))


# explicit UTC offset: "+02:00", "+0200", "+2", "UTC+2", "GMT-05:00"
_OFFSET = re.compile(r"(?:utc|gmt)?([+-])(\d{1,2})(?::?(\d{2}))?", re.IGNORECASE)


@functools.lru_cache(maxsize=256)
def _zone_abbreviations(zone: str, year: int) -> dict[str, timedelta]:
    """The abbreviations ``zone`` uses around ``year`` ("CET" -> +1h, "CEST" -> +2h), sampled fortnightly."""
    zi = ZoneInfo(zone)
    found: dict[str, timedelta] = {}
    for month in range(1, 13 * 3 + 1):  # year-1 .. year+1: covers a text read in late December for January
        y, m = year - 1 + (month - 1) // 12, (month - 1) % 12 + 1
        for day in (1, 15):
            probe = datetime(y, m, day, 12, tzinfo=UTC).astimezone(zi)
            name, offset = probe.tzname(), probe.utcoffset()
            if name and offset is not None and name[0] not in "+-":
                found[name.upper()] = offset
    return found


# Zones whose abbreviations are understood whatever the user's zone ("tomorrow 8pm EST" read in Paris).
# Deliberately short: an unknown capitalised word ("ART", "CAT") stays a word of the title. Order decides
# clashes: India's IST before Ireland's.
_WELL_KNOWN_ZONES = (
    "UTC",
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "America/Anchorage",
    "Pacific/Honolulu",
    "Europe/London",
    "Europe/Paris",
    "Europe/Helsinki",
    "Europe/Lisbon",
    "Europe/Moscow",
    "Asia/Kolkata",
    "Asia/Tokyo",
    "Asia/Seoul",
    "Australia/Sydney",
    "Australia/Adelaide",
    "Australia/Perth",
    "Pacific/Auckland",
    "Africa/Johannesburg",
)


@functools.lru_cache(maxsize=16)
def _well_known_abbreviations(year: int) -> dict[str, timedelta]:
    found: dict[str, timedelta] = {"Z": timedelta(0)}
    for zone in _WELL_KNOWN_ZONES:
        for name, offset in _zone_abbreviations(zone, year).items():
            found.setdefault(name, offset)
    return found


def _take_offset(words: list[str], zone: str, year: int) -> timedelta | None:
    """Pop and return an explicit offset written as the last word: "+02:00", the zone's own "CEST"/"CET", or
    a well-known abbreviation ("EST", "PDT"). Abbreviations must be typed in capitals: "Cet événement" and
    "cest" are French words, not Central European Time."""
    if len(words) < 2:
        return None
    last = words[-1]
    offset: timedelta | None = None
    if m := _OFFSET.fullmatch(last):
        hours, minutes = int(m[2]), int(m[3] or 0)
        if hours > 14 or minutes > 59:
            return None
        offset = timedelta(hours=hours, minutes=minutes) * (1 if m[1] == "+" else -1)
    elif last.isalpha() and last.isupper():
        offset = _zone_abbreviations(zone, year).get(last, _well_known_abbreviations(year).get(last))
    if offset is not None:
        words.pop()
    return offset


def _stray_zone(text: str) -> bool:
    """Whether dateparser would find a zone abbreviation we did not take ("demain 20h cet", "... cet night").

    It would honour or ignore it depending on the form, and convert to its own TIMEZONE; better to say we
    could not read the text (and, when splitting, to leave the word to the title)."""
    from dateparser.timezone_parser import pop_tz_offset_from_string

    return pop_tz_offset_from_string(text)[1] is not None


# ------------------------------------------------------------------------------------------- dateparser


@functools.lru_cache(maxsize=64)
def _parser(languages: tuple[str, ...], base: datetime) -> Any:
    """A dateparser parser reading naive wall times relative to the naive wall time ``base``.

    Its TIMEZONE is UTC whatever the user's zone: the wall times are put in the zone here (see _resolve).
    Telling dateparser the real zone makes it compare a bare "20:00" with ``base`` shifted by the zone's
    offset (dateparser 1.5.0), so "22h" at 21:30 in Kolkata came out as tomorrow.

    Bounded cache: ``base`` changes with every ``now``, but split_when_and_title parses several prefixes of
    one text against the same ``now``; dateparser's own language data is loaded once, globally."""
    from dateparser.date import DateDataParser  # slow import, and it loads data: keep it off import time

    return DateDataParser(
        languages=list(languages),
        settings={
            "PREFER_DATES_FROM": "future",
            "RELATIVE_BASE": base,
            "TIMEZONE": "UTC",
            "RETURN_AS_TIMEZONE_AWARE": False,  # naive wall time: DST gaps and overlaps are handled below
            "RETURN_TIME_AS_PERIOD": True,
            "DATE_ORDER": "DMY",  # 1/12 is the 1st of December (fr, and most of the world)
        },
    )


# ------------------------------------------------------------------------------------ pre-normalisation

# French hours, which dateparser reads as durations: "20h" -> "20:00", "18h30"/"18 h 30" -> "18:30".
# After "in"/"dans" they *are* durations ("dans 1h30"): there they become "1h 30min", which dateparser reads.
_FRENCH_HOUR = re.compile(r"(?<![\w:])(\d{1,2}) ?h ?(\d{2})?(?!\w)")
_AFTER_RELATIVE = re.compile(r"\b(?:in|dans)\s*$")
# "à 20h", "a 20h" (typed without the accent): a filler before a time
_A_BEFORE_TIME = re.compile(r"(?<!\w)[àa] (?=\d)")
# "dans 2 heures et 30 minutes": dateparser would read "et" as Eastern Time
_ET = re.compile(r"\bet\b")
# "d'ici 2 heures" means "dans 2 heures"; dateparser's French data lacks it
_DICI = re.compile(r"\bd'ici\b")
# "vendredi prochain", "prochain vendredi": dateparser's French data lacks it, and the bare weekday already
# means the coming one. Remembered so that "next saturday" on a Saturday never means today.
_NEXT = re.compile(r"\b(?:next|prochaine?)\b")
_PROCHAIN = re.compile(r"\bprochaine?\b")
# Evening words: dateparser's French data lacks "ce soir" and reads "tonight 9" without the 9. We turn them
# into a plain day and remember the evening, so that "ce soir 9h" is 21:00.
_EVENING = (
    (re.compile(r"\bce soir\b"), "aujourd'hui"),
    (re.compile(r"\b(?:tonight|this evening)\b"), "today"),
    (re.compile(r"\b(?:au |le |du )?soir\b|\b(?:in the )?evening\b"), ""),
)
_AM = re.compile(r"\d ?a\.?m\b")
# a time was written (so a parse without one is an error in the time, not a missing time)
_TIME_WRITTEN = re.compile(r"\d:\d|\d ?[ap]\.?m\b")
_TIMES = re.compile(r"\d{1,2}:\d{2}(?::\d{2})?|\d{1,2} ?[ap]\.?m\b")
_WEEKDAY = re.compile(
    r"\b(?:mon|tue|tues|wed|thu|thur|thurs|fri|sat|sun)(?:day)?\b|\bwednesday\b|\bsaturday\b|\bthursday\b"
    r"|\btuesday\b|\b(?:lun|mar|mer|jeu|ven|sam|dim)\.?(?!\w)|\b(?:lun|mar|mercre|jeu|vendre|same)di\b"
    r"|\bdimanche\b"
)
# relative expressions: checked for being a pure duration (see _duration)
_RELATIVE = re.compile(r"\b(?:in|dans|from now|ago|il y a|later|plus tard|now|maintenant)\b")
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}\S*")


@dataclass(slots=True)
class _Normalised:
    text: str
    evening: bool
    next_word: bool


def _normalise(text: str) -> _Normalised:
    s = text.lower().replace("\u2019", "'")  # typographic apostrophe
    s = _DICI.sub("dans", s)
    next_word = bool(_NEXT.search(s))
    s = _PROCHAIN.sub(" ", s)
    evening = False
    for pattern, replacement in _EVENING:
        s, count = pattern.subn(replacement, s)
        evening = evening or count > 0
    s = _A_BEFORE_TIME.sub("", s)
    s = _ET.sub(" ", s)

    def hour(m: re.Match[str]) -> str:
        if _AFTER_RELATIVE.search(m.string, 0, m.start()):
            return f"{m[1]}h {m[2]}min" if m[2] else m[0]
        return f"{m[1]}:{m[2] or '00'}"

    s = _FRENCH_HOUR.sub(hour, s)
    return _Normalised(" ".join(s.split()), evening, next_word)


# ------------------------------------------------------------------------------------------------- API


def parse_when(text: str, *, now: datetime, tz: str, languages: Sequence[str] = ("en", "fr")) -> ParsedTime:
    """Read ``text`` as one instant. ``now`` (aware, any zone) anchors relative forms; ``tz`` is the default
    IANA zone. Raises InvalidTime: time.unreadable, time.missing_time, time.unknown_zone, time.nonexistent,
    time.ambiguous. Whether the instant is in the past or too far ahead is for core.rules to say."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    zone = check_zone(tz)
    try:
        return _parse(text, now, zone, tuple(languages))
    except (OverflowError, ValueError):  # "0001-01-01T00:00+14:00", "in 10000000000 minutes"
        raise _unreadable(text) from None


def _parse(text: str, now: datetime, zone: str, languages: tuple[str, ...]) -> ParsedTime:
    words = text.split()
    if not words or len(text) > MAX_TEXT:
        raise _unreadable(text)
    zone = _take_zone(words, 0) or _take_zone(words, -1) or zone
    offset = _take_offset(words, zone, now.year)
    if offset is not None and len(words) > 1 and (z := _take_zone(words, -1)):  # "... UTC +02:00"
        zone = z
    zi = ZoneInfo(zone)
    rest = " ".join(words)

    # ISO 8601 (what machines and the web form send): exact when it carries an offset
    if _ISO.fullmatch(rest):
        try:
            iso = datetime.fromisoformat(rest)
        except ValueError:
            iso = None
        if iso is not None and iso.tzinfo is not None:
            return _exact(iso, zone)
        if iso is not None:
            return _resolve(iso, zone, offset)

    norm = _normalise(rest)
    base = now.astimezone(zi).replace(tzinfo=None)
    if _stray_zone(norm.text):  # "demain 20h cet": dateparser would apply or drop it silently
        raise _unreadable(text)
    data = _parser(languages, base).get_date_data(norm.text)
    wall: datetime | None = data.date_obj
    if wall is None:
        raise _unreadable(text)
    if _RELATIVE.search(norm.text):
        delta = _duration(norm.text, languages, base, wall)
        if delta is not None:
            return _exact(now + delta, zone)
    parts = data.parts or ()
    if "day" not in parts or "month" not in parts:  # "32/12 20:00" reads as 2032-11-12: not what was meant
        raise _unreadable(text)
    if "time" not in parts:
        if _TIME_WRITTEN.search(norm.text):  # "tomorrow 25:00": the time is wrong, not missing
            raise _unreadable(text)
        raise InvalidTime("time.missing_time", text=text)
    if wall.tzinfo is not None:  # defensive: _stray_zone keeps zones away from dateparser
        return _exact(wall, zone)
    if norm.evening and 1 <= wall.hour < 12 and not _AM.search(norm.text):
        wall += timedelta(hours=12)  # "ce soir 9h"
    if (
        _WEEKDAY.search(norm.text)
        and not norm.next_word
        and not re.search(r"\d", _TIMES.sub("", norm.text))  # "samedi 12 déc." names its date
        and wall - timedelta(days=7) > base
    ):
        wall -= timedelta(days=7)  # dateparser skips today's weekday even when the time is still ahead
    return _resolve(wall, zone, offset)


def split_when_and_title(
    text: str, *, now: datetime, tz: str, languages: Sequence[str] = ("en", "fr")
) -> tuple[ParsedTime, str]:
    """Split "tomorrow 20:00 Weekly AMA" into the time and the title (the longest leading run of words that
    reads as a time wins). Title-first forms use a separator: "Weekly AMA | tomorrow 20:00",
    "Weekly AMA @ tomorrow 20:00". Raises the most informative InvalidTime when no time is found."""
    s = " ".join(text.split())
    if not s:
        raise _unreadable(text)
    errors: list[tuple[int, InvalidTime]] = []

    def attempt(when: str) -> ParsedTime | None:
        try:
            return parse_when(when, now=now, tz=tz, languages=languages)
        except InvalidTime as e:
            errors.append((_RANK.get(e.key, 0), e))
            return None

    for sep in ("|", " @ "):
        if sep in s:
            title, _, when = s.rpartition(sep)
            if (parsed := attempt(when)) is not None:
                return parsed, title.strip()
            when, _, title = s.partition(sep)  # the other way round: "tomorrow 20:00 | Weekly AMA"
            if (parsed := attempt(when)) is not None:
                return parsed, title.strip()

    words = s.split(" ")
    for n in range(min(MAX_WHEN_WORDS, len(words)), 0, -1):
        if n > 1 and words[n - 1].lower() in _FILLERS:
            continue  # "tomorrow 20:00 at the pub": "at" belongs to the title
        head = " ".join(words[:n])
        if (parsed := attempt(head)) is not None:
            return parsed, " ".join(words[n:])
        if errors[-1][1].key == "time.unknown_zone":
            raise errors[-1][1]  # "tomorrow 20:00 Europe/Pariss": a typo, not the start of the title
    rank, best = max(errors, key=lambda e: e[0])  # max keeps the first, i.e. the longest, of equal rank
    if rank == 0:
        raise _unreadable(text)
    raise best


def format_local(at: datetime, tz: str, locale: str) -> str:
    """``at`` as the wall time in ``tz`` for a reader of ``locale``:
    "Tue 1 Dec 2026, 18:30 CET" (en) / "mar. 1 déc. 2026, 18:30 CET" (fr)."""
    local = (at if at.tzinfo is not None else at.replace(tzinfo=UTC)).astimezone(ZoneInfo(check_zone(tz)))
    days, months = _NAMES.get((locale or "en").replace("_", "-").split("-", 1)[0].lower(), _NAMES["en"])
    return (
        f"{days[local.weekday()]} {local.day} {months[local.month - 1]} {local.year}, "
        f"{local:%H:%M} {_abbreviation(local)}"
    )


# ---------------------------------------------------------------------------------------------- helpers

_RANK = {"time.nonexistent": 3, "time.ambiguous": 3, "time.unknown_zone": 2, "time.missing_time": 1}
_FILLERS = frozenset({"at", "on", "the", "à", "a", "le", "la", "de", "du", "et", "and", "vers", "around"})

_NAMES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "en": (
        ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
    ),
    "fr": (
        ("lun.", "mar.", "mer.", "jeu.", "ven.", "sam.", "dim."),
        ("janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.", "nov.", "déc."),
    ),
}


def _unreadable(text: str) -> InvalidTime:
    return InvalidTime("time.unreadable", text=text, example=EXAMPLE)


def _duration(text: str, languages: tuple[str, ...], base: datetime, wall: datetime) -> timedelta | None:
    """The exact duration if ``text`` is a pure one ("in 2 hours", "dans 1h30"), else None.

    A duration read against a base shifted by an odd amount moves by that amount; anything anchored to the
    calendar or a clock time ("in 2 days at 20:00") does not. Using the duration itself (rather than
    dateparser's wall-clock sum) keeps "in 1 hour" exact across a DST change."""
    shifted = base + timedelta(hours=1, minutes=7)
    other = _parser(languages, shifted).get_date_data(text).date_obj
    if other is None or other - shifted != wall - base:
        return None
    result: timedelta = wall - base
    return result


def _exact(at: datetime, zone: str) -> ParsedTime:
    utc = at.astimezone(UTC)
    return ParsedTime(at=utc, tz=zone, local=utc.astimezone(ZoneInfo(zone)))


def _resolve(wall: datetime, zone: str, offset: timedelta | None) -> ParsedTime:
    """The instant of the naive wall time ``wall`` in ``zone``; an explicit ``offset`` makes it exact.

    Raises time.nonexistent for a wall time the clocks skip and time.ambiguous for one they show twice."""
    wall = wall.replace(tzinfo=None)
    if offset is not None:
        return _exact((wall - offset).replace(tzinfo=UTC), zone)
    zi = ZoneInfo(zone)
    first, second = wall.replace(tzinfo=zi, fold=0), wall.replace(tzinfo=zi, fold=1)
    shown = f"{wall:%Y-%m-%d %H:%M}"
    if first.astimezone(UTC).astimezone(zi).replace(tzinfo=None) != wall:  # skipped: no instant shows it
        readings = sorted(d.astimezone(UTC) for d in (first, second))
        raise InvalidTime(
            "time.nonexistent", local=shown, zone=zone, alternatives=[_with_offset(d, zi) for d in readings]
        )
    if first.utcoffset() != second.utcoffset():  # shown twice: before and after the clocks go back
        alternatives = [_with_offset(first, zi), _with_offset(second, zi)]
        raise InvalidTime("time.ambiguous", local=shown, zone=zone, alternatives=alternatives)
    return _exact(first, zone)


def _with_offset(at: datetime, zi: ZoneInfo) -> str:
    """Like "2027-03-28 03:30 CEST (UTC+02:00)"."""
    local = at.astimezone(zi)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()} (UTC{_colon(local.utcoffset())})"


def _colon(offset: timedelta | None) -> str:
    minutes = int((offset or timedelta()).total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _abbreviation(local: datetime) -> str:
    """The zone abbreviation ("CET", "IST"); zones without one ("+04") are shown as "UTC+04:00"."""
    name = local.tzname() or ""
    return name if name and name[0] not in "+-" else f"UTC{_colon(local.utcoffset())}"
