"""The Slack emulator, driven by the real slack_sdk AsyncWebClient and a small real Bolt AsyncApp."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.secrets import SLACK_BOT_TOKEN
from tests.fakes.slack import SlackEmulator, SlChannel, SlTeam, SlUser, slack_emulator  # noqa: F401
from tests.fakes.slack_spec import load_spec

pytestmark = [
    # slack_sdk's own oauth_v2_access builds an aiohttp BasicAuth (deprecated in aiohttp 3.14): not ours to fix
    pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning"),
]


@pytest.fixture(autouse=True)
def slack_library_floors() -> Iterator[None]:
    """Hold slack_sdk and slack_bolt at INFO, as production must: at DEBUG they log every response body
    (``oauth.v2.access`` returns the new bot token) and every Socket Mode payload, and the session's log
    check (tests/logcapture.py) rightly fails on the emulator's canary tokens there."""
    saved = {name: logging.getLogger(name).level for name in ("slack_sdk", "slack_bolt")}
    for name in saved:
        logging.getLogger(name).setLevel(max(logging.INFO, logging.getLogger(name).level))
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest_asyncio.fixture
async def emu(clock: Clock) -> AsyncIterator[SlackEmulator]:
    async with SlackEmulator(clock=clock) as e:
        yield e


@pytest.fixture
def team(emu: SlackEmulator) -> SlTeam:
    return emu.create_workspace("Acme", token=SLACK_BOT_TOKEN)


@pytest.fixture
def alice(emu: SlackEmulator, team: SlTeam) -> SlUser:
    return emu.add_user(team, "alice", tz="Europe/Paris", locale="fr-FR", is_admin=True)


@pytest.fixture
def general(emu: SlackEmulator, team: SlTeam, alice: SlUser) -> SlChannel:
    return emu.add_channel(team, "general", members=[alice])


@pytest_asyncio.fixture
async def client(emu: SlackEmulator, team: SlTeam) -> AsyncIterator[AsyncWebClient]:
    c = AsyncWebClient(token=emu.bot_token(team), base_url=emu.api_base)
    yield c
    if c.session is not None:
        await c.session.close()


async def error_of(coro: Any) -> SlackApiError:
    with pytest.raises(SlackApiError) as info:
        await coro
    return info.value


# --------------------------------------------------------------------------- Web API
async def test_auth_users_team_info(
    emu: SlackEmulator, team: SlTeam, alice: SlUser, client: AsyncWebClient
) -> None:
    me = await client.auth_test()
    assert (me["team_id"], me["user_id"], me["bot_id"]) == (team.id, team.bot_user_id, team.bot_id)
    info = (await client.users_info(user=alice.id))["user"]
    assert info["tz"] == "Europe/Paris" and info["tz_offset"] in (3600, 7200) and info["is_admin"]
    assert "locale" not in info and info["profile"]["display_name"] == "alice" and info["profile"]["image_72"]
    assert (await client.users_info(user=alice.id, include_locale=True))["user"]["locale"] == "fr-FR"
    assert (await client.team_info())["team"]["domain"] == "acme"
    assert (await error_of(client.users_info(user="U0NOPE"))).response["error"] == "user_not_found"
    assert [c.method for c in emu.api_calls()][:2] == ["auth.test", "users.info"]
    assert emu.api_calls("users.info")[0].team_id == team.id


async def test_post_update_permalink_ephemeral_dm(
    emu: SlackEmulator, team: SlTeam, alice: SlUser, general: SlChannel, client: AsyncWebClient
) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*AMA* tomorrow"}}]
    posted = await client.chat_postMessage(channel=general.id, text="AMA tomorrow", blocks=blocks)
    await client.chat_update(channel=general.id, ts=posted["ts"], text="AMA moved")
    [msg] = emu.messages_in(general)
    assert (msg.text, msg.blocks, len(msg.edits)) == ("AMA moved", blocks, 1)
    by_name = await client.chat_postMessage(channel="#general", text="by name")
    assert by_name["channel"] == general.id
    await client.chat_delete(channel=general.id, ts=by_name["ts"])
    link = await client.chat_getPermalink(channel=general.id, message_ts=posted["ts"])
    assert link["permalink"].startswith(f"https://acme.slack.com/archives/{general.id}/p")
    await client.chat_postEphemeral(channel=general.id, user=alice.id, text="only you")
    assert [m.text for m in emu.ephemeral_to(alice)] == ["only you"]
    dm = await client.chat_postMessage(channel=alice.id, text="reminder")  # a user id: the app's DM
    assert dm["channel"].startswith("D")
    opened = await client.conversations_open(users=alice.id)
    assert opened["channel"]["id"] == dm["channel"]
    assert [m.text for m in emu.dms_to(alice)] == ["reminder"]
    assert emu.received() == {alice.id: 1}
    assert (await error_of(client.chat_update(channel=general.id, ts="1.2", text="x"))).response[
        "error"
    ] == "message_not_found"
    await client.chat_delete(channel=dm["channel"], ts=dm["ts"])
    assert emu.dms_to(alice) == [] and emu.received() == {}
    emu.assert_clean()


