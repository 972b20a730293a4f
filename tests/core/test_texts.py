"""core/texts.py: every text in both languages, no field a caller does not pass, plural forms picked right."""

from __future__ import annotations

import string

import pytest

from core.texts import DEFAULT_LOCALE, TEXTS, TextKey, plural_one, t


def fields(template: str) -> set[str]:
    return {name.split(".")[0].split("[")[0] for _, name, _, _ in string.Formatter().parse(template) if name}


def base(key: str) -> str:
    return key.split("#", 1)[0]


def test_every_text_exists_in_every_language() -> None:
    english = {k for k in TEXTS[DEFAULT_LOCALE] if "#" not in k}
    for locale, texts in TEXTS.items():
        assert {k for k in texts if "#" not in k} == english, locale


@pytest.mark.parametrize("locale", sorted(TEXTS))
def test_no_text_needs_a_field_its_callers_do_not_pass(locale: str) -> None:
    # callers pass the English text's fields: a translation (or a plural form) may use fewer, never others
    for key, template in TEXTS[locale].items():
        assert base(key) in TEXTS[DEFAULT_LOCALE], f"{locale}:{key} has no base text"
        assert fields(template) <= fields(TEXTS[DEFAULT_LOCALE][base(key)]), f"{locale}:{key}"


def test_plural_rules() -> None:
    assert [plural_one("en", n) for n in (0, 1, 2)] == [False, True, False]
    assert [plural_one("fr", n) for n in (0, 1, 2)] == [True, True, False]  # « 0 abonné »


@pytest.mark.parametrize(
    ("locale", "count", "text"),
    [
        ("en", 0, "🔔 0 subscribed"),
        ("en", 1, "🔔 1 subscribed"),
        ("fr", 0, "🔔 0 abonné"),
        ("fr", 1, "🔔 1 abonné"),
        ("fr", 2, "🔔 2 abonnés"),
    ],
)
def test_card_subscriber_counts(locale: str, count: int, text: str) -> None:
    assert t(locale, "card.subscribers", count=count) == text


@pytest.mark.parametrize(
    ("locale", "count", "text"),
    [
        ("en", 0, "Cancelled “AMA”. Nobody had subscribed yet."),
        ("en", 1, "Cancelled “AMA”. Its subscriber is being told."),
        ("en", 3, "Cancelled “AMA”. Its 3 subscribers are being told."),
        ("fr", 0, "« AMA » est annulé. Personne ne s'y était encore abonné."),
        ("fr", 1, "« AMA » est annulé. Son abonné est prévenu."),
        ("fr", 3, "« AMA » est annulé. Ses 3 abonnés sont prévenus."),
    ],
)
def test_nobody_is_told_when_there_is_nobody(locale: str, count: int, text: str) -> None:
    assert t(locale, "reply.cancelled", title="AMA", count=count) == text


def test_text_keys_as_parameters_are_translated() -> None:
    assert t("fr", "space.wrong_state", status=TextKey("status.live"), action=TextKey("action.start")) == (
        "Ce Space est en direct : impossible de le démarrer."
    )


def test_hints_carry_no_fixed_date() -> None:
    # a fixed example date is soon in the past ("2026-12-01" was, a week after release); the time.* texts
    # belong to the time parser's owners and are checked with it
    for locale, texts in TEXTS.items():
        for key, template in texts.items():
            if not key.startswith("time."):
                assert not any(str(year) in template for year in range(2020, 2100)), f"{locale}:{key}"
