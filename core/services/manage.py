"""Managing a Space from a chat: the same verbs and replies on every platform.

Adapters translate a button press or a command into ``(verb, actor, space id)`` and show the returned reply;
the permission rule (host, or a moderator of the community where the Space is announced) is applied here,
asking the platform through ``is_moderator`` only when the actor is not the host.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from core import confirmations, notices
from core.commands import (
    CancelSpace,
    EndSpace,
    RenameSpace,
    RescheduleSpace,
    StartSpace,
    Subscribe,
    Unsubscribe,
)
from core.errors import UserError
from core.models import Space, SpaceStatus
from core.notices import Notice, Verb
from core.ports import Links
from core.refs import ChatRef, UserRef
from core.rules import Actor
from core.services.spaces import SpaceService, SubscribeResult
from core.texts import t

ModeratorCheck = Callable[[ChatRef, UserRef], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class Reply:
    text: str
    space: Space | None = None
    subscription: SubscribeResult | None = None
    # the start the text states (``when_text``: those exact words of ``text``), for platforms that show
    # times natively; None when the text states no time
    when_text: str | None = None

    def notice(self, locale: str, *, reply_to: str | None = None, ephemeral: bool = False) -> Notice:
        """The reply as a notice, carrying the Space's start and status as data."""
        space = self.space
        return notices.reply(
            self.text,
            locale=locale,
            reply_to=reply_to,
            when=None if space is None else space.started_at or space.starts_at,
            when_text=self.when_text,
            status=None if space is None else space.status,
            ephemeral=ephemeral,
        )


class ManageService:
    def __init__(self, spaces: SpaceService, links: Links) -> None:
        self._spaces = spaces
        self._links = links

    async def actor_for(
        self, user: UserRef, space: Space, locale: str, is_moderator: ModeratorCheck
    ) -> Actor:
        """The host first (never a network call for them); then a moderator of any chat the Space's chat is
        linked with — asked on the user's own platform only (a Discord moderator is never asked about a
        Telegram group), and in the user's own workspace where users are per workspace (Slack)."""
        if user == space.host:
            return Actor(user, locale=locale)
        chats = await self._spaces.linked_chats(space.chat)
        mod = False
        for chat in chats:
            if chat.platform is not user.platform or (user.scope is not None and chat.scope != user.scope):
                continue
            if await is_moderator(chat, user):
                mod = True
                break
        return Actor(user, is_moderator=mod, locale=locale)

    async def run(
        self,
        verb: Verb,
        user: UserRef,
        locale: str,
        space_id: str,
        *,
        is_moderator: ModeratorCheck,
        via_chat: ChatRef | None = None,
        request_id: str | None = None,
        audio_source: str | None = None,
    ) -> Reply:
        """Do ``verb`` and say what happened. Raises UserError (render it with core.texts.t).
        ``audio_source``: START only, the source to go live with (None keeps the Space's)."""
        if verb is Verb.SUBSCRIBE:
            return await self.subscribe(user, locale, space_id, via_chat)
        if verb is Verb.UNSUBSCRIBE:
            return await self.unsubscribe(user, locale, space_id)
        space = await self._spaces.get(space_id)
        actor = await self.actor_for(user, space, locale, is_moderator)
        if verb is Verb.START:
            res = await self._spaces.start(StartSpace(actor, space_id, request_id, audio_source))
            if res.already_live:
                return Reply(t(locale, "reply.already_live", title=res.space.title), res.space)
            return Reply(t(locale, "reply.started", title=res.space.title, count=res.notified), res.space)
        if verb is Verb.END:
            space = await self._spaces.end(EndSpace(actor, space_id, request_id))
            reach = await self._spaces.reach(space_id)
            text = t(locale, "reply.ended", title=space.title)
            if reach.messaged or reach.mentioned or reach.unreachable:
                # whoever could not be reached is shown to the host, as a count: nothing fails silently
                text += "\n" + t(
                    locale,
                    "reply.reach",
                    messaged=reach.messaged,
                    mentioned=reach.mentioned,
                    unreachable=reach.unreachable,
                )
            return Reply(text, space)
        space = await self._spaces.cancel(CancelSpace(actor, space_id, request_id))
        told = await self._spaces.subscriber_count(space_id)  # "subscribers are being told" only if any
        return Reply(t(locale, "reply.cancelled", title=space.title, count=told), space)

    async def reschedule(
        self,
        user: UserRef,
        locale: str,
        space_id: str,
        when_text: str,
        *,
        is_moderator: ModeratorCheck,
        request_id: str | None = None,
    ) -> Reply:
        space = await self._spaces.get(space_id)
        actor = await self.actor_for(user, space, locale, is_moderator)
        space = await self._spaces.reschedule(
            RescheduleSpace(actor, space_id, when_text, request_id=request_id)
        )
        return Reply(
            confirmations.rescheduled(space, locale), space, when_text=confirmations.when_text(space, locale)
        )

    async def rename(
        self,
        user: UserRef,
        locale: str,
        space_id: str,
        title: str,
        *,
        is_moderator: ModeratorCheck,
        request_id: str | None = None,
    ) -> Reply:
        """``/rename <id> <new title>``: the one-step fix for a title that came out wrong."""
        space = await self._spaces.get(space_id)
        actor = await self.actor_for(user, space, locale, is_moderator)
        space = await self._spaces.rename(RenameSpace(actor, space_id, title, request_id=request_id))
        return Reply(
            confirmations.renamed(space, locale), space, when_text=confirmations.when_text(space, locale)
        )

    def scheduled(self, space: Space, locale: str, *, more: str = "") -> Reply:
        """The reply to whoever scheduled ``space``: its title and time apart, its link, ``more`` (lines
        only the host may read), the fixes."""
        return Reply(
            confirmations.scheduled(space, locale, self._links.space(space.id), more=more),
            space,
            when_text=confirmations.when_text(space, locale),
        )

    async def subscribe(
        self, user: UserRef, locale: str, space_id: str, via_chat: ChatRef | None = None
    ) -> Reply:
        """Sets the state "subscribed": pressing twice, or a retried press, says so and changes nothing."""
        space = await self._spaces.get(space_id)
        if space.status is SpaceStatus.LIVE:
            # too late for a reminder: point straight at the room instead
            raise UserError("reply.live_now", title=space.title, link=self._links.space(space.id))
        res = await self._spaces.subscribe(Subscribe(user, space_id, via_chat=via_chat, locale=locale))
        key = "reply.subscribed" if res.changed else "reply.already_subscribed"
        return Reply(t(locale, key, title=res.space.title), res.space, res)

    async def unsubscribe(self, user: UserRef, locale: str, space_id: str) -> Reply:
        """Sets the state "not subscribed" (idempotent, like :meth:`subscribe`)."""
        res = await self._spaces.unsubscribe(Unsubscribe(user, space_id))
        key = "reply.unsubscribed" if res.changed else "reply.not_subscribed"
        return Reply(t(locale, key, title=res.space.title), res.space, res)
