"""The Telegram emulator, driven by the real python-telegram-bot (and raw HTTP where PTB would not go)."""

from __future__ import annotations

import asyncio
import datetime as dtm
import json
import time
import warnings
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from telegram import (
    Bot,
    ChatMemberAdministrator,
    ChatMemberLeft,
    ChatMemberMember,
    ChatMemberOwner,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Update,
)
from telegram.error import BadRequest, Conflict, Forbidden, NetworkError, RetryAfter
from telegram.ext import Application, ApplicationBuilder, CallbackQueryHandler, CommandHandler, ContextTypes

from tests.fakes.telegram import RateRule, TelegramEmulator, TgUser, telegram_emulator  # noqa: F401
from tests.fakes.telegram_spec import EntityParseError, load_spec, parse_html

pytestmark = [
    pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning"),
    pytest.mark.filterwarnings("ignore::telegram.warnings.PTBUserWarning"),
]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest_asyncio.fixture
async def tg() -> AsyncIterator[TelegramEmulator]:
    async with TelegramEmulator() as emulator:
        yield emulator


@pytest_asyncio.fixture
async def bot(tg: TelegramEmulator) -> AsyncIterator[Bot]:
    async with Bot(tg.token, base_url=tg.base_url, base_file_url=tg.base_file_url) as b:
        yield b


def seconds(exc: RetryAfter) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, dtm.timedelta) else float(value)


def assert_spec_shaped(tg: TelegramEmulator, type_name: str, obj: Any) -> None:
    errors = tg.spec.check_value(type_name, obj, type_name)
    assert not errors, errors


# --------------------------------------------------------------------------- basics
async def test_get_me(tg: TelegramEmulator, bot: Bot) -> None:
    me = await bot.get_me()
    assert me.username == "SpacesTestBot"
    assert me.is_bot and me.can_join_groups
    assert me.id == tg.bot_id
    assert tg.calls("getMe")[0].ok
    assert_spec_shaped(tg, "User", tg.calls("getMe")[-1].result)


async def test_send_to_group_appears_in_history(tg: TelegramEmulator, bot: Bot) -> None:
    group = tg.create_group("Speakers")
    sent = await bot.send_message(group.id, "Room <b>opens</b> at 18:00 &amp; more", parse_mode="HTML")
    assert sent.text == "Room opens at 18:00 & more"
    assert sent.chat.title == "Speakers" and sent.from_user is not None and sent.from_user.is_bot
    assert [(e.type, e.offset, e.length) for e in sent.entities] == [("bold", 5, 5)]
    second = await bot.send_message(group.id, "second")
    assert (sent.message_id, second.message_id) == (1, 2)
    history = tg.messages_in(group)
    assert [m.text for m in history] == ["Room opens at 18:00 & more", "second"]
    assert history[0].params["parse_mode"] == "HTML"
    assert_spec_shaped(tg, "Message", tg.calls("sendMessage")[0].result)


async def test_dm_needs_the_user_to_have_opened_the_bot(tg: TelegramEmulator, bot: Bot) -> None:
    alice = tg.create_user("Alice", username="alice")
    with pytest.raises(Forbidden, match=r"(?i)bot can't initiate conversation with a user"):
        await bot.send_message(alice.id, "hello")
    start = await tg.user_starts_bot(alice, "space_42")
    assert start.text == "/start space_42"
    assert start.raw is not None and start.raw["entities"] == [
        {"type": "bot_command", "offset": 0, "length": 6}
    ]
    await bot.send_message(alice.id, "reminder")
    assert [m.text for m in tg.dms_to(alice)] == ["reminder"]
    with pytest.raises(BadRequest, match=r"(?i)chat not found"):
        await bot.send_message(424242, "nobody")
    with pytest.raises(ValueError, match=r"(?i)deep-link"):
        await tg.user_starts_bot(alice, "bad payload!")


async def test_blocked_user_is_forbidden_and_bot_is_told(tg: TelegramEmulator, bot: Bot) -> None:
    bob = tg.create_user("Bob", started=True)
    await tg.block_bot(bob)
    with pytest.raises(Forbidden, match=r"(?i)bot was blocked by the user"):
        await bot.send_message(bob.id, "hi")
    updates = await bot.get_updates()
    assert updates[-1].my_chat_member is not None
    assert updates[-1].my_chat_member.new_chat_member.status == "kicked"
    with pytest.raises(RuntimeError, match=r"(?i)blocked"):
        await tg.user_sends(bob, None, "hello?")
    await tg.user_starts_bot(bob)  # "Restart" unblocks
    await bot.send_message(bob.id, "welcome back")


