"""The composition root builds Slack from the settings: SLACK_BOT_TOKEN (one workspace) or SLACK_CLIENT_ID /
SLACK_CLIENT_SECRET (OAuth installs kept in the service's database), the Bolt handlers mounted on the web app
at /slack/events (and the install pages), the real slack_sdk talking to the emulator."""

from __future__ import annotations

import io
from pathlib import Path

from bots.app import Role, build
from bots.cli import prepare_database
from bots.slack.adapter import SlackPlatform
from config.settings import Settings
from core.notices import reply
from core.refs import ChatRef, Platform
from tests.fakes.clock import FakeClock
from tests.fakes.secrets import SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET
from tests.fakes.slack import SlackEmulator


def _settings(tmp_path: Path, emu: SlackEmulator, **extra: str) -> Settings:
    return Settings.from_env(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'spaces.db'}",
            "SPACES_WORKER_ID": "test-1",
            "PORT": "0",
            "SLACK_API_BASE": emu.api_base,
            "SLACK_SIGNING_SECRET": SLACK_SIGNING_SECRET,
            **extra,
        }
    )


async def test_one_token_builds_slack_and_serves_its_events(tmp_path: Path, slack: SlackEmulator) -> None:
    team = slack.create_workspace("Acme", token=SLACK_BOT_TOKEN)
    host = slack.add_user(team, "host")
    chan = slack.add_channel(team, "general", [host])
    settings = _settings(tmp_path, slack, SLACK_BOT_TOKEN=SLACK_BOT_TOKEN, SLACK_MODERATOR_GROUP="space-mods")
    assert await prepare_database(settings) is None
    svc = await build(settings, role=Role.WEB, clock=FakeClock(), out=io.StringIO())
    try:
        await svc.start()
        (platform,) = [p for p in svc.router.platforms if isinstance(p, SlackPlatform)]
        assert platform.workspaces.single_workspace and platform.workspaces.token_team == team.id
        assert any(line.startswith("  platforms") and "slack" in line for line in svc.banner())

        slack.request_url = f"{svc.web_url}/slack/events"
        check = await slack.verify_url()
        assert check.status == 200 and check.payload["challenge"] in str(check.body)
        rec = await slack.slash_command(host, chan, "/space", "help")
        assert rec.status == 200  # signed by Slack: accepted
        status, _ = await slack.post_raw(b"command=/space&text=help", {"X-Slack-Signature": "v0=00"})
        assert status == 401  # forged: refused

        ref = await platform.post(ChatRef(Platform.SLACK, chan.id, scope=team.id), reply("hello"), key="k")
        assert ref.scope == team.id and [m.text for m in slack.messages_in(chan)] == ["hello"]
    finally:
        await svc.stop()


async def test_oauth_builds_the_install_pages_and_keeps_installs_in_the_database(
    tmp_path: Path, slack: SlackEmulator
) -> None:
    settings = _settings(
        tmp_path, slack, SLACK_CLIENT_ID=slack.client_id, SLACK_CLIENT_SECRET=slack.client_secret
    )
    assert await prepare_database(settings) is None
    svc = await build(settings, role=Role.WEB, clock=FakeClock(), out=io.StringIO())
    try:
        await svc.start()
        (platform,) = [p for p in svc.router.platforms if isinstance(p, SlackPlatform)]
        assert not platform.workspaces.single_workspace
        paths = {path for _method, path, _h in platform.web_routes()}
        assert {"/slack/events", "/slack/install", "/slack/oauth_redirect"} <= paths
        team = slack.create_workspace("Acme", installed=False)
        admin = slack.add_user(team, "admin", is_admin=True)
        chan = slack.add_channel(team, "general", [admin])
        status, _ = await slack.install_via_oauth(f"{svc.web_url}/slack/install", team, admin)
        assert status == 200
        ref = await platform.post(ChatRef(Platform.SLACK, chan.id, scope=team.id), reply("hi"), key="k")
        assert ref.scope == team.id and len(slack.messages_in(chan)) == 1
    finally:
        await svc.stop()
