"""One Space, every platform (issue 14): linking chats into a group, and a person's accounts.

``/space link`` (a moderator, in a chat) answers with a one-time code; ``/space link <code>`` typed by a
moderator of another chat, on any platform, puts both chats in one group (merging their groups). From then
on a Space scheduled in any chat of the group is announced in all of them (core.services.spaces), and each
side's open Spaces are announced in the other at once. ``/space unlink`` takes a chat out of its group: its
moderator decides, no code needed, and the chats left are told.

The same two commands in a private chat with the bot link one person's accounts: a reminder then reaches
them once, on the platform they subscribed from last (storage's fan-out), and moderators of the group's
chats may manage its Spaces (core.services.manage).

A code's purpose says where it may be redeemed: a group's code in a group, a private chat's in a private
chat. The code itself is short (core.ports.OneTimeCodes ``short``: 50 bits): it is only ever guessed online,
one guess per command, for :data:`LINK_TTL`, and dies at its first use — of two moderators typing it at
once, exactly one links.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.errors import UserError
from core.models import Delivery, DeliveryKind
from core.notices import reply
from core.ports import Clock, OneTimeCodes, UnitOfWork, UnitOfWorkFactory, WakeUps
from core.refs import ChatRef, Platform, UserRef, parse_chat, parse_user
from core.services.replies import to_payload
from core.services.spaces import SpaceService
from core.texts import t

CHAT_CODE = "link-chat"  # purpose of a code issued in a group: redeemed in a group only
PERSON_CODE = "link-person"  # purpose of a code issued in a private chat: redeemed in a private chat only
LINK_TTL = timedelta(minutes=10)
ANNOUNCE_LIMIT = 50  # open Spaces per chat announced in the other side when two chats are linked


@dataclass(frozen=True, slots=True)
class Linked:
    """What a ``/space link <code>`` did: the group as it is now (the asker's chat or account first)."""

    members: Sequence[ChatRef | UserRef]
    announced: int = 0  # cards queued for the Spaces each side already had


def describe_chats(here: ChatRef, chats: Sequence[ChatRef], locale: str) -> str:
    """The other chats of a group, in words a member understands: "a Discord channel (and 2 more chats)"."""
    others = [c for c in chats if c != here]
    if not others:
        return ""
    # name a chat of another platform first: "a Discord channel" says more than "a Telegram group"
    others.sort(key=lambda c: (c.platform == here.platform, str(c)))
    first = t(locale, f"link.what.{others[0].platform.value}")
    more = t(locale, "link.more", count=len(others) - 1) if len(others) > 1 else ""
    return first + more


def describe_accounts(accounts: Sequence[UserRef]) -> str:
    names = {Platform.TELEGRAM: "Telegram", Platform.DISCORD: "Discord", Platform.SLACK: "Slack"}
    return ", ".join(names.get(a.platform, str(a.platform)) for a in accounts)


class LinkService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        wake: WakeUps,
        codes: OneTimeCodes,
        spaces: SpaceService,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._wake = wake
        self._codes = codes
        self._spaces = spaces

    async def new_code(self, subject: ChatRef | UserRef) -> str:
        """A code that links ``subject`` (a chat: redeemable in a group; an account: in a private chat)."""
        purpose = CHAT_CODE if isinstance(subject, ChatRef) else PERSON_CODE
        return await self._codes.issue(
            purpose, now=self._clock.now(), ttl=LINK_TTL, subject=str(subject), short=True
        )

    async def link_chat(
        self, chat: ChatRef, code: str, *, locale: str, request_id: str | None = None
    ) -> Linked:
        """Redeem a group's code in ``chat``: both chats' groups become one. The other chats of the group
        are told (an outbox reply each); each side's open Spaces get a card in the other. Raises UserError
        (unknown, used or expired code; this chat's own code; already linked)."""
        now = self._clock.now()
        done = _done_key(request_id)
        if done is not None:
            async with self._uow() as uow:
                if await uow.inbound.recall(chat.platform, done) is not None:
                    # the platform delivered this command again (a crash before its answer was queued):
                    # the code is spent, the chats are linked — the same answer, nothing done twice
                    return Linked(_first(chat, await uow.links.chats(chat)))
        found = await self._codes.redeem(CHAT_CODE, code, now=now)
        if not found:
            raise UserError("link.bad_code")
        other = parse_chat(found)
        if other == chat:
            raise UserError("link.self")
        rows: list[Delivery] = []
        async with self._uow() as uow:
            if not await uow.links.link_chats(other, chat, now=now):
                raise UserError("link.already")
            if done is not None:
                await uow.inbound.remember(chat.platform, done, found)
            group = await uow.links.chats(chat)
            rows += await self._announce_open(uow, group, now)
            announced = len(rows)
            tag = request_id or secrets.token_hex(8)
            for c in group:
                if c != chat:
                    loc = await _chat_locale(uow, c, locale)
                    text = t(loc, "link.told", what=describe_chats(c, group, loc))
                    rows.append(_tell(c, text, loc, key=f"link:{tag}:{c}", now=now))
            await uow.deliveries.add(rows)
            await uow.commit()
        if rows:
            self._wake.arm(now)
        return Linked(_first(chat, group), announced)

    async def unlink_chat(
        self, chat: ChatRef, *, locale: str, request_id: str | None = None
    ) -> list[ChatRef]:
        """Take ``chat`` out of its group; the chats left are told. Returns them ([] if it was not linked).
        Cards already posted stay (they keep turning live with their Space)."""
        now = self._clock.now()
        rows: list[Delivery] = []
        async with self._uow() as uow:
            left = await uow.links.unlink_chat(chat)
            tag = request_id or secrets.token_hex(8)
            for c in left:
                loc = await _chat_locale(uow, c, locale)
                what = describe_chats(c, [chat], loc)
                text = t(loc, "link.told_unlinked", what=what[:1].upper() + what[1:])
                rows.append(_tell(c, text, loc, key=f"unlink:{tag}:{c}", now=now))
            await uow.deliveries.add(rows)
            await uow.commit()
        if rows:
            self._wake.arm(now)
        return left

    async def link_account(self, user: UserRef, code: str, *, request_id: str | None = None) -> Linked:
        """Redeem a private chat's code as ``user``: both accounts become one person's."""
        now = self._clock.now()
        done = _done_key(request_id)
        if done is not None:
            async with self._uow() as uow:
                if await uow.inbound.recall(user.platform, done) is not None:  # delivered again
                    return Linked(_first(user, await uow.links.accounts(user)))
        found = await self._codes.redeem(PERSON_CODE, code, now=now)
        if not found:
            raise UserError("link.bad_code")
        other = parse_user(found)
        if other == user:
            raise UserError("link.self_account")
        async with self._uow() as uow:
            if not await uow.links.link_accounts(other, user, now=now):
                raise UserError("link.already_account")
            if done is not None:
                await uow.inbound.remember(user.platform, done, found)
            accounts = await uow.links.accounts(user)
            await uow.commit()
        return Linked(_first(user, accounts))

    async def unlink_account(self, user: UserRef) -> list[UserRef]:
        async with self._uow() as uow:
            left = await uow.links.unlink_account(user)
            await uow.commit()
        return left

    async def _announce_open(
        self, uow: UnitOfWork, group: Sequence[ChatRef], now: datetime
    ) -> list[Delivery]:
        """Every open Space of any chat of the group, carded in every chat of it (idempotent keys: where
        it is announced already, nothing is added)."""
        seen: set[str] = set()
        rows: list[Delivery] = []
        for c in group:
            for space in await uow.spaces.upcoming_in_chat(c, ANNOUNCE_LIMIT):
                if space.id in seen:
                    continue
                seen.add(space.id)
                rows += await self._spaces.announcements(uow, space, group, now)
        return rows


async def _chat_locale(uow: UnitOfWork, chat: ChatRef, fallback: str) -> str:
    """The language a chat is told things in: its community's, when set; else the asker's."""
    community = await uow.communities.get(chat.community)
    return community.locale if community is not None and community.locale else fallback


def _done_key(request_id: str | None) -> str | None:
    """The inbound request id recording that this command's code was redeemed (a retry finds it)."""
    return None if request_id is None else f"{request_id}:linked"


def _first(
    here: ChatRef | UserRef, members: Sequence[ChatRef] | Sequence[UserRef]
) -> list[ChatRef | UserRef]:
    return [here, *(m for m in members if m != here)]


def _tell(chat: ChatRef, text: str, locale: str, *, key: str, now: datetime) -> Delivery:
    """A plain message to a chat, through the outbox (a reply row: paced, retried, never lost)."""
    return Delivery(
        key=key,
        kind=DeliveryKind.REPLY,
        platform=chat.platform,
        recipient=str(chat),
        space_id=None,
        revision=0,
        due_at=now,
        payload=to_payload(reply(text, locale=locale)),
    )
