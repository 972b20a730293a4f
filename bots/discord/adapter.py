"""The Discord adapter: lifecycle (REST login, the gateway), sending (cards, DMs, mentions), the Space's
mirror as a Guild Scheduled Event, the gateway's event dispatches, and error mapping onto the core's errors.

Receiving: slash commands, buttons and modals arrive as INTERACTION_CREATE and are handed, unread, to the
handlers attached with :meth:`DiscordPlatform.attach` (bots/discord/handlers.py). Scheduled-event dispatches
(status changes made in Discord's own UI, members clicking "Interested") are read raw from the gateway: with
no members intent discord.py drops a USER_ADD whose user it has not cached, and we need every one.

Sending is paced by the engine's shared budget (bots/runtime/budget.py holds Discord's rates), not by
discord.py: a 429 met while sending is never slept inside the library. It comes back to the engine as
RateLimited(retry_after), whose budget then holds back that channel (or every send, for the global limit) in
every process. discord.py only waits out a bucket it already knows is exhausted (short, within the send's
timeout), and keeps its own handling for the calls made outside sends (login, command sync, start-up
reconciliation).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import json
import logging
import ssl
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, Protocol, TypeVar

import aiohttp
import discord
from discord.http import Route

import core.models as core_models
from bots.discord.render import Rendered, render, render_mentions
from bots.discord.voice import DiscordVoice
from core.audio import LinkHealth
from core.errors import ChatUnavailable, RateLimited, RecipientUnreachable, TransientError
from core.models import UserProfile
from core.notices import Notice
from core.ports import Budget, FrameFeed, UnitOfWorkFactory
from core.refs import ChatRef, MessageRef, Platform, UserRef
from core.texts import t

log = logging.getLogger(__name__)
T = TypeVar("T")

NONCE_LIMIT = 25  # characters of a message nonce (Discord's published limit)
DM_CACHE_SIZE = 10_000  # DM channel ids kept in memory (discord.py keeps 128; each miss costs an open)
READY_TIMEOUT = 60.0  # seconds start() waits for the gateway's READY (and the guilds) before giving up
EVENTS_REMEMBERED = 10_000  # scheduled events whose last status (and creating key) this process keeps
EVENT_USERS_PAGE = 100  # GET /guilds/{id}/scheduled-events/{id}/users returns at most 100 per page
WEB = "https://discord.com"
CDN = "https://cdn.discordapp.com"
AVATAR_TTL = 600.0  # seconds a user's avatar (or its absence, or a failed read) is reused by the share page
AVATAR_FAILED_TTL = 60.0  # seconds a failed read is remembered (a burst of views never repeats it)
AVATAR_CACHE_SIZE = 5_000
AVATAR_TIMEOUT = 3.0  # seconds the share page waits for GET /users/{id}; then the monogram stands in
AVATAR_BUDGET_WAIT = 1.0  # seconds an avatar read waits for room in the engine's budget, at most

# Discord's JSON error codes we act on
UNKNOWN_CHANNEL = 10003
UNKNOWN_MESSAGE = 10008
UNKNOWN_USER = 10013
CANNOT_DM = 50007
MISSING_ACCESS = 50001
MISSING_PERMISSIONS = 50013
DM_OPENS_TOO_FAST = 40003  # "opening direct messages too fast": the bot is close to quarantine
DM_QUARANTINE_HOLD = 60.0  # seconds every DM is held back after 40003

# Guild scheduled events
PRIVACY_GUILD_ONLY = 2
STAGE_INSTANCE, VOICE, EXTERNAL = 1, 2, 3
SCHEDULED, ACTIVE, COMPLETED, CANCELED = 1, 2, 3, 4
STATUS_CODES = {"SCHEDULED": SCHEDULED, "ACTIVE": ACTIVE, "COMPLETED": COMPLETED, "CANCELED": CANCELED}
STATUS_NAMES = {v: k for k, v in STATUS_CODES.items()}
STAGE_CHANNEL = 13  # channel type

# Permissions
ADMINISTRATOR = 1 << 3
MANAGE_EVENTS = 1 << 33


# ------------------------------------------------------------------------------------------ contracts


class InteractionHandlers(Protocol):
    """What bots/discord/handlers.py gives the adapter."""

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """Handle one INTERACTION_CREATE (acknowledge within 3 s: defer first)."""
        ...

    def commands(self) -> list[dict[str, Any]]:
        """The application commands, as the JSON of a bulk overwrite."""
        ...


class EventsSink(Protocol):
    """The part of the core's EventsService the gateway's dispatches call. ``status`` is the core's
    EventStatus (see :func:`core_status`); the platform itself is the trusted actor (``actor`` None)."""

    async def status_changed(
        self, platform: Platform, scope: str, event_id: str, status: Any, actor: UserRef | None
    ) -> Any: ...

    async def interest(
        self, platform: Platform, scope: str, event_id: str, user: UserRef, interested: bool
    ) -> Any: ...


class EventSpecLike(Protocol):
    """The core's EventSpec (core.models), as read here: read-only, so the frozen dataclass fits."""

    @property
    def title(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def starts_at(self) -> datetime: ...

    @property
    def ends_at(self) -> datetime: ...

    @property
    def status(self) -> Any:  # the core's EventStatus: its name is one of STATUS_CODES
        ...

    @property
    def location(self) -> str | None: ...

    @property
    def channel(self) -> ChatRef | None: ...


def core_status(code: int) -> Any:
    """A Discord event status → the core's EventStatus (by name: SCHEDULED, ACTIVE, COMPLETED, CANCELED)."""
    name = STATUS_NAMES[code]
    enum = getattr(core_models, "EventStatus", None)
    return enum[name] if enum is not None else name


def status_code(status: Any) -> int:
    name = getattr(status, "name", None) or str(status)
    return STATUS_CODES[name.upper()]


def nonce(key: str) -> str:
    """A delivery key as a message nonce: the engine's keys are hashed already; anything longer than
    Discord's 25 characters is hashed here the same way (stable: a resend carries the same nonce)."""
    if len(key) <= NONCE_LIMIT:
        return key
    return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()[:NONCE_LIMIT]


@dataclass(frozen=True, slots=True)
class DiscordConfig:
    token: str
    application_id: str | None = None
    # sharding: None = one connection (discord.Client). A count (or ids) = AutoShardedClient; each process
    # runs the shard ids it is given, out of shard_count (None: the count Discord recommends)
    shard_count: int | None = None
    shard_ids: tuple[int, ...] | None = None
    guild_ids: tuple[str, ...] = ()  # commands per guild (instant, for development) instead of global
    moderator_role: str | None = None  # a role id or name whose members may manage any Space
    ready_timeout: float = READY_TIMEOUT
    guild_ready_timeout: float = 2.0  # discord.py's wait for GUILD_CREATEs after READY
    dm_cache_size: int = DM_CACHE_SIZE
    # REST base URL (DISCORD_API_BASE); None keeps discord.py's own (https://discord.com/api/v10)
    api_base: str | None = None

    @property
    def sharded(self) -> bool:
        return self.shard_count is not None or self.shard_ids is not None


class _UnknownChannel(ChatUnavailable):
    """404 Unknown Channel: for a DM, the channel id we kept is stale (opening it again gives the new one)."""


def _mapped(e: discord.HTTPException, *, to_user: bool) -> Exception:
    """A Discord error answer → the core's error. Decided by Discord's JSON code first (the same code can
    come with different statuses), then by the status."""
    detail = f"discord {e.status}/{e.code}: {e.text}"
    if e.code == DM_OPENS_TOO_FAST:  # the bot is close to quarantine: hold every send back a while
        return RateLimited(DM_QUARANTINE_HOLD, "discord: opening DMs too fast")
    if e.status == 429:  # a 429 without Discord's headers and body (a proxy, Cloudflare): back off a while
        return RateLimited(60.0, "discord (no rate-limit headers)")
    if to_user and e.code in (CANNOT_DM, UNKNOWN_USER):  # closed DMs, a bot, a user who is gone
        return RecipientUnreachable(detail)
    if e.code == UNKNOWN_CHANNEL:
        return _UnknownChannel(detail)
    if e.status == 403 and to_user and e.code not in (MISSING_PERMISSIONS, MISSING_ACCESS):
        return RecipientUnreachable(detail)  # no shared guild any more, and other refusals of this person
    # missing access or permissions, unknown message, a payload Discord refuses: retrying cannot help;
    # dead-lettered with the reason
    return ChatUnavailable(detail)


class _Throttled(Exception):
    """A 429 seen while sending: raised from inside the HTTP call, before discord.py could sleep on it."""

    def __init__(self, retry_after: float, is_global: bool) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after
        self.is_global = is_global


# ------------------------------------------------------------------------------------------ the client


class _Events:
    """Gateway events of the client, forwarded to the platform."""

    owner: DiscordPlatform

    async def on_ready(self) -> None:
        self.owner._on_ready()

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        await self.owner._on_interaction(interaction)

    async def on_socket_raw_receive(self, msg: Any) -> None:
        await self.owner._on_raw(msg)


class _Client(_Events, discord.Client):
    pass


class _ShardedClient(_Events, discord.AutoShardedClient):
    pass


def intents() -> discord.Intents:
    """Guilds (channels, roles, our own member), scheduled events (status, Interested) and voice states
    (without them Discord sends not even the bot's own VOICE_STATE_UPDATE, and no voice connection
    completes). No privileged intent: commands and buttons arrive as interactions whatever the intents,
    members are fetched by REST when a permission check needs one, and we never read message content."""
    i = discord.Intents.none()
    i.guilds = True
    i.guild_scheduled_events = True
    i.voice_states = True
    return i


# ------------------------------------------------------------------------------------------ the platform


class DiscordPlatform:
    """core.ports.ChatPlatform, NativeEvents, VoiceBridge (bots/discord/voice.py) and Places for Discord."""

    platform = Platform.DISCORD
    needs_gateway_lease = True  # one gateway session per bot (per shard): one owning process

    def __init__(
        self,
        config: DiscordConfig,
        *,
        receive: bool = True,
        events: EventsSink | None = None,
        uow: UnitOfWorkFactory | None = None,
        budget: Budget | None = None,
        gateway_on_start: bool = True,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.config = config
        # TLS trust for the client's connections (the voice websocket is always wss://): None = the system's;
        # tests pass one trusting their voice emulator's certificate
        self._ssl = ssl_context
        self._receive = receive  # False in worker-only processes: REST only, no gateway
        self._gateway_on_start = gateway_on_start
        self._events = events
        self._uow = uow  # where DM channel ids are kept (UserProfile.dm_channel); None: memory only
        # the engine budgets each message; opening a DM channel is one more request against the same
        # global limit: the open goes on the engine's slot and the message takes one more (_after_open)
        self._budget = budget
        self._handlers: InteractionHandlers | None = None
        self._client: discord.Client | None = None
        self._connect: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._sending: contextvars.ContextVar[bool] = contextvars.ContextVar("discord_sending", default=False)
        self._dm: OrderedDict[str, str] = OrderedDict()  # user id → DM channel id (LRU)
        # event id → the status we last knew (echoes skipped); delivery key → event id (a retried create is
        # not repeated). Both bounded: a guild holds at most 100 live events, the oldest entries are stale.
        self._event_status: _Bounded[str, int] = _Bounded(EVENTS_REMEMBERED)
        self._created: _Bounded[str, str] = _Bounded(EVENTS_REMEMBERED)
        self._tasks: set[asyncio.Task[None]] = set()
        self.bot_id = 0
        self.voice = DiscordVoice(lambda: self._client)
        # user id → (expiry on the monotonic clock, avatar URL or None): the share page's avatars
        self._avatars: _Bounded[str, tuple[float, str | None]] = _Bounded(AVATAR_CACHE_SIZE)
        self._avatar_reads: dict[str, asyncio.Task[str | None]] = {}  # reads in flight, shared
        self._monotonic: Callable[[], float] = time.monotonic

    # ------------------------------------------------------------------ lifecycle

    @property
    def gateway_lease_name(self) -> str:
        """One gateway owner per bot, or per group of shards: processes running different shard ids hold
        different leases (and two processes given the same ids never both connect)."""
        if self.config.shard_ids is None:
            return (
                "discord"
                if self.config.shard_count is None
                else f"discord:shards:all/{self.config.shard_count}"
            )
        ids = ",".join(str(i) for i in sorted(self.config.shard_ids))
        return f"discord:shards:{ids}/{self.config.shard_count}"

    @property
    def client(self) -> discord.Client:
        if self._client is None:
            raise RuntimeError("DiscordPlatform.start() has not run")
        return self._client

    def attach(self, handlers: InteractionHandlers) -> None:
        """Interactions (commands, buttons, modals) go to ``handlers``; its commands are registered at start."""
        self._handlers = handlers

    def attach_events(self, events: EventsSink) -> None:
        self._events = events

    def attach_routes(self, routes: Sequence[tuple[str, str, Any]]) -> None:
        """HTTP routes this platform serves on the web app (the interactions endpoint, when configured)."""
        self._routes = tuple(routes)

    def web_routes(self) -> Sequence[tuple[str, str, Any]]:
        return getattr(self, "_routes", ())

    def _trace(self) -> aiohttp.TraceConfig:
        """Every 429 answering a send is raised to us as soon as its headers arrive: discord.py would
        otherwise sleep ``retry_after`` and retry inside the call, where the engine's budget never hears
        of it (and the other processes keep sending into the limit)."""
        trace = aiohttp.TraceConfig()

        async def on_end(_: aiohttp.ClientSession, __: Any, params: aiohttp.TraceRequestEndParams) -> None:
            if params.response.status != 429 or not self._sending.get():
                return
            h = params.response.headers
            try:  # the body has the precise wait (the Retry-After header is rounded up to whole seconds)
                body = await params.response.json(content_type=None)
            except Exception:
                body = None
            if not isinstance(body, dict):
                body = {}
            retry = (
                _seconds(body.get("retry_after"))
                or _seconds(h.get("X-RateLimit-Reset-After"))
                or _seconds(h.get("Retry-After"))
                or 1.0
            )
            is_global = body.get("global") is True or h.get("X-RateLimit-Global", "").lower() == "true"
            raise _Throttled(retry, is_global)

        trace.on_request_end.append(on_end)
        return trace

    def _new_client(self) -> discord.Client:
        cls: type[discord.Client] = _ShardedClient if self.config.sharded else _Client
        kwargs: dict[str, Any] = {
            "intents": intents(),
            "guild_ready_timeout": self.config.guild_ready_timeout,
            "enable_debug_events": True,  # on_socket_raw_receive: scheduled-event dispatches, uncached
            "http_trace": self._trace(),
            # nobody is mentioned unless a message says so (render sets it on every message anyway)
            "allowed_mentions": discord.AllowedMentions.none(),
        }
        if self._ssl is not None:
            kwargs["connector"] = aiohttp.TCPConnector(ssl=self._ssl)
        if self.config.sharded:
            kwargs["shard_count"] = self.config.shard_count
            if self.config.shard_ids is not None:
                kwargs["shard_ids"] = list(self.config.shard_ids)
        client = cls(**kwargs)
        client.owner = self  # type: ignore[attr-defined]
        return client

    async def _login(self) -> None:
        """A fresh client, logged in over REST (GET /users/@me, the application): enough to send."""
        if self.config.api_base is not None:
            # discord.py has no base-URL option: its routes read this class attribute (one bot per process)
            Route.BASE = self.config.api_base
        client = self._new_client()
        self._client = client
        self._ready.clear()
        await client.login(self.config.token)
        assert client.user is not None
        self.bot_id = client.user.id

    async def start(self) -> None:
        """Log in over REST (what sending needs, in every process), then connect the gateway where updates
        are received — unless the composition root connects it itself through the gateway lease
        (``gateway_on_start=False``: :meth:`start_gateway` in the one process holding it)."""
        await self._login()
        if self._receive and self._gateway_on_start:
            await self.start_gateway()

    async def start_gateway(self) -> None:
        """Connect the gateway (all this process's shards), wait for READY and the guilds, register the
        commands, then reconcile who is interested in our events. A worker (receive=False) never does."""
        if not self._receive or self._connect is not None:
            return
        if self._client is None:
            await self._login()
        client = self.client
        self._connect = asyncio.create_task(client.connect(reconnect=True), name="discord-gateway")
        ready = asyncio.create_task(self._ready.wait())
        done, _ = await asyncio.wait(
            {self._connect, ready}, timeout=self.config.ready_timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if ready not in done:
            ready.cancel()
            if self._connect in done:
                await self._connect  # raises why the gateway failed (bad token, intents …)
            raise TimeoutError(f"no READY from the Discord gateway within {self.config.ready_timeout:g} s")
        await self._sync_commands()
        self._spawn(self._reconcile, "discord-reconcile")
        log.info(
            "discord connected",
            extra={"bot": str(client.user), "guilds": len(client.guilds), "shards": self.config.shard_ids},
        )

    async def stop_gateway(self) -> None:
        """Disconnect the gateway (the lease went to another process) and keep sending: discord.py closes
        its HTTP session with the connection, so a fresh client logs in over REST again."""
        if self._connect is None:
            return
        await self.stop()
        await self._login()

    def _on_ready(self) -> None:
        self._ready.set()

    async def stop(self) -> None:
        await self.voice.close()  # every voice channel left, no sender thread behind
        client, self._client = self._client, None
        for task in list(self._tasks):
            task.cancel()
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()
        connect, self._connect = self._connect, None
        if connect is not None:
            connect.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await connect

    def _spawn(self, work: Callable[[], Awaitable[None]], name: str) -> None:
        async def run() -> None:
            try:
                await work()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s failed", name)

        task = asyncio.create_task(run(), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sync_commands(self) -> None:
        """Bulk-overwrite the application commands: per guild when DISCORD_GUILD_IDS is set (they appear at
        once), else globally."""
        if self._handlers is None:
            return
        app_id = self.config.application_id or str(self.client.application_id or "")
        if not app_id:
            log.warning("discord commands not registered: no application id")
            return
        payload = self._handlers.commands()
        if self.config.guild_ids:
            for guild in self.config.guild_ids:
                await self.client.http.bulk_upsert_guild_commands(app_id, guild, payload)
        else:
            await self.client.http.bulk_upsert_global_commands(app_id, payload)

    # ------------------------------------------------------------------ voice (core.ports.VoiceBridge)

    def can_join(self, channel: ChatRef) -> bool:
        return self.voice.can_join(channel)

    async def join(self, channel: ChatRef, feed: FrameFeed) -> None:
        await self.voice.join(channel, feed)

    async def leave(self, channel: ChatRef) -> None:
        await self.voice.leave(channel)

    def voice_health(self, channel: ChatRef) -> LinkHealth:
        return self.voice.voice_health(channel)

    # ------------------------------------------------------------------ inbound

    async def _on_interaction(self, interaction: discord.Interaction) -> None:
        if self._handlers is None:
            log.warning(
                "discord interaction with no handlers attached", extra={"type": str(interaction.type)}
            )
            return
        await self._handlers.on_interaction(interaction)

    async def _on_raw(self, msg: Any) -> None:
        """Every gateway frame, as text (discord.py hands it over before parsing it): only scheduled-event
        dispatches are parsed again here, the rest (a large guild's GUILD_CREATE …) is skipped unread."""
        if isinstance(msg, str):
            if "GUILD_SCHEDULED_EVENT_" not in msg:
                return
            try:
                msg = json.loads(msg)
            except ValueError:
                return
        if not isinstance(msg, dict) or msg.get("op") != 0:
            return
        kind, data = msg.get("t"), msg.get("d")
        if not isinstance(data, dict) or self._events is None:
            return
        if kind == "GUILD_SCHEDULED_EVENT_UPDATE":
            await self._event_updated(data)
        elif kind in ("GUILD_SCHEDULED_EVENT_USER_ADD", "GUILD_SCHEDULED_EVENT_USER_REMOVE"):
            event_id, user_id, guild_id = (
                data.get("guild_scheduled_event_id"),
                data.get("user_id"),
                data.get("guild_id"),
            )
            if not (event_id and user_id and guild_id) or str(user_id) == str(self.bot_id):
                return
            await self._events.interest(
                Platform.DISCORD,
                str(guild_id),
                str(event_id),
                UserRef(Platform.DISCORD, str(user_id)),
                kind.endswith("_ADD"),
            )

    async def _event_updated(self, data: dict[str, Any]) -> None:
        """A status change made in Discord (a moderator started or ended the event in its UI) becomes the
        core's command; the update our own PATCH causes is recognised and skipped."""
        event_id, guild_id, status = str(data.get("id")), data.get("guild_id"), data.get("status")
        if not guild_id or status not in STATUS_NAMES:
            return
        if self._event_status.get(event_id) == status:
            return
        self._event_status[event_id] = status
        assert self._events is not None
        await self._events.status_changed(
            Platform.DISCORD, str(guild_id), event_id, core_status(status), None
        )

    async def _reconcile(self) -> None:
        """After READY: everyone Interested in our scheduled or live events, so that a restart misses
        nobody who clicked while we were away (the core's subscribe is idempotent)."""
        if self._events is None:
            return
        for guild in self.client.guilds:
            for event in guild.scheduled_events:
                if event.creator_id != self.bot_id or event.status not in (
                    discord.EventStatus.scheduled,
                    discord.EventStatus.active,
                ):
                    continue
                self._event_status[str(event.id)] = event.status.value
                async for user_id in self._event_users(guild.id, event.id):
                    await self._events.interest(
                        Platform.DISCORD,
                        str(guild.id),
                        str(event.id),
                        UserRef(Platform.DISCORD, user_id),
                        True,
                    )

    async def _event_users(self, guild_id: int, event_id: int) -> Any:
        after: str | None = None
        while True:
            route = Route(
                "GET",
                "/guilds/{guild_id}/scheduled-events/{event_id}/users",
                guild_id=guild_id,
                event_id=event_id,
            )
            params: dict[str, Any] = {"limit": EVENT_USERS_PAGE}
            if after is not None:
                params["after"] = after
            page = await self.client.http.request(route, params=params)
            ids = [str(item["user"]["id"]) for item in page if isinstance(item, dict) and "user" in item]
            for uid in ids:
                yield uid
            if len(ids) < EVENT_USERS_PAGE:
                return
            after = max(ids, key=int)

    # ------------------------------------------------------------------ sending (core.ports.ChatPlatform)

    async def post(self, chat: ChatRef, notice: Notice, *, key: str) -> MessageRef:
        msg = await self._send_message(chat.id, render(notice), nonce(key), to_user=False)
        return self._message_ref(chat, str(msg["id"]))

    async def edit(self, message: MessageRef, notice: Notice) -> None:
        route = Route(
            "PATCH",
            "/channels/{channel_id}/messages/{message_id}",
            channel_id=message.chat_id,
            message_id=message.id,
        )
        # an edit that changes nothing is accepted by Discord as it is: nothing to special-case
        await self._call(self.client.http.request(route, json=render(notice).payload()), to_user=False)

    async def direct(self, user: UserRef, notice: Notice, *, key: str) -> MessageRef:
        channel = await self._dm_channel(user)
        try:
            msg = await self._send_message(channel, render(notice), nonce(key), to_user=True)
        except _UnknownChannel:
            # the DM channel we kept is gone (Discord forgot it): open it again, once
            await self._forget_dm(user)
            channel = await self._dm_channel(user)
            msg = await self._send_message(channel, render(notice), nonce(key), to_user=True)
        return MessageRef(Platform.DISCORD, channel, str(msg["id"]))

    async def _after_open(self) -> None:
        """A DM channel was just opened on the slot the engine took for the message: the message takes a
        slot of its own. (Taking the open's slot first and sending both back to back on the later one put
        two requests in one slot's time: Discord's global limit answered with 429s.)"""
        if self._budget is not None:
            await self._budget.acquire(Platform.DISCORD)  # bounded by the engine's send timeout

    async def mention(
        self, chat: ChatRef, users: Mapping[UserRef, str], notice: Notice, *, key: str
    ) -> MessageRef:
        """The DM fallback in the announcement channel: only the named users may be pinged (never
        @everyone, never a role). One message per 2,000 characters of mentions (the engine's batches fit
        in one); each has its own nonce, so a retried batch is not shown twice."""
        prefix = t(notice.locale, "notice.mention", mentions="{mentions}")
        messages = render_mentions(users, notice, prefix)
        first: MessageRef | None = None
        for i, rendered in enumerate(messages):
            msg = await self._send_message(
                chat.id, rendered, nonce(key if i == 0 else f"{key}:{i}"), to_user=False
            )
            first = first or self._message_ref(chat, str(msg["id"]))
        if first is None:
            raise ValueError("no user to mention")
        return first

    def _message_ref(self, chat: ChatRef, message_id: str) -> MessageRef:
        # guild channels carry their guild (refs with a scope): the message keeps it
        return MessageRef(Platform.DISCORD, chat.id, message_id, scope=chat.scope)

    async def _send_message(
        self, channel_id: str, rendered: Rendered, message_nonce: str, *, to_user: bool
    ) -> dict[str, Any]:
        route = Route("POST", "/channels/{channel_id}/messages", channel_id=channel_id)
        result = await self._call(
            self.client.http.request(route, json=rendered.payload(nonce=message_nonce)), to_user=to_user
        )
        if not isinstance(result, dict) or "id" not in result:
            raise TransientError("discord: a message without an id")
        return result

    async def _dm_channel(self, user: UserRef) -> str:
        """The user's DM channel id: from memory, else the user's profile, else opened (and kept both ways:
        opening DMs quickly is what gets bots quarantined)."""
        cached = self._dm.get(user.id)
        if cached is not None:
            self._dm.move_to_end(user.id)
            return cached
        stored = await self._stored_dm(user)
        if stored is None:
            data = await self._call(self.client.http.start_private_message(int(user.id)), to_user=True)
            stored = str(data["id"])
            await self._store_dm(user, stored)
            await self._after_open()
        self._remember_dm(user.id, stored)
        return stored

    def _remember_dm(self, user_id: str, channel: str) -> None:
        self._dm[user_id] = channel
        self._dm.move_to_end(user_id)
        while len(self._dm) > self.config.dm_cache_size:
            self._dm.popitem(last=False)

    async def _stored_dm(self, user: UserRef) -> str | None:
        if self._uow is None:
            return None
        try:
            async with self._uow() as uow:
                profile = await uow.users.get(user)
        except Exception as e:  # the cache is an optimisation: never a reason not to send
            log.warning("reading a DM channel failed: %s", type(e).__name__)
            return None
        return profile.dm_channel if profile is not None else None

    async def _store_dm(self, user: UserRef, channel: str | None) -> None:
        if self._uow is None:
            return
        try:
            async with self._uow() as uow:
                await uow.users.lock(user)
                profile = await uow.users.get(user) or UserProfile(user)
                await uow.users.upsert(replace(profile, dm_channel=channel))
                await uow.commit()
        except Exception as e:
            log.warning("keeping a DM channel failed: %s", type(e).__name__)

    async def _forget_dm(self, user: UserRef) -> None:
        self._dm.pop(user.id, None)
        await self._store_dm(user, None)

    async def _call(self, call: Awaitable[T], *, to_user: bool) -> T:
        """One REST call of a send, its errors mapped onto what the engine understands."""
        token = self._sending.set(True)
        try:
            return await call
        except _Throttled as e:
            if e.is_global and self._budget is not None:
                # the engine holds back the channel it sent to; a global 429 holds back every send of the
                # bot, in every process sharing the budget
                await self._budget.penalise(Platform.DISCORD, e.retry_after)
            raise RateLimited(e.retry_after, "discord (global)" if e.is_global else "discord") from e
        except discord.RateLimited as e:  # a bucket discord.py knows is exhausted for a long time
            raise RateLimited(e.retry_after, "discord") from e
        except discord.DiscordServerError as e:
            raise TransientError(f"discord {e.status}") from e
        except discord.HTTPException as e:
            raise _mapped(e, to_user=to_user) from e
        except (aiohttp.ClientError, OSError) as e:
            raise TransientError(f"discord: {type(e).__name__}") from e
        finally:
            self._sending.reset(token)

    # ------------------------------------------------------------------ native events (core NativeEvents)

    async def _guild_of(self, chat: ChatRef) -> str:
        if chat.scope:
            return chat.scope
        channel = self.client.get_channel(int(chat.id))
        guild = getattr(channel, "guild", None)
        if guild is not None:
            return str(guild.id)
        data: dict[str, Any] = dict(
            await self._call(self.client.http.get_channel(int(chat.id)), to_user=False)
        )
        if not data.get("guild_id"):
            raise ChatUnavailable("not a guild channel: scheduled events belong to guilds")
        return str(data["guild_id"])

    async def _channel_type(self, channel: ChatRef) -> int:
        cached = self.client.get_channel(int(channel.id))
        kind = getattr(cached, "type", None)
        if kind is not None:
            return int(kind.value)
        data = await self._call(self.client.http.get_channel(int(channel.id)), to_user=False)
        return int(data["type"])

    async def _event_body(self, spec: EventSpecLike) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": _cap(spec.title, 100),
            "description": _cap(spec.description, 1000),
            "scheduled_start_time": _iso(spec.starts_at),
            "scheduled_end_time": _iso(spec.ends_at),
            "privacy_level": PRIVACY_GUILD_ONLY,
        }
        if spec.channel is not None:
            kind = await self._channel_type(spec.channel)
            body["entity_type"] = STAGE_INSTANCE if kind == STAGE_CHANNEL else VOICE
            body["channel_id"] = spec.channel.id
            body["entity_metadata"] = None
        else:
            body["entity_type"] = EXTERNAL
            body["channel_id"] = None
            body["entity_metadata"] = {"location": _cap(spec.location or "", 100)}
        return body

    async def create_event(self, chat: ChatRef, spec: EventSpecLike, *, key: str) -> str:
        """Mirror a Space as a Guild Scheduled Event. Discord has no idempotency key for events: a retried
        create (the first one's answer was lost) finds the event it made — ours, same name, same start —
        instead of making a second one."""
        if key in self._created:
            return self._created[key]
        guild = await self._guild_of(chat)
        body = await self._event_body(spec)
        existing = await self._find_event(guild, body["name"], spec.starts_at)
        if existing is None:
            route = Route("POST", "/guilds/{guild_id}/scheduled-events", guild_id=guild)
            data = await self._call(self.client.http.request(route, json=body), to_user=False)
            existing = str(data["id"])
            self._event_status[existing] = SCHEDULED
        self._created[key] = existing
        if status_code(spec.status) != SCHEDULED:  # created for a Space already live or over
            await self.update_event(chat, existing, spec)
        return existing

    async def _find_event(self, guild: str, name: str, starts_at: datetime) -> str | None:
        route = Route("GET", "/guilds/{guild_id}/scheduled-events", guild_id=guild)
        events = await self._call(self.client.http.request(route), to_user=False)
        for e in events if isinstance(events, list) else []:
            if (
                str(e.get("creator_id")) == str(self.bot_id)
                and e.get("name") == name
                and _parse(e.get("scheduled_start_time")) == starts_at.astimezone(UTC).replace(microsecond=0)
            ):
                return str(e["id"])
        return None

    async def update_event(self, chat: ChatRef, event_id: str, spec: EventSpecLike) -> None:
        """Keep the event in step with the Space. Discord only allows SCHEDULED → ACTIVE → COMPLETED and
        SCHEDULED → CANCELED, and freezes the times of a started event: the path is walked from the
        event's current status, and a status it already has is success (a retried update)."""
        guild = await self._guild_of(chat)
        route = Route(
            "GET", "/guilds/{guild_id}/scheduled-events/{event_id}", guild_id=guild, event_id=event_id
        )
        current = await self._call(self.client.http.request(route), to_user=False)
        now = int(current.get("status", SCHEDULED))
        target = status_code(spec.status)
        if now == SCHEDULED and target == SCHEDULED:
            await self._patch_event(guild, event_id, await self._event_body(spec))
            return
        for step in _path(now, target):
            await self._patch_event(guild, event_id, {"status": step})

    async def _patch_event(self, guild: str, event_id: str, body: dict[str, Any]) -> None:
        route = Route(
            "PATCH", "/guilds/{guild_id}/scheduled-events/{event_id}", guild_id=guild, event_id=event_id
        )
        if "status" in body:  # the dispatch this causes is our own doing: not a moderator's command
            self._event_status[event_id] = body["status"]
        await self._call(self.client.http.request(route, json=body), to_user=False)

    # ------------------------------------------------------------------ links for the share page (core Places)

    def _guild_known(self, chat: ChatRef) -> str | None:
        """The chat's guild without a request: its scope, else the gateway's channel cache."""
        if chat.scope:
            return chat.scope
        if self._client is None or not chat.id.isdigit():
            return None
        guild = getattr(self._client.get_channel(int(chat.id)), "guild", None)
        return str(guild.id) if guild is not None else None

    def message_link(self, message: MessageRef) -> str | None:
        guild = self._guild_known(message.chat)
        if guild is None or not (guild.isdigit() and message.chat_id.isdigit() and message.id.isdigit()):
            return None  # a DM, or a channel this process cannot place: no link anyone else could open
        return f"{WEB}/channels/{guild}/{message.chat_id}/{message.id}"

    def event_link(self, chat: ChatRef, event_id: str) -> str | None:
        guild = self._guild_known(chat)
        if guild is None or not (guild.isdigit() and event_id.isdigit()):
            return None
        return f"{WEB}/events/{guild}/{event_id}"

    def subscribe_link(self, space_id: str) -> str | None:
        return None  # subscribing is the card's 🔔 or the event's "Interested": the links above lead there

    async def avatar_url(self, user: UserRef) -> str | None:
        """The user's own avatar on Discord's CDN (GET /users/{id}), None when they have none (the page's
        monogram then beats Discord's grey default). Cached (answers and failures alike), concurrent page
        views of one host share one request, which takes its slot in the engine's budget (Discord's
        global limit is the sends' too) but waits AVATAR_TIMEOUT at most, the budget's part included."""
        if user.platform is not Platform.DISCORD or not user.id.isdigit() or self._client is None:
            return None
        now = self._monotonic()
        cached = self._avatars.get(user.id)
        if cached is not None and cached[0] > now:
            return cached[1]
        read = self._avatar_reads.get(user.id)
        if read is None:
            read = asyncio.get_running_loop().create_task(self._read_avatar(user.id))
            self._avatar_reads[user.id] = read
            read.add_done_callback(lambda _: self._avatar_reads.pop(user.id, None))
        try:
            return await asyncio.shield(read)
        except Exception:
            return None

    async def _read_avatar(self, user_id: str) -> str | None:
        url: str | None = None
        ttl = AVATAR_TTL
        try:
            async with asyncio.timeout(AVATAR_TIMEOUT):
                # one request against the bot's global limit, like a send: taken from the same budget, but
                # never waited for long (sends come first; the monogram stands in meanwhile)
                budget = self._budget
                if (
                    budget is not None
                    and await budget.acquire(Platform.DISCORD, max_wait=AVATAR_BUDGET_WAIT) < 0
                ):
                    raise TimeoutError("no room in the budget")
                data = await self.client.http.get_user(int(user_id))
            url = avatar_cdn_url(user_id, data.get("avatar") if isinstance(data, dict) else None)
        except Exception as e:  # never a reason for the page to fail: the monogram stands in
            log.warning("reading a discord avatar failed: %s", type(e).__name__)
            ttl = AVATAR_FAILED_TTL
        self._avatars[user_id] = (self._monotonic() + ttl, url)
        return url

    # ------------------------------------------------------------------ platform queries for handlers

    async def is_moderator(self, chat: ChatRef, user: UserRef) -> bool:
        """Manage Events (or Administrator) in the channel's guild, the guild's owner, or the configured
        moderator role (DISCORD_MODERATOR_ROLE, an id or a name)."""
        try:
            guild_id = await self._guild_of(chat)
            guild = self.client.get_guild(int(guild_id))
            member = await self.client.http.get_member(int(guild_id), int(user.id))
            role_ids = {str(r) for r in member.get("roles", [])}
            if guild is not None:
                owner = guild.owner_id
                roles = [
                    SimpleNamespace(id=str(r.id), name=r.name, perms=r.permissions.value) for r in guild.roles
                ]
            else:
                data = await self.client.http.get_guild(int(guild_id), with_counts=False)
                owner = int(data.get("owner_id", 0))
                roles = [
                    SimpleNamespace(
                        id=str(r["id"]), name=str(r.get("name", "")), perms=int(r.get("permissions", 0))
                    )
                    for r in data.get("roles", [])
                ]
        except (discord.HTTPException, ChatUnavailable, ValueError) as e:
            log.warning("discord moderator check failed: %s", type(e).__name__)
            return False
        if owner == int(user.id):
            return True
        held = [r for r in roles if r.id in role_ids or r.id == guild_id]  # @everyone's id is the guild's
        wanted = (self.config.moderator_role or "").strip()
        if wanted and any(r.id == wanted or r.name.lower() == wanted.lower() for r in held):
            return True
        perms = 0
        for r in held:
            perms |= r.perms
        return bool(perms & (ADMINISTRATOR | MANAGE_EVENTS))


# ------------------------------------------------------------------------------------------ helpers


K = TypeVar("K")
V = TypeVar("V")


class _Bounded(OrderedDict[K, V]):
    """A dict that forgets its oldest entries beyond ``size``."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self._size = size

    def __setitem__(self, key: K, value: V) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self._size:
            self.popitem(last=False)


def avatar_cdn_url(user_id: str, avatar_hash: Any) -> str | None:
    """A user's avatar on Discord's CDN (a static PNG, also for an animated one), None without a hash."""
    if not isinstance(avatar_hash, str) or not avatar_hash.replace("_", "").isalnum():
        return None
    return f"{CDN}/avatars/{user_id}/{avatar_hash}.png?size=128"


def _path(now: int, target: int) -> Sequence[int]:
    """The status changes Discord allows, from ``now`` to ``target`` (nothing from a final status)."""
    if now == target or now in (COMPLETED, CANCELED):
        return ()
    if now == SCHEDULED:
        return {ACTIVE: (ACTIVE,), COMPLETED: (ACTIVE, COMPLETED), CANCELED: (CANCELED,)}.get(target, ())
    # ACTIVE: it can only end (a Space cancelled while live has ended)
    return (COMPLETED,) if target in (COMPLETED, CANCELED) else ()


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).replace(microsecond=0).isoformat()


def _parse(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text).astimezone(UTC).replace(microsecond=0)
    except ValueError:
        return None


def _seconds(value: Any) -> float | None:
    try:
        return float(value) if value else None
    except (TypeError, ValueError):
        return None


__all__ = [
    "DiscordConfig",
    "DiscordPlatform",
    "EventSpecLike",
    "EventsSink",
    "InteractionHandlers",
    "avatar_cdn_url",
    "core_status",
    "intents",
    "nonce",
]
