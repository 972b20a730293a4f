"""/healthz stays fast when the database is slow (a burst), and says "down" when it stops answering."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

import bots.web.app as web_app
from bots.web.app import WebDeps, make_web_app


class SlowOutbox:
    """An outbox whose counts take as long as the test says (a database busy with a burst)."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()
        self.hang = False

    async def counts(self) -> dict[str, int]:
        self.calls += 1
        if self.hang:
            await asyncio.Event().wait()  # never answers
        await self.release.wait()
        return {"pending": self.calls, "claimed": 0, "dead": 0}


class _Spaces:
    async def get(self, space_id: str) -> object:
        raise NotImplementedError

    async def subscriber_count(self, space_id: str) -> int:
        return 0


def _app(outbox: SlowOutbox) -> TestServer:
    deps = WebDeps(spaces=_Spaces(), outbox=outbox, registry=CollectorRegistry())  # type: ignore[arg-type]
    return TestServer(make_web_app(deps))


async def test_a_recent_check_is_reused_and_a_busy_database_never_holds_the_probe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(web_app, "HEALTH_FRESH", 0.05)
    outbox = SlowOutbox()
    async with TestClient(_app(outbox)) as client:
        outbox.release.set()
        first = await (await client.get("/healthz")).json()  # the first check is waited for
        assert first["ok"] is True and first["pending"] == 1
        outbox.release.clear()  # the database is now busy: its next answer is held
        await asyncio.sleep(0.1)  # the last check is older than HEALTH_FRESH (not HEALTH_STALE)
        resp = await client.get("/healthz")  # answered at once, from the last check; a new one started
        body = await resp.json()
        assert resp.status == 200 and body["pending"] == 1 and outbox.calls == 2
        for _ in range(5):  # probes meanwhile share that one check instead of queueing a query each
            assert (await client.get("/healthz")).status == 200
        assert outbox.calls == 2
        outbox.release.set()
        await asyncio.sleep(0.1)
        assert (await (await client.get("/healthz")).json())["pending"] >= 2


async def test_a_database_that_stops_answering_is_reported_down(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web_app, "HEALTH_TIMEOUT", 0.2)
    outbox = SlowOutbox()
    outbox.hang = True
    async with TestClient(_app(outbox)) as client:
        resp = await client.get("/healthz")
        assert resp.status == 503 and (await resp.json())["db"] == "error"
