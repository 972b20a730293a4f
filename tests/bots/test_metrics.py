"""/metrics in a web + worker deployment: every worker's series in one scrape, labelled by worker; the live
worker count from the database; the endpoint protected by a token and/or kept on its own listener.

The last test runs the real thing: ``spaces web`` + 2 × ``spaces worker`` on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from bots.metrics import FleetView, Metrics, decode, render
from bots.runtime.clock import SystemClock
from bots.web.app import WebDeps, make_metrics_app, make_web_app
from core.commands import ScheduleSpace
from core.models import DeliveryStatus
from core.refs import ChatRef, Platform, UserRef
from core.rules import Actor
from core.services.spaces import SpaceService
from storage.db import make_engine, make_session_factory
from storage.migrate import upgrade
from storage.stores import unit_of_work_factory
from tests.conftest import CoreEnv
from tests.databases import new_database
from tests.fakes import secrets
from tests.fakes.clock import RecordingWake

ROOT = Path(__file__).resolve().parents[2]
SENT_CARD = {"platform": "console", "kind": "card_post", "outcome": "sent"}


def samples(text: str, name: str) -> dict[frozenset[tuple[str, str]], float]:
    """Every sample called ``name`` in a Prometheus text, by its labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                found[frozenset(s.labels.items())] = s.value
    return found


def worker_metrics(worker: str) -> Metrics:
    m = Metrics()
    m.settled("console", "card_post", DeliveryStatus.SENT, 0.2)
    m.claimed(1, 0.001)
    m.workers(99)  # a fleet gauge: never part of a snapshot
    return m


# ------------------------------------------------------------------------------------------ the merge


def test_one_scrape_shows_every_worker_labelled_and_the_fleet_once() -> None:
    web = Metrics(delivers=False)  # a web process: no engine series of its own
    web.outbox_counts({"pending": 4, "sent": 9})
    w1, w2 = worker_metrics("w1"), worker_metrics("w2")
    w2.settled("console", "card_post", DeliveryStatus.SENT, 0.3)
    fleet = FleetView(2, {"w1": w1.snapshot(), "w2": w2.snapshot()})
    web.fleet_seen(fleet)
    text = render(web.registry, fleet=fleet).decode()

    sent = samples(text, "spaces_deliveries_total")
    assert sent == {
        frozenset({**SENT_CARD, "worker": "w1"}.items()): 1.0,
        frozenset({**SENT_CARD, "worker": "w2"}.items()): 2.0,
    }
    assert samples(text, "spaces_live_workers") == {frozenset(): 2.0}  # from the fleet, not a worker's 99
    assert samples(text, "spaces_outbox_rows")[frozenset({("status", "pending")})] == 4.0
    assert set(samples(text, "spaces_claim_batch_size_count")) == {
        frozenset({("worker", "w1")}),
        frozenset({("worker", "w2")}),
    }
    # one family, however many workers: Prometheus wants each metric declared once per scrape
    assert text.count("# TYPE spaces_deliveries_total counter") == 1


def test_a_delivering_process_labels_its_own_series_and_skips_its_stale_snapshot() -> None:
    me = worker_metrics("w1")
    stale = Metrics().snapshot()  # what the database holds for us: older than memory
    text = render(me.registry, own_worker="w1", fleet=FleetView(1, {"w1": stale})).decode()
    assert samples(text, "spaces_deliveries_total") == {frozenset({**SENT_CARD, "worker": "w1"}.items()): 1.0}


def test_an_unreadable_snapshot_is_skipped() -> None:
    good = worker_metrics("w1").snapshot()
    text = render(
        Metrics(delivers=False).registry, fleet=FleetView(2, {"w1": good, "w2": "{nonsense"})
    ).decode()
    assert {dict(k)["worker"] for k in samples(text, "spaces_deliveries_total")} == {"w1"}
    assert decode('{"v": 99, "families": []}') == []


# ------------------------------------------------------------------------------------------ the endpoint


