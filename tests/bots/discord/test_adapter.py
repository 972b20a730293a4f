"""DiscordPlatform with the real discord.py against the emulator: cards, DMs with nonces, closed DMs, 429s,
hostile titles, errors, Guild Scheduled Events both ways, moderators, commands and interactions, sharding."""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import discord
import pytest

from bots.discord.adapter import ACTIVE, CANCELED, COMPLETED
from core.errors import ChatUnavailable, RateLimited, RecipientUnreachable, TransientError
from core.notices import Action, ActionKind, Notice
from core.refs import ChatRef, MessageRef, Platform, UserRef
from tests.bots.discord.conftest import Sink, running
from tests.fakes.discord import DiscordEmulator, Perm

LINK = "https://spaces.example/s/abcdefghjk"
CARD = Notice(
    kind="card",
    title="Weekly AMA",
    lines=("🗓 Thu 26 Nov 2026, 20:00 CET", "Host: Ana"),
    actions=(
        Action("🔔 Set reminder", ActionKind.CALLBACK, "sub:abcdefghjk"),
        Action("Share", ActionKind.URL, LINK, share=True),
    ),
    space_id="abcdefghjk",
    link=LINK,
)
LIVE = Notice(kind="card", title="Weekly AMA", marker="🟣 LIVE", space_id="abcdefghjk", link=LINK)
VOICE_TYPE, STAGE_TYPE = 2, 13


def chat(guild: Any, channel: Any) -> ChatRef:
    return ChatRef(Platform.DISCORD, str(channel.id), scope=str(guild.id))


def user(u: Any) -> UserRef:
    uid = u.user.id if hasattr(u, "user") else u.id
    return UserRef(Platform.DISCORD, str(uid))


@dataclass(frozen=True)
class Spec:
    title: str
    description: str
    starts_at: datetime
    ends_at: datetime
    status: str = "SCHEDULED"
    location: str | None = LINK
    channel: ChatRef | None = None


def soon(hours: float = 2) -> datetime:
    return (datetime.now(UTC) + timedelta(hours=hours)).replace(microsecond=0)


# ------------------------------------------------------------------------------------------ messages


async def test_post_then_edit_a_card(dc: DiscordEmulator) -> None:
    g = dc.create_guild()
    (text,) = g.channels.values()
    async with running(dc) as p:
        ref = await p.post(chat(g, text), CARD, key="card-1")
        assert ref.chat == chat(g, text)
        (msg,) = dc.messages_in(text)
        assert str(msg.id) == ref.id
        assert msg.embeds[0]["title"] == "Weekly AMA"
        assert msg.custom_ids == ["sub:abcdefghjk"]
        await p.edit(ref, LIVE)
        await p.edit(ref, LIVE)  # an edit that changes nothing succeeds
        assert msg.embeds[0]["title"] == "🟣 LIVE Weekly AMA" and msg.custom_ids == []
        assert len(dc.messages_in(text)) == 1


async def test_a_dm_resent_with_the_same_key_is_received_once(dc: DiscordEmulator) -> None:
    g = dc.create_guild()
    fan = dc.add_member(g, "fan")
    async with running(dc) as p:
        first = await p.direct(user(fan), CARD, key="space:abc:live:discord:user:1")
        again = await p.direct(user(fan), CARD, key="space:abc:live:discord:user:1")
        assert first == again  # Discord answers the resend with the original message
        await p.direct(user(fan), LIVE, key="another")
    assert len(dc.dms_to(fan)) == 2
    assert dc.dm_opens[fan.user.id] == 1  # the DM channel is opened once, then kept
    assert sum(dc.nonce_hits.values()) == 1
    assert all(len(str(m.nonce)) <= 25 for m in dc.dms_to(fan))


