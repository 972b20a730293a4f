"""Two workspaces installed through OAuth never see each other's Spaces or tokens (issue 13), end to end.

The real Bolt handlers (``SlackHandlers``) in the service's web app, the real ``Workspaces`` in OAuth mode
(installations in the database), the real ``SlackPlatform``, core services and delivery engine; Acme and
Globex install the app through ``/slack/install`` (the emulator plays the admin's browser), and members act
through the emulator's signed requests.

What is decided here (core/rules.py): MANAGING a Space (start, cancel, end, reschedule) is for its host and
the moderators of the community it is announced in — an admin of another workspace moderates nothing there
(``SlackPlatform.is_moderator`` compares the user's workspace with the Space's). SUBSCRIBING is open to
whoever holds the Space's id: its link is public by design (the share page, the .ics), and a reminder is
sent to the subscriber in their own workspace, with their own workspace's token.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import func, select

from bots.slack import render
from bots.slack.adapter import SlackPlatform
from bots.slack.handlers import EVENTS_PATH, not_installed
from bots.slack.workspaces import INSTALL_PATH, Workspaces
from bots.web.app import WebDeps, make_web_app
from core.errors import NotAllowed
from core.models import DeliveryKind, DeliveryStatus, Space, SpaceStatus
from core.notices import Verb
from core.texts import TextKey, t
from tests.backends import SqlBackend, migrated_database
from tests.bots.slack.conftest import oauth_workspaces
from tests.bots.slack.handlers_env import SlackEnv, handlers_for, library_floors, sending_to
from tests.conftest import CoreEnv, StaticLinks
from tests.databases import BACKENDS
from tests.fakes.slack import ApiCall, SlackEmulator, SlMessage, SlTeam, SlUser


@pytest.fixture(scope="module", params=BACKENDS)
def store_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str | None]]:
    # the installation store is SQL (slack_sdk's SQLAlchemy store in the service's database): both backends
    with migrated_database(request.param, tmp_path_factory.mktemp("db")) as url:
        yield request.param, url


@dataclass
class Two:
    """One app, one database, one web app; two workspaces, each seen as a :class:`SlackEnv` (its team,
    channel and members: host, alice, admin, french) sharing the handlers and the core."""

    acme: SlackEnv
    globex: SlackEnv
    workspaces: Workspaces
    platform: SlackPlatform

    @property
    def emu(self) -> SlackEmulator:
        return self.acme.emu

    async def installed_rows(self, team: SlTeam) -> int:
        store = self.workspaces.store
        assert store is not None
        async with store.engine.connect() as conn:
            count = 0
            for table in (store.bots, store.installations):
                found = await conn.execute(select(func.count()).where(table.c.team_id == team.id))
                count += int(found.scalar_one())
            return count


@contextlib.asynccontextmanager
async def two_workspaces(core: CoreEnv) -> AsyncIterator[Two]:
    assert isinstance(core.db, SqlBackend)
    with library_floors():
        async with SlackEmulator() as emu:
            emu.unlimited = True  # pacing is the fan-out tests' subject, not this one's
            workspaces = oauth_workspaces(emu, core.db.engine, core.clock)
            platform = SlackPlatform(workspaces, links=StaticLinks())
            await platform.start()
            sending_to(core, platform)
            handlers = handlers_for(core, emu, workspaces, platform=platform)
            deps = WebDeps(
                spaces=core.spaces,
                outbox=core.db.outbox(),
                registry=CollectorRegistry(),
                routes=handlers.web_routes(),
            )
            try:
                async with TestServer(make_web_app(deps), host="127.0.0.1") as server:
                    url = str(server.make_url(EVENTS_PATH))
                    emu.request_url = url
                    install = str(server.make_url(INSTALL_PATH))
                    sides = []
                    for name in ("Acme", "Globex"):
                        team = emu.create_workspace(name, installed=False)
                        host = emu.add_user(team, "hana")
                        alice = emu.add_user(team, "alice", tz="America/New_York")
                        admin = emu.add_user(team, "ada", is_admin=True)
                        french = emu.add_user(team, "fanny", locale="fr-FR")
                        status, _ = await emu.install_via_oauth(install, team, admin)
                        assert status == 200, emu.oauth_result_page
                        channel = emu.add_channel(team, "general", [host, alice, admin, french])
                        sides.append(
                            SlackEnv(
                                core,
                                emu,
                                team,
                                channel,
                                host,
                                alice,
                                admin,
                                french,
                                handlers,
                                workspaces,
                                url,
                            )
                        )
                    yield Two(sides[0], sides[1], workspaces, platform)
            finally:
                await handlers.stop()
                await platform.stop()


@pytest.fixture
async def two(core_env: CoreEnv) -> AsyncIterator[Two]:
    async with two_workspaces(core_env) as two:
        yield two


# --------------------------------------------------------------------------- helpers


def _cards(side: SlackEnv) -> list[SlMessage]:
    """The Space cards in the side's channel (a header block), oldest first."""
    return [m for m in side.emu.messages_in(side.channel) if any(b.get("type") == "header" for b in m.blocks)]