def deps_for(env: CoreEnv, metrics: Metrics, **kw: object) -> WebDeps:
    return WebDeps(
        spaces=env.spaces,
        outbox=env.db.outbox(),
        registry=metrics.registry,
        on_counts=metrics.outbox_counts,
        on_fleet=metrics.fleet_seen,
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
async def guarded(
    core_env: CoreEnv,
) -> AsyncIterator[TestClient[aiohttp.web.Request, aiohttp.web.Application]]:
    app = make_web_app(deps_for(core_env, Metrics(), metrics_token=secrets.METRICS_TOKEN))
    async with TestClient(TestServer(app)) as client:
        yield client


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": secrets.METRICS_TOKEN},  # no scheme
        {"Authorization": f"Basic {secrets.METRICS_TOKEN}"},
        {"Authorization": "Bearer " + "é" * 10},
    ],
)
async def test_a_protected_metrics_endpoint_refuses_without_the_token(
    guarded: TestClient[aiohttp.web.Request, aiohttp.web.Application], headers: dict[str, str]
) -> None:
    resp = await guarded.get("/metrics", headers=headers)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert secrets.CANARY not in await resp.text()


async def test_two_authorization_headers_are_refused(
    guarded: TestClient[aiohttp.web.Request, aiohttp.web.Application],
) -> None:
    bearer = f"Bearer {secrets.METRICS_TOKEN}"
    resp = await guarded.get("/metrics", headers=[("Authorization", bearer), ("Authorization", bearer)])
    assert resp.status == 401


async def test_the_token_opens_it(guarded: TestClient[aiohttp.web.Request, aiohttp.web.Application]) -> None:
    resp = await guarded.get("/metrics", headers={"Authorization": f"Bearer {secrets.METRICS_TOKEN}"})
    assert resp.status == 200
    assert "spaces_database_up 1.0" in await resp.text()
    assert (await guarded.get("/healthz")).status == 200  # health checks need no token


async def test_metrics_on_its_own_listener_is_off_the_public_app(core_env: CoreEnv) -> None:
    deps = deps_for(core_env, Metrics(), public_metrics=False)
    async with TestClient(TestServer(make_web_app(deps))) as public:
        assert (await public.get("/metrics")).status == 404
    async with TestClient(TestServer(make_metrics_app(deps))) as private:
        resp = await private.get("/metrics")
        assert resp.status == 200 and "spaces_outbox_rows" in await resp.text()
        assert (await private.get("/healthz")).status == 404  # /metrics only


# ------------------------------------------------------------------------------------------ real processes


async def _spawn(tmp_path: Path, name: str, command: str, url: str, **env: str) -> asyncio.subprocess.Process:
    out = (tmp_path / f"{name}.out").open("wb")  # a file: a pipe nobody reads would block the process
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bots.cli",
        command,
        cwd=tmp_path,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "DATABASE_URL": url,
            "SPACES_WORKER_ID": name,
            "SPACES_SWEEP_SECONDS": "0.5",  # heartbeats, and so published figures, twice a second
            "SPACES_METRICS_TOKEN": secrets.METRICS_TOKEN,
            "PORT": "0",
            "SPACES_PUBLIC_URL": "https://spaces.example.org",
            **env,
        },
        stdin=asyncio.subprocess.DEVNULL,
        stdout=out,
        stderr=asyncio.subprocess.STDOUT,
    )


async def _banner_value(path: Path, label: str, within: float = 60.0) -> str:
    async with asyncio.timeout(within):
        while True:
            for line in (await asyncio.to_thread(path.read_text, errors="replace")).splitlines():
                if line.strip().startswith(label + " "):
                    return line.split()[1]
            await asyncio.sleep(0.1)


async def _cards_printed(path: Path) -> int:
    text = await asyncio.to_thread(path.read_text, errors="replace")
    return sum(1 for line in text.splitlines() if line.startswith("[#main] card "))


