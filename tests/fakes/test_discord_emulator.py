"""The Discord emulator, driven by the real discord.py (and raw HTTP where discord.py would not go)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import discord
import pytest
import pytest_asyncio
from discord import app_commands

from tests.fakes.discord import (
    STAGE,
    VOICE,
    DcGuild,
    DcMember,
    DiscordEmulator,
    Perm,
    client_running,
    pointed_at,
)


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
