"""One owner per live Space's audio, however many processes run.

A live Space with a source gets exactly one :class:`~bots.audio.bridge.Bridge` (one ffmpeg, its voice channels,
its web listeners) in the whole deployment. The database decides where: the process holding the lease
``audio:<space_id>`` (core.ports.GatewayLease, the same fenced lease as the Discord gateway's) runs the bridge;
every other process relays its web listeners there (:meth:`AudioSupervisor.owner_url`).

:class:`AudioSupervisor` runs one round (:meth:`~AudioSupervisor.step`) every ``poll_every`` seconds, and at
once on :meth:`~AudioSupervisor.kick` (a Space started or ended in this process). A round:

1. renews the leases it holds (each every ``renew_every``); a renewal refused means someone else took the
   Space over (this process stalled past the lease): its bridge is stopped at once, before two processes feed
   the same voice channels;
2. reads the live Spaces that have a source (``live_audio()``), takes the free or expired leases, starts a
   bridge for each Space won, and keeps each bridge's channels equal to the Space's;
3. stops the bridges of Spaces no longer live (or no longer ours) and releases their leases.

A process whose voice connection cannot reach a Space's channels (``VoiceBridge.can_join`` False: the Discord
gateway or the shard lives in another process) takes it only once it has been free for ``grace``, so that the
process that can usually wins — also after a crash, when the gateway moves too; after the grace it takes it
anyway (its web listeners still hear it, and its bridge joins once the gateway is here).

A clean :meth:`~AudioSupervisor.stop` releases every lease: another process takes over at its next round. A
process killed without stopping is replaced once its leases run out (``ttl``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Generic, Protocol, TypeVar

from core.audio import AudioSource, LinkHealth, LinkState, SourceKind
from core.models import LeaseGrant
from core.ports import Clock, GatewayLease, VoiceBridge
from core.refs import ChatRef, Platform

log = logging.getLogger(__name__)

LEASE_PREFIX = "audio:"
LEASE_TTL = timedelta(seconds=10)
RENEW_EVERY = timedelta(seconds=3)
POLL_EVERY = 2.0  # seconds between two rounds when nothing kicks
# how long a process that cannot join a Space's voice channels leaves a free Space to one that can: a little
# longer than the Discord gateway's lease (bots/runtime/gateway.py), so that when the process holding both
# dies, the process that takes the gateway over also gets the audio
JOIN_GRACE = timedelta(seconds=18)
# the host's reports (core.texts keys): a stream or file that can't be read, a browser that stopped sending,
# a voice channel the bot can't play in
SOURCE_FAILED = "audio.problem.source"
BROWSER_FAILED = "audio.problem.browser"
VOICE_FAILED = "audio.problem.voice"


def lease_name(space_id: str) -> str:
    return f"{LEASE_PREFIX}{space_id}"


def holder_url(holder: str) -> str | None:
    """The base URL in a lease holder ``"<worker id> <internal url>"`` (None if it names none)."""
    _, _, url = holder.partition(" ")
    return url.strip() or None


# ------------------------------------------------------------------------------------- what it works with


class LiveSpaceAudio(Protocol):
    """One live Space's audio, as core.services.audio.LiveAudio gives it."""

    @property
    def space_id(self) -> str: ...

    @property
    def source(self) -> AudioSource: ...

    @property
    def channels(self) -> tuple[ChatRef, ...]: ...


class AudioReports(Protocol):
    """What the supervisor needs of core.services.audio.AudioService."""

    async def live_audio(self, limit: int = 500) -> Sequence[LiveSpaceAudio]:
        """The live Spaces that have a source (their voice channels first)."""
        ...

    async def report_problem(self, space_id: str, key: str, **params: str) -> None:
        """Tell the Space's host, once per (Space, key)."""
        ...


class BridgeHealthView(Protocol):
    """bots.audio.bridge.BridgeHealth, as far as health and metrics read it."""

    @property
    def source(self) -> LinkHealth: ...

    @property
    def channels(self) -> Mapping[str, LinkHealth]:  # keyed by str(ChatRef)
        ...

    @property
    def listeners(self) -> int: ...


