"""One Space, every platform, end to end (issue 14): a Telegram group, a Discord channel and a Slack channel
linked through their own commands — the real python-telegram-bot, discord.py and slack_bolt/slack_sdk
against their emulators, one core, one SQLite database, one delivery engine routing to all three.

link (a code on Telegram, typed on Discord; one from Discord typed on Slack) → a Space scheduled on Discord
gets a card in all three chats, one subscriber list (a Telegram member, a Discord member; the Telegram
member links her Slack account in private and subscribes again from Slack: still two people) → a Telegram
admin starts it from the Telegram card → every card live, each person notified once (Kim on Slack, where
she subscribed last) → unlink on Telegram → the next Discord Space is announced on Discord and Slack only.
And a person's accounts linked from the Discord bot's DM (``/space link`` there) with Telegram.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from bots.discord.adapter import DiscordConfig, DiscordPlatform
from bots.discord.handlers import Handlers
from bots.router import Router
from bots.runtime.budget import TokenBucketBudget
from bots.slack import render
from bots.slack.adapter import SlackPlatform
from bots.slack.handlers import EVENTS_PATH, SlackHandlers
from bots.slack.workspaces import Workspaces
from bots.telegram.adapter import TelegramConfig, TelegramPlatform
from bots.telegram.translate import START_PREFIX
from bots.telegram.translate import chat_ref as tg_chat
from bots.web.app import WebDeps, make_web_app
from core.models import SpaceStatus
from core.notices import Verb, callback
from core.ports import UnitOfWorkFactory
from core.refs import ChatRef, Platform
from core.services.deliveries import DeliveryEngine, EngineConfig
from core.services.inbound import InboundService
from core.services.profiles import ProfileService
from core.services.replies import RepliesService
from core.services.spaces import SpaceService
from storage.codes import SqlOneTimeCodes
from storage.db import make_engine, make_session_factory
from storage.migrate import upgrade
from storage.stores import SqlOutbox, unit_of_work_factory
from tests.bots.slack.handlers_env import OneWorkspace, library_floors
from tests.bots.telegram.conftest import AutoDeliver, EngineClock, Links, VirtualTime
from tests.fakes.clock import FakeClock
from tests.fakes.discord import (
    EPHEMERAL,
    DcChannel,
    DcGuild,
    DcMember,
    DiscordEmulator,
    Perm,
    pointed_at,
)
from tests.fakes.slack import SlackEmulator, SlChannel, SlUser
from tests.fakes.telegram import TelegramEmulator, TgChat

CODE = re.compile(r"[0-9A-Z]{5}-[0-9A-Z]{5}")


@dataclass
class World:
    tg: TelegramEmulator
    dc: DiscordEmulator
    guild: DcGuild
    channel: DcChannel
    spaces: SpaceService
    engine: DeliveryEngine
    outbox: SqlOutbox
    clock: FakeClock
    wake: AutoDeliver
    sl: SlackEmulator
    sl_channel: SlChannel
    sl_admin: SlUser
    slack_handlers: SlackHandlers
    sl_kim: SlUser  # Kim's Slack account (Kim is on Telegram too)
    uow: UnitOfWorkFactory

    async def slash(self, text: str, who: SlUser | None = None, where: SlChannel | None = None) -> str:
        """``who`` (the workspace admin) types ``/space <text>`` in ``where`` (the channel): the answer."""
        rec = await self.sl.slash_command(who or self.sl_admin, where or self.sl_channel, "/space", text)
        await self.slack_handlers.drain()
        await self.deliver()
        return str(rec.responses[-1]["text"])  # through the command's response_url

    @property
    def dc_chat(self) -> ChatRef:
        return ChatRef(Platform.DISCORD, str(self.channel.id), scope=str(self.guild.id))

    async def command(self, who: DcMember, name: str, **options: object) -> str:
        rec = await self.dc.run_command(self.guild, self.channel, who, f"space {name}", options)
        [answer] = await self.dc.wait_for_followups(rec)
        return answer.content

    async def deliver(self) -> None:
        """Everything due now sent (the background deliverer may be at it: one run at a time)."""
        for _ in range(200):
            async with self.wake.lock:
                await self.engine.deliver_due()
            counts = await self.outbox.counts()
            nxt = await self.outbox.next_due()
            if not counts.get("claimed", 0) and (nxt is None or nxt > self.wake.engine_clock.now()):
                return
            await asyncio.sleep(0.01)
        raise AssertionError("deliveries did not settle")

    async def eventually(self, check: object, within: float = 10.0) -> object:
        deadline = asyncio.get_running_loop().time() + within
        while True:
            result = await check()  # type: ignore[operator]
            if result:
                return result
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("condition not met in time")
            await asyncio.sleep(0.02)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    vt = VirtualTime()
    url = f"sqlite:///{tmp_path / 'spaces.db'}"
    await upgrade(url)
    db = make_engine(url)
    uow = unit_of_work_factory(make_session_factory(db))
    clock = FakeClock(datetime(2026, 11, 25, 16, 0, tzinfo=UTC))
    engine_clock = EngineClock(clock)
    wake = AutoDeliver(clock, engine_clock, vt)
    spaces = SpaceService(uow, clock, wake, default_tz="Europe/Paris")
    profiles = ProfileService(uow)
    replies = RepliesService(uow, clock, wake)
    codes = SqlOneTimeCodes(db)
    budget = TokenBucketBudget(monotonic=vt.monotonic, sleep=vt.sleep)

    def inbound() -> InboundService:
        return InboundService(
            spaces=spaces,
            profiles=profiles,
            replies=replies,
            links=Links(),
            clock=clock,
            uow=uow,
            codes=codes,
        )

    async with (
        TelegramEmulator(clock=vt.monotonic) as tg,
        DiscordEmulator(clock=vt.monotonic, wall_clock=lambda: clock.now().timestamp()) as dc,
        SlackEmulator() as sl,
    ):
        with pointed_at(dc), library_floors():
            team = sl.create_workspace("Acme")
            sl_admin = sl.add_user(team, "ada", is_admin=True)
            sl_kim = sl.add_user(team, "kim")
            sl_channel = sl.add_channel(team, "general", [sl_admin, sl_kim])
            sl_token = sl.bot_token(team)
            slack = SlackPlatform(Workspaces(api_base=sl.api_base, token=sl_token), links=Links())
            slack_handlers = SlackHandlers(
                workspaces=OneWorkspace(sl_token, sl.api_base),
                platform=slack,
                inbound=inbound(),
                spaces=spaces,
                replies=replies,
                links=Links(),
                clock=clock,
                signing_secret=sl.signing_secret,
                app_token=None,
                receive=True,
            )
            telegram = TelegramPlatform(
                TelegramConfig(
                    token=tg.token, api_base=tg.base_url, file_base=tg.base_file_url, poll_timeout=1.0
                ),
                spaces=spaces,
                profiles=profiles,
                replies=replies,
                links=Links(),
                clock=clock,
                sleep=vt.sleep,
                inbound=inbound(),
            )
            guild = dc.create_guild("Builders")
            channel = next(c for c in guild.channels.values() if c.name == "general")
            discord = DiscordPlatform(
                DiscordConfig(
                    token=dc.token, application_id=str(dc.application_id), guild_ready_timeout=0.05
                ),
                uow=uow,
                budget=budget,
            )
            discord.attach(
                Handlers(
                    spaces=spaces,
                    inbound=inbound(),
                    replies=replies,
                    links=Links(),
                    clock=clock,
                    is_moderator=discord.is_moderator,
                    api_base=dc.base_url,
                )
            )
            router = Router([telegram, discord, slack])
            spaces.mirror_native_events(router.native_event_platforms())
            outbox = SqlOutbox(db)
            engine = DeliveryEngine(
                outbox,
                uow,
                router,
                engine_clock,
                budget,
                Links(),
                wake,
                EngineConfig(worker_id="linking"),
                rng=random.Random(5),
            )
            web = make_web_app(
                WebDeps(
                    spaces=spaces,
                    outbox=outbox,
                    registry=CollectorRegistry(),
                    routes=slack_handlers.web_routes(),
                )
            )
            await telegram.start()
            await discord.start()
            await discord.start_gateway()
            await slack.start()
            deliverer = asyncio.create_task(wake.run(engine, outbox), name="auto-deliver")
            try:
                async with TestServer(web, host="127.0.0.1") as server:
                    sl.request_url = str(server.make_url(EVENTS_PATH))
                    yield World(
                        tg,
                        dc,
                        guild,
                        channel,
                        spaces,
                        engine,
                        outbox,
                        clock,
                        wake,
                        sl,
                        sl_channel,
                        sl_admin,
                        slack_handlers,
                        sl_kim,
                        uow,
                    )
                    await slack_handlers.stop()
            finally:
                deliverer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await deliverer
                await slack.stop()
                await discord.stop()
                await telegram.stop()
                await db.dispose()


def _tg_cards(w: World, group: TgChat, space_id: str) -> list[object]:
    return [m for m in w.tg.bot_messages(group) if f"sub:{space_id}" in m.callback_data]


async def test_linked_telegram_discord_and_slack_chats_share_one_space(world: World) -> None:
    w, tg, dc = world, world.tg, world.dc
    hana = tg.create_user("Hana", username="hana", started=True)  # the Telegram group's admin
    group = tg.create_group("Builders TG", creator=hana)
    managers = dc.add_role(w.guild, "Event Managers", Perm.MANAGE_EVENTS)
    mo = dc.add_member(w.guild, "mo", roles=[managers])  # the Discord channel's moderator

    # --- link: a code on Telegram, typed on Discord
    await tg.user_sends(hana, group, "/link")
    shown = await tg.wait_for_message(group, lambda m: CODE.search(m.text) is not None)
    code = CODE.search(shown.text).group(0)  # type: ignore[union-attr]
    answer = await w.command(mo, "link", code=code)
    assert "now shares its Spaces with a Telegram group" in answer, answer
    told = await tg.wait_for_message(group, lambda m: "shares its Spaces with a Discord channel" in m.text)
    assert told is not None
    # the code was single use
    assert "unknown, used or expired" in await w.command(mo, "link", code=code)
    # the Slack channel joins the group with a code from the Discord channel
    code = CODE.search(await w.command(mo, "link")).group(0)  # type: ignore[union-attr]
    answer = await w.slash(f"link {code.lower()}")
    assert "now shares its Spaces with a Discord channel (and 1 more chat)" in answer, answer

    # --- a Space scheduled on Discord: a card in both chats (and the Discord event)
    assert "Town hall" in await w.command(mo, "schedule", title="Town hall", when="tomorrow 20:00")
    [space] = await w.spaces.upcoming(w.dc_chat)
    await w.deliver()
    [dc_card] = [m for m in dc.messages_in(w.channel) if m.embeds and "Town hall" in str(m.embeds[0])]
    [tg_card] = _tg_cards(w, group, space.id)
    assert "Town hall" in tg_card.text  # type: ignore[attr-defined]
    assert len(w.guild.events) == 1
    [sl_card] = [m for m in w.sl.messages_in(w.sl_channel) if "Town hall" in m.text]

    # --- one subscriber list: a Telegram member by the Telegram card, a Discord member by the Discord card
    kim = tg.create_user("Kim", started=True)
    await tg.user_starts_bot(kim)
    await tg.wait_for_message(kim.id, lambda m: "Hi" in m.text)
    await tg.press_button(kim, tg_card, f"sub:{space.id}")  # type: ignore[arg-type]
    alice = dc.add_member(w.guild, "alice")
    rec = await dc.press_button(dc_card, f"sub:{space.id}", alice)
    await dc.wait_for_followups(rec)

    async def two() -> bool:
        return await w.spaces.subscriber_count(space.id) == 2

    await w.eventually(two)

    # --- Kim links her Telegram and Slack accounts (private chats), then subscribes again from Slack:
    # still two people, and the live notice will reach her once, on Slack, where she subscribed last
    await tg.user_sends(kim, None, "/link")
    dm = await tg.wait_for_message(kim.id, lambda m: CODE.search(m.text) is not None)
    code = CODE.search(dm.text).group(0)  # type: ignore[union-attr]
    answer = await w.slash(f"link {code}", w.sl_kim, w.sl.im_channel(w.sl_kim))
    assert "Your accounts (Slack, Telegram) are one person now" in answer, answer
    w.clock.advance(timedelta(minutes=1))
    await w.sl.click(w.sl_kim, sl_card, render.PRESS, callback(Verb.SUBSCRIBE, space.id))
    await w.slack_handlers.drain()

    async def kim_on_slack() -> bool:
        async with w.uow() as uow:
            subs = await uow.subscriptions.list(space.id)
        return len(subs) == 3

    await w.eventually(kim_on_slack)
    assert await w.spaces.subscriber_count(space.id) == 2  # people, not accounts

    # --- the Telegram admin starts the Discord-scheduled Space from the Telegram card
    await tg.press_button(hana, tg_card, f"start:{space.id}")  # type: ignore[arg-type]

    async def live() -> bool:
        return (await w.spaces.get(space.id)).status is SpaceStatus.LIVE

    await w.eventually(live)
    await w.deliver()
    assert "LIVE" in tg.message(group, tg_card.message_id).text.upper()  # type: ignore[attr-defined]
    live_dc = next(m for m in dc.messages_in(w.channel) if m.id == dc_card.id)
    assert "LIVE" in str(live_dc.embeds[0]).upper()
    assert "LIVE" in w.sl.find_message(sl_card.ts).text.upper()
    # each subscriber notified once, on their platform: Kim on Slack (her last), none on Telegram
    assert not [m for m in tg.bot_messages(kim.id) if "Town hall" in m.text and "live" in m.text.lower()]
    assert len([m for m in w.sl.dms_to(w.sl_kim) if "Town hall" in m.text and "live" in m.text.lower()]) == 1
    assert len([m for m in dc.dms_to(alice) if "Town hall" in str(m.content) + str(m.embeds)]) == 1

    # --- unlink on Telegram: the Discord channel is told; the next Discord Space stays on Discord
    await tg.user_sends(hana, group, "/unlink")
    await tg.wait_for_message(group, lambda m: "no longer shares its Spaces with a Discord channel" in m.text)
    await w.deliver()
    assert [m for m in w.sl.messages_in(w.sl_channel) if "A Telegram group no longer shares" in m.text]
    assert "Next one" in await w.command(mo, "schedule", title="Next one", when="friday 20:00")
    nxt = next(s for s in await w.spaces.upcoming(w.dc_chat) if s.title == "Next one")
    await w.deliver()
    assert not _tg_cards(w, group, nxt.id)
    assert [m for m in w.sl.messages_in(w.sl_channel) if "Next one" in m.text]  # Slack is still linked
    assert [m for m in dc.messages_in(w.channel) if m.embeds and "Next one" in str(m.embeds[0])]
    shown_on_telegram = {s.id for s in await w.spaces.upcoming(tg_chat(group.id))}
    assert space.id in shown_on_telegram and nxt.id not in shown_on_telegram


async def test_a_person_links_discord_and_telegram_in_the_bots_dms(world: World) -> None:
    """Discord has no private chat of its own with a command line: ``/space link`` in the bot's DM (a
    context-1 interaction: ``user``, no ``member`` or ``guild_id``) links the person's accounts, as Telegram's
    and Slack's private chats do. Subscribed from both, the person is told once, on Discord, where they
    subscribed last; ``/space unlink`` there undoes it; anything else in the DM is refused politely."""
    w, tg, dc = world, world.tg, world.dc
    managers = dc.add_role(w.guild, "Event Managers", Perm.MANAGE_EVENTS)
    mo = dc.add_member(w.guild, "mo", roles=[managers])
    alice = dc.add_member(w.guild, "alice")  # Alice on Discord
    al = tg.create_user("Alice", started=True)  # and on Telegram
    dm = dc.ensure_dm_channel(alice)

    async def in_dm(name: str, **options: object) -> str:
        rec = await dc.run_command(None, dm, alice, f"space {name}", options)
        assert rec.payload["context"] == 1 and "member" not in rec.payload and "guild_id" not in rec.payload
        [answer] = await dc.wait_for_followups(rec)
        assert answer.flags & EPHEMERAL, answer  # for her alone, as every answer but a list
        return answer.content

    # --- a Space on Discord; Alice subscribes from Telegram first (the deep link of its card)
    assert "Demo day" in await w.command(mo, "schedule", title="Demo day", when="tomorrow 20:00")
    [space] = await w.spaces.upcoming(w.dc_chat)
    await w.deliver()
    [dc_card] = [m for m in dc.messages_in(w.channel) if m.embeds and "Demo day" in str(m.embeds[0])]
    await tg.user_starts_bot(al, f"{START_PREFIX}{space.id}")
    await tg.wait_for_message(al.id, lambda m: "Demo day" in m.text)
    assert await w.spaces.subscriber_count(space.id) == 1

    # --- in the DM, what is about a server channel's Spaces is refused, and says what works there
    refused = await in_dm("list")
    assert "Use this in a server channel" in refused and "`/space link`" in refused, refused

    # --- a code in the Discord DM, typed in the Telegram private chat: one person
    code = CODE.search(await in_dm("link")).group(0)  # type: ignore[union-attr]
    await tg.user_sends(al, None, f"/link {code}")
    linked = await tg.wait_for_message(al.id, lambda m: "one person now" in m.text)
    assert "(Telegram, Discord)" in linked.text, linked.text

    # --- subscribed again, from Discord (later): still one person, two accounts
    w.clock.advance(timedelta(minutes=1))
    rec = await dc.press_button(dc_card, f"sub:{space.id}", alice)
    await dc.wait_for_followups(rec)

    async def both_accounts() -> bool:
        async with w.uow() as uow:
            return len(await uow.subscriptions.list(space.id)) == 2

    await w.eventually(both_accounts)
    assert await w.spaces.subscriber_count(space.id) == 1  # people, not accounts

    # --- live: ONE notice, on Discord (her last), none on Telegram
    assert "Demo day" in await w.command(mo, "start", space=space.id)

    async def live() -> bool:
        return (await w.spaces.get(space.id)).status is SpaceStatus.LIVE

    await w.eventually(live)
    await w.deliver()
    told = [m for m in dc.dms_to(alice) if "Demo day" in str(m.embeds) and "live" in str(m.embeds)]
    assert len(told) == 1, told
    assert not [m for m in tg.bot_messages(al.id) if "Demo day" in m.text and "live" in m.text.lower()]

    # --- unlink in the DM: her Discord account is on its own again
    assert "on its own again" in await in_dm("unlink")
    assert "isn't linked" in await in_dm("unlink")
