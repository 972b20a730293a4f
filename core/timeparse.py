"""Read the time part of a slash command ("tomorrow 20:00", "demain 20h30", "in 2 hours", ...) as an instant.

One rule above all: **never a silent misreading**. Whatever is accepted is exactly what a careful reader would
understand; when a careful reader would have to guess, the user is asked, with the choices spelled out.

How it reads (a small hand-written grammar over a closed vocabulary, ``core.timewords``):

* the text is cut into tokens (numbers, words, punctuation), each remembering where it starts, so that the
  title is always the user's own text, untouched;
* a *time phrase* is read from the first token: parts (a day, a clock time, a part of the day, a duration,
  a zone) are taken one by one, and a word joins the phrase only when it changes the instant or is a zone the
  user clearly wrote. Once the phrase has a day and a clock time, a further day word is the title's
  ("tomorrow 20:00 Today in AI"); a bare number never joins a complete time ("in 45 minutes 1 on 1 ...");
* the phrase is then *resolved* against ``now`` in the right zone: DST gaps and overlaps, an abbreviation used
  out of season ("EST" in July), a day that depends on whose calendar ("tomorrow 20:00 JST" typed in Paris
  after midnight in Tokyo), an hour that could be morning or evening ("at 8") — each is refused with the
  readings to choose from, never guessed.

Nothing is built at import time (zone tables are read on first use and cached); no clock is read here: the
caller passes ``now``.
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

from core.errors import InvalidTime, InvalidTitle
from core.rules import MAX_AHEAD, PAST_GRACE
from core.timewords import (
    ABBREVIATION_READINGS,
    ABBREVIATIONS,
    COUNT_NOUNS,
    GENERIC_ZONES,
    REGION_WORDS,
    Lexicon,
    Period,
    city_zone,
    lexicon,
)

EXAMPLE = "tomorrow 20:00"
# a time expression alone is a few words; anything much longer is not one (parse_when)
MAX_TEXT = 120
# a time and a title together (split_when_and_title): titles are at most 100 characters
MAX_SPLIT = 400


@dataclass(frozen=True, slots=True)
class ParsedTime:
    at: datetime  # aware, UTC
    tz: str  # IANA zone the text was read in (from the text, else the default passed in)
    local: datetime  # aware, in tz (what the user meant)


class MissingTitle(InvalidTime, InvalidTitle):
    """A time was read, but no title followed it ("/space in 3 hours"). Both an InvalidTime (it comes from the
    time parser) and an InvalidTitle (what is missing is the title), so either family of handlers sees it."""

    FIELD = "title"


# --------------------------------------------------------------------------------------------------- zones


@functools.cache
def _zone_names() -> dict[str, str]:
    """Lower-cased IANA name -> its proper spelling (so `europe/paris` is accepted). Read once, lazily."""
    return {name.lower(): name for name in zoneinfo.available_timezones()}


@functools.cache
def _zone_areas() -> frozenset[str]:
    """The real IANA areas ("europe", "america", "etc"...): only "Area/..." words look like zones, so that
    "TCP/IP" or "24/7" stay words of the title."""
    return frozenset(name.split("/", 1)[0] for name in _zone_names() if "/" in name)


@functools.cache
def _iana_cities() -> dict[str, str]:
    """ "new york" -> "America/New_York": the location part of every Area/Location zone, for "<city> time"."""
    cities: dict[str, str] = {}
    for low, name in sorted(_zone_names().items()):
        area, _, place = low.partition("/")
        if place and area not in ("etc", "us", "canada", "brazil", "chile", "mexico") and "/" not in place:
            cities.setdefault(place.replace("_", " "), name)
    return cities


def check_zone(name: str) -> str:
    """The proper IANA spelling of ``name`` (case-insensitive); raises InvalidTime("time.unknown_zone")."""
    canonical = _zone_names().get(name.strip().lower()) if name and len(name) <= 64 else None
    if canonical is None:
        # a zone given on its own (an option, a setting); a zone typed inside a time is the time's fault
        raise InvalidTime("time.unknown_zone", field="timezone", zone=name)
    return canonical


@functools.lru_cache(maxsize=256)
def _zone_abbreviations(zone: str, year: int) -> dict[str, timedelta]:
    """The abbreviations ``zone`` uses around ``year`` ("CET" -> +1h, "CEST" -> +2h), sampled weekly."""
    zi = ZoneInfo(zone)
    found: dict[str, timedelta] = {}
    start = datetime(year - 1, 1, 1, 12, tzinfo=UTC)
    for week in range(0, 3 * 53):
        probe = (start + timedelta(weeks=week)).astimezone(zi)
        name, offset = probe.tzname(), probe.utcoffset()
        if name and offset is not None and name[0] not in "+-":
            found[name.upper()] = offset
    return found


# Zones where a date written 1/12 may be the 1st of December or January 12th: the US, Canada and the
# Philippines write month first, or both ways. Elsewhere day first (1/12 is the 1st of December).
_MONTH_FIRST_ZONES = (
    "America/New_York",
    "America/Detroit",
    "America/Kentucky/",
    "America/Indiana/",
    "America/Chicago",
    "America/Menominee",
    "America/North_Dakota/",
    "America/Denver",
    "America/Boise",
    "America/Phoenix",
    "America/Los_Angeles",
    "America/Anchorage",
    "America/Juneau",
    "America/Sitka",
    "America/Metlakatla",
    "America/Yakutat",
    "America/Nome",
    "America/Adak",
    "America/Toronto",
    "America/Montreal",
    "America/Vancouver",
    "America/Edmonton",
    "America/Winnipeg",
    "America/Regina",
    "America/Halifax",
    "America/St_Johns",
    "America/Puerto_Rico",
    "Pacific/Honolulu",
    "Asia/Manila",
    "US/",
    "Canada/",
)


def _month_first_possible(zone: str) -> bool:
    return zone.startswith(_MONTH_FIRST_ZONES)


# ---------------------------------------------------------------------------------------------- tokens


@dataclass(frozen=True, slots=True)
class _Tok:
    text: str  # as typed
    low: str  # lower case, typographic apostrophe replaced
    start: int  # offset in the whitespace-collapsed text
    end: int
    kind: str  # "num", "word", "punct", "zone" (Area/Location), "iso" (2026-12-01T18:30...)
    space: bool  # whitespace before it


_TOKEN = re.compile(
    r"(?P<iso>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?(?![\w:]))"
    r"|(?P<zone>[^\W\d_][\w+\-]*(?:/[\w+\-]+)+)"
    r"|(?P<num>\d+)"
    r"|(?P<word>[^\W\d_]+(?:['’][^\W\d_]+)*(?:-[^\W\d_]+(?:['’][^\W\d_]+)*)*)"
    r"|(?P<punct>\S)"
)
# Area/Location as IANA writes it: capitalised words ("Mars/Olympus" is a zone misspelt; "TCP/IP" is not)
_ZONE_SHAPED = re.compile(r"[A-Z][a-z]+(?:_[A-Z][a-z]+)*(?:/[A-Z][a-z]+(?:_[A-Z][a-z]+)*)+")
_PLAIN = re.compile(
    r"(?P<num>\d+)|(?P<word>[^\W\d_]+(?:['’][^\W\d_]+)*(?:-[^\W\d_]+(?:['’][^\W\d_]+)*)*)|(?P<punct>\S)"
)


def _lex(s: str) -> list[_Tok]:
    toks: list[_Tok] = []

    def add(m: re.Match[str], kind: str, offset: int = 0) -> None:
        start, end = m.start() + offset, m.end() + offset
        space = start == 0 or s[start - 1].isspace()
        toks.append(_Tok(m.group(), m.group().lower().replace("’", "'"), start, end, kind, space))

    for m in _TOKEN.finditer(s):
        kind = m.lastgroup or "punct"
        if kind == "zone" and m.group().split("/", 1)[0].lower() not in _zone_areas():
            if _ZONE_SHAPED.fullmatch(m.group()):
                add(m, "zonelike")  # "Mars/Olympus": written like a zone name, and none
                continue
            for sub in _PLAIN.finditer(m.group()):  # "TCP/IP", "and/or", "24/7": plain words
                add(sub, sub.lastgroup or "punct", m.start())
            continue
        add(m, kind)
    return toks


# ------------------------------------------------------------------------------------------ components


@dataclass(slots=True)
class _Day:
    kind: str  # "rel" (today/tomorrow), "weekday", "date", "dom" (day of the month only)
    text: str
    n: int = 0  # rel: days from today
    weekday: int = 0
    next_: bool = False  # "next friday": never today
    week_offset: int = 0  # "friday next week"
    year: int | None = None
    month: int = 0
    day: int = 0
    period: Period | None = None
    abbreviated: bool = False  # "sat", "ven.": also ordinary words
    month_first_ambiguous: bool = False  # 1/12 where month-first dates are written too: asked
    swapped: tuple[int, int] | None = None  # 1/12: the other reading (month, day), for a weekday to settle
    error: InvalidTime | None = None


@dataclass(slots=True)
class _Clock:
    hour: int
    minute: int
    kind: str  # "bare" (at 8), "soft" (8:30, 8h: morning unless the day part says otherwise), "fixed",
    # "noon", "midnight"
    text: str
    meridiem: str | None = None
    second: int = 0
    colon: bool = False  # written H:MM (English style), as opposed to 20h30
    error: InvalidTime | None = None


@dataclass(slots=True)
class _Zone:
    kind: str  # "iana" (Europe/Paris, UTC, ET, "Paris time"), "offset" (+02:00, UTC+3), "abbr" (CET, EST)
    text: str
    name: str = ""  # iana: the zone; abbr: the abbreviation
    offset: timedelta | None = None
    error: InvalidTime | None = None


@dataclass(slots=True)
class _Span:
    text: str
    exact: timedelta = timedelta(0)  # hours, minutes: elapsed time
    days: int = 0  # days, weeks: calendar days, same wall-clock time
    months: int = 0

    @property
    def calendar(self) -> bool:
        return bool(self.days or self.months)


@dataclass(slots=True)
class _Period:
    period: Period
    attached: bool  # "du soir", "in the evening": qualifies a clock time, never a title word
    text: str


@dataclass(slots=True)
class _When:
    """A time phrase being read: the parts found so far and where it ends (token index, exclusive)."""

    start: int
    end: int
    day: _Day | None = None
    other_day: _Day | None = None  # "Tuesday, December 1": checked against ``day``
    clock: _Clock | None = None
    period: _Period | None = None
    span: _Span | None = None
    zone: _Zone | None = None
    abbr: _Zone | None = None
    now: bool = False
    words: list[str] = field(default_factory=list)
    last: str = ""  # the kind of the last part read ("day", "clock"...)

    @property
    def empty(self) -> bool:
        return not (self.day or self.clock or self.period or self.span or self.zone or self.abbr or self.now)

    @property
    def has_time(self) -> bool:
        return bool(self.day or self.clock or self.period or self.span or self.now)

    @property
    def complete(self) -> bool:
        """Says a start time (maybe one to refuse: "at 8" has two readings, "25:00" none)."""
        return self.now or self.clock is not None or (self.span is not None and self.day is None)


_Step = tuple[str, object, int]  # (kind, component, end token index)

_ENGLISH_WEEKDAYS = frozenset(
    {"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "mon", "tue", "tues"}
    | {"wed", "thu", "thur", "thurs", "fri", "sat", "sun"}
)
_BRACKETS = {"(": ")", "[": "]"}
_SINGULAR_UNITS = frozenset(
    {"minute", "hour", "day", "week", "second", "heure", "jour", "semaine", "seconde"}
)
_SEPARATORS = frozenset({",", ":", "-", "–", "—", "|", "·", "•", ";", "/", "@"})
_QUOTES = {'"': '"', "“": "”", "«": "»", "„": "“", "‘": "’", "'": "'"}
_AT_FILLERS = frozenset(
    {"at", "@", "à", "a", "vers", "around", "about", "~", "from", "starting", "dès", "des", "by"}
)


def _int(tok: _Tok | None, digits: int = 4) -> int | None:
    if tok is None or tok.kind != "num" or len(tok.text) > digits:
        return None
    return int(tok.text)


# ----------------------------------------------------------------------------------------------- reader


@dataclass
class _Context:
    now: datetime
    zone: str  # the user's default zone, canonical
    lex: Lexicon
    locale: str

    @functools.cached_property
    def today(self) -> date:
        return self.now.astimezone(ZoneInfo(self.zone)).date()


class _Reader:
    """Reads time phrases from a token list (see the module docstring)."""

    def __init__(self, toks: list[_Tok], text: str, ctx: _Context) -> None:
        self.toks = toks
        self.n = len(toks)
        self.ctx_text = text  # the whitespace-collapsed text the tokens point into
        self.ctx = ctx
        self.lex = ctx.lex

    # -- token helpers

    def tok(self, i: int) -> _Tok | None:
        return self.toks[i] if 0 <= i < self.n else None

    def low(self, i: int) -> str:
        return self.toks[i].low if 0 <= i < self.n else ""

    def glued(self, i: int) -> bool:
        return 0 <= i < self.n and not self.toks[i].space

    def phrase(self, i: int, words: tuple[str, ...]) -> int | None:
        """The end of ``words`` read from ``i``, or None."""
        for k, w in enumerate(words):
            if self.low(i + k) != w:
                return None
        return i + len(words)

    def phrases(self, i: int, table: Iterable[tuple[str, ...]]) -> tuple[tuple[str, ...], int] | None:
        """The longest phrase of ``table`` at ``i``."""
        best: tuple[tuple[str, ...], int] | None = None
        for words in table:
            end = self.phrase(i, words)
            if end is not None and (best is None or end > best[1]):
                best = (words, end)
        return best

    def text(self, i: int, j: int) -> str:
        if i >= j:
            return ""
        return self.ctx_text[self.toks[i].start : self.toks[j - 1].end]

    # -- the phrase

    def read(self, start: int) -> _When:
        """The longest time phrase starting at ``start`` that the joining rules accept. Raises InvalidTime for
        a part that is clearly a time but is wrong ("25:00", "tomorrow friday" when tomorrow is Thursday)."""
        w = _When(start, start)
        i = start
        while i < self.n:
            j, fillers = self.skip_fillers(i)
            step = self.step(j, w, fillers)
            if step is None:
                break
            kind, comp, end = step
            if not self.joins(w, kind, comp, j, end):
                break
            self.apply(w, kind, comp)
            w.words.append(self.text(i, end))
            w.last = kind
            i = w.end = end
        return w

    def fillers_before(self, i: int) -> list[str]:
        """The filler words just before token ``i``."""
        found: list[str] = []
        k = i - 1
        while k >= 0 and (self.low(k) in self.lex.fillers or self.low(k) in self.lex.fillers_before_number):
            found.append(self.low(k))
            k -= 1
        return found

    def skip_fillers(self, i: int) -> tuple[int, list[str]]:
        fillers: list[str] = []
        while i < self.n:
            low = self.low(i)
            if low in self.lex.fillers or (
                low in self.lex.fillers_before_number
                and self.tok(i + 1) is not None
                and self.toks[i + 1].kind == "num"
            ):
                fillers.append(low)
                i += 1
                continue
            break
        return i, fillers

    def step(self, i: int, w: _When, fillers: list[str]) -> _Step | None:
        """The next part of a time phrase at ``i``, given what was read before."""
        if i >= self.n:
            return None
        if w.empty and not fillers:
            for matcher in (self.m_now, self.m_span):
                found = matcher(i)
                if found is not None:
                    return found
        if self.toks[i].kind == "iso":
            return self.m_iso(i)
        if w.clock is not None and (w.zone or w.abbr):
            # the same time on another clock: "8pm ET / 5pm PT", "8pm EST, 5pm PST", "20:00 CET — 14:00 EST"
            if self.toks[i].text in ("/", "—", "–") or (self.toks[i].text == "-" and self.toks[i].space):
                also = self.m_other_zone_time(i + 1)
                if also is not None or self.toks[i].text == "/":
                    return also
            elif fillers == [","]:
                also = self.m_other_zone_time(i)
                if also is not None:
                    return also
        if self.toks[i].text in _BRACKETS and w.clock is not None and (w.zone or w.abbr):
            also = self.m_other_zone_time(i + 1, close=_BRACKETS[self.toks[i].text])
            if also is not None:
                return also
        zone = self.m_zone(i) if set(fillers) <= {","} else None  # "from Eastern Europe" is no zone
        if zone is not None:
            return zone
        at = bool(set(fillers) & _AT_FILLERS)
        for day_matcher in () if at else (self.m_date, self.m_weekday, self.m_day_word):
            found = day_matcher(i, w, fillers)
            if found is not None:
                return found
        if w.day is not None and w.day.kind == "weekday" and w.other_day is None and w.last == "day":
            dom = self.day_of_month_after_weekday(i, fillers, after_clock=w.clock is not None)
            if dom is not None:
                return dom
        allow_bare = bool(set(fillers) & _AT_FILLERS) or (
            set(fillers) <= {","}
            and w.end == i - len(fillers)
            and (w.day is not None or w.period is not None or (w.span is not None and w.span.calendar))
        )
        clock = self.m_clock(i, allow_bare)
        if clock is not None:
            return ("clock", clock[0], clock[1])
        return self.m_period(i)

    # -- joining rules: does this part belong to the phrase?

    def joins(self, w: _When, kind: str, comp: object, i: int, end: int) -> bool:
        if w.now:
            return False
        if w.span is not None and not w.span.calendar:  # "in 2 hours" takes nothing more
            return False
        if kind in ("now", "span"):
            return w.empty
        if kind == "also":
            return w.clock is not None and w.span is None
        if kind == "iso":
            assert isinstance(comp, tuple)
            return (
                w.day is None and w.clock is None and w.span is None and (w.zone is None or comp[2] is None)
            )
        if kind == "zone":
            assert isinstance(comp, _Zone)
            if w.span is not None:
                return False
            if w.empty:  # a leading zone: "Europe/Paris tomorrow 20:00"
                return comp.kind in ("iana", "offset") and self.starts_phrase(end)
            if comp.kind == "abbr":
                return w.abbr is None and (w.zone is None or w.zone.kind == "iana")
            if comp.kind == "iana":  # with an abbreviation that picks the fold: "02:30 CET Europe/Paris"
                return w.zone is None
            return w.zone is None and w.abbr is None
        if kind == "day":
            assert isinstance(comp, _Day)
            if w.span is not None:
                return False
            if w.day is None:
                if w.clock is not None:  # time first: "8pm tomorrow", "20h ce soir"
                    if comp.abbreviated:
                        return False
                    if self.is_capitalised(i) and end < self.n and not self.changes(w, comp):
                        return False  # "20:00 Today in AI": the title's first word
                    if (
                        self.toks[i].text[:1].isupper()
                        and end < self.n
                        and self.toks[end].text[:1].isupper()
                        and (comp.period is not None or self.toks[i].low not in _ENGLISH_WEEKDAYS)
                    ):
                        # "8pm Friday Night Live", "20h Vendredi Apéro", "8pm Tomorrow Land": the day, or the
                        # title's first words? (An English weekday is capitalised anyway: "7pm Friday Jazz".)
                        raise InvalidTime("time.unclear_split", text=self.ctx_text)
                return True
            # a second day word right after the first: the same day said twice ("Tuesday, December 1",
            # "8pm on Friday, Dec 4"), or an error (apply)
            return w.other_day is None and w.last == "day" and set(self.fillers_before(i)) <= {","}
        if kind == "clock":
            return w.clock is None
        if kind == "period":
            assert isinstance(comp, _Period)
            day_period = w.day.period if w.day else None
            if w.period is not None or day_period is not None:
                return False  # "demain matin 9h le matin ...": said already
            if w.span is not None:
                return False
            if w.clock is None:
                return not (
                    self.is_capitalised(i) and w.day is not None and end < self.n and not comp.attached
                )
            if w.clock.kind not in ("bare", "soft"):
                return False  # "8pm": the part of the day adds nothing ("tomorrow 8pm Evening prayers")
            return comp.attached or not (self.is_capitalised(i) and end < self.n)
        return False

    def starts_phrase(self, i: int) -> bool:
        j, fillers = self.skip_fillers(i)
        probe = _When(j, j)
        step = self.step(j, probe, fillers)
        return step is not None and step[0] != "zone"

    def is_capitalised(self, i: int) -> bool:
        text = self.toks[i].text
        return text[:1].isupper() and not text.isupper()

    def changes(self, w: _When, day: _Day) -> bool:
        """Whether adding ``day`` to ``w`` moves the instant (or makes an error of it)."""
        try:
            before = _resolve(w, self.ctx).at
        except InvalidTime:
            return True
        trial = replace(w, day=day, words=list(w.words))
        try:
            after = _resolve(trial, self.ctx).at
        except InvalidTime:
            return True
        return after != before

    def apply(self, w: _When, kind: str, comp: object) -> None:
        if kind == "now":
            w.now = True
        elif kind == "span":
            assert isinstance(comp, _Span)
            w.span = comp
        elif kind == "also":
            assert isinstance(comp, tuple)
            clock, zone = comp
            for part in (clock, zone):
                if part.error is not None:
                    raise part.error
            other = replace(
                w,
                clock=clock,
                zone=None if zone.kind == "abbr" else zone,
                abbr=zone if zone.kind == "abbr" else None,
                words=list(w.words),
            )
            first, second = _resolve(w, self.ctx), _resolve(other, self.ctx)
            if first.at != second.at:
                raise InvalidTime(
                    "time.two_times",
                    first=format_local(first.at, self.ctx.zone, self.ctx.locale),
                    second=format_local(second.at, self.ctx.zone, self.ctx.locale),
                )
        elif kind == "iso":
            assert isinstance(comp, tuple)
            w.day, w.clock = comp[0], comp[1]
            if comp[2] is not None:
                w.zone = comp[2]
        elif kind == "zone":
            assert isinstance(comp, _Zone)
            if comp.error is not None:
                raise comp.error
            if comp.kind == "abbr":
                w.abbr = comp
            else:
                w.zone = comp
        elif kind == "day":
            assert isinstance(comp, _Day)
            if comp.error is not None:
                raise comp.error
            if w.day is None:
                w.day = comp
            else:
                self.pair(w, comp)
        elif kind == "clock":
            assert isinstance(comp, _Clock)
            if comp.error is not None:
                raise comp.error
            w.clock = comp
        elif kind == "period":
            assert isinstance(comp, _Period)
            w.period = comp

    def pair(self, w: _When, second: _Day) -> None:
        """Two day words side by side: the same day said twice ("demain jeudi", "Tuesday, December 1"), or an
        error naming both."""
        first = w.day
        assert first is not None
        text = f"{first.text} {second.text}"
        if first.kind == "weekday" and second.kind == "weekday":
            same = first.weekday == second.weekday
            shown = (first.text, second.text)
        elif first.kind == "weekday" or second.kind == "weekday":
            weekday, other = (first, second) if first.kind == "weekday" else (second, first)
            if other.swapped is not None:  # "Sat 12/5": the reading that falls on a Saturday
                _settle_with_weekday(other, weekday.weekday, self.ctx)
            fixed = _day_date(other, self.ctx)
            same = fixed is not None and fixed.weekday() == weekday.weekday
            shown = (weekday.text, _format_date(fixed, self.ctx.locale) if fixed else other.text)
        else:
            d1, d2 = _day_date(first, self.ctx), _day_date(second, self.ctx)
            same = d1 is not None and d1 == d2
            shown = tuple(
                _format_date(d, self.ctx.locale) if d else x.text for d, x in ((d1, first), (d2, second))
            )  # type: ignore[assignment]
        if not same:
            raise InvalidTime("time.two_days", text=text, first=shown[0], second=shown[1])
        specific = second if _SPECIFICITY[second.kind] > _SPECIFICITY[first.kind] else first
        other = first if specific is second else second
        w.day, w.other_day = replace(specific, period=specific.period or other.period), other

    # -- matchers: each returns (kind, component, end) or None

    def day_of_month_after_weekday(self, i: int, fillers: list[str], after_clock: bool) -> _Step | None:
        """ "vendredi 27 à 20h", "Friday 27, 8pm": a bare number after a weekday is its date when a time follows
        (or when it cannot be an hour); "friday 8 ..." stays an hour, to be asked about."""
        tok = self.toks[i]
        if fillers or tok.kind != "num" or len(tok.text) > 2 or not 1 <= int(tok.text) <= 31:
            return None
        if (self.low(i + 1) in (":", "h", ".", "/") and self.glued(i + 1)) or self.meridiem(
            i + 1
        ) is not None:
            return None
        if self.low(i + 1) in self.lex.hour_marks or self.low(i + 1) in self.lex.oclock:
            return None
        j, after = self.skip_fillers(i + 1)
        followed_by_time = j < self.n and self.clock_at(j, bool(set(after) & _AT_FILLERS)) is not None
        if not (followed_by_time or after_clock or int(tok.text) > 23):
            return None
        return ("day", _Day("dom", tok.text, day=int(tok.text)), i + 1)

    def m_now(self, i: int) -> _Step | None:
        found = self.phrases(i, self.lex.now)
        if found is None:
            return None
        return ("now", True, found[1])

    def m_other_zone_time(self, i: int, close: str | None = None) -> _Step | None:
        """ "2pm ET / 11am PT", "8pm EST (5pm PST)": the same instant on another clock (checked in apply)."""
        clock = self.m_clock(i, True)
        if clock is None:
            return None
        zone = self.zone_at(clock[1])
        if zone is None:
            return None
        end = zone[1]
        if close is not None:
            if self.low(end) != close:
                return None
            end += 1
        return ("also", (clock[0], zone[0]), end)

    def m_iso(self, i: int) -> _Step | None:
        """2026-12-01T18:30[:00][+01:00|Z]: a date, a clock time and maybe an offset, in one token."""
        tok = self.toks[i]
        try:
            iso = datetime.fromisoformat(tok.text)
        except ValueError:
            return None
        day = _Day("date", tok.text, year=iso.year, month=iso.month, day=iso.day)
        clock = _Clock(iso.hour, iso.minute, "fixed", tok.text, second=iso.second)
        offset = iso.utcoffset()
        zone = _Zone("offset", tok.text, offset=offset) if offset is not None else None
        return ("iso", (day, clock, zone), i + 1)

    def m_span(self, i: int) -> _Step | None:
        low = self.low(i)
        if low in self.lex.in_words:
            vague = self.phrases(i + 1, self.lex.vague_amounts)
            if vague is not None:
                raise _Soft(InvalidTime("time.vague", text=self.text(i, vague[1])))
            amounts = self.amounts(i + 1)
            if amounts is None:
                number = self.number(i + 1, articles=False)
                if number is not None:
                    raise _Soft(InvalidTime("time.no_unit", text=self.text(i, number[1])))
                return None
            span, end = amounts
            if span.exact <= timedelta(0) and not span.days and not span.months:  # "in 0 minutes"
                raise _Soft(InvalidTime("time.unreadable", text=self.text(i, end), example=EXAMPLE))
            found = self.phrases(end, self.lex.from_now) if low == "in" else None
            if found is not None:  # "in 2 hours from now"
                end = found[1]
            span.text = self.text(i, end)
            if low in ("dans", "d'ici") and span.days in (8, 15) and not span.exact and not span.months:
                # French "dans huit jours" is a week, "dans quinze jours" two: which did the user count?
                week = 7 if span.days == 8 else 14
                today = self.ctx.today
                raise InvalidTime(
                    "time.which_day",
                    text=span.text,
                    choices=[
                        _format_date(today + timedelta(days=d), self.ctx.locale) for d in (week, span.days)
                    ],
                )
            return ("span", span, end)
        amounts = self.amounts(i)
        if amounts is not None and amounts[0].exact > timedelta(0):
            span, end = amounts
            found = self.phrases(end, self.lex.from_now)
            if found is not None:
                span.text = self.text(i, found[1])
                return ("span", span, found[1])
        if low in self.lex.vague_alone and (low != "plus" or self.low(i + 1) == "tard"):
            raise _Soft(InvalidTime("time.vague", text=self.text(i, i + (2 if low == "plus" else 1))))
        return None

    def number(self, i: int, *, articles: bool = True) -> tuple[float, int] | None:
        """A count at ``i``: digits (with a decimal part: 1.5, 1,5), a number word, or an article."""
        tok = self.tok(i)
        if tok is None:
            return None
        if tok.kind == "num":
            if len(tok.text) > 6:
                return None
            value = float(int(tok.text))
            if self.low(i + 1) in (".", ",") and self.glued(i + 1) and self.glued(i + 2):
                frac = self.tok(i + 2)
                if frac is not None and frac.kind == "num" and len(frac.text) <= 2:
                    return value + int(frac.text) / 10 ** len(frac.text), i + 3
            return value, i + 1
        if tok.low in self.lex.number_words:
            return float(self.lex.number_words[tok.low]), i + 1
        if articles and tok.low in self.lex.articles:
            return float(self.lex.articles[tok.low]), i + 1
        return None

    def fraction_of_hour(self, i: int) -> tuple[timedelta, int] | None:
        top, bottom = _int(self.tok(i), 1), _int(self.tok(i + 2), 1)
        if top is None or bottom not in (2, 4) or self.low(i + 1) != "/" or not top < bottom:
            return None
        if not (self.glued(i + 1) and self.glued(i + 2)):
            return None
        if self.low(i + 3) in ("d'heure", "heure", "hour", "hr", "h"):
            return timedelta(hours=top / bottom), i + 4
        if self.low(i + 3) == "of" and self.low(i + 4) in ("an", "a") and self.low(i + 5) == "hour":
            return timedelta(hours=top / bottom), i + 6
        return None

    def unit(self, i: int) -> tuple[str, int] | None:
        tok = self.tok(i)
        if tok is None:
            return None
        if tok.space:
            unit = self.lex.units.get(tok.low)
        else:
            unit = self.lex.units.get(tok.low) or self.lex.glued_units.get(tok.low)
        if unit is None:
            return None
        end = i + 1
        if self.low(end) == "." and self.glued(end) and tok.low in ("min", "mn", "sec", "hr", "hrs"):
            end += 1
        return unit, end

    def amounts(self, i: int) -> tuple[_Span, int] | None:
        """ "2 hours", "1h30", "1 hour and 30 minutes", "an hour and a half", "une demi-heure", "1:30"..."""
        order = "smhdwM"
        span = _Span("")
        seen: list[str] = []
        k = i
        while True:
            fraction = self.fraction_of_hour(k) if not seen else None
            if fraction is not None:  # "dans 3/4 d'heure", "in 1/2 hour"
                span.exact += fraction[0]
                seen.append("m")
                k = fraction[1]
                break
            half = self.phrases(k, self.lex.half_amounts)
            if half is not None and not seen:
                span.exact += self.lex.half_amounts[half[0]]
                seen.append("m")
                k = half[1]
                break
            number = self.number(k)
            if number is None:
                break
            value, after = number
            tok = self.toks[k]
            part = self.phrases(after, self.lex.and_a_part)
            if part is not None and self.unit(part[1]) is not None:  # "one and a half hours"
                value, after = value + self.lex.and_a_part[part[0]] / 60, part[1]
            # "1:30" right after "in": a duration of 1 h 30
            if (
                not seen
                and tok.kind == "num"
                and self.low(after) == ":"
                and self.glued(after)
                and self.glued(after + 1)
            ):
                minutes = _int(self.tok(after + 1), 2)
                if (
                    minutes is not None
                    and len(self.toks[after + 1].text) == 2
                    and minutes < 60
                    and value == int(value)
                ):
                    span.exact += timedelta(hours=value, minutes=minutes)
                    seen.append("m")
                    k = after + 2
                    break
            unit = self.unit(after)
            if unit is None:
                break
            u, end = unit
            if u == "s" and seen:
                break
            if seen and value != 1 and self.low(after) in _SINGULAR_UNITS:
                break  # "in 1 hour 2 minute warning": "2 minute" describes the title
            if seen and order.index(u) >= order.index(seen[-1]):
                break
            if u in "hm" and not float(value).is_integer() and u == "m":
                break
            if u in "sm" or u == "h":
                span.exact += {
                    "s": timedelta(seconds=value),
                    "m": timedelta(minutes=value),
                    "h": timedelta(hours=value),
                }[u]
            elif u == "d":
                if not value.is_integer():
                    return None
                span.days += int(value)
            elif u == "w":
                if not value.is_integer():
                    return None
                span.days += 7 * int(value)
            else:
                if not value.is_integer():
                    return None
                span.months += int(value)
            seen.append(u)
            k = end
            if u == "h":
                # "1h30", "1 h 30", "1 hour 30" (not "1 hour 30 people", not "1 hour 30 minutes": next amount)
                minutes_tok = self.tok(k)
                if minutes_tok is not None and minutes_tok.kind == "num" and len(minutes_tok.text) <= 2:
                    nxt = self.low(k + 1)
                    glued_unit = self.glued(k + 1) and nxt in ("m", "min", "mn")
                    if glued_unit:
                        span.exact += timedelta(minutes=int(minutes_tok.text))
                        seen.append("m")
                        k += 2
                        break
                    if int(minutes_tok.text) < 60 and (
                        not minutes_tok.space  # "1h30": minutes, whatever follows
                        or (
                            len(minutes_tok.text) == 2  # "in 1 hour 30", not "dans 1 heure 5 à 7"
                            and nxt not in self.lex.units
                            and nxt not in COUNT_NOUNS
                            and not (self.tok(k + 1) is not None and self.glued(k + 1))
                        )
                    ):
                        span.exact += timedelta(minutes=int(minutes_tok.text))
                        seen.append("m")
                        k += 1
                        break
                spoken = self.low(k - 1) in ("heures", "heure") and self.low(k) in self.lex.number_words
                if spoken and self.lex.number_words[self.low(k)] < 60 and self.low(k + 1) not in COUNT_NOUNS:
                    span.exact += timedelta(
                        minutes=self.lex.number_words[self.low(k)]
                    )  # "deux heures trente"
                    seen.append("m")
                    k += 1
                    break
                part = self.phrases(k, self.lex.and_a_part)
                if part is not None:
                    span.exact += timedelta(minutes=self.lex.and_a_part[part[0]])
                    seen.append("m")
                    k = part[1]
                    break
            # "and", "et", "," then another amount
            following = self.number(k + 1) if self.low(k) in self.lex.and_words else None
            then = self.unit(following[1]) if following is not None else None
            if then is not None and order.index(then[0]) < order.index(u) and then[0] != "s":
                k += 1  # "2 hours and 15 minutes"
                continue
            # without "and": only a smaller unit of the same kind ("1 hour 30 minutes", "1 week 2 days");
            # "dans 2 jours 20h" is a day and a clock time, not 2 days and 20 hours
            following = self.number(k, articles=False)
            nxt_unit = self.unit(following[1]) if following is not None else None
            if nxt_unit is not None and (u, nxt_unit[0]) in (("h", "m"), ("w", "d")):
                continue
            break
        if not seen:
            return None
        return span, k

    # -- zones

    def m_zone(self, i: int) -> _Step | None:
        found = self.zone_at(i)
        if found is None:
            return None
        return ("zone", found[0], found[1])

    def zone_at(self, i: int) -> tuple[_Zone, int] | None:
        tok = self.tok(i)
        if tok is None:
            return None
        if tok.text in _BRACKETS:  # "(ET)", "[UTC]"
            inner = self.zone_at(i + 1)
            if inner is not None and self.low(inner[1]) == _BRACKETS[tok.text]:
                return inner[0], inner[1] + 1
            return None
        found = self.one_zone_at(i)
        if (
            found is None
            or self.low(found[1]) != "/"
            or not self.glued(found[1])
            or not self.glued(found[1] + 1)
        ):
            return found
        other = self.one_zone_at(found[1] + 1)
        if other is None:
            return found  # "5pm PT/8pm ET": another clock follows (m_other_zone_time)
        # "CET/CEST", "EST/EDT": one zone's two names; "ET/PT": two zones, and one time
        first, second = found[0], other[0]
        homes = {_home(z) for z in (first, second)}
        text = self.text(i, other[1])
        if len(homes) == 1 and None not in homes and first.error is None and second.error is None:
            return _Zone("iana", text, name=homes.pop() or ""), other[1]
        names = [z.text for z in (first, second)]
        return _Zone("iana", text, error=InvalidTime("time.which_zone", zone=text, choices=names)), other[1]

    def one_zone_at(self, i: int) -> tuple[_Zone, int] | None:
        tok = self.tok(i)
        if tok is None:
            return None
        if tok.kind == "zonelike":
            return _Zone("iana", tok.text, error=InvalidTime("time.unknown_zone", zone=tok.text)), i + 1
        if tok.kind == "zone":
            name = _zone_names().get(tok.low)
            if name is None:
                return _Zone("iana", tok.text, error=InvalidTime("time.unknown_zone", zone=tok.text)), i + 1
            return _Zone("iana", tok.text, name=name), i + 1
        if tok.low in ("utc", "gmt"):
            offset = self.offset_at(i + 1, glued=True)
            if offset is not None:
                return _Zone("offset", self.text(i, offset[1]), offset=offset[0]), offset[1]
            if tok.low == "utc":
                return _Zone("iana", tok.text, name="UTC"), i + 1
            return _Zone("abbr", tok.text, name="GMT"), i + 1
        if tok.text == "Z" and (not tok.space or i == self.n - 1):
            return _Zone("offset", tok.text, offset=timedelta(0)), i + 1
        if tok.text == "Z" and i > 0 and self.toks[i - 1].kind in ("num", "word") and self.low(i - 1) != "a":
            # "17h Z Tea": Zulu time, or the title's first letter?
            return _Zone(
                "offset", tok.text, error=InvalidTime("time.which_zone", zone="Z", choices=["UTC"])
            ), i + 1
        if tok.text in ("+", "-", "−"):
            offset = self.offset_at(i, glued=False)
            if offset is not None:
                return _Zone("offset", self.text(i, offset[1]), offset=offset[0]), offset[1]
            return None
        if tok.kind != "word":
            return None
        if tok.text.isupper() and tok.text.isalpha():
            if tok.text in GENERIC_ZONES:
                return _Zone("iana", tok.text, name=GENERIC_ZONES[tok.text]), i + 1
            if tok.text in ABBREVIATIONS:
                return _Zone("abbr", tok.text, name=tok.text), i + 1
        if tok.low in REGION_WORDS:
            if self.low(i + 1) in self.lex.time_word or self.low(i + 1) == "time":
                return _Zone("iana", self.text(i, i + 2), name=REGION_WORDS[tok.low]), i + 2
            if i + 1 >= self.n:
                return _Zone("iana", tok.text, name=REGION_WORDS[tok.low]), i + 1
            readings = [f"{REGION_WORDS[tok.low]}"]
            return (
                _Zone(
                    "iana", tok.text, error=InvalidTime("time.which_zone", zone=tok.text, choices=readings)
                ),
                i + 1,
            )
        # "<city> time", "heure de <city>", "heure française"
        for words_count in (3, 2, 1):
            if self.low(i + words_count) == "time" and i + words_count < self.n:
                name = " ".join(self.low(i + k) for k in range(words_count))
                zone = city_zone(name, _iana_cities())
                if zone is not None and (len(name) > 3 or self.toks[i].text.isupper()):  # "LA time", not "la"
                    return _Zone("iana", self.text(i, i + words_count + 1), name=zone), i + words_count + 1
        fixed = self.phrases(i, self.lex.heure_francaise)
        if fixed is not None:
            return _Zone("iana", self.text(i, fixed[1]), name=self.lex.heure_francaise[fixed[0]]), fixed[1]
        heure_de = self.phrases(i, self.lex.heure_de)
        if heure_de is not None:
            start = heure_de[1]
            if heure_de[0][-1] == "d'":
                start = heure_de[1]
            for words_count in (3, 2, 1):
                name = " ".join(self.low(start + k) for k in range(words_count))
                zone = city_zone(name, _iana_cities())
                if zone is not None and start + words_count <= self.n:
                    return _Zone("iana", self.text(i, start + words_count), name=zone), start + words_count
        return None

    def offset_at(self, i: int, *, glued: bool) -> tuple[timedelta, int] | None:
        """ "+02:00", "+0200", "+5:30" (or after UTC/GMT: "+3", "-05:00")."""
        sign_tok = self.tok(i)
        if sign_tok is None or sign_tok.text not in ("+", "-", "−") or (glued and sign_tok.space):
            return None
        num = self.tok(i + 1)
        if num is None or num.kind != "num" or num.space:
            return None
        sign = 1 if sign_tok.text == "+" else -1
        if self.low(i + 2) == ":" and self.glued(i + 2) and self.glued(i + 3):
            minutes = self.tok(i + 3)
            if minutes is None or minutes.kind != "num" or len(minutes.text) != 2 or len(num.text) > 2:
                return None
            hours, mins, end = int(num.text), int(minutes.text), i + 4
        elif len(num.text) == 4:
            hours, mins, end = int(num.text[:2]), int(num.text[2:]), i + 2
        elif glued and len(num.text) <= 2:  # "UTC+3"
            hours, mins, end = int(num.text), 0, i + 2
        else:
            return None
        if hours > 14 or mins > 59:
            return None
        return sign * timedelta(hours=hours, minutes=mins), end

    # -- days

    def m_day_word(self, i: int, w: _When, fillers: list[str]) -> _Step | None:
        lex = self.lex
        found = self.phrases(i, lex.day_phrases)
        if found is not None:
            n, period = lex.day_phrases[found[0]]
            end = found[1]
        elif self.low(i) in lex.day_words:
            n, period = lex.day_words[self.low(i)]
            end = i + 1
        else:
            return None
        if period is None:  # "tomorrow morning", "demain soir", "demain après midi"
            period, end = self.period_after(end)
        return ("day", _Day("rel", self.text(i, end), n=n, period=period), end)

    def period_after(self, i: int) -> tuple[Period | None, int]:
        """A part of the day right after a day word, and where it ends."""
        found = self.phrases(i, self.lex.period_word_phrases)
        if found is not None:
            return self.lex.period_word_phrases[found[0]], found[1]
        if self.low(i) in self.lex.period_words:
            return self.lex.period_words[self.low(i)], i + 1
        return None, i

    def m_weekday(self, i: int, w: _When, fillers: list[str]) -> _Step | None:
        lex = self.lex
        k = i
        next_ = False
        week_offset = 0
        week = self.phrases(k, lex.next_week)
        if week is not None:  # "next week friday"
            week_offset, k = 1, week[1]
        elif self.low(k) in lex.next_words or self.low(k) in lex.this_words:
            next_ = self.low(k) in lex.next_words
            k += 1
            if self.low(k) == "coming":  # "this coming friday"
                k += 1
        elif self.low(k) == "coming":
            k += 1
        low = self.low(k)
        abbreviated = False
        if low in lex.weekdays:
            weekday = lex.weekdays[low]
        elif low in lex.weekday_abbreviations:
            weekday = lex.weekday_abbreviations[low]
            abbreviated = True
        else:
            return None
        end = k + 1
        dotted = self.low(end) == "." and self.glued(end)
        if dotted:
            end += 1
        if abbreviated:
            # "sat", "sam", "mar" are words too: a day only at the head of the phrase or before a date/time
            follows = self.low(end + 1 if self.low(end) == "," else end)
            nxt = self.tok(end + 1 if self.low(end) == "," else end)
            before_time = nxt is not None and (
                nxt.kind in ("num", "iso")
                or follows in lex.months
                or follows in lex.noon
                or follows in lex.midnight
            )
            if low == "mar" and not dotted and not before_time:
                return None
            if not (before_time or (w.empty and not fillers and i == 0) or next_ or (dotted and w.empty)):
                return None
        if not week_offset and not next_:
            week = self.phrases(end, lex.next_week)  # "friday next week"
            if week is not None:
                week_offset, end = 1, week[1]
            elif self.low(end) in lex.next_words:  # "vendredi prochain"
                next_ = True
                end += 1
        period, end = self.period_after(end)  # "friday evening", "vendredi soir"
        day = _Day(
            "weekday",
            self.text(i, end),
            weekday=weekday,
            next_=next_ and not week_offset,
            week_offset=week_offset,
            period=period,
            abbreviated=abbreviated and not dotted,
        )
        return ("day", day, end)

    def m_date(self, i: int, w: _When, fillers: list[str]) -> _Step | None:
        found = self.date_day_first(i) or self.date_day_of_month(i, after_clock=w.clock is not None)
        if found is not None:
            return ("day", found[0], found[1])
        prefix = self.phrases(i, self.lex.day_of_month_prefixes)
        k = prefix[1] if prefix is not None else i
        for matcher in (self.date_iso, self.date_numeric, self.date_month_first):
            found = matcher(k)
            if found is not None:
                day, end = found
                day.text = self.text(i, end)
                return ("day", day, end)
        return None

    def date_iso(self, i: int) -> tuple[_Day, int] | None:
        """2026-12-01, 2026/12/01."""
        y, sep = self.tok(i), self.low(i + 1)
        if y is None or y.kind != "num" or len(y.text) != 4 or sep not in ("-", "/") or not self.glued(i + 1):
            return None
        m, d = self.tok(i + 2), self.tok(i + 4)
        if m is None or d is None or m.kind != "num" or d.kind != "num" or self.low(i + 3) != sep:
            return None
        if (
            not (self.glued(i + 2) and self.glued(i + 3) and self.glued(i + 4))
            or len(m.text) > 2
            or len(d.text) > 2
        ):
            return None
        end = i + 5
        if self.low(end) == "t" and self.glued(end) and self.glued(end + 1):
            end += 1  # "2026-12-01T18:30" without seconds or zone: the clock follows, glued
        return self.checked_date(self.text(i, i + 5), int(y.text), int(m.text), int(d.text)), end

    def date_numeric(self, i: int) -> tuple[_Day, int] | None:
        """1/12, 01/12/2026, 12/24, 24.12.2026, 24.12., 01-12-2026."""
        a = self.tok(i)
        if a is None or a.kind != "num" or len(a.text) > 2:
            return None
        sep = self.low(i + 1)
        if sep not in ("/", ".", "-") or not self.glued(i + 1) or not self.glued(i + 2):
            return None
        b = self.tok(i + 2)
        if b is None or b.kind != "num" or len(b.text) > 2:
            return None
        end = i + 3
        year: int | None = None
        if self.low(end) == sep and self.glued(end) and self.glued(end + 1):
            y = self.tok(end + 1)
            if y is not None and y.kind == "num" and len(y.text) in (2, 4):
                year = int(y.text) + (2000 if len(y.text) == 2 else 0)
                end += 2
            elif sep == ".":
                return None
        elif sep == "." and self.low(end) == "." and self.glued(end):
            end += 1  # "24.12." (German style)
        elif sep != "/":
            return None  # "8.30" is a clock time; "1-12" a range
        text = self.text(i, end)
        first, second = int(a.text), int(b.text)
        if sep != "/":
            return self.checked_date(text, year, second, first), end
        if first > 12 and second <= 12:
            return self.checked_date(text, year, second, first), end
        if second > 12 and first <= 12:
            return self.checked_date(text, year, first, second), end
        if first > 12 and second > 12:
            return _Day("date", text, error=InvalidTime("time.bad_date", date=text)), end
        day = self.checked_date(text, year, second, first)
        if first != second:
            day.swapped = (first, second)  # "Sat 12/5": the weekday may settle it
            day.month_first_ambiguous = _month_first_possible(self.ctx.zone)
        return day, end

    def ordinal_day(self, i: int) -> tuple[int, int] | None:
        """A day of the month: "1", "1st", "1er", "premier", "3rd"."""
        tok = self.tok(i)
        if tok is None:
            return None
        if tok.low in self.lex.premier:
            return 1, i + 1
        if tok.kind != "num" or len(tok.text) > 2:
            return None
        end = i + 1
        if self.low(end) in self.lex.ordinal_suffixes and self.glued(end):
            end += 1
        return int(tok.text), end

    def month_at(self, i: int) -> tuple[int, int] | None:
        low = self.low(i)
        if low not in self.lex.months:
            return None
        end = i + 1
        if self.low(end) == "." and self.glued(end):
            end += 1
        return self.lex.months[low], end

    def year_at(self, i: int) -> tuple[int, int] | None:
        k = i + 1 if self.low(i) == "," else i
        tok = self.tok(k)
        if tok is not None and tok.kind == "num" and len(tok.text) == 4 and 1900 < int(tok.text) < 2200:
            if self.low(k + 1) in (":", "h") and self.glued(k + 1):
                return None
            return int(tok.text), k + 1
        return None

    def date_month_first(self, i: int) -> tuple[_Day, int] | None:
        """Dec 1, December 1st, Dec. 1, 2026."""
        month = self.month_at(i)
        if month is None:
            return None
        m, k = month
        day = self.ordinal_day(k)
        if day is None:
            return None
        d, end = day
        if self.month_at(end) is not None:  # "mar. 1 déc.": a weekday and a date, not March
            return None
        if self.low(end) in (":", "h", ".", "/", "-") and self.glued(end):  # "Dec 8:30", "mar. 1/12"
            return None
        year = self.year_at(end)
        y = None
        if year is not None:
            y, end = year
        return self.checked_date(self.text(i, end), y, m, d), end

    def date_day_first(self, i: int) -> tuple[_Day, int] | None:
        """1 Dec, 1st December, 1st of December, le 1er décembre, 3 janvier 2027."""
        k = i
        prefix = self.phrases(k, self.lex.day_of_month_prefixes)
        if prefix is not None:
            k = prefix[1]
        day = self.ordinal_day(k)
        if day is None:
            return None
        d, k2 = day
        if self.low(k2) in self.lex.of:
            k2 += 1
        month = self.month_at(k2)
        if month is None:
            return None
        m, end = month
        year = self.year_at(end)
        y = None
        if year is not None:
            y, end = year
        return self.checked_date(self.text(i, end), y, m, d), end

    def date_day_of_month(self, i: int, after_clock: bool = False) -> tuple[_Day, int] | None:
        """the 28th, on the 3rd, le 28 (the month is this one, or the next if that day has passed)."""
        prefix = self.phrases(i, self.lex.day_of_month_prefixes)
        k = prefix[1] if prefix is not None else i
        day = self.ordinal_day(k)
        if day is None:
            return None
        d, end = day
        has_suffix = end > k + 1 or self.low(k) in self.lex.premier
        if prefix is None and not has_suffix:
            return None
        if prefix is not None and self.low(end) in (":", "h", ".", "/") and self.glued(end):
            return None  # "le 20h"? not a day
        if prefix is not None and not has_suffix and not after_clock:
            # "le 28 à 20h": only before a time or at the end, else "le 3 ..." could be anything
            nxt, _ = self.skip_fillers(end)
            if nxt < self.n and self.m_clock(nxt, True) is None:
                return None
        if not 1 <= d <= 31:
            return None
        return _Day("dom", self.text(i, end), day=d), end

    def checked_date(self, text: str, year: int | None, month: int, day: int) -> _Day:
        probe_year = (
            year if year is not None else 2024
        )  # a leap year: "29 Feb" is checked once the year is known
        try:
            date(probe_year, month, day)
        except ValueError:
            return _Day(
                "date", text, year=year, month=month, day=day, error=InvalidTime("time.bad_date", date=text)
            )
        return _Day("date", text, year=year, month=month, day=day)

    # -- clock times

    def hour_number(self, i: int) -> tuple[int, int, bool] | None:
        """An hour at ``i``: digits or a number word. Returns (hour, end, written in digits)."""
        tok = self.tok(i)
        if tok is None:
            return None
        if tok.kind == "num":
            if len(tok.text) > 2:
                return None
            return int(tok.text), i + 1, True
        if tok.low in self.lex.number_words and self.lex.number_words[tok.low] <= 23:
            return self.lex.number_words[tok.low], i + 1, False
        return None

    def meridiem(self, i: int) -> tuple[str, int] | None:
        low = self.low(i)
        if low[:3] in ("am-", "pm-") and low[3:] in self.lex.clock_suffixes:  # "8pm-ish": one word
            return low[:2], i + 1
        if low in ("am", "pm"):
            end = i + 1
            if self.low(end) == "." and self.glued(end):
                end += 1
            return low, end
        if (
            low in ("a", "p")
            and self.low(i + 1) == "."
            and self.low(i + 2) == "m"
            and self.glued(i + 1)
            and self.glued(i + 2)
        ):
            end = i + 3
            if self.low(end) == "." and self.glued(end):
                end += 1
            return low + "m", end
        return None

    def m_clock(self, i: int, allow_bare: bool) -> tuple[_Clock, int] | None:
        found = self.clock_at(i, allow_bare)
        if found is None:
            return None
        clock, end = found
        ranged = self.range_end(end, clock, i)
        if ranged is not None:
            clock, end = ranged
        if self.low(end) == "-" and self.glued(end) and self.low(end + 1) in self.lex.clock_suffixes:
            end += 1  # "8pm-ish"
        if self.low(end) in self.lex.clock_suffixes:
            end += 1
        return clock, end

    def clock_at(self, i: int, allow_bare: bool, *, lookahead: bool = True) -> tuple[_Clock, int] | None:
        lex = self.lex
        tok = self.tok(i)
        if tok is None:
            return None
        if tok.kind == "iso":
            return None
        # noon, midnight (+ "et demi")
        if tok.low in lex.noon or tok.low in lex.midnight:
            noon = tok.low in lex.noon
            end, minute = i + 1, 0
            frac = self.phrases(end, lex.fr_fractions)
            if frac is not None and lex.fr_fractions[frac[0]] > 0:
                minute, end = lex.fr_fractions[frac[0]], frac[1]
            return _Clock(12 if noon else 0, minute, "noon" if noon else "midnight", self.text(i, end)), end
        # half past 8, quarter to 9
        hq = self.phrases(i, lex.half_quarter)
        if hq is not None:
            hour = self.hour_number(hq[1])
            if hour is None:
                return None
            h, end, _ = hour
            delta = lex.half_quarter[hq[0]]
            suffix = self.meridiem(end)
            m_ = None
            if suffix is not None:
                m_, end = suffix
            total = (h * 60 + delta) % (24 * 60)
            kind = "fixed" if m_ or h == 0 or h >= 13 else "bare"
            clock = _Clock(total // 60, total % 60, kind, self.text(i, end), meridiem=m_)
            if delta < 0 and kind == "bare":
                clock.hour = h - 1 if h > 1 else 12
            return self.validated(clock), end
        hour = self.hour_number(i)
        if hour is None:
            return None
        h, k, digits = hour
        minute, second, form, mark = 0, 0, "bare", ""
        nxt = self.low(k)
        if (
            digits
            and nxt == ":"
            and self.glued(k)
            and self.glued(k + 1)
            and _int(self.tok(k + 1), 2) is not None
        ):
            if len(self.toks[k + 1].text) != 2:
                return None
            minute, form, k = int(self.toks[k + 1].text), "colon", k + 2
            if (
                self.low(k) == ":"
                and self.glued(k)
                and self.glued(k + 1)
                and _int(self.tok(k + 1), 2) is not None
            ):
                second, k = int(self.toks[k + 1].text), k + 2
                if (
                    self.low(k) == "."
                    and self.glued(k)
                    and self.tok(k + 1) is not None
                    and self.toks[k + 1].kind == "num"
                ):
                    k += 2  # fractions of a second (ISO): ignored
            if self.low(k) == "h" and self.glued(k):
                k += 1  # "20:00h"
        elif (
            digits
            and nxt == "."
            and self.glued(k)
            and self.glued(k + 1)
            and _int(self.tok(k + 1), 2) is not None
        ):
            minutes_tok = self.toks[k + 1]
            after = k + 2
            has_meridiem = self.meridiem(after) is not None
            if len(minutes_tok.text) != 2 or not (has_meridiem or h >= 13 or int(minutes_tok.text) > 12):
                return None
            if self.low(after) == "." and self.glued(after):
                return None  # "24.12." is a date
            minute, form, k = int(minutes_tok.text), "dot", after
        elif (
            (nxt in ("h", "hr", "hrs") and self.glued(k) and digits)
            or (nxt == "h" and digits)
            or (nxt in lex.hour_marks)
        ):
            form, mark, k = "h", nxt, k + 1
            minutes_at = self.tok(k)
            spoken = self.low(k - 1) in lex.hour_marks and self.low(k) in lex.number_words
            if spoken and self.lex.number_words[self.low(k)] < 60 and self.low(k + 1) not in COUNT_NOUNS:
                minute, k = self.lex.number_words[self.low(k)], k + 1  # "vingt heures trente"
            elif minutes_at is not None and minutes_at.kind == "num" and len(minutes_at.text) == 2:
                word_after = self.low(k + 1)
                if word_after in ("min", "mn", "minute", "minutes") and (
                    minutes_at.space or self.glued(k + 1)
                ):
                    # "20 h 30 min", "20h30min" ("20h30 minute meditation": a title)
                    minute, k = int(minutes_at.text), k + 2
                elif not minutes_at.space or (
                    word_after not in COUNT_NOUNS and word_after not in lex.units and not self.glued(k + 1)
                ):
                    minute, k = int(minutes_at.text), k + 1
            else:
                frac = self.phrases(k, lex.fr_fractions)
                if frac is not None:
                    delta = lex.fr_fractions[frac[0]]
                    k = frac[1]
                    if delta > 0:
                        minute = delta
                    else:
                        total = (h * 60 + delta) % (24 * 60)
                        h, minute = total // 60, total % 60
        suffix = self.meridiem(k)
        ampm: str | None = None
        # "20:00 PM office hours": a 24-hour time; "PM" starts the title
        if suffix is not None and form in ("bare", "colon", "dot") and (self.glued(k) or h <= 12):
            ampm, k = suffix
        if form == "bare" and ampm is None and (self.low(k) in lex.units or self.low(k) in COUNT_NOUNS):
            return None  # "tonight 9 people", "tomorrow 20 hours": a quantity, not a clock time
        if form == "bare" and ampm is None:
            oclock = self.low(k) in lex.oclock
            if oclock:
                k += 1
                suffix = self.meridiem(k)
                if suffix is not None:  # "5 o'clock pm"
                    ampm, k = suffix
            elif self.low(k) == "ish" and self.glued(k):
                k += 1  # "7ish": a bare hour, asked about
            elif not allow_bare and not (lookahead and self.day_part_at(k)):
                return None
            if not digits and not allow_bare and not oclock:
                return None
        if form == "h" and not digits and mark not in lex.hour_marks:
            return None  # "huit h"? a number word wants "heures"
        text = self.text(i, k)
        if ampm:
            kind = "fixed"
        elif form == "bare":
            kind = "fixed" if h == 0 or h >= 13 else "bare"
        elif h == 0 or h >= 13 or (digits and len(self.toks[i].text) == 2 and self.toks[i].text[0] == "0"):
            kind = "fixed"
        else:
            kind = "soft"
        clock = _Clock(h, minute, kind, text, meridiem=ampm, second=second, colon=form in ("colon", "dot"))
        return self.validated(clock), k

    def day_part_at(self, i: int) -> bool:
        """Whether a day or a part of the day starts at ``i`` ("9 tonight", "8 in the evening")."""
        lex = self.lex
        return (
            self.low(i) in lex.day_words
            or self.low(i) in lex.period_words
            or self.phrases(i, lex.day_phrases) is not None
            or self.phrases(i, lex.period_phrases) is not None
        )

    def validated(self, clock: _Clock) -> _Clock:
        h, m = clock.hour, clock.minute
        bad = h > 23 or m > 59 or clock.second > 59
        if clock.meridiem and (h == 0 or h > 12):
            bad = True
        if bad:
            clock.error = InvalidTime("time.bad_clock", time=clock.text)
        return clock

    def range_end(self, i: int, start: _Clock, first: int) -> tuple[_Clock, int] | None:
        """ "8-9pm", "20:00 - 22:00", "de 20h à 22h", "from 8 to 10pm": the start is what counts; the end only
        tells am from pm ("8-9pm" starts at 20:00)."""
        word = self.low(i)
        if word not in self.lex.range_words or start.error is not None:
            return None
        if word in ("-", "–") and self.glued(i) != self.glued(i + 1):
            return None  # "20:00 -2 degrees": not a range
        found = self.clock_at(i + 1, True)
        if found is None:
            return None
        end_clock, end = found
        if end_clock.error is not None or end_clock.kind in ("noon", "midnight"):
            return None
        # the end must look like a clock time ("22h", "21:00", "9pm"), and come after the start
        if end_clock.meridiem is None and end_clock.text.isdigit():
            return None
        begins, ends = _minutes_of_day(start), _minutes_of_day(end_clock)
        if begins is not None and ends is not None and ends <= begins:
            return None
        merged = replace(start, text=self.text(first, end))
        if start.kind == "bare" and end_clock.meridiem is not None:
            h = start.hour
            as_pm = (h % 12 + 12) if end_clock.meridiem == "pm" else h % 12
            end_24 = end_clock.hour % 12 + (12 if end_clock.meridiem == "pm" else 0)
            if as_pm >= end_24:
                return None
            merged.meridiem, merged.kind = end_clock.meridiem, "fixed"
        return merged, end

    # -- parts of the day

    def m_period(self, i: int) -> _Step | None:
        found = self.phrases(i, self.lex.period_phrases)
        if found is not None:
            return (
                "period",
                _Period(self.lex.period_phrases[found[0]], True, self.text(i, found[1])),
                found[1],
            )
        period, end = self.period_after(i)
        if period is not None:
            return ("period", _Period(period, False, self.text(i, end)), end)
        return None


def _home(zone: _Zone) -> str | None:
    """The IANA zone an abbreviation or a zone word belongs to ("CEST" -> Europe/Paris)."""
    if zone.kind == "iana":
        return zone.name or None
    if zone.kind == "abbr" and zone.name in ABBREVIATIONS and not ABBREVIATIONS[zone.name].doubtful:
        return ABBREVIATIONS[zone.name].home
    return None


def _minutes_of_day(clock: _Clock) -> int | None:
    """Minutes since midnight when the clock time alone says it (not "8" or "8:30", which may be evening)."""
    if clock.meridiem is not None:
        return (clock.hour % 12 + (12 if clock.meridiem == "pm" else 0)) * 60 + clock.minute
    if clock.kind == "fixed":
        return clock.hour * 60 + clock.minute
    return None


class _Soft(Exception):
    """A time phrase that starts but cannot be used ("in a few minutes"): the error to show if nothing else
    in the text reads as a time."""

    def __init__(self, error: InvalidTime) -> None:
        super().__init__(error.key)
        self.error = error


_SPECIFICITY = {"date": 3, "dom": 2, "rel": 1, "weekday": 0}


# ------------------------------------------------------------------------------------------- resolution


def _settle_with_weekday(day: _Day, weekday: int, ctx: _Context) -> None:
    """A numeric date read both ways (1/12 or 12/1): keep the reading that falls on ``weekday`` if only one
    does; either way, that date is then no longer ambiguous if the weekday decided it."""
    assert day.swapped is not None
    if not day.month_first_ambiguous:
        return  # in Paris "vendredi 12/4" is the 12th of April, whatever the weekday says (then: two days)
    alt = replace(day, month=day.swapped[0], day=day.swapped[1], swapped=None)
    this, other = _day_date(replace(day, swapped=None), ctx), _day_date(alt, ctx)
    fits = [d for d, candidate in ((this, day), (other, alt)) if d is not None and d.weekday() == weekday]
    if len(fits) == 1:
        if fits[0] == other:
            day.month, day.day = alt.month, alt.day
        day.swapped, day.month_first_ambiguous = None, False


def _which_date(day: _Day, ctx: _Context) -> InvalidTime:
    assert day.swapped is not None
    choices = []
    for month, dom in ((day.month, day.day), day.swapped):
        d = _day_date(replace(day, month=month, day=dom, swapped=None), ctx)
        choices.append(_format_date(d, ctx.locale) if d else f"{dom}/{month}")
    return InvalidTime("time.which_date", text=day.text, choices=choices)


def _day_date(day: _Day, ctx: _Context, today: date | None = None) -> date | None:
    """The calendar date a day word names (weekdays: the coming one, today included)."""
    today = today or ctx.today
    if day.kind == "rel":
        return today + timedelta(days=day.n)
    if day.kind == "weekday":
        if day.week_offset:
            monday = today - timedelta(days=today.weekday()) + timedelta(weeks=day.week_offset)
            return monday + timedelta(days=day.weekday)
        delta = (day.weekday - today.weekday()) % 7
        if delta == 0 and day.next_:
            delta = 7
        return today + timedelta(days=delta)
    if day.kind == "date":
        if day.year is not None:
            try:
                return date(day.year, day.month, day.day)
            except ValueError:
                return None
        return _nearest_date(today, day.month, day.day)
    if day.kind == "dom":
        for months_ahead in range(0, 3):
            y, m = (
                today.year + (today.month - 1 + months_ahead) // 12,
                (today.month - 1 + months_ahead) % 12 + 1,
            )
            try:
                candidate = date(y, m, day.day)
            except ValueError:
                continue
            if candidate >= today:
                return candidate
        return None
    return None


def _nearest_date(today: date, month: int, day: int) -> date | None:
    """A date written without its year: this year's if it is still to come (or today), next year's if this
    year's is further back than next year's is ahead; otherwise this year's — in the past, and refused as such
    ("Nov 20" typed on Nov 25 is a mistake, not next November)."""
    candidates = []
    for year in (today.year, today.year + 1):
        try:
            candidates.append(date(year, month, day))
        except ValueError:
            continue
    if not candidates:
        return None
    this = candidates[0]
    if this >= today or len(candidates) == 1:
        return this
    nxt = candidates[1]
    return nxt if (nxt - today) < (today - this) else this


def _frame(w: _When, ctx: _Context) -> tuple[tzinfo, str, timedelta | None]:
    """The clock the wall time is read on, the zone to show it in, and an exact offset if one was written."""
    if w.zone is not None and w.zone.kind == "offset":
        assert w.zone.offset is not None
        return timezone(w.zone.offset), ctx.zone, w.zone.offset
    zone = w.zone.name if w.zone is not None else ctx.zone
    if w.abbr is not None:
        offset = _abbreviation_offset(w.abbr.name, zone, ctx, explicit_zone=w.zone is not None)
        return timezone(offset), zone if w.zone is not None else ctx.zone, offset
    return ZoneInfo(zone), zone, None


def _abbreviation_offset(abbr: str, zone: str, ctx: _Context, *, explicit_zone: bool) -> timedelta:
    """The offset an abbreviation stands for, as a careful reader would take it; raises time.which_zone when
    that reader would ask (IST: India, Ireland or Israel?)."""
    own = _zone_abbreviations(zone, ctx.now.year).get(abbr)
    if own is not None:
        return own
    if explicit_zone:  # "2027-10-31 02:30 EST Europe/Paris": that zone never shows EST
        raise InvalidTime("time.which_zone", zone=abbr, choices=[zone])
    entry = ABBREVIATIONS[abbr]
    if entry.doubtful:
        if abbr == "CST" and ctx.zone.startswith("America/"):
            return entry.offset
        readings = ABBREVIATION_READINGS.get(abbr, ((entry.home, entry.offset),))
        raise InvalidTime(
            "time.which_zone",
            zone=abbr,
            choices=[f"{name} (UTC{_colon(offset)})" for name, offset in readings],
        )
    return entry.offset


def _check_abbreviation_in_use(w: _When, ctx: _Context, at: datetime, offset: timedelta) -> None:
    """ "8pm EST" in July: New York is on EDT then — asked, not guessed."""
    assert w.abbr is not None
    abbr = w.abbr.name
    zone = w.zone.name if w.zone is not None else ctx.zone
    home = zone if abbr in _zone_abbreviations(zone, ctx.now.year) else ABBREVIATIONS[abbr].home
    local = at.astimezone(ZoneInfo(home))
    if local.utcoffset() == offset:
        return
    actual = _abbreviation(local)
    raise InvalidTime(
        "time.which_zone",
        zone=abbr,
        choices=[f"{home} ({actual}, UTC{_colon(local.utcoffset())})", f"UTC{_colon(offset)}"],
    )


def _hour(w: _When, ctx: _Context) -> tuple[int, int, int]:
    """The clock time (hour, minute, second) the phrase means, with its part of the day; raises
    time.which_hour when it could be morning or evening."""
    clock = w.clock
    assert clock is not None
    periods = {p for p in (w.day.period if w.day else None, w.period.period if w.period else None) if p}
    if len(periods) > 1:
        raise _which_hour(clock, ctx, w)
    period = next(iter(periods), None)
    h, m = clock.hour, clock.minute
    if clock.kind == "noon":
        if period in (Period.EVENING, Period.NIGHT, Period.MORNING):
            raise _which_hour(clock, ctx, w)
        return 12, m, 0
    if clock.kind == "midnight":
        return 0, m, 0
    if clock.meridiem is not None:
        if h == 12 and clock.meridiem == "am":
            raise _which_hour(clock, ctx, w)  # "12am": midnight by the rule, noon for many; asked
        hour = h % 12 + (12 if clock.meridiem == "pm" else 0)
        if period is not None and not _fits(period, hour):
            raise _which_hour(clock, ctx, w)
        return hour, m, clock.second
    if clock.kind in ("bare", "soft"):
        if period is not None:
            shifted = _with_period(h, period)
            if shifted is None:
                raise _which_hour(clock, ctx, w)
            return shifted, m, clock.second
        if clock.kind == "bare" and h != 12:
            raise _which_hour(clock, ctx, w)
        if clock.colon and 1 <= h <= 6:
            raise _which_hour(
                clock, ctx, w
            )  # "at 1:30" at 11am means 13:30 to most, 01:30 by the clock: asked
        return h, m, clock.second
    if period is not None and not _fits(period, h):
        raise _which_hour(clock, ctx, w)
    return h, m, clock.second


def _with_period(h: int, period: Period) -> int | None:
    if period is Period.MORNING:
        return h if 1 <= h <= 11 else None
    if period is Period.AFTERNOON:
        return 12 if h == 12 else h + 12 if 1 <= h <= 7 else None
    if period is Period.EVENING:
        return h + 12 if 5 <= h <= 11 else None
    return h + 12 if 7 <= h <= 11 else None


def _fits(period: Period, hour: int) -> bool:
    return {
        Period.MORNING: 0 <= hour <= 11,
        Period.AFTERNOON: 12 <= hour <= 18,
        Period.EVENING: 16 <= hour <= 23,
        Period.NIGHT: hour >= 19,
    }[period]


def _which_hour(clock: _Clock, ctx: _Context, w: _When) -> InvalidTime:
    h, m = clock.hour % 12 or 12, clock.minute
    choices = [f"{h % 12:02d}:{m:02d}", f"{h % 12 + 12:02d}:{m:02d}"]
    return InvalidTime("time.which_hour", text=" ".join(w.words) or clock.text, choices=choices)


def _resolve(w: _When, ctx: _Context) -> ParsedTime:
    """The instant of a complete phrase. Raises InvalidTime for everything a careful reader would ask about."""
    now = ctx.now
    if w.day is not None and w.day.month_first_ambiguous:
        raise _which_date(w.day, ctx)  # 1/12 in New York: the 1st of December, or January 12th?
    frame, tz_out, fixed = _frame(w, ctx)
    now_local = now.astimezone(frame)
    today = now_local.date()
    if w.zone is not None or w.abbr is not None:
        user_today = ctx.today
        relative = (w.day is not None and w.day.kind != "date") or (w.span is not None and w.span.calendar)
        if relative and today != user_today:
            raise _which_day_frames(w, ctx, today, user_today)
    if w.now:
        return _exact(now, tz_out)
    span = w.span
    if span is not None and not span.calendar:
        return _finish(_exact(now + span.exact, tz_out), ctx)
    if w.clock is None and not (span is not None and span.calendar):
        raise InvalidTime("time.missing_time", text=" ".join(w.words))
    if span is not None:
        day = today
        if span.months:
            y, m = divmod(today.month - 1 + span.months, 12)
            try:
                day = date(today.year + y, m + 1, today.day)
            except ValueError:
                raise InvalidTime("time.bad_date", date=span.text) from None
        day += timedelta(days=span.days)
        if w.clock is None:
            wall = datetime.combine(day, now_local.time().replace(tzinfo=None)) + span.exact
            return _finish(_place(wall, frame, tz_out, fixed, w, ctx), ctx)
    else:
        named = _day_date(w.day, ctx, today) if w.day is not None else today
        if named is None:
            assert w.day is not None
            raise InvalidTime("time.bad_date", date=w.day.text)
        day = named
        _check_day_is_clear(w, ctx, today, now_local, day)
    assert w.clock is not None
    if w.clock.kind == "midnight":
        if (w.day is not None and not (w.day.kind == "rel" and w.day.n == 0)) or span is not None:
            start, end_ = day, day + timedelta(days=1)
            raise InvalidTime(
                "time.which_day",
                text=" ".join(w.words),
                choices=[
                    _format_date(start, ctx.locale) + " 00:00",
                    _format_date(end_, ctx.locale) + " 00:00",
                ],
            )
        day = today + timedelta(days=1)
    hour, minute, second = _hour(w, ctx)
    wall = datetime.combine(day, time(hour, minute, second))
    if w.clock.kind != "midnight" and span is None:
        passed = wall < now_local.replace(tzinfo=None) - PAST_GRACE
        if w.day is None and passed:
            wall += timedelta(days=1)  # a clock time alone: its next occurrence
        elif (
            w.day is not None
            and w.day.kind == "weekday"
            and passed
            and not w.day.next_
            and not w.day.week_offset
        ):
            wall += timedelta(days=7)  # "wednesday 16h" on a Wednesday after 16:00: next week
    return _finish(_place(wall, frame, tz_out, fixed, w, ctx), ctx)


# before this hour, "tomorrow" may be said by someone who has not gone to bed yet
_NIGHT_ENDS = 5


def _check_day_is_clear(w: _When, ctx: _Context, today: date, now_local: datetime, day: date) -> None:
    """ "tomorrow" at 01:30 (the calendar's tomorrow, or the day after a night not slept yet?) and "next
    thursday" on a Wednesday (tomorrow, or Thursday next week?): asked, not guessed."""
    if w.day is None:
        return
    choices: tuple[date, date] | None = None
    if w.day.kind == "rel" and w.day.n == 1 and now_local.hour < _NIGHT_ENDS:
        choices = (today, day)
    elif w.day.kind == "weekday" and w.day.next_ and day - today == timedelta(days=1):
        choices = (day, day + timedelta(days=7))
    elif w.day.kind == "weekday" and w.day.week_offset and today.weekday() == 6:
        choices = (day, day + timedelta(days=7))  # on a Sunday, "next week" starts tomorrow, or in a week
    if choices is not None:
        raise InvalidTime(
            "time.which_day", text=" ".join(w.words), choices=[_format_date(d, ctx.locale) for d in choices]
        )


def _which_day_frames(w: _When, ctx: _Context, text_today: date, user_today: date) -> InvalidTime:
    """ "tomorrow 20:00 JST" typed in Paris at 17:00 — already tomorrow in Tokyo: whose tomorrow?"""
    choices = []
    for today in (user_today, text_today):
        day = _day_date(w.day, ctx, today) if w.day is not None else today
        if w.span is not None and w.span.calendar:
            day = today + timedelta(days=w.span.days)
        if day is not None:
            choices.append(_format_date(day, ctx.locale))
    return InvalidTime("time.which_day", text=" ".join(w.words), choices=choices)


def _place(
    wall: datetime, frame: tzinfo, tz_out: str, fixed: timedelta | None, w: _When, ctx: _Context
) -> ParsedTime:
    """The naive wall time ``wall`` on ``frame``'s clock, refusing the skipped and the repeated ones."""
    wall = wall.replace(tzinfo=None)
    if fixed is not None:
        at = (wall - fixed).replace(tzinfo=UTC)
        if w.abbr is not None:
            _check_abbreviation_in_use(w, ctx, at, fixed)
        return _exact(at, tz_out)
    assert isinstance(frame, ZoneInfo)
    return _resolve_wall(wall, frame.key)


def _finish(parsed: ParsedTime, ctx: _Context) -> ParsedTime:
    """Refuse a start in the past or too far ahead (the same limits as core.rules)."""
    if parsed.at < ctx.now - PAST_GRACE:
        raise InvalidTime("time.past", when=format_local(parsed.at, parsed.tz, ctx.locale))
    if parsed.at > ctx.now + MAX_AHEAD:
        raise InvalidTime("time.too_far", days=MAX_AHEAD.days)
    return parsed


def _resolve_iso(tok: _Tok, ctx: _Context) -> ParsedTime | None:
    try:
        iso = datetime.fromisoformat(tok.text)
    except ValueError:
        return None
    if iso.tzinfo is not None:
        return _finish(_exact(iso, ctx.zone), ctx)
    return _finish(_resolve_wall(iso, ctx.zone), ctx)


# ------------------------------------------------------------------------------------------------- API


def parse_when(
    text: str,
    *,
    now: datetime,
    tz: str,
    languages: Sequence[str] = ("en", "fr"),
    locale: str = "en",
) -> ParsedTime:
    """Read ``text`` as one instant. ``now`` (aware, any zone) anchors relative forms; ``tz`` is the default
    IANA zone; ``locale`` is the language of the dates shown in error messages. Raises InvalidTime
    (time.unreadable, time.missing_time, time.unknown_zone, time.nonexistent, time.ambiguous, time.bad_clock,
    time.bad_date, time.two_days, time.two_times, time.which_hour, time.which_date, time.which_day,
    time.which_zone, time.vague, time.no_unit, time.past, time.too_far). ``languages`` limits the vocabulary
    (both by default: a French speaker may well type "tomorrow")."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    ctx = _Context(now, check_zone(tz), lexicon(tuple(languages)), locale)
    s = " ".join(text.split())
    if not s or len(s) > MAX_TEXT:
        raise _unreadable(text)
    toks = _lex(s)
    reading = _whole(toks, s, ctx)
    if isinstance(reading, ParsedTime):
        return reading
    if isinstance(reading, InvalidTime):
        raise reading
    # something is left over: a zone-like word is a zone the user misspelled ("Mars/Olympus")
    for tok in toks:
        if (
            "/" in tok.text
            and tok.text[:1].isalpha()
            and re.fullmatch(r"[^\W\d_][\w+\-]*(?:/[\w+\-]+)+", tok.text)
        ):
            raise InvalidTime("time.unknown_zone", zone=tok.text)
    slashed = re.search(r"(?<![\w/])([^\W\d_][\w+\-]*/[\w+\-/]+)", s)
    if slashed:
        raise InvalidTime("time.unknown_zone", zone=slashed.group(1))
    raise _unreadable(text)


def _whole(toks: list[_Tok], s: str, ctx: _Context) -> ParsedTime | InvalidTime | None:
    """``toks`` read entirely as one time phrase: the instant, the reason it cannot be used, or None when
    words are left over."""
    if len(toks) == 1 and toks[0].kind == "iso":
        iso = _resolve_iso(toks[0], ctx)
        return iso if iso is not None else _unreadable(s)
    reader = _Reader(toks, s, ctx)
    try:
        w = reader.read(0)
        end = w.end
        while end < len(toks) and toks[end].text in (".", "!", "?", ")"):
            end += 1
        if end < len(toks) or w.empty or not w.has_time:
            return None
        if not w.complete:
            return _incomplete(w)
        return _resolve(w, ctx)
    except _Soft as soft:
        return soft.error
    except InvalidTime as e:
        return e


def _incomplete(w: _When) -> InvalidTime:
    return InvalidTime("time.missing_time", text=" ".join(w.words))


def split_when_and_title(
    text: str,
    *,
    now: datetime,
    tz: str,
    languages: Sequence[str] = ("en", "fr"),
    locale: str = "en",
) -> tuple[ParsedTime, str]:
    """Split "tomorrow 20:00 Weekly AMA" into the time and the title. Also read: the title first with a
    separator ("Weekly AMA | tomorrow 20:00", "Weekly AMA @ tomorrow 20:00") or without one when the time ends
    the text ("Weekly AMA tomorrow at 8pm").

    Raises InvalidTime (see parse_when; also time.unclear_split when the time and the title cannot be told
    apart, time.recurring for "every monday 8pm") or MissingTitle (title.missing: a time was read but no
    title follows; it shows the time read)."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    ctx = _Context(now, check_zone(tz), lexicon(tuple(languages)), locale)
    s = " ".join(text.split())
    if not s or len(s) > MAX_SPLIT:
        raise _unreadable(text)
    toks = _lex(s)
    soft: list[InvalidTime] = []

    # 1. an explicit separator: "Weekly AMA | tomorrow 20:00", "tomorrow 20:00 | Weekly AMA"
    pipes = [k for k, tok in enumerate(toks) if tok.text == "|"]
    for p in dict.fromkeys((pipes[-1], pipes[0])) if pipes else ():
        left, right = s[: toks[p].start].strip(), s[toks[p].end :].strip()
        readings = []
        hard: list[InvalidTime] = []
        for when, title in ((right, left), (left, right)):
            if not when or not title:
                continue
            result = _whole(_lex(when), when, ctx)
            if isinstance(result, ParsedTime):
                readings.append((result, _clean_title(title)))
            elif isinstance(result, InvalidTime):
                (soft if result.key in _SOFT_KEYS else hard).append(result)
        if not readings and hard:
            raise hard[0]  # "Night owls | 2027-10-31 02:30": the time was found, and it needs a choice
        if len(readings) == 2:
            raise InvalidTime("time.unclear_split", text=s)
        if readings:
            parsed, title = readings[0]
            if not title:
                raise _missing_title(parsed, ctx)
            if _starts_with_clock(title, ctx):  # "Friday 8pm ET | 5pm PT watch party": "|" between times
                raise InvalidTime("time.unclear_split", text=s)
            return parsed, title

    reader = _Reader(toks, s, ctx)
    _refuse_recurring(reader, 0, len(toks))

    # 2. the time first: "tomorrow 20:00 Weekly AMA"
    lead: _When | None = None
    try:
        lead = reader.read(0)
    except _Soft as e:
        soft.append(e.error)
    if lead is not None and lead.has_time:
        if lead.complete:
            parsed = _resolve(lead, ctx)
            start = lead.end
            while start < len(toks) and toks[start].text in "!.?…" and not toks[start].space:
                start += 1  # "tomorrow 8pm!!! Weekly AMA"
            title = _clean_title(s[toks[start].start :] if start < len(toks) else "")
            if (
                lead.day is None
                and lead.span is None
                and (
                    _ends_with_day(reader, lead.end)
                    or _names_a_holiday(reader, lead.end, len(toks))
                    or _begins_with_unread_day(reader, lead)
                )
            ) or (lead.now and _ends_with_time(reader, lead.end)):
                raise InvalidTime("time.unclear_split", text=s)
            if not title:
                raise _missing_title(parsed, ctx)
            return parsed, title
        soft.append(_incomplete(lead))

    # 3. the title first, the time ending the text: "Weekly AMA tomorrow at 8pm"
    for j in range(1, len(toks)):
        if toks[j].text in _SEPARATORS and j + 1 < len(toks):
            continue
        if toks[j].low in ctx.lex.period_words:
            continue  # "Board game night on Friday": "night" is the title's
        try:
            w = reader.read(j)
        except _Soft as e:
            soft.append(e.error)
            continue
        except InvalidTime:
            continue
        end = w.end
        while end < len(toks) and toks[end].text in (".", "!", "?", ")"):
            end += 1
        if end < len(toks) or not w.has_time:
            continue
        if w.day is not None and w.day.abbreviated:
            # "Cookie swap Sat 2pm", but "Brunch with Sam 11am", "Fun in the Sun 2pm": asked
            raise InvalidTime("time.unclear_split", text=s)
        if not w.complete:
            soft.append(_incomplete(w))
            break
        title = _clean_title(s[: toks[j].start], trailing=True)
        if title.endswith(("(", "[")) and toks[-1].text in (")", "]"):
            title = title[:-1].strip()  # "Quiz musical (demain 21h)"
        if not title:
            raise _missing_title(_resolve(w, ctx), ctx)  # " | demain 20h"
        _refuse_recurring(reader, 0, j)
        if _mentions_time(reader, 0, j) or (w.day is None and _names_a_holiday(reader, 0, j)):
            raise InvalidTime("time.unclear_split", text=s)
        return _resolve(w, ctx), title

    if soft:
        raise max(soft, key=lambda e: _RANK.get(e.key, 0))
    raise _unreadable(text)


_SOFT_KEYS = frozenset({"time.missing_time", "time.vague", "time.no_unit", "time.unreadable"})
_RANK = {"time.missing_time": 3, "time.no_unit": 2, "time.vague": 1}


def _missing_title(parsed: ParsedTime, ctx: _Context) -> MissingTitle:
    return MissingTitle("title.missing", when=format_local(parsed.at, parsed.tz, ctx.locale))


def _clean_title(raw: str, *, trailing: bool = False) -> str:
    """The title as typed, without the separator that set it apart from the time, or quotes around it all."""
    title = raw.strip()
    while title and title[0] in _SEPARATORS and title[0] != "@" and (len(title) == 1 or title[1] == " "):
        title = title[1:].strip()
    if trailing:  # "Board game night: Friday, 7pm"
        while title and title[-1] in _SEPARATORS:
            title = title[:-1].strip()
    if len(title) >= 2 and title[0] in _QUOTES and title[-1] == _QUOTES[title[0]]:
        inner = title[1:-1]
        if title[0] not in inner and _QUOTES[title[0]] not in inner:
            title = inner.strip()
    return title


_RECURRING = ({"every", "each", "chaque"}, {("tous", "les"), ("toutes", "les")})


def _refuse_recurring(reader: _Reader, start: int, end: int) -> None:
    """ "every monday 8pm", "Réunion tous les lundis à 20h": a Space happens once; say so rather than schedule
    the first one silently (or read "every" into the title)."""
    words, phrases = _RECURRING
    for i in range(start, end):
        low = reader.low(i)
        after = i + 1 if low in words else reader.phrases(i, phrases)
        if isinstance(after, tuple):
            after = after[1]
        if after is None:
            continue
        nxt = reader.low(after)
        singular = nxt[:-1] if nxt.endswith("s") else nxt
        lex = reader.lex
        if (
            nxt in lex.weekdays
            or singular in lex.weekdays
            or nxt in lex.day_words
            or singular in lex.period_words
            or singular in ("day", "week", "jour", "semaine", "mois", "month")
            or (after < reader.n and reader.toks[after].kind == "num" and i == start)
        ):
            raise InvalidTime("time.recurring", text=reader.text(i, after + 1))


_HOLIDAYS = (
    ("christmas",), ("xmas",), ("noël",), ("noel",), ("halloween",), ("thanksgiving",), ("easter",),
    ("pâques",), ("paques",), ("réveillon",), ("reveillon",), ("nye",), ("new", "year's"), ("new", "year"),
    ("new", "years"), ("nouvel", "an"), ("saint-sylvestre",), ("valentine's",), ("saint-valentin",),
    ("hanukkah",), ("diwali",), ("ramadan",), ("eid",),
)  # fmt: skip


def _names_a_holiday(reader: _Reader, start: int, end: int) -> bool:
    """ "11pm New Year's Eve countdown": a time with no day, next to a named day — which day was meant?"""
    return any(reader.phrase(i, words) is not None for i in range(start, end) for words in _HOLIDAYS)


def _starts_with_clock(title: str, ctx: _Context) -> bool:
    """Whether a title begins with a written clock time ("5pm PT watch party"; not "Noon recap")."""
    toks = _lex(title)
    found = _Reader(toks, title, ctx).clock_at(0, False, lookahead=False) if toks else None
    return found is not None and found[0].kind not in ("noon", "midnight")


def _begins_with_unread_day(reader: _Reader, lead: _When) -> bool:
    """A time without a day, then a day word the phrase did not take ("8pm Sat night party": Saturday, or
    the title's first word?) — unless it is a word that would change nothing ("20:00 Today in AI")."""
    i, _ = reader.skip_fillers(lead.end)
    if i >= reader.n:
        return False
    probe = _When(i, i)
    for matcher in (reader.m_date, reader.m_weekday, reader.m_day_word):
        try:
            found = matcher(i, probe, [])
        except (_Soft, InvalidTime):
            return True
        if found is not None:
            day = found[1]
            assert isinstance(day, _Day)
            return not (reader.is_capitalised(i) and not reader.changes(lead, day))
    return reader.low(i) in reader.lex.weekday_abbreviations  # "8pm sat night": no date follows


def _ends_with_day(reader: _Reader, start: int) -> bool:
    """Whether the text after a time without a day ends with a day ("8pm Weekly AMA tomorrow")."""
    for i in range(start, reader.n):
        probe = _When(i, i)
        for matcher in (reader.m_date, reader.m_weekday, reader.m_day_word):
            try:
                found = matcher(i, probe, [])
            except (_Soft, InvalidTime):
                found = None
            if (
                found is not None
                and found[2] >= reader.n
                and not (isinstance(found[1], _Day) and found[1].abbreviated)
            ):
                return True
    return False


def _ends_with_time(reader: _Reader, start: int) -> bool:
    for i in range(start, reader.n):
        try:
            w = reader.read(i)
        except (_Soft, InvalidTime):
            continue
        if w.end >= reader.n and w.complete and not w.now:
            return True
    return False


def _mentions_time(reader: _Reader, start: int, end: int) -> bool:
    """Whether the words start..end (a title) contain a day, a date or a clock time ("Friday Night Live")."""
    for i in range(start, end):
        probe = _When(i, i)
        try:
            for matcher in (reader.m_date, reader.m_weekday, reader.m_day_word):
                found = matcher(i, probe, [])
                if found is not None and not (isinstance(found[1], _Day) and found[1].abbreviated):
                    return True
            clock = reader.clock_at(i, False, lookahead=False)
        except (_Soft, InvalidTime):
            return True
        if clock is not None and clock[0].kind not in ("noon", "midnight"):
            return True
    return False


def format_local(at: datetime, tz: str, locale: str) -> str:
    """``at`` as the wall time in ``tz`` for a reader of ``locale``:
    "Tue 1 Dec 2026, 18:30 CET" (en) / "mar. 1 déc. 2026, 18:30 CET" (fr)."""
    local = (at if at.tzinfo is not None else at.replace(tzinfo=UTC)).astimezone(ZoneInfo(check_zone(tz)))
    return f"{_format_date(local.date(), locale)}, {local:%H:%M} {_abbreviation(local)}"


def _format_date(day: date, locale: str) -> str:
    days, months = _NAMES.get((locale or "en").replace("_", "-").split("-", 1)[0].lower(), _NAMES["en"])
    return f"{days[day.weekday()]} {day.day} {months[day.month - 1]} {day.year}"


# ---------------------------------------------------------------------------------------------- helpers

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


def _exact(at: datetime, zone: str) -> ParsedTime:
    utc = at.astimezone(UTC)
    return ParsedTime(at=utc, tz=zone, local=utc.astimezone(ZoneInfo(zone)))


def _resolve_wall(wall: datetime, zone: str) -> ParsedTime:
    """The instant of the naive wall time ``wall`` in ``zone``.

    Raises time.nonexistent for a wall time the clocks skip and time.ambiguous for one they show twice."""
    wall = wall.replace(tzinfo=None)
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
