"""The Space's calendar entry: ``bots/web/calendar.py`` read back with ``icalendar.Calendar.from_ical`` (the
same parser a client would use), and ``/s/<id>.ics`` over real HTTP.

The Spaces come from the real SpaceService (in memory, on a fake clock): a reschedule bumps the revision and
a cancel closes the Space exactly as in production, so SEQUENCE and STATUS are checked against the core's own
transitions, not against hand-made fields.
"""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from icalendar import Calendar, Event

from bots.metrics import Metrics
from bots.web.app import WebDeps, WebLinks, make_web_app
from bots.web.calendar import google_calendar_url, ics_filename, ics_version, outlook_calendar_url, space_ics
from core.commands import CancelSpace, EndSpace, RescheduleSpace, ScheduleSpace, StartSpace
from core.models import Space, SpaceStatus, UserProfile
from core.refs import ChatRef, Platform, UserRef
from core.rules import Actor
from core.services.events import DEFAULT_EVENT_LENGTH
from core.services.profiles import ProfileService
from core.services.spaces import SpaceService
from tests.builders import space as make_space
from tests.fakes.clock import FakeClock, RecordingWake
from tests.fakes.memory import MemoryDB

BASE = "https://spaces.example.org"
NOW = datetime(2026, 11, 25, 16, 0, tzinfo=UTC)  # FakeClock's start
HOST = Actor(UserRef(Platform.CONSOLE, "host"), locale="en")
CHAT = ChatRef(Platform.CONSOLE, "main")


def link(space_id: str) -> str:
    return f"{BASE}/s/{space_id}"


def ics(space: Space, *, host_name: str = "", now: datetime = NOW) -> bytes:
    return space_ics(space, link=link(space.id), host_name=host_name, now=now)


def event_of(body: bytes) -> Event:
    """The one VEVENT of a calendar, after checking the calendar around it."""
    cal = Calendar.from_ical(body)
    assert cal["VERSION"] == "2.0"
    assert cal["METHOD"] == "PUBLISH"
    assert str(cal["PRODID"]).startswith("-//Spaces//")
    assert b"\r\nREFRESH-INTERVAL;VALUE=DURATION:PT1H\r\nX-PUBLISHED-TTL:PT1H\r\n" in body  # pollers: hourly
    assert len(cal.walk("VEVENT")) == 1
    return cal.events[0]


def raw_lines(body: bytes) -> list[bytes]:
    assert body.endswith(b"\r\n")
    return body[:-2].split(b"\r\n")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def db() -> MemoryDB:
    return MemoryDB()


@pytest.fixture
def spaces(db: MemoryDB, clock: FakeClock) -> SpaceService:
    return SpaceService(db.uow, clock, RecordingWake(), default_tz="Europe/Paris")


async def schedule(
    spaces: SpaceService,
    when: str,
    *,
    tz: str | None = None,
    title: str = "Friday jam",
    description: str = "",
) -> Space:
    return await spaces.schedule(ScheduleSpace(HOST, CHAT, title, when, tz=tz, description=description))


# ----------------------------------------------------------------------------------------- the entry


async def test_a_scheduled_space_is_one_confirmed_event(spaces: SpaceService) -> None:
    space = await schedule(spaces, "2026-12-01 18:30", description="Bring questions")
    event = event_of(ics(space, host_name="Alice", now=NOW + timedelta(microseconds=123)))
    assert event["UID"] == f"{space.id}@spaces.example.org"
    assert event.decoded("DTSTAMP") == NOW  # whole seconds, UTC
    assert event.decoded("DTSTART") == datetime(2026, 12, 1, 17, 30, tzinfo=UTC)  # 18:30 in Paris (CET)
    assert event.decoded("DTEND") == event.decoded("DTSTART") + DEFAULT_EVENT_LENGTH
    assert event.decoded("CREATED") == NOW
    assert event["SUMMARY"] == "Friday jam"
    assert event["DESCRIPTION"] == f"Bring questions\n\nHost: Alice\n\n{link(space.id)}"
    assert event["URL"] == event["LOCATION"] == link(space.id)
    assert event["STATUS"] == "CONFIRMED"
    assert event["SEQUENCE"] == 0
    assert event.get("ORGANIZER") is None  # no address to give (see the module's docstring)