class BridgeLike(Protocol):
    """bots.audio.bridge.Bridge, as far as the supervisor drives it."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def link(self, channel: ChatRef) -> None: ...

    async def unlink(self, channel: ChatRef) -> None: ...

    def health(self) -> BridgeHealthView: ...


B = TypeVar("B", bound=BridgeLike)
# builds (not starts) the bridge of one live Space; the callback is the bridge's on_source_failed
BridgeFactory = Callable[[LiveSpaceAudio, Callable[[str], None]], B]


@dataclass(slots=True)
class _Owned(Generic[B]):
    space_id: str
    source: AudioSource
    grant: LeaseGrant
    renewed_at: datetime
    bridge: B
    linked: list[ChatRef] = field(default_factory=list)
    started: bool = False
    reported: set[str] = field(default_factory=set)  # the report keys already sent for this bridge


# ------------------------------------------------------------------------------------------- supervisor


class AudioSupervisor(Generic[B]):
    """Implements bots.web.listen.AudioDirectory. All methods run on the event loop."""

    def __init__(
        self,
        audio: AudioReports,
        lease: GatewayLease,
        make_bridge: BridgeFactory[B],
        *,
        worker_id: str,
        clock: Clock,
        voice: Sequence[VoiceBridge] = (),
        internal_url: Callable[[], str | None] = lambda: None,
        ttl: timedelta = LEASE_TTL,
        renew_every: timedelta = RENEW_EVERY,
        poll_every: float = POLL_EVERY,
        grace: timedelta = JOIN_GRACE,
        limit: int = 500,
    ) -> None:
        if ttl <= renew_every or renew_every <= timedelta(0) or poll_every <= 0:
            raise ValueError("AudioSupervisor: need 0 < renew_every < ttl and poll_every > 0")
        self._audio = audio
        self._lease = lease
        self._make_bridge = make_bridge
        # unique per process even when two processes share a worker id (the lease tells them apart)
        self._worker = f"{worker_id}:{secrets.token_hex(4)}"
        self._clock = clock
        self._voice = tuple(voice)
        self._internal_url = internal_url
        self._ttl = ttl
        self._renew_every = renew_every
        self._poll_every = poll_every
        self._grace = grace
        self._limit = limit
        self._owned: dict[str, _Owned[B]] = {}
        self._free_since: dict[str, datetime] = {}  # Spaces waiting out the join grace: free since when
        self._lock = asyncio.Lock()  # one round at a time (the loop, a kick, a test)
        self._kicked = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reports: set[asyncio.Task[None]] = set()
        self._stopped = False

    @property
    def holder(self) -> str:
        """This process in the audio leases: ``"<worker id> <internal url>"`` (the URL: where to relay)."""
        url = self._internal_url()
        return f"{self._worker} {url}" if url else self._worker

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Run a first round now, then one every ``poll_every`` seconds (and on :meth:`kick`)."""
        self._stopped = False
        self._loop = asyncio.get_running_loop()
        await self._round()
        if self._task is None or self._task.done():
            self._task = self._loop.create_task(self._run(), name="audio-supervisor")

    async def stop(self) -> None:
        """Stop every bridge (every ffmpeg reaped, every channel left) and release its lease, so another
        process takes over at its next round. Idempotent."""
        self._stopped = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        async with self._lock:
            for space_id in list(self._owned):
                await self._drop(space_id, release=True, why="shutting down")
        for report in list(self._reports):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await report

    def kick(self) -> None:
        """Run a round now (a Space started or ended, a source or a channel changed in this process)."""
        self._kicked.set()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kicked.wait(), timeout=self._poll_every)
            self._kicked.clear()
            await self._round()

    async def _round(self) -> None:
        try:
            await self.step()
        except Exception:
            log.exception("audio supervisor: a round failed; retrying at the next")

    # ------------------------------------------------------------------ one round

    async def step(self) -> None:
        """One round (see the module notes). Tests call it directly, with a controllable clock."""
        async with self._lock:
            if self._stopped:  # stop() ran: nothing is taken again until the next start()
                return
            await self._renew()
            live = {a.space_id: a for a in await self._audio.live_audio(self._limit)}
            for space_id in [s for s in self._owned if s not in live]:
                await self._drop(space_id, release=True, why="no longer live")
            self._free_since = {s: t for s, t in self._free_since.items() if s in live}
            # Spaces are independent: one slow voice join must not hold up the others' takeover
            await asyncio.gather(*(self._reconcile(a) for a in live.values()))
            self._report_failed_channels()

    async def _renew(self) -> None:
        now = self._clock.now()
        for space_id, owned in list(self._owned.items()):
            if now - owned.renewed_at < self._renew_every:
                continue
            try:
                renewed = await self._lease.renew(owned.grant, now=now, ttl=self._ttl)
            except Exception:
                # the database did not answer: ours until the lease runs out, then assume it is someone else's
                if now >= owned.grant.until:
                    log.warning("audio lease ran out unrenewed", extra={"space_id": space_id}, exc_info=True)
                    await self._drop(space_id, release=False, why="lease ran out unrenewed")
                else:
                    log.warning("renewing an audio lease failed", extra={"space_id": space_id}, exc_info=True)
                continue
            if renewed is None:
                log.warning("audio lease taken over: stopping the bridge here", extra={"space_id": space_id})
                await self._drop(space_id, release=False, why="taken over")
                continue
            owned.grant, owned.renewed_at = renewed, now

    async def _reconcile(self, live: LiveSpaceAudio) -> None:
        try:
            owned = self._owned.get(live.space_id)
            if owned is not None and owned.source != live.source:
                # the host changed the source while live: a new ffmpeg for the new source, same lease
                await self._restart(owned, live)
            if owned is None:
                owned = await self._take(live)
                if owned is None:
                    return
            await self._sync_channels(owned, live.channels)
        except Exception:
            log.exception("audio supervisor: a Space's round failed", extra={"space_id": live.space_id})

    async def _take(self, live: LiveSpaceAudio) -> _Owned[B] | None:
        now = self._clock.now()
        if not self._joinable(live.channels):
            # the process whose voice connection reaches these channels gets the first go: wait until the
            # Space has been free (never taken, released, or its owner's lease run out) for the grace
            current = await self._lease.current(lease_name(live.space_id))
            if current is not None and current.until > now:
                self._free_since.pop(live.space_id, None)
                return None
            free_since = self._free_since.setdefault(live.space_id, now)
            if now - free_since < self._grace:
                return None
        grant = await self._lease.acquire(lease_name(live.space_id), self.holder, now=now, ttl=self._ttl)
        if grant is None:
            return None
        self._free_since.pop(live.space_id, None)
        owned = _Owned(
            live.space_id, live.source, grant, now, self._make_bridge(live, self._on_failed(live.space_id))
        )
        self._owned[live.space_id] = owned
        log.info(
            "audio: this process now runs the bridge",
            extra={"space_id": live.space_id, "fence": grant.fence, "source_kind": str(live.source.kind)},
        )
        try:
            await owned.bridge.start()
            owned.started = True
        except Exception:
            # let another process try: this one could not start ffmpeg (or the feed)
            log.exception("audio: starting the bridge failed", extra={"space_id": live.space_id})
            await self._drop(live.space_id, release=True, why="start failed")
            return None
        return owned

    async def _restart(self, owned: _Owned[B], live: LiveSpaceAudio) -> None:
        log.info("audio: the source changed; restarting the bridge", extra={"space_id": owned.space_id})
        await self._stop_bridge(owned)
        owned.source, owned.linked, owned.reported, owned.started = live.source, [], set(), False
        try:
            owned.bridge = self._make_bridge(live, self._on_failed(live.space_id))
            await owned.bridge.start()
        except Exception:
            log.exception("audio: restarting the bridge failed", extra={"space_id": owned.space_id})
            await self._drop(owned.space_id, release=True, why="restart failed")
            raise
        owned.started = True

    async def _sync_channels(self, owned: _Owned[B], wanted: Sequence[ChatRef]) -> None:
        for channel in [c for c in owned.linked if c not in wanted]:
            owned.linked.remove(channel)
            try:
                await owned.bridge.unlink(channel)
            except Exception:
                log.warning(
                    "audio: leaving a channel failed", extra={"space_id": owned.space_id}, exc_info=True
                )
        for channel in [c for c in wanted if c not in owned.linked]:
            # linked once: the bridge keeps re-joining by itself (with backoff) when a join fails or drops
            owned.linked.append(channel)
            try:
                await owned.bridge.link(channel)
            except Exception:
                log.warning(
                    "audio: joining a channel failed",
                    extra={"space_id": owned.space_id, "channel": str(channel)},
                    exc_info=True,
                )

    def _joinable(self, channels: Sequence[ChatRef]) -> bool:
        """Can this process carry voice into every channel (no channel: nothing to wait for)?"""
        return all(any(_can_join(v, c) for v in self._voice) for c in channels)

    async def _drop(self, space_id: str, *, release: bool, why: str) -> None:
        owned = self._owned.pop(space_id, None)
        if owned is None:
            return
        await self._stop_bridge(owned)
        if release:
            try:
                await self._lease.release(owned.grant, now=self._clock.now())
            except Exception:
                log.warning(
                    "releasing an audio lease failed: it runs out by itself",
                    extra={"space_id": space_id},
                    exc_info=True,
                )
        log.info("audio: bridge stopped here (%s)", why, extra={"space_id": space_id})

    async def _stop_bridge(self, owned: _Owned[B]) -> None:
        try:
            await owned.bridge.stop()
        except Exception:
            log.exception("audio: stopping the bridge failed", extra={"space_id": owned.space_id})

    # ------------------------------------------------------------------ the host's report

    def _on_failed(self, space_id: str) -> Callable[[str], None]:
        """The bridge's ``on_source_failed``: one report to the host per bridge (the service also keeps it to
        one per Space). Safe from any thread: the report is scheduled on the loop."""
        loop = self._loop or asyncio.get_running_loop()

        def failed(detail: str) -> None:
            loop.call_soon_threadsafe(self._source_failed, space_id, detail)

        return failed

    def _source_failed(self, space_id: str, detail: str) -> None:
        owned = self._owned.get(space_id)
        if owned is not None:
            key = BROWSER_FAILED if owned.source.kind is SourceKind.BROWSER else SOURCE_FAILED
            self._report(owned, key, detail=detail)

    def _report_failed_channels(self) -> None:
        """A voice channel the bridge gave up on (no Connect/Speak, channel gone): the host hears of it once."""
        for owned in list(self._owned.values()):
            if not owned.started or VOICE_FAILED in owned.reported:
                continue
            try:
                channels = owned.bridge.health().channels
            except Exception:
                continue
            named = {str(c): c for c in owned.linked}
            for key, h in channels.items():
                if h.state is LinkState.FAILED and key in named:
                    self._report(owned, VOICE_FAILED, channel=channel_mention(named[key]), detail=h.detail)
                    break

    def _report(self, owned: _Owned[B], key: str, **params: str) -> None:
        if key in owned.reported:
            return
        owned.reported.add(key)
        log.warning("audio problem: %s %s", key, params.get("detail", ""), extra={"space_id": owned.space_id})
        task = asyncio.get_running_loop().create_task(
            _logged_report(self._audio.report_problem(owned.space_id, key, **params), owned.space_id)
        )
        self._reports.add(task)
        task.add_done_callback(self._reports.discard)

    # ------------------------------------------------------------------ AudioDirectory

    def local(self, space_id: str) -> B | None:
        """The bridge, if this process owns the Space's audio: started, under a lease not yet run out (a
        process that stalled past its lease may have been taken over: it serves nothing until it renews)."""
        owned = self._owned.get(space_id)
        return owned.bridge if owned is not None and owned.started and self._holds(owned) else None

    async def owner_url(self, space_id: str) -> str | None:
        """The base URL of the process that owns the Space's audio, when another one does (else None)."""
        owned = self._owned.get(space_id)
        if owned is not None and self._holds(owned):
            return None
        grant = await self._lease.current(lease_name(space_id))
        if grant is None or grant.until <= self._clock.now() or grant.holder.split(" ", 1)[0] == self._worker:
            return None
        return holder_url(grant.holder)

    def _holds(self, owned: _Owned[B]) -> bool:
        return owned.grant.until > self._clock.now()

    # ------------------------------------------------------------------ health

    def spaces(self) -> list[str]:
        """The Spaces whose audio runs here."""
        return sorted(self._owned)

    def health(self) -> dict[str, SpaceAudioHealth]:
        """Per Space owned here: the source's state, each channel's, the web listeners."""
        out: dict[str, SpaceAudioHealth] = {}
        for space_id, owned in sorted(self._owned.items()):
            if not owned.started:
                out[space_id] = SpaceAudioHealth(LinkHealth(LinkState.STARTING), {}, 0)
                continue
            try:
                h = owned.bridge.health()
                out[space_id] = SpaceAudioHealth(h.source, dict(h.channels), h.listeners)
            except Exception:
                log.warning(
                    "audio: reading a bridge's health failed", extra={"space_id": space_id}, exc_info=True
                )
                out[space_id] = SpaceAudioHealth(LinkHealth(LinkState.FAILED, "health unreadable"), {}, 0)
        return out