async def test_conversations_info_members_usergroups(
    emu: SlackEmulator, team: SlTeam, client: AsyncWebClient
) -> None:
    users = emu.add_users(team, 5)
    chan = emu.add_channel(team, "big", members=users)
    info = (await client.conversations_info(channel=chan.id, include_num_members=True))["channel"]
    assert (info["name"], info["is_member"], info["num_members"]) == ("big", True, 6)
    page1 = await client.conversations_members(channel=chan.id, limit=4)
    page2 = await client.conversations_members(
        channel=chan.id, limit=4, cursor=page1["response_metadata"]["next_cursor"]
    )
    assert page1["members"] + page2["members"] == chan.members
    assert page2["response_metadata"]["next_cursor"] == ""
    gid = emu.add_usergroup(team, "space-mods", users[:2])
    assert (await client.usergroups_users_list(usergroup=gid))["users"] == [u.id for u in users[:2]]
    [group] = (await client.usergroups_list(include_count=True))["usergroups"]
    assert (group["id"], group["handle"], group["user_count"]) == (gid, "space-mods", 2)


async def test_calls(emu: SlackEmulator, team: SlTeam, client: AsyncWebClient) -> None:
    added = await client.calls_add(
        external_unique_id="space-1", join_url="https://spaces.test/j/1", title="AMA"
    )
    cid = added["call"]["id"]
    assert (await client.calls_info(id=cid))["call"]["join_url"] == "https://spaces.test/j/1"
    await client.calls_end(id=cid)
    [call] = emu.calls_in(team)
    assert call.ended and call.external_unique_id == "space-1"
    again = await client.calls_end(id=cid)  # Slack answers ok with an error field, no exception
    assert (again["ok"], again["error"]) == (True, "inactive_call")


# --------------------------------------------------------------------------- violations and limits
async def test_spec_violations(emu: SlackEmulator, general: SlChannel, client: AsyncWebClient) -> None:
    await client.api_call("chat.postMessage", json={"channel": general.id, "text": "x", "colour": "red"})
    [v] = emu.take_violations()
    assert v.kind == "spec" and "colour" in v.message  # answered (Slack ignores it) but recorded
    err = await error_of(client.api_call("chat.postMessage", json={"text": "no channel"}))
    assert err.response["error"] == "invalid_arguments"
    assert "channel" in emu.take_violations()[0].message
    err = await error_of(client.api_call("chat.frobnicate", json={}))
    assert err.response["error"] == "unknown_method"
    assert emu.take_violations()[0].kind == "unknown_method"
    async with aiohttp.ClientSession() as http:  # raw requests slack_sdk would never make
        token = str(client.token)
        async with http.post(
            f"{emu.api_base}chat.postMessage",
            data=b"{not json",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        ) as res:
            assert (await res.json())["error"] == "invalid_json"
        async with http.post(f"{emu.api_base}auth.test", json={"token": token}) as res:
            # JSON bodies take the token in the Authorization header only
            assert (await res.json())["error"] == "not_authed"
        async with http.get(f"{emu.api_base}auth.test", params={"token": token}) as res:
            assert (await res.json())["ok"]  # a form or query token is fine
    assert [v.kind for v in emu.take_violations()] == ["spec", "spec"]
    # a form (what slack_sdk sends with data=): JSON arguments travel as strings, booleans as "1"/"0"
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "form"}}]
    await client.api_call(
        "chat.postMessage",
        data={"channel": general.id, "text": "form", "blocks": json.dumps(blocks), "unfurl_links": "0"},
    )
    assert emu.messages_in(general)[-1].blocks == blocks
    assert emu.api_calls("chat.postMessage")[-1].params["unfurl_links"] is False
    err = await error_of(client.api_call("chat.postMessage", data={"channel": general.id, "blocks": "[{"}))
    assert err.response["error"] == "invalid_arguments" and emu.take_violations()[0].kind == "spec"
    # a newer argument slack_sdk sends that the 2021 description lacks is allowed explicitly
    await client.chat_postMessage(
        channel=general.id, text="m", metadata={"event_type": "x", "event_payload": {}}
    )
    emu.assert_clean()
    assert "metadata" in load_spec().methods["chat.postMessage"].params


