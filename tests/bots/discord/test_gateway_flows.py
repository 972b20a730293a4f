"""Members' flows over the gateway: the real discord.py (through the Discord adapter) against the Discord
emulator, on the real core, storage and delivery engine. Members run ``/space`` commands, type in
autocompleted options and press the card's buttons in the emulator; what each of them received is counted
there (responses, follow-ups, messages in the channel).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import discord
import pytest
from aiohttp.test_utils import TestServer

from bots.discord.adapter import DiscordConfig, DiscordPlatform
from bots.discord.handlers import Handlers
from bots.discord.interactions import PATH, InteractionsEndpoint
from bots.discord.translate import chat_ref, from_interaction, from_payload
from bots.metrics import Metrics
from bots.runtime.budget import Unlimited
from bots.web.app import WebDeps, make_web_app
from core.models import SpaceStatus
from core.refs import ChatRef
from core.services.deliveries import DeliveryEngine, EngineConfig
from core.services.inbound import InboundService
from core.services.profiles import ProfileService
from core.services.replies import RepliesService
from tests.conftest import CoreEnv, StaticLinks
from tests.fakes.discord import (
    EPHEMERAL,
    DcChannel,
    DcGuild,
    DcMember,
    DcMessage,
    DiscordEmulator,
    Perm,
    pointed_at,
)


@dataclass
class World:
    dc: DiscordEmulator
    core: CoreEnv
    engine: DeliveryEngine
    guild: DcGuild
    channel: DcChannel
    host: DcMember
    alice: DcMember
    mod: DcMember
    bob: DcMember
    handlers: Handlers

    async def command(self, who: DcMember, name: str, **options: object) -> str:
        """Run ``/space <name>`` as ``who``: the private answer's text."""
        rec = await self.dc.run_command(self.guild, self.channel, who, f"space {name}", options)
        [answer] = await self.dc.wait_for_followups(rec)
        assert rec.response_type == 5 and rec.ephemeral  # deferred at once, privately
        assert answer.ephemeral
        return answer.content

    async def press(self, card: DcMessage, custom_id: str, who: DcMember) -> str:
        rec = await self.dc.press_button(card, custom_id, who)
        [answer] = await self.dc.wait_for_followups(rec)
        assert rec.ephemeral and answer.ephemeral
        return answer.content

    async def schedule(
        self, title: str = "Weekly AMA", when: str = "tomorrow 20:00"
    ) -> tuple[str, DcMessage]:
        text = await self.command(self.host, "schedule", title=title, when=when)
        assert "Scheduled ✓" in text, text
        [space] = await self.core.spaces.upcoming(_chat(self))
        await self.engine.deliver_due()  # the card, posted by the engine
        card = await self.dc.wait_for_message(self.channel, lambda m: bool(m.embeds))
        return space.id, card


def _chat(w: World) -> ChatRef:
    return chat_ref(str(w.channel.id), str(w.guild.id))


def inbound_for(env: CoreEnv) -> InboundService:
    """The core's inbound path over the test's core (the services the composition root wires)."""
    return InboundService(
        spaces=env.spaces,
        profiles=ProfileService(env.db.uow),
        replies=RepliesService(env.db.uow, env.clock, env.wake),
        links=StaticLinks(),
        clock=env.clock,
        uow=env.db.uow,
    )


@pytest.fixture
async def world(core_env: CoreEnv) -> AsyncIterator[World]:
    if core_env.backend == "postgres":
        pytest.skip("the HTTP flows cover PostgreSQL; one backend is enough for the gateway's")
    core_env.clock.set(datetime.now(UTC).replace(microsecond=0))  # the emulator's events live in real time
    async with DiscordEmulator() as dc:
        with pointed_at(dc):
            guild = dc.create_guild("Guild")
            channel = next(c for c in guild.channels.values() if c.name == "general")
            managers = dc.add_role(guild, "Event Managers", Perm.MANAGE_EVENTS)
            world_members = {
                "host": dc.add_member(guild, "host"),
                "alice": dc.add_member(guild, "alice"),
                "mod": dc.add_member(guild, "mod", roles=[managers]),
                "bob": dc.add_member(guild, "bob"),
            }
            platform = DiscordPlatform(
                DiscordConfig(
                    token=dc.token, application_id=str(dc.application_id), guild_ready_timeout=0.05
                ),
                uow=core_env.db.uow,
            )
            handlers = Handlers(
                spaces=core_env.spaces,
                inbound=inbound_for(core_env),
                links=StaticLinks(),
                clock=core_env.clock,
                is_moderator=platform.is_moderator,
                api_base=dc.base_url,  # follow-ups of HTTP interactions
            )
            platform.attach(handlers)
            engine = DeliveryEngine(
                core_env.db.outbox(),
                core_env.db.uow,
                platform,
                core_env.clock,
                Unlimited(),
                StaticLinks(),
                core_env.wake,
                EngineConfig(worker_id="w1"),
                rng=random.Random(7),
            )
            await platform.start()
            try:
                yield World(dc, core_env, engine, guild, channel, **world_members, handlers=handlers)
            finally:
                await platform.stop()


