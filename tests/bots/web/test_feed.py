"""A community's calendar feed over real HTTP (``/feeds/<token>.ics``): the core's FeedService over the
memory store, the Spaces made by the real SpaceService on a fake clock. The feed parses with ``icalendar``,
lists the upcoming Spaces of the token's chat and of the chats linked with it (soonest first), drops the
cancelled and ended ones, answers 304 while nothing changed and 404 to a token it does not know."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from icalendar import Calendar

from bots.metrics import Metrics
from bots.web.app import FEED_PREFIX, WebDeps, WebLinks, make_web_app
from bots.web.calendar import space_ics
from core.commands import CancelSpace, EndSpace, ScheduleSpace, StartSpace
from core.models import Space
from core.refs import ChatRef, Platform, UserRef
from core.rules import Actor
from core.services.feeds import FeedService
from core.services.spaces import SpaceService
from tests.fakes.clock import FakeClock, RecordingWake
from tests.fakes.memory import MemoryDB

BASE = "https://spaces.example.org"
NOW = datetime(2026, 11, 25, 16, 0, tzinfo=UTC)
HOST = Actor(UserRef(Platform.TELEGRAM, "42"), locale="en")
GROUP = ChatRef(Platform.TELEGRAM, "-100")
LINKED = ChatRef(Platform.DISCORD, "55", scope="9")  # linked with GROUP: one community
OTHER = ChatRef(Platform.TELEGRAM, "-200")
Client = TestClient[web.Request, web.Application]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def db() -> MemoryDB:
    return MemoryDB()


@pytest.fixture
def spaces(db: MemoryDB, clock: FakeClock) -> SpaceService:
    return SpaceService(db.uow, clock, RecordingWake(), default_tz="UTC")


@pytest.fixture
def feeds(db: MemoryDB, clock: FakeClock) -> FeedService:
    return FeedService(db.uow, clock, WebLinks(BASE).feed)


@pytest.fixture
async def client(
    spaces: SpaceService, feeds: FeedService, db: MemoryDB, clock: FakeClock
) -> AsyncIterator[Client]:
    deps = WebDeps(
        spaces=spaces,
        outbox=db.outbox(),
        registry=Metrics().registry,
        links=WebLinks(BASE),
        now=clock.now,
        feeds=feeds,
        feed_url=lambda space: feeds.url_for(space.chat),
    )
    async with TestClient(TestServer(make_web_app(deps))) as c:
        yield c


async def schedule(spaces: SpaceService, chat: ChatRef, title: str, when: str) -> Space:
    return await spaces.schedule(ScheduleSpace(HOST, chat, title, when))


def path_of(url: str) -> str:
    assert url.startswith(BASE + FEED_PREFIX) and url.endswith(".ics"), url
    return url.removeprefix(BASE)


async def read(client: Client, path: str) -> Calendar:
    resp = await client.get(path)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"] == "text/calendar; charset=utf-8"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    return Calendar.from_ical(await resp.read())


def titles(cal: Calendar) -> list[str]:
    return [str(e["summary"]) for e in cal.walk("VEVENT")]


async def test_the_feed_lists_the_communitys_upcoming_spaces_soonest_first(
    client: Client, spaces: SpaceService, feeds: FeedService, db: MemoryDB
) -> None:
    async with db.uow() as uow:
        assert await uow.links.link_chats(GROUP, LINKED, now=NOW)
        await uow.commit()
    late = await schedule(spaces, GROUP, "Late show", "2026-12-03 20:00")
    await schedule(spaces, LINKED, "Linked jam", "2026-12-02 18:00")
    live = await schedule(spaces, GROUP, "On air", "2026-11-26 10:00")
    await spaces.start(StartSpace(HOST, live.id))
    gone = await schedule(spaces, GROUP, "Called off", "2026-12-01 09:00")
    await spaces.cancel(CancelSpace(HOST, gone.id))
    over = await schedule(spaces, GROUP, "Already over", "2026-11-27 09:00")
    await spaces.start(StartSpace(HOST, over.id))
    await spaces.end(EndSpace(HOST, over.id))
    await schedule(spaces, OTHER, "Someone else's", "2026-11-28 09:00")

    url = await feeds.url_for(GROUP)
    cal = await read(client, path_of(url))
    assert str(cal["x-wr-calname"]) == "Spaces"
    assert "REFRESH-INTERVAL" in cal and "X-PUBLISHED-TTL" in cal
    assert titles(cal) == ["On air", "Linked jam", "Late show"]
    # each VEVENT is the one of the Space's own .ics (same UID, same SEQUENCE): one entry in a calendar
    (own,) = Calendar.from_ical(space_ics(late, link=f"{BASE}/s/{late.id}", host_name="", now=NOW)).walk(
        "VEVENT"
    )
    (in_feed,) = [e for e in cal.walk("VEVENT") if str(e["uid"]) == str(own["uid"])]
    assert in_feed.to_ical() == own.to_ical()
    # the linked chat has its own URL (the token is the chat's), listing the same community
    other_url = await feeds.url_for(LINKED)
    assert other_url != url and await feeds.url_for(GROUP) == url  # made once, then kept
    assert titles(await read(client, path_of(other_url))) == titles(cal)
    assert titles(await read(client, path_of(await feeds.url_for(OTHER)))) == ["Someone else's"]


async def test_unlinking_changes_what_the_feed_lists_not_its_url(
    client: Client, spaces: SpaceService, feeds: FeedService, db: MemoryDB
) -> None:
    async with db.uow() as uow:
        await uow.links.link_chats(GROUP, LINKED, now=NOW)
        await uow.commit()
    await schedule(spaces, LINKED, "Linked jam", "2026-12-02 18:00")
    url = await feeds.url_for(GROUP)
    assert titles(await read(client, path_of(url))) == ["Linked jam"]
    async with db.uow() as uow:
        await uow.links.unlink_chat(LINKED)
        await uow.commit()
    assert await feeds.url_for(GROUP) == url
    assert titles(await read(client, path_of(url))) == []


async def test_etag_304_until_a_space_changes(
    client: Client, spaces: SpaceService, feeds: FeedService, clock: FakeClock
) -> None:
    space = await schedule(spaces, GROUP, "Friday jam", "2026-12-04 18:00")
    path = path_of(await feeds.url_for(GROUP))
    first = await client.get(path)
    etag = first.headers["ETag"]
    assert etag.startswith('W/"') and first.headers["Cache-Control"] == "no-cache"
    clock.advance(timedelta(minutes=5))  # a new DTSTAMP alone is no change
    again = await client.get(path, headers={"If-None-Match": etag})
    assert again.status == 304 and again.headers["ETag"] == etag
    await spaces.cancel(CancelSpace(HOST, space.id))
    changed = await client.get(path, headers={"If-None-Match": etag})
    assert changed.status == 200 and changed.headers["ETag"] != etag


@pytest.mark.parametrize(
    "token",
    ["A" * 32, "short", "%3Cscript%3E", "..%2F..%2Fetc", "x" * 200],
    ids=["unknown", "s", "h", "p", "l"],
)
async def test_a_token_it_does_not_know_is_a_404(client: Client, feeds: FeedService, token: str) -> None:
    await feeds.url_for(GROUP)  # some token exists, not this one
    resp = await client.get(f"{FEED_PREFIX}{token}.ics")
    assert resp.status == 404
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_the_share_page_links_the_communitys_feed(
    client: Client, spaces: SpaceService, feeds: FeedService
) -> None:
    space = await schedule(spaces, GROUP, "Friday jam", "2026-12-04 18:00")
    page = await (await client.get(f"/s/{space.id}")).text()
    url = await feeds.url_for(GROUP)
    assert f'href="{url}"' in page and "All Spaces of this community" in page
    french = await (await client.get(f"/s/{space.id}", headers={"Accept-Language": "fr"})).text()
    assert "Tous les Spaces de cette communauté" in french
