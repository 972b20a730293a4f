"""The router: one ChatPlatform that dispatches each call to the adapter of the ref's platform.

The delivery engine talks to this only, so adding a platform never touches the engine. It also starts the
platforms, each on its own: one that cannot start (its API down, a revoked token) is logged, shown as down
in /healthz and retried with backoff in the background, while the others run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Protocol, runtime_checkable

from core.errors import ChatUnavailable, TransientError
from core.models import EventSpec
from core.notices import Notice
from core.ports import ChatPlatform, NativeEvents, Places
from core.refs import ChatRef, MessageRef, Platform, UserRef

log = logging.getLogger(__name__)

# a platform that failed to start is retried after 1 s, 2 s, 4 s … at most a minute apart
RETRY_FIRST = 1.0
RETRY_MAX = 60.0


class Startable(Protocol):
    """What the router starts for a platform: the adapter itself, or a wrapper around its start (a gateway
    lease, bots/runtime/gateway.py)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@runtime_checkable
class ReportsState(Protocol):
    """A starter with more to say than up or down (e.g. "standby": another process holds the gateway)."""

    @property
    def state(self) -> str: ...


class Router:
    platform = Platform.CONSOLE  # not meaningful for the router; kept for the ChatPlatform shape

    def __init__(
        self,
        platforms: Iterable[ChatPlatform],
        *,
        starters: Mapping[Platform, Startable] | None = None,
        retry_first: float = RETRY_FIRST,
        retry_max: float = RETRY_MAX,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._by_platform: dict[Platform, ChatPlatform] = {}
        for p in platforms:
            if p.platform in self._by_platform:
                raise ValueError(f"two adapters for {p.platform}")
            self._by_platform[p.platform] = p
        self._starters: dict[Platform, Startable] = {k: v for k, v in (starters or {}).items()}
        self._retry_first = retry_first
        self._retry_max = retry_max
        self._sleep = sleep
        self._up: dict[Platform, bool] = {}
        self._errors: dict[Platform, str] = {}
        self._retries: dict[Platform, asyncio.Task[None]] = {}
        self._stopping = False

    @property
    def platforms(self) -> list[ChatPlatform]:
        return list(self._by_platform.values())

    def get(self, platform: Platform) -> ChatPlatform:
        try:
            return self._by_platform[platform]
        except KeyError:
            # no token for it here (yet): retried with backoff, dead-lettered with this reason if it stays so
            raise TransientError(f"{platform} is not configured in this process") from None

    def _starter(self, platform: Platform) -> Startable:
        return self._starters.get(platform) or self._by_platform[platform]

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start every platform, each on its own; returns once each has been tried once. A failure is
        logged, marked down (:meth:`health`) and retried in the background until it succeeds — as long as
        some chat platform runs. When none could start (a single platform whose token was refused), there is
        nothing to run: the first error is raised, as before platforms were isolated."""
        self._stopping = False
        platforms = list(self._by_platform)
        failures = await asyncio.gather(*(self._try_start(p, attempt=1) for p in platforms))
        chat = [e for p, e in zip(platforms, failures, strict=True) if p is not Platform.CONSOLE]
        if chat and all(e is not None for e in chat):
            await self.stop()
            raise next(e for e in chat if e is not None)
        loop = asyncio.get_running_loop()
        for platform, error in zip(platforms, failures, strict=True):
            if error is not None:
                self._retries[platform] = loop.create_task(self._retry(platform), name=f"start-{platform}")

    async def _try_start(self, platform: Platform, *, attempt: int) -> Exception | None:
        try:
            await self._starter(platform).start()
        except Exception as e:
            self._up[platform] = False
            # /healthz is public: it names the error's type only (an SDK's message may quote the token);
            # the log line has the message, with every secret redacted (bots/logs.py)
            self._errors[platform] = type(e).__name__
            log.error(
                "platform %s failed to start (attempt %d): %s: %s; retried in the background while the "
                "other platforms run",
                platform,
                attempt,
                type(e).__name__,
                e,
                extra={"platform": str(platform)},
            )
            # a half-started adapter lets go of what it holds before the next try (stop is idempotent)
            with contextlib.suppress(Exception):
                await self._starter(platform).stop()
            return e
        self._up[platform] = True
        self._errors.pop(platform, None)
        if attempt > 1:
            log.info(
                "platform %s started after %d attempts", platform, attempt, extra={"platform": str(platform)}
            )
        return None

    async def _retry(self, platform: Platform) -> None:
        delay, attempt = self._retry_first, 1
        while not self._stopping:
            await self._sleep(delay)
            if self._stopping:
                return
            attempt += 1
            if await self._try_start(platform, attempt=attempt) is None:
                return
            delay = min(delay * 2, self._retry_max)

    def health(self) -> dict[str, str]:
        """Each platform's state for /healthz: "up", "down: <error>", or what its starter reports."""
        out: dict[str, str] = {}
        for platform in self._by_platform:
            starter = self._starter(platform)
            if not self._up.get(platform, False):
                error = self._errors.get(platform)
                out[str(platform)] = f"down: {error}" if error else "starting"
            elif isinstance(starter, ReportsState):
                out[str(platform)] = starter.state
            else:
                out[str(platform)] = "up"
        return out

    async def stop(self) -> None:
        self._stopping = True
        retries, self._retries = list(self._retries.values()), {}
        for task in retries:
            task.cancel()
        for task in retries:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for platform in self._by_platform:
            try:
                await self._starter(platform).stop()
            except Exception:
                log.exception("stopping %s failed", platform)
            self._up[platform] = False

    # ------------------------------------------------------------------ ChatPlatform

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

    # ------------------------------------------------------------------ NativeEvents

    def _events(self, platform: Platform) -> NativeEvents:
        adapter = self.get(platform)
        if not isinstance(adapter, NativeEvents):
            # not a passing state: the row is dead-lettered with this reason
            raise ChatUnavailable(f"{platform} has no native events")
        return adapter

    async def create_event(self, chat: ChatRef, spec: EventSpec, *, key: str) -> str:
        return await self._events(chat.platform).create_event(chat, spec, key=key)

    async def update_event(self, chat: ChatRef, event_id: str, spec: EventSpec) -> str | None:
        return await self._events(chat.platform).update_event(chat, event_id, spec)

    def native_event_platforms(self) -> frozenset[Platform]:
        """The platforms whose adapter implements NativeEvents (the Space service mirrors Spaces there)."""
        return frozenset(p for p, a in self._by_platform.items() if isinstance(a, NativeEvents))

    # ------------------------------------------------------------------ Places (the share page)
    # Never raising, like the port: a platform not configured here, or without links, answers None, and an
    # adapter that breaks its contract costs its own link only (logged), never the page.

    def _places(self, platform: Platform) -> Places | None:
        adapter = self._by_platform.get(platform)
        return adapter if isinstance(adapter, Places) else None

    def message_link(self, message: MessageRef) -> str | None:
        places = self._places(message.platform)
        return _quiet(lambda: places.message_link(message)) if places is not None else None

    def event_link(self, chat: ChatRef, event_id: str) -> str | None:
        places = self._places(chat.platform)
        return _quiet(lambda: places.event_link(chat, event_id)) if places is not None else None

    def subscribe_link(self, platform: Platform, space_id: str) -> str | None:
        """The platform's link that subscribes to the Space (Telegram's deep link), if it has one."""
        places = self._places(platform)
        return _quiet(lambda: places.subscribe_link(space_id)) if places is not None else None

    async def avatar_url(self, user: UserRef) -> str | None:
        places = self._places(user.platform)
        if places is None:
            return None
        try:
            return await places.avatar_url(user)
        except Exception:
            log.warning("%s: avatar_url raised", user.platform, exc_info=True)
            return None


def _quiet(link: Callable[[], str | None]) -> str | None:
    try:
        return link()
    except Exception:
        log.warning("a platform's link raised", exc_info=True)
        return None
