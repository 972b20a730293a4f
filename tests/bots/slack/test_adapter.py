"""SlackPlatform against the emulator, through the real slack_sdk: sends, edits, DMs, mentions, each error
mapped onto the core's, the Call of a live Space, moderators and user info."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from bots.slack.adapter import NO_CALL, SlackPlatform, TtlCache
from bots.slack.render import PRESS
from bots.slack.workspaces import Workspaces
from core.errors import ChatUnavailable, RateLimited, RecipientUnreachable, TransientError
from core.models import EventSpec, EventStatus, SpaceStatus, SpaceView
from core.notices import card, reply
from core.refs import ChatRef, MessageRef, Platform, UserRef
from tests.bots.slack.conftest import ignoring_events, running
from tests.builders import space as space_sample
from tests.fakes.secrets import CANARY
from tests.fakes.slack import SlackEmulator, SlTeam, SlUser

START = datetime(2026, 12, 8, 19, 0, tzinfo=UTC)


def chat_of(team: SlTeam, channel_id: str) -> ChatRef:
    return ChatRef(Platform.SLACK, channel_id, scope=team.id)


def user_of(user: SlUser) -> UserRef:
    return UserRef(Platform.SLACK, user.id, scope=user.team_id)


def the_card(status: SpaceStatus = SpaceStatus.SCHEDULED, title: str = "Weekly AMA") -> object:
    sp = space_sample("abcdefghjk", title=title, status=status, starts_at=START, locale="en")
    return card(SpaceView(sp, 3, "https://spaces.example/s/abcdefghjk", zone="Europe/Paris"), "Ada", "en")


def spec(status: EventStatus, title: str = "Weekly AMA") -> EventSpec:
    return EventSpec(
        title=title,
        description="",
        starts_at=START,
        ends_at=START + timedelta(hours=1),
        status=status,
        location="https://spaces.example/s/abcdefghjk",
        channel=None,
    )


async def test_post_edit_direct(slack: SlackEmulator) -> None:
    team = slack.create_workspace("Acme")
    alice = slack.add_user(team, "alice")
    chan = slack.add_channel(team, "general", [alice])
    async with running(slack, team) as p:
        ref = await p.post(chat_of(team, chan.id), the_card(), key="k1")  # type: ignore[arg-type]
        assert ref == MessageRef(Platform.SLACK, chan.id, ref.id, scope=team.id)
        (msg,) = slack.messages_in(chan)
        assert msg.blocks[0]["type"] == "header" and "Weekly AMA" in msg.blocks[0]["text"]["text"]
        assert PRESS in msg.action_ids
        (call,) = slack.api_calls("chat.postMessage")
        assert call.params["unfurl_links"] in (False, "false", "0") and "link_names" not in call.params

        await p.edit(ref, the_card(SpaceStatus.LIVE))  # type: ignore[arg-type]
        await p.edit(ref, the_card(SpaceStatus.LIVE))  # type: ignore[arg-type]  # the same again: fine
        (msg,) = slack.messages_in(chan)
        assert len(msg.edits) == 2 and "🟣" in msg.blocks[0]["text"]["text"]

        dm = await p.direct(user_of(alice), reply("hello there"), key="k2")
        assert dm.chat_id.startswith("D") and dm.scope == team.id
        assert [m.text for m in slack.dms_to(alice)] == ["hello there"]
        assert not slack.api_calls("conversations.open")  # the user id as channel: no open needed


async def test_mentions_name_exactly_the_users_and_are_batched(slack: SlackEmulator) -> None:
    team = slack.create_workspace()
    fans = slack.add_users(team, 120, prefix="fan")
    chan = slack.add_channel(team, "general", fans)
    notice = the_card(title="<!channel> party @here")
    async with running(slack, team) as p:
        users = {user_of(f): f.name for f in fans}
        ref = await p.mention(chat_of(team, chan.id), users, notice, key="m1")  # type: ignore[arg-type]
    assert ref.chat_id == chan.id
    assert slack.received() == {f.id: 1 for f in fans}
    assert len(slack.messages_in(chan)) == 3  # 50 per message (render's contract)
    assert not slack.broadcasts  # the title's <!channel> stayed text


async def test_errors_are_mapped(slack: SlackEmulator) -> None:
    team = slack.create_workspace()
    alice = slack.add_user(team, "alice")
    chan = slack.add_channel(team, "general", [alice])
    chat = chat_of(team, chan.id)
    async with running(slack, team) as p:
        slack.fail_next("chat.postMessage", "ratelimited", retry_after=7)
        with pytest.raises(RateLimited) as limited:
            await p.post(chat, reply("x"), key="a")
        assert limited.value.retry_after == 7

        slack.fail_next("chat.postMessage", "internal_error")
        with pytest.raises(TransientError):
            await p.post(chat, reply("x"), key="b")

        with pytest.raises(ChatUnavailable):
            await p.post(chat_of(team, "C0NOPE0000"), reply("x"), key="c")  # channel_not_found
        slack.remove_bot_from(chan)
        with pytest.raises(ChatUnavailable):
            await p.post(chat, reply("x"), key="d")  # not_in_channel
        with pytest.raises(ChatUnavailable):
            await p.edit(MessageRef(Platform.SLACK, chan.id, "1.000001", scope=team.id), reply("x"))

        with pytest.raises(RecipientUnreachable):
            await p.direct(UserRef(Platform.SLACK, "U0NOBODY00", scope=team.id), reply("x"), key="e")
        slack.deactivate(alice)
        with pytest.raises(RecipientUnreachable):
            await p.direct(user_of(alice), reply("x"), key="f")
        slack.deactivated_post_error = "channel_not_found"  # what some apps see instead
        with pytest.raises(RecipientUnreachable):
            await p.direct(user_of(alice), reply("x"), key="g")

        other = slack.create_workspace("Elsewhere")
        with pytest.raises(ChatUnavailable):  # a workspace the token does not belong to
            await p.post(chat_of(other, "C0000000001"), reply("x"), key="h")


async def test_a_revoked_token_makes_the_workspace_unavailable(slack: SlackEmulator) -> None:
    team = slack.create_workspace()
    alice = slack.add_user(team, "alice")
    chan = slack.add_channel(team, "general", [alice])
    async with running(slack, team) as p, ignoring_events(slack):
        await slack.uninstall(team)  # nobody handles the events here: only the token's revocation counts
        with pytest.raises(ChatUnavailable):
            await p.post(chat_of(team, chan.id), reply("x"), key="a")
        with pytest.raises(ChatUnavailable):  # a DM too: the workspace is gone, not the person
            await p.direct(user_of(alice), reply("x"), key="b")


async def test_the_call_is_made_at_live_and_ended_at_end(slack: SlackEmulator) -> None:
    team = slack.create_workspace()
    chan = slack.add_channel(team, "general")
    chat = chat_of(team, chan.id)
    async with running(slack, team) as p:
        assert await p.create_event(chat, spec(EventStatus.SCHEDULED), key="e1") == NO_CALL
        assert await p.update_event(chat, NO_CALL, spec(EventStatus.SCHEDULED, "Renamed")) is None
        assert not slack.calls_in(team)

        call_id = await p.update_event(chat, NO_CALL, spec(EventStatus.ACTIVE, "<!channel> AMA"))
        assert call_id is not None and call_id != NO_CALL
        (call,) = slack.calls_in(team)
        assert call.id == call_id and call.join_url == "https://spaces.example/s/abcdefghjk/listen"
        assert call.title == "<!channel> AMA" and not call.ended  # calls.add's title is plain text
        (posted,) = slack.messages_in(chan)
        assert posted.blocks == [{"type": "call", "call_id": call_id}]
        assert posted.text == "🟣 &lt;!channel&gt; AMA" and not slack.broadcasts  # the title is escaped

        assert await p.update_event(chat, call_id, spec(EventStatus.ACTIVE)) is None  # no second Call
        assert await p.update_event(chat, call_id, spec(EventStatus.COMPLETED)) is None
        assert slack.calls_in(team)[0].ended
        assert await p.update_event(chat, call_id, spec(EventStatus.COMPLETED)) is None  # again: fine
        assert len(slack.calls_in(team)) == 1


async def test_a_retried_go_live_reuses_its_call(slack: SlackEmulator) -> None:
    team = slack.create_workspace()
    chan = slack.add_channel(team, "general")
    chat = chat_of(team, chan.id)
    async with running(slack, team) as p:
        slack.fail_next("chat.postMessage", "internal_error")  # the Call card's post fails after calls.add
        with pytest.raises(TransientError):
            await p.update_event(chat, NO_CALL, spec(EventStatus.ACTIVE))
        call_id = await p.update_event(chat, NO_CALL, spec(EventStatus.ACTIVE))
        assert [c.id for c in slack.calls_in(team)] == [call_id]
        assert len(slack.messages_in(chan)) == 1


async def test_a_space_created_live_gets_its_call_at_once(slack: SlackEmulator) -> None:
    team = slack.create_workspace()
    chan = slack.add_channel(team, "general")
    async with running(slack, team) as p:
        call_id = await p.create_event(chat_of(team, chan.id), spec(EventStatus.ACTIVE), key="e")
    assert [c.id for c in slack.calls_in(team)] == [call_id]


async def test_moderators_are_admins_owners_or_the_user_group(slack: SlackEmulator) -> None:
    team = slack.create_workspace()
    admin = slack.add_user(team, "admin", is_admin=True)
    owner = slack.add_user(team, "owner", is_owner=True)
    mod = slack.add_user(team, "mod")
    plain = slack.add_user(team, "plain")
    group = slack.add_usergroup(team, "space-mods", [mod])
    chan = slack.add_channel(team, "general", [admin, owner, mod, plain])
    chat = chat_of(team, chan.id)
    async with running(slack, team, moderator_group=group) as p:
        verdicts = {u.name: await p.is_moderator(chat, user_of(u)) for u in (admin, owner, mod, plain)}
        assert verdicts == {"admin": True, "owner": True, "mod": True, "plain": False}
        calls = len(slack.api_calls())
        assert await p.is_moderator(chat, user_of(mod))  # cached: no new call
        assert len(slack.api_calls()) == calls
    async with running(slack, team) as p:  # no group configured: admins and owners only
        assert not await p.is_moderator(chat, user_of(mod))
        assert await p.is_moderator(chat, user_of(owner))


async def test_an_admin_moderates_only_their_own_workspace(slack: SlackEmulator) -> None:
    acme, globex = slack.create_workspace("Acme"), slack.create_workspace("Globex")
    admin = slack.add_user(globex, "admin", is_admin=True)
    async with running(slack, acme) as p:
        assert not await p.is_moderator(chat_of(acme, "C1"), user_of(admin))
        assert not await p.is_moderator(ChatRef(Platform.TELEGRAM, "-100"), user_of(admin))


async def test_the_moderator_group_by_handle(slack: SlackEmulator) -> None:
    team = slack.create_workspace()
    mod = slack.add_user(team, "mod")
    group = slack.add_usergroup(team, "space-mods", [mod])
    # usergroups.list, which resolving a handle needs, answered here for this test
    slack.add_method(
        "usergroups.list",
        lambda ctx: {"usergroups": [{"id": group, "handle": "space-mods", "team_id": team.id}]},
    )
    async with running(slack, team, moderator_group="@space-mods") as p:
        assert await p.is_moderator(chat_of(team, "C1"), user_of(mod))


async def test_user_info_is_cached_briefly(slack: SlackEmulator) -> None:
    team = slack.create_workspace()
    amelie = slack.add_user(team, "amelie", locale="fr-FR", tz="Europe/Paris")
    now = [0.0]
    async with running(slack, team, monotonic=lambda: now[0]) as p:
        info = await p.user_info(user_of(amelie))
        assert info["locale"] == "fr-FR" and info["tz"] == "Europe/Paris"
        await p.user_info(user_of(amelie))
        assert len(slack.api_calls("users.info")) == 1
        now[0] += 61
        await p.user_info(user_of(amelie))
        assert len(slack.api_calls("users.info")) == 2


def test_ttl_cache_is_bounded() -> None:
    now = [0.0]
    cache: TtlCache[int, int] = TtlCache(10.0, 3, lambda: now[0])
    for i in range(5):
        cache.put(i, i)
    assert len(cache) == 3 and cache.get(0) is None and cache.get(4) == 4
    now[0] = 11
    assert cache.get(4) is None


async def test_no_token_reaches_a_log_line(slack: SlackEmulator, caplog: pytest.LogCaptureFixture) -> None:
    """slack_sdk's own DEBUG logging (request and response bodies) is held back by bots.logs' floors."""
    from bots.logs import hold_libraries

    hold_libraries(logging.DEBUG)
    team = slack.create_workspace()
    chan = slack.add_channel(team, "general")
    with caplog.at_level(logging.DEBUG):
        async with running(slack, team) as p:
            await p.post(chat_of(team, chan.id), reply("x"), key="a")
            slack.fail_next("chat.postMessage", "invalid_auth")
            with pytest.raises(ChatUnavailable):
                await p.post(chat_of(team, chan.id), reply("x"), key="b")
    assert CANARY not in caplog.text
    assert slack.bot_token(team) not in caplog.text


async def test_stop_is_idempotent_and_safe_before_start(slack: SlackEmulator) -> None:
    team = slack.create_workspace()
    p = SlackPlatform(Workspaces(api_base=slack.api_base, token=slack.bot_token(team)), links=None)  # type: ignore[arg-type]
    await p.stop()
    await p.start()
    await p.stop()
    await p.stop()


async def test_a_call_whose_id_was_never_stored_is_shown_once_and_ended(slack: SlackEmulator) -> None:
    team = slack.create_workspace()
    chan = slack.add_channel(team, "general")
    chat = chat_of(team, chan.id)
    async with running(slack, team) as p:
        first = await p.update_event(chat, NO_CALL, spec(EventStatus.ACTIVE))
        again = await p.update_event(chat, NO_CALL, spec(EventStatus.ACTIVE))
        assert first == again
        await p.update_event(chat, NO_CALL, spec(EventStatus.COMPLETED))
    assert len(slack.messages_in(chan)) == 1
    assert [c.ended for c in slack.calls_in(team)] == [True]