async def test_the_alarm_is_a_display_30_minutes_before(spaces: SpaceService) -> None:
    body = ics(await schedule(spaces, "tomorrow 20:00"))
    (alarm,) = event_of(body).walk("VALARM")
    assert alarm["ACTION"] == "DISPLAY"
    assert alarm.decoded("TRIGGER") == timedelta(minutes=-30)
    assert alarm["DESCRIPTION"] == "Friday jam"
    assert b"TRIGGER:-PT30M\r\n" in body  # relative to the start: it moves with a reschedule


async def test_the_uid_stays_and_the_sequence_grows_across_reschedules_and_the_cancel(
    spaces: SpaceService,
) -> None:
    space = await schedule(spaces, "2026-12-01 18:30")
    seen = [event_of(ics(space))]
    for when in ("2026-12-02 18:30", "2026-12-03 09:00"):
        space = await spaces.reschedule(RescheduleSpace(HOST, space.id, when))
        seen.append(event_of(ics(space)))
    space = await spaces.cancel(CancelSpace(HOST, space.id))
    seen.append(event_of(ics(space)))

    assert {e["UID"] for e in seen} == {f"{space.id}@spaces.example.org"}
    assert [e["SEQUENCE"] for e in seen] == [0, 1, 2, 3]
    assert [e.decoded("DTSTART").hour for e in seen] == [17, 17, 8, 8]  # Paris in winter: UTC+1
    assert [e["STATUS"] for e in seen] == ["CONFIRMED"] * 3 + ["CANCELLED"]


async def test_a_cancelled_space_says_so_and_has_no_alarm(spaces: SpaceService) -> None:
    space = await spaces.cancel(CancelSpace(HOST, (await schedule(spaces, "tomorrow 20:00")).id))
    event = event_of(ics(space))
    assert event["STATUS"] == "CANCELLED"
    assert event["SUMMARY"] == "❌ Cancelled · Friday jam"  # Google and Outlook keep it on the grid
    assert event.walk("VALARM") == []
    french = event_of(ics(replace(space, locale="fr")))
    assert french["SUMMARY"] == "❌ Annulé · Friday jam"


async def test_live_then_ended_ends_when_the_space_ended(spaces: SpaceService, clock: FakeClock) -> None:
    space = await schedule(spaces, "in 1 hour")
    await spaces.start(StartSpace(HOST, space.id))
    live = event_of(ics(await spaces.get(space.id)))
    assert (live["STATUS"], live["SEQUENCE"], live.walk("VALARM")) == ("CONFIRMED", 0, [])
    clock.advance(timedelta(hours=2, minutes=10))
    ended = await spaces.end(EndSpace(HOST, space.id))
    event = event_of(ics(ended))
    assert event["STATUS"] == "CONFIRMED"  # it happened
    assert event.decoded("DTEND") == ended.ended_at
    assert event["SEQUENCE"] == 1  # DTEND moved


def test_a_space_closed_without_ever_going_live_is_cancelled() -> None:
    stale = make_space("sp2345abcd", status=SpaceStatus.ENDED, ended_at=NOW, locale="en")
    event = event_of(ics(stale))
    assert event["STATUS"] == "CANCELLED"  # as on the platforms' own events (core.services.events)
    assert event["SEQUENCE"] == 1


@pytest.mark.parametrize(
    ("when", "tz", "utc"),
    [
        # the last evening of winter time and the first of summer time, in Paris (2027-03-28)
        ("2027-03-27 20:00", "Europe/Paris", datetime(2027, 3, 27, 19, 0, tzinfo=UTC)),
        ("2027-03-28 20:00", "Europe/Paris", datetime(2027, 3, 28, 18, 0, tzinfo=UTC)),
        # New York changes two weeks earlier (2027-03-14), and the evening crosses midnight UTC
        ("2027-03-13 20:00", "America/New_York", datetime(2027, 3, 14, 1, 0, tzinfo=UTC)),
        ("2027-03-14 20:00", "America/New_York", datetime(2027, 3, 15, 0, 0, tzinfo=UTC)),
        ("2026-12-01 09:15", "Asia/Kolkata", datetime(2026, 12, 1, 3, 45, tzinfo=UTC)),  # +05:30
        ("2026-12-01 09:15", "Pacific/Chatham", datetime(2026, 11, 30, 19, 30, tzinfo=UTC)),  # +13:45
    ],
)
async def test_times_are_utc_whatever_the_hosts_zone(
    spaces: SpaceService, when: str, tz: str, utc: datetime
) -> None:
    body = ics(await schedule(spaces, when, tz=tz))
    event = event_of(body)
    assert event.decoded("DTSTART") == utc
    assert event.decoded("DTEND") == utc + DEFAULT_EVENT_LENGTH
    assert f"DTSTART:{utc:%Y%m%dT%H%M%S}Z\r\n".encode() in body  # UTC form: no TZID, no VTIMEZONE
    assert b"TZID" not in body and b"VTIMEZONE" not in body


