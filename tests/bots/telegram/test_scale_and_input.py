"""Telegram: a 2,000-subscriber fan-out under the flood limits, the webhook, and hostile input."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter

import aiohttp
import pytest

from bots.telegram.adapter import WEBHOOK_PATH
from bots.telegram.translate import chat_ref, user_ref
from core.commands import StartSpace, Subscribe
from core.models import DeliveryStatus, SpaceStatus
from core.rules import Actor
from core.services.spaces import SpaceService
from tests.bots.telegram.conftest import WEBHOOK_SECRET, TgEnv
from tests.bots.telegram.test_flows import schedule_in_group


@pytest.mark.slow
async def test_two_thousand_subscribers_notified_once_under_the_flood_limits(tg_env: TgEnv) -> None:
    host, group, _ = await schedule_in_group(tg_env)
    (space,) = await tg_env.spaces.upcoming(chat_ref(group.id))
    fans = [tg_env.tg.create_user(f"Fan{i}", started=True) for i in range(2000)]
    for fan in fans:
        await tg_env.spaces.subscribe(Subscribe(user_ref(fan.id), space.id, via_chat=chat_ref(group.id)))
    await tg_env.spaces.start(StartSpace(Actor(user_ref(host.id)), space.id))
    t0 = tg_env.vt.t
    await tg_env.deliver(rounds=2000)
    sent = Counter(
        m.chat_id
        for m in (msg for f in fans for msg in tg_env.tg.bot_messages(f.id))
        if "is live now" in m.text
    )
    assert len(sent) == 2000 and set(sent.values()) == {1}  # 0 losses, 0 duplicates
    assert await tg_env.count(DeliveryStatus.SENT) >= 2000
    assert await tg_env.count(DeliveryStatus.DEAD) == 0
    virtual_seconds = tg_env.vt.t - t0
    print(f"\n2,000 live notices: {tg_env.tg.count_429} × 429, {virtual_seconds:.0f} s of Telegram time")
    # The budget paces; 429s are the exception, and each is retried after retry_after without loss or
    # duplicate (asserted above). Unpaced, almost every one of the 2,000 sends would be refused; the few
    # left come from network jitter at a window's edge, which the test clock (running 4x fast) magnifies.
    assert tg_env.tg.count_429 < 100
    assert virtual_seconds >= 2000 / 30  # never faster than Telegram's ~30 messages/s


async def test_webhook_checks_the_secret_and_ignores_retries(hook_env: TgEnv) -> None:
    tg, spaces = hook_env.tg, hook_env.spaces
    hook = hook_env.web_url + WEBHOOK_PATH
    assert tg.calls("setWebhook")[-1].params["secret_token"] == WEBHOOK_SECRET
    host = tg.create_user("Hana", started=True)
    group = tg.create_group("Builders", creator=host)
    await tg.user_sends(host, group, "/space tomorrow 20:00 Via webhook")
    spaces_now = await _eventually(lambda: spaces.upcoming(chat_ref(group.id)))
    assert spaces_now[0].title == "Via webhook"
    update = {
        "update_id": 999_001,
        "message": {
            "message_id": 77,
            "date": 1_764_000_000,
            "chat": {"id": group.id, "type": "supergroup", "title": "B"},
            "from": {"id": host.id, "is_bot": False, "first_name": "Hana"},
            "text": "/space tomorrow 21:00 Retried",
            "entities": [{"type": "bot_command", "offset": 0, "length": 6}],
        },
    }
    async with aiohttp.ClientSession() as http:
        for secret in ("wrong", ""):
            async with http.post(hook, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": secret}) as r:
                assert r.status == 403
        async with http.post(hook, json=update) as r:
            assert r.status == 403  # no header at all
        for _ in range(3):  # Telegram retries an update it thinks we missed: one Space, not three
            async with http.post(
                hook, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET}
            ) as r:
                assert r.status == 200
        async with http.post(
            hook, data=b"{not json", headers={"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET}
        ) as r:
            assert r.status == 400
    titles = await _eventually(lambda: _titles_if(spaces, group.id, 2))
    assert sorted(titles) == ["Retried", "Via webhook"]
    # a retried update the core would not dedupe by itself (/help) is still answered once
    help_update = {
        **update,
        "update_id": 999_002,
        "message": {
            **update["message"],
            "message_id": 78,
            "text": "/help",
            "entities": [{"type": "bot_command", "offset": 0, "length": 5}],
        },
    }
    async with aiohttp.ClientSession() as http:
        for _ in range(3):
            async with http.post(
                hook, json=help_update, headers={"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET}
            ) as r:
                assert r.status == 200  # 200 only once the answer is queued: the next one finds it done
    await tg.wait_for_message(group, lambda m: "upcoming Spaces here" in m.text)
    await hook_env.settled()
    helps = [m for m in tg.bot_messages(group) if "/spaces" in m.text and "upcoming Spaces here" in m.text]
    assert len(helps) == 1


async def _titles_if(spaces: SpaceService, chat_id: int, n: int) -> list[str] | None:
    found = [s.title for s in await spaces.upcoming(chat_ref(chat_id))]
    return found if len(found) == n else None


async def _eventually(check):  # type: ignore[no-untyped-def]

    for _ in range(500):
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


@pytest.mark.parametrize(
    ("title", "expect"),
    [
        ("<b>bold</b> & <script>alert(1)</script>", "<b>bold</b> & <script>alert(1)</script>"),
        ("@everyone join now", "@everyone join now"),
        ("Café ☕ — 20h “live”", "Café ☕ — 20h “live”"),
    ],
)
async def test_hostile_titles_are_shown_exactly_as_typed(tg_env: TgEnv, title: str, expect: str) -> None:
    _host, _group, card = await schedule_in_group(tg_env, f"/space tomorrow 20:00 {title}")
    assert card.text.splitlines()[0] == expect
    # the title is one link to the Space's page and nothing else: no markup of the user's got through
    kinds = {e["type"] for e in card.entities if e["offset"] < len(expect)}
    assert kinds <= {"bold", "text_link"}
    tg_env.tg.assert_clean()  # no HTML parse error reached Telegram


async def test_bad_input_gets_clear_replies_and_stores_nothing(tg_env: TgEnv) -> None:
    host = tg_env.tg.create_user("Hana", started=True)
    fr = tg_env.tg.create_user("Zoé", language_code="fr", started=True)
    group = tg_env.tg.create_group("Builders", creator=host)
    cases = [
        (host, "/space tomorrow 20:00 " + "x" * 5000, "too long"),
        (host, "/space tomorrow 20:00 " + "y" * 150, "keep it under 100"),
        (host, "/space blorp o'clock Party", "couldn't read"),
        (host, "/space yesterday 20:00 Party", "already passed"),
        (host, "/space 2027-03-28 02:30 Gap", "doesn't exist in Europe/Paris"),
        (host, "/space 2027-10-31 02:30 Overlap", "+01:00"),
        (host, "/space 2026-12-01 18:30 Mars/Olympus Party", "Mars/Olympus"),
        (host, "/cancel nope", "which Space"),
        (host, "/cancel 2222222222", "can't find a Space"),
        (host, "/reschedule", "Usage"),
        (fr, "/space hier 20h Fête", "déjà passée"),
        (fr, "/space demain 20h", "titre"),
    ]
    for user, text, expect in cases:
        await tg_env.tg.user_sends(user, group, text)
        reply = await tg_env.tg.wait_for_message(group, lambda m, e=expect: e in m.text)  # type: ignore[misc]
        assert reply is not None
    assert await tg_env.spaces.upcoming(chat_ref(group.id)) == []
    tg_env.tg.assert_clean()


async def test_malformed_updates_break_nothing(tg_env: TgEnv) -> None:
    host, group, card = await schedule_in_group(tg_env)
    (space,) = await tg_env.spaces.upcoming(chat_ref(group.id))
    stranger = tg_env.tg.create_user("Eve", started=True)
    await tg_env.tg.post_raw_update(
        {
            "callback_query": {
                "id": "123",
                "from": {"id": stranger.id, "is_bot": False, "first_name": "Eve"},
                "chat_instance": "1",
                "data": "cancel:" + space.id,
                "message": card.raw or {},
            }
        }
    )
    await tg_env.tg.post_raw_update({"message": {"message_id": 1}})  # no chat, no date: malformed
    await tg_env.tg.post_raw_update({"edited_message": {"weird": True}})
    await tg_env.tg.post_raw_update(
        {
            "callback_query": {
                "id": "124",
                "from": {"id": stranger.id, "is_bot": False, "first_name": "Eve"},
                "chat_instance": "1",
                "data": "drop table;",
            }
        }
    )
    await tg_env.tg.wait_updates_consumed()
    # the service still works, and nobody cancelled the Space
    await tg_env.tg.user_sends(host, group, "/spaces")
    listing = await tg_env.tg.wait_for_message(group, lambda m: "Upcoming Spaces" in m.text)
    assert space.id in listing.text
    assert (await tg_env.spaces.get(space.id)).status is SpaceStatus.SCHEDULED
    # the only complaints are about the garbage this test itself injected
    assert {v.kind for v in tg_env.tg.take_violations()} <= {"emulator"}


@pytest.mark.slow
async def test_paid_broadcast_lifts_the_fan_out_rate(tg_env: TgEnv) -> None:
    from bots.runtime.budget import DEFAULT_GLOBAL, PAID_TELEGRAM, TokenBucketBudget
    from core.refs import Platform

    host, group, _ = await schedule_in_group(tg_env)
    (space,) = await tg_env.spaces.upcoming(chat_ref(group.id))
    tg_env.platform.config = dataclasses.replace(tg_env.platform.config, paid_broadcast=True)
    tg_env.engine._budget = TokenBucketBudget(
        {**DEFAULT_GLOBAL, Platform.TELEGRAM: PAID_TELEGRAM},
        monotonic=tg_env.vt.monotonic,
        sleep=tg_env.vt.sleep,
    )
    fans = [tg_env.tg.create_user(f"Fan{i}", started=True) for i in range(1000)]
    for fan in fans:
        await tg_env.spaces.subscribe(Subscribe(user_ref(fan.id), space.id))
    await tg_env.spaces.start(StartSpace(Actor(user_ref(host.id)), space.id))
    t0 = tg_env.vt.t
    await tg_env.deliver(rounds=1000)
    elapsed = tg_env.vt.t - t0
    dms = [c for c in tg_env.tg.calls("sendMessage") if c.ok and int(c.params["chat_id"]) > 0]
    assert len(dms) == 1000 and all(c.params.get("allow_paid_broadcast") is True for c in dms)
    assert not any("allow_paid_broadcast" in c.params for c in tg_env.tg.calls("editMessageText"))
    # the pace is now our own sending speed (the emulator's paid window allows 1,000/s), not Telegram's 30/s
    print(f"\n1,000 paid live notices in {elapsed:.1f} s of Telegram time, {tg_env.tg.count_429} × 429")
    assert tg_env.tg.count_429 == 0
