"""The inbound harness: the real slack_bolt AsyncApp (``SlackHandlers``) mounted in the service's web app on
127.0.0.1, called by the Slack emulator (signed HTTP, or Socket Mode), on the real core and storage.

Slack's side is the emulator: what people saw is read there (``emu.ephemeral_to``, ``views_of``,
``home_of``). The public card is the delivery engine's: posted through ``env.core.platform`` (the
recording fake) or, with :class:`SlackPlatform`, to the emulator.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry
from slack_sdk.web.async_client import AsyncWebClient

from bots.runtime.budget import Unlimited
from bots.slack import render
from bots.slack.adapter import SlackPlatform
from bots.slack.handlers import EVENTS_PATH, SlackHandlers
from bots.slack.workspaces import Workspaces
from bots.web.app import WebDeps, make_web_app
from core.notices import Verb, callback
from core.refs import ChatRef, Platform, UserRef
from core.services.deliveries import DeliveryEngine, EngineConfig
from core.services.inbound import InboundService
from core.services.profiles import ProfileService
from core.services.replies import RepliesService
from tests.conftest import CoreEnv, StaticLinks
from tests.fakes.secrets import SLACK_SIGNING_SECRET
from tests.fakes.slack import Inbound, SlackEmulator, SlChannel, SlMessage, SlTeam, SlUser


@dataclass
class OneWorkspace:
    """``Workspaces`` in its single-token mode (SLACK_BOT_TOKEN): what the handlers need of it."""

    token: str
    api_base: str
    forgotten: list[str] = field(default_factory=list)
    single_workspace: bool = True

    def installed_again(self, team_id: str) -> None:
        raise AssertionError("no OAuth with a single token")

    def bolt_options(self) -> dict[str, Any]:
        return {"token": self.token}

    async def forget(self, team_id: str, *, enterprise_id: str | None = None) -> None:
        self.forgotten.append(team_id)


class UsersPlatform:
    """``SlackPlatform.user_info`` / ``is_moderator`` as the adapter answers them (users.info; admins and
    owners moderate), over the real slack_sdk client."""

    def __init__(self, client: AsyncWebClient) -> None:
        self._client = client

    async def user_info(self, user: UserRef) -> dict[str, Any]:
        found = await self._client.users_info(user=user.id, include_locale=True)
        info: dict[str, Any] = found["user"]
        return info

    async def is_moderator(self, chat: ChatRef, user: UserRef) -> bool:
        info = await self.user_info(user)
        return bool(info.get("is_admin") or info.get("is_owner"))


@dataclass
class SlackEnv:
    core: CoreEnv
    emu: SlackEmulator
    team: SlTeam
    channel: SlChannel
    host: SlUser
    alice: SlUser
    admin: SlUser
    french: SlUser
    handlers: SlackHandlers
    workspaces: OneWorkspace | Workspaces  # Workspaces: OAuth installs (tests/bots/slack/test_isolation.py)
    url: str  # the web app's /slack/events

    def chat(self, chan: SlChannel | None = None) -> ChatRef:
        return ChatRef(Platform.SLACK, (chan or self.channel).id, scope=self.team.id)

    def user(self, who: SlUser) -> UserRef:
        return UserRef(Platform.SLACK, who.id, scope=self.team.id)

    async def settle(self) -> None:
        """The listeners' background work done, then what the engine has due sent."""
        await self.handlers.drain()
        for _ in range(20):  # a send may queue more (a card edit after a subscription): until quiet
            if not await self.core.run():
                return
        raise AssertionError("deliveries did not settle")

    async def command(self, who: SlUser, text: str = "", chan: SlChannel | None = None) -> Inbound:
        rec = await self.emu.slash_command(who, chan or self.channel, "/space", text)
        await self.settle()
        return rec

    async def click(self, who: SlUser, where: Any, action_id: str, value: str | None = None) -> Inbound:
        rec = await self.emu.click(who, where, action_id, value)
        await self.settle()
        return rec

    async def submit(self, who: SlUser, view: dict[str, Any], values: dict[str, dict[str, Any]]) -> Inbound:
        rec = await self.emu.submit_view(who, view, values)
        await self.settle()
        return rec

    async def press(self, who: SlUser, card: SlMessage, verb: Verb, space_id: str) -> Inbound:
        """``who`` presses the card's button for ``verb`` (Cancel and End: after Slack's confirm dialog)."""
        return await self.click(who, card, render.PRESS, callback(verb, space_id))

    async def show_card(self) -> SlMessage:
        """The last card the engine posted, as the adapter posts it (render.render → chat.postMessage) in
        the emulator: what members see and press."""
        cards = [s for s in self.core.platform.of("post") if s.notice.kind == "card"]
        assert cards, "the engine posted no card"
        notice, chat = cards[-1].notice, cards[-1].target.rsplit(":", 1)[-1]
        shown = render.render(notice)
        assert isinstance(self.workspaces, OneWorkspace), "the real SlackPlatform posts its own cards"
        client = AsyncWebClient(token=self.workspaces.token, base_url=self.emu.api_base)
        posted = await client.chat_postMessage(channel=chat, text=shown.text, blocks=shown.blocks)
        return self.emu.find_message(str(posted["ts"]))

    def said_to(self, who: SlUser) -> list[str]:
        """What ``who`` alone was shown (ephemeral answers), oldest first."""
        return [m.text for m in self.emu.ephemeral_to(who)]

    def last_said(self, who: SlUser) -> str:
        said = self.said_to(who)
        assert said, f"nothing was said to {who.name}"
        return said[-1]


