"""Members' flows through the HTTP interactions endpoint, on the real core, storage and delivery engine.

Requests are signed with a real Ed25519 key (PyNaCl) and posted to ``/discord/interactions`` on the real web
app; the interaction's first response is the HTTP answer, and the follow-ups arrive at a loopback stand-in
for Discord's webhook endpoint (``POST /api/v10/webhooks/{application}/{token}``), where they are counted
per interaction. The public card is the delivery engine's (posted to the recording platform).
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from nacl.signing import SigningKey

from bots.discord.handlers import Handlers
from bots.discord.interactions import PATH, InteractionsEndpoint
from bots.discord.render import escape
from bots.discord.render import timestamp as native
from bots.discord.translate import chat_ref
from bots.metrics import Metrics
from bots.web.app import WebDeps, make_web_app
from core.models import DeliveryKind, SpaceStatus
from core.refs import Platform, UserRef
from core.services.inbound import InboundService
from core.services.profiles import ProfileService
from core.services.replies import RepliesService
from core.texts import t
from tests.conftest import CoreEnv, StaticLinks

APP = "4242"
GUILD = "700000000000000001"
CHANNEL = "700000000000000002"
HOST, ALICE, MOD, BOB = "800000000000000001", "800000000000000002", "800000000000000003", "800000000000000004"
MOD_ROLE = "900000000000000001"
MANAGE_EVENTS = 1 << 33
_ids = itertools.count(1_000_000_000_000_000_000)


@dataclass
class DiscordWebhooks:
    """Discord's follow-up endpoint: what each interaction token received."""

    received: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))

    async def on_followup(self, request: web.Request) -> web.Response:
        assert request.match_info["app"] == APP
        self.received[request.match_info["token"]].append(await request.json())
        return web.json_response({"id": str(next(_ids))})


