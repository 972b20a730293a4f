"""What we remember about people and communities: zone, language, display name, DM reachability.

Adapters call :meth:`ProfileService.seen` on every interaction, so cards show names, notices speak the
user's language, and a user who opens a DM with the bot becomes reachable again after having been marked
unreachable.
"""

from __future__ import annotations

from core.models import Community, UserProfile
from core.ports import UnitOfWork, UnitOfWorkFactory
from core.refs import ChatRef, UserRef
from core.texts import pick_locale
from core.timeparse import check_zone


class ProfileService:
    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def seen(
        self,
        user: UserRef,
        *,
        display_name: str | None = None,
        locale: str | None = None,
        dm_reachable: bool | None = None,
    ) -> UserProfile:
        """Record what an interaction tells us. Writes only when something changed."""
        async with self._uow() as uow:
            # read-modify-write of the whole profile: locked, or a concurrent set_zone() would be undone
            await uow.users.lock(user)
            profile = await uow.users.get(user) or UserProfile(user)
            before = (profile.display_name, profile.locale, profile.dm_reachable)
            if display_name:
                profile.display_name = display_name[:255]
            if locale:
                profile.locale = pick_locale(locale)
            if dm_reachable is not None:
                profile.dm_reachable = dm_reachable
            if (profile.display_name, profile.locale, profile.dm_reachable) != before:
                await uow.users.upsert(profile)
                await uow.commit()
            return profile

    async def get(self, user: UserRef) -> UserProfile | None:
        async with self._uow() as uow:
            return await uow.users.get(user)

    async def set_zone(self, user: UserRef, zone: str) -> str:
        """Raises InvalidTime("time.unknown_zone") for a zone that does not exist."""
        name = check_zone(zone)
        async with self._uow() as uow:
            await uow.users.lock(user)
            profile = await uow.users.get(user) or UserProfile(user)
            profile.tz = name
            await uow.users.upsert(profile)
            await uow.commit()
        return name

    async def set_community(
        self,
        chat: ChatRef,
        *,
        zone: str | None = None,
        locale: str | None = None,
        moderator_role: str | None = None,
    ) -> Community:
        """Moderators only: the adapter checks that before calling. For a whole guild or workspace, pass
        ``chat.community`` (its settings then hold for each of its chats without settings of their own)."""
        async with self._uow() as uow:
            community = await uow.communities.get(chat) or Community(chat)
            if zone is not None:
                community.tz = check_zone(zone)
            if locale is not None:
                community.locale = pick_locale(locale)
            if moderator_role is not None:
                community.moderator_role = moderator_role or None
            await uow.communities.upsert(community)
            await uow.commit()
        return community


async def community_zone(uow: UnitOfWork, chat: ChatRef) -> str | None:
    """The zone a chat's community chose: the chat's own settings, else (a Discord guild, a Slack workspace)
    those of its whole scope; None when neither chose one."""
    for where in dict.fromkeys((chat, chat.community)):
        community = await uow.communities.get(where)
        if community and community.tz:
            return community.tz
    return None
