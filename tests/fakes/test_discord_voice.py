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
from typing import Any

import aiohttp
import discord
import imageio_ffmpeg
import nacl.secret
import pytest

from tests.fakes.discord import STAGE, VOICE, DiscordEmulator, Perm, client_running, pointed_at
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


async def _identified(voice: VoiceServer, http: aiohttp.ClientSession) -> tuple[str, Any]:
    """A raw client's voice session in guild 1: (its token, its open websocket) after HELLO and READY."""
    token = voice.expect("1", "2", "sess")
    ws = await http.ws_connect(f"wss://{voice.endpoint}/?v=8", ssl=voice.client_ssl)
    await ws.send_json(
        {"op": 0, "d": {"server_id": "1", "user_id": "2", "session_id": "sess", "token": token}}
    )
    assert (await ws.receive_json(timeout=5))["op"] == 8
    assert (await ws.receive_json(timeout=5))["op"] == 2
    return token, ws


async def test_a_dropped_session_resumes_with_op_7_and_keeps_its_ssrc_and_key() -> None:
    async with VoiceServer() as voice, aiohttp.ClientSession() as http:
        token, ws = await _identified(voice, http)
        [conn] = voice.connections
        assert voice.live("1") is conn
        dropped = await voice.drop("1", 4015)  # "voice server crashed": the client should resume
        assert dropped is conn
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4015
        await ws.close()
        assert voice.live("1") is None
        resume = {"op": 7, "d": {"server_id": "1", "session_id": "sess", "token": token, "seq_ack": 2}}
        async with http.ws_connect(f"wss://{voice.endpoint}/?v=8", ssl=voice.client_ssl) as again:
            await again.send_json(resume)
            hello, resumed = await again.receive_json(timeout=5), await again.receive_json(timeout=5)
            assert (hello["op"], resumed["op"]) == (8, 9)
            assert resumed["seq"] > hello["seq"] > 2  # the session's sequence goes on
            assert voice.connections == [conn] and conn.resumes == 1 and voice.live("1") is conn
        assert conn.closed_with == [4015]


async def test_a_resume_of_an_unknown_or_ended_session_is_closed_with_4006() -> None:
    async with VoiceServer() as voice, aiohttp.ClientSession() as http:
        token, ws = await _identified(voice, http)
        await voice.drop("1", 4006)  # "session no longer valid": identify again
        await ws.close()
        for bad in ({"token": token}, {"token": "nope"}):
            d = {"server_id": "1", "session_id": "sess", "seq_ack": 0, **bad}
            async with http.ws_connect(f"wss://{voice.endpoint}/?v=8", ssl=voice.client_ssl) as again:
                await again.send_json({"op": 7, "d": d})
                msg = await again.receive(timeout=5)
                assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4006
        assert voice.refused_resumes == 2 and voice.connections[0].resumes == 0


async def test_hard_drop_cuts_the_connection_without_a_close_frame() -> None:
    async with VoiceServer() as voice, aiohttp.ClientSession() as http:
        _, ws = await _identified(voice, http)
        voice.hard_drop("1")
        msg = await ws.receive(timeout=5)
        assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
        assert ws.close_code in (None, 1006)
        await ws.close()
        assert voice.connections[0].closed_with == [1006] and voice.live("1") is None


async def test_voice_states_joins_refusals_and_the_stage_speaker_patch(tmp_path: Path) -> None:
    """The text gateway's side, with real discord.py: a join without Connect is ignored; on a stage the bot
    arrives suppressed and PATCH voice-states/@me follows Discord's rules (a moderator may unsuppress itself,
    a member may only request to speak; only on a stage it is in); each change is a VOICE_STATE_UPDATE."""
    async with DiscordEmulator() as dc, VoiceServer() as voice:
        dc.voice = voice.on_voice_state
        guild = dc.create_guild("Voice Lab")
        stage = dc.add_channel(guild, "Stage", STAGE)
        closed = dc.add_channel(guild, "Closed", VOICE)
        dc.set_overwrite(closed, dc.bot_role(guild), deny=Perm.CONNECT)
        with pointed_at(dc):
            connector = aiohttp.TCPConnector(ssl=voice.client_ssl)
            client = discord.Client(
                intents=discord.Intents.default(), guild_ready_timeout=0.05, connector=connector
            )
            async with client_running(dc, client):
                http = client.http
                with pytest.raises(discord.NotFound) as not_in:  # not in any voice channel yet
                    await http.edit_my_voice_state(guild.id, {"suppress": False})
                assert not_in.value.code == 10065
                door = client.get_channel(closed.id)
                assert isinstance(door, discord.VoiceChannel)
                with pytest.raises(asyncio.TimeoutError):
                    await door.connect(timeout=0.5)  # Discord ignores the op 4: the client waits in vain
                assert dc.voice_refused and dc.voice_refused[0][0] == guild.id
                assert voice.connections == []

                channel = client.get_channel(stage.id)
                assert isinstance(channel, discord.StageChannel)
                vc = await asyncio.wait_for(channel.connect(timeout=10), 12)
                state = dc.voice_state(guild)
                assert state is not None and state["suppress"] is True  # the audience
                with pytest.raises(discord.Forbidden):  # unsuppressing itself needs Mute Members
                    await http.edit_my_voice_state(guild.id, {"channel_id": stage.id, "suppress": False})
                await http.edit_my_voice_state(
                    guild.id, {"channel_id": stage.id, "request_to_speak_timestamp": "2026-01-01T00:00:00Z"}
                )
                dc.bot_role(guild).permissions |= Perm.MUTE_MEMBERS
                await http.edit_my_voice_state(guild.id, {"channel_id": stage.id, "suppress": False})
                me = channel.guild.me
                await dc.wait_until(lambda: me.voice is not None and not me.voice.suppress, what="a speaker")
                assert [body.get("suppress") for _, body in dc.voice_state_patches] == [None, False]
                await vc.disconnect()
                assert dc.voice_state(guild) is None and dc.voice_updates[-1]["channel_id"] is None
        # the refused join's clean-up left once, the stage's disconnect once more
        assert set(voice.leaves) == {str(guild.id)} and voice.connections[0].ended
