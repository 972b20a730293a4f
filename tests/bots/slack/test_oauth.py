"""OAuth v2 installs (one app, many workspaces): two workspaces installed through ``/slack/install`` and
``/slack/oauth_redirect`` (Bolt's OAuth flow with Workspaces.bolt_options(): the installation store in the
service's database, the state store on one-time codes), each send made with its own workspace's token, the
state single use across processes, and an uninstall that deletes the workspace's rows."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bots.slack.adapter import SlackPlatform
from bots.slack.workspaces import (
    INSTALL_PATH,
    REDIRECT_PATH,
    SCOPES,
    STATE_TTL,
    CodesStateStore,
    Workspaces,
)
from core.errors import ChatUnavailable
from core.notices import reply
from core.refs import ChatRef, Platform
from storage.codes import SqlOneTimeCodes
from storage.db import make_engine
from storage.migrate import upgrade
from tests.bots.slack.conftest import ignoring_events, oauth_workspaces
from tests.bots.telegram.conftest import Links
from tests.fakes.clock import FakeClock
from tests.fakes.secrets import CANARY, SLACK_SIGNING_SECRET
from tests.fakes.slack import SlackEmulator

NOW = datetime(2026, 12, 7, 20, 0, tzinfo=UTC)


@dataclass
class Env:
    emu: SlackEmulator
    db: AsyncEngine
    workspaces: Workspaces
    platform: SlackPlatform
    install_url: str
    clock: FakeClock

    async def rows(self, table: str, team_id: str) -> int:
        store = self.workspaces.store
        assert store is not None
        t = store.bots if table == "bots" else store.installations
        async with self.db.connect() as conn:
            return int((await conn.execute(select(func.count()).where(t.c.team_id == team_id))).scalar_one())


@contextlib.asynccontextmanager
async def oauth_pages(workspaces: Workspaces, api_base: str) -> AsyncIterator[str]:
    """Bolt's install and redirect pages for these workspaces, served on 127.0.0.1 (what the web app
    mounts through the handlers); yields the install URL."""
    app = AsyncApp(
        signing_secret=SLACK_SIGNING_SECRET,
        client=AsyncWebClient(base_url=api_base),
        logger=logging.getLogger("slack_bolt"),  # as the handlers do: under bots.logs' floor
        **workspaces.bolt_options(),
    )
    flow = app.oauth_flow
    assert flow is not None

    async def install(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await flow.handle_installation(await to_bolt_request(request)))

    async def redirect(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await flow.handle_callback(await to_bolt_request(request)))

    web_app = web.Application()
    web_app.router.add_get(INSTALL_PATH, install)
    web_app.router.add_get(REDIRECT_PATH, redirect)
    server = TestServer(web_app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url(INSTALL_PATH))
    finally:
        await server.close()


@pytest.fixture
async def env(tmp_path: Path, slack: SlackEmulator) -> AsyncIterator[Env]:
    url = f"sqlite:///{tmp_path / 'spaces.db'}"
    await upgrade(url)
    db = make_engine(url)
    clock = FakeClock(NOW)
    workspaces = oauth_workspaces(slack, db, clock)
    platform = SlackPlatform(workspaces, links=Links())
    await platform.start()
    try:
        async with oauth_pages(workspaces, slack.api_base) as install_url:
            yield Env(slack, db, workspaces, platform, install_url, clock)
    finally:
        await platform.stop()
        await db.dispose()


async def test_two_workspaces_installed_each_send_with_its_own_token(env: Env) -> None:
    emu = env.emu
    acme, globex = (
        emu.create_workspace("Acme", installed=False),
        emu.create_workspace("Globex", installed=False),
    )
    teams = {}
    for team in (acme, globex):
        admin = emu.add_user(team, "admin", is_admin=True)
        status, _ = await emu.install_via_oauth(env.install_url, team, admin)
        assert status == 200
        teams[team.id] = emu.add_channel(team, "general")
    first, second = [q for q in emu.oauth_log if "state" in q][-2:]
    assert set(first["scope"].split(",")) == set(SCOPES)
    assert first["state"] != second["state"]
    assert await env.rows("bots", acme.id) == 1 and await env.rows("installations", globex.id) == 1

    for team in (acme, globex):
        await env.platform.post(
            ChatRef(Platform.SLACK, teams[team.id].id, scope=team.id), reply("hi"), key="k"
        )
    posts = emu.api_calls("chat.postMessage")
    assert [p.team_id for p in posts] == [acme.id, globex.id]  # each with its workspace's token
    assert all(len(emu.messages_in(c)) == 1 for c in teams.values())
    with pytest.raises(ChatUnavailable):  # a workspace that never installed the app
        await env.platform.post(ChatRef(Platform.SLACK, "C1", scope="T0NEVER"), reply("hi"), key="k")


async def test_the_state_is_single_use_across_processes(env: Env) -> None:
    """Two processes (two Workspaces on the same database): a state issued by one is accepted once, by
    either; an expired one never."""
    other = oauth_workspaces(env.emu, env.db, env.clock)
    mine = CodesStateStore(SqlOneTimeCodes(env.db), env.clock)
    theirs = CodesStateStore(SqlOneTimeCodes(env.db), env.clock)
    state = await mine.async_issue()
    assert await theirs.async_consume(state)
    assert not await mine.async_consume(state)
    assert not await theirs.async_consume(state)
    late = await mine.async_issue()
    env.clock.advance(STATE_TTL)
    assert not await theirs.async_consume(late)
    assert other.store is not None


async def test_a_cancelled_install_installs_nothing(env: Env) -> None:
    emu = env.emu
    team = emu.create_workspace("Acme", installed=False)
    admin = emu.add_user(team, "admin", is_admin=True)
    await emu.install_via_oauth(env.install_url, team, admin, approve=False)  # the user cancels
    assert await env.rows("bots", team.id) == 0
    with pytest.raises(ChatUnavailable):
        await env.platform.post(ChatRef(Platform.SLACK, "C1", scope=team.id), reply("hi"), key="k")


async def test_uninstall_deletes_the_rows_and_later_sends_are_unavailable(env: Env) -> None:
    emu = env.emu
    acme, globex = (
        emu.create_workspace("Acme", installed=False),
        emu.create_workspace("Globex", installed=False),
    )
    chans = {}
    for team in (acme, globex):
        await emu.install_via_oauth(env.install_url, team, emu.add_user(team, "admin", is_admin=True))
        chans[team.id] = ChatRef(Platform.SLACK, emu.add_channel(team, "general").id, scope=team.id)
    await env.platform.post(chans[acme.id], reply("before"), key="a")  # its client is cached now

    async with ignoring_events(emu):
        await emu.uninstall(acme)  # what the handlers do on app_uninstalled / tokens_revoked:
    await env.workspaces.forget(acme.id)
    assert await env.rows("bots", acme.id) == 0 and await env.rows("installations", acme.id) == 0
    with pytest.raises(ChatUnavailable):
        await env.platform.post(chans[acme.id], reply("after"), key="b")
    await env.platform.post(chans[globex.id], reply("still here"), key="c")  # the other one is unaffected
    assert await env.rows("bots", globex.id) == 1

    # installed again: a new token, found at once
    await emu.install_via_oauth(env.install_url, acme, emu.add_user(acme, "admin2", is_admin=True))
    await env.platform.post(chans[acme.id], reply("back"), key="d")


async def test_a_reinstall_seen_by_another_process_loses_no_send(env: Env) -> None:
    """This process still holds the old (revoked) token of a workspace that another process saw being
    uninstalled and installed again: the refused send is made again with the new token, not dropped."""
    emu = env.emu
    team = emu.create_workspace("Acme", installed=False)
    await emu.install_via_oauth(env.install_url, team, emu.add_user(team, "admin", is_admin=True))
    chat = ChatRef(Platform.SLACK, emu.add_channel(team, "general").id, scope=team.id)
    await env.platform.post(chat, reply("cached"), key="a")
    other = oauth_workspaces(emu, env.db, env.clock)
    async with ignoring_events(emu):
        await emu.uninstall(team)
    await other.forget(team.id)
    await emu.install_via_oauth(env.install_url, team, emu.add_user(team, "admin2", is_admin=True))
    await env.platform.post(chat, reply("after the reinstall"), key="b")
    assert [m.text for m in emu.messages_in(chat.id)] == ["cached", "after the reinstall"]


async def test_an_uninstall_seen_by_another_process_is_noticed_at_the_next_refusal(env: Env) -> None:
    emu = env.emu
    team = emu.create_workspace("Acme", installed=False)
    await emu.install_via_oauth(env.install_url, team, emu.add_user(team, "admin", is_admin=True))
    chat = ChatRef(Platform.SLACK, emu.add_channel(team, "general").id, scope=team.id)
    await env.platform.post(chat, reply("cached"), key="a")
    other = oauth_workspaces(emu, env.db, env.clock)  # another process handles the uninstall event
    async with ignoring_events(emu):
        await emu.uninstall(team)
    await other.forget(team.id)
    with pytest.raises(ChatUnavailable):  # token_revoked: the cached client is dropped …
        await env.platform.post(chat, reply("x"), key="b")
    with pytest.raises(ChatUnavailable):  # … and the store, read again, has nothing
        await env.platform.post(chat, reply("x"), key="c")


async def test_no_secret_of_an_install_reaches_a_log_line(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    """The client secret, the code and the new bot token travel through slack_sdk and Bolt: at DEBUG
    (production's floors applied, as bots.logs sets them) none of them is logged; and the configured client
    secret is one the log redactor replaces anyway."""
    from bots.logs import Redactor, hold_libraries, settings_secrets
    from config.settings import Settings

    hold_libraries(logging.DEBUG)
    emu = env.emu
    team = emu.create_workspace("Acme", installed=False)
    with caplog.at_level(logging.DEBUG):
        await emu.install_via_oauth(env.install_url, team, emu.add_user(team, "admin", is_admin=True))
        await env.platform.post(
            ChatRef(Platform.SLACK, emu.add_channel(team, "general").id, scope=team.id), reply("hi"), key="k"
        )
    assert emu.client_secret not in caplog.text and CANARY not in caplog.text
    assert emu.bot_token(team) not in caplog.text

    s = Settings.from_env({"SLACK_CLIENT_ID": emu.client_id, "SLACK_CLIENT_SECRET": emu.client_secret})
    redactor = Redactor(settings_secrets(s))
    assert emu.client_secret not in redactor.redact(f"oauth failed with {emu.client_secret}")


async def test_a_grid_workspace_install_is_found_and_forgotten_by_its_team(env: Env) -> None:
    """Enterprise Grid: a workspace-level install is stored with its enterprise id; our references carry
    the team only. It is found by team, and forgotten by team whatever enterprise id the event names."""
    from slack_sdk.oauth.installation_store.models.installation import Installation

    emu = env.emu
    team = emu.create_workspace("Grid member")
    store = env.workspaces.store
    assert store is not None
    await store.async_save(
        Installation(
            app_id=emu.app_id,
            enterprise_id="E0GRID",
            team_id=team.id,
            bot_token=emu.bot_token(team),
            bot_id=team.bot_id,
            bot_user_id=team.bot_user_id,
            user_id="U0INSTALLER",
        )
    )
    chat = ChatRef(Platform.SLACK, emu.add_channel(team, "general").id, scope=team.id)
    await env.platform.post(chat, reply("hi"), key="a")
    await env.workspaces.forget(team.id)  # the event named no enterprise
    assert await env.rows("bots", team.id) == 0 and await env.rows("installations", team.id) == 0
    with pytest.raises(ChatUnavailable):
        await env.platform.post(chat, reply("x"), key="b")
