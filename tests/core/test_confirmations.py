"""core.confirmations: the confirmation every platform shows after a schedule, a move or a rename."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core import confirmations
from core.models import Space
from core.refs import ChatRef, Platform, UserRef


def space(title: str = "10 minute meditation") -> Space:
    return Space(
        id="abcd234567",
        title=title,
        host=UserRef(Platform.CONSOLE, "host"),
        chat=ChatRef(Platform.CONSOLE, "main"),
        starts_at=datetime(2026, 12, 8, 19, 0, tzinfo=UTC),
        tz="Europe/Paris",
        locale="en",
        created_at=datetime(2026, 11, 25, 16, 0, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        (
            "en",
            "Scheduled ✓\nTitle: 10 minute meditation\nTime: Tue 8 Dec 2026, 20:00 CET\n"
            "Share it: https://spaces.test/s/abcd234567\n"
            "Wrong title? `/rename abcd234567 <new title>` · Wrong time? `/reschedule abcd234567 <new time>`",
        ),
        (
            "fr",
            "Programmé ✓\nTitre : 10 minute meditation\nHeure : mar. 8 déc. 2026, 20:00 CET\n"
            "À partager : https://spaces.test/s/abcd234567\n"
            "Mauvais titre ? `/rename abcd234567 <nouveau titre>` · "
            "Mauvaise heure ? `/reschedule abcd234567 <nouvelle heure>`",
        ),
    ],
)
def test_scheduled_shows_title_and_time_apart_and_how_to_fix_each(locale: str, expected: str) -> None:
    assert confirmations.scheduled(space(), locale, "https://spaces.test/s/abcd234567") == expected


def test_rescheduled_and_renamed_say_the_same_two_things() -> None:
    assert confirmations.rescheduled(space(), "en").splitlines()[:3] == [
        "Rescheduled ✓",
        "Title: 10 minute meditation",
        "Time: Tue 8 Dec 2026, 20:00 CET",
    ]
    assert confirmations.renamed(space("Focus"), "fr").splitlines()[:3] == [
        "Renommé ✓",
        "Titre : Focus",
        "Heure : mar. 8 déc. 2026, 20:00 CET",
    ]
    assert "/rename abcd234567" in confirmations.renamed(space(), "en").splitlines()[-1]


def test_a_title_is_shown_as_typed() -> None:
    """No quotes around it: a title that itself holds quotes or braces reads as typed."""
    text = confirmations.scheduled(space('"Q&A" {live}'), "en", "https://x")
    assert 'Title: "Q&A" {live}' in text
