"""The words of a start time in English and French — everything core.timeparse recognises, and nothing else.

A closed vocabulary on purpose: a word that is not listed here is a word of the title. Typos are listed one by
one (no fuzzy matching: "Sundae social" must never become a Sunday). Keys are lower case, with the
typographic apostrophe already replaced by "'".
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import timedelta
from enum import Enum
from typing import Any


class Period(Enum):
    MORNING = "morning"
    AFTERNOON = "afternoon"
    EVENING = "evening"
    NIGHT = "night"


_H = timedelta(hours=1)

# ------------------------------------------------------------------------------------------- per language

_WEEKDAYS = {
    "en": {
        "monday": 0,
        "tuesday": 1,
        "wednesday": 2,
        "wensday": 2,
        "wednsday": 2,
        "wedensday": 2,
        "thursday": 3,
        "thrusday": 3,
        "thurday": 3,
        "friday": 4,
        "firday": 4,
        "saturday": 5,
        "saterday": 5,
        "satruday": 5,
        "sunday": 6,
    },
    "fr": {
        "lundi": 0,
        "mardi": 1,
        "mercredi": 2,
        "mecredi": 2,
        "jeudi": 3,
        "vendredi": 4,
        "samedi": 5,
        "dimanche": 6,
    },
}
# Abbreviations are also ordinary words ("sat", "sun", "sam", "jeu", "mar"): they are read as days only at the
# head of a time phrase or before a date or clock time, never as a trailing word after a complete time.
_WEEKDAY_ABBREVIATIONS = {
    "en": {
        "mon": 0,
        "tue": 1,
        "tues": 1,
        "wed": 2,
        "weds": 2,
        "thu": 3,
        "thur": 3,
        "thurs": 3,
        "fri": 4,
        "sat": 5,
        "sun": 6,
    },
    "fr": {"lun": 0, "mar": 1, "mer": 2, "jeu": 3, "ven": 4, "sam": 5, "dim": 6},
}
_MONTHS = {
    "en": {
        "january": 1,
        "jan": 1,
        "february": 2,
        "feb": 2,
        "march": 3,
        "mar": 3,
        "april": 4,
        "apr": 4,
        "may": 5,
        "june": 6,
        "jun": 6,
        "july": 7,
        "jul": 7,
        "august": 8,
        "aug": 8,
        "september": 9,
        "sep": 9,
        "sept": 9,
        "october": 10,
        "oct": 10,
        "november": 11,
        "nov": 11,
        "december": 12,
        "dec": 12,
    },
    "fr": {
        "janvier": 1,
        "janv": 1,
        "jan": 1,
        "février": 2,
        "fevrier": 2,
        "févr": 2,
        "fevr": 2,
        "fév": 2,
        "fev": 2,
        "mars": 3,
        "avril": 4,
        "avr": 4,
        "mai": 5,
        "juin": 6,
        "juillet": 7,
        "juil": 7,
        "août": 8,
        "aout": 8,
        "septembre": 9,
        "sept": 9,
        "octobre": 10,
        "oct": 10,
        "novembre": 11,
        "nov": 11,
        "décembre": 12,
        "decembre": 12,
        "déc": 12,
        "dec": 12,
    },
}
# one word -> (days from today, the part of the day it implies)
_DAY_WORDS: dict[str, dict[str, tuple[int, Period | None]]] = {
    "en": {
        "today": (0, None),
        "tonight": (0, Period.EVENING),
        "tonite": (0, Period.EVENING),
        "tomorrow": (1, None),
        "tomorow": (1, None),
        "tommorow": (1, None),
        "tommorrow": (1, None),
        "tomorrw": (1, None),
        "tmrw": (1, None),
        "tmr": (1, None),
        "tmrow": (1, None),
        "tmw": (1, None),
        "yesterday": (-1, None),
    },
    "fr": {
        "aujourd'hui": (0, None),
        "aujourdhui": (0, None),
        "auj": (0, None),
        "ajd": (0, None),
        "demain": (1, None),
        "après-demain": (2, None),
        "apres-demain": (2, None),
        "hier": (-1, None),
    },
}
# several words -> (days from today, part of the day)
_DAY_PHRASES: dict[str, dict[tuple[str, ...], tuple[int, Period | None]]] = {
    "en": {
        ("the", "day", "after", "tomorrow"): (2, None),
        ("day", "after", "tomorrow"): (2, None),
        ("this", "morning"): (0, Period.MORNING),
        ("this", "afternoon"): (0, Period.AFTERNOON),
        ("this", "evening"): (0, Period.EVENING),
        ("this", "night"): (0, Period.NIGHT),
    },
    "fr": {
        ("après", "demain"): (2, None),
        ("apres", "demain"): (2, None),
        ("ce", "matin"): (0, Period.MORNING),
        ("cet", "après-midi"): (0, Period.AFTERNOON),
        ("cet", "apres-midi"): (0, Period.AFTERNOON),
        ("cet", "aprem"): (0, Period.AFTERNOON),
        ("cet", "aprèm"): (0, Period.AFTERNOON),
        ("ce", "soir"): (0, Period.EVENING),
        ("cette", "nuit"): (0, Period.NIGHT),
        ("aujourd", "hui"): (0, None),
    },
}
# a part of the day written right after a day ("tomorrow morning", "vendredi soir") or on its own
_PERIOD_WORDS = {
    "en": {
        "morning": Period.MORNING,
        "afternoon": Period.AFTERNOON,
        "evening": Period.EVENING,
        "night": Period.NIGHT,
    },
    "fr": {
        "matin": Period.MORNING,
        "après-midi": Period.AFTERNOON,
        "apres-midi": Period.AFTERNOON,
        "aprem": Period.AFTERNOON,
        "aprèm": Period.AFTERNOON,
        "soir": Period.EVENING,
        "soirée": Period.EVENING,
        "nuit": Period.NIGHT,
    },
}
# the same, in two words ("demain après midi")
_PERIOD_WORD_PHRASES: dict[str, dict[tuple[str, ...], Period]] = {
    "en": {},
    "fr": {("après", "midi"): Period.AFTERNOON, ("apres", "midi"): Period.AFTERNOON},
}
# a part of the day that only qualifies a clock time ("8 in the evening", "8h du soir")
_PERIOD_PHRASES: dict[str, dict[tuple[str, ...], Period]] = {
    "en": {
        ("in", "the", "morning"): Period.MORNING,
        ("in", "the", "afternoon"): Period.AFTERNOON,
        ("in", "the", "evening"): Period.EVENING,
        ("at", "night"): Period.NIGHT,
    },
    "fr": {
        ("du", "matin"): Period.MORNING,
        ("de", "l'après-midi"): Period.AFTERNOON,
        ("de", "l'apres-midi"): Period.AFTERNOON,
        ("de", "l'aprem"): Period.AFTERNOON,
        ("du", "soir"): Period.EVENING,
        ("le", "matin"): Period.MORNING,
        ("le", "soir"): Period.EVENING,
        ("dans", "la", "soirée"): Period.EVENING,
        ("dans", "la", "matinée"): Period.MORNING,
    },
}
_NEXT = {"en": {"next"}, "fr": {"prochain", "prochaine"}}
_THIS = {"en": {"this", "on"}, "fr": {"ce", "le"}}
_NEXT_WEEK: dict[str, set[tuple[str, ...]]] = {
    "en": {("next", "week")},
    "fr": {("de", "la", "semaine", "prochaine"), ("la", "semaine", "prochaine"), ("semaine", "prochaine")},
}
_NOON = {"en": {"noon", "midday", "mid-day"}, "fr": {"midi"}}
_MIDNIGHT = {"en": {"midnight"}, "fr": {"minuit"}}
_NOW: dict[str, set[tuple[str, ...]]] = {
    "en": {("now",), ("right", "now"), ("immediately",)},
    "fr": {("maintenant",), ("tout", "de", "suite"), ("immédiatement",)},
}
_VAGUE_ALONE = {
    "en": {"soon", "later", "asap"},
    "fr": {"bientôt", "bientot", "tantôt", "plus"},
}
_VAGUE_AMOUNTS: dict[str, set[tuple[str, ...]]] = {
    "en": {
        ("a", "few"),
        ("few",),
        ("a", "couple", "of"),
        ("a", "couple"),
        ("couple", "of"),
        ("several",),
        ("some",),
        ("a", "bit"),
        ("a", "while"),
        ("a", "little", "while"),
        ("a", "moment"),
    },
    "fr": {
        ("quelques",),
        ("un", "moment"),
        ("un", "peu"),
        ("peu", "de"),
        ("plusieurs",),
        ("une", "petite", "heure"),
        ("une", "bonne", "heure"),
        ("un", "petit", "moment"),
    },
}
_IN = {"en": {"in"}, "fr": {"dans", "d'ici"}}
_FROM_NOW: dict[str, set[tuple[str, ...]]] = {"en": {("from", "now")}, "fr": set()}
_AND = {"en": {"and", ","}, "fr": {"et", ","}}
# fillers: words between the parts of a time phrase that carry no meaning of their own
_FILLERS = {
    "en": {"at", "@", "on", ",", "around", "about", "~", "from", "starting", "by"},
    "fr": {"à", "@", ",", "vers", "~", "dès", "des"},
}
# "a 20h": the accent-less "à", only before a number
_FILLERS_BEFORE_NUMBER = {"en": set[str](), "fr": {"a"}}
_RANGE = {"en": {"-", "–", "to", "until", "till", "til"}, "fr": {"-", "–", "à", "a", "jusqu'à"}}
# after a clock time: "8pm sharp", "midi pile"
_CLOCK_SUFFIXES = {"en": {"sharp", "ish"}, "fr": {"pile", "précises", "precises", "précise", "precise"}}
_OCLOCK = {"en": {"o'clock", "oclock"}, "fr": set[str]()}
_HOUR_MARKS = {"en": set[str](), "fr": {"heure", "heures"}}
_HALF_QUARTER: dict[str, dict[tuple[str, ...], int]] = {
    # minutes added to (or, negative, taken from) the hour that follows / precedes
    "en": {
        ("half", "past"): 30,
        ("quarter", "past"): 15,
        ("a", "quarter", "past"): 15,
        ("quarter", "to"): -15,
        ("a", "quarter", "to"): -15,
    },
    "fr": {},
}
_FR_FRACTIONS: dict[str, dict[tuple[str, ...], int]] = {
    "en": {},
    "fr": {("et", "demie"): 30, ("et", "demi"): 30, ("et", "quart"): 15, ("moins", "le", "quart"): -15},
}
_NUMBER_WORDS = {
    "en": {
        "one": 1,
        "two": 2,
        "three": 3,
        "four": 4,
        "five": 5,
        "six": 6,
        "seven": 7,
        "eight": 8,
        "nine": 9,
        "ten": 10,
        "eleven": 11,
        "twelve": 12,
        "fifteen": 15,
        "twenty": 20,
        "thirty": 30,
        "forty": 40,
        "forty-five": 45,
        "fifty": 50,
        "sixty": 60,
        "ninety": 90,
    },
    "fr": {
        "un": 1,
        "une": 1,
        "deux": 2,
        "trois": 3,
        "quatre": 4,
        "cinq": 5,
        "six": 6,
        "sept": 7,
        "huit": 8,
        "neuf": 9,
        "dix": 10,
        "onze": 11,
        "douze": 12,
        "quinze": 15,
        "vingt": 20,
        "trente": 30,
        "quarante": 40,
        "quarante-cinq": 45,
        "cinquante": 50,
        "soixante": 60,
    },
}
_ARTICLES = {"en": {"a": 1, "an": 1, "one": 1}, "fr": {"un": 1, "une": 1}}
# duration units
_UNITS = {
    "en": {
        "second": "s",
        "seconds": "s",
        "sec": "s",
        "secs": "s",
        "minute": "m",
        "minutes": "m",
        "min": "m",
        "mins": "m",
        "hour": "h",
        "hours": "h",
        "hr": "h",
        "hrs": "h",
        "h": "h",
        "day": "d",
        "days": "d",
        "week": "w",
        "weeks": "w",
        "wk": "w",
        "wks": "w",
        "month": "M",
        "months": "M",
    },
    "fr": {
        "seconde": "s",
        "secondes": "s",
        "minute": "m",
        "minutes": "m",
        "min": "m",
        "mn": "m",
        "heure": "h",
        "heures": "h",
        "h": "h",
        "jour": "d",
        "jours": "d",
        "semaine": "w",
        "semaines": "w",
        "mois": "M",
    },
}
# units written glued to their number ("30m", "2d", "1h30m")
_GLUED_UNITS = {"en": {"m": "m", "s": "s", "d": "d", "w": "w"}, "fr": {"m": "m", "j": "d"}}
_HALF_AMOUNTS: dict[str, dict[tuple[str, ...], timedelta]] = {
    "en": {
        ("half", "an", "hour"): 0.5 * _H,
        ("half", "a", "hour"): 0.5 * _H,
        ("a", "half", "hour"): 0.5 * _H,
        ("half", "hour"): 0.5 * _H,
        ("a", "half-hour"): 0.5 * _H,
        ("a", "quarter", "of", "an", "hour"): 0.25 * _H,
        ("a", "quarter", "hour"): 0.25 * _H,
        ("quarter", "of", "an", "hour"): 0.25 * _H,
    },
    "fr": {
        ("une", "demi-heure"): 0.5 * _H,
        ("une", "demi", "heure"): 0.5 * _H,
        ("une", "demie", "heure"): 0.5 * _H,
        ("une", "demi-h"): 0.5 * _H,
        ("un", "quart", "d'heure"): 0.25 * _H,
        ("trois", "quarts", "d'heure"): 0.75 * _H,
    },
}
# after a count of hours: "an hour and a half", "une heure et quart" (minutes added)
_AND_A_PART: dict[str, dict[tuple[str, ...], int]] = {
    "en": {("and", "a", "half"): 30, ("and", "a", "quarter"): 15},
    "fr": {("et", "demie"): 30, ("et", "demi"): 30, ("et", "quart"): 15},
}
_ORDINAL_SUFFIXES = {"en": {"st", "nd", "rd", "th"}, "fr": {"er", "re", "e", "ème", "eme", "è"}}
_DAY_OF_MONTH_PREFIXES: dict[str, set[tuple[str, ...]]] = {
    "en": {("the",), ("on", "the")},
    "fr": {("le",)},
}
_OF = {"en": {"of"}, "fr": set[str]()}
_PREMIER = {"en": set[str](), "fr": {"premier"}}
# "<city> time" (en), "heure de <city>" (fr): a handful of spellings that differ from the IANA city names
_CITY_ALIASES = {
    "nyc": "America/New_York",
    "new york city": "America/New_York",
    "la": "America/Los_Angeles",
    "sf": "America/Los_Angeles",
    "san francisco": "America/Los_Angeles",
    "seattle": "America/Los_Angeles",
    "boston": "America/New_York",
    "washington": "America/New_York",
    "miami": "America/New_York",
    "atlanta": "America/New_York",
    "dallas": "America/Chicago",
    "austin": "America/Chicago",
    "houston": "America/Chicago",
    "montréal": "America/Toronto",
    "montreal": "America/Toronto",
    "québec": "America/Toronto",
    "quebec": "America/Toronto",
    "ottawa": "America/Toronto",
    "londres": "Europe/London",
    "bruxelles": "Europe/Brussels",
    "genève": "Europe/Zurich",
    "geneva": "Europe/Zurich",
    "moscou": "Europe/Moscow",
    "pékin": "Asia/Shanghai",
    "beijing": "Asia/Shanghai",
    "mumbai": "Asia/Kolkata",
    "delhi": "Asia/Kolkata",
    "bangalore": "Asia/Kolkata",
    "india": "Asia/Kolkata",
    "france": "Europe/Paris",
    "uk": "Europe/London",
    "lyon": "Europe/Paris",
    "marseille": "Europe/Paris",
    "toulouse": "Europe/Paris",
    "abidjan": "Africa/Abidjan",
    "dakar": "Africa/Dakar",
}
_TIME_WORD = {"en": {"time"}, "fr": set[str]()}
_HEURE_DE: dict[str, set[tuple[str, ...]]] = {
    "en": set(),
    "fr": {("heure", "de"), ("heure", "du"), ("heure", "d'")},
}
_HEURE_FRANCAISE: dict[str, dict[tuple[str, ...], str]] = {
    "en": {},
    "fr": {
        ("heure", "française"): "Europe/Paris",
        ("heure", "francaise"): "Europe/Paris",
        ("heure", "de", "l'est"): "America/New_York",
        ("heure", "du", "québec"): "America/Toronto",
    },
}
# Nouns that make the number before them a quantity, not the minutes of a time ("in 1 hour 30 people max",
# "20h 30 ans du club"): "30 ans" is an age, "30 min" a duration.
COUNT_NOUNS = frozenset(
    {
        "ans",
        "an",
        "years",
        "year",
        "yrs",
        "people",
        "persons",
        "personnes",
        "participants",
        "speakers",
        "guests",
        "invités",
        "invites",
        "questions",
        "tips",
        "things",
        "choses",
        "ways",
        "façons",
        "reasons",
        "raisons",
        "days",
        "jours",
        "weeks",
        "semaines",
        "months",
        "mois",
        "seconds",
        "secondes",
        "sec",
        "secs",
        "minutes",
        "minute",
        "min",
        "mins",
        "mn",
        "hours",
        "heures",
        "km",
        "miles",
        "%",
        "places",
        "songs",
        "chansons",
        "titres",
        "tracks",
        "episodes",
        "épisodes",
        "books",
        "livres",
        "films",
        "movies",
        "members",
        "membres",
        "friends",
        "amis",
        "ideas",
        "idées",
        "steps",
        "étapes",
        "rounds",
        "games",
        "parties",
        "degrees",
        "degrés",
        "°",
        "x",
    }
)

# ------------------------------------------------------------------------------------- zone abbreviations


@dataclass(frozen=True, slots=True)
class Abbreviation:
    """A zone abbreviation typed in capitals: its offset and the zone whose clocks it names."""

    offset: timedelta
    home: str  # the zone where it is in use (to check that it is in use on the date in question)
    doubtful: bool = False  # several zones use it, or it doubles as a common title word: never guessed


def _ab(hours: float, home: str, doubtful: bool = False) -> Abbreviation:
    return Abbreviation(timedelta(hours=hours), home, doubtful)


ABBREVIATIONS: dict[str, Abbreviation] = {
    "GMT": _ab(0, "UTC"),
    "UTC": _ab(0, "UTC"),
    "WET": _ab(0, "Europe/Lisbon"),
    "WEST": _ab(1, "Europe/Lisbon"),
    "CET": _ab(1, "Europe/Paris"),
    "CEST": _ab(2, "Europe/Paris"),
    "EET": _ab(2, "Europe/Athens"),
    "EEST": _ab(3, "Europe/Athens"),
    "EST": _ab(-5, "America/New_York"),
    "EDT": _ab(-4, "America/New_York"),
    "CDT": _ab(-5, "America/Chicago"),
    "MDT": _ab(-6, "America/Denver"),
    "MST": _ab(-7, "America/Denver"),
    "PST": _ab(-8, "America/Los_Angeles"),
    "PDT": _ab(-7, "America/Los_Angeles"),
    "AKST": _ab(-9, "America/Anchorage"),
    "AKDT": _ab(-8, "America/Anchorage"),
    "HST": _ab(-10, "Pacific/Honolulu"),
    "NST": _ab(-3.5, "America/St_Johns"),
    "NDT": _ab(-2.5, "America/St_Johns"),
    "ADT": _ab(-3, "America/Halifax"),
    "BRT": _ab(-3, "America/Sao_Paulo"),
    "SAST": _ab(2, "Africa/Johannesburg"),
    "PKT": _ab(5, "Asia/Karachi"),
    "WIB": _ab(7, "Asia/Jakarta"),
    "SGT": _ab(8, "Asia/Singapore"),
    "HKT": _ab(8, "Asia/Hong_Kong"),
    "AWST": _ab(8, "Australia/Perth"),
    "JST": _ab(9, "Asia/Tokyo"),
    "KST": _ab(9, "Asia/Seoul"),
    "ACST": _ab(9.5, "Australia/Adelaide"),
    "ACDT": _ab(10.5, "Australia/Adelaide"),
    "AEST": _ab(10, "Australia/Sydney"),
    "AEDT": _ab(11, "Australia/Sydney"),
    "NZST": _ab(12, "Pacific/Auckland"),
    "NZDT": _ab(13, "Pacific/Auckland"),
    # several meanings, or a common word in titles ("MSK meetup" is a Moscow meetup): only when the user's
    # own zone uses it, else the user is asked
    "CST": _ab(-6, "America/Chicago", doubtful=True),  # also China (+8) and Cuba (-5)
    "IST": _ab(5.5, "Asia/Kolkata", doubtful=True),  # also Ireland (+1) and Israel (+2)
    "BST": _ab(1, "Europe/London", doubtful=True),  # also Bangladesh (+6)
    "AST": _ab(-4, "America/Halifax", doubtful=True),  # also Arabia (+3)
    "MSK": _ab(3, "Europe/Moscow", doubtful=True),
}
# other readings, shown when asking which one was meant
ABBREVIATION_READINGS: dict[str, tuple[tuple[str, timedelta], ...]] = {
    "CST": (("America/Chicago", -6 * _H), ("Asia/Shanghai", 8 * _H), ("America/Havana", -5 * _H)),
    "IST": (("Asia/Kolkata", 5.5 * _H), ("Europe/Dublin", 1 * _H), ("Asia/Jerusalem", 2 * _H)),
    "BST": (("Europe/London", 1 * _H), ("Asia/Dhaka", 6 * _H)),
    "AST": (("America/Halifax", -4 * _H), ("Asia/Riyadh", 3 * _H)),
    "MSK": (("Europe/Moscow", 3 * _H),),
}
# a US region's time, whatever the season: ET is New York's clock, EST or EDT as the date has it
GENERIC_ZONES = {
    "ET": "America/New_York",
    "CT": "America/Chicago",
    "MT": "America/Denver",
    "PT": "America/Los_Angeles",
    "AKT": "America/Anchorage",
}
# "Eastern time", "Pacific Time": the region words, only with "time" after them (alone they are title words)
REGION_WORDS = {
    "eastern": "America/New_York",
    "central": "America/Chicago",
    "mountain": "America/Denver",
    "pacific": "America/Los_Angeles",
}

# --------------------------------------------------------------------------------------------- lexicon


@dataclass(frozen=True, slots=True)
class Lexicon:
    """The vocabulary of the languages asked for, merged."""

    weekdays: dict[str, int] = field(default_factory=dict)
    weekday_abbreviations: dict[str, int] = field(default_factory=dict)
    months: dict[str, int] = field(default_factory=dict)
    day_words: dict[str, tuple[int, Period | None]] = field(default_factory=dict)
    day_phrases: dict[tuple[str, ...], tuple[int, Period | None]] = field(default_factory=dict)
    period_words: dict[str, Period] = field(default_factory=dict)
    period_word_phrases: dict[tuple[str, ...], Period] = field(default_factory=dict)
    period_phrases: dict[tuple[str, ...], Period] = field(default_factory=dict)
    next_words: set[str] = field(default_factory=set)
    this_words: set[str] = field(default_factory=set)
    next_week: set[tuple[str, ...]] = field(default_factory=set)
    noon: set[str] = field(default_factory=set)
    midnight: set[str] = field(default_factory=set)
    now: set[tuple[str, ...]] = field(default_factory=set)
    vague_alone: set[str] = field(default_factory=set)
    vague_amounts: set[tuple[str, ...]] = field(default_factory=set)
    in_words: set[str] = field(default_factory=set)
    from_now: set[tuple[str, ...]] = field(default_factory=set)
    and_words: set[str] = field(default_factory=set)
    fillers: set[str] = field(default_factory=set)
    fillers_before_number: set[str] = field(default_factory=set)
    range_words: set[str] = field(default_factory=set)
    oclock: set[str] = field(default_factory=set)
    clock_suffixes: set[str] = field(default_factory=set)
    hour_marks: set[str] = field(default_factory=set)
    half_quarter: dict[tuple[str, ...], int] = field(default_factory=dict)
    fr_fractions: dict[tuple[str, ...], int] = field(default_factory=dict)
    number_words: dict[str, int] = field(default_factory=dict)
    articles: dict[str, int] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    glued_units: dict[str, str] = field(default_factory=dict)
    half_amounts: dict[tuple[str, ...], timedelta] = field(default_factory=dict)
    and_a_part: dict[tuple[str, ...], int] = field(default_factory=dict)
    ordinal_suffixes: set[str] = field(default_factory=set)
    day_of_month_prefixes: set[tuple[str, ...]] = field(default_factory=set)
    of: set[str] = field(default_factory=set)
    premier: set[str] = field(default_factory=set)
    time_word: set[str] = field(default_factory=set)
    heure_de: set[tuple[str, ...]] = field(default_factory=set)
    heure_francaise: dict[tuple[str, ...], str] = field(default_factory=dict)


_TABLES = (
    ("weekdays", _WEEKDAYS),
    ("weekday_abbreviations", _WEEKDAY_ABBREVIATIONS),
    ("months", _MONTHS),
    ("day_words", _DAY_WORDS),
    ("day_phrases", _DAY_PHRASES),
    ("period_words", _PERIOD_WORDS),
    ("period_word_phrases", _PERIOD_WORD_PHRASES),
    ("period_phrases", _PERIOD_PHRASES),
    ("next_words", _NEXT),
    ("this_words", _THIS),
    ("next_week", _NEXT_WEEK),
    ("noon", _NOON),
    ("midnight", _MIDNIGHT),
    ("now", _NOW),
    ("vague_alone", _VAGUE_ALONE),
    ("vague_amounts", _VAGUE_AMOUNTS),
    ("in_words", _IN),
    ("from_now", _FROM_NOW),
    ("and_words", _AND),
    ("fillers", _FILLERS),
    ("fillers_before_number", _FILLERS_BEFORE_NUMBER),
    ("range_words", _RANGE),
    ("oclock", _OCLOCK),
    ("clock_suffixes", _CLOCK_SUFFIXES),
    ("hour_marks", _HOUR_MARKS),
    ("half_quarter", _HALF_QUARTER),
    ("fr_fractions", _FR_FRACTIONS),
    ("number_words", _NUMBER_WORDS),
    ("articles", _ARTICLES),
    ("units", _UNITS),
    ("glued_units", _GLUED_UNITS),
    ("half_amounts", _HALF_AMOUNTS),
    ("and_a_part", _AND_A_PART),
    ("ordinal_suffixes", _ORDINAL_SUFFIXES),
    ("day_of_month_prefixes", _DAY_OF_MONTH_PREFIXES),
    ("of", _OF),
    ("premier", _PREMIER),
    ("time_word", _TIME_WORD),
    ("heure_de", _HEURE_DE),
    ("heure_francaise", _HEURE_FRANCAISE),
)

SUPPORTED = ("en", "fr")


@functools.lru_cache(maxsize=8)
def lexicon(languages: tuple[str, ...]) -> Lexicon:
    """The merged vocabulary of ``languages`` (unknown codes are ignored; none known means both)."""
    langs = [lang for lang in languages if lang in SUPPORTED] or list(SUPPORTED)
    lex = Lexicon()
    for name, table in _TABLES:
        target: Any = getattr(lex, name)
        by_language: Any = table
        for lang in langs:
            target.update(by_language[lang])
    return lex


def city_zone(name: str, iana_cities: dict[str, str]) -> str | None:
    """The zone of a city written in a "<city> time" phrase: an alias above, or an IANA location name."""
    return _CITY_ALIASES.get(name) or iana_cities.get(name)
