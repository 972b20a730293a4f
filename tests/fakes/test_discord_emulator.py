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

        @discord.ui.button(label="Refresh", custom_id="refresh:1")
        async def refresh(self, interaction: discord.Interaction, button: discord.ui.Button[Card]) -> None:
            await interaction.response.defer()  # type 6 on a component: edit the card later
            await interaction.edit_original_response(content="Card: refreshed")

        @discord.ui.button(label="Rename", custom_id="rename:1")
        async def rename(self, interaction: discord.Interaction, button: discord.ui.Button[Card]) -> None:
            await interaction.response.send_modal(Rename())

    class Rename(discord.ui.Modal, title="Rename"):
        name: discord.ui.TextInput[Rename] = discord.ui.TextInput(label="New title", custom_id="new-title")

        async def on_submit(self, interaction: discord.Interaction) -> None:
            log.append(f"renamed {self.name.value}")
            await interaction.response.edit_message(content=f"Card: {self.name.value}")

    @space.command(name="later", description="Defers, then follows up when the test says so")
    async def later(interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)
        if gate is not None:
            await gate.wait()
        try:
            await interaction.followup.send("done")
        except discord.HTTPException as err:
            log.append(f"followup {err.status} {err.code}")

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


async def test_follow_ups_end_after_fifteen_minutes() -> None:
    clock = Clock()
    async with DiscordEmulator(clock=clock) as dc:
        with pointed_at(dc):
            guild, alice, _ = world(dc)
            log: list[str] = []
            gate = asyncio.Event()
            client = new_client()
            tree = command_tree(client, log, gate)
            async with client_running(dc, client):
                await tree.sync()
                rec = await dc.run_command(guild, text_channel(guild), alice, "space later")
                assert (await dc.wait_for_response(rec)).type == 5
                clock.now += 15 * 60 + 1
                gate.set()
                await dc.wait_until(lambda: log, what="the refused follow-up")
            assert log == ["followup 401 50027"] and rec.followups == []
            assert rec.original is not None and rec.original.content == ""  # still "thinking..."


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
        assert card is not None and card.custom_ids == ["remind:1", "refresh:1", "rename:1"]
        assert dc.messages_in(channel) == [card]
        refresh = await dc.press_button(card, "refresh:1", bob)
        assert (await dc.wait_for_response(refresh)).type == 6
        await dc.wait_until(lambda: card.content == "Card: refreshed", what="the deferred edit")
        press = await dc.press_button(card, "remind:1", bob)
        await dc.wait_for_response(press)
        assert dc.ephemeral_to(bob)[-1].content == "Reminder set"
        opened = await dc.press_button(card, "rename:1", alice)
        await dc.wait_for_response(opened)
        assert opened.modal is not None and opened.modal["title"] == "Rename"
        submitted = await dc.submit_modal(opened, {"new-title": "Tea time"})
        await dc.wait_for_response(submitted)
        assert card.content == "Card: Tea time" and len(card.edits) == 2
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
            assert dc.max_in_window(0.4, accepted_only=True) <= 6 < dc.max_in_window(0.4)
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
        if body is None:
            return await http.request(discord.http.Route(method, path))
        return await http.request(discord.http.Route(method, path), json=body)
    finally:
        await http.close()


# --------------------------------------------------------------------------- HTTP interactions
async def test_interactions_over_http_are_signed(dc: DiscordEmulator) -> None:
    guild, alice, _ = world(dc)
    verify = VerifyKey(bytes.fromhex(dc.public_key))
    seen: set[str] = set()

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
        if data["id"] in seen:  # a replayed request: same bytes, same valid signature
            return web.Response(status=401, text="replayed")
        seen.add(data["id"])
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
        assert (await dc.replay(rec))[0] == 401
    finally:
        await runner.cleanup()


async def test_commands_in_dms_and_members_joining(dc: DiscordEmulator) -> None:
    guild, alice, _ = world(dc)
    log: list[str] = []
    intents = discord.Intents.default()
    intents.members = True
    client = discord.Client(intents=intents, guild_ready_timeout=0.05)
    joined: list[str] = []

    @client.event
    async def on_member_join(member: discord.Member) -> None:
        joined.append(member.name)

    tree = command_tree(client, log)
    async with client_running(dc, client):
        await tree.sync()
        rec = await dc.run_command(None, dc.ensure_dm_channel(alice), alice, "space card")
        await dc.wait_for_response(rec)
        assert rec.payload["context"] == 1 and "user" in rec.payload and "member" not in rec.payload
        assert [m.content for m in dc.dms_to(alice)] == ["Card: Town hall"]
        assert dc.dm_opens == {}  # the member opened that DM, not the bot
        await dc.member_joins(guild, "carol")
        await dc.wait_until(lambda: joined, what="on_member_join")
    assert joined == ["carol"]


