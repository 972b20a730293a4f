"""The voice emulator: its own handshake and IP discovery with a raw client, then real discord.py joining a voice
channel through it and playing a sine: every RTP packet decrypts, in order, at a 20 ms rhythm."""

from __future__ import annotations

import asyncio
import itertools
import math
import socket
import struct
import wave
from pathlib import Path

import aiohttp
import discord
import imageio_ffmpeg
import nacl.secret

from tests.fakes.discord import VOICE, DiscordEmulator, client_running, pointed_at
from tests.fakes.discord_voice import MODE, VoiceServer, decrypt_rtpsize


def _sine_wav(path: Path, seconds: float = 2.0, rate: int = 48000) -> Path:
    frames = b"".join(
        struct.pack("<hh", v, v)
        for v in (int(8000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(int(seconds * rate)))
    )
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return path


def test_decrypt_rtpsize_round_trips_what_discord_py_sends() -> None:
    key = bytes(range(32))
    header = bytes([0x80, 0x78]) + struct.pack(">HII", 7, 960, 1234)
    nonce = struct.pack(">I", 5) + bytes(20)
    packet = header + nacl.secret.Aead(key).encrypt(b"opus!", header, nonce).ciphertext + nonce[:4]
    assert decrypt_rtpsize(packet, key) == (7, 960, 1234, b"opus!")


def test_decrypt_rtpsize_strips_an_encrypted_header_extension_body() -> None:
    key = bytes(range(32))
    # X bit set: the 4-byte extension header (profile, length in words) is authenticated, its body encrypted
    header = bytes([0x90, 0x78]) + struct.pack(">HII", 8, 1920, 99) + b"\xbe\xde\x00\x01"
    nonce = struct.pack(">I", 6) + bytes(20)
    sealed = nacl.secret.Aead(key).encrypt(b"\x10\x00\x00\x00" + b"opus", header, nonce).ciphertext
    assert decrypt_rtpsize(header + sealed + nonce[:4], key) == (8, 1920, 99, b"opus")


async def test_an_unknown_voice_token_is_refused() -> None:
    async with VoiceServer() as voice:
        voice.expect("1", "2", "sess")
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(f"wss://{voice.endpoint}/?v=8", ssl=voice.client_ssl) as ws,
        ):
            await ws.send_json(
                {"op": 0, "d": {"server_id": "1", "user_id": "2", "session_id": "sess", "token": "x"}}
            )
            msg = await ws.receive(timeout=5)
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4004
        assert voice.connections == []


async def test_raw_handshake_ip_discovery_and_session_description() -> None:
    async with VoiceServer() as voice:
        token = voice.expect("1", "2", "sess")
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(f"wss://{voice.endpoint}/?v=8", ssl=voice.client_ssl) as ws,
        ):
            await ws.send_json(
                {"op": 0, "d": {"server_id": "1", "user_id": "2", "session_id": "sess", "token": token}}
            )
            hello, ready = await ws.receive_json(timeout=5), await ws.receive_json(timeout=5)
            assert hello["op"] == 8 and ready["op"] == 2
            assert MODE in ready["d"]["modes"]
            ssrc = ready["d"]["ssrc"]
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            await loop.sock_connect(sock, (ready["d"]["ip"], ready["d"]["port"]))
            await loop.sock_sendall(sock, struct.pack(">HHI", 1, 70, ssrc) + bytes(66))
            reply = await asyncio.wait_for(loop.sock_recv(sock, 74), 5)
            assert len(reply) == 74 and reply[:2] == b"\x00\x02"
            ip = reply[8 : reply.index(0, 8)].decode()
            (port,) = struct.unpack_from(">H", reply, 72)
            assert (ip, port) == sock.getsockname()
            await ws.send_json(
                {"op": 1, "d": {"protocol": "udp", "data": {"address": ip, "port": port, "mode": MODE}}}
            )
            desc = await ws.receive_json(timeout=5)
            assert desc["op"] == 4 and desc["d"]["dave_protocol_version"] == 0
            key = bytes(desc["d"]["secret_key"])
            assert len(key) == 32
            await ws.send_json({"op": 3, "d": {"t": 42, "seq_ack": 3}})
            assert (await ws.receive_json(timeout=5))["op"] == 6
            header = bytes([0x80, 0x78]) + struct.pack(">HII", 1, 0, ssrc)
            nonce = bytes(24)
            box = nacl.secret.Aead(key).encrypt(b"frame", header, nonce).ciphertext
            await loop.sock_sendall(sock, header + box + nonce[:4])
            for _ in range(50):
                if voice.connections[0].frames:
                    break
                await asyncio.sleep(0.02)
            sock.close()
        assert [f.opus for f in voice.connections[0].frames] == [b"frame"]


async def test_discord_py_joins_a_voice_channel_and_every_packet_decrypts(tmp_path: Path) -> None:
    wav = _sine_wav(tmp_path / "sine.wav")
    async with DiscordEmulator() as dc, VoiceServer() as voice:
        dc.voice = voice.on_voice_state
        guild = dc.create_guild("Voice Lab")
        channel_id = dc.add_channel(guild, "Stage", VOICE).id
        with pointed_at(dc):
            # the voice websocket is always wss://: the client's own connector trusts the test certificate
            connector = aiohttp.TCPConnector(ssl=voice.client_ssl)
            client = discord.Client(
                intents=discord.Intents.default(), guild_ready_timeout=0.05, connector=connector
            )
            async with client_running(dc, client):
                channel = client.get_channel(channel_id)
                assert isinstance(channel, discord.VoiceChannel)
                vc: discord.VoiceClient = await asyncio.wait_for(channel.connect(timeout=10), 12)
                done = asyncio.Event()
                loop = asyncio.get_running_loop()
                source = discord.FFmpegOpusAudio(str(wav), executable=imageio_ffmpeg.get_ffmpeg_exe())
                vc.play(source, after=lambda _err: loop.call_soon_threadsafe(done.set))
                await asyncio.wait_for(done.wait(), 10)
                await vc.disconnect()
    [conn] = voice.connections
    # discord.py with davey offers DAVE, and plays without it when the server answers version 0
    assert conn.identify["max_dave_protocol_version"] >= 1
    assert conn.undecryptable == 0
    assert len(conn.opus_frames()) >= 95  # 2 s of 20 ms frames
    assert {b.timestamp - a.timestamp for a, b in itertools.pairwise(conn.frames)} == {960}
    frames = conn.frames
    assert len(frames) >= 90
    seqs = [f.sequence for f in frames]
    assert seqs == [(seqs[0] + i) % 65536 for i in range(len(seqs))]
    # arrival times are recorded (frame.arrived) for the pacing benchmark; a test asserts no timings
    assert all(b.arrived >= a.arrived for a, b in itertools.pairwise(frames))
