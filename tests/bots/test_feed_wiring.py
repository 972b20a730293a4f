"""The community feed through the composition root (bots/app.py ``build``): the console's ``/spaces``
answers with the feed URL under SPACES_PUBLIC_URL, the service's own web app serves that URL as a calendar
holding the Space; the public share page does not link it (a private group's schedule is for its members)."""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from icalendar import Calendar

from bots.app import Service, build
from bots.cli import prepare_database
from bots.console.repl import ConsoleIO
from core.refs import ChatRef, Platform
from tests.bots.test_console import output, settings_for
from tests.fakes.clock import FakeClock

FEED = re.compile(r"📅 All of them in your calendar: (https://spaces\.test(/feeds/[A-Za-z0-9_-]+\.ics))")


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    settings = settings_for(tmp_path)
    assert await prepare_database(settings) is None
    svc = await build(
        settings, clock=FakeClock(), console_io=ConsoleIO(io.StringIO(), io.StringIO(), color=False)
    )
    yield svc
    await svc.stop()


async def test_the_console_list_gives_the_feed_the_web_app_serves(service: Service) -> None:
    repl = service.repl
    assert repl is not None and service.web_app is not None
    await repl.handle("/space schedule 2026-12-01 18:30 Launch party")
    (space,) = await service.spaces.upcoming(ChatRef(Platform.CONSOLE, "main"))
    await repl.handle("/spaces")
    ((url, path),) = FEED.findall(output(service))
    await repl.handle("/spaces")
    assert [u for u, _ in FEED.findall(output(service))] == [url, url]  # made once, then the same
    async with TestClient(TestServer(service.web_app)) as client:
        resp = await client.get(path)
        assert resp.status == 200
        (event,) = Calendar.from_ical(await resp.read()).walk("VEVENT")
        assert str(event["summary"]) == "Launch party" and str(event["uid"]).startswith(space.id)
        page = await (await client.get(f"/s/{space.id}")).text()
        assert "/feeds/" not in page
