"""The other ends of the live-audio benchmark (bench/audio.py), each run in a process of its own (spawned),
so that the service process's busy event loop cannot skew what they stamp, and its CPU figure excludes them.

- :func:`voice_peer`: the Discord text gateway emulator with the voice server hooked into it, one guild with
  one voice channel per wanted channel; it stamps every RTP packet on arrival (``time.monotonic``: the
  system-wide clock, comparable with the service's).
- :func:`telegram_peer`: the Bot API emulator, rate limits lifted, with a host, a group and ``fans`` users
  who started the bot (ids known in advance: ``FAN_BASE + i``).
- :func:`listeners_peer`: ``n`` web listeners reading the Ogg stream over HTTP, counting bytes.

Each talks with the benchmark over a ``multiprocessing`` pipe: it sends its details once started, then
answers commands until ``"stop"``.
"""

from __future__ import annotations

import asyncio
import contextlib
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

HOST_ID = 4_000_001
GROUP_ID = -1_001_500_000_001
FAN_BASE = 5_000_000


async def _commands(conn: Connection) -> Any:
    """The next command from the benchmark (the pipe is read in a thread: the loop keeps serving)."""
    return await asyncio.to_thread(conn.recv)


# ----------------------------------------------------------------------------------------------- voice


def voice_peer(conn: Connection, channels: int) -> None:
    asyncio.run(_voice(conn, channels))


async def _voice(conn: Connection, channels: int) -> None:
    from tests.delivery.fleet import steady_emulator
    from tests.fakes.discord import VOICE, DiscordEmulator
    from tests.fakes.discord_voice import VoiceServer

    async with DiscordEmulator() as dc, VoiceServer() as voice:
        dc.voice = voice.on_voice_state
        chans = [dc.add_channel(dc.create_guild(f"Guild {i}"), "Live", VOICE) for i in range(channels)]
        cert = (Path(voice._tmp.name) / "voice-cert.pem").read_text()
        conn.send(
            {
                "token": dc.token,
                "base_url": dc.base_url,
                "gateway_url": dc.gateway_url,
                "ca": cert,
                "channels": [(c.guild_id, c.id) for c in chans],
            }
        )
        with steady_emulator():  # a full collection would pause the stamps, then stamp a queue at once
            while True:
                cmd = await _commands(conn)
                if cmd == "stop":
                    break
                if cmd == "arrivals":  # guild id -> arrival stamps of every packet, in order
                    conn.send(
                        {str(c.guild_id): [f.arrived for f in voice.received(c.guild_id or 0)] for c in chans}
                    )
        conn.send("stopped")


# ----------------------------------------------------------------------------------------------- telegram


def telegram_peer(conn: Connection, fans: int) -> None:
    asyncio.run(_telegram(conn, fans))


async def _telegram(conn: Connection, fans: int) -> None:
    from tests.delivery.fleet import steady_emulator
    from tests.fakes.telegram import TelegramEmulator

    async with TelegramEmulator(rate_limits=False) as tg:
        host = tg.create_user("Hana", id=HOST_ID, started=True)
        tg.create_group("Fans", id=GROUP_ID, creator=host)
        ids = {FAN_BASE + i for i in range(fans)}
        for uid in sorted(ids):
            tg.create_user(f"Fan{uid}", id=uid, started=True)
        conn.send({"token": tg.token, "base_url": tg.base_url, "file_url": tg.base_file_url})
        with steady_emulator():
            while True:
                cmd = await _commands(conn)
                if cmd == "stop":
                    break
                if isinstance(cmd, tuple) and cmd[0] == "received":  # fans with a copy of cmd[1:], last stamp
                    got = [
                        m
                        for m in tg.messages.values()
                        if m.chat_id in ids and m.from_bot and all(t in m.versions[0].text for t in cmd[1:])
                    ]
                    conn.send(
                        (
                            len({m.chat_id for m in got}),
                            len(got),
                            max((m.versions[0].time for m in got), default=0.0),
                        )
                    )
        conn.send("stopped")


# ----------------------------------------------------------------------------------------------- listeners


def listeners_peer(conn: Connection, url: str, n: int) -> None:
    asyncio.run(_listeners(conn, url, n))


async def _listeners(conn: Connection, url: str, n: int) -> None:
    import aiohttp

    received = [0] * n
    ended = [False] * n

    async def listen(i: int, session: aiohttp.ClientSession) -> None:
        try:
            async with session.get(url) as r:
                r.raise_for_status()
                async for chunk in r.content.iter_any():
                    received[i] += len(chunk)
        finally:
            ended[i] = True

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        tasks = [asyncio.create_task(listen(i, session)) for i in range(n)]
        conn.send("started")
        while True:
            cmd = await _commands(conn)
            if cmd == "stop":
                break
            if cmd == "count":  # (listeners still connected, bytes received by each)
                conn.send((sum(1 for e in ended if not e), list(received)))
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
    conn.send("stopped")
