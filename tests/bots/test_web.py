from __future__ import annotations

import html
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bots.metrics import Metrics
from bots.web.app import WebDeps, WebLinks, make_web_app
from core.commands import ScheduleSpace, StartSpace
from core.models import DeliveryStatus
from tests.conftest import CoreEnv


class BrokenOutbox:
    async def counts(self) -> dict[str, int]:
        raise ConnectionError("database is down")


def deps_for(env: CoreEnv, metrics: Metrics, **kw: object) -> WebDeps:
    return WebDeps(
        spaces=env.spaces,
        outbox=kw.pop("outbox", env.db.outbox()),  # type: ignore[arg-type]
        registry=metrics.registry,
        on_counts=metrics.outbox_counts,
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def client(
    core_env: CoreEnv, metrics: Metrics
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(make_web_app(deps_for(core_env, metrics)))) as c:
        yield c


async def test_healthz_reports_db_and_outbox(core_env: CoreEnv, client: TestClient) -> None:
    await core_env.spaces.schedule(ScheduleSpace(core_env.actor(), core_env.chat, "AMA", "tomorrow 20:00"))
    resp = await client.get("/healthz")
    assert resp.status == 200
    body = await resp.json()
    assert body["ok"] is True and body["db"] == "ok"
    assert body["pending"] == 3  # T-30, T-0, the card
    assert body["dead"] == 0


async def test_healthz_503_when_the_database_fails(core_env: CoreEnv) -> None:
    app = make_web_app(deps_for(core_env, Metrics(), outbox=BrokenOutbox()))
    async with TestClient(TestServer(app)) as c:
        resp = await c.get("/healthz")
        assert resp.status == 503
        assert (await resp.json())["db"] == "error"
        metrics = await (await c.get("/metrics")).text()
        assert "spaces_database_up 0.0" in metrics


async def test_metrics_is_prometheus_text_with_outbox_gauges(
    core_env: CoreEnv, client: TestClient, metrics: Metrics
) -> None:
    await core_env.spaces.schedule(ScheduleSpace(core_env.actor(), core_env.chat, "AMA", "in 10 minutes"))
    metrics.settled("console", "card_post", DeliveryStatus.SENT, 0.4)
    metrics.claimed(3, 0.002)
    metrics.rate_limited("telegram")
    metrics.lease_lost()
    metrics.budget_waited("telegram", 0.5)
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    text = await resp.text()
    assert 'spaces_outbox_rows{status="pending"} 2.0' in text  # T-0 and the card (T-30 is in the past)
    assert 'spaces_deliveries_total{kind="card_post",outcome="sent",platform="console"} 1.0' in text
    assert 'spaces_delivery_lateness_seconds_bucket{le="0.5",platform="console"} 1.0' in text
    assert "spaces_claim_batch_size_count 1.0" in text
    assert 'spaces_rate_limited_total{platform="telegram"} 1.0' in text
    assert "spaces_lease_lost_total 1.0" in text
    assert 'spaces_budget_wait_seconds_count{platform="telegram"} 1.0' in text


def test_each_service_has_its_own_registry() -> None:
    a, b = Metrics(), Metrics()  # the global registry would raise "Duplicated timeseries"
    a.lease_lost()
    assert a.registry.get_sample_value("spaces_lease_lost_total") == 1.0
    assert b.registry.get_sample_value("spaces_lease_lost_total") == 0.0


def test_observer_never_raises() -> None:
    m = Metrics()
    m.settled("console", "card_post", "sent", float("nan"))
    m.budget_waited("x", -1.0)  # histograms accept it; nothing may escape in any case


async def test_space_page_shows_title_time_in_zone_and_status(core_env: CoreEnv, client: TestClient) -> None:
    space = await core_env.spaces.schedule(
        ScheduleSpace(
            core_env.actor(), core_env.chat, "Weekly AMA", "2026-12-01 18:30", tz="America/New_York"
        )
    )
    resp = await client.get(f"/s/{space.id}")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/html")
    page = await resp.text()
    assert '<h1 id="title">Weekly AMA</h1>' in page
    assert "18:30" in page and "EST" in page  # the host's zone, not UTC
    assert "Scheduled" in page
    assert "0 subscribed" in page


async def test_space_page_in_french_and_live(core_env: CoreEnv, client: TestClient) -> None:
    space = await core_env.spaces.schedule(ScheduleSpace(core_env.actor(), core_env.chat, "AMA", "in 1 hour"))
    await core_env.spaces.start(StartSpace(core_env.actor(), space.id))
    page = await (await client.get(f"/s/{space.id}", headers={"Accept-Language": "fr-FR,fr;q=0.9"})).text()
    assert '<span id="status-label">En direct</span>' in page and 'lang="fr"' in page


@pytest.mark.parametrize("space_id", ["abcd234567", "nope", "%3Cscript%3E", "x" * 500])
async def test_unknown_space_is_a_friendly_404(client: TestClient, space_id: str) -> None:
    resp = await client.get(f"/s/{space_id}")
    assert resp.status == 404
    page = await resp.text()
    assert "No Space has the id" in page
    assert page.count("<script>") == 1  # ours only: the id is escaped


async def test_paths_outside_the_app_are_404(client: TestClient) -> None:
    assert (await client.get("/s/../../etc/passwd")).status == 404
    assert (await client.get("/s/")).status == 404


async def test_hostile_title_is_escaped(core_env: CoreEnv, client: TestClient) -> None:
    title = '<script>alert("x")</script> & <img src=x onerror=alert(1)>'
    space = await core_env.spaces.schedule(
        ScheduleSpace(core_env.actor(), core_env.chat, title, "in 2 hours")
    )
    resp = await client.get(f"/s/{space.id}")
    page = await resp.text()
    assert page.count("<script>") == 1 and "<img" not in page  # the only script is our own
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;img" in page
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]


