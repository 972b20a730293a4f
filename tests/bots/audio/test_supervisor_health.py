"""What a process tells about the audio it runs: /healthz's audio section (degraded only when something gave
up) and the /metrics series, read from the supervisor through the web app as the composition root wires it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bots.app import audio_health
from bots.metrics import Metrics
from bots.web.app import WebDeps, make_web_app
from core.audio import LinkState
from tests.bots.audio.supervisor_fakes import BRIDGED, VOICE, FakeAudio, Live, Process, Voice
from tests.fakes.clock import FakeClock
from tests.fakes.memory import MemoryGatewayLease


class _Outbox:
    async def counts(self) -> dict[str, int]:
        return {"pending": 0, "claimed": 0, "dead": 0}


class _Spaces:
    async def get(self, space_id: str) -> object:
        raise NotImplementedError

    async def subscriber_count(self, space_id: str) -> int:
        return 0


@pytest.fixture
async def owner() -> AsyncIterator[Process]:
    audio = FakeAudio(live={"space1": Live("space1", channels=(VOICE, BRIDGED)), "space2": Live("space2")})
    p = Process("a", MemoryGatewayLease(), audio, FakeClock(), voice=[Voice({VOICE, BRIDGED})])
    await p.sup.step()
    try:
        yield p
    finally:
        await p.sup.stop()


def _client(p: Process, metrics: Metrics) -> TestClient[object, object]:
    metrics.watch_audio(p.sup.health)
    deps = WebDeps(
        spaces=_Spaces(),  # type: ignore[arg-type]
        outbox=_Outbox(),  # type: ignore[arg-type]
        registry=metrics.registry,
        audio_health=lambda: audio_health(p.sup.health()),
    )
    return TestClient(TestServer(make_web_app(deps)))


async def test_healthz_shows_each_space_run_here_and_is_degraded_only_by_a_failure(owner: Process) -> None:
    async with _client(owner, Metrics(delivers=False)) as client:
        resp = await client.get("/healthz")
        body = await resp.json()
        assert resp.status == 200 and body["ok"] is True and body["status"] == "ok"
        assert sorted(body["audio"]) == ["space1", "space2"]
        assert body["audio"]["space1"] == {
            "source": {"state": "playing", "reconnects": 2},
            "channels": {
                str(VOICE): {"state": "playing", "reconnects": 0},
                str(BRIDGED): {"state": "playing", "reconnects": 0},
            },
            "listeners": 3,
        }

        owner.bridges[0].source_state = LinkState.RECONNECTING  # recovering: not a failure
        assert (await (await client.get("/healthz")).json())["status"] == "ok"
        owner.bridges[1].failed_channels[VOICE] = "missing permission Speak"
        resp = await client.get("/healthz")
        body = await resp.json()
        assert resp.status == 200 and body["status"] == "degraded"
        assert body["audio"]["space2"]["channels"][str(VOICE)] == {
            "state": "failed",
            "reconnects": 0,
            "detail": "missing permission Speak",
        }


async def test_metrics_count_bridges_listeners_channels_by_state_and_restarts(owner: Process) -> None:
    owner.bridges[0].source_state = LinkState.RECONNECTING
    async with _client(owner, Metrics(delivers=False)) as client:
        text = await (await client.get("/metrics")).text()
    lines = {line for line in text.splitlines() if line.startswith("spaces_audio")}
    assert {
        "spaces_audio_bridges 2.0",
        "spaces_audio_listeners 6.0",
        'spaces_audio_sources{state="playing"} 1.0',
        'spaces_audio_sources{state="reconnecting"} 1.0',
        'spaces_audio_voice_channels{state="playing"} 3.0',
        "spaces_audio_source_restarts 4.0",
    } == lines