@dataclass
class Env:
    core: CoreEnv
    client: TestClient[web.Request, web.Application]
    hooks: DiscordWebhooks
    handlers: Handlers
    key: SigningKey
    api: str  # the stand-in for Discord's REST API (its webhooks)

    async def post(self, payload: dict[str, Any], *, sign_with: SigningKey | None = None) -> web.Response:
        body = json.dumps(payload).encode()
        stamp = str(int(time.time()))
        signature = (sign_with or self.key).sign(stamp.encode() + body).signature.hex()
        headers = {"X-Signature-Ed25519": signature, "X-Signature-Timestamp": stamp}
        return await self.client.post(PATH, data=body, headers=headers)  # type: ignore[return-value]

    async def interact(self, payload: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """(first response, follow-ups) of one interaction."""
        resp = await self.post(payload)
        assert resp.status == 200, await resp.text()
        first = await resp.json()
        await self.handlers.drain()
        return first, self.hooks.received.get(payload["token"], [])


def interaction(
    kind: int,
    data: dict[str, Any],
    *,
    user: str = HOST,
    perms: int = 0,
    roles: tuple[str, ...] = (),
    locale: str = "en-US",
    guild: str | None = GUILD,
    channel: str = CHANNEL,
) -> dict[str, Any]:
    iid = str(next(_ids))
    body: dict[str, Any] = {
        "id": iid,
        "application_id": APP,
        "type": kind,
        "token": f"token-{iid}",
        "version": 1,
        "channel_id": channel,
        "locale": locale,
        "data": data,
    }
    person = {"id": user, "username": f"user{user[-1]}", "global_name": f"User {user[-1]}"}
    if guild is not None:
        body["guild_id"] = guild
        body["member"] = {"user": person, "roles": list(roles), "permissions": str(perms), "nick": None}
    else:
        body["user"] = person
    return body


def command(sub: str, *, focused: str | None = None, **options: str) -> dict[str, Any]:
    opts = [
        {"type": 3, "name": k, "value": v, **({"focused": True} if k == focused else {})}
        for k, v in options.items()
    ]
    return {"id": "1", "name": "space", "type": 1, "options": [{"type": 1, "name": sub, "options": opts}]}


def slash(sub: str, **kw: Any) -> dict[str, Any]:
    who = {k: kw.pop(k) for k in ("user", "perms", "roles", "locale", "guild", "channel") if k in kw}
    return interaction(2, command(sub, **kw), **who)


def typing(sub: str, focused: str, **kw: Any) -> dict[str, Any]:
    who = {k: kw.pop(k) for k in ("user", "perms", "roles", "locale", "guild", "channel") if k in kw}
    return interaction(4, command(sub, focused=focused, **kw), **who)


def press(custom_id: str, **who: Any) -> dict[str, Any]:
    return interaction(3, {"custom_id": custom_id, "component_type": 2}, **who)


def handlers_for(env: CoreEnv) -> Handlers:
    """A process's handlers over the test's core (the database is what processes share)."""
    return Handlers(
        spaces=env.spaces,
        inbound=inbound_for(env),
        replies=RepliesService(env.db.uow, env.clock, env.wake),
        links=StaticLinks(),
        clock=env.clock,
        moderator_role=MOD_ROLE,
    )


def inbound_for(env: CoreEnv) -> InboundService:
    """The core's inbound path over the test's core (the services the composition root wires)."""
    return InboundService(
        spaces=env.spaces,
        profiles=ProfileService(env.db.uow),
        replies=RepliesService(env.db.uow, env.clock, env.wake),
        links=StaticLinks(),
        clock=env.clock,
        uow=env.db.uow,
    )


@pytest.fixture
async def env(core_env: CoreEnv) -> AsyncIterator[Env]:
    hooks = DiscordWebhooks()
    fake_discord = web.Application()
    fake_discord.router.add_post("/api/v10/webhooks/{app}/{token}", hooks.on_followup)
    key = SigningKey.generate()
    handlers = handlers_for(core_env)
    endpoint = InteractionsEndpoint(key.verify_key.encode().hex(), handlers.on_http)
    deps = WebDeps(
        spaces=core_env.spaces,
        outbox=core_env.db.outbox(),
        registry=Metrics().registry,
        routes=endpoint.web_routes(),
    )
    async with TestServer(fake_discord, host="127.0.0.1") as discord_server:
        handlers._api = str(discord_server.make_url("/api/v10"))
        async with TestClient(TestServer(make_web_app(deps), host="127.0.0.1")) as client:
            yield Env(core_env, client, hooks, handlers, key, str(discord_server.make_url("/api/v10")))
    await handlers.close()


def _text(followups: list[dict[str, Any]]) -> str:
    [one] = followups
    assert one["flags"] == 64  # private to the member
    assert one["allowed_mentions"] == {"parse": []}  # never pings anyone
    return str(one["content"])


async def _schedule(env: Env, title: str = "Weekly AMA", when: str = "tomorrow 20:00", **kw: Any) -> str:
    first, followups = await env.interact(slash("schedule", title=title, when=when, **kw))
    assert first == {"type": 5, "data": {"flags": 64}}  # deferred, privately
    text = _text(followups)
    assert "Scheduled ✓" in text, text
    [space] = await env.core.spaces.upcoming(chat_ref(CHANNEL, GUILD))
    return space.id


# --------------------------------------------------------------------------- the endpoint itself


async def test_ping_is_answered(env: Env) -> None:
    resp = await env.post({"id": "1", "type": 1, "application_id": APP, "token": "t", "version": 1})
    assert resp.status == 200 and await resp.json() == {"type": 1}
    assert resp.content_type == "application/json"


async def test_a_bad_signature_gets_401(env: Env) -> None:
    resp = await env.post(slash("list"), sign_with=SigningKey.generate())
    assert resp.status == 401
    assert env.hooks.received == {}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Signature-Timestamp": "1"},
        {"X-Signature-Ed25519": "00" * 64},
        {"X-Signature-Ed25519": "zz", "X-Signature-Timestamp": "now"},
        {"X-Signature-Ed25519": "00" * 64, "X-Signature-Timestamp": str(int(time.time()))},
    ],
)
async def test_missing_or_malformed_signatures_get_401(env: Env, headers: dict[str, str]) -> None:
    resp = await env.client.post(PATH, data=b'{"type":1}', headers=headers)
    assert resp.status == 401


