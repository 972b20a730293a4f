"""The Discord emulator, driven by the real discord.py (and raw HTTP where discord.py would not go)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import discord
import pytest
import pytest_asyncio
from aiohttp import web
from discord import app_commands
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from tests.fakes.discord import (
    STAGE,
    VOICE,
    DcGuild,
    DcMember,
    DiscordEmulator,
    Perm,
    RateRule,
    client_running,
    pointed_at,
    shard_of,
)

GUILD_ONLY = discord.PrivacyLevel.guild_only  # Discord requires it; discord.py sends it only when given


class Clock:
    """An emulator clock the test moves (the 3-second window, rate limits) without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest_asyncio.fixture
async def dc() -> AsyncIterator[DiscordEmulator]:
    async with DiscordEmulator() as emulator:
        with pointed_at(emulator):
            yield emulator


def world(dc: DiscordEmulator) -> tuple[DcGuild, DcMember, DcMember]:
    guild = dc.create_guild("Spaces Lab")
    dc.add_channel(guild, "Lounge", VOICE)
    dc.add_channel(guild, "Stage", STAGE)
    alice = dc.add_member(guild, "alice")
    bob = dc.add_member(guild, "bob")
    return guild, alice, bob


def text_channel(guild: DcGuild) -> Any:
    return next(c for c in guild.channels.values() if c.type == 0)


def new_client(**kw: Any) -> discord.Client:
    return discord.Client(intents=discord.Intents.default(), guild_ready_timeout=0.05, **kw)


# --------------------------------------------------------------------------- login and gateway
async def test_login_ready_and_guild_create(dc: DiscordEmulator) -> None:
    guild, _alice, _ = world(dc)
    async with client_running(dc, new_client()) as client:
        assert client.user is not None and client.user.id == dc.bot.id
        assert client.application_id == dc.application_id
        g = client.get_guild(guild.id)
        assert g is not None and g.name == "Spaces Lab"
        kinds = sorted(str(c.type) for c in g.channels)
        assert kinds == ["stage_voice", "text", "voice"]
        assert g.me is not None and g.me.guild_permissions.manage_events
        assert {r.name for r in g.roles} >= {"@everyone", "Spaces"}
    assert [c.route for c in dc.calls()][:2] == ["/users/@me", "/oauth2/applications/@me"]
    assert dc.dispatched("READY")[0]["d"]["resume_gateway_url"] == dc.gateway_url
    assert dc.heartbeats >= 1  # discord.py beats once at once, then every 41 s


async def test_resume_after_a_dropped_connection(dc: DiscordEmulator) -> None:
    _guild, _, _ = world(dc)
    resumed = asyncio.Event()
    client = new_client()

    @client.event
    async def on_resumed() -> None:
        resumed.set()

    async with client_running(dc, client):
        await dc.drop_connection(0)
        await asyncio.wait_for(resumed.wait(), 5)
        session = next(iter(dc.sessions.values()))
        assert session.resumes == 1 and len(dc.identifies) == 1


# --------------------------------------------------------------------------- messages and DMs
async def test_messages_and_who_they_ping(dc: DiscordEmulator) -> None:
    guild, alice, bob = world(dc)
    async with client_running(dc, new_client()) as client:
        channel = client.get_channel(text_channel(guild).id)
        hostile = f"@everyone <@{alice.user.id}> join now"
        quiet = await channel.send(hostile, allowed_mentions=discord.AllowedMentions.none())
        assert quiet.content == hostile and dc.pings == {}
        await channel.send(embed=discord.Embed(title="@everyone", description=f"<@{bob.user.id}>"))
        assert dc.pings == {}  # embeds never ping
        loud = await channel.send(f"<@{alice.user.id}> hi")  # no allowed_mentions: Discord parses all
        assert dc.pings == {alice.user.id: 1}
        edited = await loud.edit(content="changed")
        assert edited.content == "changed"
        stored = dc.messages[loud.id]
        assert [v.content for v in stored.versions] == [f"<@{alice.user.id}> hi", "changed"]
        fetched = await channel.fetch_message(quiet.id)
        assert fetched.content == hostile
        assert len(dc.messages_in(text_channel(guild))) == 3