async def _schedule(side: SlackEnv, title: str) -> tuple[Space, SlMessage]:
    await side.command(side.host, f"tomorrow 20:00 {title}")
    [space] = [s for s in await side.core.spaces.upcoming(side.chat()) if s.title == title]
    [card] = [c for c in _cards(side) if title in c.text]
    return space, card


def _refused(locale: str, action: str) -> str:
    e = NotAllowed("perm.not_allowed", action=TextKey(f"action.{action}"))
    return t(locale, e.key, **e.params)


def _team_of(emu: SlackEmulator, call: ApiCall) -> set[str]:
    """The workspaces of the users, conversations, views, triggers and Calls a Web API call names."""
    p = call.params
    owners: set[str] = set()
    for key in ("channel", "user", "user_id"):
        value = str(p.get(key) or "")
        found = emu.users.get(value) or emu.channels.get(value)
        if found is not None:
            owners.add(found.team_id)
    if call.method == "views.open" and str(p.get("trigger_id")) in emu._triggers:
        owners.add(emu._triggers[str(p["trigger_id"])].team_id)
    if call.method == "views.update" and str(p.get("view_id")) in emu.views:
        owners.add(emu.views[str(p["view_id"])].team_id)
    if call.method.startswith("calls.") and str(p.get("id")) in emu.call_records:
        owners.add(emu.call_records[str(p["id"])].team_id)
    return owners


def assert_own_tokens(emu: SlackEmulator, since: int = 0) -> list[ApiCall]:
    """Every Web API call (from index ``since``) was made with a token, and with the token of the workspace
    whose people and channels it names; and Slack accepted it (a token of the wrong workspace would be
    answered channel_not_found / user_not_found). Returns the calls."""
    calls = emu.api_calls()[since:]
    assert calls
    for call in calls:
        if call.method == "oauth.v2.access":
            continue  # authenticated by the client id and secret: no workspace's token yet
        assert call.team_id is not None, f"{call.method} without a workspace's token"
        assert call.ok, f"{call.method} refused: {call.error}"
        named = _team_of(emu, call)
        assert named <= {call.team_id}, f"{call.method} with {call.team_id}'s token names {named}"
    return calls


def _home_text(emu: SlackEmulator, who: SlUser) -> str:
    """The App Home published for ``who``, as text."""
    home = emu.home_of(who)
    assert home is not None, f"no App Home published for {who.name}"
    return json.dumps(home, ensure_ascii=False)


# --------------------------------------------------------------------------- tests


async def test_each_workspace_installed_with_its_own_token(two: Two) -> None:
    acme, globex = two.acme, two.globex
    assert two.emu.bot_token(acme.team) != two.emu.bot_token(globex.team)
    assert await two.installed_rows(acme.team) == 2 and await two.installed_rows(globex.team) == 2


