"""The host's microphone page and its websocket: the key guards both, chunks reach the owning process's
bridge in order (relayed when another process owns it), and a real Chromium with a fake microphone (a
440 Hz WAV) streams a tone, driven by the keyboard alone."""

from __future__ import annotations

import asyncio
import contextlib
import html
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import pytest
from aiohttp import WSCloseCode, web
from aiohttp.test_utils import TestClient, TestServer

from bots.audio.bridge import Bridge
from bots.web.host import CLOSE_ENDED, CLOSE_NOT_LIVE, CLOSE_REPLACED, MAX_CHUNK, MIC_JS
from bots.web.pages import script_hash
from core.audio import SILENCE_FRAME, AudioSource, LinkState, SourceKind
from core.models import SpaceStatus
from tests.bots.web.conftest import (
    FFMPEG,
    HOST_KEY,
    SPACE_ID,
    Directory,
    Received,
    Spaces,
    chromium,
    decode_pcm,
    dominant_hz,
    eventually,
    listen,
    live_space,
    make_tone,
    web_app,
)

if TYPE_CHECKING:
    from playwright.async_api import Locator


class RecordingSession:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.closed = False
        self.broken = False  # the next write fails (the server then closes the socket: 1011)

    async def write(self, chunk: bytes) -> None:
        if self.closed:
            return  # a replaced session's writes are dropped (Bridge.BrowserInput)
        if self.broken:
            raise RuntimeError("the audio went away")
        self.chunks.append(chunk)

    async def close(self) -> None:
        self.closed = True


class RecordingBridge:
    """A bridge that keeps what each host session sent (the audio engine's own tests cover the decoding)."""

    def __init__(self) -> None:
        self.sessions: list[RecordingSession] = []

    def ogg_stream(self) -> AsyncIterator[bytes]:
        raise AssertionError("no listener in these tests")

    def browser_input(self) -> RecordingSession:
        if self.sessions:
            self.sessions[-1].closed = True  # replaced, as the real bridge does
        self.sessions.append(RecordingSession())
        return self.sessions[-1]

    def stop(self) -> None:
        for session in self.sessions:
            session.closed = True

    def received(self) -> bytes:
        return b"".join(b"".join(s.chunks) for s in self.sessions)


@pytest.fixture
def bridge(spaces: Spaces, directory: Directory) -> RecordingBridge:
    spaces.add(live_space())
    directory.bridges[SPACE_ID] = bridge = RecordingBridge()
    return bridge


def ws_path(key: str = HOST_KEY, space_id: str = SPACE_ID) -> str:
    return f"/s/{space_id}/host/ws?key={key}"


# -------------------------------------------------------------------------------------------- the page


async def test_the_host_page_in_the_hosts_language_with_its_script_pinned(
    client: TestClient[web.Request, web.Application], bridge: RecordingBridge
) -> None:
    resp = await client.get(
        f"/s/{SPACE_ID}/host?key={HOST_KEY}", headers={"Accept-Language": "fr-CA,fr;q=0.8"}
    )
    assert resp.status == 200
    page = await resp.text()
    assert "Parler dans « Friday jam »" in page
    assert ">Commencer à parler</button>" in page
    assert "Gardez ce lien privé" in page
    assert '<meter id="level"' in page and 'role="status"' in page
    assert f"<script>{MIC_JS}</script>" in page
    policy = resp.headers["Content-Security-Policy"]
    assert f"script-src '{script_hash(MIC_JS)}'" in policy
    assert "connect-src 'self'" in policy and "default-src 'none'" in policy
    assert "frame-ancestors 'none'" in policy
    assert resp.headers["Cache-Control"] == "no-store"  # the page's URL is the host's secret
    assert resp.headers["Referrer-Policy"] == "no-referrer"


async def test_a_space_whose_source_is_not_the_browser_says_so(
    client: TestClient[web.Request, web.Application], spaces: Spaces
) -> None:
    spaces.add(live_space(source="rtmp://live.example/app/SECRET-STREAM-KEY"))
    page = await (await client.get(f"/s/{SPACE_ID}/host?key={HOST_KEY}")).text()
    assert html.escape("This Space's audio comes from “rtmp://live.example/…”") in page
    assert "SECRET" not in page  # a stream key stays off a page a host may be sharing on screen
    spaces.add(live_space(source=None))
    page = await (await client.get(f"/s/{SPACE_ID}/host?key={HOST_KEY}")).text()
    assert "This Space has no audio source yet" in page