async def test_dms_closed_dms_and_nonce_dedupe(dc: DiscordEmulator) -> None:
    _guild, alice, bob = world(dc)
    dc.close_dms(bob)
    async with client_running(dc, new_client()) as client:
        user = await client.fetch_user(alice.user.id)
        first = await user.send("reminder", nonce="key-1")
        again = await user.send("reminder", nonce="key-1")  # a retry: Discord returns the original
        assert again.id == first.id and dc.nonce_hits["key-1"] == 1
        await user.send("another", nonce="key-2")
        assert [m.content for m in dc.dms_to(alice)] == ["reminder", "another"]
        assert dc.dm_counts() == {alice.user.id: 2}
        with pytest.raises(discord.Forbidden) as info:
            await (await client.fetch_user(bob.user.id)).send("hello")
        assert info.value.code == 50007
        assert dc.dms_to(bob) == [] and dc.invalid_count == 1
        assert dc.dm_opens[bob.user.id] == 1


async def test_missing_permissions_are_refused(dc: DiscordEmulator) -> None:
    guild, _alice, _ = world(dc)
    channel = text_channel(guild)
    news = dc.add_channel(guild, "news")
    dc.set_overwrite(news, guild.everyone, deny=Perm.SEND_MESSAGES)
    secret = dc.add_channel(guild, "secret")
    dc.set_overwrite(secret, guild.everyone, deny=Perm.VIEW_CHANNEL)
    dc.set_overwrite(channel, guild.everyone, deny=Perm.EMBED_LINKS)
    async with client_running(dc, new_client()) as client:
        with pytest.raises(discord.Forbidden) as info:
            await client.get_channel(news.id).send("x")
        assert info.value.code == 50013
        with pytest.raises(discord.Forbidden) as info:
            await client.get_channel(secret.id).send("x")
        assert info.value.code == 50001
        with pytest.raises(discord.Forbidden):
            await client.get_channel(channel.id).send(embed=discord.Embed(title="card"))
        dc.set_overwrite(news, dc.bot_role(guild), allow=Perm.SEND_MESSAGES)  # a role overwrite wins
        await client.get_channel(news.id).send("x")
    assert dc.invalid_count == 3


