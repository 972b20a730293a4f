"""Telegram edge cases a real group produces: anonymous admins, multi-line commands, @botname, quick or
mistaken answers in the /space conversation, unrelated replies, long lists, double presses."""

from __future__ import annotations

from typing import Any

from bots.telegram.translate import chat_ref, user_ref
from core.commands import ScheduleSpace
from core.models import SpaceStatus
from core.rules import Actor
from tests.bots.telegram.conftest import TgEnv
from tests.bots.telegram.test_flows import schedule_in_group
from tests.fakes.telegram import CallbackQueryRecord


async def test_anonymous_admins_and_channel_posts_cannot_act_as_a_shared_placeholder(tg_env: TgEnv) -> None:
    tg = tg_env.tg
    _host, group, _card = await schedule_in_group(tg_env)
    (space,) = await tg_env.spaces.upcoming(chat_ref(group.id))
    anon = tg.create_user("Group", id=1087968824, username="GroupAnonymousBot", is_bot=True)
    await tg.user_sends(anon, group, f"/cancel {space.id}")
    await tg.wait_for_message(group, lambda m: "post anonymously or as a channel" in m.text)
    await tg.user_sends(anon, group, "/space tomorrow 21:00 Hidden host")
    await tg.wait_for_message(
        group, lambda m: m.text.count("post anonymously") == 1 and "Hidden" not in m.text
    )
    assert [s.title for s in await tg_env.spaces.upcoming(chat_ref(group.id))] == ["Weekly AMA"]
    assert (await tg_env.spaces.get(space.id)).status is SpaceStatus.SCHEDULED


async def test_commands_with_a_newline_or_the_bots_name_work(tg_env: TgEnv) -> None:
    tg = tg_env.tg
    host, group, _ = await schedule_in_group(tg_env)
    (space,) = await tg_env.spaces.upcoming(chat_ref(group.id))
    await tg.user_sends(host, group, f"/live@{tg_env.platform.username}\n{space.id}")
    await tg.wait_for_message(group, lambda m: "You're live" in m.text)
    assert (await tg_env.spaces.get(space.id)).status is SpaceStatus.LIVE


async def test_a_mistyped_time_asks_again_and_two_quick_answers_make_one_space(tg_env: TgEnv) -> None:
    tg = tg_env.tg
    host = tg.create_user("Hana", started=True)
    group = tg.create_group("Builders", creator=host)
    await tg.user_sends(host, group, "/space")
    ask = await tg.wait_for_message(group, lambda m: "title" in m.text)
    await tg.user_sends(host, group, "Jam", reply_to=ask)
    ask_time = await tg.wait_for_message(group, lambda m: "When does" in m.text)
    await tg.user_sends(host, group, "blorp o'clock", reply_to=ask_time)
    await tg.wait_for_message(group, lambda m: "couldn't read" in m.text)
    again = await tg.wait_for_message(
        group, lambda m: "When does" in m.text and m.message_id != ask_time.message_id
    )
    # the host answers twice in a hurry: one Space, not two
    await tg.user_sends(host, group, "in 2 hours", reply_to=again)
    await tg.user_sends(host, group, "in 3 hours", reply_to=again)
    await tg_env.settled()  # every update handled, every answer sent: nothing else is on its way
    assert [s.title for s in await tg_env.spaces.upcoming(chat_ref(group.id))] == ["Jam"]


async def test_a_reply_to_someone_else_does_not_become_a_title(tg_env: TgEnv) -> None:
    tg = tg_env.tg
    host = tg.create_user("Hana", started=True)
    friend = tg.create_user("Fred", started=True)
    group = tg.create_group("Builders", creator=host, members=[friend], bot_is_admin=True)  # sees everything
    chat_msg = await tg.user_sends(friend, group, "lunch at 12:30?")
    await tg.user_sends(host, group, "/space")
    await tg.wait_for_message(group, lambda m: "title" in m.text)
    await tg.user_sends(host, group, "sure, 12:30 works", reply_to=chat_msg)
    await tg_env.settled()
    assert not [m for m in tg.bot_messages(group) if "When does" in m.text]


