"""DiscordPlatform as core.ports.Places: the share page's links (pure) and the host's avatar, read with the
real discord.py from the emulator (GET /users/{id}), cached, failures answered None."""

from __future__ import annotations

import asyncio
from typing import Any

from bots.discord.adapter import AVATAR_BUDGET_WAIT, DiscordConfig, DiscordPlatform, avatar_cdn_url
from core.ports import Places
from core.refs import ChatRef, MessageRef, Platform, UserRef
from tests.bots.discord.conftest import running
from tests.fakes.discord import DiscordEmulator

USERS = "/users/{user_id}"


def test_links_are_built_from_the_refs_alone() -> None:
    p = DiscordPlatform(DiscordConfig(token="unused"))  # never started: no client, no request
    assert isinstance(p, Places)
    msg = MessageRef(Platform.DISCORD, "22", "33", scope="11")
    assert p.message_link(msg) == "https://discord.com/channels/11/22/33"
    assert (
        p.event_link(ChatRef(Platform.DISCORD, "22", scope="11"), "44") == "https://discord.com/events/11/44"
    )
    # a DM (no guild) and a channel this process cannot place have no link anyone could open
    assert p.message_link(MessageRef(Platform.DISCORD, "22", "33")) is None
    assert p.event_link(ChatRef(Platform.DISCORD, "22"), "44") is None
    assert p.event_link(ChatRef(Platform.DISCORD, "22", scope="11"), "-") is None
    assert p.subscribe_link("abcdefghjk") is None


def test_avatar_cdn_url() -> None:
    assert avatar_cdn_url("5", "a1b2") == "https://cdn.discordapp.com/avatars/5/a1b2.png?size=128"
    assert avatar_cdn_url("5", "a_a1b2") == "https://cdn.discordapp.com/avatars/5/a_a1b2.png?size=128"
    assert avatar_cdn_url("5", None) is None
    assert avatar_cdn_url("5", "../x") is None  # never a path someone else chose


async def test_the_guild_of_an_unscoped_card_comes_from_the_gateway_cache(dc: DiscordEmulator) -> None:
    g = dc.create_guild()
    (text,) = g.channels.values()
    async with running(dc) as p:
        old = MessageRef(Platform.DISCORD, str(text.id), "9")  # a card stored before refs had scopes
        assert p.message_link(old) == f"https://discord.com/channels/{g.id}/{text.id}/9"


async def test_avatar_read_once_then_cached(dc: DiscordEmulator) -> None:
    ana = dc.create_user("ana")
    ana.avatar = "0123abcd"
    bob = dc.create_user("bob")  # no avatar of his own: the page's monogram beats Discord's default
    async with running(dc, receive=False) as p:
        ref = UserRef(Platform.DISCORD, str(ana.id))
        url = f"https://cdn.discordapp.com/avatars/{ana.id}/0123abcd.png?size=128"
        # a burst of page views of one host: one request
        assert await asyncio.gather(*(p.avatar_url(ref) for _ in range(5))) == [url] * 5
        assert await p.avatar_url(ref) == url
        assert await p.avatar_url(UserRef(Platform.DISCORD, str(bob.id))) is None
        assert await p.avatar_url(UserRef(Platform.DISCORD, str(bob.id))) is None
        assert len(dc.calls(USERS, "GET")) == 2
        # not a Discord user, or not an id: nothing asked
        assert await p.avatar_url(UserRef(Platform.SLACK, "U1", scope="T1")) is None
        assert await p.avatar_url(UserRef(Platform.DISCORD, "../@me")) is None
        assert len(dc.calls(USERS, "GET")) == 2


async def test_a_failed_read_answers_none_and_is_remembered(dc: DiscordEmulator) -> None:
    gone = UserRef(Platform.DISCORD, "424242")  # Discord answers 404 Unknown User
    async with running(dc, receive=False) as p:
        assert await p.avatar_url(gone) is None
        assert await p.avatar_url(gone) is None
        assert len(dc.calls(USERS, "GET")) == 1
    dc.take_violations()  # the 404 is the point


class Budget:
    """The engine's budget as the avatar read sees it: room now, or a wait longer than it accepts."""

    def __init__(self, wait: float) -> None:
        self.wait = wait
        self.asked: list[float] = []

    async def acquire(self, platform: Platform, chat: str | None = None, **kw: Any) -> float:
        self.asked.append(kw["max_wait"])
        return self.wait

    async def penalise(self, platform: Platform, retry_after: float, **kw: Any) -> None: ...


async def test_the_read_takes_its_slot_in_the_budget_or_waits_not(dc: DiscordEmulator) -> None:
    ana = dc.create_user("ana")
    ana.avatar = "0123abcd"
    ref = UserRef(Platform.DISCORD, str(ana.id))
    full = Budget(-30.0)  # the sends hold the limit for 30 s
    async with running(dc, receive=False, budget=full) as p:
        assert await p.avatar_url(ref) is None
        assert full.asked == [AVATAR_BUDGET_WAIT] and not dc.calls(USERS, "GET")
    room = Budget(0.0)
    async with running(dc, receive=False, budget=room) as p:
        assert (await p.avatar_url(ref) or "").endswith("/0123abcd.png?size=128")
        assert len(room.asked) == 1 and len(dc.calls(USERS, "GET")) == 1
