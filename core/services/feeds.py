"""A community's calendar feed (issue 14): ``/feeds/<token>.ics`` lists the upcoming Spaces of a chat and of
every chat linked with it.

Why a token and not the chat id in the URL: a private group's Spaces are not for whoever knows (or guesses)
its chat id. The token is random (:data:`TOKEN_BYTES`), made on first ask and stored.

Why the token belongs to the chat and not to its link group: a group merges and splits (``/space link``,
``/space unlink``) while calendars keep polling the URL they subscribed to. Tied to the chat, a URL never
changes nor dies; what it lists follows the group as it is when read. Two chats of one group have two URLs
that list the same Spaces: honest, and nothing to reconcile at a merge.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core.models import Space
from core.ports import Clock, UnitOfWorkFactory
from core.refs import ChatRef

TOKEN_BYTES = 24  # 192 bits: only ever guessed online, one guess per request, and it never expires
FEED_LIMIT = 200  # events per feed at most, soonest first: a calendar needs the next ones, not a history


@dataclass(frozen=True, slots=True)
class Feed:
    """What a feed shows: the chat the token belongs to, its link group, and their upcoming Spaces."""

    chat: ChatRef
    chats: Sequence[ChatRef]  # the chat's link group (``[chat]`` when not linked)
    spaces: Sequence[Space]  # scheduled or live, announced in any of ``chats``, soonest first


class FeedService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        url: Callable[[str], str],
        *,
        read_uow: UnitOfWorkFactory | None = None,
        limit: int = FEED_LIMIT,
    ) -> None:
        """``url``: a token's absolute feed URL (the web app serves it: bots.web.app.WebLinks.feed)."""
        self._uow = uow
        self._read = read_uow or uow
        self._clock = clock
        self._url = url
        self._limit = limit

    async def token_for(self, chat: ChatRef) -> str:
        """``chat``'s feed token, made now if it has none (concurrent first asks all get one token)."""
        async with self._read() as uow:
            # every share page view asks: a read, not SQLite's write lock, once the token exists
            known = await uow.feeds.known(chat)
        if known is not None:
            return known
        async with self._uow() as uow:
            token = await uow.feeds.token(chat, new=secrets.token_urlsafe(TOKEN_BYTES), now=self._clock.now())
            await uow.commit()
        return token

    async def url_for(self, chat: ChatRef) -> str:
        """The absolute URL of ``chat``'s feed (made on first ask)."""
        return self._url(await self.token_for(chat))

    async def feed(self, token: str) -> Feed | None:
        """The feed behind ``token``, None for an unknown token. Three indexed reads in one transaction:
        the token, the chat's link group, the group's upcoming Spaces (bounded by the limit)."""
        async with self._read() as uow:
            chat = await uow.feeds.chat(token)
            if chat is None:
                return None
            chats = await uow.links.chats(chat)
            spaces = await uow.spaces.upcoming_in_chats(chats, self._limit)
        return Feed(chat, chats, spaces)