async def test_commands_are_registered_for_servers_and_the_bot_dm(world: World) -> None:
    cmd = world.dc.find_command("space")
    assert cmd is not None and cmd["contexts"] == [0, 1] and cmd["integration_types"] == [0]


async def test_in_the_bot_dm_only_link_and_unlink_are_answered(world: World) -> None:
    dm = world.dc.ensure_dm_channel(world.alice)
    rec = await world.dc.run_command(None, dm, world.alice, "space list")
    [answer] = await world.dc.wait_for_followups(rec)
    assert "Use this in a server channel" in answer.content and "`/space link`" in answer.content
    assert answer.flags & EPHEMERAL  # as every answer to the asker alone
    assert rec.payload["context"] == 1 and "member" not in rec.payload and "guild_id" not in rec.payload
    # nor is anything suggested for a subcommand refused there (Discord offers every one in the menu)
    await world.schedule()
    assert await world.dc.autocomplete(None, dm, world.host, "space start", "space", "") == []
    assert await world.dc.autocomplete(world.guild, world.channel, world.host, "space start", "space", "")


async def test_schedule_then_subscribe_with_the_button(world: World) -> None:
    space_id, card = await world.schedule()
    assert card.embeds[0]["title"] == "Weekly AMA"
    assert f"sub:{space_id}" in card.custom_ids
    text = await world.press(card, f"sub:{space_id}", world.alice)
    assert "Reminder set" in text
    assert await world.core.spaces.subscriber_count(space_id) == 1
    text = await world.press(card, f"unsub:{space_id}", world.alice)
    assert "Reminder removed" in text
    assert await world.core.spaces.subscriber_count(space_id) == 0
    # nobody was pinged by any of it
    assert sum(world.dc.pings.values()) == 0


async def test_autocomplete_over_the_gateway(world: World) -> None:
    choices = await world.dc.autocomplete(
        world.guild, world.channel, world.host, "space schedule", "when", "in 2 hours", {"title": "AMA"}
    )
    [choice] = choices
    assert choice["value"] == "in 2 hours" and choice["name"].endswith("— in 2 hours")
    zones = await world.dc.autocomplete(
        world.guild, world.channel, world.host, "space schedule", "timezone", "tokyo"
    )
    assert zones[0]["value"] == "Asia/Tokyo"
    space_id, _ = await world.schedule()
    mine = await world.dc.autocomplete(world.guild, world.channel, world.host, "space cancel", "space", "")
    assert [c["value"] for c in mine] == [space_id]
    theirs = await world.dc.autocomplete(world.guild, world.channel, world.bob, "space cancel", "space", "")
    assert theirs == []


async def test_start_and_end_by_a_manage_events_member_refused_to_others(world: World) -> None:
    space_id, card = await world.schedule()
    text = await world.press(card, f"start:{space_id}", world.bob)
    assert "Only the host or a moderator" in text
    assert "Only the host or a moderator" in await world.command(world.bob, "start", space=space_id)
    assert (await world.core.spaces.get(space_id)).status is SpaceStatus.SCHEDULED
    assert "You're live" in await world.command(world.mod, "start", space=space_id)
    assert "Ended" in await world.command(world.mod, "end", space=space_id)
    assert (await world.core.spaces.get(space_id)).status is SpaceStatus.ENDED


