"""Notices carry the instant, its words and the status as data, and a platform can swap the words for its
own time markup without touching anything else (a title quoting the time is left alone)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import notices
from core.models import DeliveryKind, Space, SpaceStatus, SpaceView
from core.notices import Notice
from core.refs import ChatRef, Platform, UserRef
from core.services.manage import ManageService, Reply
from core.services.replies import from_payload, to_payload
from core.timeparse import format_local

START = datetime(2026, 12, 8, 19, 0, tzinfo=UTC)
STARTED = START + timedelta(minutes=3)
LOCALES = ("en", "fr")
USER_KINDS = (
    DeliveryKind.HOST_T30,
    DeliveryKind.HOST_T0,
    DeliveryKind.LIVE_NOTICE,
    DeliveryKind.CANCELLED_NOTICE,
    DeliveryKind.RESCHEDULED_NOTICE,
)


def space(status: SpaceStatus = SpaceStatus.SCHEDULED, title: str = "Weekly AMA", **kw: object) -> Space:
    s = Space(
        id="abcd234567",
        title=title,
        host=UserRef(Platform.CONSOLE, "host"),
        chat=ChatRef(Platform.CONSOLE, "main"),
        starts_at=START,
        tz="Europe/Paris",
        locale="en",
        created_at=START - timedelta(days=1),
        status=status,
        **kw,  # type: ignore[arg-type]
    )
    if status in (SpaceStatus.LIVE, SpaceStatus.ENDED):
        s.started_at = STARTED
    return s


def view(s: Space, zone: str | None = "America/New_York") -> SpaceView:
    return SpaceView(s, 3, "https://spaces.test/s/abcd234567", zone=zone)


def texts(n: Notice) -> list[str]:
    return [n.title, *n.lines]


def states_when(n: Notice) -> bool:
    return n.when_text is not None and any(n.when_text in part for part in texts(n))


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("status", list(SpaceStatus))
def test_cards_carry_the_start_and_status(locale: str, status: SpaceStatus) -> None:
    n = notices.card(view(space(status), zone="America/New_York"), "Ana", locale)
    assert n.status is status and not n.ephemeral
    assert n.when == (STARTED if status in (SpaceStatus.LIVE, SpaceStatus.ENDED) else START)
    if status in (SpaceStatus.SCHEDULED, SpaceStatus.CANCELLED):
        # the card states the time in the chat's zone: those are the words a platform may swap
        assert n.when_text == format_local(START, "America/New_York", locale)
        assert states_when(n)
    else:
        assert n.when_text is None


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("kind", USER_KINDS)
def test_user_notices_carry_the_start_and_the_exact_words(locale: str, kind: DeliveryKind) -> None:
    status = SpaceStatus.LIVE if kind is DeliveryKind.LIVE_NOTICE else SpaceStatus.SCHEDULED
    if kind is DeliveryKind.CANCELLED_NOTICE:
        status = SpaceStatus.CANCELLED
    n = notices.for_delivery(kind, view(space(status), zone="Asia/Kolkata"), "Ana", locale, late_by=600)
    assert n.status is status
    assert n.when == (STARTED if status is SpaceStatus.LIVE else START)
    if kind in (DeliveryKind.HOST_T30, DeliveryKind.CANCELLED_NOTICE, DeliveryKind.RESCHEDULED_NOTICE):
        assert n.when_text == format_local(START, "Asia/Kolkata", locale)
        assert states_when(n)
    else:  # "it's time" and "is live now" state no time in words
        assert n.when_text is None


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("which", ["scheduled", "rescheduled", "renamed"])
def test_confirmations_carry_the_start_and_the_exact_words(locale: str, which: str) -> None:
    s = space()
    manage = ManageService(None, _Links())  # type: ignore[arg-type]
    if which == "scheduled":
        r = manage.scheduled(s, locale)
    else:
        from core import confirmations

        text = getattr(confirmations, which)(s, locale)
        r = Reply(text, s, when_text=confirmations.when_text(s, locale))
    n = r.notice(locale, reply_to="7", ephemeral=True)
    assert n.kind == notices.REPLY and n.ephemeral and n.reply_to == "7"
    assert n.when == START and n.status is SpaceStatus.SCHEDULED
    assert n.when_text == format_local(START, "Europe/Paris", locale) and states_when(n)


def test_a_reply_without_a_space_states_no_time() -> None:
    n = Reply("Nothing here").notice("en")
    assert n.when is None and n.when_text is None and n.status is None and not n.ephemeral


def _discord(at: datetime) -> str:
    return f"<t:{int(at.timestamp())}:F>"


def test_with_when_swaps_the_words_for_native_markup() -> None:
    n = notices.card(view(space()), "Ana", "en")
    native = n.with_when(_discord)
    assert any(f"<t:{int(START.timestamp())}:F>" in line for line in native.lines)
    assert not any(n.when_text in part for part in texts(native) if n.when_text)
    assert native.when_text is None and native.when == START
    # everything else is untouched
    assert replace(native, lines=n.lines, when_text=n.when_text) == n


def test_with_when_leaves_a_title_that_quotes_the_time_alone() -> None:
    words = format_local(START, "America/New_York", "en")
    hostile = space(title=f"Not at {words}", description=f"Really not {words}")
    for n in (
        notices.card(view(hostile), "Ana", "en"),
        notices.for_delivery(DeliveryKind.HOST_T30, view(hostile), "Ana", "en", None),
        notices.for_delivery(DeliveryKind.RESCHEDULED_NOTICE, view(hostile), "Ana", "en", None),
    ):
        native = n.with_when(_discord)
        assert words in native.title or words in native.lines[0]  # the title (or description) quoting it
        assert sum(part.count("<t:") for part in texts(native)) == 1
        assert native.plain().count(words) == n.plain().count(words) - 1


def test_with_when_without_data_changes_nothing() -> None:
    n = notices.for_delivery(DeliveryKind.HOST_T0, view(space()), "Ana", "en", None)
    assert n.with_when(_discord) is n
    plain = notices.reply("hello")
    assert plain.with_when(_discord) is plain


def test_reply_payload_keeps_the_data() -> None:
    n = notices.reply(
        "Time: Tue 8 Dec 2026, 20:00 CET",
        locale="en",
        when=START,
        when_text="Tue 8 Dec 2026, 20:00 CET",
        status=SpaceStatus.SCHEDULED,
        ephemeral=True,
    )
    assert from_payload(to_payload(n)) == n
    # rows queued before these keys existed still read back, as plain text
    assert from_payload('{"v":1,"lines":["hi"],"locale":"en"}').when is None
    for broken in ('{"v":1,"lines":[],"when":"soon"}', '{"v":1,"lines":[],"status":"nope"}'):
        with pytest.raises(ValueError):
            from_payload(broken)
    with pytest.raises(ValueError):  # a naive time would be read in the server's zone: refused
        from_payload('{"v":1,"lines":[],"when":"2026-12-08T19:00:00"}')


class _Links:
    def space(self, space_id: str) -> str:
        return f"https://spaces.test/s/{space_id}"


ZONES = ("UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe")
_MARK = "\ue000"  # private use: a clean title never holds it


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    title=st.text(min_size=1, max_size=40).map(lambda s: s.replace(_MARK, "")).filter(str.strip),
    zone=st.sampled_from(ZONES),
    minutes=st.integers(min_value=0, max_value=60 * 24 * 365),
    locale=st.sampled_from(LOCALES),
    quote=st.booleans(),
)
def test_every_stated_time_is_found_and_swapped_once(
    title: str, zone: str, minutes: int, locale: str, quote: bool
) -> None:
    start = START + timedelta(minutes=minutes)
    words = format_local(start, zone, locale)
    s = space(title=f"{title} {words}" if quote else title)
    s.starts_at = start
    built = [notices.card(view(s, zone=zone), "Ana", locale)]
    built += [
        notices.for_delivery(k, view(s, zone=zone), "Ana", locale, None)
        for k in (DeliveryKind.HOST_T30, DeliveryKind.CANCELLED_NOTICE, DeliveryKind.RESCHEDULED_NOTICE)
    ]
    for n in built:
        assert n.when == start and n.when_text == words and states_when(n)
        native = n.with_when(lambda _: _MARK)
        assert sum(part.count(_MARK) for part in texts(native)) == 1
        assert native.plain().replace(_MARK, words) == n.plain()  # the only change
        assert s.title in native.plain()  # the title, quoting the time or not, is untouched