async def test_an_old_timestamp_gets_401_even_when_signed(env: Env) -> None:
    body = json.dumps({"id": "1", "type": 1, "application_id": APP, "token": "t"}).encode()
    stamp = str(int(time.time()) - 600)
    signature = env.key.sign(stamp.encode() + body).signature.hex()
    resp = await env.client.post(
        PATH, data=body, headers={"X-Signature-Ed25519": signature, "X-Signature-Timestamp": stamp}
    )
    assert resp.status == 401


async def test_a_replayed_interaction_is_answered_once(env: Env) -> None:
    payload = slash("schedule", title="Once", when="tomorrow 20:00")
    body = json.dumps(payload).encode()
    stamp = str(int(time.time()))
    headers = {
        "X-Signature-Ed25519": env.key.sign(stamp.encode() + body).signature.hex(),
        "X-Signature-Timestamp": stamp,
    }
    first = await env.client.post(PATH, data=body, headers=headers)
    again = await env.client.post(PATH, data=body, headers=headers)
    await env.handlers.drain()
    assert (first.status, again.status) == (200, 401)
    assert len(env.hooks.received[payload["token"]]) == 1
    assert len(await env.core.spaces.upcoming(chat_ref(CHANNEL, GUILD))) == 1


async def test_an_interaction_reaching_two_processes_is_answered_once(env: Env) -> None:
    """Behind a load balancer the same signed request may reach two web processes: one answers it."""
    other = handlers_for(env.core)
    other._api = env.api
    second = InteractionsEndpoint(env.key.verify_key.encode().hex(), other.on_http)
    deps = WebDeps(
        spaces=env.core.spaces,
        outbox=env.core.db.outbox(),
        registry=Metrics().registry,
        routes=second.web_routes(),
    )
    payload = press("sub:abcdefghjk", user=ALICE)  # (no such Space: the refusal is the answer)
    body = json.dumps(payload).encode()
    stamp = str(int(time.time()))
    headers = {
        "X-Signature-Ed25519": env.key.sign(stamp.encode() + body).signature.hex(),
        "X-Signature-Timestamp": stamp,
    }
    async with TestClient(TestServer(make_web_app(deps), host="127.0.0.1")) as client_b:
        a = await env.client.post(PATH, data=body, headers=headers)
        b = await client_b.post(PATH, data=body, headers=headers)
        await env.handlers.drain()
        await other.drain()
    assert (a.status, b.status) == (200, 200)  # each acknowledged it in time
    assert len(env.hooks.received[payload["token"]]) == 1  # one answer


async def test_signed_garbage_is_a_plain_400(env: Env) -> None:
    for body in (b"not json", b"[]", json.dumps({"id": "5", "type": 2, "token": "t"}).encode()):
        stamp = str(int(time.time()))
        signature = env.key.sign(stamp.encode() + body).signature.hex()
        resp = await env.client.post(
            PATH, data=body, headers={"X-Signature-Ed25519": signature, "X-Signature-Timestamp": stamp}
        )
        assert resp.status == 400
        assert "Traceback" not in await resp.text()


async def test_a_large_body_is_refused(env: Env) -> None:
    resp = await env.post({"id": "1", "type": 2, "pad": "x" * 100_000})
    assert resp.status == 413


# --------------------------------------------------------------------------- scheduling


async def test_schedule_posts_the_card_and_tells_the_host_privately(env: Env) -> None:
    space_id = await _schedule(env)
    text = env.hooks.received
    [(_, [followup])] = text.items()
    lines = followup["content"].split("\n")
    assert "Title: Weekly AMA" in lines  # title and time on lines of their own
    # the time native: Discord shows it in the reader's own zone and language
    assert f"Time: {native(datetime(2026, 11, 26, 19, 0, tzinfo=UTC))}" in lines
    # the one-step fixes name Discord's own commands
    assert f"`/space rename {space_id} <new title>`" in lines[-1] and "`/space reschedule" in lines[-1]
    space = await env.core.spaces.get(space_id)
    assert space.host == UserRef(Platform.DISCORD, HOST) and space.chat.id == CHANNEL
    await env.core.run()
    posts = [s for s in env.core.platform.sent if s.op == "post"]
    assert [p.notice.title for p in posts] == ["Weekly AMA"]
    assert posts[0].target == str(chat_ref(CHANNEL, GUILD))


