"""SlackPlatform as core.ports.Places: the share page's links (pure) and the host's picture (users.info's
``profile.image_192`` through the real slack_sdk and the emulator), cached, failures answered None."""

from __future__ import annotations

from bots.slack.adapter import SlackPlatform
from bots.slack.workspaces import Workspaces
from core.ports import Places
from core.refs import ChatRef, MessageRef, Platform, UserRef
from tests.bots.slack.conftest import running
from tests.bots.telegram.conftest import Links
from tests.fakes.slack import SlackEmulator


def test_links_are_built_from_the_refs_alone() -> None:
    p = SlackPlatform(Workspaces(token="xoxb-unused"), links=Links())
    assert isinstance(p, Places)
    msg = MessageRef(Platform.SLACK, "C123", "1700000000.000100", scope="T9")
    assert p.message_link(msg) == "https://slack.com/app_redirect?team=T9&channel=C123"
    assert p.message_link(MessageRef(Platform.SLACK, "C123", "1.2")) == (
        "https://slack.com/app_redirect?channel=C123"  # no workspace known: Slack asks which
    )
    assert p.event_link(ChatRef(Platform.SLACK, "C123", scope="T9"), "R1") is None
    assert p.subscribe_link("abcdefghjk") is None


async def test_avatar_from_users_info_cached(slack: SlackEmulator) -> None:
    team = slack.create_workspace()
    ada = slack.add_user(team, "ada")
    now = [0.0]
    async with running(slack, team, monotonic=lambda: now[0]) as p:
        ref = UserRef(Platform.SLACK, ada.id, scope=team.id)
        url = await p.avatar_url(ref)
        assert url is not None and url.startswith("https://") and url.endswith("_192.png")
        now[0] += 120  # past users.info's own cache: the picture is kept longer
        assert await p.avatar_url(ref) == url
        assert len(slack.api_calls("users.info")) == 1
        now[0] += 3600
        assert await p.avatar_url(ref) == url
        assert len(slack.api_calls("users.info")) == 2
        assert await p.avatar_url(UserRef(Platform.DISCORD, "1")) is None


async def test_a_failed_read_answers_none_and_is_remembered(slack: SlackEmulator) -> None:
    team = slack.create_workspace()
    ada = slack.add_user(team, "ada")
    now = [0.0]
    async with running(slack, team, monotonic=lambda: now[0]) as p:
        ref = UserRef(Platform.SLACK, ada.id, scope=team.id)
        slack.fail_next("users.info", "internal_error", status=500, retry_after=None)
        assert await p.avatar_url(ref) is None
        assert await p.avatar_url(ref) is None  # a burst of views does not repeat it
        assert len(slack.api_calls("users.info")) == 1
        now[0] += 61
        assert (await p.avatar_url(ref) or "").endswith("_192.png")
        gone = UserRef(Platform.SLACK, "U0NOBODY", scope=team.id)
        assert await p.avatar_url(gone) is None
