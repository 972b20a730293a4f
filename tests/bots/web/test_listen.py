"""``/s/{id}/listen`` on a real bridge (real ffmpeg): what a web listener receives decodes to the offline
encode of the same file, a listener that never reads delays nobody, another web process relays the same
frames, and the share page embeds the player only when there is something to hear."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bots.audio.bridge import Bridge
from bots.audio.ffmpeg import offline_encode
from bots.audio.ogg import PRE_SKIP, OggWriter
from core.audio import SILENCE_FRAME, AudioSource, SourceKind
from core.models import SpaceStatus
from tests.bots.web.conftest import (
    FFMPEG,
    SPACE_ID,
    Directory,
    Received,
    Spaces,
    decode_pcm,
    eventually,
    listen,
    live_space,
    make_tone,
    web_app,
)

FRAMES = 100  # two seconds of audio per listener: enough to compare, short enough for a quick test


@pytest.fixture
def media(tmp_path: Path) -> Path:
    folder = tmp_path / "media"
    folder.mkdir()
    make_tone(folder / "music.wav", hz=523, seconds=4)
    return folder


@pytest.fixture
async def bridge(media: Path, spaces: Spaces, directory: Directory) -> AsyncIterator[Bridge]:
    spaces.add(live_space(source="file:music.wav"))
    b = Bridge(SPACE_ID, AudioSource(SourceKind.FILE, "music.wav"), ffmpeg=FFMPEG, media_dir=str(media))
    await b.start()
    directory.bridges[SPACE_ID] = b
    try:
        yield b
    finally:
        await b.stop()


@pytest.fixture
def offline(media: Path) -> list[bytes]:
    return offline_encode(str(media / "music.wav"), ffmpeg=FFMPEG)


def contiguous_in(packets: list[bytes], reference: list[bytes]) -> int:
    """Where ``packets`` sit in ``reference`` as one unbroken run (asserted); its start index."""
    assert packets, "no audio received"
    start = reference.index(packets[0])
    assert packets == reference[start : start + len(packets)], "a gap or a foreign frame in the stream"
    return start


async def test_a_web_listener_hears_the_offline_encode(
    client: TestClient[web.Request, web.Application], bridge: Bridge, offline: list[bytes]
) -> None:
    got = Received()
    listening = asyncio.create_task(listen(client, got))
    await eventually(lambda: len(got.audio()) >= FRAMES or listening.done(), what="two seconds of audio")
    # the listener stops here (a bridge stopped mid-file would flush its encoder: a last frame of its own)
    listening.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await listening
    audio = got.audio()
    start = contiguous_in(audio, offline)  # byte for byte the offline encoder's packets
    # and it decodes, as a browser's player would, to exactly the offline encode's sound over the same span
    lead = got.packets.index(audio[0])
    trail = len(got.packets) - lead - len(audio)
    reference = OggWriter()
    expected = [SILENCE_FRAME] * lead + offline[start : start + len(audio)] + [SILENCE_FRAME] * trail
    ogg = reference.headers() + reference.pages(expected)
    pcm = decode_pcm(got.complete())
    # at least FRAMES frames of stereo samples, less the encoder's pre-skip the decoder drops at the start
    # (a listener stopped at exactly FRAMES frames decodes to 312 samples fewer per channel)
    assert len(pcm) >= (FRAMES * 960 - PRE_SKIP) * 2
    assert pcm == decode_pcm(ogg)


async def test_a_listener_that_never_reads_delays_nobody(
    client: TestClient[web.Request, web.Application], bridge: Bridge, offline: list[bytes]
) -> None:
    # a raw socket that sends its request and never reads a byte, with the smallest receive buffer
    import socket

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    sock.connect((client.host, client.port))
    sock.setblocking(False)
    sock.sendall(f"GET /s/{SPACE_ID}/listen HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    try:
        await eventually(lambda: bridge.health().listeners == 1, what="the stalled listener connected")
        got = Received()
        listening = asyncio.create_task(listen(client, got))
        # three seconds: more than the hub keeps for a listener (150 frames) before dropping it
        await eventually(lambda: len(got.audio()) >= 150 or listening.done(), what="three seconds")
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
        contiguous_in(got.audio(), offline)  # every frame, in order, while the other read nothing
    finally:
        sock.close()
    await eventually(lambda: bridge.health().listeners == 0, what="both listeners forgotten")


class Tap:
    """The owner's bridge, keeping the bytes of every stream it serves (what went out of the owner)."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self.streams: list[bytearray] = []

    async def _tapped(self, sent: bytearray) -> AsyncIterator[bytes]:
        stream = self.bridge.ogg_stream()
        try:
            async for chunk in stream:
                sent += chunk
                yield chunk
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    def ogg_stream(self) -> AsyncIterator[bytes]:
        self.streams.append(bytearray())
        return self._tapped(self.streams[-1])

    def browser_input(self) -> object:
        return self.bridge.browser_input()


