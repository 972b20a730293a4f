"""Telegram end to end: the real python-telegram-bot against the emulator, on the real core and storage."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bots.telegram.translate import chat_ref, user_ref
from core.models import DeliveryKind, DeliveryStatus, Space, SpaceStatus
from core.refs import ChatRef
from tests.bots.telegram.conftest import TgEnv
from tests.fakes.telegram import CallbackQueryRecord, TgChat, TgMessage, TgUser


async def schedule_in_group(
    env: TgEnv, text: str = "/space tomorrow 20:00 Weekly AMA"
) -> tuple[TgUser, TgChat, TgMessage]:
    host = env.tg.create_user("Hana", username="hana", started=True)
    group = env.tg.create_group("Builders", creator=host)
    await env.tg.user_sends(host, group, text)
    spaces = await env.eventually(lambda: env.spaces.upcoming(_chat(group)))
    await env.deliver()
    # the card (the host may also get a "get my reminders" hint, in either order)
    card = next(m for m in reversed(env.tg.bot_messages(group)) if f"sub:{spaces[0].id}" in m.callback_data)
    assert spaces[0].title in card.text
    return host, group, card


def _chat(group: TgChat) -> ChatRef:
    return chat_ref(group.id)


async def _space(env: TgEnv, group: TgChat) -> Space:
    (space,) = await env.spaces.upcoming(_chat(group))
    return space


async def test_schedule_in_a_group_posts_a_card_with_buttons(tg_env: TgEnv) -> None:
    _host, group, card = await schedule_in_group(tg_env)
    space = await _space(tg_env, group)
    assert space.starts_at.isoformat() == "2026-11-26T19:00:00+00:00"  # 20:00 Paris
    assert "<b>" not in card.text  # entities, not raw markup, reach the user
    assert "Weekly AMA" in card.text and "Thu 26 Nov 2026, 20:00 CET" in card.text and "Hana" in card.text
    assert card.callback_data == [f"sub:{space.id}", f"unsub:{space.id}", f"start:{space.id}"]
    share = [b for b in card.buttons if "url" in b]
    assert share and share[0]["url"].startswith(
        "https://t.me/share/url?url=https%3A%2F%2Fspaces.example%2Fs%2F"
    )
    tg_env.tg.assert_clean()


async def test_bare_space_walks_the_host_through_title_and_time(tg_env: TgEnv) -> None:
    host = tg_env.tg.create_user("Hana", started=True)
    group = tg_env.tg.create_group("Builders", creator=host)
    await tg_env.tg.user_sends(host, group, "/space")
    ask = await tg_env.tg.wait_for_message(group, lambda m: "title" in m.text)
    await tg_env.tg.user_sends(host, group, "Friday jam", reply_to=ask)
    ask2 = await tg_env.tg.wait_for_message(group, lambda m: "When does" in m.text)
    await tg_env.tg.user_sends(host, group, "in 2 hours", reply_to=ask2)
    spaces = await tg_env.eventually(lambda: tg_env.spaces.upcoming(_chat(group)))
    assert spaces[0].title == "Friday jam"
    assert spaces[0].starts_at == tg_env.clock.now() + timedelta(hours=2)


async def test_subscribe_by_button_and_by_deep_link(tg_env: TgEnv) -> None:
    _host, group, card = await schedule_in_group(tg_env)
    space = await _space(tg_env, group)
    known = tg_env.tg.create_user("Kim", started=True)
    await tg_env.tg.user_starts_bot(known)  # has a DM with the bot: reachable
    await tg_env.tg.wait_for_message(known.id, lambda m: "Hi" in m.text)
    q = await tg_env.tg.press_button(known, card, f"sub:{space.id}")
    await tg_env.eventually(lambda: _answered(tg_env, q))
    assert "Reminder set" in tg_env.tg.callback_answer(q)["text"]  # type: ignore[index]

    stranger = tg_env.tg.create_user("Sam", language_code="fr")  # never opened the bot
    q2 = await tg_env.tg.press_button(stranger, card, f"sub:{space.id}")
    answer = await tg_env.eventually(lambda: _answered(tg_env, q2))
    assert answer["url"] == f"https://t.me/{tg_env.platform.username}?start=s_{space.id}"
    # Telegram opens the DM; Sam presses Start: the deep link completes the subscription there
    await tg_env.tg.user_starts_bot(stranger, f"s_{space.id}")
    dm = await tg_env.tg.wait_for_message(stranger.id, lambda m: "Rappel activé" in m.text)
    assert "Weekly AMA" in dm.text
    assert await tg_env.spaces.subscriber_count(space.id) == 2
    # the card's count follows (coalesced edits)
    tg_env.clock.advance(timedelta(minutes=1))
    await tg_env.deliver()
    assert "2 subscribed" in tg_env.tg.message(group, card.message_id).text


async def _answered(env: TgEnv, q: CallbackQueryRecord) -> dict[str, Any] | None:
    return env.tg.callback_answer(q)


async def test_host_reminders_at_t30_and_t0(tg_env: TgEnv) -> None:
    host, group, _ = await schedule_in_group(tg_env)
    space = await _space(tg_env, group)
    await tg_env.tg.user_starts_bot(host)
    await tg_env.tg.wait_for_message(host.id, lambda m: "Hi" in m.text)
    tg_env.clock.set(space.starts_at - timedelta(minutes=30))
    await tg_env.deliver()
    dms = [m for m in tg_env.tg.bot_messages(host.id) if "⏰" in m.text]
    assert len(dms) == 1 and "starts in 30 minutes" in dms[0].text
    assert dms[0].callback_data == [f"start:{space.id}"]
    tg_env.clock.set(space.starts_at)
    await tg_env.deliver()
    dms = [m for m in tg_env.tg.bot_messages(host.id) if "⏰" in m.text]
    assert len(dms) == 2 and "It's time" in dms[1].text


async def test_a_host_who_cannot_be_dmed_is_mentioned_in_the_group(tg_env: TgEnv) -> None:
    host = tg_env.tg.create_user("Hana")  # never opened the bot
    group = tg_env.tg.create_group("Builders", creator=host)
    await tg_env.tg.user_sends(host, group, "/space in 10 minutes Quick sync")
    space = (await tg_env.eventually(lambda: tg_env.spaces.upcoming(_chat(group))))[0]
    tg_env.clock.set(space.starts_at)
    await tg_env.deliver()
    # the confirmation may be queued after the Space committed, so after the mention: find the mention
    [mention] = [m for m in tg_env.tg.bot_messages(group) if "couldn't message you privately" in m.text]
    assert "couldn't message you privately" in mention.text and "Hana" in mention.text
    assert any(e["type"] == "text_link" or e["type"] == "text_mention" for e in mention.entities)
    rows = {d.kind: d for d in await tg_env.rows()}
    assert rows[DeliveryKind.HOST_T0].status is DeliveryStatus.FALLBACK
    assert rows[DeliveryKind.MENTION].status is DeliveryStatus.SENT


async def test_host_starts_every_subscriber_dmed_once_and_cards_turn_live(tg_env: TgEnv) -> None:
    host, group, card = await schedule_in_group(tg_env)
    space = await _space(tg_env, group)
    fans = [tg_env.tg.create_user(f"Fan{i}", started=True) for i in range(5)]
    for fan in fans:
        await tg_env.tg.press_button(fan, card, f"sub:{space.id}")
    await tg_env.eventually(lambda: _count_is(tg_env, space.id, 5))
    await tg_env.tg.press_button(host, card, f"start:{space.id}")
    await tg_env.eventually(lambda: _status_is(tg_env, space.id, SpaceStatus.LIVE))
    await tg_env.deliver()
    for fan in fans:
        live = [m for m in tg_env.tg.bot_messages(fan.id) if "is live now" in m.text]
        assert len(live) == 1
        assert live[0].buttons[0]["url"] == f"https://spaces.example/s/{space.id}"
    now_card = tg_env.tg.message(group, card.message_id)
    assert now_card.text.startswith("🟣 LIVE Weekly AMA")
    assert [b["text"] for b in now_card.buttons] == ["🎧 Join", "⏹ End"]
    # ending turns the card again; nobody gets a second notice
    await tg_env.tg.press_button(host, now_card, f"end:{space.id}")
    await tg_env.eventually(lambda: _status_is(tg_env, space.id, SpaceStatus.ENDED))
    await tg_env.deliver()
    assert tg_env.tg.message(group, card.message_id).text.startswith("Ended Weekly AMA")
    assert all(len([m for m in tg_env.tg.bot_messages(f.id) if "live" in m.text]) == 1 for f in fans)


async def _count_is(env: TgEnv, space_id: str, n: int) -> bool:
    return await env.spaces.subscriber_count(space_id) == n


async def _status_is(env: TgEnv, space_id: str, status: SpaceStatus) -> bool:
    return (await env.spaces.get(space_id)).status is status


async def test_reschedule_and_cancel_update_cards_and_tell_subscribers(tg_env: TgEnv) -> None:
    host, group, card = await schedule_in_group(tg_env)
    space = await _space(tg_env, group)
    fan = tg_env.tg.create_user("Fan", started=True)
    await tg_env.tg.press_button(fan, card, f"sub:{space.id}")
    await tg_env.eventually(lambda: _count_is(tg_env, space.id, 1))
    await tg_env.tg.user_sends(host, group, f"/reschedule {space.id} 2026-11-27 21:30")
    await tg_env.tg.wait_for_message(group, lambda m: "Rescheduled" in m.text)
    await tg_env.deliver()
    assert "Fri 27 Nov 2026, 21:30 CET" in tg_env.tg.message(group, card.message_id).text
    moved = [m for m in tg_env.tg.bot_messages(fan.id) if "moved to" in m.text]
    assert len(moved) == 1 and "Fri 27 Nov 2026, 21:30" in moved[0].text
    await tg_env.tg.user_sends(host, group, f"/cancel {space.id}")
    await tg_env.tg.wait_for_message(group, lambda m: "Cancelled" in m.text)
    await tg_env.deliver()
    assert tg_env.tg.message(group, card.message_id).text.startswith("❌ Cancelled")
    assert [m for m in tg_env.tg.bot_messages(fan.id) if "was cancelled" in m.text]


async def test_a_non_admin_cannot_cancel_someone_elses_space_but_an_admin_can(tg_env: TgEnv) -> None:
    _host, group, card = await schedule_in_group(tg_env)
    space = await _space(tg_env, group)
    mallory = tg_env.tg.create_user("Mallory", started=True)
    await tg_env.tg.user_sends(mallory, group, f"/cancel {space.id}")
    refusal = await tg_env.tg.wait_for_message(group, lambda m: "Only the host or a moderator" in m.text)
    assert refusal
    q = await tg_env.tg.press_button(mallory, card, f"start:{space.id}")
    answer = await tg_env.eventually(lambda: _answered(tg_env, q))
    assert answer["show_alert"] is True and "Only the host" in answer["text"]
    assert (await tg_env.spaces.get(space.id)).status is SpaceStatus.SCHEDULED
    admin = tg_env.tg.create_user("Ada", started=True)
    tg_env.tg.make_admin(group, admin)
    await tg_env.tg.user_sends(admin, group, f"/cancel {space.id}")
    await tg_env.eventually(lambda: _status_is(tg_env, space.id, SpaceStatus.CANCELLED))


async def test_a_blocked_subscriber_falls_back_to_a_mention_and_is_recorded(tg_env: TgEnv) -> None:
    host, group, card = await schedule_in_group(tg_env)
    space = await _space(tg_env, group)
    fan, quitter = tg_env.tg.create_user("Fan", started=True), tg_env.tg.create_user("Quinn", started=True)
    for u in (fan, quitter):
        await tg_env.tg.user_starts_bot(u)
        await tg_env.tg.wait_for_message(u.id, lambda m: "Hi" in m.text)  # /start handled before blocking
        await tg_env.tg.press_button(u, card, f"sub:{space.id}")
    await tg_env.eventually(lambda: _count_is(tg_env, space.id, 2))
    await tg_env.tg.block_bot(quitter)
    await tg_env.tg.wait_updates_consumed()
    await tg_env.spaces.get(space.id)
    await tg_env.tg.press_button(host, card, f"start:{space.id}")
    await tg_env.eventually(lambda: _status_is(tg_env, space.id, SpaceStatus.LIVE))
    await tg_env.deliver()
    mention = [m for m in tg_env.tg.bot_messages(group) if "couldn't message you privately" in m.text]
    assert len(mention) == 1 and "Quinn" in mention[0].text and "Fan" not in mention[0].text.split("—")[0]
    rows = [d for d in await tg_env.rows() if d.kind is DeliveryKind.LIVE_NOTICE]
    by_user = {d.recipient: d for d in rows}
    assert by_user[f"telegram:user:{quitter.id}"].status is DeliveryStatus.FALLBACK
    assert by_user[f"telegram:user:{fan.id}"].status is DeliveryStatus.SENT
    profile = await tg_env.profiles.get(user_ref(quitter.id))
    assert profile is not None and profile.dm_reachable is False
    # when the Space ends, the host learns how the live notice reached people
    await tg_env.tg.user_sends(host, group, f"/end {space.id}")
    report = await tg_env.tg.wait_for_message(group, lambda m: "Your live notice" in m.text)
    assert "1 messaged, 1 mentioned in the chat (DMs closed), 0 unreachable" in report.text


async def test_the_schedule_reply_shows_time_and_title_apart_and_rename_fixes_the_title(
    tg_env: TgEnv,
) -> None:
    host, group, card = await schedule_in_group(tg_env, "/space tomorrow 20:00 Today in AI")
    space = await _space(tg_env, group)
    confirmation = await tg_env.tg.wait_for_message(group, lambda m: "Scheduled ✓" in m.text)
    # what was understood, each on its own line, and the one-step fixes
    assert "Title: Today in AI\n" in confirmation.text
    assert "Time: Thu 26 Nov 2026, 20:00 CET\n" in confirmation.text
    assert f"/rename {space.id} <new title>" in confirmation.text
    assert f"/reschedule {space.id} <new time>" in confirmation.text
    await tg_env.tg.user_sends(host, group, f"/rename {space.id} Today in AI #2")
    renamed = await tg_env.tg.wait_for_message(group, lambda m: "Renamed ✓" in m.text)
    assert "Title: Today in AI #2\n" in renamed.text
    await tg_env.deliver()
    assert "Today in AI #2" in tg_env.tg.message(group, card.message_id).text  # the card follows
    assert (await _space(tg_env, group)).title == "Today in AI #2"
    # someone else may not rename it
    other = tg_env.tg.create_user("Otto", started=True)
    tg_env.tg.add_member(group, other)
    await tg_env.tg.user_sends(other, group, f"/rename {space.id} Hijacked")
    await tg_env.tg.wait_for_message(group, lambda m: "Only the host" in m.text)
    assert (await _space(tg_env, group)).title == "Today in AI #2"


async def test_a_host_who_never_opened_the_bot_is_offered_the_deep_link(tg_env: TgEnv) -> None:
    host, group, _card = await schedule_in_group(tg_env)
    space = await _space(tg_env, group)
    # the answer is queued once the update is done, maybe after the card: wait for it at the emulator
    hint = await tg_env.tg.wait_for_message(group, lambda m: "Get my reminders" in str(m.buttons))
    assert hint.buttons[0]["url"] == f"https://t.me/{tg_env.platform.username}?start=s_{space.id}"
    await tg_env.tg.user_starts_bot(host, f"s_{space.id}")
    await tg_env.tg.wait_for_message(host.id, lambda m: "You're the host" in m.text)
    profile = await tg_env.profiles.get(user_ref(host.id))
    assert profile is not None and profile.dm_reachable is True  # reminders now go to the DM
    tg_env.clock.set(space.starts_at)
    await tg_env.deliver()
    assert [m for m in tg_env.tg.bot_messages(host.id) if "It's time" in m.text]


async def test_cards_show_the_chats_zone_and_dms_the_readers(tg_env: TgEnv) -> None:
    host = tg_env.tg.create_user("Hana", started=True)
    group = tg_env.tg.create_group("NYC builders", creator=host)
    await tg_env.tg.user_sends(host, group, "/chattz America/New_York")
    await tg_env.tg.wait_for_message(group, lambda m: "America/New_York" in m.text)
    await tg_env.tg.user_sends(host, group, "/space 2026-12-01 18:30 Europe/Paris Cross-Atlantic")
    (space,) = await tg_env.eventually(lambda: tg_env.spaces.upcoming(_chat(group)))
    await tg_env.deliver()
    card = await tg_env.tg.wait_for_message(group, lambda m: f"sub:{space.id}" in m.callback_data)
    assert "Tue 1 Dec 2026, 12:30 EST" in card.text  # 18:30 in Paris, shown in the chat's zone
    fan = tg_env.tg.create_user("Kiran", started=True)
    await tg_env.tg.user_sends(fan, None, "/tz Asia/Kolkata")
    await tg_env.tg.wait_for_message(fan.id, lambda m: "Asia/Kolkata" in m.text)
    await tg_env.tg.press_button(fan, card, f"sub:{space.id}")
    await tg_env.eventually(lambda: _count_is(tg_env, space.id, 1))
    await tg_env.tg.user_sends(host, group, f"/reschedule {space.id} 2026-12-01 19:30 Europe/Paris")
    await tg_env.tg.wait_for_message(group, lambda m: "Rescheduled" in m.text)
    await tg_env.deliver()
    moved = next(m for m in tg_env.tg.bot_messages(fan.id) if "moved to" in m.text)
    assert "Wed 2 Dec 2026, 00:00 IST" in moved.text  # the reader's zone


async def test_a_space_scheduled_in_a_dm_never_mentions_anyone_in_a_private_chat(tg_env: TgEnv) -> None:
    tg = tg_env.tg
    host = tg.create_user("Hana", started=True)
    await tg.user_starts_bot(host)
    await tg.user_sends(host, None, "/space tomorrow 20:00 Private AMA")
    scheduled = await tg.wait_for_message(host.id, lambda m: "Scheduled ✓" in m.text)
    (space,) = await tg_env.spaces.upcoming(_chat_of(host.id))
    fans = [tg.create_user(f"Fan{i}") for i in range(3)]
    for fan in fans:  # the shared link: subscribed privately, from no group
        await tg.user_starts_bot(fan, f"s_{space.id}")
        await tg.wait_for_message(fan.id, lambda m: "Reminder set" in m.text)
    for fan in fans[1:]:
        await tg.block_bot(fan)
    await tg.wait_updates_consumed()
    await tg.user_sends(host, None, f"/live {space.id}")
    await tg.wait_for_message(host.id, lambda m: "You're live" in m.text)
    await tg_env.deliver()
    assert [m for m in tg.bot_messages(fans[0].id) if "is live now" in m.text]
    live = {d.recipient: d for d in await tg_env.rows() if d.kind is DeliveryKind.LIVE_NOTICE}
    for fan in fans[1:]:
        row = live[str(user_ref(fan.id))]
        assert row.status is DeliveryStatus.DEAD and "no group to mention them in" in (row.last_error or "")
    await tg.user_sends(host, None, f"/end {space.id}")
    report = await tg.wait_for_message(host.id, lambda m: "Your live notice" in m.text)
    assert "1 messaged, 0 mentioned in the chat (DMs closed), 2 unreachable" in report.text
    # the host's own reminders, once they blocked the bot: no mention in their private chat either
    await tg.user_sends(host, None, "/space in 10 minutes Quick one")
    await tg.wait_for_message(
        host.id, lambda m: "Quick one" in m.text and m.message_id > scheduled.message_id
    )
    quick = next(s for s in await tg_env.spaces.upcoming(_chat_of(host.id)) if s.title == "Quick one")
    await tg.block_bot(host)
    await tg.wait_updates_consumed()
    tg_env.clock.set(quick.starts_at)
    await tg_env.deliver()
    rows = {d.kind: d for d in await tg_env.rows() if d.space_id == quick.id}
    assert rows[DeliveryKind.HOST_T0].status is DeliveryStatus.FALLBACK
    assert rows[DeliveryKind.MENTION].status is DeliveryStatus.DEAD
    mentions = [c for c in tg.calls("sendMessage") if "couldn't message you privately" in str(c.params)]
    assert mentions == []  # never, in any chat


def _chat_of(user_id: int) -> ChatRef:
    return chat_ref(user_id)  # a private chat's id is its user's