async def test_opening_dms_too_fast_is_quarantined() -> None:
    async with DiscordEmulator(dm_open_spam_limit=RateRule(2, 60.0)) as dc:
        with pointed_at(dc):
            guild = dc.create_guild()
            members = dc.add_members(guild, 3)
            async with client_running(dc, new_client()) as client:
                for m in members[:2]:
                    await (await client.fetch_user(m.user.id)).create_dm()
                with pytest.raises(discord.Forbidden) as info:
                    await (await client.fetch_user(members[2].user.id)).create_dm()
                assert info.value.code == 40003


async def test_every_route_answers_in_the_described_shape(dc: DiscordEmulator) -> None:
    """The emulator's answers are held to the description's response schemas (strict: a malformed answer is
    an 'emulator' violation that fails this test)."""
    guild, alice, _ = world(dc)
    channel = text_channel(guild)
    start = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    ev = await dc_raw(
        dc,
        "POST",
        f"/guilds/{guild.id}/scheduled-events",
        {
            "name": "x",
            "privacy_level": 2,
            "scheduled_start_time": start,
            "entity_type": 2,
            "channel_id": str(next(c.id for c in guild.channels.values() if c.type == VOICE)),
        },
    )
    await dc.mark_interested(guild.events[int(ev["id"])], alice)
    msg = await dc_raw(dc, "POST", f"/channels/{channel.id}/messages", {"content": "hi"})
    for path in (
        f"/guilds/{guild.id}",
        f"/guilds/{guild.id}?with_counts=true",
        f"/guilds/{guild.id}/channels",
        f"/guilds/{guild.id}/roles",
        f"/guilds/{guild.id}/members/{alice.user.id}",
        f"/channels/{channel.id}",
        f"/users/{alice.user.id}",
        f"/channels/{channel.id}/messages?limit=5",
        f"/channels/{channel.id}/messages/{msg['id']}",
        f"/applications/{dc.application_id}/commands",
        "/gateway",
        "/gateway/bot",
        "/users/@me",
        f"/guilds/{guild.id}/scheduled-events",
        f"/guilds/{guild.id}/scheduled-events/{ev['id']}",
        f"/guilds/{guild.id}/scheduled-events/{ev['id']}/users?limit=10&with_member=true",
    ):
        await dc_raw(dc, "GET", path, None)
    await dc_raw(dc, "PATCH", f"/guilds/{guild.id}/scheduled-events/{ev['id']}", {"status": 2})
    await dc_raw(dc, "DELETE", f"/guilds/{guild.id}/scheduled-events/{ev['id']}", None)
    await dc_raw(dc, "DELETE", f"/channels/{channel.id}/messages/{msg['id']}", None)
    assert dc.messages_in(channel) == [] and guild.events == {}
    assert all(c.ok for c in dc.calls()), [c for c in dc.calls() if not c.ok]


async def test_a_lost_answer_and_the_nonce_retry_deliver_once(dc: DiscordEmulator) -> None:
    _guild, alice, _ = world(dc)
    async with client_running(dc, new_client()) as client:
        user = await client.fetch_user(alice.user.id)
        await user.create_dm()
        dc.inject_faults(seed=1, reset_rate=1.0)  # delivered, then the connection is cut
        with pytest.raises((aiohttp.ClientError, discord.HTTPException)):
            await user.send("T-30 reminder", nonce="delivery-42")
        dc.inject_faults(seed=1)
        again = await user.send("T-30 reminder", nonce="delivery-42")
    assert dc.faults_injected == {"reset": 1} and dc.nonce_hits["delivery-42"] == 1
    assert dc.received(containing="T-30") == {dc.dm_channel(alice).id: 1}
    assert dc.dms_to(alice)[0].id == again.id


async def test_guild_commands_and_component_limits(dc: DiscordEmulator) -> None:
    guild, alice, _ = world(dc)
    client = new_client()
    tree = command_tree(client, [])
    async with client_running(dc, client):
        tree.copy_global_to(guild=discord.Object(guild.id))
        await tree.sync(guild=discord.Object(guild.id))
        assert [c["name"] for c in dc.guild_commands[guild.id]] == ["space"] and dc.global_commands == []
        rec = await dc.run_command(guild, text_channel(guild), alice, "space card")
        assert (await dc.wait_for_response(rec)).type == 4
        too_long = {"type": 1, "components": [{"type": 2, "style": 1, "label": "x", "custom_id": "c" * 101}]}
        with pytest.raises(discord.HTTPException):
            await dc_raw(
                dc,
                "POST",
                f"/channels/{text_channel(guild).id}/messages",
                {"content": "x", "components": [too_long]},
            )
        row = {
            "type": 1,
            "components": [{"type": 2, "style": 1, "label": str(i), "custom_id": f"b{i}"} for i in range(6)],
        }
        with pytest.raises(discord.HTTPException):
            await dc_raw(
                dc,
                "POST",
                f"/channels/{text_channel(guild).id}/messages",
                {"content": "x", "components": [row]},
            )
        with pytest.raises(discord.HTTPException):
            await dc_raw(
                dc, "POST", f"/channels/{text_channel(guild).id}/messages", {"embeds": [{"title": "t"}] * 11}
            )
    problems = [v.message for v in dc.take_violations()]
    assert len(problems) == 3 and "100 or fewer" in problems[0]
    assert "5 or fewer" in problems[1] and "10 or fewer" in problems[2]


