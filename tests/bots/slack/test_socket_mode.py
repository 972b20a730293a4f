"""Socket Mode: the same Bolt app, reached over the websocket it opens (``apps.connections.open`` with the
``xapp-`` token) instead of signed HTTP — for self-hosters without a public URL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.backends import migrated_database
from tests.bots.slack.handlers_env import SlackEnv, handlers_for, slack_env
from tests.conftest import CoreEnv


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str | None]]:
    with migrated_database("sqlite", tmp_path_factory.mktemp("db")) as url:
        yield "sqlite", url


@pytest.fixture
async def env(core_env: CoreEnv) -> AsyncIterator[SlackEnv]:
    async with slack_env(core_env, socket=True) as env:
        yield env


async def test_schedule_by_text_over_socket_mode(env: SlackEnv) -> None:
    rec = await env.command(env.host, "tomorrow 20:00 Weekly AMA")
    assert rec.acked and rec.error is None
    assert env.emu.socket_messages[-1]["type"] == "slash_commands"
    assert env.emu.api_calls("apps.connections.open")  # connected with the app token
    [space] = await env.core.spaces.upcoming(env.chat())
    assert space.title == "Weekly AMA"
    assert "Scheduled ✓" in env.last_said(env.host) and "Weekly AMA" in env.last_said(env.host)
    assert [s.notice.space_id for s in env.core.platform.of("post") if s.notice.kind == "card"] == [space.id]


async def test_events_over_socket_mode_are_deduplicated_too(env: SlackEnv) -> None:
    first = await env.emu.open_home(env.host)
    again = await env.emu.retry(first)
    await env.settle()
    assert first.acked and again.acked
    assert len(env.emu.api_calls("views.publish")) == 1


async def test_stop_closes_the_socket_and_is_idempotent(env: SlackEnv) -> None:
    await env.handlers.stop()
    await env.handlers.stop()
    assert env.handlers._socket is None


async def test_a_process_that_does_not_receive_never_connects(core_env: CoreEnv) -> None:
    async with slack_env(core_env) as env:
        quiet = handlers_for(env.core, env.emu, env.workspaces, app_token=env.emu.app_token, receive=False)
        await quiet.start()
        await quiet.stop()
        assert env.emu.api_calls("apps.connections.open") == []