async def test_another_web_process_relays_the_same_bytes(
    spaces: Spaces, directory: Directory, bridge: Bridge, offline: list[bytes]
) -> None:
    """Two web apps on real ports: the front one owns nothing and forwards the owner's stream as it is."""
    tap = Tap(bridge)
    directory.bridges[SPACE_ID] = tap  # type: ignore[assignment]
    front_dir = Directory()
    async with (
        TestClient(TestServer(web_app(spaces, directory))) as owner,
        TestClient(TestServer(web_app(spaces, front_dir))) as front,
    ):
        front_dir.owners[SPACE_ID] = str(owner.make_url("/"))
        relayed = Received()
        listening = asyncio.create_task(listen(front, relayed))
        await eventually(lambda: len(relayed.audio()) >= FRAMES, what="two seconds through the relay")
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
        await eventually(lambda: bridge.health().listeners == 0, what="the relay let go of the owner")
    # byte for byte what the owner sent (the relay may have had a little more in flight when cut)
    assert len(tap.streams) == 1
    assert bytes(relayed.raw) == bytes(tap.streams[0][: len(relayed.raw)])
    contiguous_in(relayed.audio(), offline)
    assert directory.asked == []  # the owner, asked with relay=1, never looked for another owner


async def test_nothing_to_hear_is_a_clear_404(
    client: TestClient[web.Request, web.Application], spaces: Spaces, directory: Directory
) -> None:
    spaces.add(live_space())
    for path in (f"/s/{SPACE_ID}/listen", "/s/zzzzzzzzzz/listen", "/s/not-an-id/listen"):
        resp = await client.get(path, headers={"Accept-Language": "fr"})
        assert resp.status == 404
        assert "Rien à écouter" in await resp.text()
    directory.owners[SPACE_ID] = "http://127.0.0.1:9"  # an owner that does not answer: still a 404
    assert (await client.get(f"/s/{SPACE_ID}/listen")).status == 404
    directory.asked.clear()
    assert (await client.get(f"/s/{SPACE_ID}/listen?relay=1")).status == 404
    assert directory.asked == []  # relay=1: only what this process owns


async def test_a_listener_that_leaves_is_forgotten(
    client: TestClient[web.Request, web.Application], bridge: Bridge
) -> None:
    async with client.get(f"/s/{SPACE_ID}/listen") as resp:
        await resp.content.readexactly(100)
        assert bridge.health().listeners == 1
    await eventually(lambda: bridge.health().listeners == 0, what="the listener forgotten")


# ------------------------------------------------------------------------------------- the share page


async def test_the_share_page_embeds_a_player_when_live_with_audio(
    client: TestClient[web.Request, web.Application], spaces: Spaces
) -> None:
    from dataclasses import replace

    space = spaces.add(live_space(source="file:music.wav"))
    resp = await client.get(f"/s/{SPACE_ID}")
    page = await resp.text()
    assert '<h2 id="listen-label">Listen live</h2>' in page
    assert (
        f'<audio id="player" controls preload="none" src="/s/{SPACE_ID}/listen" aria-labelledby="listen-label">'
        in page
    )
    assert "media-src 'self'" in resp.headers["Content-Security-Policy"]

    # not live, or nothing to hear: the player waits hidden and without a source (the page's script
    # reveals it when the Space goes live, without a reload: bots/web/share.py)
    for other in (replace(space, audio_source=None), replace(space, status=SpaceStatus.SCHEDULED)):
        spaces.add(other)
        resp = await client.get(f"/s/{SPACE_ID}")
        page = await resp.text()
        assert '<section class="listen" id="listen" aria-labelledby="listen-label" hidden>' in page
        assert '<audio id="player" controls preload="none" aria-labelledby="listen-label">' in page
        assert "/listen" not in page.split("<script>")[0].replace("listen-label", "")