async def test_a_long_list_with_hostile_titles_still_renders(tg_env: TgEnv) -> None:
    tg = tg_env.tg
    host = tg.create_user("Hana", started=True)
    group = tg.create_group("Builders", creator=host)
    for i in range(8):
        await tg_env.spaces.schedule(
            ScheduleSpace(Actor(user_ref(host.id)), chat_ref(group.id), "<&>" * 33, f"in {i + 2} hours")
        )
    await tg.user_sends(host, group, "/spaces")
    # the eight cards are paced in the group (1.25 s apart): the answer may queue behind those claimed
    listing = await tg.wait_for_message(group, lambda m: "Upcoming Spaces" in m.text, within=20.0)
    assert listing.text.count("<&>" * 33) == 8
    tg.assert_clean()


async def test_buttons_state_the_result_a_double_press_never_flips_it_back(tg_env: TgEnv) -> None:
    tg = tg_env.tg
    _host, group, card = await schedule_in_group(tg_env)
    (space,) = await tg_env.spaces.upcoming(chat_ref(group.id))
    fan = tg.create_user("Fan", started=True)
    await tg.user_starts_bot(fan)
    await tg.wait_for_message(fan.id, lambda m: "Hi" in m.text)
    answers = []
    for data in (f"sub:{space.id}", f"sub:{space.id}"):  # a double tap on "Set reminder"
        q = await tg.press_button(fan, card, data)
        answers.append(await tg_env.eventually(lambda q=q: _answered(tg_env, q)))
    assert "Reminder set" in answers[0]["text"] and "already subscribed" in answers[1]["text"]
    assert await tg_env.spaces.subscriber_count(space.id) == 1
    for data in (f"unsub:{space.id}", f"unsub:{space.id}"):  # and on "Unsubscribe"
        q = await tg.press_button(fan, card, data)
        answers.append(await tg_env.eventually(lambda q=q: _answered(tg_env, q)))
    assert answers[2]["show_alert"] is True and "Reminder removed" in answers[2]["text"]
    assert "weren't subscribed" in answers[3]["text"]
    assert await tg_env.spaces.subscriber_count(space.id) == 0
    # a card posted before the two buttons carries "sub" alone: it now only ever subscribes
    old_card = {
        "message_id": card.message_id,
        "date": card.date,
        "chat": group.to_api(),
        "from": tg.bot_user,
        "text": card.text,
        "reply_markup": {"inline_keyboard": [[{"text": "🔔", "callback_data": f"sub:{space.id}"}]]},
    }
    for qid in ("5001", "5002"):
        await tg.post_raw_update(
            {
                "callback_query": {
                    "id": qid,
                    "from": fan.to_api(),
                    "chat_instance": "1",
                    "data": f"sub:{space.id}",
                    "message": old_card,
                }
            }
        )
    await tg.wait_for_call("answerCallbackQuery", lambda c: c.params.get("callback_query_id") == "5002")
    assert await tg_env.spaces.subscriber_count(space.id) == 1


async def test_foreign_buttons_are_answered_so_nothing_spins(tg_env: TgEnv) -> None:
    tg = tg_env.tg
    _host, _group, _card = await schedule_in_group(tg_env)
    fan = tg.create_user("Fan", started=True)
    await tg.post_raw_update(
        {
            "callback_query": {
                "id": "4242",
                "from": {"id": fan.id, "is_bot": False, "first_name": "Fan"},
                "chat_instance": "1",
                "data": "drop table;",
            }
        }
    )
    call = await tg.wait_for_call(
        "answerCallbackQuery", lambda c: c.params.get("callback_query_id") == "4242"
    )
    assert call is not None


async def _answered(env: TgEnv, q: CallbackQueryRecord) -> dict[str, Any] | None:
    return env.tg.callback_answer(q)