async def _scrape(url: str) -> str:
    async with (
        aiohttp.ClientSession() as http,
        http.get(url, headers={"Authorization": f"Bearer {secrets.METRICS_TOKEN}"}) as resp,
    ):
        assert resp.status == 200
        return await resp.text()


async def _wait_for(url: str, check: Callable[[str], bool], within: float = 60.0) -> str:
    async with asyncio.timeout(within):
        while True:
            text = await _scrape(url)
            if check(text):
                return text
            await asyncio.sleep(0.2)


@pytest.fixture
def pg_url(tmp_path: Path) -> Iterator[str]:
    """A migrated PostgreSQL database of its own (PostgreSQL: several processes share it)."""
    with new_database("postgres", tmp_path) as url:
        asyncio.run(upgrade(url))
        yield url


@pytest.mark.slow
async def test_web_plus_two_workers_on_postgres_one_scrape_covers_both(tmp_path: Path, pg_url: str) -> None:
    spaces_n = 12
    url = pg_url
    procs = {
        "web": await _spawn(tmp_path, "web", "web", url, SPACES_METRICS_PORT="0"),
        "w1": await _spawn(tmp_path, "w1", "worker", url),
        "w2": await _spawn(tmp_path, "w2", "worker", url),
    }
    db = make_engine(url)
    try:
        metrics_url = await _banner_value(tmp_path / "web.out", "metrics")
        web_url = await _banner_value(tmp_path / "web.out", "web")
        async with aiohttp.ClientSession() as http, http.get(f"{web_url}/metrics") as resp:
            assert resp.status == 404  # not on the public port

        # both workers alive: 12 Spaces scheduled, each card posted once, by one worker or the other
        await _wait_for(metrics_url, lambda t: samples(t, "spaces_live_workers") == {frozenset(): 2.0})
        service = SpaceService(
            unit_of_work_factory(make_session_factory(db)),
            SystemClock(),
            RecordingWake(),
            default_tz="UTC",
        )
        for i in range(spaces_n):
            await service.schedule(
                ScheduleSpace(
                    Actor(UserRef(Platform.CONSOLE, f"host{i}"), locale="en"),  # the quota is per host
                    ChatRef(Platform.CONSOLE, "main"),
                    f"Talk {i}",
                    f"in {i + 2} hours",
                )
            )

        def all_cards_counted(text: str) -> bool:
            sent = samples(text, "spaces_deliveries_total")
            return sum(v for k, v in sent.items() if SENT_CARD.items() <= dict(k).items()) == spaces_n

        text = await _wait_for(metrics_url, all_cards_counted)
        per_worker = {
            dict(k)["worker"]: v
            for k, v in samples(text, "spaces_deliveries_total").items()
            if SENT_CARD.items() <= dict(k).items()
        }
        assert set(per_worker) <= {"w1", "w2"} and sum(per_worker.values()) == spaces_n
        # each worker shows up (every sweep claims, if only an empty batch); the web process sends nothing
        claims = samples(text, "spaces_claim_batch_size_count")
        assert {dict(k).get("worker") for k in claims} == {"w1", "w2"}
        # what the figures claim is what was received: each worker prints every card it posts (console)
        received = {w: await _cards_printed(tmp_path / f"{w}.out") for w in ("w1", "w2")}
        assert {w: n for w, n in received.items() if n} == per_worker

        # a worker that stops leaves the scrape with its figures
        procs["w2"].send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(procs["w2"].wait(), 30) == 0
        text = await _wait_for(metrics_url, lambda t: samples(t, "spaces_live_workers") == {frozenset(): 1.0})
        assert {dict(k).get("worker") for k in samples(text, "spaces_claim_batch_size_count")} == {"w1"}
    finally:
        for proc in procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in procs.items():
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                raise AssertionError(f"{name} did not stop on SIGTERM") from None
        await db.dispose()
    for name, proc in procs.items():
        assert proc.returncode == 0, (tmp_path / f"{name}.out").read_text()[-3000:]