# --------------------------------------------------------------------------- interactions
def command_tree(
    client: discord.Client, log: list[str], gate: asyncio.Event | None = None
) -> app_commands.CommandTree:
    tree = app_commands.CommandTree(client)
    space = app_commands.Group(name="space", description="Spaces")

    @space.command(name="schedule", description="Schedule a Space")
    async def schedule(
        interaction: discord.Interaction, title: str, voice: discord.VoiceChannel | None = None
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        log.append(f"schedule {title} {voice.name if voice else '-'}")
        await interaction.followup.send(f"Scheduled {title}", ephemeral=True)

    @schedule.autocomplete("title")
    async def titles(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return [
            app_commands.Choice(name=t, value=t)
            for t in ("Town hall", "Tea time")
            if current.lower() in t.lower()
        ]

    @space.command(name="slow", description="Answers only when the test says so")
    async def slow(interaction: discord.Interaction) -> None:
        if gate is not None:
            await gate.wait()
        try:
            await interaction.response.send_message("late?")
        except discord.NotFound as err:
            log.append(f"late {err.code}")

    class Card(discord.ui.View):
        @discord.ui.button(label="Set reminder", custom_id="remind:1")
        async def remind(self, interaction: discord.Interaction, button: discord.ui.Button[Card]) -> None:
            await interaction.response.send_message("Reminder set", ephemeral=True)

        @discord.ui.button(label="Rename", custom_id="rename:1")
        async def rename(self, interaction: discord.Interaction, button: discord.ui.Button[Card]) -> None:
            await interaction.response.send_modal(Rename())

    class Rename(discord.ui.Modal, title="Rename"):
        name: discord.ui.TextInput[Rename] = discord.ui.TextInput(label="New title", custom_id="new-title")

        async def on_submit(self, interaction: discord.Interaction) -> None:
            log.append(f"renamed {self.name.value}")
            await interaction.response.edit_message(content=f"Card: {self.name.value}")

    @space.command(name="card", description="Post a card")
    async def card(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("Card: Town hall", view=Card(timeout=None))

    tree.add_command(space)
    client.add_view(Card(timeout=None))
    return tree


async def test_slash_command_defer_followup_autocomplete(dc: DiscordEmulator) -> None:
    guild, alice, _ = world(dc)
    channel = text_channel(guild)
    lounge = next(c for c in guild.channels.values() if c.type == VOICE)
    log: list[str] = []
    client = new_client()
    tree = command_tree(client, log)
    async with client_running(dc, client):
        await tree.sync()
        assert [c["name"] for c in dc.global_commands] == ["space"]
        choices = await dc.autocomplete(guild, channel, alice, "space schedule", "title", "tea")
        assert choices == [{"name": "Tea time", "value": "Tea time"}]
        rec = await dc.run_command(
            guild, channel, alice, "space schedule", {"title": "Town hall", "voice": lounge}
        )
        cb = await dc.wait_for_response(rec)
        assert cb.type == 5 and rec.ephemeral and not cb.late
        [followup] = await dc.wait_for_followups(rec)
        assert followup.content == "Scheduled Town hall" and followup.ephemeral
        assert dc.ephemeral_to(alice)[-1].content == "Scheduled Town hall"
        assert dc.messages_in(channel) == []  # nothing public
    assert log == ["schedule Town hall Lounge"]
    payload = rec.payload
    for key in (
        "id",
        "type",
        "token",
        "version",
        "application_id",
        "attachment_size_limit",
        "context",
        "member",
    ):
        assert key in payload
    assert int(payload["member"]["permissions"]) & Perm.VIEW_CHANNEL


async def test_first_response_after_three_seconds_is_refused() -> None:
    clock = Clock()
    async with DiscordEmulator(clock=clock) as dc:
        with pointed_at(dc):
            guild, alice, _ = world(dc)
            channel = text_channel(guild)
            log: list[str] = []
            gate = asyncio.Event()
            client = new_client()
            tree = command_tree(client, log, gate)
            async with client_running(dc, client):
                await tree.sync()
                rec = await dc.run_command(guild, channel, alice, "space slow")
                clock.now += 3.5  # the bot sat on it for 3.5 s
                gate.set()
                cb = await dc.wait_for_response(rec)
                assert cb.late and not rec.responded
                await dc.wait_until(lambda: log, what="the bot to see the refusal")
            assert log == ["late 10062"]
            assert dc.messages_in(channel) == []


async def test_buttons_and_modals(dc: DiscordEmulator) -> None:
    guild, alice, bob = world(dc)
    channel = text_channel(guild)
    log: list[str] = []
    client = new_client()
    tree = command_tree(client, log)
    async with client_running(dc, client):
        await tree.sync()
        rec = await dc.run_command(guild, channel, alice, "space card")
        await dc.wait_for_response(rec)
        card = rec.original
        assert card is not None and card.custom_ids == ["remind:1", "rename:1"]
        assert dc.messages_in(channel) == [card]
        press = await dc.press_button(card, "remind:1", bob)
        await dc.wait_for_response(press)
        assert dc.ephemeral_to(bob)[-1].content == "Reminder set"
        opened = await dc.press_button(card, "rename:1", alice)
        await dc.wait_for_response(opened)
        assert opened.modal is not None and opened.modal["title"] == "Rename"
        submitted = await dc.submit_modal(opened, {"new-title": "Tea time"})
        await dc.wait_for_response(submitted)
        assert card.content == "Card: Tea time" and len(card.edits) == 1
    assert log == ["renamed Tea time"]


# --------------------------------------------------------------------------- sharding
class Sharded(discord.AutoShardedClient):
    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        return None  # discord.py waits 5 s between IDENTIFYs by default: needless against the emulator


async def test_auto_sharded_client_gets_each_guild_on_its_shard(dc: DiscordEmulator) -> None:
    dc.recommended_shards = 2
    guilds = [dc.create_guild(f"Guild {i}") for i in range(4)]
    assert {shard_of(g.id, 2) for g in guilds} == {0, 1}
    client = Sharded(intents=discord.Intents.default(), guild_ready_timeout=0.05)
    async with client_running(dc, client):
        await dc.wait_connected(2)
        assert client.shard_count == 2 and len(client.guilds) == 4
        for g in client.guilds:
            assert g.shard_id == shard_of(g.id, 2)
        assert dc.connected_shards() == [(0, 2), (1, 2)]
    per_shard = {
        shard: {p["d"]["id"] for sid, s, p in dc.gateway_sent if s == shard and p["t"] == "GUILD_CREATE"}
        for shard in (0, 1)
    }
    assert per_shard[0].isdisjoint(per_shard[1]) and len(per_shard[0] | per_shard[1]) == 4
    assert dc.calls("/gateway/bot")[0].response["shards"] == 2


# --------------------------------------------------------------------------- scheduled events
async def test_scheduled_events_both_ways(dc: DiscordEmulator) -> None:
    guild, alice, bob = world(dc)
    lounge = next(c for c in guild.channels.values() if c.type == VOICE)
    owner = guild.members[guild.owner_id]
    seen: list[str] = []
    intents = discord.Intents.default()
    intents.members = True  # discord.py drops USER_ADD for users it has not cached
    client = discord.Client(intents=intents, guild_ready_timeout=0.05)

    @client.event
    async def on_scheduled_event_user_add(event: discord.ScheduledEvent, user: discord.User) -> None:
        seen.append(f"add {user.name}")

    @client.event
    async def on_scheduled_event_user_remove(event: discord.ScheduledEvent, user: discord.User) -> None:
        seen.append(f"remove {user.name}")

    @client.event
    async def on_scheduled_event_update(
        before: discord.ScheduledEvent, after: discord.ScheduledEvent
    ) -> None:
        seen.append(f"status {after.status.name}")

    start = datetime.now(UTC) + timedelta(hours=1)
    async with client_running(dc, client):
        g = client.get_guild(guild.id)
        assert g is not None
        ev = await g.create_scheduled_event(
            name="Town hall",
            description="Monthly",
            start_time=start,
            end_time=start + timedelta(hours=1),
            entity_type=discord.EntityType.external,
            location="https://spaces.test/s/1",
            privacy_level=discord.PrivacyLevel.guild_only,
        )
        stored = guild.events[ev.id]
        assert stored.fields["entity_type"] == 3 and stored.fields["entity_metadata"] == {
            "location": "https://spaces.test/s/1"
        }
        voice = await g.create_scheduled_event(
            name="In voice",
            start_time=start,
            channel=g.get_channel(lounge.id),
            privacy_level=discord.PrivacyLevel.guild_only,
        )
        assert guild.events[voice.id].fields["entity_type"] == 2
        await dc.mark_interested(stored, alice)
        await dc.mark_interested(stored, bob)
        await dc.unmark_interested(stored, bob)
        await dc.wait_until(lambda: len(seen) == 3, what="the user add/remove dispatches")
        assert seen == ["add alice", "add bob", "remove bob"]
        assert [u.id async for u in ev.users()] == [alice.user.id]
        await ev.edit(start_time=start + timedelta(minutes=30), end_time=start + timedelta(hours=2))
        await dc.start_event_in_ui(stored, owner)  # a moderator clicks "Start" in Discord
        await dc.wait_until(lambda: "status active" in seen, what="the UPDATE dispatch")
        assert dc.native_event_notices == {alice.user.id: 1}
        ended = await (await g.fetch_scheduled_event(ev.id)).end()
        assert ended.status == discord.EventStatus.completed and stored.status == 3
        with pytest.raises(discord.HTTPException) as info:  # a completed event cannot come back
            await ended.edit(name="Again")
        assert info.value.status == 400
        assert [v.kind for v in dc.take_violations()] == ["content"]
        await voice.cancel()
        assert guild.events[voice.id].status == 4
        with pytest.raises(ValueError):
            await dc.start_event_in_ui(guild.events[voice.id], owner)
        dc.max_active_events = 0
        with pytest.raises(discord.HTTPException) as info:
            await g.create_scheduled_event(
                name="One more", start_time=start, channel=g.get_channel(lounge.id), privacy_level=GUILD_ONLY
            )
        assert info.value.code == 30038
        dc.max_active_events = 100
        dc.bot_role(guild).permissions &= ~(Perm.MANAGE_EVENTS | Perm.CREATE_EVENTS)
        with pytest.raises(discord.Forbidden) as info:
            await g.create_scheduled_event(
                name="No rights", start_time=start, channel=g.get_channel(lounge.id), privacy_level=GUILD_ONLY
            )
        assert info.value.code == 50013
    kinds = [p["t"] for p in dc.dispatched() if p["t"].startswith("GUILD_SCHEDULED_EVENT")]
    assert kinds.count("GUILD_SCHEDULED_EVENT_CREATE") == 2 and "GUILD_SCHEDULED_EVENT_USER_ADD" in kinds


async def test_event_rules_held_to_discord(dc: DiscordEmulator) -> None:
    guild, _, _ = world(dc)
    lounge = next(c for c in guild.channels.values() if c.type == VOICE)
    start = datetime.now(UTC) + timedelta(hours=1)
    async with client_running(dc, new_client()) as client:
        g = client.get_guild(guild.id)
        assert g is not None
        with pytest.raises(discord.HTTPException):  # a stage event in a voice channel
            await dc_raw(
                dc,
                "POST",
                f"/guilds/{guild.id}/scheduled-events",
                {
                    "name": "x",
                    "privacy_level": 2,
                    "scheduled_start_time": start.isoformat(),
                    "entity_type": 1,
                    "channel_id": str(lounge.id),
                },
            )
        with pytest.raises(discord.HTTPException):  # in the past
            await g.create_scheduled_event(
                name="Past",
                start_time=datetime.now(UTC) - timedelta(hours=1),
                channel=g.get_channel(lounge.id),
                privacy_level=GUILD_ONLY,
            )
    assert [v.kind for v in dc.take_violations()] == ["content"]  # the wrong channel type; the past is data


# --------------------------------------------------------------------------- rate limits
async def test_429s_are_answered_like_discord_and_recovered_from() -> None:
    async with DiscordEmulator(global_rate=RateRule(6, 0.4), message_rate=RateRule(2, 0.3)) as dc:
        with pointed_at(dc):
            guild, _, _ = world(dc)
            channels = [text_channel(guild)] + [dc.add_channel(guild, f"c{i}") for i in range(7)]
            async with client_running(dc, new_client()) as client:
                sent = await asyncio.gather(*(client.get_channel(c.id).send("hello") for c in channels))
                assert len(sent) == 8 and dc.count_global_429 >= 1
                limited = next(c for c in dc.calls() if c.status == 429)
                assert limited.headers["X-RateLimit-Global"] == "true" and limited.headers["Via"]
                assert limited.response["global"] is True and limited.response["retry_after"] > 0
                one = client.get_channel(channels[0].id)
                began = time.monotonic()
                for i in range(4):  # 2 per 0.3 s: discord.py reads the headers and waits
                    await one.send(f"paced {i}")
                assert time.monotonic() - began >= 0.25
                ok = dc.calls("/channels/{channel_id}/messages", "POST")[-1]
                assert {
                    "X-RateLimit-Limit",
                    "X-RateLimit-Remaining",
                    "X-RateLimit-Reset-After",
                    "X-RateLimit-Bucket",
                } <= set(ok.headers)
                dc.fail_next("POST", "/channels/{channel_id}/messages", 429, retry_after=0.05)
                await client.get_channel(channels[1].id).send("after a 429")
            assert dc.count_429 >= 2 and dc.invalid_count == dc.count_429
            assert len(dc.messages_in(channels[0])) == 5


# --------------------------------------------------------------------------- the description holds requests
async def test_requests_discord_would_refuse_are_violations(dc: DiscordEmulator) -> None:
    guild, _, _ = world(dc)
    async with client_running(dc, new_client()) as client:
        channel = client.get_channel(text_channel(guild).id)
        with pytest.raises(discord.HTTPException) as info:
            await channel.send("x" * 2001)
        assert info.value.status == 400 and info.value.code == 50035
        with pytest.raises(discord.HTTPException):
            await channel.send("hi", nonce="n" * 26)
        with pytest.raises(discord.HTTPException):
            await channel.send(embed=discord.Embed(title="t" * 257))
        with pytest.raises(discord.HTTPException):
            await dc_raw(dc, "POST", f"/channels/{channel.id}/messages", {"content": "hi", "colour": 1})
        with pytest.raises(discord.NotFound):
            await dc_raw(dc, "GET", "/no/such/route", None)
    problems = [v.message for v in dc.take_violations()]
    assert len(problems) == 5
    assert "2000 or fewer" in problems[0] and "25 or fewer" in problems[1] and "256 or fewer" in problems[2]
    assert "unknown field" in problems[3] and "Not Found" in problems[4]
    assert dc.messages_in(text_channel(guild)) == []


async def test_a_violation_fails_the_test_on_exit() -> None:
    with pytest.raises(AssertionError, match="Discord would refuse"):
        async with DiscordEmulator() as dc:
            with pointed_at(dc):
                guild, _, _ = world(dc)
                with pytest.raises(discord.HTTPException):
                    await dc_raw(dc, "POST", f"/channels/{text_channel(guild).id}/messages", {"content": ""})


async def dc_raw(dc: DiscordEmulator, method: str, path: str, body: Any) -> Any:
    """A request discord.py would not build, through its own HTTP client (so errors map the same way)."""
    http = discord.http.HTTPClient(asyncio.get_running_loop())
    await http.static_login(dc.token)
    try:
        return await http.request(discord.http.Route(method, path), json=body)
    finally:
        await http.close()


# --------------------------------------------------------------------------- HTTP interactions
async def test_interactions_over_http_are_signed(dc: DiscordEmulator) -> None:
    guild, alice, _ = world(dc)
    verify = VerifyKey(bytes.fromhex(dc.public_key))

    async def endpoint(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            verify.verify(
                request.headers["X-Signature-Timestamp"].encode() + body,
                bytes.fromhex(request.headers["X-Signature-Ed25519"]),
            )
        except (BadSignatureError, KeyError, ValueError):
            return web.Response(status=401, text="invalid request signature")
        data = json.loads(body)
        if data["type"] == 1:
            return web.json_response({"type": 1})
        return web.json_response({"type": 4, "data": {"content": "Hello over HTTP", "flags": 64}})

    app = web.Application()
    app.router.add_post("/discord/interactions", endpoint)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        dc.interactions_url = f"http://127.0.0.1:{runner.addresses[0][1]}/discord/interactions"
        assert await dc.probe_ping() == (200, {"type": 1})
        assert await dc.probe_bad_signature() == 401
        dc.register_command("hello")
        rec = await dc.run_command(guild, text_channel(guild), alice, "hello")
        cb = await dc.wait_for_response(rec)
        assert cb.type == 4 and rec.over_http and rec.http_status == 200
        assert (
            rec.original is not None and rec.original.ephemeral and rec.original.content == "Hello over HTTP"
        )
        async with aiohttp.ClientSession() as http:  # the follow-up webhook needs no bot token
            url = f"{dc.base_url}/webhooks/{dc.application_id}/{rec.token}?wait=true"
            async with http.post(url, json={"content": "later"}) as resp:
                assert resp.status == 200 and resp.headers["Content-Type"] == "application/json"
        assert [m.content for m in rec.followups] == ["later"]
    finally:
        await runner.cleanup()
