"""The router: one ChatPlatform that dispatches each call to the adapter of the ref's platform.

The delivery engine talks to this only, so adding a platform never touches the engine.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from core.errors import TransientError
from core.notices import Notice
from core.ports import ChatPlatform
from core.refs import ChatRef, MessageRef, Platform, UserRef

log = logging.getLogger(__name__)


class Router:
    platform = Platform.CONSOLE  # not meaningful for the router; kept for the ChatPlatform shape

    def __init__(self, platforms: Iterable[ChatPlatform]) -> None:
        self._by_platform: dict[Platform, ChatPlatform] = {}
        for p in platforms:
            if p.platform in self._by_platform:
                raise ValueError(f"two adapters for {p.platform}")
            self._by_platform[p.platform] = p

    @property
    def platforms(self) -> list[ChatPlatform]:
        return list(self._by_platform.values())

    def get(self, platform: Platform) -> ChatPlatform:
        try:
            return self._by_platform[platform]
        except KeyError:
            # no token for it here (yet): retried with backoff, dead-lettered with this reason if it stays so
            raise TransientError(f"{platform} is not configured in this process") from None

    async def start(self) -> None:
        for p in self._by_platform.values():
            await p.start()

    async def stop(self) -> None:
        for p in self._by_platform.values():
            try:
                await p.stop()
            except Exception:
                log.exception("stopping %s failed", p.platform)

    async def post(self, chat: ChatRef, notice: Notice, *, key: str) -> MessageRef:
        return await self.get(chat.platform).post(chat, notice, key=key)

    async def edit(self, message: MessageRef, notice: Notice) -> None:
        await self.get(message.platform).edit(message, notice)

    async def direct(self, user: UserRef, notice: Notice, *, key: str) -> MessageRef:
        return await self.get(user.platform).direct(user, notice, key=key)

    async def mention(
        self, chat: ChatRef, users: Mapping[UserRef, str], notice: Notice, *, key: str
    ) -> MessageRef:
        return await self.get(chat.platform).mention(chat, users, notice, key=key)