async def test_globex_sees_nothing_of_acme_and_may_manage_nothing(two: Two) -> None:
    emu, acme, globex = two.emu, two.acme, two.globex
    secret, secret_card = await _schedule(acme, "Acme roadmap")
    own, _ = await _schedule(globex, "Globex townhall")

    # /space list in Globex (an admin, a member): Globex's Space, never Acme's
    for who in (globex.admin, globex.alice):
        await globex.command(who, "list")
    header = t("en", "list.header")
    listed = [m.text for m in emu.messages_in(globex.channel) if m.text.startswith(header)]
    assert len(listed) == 2 and all(own.id in text for text in listed)
    shown_in_globex = json.dumps([m.to_api() for m in emu.messages_in(globex.channel)], ensure_ascii=False)
    assert "Acme roadmap" not in shown_in_globex and secret.id not in shown_in_globex

    # the App Home: Globex's admin sees the workspace section with Globex's Space only; Acme's admin theirs
    for side in (globex, acme):
        for who in (side.admin, side.alice):
            await emu.open_home(who)
        await side.settle()
    globex_admin_home = _home_text(emu, globex.admin)
    assert "Globex townhall" in globex_admin_home
    assert "Acme roadmap" not in globex_admin_home and secret.id not in globex_admin_home
    assert "Acme roadmap" not in _home_text(emu, globex.alice)
    acme_admin_home = _home_text(emu, acme.admin)
    assert "Acme roadmap" in acme_admin_home and "Globex townhall" not in acme_admin_home
    assert own.id not in acme_admin_home

    # Acme's Space by its id, from Globex: start and cancel refused, in the asker's language
    edits_before = len(secret_card.versions)
    seen_in_acme = (len(emu.messages_in(acme.channel)), len(emu.ephemerals), len(emu.dms_to(acme.host)))
    for who, locale in ((globex.admin, "en"), (globex.alice, "en"), (globex.french, "fr")):
        for verb in ("start", "cancel"):
            await globex.command(who, f"{verb} {secret.id}")
            assert _refused(locale, verb) in globex.last_said(who)
    # nor moved or renamed, by Globex's admin
    await globex.command(globex.admin, f"reschedule {secret.id} tomorrow 21:00")
    assert _refused("en", "reschedule") in globex.last_said(globex.admin)
    await globex.command(globex.admin, f"rename {secret.id} Pwned")
    assert _refused("en", "edit") in globex.last_said(globex.admin)
    unchanged = await acme.core.spaces.get(secret.id)
    assert (unchanged.status, unchanged.title, unchanged.starts_at, unchanged.revision) == (
        SpaceStatus.SCHEDULED,
        secret.title,
        secret.starts_at,
        secret.revision,
    )
    assert len(_cards(acme)[0].versions) == edits_before  # the card untouched
    assert emu.calls_in(acme.team) == []  # no Call started

    # nothing of it was said in Acme (the ephemerals: only the refusals, to their Globex askers)
    assert len(emu.messages_in(acme.channel)) == seen_in_acme[0]
    assert len(emu.dms_to(acme.host)) == seen_in_acme[2]
    assert {m.team_id for m in emu.ephemerals[seen_in_acme[1] :]} == {globex.team.id}
    # every call made with the token of the workspace it concerns
    calls = assert_own_tokens(emu)
    assert {c.team_id for c in calls if c.method == "chat.postMessage"} == {acme.team.id, globex.team.id}
    assert {c.team_id for c in calls if c.method == "views.publish"} == {acme.team.id, globex.team.id}


