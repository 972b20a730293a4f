from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from core import rules
from core.models import Delivery, DeliveryKind, Space, SpaceStatus
from core.refs import ChatRef, Platform, UserRef
from core.texts import TEXTS, t

NOW = datetime(2026, 11, 25, 16, 0, tzinfo=UTC)
HOST = UserRef(Platform.CONSOLE, "host")


def space(**kw: object) -> Space:
    base: dict[str, object] = dict(
        id="abcdefghjk",
        title="T",
        host=HOST,
        chat=ChatRef(Platform.CONSOLE, "c"),
        starts_at=NOW + timedelta(hours=2),
        tz="UTC",
        locale="en",
        created_at=NOW,
    )
    base.update(kw)
    return Space(**base)  # type: ignore[arg-type]


def delivery(kind: DeliveryKind, due: datetime, revision: int = 1) -> Delivery:
    return Delivery(
        key="k",
        kind=kind,
        platform=Platform.CONSOLE,
        recipient=str(HOST),
        space_id="abcdefghjk",
        revision=revision,
        due_at=due,
    )


def test_reminder_plan() -> None:
    start = NOW + timedelta(hours=2)
    assert rules.host_reminder_plan(start, NOW) == [
        (DeliveryKind.HOST_T30, start - timedelta(minutes=30)),
        (DeliveryKind.HOST_T0, start),
    ]
    soon = NOW + timedelta(minutes=29)
    assert rules.host_reminder_plan(soon, NOW) == [(DeliveryKind.HOST_T0, soon)]
    exactly = NOW + timedelta(minutes=30)  # T-30 would be "now": pointless, skipped
    assert rules.host_reminder_plan(exactly, NOW) == [(DeliveryKind.HOST_T0, exactly)]


@pytest.mark.parametrize(
    ("kind", "status", "minutes_after_due", "expect"),
    [
        (DeliveryKind.HOST_T30, SpaceStatus.SCHEDULED, 0, "send"),
        (DeliveryKind.HOST_T30, SpaceStatus.SCHEDULED, 31, "skip"),  # after the start time
        (DeliveryKind.HOST_T30, SpaceStatus.LIVE, 0, "skip"),
        (DeliveryKind.HOST_T0, SpaceStatus.SCHEDULED, 90, "send"),
        (DeliveryKind.HOST_T0, SpaceStatus.CANCELLED, 0, "skip"),
        (DeliveryKind.LIVE_NOTICE, SpaceStatus.LIVE, 45, "send"),
        (DeliveryKind.LIVE_NOTICE, SpaceStatus.ENDED, 0, "skip"),
        (DeliveryKind.CANCELLED_NOTICE, SpaceStatus.CANCELLED, 5, "send"),
        (DeliveryKind.RESCHEDULED_NOTICE, SpaceStatus.CANCELLED, 0, "skip"),
        (DeliveryKind.CARD_EDIT, SpaceStatus.ENDED, 0, "send"),
    ],
)
def test_late_and_stale_policy(
    kind: DeliveryKind, status: SpaceStatus, minutes_after_due: int, expect: str
) -> None:
    s = space(status=status)
    due = s.starts_at - timedelta(minutes=30) if kind is DeliveryKind.HOST_T30 else s.starts_at
    verdict = rules.decide(delivery(kind, due), s, due + timedelta(minutes=minutes_after_due))
    assert ("send" if isinstance(verdict, rules.Send) else "skip") == expect
    if isinstance(verdict, rules.Skip):
        assert verdict.reason
    else:
        assert verdict.late_by == minutes_after_due * 60
        assert rules.is_marked_late(verdict.late_by) == (minutes_after_due > 1)


def test_old_revision_reminders_are_stale() -> None:
    s = space(revision=2)
    verdict = rules.decide(delivery(DeliveryKind.HOST_T0, s.starts_at, revision=1), s, s.starts_at)
    assert isinstance(verdict, rules.Skip) and "revision" in verdict.reason
    assert isinstance(rules.decide(delivery(DeliveryKind.HOST_T0, NOW), None, NOW), rules.Skip)


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    rng = random.Random(1)
    waits = [rules.backoff(n, rng) for n in range(1, 12)]
    assert waits[0] <= rules.BACKOFF_BASE and waits[3] > waits[0]
    assert all(w <= rules.BACKOFF_CAP for w in waits)
    assert len({round(rules.backoff(3, rng), 6) for _ in range(20)}) > 1  # jitter: workers don't stampede


def test_title_cleaning() -> None:
    assert rules.clean_title("  Weekly \n  AMA  ") == "Weekly AMA"
    assert rules.clean_title("👩‍💻 Devs") == "👩‍💻 Devs"  # ZWJ emoji sequences are fine
    assert rules.clean_title("<b>&amp;</b>") == "<b>&amp;</b>"  # kept verbatim; adapters escape


def test_every_text_exists_in_both_languages_with_the_same_fields() -> None:
    import string

    fmt = string.Formatter()
    for key, en in TEXTS["en"].items():
        assert key in TEXTS["fr"], f"missing French text for {key}"
        fields_en = {f for _, f, _, _ in fmt.parse(en) if f}
        fields_fr = {f for _, f, _, _ in fmt.parse(TEXTS["fr"][key]) if f}
        assert fields_fr <= fields_en, key  # a translation may leave a detail out, never invent one
    assert t("fr-CA", "button.subscribe") == "🔔 Me le rappeler"
    assert t(None, "button.subscribe") == t("de", "button.subscribe") == "🔔 Set reminder"


def test_urgent_kinds_are_claimed_before_bulk_ones_and_unknown_kinds_in_between() -> None:
    p = rules.priority
    assert p("reply") < p(DeliveryKind.HOST_T0) == p(DeliveryKind.HOST_T30)
    assert p(DeliveryKind.HOST_T0) < p(DeliveryKind.CARD_EDIT) == p(DeliveryKind.MENTION)
    assert p(DeliveryKind.MENTION) < p("a_kind_of_a_later_version") < p(DeliveryKind.LIVE_NOTICE)
    assert (
        p(DeliveryKind.LIVE_NOTICE) == p(DeliveryKind.RESCHEDULED_NOTICE) == p(DeliveryKind.CANCELLED_NOTICE)
    )


@pytest.mark.parametrize(
    ("late_minutes", "up_since_minutes", "attempts", "marked"),
    [
        (5, -60, 1, False),  # queued behind the limits while the service ran: no mark
        (5, None, 1, False),  # uptime unknown, first attempt: no mark
        (5, 3, 1, True),  # nobody was running when it came due
        (5, -60, 2, True),  # an earlier attempt failed (a platform error, or its worker died)
        (0.5, 3, 2, False),  # under a minute late: never marked
    ],
)
def test_the_delayed_mark_is_for_outages_only(
    late_minutes: float, up_since_minutes: float | None, attempts: int, marked: bool
) -> None:
    s = space(status=SpaceStatus.LIVE)
    d = delivery(DeliveryKind.LIVE_NOTICE, NOW)
    d.attempts = attempts
    up = None if up_since_minutes is None else NOW + timedelta(minutes=up_since_minutes)
    verdict = rules.decide(d, s, NOW + timedelta(minutes=late_minutes), up_since=up)
    assert isinstance(verdict, rules.Send)
    assert verdict.late_by == late_minutes * 60 and verdict.marked is marked
    assert verdict.shown_late_by == (late_minutes * 60 if marked else None)
