"""Members' flows through ``/slack/events``: the real Bolt app in the service's web app, called by the Slack
emulator (signed HTTP), on the real core, storage (SQLite) and delivery engine.

What people saw is read at the emulator: answers are ephemeral (the response_url, or chat.postEphemeral
after a modal), modals are ``open_views_of``, the App Home ``home_of``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import pytest

from bots.slack import render
from bots.slack import translate as tr
from core.models import SpaceStatus
from core.notices import Verb
from core.texts import t
from tests.backends import migrated_database
from tests.bots.slack.handlers_env import SlackEnv, slack_env
from tests.conftest import CoreEnv
from tests.fakes.slack import SlUser


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str | None]]:
    # flows: one real database is enough (test_signatures runs the claims on PostgreSQL too)
    with migrated_database("sqlite", tmp_path_factory.mktemp("db")) as url:
        yield "sqlite", url


@pytest.fixture
async def env(core_env: CoreEnv) -> AsyncIterator[SlackEnv]:
    async with slack_env(core_env) as env:
        yield env


async def _schedule(env: SlackEnv, text: str = "tomorrow 20:00 Weekly AMA") -> str:
    rec = await env.command(env.host, text)
    assert rec.acked and rec.body in ("", None), rec.body  # an empty ack: the answer follows
    [space] = await env.core.spaces.upcoming(env.chat())
    return space.id


def _form(title: str, date: str, time: str = "20:00", zone: str = "Europe/Paris") -> dict[str, Any]:
    return {
        tr.TITLE_BLOCK: {tr.TITLE_ACTION: title},
        tr.DATE_BLOCK: {tr.DATE_ACTION: date},
        tr.TIME_BLOCK: {tr.TIME_ACTION: time},
        tr.ZONE_BLOCK: {tr.ZONE_ACTION: zone},
    }


def _zone_shown(view: dict[str, Any]) -> str:
    [block] = [b for b in view["blocks"] if b.get("block_id") == tr.ZONE_BLOCK]
    return str(block["element"]["initial_option"]["value"])


# --------------------------------------------------------------------------- /space with text


async def test_schedule_by_text_answers_privately_with_the_time_and_title_and_the_engine_posts_the_card(
    env: SlackEnv,
) -> None:
    space_id = await _schedule(env)
    [answer] = env.emu.ephemeral_to(env.host)
    assert answer.channel == env.channel.id and answer.source == "response_url"
    assert "Scheduled ✓" in answer.text and "Weekly AMA" in answer.text
    # the time as a Slack date token: each reader sees it in their own zone (Thu 26 Nov, 20:00 in Paris)
    space = await env.core.spaces.get(space_id)
    assert f"<!date^{int(space.starts_at.timestamp())}^" in answer.text
    assert space.starts_at.isoformat() == "2026-11-26T19:00:00+00:00"
    # nobody else saw it; the channel gets the public card, from the delivery engine
    assert env.said_to(env.alice) == [] and env.emu.messages_in(env.channel) == []
    [card] = [s for s in env.core.platform.of("post") if s.notice.kind == "card"]
    assert card.target == str(env.chat()) and card.notice.space_id == space_id


async def test_answers_are_in_the_askers_language(env: SlackEnv) -> None:
    await env.command(env.french, "demain 20h AMA hebdo")
    assert "Programmé ✓" in env.last_said(env.french)
    await env.command(env.french, "hier 20h Trop tard")
    assert "Programmé" not in env.last_said(env.french)
    assert len(await env.core.spaces.upcoming(env.chat())) == 1


async def test_list_is_shown_to_the_channel(env: SlackEnv) -> None:
    await _schedule(env)
    await env.command(env.alice, "list")
    [listed] = [m for m in env.emu.messages_in(env.channel) if "Weekly AMA" in m.text]
    assert listed.source == "response_url"  # response_type in_channel: the channel reads it


async def test_an_unknown_space_id_is_answered_not_raised(env: SlackEnv) -> None:
    await env.command(env.host, "start zzzzzzzzzz")
    assert env.said_to(env.host)  # the core's answer (usage or not found), privately
    assert await env.core.space_count() == 0


# --------------------------------------------------------------------------- the modal


async def test_bare_space_opens_the_modal_and_submitting_it_schedules(env: SlackEnv) -> None:
    rec = await env.command(env.host)
    assert rec.acked
    [modal] = env.emu.open_views_of(env.host)
    assert modal["callback_id"] == "space.schedule"
    assert tr.read_metadata(modal["private_metadata"]) == {"channel": env.channel.id}
    answer = await env.submit(env.host, modal, _form("Modal AMA", "2026-11-27"))
    assert answer.acked and answer.body in ("", None)  # closes the modal
    assert env.emu.open_views_of(env.host) == []
    [space] = await env.core.spaces.upcoming(env.chat())
    assert space.title == "Modal AMA" and space.tz == "Europe/Paris"
    assert space.starts_at.isoformat() == "2026-11-27T19:00:00+00:00"
    said = env.emu.ephemeral_to(env.host)
    assert said and said[-1].channel == env.channel.id and "Modal AMA" in said[-1].text
    assert [s.notice.space_id for s in env.core.platform.of("post") if s.notice.kind == "card"] == [space.id]


async def test_the_modal_defaults_to_the_persons_slack_zone(env: SlackEnv) -> None:
    """Opened at once with the zone we remember (the service's default here), then refreshed with the
    person's Slack zone from users.info."""
    await env.command(env.alice)
    [modal] = env.emu.open_views_of(env.alice)
    assert _zone_shown(modal) == "America/New_York"
    assert len(env.emu.api_calls("views.update")) == 1
    await env.submit(env.alice, modal, _form("Evening", "2026-11-27", zone="America/New_York"))
    [space] = await env.core.spaces.upcoming(env.chat())
    assert space.starts_at.isoformat() == "2026-11-28T01:00:00+00:00"


async def test_a_blank_title_is_shown_on_the_title_field(env: SlackEnv) -> None:
    await env.command(env.host)
    [modal] = env.emu.open_views_of(env.host)
    rec = await env.submit(env.host, modal, _form("   ", "2026-11-27"))
    assert rec.body["response_action"] == "errors"
    assert set(rec.body["errors"]) == {tr.TITLE_BLOCK}
    assert len(env.emu.open_views_of(env.host)) == 1  # still open, to fix it
    assert await env.core.space_count() == 0


async def test_a_past_time_is_shown_on_the_date_field_in_the_persons_language(env: SlackEnv) -> None:
    await env.command(env.french)
    [modal] = env.emu.open_views_of(env.french)
    assert modal["title"]["text"] == t("fr", "sl.modal.schedule")  # refreshed in her Slack language
    rec = await env.submit(env.french, modal, _form("Trop tard", "2026-11-24"))
    assert rec.body["response_action"] == "errors"
    [(block, text)] = rec.body["errors"].items()
    assert block == tr.error_block("when") == tr.DATE_BLOCK
    assert text and "past" not in text  # French
    assert await env.core.space_count() == 0
    # fixed and submitted again: scheduled
    again = await env.submit(env.french, modal, _form("À l'heure", "2026-11-27"))
    assert again.body in ("", None)
    assert await env.core.space_count() == 1


# --------------------------------------------------------------------------- buttons


async def test_subscribe_and_unsubscribe_buttons(env: SlackEnv) -> None:
    space_id = await _schedule(env)
    card = await env.show_card()
    await env.press(env.alice, card, Verb.SUBSCRIBE, space_id)
    assert await env.core.spaces.subscriber_count(space_id) == 1
    assert "🔔" in env.last_said(env.alice)
    await env.press(env.alice, card, Verb.SUBSCRIBE, space_id)  # a double tap: still one
    assert await env.core.spaces.subscriber_count(space_id) == 1
    await env.press(env.alice, card, Verb.UNSUBSCRIBE, space_id)
    assert await env.core.spaces.subscriber_count(space_id) == 0
    assert "removed" in env.last_said(env.alice)
    assert all(m.ephemeral_to == env.alice.id for m in env.emu.ephemeral_to(env.alice))


@pytest.mark.parametrize("who", ["alice", "french"])
async def test_a_member_pressing_start_or_cancel_is_refused_politely(env: SlackEnv, who: str) -> None:
    space_id = await _schedule(env)
    card = await env.show_card()
    member: SlUser = getattr(env, who)
    await env.press(member, card, Verb.START, space_id)
    refused = env.last_said(member)
    await env.press(member, card, Verb.CANCEL, space_id)
    assert (await env.core.spaces.get(space_id)).status is SpaceStatus.SCHEDULED
    expected = "Only the host" if who == "alice" else "Seul l'hôte"
    assert expected in refused and expected in env.last_said(member)


async def test_an_admin_may_start_a_members_space(env: SlackEnv) -> None:
    space_id = await _schedule(env)
    card = await env.show_card()
    await env.press(env.admin, card, Verb.START, space_id)
    assert (await env.core.spaces.get(space_id)).status is SpaceStatus.LIVE


async def test_reschedule_opens_its_modal_for_the_host_only(env: SlackEnv) -> None:
    space_id = await _schedule(env)
    card = await env.show_card()
    await env.click(env.alice, card, render.RESCHEDULE)
    assert env.emu.open_views_of(env.alice) == []  # refused before any modal
    assert "Only the host" in env.last_said(env.alice)
    await env.click(env.host, card, render.RESCHEDULE)
    [modal] = env.emu.open_views_of(env.host)
    assert tr.read_metadata(modal["private_metadata"])["space"] == space_id
    when = _form("", "2026-11-28", "21:30")
    del when[tr.TITLE_BLOCK]
    await env.submit(env.host, modal, when)
    space = await env.core.spaces.get(space_id)
    assert space.starts_at.isoformat() == "2026-11-28T20:30:00+00:00"


async def test_link_buttons_are_only_acknowledged(env: SlackEnv) -> None:
    await _schedule(env)
    card = await env.show_card()
    calls = len(env.emu.api_calls())
    rec = await env.click(env.alice, card, render.LINK)
    assert rec.acked and len(env.emu.api_calls()) == calls and env.said_to(env.alice) == []


# --------------------------------------------------------------------------- App Home


async def test_app_home_for_a_member_shows_theirs_and_what_they_follow(env: SlackEnv) -> None:
    mine = await _schedule(env)
    await env.command(env.alice, "tomorrow 21:00 Alice's hour")
    card = await env.show_card()  # Alice's
    assert card.text and "Alice" in card.text
    theirs = next(s.id for s in await env.core.spaces.upcoming(env.chat()) if s.id != mine)
    await env.press(env.host, card, Verb.SUBSCRIBE, theirs)
    await env.emu.open_home(env.host)
    await env.settle()
    home = env.emu.home_of(env.host)
    assert home is not None and home["type"] == "home"
    shown = str(home)
    assert "Weekly AMA" in shown and "Alice" in shown


async def test_app_home_for_an_admin_adds_the_workspace(env: SlackEnv) -> None:
    await _schedule(env)
    await env.emu.open_home(env.alice)
    await env.emu.open_home(env.admin)
    await env.settle()
    member, admin = str(env.emu.home_of(env.alice)), str(env.emu.home_of(env.admin))
    assert "Weekly AMA" not in member  # not hers, not followed; she is no admin
    assert "Weekly AMA" in admin


async def test_the_clock_does_not_matter_to_signatures(env: SlackEnv) -> None:
    """The core's clock is the test's (2026-11-25); Bolt checks signatures against the real one."""
    env.core.clock.advance(timedelta(days=3))
    rec = await env.command(env.host, "help")
    assert rec.acked and env.said_to(env.host)


async def test_a_submission_slower_than_its_budget_closes_the_modal_and_answers_after(env: SlackEnv) -> None:
    """A database too slow for Slack's 3 s: the modal is closed at once; the outcome (a Space, or the field
    errors it could no longer show) comes as a private message."""
    env.handlers._budget = 0.0  # every submission "too slow"
    await env.command(env.host)
    [modal] = env.emu.open_views_of(env.host)
    rec = await env.submit(env.host, modal, _form("Late AMA", "2026-11-24"))  # a past day
    assert rec.body in ("", None) and env.emu.open_views_of(env.host) == []
    assert await env.core.space_count() == 0
    assert env.emu.ephemeral_to(env.host)[-1].source == "chat.postEphemeral"
    await env.command(env.host)
    [modal] = env.emu.open_views_of(env.host)
    await env.submit(env.host, modal, _form("Late AMA", "2026-11-27"))
    assert await env.core.space_count() == 1
    assert "Late AMA" in env.last_said(env.host)
