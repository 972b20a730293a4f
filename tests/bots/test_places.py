"""bots/places.py (a Space's places for the share page: order, de-duplication, labels, the per-Space cache
and its single shared read, failures) and the Router's forwarding of core.ports.Places."""

from __future__ import annotations

import asyncio
from typing import Any

from bots.places import Found, SpacePlaces, places_of
from bots.router import Router
from bots.web.share import Place
from core.models import Announcement, NativeEvent
from core.notices import Notice
from core.ports import Places
from core.refs import ChatRef, MessageRef, Platform, UserRef
from tests.builders import space as space_sample
from tests.fakes.memory import MemoryDB

SID = "abcdefghjk"
DC_MSG = MessageRef(Platform.DISCORD, "22", "33", scope="11")
TG_MSG = MessageRef(Platform.TELEGRAM, "-1001234", "5")
SL_MSG = MessageRef(Platform.SLACK, "C1", "1.2", scope="T1")
DC_CHAT = ChatRef(Platform.DISCORD, "22", scope="11")


class Links:
    """A PlaceLinks answering with recognisable URLs, counting calls."""

    def __init__(self, *, telegram_username: bool = True) -> None:
        self.deep = telegram_username
        self.calls = 0

    def message_link(self, message: MessageRef) -> str | None:
        self.calls += 1
        return f"https://{message.platform}.test/{message.chat_id}/{message.id}"

    def event_link(self, chat: ChatRef, event_id: str) -> str | None:
        self.calls += 1
        return f"https://discord.test/events/{event_id}" if chat.platform is Platform.DISCORD else None

    def subscribe_link(self, platform: Platform, space_id: str) -> str | None:
        self.calls += 1
        return f"https://t.me/bot?start=s_{space_id}" if self.deep and platform is Platform.TELEGRAM else None

    async def avatar_url(self, user: UserRef) -> str | None:
        return f"https://cdn.test/{user.id}.png"


def ann(message: MessageRef) -> Announcement:
    return Announcement(SID, message)


def test_order_telegram_deep_link_first_then_cards_then_events() -> None:
    anns = [ann(DC_MSG), ann(TG_MSG), ann(SL_MSG), ann(DC_MSG)]  # the same card twice: one button
    events = [
        NativeEvent(SID, DC_CHAT, "44"),
        NativeEvent(SID, ChatRef(Platform.DISCORD, "23", scope="11"), None),  # not created yet
        NativeEvent(SID, ChatRef(Platform.SLACK, "C1", scope="T1"), "R1"),  # Slack's Call: no link
    ]
    found = places_of(SID, anns, events, Links())
    assert found == [
        Found(
            Platform.TELEGRAM, "telegram", f"https://t.me/bot?start=s_{SID}"
        ),  # the card's link is left out
        Found(Platform.DISCORD, "discord", "https://discord.test/22/33"),
        Found(Platform.SLACK, "slack", "https://slack.test/C1/1.2"),
        Found(Platform.DISCORD, "discord_event", "https://discord.test/events/44"),
    ]
    # before the Telegram bot knows its username: the card's own link stands in
    assert places_of(SID, [ann(TG_MSG)], [], Links(telegram_username=False)) == [
        Found(Platform.TELEGRAM, "telegram", "https://telegram.test/-1001234/5")
    ]
    # no deep link where the Space is not announced on Telegram; at most `limit`
    many = [ann(MessageRef(Platform.DISCORD, str(i), "1", scope="11")) for i in range(10)]
    assert len(places_of(SID, many, [], Links(), limit=6)) == 6
    assert all(f.platform is Platform.DISCORD for f in places_of(SID, many, [], Links()))


async def seeded() -> MemoryDB:
    db = MemoryDB()
    async with db.uow() as uow:
        await uow.spaces.add(space_sample(SID))
        for m in (TG_MSG, DC_MSG):
            await uow.announcements.add(ann(m))
        await uow.events.add(NativeEvent(SID, DC_CHAT, "44"))
        await uow.commit()
    return db


class CountingUow:
    def __init__(self, db: MemoryDB) -> None:
        self.db = db
        self.opened = 0
        self.fail = False

    def __call__(self) -> Any:
        self.opened += 1
        if self.fail:
            raise ConnectionError("database down")
        return self.db.uow()