async def test_dm_channels_are_kept_in_the_profile_across_restarts(dc: DiscordEmulator) -> None:
    from tests.fakes.memory import MemoryDB

    db = MemoryDB()
    g = dc.create_guild()
    fan = dc.add_member(g, "fan")
    async with running(dc, uow=db.uow) as p:
        await p.direct(user(fan), CARD, key="k1")
    async with running(dc, uow=db.uow, receive=False) as p:
        await p.direct(user(fan), CARD, key="k2")
    assert dc.dm_opens[fan.user.id] == 1
    async with db.uow() as uow:
        profile = await uow.users.get(user(fan))
    assert profile is not None and profile.dm_channel == str(dc.dm_channel(fan).id)  # type: ignore[union-attr]


async def test_closed_dms_raise_recipient_unreachable(dc: DiscordEmulator) -> None:
    g = dc.create_guild()
    shy = dc.add_member(g, "shy")
    dc.close_dms(shy)
    async with running(dc) as p:
        with pytest.raises(RecipientUnreachable, match="50007"):
            await p.direct(user(shy), CARD, key="k")
    assert dc.dms_to(shy) == []


async def test_a_429_comes_back_to_the_engine_unslept(dc: DiscordEmulator) -> None:
    g = dc.create_guild()
    (text,) = g.channels.values()
    dc.fail_next("POST", "/channels/{channel_id}/messages", status=429, retry_after=7.25)
    async with running(dc) as p:
        started = asyncio.get_running_loop().time()
        with pytest.raises(RateLimited) as info:
            await p.post(chat(g, text), CARD, key="k")
        assert info.value.retry_after == pytest.approx(7.25)
        assert asyncio.get_running_loop().time() - started < 2  # discord.py did not sleep on it
        assert len(dc.calls("/channels/{channel_id}/messages", "POST")) == 1  # nor retry it
        await p.post(chat(g, text), CARD, key="k")  # the engine's retry, later
    assert len(dc.messages_in(text)) == 1


async def test_server_errors_are_transient_and_missing_access_is_permanent(dc: DiscordEmulator) -> None:
    g = dc.create_guild()
    (text,) = g.channels.values()
    async with running(dc) as p:
        dc.fail_next(
            "POST", "/channels/{channel_id}/messages", status=503, message="503: Service Unavailable"
        )
        with pytest.raises(TransientError):
            await p.post(chat(g, text), CARD, key="k")
        dc.set_overwrite(text, dc.bot_role(g), deny=Perm.SEND_MESSAGES)
        with pytest.raises(ChatUnavailable, match=r"50013|50001"):
            await p.post(chat(g, text), CARD, key="k2")
        with pytest.raises(ChatUnavailable):
            await p.edit(MessageRef(Platform.DISCORD, str(text.id), "123"), LIVE)
        with pytest.raises(ChatUnavailable):
            await p.post(ChatRef(Platform.DISCORD, "424242"), CARD, key="k3")


@pytest.mark.parametrize(
    "title", ["@everyone", "@here now", "<@{member}> hi", "<@&{role}>", "**x**", "y" * 300]
)
async def test_hostile_titles_ping_nobody(dc: DiscordEmulator, title: str) -> None:
    g = dc.create_guild()
    (text,) = g.channels.values()
    member = dc.add_member(g, "victim")
    role = dc.add_role(g, "Everyone-ish", mentionable=True)
    title = title.format(member=member.user.id, role=role.id)
    notice = dataclasses.replace(CARD, title=title, lines=(title, *CARD.lines))
    async with running(dc) as p:
        await p.post(chat(g, text), notice, key="k")
        shy = dc.add_member(g, "shy")
        await p.mention(chat(g, text), {user(shy): "shy"}, notice, key="m")
    assert dict(dc.pings) == {shy.user.id: 1}  # only the named fallback user, once
    assert not any(m.mention_everyone or m.mention_roles for m in dc.messages_in(text))


