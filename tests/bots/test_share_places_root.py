"""The composition root serves the share page with the places and the host's picture from the real
adapters: a Space announced on Discord (a card and its scheduled event) and on Telegram gets Telegram's
deep link first, then the Discord card and event, labelled in the reader's language, and the host's
Discord avatar (the CSP then allows https: images). A platform that fails leaves the page working."""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bots.app import Role, Service, build
from bots.cli import prepare_database
from config.settings import Settings
from core.models import Announcement, NativeEvent
from core.refs import ChatRef, MessageRef, Platform, UserRef
from tests.builders import space as space_sample
from tests.fakes.clock import FakeClock
from tests.fakes.discord import DiscordEmulator, pointed_at
from tests.fakes.telegram import TelegramEmulator

BUTTON = re.compile(r'<a class="btn place-([a-z]+)" href="([^"]+)"[^>]*>([^<]+)</a>')


@pytest.fixture
async def dc() -> AsyncIterator[DiscordEmulator]:
    async with DiscordEmulator() as emulator:
        with pointed_at(emulator):
            yield emulator


@pytest.fixture
async def tg() -> AsyncIterator[TelegramEmulator]:
    async with TelegramEmulator() as emulator:
        yield emulator


@pytest.fixture
async def svc(tmp_path: Path, dc: DiscordEmulator, tg: TelegramEmulator) -> AsyncIterator[Service]:
    settings = Settings.from_env(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'spaces.db'}",
            "SPACES_WORKER_ID": "web-1",
            "PORT": "0",
            "SPACES_PUBLIC_URL": "https://spaces.test",
            "DISCORD_BOT_TOKEN": dc.token,
            "DISCORD_APPLICATION_ID": str(dc.application_id),
            "DISCORD_API_BASE": dc.base_url,
            "TELEGRAM_BOT_TOKEN": tg.token,
            "TELEGRAM_API_BASE": tg.base_url,
        }
    )
    assert await prepare_database(settings) is None
    service = await build(settings, role=Role.WEB, clock=FakeClock(), out=io.StringIO())
    try:
        await service.start()
        yield service
    finally:
        await service.stop()


async def announce(svc: Service, space_id: str, host: UserRef, card: str) -> None:
    """A Space announced on Discord (card + scheduled event) and in a Telegram supergroup."""
    async with svc.uow() as uow:
        await uow.spaces.add(space_sample(space_id, host=host))
        await uow.announcements.add(
            Announcement(
                space_id,
                MessageRef(Platform.DISCORD, "22", card, scope="11"),
            )
        )
        await uow.announcements.add(Announcement(space_id, MessageRef(Platform.TELEGRAM, "-1001234", card)))
        await uow.events.add(NativeEvent(space_id, ChatRef(Platform.DISCORD, "22", scope="11"), "44"))
        await uow.commit()


async def page(svc: Service, space_id: str, lang: str = "en") -> tuple[str, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{svc.web_url}/s/{space_id}", headers={"Accept-Language": lang}) as resp,
    ):
        assert resp.status == 200
        return await resp.text(), resp.headers["Content-Security-Policy"]


async def test_a_space_on_two_platforms_gets_its_buttons_and_the_hosts_avatar(
    svc: Service, dc: DiscordEmulator
) -> None:
    ana = dc.create_user("ana")
    ana.avatar = "0123abcd"
    await announce(svc, "abcdefghjk", UserRef(Platform.DISCORD, str(ana.id)), "301")
    html, csp = await page(svc, "abcdefghjk")
    assert BUTTON.findall(html) == [
        ("telegram", "https://t.me/SpacesTestBot?start=s_abcdefghjk", "Subscribe on Telegram"),
        ("discord", "https://discord.com/channels/11/22/301", "Subscribe on Discord"),
        ("discord", "https://discord.com/events/11/44", "Subscribe on Discord (event)"),
    ]
    assert f'src="https://cdn.discordapp.com/avatars/{ana.id}/0123abcd.png?size=128"' in html
    assert "img-src https:" in csp
    html, _ = await page(svc, "abcdefghjk", "fr-FR,fr;q=0.9")
    assert [label for _, _, label in BUTTON.findall(html)][-1] == "S'abonner sur Discord (évènement)"
    assert len(dc.calls("/users/{user_id}", "GET")) == 1  # the second view used the cached avatar


async def test_a_failing_platform_leaves_the_page_working(svc: Service, dc: DiscordEmulator) -> None:
    bob = dc.create_user("bob")
    dc.fail_next("GET", "/users/{user_id}", 403, 50001, "Missing Access")
    await announce(svc, "bcdefghjkm", UserRef(Platform.DISCORD, str(bob.id)), "302")
    html, csp = await page(svc, "bcdefghjkm")
    assert len(BUTTON.findall(html)) == 3  # the links need no request: still there
    assert "cdn.discordapp.com" not in html and "img-src" not in csp  # the monogram stands in
    dc.take_violations()  # the refusal is the point