async def test_kicked_from_group_is_forbidden(tg: TelegramEmulator, bot: Bot) -> None:
    group = tg.create_group("G")
    await tg.kick_bot(group)
    with pytest.raises(Forbidden, match=r"(?i)bot was kicked from the supergroup chat"):
        await bot.send_message(group.id, "hi")


# --------------------------------------------------------------------------- content rules
async def test_too_long_text_is_bad_request(tg: TelegramEmulator, bot: Bot) -> None:
    group = tg.create_group()
    await bot.send_message(group.id, "x" * 4096)
    with pytest.raises(BadRequest, match=r"(?i)message is too long"):
        await bot.send_message(group.id, "x" * 4097)
    # Length is counted after entity parsing: tags do not count.
    await bot.send_message(group.id, "<b>" + "y" * 4096 + "</b>", parse_mode="HTML")
    taken = tg.take_violations()
    assert [v.kind for v in taken] == ["content"]
    tg.assert_clean()


@pytest.mark.parametrize(
    ("html", "fragment"),
    [
        ("<foo>x</foo>", 'Unsupported start tag "foo"'),
        ("<b>bold", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<b>x</i>", "Unmatched end tag"),
        ("1 < 2", 'Unsupported start tag ""'),
        ("AT&T", "Unescaped '&'"),
        ('<span class="x">s</span>', 'must have class "tg-spoiler"'),
        ("line<br/>break", 'Unsupported start tag "br"'),
    ],
)
async def test_malformed_html_is_bad_request(
    tg: TelegramEmulator, bot: Bot, html: str, fragment: str
) -> None:
    group = tg.create_group()
    with pytest.raises(BadRequest, match=r"(?i)can't parse entities") as err:
        await bot.send_message(group.id, html, parse_mode="HTML")
    assert fragment.lower() in str(err.value).lower()
    assert len(tg.take_violations()) == 1


async def test_callback_data_over_64_bytes(tg: TelegramEmulator, bot: Bot) -> None:
    group = tg.create_group()
    ok = InlineKeyboardMarkup([[InlineKeyboardButton("ok", callback_data="a" * 64)]])
    await bot.send_message(group.id, "fits", reply_markup=ok)
    too_long = InlineKeyboardMarkup([[InlineKeyboardButton("no", callback_data="é" * 33)]])  # 66 bytes
    with pytest.raises(BadRequest, match=r"(?i)BUTTON_DATA_INVALID"):
        await bot.send_message(group.id, "too long", reply_markup=too_long)
    assert tg.take_violations()[0].message == "Bad Request: BUTTON_DATA_INVALID"


# --------------------------------------------------------------------------- flood limits
async def test_flooding_a_chat_raises_retry_after() -> None:
    clock = FakeClock()
    async with (
        TelegramEmulator(clock=clock, chat_rate=RateRule(2, 1.0)) as tg,
        Bot(tg.token, base_url=tg.base_url) as bot,
    ):
        user = tg.create_user(started=True)
        await bot.send_message(user.id, "1")
        await bot.send_message(user.id, "2")
        with pytest.raises(RetryAfter) as err:
            await bot.send_message(user.id, "3")
        assert seconds(err.value) >= 1
        assert tg.count_429 == 1
        assert tg.calls("sendMessage")[-1].retry_after == 1
        clock.now += 1.01
        await bot.send_message(user.id, "3 again")
        assert [m.text for m in tg.dms_to(user)] == ["1", "2", "3 again"]


async def test_global_and_group_limits() -> None:
    clock = FakeClock()
    async with (
        TelegramEmulator(clock=clock, global_rate=RateRule(3, 1.0), group_rate=RateRule(2, 60.0)) as tg,
        Bot(tg.token, base_url=tg.base_url) as bot,
    ):
        users = [tg.create_user(started=True) for _ in range(4)]
        for u in users[:3]:
            await bot.send_message(u.id, "hi")
        with pytest.raises(RetryAfter):
            await bot.send_message(users[3].id, "hi")
        await bot.send_message(users[3].id, "paid", allow_paid_broadcast=True)
        clock.now += 5
        group = tg.create_group()
        await bot.send_message(group.id, "a")
        clock.now += 2
        await bot.send_message(group.id, "b")
        clock.now += 2
        with pytest.raises(RetryAfter) as err:
            await bot.send_message(group.id, "c")
        assert 50 <= seconds(err.value) <= 56
        assert tg.count_429 == 2


# --------------------------------------------------------------------------- spec validation
async def test_unknown_and_missing_params_are_violations(tg: TelegramEmulator, bot: Bot) -> None:
    group = tg.create_group()
    with pytest.raises(BadRequest, match=r"(?i)unknown parameter 'bogus'"):
        await bot.do_api_request("sendMessage", api_kwargs={"chat_id": group.id, "text": "x", "bogus": 1})
    with pytest.raises(BadRequest, match=r"(?i)missing required parameter 'text'"):
        await bot.do_api_request("sendMessage", api_kwargs={"chat_id": group.id})
    with pytest.raises(BadRequest, match=r"(?i)expected Integer"):
        await bot.do_api_request("deleteMessage", api_kwargs={"chat_id": group.id, "message_id": "first"})
    with pytest.raises(AssertionError, match=r"(?i)3 request"):
        tg.assert_clean()
    kinds = {v.message.split(" for ")[0] for v in tg.take_violations()}
    assert "unknown parameter 'bogus'" in kinds and "missing required parameter 'text'" in kinds
    assert tg.messages_in(group) == []


async def test_raw_requests_are_checked_deeply(tg: TelegramEmulator) -> None:
    group = tg.create_group()
    url = f"{tg.base_url}{tg.token}"
    bad_markup = {"inline_keyboard": [[{"text": "x", "callback_data": "d", "colour": "red"}]]}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/sendMessage", json={"chat_id": group.id, "text": "hi"}) as resp:
            assert resp.status == 200 and (await resp.json())["result"]["text"] == "hi"
        form = {"chat_id": str(group.id), "text": "hi", "reply_markup": json.dumps(bad_markup)}
        async with http.post(f"{url}/sendMessage", data=form) as resp:
            body = await resp.json()
            assert resp.status == 400 and body["ok"] is False and body["error_code"] == 400
            assert "unknown field 'colour' in InlineKeyboardButton" in body["description"]
        async with http.post(f"{url}/sendMessage", data={**form, "reply_markup": "{not json"}) as resp:
            assert resp.status == 400 and "can't parse JSON" in (await resp.json())["description"]
        async with http.post(f"{url}/sendMesage", data={"chat_id": "1", "text": "x"}) as resp:
            assert resp.status == 404
        async with http.get(f"{tg.base_url}123:wrongtokenwrongtokenwrong/getMe") as resp:
            assert resp.status == 401
        async with http.get(f"{url}/getme") as resp:  # method names are case-insensitive
            assert resp.status == 200
    assert {v.kind for v in tg.take_violations()} == {"spec", "token"}


async def test_unimplemented_method_and_add_method_with_multipart(tg: TelegramEmulator, bot: Bot) -> None:
    group = tg.create_group()
    with pytest.raises(BadRequest, match=r"(?i)not implemented"):
        await bot.send_dice(group.id)
    assert tg.take_violations()[0].kind == "unimplemented"

    received: dict[str, Any] = {}

    @tg.method("sendDocument")
    def send_document(params: dict[str, Any]) -> dict[str, Any]:
        chat = tg.resolve_chat(params["chat_id"])
        tg.check_can_send(chat)
        filename, content = params["document"]
        received.update(filename=filename, content=content, caption=params.get("caption"))
        return {
            "message_id": 99,
            "date": int(time.time()),
            "chat": chat.to_api(),
            "from": tg.bot_user,
            "document": {"file_id": "F1", "file_unique_id": "U1", "file_name": filename},
        }

    msg = await bot.send_document(group.id, document=b"%PDF-1.4", filename="agenda.pdf", caption="Agenda")
    assert msg.document is not None and msg.document.file_name == "agenda.pdf"
    assert received == {"filename": "agenda.pdf", "content": b"%PDF-1.4", "caption": "Agenda"}


async def test_responses_follow_the_spec(tg: TelegramEmulator, bot: Bot) -> None:
    owner = tg.create_user("Olga", username="olga")
    admin = tg.create_user("Adam")
    member = tg.create_user("Mia")
    group = tg.create_group("Club", creator=owner, admins=[admin], members=[member], bot_is_admin=True)
    await bot.send_message(
        group.id, "x", reply_markup=InlineKeyboardMarkup([[InlineKeyboardButton("b", url="https://e.org")]])
    )
    await bot.get_chat(group.id)
    await bot.get_chat_member(group.id, owner.id)
    await bot.get_chat_administrators(group.id)
    await bot.get_webhook_info()
    for call in tg.calls():
        returns = tg.spec.method(call.method)
        assert returns is not None and call.ok
        for type_expr in returns.returns[:1]:
            if type_expr not in ("Boolean", "True", "ChatMember", "Array of ChatMember"):
                assert_spec_shaped(tg, type_expr, call.result)
    for result in [tg.calls("getChatMember")[0].result, *tg.calls("getChatAdministrators")[0].result]:
        assert_spec_shaped(tg, "ChatMember", result)


# --------------------------------------------------------------------------- chats and members
async def test_chat_members_and_admins(tg: TelegramEmulator, bot: Bot) -> None:
    owner = tg.create_user("Olga")
    admin = tg.create_user("Adam")
    member = tg.create_user("Mia")
    stranger = tg.create_user("Sam")
    group = tg.create_group("Club", creator=owner, members=[member])
    tg.make_admin(group, admin, can_pin_messages=False)
    assert isinstance(await bot.get_chat_member(group.id, owner.id), ChatMemberOwner)
    adm = await bot.get_chat_member(group.id, admin.id)
    assert isinstance(adm, ChatMemberAdministrator) and adm.can_pin_messages is False
    assert isinstance(await bot.get_chat_member(group.id, member.id), ChatMemberMember)
    assert isinstance(await bot.get_chat_member(group.id, stranger.id), ChatMemberLeft)
    admins = await bot.get_chat_administrators(group.id)
    assert [a.user.id for a in admins] == [owner.id, admin.id]
    bot_member = await bot.get_chat_member(group.id, tg.bot_id)
    assert bot_member.status == "member"
    with pytest.raises(BadRequest, match=r"(?i)user not found"):
        await bot.get_chat_member(group.id, 5)
    chat = await bot.get_chat(group.id)
    assert chat.title == "Club" and chat.type == "supergroup"
    assert await bot.get_chat_member_count(group.id) == 4


async def test_pin_needs_rights_in_groups(tg: TelegramEmulator, bot: Bot) -> None:
    group = tg.create_group()
    msg = await bot.send_message(group.id, "Live now")
    with pytest.raises(BadRequest, match=r"(?i)not enough rights"):
        await bot.pin_chat_message(group.id, msg.message_id)
    group.bot_status = "administrator"
    assert await bot.pin_chat_message(group.id, msg.message_id)
    pinned = tg.pinned_message(group)
    assert pinned is not None and pinned.text == "Live now"
    assert (await bot.get_chat(group.id)).pinned_message is not None
    assert len(tg.messages_in(group, include_service=True)) == 2
    assert await bot.unpin_chat_message(group.id, msg.message_id)
    assert tg.pinned_message(group) is None
    with pytest.raises(BadRequest, match=r"(?i)message to pin not found"):
        await bot.pin_chat_message(group.id, 77)


async def test_commands_and_menu_button(tg: TelegramEmulator, bot: Bot) -> None:
    from telegram import BotCommand, BotCommandScopeAllGroupChats, MenuButtonCommands

    await bot.set_my_commands([BotCommand("next", "Next space"), BotCommand("subscribe", "Remind me")])
    await bot.set_my_commands([BotCommand("host", "Host a space")], scope=BotCommandScopeAllGroupChats())
    assert [c.command for c in await bot.get_my_commands()] == ["next", "subscribe"]
    assert [c.command for c in await bot.get_my_commands(scope=BotCommandScopeAllGroupChats())] == ["host"]
    await bot.delete_my_commands()
    assert await bot.get_my_commands() == ()
    with pytest.raises(BadRequest, match=r"(?i)BOT_COMMAND_INVALID"):
        await bot.set_my_commands([BotCommand("Bad-Command", "x")])
    tg.take_violations()
    user = tg.create_user(started=True)
    await bot.set_chat_menu_button(user.id, MenuButtonCommands())
    assert tg.private_chat(user).menu_button == {"type": "commands"}
    assert isinstance(await bot.get_chat_menu_button(user.id), MenuButtonCommands)


# --------------------------------------------------------------------------- edits, deletes, buttons
async def test_edits_and_not_modified(tg: TelegramEmulator, bot: Bot) -> None:
    group = tg.create_group()
    kb = InlineKeyboardMarkup([[InlineKeyboardButton("Remind me", callback_data="sub:1")]])
    msg = await bot.send_message(group.id, "Space at 18:00", reply_markup=kb)
    edited = await bot.edit_message_text(
        "Space at <b>19:00</b>", group.id, msg.message_id, parse_mode="HTML", reply_markup=kb
    )
    assert isinstance(edited, type(msg)) and edited.text == "Space at 19:00" and edited.edit_date is not None
    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await bot.edit_message_text(
            "Space at <b>19:00</b>", group.id, msg.message_id, parse_mode="HTML", reply_markup=kb
        )
    await bot.edit_message_reply_markup(group.id, msg.message_id, reply_markup=None)
    record = tg.message(group, msg.message_id)
    assert [v.text for v in record.versions] == ["Space at 18:00", "Space at 19:00", "Space at 19:00"]
    assert record.reply_markup is None and len(record.edits) == 2
    with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
        await bot.edit_message_text("x", group.id, 999)
    assert await bot.delete_message(group.id, msg.message_id)
    with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
        await bot.edit_message_text("x", group.id, msg.message_id)
    with pytest.raises(BadRequest, match=r"(?i)message to delete not found"):
        await bot.delete_message(group.id, msg.message_id)
    user_msg = await tg.user_sends(tg.create_user(), group, "/next")
    with pytest.raises(BadRequest, match=r"(?i)message can't be edited"):
        await bot.edit_message_text("hijack", group.id, user_msg.message_id)
    tg.assert_clean()


async def test_press_button_and_answer(tg: TelegramEmulator, bot: Bot) -> None:
    user = tg.create_user(started=True)
    kb = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton("Yes", callback_data="rsvp:yes"),
                InlineKeyboardButton("No", callback_data="rsvp:no"),
            ]
        ]
    )
    sent = await bot.send_message(user.id, "Coming?", reply_markup=kb)
    record = await tg.press_button(user, tg.message(user.id, sent.message_id), "rsvp:yes")
    (update,) = await bot.get_updates()
    query = update.callback_query
    assert query is not None and query.data == "rsvp:yes" and query.id == record.id
    assert query.message is not None and query.message.message_id == sent.message_id
    assert tg.callback_answer(record) is None
    assert await query.answer("Noted!")
    assert tg.callback_answer(record) == {
        "callback_query_id": record.id,
        "text": "Noted!",
        "time": pytest.approx(tg.clock(), abs=5),
    }
    with pytest.raises(BadRequest, match=r"(?i)query is too old"):
        await query.answer("again")
    with pytest.raises(BadRequest, match=r"(?i)query is too old"):
        await bot.answer_callback_query("123456")
    with pytest.raises(ValueError, match=r"(?i)no such callback button"):
        await tg.press_button(user, tg.message(user.id, sent.message_id), "rsvp:maybe")
    by_text = await tg.press_button(user, tg.message(user.id, sent.message_id), text="No")
    assert by_text.data == "rsvp:no"


