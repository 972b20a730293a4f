"""Property tests (hypothesis): whatever the title, ``<when> <title>`` keeps the title exactly and the instant of
``<when>`` alone.

Titles are drawn from real words, numbers and time-like words in English and French ("Today", "Noon",
"10 minute", "Friday", "soir", "20h", "8pm", "-2", "1 on 1"...). Words that legitimately join a time that is
already complete are left out of the first position only, each for its reason (see ``JOINERS``): zone names
and abbreviations (a zone the user clearly wrote joins the time), and the separators that set a
title apart from its time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from core.errors import InvalidTime
from core.timeparse import parse_when, split_when_and_title
from core.timewords import COUNT_NOUNS

NOW = datetime(2026, 11, 25, 16, 0, tzinfo=UTC)  # a Wednesday, 17:00 in Paris
ZONES = ("Europe/Paris", "America/New_York", "Asia/Kolkata")

# complete time phrases, each with a day or a duration (a bare "20:00" followed by a title ending in a day
# word is asked about on purpose: "20:00 Meetup Friday")
WHENS = (
    "tomorrow 20:00",
    "tomorrow at 8pm",
    "Tomorrow 8 PM",
    "tmrw 7:30pm",
    "tomorrow evening at 8",
    "tonight 11pm",
    "tonight 11",
    "today 23:00",
    "friday 7pm",
    "next friday 19:00",
    "on Saturday at 6:30pm",
    "Dec 1 6:30pm",
    "December 12th at 8pm",
    "2026-12-01 18:30",
    "2026-12-01T18:30",
    "12/24 6pm",
    "24/12 18h",
    "Tuesday, December 1 at 6:30pm",
    "in 2 hours",
    "in 45 minutes",
    "in 1h30",
    "in 1 hour 30 minutes",
    "in an hour and a half",
    "in half an hour",
    "in 90 min",
    "2 hours from now",
    "in 2 days at 8pm",
    "demain 20h",
    "demain à 20h30",
    "demain 20 h 30",
    "demain soir 21h",
    "demain matin 9h",
    "ce soir 23h",
    "ce soir à 11h",
    "samedi 18h30",
    "vendredi prochain à 19h",
    "le 12 décembre à 20h30",
    "12 déc. 20h",
    "1er décembre 18h",
    "dans 2 heures",
    "dans 1h30",
    "dans une demi-heure",
    "dans une heure et demie",
    "d'ici 45 minutes",
    "dans 2 jours à 20h",
    "ce soir à minuit",
    "demain midi",
    "tomorrow noon",
    "tomorrow 20:00 Europe/London",
    "tomorrow 8pm ET",
    "demain 20h UTC+3",
    "2026-12-01 18:30 +05:30",
)

REAL_WORDS = (
    "Weekly", "AMA", "chat", "Book", "club", "Apéro", "du", "Réunion", "mensuelle", "with", "Sam", "the",
    "team", "Launch", "party", "Q&A", "news", "de", "la", "jazz", "hike", "meditation", "prayers", "recap",
    "Town", "hall", "Café", "soirée", "jeux", "on", "at", "in", "à", "le", "et", "and", "of", "a", "an",
    "🎉", "#42", "@alice", "Tokyo", "Paris", "Cet", "cet", "événement", "Midi-Pyrénées", "TCP/IP", "w/",
    "degrees", "people", "ans", "speakers", "Live", "show", "Season", "episode", "x",
)  # fmt: skip
NUMBERS = (
    "1", "2", "3", "8", "9", "10", "12", "20", "24", "30", "45", "59", "2026", "24/7", "3rd", "1er", "100%",
    "-2", "+1", "1:1", "0", "99", "1.5", "7,5",
)  # fmt: skip
TIME_LIKE = (
    "Today", "today", "tomorrow", "Tomorrow", "demain", "Demain", "Tonight", "tonight", "ce", "soir", "Evening",
    "evening", "Noon", "noon", "midnight", "Midnight", "minuit", "midi", "Friday", "friday", "vendredi",
    "Samedi", "May", "Sat", "Sun", "mar", "Mar", "minute", "minutes", "hours", "hour", "heures", "h", "day",
    "days", "week", "next", "prochain", "morning", "matin", "Morning", "night", "nuit", "am", "pm", "AM", "PM",
    "20h", "8pm", "9am", "20:00", "Dec", "décembre", "1/12", "now", "Now", "later", "soon", "half", "quarter",
    "o'clock", "yesterday", "hier", "after", "before", "from", "to", "until", "vers", "around", "@", "de",
    "du", "l'après-midi", "afternoon", "o", "time", "Time", "Eastern", "zone",
)  # fmt: skip
WORDS = REAL_WORDS + NUMBERS + TIME_LIKE

# Words that may legitimately join a complete time when they come first in what follows it:
JOINERS = {
    # zones the user clearly wrote, and "Eastern" (asked: zone or title?)
    "utc", "gmt", "z", "et", "pt", "ct", "mt", "est", "edt", "cet", "cest", "bst", "ist", "msk", "jst",
    "eastern", "pacific", "central", "mountain",
    # separators between a time and its title
    "-", "–", "—", "|", ",", ":", "@", "·", "/",
    # "8pm sharp", "midi pile"
    "sharp", "pile",
}  # fmt: skip

UNITS_AND_COUNTS = COUNT_NOUNS | {"min", "minute", "minutes", "hour", "hours", "heures", "h", "day", "week"}

titles = st.lists(st.sampled_from(WORDS), min_size=1, max_size=5).map(" ".join)


# after an hour said as a bare number ("tonight 11", "at 8"): its unit, its half of the day, or a month (then
# it was a date: "tonight 11 May" names two days, and is asked about); before a unit or a count it was no
# hour ("at 8 minutes")
AFTER_BARE_HOUR = {
    "h", "heure", "heures", "am", "pm", "o'clock", "o", "dec", "décembre", "may", "mar", "de", "du", "in", "at",
    "le", "of", "morning", "matin", "evening", "soir", "night", "nuit", "afternoon", "l'après-midi",
}  # fmt: skip
RANGE_WORDS = {"to", "until", "till", "à", "a", "-", "–"}


def joins_legitimately(when: str, title: str) -> bool:
    words = title.split()
    first = words[0]
    if first.lower() in JOINERS or (first[:1] in "-–—|,:@·\"“«'" and first != "-2"):
        return True
    if len(words) > 1 and words[1].lower() == "time":  # "Tokyo time", "Eastern time": a zone
        return True
    # a duration in whole hours takes the minutes that follow it ("in 1 hour 30" is 1 h 30), and
    # "and a half", "and 15 minutes" add to it
    if when.startswith("in ") and [w.lower() for w in words[:2]] == ["from", "now"]:  # "in 2 hours from now"
        return True
    in_hours = when.endswith(("hours", "heures", "h", "hour", "heure")) or when == "in 1h30"
    if in_hours and (first.isdigit() or first in ("and", "et", ",")):
        return True
    if when.endswith(("11", "8")) and (first.lower() in AFTER_BARE_HOUR or first.lower() in UNITS_AND_COUNTS):
        return True
    # minutes said with their unit ("20 h 30 min"); before another unit or a count, "30" is a quantity of the
    # title ("20h 30 ans du club")
    if when.endswith(" 30") and first.lower() in UNITS_AND_COUNTS:
        return True
    # a range: "20:00 to 21:00" starts at 20:00 (its end is no title word)
    return first in RANGE_WORDS and len(words) > 1


def begins_with_a_time(title: str) -> bool:
    """ "20h Weekly", "24 o'clock": the first words are a clock time (or a wrong one)."""
    words = title.split()
    for n in (1, 2):
        try:
            parse_when(" ".join(words[:n]), now=NOW, tz="Europe/Paris")
        except InvalidTime as e:
            if e.key not in ("time.unreadable", "time.missing_time", "time.vague", "time.no_unit"):
                return True
            continue
        return True
    return False


def title_reads_as_a_time(title: str) -> bool:
    try:
        parse_when(title, now=NOW, tz="Europe/Paris")
    except InvalidTime:
        return False
    return True


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(when=st.sampled_from(WHENS), title=titles, zone=st.sampled_from(ZONES))
@example(when="tomorrow 20:00", title="Today in AI", zone="Europe/Paris")
@example(when="tomorrow 8pm", title="Evening prayers", zone="Europe/Paris")
@example(when="in 2 hours", title="Noon recap", zone="Europe/Paris")
@example(when="in 45 minutes", title="1 on 1 with Sam", zone="Europe/Paris")
@example(when="today 23:00", title="10 minute meditation", zone="Europe/Paris")
@example(when="tomorrow 20:00", title="-2 degrees hike", zone="Europe/Paris")
@example(when="tomorrow 20:00", title="TCP/IP deep dive", zone="Europe/Paris")
@example(when="in 3 hours", title="Second", zone="Europe/Paris")
def test_when_then_title_keeps_both(when: str, title: str, zone: str) -> None:
    assume(not joins_legitimately(when, title))
    alone = parse_when(when, now=NOW, tz=zone)
    parsed, rest = split_when_and_title(f"{when} {title}", now=NOW, tz=zone)
    assert rest == title
    assert parsed.at == alone.at


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(when=st.sampled_from(WHENS), title=titles)
def test_title_then_when_with_a_separator(when: str, title: str) -> None:
    """ "Weekly AMA | tomorrow 20:00" and "tomorrow 20:00 | Weekly AMA": the same, for any title that is not
    itself a time and does not begin with one ("20h Weekly | tomorrow 20:00": the user is asked)."""
    assume("|" not in title and not title_reads_as_a_time(title))
    assume(not begins_with_a_time(title))
    assume(title[0] not in "-–—,:@·\"“«'" or title.startswith("-2"))
    alone = parse_when(when, now=NOW, tz="Europe/Paris")
    for text in (f"{title} | {when}", f"{when} | {title}"):
        parsed, rest = split_when_and_title(text, now=NOW, tz="Europe/Paris")
        assert (parsed.at, rest) == (alone.at, title)


@pytest.mark.parametrize("when", WHENS)
def test_every_when_reads_alone(when: str) -> None:
    """The phrases above are complete times on their own (else the properties would test nothing)."""
    for zone in ZONES:
        assert parse_when(when, now=NOW, tz=zone).at > NOW


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    words=st.lists(
        st.one_of(st.sampled_from(WORDS + WHENS), st.text(min_size=1, max_size=6)), min_size=0, max_size=8
    ),
    zone=st.sampled_from(ZONES),
)
def test_any_text_is_read_or_refused_never_crashes(words: list[str], zone: str) -> None:
    """Whatever is typed, the answer is an instant and a title, or an error the user can act on."""
    text = " ".join(words)
    for call in (
        lambda: split_when_and_title(text, now=NOW, tz=zone),
        lambda: parse_when(text, now=NOW, tz=zone),
    ):
        try:
            result = call()
        except InvalidTime:
            continue
        parsed = result[0] if isinstance(result, tuple) else result
        assert parsed.at.tzinfo is UTC and NOW - timedelta(minutes=1) <= parsed.at <= NOW + timedelta(
            days=366
        )
