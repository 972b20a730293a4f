"""The share page's routes over real HTTP (aiohttp's test server on 127.0.0.1): headers on every route,
the 404 page, ids in any case, the OpenGraph tags, the preview PNG, the JSON's ETag and the event stream.

The Spaces come from the real SpaceService (in memory, on a fake clock): going live, a reschedule and a
cancel are the core's own transitions.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from html.parser import HTMLParser

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image

from bots.metrics import Metrics
from bots.web.app import PREVIEW_KEY, WATCH_KEY, WebDeps, WebLinks, make_web_app
from bots.web.share import Place
from core.commands import CancelSpace, RescheduleSpace, ScheduleSpace, StartSpace, Subscribe
from core.models import Space
from core.refs import ChatRef, Platform, UserRef
from core.rules import Actor
from core.services.profiles import ProfileService
from core.services.spaces import SpaceService
from tests.bots.web.conftest import eventually
from tests.fakes.clock import FakeClock, RecordingWake
from tests.fakes.memory import MemoryDB

BASE = "https://spaces.example.org"
NOW = datetime(2026, 11, 25, 16, 0, tzinfo=UTC)
HOST = Actor(UserRef(Platform.CONSOLE, "host"), locale="en")
CHAT = ChatRef(Platform.CONSOLE, "main")
Client = TestClient[web.Request, web.Application]


class Meta(HTMLParser):
    def __init__(self, markup: str) -> None:
        super().__init__()
        self.meta: dict[str, str] = {}
        self.lang = ""
        self.feed(markup)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "html":
            self.lang = a.get("lang") or ""
        if tag == "meta" and a.get("content") is not None:
            self.meta[str(a.get("property") or a.get("name"))] = str(a["content"])


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def db() -> MemoryDB:
    return MemoryDB()


@pytest.fixture
def spaces(db: MemoryDB, clock: FakeClock) -> SpaceService:
    return SpaceService(db.uow, clock, RecordingWake(), default_tz="Europe/Paris")


async def places_of(space: Space, locale: str) -> list[Place]:
    return [Place("telegram", "Telegram", f"https://t.me/spacesbot?start={space.id}")]


def app_for(spaces: SpaceService, db: MemoryDB, clock: FakeClock, **extra: object) -> web.Application:
    fields: dict[str, object] = {
        "spaces": spaces,
        "outbox": db.outbox(),
        "registry": Metrics().registry,
        "links": WebLinks(BASE),
        "profiles": ProfileService(db.uow),
        "now": clock.now,
        "places": places_of,
        "share_poll": 0.05,  # real seconds: the shared poller reads the store this often in these tests
    }
    fields.update(extra)
    return make_web_app(WebDeps(**fields))  # type: ignore[arg-type]


@pytest.fixture
async def client(spaces: SpaceService, db: MemoryDB, clock: FakeClock) -> AsyncIterator[Client]:
    async with TestClient(TestServer(app_for(spaces, db, clock))) as c:
        yield c


async def schedule(spaces: SpaceService, when: str = "2026-12-01 18:30", title: str = "Friday jam") -> Space:
    return await spaces.schedule(ScheduleSpace(HOST, CHAT, title, when, description="Bring questions"))


def secure(resp: ClientResponse) -> None:
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]


async def test_every_route_keeps_the_security_headers(spaces: SpaceService, client: Client) -> None:
    space = await schedule(spaces)
    for path in ("", ".json", ".ics", "/preview.png"):
        resp = await client.get(f"/s/{space.id}{path}")
        assert resp.status == 200, path
        secure(resp)
    page = await client.get(f"/s/{space.id}")
    assert page.headers["Vary"] == "Accept-Language"
    policy = page.headers["Content-Security-Policy"]
    assert "connect-src 'self'" in policy and "script-src 'sha256-" in policy
    assert "unsafe-eval" not in policy and "img-src" not in policy  # no avatar: no image at all
    async with client.get(f"/s/{space.id}/events") as events:
        secure(events)
        assert events.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    for missing in ("/s/abcd234567", "/s/abcd234567.json", "/s/abcd234567/preview.png", "/s/nope/events"):
        resp = await client.get(missing)
        assert resp.status == 404, missing
        secure(resp)


@pytest.mark.parametrize("accept", ["en-US,en;q=0.8", "fr-CA,fr;q=0.9"])
async def test_unknown_ids_get_a_real_404_page_in_the_readers_language(client: Client, accept: str) -> None:
    resp = await client.get("/s/%3Cscript%3Ealert(1)", headers={"Accept-Language": accept})
    assert resp.status == 404
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    body = await resp.text()
    assert "<script>alert" not in body and "&lt;script&gt;alert(1)" in body
    french = accept.startswith("fr")
    assert ('lang="fr"' if french else 'lang="en"') in body
    assert ("Ce Space n'existe pas" if french else "This Space doesn't exist") in body
    assert '<main id="main"' in body and 'href="/"' in body


async def test_ids_are_accepted_in_any_case(spaces: SpaceService, client: Client) -> None:
    space = await schedule(spaces)
    for path in (
        f"/s/{space.id.upper()}",
        f"/s/{space.id.title()}.json",
        f"/s/{space.id.upper()}/preview.png",
    ):
        assert (await client.get(path)).status == 200, path


async def test_opengraph_tags_from_the_html(spaces: SpaceService, db: MemoryDB, client: Client) -> None:
    await ProfileService(db.uow).seen(HOST.user, display_name="Alice")
    space = await schedule(spaces, title='Q&A "live" <b>')
    body = await (await client.get(f"/s/{space.id}")).text()
    parsed = Meta(body)
    meta = parsed.meta
    link = f"{BASE}/s/{space.id}"
    assert meta["og:title"] == meta["twitter:title"] == 'Q&A "live" <b>'
    assert meta["og:url"] == link
    assert meta["og:image"] == f"{link}/preview.png"
    assert meta["twitter:card"] == "summary_large_image"
    assert meta["og:description"] == "Tue 1 Dec 2026, 18:30 CET · Scheduled — Bring questions"
    assert "Hosted by <strong>Alice</strong>" in body
    assert "https://t.me/spacesbot?start=" in body  # WebDeps.places
    assert (
        f'href="/s/{space.id}.ics"' in body and "calendar.google.com" in body and "outlook.live.com" in body
    )


async def test_the_preview_png_is_cached_and_revalidated(spaces: SpaceService, client: Client) -> None:
    space = await schedule(spaces)
    resp = await client.get(f"/s/{space.id}/preview.png")
    assert resp.headers["Content-Type"] == "image/png"
    image = Image.open(io.BytesIO(await resp.read()))
    assert (image.format, image.size) == ("PNG", (1200, 630))
    etag = resp.headers["ETag"]
    again = await client.get(f"/s/{space.id}/preview.png")
    assert again.headers["ETag"] == etag and client.app[PREVIEW_KEY].renders == 1  # from the cache
    assert (await client.get(f"/s/{space.id}/preview.png", headers={"If-None-Match": etag})).status == 304
    await spaces.reschedule(RescheduleSpace(HOST, space.id, "2026-12-02 18:30"))
    moved = await client.get(f"/s/{space.id}/preview.png", headers={"If-None-Match": etag})
    assert moved.status == 200 and moved.headers["ETag"] != etag  # it shows the time: a new image


async def test_the_json_has_an_etag_and_answers_304_until_a_change(
    spaces: SpaceService, client: Client
) -> None:
    space = await schedule(spaces)
    resp = await client.get(f"/s/{space.id}.json", headers={"Accept-Language": "fr"})
    data = await resp.json()
    assert data["status"] == "scheduled" and data["subscribers"] == 0
    assert data["host_time"] == "mar. 1 déc. 2026, 18:30 CET"
    assert resp.headers["Cache-Control"] == "no-cache"
    etag = resp.headers["ETag"]
    same = await client.get(f"/s/{space.id}.json", headers={"If-None-Match": etag, "Accept-Language": "fr"})
    assert same.status == 304
    await spaces.subscribe(Subscribe(UserRef(Platform.CONSOLE, "bob"), space.id))
    changed = await client.get(
        f"/s/{space.id}.json", headers={"If-None-Match": etag, "Accept-Language": "fr"}
    )
    assert changed.status == 200 and (await changed.json())["subscribers"] == 1


async def read_events(resp: ClientResponse, count: int) -> list[dict[str, object]]:
    """The first ``count`` data events of a stream (comments and the retry line skipped)."""
    events: list[dict[str, object]] = []
    async with asyncio.timeout(30):  # a hang guard, not a timing assert
        while len(events) < count:
            line = (await resp.content.readline()).decode()
            assert line, "the stream ended early"
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    return events


async def test_the_event_stream_delivers_going_live(spaces: SpaceService, client: Client) -> None:
    space = await schedule(spaces, "in 1 hour")
    async with client.get(f"/s/{space.id}/events") as resp:
        assert resp.headers["Cache-Control"] == "no-store"
        (first,) = await read_events(resp, 1)
        assert first["status"] == "scheduled"
        await spaces.start(StartSpace(HOST, space.id))
        (live,) = await read_events(resp, 1)
        assert live["status"] == "live" and live["started_at"] == "2026-11-25T16:00:00Z"


async def test_one_poller_serves_every_viewer_and_a_cancel_ends_the_streams(
    spaces: SpaceService, client: Client
) -> None:
    space = await schedule(spaces)
    watch = client.app[WATCH_KEY]
    async with client.get(f"/s/{space.id}/events") as a, client.get(f"/s/{space.id}/events") as b:
        await read_events(a, 1)
        await read_events(b, 1)
        assert (watch.streams, watch.polling) == (2, 1)
        moved = await spaces.reschedule(RescheduleSpace(HOST, space.id, "2026-12-02 20:00"))
        for resp in (a, b):
            (event,) = await read_events(resp, 1)
            assert event["starts_at"] == moved.starts_at.isoformat().replace("+00:00", "Z")
            assert event["host_time"] == "Wed 2 Dec 2026, 20:00 CET"
        await spaces.cancel(CancelSpace(HOST, space.id))
        for resp in (a, b):
            (event,) = await read_events(resp, 1)
            assert event["status"] == "cancelled"
            async with asyncio.timeout(30):
                assert (
                    await resp.content.read() == b"\n"
                )  # the event's end, then EOF: nothing more will change
    await eventually(
        lambda: watch.streams == 0 and watch.polling == 0, what="the streams and their poller end"
    )


async def test_the_number_of_streams_is_bounded(spaces: SpaceService, db: MemoryDB, clock: FakeClock) -> None:
    space = await schedule(spaces)
    app = app_for(spaces, db, clock, share_streams=1)
    async with TestClient(TestServer(app)) as c, c.get(f"/s/{space.id}/events") as first:
        await read_events(first, 1)
        refused = await c.get(f"/s/{space.id}/events")
        assert refused.status == 503 and refused.headers["Retry-After"] == "30"
        secure(refused)


async def test_without_public_url_the_page_still_works(
    spaces: SpaceService, db: MemoryDB, clock: FakeClock
) -> None:
    space = await schedule(spaces)
    async with TestClient(TestServer(app_for(spaces, db, clock, links=None, places=None))) as c:
        body = await (await c.get(f"/s/{space.id}")).text()
        meta = Meta(body).meta
        assert "og:url" not in meta and "og:image" not in meta
        assert ".ics" not in body and "calendar.google.com" not in body
        assert "Press 🔔 on the Space's card in the chat" in body


async def test_a_quiet_stream_gets_heartbeats(
    spaces: SpaceService, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bots.web.app

    monkeypatch.setattr(bots.web.app, "HEARTBEAT", 0.05)
    space = await schedule(spaces)
    async with client.get(f"/s/{space.id}/events") as resp:
        await read_events(resp, 1)
        async with asyncio.timeout(30):
            while (line := await resp.content.readline()) != b": ping\n":
                assert line in (b"\n",), line


async def test_stopping_the_app_ends_the_streams(
    spaces: SpaceService, db: MemoryDB, clock: FakeClock
) -> None:
    space = await schedule(spaces)
    app = app_for(spaces, db, clock)
    async with TestClient(TestServer(app)) as c, c.get(f"/s/{space.id}/events") as resp:
        await read_events(resp, 1)
        await app.shutdown()  # what the server runs first when it stops (on_shutdown)
        async with asyncio.timeout(30):
            assert await resp.content.read() == b"\n"  # the last event's end, then EOF
        assert app[WATCH_KEY].streams == 0
        refused = await c.get(f"/s/{space.id}/events")
        assert refused.status == 503  # a stopping process takes no new stream


async def test_an_avatar_url_replaces_the_monogram(
    spaces: SpaceService, db: MemoryDB, clock: FakeClock
) -> None:
    async def avatars(user: UserRef) -> str | None:
        return "https://cdn.example.org/a.png" if user == HOST.user else None

    space = await schedule(spaces)
    async with TestClient(TestServer(app_for(spaces, db, clock, avatars=avatars))) as c:
        resp = await c.get(f"/s/{space.id}")
        body = await resp.text()
        assert (
            '<img class="avatar" src="https://cdn.example.org/a.png" alt=""' in body
        )  # the label is on the ring
        assert "img-src https:" in resp.headers["Content-Security-Policy"]
