from __future__ import annotations

import pytest

from bots.console import translate as tr
from core.texts import t


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("", tr.Empty()),
        ("   ", tr.Empty()),
        ("/space schedule tomorrow 20:00 Weekly AMA", tr.Schedule("tomorrow 20:00 Weekly AMA")),
        ("/space tomorrow 20:00 Weekly AMA", tr.Schedule("tomorrow 20:00 Weekly AMA")),
        ("/space programmer demain 20h AMA", tr.Schedule("demain 20h AMA")),
        ("/SPACE Schedule  in 2 hours  Chat  ", tr.Schedule("in 2 hours  Chat")),
        ("/spaces", tr.ListSpaces()),
        ("/subscribe abcd234567", tr.SubscribeTo("abcd234567")),
        ("/unsubscribe abcd234567", tr.UnsubscribeFrom("abcd234567")),
        ("/start abcd234567", tr.Start("abcd234567")),
        ("/end abcd234567", tr.End("abcd234567")),
        ("/cancel abcd234567", tr.Cancel("abcd234567")),
        ("/reschedule abcd234567 friday 18:00", tr.Reschedule("abcd234567", "friday 18:00")),
        ("/rename abcd234567 Weekly AMA #2", tr.Rename("abcd234567", "Weekly AMA #2")),
        ("/rename abcd234567   In 2 hours  ", tr.Rename("abcd234567", "In 2 hours")),
        (
            "/source abcd234567 https://radio.example/live",
            tr.SetSource("abcd234567", "https://radio.example/live"),
        ),
        ("/source abcd234567   browser ", tr.SetSource("abcd234567", "browser")),
        ("/as Alice", tr.ActAs("alice")),
        ("/as @bob", tr.ActAs("bob")),
        ("/mod on", tr.SetModerator(True)),
        ("/mod OFF", tr.SetModerator(False)),
        ("/tz Europe/Paris", tr.SetZone("Europe/Paris")),
        ("/lang fr", tr.SetLanguage("fr")),
        ("/help", tr.Help()),
        ("/link", tr.LinkChat("")),
        ("/link K7QM4-ZP9XA", tr.LinkChat("K7QM4-ZP9XA")),
        ("/unlink", tr.UnlinkChat()),
        ("/quit", tr.Quit()),
        ("/exit", tr.Quit()),
    ],
)
def test_parse(line: str, expected: tr.Command) -> None:
    assert tr.parse(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        "hello",
        "/space",
        "/space schedule",
        "/subscribe",
        "/start",
        "/reschedule abcd234567",
        "/rename abcd234567",
        "/rename",
        "/source abcd234567",
        "/source",
        "/as",
        "/as <script>",
        "/as " + "x" * 40,
        "/mod maybe",
        "/tz",
        "/tz Europe Paris",
        "/lang de",
        "/frobnicate",
    ],
)
def test_problems_explain_the_syntax(line: str) -> None:
    result = tr.parse(line)
    assert isinstance(result, tr.Problem)
    assert result.message


def test_problems_have_a_text_in_every_language() -> None:
    problem = tr.parse("/lang de")
    assert isinstance(problem, tr.Problem) and problem.key == "console.usage.lang"
    assert problem.message == "Usage: /lang en|fr"
    assert t("fr", problem.key, **problem.params) == "Usage : /lang en|fr"


@pytest.mark.parametrize("locale", ["en", "fr"])
def test_help_mentions_every_command(locale: str) -> None:
    text = t(locale, "console.help", host="you", zone="UTC")
    for word in (
        "/space",
        "/spaces",
        "/subscribe",
        "/unsubscribe",
        "/start",
        "/end",
        "/cancel",
        "/reschedule",
        "/source",
        "/as",
        "/mod",
        "/tz",
        "/lang",
        "/help",
        "/quit",
    ):
        assert word in text