async def test_block_kit_limits(emu: SlackEmulator, general: SlChannel, client: AsyncWebClient) -> None:
    emu.unlimited = True  # four posts in a row to one channel
    section = {"type": "section", "text": {"type": "mrkdwn", "text": "x"}}
    err = await error_of(client.chat_postMessage(channel=general.id, text="t", blocks=[section] * 51))
    assert err.response["error"] == "invalid_blocks"
    err = await error_of(client.chat_postMessage(channel=general.id, text="x" * 40_001))
    assert err.response["error"] == "msg_too_long"
    long_button = {
        "type": "actions",
        "elements": [{"type": "button", "text": {"type": "plain_text", "text": "b" * 76}, "action_id": "a"}],
    }
    err = await error_of(client.chat_postMessage(channel=general.id, text="t", blocks=[long_button]))
    assert err.response["error"] == "invalid_blocks"
    header = {"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}
    err = await error_of(client.chat_postMessage(channel=general.id, text="t", blocks=[header]))
    kinds = [v.kind for v in emu.take_violations()]
    assert kinds == ["blocks"] * 4 and emu.messages_in(general) == []


async def test_tokens(emu: SlackEmulator, team: SlTeam, general: SlChannel) -> None:
    async def error(token: str | None) -> str:
        c = AsyncWebClient(token=token, base_url=emu.api_base)
        return str((await error_of(c.chat_postMessage(channel=general.id, text="x"))).response["error"])

    assert await error(None) == "not_authed"
    assert await error("xoxb-unknown") == "invalid_auth"
    other = emu.create_workspace("Other")
    assert await error(emu.bot_token(other)) == "channel_not_found"  # another workspace's channel
    token = emu.bot_token(team)
    emu.request_url = None  # nobody listens: uninstall still revokes
    with pytest.raises(AssertionError):
        await emu.uninstall(team)
    assert await error(token) == "token_revoked"


async def test_chat_post_rate_limit_per_channel(
    emu: SlackEmulator, clock: Clock, team: SlTeam, alice: SlUser, general: SlChannel, client: AsyncWebClient
) -> None:
    for i in range(3):  # a short burst is tolerated
        await client.chat_postMessage(channel=general.id, text=f"m{i}")
    err = await error_of(client.chat_postMessage(channel=general.id, text="too fast"))
    assert err.response.status_code == 429 and err.response.headers["Retry-After"] == "1"
    assert err.response["error"] == "ratelimited"
    await client.chat_postMessage(channel=alice.id, text="another channel is fine")
    clock.now += 1.0
    await client.chat_postMessage(channel=general.id, text="one second later")
    assert len(emu.messages_in(general)) == 4


async def test_tier_rate_limit(
    emu: SlackEmulator, clock: Clock, alice: SlUser, client: AsyncWebClient
) -> None:
    for _ in range(50):  # conversations.open is Tier 3: 50 per minute
        await client.conversations_open(users=alice.id)
        clock.now += 0.5
    err = await error_of(client.conversations_open(users=alice.id))
    assert err.response.status_code == 429 and int(err.response.headers["Retry-After"]) == 35
    clock.now += 35
    await client.conversations_open(users=alice.id)
    emu.unlimited = True
    for _ in range(100):
        await client.users_info(user=alice.id)


async def test_fail_next(emu: SlackEmulator, general: SlChannel, client: AsyncWebClient) -> None:
    emu.fail_next("chat.postMessage", "internal_error")
    err = await error_of(client.chat_postMessage(channel=general.id, text="x"))
    assert err.response.status_code == 500 and err.response["error"] == "internal_error"
    emu.fail_next("chat.postMessage", retry_after=7)
    err = await error_of(client.chat_postMessage(channel=general.id, text="x"))
    assert err.response.status_code == 429 and err.response.headers["Retry-After"] == "7"
    await client.chat_postMessage(channel=general.id, text="x")
    assert len(emu.messages_in(general)) == 1


async def test_unreachable_users_and_channels(
    emu: SlackEmulator, team: SlTeam, alice: SlUser, general: SlChannel, client: AsyncWebClient
) -> None:
    emu.deactivate(alice)
    assert (await error_of(client.conversations_open(users=alice.id))).response["error"] == "user_disabled"
    assert (await error_of(client.chat_postMessage(channel=alice.id, text="x"))).response[
        "error"
    ] == "user_disabled"
    emu.deactivated_post_error = None  # what Slack was seen doing: accepted, seen by nobody
    posted = await client.chat_postMessage(channel=alice.id, text="into the void")
    assert emu.find_message(posted["ts"]).undelivered and emu.dms_to(alice) == [] and emu.received() == {}
    emu.remove_bot_from(general)
    assert (await error_of(client.chat_postMessage(channel=general.id, text="x"))).response[
        "error"
    ] == "not_in_channel"
    other = emu.create_workspace("Public", scopes="chat:write,chat:write.public")
    lobby = emu.add_channel(other, "lobby", bot_member=False)
    public = AsyncWebClient(token=emu.bot_token(other), base_url=emu.api_base)
    await public.chat_postMessage(channel=lobby.id, text="no need to join")  # chat:write.public
    private = emu.add_channel(team, "secret", is_private=True, bot_member=False)
    assert (await error_of(client.chat_postMessage(channel=private.id, text="x"))).response[
        "error"
    ] == "channel_not_found"


async def test_mentions_counted(
    emu: SlackEmulator, team: SlTeam, alice: SlUser, general: SlChannel, client: AsyncWebClient
) -> None:
    bob = emu.add_user(team, "bob")
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": f"with <@{bob.id}>"}}]
    await client.chat_postMessage(channel=general.id, text=f"<@{alice.id}> starts", blocks=blocks)
    await client.chat_postMessage(channel=general.id, text=f"&lt;@{alice.id}&gt; and &lt;!channel&gt;")
    assert emu.received() == {alice.id: 1, bob.id: 1}
    assert emu.broadcasts == []
    await client.chat_postMessage(channel=general.id, text="<!here> live now")
    assert [b[1] for b in emu.broadcasts] == ["here"]
    await client.chat_postMessage(channel=bob.id, text=f"<@{bob.id}>, your space begins")
    assert emu.received(containing="your space begins") == {bob.id: 1}
    assert emu.received(containing="starts") == {alice.id: 1, bob.id: 1}


# --------------------------------------------------------------------------- inbound, with a real Bolt app
@pytest_asyncio.fixture
async def bolt(emu: SlackEmulator, team: SlTeam) -> AsyncIterator[AsyncApp]:
    app = AsyncApp(
        signing_secret=emu.signing_secret,
        client=AsyncWebClient(token=emu.bot_token(team), base_url=emu.api_base),
    )
    runner = web.AppRunner(app.web_app(path="/slack/events"), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    emu.request_url = f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events"
    yield app
    await runner.cleanup()


MODAL = {
    "type": "modal",
    "callback_id": "schedule",
    "title": {"type": "plain_text", "text": "New Space"},
    "submit": {"type": "plain_text", "text": "Create"},
    "blocks": [
        {
            "type": "input",
            "block_id": "title",
            "label": {"type": "plain_text", "text": "Title"},
            "element": {"type": "plain_text_input", "action_id": "value", "max_length": 80},
        }
    ],
}


async def test_slash_command_ack_respond_and_modal(
    emu: SlackEmulator, bolt: AsyncApp, alice: SlUser, general: SlChannel
) -> None:
    done = asyncio.Event()

    @bolt.command("/space")
    async def space(ack: Any, respond: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack(text=f"Got {body['text']}")
        await client.views_open(trigger_id=body["trigger_id"], view=MODAL)
        await respond(text="Scheduled", response_type="in_channel")
        done.set()

    rec = await emu.slash_command(alice, general, "/space", "tomorrow 20:00 AMA")
    assert rec.status == 200
    await asyncio.wait_for(done.wait(), 5)
    assert [m.text for m in emu.ephemeral_to(alice)] == ["Got tomorrow 20:00 AMA"]
    assert rec.responses == [{"text": "Scheduled", "response_type": "in_channel"}]
    assert [m.text for m in emu.messages_in(general)] == ["Scheduled"]
    [view] = emu.views_of(alice)
    assert view["callback_id"] == "schedule"


async def test_trigger_id_expires_and_is_single_use(
    emu: SlackEmulator,
    clock: Clock,
    bolt: AsyncApp,
    alice: SlUser,
    general: SlChannel,
    client: AsyncWebClient,
) -> None:
    @bolt.command("/space")
    async def space(ack: Any) -> None:
        await ack()

    rec = await emu.slash_command(alice, general, "/space", "")
    clock.now += 3.5
    err = await error_of(client.views_open(trigger_id=rec.trigger_id, view=MODAL))
    assert err.response["error"] == "expired_trigger_id"
    emu.assert_clean()  # a slow app is not a malformed request
    rec = await emu.slash_command(alice, general, "/space", "")
    await client.views_open(trigger_id=rec.trigger_id, view=MODAL)
    err = await error_of(client.views_open(trigger_id=rec.trigger_id, view=MODAL))
    assert err.response["error"] == "exchanged_trigger_id"
    assert [v.kind for v in emu.take_violations()] == ["trigger"]


async def test_click_and_view_submission(
    emu: SlackEmulator, bolt: AsyncApp, alice: SlUser, general: SlChannel, client: AsyncWebClient
) -> None:
    clicked: list[str] = []

    @bolt.action("join")
    async def join(ack: Any, body: dict[str, Any], respond: Any) -> None:
        await ack()
        clicked.append(body["actions"][0]["value"])
        await respond(text="You're in", replace_original=True)

    @bolt.view("schedule")
    async def submit(ack: Any, view: dict[str, Any]) -> None:
        title = view["state"]["values"]["title"]["value"]["value"]
        if len(title) < 3:
            await ack(response_action="errors", errors={"title": "Too short"})
        else:
            await ack()

    blocks = [
        {
            "type": "actions",
            "block_id": "b",
            "elements": [
                {
                    "type": "button",
                    "text": {"type": "plain_text", "text": "Join"},
                    "action_id": "join",
                    "value": "s1",
                }
            ],
        }
    ]
    await client.chat_postMessage(channel=general.id, text="AMA", blocks=blocks)
    [msg] = emu.messages_in(general)
    rec = await emu.click(alice, msg, action_id="join")
    assert rec.status == 200
    await emu.wait_until(lambda: msg.text == "You're in", what="the message replaced")
    assert clicked == ["s1"] and msg.text == "You're in"
    with pytest.raises(AssertionError, match="no element"):
        await emu.click(alice, msg, action_id="leave")
    dm = await client.chat_postMessage(channel=alice.id, text="AMA", blocks=blocks)
    stranger = emu.add_user(emu.teams[alice.team_id], "stranger")
    with pytest.raises(AssertionError, match="cannot see"):  # someone else's DM
        await emu.click(stranger, emu.find_message(dm["ts"]), action_id="join")

    cmd = await emu.slash_command(alice, general, "/nothing")  # any trigger will do for views.open
    assert cmd.status == 404  # Bolt answers 404 when no listener matched
    view = (await client.views_open(trigger_id=cmd.trigger_id, view=MODAL))["view"]
    rec = await emu.submit_view(alice, view, values={"title": {"value": "AM"}})
    assert rec.body == {"response_action": "errors", "errors": {"title": "Too short"}}
    assert len(emu.open_views_of(alice)) == 1
    with pytest.raises(AssertionError, match="required input"):
        await emu.submit_view(
            alice, view, values={}
        )  # Slack's client will not submit an empty required input
    rec = await emu.submit_view(alice, view, values={"title": {"value": "AMA night"}})
    assert rec.status == 200 and emu.open_views_of(alice) == [] and not emu.is_open(view)
    assert [v["callback_id"] for v in emu.views_of(alice)] == ["schedule"]
    closed: list[str] = []

    @bolt.view_closed("schedule")
    async def on_close(ack: Any, view: dict[str, Any]) -> None:
        await ack()
        closed.append(view["id"])

    again = (
        await client.views_open(
            trigger_id=(await emu.slash_command(alice, general, "/x")).trigger_id,
            view={**MODAL, "notify_on_close": True},
        )
    )["view"]
    rec2 = await emu.close_view(alice, again)
    assert rec2 is not None and rec2.acked and closed == [again["id"]] and not emu.is_open(again)
    emu.assert_clean()


async def test_click_picks_the_button_by_value_and_sees_one_workspace(
    emu: SlackEmulator, bolt: AsyncApp, alice: SlUser, general: SlChannel, client: AsyncWebClient
) -> None:
    """A card has several buttons with one action_id (Set reminder, Start, Cancel…) in different rows:
    ``value`` picks the one pressed. A member of another workspace cannot see (nor press) the message."""
    pressed: list[str] = []

    @bolt.action("press")
    async def press(ack: Any, action: dict[str, Any]) -> None:
        await ack()
        pressed.append(action["value"])

    def button(value: str) -> dict[str, Any]:
        text = {"type": "plain_text", "text": value}
        return {"type": "button", "text": text, "action_id": "press", "value": value}

    # one action_id per block (Slack refuses a duplicate within a block), repeated across blocks
    blocks = [{"type": "actions", "elements": [button(v)]} for v in ("subscribe:s1", "start:s1", "cancel:s1")]
    await client.chat_postMessage(channel=general.id, text="card", blocks=blocks)
    [msg] = emu.messages_in(general)
    for value in ("cancel:s1", "start:s1", "subscribe:s1"):
        await emu.click(alice, msg, "press", value)
    await emu.click(alice, msg, "press")  # no value: the first
    await emu.wait_until(lambda: len(pressed) == 4, what="four presses")
    assert pressed == ["cancel:s1", "start:s1", "subscribe:s1", "subscribe:s1"]
    with pytest.raises(AssertionError, match="has value"):
        await emu.click(alice, msg, "press", "end:s1")

    other = emu.create_workspace("Globex")
    with pytest.raises(AssertionError, match="cannot see"):
        await emu.click(emu.add_user(other, "gina"), msg, "press", "start:s1")
    emu.assert_clean()


async def test_events_retries_home_and_hostile_traffic(
    emu: SlackEmulator, bolt: AsyncApp, team: SlTeam, alice: SlUser, client: AsyncWebClient
) -> None:
    seen: list[tuple[str, str | None]] = []

    @bolt.event("app_home_opened")
    async def home(event: dict[str, Any], context: Any, client: AsyncWebClient) -> None:
        seen.append((event["user"], None))
        await client.views_publish(user_id=event["user"], view={"type": "home", "blocks": []})

    @bolt.event("app_mention")
    async def mention(body: dict[str, Any], request: Any) -> None:
        seen.append((body["event_id"], request.headers.get("x-slack-retry-num", [None])[0]))

    rec = await emu.open_home(alice)
    assert rec.status == 200
    rec = await emu.send_event(team, {"type": "app_mention", "user": alice.id, "text": "hi", "channel": "C1"})
    again = await emu.retry(rec)
    assert again.status == 200 and again.event_id == rec.event_id
    await emu.wait_for_call("views.publish")
    await emu.wait_until(lambda: len(seen) == 3)
    assert seen[1:] == [(rec.event_id, None), (rec.event_id, "1")]
    assert emu.home_of(alice) is not None and emu.home_of(alice)["type"] == "home"  # type: ignore[index]
    body = json.dumps({"type": "event_callback"}).encode()
    status, _ = await emu.post_raw(
        body, {"X-Slack-Request-Timestamp": "1", "X-Slack-Signature": emu.sign(body, "1")}
    )
    assert status == 401  # a stale timestamp
    status, _ = await emu.post_raw(body, {"X-Slack-Request-Timestamp": "1", "X-Slack-Signature": "v0=00"})
    assert status == 401
    assert (await emu.verify_url()).body == {"challenge": emu.inbound[-1].payload["challenge"]}


async def test_event_auto_retries_when_the_app_is_slow(
    emu: SlackEmulator, bolt: AsyncApp, team: SlTeam
) -> None:
    emu.ack_timeout = 0.2  # Slack's 3 s, shortened for the test
    emu.auto_retry_events = True
    attempts: list[str | None] = []
    release = asyncio.Event()

    @bolt.middleware
    async def slow(req: Any, resp: Any, next: Any) -> Any:
        attempts.append((req.headers.get("x-slack-retry-num") or [None])[0])
        if len(attempts) == 1:
            emu.ack_timeout = (
                5.0  # only the first delivery is cut short: a loaded machine cannot flake the retry
            )
            await release.wait()  # the first delivery never acks in time
        return await next()

    @bolt.event("app_mention")
    async def mention() -> None:
        pass

    rec = await emu.send_event(team, {"type": "app_mention", "user": "U1", "text": "hi", "channel": "C1"})
    release.set()
    assert rec.acked and rec.retry_num == 1
    assert attempts == [None, "1"]
    assert (
        emu.inbound[0].error == "timeout"
        and emu.inbound[1].sent_headers["X-Slack-Retry-Reason"] == "http_timeout"
    )


async def test_socket_mode_round_trip(
    emu: SlackEmulator, team: SlTeam, alice: SlUser, general: SlChannel
) -> None:
    from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

    app = AsyncApp(client=AsyncWebClient(token=emu.bot_token(team), base_url=emu.api_base))
    events: list[str] = []

    @app.command("/space")
    async def space(ack: Any, body: dict[str, Any]) -> None:
        await ack(text=f"socket {body['text']}")

    @app.event("app_mention")
    async def mention(event: dict[str, Any]) -> None:
        events.append(event["text"])

    handler = AsyncSocketModeHandler(app, app_token=emu.app_token)
    await handler.connect_async()
    try:
        await emu.wait_socket_connected()
        emu.transport = "socket"
        rec = await emu.slash_command(alice, general, "/space", "now")
        assert rec.acked and rec.body == {"text": "socket now"}
        assert [m.text for m in emu.ephemeral_to(alice)] == ["socket now"]
        rec = await emu.send_event(
            team, {"type": "app_mention", "user": alice.id, "text": "hey", "channel": general.id}
        )
        assert rec.acked
        await emu.wait_until(lambda: events)
        assert events == ["hey"]
        assert emu.socket_messages[0]["type"] == "slash_commands"
        assert emu.api_calls("apps.connections.open")[0].ok
        calls_so_far = len(emu.calls)
        await emu.disconnect_socket()  # Slack refreshes the connection: slack_sdk opens a new one
        await emu.wait_for_call("apps.connections.open", start=calls_so_far)
        await emu.wait_socket_connected()
        rec = await emu.slash_command(alice, general, "/space", "again")
        assert rec.body == {"text": "socket again"}
    finally:
        await handler.close_async()


async def test_oauth_install_and_single_use_code(emu: SlackEmulator, tmp_path: Any) -> None:
    from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
    from slack_sdk.oauth.installation_store import FileInstallationStore
    from slack_sdk.oauth.state_store import FileOAuthStateStore

    acme = emu.create_workspace("Acme", installed=False)
    owner = emu.add_user(acme, "owner", is_owner=True)
    store = FileInstallationStore(base_dir=str(tmp_path / "installs"))
    client = AsyncWebClient(base_url=emu.api_base)
    app = AsyncApp(
        signing_secret=emu.signing_secret,
        client=client,
        oauth_settings=AsyncOAuthSettings(
            client_id=emu.client_id,
            client_secret=emu.client_secret,
            scopes=["chat:write", "commands"],
            authorization_url=emu.oauth_base,
            installation_store=store,
            state_store=FileOAuthStateStore(expiration_seconds=600, base_dir=str(tmp_path / "states")),
        ),
    )
    runner = web.AppRunner(app.web_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        status, _location = await emu.install_via_oauth(f"{base}/slack/install", acme, owner)
        assert status == 200, emu.oauth_result_page  # Bolt's default success page
        installed = await store.async_find_installation(enterprise_id=None, team_id=acme.id)
        assert installed is not None and installed.bot_token == emu.bot_token(acme)
        assert emu.oauth_log[-1]["scope"] == "chat:write,commands"
        err = await error_of(
            client.oauth_v2_access(
                client_id=emu.client_id, client_secret=emu.client_secret, code=emu.oauth_codes[-1]
            )
        )
        assert err.response["error"] == "invalid_code"  # a code works once
        # the install granted what the app asked for, and no more
        bot = AsyncWebClient(token=installed.bot_token, base_url=emu.api_base)
        err = await error_of(bot.users_info(user=owner.id))
        assert (err.response["error"], err.response["needed"]) == ("missing_scope", "users:read")
        assert [v.kind for v in emu.take_violations()] == ["scope"]
        err = await error_of(client.oauth_v2_access(client_id=emu.client_id, client_secret="wrong", code="x"))
        assert err.response["error"] == "bad_client_secret"
    finally:
        await runner.cleanup()


async def test_response_url_limits(
    emu: SlackEmulator, clock: Clock, bolt: AsyncApp, alice: SlUser, general: SlChannel
) -> None:
    @bolt.command("/space")
    async def space(ack: Any) -> None:
        await ack()

    rec = await emu.slash_command(alice, general, "/space")
    assert rec.response_url is not None
    async with aiohttp.ClientSession() as http:
        for i in range(6):  # 5 uses, then "expired_url"
            async with http.post(rec.response_url, json={"text": f"r{i}"}) as res:
                assert res.status == (200 if i < 5 else 404)
        rec = await emu.slash_command(alice, general, "/space")
        assert rec.response_url is not None
        clock.now += 30 * 60 + 1
        async with http.post(rec.response_url, json={"text": "late"}) as res:
            assert res.status == 404 and (await res.json())["error"] == "expired_url"
        async with http.post(rec.response_url.replace("respond/", "respond/x"), json={"text": "?"}) as res:
            assert res.status == 404
    assert [m.text for m in emu.ephemeral_to(alice)] == [f"r{i}" for i in range(5)]
    assert [v.kind for v in emu.take_violations()] == ["response_url"]  # the made-up URL


async def test_views_update_push_publish(
    emu: SlackEmulator, bolt: AsyncApp, alice: SlUser, general: SlChannel, client: AsyncWebClient
) -> None:
    @bolt.command("/space")
    async def space(ack: Any) -> None:
        await ack()

    @bolt.action("more")
    async def more(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        await client.views_push(trigger_id=body["trigger_id"], view={**MODAL, "callback_id": "pushed"})

    @bolt.view("schedule")
    async def submit(ack: Any) -> None:
        await ack(response_action="update", view={**MODAL, "callback_id": "updated", "blocks": []})

    rec = await emu.slash_command(alice, general, "/space")
    opened = (await client.views_open(trigger_id=rec.trigger_id, view=MODAL))["view"]
    err = await error_of(client.views_update(view_id=opened["id"], hash="stale", view=MODAL))
    assert err.response["error"] == "hash_conflict"
    with_button = {
        **MODAL,
        "blocks": [
            *MODAL["blocks"],
            {
                "type": "actions",
                "elements": [
                    {"type": "button", "text": {"type": "plain_text", "text": "More"}, "action_id": "more"}
                ],
            },
        ],
    }
    updated = (await client.views_update(view_id=opened["id"], hash=opened["hash"], view=with_button))["view"]
    await emu.click(alice, updated, action_id="more")
    await emu.wait_until(lambda: len(emu.open_views_of(alice)) == 2)
    assert [v["callback_id"] for v in emu.open_views_of(alice)] == ["schedule", "pushed"]
    await emu.submit_view(alice, emu.open_views_of(alice)[0], values={"title": {"value": "AMA"}})
    assert [v["callback_id"] for v in emu.open_views_of(alice)] == ["updated", "pushed"]
    home = (await client.views_publish(user_id=alice.id, view={"type": "home", "blocks": []}))["view"]
    err = await error_of(
        client.views_publish(user_id=alice.id, hash="old", view={"type": "home", "blocks": []})
    )
    assert err.response["error"] == "hash_conflict"
    assert emu.home_of(alice) == home
    err = await error_of(client.views_publish(user_id=alice.id, view={"type": "modal", "blocks": []}))
    assert err.response["error"] == "invalid_arguments"
    assert [v.kind for v in emu.take_violations()] == ["view"]


async def test_workspace_wide_post_cap(
    emu: SlackEmulator, clock: Clock, team: SlTeam, client: AsyncWebClient
) -> None:
    emu.post_workspace_per_minute = 10
    chans = [emu.add_channel(team, f"c{i}") for i in range(11)]
    for chan in chans[:10]:
        await client.chat_postMessage(channel=chan.id, text="x")
        clock.now += 1
    err = await error_of(client.chat_postMessage(channel=chans[10].id, text="x"))
    assert err.response.status_code == 429 and err.response.headers["Retry-After"] == "50"


async def test_uninstall_reaches_the_app(emu: SlackEmulator, bolt: AsyncApp, team: SlTeam) -> None:
    seen: list[str] = []

    @bolt.event("tokens_revoked")
    async def revoked(event: dict[str, Any]) -> None:
        seen.append(event["type"])

    @bolt.event("app_uninstalled")
    async def uninstalled(event: dict[str, Any]) -> None:
        seen.append(event["type"])

    recs = await emu.uninstall(team)
    assert [r.payload["event"]["type"] for r in recs] == ["tokens_revoked", "app_uninstalled"]
    assert all(r.acked for r in recs)
    with pytest.raises(AssertionError, match="not installed"):
        emu.bot_token(team)


async def test_user_messages_and_group_mentions(
    emu: SlackEmulator,
    bolt: AsyncApp,
    team: SlTeam,
    alice: SlUser,
    general: SlChannel,
    client: AsyncWebClient,
) -> None:
    got: list[tuple[str, str]] = []

    @bolt.event("message")
    async def message(event: dict[str, Any]) -> None:
        got.append((event["channel_type"], event["text"]))

    rec = await emu.user_says(alice, emu.im_channel(alice), "help")
    assert rec.acked
    await emu.wait_until(lambda: got)
    assert got == [("im", "help")]
    assert [m.user for m in emu.dms_to(alice)] == [alice.id]
    bob = emu.add_user(team, "bob")
    gid = emu.add_usergroup(team, "space-mods", [alice, bob])
    await client.chat_postMessage(channel=general.id, text=f"<!subteam^{gid}|@space-mods> new space")
    assert emu.received(containing="new space") == {alice.id: 1, bob.id: 1}
    assert emu.received() == {alice.id: 1, bob.id: 1}  # alice's own "help" is not something she received


async def test_the_fixture(slack_emulator: SlackEmulator) -> None:  # noqa: F811
    team = slack_emulator.create_workspace("Fixture")
    client = AsyncWebClient(token=slack_emulator.bot_token(team), base_url=slack_emulator.api_base)
    assert (await client.auth_test())["team_id"] == team.id