async def test_stale_callback_query() -> None:
    clock = FakeClock()
    async with TelegramEmulator(clock=clock) as tg, Bot(tg.token, base_url=tg.base_url) as bot:
        user = tg.create_user(started=True)
        kb = InlineKeyboardMarkup([[InlineKeyboardButton("Go", callback_data="go")]])
        sent = await bot.send_message(user.id, "?", reply_markup=kb)
        record = await tg.press_button(user, tg.message(user.id, sent.message_id))
        clock.now += 16
        with pytest.raises(BadRequest, match=r"(?i)query is too old"):
            await bot.answer_callback_query(record.id)


# --------------------------------------------------------------------------- updates: polling
async def test_get_updates_offset_limit_and_allowed_updates(tg: TelegramEmulator, bot: Bot) -> None:
    user = tg.create_user()
    for i in range(3):
        await tg.user_sends(user, None, f"m{i}")
    first = await bot.get_updates(limit=2)
    assert [u.message.text for u in first if u.message] == ["m0", "m1"]
    rest = await bot.get_updates(offset=first[-1].update_id + 1)
    assert [u.message.text for u in rest if u.message] == ["m2"]
    assert await bot.get_updates(offset=rest[-1].update_id + 1) == ()
    await tg.user_sends(user, None, "only messages")
    sent = await bot.send_message(
        user.id, "?", reply_markup=InlineKeyboardMarkup([[InlineKeyboardButton("x", callback_data="x")]])
    )
    await tg.press_button(user, tg.message(user.id, sent.message_id))
    only_cb = await bot.get_updates(allowed_updates=["callback_query"])
    assert [u.callback_query is not None for u in only_cb] == [True]


