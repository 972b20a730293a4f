"""The Space lifecycle and the reminder plan, with a controllable clock, on every persistence backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.commands import (
    CancelSpace,
    EndSpace,
    RenameSpace,
    RescheduleSpace,
    ScheduleSpace,
    StartSpace,
    Subscribe,
    Unsubscribe,
)
from core.errors import InvalidTime, InvalidTitle, NotAllowed, NotFound, TooManySpaces, UserError, WrongState
from core.models import Community, DeliveryKind, DeliveryStatus, SpaceStatus
from core.refs import ChatRef, Platform, UserRef
from core.rules import MAX_OPEN_PER_HOST, TITLE_MAX, Actor
from core.texts import t
from tests.conftest import CoreEnv

# The fixture clock starts at 2026-11-25 16:00 UTC (17:00 in Paris, the default zone here).


async def schedule(env: CoreEnv, when: str = "2026-11-25 20:00", title: str = "Weekly AMA", **kw: object):
    return await env.spaces.schedule(
        ScheduleSpace(actor=kw.pop("actor", env.actor()), chat=env.chat, title=title, when_text=when, **kw)  # type: ignore[arg-type]
    )


async def kinds(env: CoreEnv, status: DeliveryStatus | None = None) -> list[str]:
    return [d.kind for d in await env.deliveries() if status is None or d.status is status]


async def test_schedule_plans_card_and_both_host_reminders(core_env: CoreEnv) -> None:
    space = await schedule(core_env)
    assert space.starts_at == datetime(2026, 11, 25, 19, 0, tzinfo=UTC)  # 20:00 Paris
    assert space.tz == "Europe/Paris" and space.status is SpaceStatus.SCHEDULED
    rows = {d.kind: d for d in await core_env.deliveries()}
    assert rows[DeliveryKind.HOST_T30].due_at == space.starts_at - timedelta(minutes=30)
    assert rows[DeliveryKind.HOST_T0].due_at == space.starts_at
    assert rows[DeliveryKind.CARD_POST].due_at == core_env.clock.now()
    assert core_env.wake.earliest == core_env.clock.now()
    # the card goes out at once, and becomes an announcement that later edits target
    await core_env.run()
    (post,) = core_env.platform.of("post")
    assert post.notice.title == "Weekly AMA" and post.notice.space_id == space.id
    assert next(a.label for a in post.notice.actions) == "🔔 Set reminder"


async def test_host_gets_t30_then_t0_and_nothing_else(core_env: CoreEnv) -> None:
    space = await schedule(core_env)
    await core_env.run()
    core_env.clock.set(space.starts_at - timedelta(minutes=30))
    await core_env.run()
    (dm,) = core_env.platform.dms_to(core_env.host)
    assert "starts in 30 minutes" in dm.notice.title
    core_env.clock.set(space.starts_at - timedelta(seconds=1))
    assert await core_env.run() == 0  # nothing due yet
    core_env.clock.set(space.starts_at)
    await core_env.run()
    dms = core_env.platform.dms_to(core_env.host)
    assert len(dms) == 2 and "It's time" in dms[1].notice.title
    assert not any("delayed" in line for line in dms[1].notice.lines)


async def test_t30_reminder_skipped_when_scheduled_less_than_30_minutes_ahead(core_env: CoreEnv) -> None:
    await schedule(core_env, when="in 20 minutes")
    assert DeliveryKind.HOST_T30 not in await kinds(core_env)
    assert DeliveryKind.HOST_T0 in await kinds(core_env)


async def test_subscribers_are_notified_when_the_host_starts_not_at_the_scheduled_time(
    core_env: CoreEnv,
) -> None:
    space = await schedule(core_env)
    alice, bob = UserRef(core_env.chat.platform, "alice"), UserRef(core_env.chat.platform, "bob")
    for u in (alice, bob):
        res = await core_env.spaces.subscribe(Subscribe(u, space.id, via_chat=core_env.chat))
        assert res.subscribed and res.changed
    core_env.clock.set(space.starts_at + timedelta(minutes=5))
    await core_env.run()
    assert not core_env.platform.dms_to(alice)  # the scheduled time passing does not notify listeners
    started = await core_env.spaces.start(StartSpace(core_env.actor(), space.id))
    assert started.notified == 2
    await core_env.run()
    for u in (alice, bob):
        (dm,) = core_env.platform.dms_to(u)
        assert "is live now" in dm.notice.title
    # every card turned live
    edits = core_env.platform.of("edit")
    assert edits and edits[-1].notice.marker == "🟣 LIVE"
    # a second start (double tap) notifies nobody twice
    again = await core_env.spaces.start(StartSpace(core_env.actor(), space.id))
    assert again.notified == 0
    await core_env.run()
    assert len(core_env.platform.dms_to(alice)) == 1


async def test_subscribe_and_unsubscribe_set_a_state_and_counts(core_env: CoreEnv) -> None:
    space = await schedule(core_env)
    alice = UserRef(core_env.chat.platform, "alice")
    r1 = await core_env.spaces.subscribe(Subscribe(alice, space.id))
    r2 = await core_env.spaces.subscribe(Subscribe(alice, space.id))  # a retried or double press
    assert (r1.subscribed, r1.subscribers, r1.changed) == (True, 1, True)
    assert (r2.subscribed, r2.subscribers, r2.changed) == (True, 1, False)
    r3 = await core_env.spaces.unsubscribe(Unsubscribe(alice, space.id))
    r4 = await core_env.spaces.unsubscribe(Unsubscribe(alice, space.id))
    assert (r3.subscribed, r3.subscribers, r3.changed) == (False, 0, True)
    assert (r4.subscribed, r4.subscribers, r4.changed) == (False, 0, False)
    with pytest.raises(UserError) as e:
        await core_env.spaces.subscribe(Subscribe(core_env.host, space.id))
    assert e.value.key == "sub.host"


async def test_card_count_edits_are_coalesced(core_env: CoreEnv) -> None:
    space = await schedule(core_env)
    await core_env.run()  # card posted
    for i in range(50):
        await core_env.spaces.subscribe(Subscribe(UserRef(core_env.chat.platform, f"u{i}"), space.id))
    core_env.clock.advance(timedelta(seconds=31))
    await core_env.run()
    edits = core_env.platform.of("edit")
    assert len(edits) == 1  # 50 subscriptions, one card edit, showing the final count
    assert "50 subscribed" in "\n".join(edits[0].notice.lines)


async def test_reschedule_moves_reminders_keeps_id_and_subscribers(core_env: CoreEnv) -> None:
    space = await schedule(core_env)
    alice = UserRef(core_env.chat.platform, "alice")
    await core_env.spaces.subscribe(Subscribe(alice, space.id))
    await core_env.run()
    moved = await core_env.spaces.reschedule(RescheduleSpace(core_env.actor(), space.id, "2026-11-26 21:00"))
    assert moved.id == space.id and moved.revision == 2
    assert moved.starts_at == datetime(2026, 11, 26, 20, 0, tzinfo=UTC)
    rows = await core_env.deliveries()
    old = [d for d in rows if d.kind in (DeliveryKind.HOST_T30, DeliveryKind.HOST_T0) and d.revision == 1]
    new = [d for d in rows if d.kind in (DeliveryKind.HOST_T30, DeliveryKind.HOST_T0) and d.revision == 2]
    assert {d.status for d in old} == {DeliveryStatus.WITHDRAWN}
    assert sorted(d.due_at for d in new) == [moved.starts_at - timedelta(minutes=30), moved.starts_at]
    await core_env.run()
    (note,) = core_env.platform.dms_to(alice)
    assert "moved to" in note.notice.title
    assert core_env.platform.of("edit")  # the card shows the new time
    assert await core_env.spaces.subscriber_count(space.id) == 1
    # the old T-30 time passes: nothing is sent for it
    core_env.clock.set(space.starts_at)
    await core_env.run()
    assert not core_env.platform.dms_to(core_env.host)


async def test_reschedule_to_same_time_is_refused(core_env: CoreEnv) -> None:
    space = await schedule(core_env)
    with pytest.raises(UserError) as e:
        await core_env.spaces.reschedule(RescheduleSpace(core_env.actor(), space.id, "2026-11-25 20:00"))
    assert e.value.key == "space.same_time"


async def test_cancel_withdraws_reminders_and_tells_subscribers(core_env: CoreEnv) -> None:
    space = await schedule(core_env)
    alice = UserRef(core_env.chat.platform, "alice")
    await core_env.spaces.subscribe(Subscribe(alice, space.id))
    await core_env.run()
    await core_env.spaces.cancel(CancelSpace(core_env.actor(), space.id))
    await core_env.run()
    (note,) = core_env.platform.dms_to(alice)
    assert "was cancelled" in note.notice.title
    assert core_env.platform.of("edit")[-1].notice.marker == "❌ Cancelled"
    core_env.clock.set(space.starts_at + timedelta(hours=1))
    await core_env.run()
    assert not core_env.platform.dms_to(core_env.host)  # no reminder for a cancelled Space
    statuses = {d.kind: d.status for d in await core_env.deliveries()}
    assert statuses[DeliveryKind.HOST_T30] is DeliveryStatus.WITHDRAWN
    with pytest.raises(WrongState):
        await core_env.spaces.start(StartSpace(core_env.actor(), space.id))
    with pytest.raises(WrongState):
        await core_env.spaces.subscribe(Subscribe(UserRef(core_env.chat.platform, "bob"), space.id))


async def test_end_turns_cards_and_skips_unsent_live_notices(core_env: CoreEnv) -> None:
    space = await schedule(core_env)
    await core_env.spaces.subscribe(Subscribe(UserRef(core_env.chat.platform, "alice"), space.id))
    await core_env.run()
    await core_env.spaces.start(StartSpace(core_env.actor(), space.id))
    await core_env.spaces.end(EndSpace(core_env.actor(), space.id))  # before the engine sent anything
    await core_env.run()
    assert not core_env.platform.of("direct")
    live = [d for d in await core_env.deliveries() if d.kind is DeliveryKind.LIVE_NOTICE]
    assert [d.status for d in live] == [DeliveryStatus.WITHDRAWN] and live[0].last_error == "ended"
    assert core_env.platform.of("edit")[-1].notice.marker == "Ended"


async def test_permissions_host_and_moderators_only(core_env: CoreEnv) -> None:
    space = await schedule(core_env)
    mallory = core_env.actor("mallory")
    for cmd in (
        CancelSpace(mallory, space.id),
        StartSpace(mallory, space.id),
        RescheduleSpace(mallory, space.id, "tomorrow 21:00"),
    ):
        with pytest.raises(NotAllowed) as e:
            await getattr(core_env.spaces, type(cmd).__name__.removesuffix("Space").lower())(cmd)
        assert "Only the host or a moderator" in t("en", e.value.key, **e.value.params)
    got = await core_env.spaces.get(space.id)
    assert got.status is SpaceStatus.SCHEDULED  # nothing changed
    mod = core_env.actor("mod", mod=True)
    await core_env.spaces.start(StartSpace(mod, space.id))
    await core_env.spaces.end(EndSpace(mod, space.id))


@pytest.mark.parametrize(
    ("when", "title", "error", "key"),
    [
        # an empty title: the text is read as "<when> <title>", and a time alone is refused showing the time
        ("tomorrow 20:00", "", InvalidTitle, "title.missing"),
        ("tomorrow 20:00", "   \n\t ", InvalidTitle, "title.missing"),
        ("tomorrow 20:00", "x" * (TITLE_MAX + 1), InvalidTitle, "title.too_long"),
        ("tomorrow 20:00", "bell\x07", InvalidTitle, "title.invalid"),
        ("2026-11-24 20:00", "Past", InvalidTime, "time.past"),
        ("2028-01-01 20:00", "Far", InvalidTime, "time.too_far"),
        ("blorp o'clock", "Gibberish", InvalidTime, "time.unreadable"),
        ("2026-12-01 18:30 Mars/Olympus", "Zone", InvalidTime, "time.unknown_zone"),
        ("2027-03-28 02:30", "Gap", InvalidTime, "time.nonexistent"),
        ("2027-10-31 02:30", "Overlap", InvalidTime, "time.ambiguous"),
    ],
)
async def test_every_validation_error_is_actionable_and_stores_nothing(
    core_env: CoreEnv, when: str, title: str, error: type[Exception], key: str
) -> None:
    with pytest.raises(error) as e:
        await schedule(core_env, when=when, title=title)
    assert isinstance(e.value, UserError) and e.value.key == key
    for locale in ("en", "fr"):
        text = t(locale, e.value.key, **e.value.params)
        assert text and "{" not in text
    assert await core_env.space_count() == 0 and await core_env.deliveries() == []


async def test_dst_alternatives_are_offered_and_the_choice_is_accepted(core_env: CoreEnv) -> None:
    with pytest.raises(InvalidTime) as e:
        await schedule(core_env, when="2027-10-31 02:30")
    alternatives = e.value.params["alternatives"]
    assert len(alternatives) == 2
    space = await schedule(core_env, when="2027-10-31 02:30 +01:00")
    assert space.starts_at == datetime(2027, 10, 31, 1, 30, tzinfo=UTC)


async def test_too_many_upcoming_spaces_for_one_host(core_env: CoreEnv) -> None:
    for i in range(MAX_OPEN_PER_HOST):
        await schedule(core_env, when=f"in {i + 2} hours", title=f"S{i}")
    with pytest.raises(TooManySpaces) as e:
        await schedule(core_env, when="in 20 hours", title="One too many")
    assert e.value.params == {"count": MAX_OPEN_PER_HOST, "limit": MAX_OPEN_PER_HOST}


async def test_unknown_space_is_a_clear_error(core_env: CoreEnv) -> None:
    with pytest.raises(NotFound) as e:
        await core_env.spaces.start(StartSpace(core_env.actor(), "nope"))
    assert "nope" in t("en", e.value.key, **e.value.params)


async def test_retried_inbound_command_creates_one_space(core_env: CoreEnv) -> None:
    a = await schedule(core_env, request_id="upd-1")
    b = await schedule(core_env, request_id="upd-1")
    assert a.id == b.id and await core_env.space_count() == 1
    assert len(await core_env.deliveries()) == 3


async def test_failed_command_does_not_burn_its_request_id(core_env: CoreEnv) -> None:
    with pytest.raises(InvalidTime):
        await schedule(core_env, when="yesterday 20:00", request_id="upd-2")
    space = await schedule(core_env, request_id="upd-2")  # the user fixes it; same id is fine
    assert space.title == "Weekly AMA"


async def test_time_zone_precedence(core_env: CoreEnv) -> None:
    space = await schedule(core_env, when="2026-11-25 20:00", tz="America/New_York")
    assert space.starts_at == datetime(2026, 11, 26, 1, 0, tzinfo=UTC)
    space2 = await schedule(core_env, when="2026-11-26 20:00 Asia/Kolkata", title="Zone in text")
    assert space2.tz == "Asia/Kolkata" and space2.starts_at == datetime(2026, 11, 26, 14, 30, tzinfo=UTC)


async def test_a_scoped_chat_reads_times_in_its_whole_scopes_zone(core_env: CoreEnv) -> None:
    # a guild sets its zone once for every channel; a channel's own setting still wins
    channel = ChatRef(Platform.DISCORD, "111", scope="999")
    async with core_env.db.uow() as uow:
        await uow.communities.upsert(Community(channel.community, tz="America/New_York"))
        await uow.commit()
    host = UserRef(Platform.DISCORD, "42")
    assert await core_env.spaces.zone_for(host, channel) == "America/New_York"
    assert await core_env.spaces.zone_for(host, ChatRef(Platform.DISCORD, "111")) == "Europe/Paris"
    async with core_env.db.uow() as uow:
        await uow.communities.upsert(Community(channel, tz="Asia/Kolkata"))
        await uow.commit()
    assert await core_env.spaces.zone_for(host, channel) == "Asia/Kolkata"


async def test_state_and_permission_errors_read_naturally_in_both_languages(core_env: CoreEnv) -> None:
    space = await schedule(core_env)
    await core_env.spaces.cancel(CancelSpace(core_env.actor(), space.id))
    with pytest.raises(WrongState) as e:
        await core_env.spaces.start(StartSpace(core_env.actor(), space.id))
    assert t("en", e.value.key, **e.value.params) == "This Space is cancelled, so you can't start it."
    assert t("fr", e.value.key, **e.value.params) == "Ce Space est annulé : impossible de le démarrer."
    other = await schedule(core_env, title="Other")
    with pytest.raises(NotAllowed) as e2:
        await core_env.spaces.reschedule(RescheduleSpace(core_env.actor("eve"), other.id, "tomorrow 21:00"))
    assert t("fr", e2.value.key, **e2.value.params) == (
        "Seul l'hôte ou un modérateur de cette communauté peut reprogrammer ce Space."
    )


async def test_a_second_start_says_already_live(core_env: CoreEnv) -> None:
    space = await schedule(core_env)
    first = await core_env.spaces.start(StartSpace(core_env.actor(), space.id))
    second = await core_env.spaces.start(StartSpace(core_env.actor(), space.id))
    assert not first.already_live and second.already_live and second.notified == 0


async def test_spaces_left_open_are_closed_and_free_the_hosts_quota(core_env: CoreEnv) -> None:
    from core.rules import STALE_AFTER

    never_started = await schedule(core_env, when="2026-11-25 20:00", title="Forgotten")
    never_ended = await schedule(core_env, when="2026-11-25 21:00", title="Still on air")
    keeps = await schedule(core_env, when="2026-11-27 21:00", title="Next week")
    await core_env.run()
    core_env.clock.set(never_ended.starts_at)
    await core_env.spaces.start(StartSpace(core_env.actor(), never_ended.id))
    core_env.clock.set(never_ended.starts_at + STALE_AFTER - timedelta(minutes=1))
    assert await core_env.spaces.close_stale() == 1  # only the one never started is old enough yet
    core_env.clock.advance(timedelta(minutes=2))
    assert await core_env.spaces.close_stale() == 1
    statuses = [(await core_env.spaces.get(s.id)).status for s in (never_started, never_ended, keeps)]
    assert statuses == [SpaceStatus.ENDED, SpaceStatus.ENDED, SpaceStatus.SCHEDULED]
    await core_env.run()
    assert {e.notice.marker for e in core_env.platform.of("edit")} >= {"Ended"}
    assert [s.id for s in await core_env.spaces.upcoming(core_env.chat)] == [keeps.id]


async def test_unsubscribing_withdraws_what_was_still_on_its_way(core_env: CoreEnv) -> None:
    space = await schedule(core_env)
    alice = UserRef(core_env.chat.platform, "alice")
    await core_env.spaces.subscribe(Subscribe(alice, space.id))
    await core_env.spaces.start(StartSpace(core_env.actor(), space.id))  # alice's live notice is queued
    await core_env.spaces.unsubscribe(Unsubscribe(alice, space.id))  # …and she changes her mind at once
    await core_env.run()
    assert not core_env.platform.dms_to(alice)


# ------------------------------------------------------------------------------------------------ rename


async def test_rename_changes_the_title_and_every_card(core_env: CoreEnv) -> None:
    space = await schedule(core_env, title="Evening")  # say "Evening prayers" was read as a time word
    await core_env.run()
    renamed = await core_env.spaces.rename(RenameSpace(core_env.actor(), space.id, "  Evening   prayers "))
    assert renamed.title == "Evening prayers" and renamed.starts_at == space.starts_at
    assert renamed.revision == space.revision  # the reminders planned for this time stay valid
    assert (await core_env.spaces.get(space.id)).title == "Evening prayers"
    await core_env.run()
    assert core_env.platform.of("edit")[-1].notice.title == "Evening prayers"
    # the host's reminders say the new title
    core_env.clock.set(space.starts_at - timedelta(minutes=30))
    await core_env.run()
    (dm,) = core_env.platform.dms_to(core_env.host)
    assert "“Evening prayers”" in dm.notice.title


async def test_rename_back_and_forth_edits_the_card_each_time(core_env: CoreEnv) -> None:
    """Edit keys must not collide (A -> B -> A at one instant): the card always shows the last title."""
    space = await schedule(core_env, title="A")
    await core_env.run()
    for title in ("B", "A", "B"):
        await core_env.spaces.rename(RenameSpace(core_env.actor(), space.id, title))
        await core_env.run()
        assert core_env.platform.of("edit")[-1].notice.title == title
    assert len(core_env.platform.of("edit")) == 3


async def test_rename_is_idempotent_and_a_same_title_changes_nothing(core_env: CoreEnv) -> None:
    space = await schedule(core_env)
    await core_env.run()
    cmd = RenameSpace(core_env.actor(), space.id, "Monthly AMA", request_id="upd:7")
    await core_env.spaces.rename(cmd)
    await core_env.spaces.rename(cmd)  # the platform retried the same request
    await core_env.spaces.rename(RenameSpace(core_env.actor(), space.id, "Monthly AMA"))
    await core_env.run()
    assert len(core_env.platform.of("edit")) == 1


async def test_rename_rules(core_env: CoreEnv) -> None:
    space = await schedule(core_env)
    with pytest.raises(NotAllowed):
        await core_env.spaces.rename(RenameSpace(core_env.actor("mallory"), space.id, "Mine"))
    with pytest.raises(InvalidTitle) as e:
        await core_env.spaces.rename(RenameSpace(core_env.actor(), space.id, "  "))
    assert e.value.key == "title.empty"
    await core_env.spaces.rename(RenameSpace(core_env.actor("mod", mod=True), space.id, "By the mod"))
    await core_env.spaces.start(StartSpace(core_env.actor(), space.id))
    await core_env.spaces.rename(RenameSpace(core_env.actor(), space.id, "Live and renamed"))  # live: allowed
    await core_env.spaces.end(EndSpace(core_env.actor(), space.id))
    with pytest.raises(WrongState) as state:
        await core_env.spaces.rename(RenameSpace(core_env.actor(), space.id, "Too late"))
    assert (
        t("fr", state.value.key, **state.value.params) == "Ce Space est terminé : impossible de le modifier."
    )
    assert (await core_env.spaces.get(space.id)).title == "Live and renamed"
    with pytest.raises(NotFound):
        await core_env.spaces.rename(RenameSpace(core_env.actor(), "nope", "x"))


async def test_schedule_reads_the_text_in_the_actors_language_for_its_errors(core_env: CoreEnv) -> None:
    with pytest.raises(InvalidTime) as e:
        await schedule(core_env, when="hier 20h Bilan", title="", actor=core_env.actor(locale="fr"))
    assert e.value.params == {"when": "mar. 24 nov. 2026, 20:00 CET"}


# ---------------------------------------------------------------- acknowledge first: preview, fields, queries

GUILD_CHANNEL = ChatRef(Platform.DISCORD, "5001", scope="900")


async def _footprint(env: CoreEnv, user: UserRef) -> tuple[int, int, object]:
    return await env.space_count(), len(await env.deliveries()), await env.profile(user)


async def test_preview_reads_like_schedule_and_writes_nothing(core_env: CoreEnv) -> None:
    env = core_env
    before = await _footprint(env, env.host)
    cmd = ScheduleSpace(
        actor=env.actor(locale="fr"),
        chat=env.chat,
        title="",
        when_text="2026-11-25 20:00   Weekly  AMA",
        description="  Bring questions ",
        request_id="rq-1",
    )
    seen = await env.spaces.preview(cmd)
    assert await _footprint(env, env.host) == before == (0, 0, None)
    assert env.wake.earliest is None
    assert seen.starts_at == datetime(2026, 11, 25, 19, 0, tzinfo=UTC) and seen.tz == "Europe/Paris"
    assert seen.title == "Weekly AMA" and seen.description == "Bring questions" and seen.locale == "fr"
    assert seen.when_text == "mer. 25 nov. 2026, 20:00 CET" and seen.when_text in seen.text
    assert seen.text.startswith("Prêt à programmer")
    notice = seen.notice()
    assert notice.ephemeral and notice.when == seen.starts_at and notice.when_text == seen.when_text
    assert notice.status is SpaceStatus.SCHEDULED
    # the request id was not burnt: the real command with the same id schedules
    space = await env.spaces.schedule(cmd)
    assert (space.starts_at, space.tz, space.title, space.description) == (
        seen.starts_at,
        seen.tz,
        seen.title,
        seen.description,
    )


@pytest.mark.parametrize(
    ("kw", "error", "key", "field"),
    [
        ({"title": "  "}, InvalidTitle, "title.missing", "title"),
        ({"title": "x" * (TITLE_MAX + 1)}, InvalidTitle, "title.too_long", "title"),
        ({"when": "yesterday 10:00"}, InvalidTime, "time.past", "when"),
        ({"when": "someday"}, InvalidTime, "time.unreadable", "when"),
        ({"when": "2026-11-26 20:00 Mars/Olympus"}, InvalidTime, "time.unknown_zone", "when"),
        ({"tz": "Mars/Olympus"}, InvalidTime, "time.unknown_zone", "timezone"),
        ({"description": "d" * 1001}, InvalidTitle, "description.too_long", "description"),
        ({"voice": ChatRef(Platform.DISCORD, "9")}, UserError, "voice.elsewhere", "voice"),
    ],
)
async def test_preview_and_schedule_raise_the_same_field_aware_errors(
    core_env: CoreEnv, kw: dict[str, object], error: type[UserError], key: str, field: str
) -> None:
    kw = dict(kw)
    when = str(kw.pop("when", "2026-11-25 20:00"))
    title = str(kw.pop("title", "Weekly AMA"))
    cmd = ScheduleSpace(actor=core_env.actor(), chat=core_env.chat, title=title, when_text=when, **kw)  # type: ignore[arg-type]
    for attempt in (core_env.spaces.preview, core_env.spaces.schedule):
        with pytest.raises(error) as e:
            await attempt(cmd)
        assert (e.value.key, e.value.field) == (key, field)
        for locale in ("en", "fr"):
            assert "{" not in t(locale, e.value.key, **e.value.params)
    assert await core_env.space_count() == 0 and await core_env.deliveries() == []


async def test_errors_without_a_field_and_the_quota_in_preview(core_env: CoreEnv) -> None:
    for i in range(MAX_OPEN_PER_HOST):
        await schedule(core_env, when=f"in {i + 2} hours", title=f"S{i}")
    rows = len(await core_env.deliveries())
    cmd = ScheduleSpace(actor=core_env.actor(), chat=core_env.chat, title="More", when_text="in 20 hours")
    with pytest.raises(TooManySpaces) as e:
        await core_env.spaces.preview(cmd)
    assert e.value.field is None
    assert len(await core_env.deliveries()) == rows
    with pytest.raises(ValueError):
        UserError("x", field="nope")


async def test_a_voice_channel_is_linked_in_the_same_guild(core_env: CoreEnv) -> None:
    host = Actor(UserRef(Platform.DISCORD, "42"))
    voice = ChatRef(Platform.DISCORD, "5002", scope="900")
    cmd = ScheduleSpace(actor=host, chat=GUILD_CHANNEL, title="Stage", when_text="in 3 hours", voice=voice)
    assert (await core_env.spaces.preview(cmd)).voice == voice
    space = await core_env.spaces.schedule(cmd)
    assert space.voice == voice and (await core_env.spaces.get(space.id)).voice == voice
    for elsewhere in (ChatRef(Platform.DISCORD, "7", scope="901"), ChatRef(Platform.TELEGRAM, "5002")):
        with pytest.raises(UserError) as e:
            await core_env.spaces.schedule(
                ScheduleSpace(
                    actor=host, chat=GUILD_CHANNEL, title="S", when_text="in 4 hours", voice=elsewhere
                )
            )
        assert e.value.field == "voice"


async def test_manageable_and_following(core_env: CoreEnv) -> None:
    env = core_env
    ana, bob, mod = (UserRef(Platform.DISCORD, n) for n in ("ana", "bob", "mod"))
    other_channel = ChatRef(Platform.DISCORD, "5003", scope="900")
    other_guild = ChatRef(Platform.DISCORD, "6001", scope="901")

    async def make(who: UserRef, chat: ChatRef, when: str, title: str) -> str:
        cmd = ScheduleSpace(actor=Actor(who), chat=chat, title=title, when_text=when)
        return (await env.spaces.schedule(cmd)).id

    a1 = await make(ana, GUILD_CHANNEL, "in 3 hours", "Ana's jam")
    a2 = await make(ana, other_guild, "in 2 hours", "Ana elsewhere")
    b1 = await make(bob, other_channel, "in 1 hour", "Bob's AMA")
    m1 = await make(mod, GUILD_CHANNEL, "in 4 hours", "Mod night")
    b2 = await make(bob, other_guild, "in 5 hours", "Bob away")
    gone = await make(bob, GUILD_CHANNEL, "in 6 hours", "Gone")
    await env.spaces.cancel(CancelSpace(Actor(bob), gone))

    async def manageable(user: UserRef, *, is_moderator: bool, **kw: object) -> list[str]:
        found = await env.spaces.manageable(user, GUILD_CHANNEL, is_moderator=is_moderator, **kw)  # type: ignore[arg-type]
        return [s.id for s in found]

    assert await manageable(ana, is_moderator=False) == [a2, a1]  # their own, open, soonest first
    assert await manageable(bob, is_moderator=False) == [b1, b2]
    # a moderator: every open Space of the guild, and their own; each once
    assert await manageable(mod, is_moderator=True) == [b1, a1, m1]
    assert await manageable(mod, is_moderator=True, limit=2) == [b1, a1]
    assert await manageable(mod, is_moderator=True, prefix="JAM") == [a1]
    assert await manageable(mod, is_moderator=True, prefix=b1[:4]) == [b1]
    assert await manageable(mod, is_moderator=False) == [m1]

    for sid in (a1, b2, m1):
        await env.spaces.subscribe(Subscribe(UserRef(Platform.DISCORD, "fan"), sid))
    await env.spaces.start(StartSpace(Actor(mod), m1))
    await env.spaces.cancel(CancelSpace(Actor(bob), b2))
    fan = UserRef(Platform.DISCORD, "fan")
    assert [s.id for s in await env.spaces.following(fan)] == [a1, m1]  # b2 cancelled; m1 live
    assert [s.id for s in await env.spaces.following(fan, limit=1)] == [a1]
    assert await env.spaces.following(ana) == []