async def test_without_audio_in_this_deployment_nothing_changes(spaces: Spaces) -> None:
    spaces.add(live_space(source="file:music.wav"))
    async with TestClient(TestServer(web_app(spaces, None))) as c:
        assert "<audio" not in await (await c.get(f"/s/{SPACE_ID}")).text()
        assert (await c.get(f"/s/{SPACE_ID}/listen")).status == 404
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await c.ws_connect(f"/s/{SPACE_ID}/host/ws?key=x")


class FirehoseBridge:
    """A bridge that writes faster than anyone reads: 64 KB at a time, as fast as the socket takes it."""

    def __init__(self) -> None:
        self.open_streams = 0

    async def _stream(self) -> AsyncIterator[bytes]:
        self.open_streams += 1
        try:
            while True:
                yield b"\0" * 65536
                await asyncio.sleep(0)
        finally:
            self.open_streams -= 1

    def ogg_stream(self) -> AsyncIterator[bytes]:
        return self._stream()

    def browser_input(self) -> object:
        raise AssertionError("not a browser source")


async def test_a_client_that_stopped_reading_is_cut_off(
    client: TestClient[web.Request, web.Application],
    spaces: Spaces,
    directory: Directory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Its handler does not sit forever on a full socket: once a write has waited WRITE_TIMEOUT, the
    connection is dropped and the bridge's stream closed (the bridge drops it from its side much earlier)."""
    import socket

    from bots.web import listen as listen_module

    monkeypatch.setattr(listen_module, "WRITE_TIMEOUT", 0.3)
    spaces.add(live_space())
    directory.bridges[SPACE_ID] = firehose = FirehoseBridge()  # type: ignore[assignment]
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    sock.connect((client.host, client.port))
    sock.sendall(f"GET /s/{SPACE_ID}/listen HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    try:
        await eventually(lambda: firehose.open_streams == 1, what="streaming")
        await eventually(lambda: firehose.open_streams == 0, what="cut off and closed")
    finally:
        sock.close()
    assert f"web listener of space_id={SPACE_ID} stopped reading; cut off" in caplog.text
    assert "Traceback" not in caplog.text
    assert (await client.get("/healthz")).status == 200  # the server carries on


async def test_the_host_websocket_of_a_file_source_says_there_is_nothing_to_send(
    client: TestClient[web.Request, web.Application], bridge: Bridge
) -> None:
    from bots.web.host import CLOSE_NOT_BROWSER
    from tests.bots.web.conftest import HOST_KEY

    async with client.ws_connect(f"/s/{SPACE_ID}/host/ws?key={HOST_KEY}") as ws:
        msg = await ws.receive()
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == CLOSE_NOT_BROWSER


async def test_chromium_plays_the_share_pages_player(
    client: TestClient[web.Request, web.Application], bridge: Bridge, tmp_path: Path
) -> None:
    """The share page's <audio> plays the live stream in a real browser, under the page's CSP."""
    from tests.bots.web.conftest import chromium

    async with chromium(make_tone(tmp_path / "unused.wav", seconds=1)) as browser:
        await browser.page.goto(str(client.make_url(f"/s/{SPACE_ID}")))
        player = browser.page.get_by_role("region", name="Listen live").locator("audio")
        await player.evaluate("a => a.play()")
        # the browser decoded and played more than a second of the stream (progress, not a timing)
        await eventually(
            lambda: player.evaluate("a => a.currentTime > 1 && !a.paused && a.error === null"),
            what="playing",
        )
        assert bridge.health().listeners == 1
        assert browser.errors == [], browser.errors


async def test_an_unreadable_audio_lease_is_nothing_to_hear_not_a_crash(
    client: TestClient[web.Request, web.Application], directory: Directory, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(space_id: str) -> str | None:
        raise ConnectionError("database is down")

    monkeypatch.setattr(directory, "owner_url", broken)
    assert (await client.get(f"/s/{SPACE_ID}/listen")).status == 404