@dataclass(frozen=True, slots=True)
class SpaceAudioHealth:
    source: LinkHealth
    channels: Mapping[str, LinkHealth]  # keyed by str(ChatRef)
    listeners: int

    @property
    def failed(self) -> bool:
        """Worth degrading /healthz: something gave up (a reconnecting link is recovering, not failed)."""
        return self.source.state is LinkState.FAILED or any(
            h.state is LinkState.FAILED for h in self.channels.values()
        )

    def as_json(self) -> dict[str, object]:
        return {
            "source": _link_json(self.source),
            "channels": {c: _link_json(h) for c, h in self.channels.items()},
            "listeners": self.listeners,
        }


def _link_json(h: LinkHealth) -> dict[str, object]:
    body: dict[str, object] = {"state": str(h.state), "reconnects": h.reconnects}
    if h.detail:
        body["detail"] = h.detail
    return body


def channel_mention(channel: ChatRef) -> str:
    """How the host's message names a voice channel (a Discord mention renders as its name)."""
    return f"<#{channel.id}>" if channel.platform is Platform.DISCORD else channel.id


def _can_join(voice: VoiceBridge, channel: ChatRef) -> bool:
    if getattr(voice, "platform", channel.platform) != channel.platform:
        return False
    try:
        return voice.can_join(channel)
    except Exception:
        log.warning("voice can_join failed", exc_info=True)
        return False


async def _logged_report(report: Awaitable[None], space_id: str) -> None:
    try:
        await report
    except Exception:
        log.warning(
            "audio: reporting a problem to the host failed", extra={"space_id": space_id}, exc_info=True
        )
