"""The audio supervisor: one owner per live Space across processes, on the real lease (SQLite and PostgreSQL)
with a controllable clock. Two supervisors stand for two processes sharing one database; each test drives
their rounds (``step``) by hand, so who owns what is decided by the lease alone, never by timing.

The bridge is a small stand-in that runs a real ffmpeg child (so "no ffmpeg left behind" is checked on a real
process) and records the channels it was asked to join; the real Bridge is tested in its own files."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bots.audio.supervisor import (
    BROWSER_FAILED,
    JOIN_GRACE,
    LEASE_TTL,
    RENEW_EVERY,
    SOURCE_FAILED,
    VOICE_FAILED,
    AudioSupervisor,
    SpaceAudioHealth,
    holder_url,
    lease_name,
)
from core.audio import AudioSource, LinkState, SourceKind
from storage.db import make_engine
from storage.lease import SqlGatewayLease
from storage.migrate import upgrade
from tests.bots.audio.supervisor_fakes import (
    BRIDGED,
    OTHER_GUILD,
    VOICE,
    FakeAudio,
    Live,
    Process,
    Voice,
)
from tests.databases import BACKENDS, empty_tables, new_database
from tests.fakes.clock import FakeClock

# ------------------------------------------------------------------------------------------- databases


@pytest.fixture(scope="module", params=BACKENDS)
def migrated_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with new_database(request.param, tmp_path_factory.mktemp("db")) as url:
        asyncio.run(upgrade(url))
        yield url


@pytest.fixture
async def engine(migrated_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(migrated_url)
    await empty_tables(eng)
    try:
        yield eng
    finally:
        await eng.dispose()


# ------------------------------------------------------------------------------------------------ fakes


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def audio() -> FakeAudio:
    return FakeAudio(live={"space1": Live("space1", channels=(VOICE, BRIDGED))})


@pytest.fixture
async def two(
    engine: AsyncEngine, audio: FakeAudio, clock: FakeClock
) -> AsyncIterator[tuple[Process, Process]]:
    a = Process("a", engine, audio, clock, voice=[Voice({VOICE, BRIDGED, OTHER_GUILD})])
    b = Process("b", engine, audio, clock, voice=[Voice({VOICE, BRIDGED, OTHER_GUILD})])
    try:
        yield a, b
    finally:
        await a.sup.stop()
        await b.sup.stop()
        assert not a.running() and not b.running()


def _alive(pid: int) -> bool:
    """Is ``pid`` still a process (a zombie counts: it was not reaped)?"""
    return os.path.exists(f"/proc/{pid}")


async def _owner(engine: AsyncEngine, space_id: str, clock: FakeClock) -> str | None:
    grant = await SqlGatewayLease(engine).current(lease_name(space_id))
    return grant.holder if grant is not None and grant.until > clock.now() else None


# ------------------------------------------------------------------------------------------------ tests


async def test_two_processes_one_owner_and_the_other_relays_to_it(
    two: tuple[Process, Process], engine: AsyncEngine, clock: FakeClock
) -> None:
    a, b = two
    await asyncio.gather(a.sup.step(), b.sup.step())  # both try at the same instant
    owners = [p for p in (a, b) if p.sup.local("space1") is not None]
    assert len(owners) == 1
    owner, other = owners[0], b if owners[0] is a else a
    assert len(owner.running()) == 1 and other.bridges == []
    assert owner.running()[0].linked == [VOICE, BRIDGED]
    assert await _owner(engine, "space1", clock) == owner.sup.holder
    assert holder_url(owner.sup.holder) == owner.url
    assert await other.sup.owner_url("space1") == owner.url
    assert await owner.sup.owner_url("space1") is None  # its own: served here, never relayed
    assert await other.sup.owner_url("nothing") is None

    for _ in range(5):  # rounds go on, the lease is renewed, and ownership does not move
        clock.advance(RENEW_EVERY)
        await asyncio.gather(a.sup.step(), b.sup.step())
    assert len(owner.bridges) == 1 and len(owner.running()) == 1 and other.bridges == []
    grant = await SqlGatewayLease(engine).current(lease_name("space1"))
    assert grant is not None and grant.until > clock.now() + LEASE_TTL - RENEW_EVERY


async def test_an_owner_that_vanishes_is_taken_over_after_the_ttl_and_stops_if_it_wakes(
    two: tuple[Process, Process], engine: AsyncEngine, clock: FakeClock
) -> None:
    a, b = two
    await a.sup.step()
    await b.sup.step()
    assert a.sup.local("space1") is not None and b.sup.local("space1") is None

    # a stalls (killed, or frozen): it neither renews nor releases. b waits for the lease to run out.
    clock.advance(LEASE_TTL - timedelta(seconds=1))
    await b.sup.step()
    assert b.sup.local("space1") is None and b.bridges == []
    clock.advance(timedelta(seconds=1))
    await b.sup.step()
    assert b.sup.local("space1") is not None and len(b.running()) == 1
    assert b.running()[0].linked == [VOICE, BRIDGED]
    assert await _owner(engine, "space1", clock) == b.sup.holder
    assert await a.sup.owner_url("space1") == b.url

    # a wakes up: its renewal is refused (fenced), so it stops its bridge at once, ffmpeg reaped
    stale = a.bridges[0]
    assert stale.proc is not None
    await a.sup.step()
    assert a.sup.local("space1") is None and stale.stopped and stale.proc.returncode is not None
    assert not _alive(stale.proc.pid)
    assert len(a.bridges) == 1  # and it does not take it back
    assert await _owner(engine, "space1", clock) == b.sup.holder


async def test_a_clean_stop_hands_over_at_once(
    two: tuple[Process, Process], engine: AsyncEngine, clock: FakeClock
) -> None:
    a, b = two
    await a.sup.step()
    await b.sup.step()
    bridge = a.bridges[0]
    assert bridge.proc is not None
    await a.sup.stop()
    assert bridge.stopped and not _alive(bridge.proc.pid)
    assert await _owner(engine, "space1", clock) is None
    await b.sup.step()  # no clock advance: the lease was released, not left to run out
    assert b.sup.local("space1") is not None
    await a.sup.step()  # a stopped supervisor takes nothing back
    assert len(a.bridges) == 1


async def test_a_space_that_ends_stops_its_bridge_and_releases_its_lease(
    two: tuple[Process, Process], engine: AsyncEngine, audio: FakeAudio, clock: FakeClock
) -> None:
    a, b = two
    audio.live["space2"] = Live("space2", channels=())
    await a.sup.step()
    await b.sup.step()
    assert a.sup.spaces() == ["space1", "space2"] and b.bridges == []
    # the two bridges start together (one slow start holds up no other): find space1's by its id
    (first,) = [x for x in a.bridges if x.space_id == "space1"]
    assert first.proc is not None

    del audio.live["space1"]  # the host ended it
    await a.sup.step()
    assert first.stopped and first.linked == [] and not _alive(first.proc.pid)
    assert a.sup.spaces() == ["space2"] and a.sup.local("space1") is None
    grant = await SqlGatewayLease(engine).current(lease_name("space1"))
    assert grant is not None and grant.until <= clock.now()  # released
    await b.sup.step()
    assert b.bridges == []  # nobody takes an ended Space
    assert await b.sup.owner_url("space1") is None
    assert await b.sup.owner_url("space2") == a.url
    children = [c.proc.pid for c in a.bridges + b.bridges if c.proc is not None and c is not first]
    assert all(_alive(pid) for pid in children)  # the other Space plays on


async def test_channels_added_and_removed_while_live_are_joined_and_left(
    two: tuple[Process, Process], audio: FakeAudio, clock: FakeClock
) -> None:
    a, _ = two
    await a.sup.step()
    bridge = a.bridges[0]
    assert bridge.linked == [VOICE, BRIDGED]
    audio.live["space1"] = replace(audio.live["space1"], channels=(VOICE, OTHER_GUILD))
    clock.advance(timedelta(seconds=2))
    await a.sup.step()
    assert bridge.linked == [VOICE, OTHER_GUILD]
    audio.live["space1"] = replace(audio.live["space1"], channels=(VOICE,))
    await a.sup.step()
    await a.sup.step()
    assert bridge.linked == [VOICE]
    # joined once each: a channel is never asked twice (the bridge re-joins by itself when one drops)
    assert bridge.joins == [VOICE, BRIDGED, OTHER_GUILD]
    assert len(a.bridges) == 1 and not bridge.stopped


async def test_a_new_source_while_live_restarts_the_bridge(
    two: tuple[Process, Process], audio: FakeAudio
) -> None:
    a, _ = two
    await a.sup.step()
    old = a.bridges[0]
    audio.live["space1"] = replace(audio.live["space1"], source=AudioSource(SourceKind.BROWSER))
    await a.sup.step()
    assert old.stopped and len(a.bridges) == 2
    new = a.bridges[1]
    assert new.source.kind is SourceKind.BROWSER and new.linked == [VOICE, BRIDGED]
    assert a.sup.local("space1") is new


async def test_a_failing_source_is_reported_to_the_host_once(
    two: tuple[Process, Process], audio: FakeAudio
) -> None:
    a, _ = two
    await a.sup.step()
    bridge = a.bridges[0]
    # the bridge gives up on its source from its reader thread, and again later: one report
    thread = threading.Thread(target=bridge.on_source_failed, args=("HTTP 404 Not Found",))
    thread.start()
    thread.join()
    bridge.on_source_failed("HTTP 404 Not Found")
    for _ in range(3):
        await asyncio.sleep(0)
    await a.sup.step()
    assert audio.reports == [("space1", SOURCE_FAILED, {"detail": "HTTP 404 Not Found"})]


async def test_a_silent_browser_and_a_channel_given_up_are_reported_once_each(
    two: tuple[Process, Process], audio: FakeAudio
) -> None:
    a, _ = two
    audio.live["space1"] = replace(audio.live["space1"], source=AudioSource(SourceKind.BROWSER))
    await a.sup.step()
    bridge = a.bridges[0]
    bridge.on_source_failed("no data for 30 s")
    bridge.failed_channels[BRIDGED] = "missing permission Connect"
    for _ in range(3):
        await a.sup.step()
    assert audio.reports == [
        ("space1", BROWSER_FAILED, {"detail": "no data for 30 s"}),
        ("space1", VOICE_FAILED, {"channel": "<#501>", "detail": "missing permission Connect"}),
    ]


async def test_a_bridge_that_cannot_start_lets_another_process_take_the_space(
    engine: AsyncEngine, audio: FakeAudio, clock: FakeClock
) -> None:
    broken = Process("broken", engine, audio, clock, voice=[Voice({VOICE, BRIDGED})], fail_start=True)
    good = Process("good", engine, audio, clock, voice=[Voice({VOICE, BRIDGED})])
    try:
        await broken.sup.step()
        assert broken.sup.local("space1") is None and await _owner(engine, "space1", clock) is None
        await good.sup.step()
        assert good.sup.local("space1") is not None
    finally:
        await broken.sup.stop()
        await good.sup.stop()


async def test_the_process_that_can_join_the_voice_channels_gets_the_space_first(
    engine: AsyncEngine, audio: FakeAudio, clock: FakeClock
) -> None:
    # the Discord gateway (and so the voice connection) lives in "gw"; "web" serves pages only
    web = Process("web", engine, audio, clock, voice=[Voice(set())])
    gw = Process("gw", engine, audio, clock, voice=[Voice({VOICE, BRIDGED})])
    try:
        await web.sup.step()  # the web process sees it first, but leaves it for a grace period
        assert web.bridges == []
        await gw.sup.step()
        assert gw.sup.local("space1") is not None
        await _rounds(clock, JOIN_GRACE * 2, gw, web)  # gw lives: web never takes it
        assert web.bridges == [] and await web.sup.owner_url("space1") == gw.url

        # gw dies (the gateway with it): the grace counts from when the lease ran out, not from first sight,
        # so the process the gateway moves to gets there first
        clock.advance(LEASE_TTL)
        await web.sup.step()
        assert web.bridges == []
        gw2 = Process("gw2", engine, audio, clock, voice=[Voice({VOICE, BRIDGED})])
        clock.advance(JOIN_GRACE - timedelta(seconds=1))
        await web.sup.step()
        await gw2.sup.step()
        assert web.bridges == [] and gw2.sup.local("space1") is not None

        # without a process that can join, it is taken after the grace anyway (web listeners still hear it)
        await gw2.sup.stop()
        audio.live["space3"] = Live("space3", channels=(OTHER_GUILD,))
        await web.sup.step()
        assert web.bridges == []
        clock.advance(JOIN_GRACE)
        await web.sup.step()
        assert web.sup.spaces() == ["space1", "space3"]
    finally:
        await web.sup.stop()
        await gw.sup.stop()


async def _rounds(clock: FakeClock, span: timedelta, *processes: Process) -> None:
    """Let ``span`` pass, every process running a round at each renewal."""
    end = clock.now() + span
    while clock.now() < end:
        clock.advance(RENEW_EVERY)
        for p in processes:
            await p.sup.step()


async def test_health_per_space_owned_here_and_failed_only_when_something_gave_up(
    two: tuple[Process, Process],
) -> None:
    a, b = two
    await a.sup.step()
    await b.sup.step()
    assert b.sup.health() == {}
    h = a.sup.health()["space1"]
    assert isinstance(h, SpaceAudioHealth) and h.listeners == 3 and not h.failed
    assert h.as_json() == {
        "source": {"state": "playing", "reconnects": 2},
        "channels": {
            str(VOICE): {"state": "playing", "reconnects": 0},
            str(BRIDGED): {"state": "playing", "reconnects": 0},
        },
        "listeners": 3,
    }
    a.bridges[0].source_state = LinkState.RECONNECTING
    assert not a.sup.health()["space1"].failed
    a.bridges[0].source_state = LinkState.FAILED
    assert a.sup.health()["space1"].failed


async def test_the_background_loop_takes_a_space_on_kick(
    engine: AsyncEngine, audio: FakeAudio, clock: FakeClock
) -> None:
    audio.live.clear()
    p = Process("loop", engine, audio, clock, voice=[Voice({VOICE, BRIDGED})])
    p.sup = AudioSupervisor(
        audio, SqlGatewayLease(engine), p._make, worker_id="loop", clock=clock, poll_every=3600.0
    )
    await p.sup.start()
    try:
        assert p.bridges == []
        audio.live["space1"] = Live("space1", channels=())
        p.sup.kick()
        async with asyncio.timeout(10):
            await p.started.wait()  # the loop woke at once: its next poll is an hour away
    finally:
        await p.sup.stop()
    assert p.bridges[0].stopped and await _owner(engine, "space1", clock) is None