async def test_long_poll_returns_promptly(tg: TelegramEmulator, bot: Bot) -> None:
    user = tg.create_user()

    async def later() -> None:
        await asyncio.sleep(0.1)
        await tg.user_sends(user, None, "wake up")

    task = asyncio.create_task(later())
    began = time.monotonic()
    updates = await bot.get_updates(timeout=5)
    await task
    assert time.monotonic() - began < 1.0
    assert updates[0].message is not None and updates[0].message.text == "wake up"
    began = time.monotonic()
    assert await bot.get_updates(offset=updates[0].update_id + 1, timeout=0) == ()
    assert time.monotonic() - began < 0.5


async def test_application_long_polling_answers_start(tg: TelegramEmulator) -> None:
    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None and context.args
        await update.effective_message.reply_html(f"Subscribed to <b>{context.args[0]}</b>")

    async def pressed(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.callback_query is not None
        await update.callback_query.answer("ok")

    app: Application[Any, Any, Any, Any, Any, Any] = (
        ApplicationBuilder().token(tg.token).base_url(tg.base_url).build()
    )
    app.add_handler(CommandHandler("start", start))
    app.add_handler(CallbackQueryHandler(pressed))
    user = tg.create_user("Ada", username="ada")
    async with app:
        assert app.updater is not None
        await app.updater.start_polling(poll_interval=0, timeout=dtm.timedelta(seconds=5))
        await app.start()
        try:
            await tg.user_starts_bot(user, "space_7")
            reply = await tg.wait_for_message(user.id, within=3)
            assert reply.text == "Subscribed to space_7"
            assert reply.entities == [{"type": "bold", "offset": 14, "length": 7}]
            group = tg.create_group()
            await tg.user_sends(user, group, f"/start@{tg.bot_username} grp")
            await tg.wait_for_message(group, lambda m: m.text == "Subscribed to grp", within=3)
            kb = InlineKeyboardMarkup([[InlineKeyboardButton("x", callback_data="x")]])
            sent = await app.bot.send_message(user.id, "press", reply_markup=kb)
            record = await tg.press_button(user, tg.message(user.id, sent.message_id))
            await tg.wait_for_call("answerCallbackQuery", within=3)
            assert tg.callback_answer(record) is not None
        finally:
            await app.updater.stop()
            await app.stop()
    assert tg.calls("deleteWebhook")


async def test_privacy_mode_hides_plain_group_messages(tg: TelegramEmulator, bot: Bot) -> None:
    user = tg.create_user()
    group = tg.create_group()
    plain = await tg.user_sends(user, group, "just chatting")
    other_bot_cmd = await tg.user_sends(user, group, "/start@OtherBot")
    mention = await tg.user_sends(user, group, f"hey @{tg.bot_username}")
    cmd = await tg.user_sends(user, group, "/next")
    assert (plain.delivered, other_bot_cmd.delivered, mention.delivered, cmd.delivered) == (
        False,
        False,
        True,
        True,
    )
    assert [u.message.text for u in await bot.get_updates() if u.message] == [mention.text, "/next"]
    assert len(tg.messages_in(group)) == 4


async def test_concurrent_get_updates_conflict(tg: TelegramEmulator, bot: Bot) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.05)
    async with aiohttp.ClientSession() as http, http.post(f"{tg.base_url}{tg.token}/getUpdates") as resp:
        assert (await resp.json()) == {"ok": True, "result": []}
    with pytest.raises(Conflict, match=r"(?i)terminated by other getUpdates"):
        await first


