"""Discord's side of a live Space's audio: :class:`core.ports.VoiceBridge` on discord.py's voice.

Every joined channel plays the same shared feed: each has a reader of it, and ONE pump thread for all the
channels of this process (bots/discord/pump.py) hands discord.py the Opus packets the Space's one ffmpeg made
(``send_audio_packet(encode=False)``: nothing is decoded or encoded here), so N channels cost one encode and one
thread. The audio stays off the event loop: the pump reads the readers every 20 ms and sends the UDP packets
itself; the loop only runs the handshakes and a light watchdog per channel.

Reconnecting: discord.py restores a dropped voice websocket itself after most close codes (a fresh handshake,
as for 4006 "session no longer valid"). It does not always manage: in 2.7 its resume after 4015 ("voice server
crashed") sends a new gateway op 4 and then waits for an update order Discord does not send, and after a TCP
reset its UDP reader can sit up to 30 s in a select on the closed socket. So a watchdog per channel gives it
``restore_grace``, then tears the connection down and joins again with backoff. It judges from the connection
and from the pump's counts for the channel: sends failing in a row count as a lost connection, and a channel
whose reader ended gets a new reader. :meth:`DiscordVoice.voice_health` says RECONNECTING meanwhile and counts
every recovery.

Discord's rules applied before connecting (so a refusal is a plain ChatUnavailable, not a 30-s timeout):
Connect (and View Channel) to join; Speak to be heard in a voice channel; on a stage the bot arrives in the
audience and becomes a speaker itself with Mute Members (a stage moderator), or else requests to speak and
waits for a moderator. One voice connection per server (Discord allows a bot no more).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import discord

from bots.discord.pump import Lane, Pump
from core.audio import LinkHealth, LinkState
from core.errors import ChatUnavailable, TransientError
from core.ports import FrameFeed
from core.refs import ChatRef

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 20.0  # seconds for one voice handshake
RESTORE_GRACE = 5.0  # seconds discord.py may take to restore a drop itself (~0-2 s backoff + handshake)
CHECK_EVERY = 0.25  # seconds between two looks of the watchdog (a few attribute reads: cheap on the loop)
BACKOFF_FIRST = 1.0  # seconds before the first re-join, doubling up to BACKOFF_MAX
BACKOFF_MAX = 30.0
LEAVE_TIMEOUT = 5.0  # seconds leaving may wait for Discord's confirmation and the pump's goodbye
SEND_FAILURES = 50  # sends failing in a row (a second of audio) that count as a lost connection

VocalChannel = discord.VoiceChannel | discord.StageChannel


class _VoiceClient(discord.VoiceClient):
    """discord.py's voice client, waking the link's watchdog when Discord moves the connection (a voice
    state or voice server update after the join is discord.py re-connecting, or a moderator's doing)."""

    on_change: Callable[[], None] | None = None
    # Discord took the bot out of the channel (a moderator disconnected it, the channel was deleted): not a
    # drop to repair. Told apart from discord.py's own leave-and-rejoin, which marks itself disconnected first.
    removed: bool = False

    async def on_voice_state_update(self, data: Any) -> None:
        if data.get("channel_id") is None and self.is_connected():
            self.removed = True
        await super().on_voice_state_update(data)
        if self.on_change is not None:
            self.on_change()

    async def on_voice_server_update(self, data: Any) -> None:
        await super().on_voice_server_update(data)
        if self.on_change is not None:
            self.on_change()


@dataclass(eq=False)
class _Link:
    channel: ChatRef
    feed: FrameFeed
    guild_id: int
    vc: _VoiceClient | None = None
    lane: Lane | None = None  # its place in the pump
    state: LinkState = LinkState.STARTING
    detail: str = ""
    reconnects: int = 0
    down_since: float | None = None
    played_at: float = 0.0  # loop time the current lane started
    awaiting_stage: bool = False  # on a stage, requested to speak: heard once a moderator invites the bot
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    # set when the pump has let go of the current lane's reader
    lane_done: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def health(self) -> LinkHealth:
        return LinkHealth(self.state, self.detail, self.reconnects)


class DiscordVoice:
    """core.ports.VoiceBridge for the Discord client of this process (``client()`` returns it, or None while
    the platform is stopped). Methods run on the event loop; the audio flows in the pump's thread."""

    def __init__(
        self,
        client: Callable[[], discord.Client | None],
        *,
        connect_timeout: float = CONNECT_TIMEOUT,
        restore_grace: float = RESTORE_GRACE,
        check_every: float = CHECK_EVERY,
        backoff_first: float = BACKOFF_FIRST,
        backoff_max: float = BACKOFF_MAX,
        leave_timeout: float = LEAVE_TIMEOUT,
    ) -> None:
        self._client = client
        self.connect_timeout = connect_timeout
        self.restore_grace = restore_grace
        self.check_every = check_every
        self.backoff_first = backoff_first
        self.backoff_max = backoff_max
        self.leave_timeout = leave_timeout
        self._links: dict[ChatRef, _Link] = {}
        self.pump = Pump()

    # ------------------------------------------------------------------ the port

    def can_join(self, channel: ChatRef) -> bool:
        """The gateway is ready here and the channel is a voice or stage channel of a guild on this process's
        shards (a guild of another shard is not in this client's cache)."""
        client = self._client()
        if client is None or client.is_closed() or not client.is_ready() or not channel.id.isdigit():
            return False
        return isinstance(client.get_channel(int(channel.id)), VocalChannel)

    async def join(self, channel: ChatRef, feed: FrameFeed) -> None:
        known = self._links.get(channel)
        if known is not None and known.state is not LinkState.FAILED:
            return  # already joined (a retried link): one connection per channel
        if known is not None:  # it failed for good earlier: a new attempt starts afresh
            await self.leave(channel)
        target = self._resolve(channel)
        for other in self._links.values():
            if other.guild_id == target.guild.id and other.state is not LinkState.FAILED:
                raise ChatUnavailable(
                    f"discord: already in another voice channel of the server {target.guild.id} "
                    "(a bot has one voice connection per server)"
                )
        link = _Link(channel, feed, target.guild.id)
        self._links[channel] = link
        try:
            await self._connect(link, target)
        except BaseException:
            self._links.pop(channel, None)
            await self._teardown(link)
            raise
        link.task = asyncio.create_task(self._watch(link), name=f"discord-voice-watch:{channel.id}")
        log.info("discord voice joined", extra={"guild": str(target.guild.id), "channel": channel.id})

    async def leave(self, channel: ChatRef) -> None:
        link = self._links.pop(channel, None)
        if link is None:
            return
        if link.task is not None:
            link.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await link.task
        await self._teardown(link)
        link.state, link.detail = LinkState.STOPPED, ""
        log.info("discord voice left", extra={"channel": channel.id})

    def voice_health(self, channel: ChatRef) -> LinkHealth:
        link = self._links.get(channel)
        return link.health() if link is not None else LinkHealth(LinkState.STOPPED)

    def channels(self) -> list[ChatRef]:
        return list(self._links)

    async def close(self) -> None:
        """Leave every channel (the platform stops)."""
        for channel in list(self._links):
            await self.leave(channel)
        await asyncio.to_thread(self.pump.close, self.leave_timeout)

    # ------------------------------------------------------------------ joining

    def _resolve(self, channel: ChatRef) -> VocalChannel:
        """The channel, if the bot may join and be heard in it; else ChatUnavailable saying what is missing
        (TransientError when this process cannot tell yet: the gateway is not connected here)."""
        client = self._client()
        if client is None or client.is_closed() or not client.is_ready():
            raise TransientError("discord: the gateway is not connected in this process")
        found = client.get_channel(int(channel.id)) if channel.id.isdigit() else None
        if found is None:
            raise ChatUnavailable(f"discord: voice channel {channel.id} not found (deleted, or not visible)")
        if not isinstance(found, VocalChannel):
            raise ChatUnavailable(f"discord: #{found} is not a voice or stage channel")
        perms = found.permissions_for(found.guild.me)
        if not (perms.view_channel and perms.connect):
            raise ChatUnavailable(f"discord: the bot lacks the Connect permission in #{found.name}")
        if isinstance(found, discord.StageChannel):
            if not (perms.mute_members or perms.request_to_speak):
                raise ChatUnavailable(
                    f"discord: the bot cannot speak on the stage #{found.name}: it needs Mute Members "
                    "(stage moderator), or Request to Speak and a moderator's invitation"
                )
        elif not perms.speak:
            raise ChatUnavailable(f"discord: the bot lacks the Speak permission in #{found.name}")
        elif found.user_limit and len(found.voice_states) >= found.user_limit and not perms.move_members:
            raise ChatUnavailable(f"discord: #{found.name} is full ({found.user_limit} members)")
        return found

    async def _connect(self, link: _Link, target: VocalChannel) -> None:
        """Connect (deafened: the bot never listens), take the stage's floor, and pump a new reader."""
        link.state = LinkState.STARTING if link.state is not LinkState.RECONNECTING else link.state
        vc = await self._open(target)
        link.vc = vc
        vc.on_change = link.wake.set
        if isinstance(target, discord.StageChannel):
            await self._take_the_floor(link, target)
        self._play(link, vc)

    async def _open(self, target: VocalChannel) -> _VoiceClient:
        """discord.py's voice handshake, its failures as TransientError."""
        for attempt in range(2):
            try:
                return await target.connect(
                    timeout=self.connect_timeout, reconnect=True, self_deaf=True, cls=_VoiceClient
                )
            except discord.ConnectionClosed as e:
                raise TransientError(f"discord: voice websocket closed with {e.code}") from e
            except discord.ClientException as e:
                if attempt:
                    raise TransientError(f"discord: voice connection refused: {e}") from e
                # "already connected": a voice client of an earlier life is still registered for this
                # guild (one voice connection per server is ours alone, join() checked): drop it, once
                stale = target.guild.voice_client
                if stale is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(stale.disconnect(force=True), self.leave_timeout)
                    stale.cleanup()
            except TimeoutError as e:
                raise TransientError(f"discord: no voice connection to #{target.name} in time") from e
            except (discord.HTTPException, OSError) as e:
                raise TransientError(f"discord: voice connection failed: {type(e).__name__}") from e
        raise AssertionError("unreachable")

    async def _take_the_floor(self, link: _Link, stage: discord.StageChannel) -> None:
        """On a stage the bot arrives suppressed (audience): a stage moderator unsuppresses itself, anyone
        else raises its hand (PATCH /guilds/{id}/voice-states/@me either way)."""
        perms = stage.permissions_for(stage.guild.me)
        if perms.mute_members:
            body: dict[str, Any] = {
                "channel_id": stage.id,
                "suppress": False,
                "request_to_speak_timestamp": None,
            }
        else:
            body = {"channel_id": stage.id, "request_to_speak_timestamp": discord.utils.utcnow().isoformat()}
        client = self._client()
        if client is None:
            raise TransientError("discord: the client stopped")
        try:
            await client.http.edit_my_voice_state(stage.guild.id, body)
        except discord.Forbidden as e:
            raise ChatUnavailable(f"discord: the bot may not speak on the stage #{stage.name}") from e
        except discord.HTTPException as e:
            raise TransientError(f"discord: taking the stage failed: {e.status}") from e
        link.awaiting_stage = not perms.mute_members
        if link.awaiting_stage:
            link.detail = "requested to speak on the stage: a stage moderator must invite the bot"

    def _play(self, link: _Link, vc: _VoiceClient) -> None:
        loop = asyncio.get_running_loop()
        done = link.lane_done = asyncio.Event()

        def finished() -> None:  # in the pump thread (or wherever the lane is let go of)
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(done.set)
                loop.call_soon_threadsafe(link.wake.set)

        lane = Lane(vc, link.feed.reader(), finished, name=link.channel.id)
        self.pump.add(lane)
        link.lane, link.played_at = lane, loop.time()
        link.down_since = None
        self._mark_up(link, vc)

    def _mark_up(self, link: _Link, vc: _VoiceClient) -> None:
        me = vc.guild.me
        voice = me.voice if me is not None else None
        if link.awaiting_stage and voice is not None and not voice.suppress:
            link.awaiting_stage = False  # a moderator invited the bot to speak
        link.state = LinkState.STARTING if link.awaiting_stage else LinkState.PLAYING
        if not link.awaiting_stage:
            link.detail = ""

    # ------------------------------------------------------------------ watching

    async def _watch(self, link: _Link) -> None:
        """:meth:`_keep_playing`, which a surprise from discord.py (a bug, an internal that moved) restarts
        after a pause instead of ending: a link never silently stops being watched."""
        while True:
            try:
                await self._keep_playing(link)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("discord voice watchdog failed", extra={"channel": link.channel.id})
                await asyncio.sleep(self.backoff_first)

    async def _keep_playing(self, link: _Link) -> None:
        """Keep one channel playing: a new reader for a lane whose reader ended, ``restore_grace`` for
        discord.py to restore a dropped connection (or one whose sends keep failing), then a new join with
        backoff. A refusal (ChatUnavailable) ends the link: FAILED."""
        loop = asyncio.get_running_loop()
        delay = self.backoff_first
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(link.wake.wait(), self.check_every)
            link.wake.clear()
            vc = link.vc
            if vc is not None and vc.removed:
                await self._teardown(link)
                link.state = LinkState.FAILED
                link.detail = (
                    "disconnected from the voice channel by Discord (a moderator, or the channel was deleted)"
                )
                log.warning("discord voice removed", extra={"channel": link.channel.id})
                return
            lane = link.lane
            failing = lane is not None and lane.failing >= SEND_FAILURES
            if vc is not None and self._connected(vc) and not failing:
                if lane is None or lane.finished.is_set():
                    # its reader ended (the feed broke) or the pump dropped it after a surprise: a new
                    # reader, after a backoff if the last one did not last
                    if loop.time() - link.played_at < self.check_every * 4:
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, self.backoff_max)
                        if link.vc is not vc:
                            continue
                    if lane is not None:
                        await self._let_go(link, lane)
                    self._play(link, vc)
                    link.reconnects += 1
                    log.info("discord voice reader restarted", extra={"channel": link.channel.id})
                    continue
                if link.down_since is not None:
                    link.reconnects += 1
                    log.info("discord voice restored", extra={"channel": link.channel.id})
                link.down_since = None
                self._mark_up(link, vc)
                if loop.time() - link.played_at > self.check_every * 4:
                    delay = self.backoff_first
                continue
            now = loop.time()
            if link.down_since is None:
                link.down_since = now
                link.state = LinkState.RECONNECTING
                link.detail = (
                    f"voice packets failing ({lane.last_error})"
                    if failing and lane is not None
                    else "voice connection lost"
                )
                log.warning("discord voice connection lost", extra={"channel": link.channel.id})
            restoring = vc is not None and vc.guild.voice_client is vc
            if restoring and not failing and now - link.down_since < self.restore_grace:
                continue  # discord.py is on it (failing sends are not its business: a new join at once)
            await self._teardown(link)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.backoff_max)
            try:
                await self._connect(link, self._resolve(link.channel))
            except ChatUnavailable as e:
                link.state, link.detail = LinkState.FAILED, str(e)
                log.warning("discord voice gave up: %s", e, extra={"channel": link.channel.id})
                return
            except (TransientError, TimeoutError) as e:
                link.detail = str(e) or "re-joining failed"
                await self._teardown(link)
                continue
            link.reconnects += 1
            link.down_since = None
            log.info("discord voice re-joined", extra={"channel": link.channel.id})

    @staticmethod
    def _connected(vc: _VoiceClient) -> bool:
        """Connected, and its voice websocket open (discord.py still says connected while it waits to re-open
        one that dropped)."""
        if not vc.is_connected():
            return False
        ws = getattr(vc.ws, "ws", None)
        return ws is None or not ws.closed

    async def _teardown(self, link: _Link) -> None:
        """Say goodbye on the lane (silence, speaking off) while still connected, then disconnect."""
        vc, lane = link.vc, link.lane
        link.vc = link.lane = None
        if lane is not None:
            await self._let_go(link, lane)
        if vc is not None:
            await self._disconnect(vc)
        stale = self._registered(link.channel)
        if stale is not None:  # a connect cancelled half-way (leave during a re-join) left its client
            await self._disconnect(stale)
        # the last lane gone, the pump thread ends within microseconds of its goodbye: no channel, no thread
        self.pump.join(timeout=0.05)

    async def _let_go(self, link: _Link, lane: Lane) -> None:
        """Take the lane out of the pump and wait (``leave_timeout`` at most) for its goodbye."""
        self.pump.remove(lane)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(link.lane_done.wait(), self.leave_timeout)
        lane.finish()  # idempotent: the reader is closed whatever happened

    async def _disconnect(self, vc: _VoiceClient) -> None:
        vc.on_change = None
        vc.stop()
        # discord.py 2.7's websocket poller keeps re-joining after a drop even once disconnected (its retry
        # would send a gateway op 4 for the channel we left), and a connect cancelled half-way goes on in its
        # own task: stop both first
        state = getattr(vc, "_connection", None)
        for attr in ("_runner", "_connector"):
            task = getattr(state, attr, None)
            if isinstance(task, asyncio.Task) and task is not asyncio.current_task():
                task.cancel()
        try:
            await asyncio.wait_for(vc.disconnect(force=True), self.leave_timeout)
        except Exception as e:  # gone already, or Discord never confirmed: forget it anyway
            log.debug("discord voice disconnect: %s", type(e).__name__)
            vc.cleanup()

    def _registered(self, channel: ChatRef) -> _VoiceClient | None:
        """Our voice client discord.py still holds for ``channel``'s guild, if it is for this channel."""
        client = self._client()
        found = client.get_channel(int(channel.id)) if client is not None and channel.id.isdigit() else None
        vc = getattr(getattr(found, "guild", None), "voice_client", None)
        if isinstance(vc, _VoiceClient) and vc.channel is not None and vc.channel.id == int(channel.id):
            return vc
        return None


__all__ = ["DiscordVoice"]
