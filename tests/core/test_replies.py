"""Answers through the outbox (core/services/replies.py) and the buttons that state their result — on the
memory, SQLite and PostgreSQL backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.models import Delivery, DeliveryKind, DeliveryStatus
from core.notices import Action, ActionKind, Verb, reply
from core.refs import ChatRef, Platform, UserRef
from core.services.manage import ManageService
from core.services.replies import (
    Answer,
    RepliesService,
    from_payload,
    handled_key,
    reply_key,
    to_payload,
)
from tests.conftest import CoreEnv, StaticLinks

EVENT = "tg:7000:42"


def _service(env: CoreEnv) -> RepliesService:
    return RepliesService(env.db.uow, env.clock, env.wake)


def _answers(env: CoreEnv, n: int = 2) -> list[Answer]:
    return [
        Answer(env.chat, reply(f"answer {i}\nsecond line", locale="fr", reply_to="77", ask=i == 1))
        for i in range(n)
    ]


async def test_an_event_is_answered_once_whoever_finishes_it(core_env: CoreEnv) -> None:
    replies = _service(core_env)
    assert not await replies.already_handled(Platform.CONSOLE, EVENT)
    assert await replies.finish(Platform.CONSOLE, EVENT, _answers(core_env))
    # a second attempt (a redelivered update, another web process) finds it done and queues nothing
    assert not await replies.finish(Platform.CONSOLE, EVENT, _answers(core_env, 3))
    assert await replies.already_handled(Platform.CONSOLE, EVENT)
    rows = [d for d in await core_env.deliveries() if d.kind is DeliveryKind.REPLY]
    assert [d.key for d in rows] == [reply_key(EVENT, 0), reply_key(EVENT, 1)]
    assert all(d.space_id is None and d.recipient == str(core_env.chat) for d in rows)
    assert core_env.wake.earliest == core_env.clock.now()


async def test_answers_are_sent_by_the_engine_and_their_messages_are_known(core_env: CoreEnv) -> None:
    replies = _service(core_env)
    await replies.finish(Platform.CONSOLE, EVENT, _answers(core_env))
    await core_env.run()
    posts = core_env.platform.of("post")
    assert [p.notice.lines for p in posts] == [("answer 0", "second line"), ("answer 1", "second line")]
    assert [(p.notice.reply_to, p.notice.ask, p.notice.locale) for p in posts] == [
        ("77", False, "fr"),
        ("77", True, "fr"),
    ]
    sent = await replies.sent_message(reply_key(EVENT, 1))
    assert sent is not None and sent.chat == core_env.chat
    assert await replies.sent_message(reply_key(EVENT, 5)) is None


async def test_a_rate_limited_or_failing_answer_is_retried_never_dropped(core_env: CoreEnv) -> None:
    env = core_env
    await _service(env).finish(Platform.CONSOLE, EVENT, _answers(env, 1))
    env.platform.rate_limit_next = [3.0]
    await env.run()
    (row,) = [d for d in await env.deliveries() if d.kind is DeliveryKind.REPLY]
    assert row.status is DeliveryStatus.PENDING and row.attempts == 0  # a 429 costs no attempt
    env.platform.fail_next = 2
    for _ in range(3):
        await env.advance(timedelta(minutes=1))
    (row,) = [d for d in await env.deliveries() if d.kind is DeliveryKind.REPLY]
    assert row.status is DeliveryStatus.SENT and len(env.platform.of("post")) == 1


async def test_an_answer_to_a_chat_that_is_gone_is_dead_with_the_reason(core_env: CoreEnv) -> None:
    env = core_env
    env.platform.gone_chats.add(env.chat)
    await _service(env).finish(Platform.CONSOLE, EVENT, _answers(env, 1))
    await env.run()
    (row,) = [d for d in await env.deliveries() if d.kind is DeliveryKind.REPLY]
    assert row.status is DeliveryStatus.DEAD and "chat unavailable" in (row.last_error or "")


async def test_a_reply_row_with_a_broken_payload_is_dead_lettered(core_env: CoreEnv) -> None:
    env = core_env
    async with env.db.uow() as uow:
        await uow.deliveries.add(
            [
                Delivery(
                    key="reply:broken",
                    kind=DeliveryKind.REPLY,
                    platform=Platform.CONSOLE,
                    recipient=str(env.chat),
                    space_id=None,
                    revision=0,
                    due_at=env.clock.now(),
                    payload='{"v": 99}',
                )
            ]
        )
        await uow.commit()
    await env.run()
    (row,) = [d for d in await env.deliveries() if d.key == "reply:broken"]
    assert row.status is DeliveryStatus.DEAD and "malformed reply" in (row.last_error or "")
    assert not env.platform.of("post")


def test_payload_round_trip_keeps_everything_the_platform_needs() -> None:
    notice = reply(
        "Line <1> & `code`\nLine 2 — ünïcode ☕",
        locale="fr",
        reply_to="123",
        ask=True,
        actions=(Action("🔔 Go", ActionKind.URL, "https://t.me/bot?start=s_x"),),
    )
    back = from_payload(to_payload(notice))
    assert back == notice
    for broken in (None, "", "[]", "{", '{"v": 1}', '{"v": 1, "lines": 5}'):
        with pytest.raises(ValueError):
            from_payload(broken)


async def test_settled_answers_are_pruned_with_old_request_ids(core_env: CoreEnv) -> None:
    env = core_env
    await _service(env).finish(Platform.CONSOLE, EVENT, _answers(env, 1))
    await env.run()
    env.clock.advance(timedelta(days=40))
    outbox = env.db.outbox()
    pruned = await outbox.prune(
        settled_before=env.clock.now() - timedelta(days=30),
        requests_before=datetime.now(UTC) + timedelta(days=1),  # the handled mark too (bookkeeping time)
    )
    assert pruned >= 2
    assert not [d for d in await env.deliveries() if d.kind is DeliveryKind.REPLY]
    assert not await _service(env).already_handled(Platform.CONSOLE, EVENT)


async def test_buttons_state_the_result_they_ask_for(core_env: CoreEnv) -> None:
    from tests.core.test_spaces import schedule

    space = await schedule(core_env)
    manage = ManageService(core_env.spaces, StaticLinks())
    alice = UserRef(core_env.chat.platform, "alice")
    group = ChatRef(core_env.chat.platform, "lobby")

    async def press(verb: Verb) -> str:
        async def nobody(chat: ChatRef, user: UserRef) -> bool:
            return False

        return (await manage.run(verb, alice, "en", space.id, is_moderator=nobody, via_chat=group)).text

    texts = [await press(v) for v in (Verb.SUBSCRIBE, Verb.SUBSCRIBE, Verb.UNSUBSCRIBE, Verb.UNSUBSCRIBE)]
    assert "Reminder set" in texts[0] and "already subscribed" in texts[1]
    assert "Reminder removed" in texts[2] and "weren't subscribed" in texts[3]
    assert await core_env.spaces.subscriber_count(space.id) == 0
    assert await press(Verb.SUBSCRIBE) and await core_env.spaces.subscriber_count(space.id) == 1


def test_handled_marks_and_reply_keys_name_the_event() -> None:
    assert handled_key(EVENT) == "tg:7000:42:handled"
    assert reply_key(EVENT, 0) == "reply:tg:7000:42:0"
