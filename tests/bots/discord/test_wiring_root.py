"""The composition root with DISCORD_BOT_TOKEN set builds the Discord adapter from the settings, and a
worker process (which only sends) logs in over REST without opening a gateway connection."""

from __future__ import annotations

import io
from pathlib import Path

from bots.app import Role, build
from bots.cli import prepare_database
from bots.discord.adapter import DiscordPlatform
from config.settings import Settings
from tests.fakes.clock import FakeClock
from tests.fakes.discord import DiscordEmulator


def _settings(tmp_path: Path, dc: DiscordEmulator, **extra: str) -> Settings:
    return Settings.from_env(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'spaces.db'}",
            "SPACES_WORKER_ID": "test-1",
            "PORT": "0",
            "SPACES_PUBLIC_URL": "https://spaces.test",
            "DISCORD_BOT_TOKEN": dc.token,
            "DISCORD_APPLICATION_ID": str(dc.application_id),
            "DISCORD_API_BASE": dc.base_url,
            "DISCORD_MODERATOR_ROLE": "Hosts",
            "DISCORD_SHARD_COUNT": "2",
            "DISCORD_SHARD_IDS": "1",
            **extra,
        }
    )


async def test_a_worker_builds_the_discord_adapter_and_sends_without_a_gateway(
    tmp_path: Path, dc: DiscordEmulator
) -> None:
    settings = _settings(tmp_path, dc)
    assert await prepare_database(settings) is None
    svc = await build(settings, role=Role.WORKER, clock=FakeClock(), out=io.StringIO())
    try:
        await svc.start()
        (platform,) = [p for p in svc.router.platforms if isinstance(p, DiscordPlatform)]
        assert platform.config.shard_count == 2 and platform.config.shard_ids == (1,)
        assert platform.config.moderator_role == "Hosts"
        assert platform.gateway_lease_name == "discord:shards:1/2"
        assert platform.bot_id == dc.bot.id  # logged in over REST
        assert dc.connected_shards() == []  # a worker never opens the gateway
        assert any(line.startswith("  platforms") and "discord" in line for line in svc.banner())
    finally:
        await svc.stop()


async def test_two_web_processes_open_one_gateway_connection(tmp_path: Path, dc: DiscordEmulator) -> None:
    """Both log in (both can send); only the holder of the gateway lease connects its shard."""
    settings = _settings(tmp_path, dc)
    assert await prepare_database(settings) is None
    a = await build(settings, role=Role.WEB, clock=FakeClock(), out=io.StringIO())
    b = await build(settings, role=Role.WEB, clock=FakeClock(), out=io.StringIO())
    try:
        await a.start()
        await b.start()
        await dc.wait_until(lambda: dc.connected_shards() == [(1, 2)], what="shard 1 of 2")
        assert len(dc.identifies) == 1
        for svc in (a, b):
            (platform,) = [p for p in svc.router.platforms if isinstance(p, DiscordPlatform)]
            assert platform.bot_id == dc.bot.id
    finally:
        await a.stop()
        await b.stop()