async def test_mentions_name_only_their_users(dc: DiscordEmulator) -> None:
    g = dc.create_guild()
    (text,) = g.channels.values()
    users = [dc.add_member(g, f"m{i}") for i in range(20)]
    bystander = dc.add_member(g, "bystander")
    async with running(dc) as p:
        ref = await p.mention(chat(g, text), {user(u): u.user.username for u in users}, CARD, key="k")
        await p.mention(chat(g, text), {user(u): u.user.username for u in users}, CARD, key="k")  # a retry
    assert ref.chat == chat(g, text)
    (msg,) = dc.messages_in(text)
    assert len(msg.content) <= 2000
    assert {u.user.id for u in users} == set(dc.pings) and set(dc.pings.values()) == {1}
    assert bystander.user.id not in dc.pings


# ------------------------------------------------------------------------------------------ events


async def test_events_are_created_updated_and_walk_their_statuses(dc: DiscordEmulator) -> None:
    g = dc.create_guild()
    (text,) = g.channels.values()
    voice = dc.add_channel(g, "Voice", VOICE_TYPE)
    stage = dc.add_channel(g, "Stage", STAGE_TYPE)
    where = chat(g, text)
    async with running(dc) as p:
        external = await p.create_event(where, Spec("AMA", "ask", soon(), soon(3)), key="e1")
        again = await p.create_event(where, Spec("AMA", "ask", soon(), soon(3)), key="e1")
        assert again == external
        in_voice = await p.create_event(
            where, Spec("Talk", "", soon(), soon(3), location=None, channel=chat(g, voice)), key="e2"
        )
        on_stage = await p.create_event(
            where, Spec("Stage", "", soon(), soon(3), location=None, channel=chat(g, stage)), key="e3"
        )
        events = {str(e.id): e for e in g.events.values()}
        assert len(events) == 3
        assert events[external].fields["entity_type"] == 3
        assert events[external].fields["entity_metadata"] == {"location": LINK}
        assert events[in_voice].fields["entity_type"] == 2
        assert events[on_stage].fields["entity_type"] == 1
        later = soon(5)
        await p.update_event(where, external, Spec("AMA (moved)", "ask", later, later + timedelta(hours=1)))
        assert events[external].name == "AMA (moved)"
        assert events[external].fields["scheduled_start_time"].startswith(later.isoformat()[:19])
        await p.update_event(where, external, Spec("AMA", "", later, later, status="ACTIVE"))
        assert events[external].status == ACTIVE
        await p.update_event(where, external, Spec("AMA", "", later, later, status="ACTIVE"))  # a retry
        await p.update_event(where, external, Spec("AMA", "", later, later, status="COMPLETED"))
        assert events[external].status == COMPLETED
        await p.update_event(where, in_voice, Spec("Talk", "", later, later, status="CANCELED"))
        assert events[in_voice].status == CANCELED
        await p.update_event(where, on_stage, Spec("Stage", "", later, later, status="COMPLETED"))
        assert events[on_stage].status == COMPLETED  # ended without a start: through ACTIVE


async def test_interest_and_ui_status_changes_reach_the_core_and_our_own_do_not(dc: DiscordEmulator) -> None:
    g = dc.create_guild()
    (text,) = g.channels.values()
    fan = dc.add_member(g, "fan")
    mod = dc.add_member(g, "mod", roles=[dc.add_role(g, "Mods", Perm.MANAGE_EVENTS)])
    sink = Sink()
    async with running(dc, events=sink) as p:
        eid = await p.create_event(chat(g, text), Spec("AMA", "", soon(), soon(3)), key="e")
        ev = g.events[int(eid)]
        await dc.mark_interested(ev, fan)
        await dc.unmark_interested(ev, fan)
        await dc.start_event_in_ui(ev, mod)
        await dc.wait_until(lambda: len(sink.calls) >= 3, what="three calls")
        await p.update_event(chat(g, text), eid, Spec("AMA", "", soon(), soon(3), status="COMPLETED"))
        await asyncio.sleep(0.2)  # the update our PATCH caused arrives: it must not become a command
    gid = str(g.id)
    assert sink.calls == [
        ("interest", gid, eid, str(fan.user.id), True),
        ("interest", gid, eid, str(fan.user.id), False),
        ("status", gid, eid, "ACTIVE", None),
    ]