HOSTILE = {
    "syntax": (
        'Q&A, part 1; "live" \\ questions\nEND:VEVENT\r\nBEGIN:VEVENT\nUID:evil@x',
        'Q&A, part 1; "live" \\ questions END:VEVENT BEGIN:VEVENT UID:evil@x',
    ),
    # multi-byte characters across every fold
    "unicode": ("Ünïcödé 😀 漢字 " * 400, ("Ünïcödé 😀 漢字 " * 400).strip()),
    "long": ("x" * 5000, "x" * 5000),
    "controls": (
        "tab\there, NUL\x00, escape\x1b[31m, DEL\x7f, line\u2028sep, vtab\x0bend",
        "tab here, NUL, escape[31m, DEL, line sep, vtab end",  # breaks become spaces, the rest goes
    ),
}


@pytest.mark.parametrize(("title", "summary"), HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_titles_and_descriptions_stay_inside_their_property(title: str, summary: str) -> None:
    # built directly: the core's clean_title() would refuse most of these, the file must not need it
    space = make_space("sp2345abcd", title=title, description=title, locale="en")
    body = ics(space, host_name=title[:300])
    lines = raw_lines(body)
    assert all(len(line) <= 75 for line in lines), "RFC 5545 §3.1: lines of at most 75 octets"
    for line in lines:
        line.decode("utf-8")  # a fold never splits a character
        # no CR or LF inside a line, and no control character a TEXT value may not hold (all but tab)
        assert not re.search(rb"[\x00-\x08\x0a-\x1f\x7f]", line), line
    event = event_of(body)  # one event: the injected END/BEGIN stayed text
    assert event["UID"] == "sp2345abcd@spaces.example.org"
    assert event["SUMMARY"] == summary
    assert event.walk("VALARM")[0]["DESCRIPTION"] == summary
    assert str(event["DESCRIPTION"]).endswith(f"Host: {summary[:300].strip()}\n\n{link(space.id)}")


def test_the_syntax_characters_are_escaped_not_dropped() -> None:
    space = make_space("sp2345abcd", title="A, B; C \\ D", description="one,\ntwo;", locale="en")
    body = ics(space)
    assert b"SUMMARY:A\\, B\\; C \\\\ D\r\n" in body
    event = event_of(body)
    assert event["SUMMARY"] == "A, B; C \\ D"
    assert str(event["DESCRIPTION"]).startswith("one,\ntwo;\n\n")


async def test_the_version_ignores_the_stamp_and_follows_every_change(spaces: SpaceService) -> None:
    space = await schedule(spaces, "tomorrow 20:00")

    def version(s: Space, host_name: str = "") -> str:
        return ics_version(s, link=link(s.id), host_name=host_name)

    assert ics(space) != ics(space, now=NOW + timedelta(hours=1))  # DTSTAMP
    assert version(space) == version(replace(space))
    moved = await spaces.reschedule(RescheduleSpace(HOST, space.id, "tomorrow 21:00"))
    changes = {version(space), version(moved), version(replace(moved, title="Renamed"))}
    changes |= {version(moved, "Alice"), version(await spaces.cancel(CancelSpace(HOST, space.id)))}
    assert len(changes) == 5


@pytest.mark.parametrize(
    ("title", "name"),
    [
        ("Friday jam", "friday-jam.ics"),
        ("Café « Q&A » #3", "cafe-q-a-3.ics"),
        ('../../etc/passwd"; filename=x.exe\r\nX-Evil: 1', "etc-passwd-filename-x-exe-x-evil-1.ics"),
        ("😀 漢字", "space-sp2345abcd.ics"),
        ("a" * 300, "a" * 50 + ".ics"),
    ],
)
def test_the_download_name_is_plain_ascii(title: str, name: str) -> None:
    assert ics_filename(make_space("sp2345abcd", title=title)) == name


# ------------------------------------------------------------------------------ Google and Outlook links


def query(url: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(url)
    assert "+" not in parts.query  # %20: Outlook shows a "+" as a plus sign
    return f"{parts.scheme}://{parts.netloc}{parts.path}", {
        k: v[0] for k, v in parse_qs(parts.query, strict_parsing=True).items()
    }


def test_google_calendar_url_prefills_the_event() -> None:
    space = make_space("sp2345abcd", title="Q&A, live", description="Bring questions", tz="America/New_York")
    where, q = query(google_calendar_url(space, link(space.id)))
    assert where == "https://calendar.google.com/calendar/render"
    assert q == {
        "action": "TEMPLATE",
        "text": "Q&A, live",
        "dates": "20260314T183000Z/20260314T193000Z",  # tests.builders.T0, one hour
        "details": f"Bring questions\n\n{link(space.id)}",
        "location": link(space.id),
    }


def test_outlook_calendar_url_prefills_the_event_for_both_kinds_of_account() -> None:
    space = make_space("sp2345abcd", title="Q&A\nlive ", description="")
    where, q = query(outlook_calendar_url(space, link(space.id)))
    assert where == "https://outlook.live.com/calendar/0/action/compose"
    assert q == {
        "path": "/calendar/action/compose",
        "rru": "addevent",
        "subject": "Q&A live",
        "startdt": "2026-03-14T18:30:00Z",
        "enddt": "2026-03-14T19:30:00Z",
        "body": link(space.id),
        "location": link(space.id),
    }
    work, _ = query(outlook_calendar_url(space, link(space.id), work=True))
    assert work == "https://outlook.office.com/calendar/0/action/compose"


def test_calendar_urls_end_an_ended_space_when_it_ended() -> None:
    space = make_space(
        "sp2345abcd",
        status=SpaceStatus.ENDED,
        started_at=NOW,
        ended_at=datetime(2026, 3, 14, 20, 5, tzinfo=UTC),
    )
    assert (
        query(google_calendar_url(space, link(space.id)))[1]["dates"] == "20260314T183000Z/20260314T200500Z"
    )


# ------------------------------------------------------------------------------------ /s/<id>.ics route


class FailingProfiles:
    async def get(self, user: UserRef) -> UserProfile | None:
        raise ConnectionError("database is down")


def app_for(
    spaces: SpaceService, db: MemoryDB, *, profiles: object = None, links: bool = True
) -> web.Application:
    return make_web_app(
        WebDeps(
            spaces=spaces,
            outbox=db.outbox(),
            registry=Metrics().registry,
            links=WebLinks(BASE + "/") if links else None,
            profiles=ProfileService(db.uow) if profiles is None else profiles,  # type: ignore[arg-type]
            now=lambda: NOW,
        )
    )


@pytest.fixture
async def client(
    spaces: SpaceService, db: MemoryDB
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(app_for(spaces, db))) as c:
        yield c


async def test_the_route_serves_the_calendar_with_the_pages_headers(
    spaces: SpaceService, db: MemoryDB, client: TestClient[web.Request, web.Application]
) -> None:
    await ProfileService(db.uow).seen(HOST.user, display_name="Alice")
    space = await schedule(spaces, "tomorrow 20:00")
    resp = await client.get(f"/s/{space.id}.ics")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/calendar; charset=utf-8"
    assert resp.headers["Content-Disposition"] == 'attachment; filename="friday-jam.ics"'
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Content-Security-Policy"] == "default-src 'none'"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert resp.headers["Cache-Control"] == "no-cache"
    body = await resp.read()
    assert body == ics(space, host_name="Alice")
    assert resp.headers["ETag"] == f'W/"{ics_version(space, link=link(space.id), host_name="Alice")}"'
    assert "Host: Alice" in str(event_of(body)["DESCRIPTION"])
    head = await client.head(f"/s/{space.id}.ics")
    assert head.status == 200 and head.headers["ETag"] == resp.headers["ETag"]


async def test_the_share_page_is_not_swallowed_and_does_not_swallow(
    spaces: SpaceService, client: TestClient[web.Request, web.Application]
) -> None:
    space = await schedule(spaces, "tomorrow 20:00")
    page = await client.get(f"/s/{space.id}")
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    assert (await client.get(f"/s/{space.id}.ics")).headers["Content-Type"].startswith("text/calendar")


@pytest.mark.parametrize(
    "path",
    [
        "/s/abcd234567.ics",
        "/s/nope.ics",
        "/s/.ics",
        "/s/%3Cscript%3E.ics",
        "/s/x.ics.ics",
        "/s/" + "x" * 500 + ".ics",
    ],
)
async def test_unknown_ids_are_404(client: TestClient[web.Request, web.Application], path: str) -> None:
    resp = await client.get(path)
    assert resp.status == 404
    assert "<script>alert" not in await resp.text()


async def test_an_id_in_capitals_is_the_same_space(
    spaces: SpaceService, client: TestClient[web.Request, web.Application]
) -> None:
    space = await schedule(spaces, "tomorrow 20:00")
    resp = await client.get(f"/s/{space.id.upper()}.ics")
    assert resp.status == 200
    assert event_of(await resp.read())["UID"] == f"{space.id}@spaces.example.org"


async def test_etag_answers_304_until_the_space_changes(
    spaces: SpaceService, client: TestClient[web.Request, web.Application]
) -> None:
    space = await schedule(spaces, "tomorrow 20:00")
    path = f"/s/{space.id}.ics"
    etag = (await client.get(path)).headers["ETag"]
    strong = etag.removeprefix("W/")
    for given in (etag, strong, f'"other", {etag}', "*"):
        resp = await client.get(path, headers={"If-None-Match": given})
        assert resp.status == 304, given
        assert await resp.read() == b""
        assert resp.headers["ETag"] == etag and resp.headers["Cache-Control"] == "no-cache"
    assert (await client.get(path, headers={"If-None-Match": '"other"'})).status == 200

    await spaces.reschedule(RescheduleSpace(HOST, space.id, "tomorrow 21:00"))
    moved = await client.get(path, headers={"If-None-Match": etag})
    assert moved.status == 200 and moved.headers["ETag"] != etag
    assert event_of(await moved.read())["SEQUENCE"] == 1


async def test_cancelled_and_ended_spaces_are_still_served(
    spaces: SpaceService, clock: FakeClock, client: TestClient[web.Request, web.Application]
) -> None:
    cancelled = await schedule(spaces, "tomorrow 20:00")
    await spaces.cancel(CancelSpace(HOST, cancelled.id))
    ended = await schedule(spaces, "in 1 hour", title="Done")
    await spaces.start(StartSpace(HOST, ended.id))
    clock.advance(timedelta(minutes=30))
    await spaces.end(EndSpace(HOST, ended.id))
    got = {}
    for space_id in (cancelled.id, ended.id):
        resp = await client.get(f"/s/{space_id}.ics")
        assert resp.status == 200
        got[space_id] = event_of(await resp.read())["STATUS"]
    assert got == {cancelled.id: "CANCELLED", ended.id: "CONFIRMED"}


async def test_a_failed_profile_read_costs_the_name_not_the_calendar(
    spaces: SpaceService, db: MemoryDB
) -> None:
    space = await schedule(spaces, "tomorrow 20:00")
    async with TestClient(TestServer(app_for(spaces, db, profiles=FailingProfiles()))) as c:
        resp = await c.get(f"/s/{space.id}.ics")
        assert resp.status == 200
        assert "Host:" not in str(event_of(await resp.read())["DESCRIPTION"])


async def test_without_links_there_is_no_calendar_route(spaces: SpaceService, db: MemoryDB) -> None:
    # the UID and links must name SPACES_PUBLIC_URL: never a host taken from the request's Host header
    space = await schedule(spaces, "tomorrow 20:00")
    async with TestClient(TestServer(app_for(spaces, db, links=False))) as c:
        assert (await c.get(f"/s/{space.id}.ics")).status == 404
        assert (await c.get(f"/s/{space.id}")).status == 200


async def test_the_composition_root_mounts_it_under_the_public_url(tmp_path: Path) -> None:
    from bots.app import build
    from bots.cli import prepare_database
    from config.settings import Settings

    settings = Settings.from_env(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'spaces.db'}",
            "SPACES_WORKER_ID": "test-1",
            "PORT": "0",
            "SPACES_PUBLIC_URL": "https://spaces.test",
        }
    )
    assert await prepare_database(settings) is None
    service = await build(settings, clock=FakeClock(NOW), out=io.StringIO())
    try:
        space = await service.spaces.schedule(ScheduleSpace(HOST, CHAT, "Wired", "tomorrow 20:00"))
        async with TestClient(TestServer(service.web_app)) as c:
            resp = await c.get(f"/s/{space.id}.ics")
            assert resp.status == 200
            event = event_of(await resp.read())
        assert event["UID"] == f"{space.id}@spaces.test"
        assert event["URL"] == f"https://spaces.test/s/{space.id}"
    finally:
        await service.stop()
