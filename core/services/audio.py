"""A Space's live audio, as the core sees it: its source, the voice channels it plays in, the host's secret.

The audio itself (ffmpeg, the frames, the voice connections) lives in ``bots/audio``; this service is what
that side and the commands need from the database:

* which live Spaces must be playing, where (:meth:`AudioService.live_audio`, for the supervisor);
* the host told in plain words when their audio does not work (:meth:`AudioService.report_problem`): one
  message per Space and problem, through the outbox like any host reminder (paced, retried, a mention in the
  Space's chat when the host's DMs are closed);
* the host's private page guarded by the Space's ``host_key`` (:meth:`AudioService.check_host_key`);
* the commands: set or clear the source (host or moderator), bridge a voice channel to a Space or remove it
  (a moderator of the channel's community, or the host in the Space's own community).

Changing the source or the channels edits no card and notifies nobody: listeners see the same Space.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass

from core import rules
from core.audio import AudioSource, parse_source
from core.commands import BridgeChannel, SetAudioSource, UnbridgeChannel
from core.errors import NotFound, UserError
from core.hostlink import host_link
from core.models import BridgedChannel, Delivery, DeliveryKind, Space, SpaceStatus
from core.notices import problem_payload
from core.ports import Clock, Links, UnitOfWork, UnitOfWorkFactory, WakeUps
from core.refs import ChatRef, UserRef
from core.texts import TEXTS

log = logging.getLogger(__name__)

LIVE_AUDIO_LIMIT = 500


@dataclass(frozen=True, slots=True)
class LiveAudio:
    """One live Space whose audio must be playing: its source and every channel it plays in."""

    space_id: str
    source: AudioSource
    channels: tuple[ChatRef, ...]  # the Space's own voice channel first (Space.voice), then bridged ones
    host: UserRef
    locale: str


@dataclass(frozen=True, slots=True)
class BridgeResult:
    space: Space
    changed: bool  # False: it already was in that state (bridged, or not bridged)


class AudioService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        wake: WakeUps | None = None,
        *,
        links: Links | None = None,
        read_uow: UnitOfWorkFactory | None = None,
    ) -> None:
        """``wake`` arms the delivery engine for a problem report (without it the report waits for the
        engine's periodic sweep): the composition root passes the one the other services have. ``links``:
        where the share pages are, for :meth:`host_page`."""
        self._uow = uow
        self._read = read_uow or uow
        self._clock = clock
        self._wake = wake
        self._links = links

    def host_page(self, space: Space) -> str:
        """The host's private page of ``space`` (core.hostlink): for the host's eyes only."""
        if self._links is None:
            raise RuntimeError("AudioService was built without links")
        return host_link(self._links.space(space.id), space.host_key)

    # ------------------------------------------------------------------ for the audio side

    async def live_audio(self, limit: int = LIVE_AUDIO_LIMIT) -> list[LiveAudio]:
        """Live Spaces that have a source, by start: two queries whatever their number (the Spaces, then
        every bridged channel of them). A stored source that no longer reads is left out, logged."""
        async with self._read() as uow:
            spaces = await uow.spaces.live_with_source(limit=limit)
            bridges = await uow.bridges.list_many([s.id for s in spaces]) if spaces else {}
        found: list[LiveAudio] = []
        for space in spaces:
            try:
                source = parse_source(space.audio_source or "")
            except UserError:
                log.warning("stored audio source does not read", extra={"space_id": space.id})
                continue
            channels = [space.voice] if space.voice is not None else []
            channels += [b.channel for b in bridges.get(space.id, []) if b.channel not in channels]
            found.append(LiveAudio(space.id, source, tuple(channels), space.host, space.locale))
        return found

    async def report_problem(self, space_id: str, key: str, **params: str) -> None:
        """Tell the host that their live audio has a problem: ``key`` is a text of core.texts (e.g.
        ``audio.problem.source`` with ``detail``), rendered in the host's language when sent. Once per
        (Space, key): a problem that comes back is not told again. Nothing for a Space that is not live."""
        if key not in TEXTS["en"]:
            raise ValueError(f"not a text key: {key!r}")
        now = self._clock.now()
        async with self._uow() as uow:
            space = await uow.spaces.get(space_id)
            if space is None or space.status is not SpaceStatus.LIVE:
                return
            row = Delivery(
                key=f"space:{space.id}:problem:{key}",
                kind=DeliveryKind.HOST_PROBLEM,
                platform=space.platform,
                recipient=str(space.host),
                space_id=space.id,
                revision=space.revision,
                due_at=now,
                payload=problem_payload(key, params),
            )
            added = await uow.deliveries.add([row])
            await uow.commit()
        if added:
            log.info("audio problem reported to the host", extra={"space_id": space_id, "problem": key})
            if self._wake is not None:
                self._wake.arm(now)

    async def check_host_key(self, space_id: str, key: str) -> Space:
        """The Space whose host page ``key`` opens. Raises NotFound otherwise — the same answer for an
        unknown Space and a wrong key, and a compare in constant time: the key cannot be guessed piecewise."""
        async with self._read() as uow:
            space = await uow.spaces.get(space_id)
        expected = space.host_key if space is not None else ""
        ok = hmac.compare_digest(expected.encode(), key.encode())
        if space is None or not expected or not ok:
            raise NotFound("space.not_found", space_id=space_id[:40])
        return space

    # ------------------------------------------------------------------ commands

    async def set_source(self, cmd: SetAudioSource) -> Space:
        """Set (or, with None, clear) the Space's source: host or moderator, while scheduled or live.
        A refused source changes nothing (UserError, field "source")."""
        source = rules.clean_source(cmd.source)
        async with self._uow() as uow:
            space = await self._load(uow, cmd.space_id, for_update=True)
            rules.check_may_manage(cmd.actor, space, "source")
            rules.check_transition(space, "source")
            if space.audio_source != source:
                space.audio_source = source
                await uow.spaces.save(space)
                await uow.commit()
                # the kind only: a stream URL may carry its key (rtmp://…/live/<key>)
                kind = parse_source(source).kind.value if source else "none"
                log.info("audio source set", extra={"space_id": space.id, "source_kind": kind})
        return space

    async def bridge(self, cmd: BridgeChannel) -> Space:
        return (await self.bridge_result(cmd)).space

    async def unbridge(self, cmd: UnbridgeChannel) -> Space:
        return (await self.unbridge_result(cmd)).space

    async def bridge_result(self, cmd: BridgeChannel) -> BridgeResult:
        """Play the Space in ``cmd.channel`` too (see core.rules.check_may_bridge; at most
        rules.MAX_BRIDGED). Idempotent: a channel bridged already, or the Space's own, changes nothing."""
        now = self._clock.now()
        async with self._uow() as uow:
            space = await self._load(uow, cmd.space_id, for_update=True)
            rules.check_may_bridge(cmd.actor, space, cmd.channel)
            rules.check_transition(space, "bridge")
            if cmd.channel == space.voice:
                return BridgeResult(space, False)
            current = await uow.bridges.list(space.id)
            if any(b.channel == cmd.channel for b in current):
                return BridgeResult(space, False)
            rules.check_bridge_count(len(current))
            added = await uow.bridges.add(BridgedChannel(space.id, cmd.channel, cmd.actor.user, now))
            await uow.commit()
        if added:
            log.info("channel bridged", extra={"space_id": space.id, "channel": str(cmd.channel)})
        return BridgeResult(space, added)

    async def unbridge_result(self, cmd: UnbridgeChannel) -> BridgeResult:
        """Stop playing the Space in ``cmd.channel``: who may bridge it, or the host anywhere. Idempotent;
        allowed in any state (a finished Space's channel can be tidied)."""
        async with self._uow() as uow:
            space = await self._load(uow, cmd.space_id, for_update=True)
            rules.check_may_bridge(cmd.actor, space, cmd.channel, removing=True)
            removed = await uow.bridges.remove(space.id, cmd.channel)
            await uow.commit()
        if removed:
            log.info("channel unbridged", extra={"space_id": space.id, "channel": str(cmd.channel)})
        return BridgeResult(space, removed)

    async def channels(self, space_id: str) -> list[BridgedChannel]:
        async with self._read() as uow:
            await self._load(uow, space_id)
            return await uow.bridges.list(space_id)

    async def _load(self, uow: UnitOfWork, space_id: str, *, for_update: bool = False) -> Space:
        space = await (uow.spaces.get_for_update(space_id) if for_update else uow.spaces.get(space_id))
        if space is None:
            raise NotFound("space.not_found", space_id=space_id[:40])
        return space