def handlers_for(
    core: CoreEnv,
    emu: SlackEmulator,
    workspaces: OneWorkspace | Workspaces,
    *,
    platform: Any = None,
    app_token: str | None = None,
    receive: bool = True,
) -> SlackHandlers:
    replies = RepliesService(core.db.uow, core.clock, core.wake)
    inbound = InboundService(
        spaces=core.spaces,
        profiles=ProfileService(core.db.uow),
        replies=replies,
        links=StaticLinks(),
        clock=core.clock,
        uow=core.db.uow,
    )
    if platform is None:
        assert isinstance(workspaces, OneWorkspace), "OAuth installs: pass the real SlackPlatform"
        platform = UsersPlatform(AsyncWebClient(token=workspaces.token, base_url=emu.api_base))
    return SlackHandlers(
        workspaces=workspaces,
        platform=platform,
        inbound=inbound,
        spaces=core.spaces,
        replies=replies,
        links=StaticLinks(),
        clock=core.clock,
        signing_secret=emu.signing_secret,
        app_token=app_token,
        receive=receive,
    )


def sending_to(core: CoreEnv, platform: SlackPlatform) -> None:
    """``core``'s delivery engine sends through ``platform`` (the real adapter, to the emulator) instead of
    the recording fake; the Call mirrored while a Space is live."""
    core.spaces.mirror_native_events({Platform.SLACK})
    core.engine = DeliveryEngine(
        core.db.outbox(),
        core.db.uow,
        platform,
        core.clock,
        Unlimited(),
        StaticLinks(),
        core.wake,
        EngineConfig(worker_id="w1"),
        rng=random.Random(7),
    )


@contextlib.contextmanager
def library_floors() -> Iterator[None]:
    """slack_sdk and slack_bolt held at INFO, as production holds them (bots.logs.LIBRARY_FLOORS): at DEBUG
    they log response bodies and Socket Mode payloads, and the session's log check would rightly find the
    emulator's canary tokens there."""
    saved = {name: logging.getLogger(name).level for name in ("slack_sdk", "slack_bolt")}
    for name in saved:
        logging.getLogger(name).setLevel(max(logging.INFO, logging.getLogger(name).level))
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


@contextlib.asynccontextmanager
async def slack_env(core: CoreEnv, *, socket: bool = False, adapter: bool = False) -> AsyncIterator[SlackEnv]:
    """``adapter``: the real SlackPlatform sends (the delivery engine's cards, DMs, the Call) to the
    emulator, and answers the handlers' users.info and moderator checks; else the recording fake sends."""
    assert SLACK_SIGNING_SECRET  # the emulator signs with the canary secret: a logged one would be found
    with library_floors():
        async with _slack_env(core, socket=socket, adapter=adapter) as env:
            yield env


@contextlib.asynccontextmanager
async def _slack_env(core: CoreEnv, *, socket: bool, adapter: bool) -> AsyncIterator[SlackEnv]:
    async with SlackEmulator() as emu:
        team = emu.create_workspace("Acme")
        host = emu.add_user(team, "hana", tz="Europe/Paris")
        alice = emu.add_user(team, "alice", tz="America/New_York")
        admin = emu.add_user(team, "ada", is_admin=True)
        french = emu.add_user(team, "fanny", locale="fr-FR", tz="Europe/Paris")
        channel = emu.add_channel(team, "general", [host, alice, admin, french])
        workspaces = OneWorkspace(emu.bot_token(team), emu.api_base)
        platform: SlackPlatform | None = None
        if adapter:
            platform = SlackPlatform(
                Workspaces(api_base=emu.api_base, token=workspaces.token), links=StaticLinks()
            )
            await platform.start()
            sending_to(core, platform)
        handlers = handlers_for(
            core, emu, workspaces, platform=platform, app_token=emu.app_token if socket else None
        )
        deps = WebDeps(
            spaces=core.spaces,
            outbox=core.db.outbox(),
            registry=CollectorRegistry(),
            routes=handlers.web_routes(),
        )
        async with TestServer(make_web_app(deps), host="127.0.0.1") as server:
            url = str(server.make_url(EVENTS_PATH))
            emu.request_url = url
            if socket:
                emu.transport = "socket"
                await handlers.start()
                await emu.wait_socket_connected()
            try:
                yield SlackEnv(
                    core, emu, team, channel, host, alice, admin, french, handlers, workspaces, url
                )
            finally:
                await handlers.stop()
                if platform is not None:
                    await platform.stop()