@pytest.mark.parametrize("query", ["", "?key=", "?key=wrong", f"?key={HOST_KEY}x", "?key=" + "k" * 500])
async def test_a_wrong_key_is_an_unknown_space(
    client: TestClient[web.Request, web.Application], bridge: RecordingBridge, query: str
) -> None:
    unknown = await client.get("/s/zzzzzzzzzz/host" + query)
    resp = await client.get(f"/s/{SPACE_ID}/host{query}")
    assert resp.status == unknown.status == 404
    # the same page as an unknown Space (only the id it repeats differs): nothing says this one exists
    assert (await resp.text()).replace(SPACE_ID, "ID") == (await unknown.text()).replace("zzzzzzzzzz", "ID")
    assert "Friday jam" not in await resp.text()
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect(f"/s/{SPACE_ID}/host/ws{query}")
    assert refused.value.status == 404
    assert bridge.sessions == []  # refused before any session began


# ---------------------------------------------------------------------------------------- the websocket


async def test_binary_messages_reach_the_bridge_in_order_and_the_session_ends_with_the_socket(
    client: TestClient[web.Request, web.Application], bridge: RecordingBridge
) -> None:
    async with client.ws_connect(ws_path()) as ws:
        for i in range(20):
            await ws.send_bytes(bytes([i]) * (1000 + i))
    await eventually(lambda: bridge.sessions and bridge.sessions[0].closed, what="session closed")
    assert bridge.sessions[0].chunks == [bytes([i]) * (1000 + i) for i in range(20)]
    async with client.ws_connect(ws_path()) as ws:  # a reconnect is a new session (a new WebM header)
        await ws.send_bytes(b"again")
    await eventually(lambda: len(bridge.sessions) == 2 and bridge.sessions[1].closed, what="2nd session")
    assert bridge.sessions[1].chunks == [b"again"]


async def test_a_second_page_takes_over_and_the_first_is_told(
    client: TestClient[web.Request, web.Application], bridge: RecordingBridge
) -> None:
    async with client.ws_connect(ws_path()) as laptop:
        await laptop.send_bytes(b"laptop 1")
        await eventually(lambda: bridge.sessions and bridge.sessions[0].chunks, what="laptop heard")
        async with client.ws_connect(ws_path()) as phone:
            await phone.send_bytes(b"phone 1")
            await eventually(lambda: len(bridge.sessions) == 2 and bridge.sessions[1].chunks, what="phone")
            await laptop.send_bytes(b"laptop 2")
            msg = await laptop.receive()
            assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == CLOSE_REPLACED
            await phone.send_bytes(b"phone 2")
            await eventually(lambda: len(bridge.sessions[1].chunks) == 2, what="phone goes on")
    assert [s.chunks for s in bridge.sessions] == [[b"laptop 1"], [b"phone 1", b"phone 2"]]


async def test_a_bridge_that_stops_under_the_host_sends_the_page_to_reconnect(
    client: TestClient[web.Request, web.Application], bridge: RecordingBridge
) -> None:
    async with client.ws_connect(ws_path()) as ws:
        await ws.send_bytes(b"one")
        await eventually(lambda: bridge.sessions and bridge.sessions[0].chunks, what="heard")
        bridge.stop()  # the Space's audio stops or moves to another process: not "another page"
        await ws.send_bytes(b"two")
        msg = await ws.receive()
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == WSCloseCode.GOING_AWAY


async def test_text_and_oversized_messages_close_the_socket(
    client: TestClient[web.Request, web.Application], bridge: RecordingBridge
) -> None:
    async with client.ws_connect(ws_path()) as ws:
        await ws.send_str("hello")
        msg = await ws.receive()
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == WSCloseCode.UNSUPPORTED_DATA
    async with client.ws_connect(ws_path()) as ws:
        await ws.send_bytes(b"x" * (MAX_CHUNK + 1))
        msg = await ws.receive()
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == WSCloseCode.MESSAGE_TOO_BIG
    await eventually(lambda: all(s.closed for s in bridge.sessions), what="sessions closed")
    assert [s.chunks for s in bridge.sessions] == [[], []]


async def test_a_space_without_audio_yet_says_wait_and_an_ended_one_says_stop(
    client: TestClient[web.Request, web.Application], spaces: Spaces
) -> None:
    spaces.add(live_space())
    async with client.ws_connect(ws_path()) as ws:
        msg = await ws.receive()
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == CLOSE_NOT_LIVE
    spaces.add(replace(live_space(), status=SpaceStatus.ENDED))
    async with client.ws_connect(ws_path()) as ws:
        msg = await ws.receive()
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == CLOSE_ENDED


