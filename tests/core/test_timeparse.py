"""core.timeparse: every accepted form in en and fr, zones, DST gaps and overlaps, errors, title splitting.

``NOW`` is Wednesday 2026-11-25 16:00 UTC: 17:00 in Paris, 11:00 in New York, 21:30 in Kolkata.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from core.errors import InvalidTime, InvalidTitle
from core.timeparse import (
    MissingTitle,
    ParsedTime,
    check_zone,
    format_local,
    parse_when,
    split_when_and_title,
)

NOW = datetime(2026, 11, 25, 16, 0, tzinfo=UTC)  # a Wednesday
SATURDAY = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)  # 16:00 in Paris
PARIS, NEW_YORK, KOLKATA = "Europe/Paris", "America/New_York", "Asia/Kolkata"


def wall(zone: str, *args: int) -> datetime:
    year, month, day, hour, minute = args
    return datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(zone))


def check(parsed: ParsedTime, zone: str, local: datetime) -> None:
    """The three fields agree: UTC instant, zone name, and the wall time the user meant."""
    assert parsed.tz == zone
    assert parsed.at.tzinfo is UTC
    assert isinstance(parsed.local.tzinfo, ZoneInfo) and parsed.local.tzinfo.key == zone
    # astimezone: an aware datetime in a fall-back fold never compares equal across zones (PEP 495)
    assert parsed.local.astimezone(UTC) == parsed.at
    assert parsed.local.replace(tzinfo=None) == local.replace(tzinfo=None)
    assert parsed.at == local.astimezone(UTC)


def parse(text: str, zone: str = PARIS, now: datetime = NOW) -> ParsedTime:
    return parse_when(text, now=now, tz=zone)


def error(text: str, zone: str = PARIS, now: datetime = NOW) -> InvalidTime:
    with pytest.raises(InvalidTime) as info:
        parse(text, zone, now)
    return info.value


# ------------------------------------------------------------------------------------------ wall times


@pytest.mark.parametrize(
    ("text", "zone", "expected"),
    [
        # tomorrow / demain
        ("tomorrow 20:00", PARIS, (2026, 11, 26, 20, 0)),
        ("tomorrow 8pm", PARIS, (2026, 11, 26, 20, 0)),
        ("tomorrow at 8pm", PARIS, (2026, 11, 26, 20, 0)),
        ("Tomorrow 20:00", PARIS, (2026, 11, 26, 20, 0)),
        ("demain 20h", PARIS, (2026, 11, 26, 20, 0)),
        ("demain à 20h30", PARIS, (2026, 11, 26, 20, 30)),
        ("demain a 20h30", PARIS, (2026, 11, 26, 20, 30)),
        ("demain 20:30", PARIS, (2026, 11, 26, 20, 30)),
        ("demain 20 h 30", PARIS, (2026, 11, 26, 20, 30)),
        ("demain soir 21h", PARIS, (2026, 11, 26, 21, 0)),
        ("tomorrow 20:00", NEW_YORK, (2026, 11, 26, 20, 0)),
        ("demain 20h", NEW_YORK, (2026, 11, 26, 20, 0)),
        ("tomorrow 20:00", KOLKATA, (2026, 11, 26, 20, 0)),
        ("demain 20h", KOLKATA, (2026, 11, 26, 20, 0)),
        # today / tonight / ce soir
        ("today 9:15pm", PARIS, (2026, 11, 25, 21, 15)),
        ("aujourd'hui 21h15", PARIS, (2026, 11, 25, 21, 15)),
        ("tonight 9pm", PARIS, (2026, 11, 25, 21, 0)),
        ("tonight 21:00", NEW_YORK, (2026, 11, 25, 21, 0)),
        ("ce soir 21h", PARIS, (2026, 11, 25, 21, 0)),
        ("ce soir à 21h", PARIS, (2026, 11, 25, 21, 0)),
        ("ce soir 9h", PARIS, (2026, 11, 25, 21, 0)),  # in the evening, 9 is 21:00
        ("tonight 11pm", KOLKATA, (2026, 11, 25, 23, 0)),
        # a bare time: today if still ahead, else tomorrow
        ("20:00", PARIS, (2026, 11, 25, 20, 0)),
        ("20h", PARIS, (2026, 11, 25, 20, 0)),
        ("15:00", PARIS, (2026, 11, 26, 15, 0)),
        ("9pm", NEW_YORK, (2026, 11, 25, 21, 0)),
        ("10:00", NEW_YORK, (2026, 11, 26, 10, 0)),
        ("20:00", KOLKATA, (2026, 11, 26, 20, 0)),
        ("22h", KOLKATA, (2026, 11, 25, 22, 0)),
        # weekdays: the coming one, today only if the time is still ahead
        ("samedi 18:30", PARIS, (2026, 11, 28, 18, 30)),
        ("samedi 18h30", PARIS, (2026, 11, 28, 18, 30)),
        ("sam. 18h30", PARIS, (2026, 11, 28, 18, 30)),
        ("saturday 6pm", PARIS, (2026, 11, 28, 18, 0)),
        ("Saturday 18:30", NEW_YORK, (2026, 11, 28, 18, 30)),
        ("samedi 18:30", KOLKATA, (2026, 11, 28, 18, 30)),
        ("next friday 19:00", PARIS, (2026, 11, 27, 19, 0)),
        ("vendredi prochain 19h", PARIS, (2026, 11, 27, 19, 0)),
        ("prochain vendredi à 19h", PARIS, (2026, 11, 27, 19, 0)),
        ("friday 7pm", NEW_YORK, (2026, 11, 27, 19, 0)),
        ("mercredi 18h", PARIS, (2026, 11, 25, 18, 0)),  # today is Wednesday, 18:00 is ahead
        ("wednesday 6pm", PARIS, (2026, 11, 25, 18, 0)),
        ("mercredi 16h", PARIS, (2026, 12, 2, 16, 0)),  # 16:00 has passed today: next week
        ("wednesday 10:00", NEW_YORK, (2026, 12, 2, 10, 0)),
        ("samedi 12 déc. 20h", PARIS, (2026, 12, 12, 20, 0)),  # a named date wins over the weekday rule
        # dates
        ("2026-12-01 18:30", PARIS, (2026, 12, 1, 18, 30)),
        ("2026-12-01T18:30", PARIS, (2026, 12, 1, 18, 30)),
        ("2026-12-01 18:30", NEW_YORK, (2026, 12, 1, 18, 30)),
        ("2026-12-01 18:30", KOLKATA, (2026, 12, 1, 18, 30)),
        ("1/12 18h30", PARIS, (2026, 12, 1, 18, 30)),
        ("1/12 18:30", KOLKATA, (2026, 12, 1, 18, 30)),  # day first, except where month first is written too
        ("01/12/2026 18:30", PARIS, (2026, 12, 1, 18, 30)),
        ("le 1/12 à 18h30", PARIS, (2026, 12, 1, 18, 30)),
        ("1er déc. 18h30", PARIS, (2026, 12, 1, 18, 30)),
        ("Dec 1 6:30pm", PARIS, (2026, 12, 1, 18, 30)),
        ("December 1st 6:30pm", NEW_YORK, (2026, 12, 1, 18, 30)),
        ("12 déc. 20h", PARIS, (2026, 12, 12, 20, 0)),
        ("le 12 décembre à 20h30", KOLKATA, (2026, 12, 12, 20, 30)),
        ("3 janvier 2027 9h", PARIS, (2027, 1, 3, 9, 0)),
        ("Jan 3 9am", NEW_YORK, (2027, 1, 3, 9, 0)),  # January has passed this year: next year's
        ("2027-07-01 20:00", PARIS, (2027, 7, 1, 20, 0)),  # summer time: CEST
    ],
)
def test_wall_times(text: str, zone: str, expected: tuple[int, ...]) -> None:
    check(parse(text, zone), zone, wall(zone, *expected))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("samedi 18:30", (2026, 11, 28, 18, 30)),  # today, still ahead
        ("saturday 6pm", (2026, 11, 28, 18, 0)),
        ("samedi 10h", (2026, 12, 5, 10, 0)),  # today's has passed: never a past Saturday
        ("saturday 9am", (2026, 12, 5, 9, 0)),
        ("next saturday 18:00", (2026, 12, 5, 18, 0)),  # "next" never means today
        ("samedi prochain 18h", (2026, 12, 5, 18, 0)),
        ("dimanche 10h", (2026, 11, 29, 10, 0)),
    ],
)
def test_weekday_when_today_is_that_day(text: str, expected: tuple[int, ...]) -> None:
    check(parse(text, PARIS, SATURDAY), PARIS, wall(PARIS, *expected))


# ------------------------------------------------------------------------------------------- relative


@pytest.mark.parametrize(
    ("text", "delta"),
    [
        ("in 2 hours", timedelta(hours=2)),
        ("in 45 minutes", timedelta(minutes=45)),
        ("in 2h", timedelta(hours=2)),
        ("in 1h30", timedelta(hours=1, minutes=30)),
        ("in an hour", timedelta(hours=1)),
        ("in 90 min", timedelta(minutes=90)),
        ("2 hours from now", timedelta(hours=2)),
        ("in 2 days", timedelta(days=2)),
        ("dans 2 heures", timedelta(hours=2)),
        ("dans 45 minutes", timedelta(minutes=45)),
        ("dans 2h", timedelta(hours=2)),
        ("dans 1h30", timedelta(hours=1, minutes=30)),
        ("dans une heure", timedelta(hours=1)),
        ("d'ici 2 heures", timedelta(hours=2)),
        ("dans 3 jours", timedelta(days=3)),
    ],
)
@pytest.mark.parametrize("zone", [PARIS, NEW_YORK, KOLKATA])
def test_relative_durations_are_exact(text: str, delta: timedelta, zone: str) -> None:
    parsed = parse(text, zone)
    assert parsed.at == NOW + delta
    assert parsed.tz == zone and parsed.local.astimezone(UTC) == parsed.at


@pytest.mark.parametrize(
    ("text", "zone", "now", "delta"),
    [
        # 01:30 CET, clocks jump to 03:00 at 02:00: an hour later is 03:30 CEST, not 02:30 (which is no time)
        ("in 1 hour", PARIS, datetime(2027, 3, 28, 0, 30, tzinfo=UTC), timedelta(hours=1)),
        ("dans 2 heures", PARIS, datetime(2027, 3, 28, 0, 30, tzinfo=UTC), timedelta(hours=2)),
        # 01:30 EDT, the clocks go back at 02:00: one hour later is 01:30 EST
        ("in 1 hour", NEW_YORK, datetime(2027, 11, 7, 5, 30, tzinfo=UTC), timedelta(hours=1)),
    ],
)
def test_relative_durations_across_dst(text: str, zone: str, now: datetime, delta: timedelta) -> None:
    parsed = parse(text, zone, now)
    assert parsed.at == now + delta
    assert parsed.local.utcoffset() != now.astimezone(ZoneInfo(zone)).utcoffset()


def test_relative_with_a_clock_time_is_a_wall_time() -> None:
    check(parse("dans 2 jours à 20h"), PARIS, wall(PARIS, 2026, 11, 27, 20, 0))
    check(parse("in 2 days at 8pm", NEW_YORK), NEW_YORK, wall(NEW_YORK, 2026, 11, 27, 20, 0))


def test_now_may_be_given_in_any_zone() -> None:
    same = NOW.astimezone(ZoneInfo("Pacific/Auckland"))
    assert parse("tomorrow 20:00", PARIS, same) == parse("tomorrow 20:00", PARIS, NOW)
    assert parse("in 2 hours", PARIS, same).at == NOW + timedelta(hours=2)


# ---------------------------------------------------------------------------------------------- zones


@pytest.mark.parametrize(
    ("text", "default", "zone", "expected"),
    [
        ("2026-12-01 18:30 Europe/Paris", NEW_YORK, PARIS, (2026, 12, 1, 18, 30)),
        ("Europe/Paris 2026-12-01 18:30", NEW_YORK, PARIS, (2026, 12, 1, 18, 30)),
        ("2026-12-01 18:30 UTC", PARIS, "UTC", (2026, 12, 1, 18, 30)),
        ("UTC 2026-12-01 18:30", KOLKATA, "UTC", (2026, 12, 1, 18, 30)),
        ("demain 20h Asia/Kolkata", PARIS, KOLKATA, (2026, 11, 26, 20, 0)),
        ("tomorrow 8pm america/new_york", PARIS, NEW_YORK, (2026, 11, 26, 20, 0)),  # any case
        ("America/New_York samedi 18h30", KOLKATA, NEW_YORK, (2026, 11, 28, 18, 30)),
        ("20:00 Asia/Kolkata", PARIS, KOLKATA, (2026, 11, 26, 20, 0)),  # 20:00 has passed in Kolkata
    ],
)
def test_zone_in_the_text_overrides_the_default(
    text: str, default: str, zone: str, expected: tuple[int, ...]
) -> None:
    check(parse(text, default), zone, wall(zone, *expected))


@pytest.mark.parametrize(
    ("text", "default", "at"),
    [
        ("2026-12-01T18:30:00+01:00", PARIS, datetime(2026, 12, 1, 17, 30, tzinfo=UTC)),
        ("2026-12-01T18:30:00+01:00", NEW_YORK, datetime(2026, 12, 1, 17, 30, tzinfo=UTC)),
        ("2026-12-01T17:30:00Z", KOLKATA, datetime(2026, 12, 1, 17, 30, tzinfo=UTC)),
        ("2026-12-01T23:00+05:30", PARIS, datetime(2026, 12, 1, 17, 30, tzinfo=UTC)),
        ("2026-12-01 18:30 +01:00", NEW_YORK, datetime(2026, 12, 1, 17, 30, tzinfo=UTC)),
        ("tomorrow 20:00 +05:30", PARIS, datetime(2026, 11, 26, 14, 30, tzinfo=UTC)),
        ("tomorrow 20:00 UTC+2", PARIS, datetime(2026, 11, 26, 18, 0, tzinfo=UTC)),
        ("demain 20h CET", NEW_YORK, datetime(2026, 11, 26, 19, 0, tzinfo=UTC)),
        ("tomorrow 8pm EST", PARIS, datetime(2026, 11, 27, 1, 0, tzinfo=UTC)),
        ("tomorrow 8pm PST", KOLKATA, datetime(2026, 11, 27, 4, 0, tzinfo=UTC)),
        ("2026-12-01 18:30 Z", NEW_YORK, datetime(2026, 12, 1, 18, 30, tzinfo=UTC)),
        ("tomorrow 20:00 IST", KOLKATA, datetime(2026, 11, 26, 14, 30, tzinfo=UTC)),  # India's IST, not Irish
    ],
)
def test_explicit_offsets_are_exact_instants_shown_in_the_zone(text: str, default: str, at: datetime) -> None:
    parsed = parse(text, default)
    assert parsed.at == at
    assert parsed.tz == default
    assert parsed.local.astimezone(UTC) == at and parsed.local.tzinfo == ZoneInfo(default)


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("Europe/Paris", PARIS),
        ("europe/paris", PARIS),
        (" Asia/Kolkata ", KOLKATA),
        ("UTC", "UTC"),
        ("utc", "UTC"),
    ],
)
def test_check_zone(name: str, canonical: str) -> None:
    assert check_zone(name) == canonical


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "Paris", "../../etc/passwd", "Europe/Pariss"])
def test_check_zone_rejects(name: str) -> None:
    with pytest.raises(InvalidTime) as info:
        check_zone(name)
    assert (info.value.key, info.value.params) == ("time.unknown_zone", {"zone": name})


@pytest.mark.parametrize(
    ("text", "zone"),
    [("2026-12-01 18:30 Mars/Olympus", "Mars/Olympus"), ("Mars/Olympus demain 20h", "Mars/Olympus")],
)
def test_unknown_zone_in_the_text(text: str, zone: str) -> None:
    e = error(text)
    assert (e.key, e.params) == ("time.unknown_zone", {"zone": zone})


def test_unknown_default_zone() -> None:
    e = error("tomorrow 20:00", "Mars/Olympus")
    assert (e.key, e.params) == ("time.unknown_zone", {"zone": "Mars/Olympus"})


# ------------------------------------------------------------------------------------------------ DST


@pytest.mark.parametrize(
    ("text", "zone", "local", "alternatives"),
    [
        (
            "2027-03-28 02:30",
            PARIS,
            "2027-03-28 02:30",
            ["2027-03-28 01:30 CET (UTC+01:00)", "2027-03-28 03:30 CEST (UTC+02:00)"],
        ),
        (
            "28/03/2027 2h30",
            PARIS,
            "2027-03-28 02:30",
            ["2027-03-28 01:30 CET (UTC+01:00)", "2027-03-28 03:30 CEST (UTC+02:00)"],
        ),
        (
            "2027-03-14 02:30",
            NEW_YORK,
            "2027-03-14 02:30",
            ["2027-03-14 01:30 EST (UTC-05:00)", "2027-03-14 03:30 EDT (UTC-04:00)"],
        ),
    ],
)
def test_nonexistent_wall_time(text: str, zone: str, local: str, alternatives: list[str]) -> None:
    e = error(text, zone)
    assert e.key == "time.nonexistent"
    assert e.params == {"local": local, "zone": zone, "alternatives": alternatives}


@pytest.mark.parametrize(
    ("text", "zone", "local", "alternatives"),
    [
        (
            "2027-10-31 02:30",
            PARIS,
            "2027-10-31 02:30",
            ["2027-10-31 02:30 CEST (UTC+02:00)", "2027-10-31 02:30 CET (UTC+01:00)"],
        ),
        (
            "31/10/2027 2h30",
            PARIS,
            "2027-10-31 02:30",
            ["2027-10-31 02:30 CEST (UTC+02:00)", "2027-10-31 02:30 CET (UTC+01:00)"],
        ),
        (
            "2027-11-07 01:30",
            NEW_YORK,
            "2027-11-07 01:30",
            ["2027-11-07 01:30 EDT (UTC-04:00)", "2027-11-07 01:30 EST (UTC-05:00)"],
        ),
        (
            "Nov 7 2027 1:30am",
            NEW_YORK,
            "2027-11-07 01:30",
            ["2027-11-07 01:30 EDT (UTC-04:00)", "2027-11-07 01:30 EST (UTC-05:00)"],
        ),
    ],
)
def test_ambiguous_wall_time(text: str, zone: str, local: str, alternatives: list[str]) -> None:
    e = error(text, zone)
    assert e.key == "time.ambiguous"
    assert e.params == {"local": local, "zone": zone, "alternatives": alternatives}


@pytest.mark.parametrize(
    ("text", "zone", "at"),
    [
        ("2027-10-31 02:30 +02:00", PARIS, datetime(2027, 10, 31, 0, 30, tzinfo=UTC)),
        ("2027-10-31 02:30 CEST", PARIS, datetime(2027, 10, 31, 0, 30, tzinfo=UTC)),
        ("2027-10-31 02:30 +01:00", PARIS, datetime(2027, 10, 31, 1, 30, tzinfo=UTC)),
        ("2027-10-31 02:30 CET", PARIS, datetime(2027, 10, 31, 1, 30, tzinfo=UTC)),
        ("2027-10-31T02:30:00+01:00", PARIS, datetime(2027, 10, 31, 1, 30, tzinfo=UTC)),
        ("31/10/2027 2h30 CEST", PARIS, datetime(2027, 10, 31, 0, 30, tzinfo=UTC)),
        ("2027-10-31 02:30 CET Europe/Paris", NEW_YORK, datetime(2027, 10, 31, 1, 30, tzinfo=UTC)),
        ("2027-11-07 01:30 -04:00", NEW_YORK, datetime(2027, 11, 7, 5, 30, tzinfo=UTC)),
        ("2027-11-07 01:30 EDT", NEW_YORK, datetime(2027, 11, 7, 5, 30, tzinfo=UTC)),
        ("2027-11-07 01:30 -05:00", NEW_YORK, datetime(2027, 11, 7, 6, 30, tzinfo=UTC)),
        ("2027-11-07 01:30 EST", NEW_YORK, datetime(2027, 11, 7, 6, 30, tzinfo=UTC)),
    ],
)
def test_ambiguity_resolved_by_offset_or_abbreviation(text: str, zone: str, at: datetime) -> None:
    parsed = parse(text, zone)
    assert parsed.at == at
    assert parsed.local.astimezone(UTC) == at
    assert parsed.local.strftime("%H:%M") == ("01:30" if parsed.tz == NEW_YORK else "02:30")


def test_the_suggested_alternatives_parse() -> None:
    """What the error suggests, once its "(UTC...)" note is dropped, is accepted as is."""
    for text, zone in [
        ("2027-10-31 02:30", PARIS),
        ("2027-03-28 02:30", PARIS),
        ("2027-11-07 01:30", NEW_YORK),
    ]:
        for alternative in error(text, zone).params["alternatives"]:
            parsed = parse(alternative.split(" (")[0], zone)
            assert format_local(parsed.at, zone, "en").endswith(alternative.split(" ")[2])


def test_abbreviations_must_be_capitals() -> None:
    """ "Cet" is French for "this": a title word, not Central European Time."""
    assert error("2027-10-31 02:30 cet").key == "time.unreadable"


# --------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "text",
    [
        "asdf qwer",
        "gibberish",
        "",
        "   ",
        "Weekly AMA",
        "x" * 200,
    ],
)
def test_unreadable(text: str) -> None:
    e = error(text)
    assert (e.key, e.params) == ("time.unreadable", {"text": text, "example": "tomorrow 20:00"})


@pytest.mark.parametrize(
    ("text", "key", "params"),
    [
        # the user typed a date or a time: say what is wrong with it, not "add a time"
        ("31/02 20h", "time.bad_date", {"date": "31/02"}),
        ("31/02/2027 20:00", "time.bad_date", {"date": "31/02/2027"}),
        ("32/12 20:00", "time.bad_date", {"date": "32/12"}),
        ("Feb 30 8pm", "time.bad_date", {"date": "Feb 30"}),
        ("tomorrow 25:00", "time.bad_clock", {"time": "25:00"}),
        ("tomorrow 20:75", "time.bad_clock", {"time": "20:75"}),
        ("tomorrow 13pm", "time.bad_clock", {"time": "13pm"}),
        ("demain 25h", "time.bad_clock", {"time": "25h"}),
    ],
)
def test_a_wrong_date_or_clock_time_says_what_is_wrong(text: str, key: str, params: dict[str, str]) -> None:
    e = error(text)
    assert (e.key, e.params) == (key, params)


@pytest.mark.parametrize("zone", [NEW_YORK, "America/Toronto", "America/Los_Angeles"])
def test_day_or_month_first_is_asked_where_both_are_written(zone: str) -> None:
    """1/12 is the 1st of December in Paris, but January 12th for most people in New York: never guessed."""
    e = error("1/12 18:30", zone)
    assert e.key == "time.which_date"
    assert e.params == {"text": "1/12", "choices": ["Tue 1 Dec 2026", "Tue 12 Jan 2027"]}
    check(parse("12/24 18:30", zone), zone, wall(zone, 2026, 12, 24, 18, 30))  # no other reading
    check(parse("24/12 18:30", zone), zone, wall(zone, 2026, 12, 24, 18, 30))


@pytest.mark.parametrize(
    "text",
    [
        "tomorrow",
        "demain",
        "samedi",
        "saturday",
        "Dec 1",
        "1/12",
        "12 déc.",
        "2026-12-01",
        "ce soir",
        "tonight",
    ],
)
def test_a_date_without_a_time_is_refused(text: str) -> None:
    e = error(text)
    assert (e.key, e.params) == ("time.missing_time", {"text": text})


def test_params_are_plain_and_render_in_both_languages() -> None:
    from core.texts import t

    errors = [
        error("asdf"),
        error("tomorrow"),
        error("2026-12-01 18:30 Mars/Olympus"),
        error("2027-03-28 02:30"),
        error("2027-10-31 02:30"),
    ]
    for e in errors:
        for value in e.params.values():
            assert isinstance(value, str) or (
                isinstance(value, list) and all(isinstance(v, str) for v in value)
            )
        for locale in ("en", "fr"):
            assert "{" not in t(locale, e.key, **e.params)


def test_now_must_be_aware() -> None:
    with pytest.raises(ValueError):
        parse_when("tomorrow 20:00", now=NOW.replace(tzinfo=None), tz=PARIS)


# -------------------------------------------------------------------------------------------- splitting


@pytest.mark.parametrize(
    ("text", "expected", "title"),
    [
        ("tomorrow 20:00 Weekly AMA", (2026, 11, 26, 20, 0), "Weekly AMA"),
        ("demain 20h Réunion mensuelle", (2026, 11, 26, 20, 0), "Réunion mensuelle"),
        ("demain à 20h30 Apéro  du   club", (2026, 11, 26, 20, 30), "Apéro du club"),
        ("ce soir 21h Apéro", (2026, 11, 25, 21, 0), "Apéro"),
        ("samedi 18:30 10 ans du club", (2026, 11, 28, 18, 30), "10 ans du club"),
        ("next friday 19:00 Town hall", (2026, 11, 27, 19, 0), "Town hall"),
        ("Dec 1 6:30pm Launch", (2026, 12, 1, 18, 30), "Launch"),
        ("12 déc. 20h Noël", (2026, 12, 12, 20, 0), "Noël"),
        ("2026-12-01 18:30 Europe/Paris Launch party", (2026, 12, 1, 18, 30), "Launch party"),
        ("Europe/Paris tomorrow 20:00 AMA", (2026, 11, 26, 20, 0), "AMA"),
        ("tomorrow 20:00 at the pub", (2026, 11, 26, 20, 0), "at the pub"),
        ("tomorrow 20:00 2 speakers", (2026, 11, 26, 20, 0), "2 speakers"),
        ("tomorrow 8pm May meetup", (2026, 11, 26, 20, 0), "May meetup"),
        ("tomorrow 20:00 Sat night fever", (2026, 11, 26, 20, 0), "Sat night fever"),
        ("demain 20h Cet événement", (2026, 11, 26, 20, 0), "Cet événement"),
        ("tomorrow 20:00 ART exhibition", (2026, 11, 26, 20, 0), "ART exhibition"),  # not Argentina Time
        ("tomorrow 20:00 cet night", (2026, 11, 26, 20, 0), "cet night"),
        # title first, with a separator
        ("Weekly AMA | tomorrow 20:00", (2026, 11, 26, 20, 0), "Weekly AMA"),
        ("Weekly AMA|tomorrow 20:00", (2026, 11, 26, 20, 0), "Weekly AMA"),
        ("Weekly AMA @ tomorrow 20:00", (2026, 11, 26, 20, 0), "Weekly AMA"),
        ("AMA hebdo @ demain 20h", (2026, 11, 26, 20, 0), "AMA hebdo"),
        ("Q&A @alice | samedi 18h30", (2026, 11, 28, 18, 30), "Q&A @alice"),
        ("tomorrow 20:00 | Weekly AMA", (2026, 11, 26, 20, 0), "Weekly AMA"),
    ],
)
def test_split_when_and_title(text: str, expected: tuple[int, ...], title: str) -> None:
    parsed, rest = split_when_and_title(text, now=NOW, tz=PARIS)
    check(parsed, PARIS, wall(PARIS, *expected))
    assert rest == title


@pytest.mark.parametrize(
    ("text", "zone", "delta", "title"),
    [
        ("in 2 hours Quick sync", NEW_YORK, timedelta(hours=2), "Quick sync"),
        ("dans 2 heures Point rapide", KOLKATA, timedelta(hours=2), "Point rapide"),
        ("in 45 minutes Standup", PARIS, timedelta(minutes=45), "Standup"),
    ],
)
def test_split_relative(text: str, zone: str, delta: timedelta, title: str) -> None:
    parsed, rest = split_when_and_title(text, now=NOW, tz=zone)
    assert (parsed.at, parsed.tz, rest) == (NOW + delta, zone, title)


@pytest.mark.parametrize(
    ("text", "key", "params"),
    [
        ("Weekly AMA", "time.unreadable", {"text": "Weekly AMA", "example": "tomorrow 20:00"}),
        ("", "time.unreadable", {"text": "", "example": "tomorrow 20:00"}),
        (
            "Weekly AMA | someday",
            "time.unreadable",
            {"text": "Weekly AMA | someday", "example": "tomorrow 20:00"},
        ),
        ("tomorrow Weekly AMA", "time.missing_time", {"text": "tomorrow"}),
        ("tomorrow 20:00 Europe/Pariss AMA", "time.unknown_zone", {"zone": "Europe/Pariss"}),
        (
            "2027-03-28 02:30 Night owls",
            "time.nonexistent",
            {
                "local": "2027-03-28 02:30",
                "zone": PARIS,
                "alternatives": ["2027-03-28 01:30 CET (UTC+01:00)", "2027-03-28 03:30 CEST (UTC+02:00)"],
            },
        ),
        ("Night owls | 2027-10-31 02:30", "time.ambiguous", None),
    ],
)
def test_split_errors(text: str, key: str, params: dict[str, object] | None) -> None:
    with pytest.raises(InvalidTime) as info:
        split_when_and_title(text, now=NOW, tz=PARIS)
    assert info.value.key == key
    if params is not None:
        assert info.value.params == params


@pytest.mark.parametrize(
    ("text", "when"),
    [
        ("tomorrow 20:00", "Thu 26 Nov 2026, 20:00 CET"),
        ("in 3 hours", "Wed 25 Nov 2026, 20:00 CET"),
        ("demain 20h |", "Thu 26 Nov 2026, 20:00 CET"),
    ],
)
def test_a_time_without_a_title_is_refused_showing_the_time(text: str, when: str) -> None:
    """Reading a word of the title into the time would have emptied it ("in 3 hours Second"): a time alone is
    refused, and the refusal shows what was understood."""
    with pytest.raises(MissingTitle) as info:
        split_when_and_title(text, now=NOW, tz=PARIS)
    assert (info.value.key, info.value.params) == ("title.missing", {"when": when})
    assert isinstance(info.value, InvalidTime) and isinstance(info.value, InvalidTitle)


def test_split_resolves_ambiguity_with_an_abbreviation() -> None:
    parsed, title = split_when_and_title("2027-10-31 02:30 CET Night owls", now=NOW, tz=PARIS)
    assert (parsed.at, title) == (datetime(2027, 10, 31, 1, 30, tzinfo=UTC), "Night owls")


# ---------------------------------------------------------------------------------------------- format


@pytest.mark.parametrize(
    ("at", "zone", "locale", "shown"),
    [
        (datetime(2026, 12, 1, 17, 30, tzinfo=UTC), PARIS, "en", "Tue 1 Dec 2026, 18:30 CET"),
        (datetime(2026, 12, 1, 17, 30, tzinfo=UTC), PARIS, "fr", "mar. 1 déc. 2026, 18:30 CET"),
        (datetime(2026, 12, 1, 17, 30, tzinfo=UTC), PARIS, "fr-CA", "mar. 1 déc. 2026, 18:30 CET"),
        (datetime(2026, 12, 1, 17, 30, tzinfo=UTC), PARIS, "en_US", "Tue 1 Dec 2026, 18:30 CET"),
        (datetime(2026, 12, 1, 17, 30, tzinfo=UTC), PARIS, "de", "Tue 1 Dec 2026, 18:30 CET"),
        (datetime(2027, 7, 14, 18, 0, tzinfo=UTC), PARIS, "fr", "mer. 14 juil. 2027, 20:00 CEST"),
        (datetime(2027, 2, 7, 23, 45, tzinfo=UTC), NEW_YORK, "en", "Sun 7 Feb 2027, 18:45 EST"),
        (datetime(2027, 8, 1, 12, 0, tzinfo=UTC), NEW_YORK, "fr", "dim. 1 août 2027, 08:00 EDT"),
        (datetime(2026, 11, 25, 16, 0, tzinfo=UTC), KOLKATA, "en", "Wed 25 Nov 2026, 21:30 IST"),
        (datetime(2026, 11, 25, 16, 0, tzinfo=UTC), KOLKATA, "fr", "mer. 25 nov. 2026, 21:30 IST"),
        (datetime(2026, 11, 25, 16, 0, tzinfo=UTC), "UTC", "en", "Wed 25 Nov 2026, 16:00 UTC"),
        (datetime(2026, 11, 25, 16, 0, tzinfo=UTC), "Asia/Dubai", "en", "Wed 25 Nov 2026, 20:00 UTC+04:00"),
        (datetime(2027, 1, 3, 8, 0, tzinfo=UTC), PARIS, "fr", "dim. 3 janv. 2027, 09:00 CET"),
    ],
)
def test_format_local(at: datetime, zone: str, locale: str, shown: str) -> None:
    assert format_local(at, zone, locale) == shown


def test_format_local_round_trips_through_parse_when() -> None:
    parsed = parse("demain 20h")
    assert format_local(parsed.at, parsed.tz, "fr") == "jeu. 26 nov. 2026, 20:00 CET"
    assert format_local(parsed.at, parsed.tz, "en") == "Thu 26 Nov 2026, 20:00 CET"


# ------------------------------------------------------------------------------------------------ misc


def test_importing_does_no_work() -> None:
    """Importing core.timeparse reads no zone table (they load on first parse); dateparser, which it no longer
    uses, is not imported at all."""
    root = Path(__file__).resolve().parents[2]
    code = (
        "import sys, core.timeparse as tp; assert 'dateparser' not in sys.modules; "
        "assert tp._zone_names.cache_info().currsize == 0, 'zone names read at import time'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True, timeout=30)


@pytest.mark.parametrize(
    ("text", "zone"),
    [
        ("demain 20h", PARIS),
        ("in 2 hours", NEW_YORK),
        ("2027-10-31 02:30 CET", PARIS),
        ("2027-11-07 01:30 EDT", NEW_YORK),
        ("tonight 11pm", KOLKATA),
        ("2026-12-01 18:30 UTC", PARIS),
    ],
)
def test_local_isoformat_round_trips(text: str, zone: str) -> None:
    """Adapters settle the time once, then hand the service ``parsed.local.isoformat()`` and ``parsed.tz``."""
    parsed = parse(text, zone)
    assert parse_when(parsed.local.isoformat(), now=NOW, tz=parsed.tz) == parsed


# ----------------------------------------------------------------------------- time first, then a day word


@pytest.mark.parametrize(
    ("text", "expected", "title"),
    [
        ("8pm tomorrow AMA", (2026, 11, 26, 20, 0), "AMA"),
        ("20h vendredi Apéro", (2026, 11, 27, 20, 0), "Apéro"),
        ("7pm Friday Game night", (2026, 11, 27, 19, 0), "Game night"),  # English weekdays are capitalised
        ("20:00 Today in AI", (2026, 11, 25, 20, 0), "Today in AI"),  # "Today" would change nothing
        ("8pm Tonight Show watch party", (2026, 11, 25, 20, 0), "Tonight Show watch party"),
    ],
)
def test_a_day_after_the_clock_time(text: str, expected: tuple[int, ...], title: str) -> None:
    parsed, rest = split_when_and_title(text, now=NOW, tz=PARIS)
    check(parsed, PARIS, wall(PARIS, *expected))
    assert rest == title


@pytest.mark.parametrize(
    "text",
    [
        "8pm Friday Night Live",  # a name, or Friday night?
        "7pm Sunday Morning Coffee",
        "20h Vendredi Apéro",  # a French weekday is capitalised only at the head of a title
        "8pm Tomorrow Land",
        "8pm Weekly AMA tomorrow",  # the day at the end: whose is it?
        "Friday Night Live tomorrow 9pm",
    ],
)
def test_a_day_word_that_may_begin_the_title_is_asked_about(text: str) -> None:
    with pytest.raises(InvalidTime) as info:
        split_when_and_title(text, now=NOW, tz=PARIS)
    assert info.value.key == "time.unclear_split"


@pytest.mark.parametrize(
    "text",
    [
        "tomorrow 8pm ET / 5pm PT AMA",
        "tomorrow 8pm ET/5pm PT AMA",
        "tomorrow 8pm EST, 5pm PST AMA",
        "tomorrow 8pm ET - 5pm PT AMA",
        "tomorrow 8pm EST (5pm PST) AMA",
        "tomorrow 20:00 UTC — 21:00 CET AMA",
    ],
)
def test_the_same_time_on_two_clocks_is_read_once(text: str) -> None:
    parsed, title = split_when_and_title(text, now=NOW, tz=PARIS)
    assert (parsed.at.hour, title) == (20 if "UTC" in text else 1, "AMA")


def test_two_clocks_that_disagree_are_asked_about() -> None:
    with pytest.raises(InvalidTime) as info:
        split_when_and_title("tomorrow 8pm EST, 6pm PST AMA", now=NOW, tz=PARIS)
    assert info.value.params == {
        "first": "Fri 27 Nov 2026, 02:00 CET",
        "second": "Fri 27 Nov 2026, 03:00 CET",
    }