async def test_too_many_invalid_requests_get_the_bot_banned() -> None:
    async with DiscordEmulator(ban_after_invalid=3) as dc:
        with pointed_at(dc):
            guild = dc.create_guild()
            closed = dc.add_members(guild, 4)
            for m in closed:
                dc.close_dms(m)
            async with client_running(dc, new_client()) as client:
                for m in closed[:3]:
                    with pytest.raises(discord.Forbidden):
                        await (await client.fetch_user(m.user.id)).send("hi")
                with pytest.raises(discord.HTTPException) as info:
                    await client.fetch_user(closed[3].user.id)
                assert info.value.status == 429 and dc.banned


async def test_gateway_refusals_reach_discord_py() -> None:
    async with DiscordEmulator(privileged_intents=0, max_guilds_per_shard=1) as dc:
        with pointed_at(dc):
            dc.create_guild()
            intents = discord.Intents.default()
            intents.members = True  # not switched on in the portal
            with pytest.raises(discord.PrivilegedIntentsRequired):
                async with client_running(dc, discord.Client(intents=intents, guild_ready_timeout=0.05)):
                    pass
            dc.create_guild()  # two guilds on one shard: more than this bot may hold unsharded
            with pytest.raises(discord.ConnectionClosed) as info:
                async with client_running(dc, new_client()):
                    pass
            assert info.value.code == 4011


async def test_the_limits_follow_the_injected_clock() -> None:
    clock = Clock()
    async with DiscordEmulator(clock=clock, message_rate=RateRule(1, 10.0)) as dc:
        guild = dc.create_guild()
        url = f"{dc.base_url}/channels/{text_channel(guild).id}/messages"
        auth = {"Authorization": f"Bot {dc.token}"}
        async with aiohttp.ClientSession() as http:
            async with http.post(url, json={"content": "one"}, headers=auth) as resp:
                assert resp.status == 200 and resp.headers["X-RateLimit-Remaining"] == "0"
            async with http.post(url, json={"content": "two"}, headers=auth) as resp:
                assert resp.status == 429 and resp.headers["X-RateLimit-Scope"] == "user"
                assert (await resp.json())["retry_after"] == 10.0
            clock.now += 10.0  # ten seconds later, without waiting them
            async with http.post(url, json={"content": "two"}, headers=auth) as resp:
                assert resp.status == 200


async def test_interested_users_are_paged_by_ascending_user_id(dc: DiscordEmulator) -> None:
    guild = dc.create_guild()
    voice = dc.add_channel(guild, "Lounge", VOICE)
    members = dc.add_members(guild, 150)
    start = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    ev = await dc_raw(
        dc,
        "POST",
        f"/guilds/{guild.id}/scheduled-events",
        {
            "name": "x",
            "privacy_level": 2,
            "scheduled_start_time": start,
            "entity_type": 2,
            "channel_id": str(voice.id),
        },
    )
    for m in members:
        await dc.mark_interested(guild.events[int(ev["id"])], m)
    path = f"/guilds/{guild.id}/scheduled-events/{ev['id']}/users"
    first = await dc_raw(dc, "GET", f"{path}?limit=100", None)
    rest = await dc_raw(dc, "GET", f"{path}?limit=100&after={first[-1]['user_id']}", None)
    ids = [int(u["user_id"]) for u in first + rest]
    assert ids == sorted(m.user.id for m in members)
    assert (
        await dc_raw(dc, "GET", f"/guilds/{guild.id}/scheduled-events/{ev['id']}?with_user_count=true", None)
    )["user_count"] == 150


async def test_commands_are_offered_only_where_and_to_whom_registered(dc: DiscordEmulator) -> None:
    guild, alice, _ = world(dc)
    moderators = dc.add_role(guild, "Moderators", Perm.MANAGE_EVENTS)
    mod = dc.add_member(guild, "mod", roles=[moderators])
    dc.register_command("admin")
    dc.global_commands[-1].update(default_member_permissions=str(Perm.MANAGE_EVENTS), contexts=[0])
    async with client_running(dc, new_client()):
        with pytest.raises(PermissionError):
            await dc.run_command(guild, text_channel(guild), alice, "admin")
        with pytest.raises(PermissionError):
            await dc.run_command(None, dc.ensure_dm_channel(mod), mod, "admin")
        rec = await dc.run_command(guild, text_channel(guild), mod, "admin")
        assert rec.payload["data"]["name"] == "admin"
        await dc.run_command(guild, text_channel(guild), guild.members[guild.owner_id], "admin")  # the owner