async def test_another_process_relays_the_host_to_the_owner(spaces: Spaces) -> None:
    """Two web apps on real ports: the front one owns nothing and forwards the websocket to the owner."""
    owner_dir, front_dir = Directory(), Directory()
    spaces.add(live_space())
    owner_dir.bridges[SPACE_ID] = bridge = RecordingBridge()
    async with (
        TestClient(TestServer(web_app(spaces, owner_dir))) as owner,
        TestClient(TestServer(web_app(spaces, front_dir))) as front,
    ):
        front_dir.owners[SPACE_ID] = str(owner.make_url("/"))
        async with front.ws_connect(ws_path()) as ws:
            for i in range(10):
                await ws.send_bytes(b"chunk%d" % i)
        await eventually(lambda: bridge.sessions and bridge.sessions[0].closed, what="relayed session ended")
        assert bridge.sessions[0].chunks == [b"chunk%d" % i for i in range(10)]
        assert owner_dir.asked == []  # relay=1: the owner never looks elsewhere (no loops)

        # the owner's close code reaches the browser through the relay (here: not live any more)
        del owner_dir.bridges[SPACE_ID]
        async with front.ws_connect(ws_path()) as ws:
            msg = await ws.receive()
            assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == CLOSE_NOT_LIVE

        # a wrong key is refused by the front process before anything reaches the owner
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await front.ws_connect(ws_path(key="nope"))


# ------------------------------------------------------------------------------------------ the browser


async def test_chromium_speaks_to_web_listeners_driven_by_the_keyboard(
    client: TestClient[web.Request, web.Application], spaces: Spaces, directory: Directory, tmp_path: Path
) -> None:
    """The whole path: Chromium's fake microphone (440 Hz) → MediaRecorder → the websocket → the bridge's
    ffmpeg → the frame hub → a web listener's Ogg stream, decoded by ffmpeg to a 440 Hz tone."""
    spaces.add(live_space())
    mic = make_tone(tmp_path / "tone.wav", hz=440, seconds=5)
    async with live_browser_bridge(directory) as bridge, chromium(mic) as browser:
        page = browser.page
        got = Received()
        async with listening(client, got):
            await page.goto(str(client.make_url(f"/s/{SPACE_ID}/host?key={HOST_KEY}")))
            # keyboard only: the button is the first stop of the tab order, and Enter presses it
            await page.keyboard.press("Tab")
            assert await page.evaluate("document.activeElement.id") == "start"
            await page.keyboard.press("Enter")
            state = page.locator("#mic")
            await eventually(lambda: _is(state, "mic_live"), what="on air")
            # its name says what it does now (no aria-pressed: a toggle's name must not change)
            assert await page.get_by_role("button", name="Stop").is_visible()
            await eventually(lambda: voiced(got) >= 100, what="2 s of the host at the listener")
            level = float(await page.locator("#level").get_attribute("value") or 0)
            await page.keyboard.press("Enter")  # Stop, still on the focused button
            await eventually(lambda: _is(state, "mic_idle"), what="stopped")
            assert await page.locator("#start").inner_text() == "Start speaking"
            # the page closed its socket: the session ended (the bridge waits for the host again)
            await eventually(lambda: bridge.health().source.state is LinkState.RECONNECTING, what="ended")
        assert browser.errors == [], browser.errors
    assert level > 0  # the meter moved with the tone
    assert_440(got, "host microphone → web listener")


async def test_chromium_speaks_through_another_web_process(
    spaces: Spaces, directory: Directory, tmp_path: Path
) -> None:
    """The host's page and the listener both on a web process that does not own the audio: the websocket
    and the stream are relayed to the owner, and the listener still hears the host's 440 Hz."""
    spaces.add(live_space())
    mic = make_tone(tmp_path / "tone.wav", hz=440, seconds=5)
    front_dir = Directory()
    async with (
        live_browser_bridge(directory),
        TestClient(TestServer(web_app(spaces, directory))) as owner,
        TestClient(TestServer(web_app(spaces, front_dir))) as front,
        chromium(mic) as browser,
    ):
        front_dir.owners[SPACE_ID] = str(owner.make_url("/"))
        got = Received()
        async with listening(front, got):
            await browser.page.goto(str(front.make_url(f"/s/{SPACE_ID}/host?key={HOST_KEY}")))
            await browser.page.get_by_role("button", name="Start speaking").click()
            await eventually(lambda: _is(browser.page.locator("#mic"), "mic_live"), what="on air")
            await eventually(lambda: voiced(got) >= 100, what="2 s of the host through the relay")
        assert browser.errors == [], browser.errors
    assert directory.asked == []  # the owner never looked further
    assert_440(got, "host microphone → relay → owner → relay → web listener")


