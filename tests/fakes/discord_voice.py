"""A Discord voice server emulator: the voice websocket (gateway v8) over TLS with a certificate made at run
time, UDP IP discovery, and RTP packets decrypted with ``aead_xchacha20_poly1305_rtpsize``.

It answers ``dave_protocol_version: 0`` (DAVE's MLS cannot be emulated), so every packet it receives decrypts to
the plain Opus frame the client sent, which tests can compare byte for byte.
"""

from __future__ import annotations

import asyncio
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
    """One voice websocket session (a bot in one guild's voice channel) and what its UDP socket received."""

    guild_id: str
    user_id: str
    session_id: str
    ssrc: int
    secret_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    identify: dict[str, Any] = field(default_factory=dict)
    selected: dict[str, Any] | None = None
    speaking: list[dict[str, Any]] = field(default_factory=list)
    heartbeats: int = 0
    frames: list[RtpFrame] = field(default_factory=list)
    undecryptable: int = 0

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
    """The voice endpoint. Hook it into the text gateway emulator with ``dc.voice = server.on_voice_state``."""

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
        ssrc = 1000 + len(self._pending) + len(self.connections)
        self._pending[token] = VoiceConnection(guild_id, user_id, session_id, ssrc)
        return token

    async def on_voice_state(self, dc: Any, session: Any, d: dict[str, Any]) -> None:
        """The text gateway's op 4: answer VOICE_STATE_UPDATE then VOICE_SERVER_UPDATE to the asking session."""
        if session is None or not d.get("guild_id"):
            return
        guild_id, channel_id = str(d["guild_id"]), d.get("channel_id")
        user_id = str(dc.bot.id)
        session_id = secrets.token_hex(16)
        state = {
            "guild_id": guild_id,
            "channel_id": str(channel_id) if channel_id else None,
            "user_id": user_id,
            "session_id": session_id,
            "deaf": False,
            "mute": False,
            "self_deaf": bool(d.get("self_deaf")),
            "self_mute": bool(d.get("self_mute")),
            "self_video": False,
            "suppress": False,
            "request_to_speak_timestamp": None,
            "member": dc.member(dc.guilds[int(guild_id)], int(user_id)).to_api(),
        }
        await dc._send_dispatch(session, "VOICE_STATE_UPDATE", state)
        if channel_id:
            token = self.expect(guild_id, user_id, session_id)
            server = {"token": token, "guild_id": guild_id, "endpoint": self.endpoint}
            await dc._send_dispatch(session, "VOICE_SERVER_UPDATE", server)

    async def _handle_ws(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        conn: VoiceConnection | None = None
        seq = 0

        async def send(op: int, d: Any) -> None:
            nonlocal seq
            seq += 1
            await ws.send_str(json.dumps({"op": op, "d": d, "seq": seq}))

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
                conn.identify = {k: v for k, v in d.items() if k != "token"}
                self.connections.append(conn)
                self._by_ssrc[conn.ssrc] = conn
                await send(8, {"heartbeat_interval": 13750.0})
                await send(2, {"ssrc": conn.ssrc, "ip": HOST, "port": self.udp_port, "modes": [MODE]})
            elif conn is None:
                await ws.close(code=4003, message=b"Not authenticated.")
                break
            elif op == 1:
                conn.selected = d
                mode = (d.get("data") or {}).get("mode")
                if mode != MODE:
                    await ws.close(code=4016, message=b"Unknown encryption mode.")
                    break
                await send(4, {"mode": MODE, "secret_key": list(conn.secret_key), "dave_protocol_version": 0})
            elif op == 3:
                conn.heartbeats += 1
                await send(6, {"t": d.get("t") if isinstance(d, dict) else d})  # v8 echoes the nonce
            elif op == 5:
                conn.speaking.append(d)
        return ws

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