async def test_schedule_in_french_with_a_zone_and_a_description(env: Env) -> None:
    _, followups = await env.interact(
        slash(
            "schedule",
            title="AMA",
            when="demain 20h",
            timezone="America/New_York",
            description="On parle de tout",
            locale="fr",
        )
    )
    text = _text(followups)
    assert "Programmé ✓" in text
    assert f"Heure : {native(datetime(2026, 11, 27, 1, 0, tzinfo=UTC))}" in text.split("\n")
    [space] = await env.core.spaces.upcoming(chat_ref(CHANNEL, GUILD))
    assert space.tz == "America/New_York" and space.description == "On parle de tout"


@pytest.mark.parametrize(
    ("title", "when", "expected"),
    [
        ("AMA", "yesterday 20:00", "already passed"),
        ("AMA", "gibberish o'clock", "couldn't read"),
        ("   ", "tomorrow 20:00", "Give your Space a title"),
        ("x" * 150, "tomorrow 20:00", "characters long"),
    ],
)
async def test_refusals_are_private_and_change_nothing(
    env: Env, title: str, when: str, expected: str
) -> None:
    _, followups = await env.interact(slash("schedule", title=title, when=when))
    assert expected in _text(followups)
    assert await env.core.spaces.upcoming(chat_ref(CHANNEL, GUILD)) == []


async def test_hostile_titles_ping_nobody(env: Env) -> None:
    title = "@everyone <@&900000000000000001> <@800000000000000002> **bold** [x](https://evil)"
    _, followups = await env.interact(slash("schedule", title=title, when="tomorrow 20:00"))
    text = _text(followups)  # allowed_mentions pings no one; the title is shown as typed, escaped
    title_line = next(line for line in text.split("\n") if line.startswith("Title: "))
    assert "@everyone" not in title_line and not re.search(r"(?<!\\)(<@|\*\*)", title_line)
    assert title_line == "Title: " + escape(title)


async def test_a_dm_is_told_to_use_a_server(env: Env) -> None:
    first, followups = await env.interact(slash("list", guild=None))
    assert first == {"type": 5, "data": {"flags": 64}}  # refused, privately (a list in a channel is not)
    text = _text(followups)
    assert "server channel" in text and "`/space link`" in text  # and what does work in a DM


@pytest.mark.parametrize("sub", ["link", "unlink"])
async def test_link_and_unlink_reach_the_core_from_a_dm(env: Env, sub: str) -> None:
    # this process's core has no codes store: linking is off, and the core (not the handlers) says so
    first, followups = await env.interact(slash(sub, guild=None))
    assert first == {"type": 5, "data": {"flags": 64}}
    assert _text(followups) == t("en", "link.unavailable")


async def test_list_is_for_the_channel(env: Env) -> None:
    first, followups = await env.interact(slash("list"))
    assert first == {"type": 5, "data": {"flags": 0}}  # the channel may read it
    [answer] = followups
    assert "No upcoming Spaces" in answer["content"] and not answer.get("flags")
    space_id = await _schedule(env)
    _, [answer] = await env.interact(slash("list"))
    assert "Weekly AMA" in answer["content"] and space_id in answer["content"]
    assert answer["allowed_mentions"] == {"parse": []}


# --------------------------------------------------------------------------- autocomplete


async def test_when_autocomplete_previews_the_parsed_time(env: Env) -> None:
    first, followups = await env.interact(typing("schedule", "when", title="AMA", when="tomorrow 20:00"))
    assert followups == []
    assert first["type"] == 8
    [choice] = first["data"]["choices"]
    assert choice == {
        "name": "Thu 26 Nov 2026, 20:00 CET (Europe/Paris) — in 1 day",
        "value": "tomorrow 20:00",
    }


async def test_when_autocomplete_says_why_a_time_cannot_be_used(env: Env) -> None:
    first, _ = await env.interact(typing("schedule", "when", when="yesterday 9:00"))
    [choice] = first["data"]["choices"]
    assert choice["name"].startswith("⚠️") and "passed" in choice["name"] and len(choice["name"]) <= 100


