"""One platform failing at start-up does not stop the others: it is logged, shown down in /healthz and
retried with backoff in the background until it starts."""

from __future__ import annotations

import asyncio
import io
import logging
from pathlib import Path

import aiohttp
import pytest

from bots.app import Role, build
from bots.cli import prepare_database
from bots.router import Router
from bots.runtime.gateway import LeasedGateway
from core.refs import Platform
from tests.bots.test_console import settings_for
from tests.fakes.clock import FakeClock
from tests.fakes.platform import FakePlatform


class Pauses:
    """The router's sleep: records each backoff and returns at once (no real waiting)."""

    def __init__(self) -> None:
        self.waited: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waited.append(seconds)
        await asyncio.sleep(0)


async def _until(condition: object, *, rounds: int = 200) -> None:
    for _ in range(rounds):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def test_a_failing_platform_is_retried_in_the_background_while_the_others_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = FakePlatform(platform=Platform.TELEGRAM)
    bad = FakePlatform(platform=Platform.DISCORD, fail_start=3)
    pauses = Pauses()
    router = Router([bad, good], sleep=pauses, retry_first=1.0, retry_max=3.0)
    with caplog.at_level(logging.ERROR, logger="bots.router"):
        await router.start()  # returns: the failing one does not hold up the others
    assert good.started and not bad.started
    health = router.health()
    assert health["telegram"] == "up" and health["discord"].startswith("down: ConnectionError")
    assert any(
        "platform discord failed to start (attempt 1): ConnectionError: discord: cannot reach the platform;"
        in r.getMessage()
        for r in caplog.records
    )

    await _until(lambda: bad.started)
    assert bad.start_attempts == 4 and pauses.waited == [1.0, 2.0, 3.0]  # doubling, capped
    assert router.health() == {"discord": "up", "telegram": "up"}
    await router.stop()
    assert not good.started and not bad.started


async def test_stopping_cancels_the_retries(caplog: pytest.LogCaptureFixture) -> None:
    never = FakePlatform(platform=Platform.DISCORD, fail_start=10**6)

    async def slow(seconds: float) -> None:
        await asyncio.sleep(3600)

    router = Router([never, FakePlatform(platform=Platform.TELEGRAM)], sleep=slow)
    with caplog.at_level(logging.CRITICAL):
        await router.start()
    await router.stop()  # does not wait an hour
    assert never.start_attempts == 1 and router.health()["discord"].startswith("down")


async def test_the_service_starts_with_a_platform_down_and_healthz_shows_it(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    await prepare_database(settings)
    bad = FakePlatform(platform=Platform.DISCORD, fail_start=10**6)
    good = FakePlatform(platform=Platform.TELEGRAM)
    svc = await build(settings, clock=FakeClock(), platforms=[bad, good], out=io.StringIO())
    try:
        await svc.start()
        assert svc.web_url is not None
        async with aiohttp.ClientSession() as http, http.get(f"{svc.web_url}/healthz") as resp:
            body = await resp.json()
        assert resp.status == 200 and body["ok"] is True  # the service runs; one platform is down
        assert body["platforms"]["console"] == body["platforms"]["telegram"] == "up"
        assert body["platforms"]["discord"].startswith("down: ConnectionError")
    finally:
        await svc.stop()


class GatewayPlatform(FakePlatform):
    """A platform whose start opens a gateway (Discord's declares needs_gateway_lease too)."""

    needs_gateway_lease = True
    gateway_lease_name = "discord:shards:0-1"

    def __init__(self) -> None:
        super().__init__(platform=Platform.DISCORD)
        self.events_sink: object = None

    def attach_events(self, events: object) -> None:
        self.events_sink = events


async def test_a_gateway_platform_connects_in_one_receiving_process_only(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    await prepare_database(settings)
    first, second, worker_side = GatewayPlatform(), GatewayPlatform(), GatewayPlatform()
    web1 = await build(settings, role=Role.WEB, clock=FakeClock(), platforms=[first], out=io.StringIO())
    web2 = await build(settings, role=Role.WEB, clock=FakeClock(), platforms=[second], out=io.StringIO())
    worker = await build(
        settings, role=Role.WORKER, clock=FakeClock(), platforms=[worker_side], out=io.StringIO()
    )
    try:
        await web1.start()
        await web2.start()
        await worker.start()
        assert first.started and not second.started  # one gateway connection for both web processes
        assert worker_side.started  # a worker sends over REST: it needs no lease
        assert web1.router.health()["discord"].startswith("up (holds discord:shards:0-1)")
        assert web2.router.health()["discord"].startswith("standby")
        assert first.events_sink is not None and first.events_sink is not second.events_sink
        await web1.stop()  # a deploy: the lease is released, the standby takes over at its next try
        starter = web2.router._starters[Platform.DISCORD]
        assert isinstance(starter, LeasedGateway)
        await starter.step()
        assert second.started
    finally:
        for svc in (web1, web2, worker):
            await svc.stop()


async def test_the_banner_says_which_platform_is_down(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    await prepare_database(settings)
    out = io.StringIO()
    svc = await build(
        settings,
        clock=FakeClock(),
        platforms=[
            FakePlatform(platform=Platform.DISCORD, fail_start=10**6),
            FakePlatform(platform=Platform.TELEGRAM),
        ],
        out=out,
    )
    try:
        await svc.start()
        assert "discord   down: ConnectionError" in out.getvalue()
    finally:
        await svc.stop()


async def test_healthz_names_the_error_type_only(caplog: pytest.LogCaptureFixture) -> None:
    class Refused(FakePlatform):
        async def start(self) -> None:
            raise ValueError("Unauthorized: token 7000000001:AAE-not-a-real-token was refused")

    async def never(seconds: float) -> None:
        await asyncio.Event().wait()

    router = Router(
        [Refused(platform=Platform.TELEGRAM), FakePlatform(platform=Platform.DISCORD)], sleep=never
    )
    with caplog.at_level(logging.CRITICAL):
        await router.start()
    assert router.health()["telegram"] == "down: ValueError"  # /healthz is public: no SDK message
    await router.stop()


async def test_when_no_chat_platform_can_start_there_is_nothing_to_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A single platform whose token was refused: start-up fails with its error (the CLI says so and exits),
    and nothing is left retrying."""
    console = FakePlatform(platform=Platform.CONSOLE)
    only = FakePlatform(platform=Platform.TELEGRAM, fail_start=10**6)
    router = Router([console, only], sleep=Pauses())
    with caplog.at_level(logging.CRITICAL), pytest.raises(ConnectionError):
        await router.start()
    await asyncio.sleep(0)
    assert only.start_attempts == 1 and not console.started and router._retries == {}