async def test_post_raw_update(tg: TelegramEmulator, bot: Bot) -> None:
    uid = await tg.post_raw_update(
        {"message": {"message_id": 1, "date": 0, "chat": {"id": 5, "type": "private"}, "text": "no sender"}}
    )
    (update,) = await bot.get_updates()
    assert update.update_id == uid and update.message is not None and update.message.from_user is None


# --------------------------------------------------------------------------- updates: webhook
async def test_webhook_delivery_with_secret_and_retries(tg: TelegramEmulator, bot: Bot) -> None:
    received: list[tuple[int, str | None]] = []
    statuses = [500, 200]

    async def hook(request: web.Request) -> web.Response:
        body = await request.json()
        received.append((body["update_id"], request.headers.get("X-Telegram-Bot-Api-Secret-Token")))
        return web.Response(status=statuses.pop(0) if statuses else 200)

    app = web.Application()
    app.router.add_post("/tg", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        assert await bot.set_webhook(f"http://127.0.0.1:{port}/tg", secret_token="s3cr3t-Token_1")
        user = tg.create_user()
        await tg.user_sends(user, None, "first")
        await tg.user_sends(user, None, "second")
        await tg.wait_updates_consumed(within=3)
        ids = [u["update_id"] for u in tg.updates_sent]
        assert received == [
            (ids[0], "s3cr3t-Token_1"),
            (ids[0], "s3cr3t-Token_1"),
            (ids[1], "s3cr3t-Token_1"),
        ]
        info = await bot.get_webhook_info()
        assert info.url.endswith("/tg") and info.pending_update_count == 0
        assert info.last_error_message is not None and "500" in info.last_error_message
        with pytest.raises(Conflict, match=r"(?i)webhook is active"):
            await bot.get_updates()
        statuses.extend([503, 503, 503])
        await tg.user_sends(user, None, "lost")
        await tg.wait_updates_consumed(within=3)
        assert tg.webhook_failures[-1]["message"]["text"] == "lost"
        assert await bot.delete_webhook()
        await tg.user_sends(user, None, "polled")
        assert [u.message.text for u in await bot.get_updates() if u.message] == ["polled"]
    finally:
        await runner.cleanup()


async def test_bad_webhook_secret_is_rejected(tg: TelegramEmulator, bot: Bot) -> None:
    with pytest.raises(BadRequest, match=r"(?i)secret token"):
        await bot.set_webhook("https://example.org/hook", secret_token="has spaces")
    assert tg.take_violations()[0].kind == "content"


# --------------------------------------------------------------------------- misc
async def test_fault_injection(tg: TelegramEmulator, bot: Bot) -> None:
    user = tg.create_user(started=True)
    tg.fail_next("sendMessage", 500, "Internal Server Error")
    with pytest.raises(NetworkError):
        await bot.send_message(user.id, "x")
    tg.fail_next("sendMessage", 429, "Too Many Requests: retry after 7", retry_after=7)
    with pytest.raises(RetryAfter) as err:
        await bot.send_message(user.id, "x")
    assert seconds(err.value) == 7 and tg.count_429 == 1
    await bot.send_message(user.id, "x")


async def test_random_faults_errors_are_not_delivered_resets_are(tg: TelegramEmulator, bot: Bot) -> None:
    tg.rate_limits = False  # 200 messages at once: the faults are what this test is about
    users = [tg.create_user(f"U{i}", started=True) for i in range(200)]
    tg.inject_faults(seed=7, error_rate=0.1, reset_rate=0.1)
    outcomes = {"ok": set(), "failed": set()}
    for u in users:
        try:
            await bot.send_message(u.id, "hello")
            outcomes["ok"].add(u.id)
        except NetworkError:  # a 500, or the connection cut before the answer: the bot cannot tell
            outcomes["failed"].add(u.id)
    errors, resets = tg.faults_injected["error"], tg.faults_injected["reset"]
    assert errors > 5 and resets > 5 and len(outcomes["failed"]) == errors + resets
    received = tg.received(containing="hello")
    # what was received: every answered send, plus the resets (delivered, though the bot saw a failure)
    assert set(received) - outcomes["ok"] and len(received) == len(outcomes["ok"]) + resets
    assert set(received.values()) == {1}
    tg.inject_faults(seed=7)  # no rates: off
    await bot.send_message(users[0].id, "hello")
    assert tg.received(containing="hello")[users[0].id] == 1 + (users[0].id in received)


async def test_files_through_base_file_url(tg: TelegramEmulator, bot: Bot) -> None:
    file_id = tg.add_file(b"recording bytes", "voice/rec1.ogg")
    f = await bot.get_file(file_id)
    assert f.file_path is not None and f.file_path.endswith("voice/rec1.ogg")
    assert bytes(await f.download_as_bytearray()) == b"recording bytes"


async def test_strict_exit_fails_on_violations() -> None:
    tg = TelegramEmulator()
    with pytest.raises(AssertionError, match=r"(?i)unknown method"):
        async with tg, Bot(tg.token, base_url=tg.base_url) as bot:
            with pytest.raises(Exception, match=r"(?i)Not Found"):
                await bot.do_api_request("sendTelepathy", api_kwargs={"chat_id": 1})
    lenient = TelegramEmulator(strict=False)
    async with lenient, Bot(lenient.token, base_url=lenient.base_url) as bot:
        with pytest.raises(BadRequest):
            await bot.do_api_request("sendMessage", api_kwargs={"chat_id": 1})
    assert lenient.violations


def test_parse_html_entities_use_utf16_offsets() -> None:
    text, entities = parse_html('🎙 <b>Live</b> <a href="https://x.org/?a=1&amp;b=2">now</a> &lt;3')
    assert text == "🎙 Live now <3"
    assert entities == [
        {"type": "bold", "offset": 3, "length": 4},
        {"type": "text_link", "offset": 8, "length": 3, "url": "https://x.org/?a=1&b=2"},
    ]
    _, pre = parse_html('<pre><code class="language-python">x = 1</code></pre>')
    assert {"type": "pre", "offset": 0, "length": 5, "language": "python"} in pre
    assert parse_html("AT&T", strict_ampersand=False)[0] == "AT&T"
    with pytest.raises(EntityParseError, match=r"(?i)byte offset 3"):
        parse_html("é & <x>")


def test_spec_is_loaded_once_and_validates_nested_objects() -> None:
    spec = load_spec()
    assert spec is load_spec()
    assert spec.method("SENDMESSAGE") is spec.method("sendMessage")
    params, problems = spec.check_request(
        "sendMessage",
        {
            "chat_id": "-100123",
            "text": "hi",
            "disable_notification": "true",
            "reply_markup": json.dumps({"inline_keyboard": [[{"text": "a", "callback_data": 5}]]}),
        },
    )
    assert params["chat_id"] == -100123 and params["disable_notification"] is True
    assert problems == ["reply_markup.inline_keyboard[0][0].callback_data: expected String, got 5"]
    _, problems = spec.check_request(
        "setMyCommands", {"commands": "[]", "scope": json.dumps({"type": "nope"})}
    )
    assert problems
    _, problems = spec.check_request(
        "sendMessage", {"chat_id": "1", "text": "x", "disable_notification": "maybe"}
    )
    assert problems == ["disable_notification: expected Boolean, got 'maybe'"]


def test_users_are_plain_records() -> None:
    tg = TelegramEmulator()
    u = tg.create_user("Zoe", username="zoe", language_code="de")
    assert isinstance(u, TgUser) and u.to_api() == {
        "id": u.id,
        "is_bot": False,
        "first_name": "Zoe",
        "username": "zoe",
        "language_code": "de",
    }
    g = tg.create_group("Plain", supergroup=False)
    assert g.id < 0 and g.type == "group" and tg.private_chat(u).type == "private"


async def test_shared_fixture_is_strict(telegram_emulator: TelegramEmulator) -> None:  # noqa: F811
    assert telegram_emulator.strict and telegram_emulator.port
    async with Bot(telegram_emulator.token, base_url=telegram_emulator.base_url) as bot:
        assert (await bot.get_me()).username == telegram_emulator.bot_username


async def test_malformed_answers_of_added_methods_are_caught(tg: TelegramEmulator, bot: Bot) -> None:
    tg.add_method("getMyName", lambda params: {"nam": "typo"})
    await bot.do_api_request("getMyName")
    (violation,) = tg.take_violations()
    assert violation.kind == "emulator" and "missing required field 'name'" in violation.message
    assert tg.spec.check_value("Message", {"message_id": 1, "date": 0}, "m") == [
        "m: missing required field 'chat' of Message"
    ]