async def test_a_restart_reads_who_became_interested_meanwhile(dc: DiscordEmulator) -> None:
    g = dc.create_guild()
    (text,) = g.channels.values()
    fans = dc.add_members(g, 130, prefix="fan")  # more than one page of 100
    async with running(dc) as p:
        eid = await p.create_event(chat(g, text), Spec("AMA", "", soon(), soon(3)), key="e")
    for fan in fans:
        await dc.mark_interested(g.events[int(eid)], fan)  # while the bot is away
    sink = Sink()
    async with running(dc, events=sink):
        await dc.wait_until(lambda: len(sink.calls) >= 130, what="130 interested")
    assert {c[3] for c in sink.calls} == {str(f.user.id) for f in fans}
    assert {(c[0], c[2], c[4]) for c in sink.calls} == {("interest", eid, True)}


# ------------------------------------------------------------------------------------------ moderators


async def test_moderators(dc: DiscordEmulator) -> None:
    g = dc.create_guild()
    (text,) = g.channels.values()
    plain = dc.add_member(g, "plain")
    events = dc.add_member(g, "events", roles=[dc.add_role(g, "Event team", Perm.MANAGE_EVENTS)])
    admin = dc.add_member(g, "admin", roles=[dc.add_role(g, "Admins", Perm.ADMINISTRATOR)])
    hosts = dc.add_role(g, "Hosts")
    host = dc.add_member(g, "host", roles=[hosts])
    owner = dc.users[g.owner_id]
    async with running(dc, moderator_role="hosts") as p:
        where = chat(g, text)
        assert not await p.is_moderator(where, user(plain))
        assert await p.is_moderator(where, user(events))
        assert await p.is_moderator(where, user(admin))
        assert await p.is_moderator(where, user(host))  # the configured role, by name
        assert await p.is_moderator(where, user(owner))
        assert not await p.is_moderator(where, UserRef(Platform.DISCORD, "1234"))  # not a member
    async with running(dc, moderator_role=str(hosts.id), receive=False) as p:  # by id; REST only
        assert await p.is_moderator(chat(g, text), user(host))
        assert not await p.is_moderator(chat(g, text), user(plain))


# ------------------------------------------------------------------------------------------ interactions


class Handlers:
    def __init__(self) -> None:
        self.seen: list[discord.Interaction] = []

    def commands(self) -> list[dict[str, Any]]:
        return [{"name": "space", "description": "Schedule a live audio Space", "type": 1}]

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        self.seen.append(interaction)
        await interaction.response.defer(ephemeral=True)


@pytest.mark.parametrize("per_guild", [False, True])
async def test_commands_are_registered_and_interactions_forwarded(
    dc: DiscordEmulator, per_guild: bool
) -> None:
    g = dc.create_guild()
    (text,) = g.channels.values()
    member = dc.add_member(g, "member")
    handlers = Handlers()
    from bots.discord.adapter import DiscordConfig, DiscordPlatform

    config = DiscordConfig(
        token=dc.token, guild_ready_timeout=0.05, guild_ids=(str(g.id),) if per_guild else ()
    )
    p = DiscordPlatform(config)
    p.attach(handlers)
    try:
        await p.start()
        assert dc.find_command("space", g if per_guild else None) is not None
        assert (dc.guild_commands.get(g.id) is not None) is per_guild
        record = await dc.run_command(g, text, member, "space")
        await dc.wait_for_response(record)
    finally:
        await p.stop()
    (interaction,) = handlers.seen
    assert interaction.user.id == member.user.id


# ------------------------------------------------------------------------------------------ sharding