async def test_a_copied_card_in_globex_manages_nothing_but_subscribes(two: Two) -> None:
    """Acme's card, copied into a Globex channel (the emulator lets a member see only their own workspace's
    messages, so the copy is the only way to press it from Globex): Start and Cancel are refused, even to
    Globex's admin; Set reminder works — the Space's link is public — and the live notice reaches the
    Globex member with Globex's token, while Acme's own members are told with Acme's."""
    emu, acme, globex = two.emu, two.acme, two.globex
    space, card = await _schedule(acme, "Acme AMA")
    with pytest.raises(AssertionError, match="cannot see"):  # Acme's channel is not Globex's to see
        await emu.click(globex.alice, card, render.PRESS)

    globex_bot = AsyncWebClient(token=emu.bot_token(globex.team), base_url=emu.api_base)
    posted = await globex_bot.chat_postMessage(channel=globex.channel.id, text=card.text, blocks=card.blocks)
    copy = emu.find_message(str(posted["ts"]))

    for who, locale in ((globex.admin, "en"), (globex.french, "fr")):
        for verb in (Verb.START, Verb.CANCEL):
            await globex.press(who, copy, verb, space.id)
            assert _refused(locale, verb.value) in globex.last_said(who)
    # Reschedule: refused before any modal opens
    await globex.click(globex.admin, copy, render.RESCHEDULE)
    assert _refused("en", "reschedule") in globex.last_said(globex.admin)
    assert emu.open_views_of(globex.admin) == []
    assert (await acme.core.spaces.get(space.id)).status is SpaceStatus.SCHEDULED

    await globex.press(globex.alice, copy, Verb.SUBSCRIBE, space.id)
    await acme.press(acme.alice, _cards(acme)[0], Verb.SUBSCRIBE, space.id)
    assert await acme.core.spaces.subscriber_count(space.id) == 2

    since = len(emu.api_calls())
    await acme.press(acme.host, _cards(acme)[0], Verb.START, space.id)
    await acme.settle()
    assert (await acme.core.spaces.get(space.id)).status is SpaceStatus.LIVE
    live = emu.received(containing="is live now")
    assert live == {acme.alice.id: 1, globex.alice.id: 1}
    sent = assert_own_tokens(emu, since)
    dm_to = {str(c.params["channel"]): c.team_id for c in sent if c.method == "chat.postMessage"}
    assert dm_to[globex.alice.id] == globex.team.id and dm_to[acme.alice.id] == acme.team.id
    assert [c.team_id for c in sent if c.method == "calls.add"] == [acme.team.id]

    # the live card copied too: End refused to Globex's admin, the Space still live
    live_card = _cards(acme)[0]
    posted = await globex_bot.chat_postMessage(
        channel=globex.channel.id, text=live_card.text, blocks=live_card.blocks
    )
    await globex.press(globex.admin, emu.find_message(str(posted["ts"])), Verb.END, space.id)
    assert _refused("en", "end") in globex.last_said(globex.admin)
    assert (await acme.core.spaces.get(space.id)).status is SpaceStatus.LIVE


async def test_after_globex_uninstalls_acme_keeps_working(two: Two) -> None:
    emu, acme, globex = two.emu, two.acme, two.globex
    space, card = await _schedule(acme, "Acme launch")
    await globex.command(globex.alice, f"subscribe {space.id}")  # by its public id
    await acme.press(acme.alice, card, Verb.SUBSCRIBE, space.id)
    assert await acme.core.spaces.subscriber_count(space.id) == 2

    events = await emu.uninstall(globex.team)
    assert all(e.acked for e in events)
    await globex.settle()
    assert await two.installed_rows(globex.team) == 0  # nothing of its tokens kept
    assert await two.installed_rows(acme.team) == 2

    # Globex's members: a clear answer (Bolt's, with our text: no installation to authorize the request
    # with, so no users.info for their language: both languages) or nothing; never a Space of Acme's, and
    # no call with their workspace's token
    since = len(emu.api_calls())
    for who in (globex.alice, globex.french):
        rec = await globex.command(who, "list")
        assert rec.acked and globex.last_said(who) == not_installed()
    assert t("fr", "sl.not_installed") in not_installed()
    home = await emu.open_home(globex.admin)
    await globex.settle()
    assert home.acked and emu.home_of(globex.admin) is None
    assert emu.messages_in(globex.channel) == []
    assert [c for c in emu.api_calls()[since:] if c.team_id == globex.team.id] == []

    # Acme keeps working: a new Space, a subscription, the start; the Globex subscriber is unreachable now
    # (no token to DM them with), which stops nothing
    other, _ = await _schedule(acme, "Acme second")
    await acme.press(acme.french, _cards(acme)[-1], Verb.SUBSCRIBE, other.id)
    await acme.press(acme.host, card, Verb.START, space.id)
    await acme.settle()
    live = emu.received(containing="is live now")
    assert live == {acme.alice.id: 1}
    # the live notice for Globex's subscriber: settled as undeliverable, with the reason, not retried
    [lost] = [
        d
        for d in await acme.core.deliveries()
        if d.kind is DeliveryKind.LIVE_NOTICE and d.recipient == str(globex.user(globex.alice))
    ]
    assert lost.status is DeliveryStatus.DEAD and "not installed" in (lost.last_error or "")
    after = emu.api_calls()[since:]
    assert all(c.team_id == acme.team.id for c in after)  # nothing sent with Globex's revoked token
    assert all(c.ok for c in after)
