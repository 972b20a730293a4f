"""The delivery engine's time limits come from the settings in one place (config/timing.py), and the
composition root hands each of them to the engine, the waker and the Telegram adapter."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from bots.app import AdapterContext, Role, _telegram, build
from bots.cli import prepare_database
from config.settings import Settings, explain
from config.timing import Timings, min_lease
from tests.fakes.clock import FakeClock


def settings_for(tmp_path: Path, **extra: str) -> Settings:
    return Settings.from_env(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'spaces.db'}",
            "SPACES_WORKER_ID": "wire-1",
            "PORT": "0",
            **extra,
        }
    )


def test_every_limit_is_derived_from_the_lease_and_the_send_timeout() -> None:
    t = Timings(lease_seconds=12, send_timeout=5)
    assert t.lease == timedelta(seconds=12) and t.renew_every == timedelta(seconds=4)
    assert t.lease_margin == timedelta(seconds=6)
    # a send and its recording fit in what is left of a lease just before its renewal, with a second spare
    assert t.lease_margin + timedelta(seconds=1) <= t.lease - t.renew_every
    # the HTTP client gives up on each phase before the engine's own bound
    assert max(t.http_connect, t.http_write, t.http_pool) < t.send_timeout == t.http_read
    assert min_lease(5) == 10.5


def test_a_lease_too_short_for_a_send_is_refused_with_the_variables_named() -> None:
    with pytest.raises(ValidationError) as err:
        Settings.from_env({"SPACES_LEASE_SECONDS": "8", "SPACES_SEND_TIMEOUT": "5"})
    (line,) = explain(err.value)
    assert "SPACES_LEASE_SECONDS" in line and "SPACES_SEND_TIMEOUT" in line and "10.5" in line
    s = Settings.from_env({"SPACES_LEASE_SECONDS": "6", "SPACES_SEND_TIMEOUT": "2"})
    assert s.timings.renew_every == timedelta(seconds=2)


async def test_the_worker_gets_the_timings_the_fleet_uptime_and_a_lease_renewal_job(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, SPACES_LEASE_SECONDS="15", SPACES_SEND_TIMEOUT="4")
    assert await prepare_database(settings) is None
    clock = FakeClock()
    worker = await build(settings, role=Role.WORKER, clock=clock, out=io.StringIO())
    try:
        config = worker.engine.config
        assert (config.lease, config.lease_margin, config.send_timeout) == (
            timedelta(seconds=15),
            timedelta(seconds=5),
            4.0,
        )
        assert worker.engine.up_since is None
        await worker.start()
        assert worker.engine.up_since == clock.now()  # the first heartbeat: the fleet is up since now
        assert worker.waker is not None and worker.waker.job_runs("renew") == 0
        assert {job.name for job in worker.waker._jobs} == {"sweep", "renew"}
    finally:
        await worker.stop()


def test_the_telegram_adapter_gets_its_http_timeouts_from_the_timings(tmp_path: Path) -> None:
    settings = settings_for(
        tmp_path,
        TELEGRAM_BOT_TOKEN="7000000001:AAEmulatorTokenForSpacesTests-0123456789",
        SPACES_SEND_TIMEOUT="3",
        SPACES_LEASE_SECONDS="9",
    )

    class Nothing:  # the adapter is only built here, never started: nothing of these is used
        def __getattr__(self, name: str) -> object:
            raise AssertionError(name)

    ctx = AdapterContext(
        settings, Nothing(), Nothing(), FakeClock(), Nothing(), receive=False, replies=Nothing()
    )  # type: ignore[arg-type]
    config = _telegram(ctx).config  # type: ignore[attr-defined]
    t = settings.timings
    assert (config.connect_timeout, config.read_timeout, config.write_timeout, config.pool_timeout) == (
        t.http_connect,
        t.http_read,
        t.http_write,
        t.http_pool,
    )
    assert config.read_timeout == 3.0