async def test_the_page_shows_each_viewer_their_local_time_with_a_script_pinned_by_hash(
    core_env: CoreEnv, client: TestClient
) -> None:
    import base64
    import hashlib

    from bots.web.share import SHARE_JS

    space = await core_env.spaces.schedule(
        ScheduleSpace(core_env.actor(locale="fr"), core_env.chat, "Apéro", "2026-12-01 18:30")
    )
    resp = await client.get(f"/s/{space.id}", headers={"Accept-Language": "fr-FR,fr;q=0.9"})
    page = await resp.text()
    starts = space.starts_at.isoformat().replace("+00:00", "Z")
    assert f'<time id="host-time" datetime="{starts}">' in page
    assert '"your_time": "Votre heure :"' in html.unescape(page)  # the script's label, in data-labels
    assert f"<script>{SHARE_JS}</script>" in page
    digest = base64.b64encode(hashlib.sha256(SHARE_JS.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in resp.headers["Content-Security-Policy"]


async def test_adapters_contribute_routes(core_env: CoreEnv) -> None:
    async def hook(request: web.Request) -> web.Response:
        return web.json_response({"got": await request.json()})

    app = make_web_app(deps_for(core_env, Metrics(), routes=[("POST", "/telegram/webhook", hook)]))
    async with TestClient(TestServer(app)) as c:
        resp = await c.post("/telegram/webhook", json={"update_id": 1})
        assert (await resp.json()) == {"got": {"update_id": 1}}


def test_two_adapters_cannot_claim_one_path(core_env: CoreEnv) -> None:
    async def hook(request: web.Request) -> web.Response:
        return web.Response()

    with pytest.raises(ValueError, match="/x"):
        make_web_app(deps_for(core_env, Metrics(), routes=[("POST", "/x", hook), ("post", "/x", hook)]))


def test_links() -> None:
    assert (
        WebLinks("https://spaces.example.org/").space("abcd234567")
        == "https://spaces.example.org/s/abcd234567"
    )


async def test_metrics_after_the_engine_runs(core_env: CoreEnv) -> None:
    metrics = Metrics()
    core_env.engine._obs = metrics  # the observer the composition root would pass
    await core_env.spaces.schedule(ScheduleSpace(core_env.actor(), core_env.chat, "AMA", "in 2 hours"))
    await core_env.run()
    await core_env.advance(timedelta(minutes=95))  # T-30 is due 5 minutes late
    assert (
        metrics.registry.get_sample_value(
            "spaces_deliveries_total", {"platform": "console", "kind": "host_t30", "outcome": "sent"}
        )
        == 1.0
    )
    assert (
        metrics.registry.get_sample_value(
            "spaces_delivery_lateness_seconds_bucket", {"platform": "console", "le": "300.0"}
        )
        == 2.0
    )
