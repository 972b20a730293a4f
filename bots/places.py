"""Where a Space is announced, and its host's picture, for the public share page (``WebDeps.places`` and
``WebDeps.avatars``, bots/web/app.py).

The places come from what the core keeps — the Space's announcements (its cards) and its platforms' own
events — each turned into a link by its platform's adapter (core.ports.Places, through the Router). Order,
stable and decided here:

1. Telegram's deep link, where the Space is announced on Telegram: subscribing there happens in the bot's
   private chat, and the link works for anyone (a card's t.me/c/ link opens for the group's members only,
   so it is left out when the deep link exists).
2. Each card's message link, in the order the cards were posted.
3. Each platform event (Discord's scheduled event: its "Interested" subscribes).

De-duplicated by URL, at most :data:`MAX_PLACES`. The page is public: the list of a Space is kept
:data:`PLACES_TTL` seconds, and concurrent views of one Space wait for the same single read, so a burst of
views costs one query (and no platform call: the links are pure, see core.ports.Places).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from bots.web.share import Place
from core.models import Announcement, NativeEvent, Space
from core.ports import UnitOfWorkFactory
from core.refs import ChatRef, MessageRef, Platform, UserRef
from core.texts import t

log = logging.getLogger(__name__)

MAX_PLACES = 6  # buttons on the page: beyond it, more choice is less help
PLACES_TTL = 5.0  # seconds a Space's places are reused (a new card shows up on the page this late)
CACHE_SIZE = 1_000  # Spaces whose places are kept (least recently used beyond)


class PlaceLinks(Protocol):
    """The links of every platform by the ref's platform: the Router (bots/router.py). Never raises."""

    def message_link(self, message: MessageRef) -> str | None: ...

    def event_link(self, chat: ChatRef, event_id: str) -> str | None: ...

    def subscribe_link(self, platform: Platform, space_id: str) -> str | None: ...

    async def avatar_url(self, user: UserRef) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Found:
    """One place before it is labelled in the reader's language: ``kind`` names its text
    (``web.place.<kind>``)."""

    platform: Platform
    kind: str
    url: str


def places_of(
    space_id: str,
    announcements: Sequence[Announcement],
    events: Sequence[NativeEvent],
    links: PlaceLinks,
    *,
    limit: int = MAX_PLACES,
) -> list[Found]:
    """The places of a Space in the page's order (see the module's docstring)."""
    found: list[Found] = []
    on = {a.message.platform for a in announcements}
    deep = links.subscribe_link(Platform.TELEGRAM, space_id) if Platform.TELEGRAM in on else None
    if deep is not None:
        found.append(Found(Platform.TELEGRAM, "telegram", deep))
    for a in announcements:
        platform = a.message.platform
        if platform is Platform.CONSOLE or (platform is Platform.TELEGRAM and deep is not None):
            continue
        url = links.message_link(a.message)
        if url is not None:
            found.append(Found(platform, str(platform), url))
    for e in events:
        if e.event_id is None or e.chat.platform is Platform.CONSOLE:
            continue
        url = links.event_link(e.chat, e.event_id)
        if url is not None:
            kind = "discord_event" if e.chat.platform is Platform.DISCORD else str(e.chat.platform)
            found.append(Found(e.chat.platform, kind, url))
    unique: dict[str, Found] = {}  # by URL, the first kept (dicts keep insertion order)
    for f in found:
        unique.setdefault(f.url, f)
    return list(unique.values())[:limit]


class SpacePlaces:
    """``WebDeps.places`` (call it with a Space and the reader's locale) and ``WebDeps.avatars``
    (:meth:`avatar`). Never raises: a failing database or platform costs the buttons or the picture only."""

    def __init__(
        self,
        links: PlaceLinks,
        read_uow: UnitOfWorkFactory,
        *,
        ttl: float = PLACES_TTL,
        limit: int = MAX_PLACES,
        size: int = CACHE_SIZE,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._links = links
        self._uow = read_uow
        self._ttl = ttl
        self._limit = limit
        self._size = size
        self._monotonic = monotonic
        self._cache: OrderedDict[str, tuple[float, tuple[Found, ...]]] = OrderedDict()
        self._reads: dict[str, asyncio.Task[tuple[Found, ...]]] = {}  # reads in flight, shared

    async def __call__(self, space: Space, locale: str) -> list[Place]:
        found = await self.found(space.id)
        return [Place(str(f.platform), t(locale, f"web.place.{f.kind}"), f.url) for f in found]

    async def avatar(self, user: UserRef) -> str | None:
        try:
            return await self._links.avatar_url(user)
        except Exception:
            log.warning("reading the host's avatar failed", exc_info=True)
            return None

    async def found(self, space_id: str) -> tuple[Found, ...]:
        item = self._cache.get(space_id)
        if item is not None and item[0] > self._monotonic():
            self._cache.move_to_end(space_id)
            return item[1]
        read = self._reads.get(space_id)
        if read is None:
            read = asyncio.get_running_loop().create_task(self._read(space_id), name=f"places-{space_id}")
            self._reads[space_id] = read
            read.add_done_callback(lambda _: self._reads.pop(space_id, None))
        # shielded: a viewer who goes away does not cancel the read the others wait for
        return await asyncio.shield(read)

    async def _read(self, space_id: str) -> tuple[Found, ...]:
        try:
            async with self._uow() as uow:
                announcements = await uow.announcements.list(space_id)
                events = await uow.events.list(space_id)
            found = tuple(places_of(space_id, announcements, events, self._links, limit=self._limit))
        except Exception:
            # kept like an answer: while the database struggles, views of this Space do not add to it
            log.warning("reading the places of Space %s failed", space_id, exc_info=True)
            found = ()
        self._cache[space_id] = (self._monotonic() + self._ttl, found)
        self._cache.move_to_end(space_id)
        while len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return found


__all__ = ["MAX_PLACES", "PLACES_TTL", "Found", "PlaceLinks", "SpacePlaces", "places_of"]