async def test_when_autocomplete_in_french_and_in_the_chosen_zone(env: Env) -> None:
    first, _ = await env.interact(
        typing("schedule", "when", when="dans 3 heures", timezone="Asia/Tokyo", locale="fr")
    )
    [choice] = first["data"]["choices"]
    assert choice["name"].endswith("(Asia/Tokyo) — dans 3 heures")


async def test_zone_autocomplete(env: Env) -> None:
    first, _ = await env.interact(
        typing("schedule", "timezone", when="tomorrow 20:00", timezone="europe/par")
    )
    choices = first["data"]["choices"]
    assert choices[0]["value"] == "Europe/Paris"
    assert choices[0]["name"].startswith("Europe/Paris · Thu 26 Nov 2026, 20:00 CET")
    first, _ = await env.interact(typing("schedule", "timezone", timezone=""))
    assert first["data"]["choices"][0]["value"] == "Europe/Paris"  # the member's current zone first


async def test_space_autocomplete_offers_what_the_member_may_manage(env: Env) -> None:
    space_id = await _schedule(env)
    first, _ = await env.interact(typing("start", "space", space=""))
    assert [c["value"] for c in first["data"]["choices"]] == [space_id]
    assert first["data"]["choices"][0]["name"].startswith("Weekly AMA — ")
    first, _ = await env.interact(typing("start", "space", space="week"))
    assert [c["value"] for c in first["data"]["choices"]] == [space_id]
    first, _ = await env.interact(typing("start", "space", space="", user=BOB))
    assert first["data"]["choices"] == []  # not theirs, no Manage Events
    first, _ = await env.interact(typing("start", "space", space="", user=MOD, perms=MANAGE_EVENTS))
    assert [c["value"] for c in first["data"]["choices"]] == [space_id]
    first, _ = await env.interact(typing("end", "space", space=""))
    assert first["data"]["choices"] == []  # nothing live to end


# --------------------------------------------------------------------------- buttons


async def test_reminder_button_toggles_privately(env: Env) -> None:
    space_id = await _schedule(env)
    first, followups = await env.interact(press(f"sub:{space_id}", user=ALICE))
    assert first == {"type": 5, "data": {"flags": 64}}
    assert "Reminder set" in _text(followups)
    _, followups = await env.interact(press(f"sub:{space_id}", user=ALICE))
    assert "already subscribed" in _text(followups)
    assert await env.core.spaces.subscriber_count(space_id) == 1
    _, followups = await env.interact(press(f"unsub:{space_id}", user=ALICE))
    assert "Reminder removed" in _text(followups)
    assert await env.core.spaces.subscriber_count(space_id) == 0


async def test_share_button_answers_with_the_link(env: Env) -> None:
    space_id = await _schedule(env)
    _, followups = await env.interact(press(f"share:{space_id}", user=ALICE))
    assert f"https://spaces.test/s/{space_id}" in _text(followups)


async def test_start_button_is_refused_to_others(env: Env) -> None:
    space_id = await _schedule(env)
    _, followups = await env.interact(press(f"start:{space_id}", user=BOB))
    assert "Only the host or a moderator" in _text(followups)
    assert (await env.core.spaces.get(space_id)).status is SpaceStatus.SCHEDULED


async def test_unknown_buttons_get_a_plain_answer(env: Env) -> None:
    _, followups = await env.interact(press("nuke:everything", user=BOB))
    assert "Something went wrong" in _text(followups)


# --------------------------------------------------------------------------- managing


@pytest.mark.parametrize(
    "who",
    [
        {"user": HOST},
        {"user": MOD, "perms": MANAGE_EVENTS},
        {"user": MOD, "perms": 1 << 3},  # Administrator
        {"user": MOD, "roles": (MOD_ROLE,)},
    ],
    ids=["host", "manage-events", "administrator", "moderator-role"],
)
async def test_start_and_end_by_host_or_moderator(env: Env, who: dict[str, Any]) -> None:
    space_id = await _schedule(env)
    await env.interact(press(f"sub:{space_id}", user=ALICE))
    _, followups = await env.interact(slash("start", space=space_id, **who))
    assert "You're live" in _text(followups)
    assert (await env.core.spaces.get(space_id)).status is SpaceStatus.LIVE
    _, followups = await env.interact(slash("end", space=space_id, **who))
    assert "Ended" in _text(followups)
    assert (await env.core.spaces.get(space_id)).status is SpaceStatus.ENDED
    await env.core.run()
    live = [d for d in await env.core.deliveries() if d.kind is DeliveryKind.LIVE_NOTICE]
    assert [d.recipient for d in live] == [str(UserRef(Platform.DISCORD, ALICE))]  # notified once


