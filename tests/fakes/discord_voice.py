"""A Discord voice server emulator: the voice websocket (gateway v8) over TLS with a certificate made at run
time, UDP IP discovery, and RTP packets decrypted with ``aead_xchacha20_poly1305_rtpsize``.

It answers ``dave_protocol_version: 0`` (DAVE's MLS cannot be emulated), so every packet it receives decrypts to
the plain Opus frame the client sent, which tests can compare byte for byte.

The text gateway emulator owns the voice *states* (who is in which channel, suppressed or not:
``DiscordEmulator.apply_voice_state``); this server owns the media sessions. A session survives its
websocket: a client may RESUME it (op 7, answered HELLO then RESUMED op 9) with the same token and session id
until the bot leaves or identifies again, as Discord documents; an unknown one is closed with 4006.

Faults, for tests: :meth:`VoiceServer.drop` closes a guild's live voice websocket with a close code (4015
"voice server crashed", the code after which a client should resume; 4006 "session no longer valid"…),
:meth:`VoiceServer.hard_drop` cuts its TCP connection without a close frame (the client sees 1006).
What arrived is kept per connection and, across a guild's successive connections, by :meth:`received`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import ssl
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web
from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_decrypt

MODE = "aead_xchacha20_poly1305_rtpsize"
HOST = "127.0.0.1"
SILENCE = b"\xf8\xff\xfe"


@dataclass(frozen=True)
class RtpFrame:
    """One decrypted RTP packet: when it arrived (monotonic seconds), its sequence, timestamp and Opus bytes."""

    arrived: float
    sequence: int
    timestamp: int
    opus: bytes


@dataclass
class VoiceConnection:
    """One voice session (a bot in one guild's voice channel, possibly over several resumed websockets) and
    what its UDP socket received."""

    guild_id: str
    user_id: str
    session_id: str
    ssrc: int
    token: str = ""
    secret_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    identify: dict[str, Any] = field(default_factory=dict)
    selected: dict[str, Any] | None = None
    speaking: list[dict[str, Any]] = field(default_factory=list)
    heartbeats: int = 0
    frames: list[RtpFrame] = field(default_factory=list)
    undecryptable: int = 0
    resumes: int = 0  # op 7 RESUMEs accepted
    closed_with: list[int] = field(default_factory=list)  # close codes the server (a test) ended sockets with
    ended: bool = False  # the bot left, or identified a new session: this one can no longer be resumed
    seq: int = 0  # the server's message sequence (v8), continued across resumes
    ws: web.WebSocketResponse | None = field(default=None, repr=False, compare=False)
    request: web.Request | None = field(default=None, repr=False, compare=False)

    @property
    def live(self) -> bool:
        """Its websocket is open now."""
        return self.ws is not None and not self.ws.closed

    def opus_frames(self) -> list[bytes]:
        """The audio frames alone: without the ``OpusHead``/``OpusTags`` packets discord.py forwards from an Ogg
        source and the 3-byte silence frames it sends when it stops."""
        return [
            f.opus
            for f in self.frames
            if f.opus != SILENCE and not f.opus.startswith((b"OpusHead", b"OpusTags"))
        ]


def make_test_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl: the ``cryptography`` package is not installed)."""
    cert, key = directory / "voice-cert.pem", directory / "voice-key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def decrypt_rtpsize(packet: bytes, key: bytes) -> tuple[int, int, int, bytes]:
    """(sequence, timestamp, ssrc, opus) of one ``aead_xchacha20_poly1305_rtpsize`` packet; raises on a bad tag."""
    header_len = 12
    if packet[0] & 0x10:  # the X bit: the 4-byte extension header is authenticated, not encrypted
        header_len += 4
    header, ciphertext, counter = packet[:header_len], packet[header_len:-4], packet[-4:]
    plain = crypto_aead_xchacha20poly1305_ietf_decrypt(ciphertext, header, counter + bytes(20), key)
    if packet[0] & 0x10:  # the extension body (length in 32-bit words) leads the decrypted payload
        (words,) = struct.unpack_from(">H", packet, 14)
        plain = plain[4 * words :]
    sequence, timestamp, ssrc = struct.unpack_from(">HII", packet, 2)
    return sequence, timestamp, ssrc, plain


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: VoiceServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.server._datagram(data, addr)


class VoiceServer:
    """The voice endpoint. Hook it into the text gateway emulator with ``dc.voice = server.on_voice_state``; give
    the client ``client_ssl`` (discord.py: ``DiscordPlatform(..., ssl_context=server.client_ssl)``)."""

    def __init__(self) -> None:
        self.connections: list[VoiceConnection] = []
        self._pending: dict[str, VoiceConnection] = {}  # by token, until the websocket IDENTIFYs
        self._by_ssrc: dict[int, VoiceConnection] = {}
        self._tmp = tempfile.TemporaryDirectory(prefix="voice-emu-")
        self._runner: web.AppRunner | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self.port = 0
        self.udp_port = 0
        self._client_ssl: ssl.SSLContext | None = None
        self._ssrcs = itertools.count(1000)
        self.leaves: list[str] = []  # guild ids the bot left (gateway op 4 with channel_id null)
        self.refused_resumes = 0

    async def start(self) -> VoiceServer:
        cert, key = make_test_certificate(Path(self._tmp.name))
        server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ssl.load_cert_chain(cert, key)
        self._client_ssl = ssl.create_default_context(cafile=str(cert))
        app = web.Application()
        app.router.add_get("/", self._handle_ws)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, 0, ssl_context=server_ssl)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        loop = asyncio.get_running_loop()
        self._udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), local_addr=(HOST, 0))
        self.udp_port = self._udp.get_extra_info("sockname")[1]
        return self

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._runner is not None:
            await self._runner.cleanup()
        self._tmp.cleanup()

    async def __aenter__(self) -> VoiceServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def client_ssl(self) -> ssl.SSLContext:
        """An SSL context trusting the test certificate: give discord.py a client built with
        ``connector=aiohttp.TCPConnector(ssl=server.client_ssl)`` (its voice websocket is always ``wss://``)."""
        assert self._client_ssl is not None, "start the voice server first"
        return self._client_ssl

    @property
    def endpoint(self) -> str:
        return f"{HOST}:{self.port}"

    def expect(self, guild_id: str, user_id: str, session_id: str) -> str:
        """Register a coming voice session and return its token (what VOICE_SERVER_UPDATE carries)."""
        token = secrets.token_hex(8)
        # unique for the server's life: a late packet of an old session never lands in a newer one
        ssrc = next(self._ssrcs)
        self._pending[token] = VoiceConnection(guild_id, user_id, session_id, ssrc, token=token)
        return token

    def attach(self, dc: Any) -> VoiceServer:
        """Serve ``dc``'s voice: its op 4s (:meth:`on_voice_state`) and its moderators' disconnects."""
        dc.voice = self.on_voice_state
        dc.voice_kicked = self.kicked
        return self

    async def kicked(self, guild_id: str) -> None:
        """The bot was disconnected by Discord (a moderator, a deleted channel): its session ends, its live
        websocket is closed with 4014, which tells a client not to reconnect."""
        for conn in self.connections_of(guild_id):
            conn.ended = True
        live = self.live(guild_id)
        if live is not None and live.ws is not None:
            live.closed_with.append(4014)
            await live.ws.close(code=4014, message=b"Disconnected.")

    async def on_voice_state(self, dc: Any, session: Any, d: dict[str, Any]) -> None:
        """The text gateway's op 4: the text emulator applies the voice state (VOICE_STATE_UPDATE, or nothing
        for a join Discord refuses); a join is then given a voice server (VOICE_SERVER_UPDATE, to the asking
        session only), a leave ends the guild's sessions."""
        state = await dc.apply_voice_state(session, d)
        if state is None:
            return
        guild_id = state["guild_id"]
        if state["channel_id"] is None:
            for conn in self.connections_of(guild_id):
                conn.ended = True
            self.leaves.append(guild_id)
            return
        token = self.expect(guild_id, state["user_id"], state["session_id"])
        server = {"token": token, "guild_id": guild_id, "endpoint": self.endpoint}
        await dc._send_dispatch(session, "VOICE_SERVER_UPDATE", server)

    # ------------------------------------------------------------------ what tests read and do

    def connections_of(self, guild_id: str | int) -> list[VoiceConnection]:
        """A guild's voice sessions, oldest first."""
        return [c for c in self.connections if c.guild_id == str(guild_id)]

    def live(self, guild_id: str | int) -> VoiceConnection | None:
        """The guild's session whose websocket is open now (the latest), if any."""
        return next((c for c in reversed(self.connections_of(guild_id)) if c.live), None)

    def received(self, guild_id: str | int) -> list[RtpFrame]:
        """Every packet a guild's channel received, across its successive sessions, in order."""
        return [f for c in self.connections_of(guild_id) for f in c.frames]

    def opus_frames(self, guild_id: str | int) -> list[bytes]:
        """The audio frames of :meth:`received` (``VoiceConnection.opus_frames``, session after session)."""
        return [f for c in self.connections_of(guild_id) for f in c.opus_frames()]

    async def drop(self, guild_id: str | int, code: int = 4015) -> VoiceConnection:
        """Close the guild's live voice websocket with ``code`` (4015: "voice server crashed", the client
        should resume; 4006: "session no longer valid", it must identify again). The UDP side stays up."""
        conn = self.live(guild_id)
        assert conn is not None and conn.ws is not None, f"no live voice connection in guild {guild_id}"
        if code == 4006:
            conn.ended = True
        conn.closed_with.append(code)
        await conn.ws.close(code=code, message=b"emulator: dropped by the test")
        return conn

    def hard_drop(self, guild_id: str | int) -> VoiceConnection:
        """Cut the guild's live voice websocket's TCP connection without a close frame (a network failure:
        the client sees 1006)."""
        conn = self.live(guild_id)
        assert conn is not None and conn.request is not None, f"no live voice connection in guild {guild_id}"
        conn.closed_with.append(1006)
        transport = conn.request.transport
        assert transport is not None
        transport.abort()
        return conn

    async def _handle_ws(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        conn: VoiceConnection | None = None

        async def send(op: int, d: Any) -> None:
            assert conn is not None
            conn.seq += 1
            await ws.send_str(json.dumps({"op": op, "d": d, "seq": conn.seq}))

        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                op, d = data.get("op"), data.get("d") or {}
                if op == 0:
                    conn = self._pending.pop(str(d.get("token")), None)
                    if conn is None or str(d.get("session_id")) != conn.session_id:
                        await ws.close(code=4004, message=b"Authentication failed.")
                        break
                    for old in self.connections_of(conn.guild_id):
                        old.ended = True  # a new session replaces the guild's previous one
                    conn.identify = {k: v for k, v in d.items() if k != "token"}
                    conn.ws, conn.request = ws, request
                    self.connections.append(conn)
                    self._by_ssrc[conn.ssrc] = conn
                    await send(8, {"heartbeat_interval": 13750.0})
                    await send(2, {"ssrc": conn.ssrc, "ip": HOST, "port": self.udp_port, "modes": [MODE]})
                elif op == 7:
                    conn = self._resumable(d)
                    if conn is None:
                        self.refused_resumes += 1
                        await ws.close(code=4006, message=b"Session is no longer valid.")
                        break
                    conn.resumes += 1
                    conn.ws, conn.request = ws, request
                    await send(8, {"heartbeat_interval": 13750.0})
                    await send(9, None)
                elif conn is None:
                    await ws.close(code=4003, message=b"Not authenticated.")
                    break
                elif op == 1:
                    conn.selected = d
                    mode = (d.get("data") or {}).get("mode")
                    if mode != MODE:
                        await ws.close(code=4016, message=b"Unknown encryption mode.")
                        break
                    await send(
                        4, {"mode": MODE, "secret_key": list(conn.secret_key), "dave_protocol_version": 0}
                    )
                elif op == 3:
                    conn.heartbeats += 1
                    await send(6, {"t": d.get("t") if isinstance(d, dict) else d})  # v8 echoes the nonce
                elif op == 5:
                    conn.speaking.append(d)
        finally:
            if conn is not None and conn.ws is ws:
                conn.ws = conn.request = None
        return ws

    def _resumable(self, d: dict[str, Any]) -> VoiceConnection | None:
        """The session an op 7 RESUME names (server id, session id and token must all match), unless it ended."""
        for conn in self.connections:
            if (
                conn.token == str(d.get("token"))
                and conn.session_id == str(d.get("session_id"))
                and conn.guild_id == str(d.get("server_id"))
                and not conn.ended
                and not conn.live
            ):
                return conn
        return None

    def _datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        now = time.monotonic()
        if len(data) == 74 and data[:2] == b"\x00\x01":  # IP discovery request
            (ssrc,) = struct.unpack_from(">I", data, 4)
            reply = (
                struct.pack(">HHI", 2, 70, ssrc)
                + addr[0].encode().ljust(64, b"\0")
                + struct.pack(">H", addr[1])
            )
            assert self._udp is not None
            self._udp.sendto(reply, addr)
            return
        if len(data) < 12 + 16 + 4 or data[0] >> 6 != 2:
            return
        (ssrc,) = struct.unpack_from(">I", data, 8)
        conn = self._by_ssrc.get(ssrc)
        if conn is None:
            return
        try:
            sequence, timestamp, _, opus = decrypt_rtpsize(data, conn.secret_key)
        except Exception:
            conn.undecryptable += 1
            return
        conn.frames.append(RtpFrame(now, sequence, timestamp, opus))