async def test_labelled_in_the_readers_language_cached_and_read_once() -> None:
    uow = CountingUow(await seeded())
    now = [0.0]
    places = SpacePlaces(Links(), uow, ttl=5.0, monotonic=lambda: now[0])
    space = space_sample(SID)
    # a burst of views: one read
    views = await asyncio.gather(*(places(space, "en") for _ in range(20)))
    assert uow.opened == 1
    assert views[0] == [
        Place("telegram", "Telegram", f"https://t.me/bot?start=s_{SID}"),
        Place("discord", "Discord", "https://discord.test/22/33"),
        Place("discord", "Discord (event)", "https://discord.test/events/44"),
    ]
    assert [p.label for p in await places(space, "fr")][-1] == "Discord (évènement)"
    assert uow.opened == 1
    now[0] += 5.1
    await places(space, "en")
    assert uow.opened == 2
    assert await places.avatar(UserRef(Platform.DISCORD, "7")) == "https://cdn.test/7.png"


async def test_a_failing_database_costs_the_buttons_only_and_is_not_hammered() -> None:
    uow = CountingUow(await seeded())
    uow.fail = True
    now = [0.0]
    places = SpacePlaces(Links(), uow, monotonic=lambda: now[0])
    assert await places(space_sample(SID), "en") == []
    assert await places(space_sample(SID), "en") == []
    assert uow.opened == 1
    uow.fail = False
    now[0] += 60
    assert len(await places(space_sample(SID), "en")) == 3


# ------------------------------------------------------------------------------------------ the router


class Plain:
    """A ChatPlatform without links (the console's shape)."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def post(self, chat: ChatRef, notice: Notice, *, key: str) -> MessageRef:
        raise NotImplementedError

    async def edit(self, message: MessageRef, notice: Notice) -> None: ...

    async def direct(self, user: UserRef, notice: Notice, *, key: str) -> MessageRef:
        raise NotImplementedError

    async def mention(self, chat: ChatRef, users: Any, notice: Notice, *, key: str) -> MessageRef:
        raise NotImplementedError


class WithLinks(Plain):
    def message_link(self, message: MessageRef) -> str | None:
        return f"https://{self.platform}.test/{message.id}"

    def event_link(self, chat: ChatRef, event_id: str) -> str | None:
        return f"https://{self.platform}.test/e/{event_id}"

    def subscribe_link(self, space_id: str) -> str | None:
        return f"https://{self.platform}.test/s/{space_id}"

    async def avatar_url(self, user: UserRef) -> str | None:
        return f"https://{self.platform}.test/a/{user.id}"


class Broken(WithLinks):
    """Breaks the contract (raises): the router still answers None."""

    def message_link(self, message: MessageRef) -> str | None:
        raise RuntimeError("boom")

    async def avatar_url(self, user: UserRef) -> str | None:
        raise RuntimeError("boom")


async def test_router_forwards_by_the_refs_platform() -> None:
    assert isinstance(WithLinks(Platform.DISCORD), Places) and not isinstance(Plain(Platform.CONSOLE), Places)
    router = Router([Plain(Platform.CONSOLE), WithLinks(Platform.DISCORD), Broken(Platform.SLACK)])  # type: ignore[list-item]
    assert router.message_link(DC_MSG) == "https://discord.test/33"
    assert router.event_link(DC_CHAT, "44") == "https://discord.test/e/44"
    assert router.subscribe_link(Platform.DISCORD, SID) == f"https://discord.test/s/{SID}"
    assert await router.avatar_url(UserRef(Platform.DISCORD, "7")) == "https://discord.test/a/7"
    # no links on the console, no Telegram adapter here, a broken Slack adapter: None, never an error
    assert router.message_link(MessageRef(Platform.CONSOLE, "main", "1")) is None
    assert router.subscribe_link(Platform.TELEGRAM, SID) is None
    assert router.message_link(SL_MSG) is None
    assert await router.avatar_url(UserRef(Platform.SLACK, "U1", scope="T1")) is None
    assert await router.avatar_url(UserRef(Platform.CONSOLE, "host")) is None