async def test_cancel_and_reschedule_by_the_host(world: World) -> None:
    space_id, _ = await world.schedule()
    assert "Rescheduled ✓" in await world.command(world.host, "reschedule", space=space_id, when="in 3 days")
    assert "Cancelled" in await world.command(world.host, "cancel", space=space_id)
    assert (await world.core.spaces.get(space_id)).status is SpaceStatus.CANCELLED


async def test_hostile_title_pings_nobody(world: World) -> None:
    title = f"@everyone <@{world.alice.user.id}> <@&{world.guild.id}>"
    await world.schedule(title=title)
    assert sum(world.dc.pings.values()) == 0


# --------------------------------------------------------------------------- the HTTP interactions endpoint


@pytest.fixture
async def over_http(world: World) -> AsyncIterator[World]:
    """The same world, with Discord posting interactions to our endpoint instead of the gateway."""
    endpoint = InteractionsEndpoint(world.dc.public_key, world.handlers.on_http)
    deps = WebDeps(
        spaces=world.core.spaces,
        outbox=world.core.db.outbox(),
        registry=Metrics().registry,
        routes=endpoint.web_routes(),
    )
    async with TestServer(make_web_app(deps), host="127.0.0.1") as server:
        world.dc.interactions_url = str(server.make_url(PATH))
        yield world
        await world.handlers.drain()


async def test_discords_probes(over_http: World) -> None:
    assert await over_http.dc.probe_ping() == (200, {"type": 1})
    assert await over_http.dc.probe_bad_signature() == 401


async def test_schedule_and_subscribe_over_http(over_http: World) -> None:
    space_id, card = await over_http.schedule()
    assert "Reminder set" in await over_http.press(card, f"sub:{space_id}", over_http.alice)
    assert "Only the host or a moderator" in await over_http.command(over_http.bob, "cancel", space=space_id)
    choices = await over_http.dc.autocomplete(
        over_http.guild, over_http.channel, over_http.host, "space cancel", "space", "week"
    )
    assert [c["value"] for c in choices] == [space_id]
    assert all(r.over_http and r.http_status == 200 for r in over_http.dc.interactions.values())


async def test_both_transports_read_an_interaction_the_same(world: World) -> None:
    """The gateway's discord.Interaction and the raw JSON Discord would POST give the same Incoming."""
    seen: list[discord.Interaction[Any]] = []
    handle = world.handlers.on_interaction

    async def recording(interaction: discord.Interaction[Any]) -> None:
        seen.append(interaction)
        await handle(interaction)

    world.handlers.on_interaction = recording  # type: ignore[method-assign]
    space_id, card = await world.schedule()
    rec = await world.dc.run_command(
        world.guild, world.channel, world.mod, "space reschedule", {"space": space_id, "when": "in 2 days"}
    )
    await world.dc.wait_for_followups(rec)
    press = await world.dc.press_button(card, f"sub:{space_id}", world.alice)
    await world.dc.wait_for_followups(press)
    records = [r for r in world.dc.interactions.values() if r.type in (2, 3)]
    assert len(seen) == len(records) == 3
    for interaction, record in zip(seen, records, strict=True):
        assert from_interaction(interaction) == from_payload(record.payload)
    mod = from_interaction(seen[1])
    assert mod.manages_events and mod.roles and mod.options["when"] == "in 2 days"


async def test_a_replayed_request_is_refused_and_does_nothing(over_http: World) -> None:
    space_id, _ = await over_http.schedule()
    cancel = await over_http.dc.run_command(
        over_http.guild, over_http.channel, over_http.host, "space cancel", {"space": space_id}
    )
    await over_http.dc.wait_for_followups(cancel)
    status, _ = await over_http.dc.replay(cancel)
    await over_http.handlers.drain()
    assert status == 401
    assert len(cancel.followups) == 1  # answered once


async def test_a_french_member_is_answered_in_french(world: World) -> None:
    amelie = world.dc.add_member(world.guild, world.dc.create_user("amelie", locale="fr"))
    [choice] = await world.dc.autocomplete(
        world.guild, world.channel, amelie, "space schedule", "when", "dans 2 heures", {"title": "AMA"}
    )
    assert choice["name"].endswith("— dans 2 heures")
    text = await world.command(amelie, "schedule", title="AMA du jeudi", when="demain 20h")
    assert "Programmé ✓" in text and "Titre : AMA du jeudi" in text
    assert "`/space rename " in text  # the one-step fix, as Discord names it