@pytest.mark.parametrize("verb", ["start", "end", "cancel"])
async def test_others_are_refused(env: Env, verb: str) -> None:
    space_id = await _schedule(env)
    _, followups = await env.interact(slash(verb, space=space_id, user=BOB, perms=1 << 10, roles=("1",)))
    assert "Only the host or a moderator" in _text(followups)
    assert (await env.core.spaces.get(space_id)).status is SpaceStatus.SCHEDULED


async def test_manage_events_in_another_guild_does_not_count(env: Env) -> None:
    space_id = await _schedule(env)
    other = slash(
        "cancel",
        space=space_id,
        user=MOD,
        perms=MANAGE_EVENTS,
        guild="700000000000000099",
        channel="700000000000000098",
    )
    _, followups = await env.interact(other)
    assert "Only the host or a moderator" in _text(followups)
    assert (await env.core.spaces.get(space_id)).status is SpaceStatus.SCHEDULED


async def test_cancel_and_reschedule_by_host(env: Env) -> None:
    space_id = await _schedule(env)
    _, followups = await env.interact(slash("reschedule", space=space_id, when="friday 18:30"))
    text = _text(followups)
    assert "Rescheduled ✓" in text and native(datetime(2026, 11, 27, 17, 30, tzinfo=UTC)) in text
    _, followups = await env.interact(slash("cancel", space=space_id))
    assert "Cancelled “Weekly AMA”" in _text(followups)
    assert (await env.core.spaces.get(space_id)).status is SpaceStatus.CANCELLED


async def test_reschedule_by_a_manage_events_member(env: Env) -> None:
    space_id = await _schedule(env)
    _, followups = await env.interact(
        slash("reschedule", space=space_id, when="tomorrow 21:00", user=MOD, perms=MANAGE_EVENTS)
    )
    assert "Rescheduled ✓" in _text(followups)


async def test_an_unknown_space_is_said_plainly(env: Env) -> None:
    _, followups = await env.interact(slash("start", space="zzzzzzzzzz"))
    assert "can't find a Space" in _text(followups)


async def test_rename_by_host_and_refused_to_others(env: Env) -> None:
    space_id = await _schedule(env)
    _, followups = await env.interact(slash("rename", space=space_id, title="Weekly AMA #2", user=BOB))
    assert "Only the host or a moderator" in _text(followups)
    _, followups = await env.interact(slash("rename", space=space_id, title="Weekly AMA #2"))
    assert "Renamed ✓" in _text(followups)
    assert (await env.core.spaces.get(space_id)).title == "Weekly AMA #2"


async def test_a_space_named_by_its_title_without_picking_a_choice(env: Env) -> None:
    space_id = await _schedule(env)
    _, followups = await env.interact(slash("cancel", space="weekly"))  # typed, sent without a choice
    assert "Cancelled “Weekly AMA”" in _text(followups)
    assert (await env.core.spaces.get(space_id)).status is SpaceStatus.CANCELLED
    _, followups = await env.interact(slash("start", space="weekly", user=BOB))  # not theirs: not found
    assert "usage" in _text(followups).lower() or "which Space" in _text(followups)


async def test_an_outage_is_told_to_the_member_never_left_thinking(env: Env) -> None:
    class DatabaseDown:
        async def handle(self, *args: object) -> list[object]:
            raise ConnectionError("database is down")

    env.handlers._inbound = DatabaseDown()  # type: ignore[assignment]
    first, followups = await env.interact(slash("start", space="abcdefghjk"))
    assert first["type"] == 5
    assert "Something went wrong" in _text(followups)
