"""The share page in real headless Chromium (Debian's, driven by playwright: see conftest.chromium_or_skip).

For each status, under two browser time zones and two widths: the reader's local time is right, nothing
overflows at 390 px, basic accessibility checks done in the page (images have alt, links and buttons have
names, the main text's contrast), no script error (a CSP violation is one). Screenshots are kept in
``test-artifacts/share/`` (gitignored). And a live transition followed without a reload.

The Spaces come from the real SpaceService, on a clock set to the real time (the browser's countdown reads
its own clock).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestServer

from bots.metrics import Metrics
from bots.web.app import WebDeps, WebLinks, make_web_app
from bots.web.share import Place
from core.commands import CancelSpace, EndSpace, ScheduleSpace, StartSpace
from core.models import Space, SpaceStatus
from core.refs import ChatRef, Platform, UserRef
from core.rules import Actor
from core.services.profiles import ProfileService
from core.services.spaces import SpaceService
from tests.bots.web.conftest import Directory, chromium_args, chromium_or_skip, eventually
from tests.fakes.clock import FakeClock, RecordingWake
from tests.fakes.memory import MemoryDB

ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "share"
HOST = Actor(UserRef(Platform.CONSOLE, "host"), locale="en")
CHAT = ChatRef(Platform.CONSOLE, "main")
ZONES = ("Europe/Paris", "America/Los_Angeles")
WIDTHS = (390, 1200)

# In the page: the checks an accessibility linter would start with, and the layout's overflow.
AUDIT_JS = """() => {
  const problems = [];
  for (const img of document.querySelectorAll('img')) if (!img.hasAttribute('alt')) problems.push('img without alt');
  for (const el of document.querySelectorAll('a[href], button, [role=button]')) {
    if (el.closest('[hidden]')) continue;
    const name = (el.getAttribute('aria-label') || el.textContent || '').trim();
    if (!name) problems.push('nameless ' + el.tagName);
  }
  for (const el of document.querySelectorAll('[role=img]')) if (!el.getAttribute('aria-label')) problems.push('role=img without label');
  if (!document.documentElement.lang) problems.push('no lang');
  if (!document.querySelector('main') || !document.querySelector('h1')) problems.push('no main or h1');
  const lum = (css) => {
    const [r, g, b] = css.match(/[\\d.]+/g).slice(0, 3).map(Number).map(v => {
      v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const card = getComputedStyle(document.querySelector('.card')).backgroundColor;
  const contrast = {};
  for (const sel of ['h1', '.hosted', '.hosttime', '#status-label', '.foot']) {
    const el = document.querySelector(sel);
    if (!el) continue;
    const bg = sel === '.foot' ? getComputedStyle(document.body).backgroundColor
      : sel === '#status-label' && document.querySelector('main').dataset.status === 'live'
        ? getComputedStyle(document.querySelector('.badge')).backgroundColor : card;
    const [a, b] = [lum(getComputedStyle(el).color), lum(bg)].sort((x, y) => y - x);
    contrast[sel] = (a + 0.05) / (b + 0.05);
  }
  return {problems, contrast, overflow: document.documentElement.scrollWidth - window.innerWidth};
}"""


@contextlib.asynccontextmanager
async def browser() -> AsyncIterator[Any]:
    executable = chromium_or_skip()
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(
            executable_path=executable, args=chromium_args(Path("/dev/null")), headless=True
        )
        try:
            yield b
        finally:
            await b.close()


@contextlib.asynccontextmanager
async def served(spaces: SpaceService, db: MemoryDB, clock: FakeClock) -> AsyncIterator[TestServer]:
    async def places(space: Space, locale: str) -> list[Place]:
        return [
            Place("telegram", "Telegram", f"https://t.me/spacesbot?start={space.id}"),
            Place("discord", "Discord", "https://discord.com/events/1/2"),
        ]

    deps = WebDeps(
        spaces=spaces,
        outbox=db.outbox(),
        registry=Metrics().registry,
        links=WebLinks("https://spaces.example.org"),
        profiles=ProfileService(db.uow),
        now=clock.now,
        places=places,
        audio=Directory(),
        share_poll=0.1,
    )
    server = TestServer(make_web_app(deps))
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def db() -> MemoryDB:
    return MemoryDB()


@pytest.fixture
def spaces(db: MemoryDB, clock: FakeClock) -> SpaceService:
    return SpaceService(db.uow, clock, RecordingWake(), default_tz="Europe/Paris")


async def space_in(status: SpaceStatus, spaces: SpaceService, db: MemoryDB) -> Space:
    await ProfileService(db.uow).seen(HOST.user, display_name="Ada Lovelace")
    when = "in 3 hours" if status is SpaceStatus.LIVE else "in 2 days"
    space = await spaces.schedule(
        ScheduleSpace(
            HOST,
            CHAT,
            "Friday jam: synths, modular patches & questions from the floor",
            when,
            description="Bring your patches.\nWe go through three of them live, then open the floor.",
        )
    )
    if status is SpaceStatus.LIVE:
        await spaces.start(StartSpace(HOST, space.id))
    elif status is SpaceStatus.ENDED:
        await spaces.start(StartSpace(HOST, space.id))
        await spaces.end(EndSpace(HOST, space.id))
    elif status is SpaceStatus.CANCELLED:
        await spaces.cancel(CancelSpace(HOST, space.id))
    return await spaces.get(space.id)


@pytest.mark.parametrize("status", list(SpaceStatus))
async def test_each_status_in_two_zones_and_two_widths(
    status: SpaceStatus, spaces: SpaceService, db: MemoryDB, clock: FakeClock
) -> None:
    space = await space_in(status, spaces, db)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []  # the page's uncaught errors and console errors (a CSP violation is one)
    async with served(spaces, db, clock) as server, browser() as b:
        for zone in ZONES:
            local = space.starts_at.astimezone(ZoneInfo(zone))
            for width in WIDTHS:
                context = await b.new_context(
                    timezone_id=zone, viewport={"width": width, "height": 900}, locale="en-US"
                )
                page = await context.new_page()
                errors.clear()
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                await page.goto(str(server.make_url(f"/s/{space.id}")))
                shown = page.locator("#local")
                await shown.wait_for(state="visible")
                text = await shown.text_content() or ""
                assert f"{local:%H:%M}" in text, (zone, text)  # the reader's zone, not the host's
                assert str(local.day) in text, (zone, text)
                assert (
                    await page.locator("#status-label").text_content()
                    == {
                        SpaceStatus.SCHEDULED: "Scheduled",
                        SpaceStatus.LIVE: "Live now",
                        SpaceStatus.ENDED: "Ended",
                        SpaceStatus.CANCELLED: "Cancelled",
                    }[status]
                )
                if status is SpaceStatus.SCHEDULED:
                    assert await page.locator("#countdown").is_visible()
                    assert (await page.locator("#relative").text_content() or "").startswith("Starts in ")
                audit = await page.evaluate(AUDIT_JS)
                assert audit["problems"] == [], audit
                assert audit["overflow"] <= 0, f"{width} px: {audit['overflow']} px too wide"
                for selector, ratio in audit["contrast"].items():
                    assert ratio >= 4.5, (selector, ratio)
                assert (await page.locator("#avatar").get_attribute("class") == "avatar-wrap ring") is (
                    status is SpaceStatus.LIVE
                )
                name = f"{status.value}-{zone.replace('/', '_')}-{width}.png"
                await page.screenshot(path=str(ARTIFACTS / name), full_page=True)
                assert errors == [], errors
                await context.close()


async def test_the_page_follows_the_space_going_live_without_a_reload(
    spaces: SpaceService, db: MemoryDB, clock: FakeClock
) -> None:
    space = await space_in(SpaceStatus.SCHEDULED, spaces, db)
    async with served(spaces, db, clock) as server, browser() as b:
        context = await b.new_context(
            timezone_id="Europe/Paris",
            viewport={"width": 390, "height": 900},
            locale="fr-FR",
            extra_http_headers={"Accept-Language": "fr"},
        )
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.goto(str(server.make_url(f"/s/{space.id}")))
        assert await page.locator("#status-label").text_content() == "Programmé"
        await page.evaluate("window.__same_document = true")
        await spaces.start(StartSpace(HOST, space.id))

        async def live() -> bool:
            return await page.locator("#status-label").text_content() == "En direct"

        await eventually(live, within=30, what="the page shows the Space live")
        assert await page.evaluate("window.__same_document === true")  # no reload happened
        assert await page.locator("#avatar").get_attribute("class") == "avatar-wrap ring"
        assert await page.locator("#avatar").get_attribute("aria-label") == "Ada Lovelace est en direct"
        assert (await page.locator("#relative").text_content() or "").startswith("Commencé")
        assert await page.locator("#countdown").is_hidden()
        assert await page.locator("a[data-join]").first.text_content() == "Rejoindre sur Telegram"
        assert await page.locator("#subscribe-h").text_content() == "Rejoindre le Space"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "went-live-390.png"), full_page=True)
        assert errors == [], errors
        await context.close()


@pytest.mark.parametrize("status", [SpaceStatus.LIVE, SpaceStatus.CANCELLED])
async def test_dark_mode_keeps_the_contrast(
    status: SpaceStatus, spaces: SpaceService, db: MemoryDB, clock: FakeClock
) -> None:
    space = await space_in(status, spaces, db)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    async with served(spaces, db, clock) as server, browser() as b:
        context = await b.new_context(
            color_scheme="dark", reduced_motion="reduce", viewport={"width": 390, "height": 900}
        )
        page = await context.new_page()
        await page.goto(str(server.make_url(f"/s/{space.id}")))
        audit = await page.evaluate(AUDIT_JS)
        assert audit["problems"] == [] and audit["overflow"] <= 0, audit
        for selector, ratio in audit["contrast"].items():
            assert ratio >= 4.5, (selector, ratio)
        # prefers-reduced-motion: the live ring does not pulse
        assert await page.locator("#avatar").evaluate("e => getComputedStyle(e).animationName") == "none"
        await page.screenshot(path=str(ARTIFACTS / f"dark-{status.value}-390.png"), full_page=True)
        await context.close()
