"""The Slack adapter against the emulator: the real slack_sdk (and slack_bolt), pointed at tests/fakes/slack.py.

* ``slack``: a started emulator (strict: a request Slack would refuse fails the test at teardown).
* :func:`running`: a started :class:`SlackPlatform` on one workspace's token, stopped on exit.
* :func:`oauth_workspaces`: :class:`Workspaces` in OAuth mode, installations stored in ``db``.
* :func:`sql_engine` / :func:`deliver_until_quiet`: the delivery engine on SQL (shared with Discord's tests).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer
from slack_sdk.oauth.installation_store.models.installation import Installation
from sqlalchemy.ext.asyncio import AsyncEngine

from bots.slack.adapter import SlackPlatform
from bots.slack.workspaces import Workspaces
from core.ports import Clock
from storage.codes import SqlOneTimeCodes
from tests.bots.discord.conftest import deliver_until_quiet, sql_engine
from tests.bots.telegram.conftest import Links
from tests.fakes.slack import SlackEmulator, SlTeam

__all__ = ["deliver_until_quiet", "ignoring_events", "oauth_workspaces", "running", "sql_engine"]


@pytest_asyncio.fixture
async def slack() -> AsyncIterator[SlackEmulator]:
    async with SlackEmulator() as emu:
        yield emu


def oauth_workspaces(emu: SlackEmulator, db: AsyncEngine, clock: Clock) -> Workspaces:
    """The workspaces of a distributed app (SLACK_CLIENT_ID/SECRET): installs through the emulator's OAuth
    pages, stored in ``db`` (migrated: the slack_* tables and one-time codes)."""
    return Workspaces(
        api_base=emu.api_base,
        client_id=emu.client_id,
        client_secret=emu.client_secret,
        engine=db,
        codes=SqlOneTimeCodes(db),
        clock=clock,
        authorize_url=emu.oauth_base,
    )


async def installed(workspaces: Workspaces, emu: SlackEmulator, team: SlTeam) -> None:
    """``team``'s install stored as the OAuth redirect stores it, without playing the consent pages (tests
    whose subject is not the install: fan-outs, the benchmark)."""
    assert workspaces.store is not None, "OAuth workspaces only (oauth_workspaces)"
    await workspaces.store.async_save(
        Installation(
            app_id=emu.app_id,
            team_id=team.id,
            team_name=team.name,
            bot_token=emu.bot_token(team),
            bot_id=team.bot_id,
            bot_user_id=team.bot_user_id,
            user_id="U0INSTALLER",
        )
    )


@contextlib.asynccontextmanager
async def running(
    emu: SlackEmulator, team: SlTeam | None = None, **options: Any
) -> AsyncIterator[SlackPlatform]:
    """A started SlackPlatform with ``team``'s bot token (SLACK_BOT_TOKEN mode), or with ``workspaces``."""
    workspaces = options.pop("workspaces", None)
    if workspaces is None:
        assert team is not None
        workspaces = Workspaces(api_base=emu.api_base, token=emu.bot_token(team))
    platform = SlackPlatform(workspaces, links=options.pop("links", Links()), **options)
    try:
        await platform.start()
        yield platform
    finally:
        await platform.stop()


@contextlib.asynccontextmanager
async def ignoring_events(emu: SlackEmulator) -> AsyncIterator[list[bytes]]:
    """``emu.request_url`` answered 200 by a bare server (no app): for tests of the sending side that make
    Slack send events (an uninstall). Yields the bodies received."""
    bodies: list[bytes] = []

    async def ok(request: web.Request) -> web.Response:
        bodies.append(await request.read())
        return web.Response(text="")

    app = web.Application()
    app.router.add_post("/slack/events", ok)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    emu.request_url = str(server.make_url("/slack/events"))
    try:
        yield bodies
    finally:
        await server.close()
