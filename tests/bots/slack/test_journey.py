"""One Space's life on Slack, end to end: members act through ``/slack/events`` (the real Bolt app in the
web app, called by the emulator), the real core and storage decide, the delivery engine sends through the
real SlackPlatform to the emulator — where what people saw is counted.

Core time is a FakeClock (reminders come due when the test moves it); the emulator's rate limits are off
(pacing is the adapter's tests' subject, not this one's).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import pytest

from bots.slack import render
from bots.slack import translate as tr
from core import rules
from core.models import SpaceStatus
from core.notices import Verb
from tests.backends import migrated_database
from tests.bots.slack.handlers_env import SlackEnv, slack_env
from tests.conftest import CoreEnv
from tests.fakes.slack import SlMessage


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str | None]]:
    with migrated_database("sqlite", tmp_path_factory.mktemp("db")) as url:
        yield "sqlite", url


@pytest.fixture
async def env(core_env: CoreEnv) -> AsyncIterator[SlackEnv]:
    async with slack_env(core_env, adapter=True) as env:
        env.emu.unlimited = True
        yield env


def _cards(env: SlackEnv) -> list[SlMessage]:
    """The Space cards in the channel (a header block), oldest first."""
    return [m for m in env.emu.messages_in(env.channel) if any(b.get("type") == "header" for b in m.blocks)]


def _header(card: SlMessage) -> str:
    [header] = [b for b in card.blocks if b.get("type") == "header"]
    return str(header["text"]["text"])


def _when(date: str, time: str) -> dict[str, Any]:
    return {
        tr.DATE_BLOCK: {tr.DATE_ACTION: date},
        tr.TIME_BLOCK: {tr.TIME_ACTION: time},
        tr.ZONE_BLOCK: {tr.ZONE_ACTION: "Europe/Paris"},
    }


async def test_a_space_from_schedule_to_end(env: SlackEnv) -> None:
    emu, host, alice, fanny = env.emu, env.host, env.alice, env.french
    await env.command(host, "tomorrow 20:00 Weekly AMA")
    [space] = await env.core.spaces.upcoming(env.chat())
    [card] = _cards(env)
    assert _header(card) == "Weekly AMA"

    # two members subscribe from the card; a double tap changes nothing
    for member in (alice, fanny, alice):
        await env.press(member, card, Verb.SUBSCRIBE, space.id)
    assert await env.core.spaces.subscriber_count(space.id) == 2

    # the host's reminders, each once, at T-30 and T-0
    env.core.clock.set(space.starts_at - timedelta(minutes=30))
    await env.settle()
    env.core.clock.set(space.starts_at)
    await env.settle()
    reminders = [m.text for m in emu.dms_to(host)]
    assert len(reminders) == 2 and "30 minutes" in reminders[0] and "It's time" in reminders[1]

    # start: every subscriber DMed once, the card live, the Call shown in the channel
    await env.press(host, _cards(env)[0], Verb.START, space.id)
    await env.settle()
    assert (await env.core.spaces.get(space.id)).status is SpaceStatus.LIVE
    live = emu.received(containing="is live now") + emu.received(containing="en direct")
    assert live == {alice.id: 1, fanny.id: 1}
    assert _header(_cards(env)[0]).startswith("🟣 LIVE")
    [call] = emu.calls_in(env.team)
    assert not call.ended and call.join_url.startswith("https://spaces.test/s/" + space.id)
    shown = [m for m in emu.messages_in(env.channel) if any(b.get("type") == "call" for b in m.blocks)]
    assert [m.blocks[0]["call_id"] for m in shown] == [call.id]

    # end (after Slack's confirm dialog): the Call ended, the card ended; nobody DMed twice
    await env.press(host, _cards(env)[0], Verb.END, space.id)
    await env.settle()
    assert (await env.core.spaces.get(space.id)).status is SpaceStatus.ENDED
    assert call.ended
    assert "Ended" in _header(_cards(env)[0])
    assert emu.received(containing="is live now")[alice.id] == 1
    assert len(emu.dms_to(host)) == 2


async def test_reschedule_and_cancel_reach_the_card(env: SlackEnv) -> None:
    await env.command(env.host, "tomorrow 20:00 Moving AMA")
    [space] = await env.core.spaces.upcoming(env.chat())
    [card] = _cards(env)
    before = card.text

    await env.click(env.host, card, render.RESCHEDULE)
    [modal] = env.emu.open_views_of(env.host)
    await env.submit(env.host, modal, _when("2026-11-28", "21:30"))
    moved = await env.core.spaces.get(space.id)
    assert moved.starts_at.isoformat() == "2026-11-28T20:30:00+00:00"
    [card] = _cards(env)
    assert card.text != before and f"<!date^{int(moved.starts_at.timestamp())}^" in json.dumps(card.blocks)

    await env.press(env.host, card, Verb.CANCEL, space.id)
    assert (await env.core.spaces.get(space.id)).status is SpaceStatus.CANCELLED
    [card] = _cards(env)
    assert "Cancelled" in _header(card)
    # a cancelled card offers nothing to press
    assert render.PRESS not in card.action_ids and render.RESCHEDULE not in card.action_ids


async def test_a_hostile_title_is_neutralised_everywhere(env: SlackEnv) -> None:
    hostile = f"<!channel> @here <@{env.alice.id}> *bold* <https://evil.test|click>"
    # 5,000 characters: refused politely (the core's limit), nothing posted, the refusal itself inert
    await env.command(env.host, f"tomorrow 20:00 {hostile} " + "x" * 5000)
    assert await env.core.space_count() == 0 and _cards(env) == []
    assert env.said_to(env.host) and env.emu.broadcasts == []

    title = (hostile + " " + "y" * 100)[: rules.TITLE_MAX]
    await env.command(env.host, f"tomorrow 20:00 {title}")
    [space] = await env.core.spaces.upcoming(env.chat())
    await env.press(env.alice, _cards(env)[0], Verb.SUBSCRIBE, space.id)
    await env.press(env.host, _cards(env)[0], Verb.START, space.id)
    await env.settle()
    # nobody notified by the title: no broadcast, and Alice only by her one live DM; every message valid
    # Block Kit (the emulator is strict: an over-long header or section fails the test at teardown)
    assert env.emu.broadcasts == []
    assert env.emu.received()[env.alice.id] == 1
    [card] = _cards(env)
    assert "<!channel>" not in card.text and "<!channel>" not in json.dumps(card.blocks)
    assert "<https://evil.test" not in json.dumps(card.blocks)
    assert all("<!channel>" not in m.text for m in env.emu.ephemeral_to(env.host))