async def test_two_shards_split_across_two_platforms(dc: DiscordEmulator) -> None:
    dc.recommended_shards = 2
    guilds = [dc.create_guild(f"G{i}") for i in range(4)]
    async with (
        running(dc, shard_count=2, shard_ids=(0,)) as a,
        running(dc, shard_count=2, shard_ids=(1,)) as b,
    ):
        assert dc.connected_shards() == [(0, 2), (1, 2)]
        seen_a = {g.id for g in a.client.guilds}
        seen_b = {g.id for g in b.client.guilds}
        assert seen_a == {g.id for g in dc.guilds_of_shard(0, 2)}
        assert seen_b == {g.id for g in dc.guilds_of_shard(1, 2)}
        assert seen_a | seen_b == {g.id for g in guilds} and not seen_a & seen_b
        for g in guilds:  # either process can send anywhere (REST is not sharded)
            (text,) = g.channels.values()
            await a.post(chat(g, text), CARD, key=f"a{g.id}")
    assert all(len(dc.messages_in(next(iter(g.channels.values())))) == 1 for g in guilds)


async def test_start_fails_clearly_with_a_bad_token(dc: DiscordEmulator) -> None:
    from bots.discord.adapter import DiscordConfig, DiscordPlatform

    p = DiscordPlatform(DiscordConfig(token="not-the-token", guild_ready_timeout=0.05))
    with pytest.raises(discord.LoginFailure):
        await p.start()
    await p.stop()
    dc.take_violations()


async def test_the_gateway_connects_apart_from_sending_for_the_lease_holder(dc: DiscordEmulator) -> None:
    """Under the gateway lease every process starts (REST: it can send) and only the holder connects."""
    from bots.discord.adapter import DiscordConfig, DiscordPlatform

    g = dc.create_guild()
    (text,) = g.channels.values()
    p = DiscordPlatform(DiscordConfig(token=dc.token, guild_ready_timeout=0.05), gateway_on_start=False)
    try:
        await p.start()
        assert dc.connected_shards() == []
        await p.post(chat(g, text), CARD, key="standby")  # a standby sends all the same
        await p.start_gateway()
        await p.start_gateway()  # already connected: nothing more
        assert dc.connected_shards() == [(0, 1)]
        await p.stop_gateway()  # the lease went elsewhere
        await dc.wait_until(lambda: dc.connected_shards() == [], what="disconnected")
        await p.post(chat(g, text), CARD, key="after")  # still sending
        await p.start_gateway()  # the lease came back
        assert dc.connected_shards() == [(0, 1)]
    finally:
        await p.stop()
    assert len(dc.messages_in(text)) == 2


async def test_a_dm_channel_discord_forgot_is_opened_again(dc: DiscordEmulator) -> None:
    g = dc.create_guild()
    fan = dc.add_member(g, "fan")
    async with running(dc) as p:
        await p.direct(user(fan), CARD, key="k1")
        stale = dc.dm_channels.pop(fan.user.id)  # Discord no longer knows the channel we kept
        dc.channels.pop(stale.id)
        await p.direct(user(fan), LIVE, key="k2")
    assert dc.dm_opens[fan.user.id] == 2
    assert len(dc.dms_to(fan)) == 1  # in the new channel


class RecordingBudget:
    def __init__(self) -> None:
        self.penalties: list[tuple[Platform, float, str | None]] = []

    async def acquire(
        self, platform: Platform, chat: str | None = None, *, max_wait: float = float("inf")
    ) -> float:
        return 0.0

    async def penalise(
        self, platform: Platform, retry_after: float, *, chat: str | None = None, scope: str | None = None
    ) -> None:
        self.penalties.append((platform, retry_after, chat))


async def test_a_global_429_holds_back_every_send_of_the_bot() -> None:
    from tests.fakes.discord import RateRule, pointed_at

    budget = RecordingBudget()
    async with DiscordEmulator(global_rate=RateRule(6, 30.0)) as dc:
        with pointed_at(dc):
            g = dc.create_guild()
            channels = [dc.add_channel(g, f"c{i}") for i in range(8)]
            async with running(dc, receive=False, budget=budget) as p:
                with pytest.raises(RateLimited, match="global") as info:
                    for c in channels:  # the login's requests count too: one of these is the 7th
                        await p.post(chat(g, c), CARD, key=f"k{c.id}")
    assert info.value.retry_after > 20
    assert budget.penalties == [(Platform.DISCORD, info.value.retry_after, None)]