@contextlib.asynccontextmanager
async def live_browser_bridge(directory: Directory) -> AsyncIterator[Bridge]:
    """The engine's real Bridge for a BROWSER source, owned by ``directory``'s process; stopped after."""
    bridge = Bridge(SPACE_ID, AudioSource(SourceKind.BROWSER), ffmpeg=FFMPEG, media_dir=None)
    await bridge.start()
    directory.bridges[SPACE_ID] = bridge
    try:
        yield bridge
    finally:
        await bridge.stop()


@contextlib.asynccontextmanager
async def listening(client: TestClient[web.Request, web.Application], got: Received) -> AsyncIterator[None]:
    task = asyncio.create_task(listen(client, got))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def voiced(got: Received) -> int:
    return sum(p != SILENCE_FRAME for p in got.packets)


def assert_440(got: Received, path: str) -> None:
    hz = dominant_hz(decode_pcm(got.complete()))
    print(f"{path}: {hz:.1f} Hz")
    assert 425 < hz < 455, hz  # ±3 %: a 440 Hz tone (the file source in test_listen is 523 Hz)


async def _is(state: Locator, expected: str) -> bool:
    return await state.get_attribute("data-state") == expected


async def test_chromium_waits_for_the_space_reconnects_and_stops_when_it_ends(
    client: TestClient[web.Request, web.Application], spaces: Spaces, directory: Directory, tmp_path: Path
) -> None:
    space = spaces.add(live_space())  # live, but its audio has not started in any process yet
    mic = make_tone(tmp_path / "tone.wav", hz=440, seconds=2)
    async with chromium(mic, locale="fr-FR", extra_http_headers={"Accept-Language": "fr"}) as browser:
        page = browser.page
        await page.goto(str(client.make_url(f"/s/{SPACE_ID}/host?key={HOST_KEY}")))
        await page.get_by_role("button", name="Commencer à parler").click()
        state = page.locator("#mic")
        await eventually(lambda: _is(state, "mic_waiting"), what="waiting")
        assert "En attente du direct" in await page.locator("#state").inner_text()

        directory.bridges[SPACE_ID] = bridge = RecordingBridge()  # the Space's audio starts
        await eventually(lambda: _is(state, "mic_live"), what="live after waiting")
        await eventually(lambda: bridge.sessions and len(bridge.sessions[0].chunks) >= 2, what="chunks")

        bridge.sessions[0].broken = True  # the connection fails: the page reconnects by itself
        await eventually(lambda: len(bridge.sessions) == 2 and bridge.sessions[1].chunks, what="reconnected")
        assert await _is(state, "mic_live")
        for session in bridge.sessions:  # each connection is a whole recording, from its header on
            assert session.chunks[0].startswith((b"\x1a\x45\xdf\xa3", b"OggS"))  # WebM's EBML, or Ogg

        spaces.add(replace(space, status=SpaceStatus.ENDED))  # the Space ends
        del directory.bridges[SPACE_ID]
        bridge.sessions[1].broken = True
        await eventually(lambda: _is(state, "mic_ended"), what="told it ended")
        assert "Ce Space est terminé" in await page.locator("#state").inner_text()
        assert await page.locator("#start").inner_text() == "Commencer à parler"


async def test_a_refused_microphone_is_explained(
    client: TestClient[web.Request, web.Application], bridge: RecordingBridge, tmp_path: Path
) -> None:
    mic = make_tone(tmp_path / "tone.wav", seconds=1)
    async with chromium(mic, answer_prompts=False) as browser:
        page = browser.page
        await page.goto(str(client.make_url(f"/s/{SPACE_ID}/host?key={HOST_KEY}")))
        await page.get_by_role("button", name="Start speaking").click()
        await eventually(lambda: _is(page.locator("#mic"), "mic_denied"), what="denied")
        assert "The browser blocked the microphone" in await page.get_by_role("status").inner_text()
        assert await page.locator("#start").inner_text() == "Start speaking"
    assert bridge.sessions == []  # nothing was connected
