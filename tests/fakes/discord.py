"""A Discord emulator on 127.0.0.1 for tests that run the real discord.py.

discord.py has no base-URL option: :func:`pointed_at` (or the ``discord_emulator`` fixture) sets the class
attributes ``discord.http.Route.BASE`` (every REST call, interaction callbacks and webhooks included) and
``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY`` to the emulator, and restores them. Build clients with
``guild_ready_timeout=0.05`` or every login waits 2 s; :func:`client_running` logs a client in and waits for
READY.

It serves the REST API under ``/api/v10`` and the gateway websocket at ``/`` (HELLO, IDENTIFY, READY,
GUILD_CREATE per guild of the shard, heartbeats, RESUME, several shards), and keeps a world: guilds with
channels (text, voice, stage), roles with permission bits, members, channel overwrites, DM channels, messages,
application commands, guild scheduled events. It enforces the rules that bite in production: the global 50
requests/s and per-route buckets (429 with ``Via``, ``retry_after``, ``X-RateLimit-*``), 403 with 50013/50001 for
missing permissions, 50007 for closed DMs, the 3-second window for the first interaction response and 15 minutes
for follow-ups, ``nonce`` + ``enforce_nonce`` de-duplication, ``allowed_mentions`` (who a message actually
pings); opt-in: the 40003 quarantine for opening DMs too fast, the ban after too many invalid requests.

Tests build the world (``create_guild``, ``add_channel``, ``add_role``, ``add_member(s)``, ``set_overwrite``,
``close_dms``, ``register_command``), act as members (``run_command``, ``autocomplete``, ``press_button``,
``submit_modal``, ``mark_interested``, ``start_event_in_ui``/``end_event_in_ui``/``cancel_event_in_ui``,
``member_joins``) and read what was RECEIVED (``messages_in``, ``dms_to``, ``dm_counts``, ``received``,
``ephemeral_to``, ``pings``, ``dm_opens``, ``nonce_hits``, ``native_event_notices``, ``calls``, ``count_429``,
``invalid_count``, ``dispatched``; voice: ``voice_updates`` (every gateway op 4), ``voice_refused``,
``voice_state(guild)``, ``voice_state_patches``, and ``invite_to_speak`` acting as a stage moderator — the
media side is tests/fakes/discord_voice.py, attached with ``dc.voice = VoiceServer().on_voice_state``). Interactions reach the bot over the gateway, or signed with Ed25519 over
HTTP when ``interactions_url`` is set (``probe_ping``, ``probe_bad_signature``, ``replay``).

Clocks: ``clock`` (default ``time.monotonic``) times the rate limits, the interaction windows and nonces — a
test may pass its own to jump past a window (discord.py still sleeps a 429's ``retry_after`` in real time);
``wall_clock`` (default ``time.time``) stamps messages and judges "an event cannot start in the past": a test
whose Spaces live on a fake date passes ``wall_clock=lambda: fake.now().timestamp()``.

What discord.py needs that is easy to miss (each one found against this emulator): scheduled events need
``privacy_level=discord.PrivacyLevel.guild_only`` (discord.py omits it otherwise and Discord refuses);
GUILD_SCHEDULED_EVENT_USER_ADD/REMOVE are dropped by discord.py for users it has not cached (members intent,
or read the raw socket event); ``AutoShardedClient`` waits 5 s between IDENTIFYs unless
``before_identify_hook`` is overridden; ``ScheduledEvent.users()`` pages assuming newest-first while Discord
answers by ascending user id — page with ``after=`` on the raw route.

A request Discord would reject because the bot was built wrong (unknown route, body not matching the OpenAPI
description, content over 2,000 characters, an empty message, an illegal event status change...) is a
*violation*: answered with Discord's 400 and recorded in ``dc.violations``; ``assert_clean()`` (called on exit
when ``strict``) fails the test. A test that provokes one on purpose takes it with ``take_violations()``. The
emulator's own answers are checked against the description's response schemas too ("emulator" violations).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import random
import re
import secrets
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest_asyncio
from aiohttp import WSMsgType, web
from nacl.signing import SigningKey

from tests.fakes.discord_model import (
    ALL_PERMISSIONS,
    DEFAULT_MEMBER_PERMISSIONS,
    DM,
    ENTITY_EXTERNAL,
    ENTITY_STAGE,
    ENTITY_VOICE,
    EPHEMERAL,
    EV_ACTIVE,
    EV_CANCELED,
    EV_COMPLETED,
    EV_SCHEDULED,
    EVERYONE_RE,
    INTENT_GUILD_SCHEDULED_EVENTS,
    LEGAL_STATUS_CHANGES,
    LOADING,
    ROLE_MENTION_RE,
    STAGE,
    TEXT,
    USER_MENTION_RE,
    VOICE,
    ApiCall,
    Callback,
    DcChannel,
    DcError,
    DcEvent,
    DcGuild,
    DcMember,
    DcMessage,
    DcRole,
    DcUser,
    InteractionRecord,
    MessageVersion,
    Perm,
    RateRule,
    Violation,
    bad_request,
    iso,
    opt_str,
    parse_iso,
    shard_of,
    snowflake_int,
    walk_components,
    with_ids,
)
from tests.fakes.discord_spec import API_PREFIX, DiscordApiSpec, Operation, load_spec
from tests.fakes.emulator import StrictEmulator
from tests.fakes.secrets import DISCORD_BOT_TOKEN

__all__ = [
    "ALL_PERMISSIONS",
    "DEFAULT_MEMBER_PERMISSIONS",
    "DM",
    "STAGE",
    "TEXT",
    "VOICE",
    "ApiCall",
    "Callback",
    "DcChannel",
    "DcError",
    "DcEvent",
    "DcGuild",
    "DcMember",
    "DcMessage",
    "DcRole",
    "DcUser",
    "DiscordEmulator",
    "InteractionRecord",
    "MessageVersion",
    "Perm",
    "RateRule",
    "Violation",
    "client_running",
    "discord_emulator",
    "pointed_at",
    "shard_of",
]

DISCORD_EPOCH_MS = 1_420_070_400_000
DEFAULT_TOKEN = DISCORD_BOT_TOKEN  # a canary: the session fails if it shows up in any log
PRIVILEGED_INTENTS = (1 << 1) | (1 << 8) | (1 << 15)  # GUILD_MEMBERS, GUILD_PRESENCES, MESSAGE_CONTENT
GUILD_VOICE_STATES = 1 << 7  # the intent without which no VOICE_STATE_UPDATE is sent (not even the bot's own)
#: what a member keeps of the voice permissions in a voice or stage channel it cannot connect to: nothing
VOICE_PERMISSIONS = (
    Perm.CONNECT
    | Perm.SPEAK
    | Perm.MUTE_MEMBERS
    | Perm.DEAFEN_MEMBERS
    | Perm.MOVE_MEMBERS
    | Perm.REQUEST_TO_SPEAK
)

#: Discord's limits as the emulator applies them by default (each one a constructor argument)
GLOBAL_RATE = RateRule(50, 1.0)  # requests per second per bot token, every route but interaction webhooks
MESSAGE_RATE = RateRule(5, 5.0)  # messages created (or edited) per channel
DM_OPEN_RATE = RateRule(10, 10.0)  # DM channels opened (unpublished: a conservative guess)
EVENT_RATE = RateRule(10, 10.0)  # scheduled events created/modified/deleted per guild
DEFAULT_ROUTE_RATE = RateRule(50, 1.0)  # any other route, per major parameter


@dataclass
class _Session:
    id: str
    shard_id: int
    num_shards: int
    intents: int
    ws: web.WebSocketResponse | None
    seq: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)  # dispatched payloads, for RESUME
    identified_at: float = 0.0
    resumes: int = 0


@dataclass
class _Chaos:
    rng: random.Random
    error_rate: float
    reset_rate: float
    routes: set[tuple[str, str]]

    def draw(self, method: str, route: str) -> str | None:
        if (method, route) not in self.routes:
            return None
        x = self.rng.random()
        if x < self.error_rate:
            return "error"
        if x < self.error_rate + self.reset_rate:
            return "reset"
        return None


@dataclass
class _Bucket:
    remaining: int
    reset_at: float
    rule: RateRule
    name: str


# --------------------------------------------------------------------------- emulator
class DiscordEmulator(StrictEmulator):
    """An aiohttp server speaking Discord's REST API and gateway; see the module docstring."""

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        bot_name: str = "Spaces",
        strict: bool = True,
        spec_path: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        host: str = "127.0.0.1",
        port: int = 0,
        rate_limits: bool = True,
        global_rate: RateRule = GLOBAL_RATE,
        message_rate: RateRule = MESSAGE_RATE,
        dm_open_rate: RateRule = DM_OPEN_RATE,
        event_rate: RateRule = EVENT_RATE,
        default_rate: RateRule = DEFAULT_ROUTE_RATE,
        response_window: float = 3.0,
        followup_window: float = 15 * 60.0,
        nonce_window: float = 5 * 60.0,
        max_active_events: int = 100,
        max_content_length: int = 2000,
        heartbeat_interval_ms: int = 41250,
        recommended_shards: int = 1,
        interactions_url: str | None = None,
        reject_past_events: bool = True,
        validate_responses: bool = True,
        dm_open_spam_limit: RateRule | None = None,
        ban_after_invalid: int | None = None,
        privileged_intents: int = PRIVILEGED_INTENTS,
        max_guilds_per_shard: int = 2500,
    ) -> None:
        self.token = token
        self.strict = strict
        self.spec: DiscordApiSpec = load_spec(spec_path)
        self.clock = clock
        self.wall_clock = wall_clock
        self.host = host
        self._requested_port = port
        self.rate_limits = rate_limits
        self.global_rate = global_rate
        self.message_rate = message_rate
        self.dm_open_rate = dm_open_rate
        self.event_rate = event_rate
        self.default_rate = default_rate
        self.response_window = response_window
        self.followup_window = followup_window
        self.nonce_window = nonce_window
        self.max_active_events = max_active_events
        self.max_content_length = max_content_length
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.recommended_shards = recommended_shards
        #: deliver interactions as signed HTTP POSTs to this URL instead of the gateway
        self.interactions_url = interactions_url
        self.reject_past_events = reject_past_events
        self.validate_responses = validate_responses
        #: opening more DMs than this (new or not) answers 403 40003 "opening direct messages too fast", the
        #: anti-spam quarantine that hits bots that DM many users (unpublished threshold: None = off)
        self.dm_open_spam_limit = dm_open_spam_limit
        self._dm_open_times: deque[float] = deque()
        #: Discord's Cloudflare ban: this many 401/403/429 answers in 10 minutes and every request gets an
        #: HTML 429 without ``Via`` for the rest of the test (Discord's own figure is 10,000; None = off)
        self.ban_after_invalid = ban_after_invalid
        #: the privileged intents switched on in the developer portal (members, presences, message content):
        #: identifying with another one is closed with 4014, as Discord does
        self.privileged_intents = privileged_intents
        #: a shard holding more guilds than this is closed with 4011 "Sharding required"
        self.max_guilds_per_shard = max_guilds_per_shard
        self.banned = False
        self.signing_key = SigningKey.generate()
        #: the application's public key (hex), what the HTTP interactions endpoint verifies with
        self.public_key: str = self.signing_key.verify_key.encode().hex()

        self._id_ms = int(wall_clock() * 1000) - DISCORD_EPOCH_MS - 3_600_000
        self._id_seq = itertools.count()
        self._guild_ms = self._id_ms - 10_000_000
        self.bot = DcUser(self._next_id(), bot_name, bot_name, bot=True)
        self.application_id = self.bot.id
        self.app_owner = DcUser(self._next_id(), "app-owner", "App Owner")

        # recordings
        self.api_calls: list[ApiCall] = []
        self.violations: list[Violation] = []
        self.count_429 = 0
        self.count_global_429 = 0
        self.invalid_requests: list[float] = []  # emulator-clock instants of each 401/403/429 answer
        self.pings: Counter[int] = Counter()  # user id -> messages that notified them by mention
        self.dm_opens: Counter[int] = Counter()  # user id -> POST /users/@me/channels for them
        self.nonce_hits: Counter[str] = Counter()  # nonce -> resends answered with the original message
        self.native_event_notices: Counter[int] = Counter()  # user id -> "event starting" notices by Discord
        self.gateway_sent: list[tuple[str, int, dict[str, Any]]] = []  # (session id, shard, payload)
        self.identifies: list[dict[str, Any]] = []
        self.heartbeats = 0
        # gateway op 4 (join/leave voice) goes to an attached voice emulator: (emulator, session, payload)
        self.voice: Callable[[DiscordEmulator, Any, dict[str, Any]], Awaitable[None]] | None = None
        # ... and the voice server's side of a moderator's disconnect (close the guild's voice websocket)
        self.voice_kicked: Callable[[str], Awaitable[None]] | None = None
        #: every gateway op 4 received, as sent (guild_id, channel_id — None to leave —, self_mute, self_deaf)
        self.voice_updates: list[dict[str, Any]] = []
        #: op 4 joins Discord ignored (no such voice channel, or no View Channel/Connect): (guild id, payload)
        self.voice_refused: list[tuple[int, dict[str, Any]]] = []
        #: accepted PATCH /guilds/{id}/voice-states/@me bodies (a stage speaker's suppress, request to speak)
        self.voice_state_patches: list[tuple[int, dict[str, Any]]] = []
        self.interactions: dict[int, InteractionRecord] = {}

        # world
        self.users: dict[int, DcUser] = {self.bot.id: self.bot, self.app_owner.id: self.app_owner}
        self.guilds: dict[int, DcGuild] = {}
        self.channels: dict[int, DcChannel] = {}
        self.messages: dict[int, DcMessage] = {}
        self.dm_channels: dict[int, DcChannel] = {}  # user id -> DM channel
        #: guild id -> user id -> voice state (Discord's VOICE_STATE_UPDATE shape, without the member)
        self.voice_states: dict[int, dict[int, dict[str, Any]]] = {}
        self.global_commands: list[dict[str, Any]] = []
        self.guild_commands: dict[int, list[dict[str, Any]]] = {}

        # machinery
        self.sessions: dict[str, _Session] = {}
        self._send_locks: dict[int, asyncio.Lock] = {}
        self._global_window: deque[float] = deque()
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._faults: list[tuple[str, str, DcError, list[int]]] = []
        self._chaos: _Chaos | None = None
        self.faults_injected: Counter[str] = Counter()  # "error" (not done), "reset" (done, answer lost)
        self._nonces: dict[tuple[int, int, str], tuple[float, int]] = {}
        self._change = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port: int | None = None
        self._handlers: dict[tuple[str, str], Callable[[_Req], Awaitable[Any]]] = {}
        self._register_routes()

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> DiscordEmulator:
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_get("/", self._handle_gateway)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._handle_api)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._requested_port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self._session = aiohttp.ClientSession()
        return self

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for s in self.sessions.values():
            if s.ws is not None and not s.ws.closed:
                with contextlib.suppress(Exception):
                    await s.ws.close(code=1001)
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        """For ``discord.http.Route.BASE``."""
        if self.port is None:
            raise RuntimeError("DiscordEmulator not started")
        return f"http://{self.host}:{self.port}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        """For ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY`` (as a ``yarl.URL``)."""
        if self.port is None:
            raise RuntimeError("DiscordEmulator not started")
        return f"ws://{self.host}:{self.port}/"

    # ------------------------------------------------------------------ violations and faults
    def assert_clean(self) -> None:
        """Raise AssertionError listing every request Discord would have refused."""
        if self.violations:
            lines = "\n".join(f"  - {v}" for v in self.violations)
            raise AssertionError(
                f"{len(self.violations)} request(s) to the Discord emulator that Discord would refuse:\n{lines}"
            )

    def take_violations(self) -> list[Violation]:
        """Return and forget the recorded violations (for tests that provoke them on purpose)."""
        taken, self.violations = self.violations, []
        return taken

    def fail_next(
        self,
        method: str,
        route: str,
        status: int = 500,
        code: int = 0,
        message: str = "500: Internal Server Error",
        *,
        retry_after: float = 1.0,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` valid ``method route`` requests (route = the description's template, e.g.
        ``/channels/{channel_id}/messages``) with this error; a 429 gets Discord's body and headers."""
        if status == 429:
            err = self._rate_limited(retry_after, scope="user", bucket="fault", is_global=False)
        else:
            err = DcError(status, code, message)
        self._faults.append((method.upper(), route, err, [times]))

    def inject_faults(
        self,
        *,
        seed: int,
        error_rate: float = 0.0,
        reset_rate: float = 0.0,
        routes: Iterable[tuple[str, str]] = (("POST", "/channels/{channel_id}/messages"),),
    ) -> None:
        """Random faults on valid requests to ``routes`` ((method, template) pairs), drawn from
        ``random.Random(seed)``:

        * ``error_rate``: answer 500 *without* doing anything (the message is not delivered);
        * ``reset_rate``: do it (the message IS delivered), then cut the connection before answering — the bot
          cannot know it arrived; its retry with the same ``nonce`` + ``enforce_nonce`` gets the original back.

        Counted in ``faults_injected``; ``inject_faults(seed=…)`` with no rates stops it."""
        if error_rate + reset_rate > 1:
            raise ValueError("error_rate + reset_rate must be at most 1")
        self._chaos = _Chaos(random.Random(seed), error_rate, reset_rate, {(m.upper(), r) for m, r in routes})

    def received(self, *, containing: str | None = None) -> Counter[int]:
        """Channel id (a DM channel for DMs) -> messages the bot landed there that people see (not deleted,
        not ephemeral), optionally only those whose text contains ``containing``. Count losses and duplicates
        from here: what people saw, not what the bot believes it sent."""
        return Counter(
            m.channel_id
            for m in self.messages.values()
            if not m.deleted and not m.ephemeral and (containing is None or containing in m.text)
        )

    def max_in_window(
        self,
        window: float = 1.0,
        *,
        route: str | None = None,
        method: str | None = None,
        accepted_only: bool = False,
        exempt: bool = False,
    ) -> int:
        """The most REST requests the bot made in any ``window`` seconds (emulator clock): all of them, or one
        route template / method, attempts or only the accepted ones. Pacing is judged on attempts: the
        emulator refuses what is over a limit, so accepted requests alone always look within it.
        Interaction callbacks and webhooks, outside the global limit, are left out unless ``exempt``."""
        times = sorted(
            c.time
            for c in self.calls(route, method)
            if (
                exempt
                or not (c.route or "").startswith(
                    ("/interactions/", "/webhooks/{webhook_id}/{webhook_token}")
                )
            )
            and (c.ok or not accepted_only)
        )
        best = lo = 0
        for hi, t in enumerate(times):
            while times[lo] <= t - window:
                lo += 1
            best = max(best, hi - lo + 1)
        return best

    @property
    def invalid_count(self) -> int:
        """401/403/429 answers so far (Discord bans an IP at 10,000 in 10 minutes)."""
        return len(self.invalid_requests)

    def invalid_in_window(self, window: float = 600.0) -> int:
        """The most 401/403/429 answers in any ``window`` seconds (emulator clock)."""
        times = sorted(self.invalid_requests)
        best = lo = 0
        for hi, t in enumerate(times):
            while times[lo] <= t - window:
                lo += 1
            best = max(best, hi - lo + 1)
        return best

    # ------------------------------------------------------------------ world building
    def _next_guild_id(self) -> int:
        # guild ids on their own millisecond sequence, one apart: consecutive guilds land on consecutive
        # shards ((id >> 22) % n), whatever else was created in between
        self._guild_ms += 1
        return (self._guild_ms << 22) | (next(self._id_seq) & 0x3FFFFF)

    def _next_id(self) -> int:
        # one millisecond per id: consecutive guilds land on alternating shards ((id >> 22) % n)
        self._id_ms += 1
        return (self._id_ms << 22) | (next(self._id_seq) & 0x3FFFFF)

    def create_user(
        self,
        username: str = "alice",
        *,
        global_name: str | None = None,
        locale: str = "en-US",
        id: int | None = None,
    ) -> DcUser:
        user = DcUser(
            id if id is not None else self._next_id(),
            username,
            global_name or username.title(),
            locale=locale,
        )
        self.users[user.id] = user
        return user

    def create_guild(
        self,
        name: str = "Test Guild",
        *,
        owner: DcUser | None = None,
        bot_permissions: int = DEFAULT_MEMBER_PERMISSIONS
        | Perm.MANAGE_EVENTS
        | Perm.CREATE_EVENTS
        | Perm.MENTION_EVERYONE
        | Perm.MANAGE_MESSAGES,
        everyone_permissions: int = DEFAULT_MEMBER_PERMISSIONS,
        locale: str = "en-US",
        text_channel: str | None = "general",
    ) -> DcGuild:
        """A guild with @everyone, the bot (with a managed role holding ``bot_permissions``), its owner and a
        text channel (``text_channel``, None for none)."""
        gid = self._next_guild_id()
        owner = owner or self.create_user(f"owner-{len(self.guilds) + 1}")
        guild = DcGuild(gid, name, owner.id, locale)
        guild.roles[gid] = DcRole(gid, gid, "@everyone", everyone_permissions, position=0)
        bot_role = DcRole(self._next_id(), gid, self.bot.username, bot_permissions, position=1, managed=True)
        guild.roles[bot_role.id] = bot_role
        guild.members[self.bot.id] = DcMember(self.bot, gid, [bot_role.id])
        guild.members[owner.id] = DcMember(owner, gid, [])
        self.guilds[gid] = guild
        if text_channel:
            self.add_channel(guild, text_channel)
        return guild

    def bot_role(self, guild: DcGuild) -> DcRole:
        """The bot's managed role in ``guild`` (change ``.permissions`` to take rights away)."""
        return next(r for r in guild.roles.values() if r.managed)

    def add_channel(
        self, guild: DcGuild, name: str, type: int = TEXT, *, overwrites: Iterable[dict[str, Any]] = ()
    ) -> DcChannel:
        """A channel: ``type`` 0 text, 2 voice, 13 stage."""
        channel = DcChannel(self._next_id(), type, name, guild.id, len(guild.channels), list(overwrites))
        guild.channels[channel.id] = channel
        self.channels[channel.id] = channel
        return channel

    def add_role(
        self, guild: DcGuild, name: str, permissions: int = 0, *, mentionable: bool = False
    ) -> DcRole:
        role = DcRole(
            self._next_id(), guild.id, name, permissions, position=len(guild.roles), mentionable=mentionable
        )
        guild.roles[role.id] = role
        return role

    def add_member(
        self,
        guild: DcGuild,
        user: DcUser | str = "member",
        *,
        roles: Iterable[DcRole] = (),
        nick: str | None = None,
    ) -> DcMember:
        """``user`` (or a new user of that name) joins ``guild``."""
        u = self.create_user(user) if isinstance(user, str) else user
        member = DcMember(u, guild.id, [r.id for r in roles], nick)
        guild.members[u.id] = member
        return member

    def add_members(self, guild: DcGuild, count: int, *, prefix: str = "user") -> list[DcMember]:
        return [self.add_member(guild, f"{prefix}{i}") for i in range(count)]

    def set_overwrite(
        self, channel: DcChannel, target: DcRole | DcMember | DcUser, *, allow: int = 0, deny: int = 0
    ) -> None:
        """A channel permission overwrite for a role or a member (replaces the target's previous one)."""
        if isinstance(target, DcRole):
            kind, tid = 0, target.id
        else:
            kind, tid = 1, (target.user.id if isinstance(target, DcMember) else target.id)
        channel.overwrites = [o for o in channel.overwrites if not (o["type"] == kind and o["id"] == tid)]
        channel.overwrites.append({"id": tid, "type": kind, "allow": allow, "deny": deny})

    def close_dms(self, user: DcUser | DcMember) -> None:
        """The user turns off DMs from server members: the bot's DMs to them get 403 code 50007."""
        _user(user).dms_closed = True

    def open_dms(self, user: DcUser | DcMember) -> None:
        _user(user).dms_closed = False

    def ensure_dm_channel(self, user: DcUser | DcMember) -> DcChannel:
        """The DM channel between ``user`` and the bot (created as when the user writes to the bot first);
        opening it this way is not counted in ``dm_opens``."""
        u = _user(user)
        channel = self.dm_channels.get(u.id)
        if channel is None:
            channel = DcChannel(self._next_id(), DM, recipient=u)
            self.dm_channels[u.id] = channel
            self.channels[channel.id] = channel
        return channel

    async def member_joins(self, guild: DcGuild, user: DcUser | str = "member", **kw: Any) -> DcMember:
        """:meth:`add_member`, then GUILD_MEMBER_ADD to the sessions with the members intent."""
        member = self.add_member(guild, user, **kw)
        await self._dispatch(
            "GUILD_MEMBER_ADD",
            {**member.to_api(), "guild_id": str(guild.id)},
            guild_id=guild.id,
            intent=1 << 1,
        )
        return member

    def member(self, guild: DcGuild, user: DcUser | int) -> DcMember:
        return guild.members[user if isinstance(user, int) else user.id]

    # ------------------------------------------------------------------ voice states
    def voice_state(
        self, guild: DcGuild, user: DcUser | DcMember | int | None = None
    ) -> dict[str, Any] | None:
        """Where ``user`` (the bot by default) stands in ``guild``'s voice: Discord's voice state, or None."""
        return self.voice_states.get(guild.id, {}).get(_uid(user) if user is not None else self.bot.id)

    async def apply_voice_state(self, session: Any, d: dict[str, Any]) -> dict[str, Any] | None:
        """The gateway's op 4 from the bot: join, move to or leave (``channel_id`` None) a voice channel of
        ``guild_id``. Discord answers with a VOICE_STATE_UPDATE to the sessions holding the guild that asked
        for GUILD_VOICE_STATES; a join it refuses (not a voice or stage channel of the guild, no View Channel
        or Connect) is ignored — the client waits in vain — and recorded in :attr:`voice_refused`.

        On a stage the bot arrives in the audience (``suppress`` true) until it is unsuppressed; in a voice
        channel ``suppress`` says it lacks Speak (Discord's definition). The state's ``session_id`` is the
        gateway session's. Returns the new state (``channel_id`` None after a leave), None when refused."""
        gid = str(d.get("guild_id") or "")
        guild = self.guilds.get(int(gid)) if gid.isdigit() else None
        if guild is None or session is None:
            return None
        member = guild.members[self.bot.id]
        states = self.voice_states.setdefault(guild.id, {})
        previous = states.get(self.bot.id)
        raw = d.get("channel_id")
        if raw is None:
            states.pop(self.bot.id, None)
            state = self._voice_state_payload(guild, session.id, None, d, suppress=False, requested=None)
        else:
            channel = guild.channels.get(int(raw)) if str(raw).isdigit() else None
            perms = self.permissions(channel, self.bot) if channel is not None else 0
            if channel is None or channel.type not in (VOICE, STAGE) or not perms & Perm.CONNECT:
                self.voice_refused.append((guild.id, dict(d)))
                self._changed()
                return None
            same = previous is not None and previous["channel_id"] == str(channel.id)
            if channel.type == STAGE:
                suppress = bool(previous["suppress"]) if same and previous is not None else True
            else:
                suppress = not perms & Perm.SPEAK
            requested = previous["request_to_speak_timestamp"] if same and previous is not None else None
            state = self._voice_state_payload(guild, session.id, channel.id, d, suppress, requested)
            states[self.bot.id] = state
        await self._dispatch(
            "VOICE_STATE_UPDATE",
            {**state, "member": member.to_api()},
            guild_id=guild.id,
            intent=GUILD_VOICE_STATES,
        )
        return state

    def _voice_state_payload(
        self,
        guild: DcGuild,
        session_id: str,
        channel_id: int | None,
        d: dict[str, Any],
        suppress: bool,
        requested: str | None,
    ) -> dict[str, Any]:
        return {
            "guild_id": str(guild.id),
            "channel_id": opt_str(channel_id),
            "user_id": str(self.bot.id),
            "session_id": session_id,
            "deaf": False,
            "mute": False,
            "self_deaf": bool(d.get("self_deaf")),
            "self_mute": bool(d.get("self_mute")),
            "self_video": False,
            "suppress": suppress,
            "request_to_speak_timestamp": requested,
        }

    async def invite_to_speak(self, guild: DcGuild, user: DcUser | DcMember | int | None = None) -> None:
        """A stage moderator makes ``user`` (the bot by default) a speaker: its request to speak is cleared
        and it is unsuppressed (a VOICE_STATE_UPDATE, as Discord sends)."""
        member = guild.members[_uid(user) if user is not None else self.bot.id]
        state = self.voice_states.get(guild.id, {}).get(member.user.id)
        assert state is not None, "not in a voice channel of this guild"
        state["suppress"], state["request_to_speak_timestamp"] = False, None
        await self._dispatch(
            "VOICE_STATE_UPDATE",
            {**state, "member": member.to_api()},
            guild_id=guild.id,
            intent=GUILD_VOICE_STATES,
        )

    async def disconnect_from_voice(
        self, guild: DcGuild, user: DcUser | DcMember | int | None = None
    ) -> None:
        """A moderator disconnects ``user`` (the bot by default) from voice: its state goes (a
        VOICE_STATE_UPDATE with ``channel_id`` null), then the attached voice server closes its voice
        websocket with 4014 ("Disconnected: … you were kicked"), as Discord does."""
        uid = _uid(user) if user is not None else self.bot.id
        state = self.voice_states.get(guild.id, {}).pop(uid, None)
        assert state is not None, "not in a voice channel of this guild"
        state = {**state, "channel_id": None, "suppress": False, "request_to_speak_timestamp": None}
        await self._dispatch(
            "VOICE_STATE_UPDATE",
            {**state, "member": guild.members[uid].to_api()},
            guild_id=guild.id,
            intent=GUILD_VOICE_STATES,
        )
        if self.voice_kicked is not None:
            await self.voice_kicked(str(guild.id))

    async def _r_my_voice_state(self, req: _Req) -> Any:
        """Modify Current User Voice State, with Discord's documented rules: only in a stage channel the bot
        has joined; unsuppressing itself needs Mute Members (a stage moderator), requesting to speak needs
        Request to Speak; suppressing itself or clearing its request is always allowed."""
        guild = self._guild(req.params["guild_id"])
        body: dict[str, Any] = req.body if isinstance(req.body, dict) else {}
        state = self.voice_state(guild)
        wanted = body.get("channel_id")
        if state is None or (wanted is not None and str(wanted) != state["channel_id"]):
            raise DcError(404, 10065, "Unknown Voice State")
        channel = self.channels[int(state["channel_id"])]
        if channel.type != STAGE:
            raise DcError(400, 50024, "Cannot execute action on this channel type")
        perms = self.permissions(channel, self.bot)
        if body.get("suppress") is False and not perms & Perm.MUTE_MEMBERS:
            raise DcError(403, 50013, "Missing Permissions")
        if body.get("request_to_speak_timestamp") and not perms & Perm.REQUEST_TO_SPEAK:
            raise DcError(403, 50013, "Missing Permissions")
        if body.get("suppress") is not None:
            state["suppress"] = bool(body["suppress"])
        if "request_to_speak_timestamp" in body:
            state["request_to_speak_timestamp"] = body["request_to_speak_timestamp"]
        self.voice_state_patches.append((guild.id, dict(body)))
        await self._dispatch(
            "VOICE_STATE_UPDATE",
            {**state, "member": guild.members[self.bot.id].to_api()},
            guild_id=guild.id,
            intent=GUILD_VOICE_STATES,
        )
        return None

    # ------------------------------------------------------------------ permissions
    def base_permissions(self, guild: DcGuild, user: DcUser | DcMember | int) -> int:
        uid = _uid(user)
        if uid == guild.owner_id:
            return ALL_PERMISSIONS
        member = guild.members.get(uid)
        if member is None:
            return 0
        perms = guild.everyone.permissions
        for rid in member.roles:
            role = guild.roles.get(rid)
            if role is not None:
                perms |= role.permissions
        return ALL_PERMISSIONS if perms & Perm.ADMINISTRATOR else perms

    def permissions(self, channel: DcChannel, user: DcUser | DcMember | int) -> int:
        """What ``user`` may do in ``channel``: roles, then @everyone, role and member overwrites (Discord's
        order), with the implicit rules (no VIEW_CHANNEL = nothing)."""
        if channel.guild_id is None:
            return Perm.VIEW_CHANNEL | Perm.SEND_MESSAGES | Perm.EMBED_LINKS | Perm.READ_MESSAGE_HISTORY
        guild = self.guilds[channel.guild_id]
        perms = self.base_permissions(guild, user)
        if perms == ALL_PERMISSIONS:
            return perms
        uid = _uid(user)
        member = guild.members.get(uid)
        roles = set(member.roles) if member else set()
        for o in channel.overwrites:
            if o["type"] == 0 and o["id"] == guild.id:
                perms = (perms & ~o["deny"]) | o["allow"]
        allow = deny = 0
        for o in channel.overwrites:
            if o["type"] == 0 and o["id"] in roles:
                allow |= o["allow"]
                deny |= o["deny"]
        perms = (perms & ~deny) | allow
        for o in channel.overwrites:
            if o["type"] == 1 and o["id"] == uid:
                perms = (perms & ~o["deny"]) | o["allow"]
        if not perms & Perm.VIEW_CHANNEL:
            return 0
        if channel.type in (VOICE, STAGE) and not perms & Perm.CONNECT:
            perms &= ~VOICE_PERMISSIONS
        if not perms & Perm.SEND_MESSAGES:
            perms &= ~(Perm.MENTION_EVERYONE | Perm.EMBED_LINKS | Perm.ATTACH_FILES)
        return perms

    # ------------------------------------------------------------------ acting as members: interactions
    def register_command(
        self, name: str, options: list[dict[str, Any]] | None = None, *, guild: DcGuild | None = None
    ) -> dict[str, Any]:
        """Register a slash command as if the bot had synced it (for tests of an HTTP interactions endpoint
        that never sync); ``options`` in Discord's shape (``{"name", "type", "required"?, "options"?}``)."""
        pool = self.guild_commands.setdefault(guild.id, []) if guild else self.global_commands
        cmd = {
            "id": str(self._next_id()),
            "application_id": str(self.application_id),
            "version": str(self._next_id()),
            "type": 1,
            "name": name,
            "description": name,
            "options": options or [],
        }
        pool[:] = [c for c in pool if c["name"] != name] + [cmd]
        return cmd

    def find_command(self, name: str, guild: DcGuild | None = None) -> dict[str, Any] | None:
        """A registered command (guild commands first), by its top-level name."""
        pools = ([self.guild_commands.get(guild.id, [])] if guild else []) + [self.global_commands]
        for pool in pools:
            for cmd in pool:
                if cmd["name"] == name and int(cmd.get("type", 1)) == 1:
                    return cmd
        return None

    def _check_offered(
        self, guild: DcGuild | None, channel: DcChannel, member: DcMember | DcUser, name: str
    ) -> None:
        """Discord's client only offers a command where and to whom the bot registered it for: a member
        without its ``default_member_permissions`` (or in a context it left out) never sees it."""
        cmd = self.find_command(name.split()[0], guild)
        if cmd is None:
            return  # _command_data says why
        context = 0 if guild is not None else 1
        contexts = cmd.get("contexts")
        if contexts is not None and context not in contexts:
            raise PermissionError(f"/{cmd['name']} is not offered in {'guilds' if context == 0 else 'DMs'}")
        if guild is None and contexts is None and cmd.get("dm_permission") is False:
            raise PermissionError(f"/{cmd['name']} is not offered in DMs")
        needed = cmd.get("default_member_permissions")
        if guild is not None and needed is not None:
            perms = self.permissions(channel, member)  # administrators and the owner hold every bit
            wanted = int(needed)
            if perms != ALL_PERMISSIONS and (wanted == 0 or perms & wanted != wanted):
                raise PermissionError(
                    f"Discord's client does not offer /{cmd['name']} to {_user(member).username}"
                )

    def _command_data(
        self, guild: DcGuild | None, name: str, options: dict[str, Any], focused: str | None
    ) -> dict[str, Any]:
        words = name.split()
        cmd = self.find_command(words[0], guild)
        if cmd is None:
            raise LookupError(f"no registered command /{words[0]}: the bot must sync its commands first")
        resolved: dict[str, dict[str, Any]] = {}
        defs = cmd.get("options") or []
        leaf: list[dict[str, Any]] = []
        root = leaf
        for word in words[1:]:
            sub = next((o for o in defs if o["name"] == word and o["type"] in (1, 2)), None)
            if sub is None:
                raise LookupError(f"/{cmd['name']} has no subcommand {word!r}")
            node: list[dict[str, Any]] = []
            leaf.append({"name": word, "type": sub["type"], "options": node})
            leaf, defs = node, sub.get("options") or []
        for opt_name, value in options.items():
            spec = next((o for o in defs if o["name"] == opt_name), None)
            if spec is None:
                raise LookupError(
                    f"/{name} has no option {opt_name!r} (options: {[o['name'] for o in defs]})"
                )
            leaf.append(self._option_value(spec, value, resolved, guild, focused == opt_name))
        missing = [o["name"] for o in defs if o.get("required") and o["name"] not in options]
        if missing and focused is None:
            raise ValueError(f"Discord's client does not send /{name} without required options {missing}")
        data: dict[str, Any] = {"id": str(cmd["id"]), "name": cmd["name"], "type": 1, "options": root}
        if guild is not None:
            data["guild_id"] = str(guild.id)
        if resolved:
            data["resolved"] = resolved
        return data

    def _option_value(
        self,
        spec: dict[str, Any],
        value: Any,
        resolved: dict[str, dict[str, Any]],
        guild: DcGuild | None,
        focused: bool,
    ) -> dict[str, Any]:
        kind = int(spec["type"])
        out: dict[str, Any] = {"name": spec["name"], "type": kind}
        if focused:
            out["focused"] = True
            out["value"] = str(value)  # the partial text typed so far
            return out
        if kind == 7:  # CHANNEL
            channel = value if isinstance(value, DcChannel) else self.channels[int(value)]
            resolved.setdefault("channels", {})[str(channel.id)] = {
                "id": str(channel.id),
                "name": channel.name,
                "type": channel.type,
                "permissions": str(self.permissions(channel, self.bot)),
                "guild_id": str(channel.guild_id),
                "flags": 0,
            }
            out["value"] = str(channel.id)
        elif kind in (6, 9) and isinstance(value, (DcUser, DcMember)):
            u = _user(value)
            resolved.setdefault("users", {})[str(u.id)] = u.to_api()
            if guild is not None and u.id in guild.members:
                m = {k: v for k, v in guild.members[u.id].to_api().items() if k != "user"}
                resolved.setdefault("members", {})[str(u.id)] = m
            out["value"] = str(u.id)
        elif kind in (8, 9) and isinstance(value, DcRole):
            resolved.setdefault("roles", {})[str(value.id)] = value.to_api()
            out["value"] = str(value.id)
        elif kind == 4:
            out["value"] = int(value)
        elif kind == 10:
            out["value"] = float(value)
        elif kind == 5:
            out["value"] = bool(value)
        else:
            out["value"] = str(value)
        return out

    def _interaction_payload(
        self,
        type_: int,
        guild: DcGuild | None,
        channel: DcChannel,
        who: DcMember | DcUser,
        data: dict[str, Any] | None,
    ) -> tuple[InteractionRecord, dict[str, Any]]:
        user = _user(who)
        iid = self._next_id()
        token = "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(48)
        payload: dict[str, Any] = {
            "id": str(iid),
            "application_id": str(self.application_id),
            "type": type_,
            "token": token,
            "version": 1,
            "channel_id": str(channel.id),
            "channel": channel.to_api(),
            "app_permissions": str(self.permissions(channel, self.bot)),
            "locale": user.locale,
            "entitlements": [],
            "attachment_size_limit": 10 * 1024 * 1024,
        }
        if data is not None:
            payload["data"] = data
        if guild is not None:
            member = guild.members.get(user.id)
            if member is None:
                raise ValueError(f"{user.username} is not a member of {guild.name}")
            payload.update(
                guild_id=str(guild.id),
                guild={"id": str(guild.id), "locale": guild.locale, "features": []},
                guild_locale=guild.locale,
                member={**member.to_api(), "permissions": str(self.permissions(channel, user))},
                context=0,
                authorizing_integration_owners={"0": str(guild.id)},
            )
        else:
            payload.update(user=user.to_api(), context=1, authorizing_integration_owners={"1": str(user.id)})
        record = InteractionRecord(
            iid, token, type_, payload, user, guild.id if guild else None, channel.id, self.clock()
        )
        self.interactions[iid] = record
        return record, payload

    async def _deliver(self, record: InteractionRecord) -> InteractionRecord:
        if self.interactions_url:
            record.over_http = True
            self._spawn(self._deliver_http(record))
        else:
            delivered = await self._dispatch("INTERACTION_CREATE", record.payload, guild_id=record.guild_id)
            if not delivered:
                raise RuntimeError("no gateway session receives this interaction: is the bot connected?")
        return record

    async def run_command(
        self,
        guild: DcGuild | None,
        channel: DcChannel,
        member: DcMember | DcUser,
        name: str,
        options: dict[str, Any] | None = None,
        **more: Any,
    ) -> InteractionRecord:
        """``member`` runs the slash command ``name`` ("space schedule" for a subcommand) with ``options``
        (name -> value; channels, users and roles as emulator objects). Returns at once: wait for the bot
        with :meth:`wait_for_response` / :meth:`wait_for_followups`."""
        self._check_offered(guild, channel, member, name)
        data = self._command_data(guild, name, {**(options or {}), **more}, None)
        record, _ = self._interaction_payload(2, guild, channel, member, data)
        return await self._deliver(record)

    async def autocomplete(
        self,
        guild: DcGuild | None,
        channel: DcChannel,
        member: DcMember | DcUser,
        name: str,
        focused: str,
        typed: str = "",
        options: dict[str, Any] | None = None,
        *,
        within: float = 5.0,
    ) -> list[dict[str, Any]]:
        """``member`` types ``typed`` in option ``focused`` of ``name``: returns the choices the bot answered."""
        self._check_offered(guild, channel, member, name)
        data = self._command_data(guild, name, {**(options or {}), focused: typed}, focused)
        record, _ = self._interaction_payload(4, guild, channel, member, data)
        await self._deliver(record)
        await self.wait_for_response(record, within=within)
        return record.choices or []

    async def press_button(
        self,
        message: DcMessage,
        custom_id: str,
        member: DcMember | DcUser,
        *,
        values: list[str] | None = None,
    ) -> InteractionRecord:
        """``member`` presses the button ``custom_id`` of ``message`` (or picks ``values`` in a select)."""
        current = self.messages.get(message.id)
        if current is None or current.deleted:
            raise ValueError("that message does not exist (any more): nothing to press")
        comp = next((c for c in current.buttons if c.get("custom_id") == custom_id), None)
        if comp is None:
            raise ValueError(f"no component {custom_id!r} on message {message.id}: {current.custom_ids}")
        if comp.get("disabled"):
            raise ValueError(f"component {custom_id!r} is disabled: Discord's client cannot press it")
        channel = self.channels[current.channel_id]
        guild = self.guilds.get(channel.guild_id) if channel.guild_id else None
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": comp["type"]}
        if values is not None:
            data["values"] = values
        record, payload = self._interaction_payload(3, guild, channel, member, data)
        payload["message"] = self.message_to_api(current)
        record.message = current
        return await self._deliver(record)

    async def submit_modal(
        self, opened_by: InteractionRecord, values: dict[str, str], member: DcMember | DcUser | None = None
    ) -> InteractionRecord:
        """Submit the modal the bot answered ``opened_by`` with (callback type 9), fields by custom_id."""
        modal = opened_by.modal
        if modal is None:
            raise ValueError("the bot did not answer that interaction with a modal")
        rows: list[dict[str, Any]] = []
        known: set[str] = set()
        for comp in modal.get("components") or []:
            if comp.get("type") == 1:
                inner = [
                    {"type": c["type"], "custom_id": c["custom_id"], "value": values.get(c["custom_id"], "")}
                    for c in comp.get("components") or []
                ]
                known.update(c["custom_id"] for c in inner)
                rows.append({"type": 1, "components": inner})
            elif comp.get("type") == 18 and isinstance(comp.get("component"), dict):
                c = comp["component"]
                known.add(c["custom_id"])
                rows.append(
                    {
                        "type": 18,
                        "component": {
                            "type": c["type"],
                            "custom_id": c["custom_id"],
                            "value": values.get(c["custom_id"], ""),
                        },
                    }
                )
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"the modal has no fields {sorted(unknown)} (fields: {sorted(known)})")
        channel = self.channels[opened_by.channel_id]
        guild = self.guilds.get(opened_by.guild_id) if opened_by.guild_id else None
        who = member or (guild.members[opened_by.user.id] if guild else opened_by.user)
        data = {"custom_id": modal["custom_id"], "components": rows}
        record, payload = self._interaction_payload(5, guild, channel, who, data)
        if opened_by.message is not None:
            payload["message"] = self.message_to_api(opened_by.message)
            record.message = opened_by.message
        return await self._deliver(record)

    # ------------------------------------------------------------------ HTTP interactions
    def sign(self, body: bytes, timestamp: str) -> str:
        """Discord's signature: Ed25519 over ``timestamp + body``, hex."""
        return self.signing_key.sign(timestamp.encode() + body).signature.hex()

    async def post_interaction_raw(
        self,
        body: bytes,
        *,
        timestamp: str | None = None,
        signature: str | None = None,
        url: str | None = None,
        answer_within: float | None = None,
    ) -> tuple[int, Any]:
        """POST ``body`` to the interactions endpoint, signed (or with the given ``signature``): returns the
        status and the answer (parsed JSON, else text)."""
        target = url or self.interactions_url
        if not target:
            raise RuntimeError("no interactions_url set")
        assert self._session is not None
        ts = timestamp if timestamp is not None else str(int(self.wall_clock()))
        sig = signature if signature is not None else self.sign(body, ts)
        headers = {
            "Content-Type": "application/json",
            "X-Signature-Ed25519": sig,
            "X-Signature-Timestamp": ts,
            "User-Agent": "Discord-Interactions/1.0 (+https://discord.com)",
        }
        client_timeout = aiohttp.ClientTimeout(total=answer_within or self.response_window + 1.0)
        async with self._session.post(target, data=body, headers=headers, timeout=client_timeout) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, text

    async def probe_ping(self) -> tuple[int, Any]:
        """Discord's PING probe (type 1), signed: a healthy endpoint answers 200 ``{"type": 1}``."""
        body = json.dumps(
            {
                "id": str(self._next_id()),
                "application_id": str(self.application_id),
                "type": 1,
                "token": "ping",
                "version": 1,
            }
        ).encode()
        return await self.post_interaction_raw(body)

    async def probe_bad_signature(self) -> int:
        """Discord's bad-signature probe: a valid-looking request with a wrong signature (expects 401)."""
        body = json.dumps(
            {
                "id": str(self._next_id()),
                "application_id": str(self.application_id),
                "type": 1,
                "token": "ping",
                "version": 1,
            }
        ).encode()
        wrong = SigningKey.generate().sign(b"0" + body).signature.hex()
        status, _ = await self.post_interaction_raw(body, signature=wrong)
        return status

    async def replay(self, record: InteractionRecord) -> tuple[int, Any]:
        """POST an HTTP-delivered interaction again, byte for byte (same timestamp and signature), as an
        attacker replaying a captured request would: the endpoint should refuse it."""
        if record.http_request is None:
            raise ValueError("that interaction was not delivered over HTTP")
        body, ts, sig = record.http_request
        return await self.post_interaction_raw(body, timestamp=ts, signature=sig)

    async def _deliver_http(self, record: InteractionRecord) -> None:
        body = json.dumps(record.payload).encode()
        ts = str(int(self.wall_clock()))
        record.http_request = (body, ts, self.sign(body, ts))
        try:
            status, answer = await self.post_interaction_raw(body, timestamp=ts)
        except (aiohttp.ClientError, TimeoutError) as err:
            record.http_status = None
            record.late_callbacks.append(Callback(0, {"error": repr(err)}, self.clock(), late=True))
            self._changed()
            return
        record.http_status = status
        if status == 200 and isinstance(answer, dict) and "type" in answer:
            try:
                await self._apply_callback(record, int(answer["type"]), answer.get("data"))
            except DcError as err:
                if err.violation:
                    self._violate("interactions endpoint", err.violation, err.message, answer)
        elif status != 200:
            record.late_callbacks.append(
                Callback(0, {"status": status, "body": answer}, self.clock(), late=True)
            )
        self._changed()

    # ------------------------------------------------------------------ acting as members: events
    async def mark_interested(self, event: DcEvent, member: DcMember | DcUser) -> None:
        """``member`` clicks "Interested" on ``event``: GUILD_SCHEDULED_EVENT_USER_ADD."""
        uid = _uid(member)
        ev = self._event(event)
        if uid in ev.interested:
            return
        ev.interested.append(uid)
        ev.fields["user_count"] = len(ev.interested)
        await self._dispatch(
            "GUILD_SCHEDULED_EVENT_USER_ADD",
            {"guild_scheduled_event_id": str(ev.id), "user_id": str(uid), "guild_id": str(ev.guild_id)},
            guild_id=ev.guild_id,
            intent=INTENT_GUILD_SCHEDULED_EVENTS,
        )

    async def unmark_interested(self, event: DcEvent, member: DcMember | DcUser) -> None:
        uid = _uid(member)
        ev = self._event(event)
        if uid not in ev.interested:
            return
        ev.interested.remove(uid)
        ev.fields["user_count"] = len(ev.interested)
        await self._dispatch(
            "GUILD_SCHEDULED_EVENT_USER_REMOVE",
            {"guild_scheduled_event_id": str(ev.id), "user_id": str(uid), "guild_id": str(ev.guild_id)},
            guild_id=ev.guild_id,
            intent=INTENT_GUILD_SCHEDULED_EVENTS,
        )

    async def start_event_in_ui(self, event: DcEvent, member: DcMember | DcUser) -> None:
        """A moderator clicks "Start event" in Discord: ACTIVE, GUILD_SCHEDULED_EVENT_UPDATE."""
        await self._status_in_ui(event, member, EV_ACTIVE)

    async def end_event_in_ui(self, event: DcEvent, member: DcMember | DcUser) -> None:
        await self._status_in_ui(event, member, EV_COMPLETED)

    async def cancel_event_in_ui(self, event: DcEvent, member: DcMember | DcUser) -> None:
        await self._status_in_ui(event, member, EV_CANCELED)

    async def _status_in_ui(self, event: DcEvent, member: DcMember | DcUser, status: int) -> None:
        ev = self._event(event)
        guild = self.guilds[ev.guild_id]
        perms = self.base_permissions(guild, member)
        if not perms & Perm.MANAGE_EVENTS and not (
            perms & Perm.CREATE_EVENTS and ev.creator_id == _uid(member)
        ):
            raise PermissionError(f"{_user(member).username} may not manage events in {guild.name}")
        if (ev.status, status) not in LEGAL_STATUS_CHANGES:
            raise ValueError(f"Discord's UI offers no change from status {ev.status} to {status}")
        self._set_event_status(ev, status)
        await self._dispatch(
            "GUILD_SCHEDULED_EVENT_UPDATE",
            self.event_to_api(ev),
            guild_id=ev.guild_id,
            intent=INTENT_GUILD_SCHEDULED_EVENTS,
        )

    def _set_event_status(self, ev: DcEvent, status: int) -> None:
        ev.fields["status"] = status
        if status == EV_ACTIVE:
            for uid in ev.interested:  # Discord notifies the interested members itself: a free fan-out
                self.native_event_notices[uid] += 1

    def _event(self, event: DcEvent | int) -> DcEvent:
        eid = event if isinstance(event, int) else event.id
        for guild in self.guilds.values():
            if eid in guild.events:
                return guild.events[eid]
        raise KeyError(f"no scheduled event {eid}")

    # ------------------------------------------------------------------ inspection
    def calls(self, route: str | None = None, method: str | None = None) -> list[ApiCall]:
        """Recorded REST calls, all or of one route template / method."""
        return [
            c
            for c in self.api_calls
            if (route is None or c.route == route) and (method is None or c.method == method.upper())
        ]

    def messages_in(
        self, channel: DcChannel | int, *, include_ephemeral: bool = False, include_deleted: bool = False
    ) -> list[DcMessage]:
        cid = channel if isinstance(channel, int) else channel.id
        return [
            m
            for m in self.messages.values()
            if m.channel_id == cid
            and (include_deleted or not m.deleted)
            and (include_ephemeral or not m.ephemeral)
        ]

    def dm_channel(self, user: DcUser | DcMember | int) -> DcChannel | None:
        return self.dm_channels.get(_uid(user))

    def dms_to(self, user: DcUser | DcMember | int) -> list[DcMessage]:
        """Messages the bot sent in its DM with ``user`` (what they received), oldest first."""
        channel = self.dm_channel(user)
        return [] if channel is None else self.messages_in(channel)

    def dm_counts(self, *, containing: str | None = None) -> Counter[int]:
        """User id -> DMs received (optionally only those whose text contains ``containing``)."""
        out: Counter[int] = Counter()
        for uid, channel in self.dm_channels.items():
            for m in self.messages_in(channel):
                if containing is None or containing in m.text:
                    out[uid] += 1
        return out

    def ephemeral_to(self, user: DcUser | DcMember | int) -> list[DcMessage]:
        """Ephemeral answers only ``user`` saw."""
        uid = _uid(user)
        return [m for m in self.messages.values() if m.visible_to == uid and not m.deleted]

    def event_by_name(self, guild: DcGuild, name: str) -> DcEvent:
        return next(e for e in guild.events.values() if e.name == name)

    async def wait_until(
        self, find: Callable[[], Any], *, within: float = 5.0, what: str = "condition"
    ) -> Any:
        """Poll ``find`` (re-checked at every change the emulator sees) until it returns a truthy value."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            found = find()
            if found:
                return found
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"timed out after {within} s waiting for {what}")
            event = self._change
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(remaining, 0.05))

    async def wait_for_response(self, record: InteractionRecord, *, within: float = 5.0) -> Callback:
        """The bot's first response to ``record`` (or a late one, which Discord refused)."""
        await self.wait_until(
            lambda: record.callbacks or record.late_callbacks,
            within=within,
            what=f"a response to interaction {record.id}",
        )
        return record.callbacks[0] if record.callbacks else record.late_callbacks[0]

    async def wait_for_followups(
        self, record: InteractionRecord, count: int = 1, *, within: float = 5.0
    ) -> list[DcMessage]:
        await self.wait_until(
            lambda: len(record.followups) >= count, within=within, what=f"{count} follow-up(s)"
        )
        return record.followups

    async def wait_for_original(self, record: InteractionRecord, *, within: float = 5.0) -> DcMessage:
        """The original response once it has content (a deferred one, once the bot edited it)."""

        def done() -> DcMessage | None:
            m = record.original
            return m if m is not None and not m.flags & LOADING else None

        result: DcMessage = await self.wait_until(done, within=within, what="the original response")
        return result

    async def wait_for_message(
        self,
        channel: DcChannel | int,
        predicate: Callable[[DcMessage], bool] | None = None,
        *,
        within: float = 5.0,
    ) -> DcMessage:
        def find() -> DcMessage | None:
            return next((m for m in self.messages_in(channel) if predicate is None or predicate(m)), None)

        result: DcMessage = await self.wait_until(find, within=within, what="a message")
        return result

    def _changed(self) -> None:
        self._change.set()
        self._change = asyncio.Event()

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ gateway
    def connected_shards(self) -> list[tuple[int, int]]:
        """(shard id, shard count) of every session with a live websocket."""
        return sorted(
            (s.shard_id, s.num_shards) for s in self.sessions.values() if s.ws is not None and not s.ws.closed
        )

    def guilds_of_shard(self, shard_id: int, num_shards: int) -> list[DcGuild]:
        return [g for g in self.guilds.values() if shard_of(g.id, num_shards) == shard_id]

    async def drop_connection(self, shard_id: int = 0, *, code: int = 4000) -> None:
        """Close a shard's websocket (as Discord does on a hiccup): the client reconnects and RESUMEs."""
        for s in self.sessions.values():
            if s.shard_id == shard_id and s.ws is not None and not s.ws.closed:
                await s.ws.close(code=code, message=b"emulator: connection dropped")

    async def wait_connected(self, shards: int = 1, *, within: float = 5.0) -> None:
        """Until ``shards`` sessions are connected and have had their GUILD_CREATEs."""
        await self.wait_until(
            lambda: len(self.connected_shards()) >= shards, within=within, what=f"{shards} shard(s)"
        )

    def ready_payload(self, session: _Session) -> dict[str, Any]:
        return {
            "v": 10,
            "user": {**self.bot.to_api(), "verified": True, "mfa_enabled": False, "email": None},
            "guilds": [
                {"id": str(g.id), "unavailable": True}
                for g in self.guilds_of_shard(session.shard_id, session.num_shards)
            ],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self.gateway_url,
            "shard": [session.shard_id, session.num_shards],
            "application": {"id": str(self.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["rotterdam"],
            "auth": {},
            "user_settings": {},
        }

    def guild_payload(self, guild: DcGuild, *, all_members: bool = True) -> dict[str, Any]:
        members = list(guild.members.values()) if all_members else [guild.members[self.bot.id]]
        return {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(guild.owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 1,
            "explicit_content_filter": 0,
            "roles": [r.to_api() for r in guild.roles.values()],
            "emojis": [],
            "stickers": [],
            "features": [],
            "mfa_level": 0,
            "application_id": None,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "vanity_url_code": None,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": False,
            "preferred_locale": guild.locale,
            "nsfw_level": 0,
            "max_members": 500000,
            "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50,
            "max_presences": None,
            "home_header": None,
            "region": "deprecated",
            "widget_enabled": False,
            "widget_channel_id": None,
            "nsfw": False,
            "incidents_data": None,
            "joined_at": "2025-01-01T00:00:00.000000+00:00",
            "large": False,
            "unavailable": False,
            "lazy": True,
            "member_count": len(guild.members),
            "voice_states": [
                {k: v for k, v in state.items() if k != "guild_id"}
                for state in self.voice_states.get(guild.id, {}).values()
            ],
            "members": [m.to_api() for m in members],
            "channels": [c.to_api() for c in guild.channels.values()],
            "threads": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [self.event_to_api(e) for e in guild.events.values()],
            "soundboard_sounds": [],
            "embedded_activities": [],
            "activity_instances": [],
        }

    async def _handle_gateway(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=16 * 1024 * 1024)
        await ws.prepare(request)
        session: _Session | None = None
        await self._ws_send(
            ws, {"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}, "s": None, "t": None}
        )
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                op, d = data.get("op"), data.get("d")
                if op == 1:
                    self.heartbeats += 1
                    await self._ws_send(ws, {"op": 11, "d": None, "s": None, "t": None})
                elif op == 2:
                    session = await self._identify(ws, d or {})
                    if session is None:
                        break
                elif op == 6:
                    session = await self._resume(ws, d or {})
                    if session is None:
                        continue
                elif op == 8:
                    await self._members_chunk(ws, session, d or {})
                elif op == 4:
                    self.voice_updates.append(dict(d or {}))
                    self._changed()
                    if self.voice is not None:
                        await self.voice(self, session, d or {})
                # op 3 (presence) needs no answer; op 4 only when a voice emulator is attached
        finally:
            if session is not None and session.ws is ws:
                session.ws = None
            self._changed()
        return ws

    async def _identify(self, ws: web.WebSocketResponse, d: dict[str, Any]) -> _Session | None:
        self.identifies.append({k: v for k, v in d.items() if k != "token"})
        if d.get("token") not in (self.token, f"Bot {self.token}"):
            await ws.close(code=4004, message=b"Authentication failed.")
            return None
        shard = d.get("shard") or [0, 1]
        shard_id, num_shards = int(shard[0]), int(shard[1])
        if not 0 <= shard_id < num_shards:
            await ws.close(code=4010, message=b"Invalid shard.")
            return None
        if len(self.guilds_of_shard(shard_id, num_shards)) > self.max_guilds_per_shard:
            await ws.close(code=4011, message=b"Sharding required.")
            return None
        intents = int(d.get("intents") or 0)
        if intents & PRIVILEGED_INTENTS & ~self.privileged_intents:
            await ws.close(code=4014, message=b"Disallowed intent(s).")
            return None
        session = _Session(secrets.token_hex(16), shard_id, num_shards, int(d.get("intents") or 0), ws)
        session.identified_at = self.clock()
        self.sessions[session.id] = session
        await self._send_dispatch(session, "READY", self.ready_payload(session))
        members_intent = bool(session.intents & (1 << 1))
        for guild in self.guilds_of_shard(shard_id, num_shards):
            await self._send_dispatch(
                session, "GUILD_CREATE", self.guild_payload(guild, all_members=members_intent)
            )
        self._changed()
        return session

    async def _resume(self, ws: web.WebSocketResponse, d: dict[str, Any]) -> _Session | None:
        session = self.sessions.get(str(d.get("session_id")))
        if session is None or d.get("token") not in (self.token, f"Bot {self.token}"):
            await self._ws_send(ws, {"op": 9, "d": False, "s": None, "t": None})
            return None
        session.ws = ws
        session.resumes += 1
        seq = int(d.get("seq") or 0)
        for payload in session.log:
            if payload["s"] > seq:
                await self._ws_send(ws, payload)
        await self._send_dispatch(session, "RESUMED", {})
        self._changed()
        return session

    async def _members_chunk(
        self, ws: web.WebSocketResponse, session: _Session | None, d: dict[str, Any]
    ) -> None:
        if session is None:
            return
        ids = d.get("guild_id")
        for gid in ids if isinstance(ids, list) else [ids]:
            guild = self.guilds.get(int(gid)) if gid is not None else None
            if guild is None:
                continue
            chunk = {
                "guild_id": str(guild.id),
                "members": [m.to_api() for m in guild.members.values()],
                "chunk_index": 0,
                "chunk_count": 1,
                "not_found": [],
            }
            if d.get("nonce"):
                chunk["nonce"] = d["nonce"]
            await self._send_dispatch(session, "GUILD_MEMBERS_CHUNK", chunk)

    async def _ws_send(self, ws: web.WebSocketResponse, payload: dict[str, Any]) -> None:
        lock = self._send_locks.setdefault(id(ws), asyncio.Lock())
        async with lock:
            if not ws.closed:
                with contextlib.suppress(ConnectionResetError, RuntimeError):
                    await ws.send_str(json.dumps(payload))

    async def _send_dispatch(self, session: _Session, event: str, data: dict[str, Any]) -> None:
        session.seq += 1
        payload = {"op": 0, "t": event, "s": session.seq, "d": data}
        session.log.append(payload)
        self.gateway_sent.append((session.id, session.shard_id, payload))
        if session.ws is not None:
            await self._ws_send(session.ws, payload)

    async def _dispatch(
        self, event: str, data: dict[str, Any], *, guild_id: int | None = None, intent: int | None = None
    ) -> int:
        """Send a dispatch to every session whose shard holds ``guild_id`` (DMs: shard 0); returns how many
        live sessions got it. A session that is disconnected gets it on RESUME."""
        live = 0
        for session in list(self.sessions.values()):
            shard = 0 if guild_id is None else shard_of(guild_id, session.num_shards)
            if shard != session.shard_id or (intent is not None and not session.intents & intent):
                continue
            if session.ws is None and not session.log:
                continue
            await self._send_dispatch(session, event, data)
            live += session.ws is not None
        self._changed()
        return live

    def dispatched(self, event: str | None = None) -> list[dict[str, Any]]:
        """Gateway dispatches sent so far (payloads ``{"op": 0, "t", "s", "d"}``), all or of one event."""
        return [p for _, _, p in self.gateway_sent if event is None or p.get("t") == event]

    # ------------------------------------------------------------------ REST machinery
    def _rate_limited(self, retry_after: float, *, scope: str, bucket: str, is_global: bool) -> DcError:
        headers = {
            "Retry-After": str(max(1, int(retry_after + 0.999))),
            "X-RateLimit-Scope": scope,
            "Via": "1.1 google",  # without it discord.py takes the 429 for a Cloudflare ban
        }
        if is_global:
            headers["X-RateLimit-Global"] = "true"
        body = {
            "message": "You are being rate limited.",
            "retry_after": round(retry_after, 3),
            "global": is_global,
        }
        if not is_global:
            headers["X-RateLimit-Bucket"] = bucket
        return DcError(429, 0, "You are being rate limited.", headers=headers, body=body)

    def _route_rule(self, method: str, template: str, params: dict[str, str]) -> tuple[RateRule, str, str]:
        """(rule, bucket name, major parameter value) for a request."""
        if template == "/channels/{channel_id}/messages" and method == "POST":
            return self.message_rate, "message-create", params["channel_id"]
        if template == "/channels/{channel_id}/messages/{message_id}" and method == "PATCH":
            return self.message_rate, "message-edit", params["channel_id"]
        if template == "/users/@me/channels":
            return self.dm_open_rate, "dm-open", ""
        if template.startswith("/guilds/{guild_id}/scheduled-events") and method in (
            "POST",
            "PATCH",
            "DELETE",
        ):
            return self.event_rate, "scheduled-events", params["guild_id"]
        major = params.get("channel_id") or params.get("guild_id") or params.get("webhook_token") or ""
        return self.default_rate, f"{method} {template}", major

    def _check_global(self, now: float) -> None:
        window = self._global_window
        while window and window[0] <= now - self.global_rate.per:
            window.popleft()
        if len(window) >= self.global_rate.limit:
            self.count_global_429 += 1
            raise self._rate_limited(
                window[0] + self.global_rate.per - now, scope="global", bucket="", is_global=True
            )
        window.append(now)

    def _take_bucket(self, method: str, template: str, params: dict[str, str], now: float) -> dict[str, str]:
        rule, name, major = self._route_rule(method, template, params)
        bucket_id = hashlib.sha1(name.encode()).hexdigest()[:16]
        key = (name, major)
        bucket = self._buckets.get(key)
        if bucket is None or now >= bucket.reset_at:
            bucket = self._buckets[key] = _Bucket(rule.limit, now + rule.per, rule, bucket_id)
        reset_after = max(0.0, bucket.reset_at - now)
        headers = {
            "X-RateLimit-Limit": str(rule.limit),
            "X-RateLimit-Reset": f"{self.wall_clock() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": bucket_id,
        }
        if bucket.remaining <= 0:
            err = self._rate_limited(reset_after, scope="user", bucket=bucket_id, is_global=False)
            err.headers.update(headers, **{"X-RateLimit-Remaining": "0"})
            raise err
        bucket.remaining -= 1
        headers["X-RateLimit-Remaining"] = str(bucket.remaining)
        return headers

    async def _read_body(self, request: web.Request) -> tuple[Any, bool]:
        if not request.can_read_body:
            return None, False
        ctype = request.content_type
        if ctype == "multipart/form-data":
            reader = await request.multipart()
            body: Any = None
            files: list[str] = []
            async for part in reader:
                if not isinstance(part, aiohttp.BodyPartReader):
                    continue
                if part.name == "payload_json":
                    body = json.loads(await part.text())
                elif part.filename is not None:
                    await part.read()
                    files.append(part.filename)
            if isinstance(body, dict) and files:
                body.setdefault("__files__", files)
            return body, True
        raw = await request.read()
        if not raw:
            return None, False
        if ctype != "application/json":
            raise DcError(400, 50035, f"emulator: unsupported content type {ctype!r}", violation="spec")
        return json.loads(raw), True

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        method = request.method
        query = dict(request.query)
        now = self.clock()
        call = ApiCall(method, path, None, {}, query, None, now, 0)
        headers_out: dict[str, str] = {}
        if self.ban_after_invalid is not None and not self.banned:
            recent = [t for t in self.invalid_requests if t > now - 600.0]
            self.banned = len(recent) >= self.ban_after_invalid
        if self.banned:
            call.status = 429
            self._record(call)
            self.count_429 += 1
            # no Via header and an HTML body: discord.py reads it as a Cloudflare ban and raises
            return web.Response(
                status=429,
                text="<html>Error 1015: you are being rate limited</html>",
                content_type="text/html",
            )
        try:
            try:
                body, has_body = await self._read_body(request)
            except ValueError as err:
                raise DcError(
                    400, 50109, f"The request body contains invalid JSON: {err}", violation="spec"
                ) from None
            call.body = body
            matched = self.spec.match(path)
            if matched is None:
                raise DcError(404, 0, "404: Not Found", violation="spec")
            template, params = matched
            call.route, call.params = template, params
            op = self.spec.operation(method, template)
            if op is None:
                raise DcError(405, 0, "405: Method Not Allowed", violation="spec")
            exempt = template.startswith(("/interactions/", "/webhooks/{webhook_id}/{webhook_token}"))
            if (
                op.needs_bot_token
                and not exempt
                and request.headers.get("Authorization") != f"Bot {self.token}"
            ):
                raise DcError(401, 0, "401: Unauthorized", violation="token")
            if self.rate_limits and not exempt:
                self._check_global(now)
            files = body.pop("__files__", None) if isinstance(body, dict) else None
            problems = self.spec.check_query(op, query) + self.spec.check_body(op, body, has_body=has_body)
            if files and isinstance(body, dict):
                body["__files__"] = files
            if problems:
                raise DcError(
                    400, 50035, "Invalid Form Body", errors=_form_errors(problems), violation="spec"
                )
            for f_method, f_route, f_err, left in self._faults:
                if f_method == method and f_route == template and left[0] > 0:
                    left[0] -= 1
                    raise f_err
            if self.rate_limits:
                headers_out = self._take_bucket(method, template, params, now)
            handler = self._handlers.get((method, template))
            if handler is None:
                msg = f"{method} {template} is valid but not implemented by the emulator"
                raise DcError(400, 0, "emulator: " + msg, violation="unimplemented")
            chaos = self._chaos.draw(method, template) if self._chaos is not None else None
            if chaos == "error":
                self.faults_injected["error"] += 1
                raise DcError(500, 0, "500: Internal Server Error")
            req = _Req(method, template, params, query, body, op)
            result = await handler(req)
            if chaos == "reset":  # done (delivered), but the answer never reaches the bot
                self.faults_injected["reset"] += 1
                call.status, call.response = 0, result
                self._record(call)
                if request.transport is not None:
                    request.transport.abort()
                raise web.HTTPServiceUnavailable()  # not sent: the connection is gone
        except web.HTTPException:
            raise
        except (KeyError, ValueError, TypeError, AttributeError, IndexError) as crash:
            # an emulator bug or a request shape it did not foresee: fail the test with a clear message
            # rather than a 500 that discord.py would retry for seconds
            err = DcError(400, 0, f"emulator error: {crash!r}", violation="emulator")
            self._violate(f"{method} {call.route or path}", "emulator", err.message, call.body)
            call.status, call.code, call.response = 400, 0, err.payload()
            self._record(call)
            return _json_response(err.payload(), 400, headers_out)
        except DcError as err:
            if err.violation:
                self._violate(
                    f"{method} {call.route or path}", err.violation, err.message + _problems(err), call.body
                )
            call.status, call.code, call.response = err.status, err.code, err.payload()
            call.headers = {**headers_out, **err.headers}
            self._record(call)
            if err.status in (401, 403, 429) and err.headers.get("X-RateLimit-Scope") != "shared":
                self.invalid_requests.append(now)
            if err.status == 429:
                self.count_429 += 1
            return _json_response(err.payload(), err.status, {**headers_out, **err.headers})
        call.headers = headers_out
        if result is None:
            call.status = 204
            self._record(call)
            return web.Response(status=204, headers=headers_out)
        call.status, call.response = 200, result
        if self.validate_responses:
            for problem in self.spec.check_response(op, result):
                self._violate(f"{method} {call.route}", "emulator", f"malformed answer: {problem}", result)
        self._record(call)
        return _json_response(result, 200, headers_out)

    def _record(self, call: ApiCall) -> None:
        self.api_calls.append(call)
        self._changed()

    def _violate(self, route: str, kind: str, message: str, body: Any) -> None:
        self.violations.append(Violation(route, kind, message, body))

    def _register_routes(self) -> None:
        r = self._handlers
        r[("GET", "/users/@me")] = self._r_me
        r[("GET", "/users/{user_id}")] = self._r_user
        r[("GET", "/oauth2/applications/@me")] = self._r_application
        r[("GET", "/applications/@me")] = self._r_application
        r[("GET", "/gateway")] = self._r_gateway
        r[("GET", "/gateway/bot")] = self._r_gateway_bot
        r[("GET", "/guilds/{guild_id}")] = self._r_guild
        r[("GET", "/guilds/{guild_id}/channels")] = self._r_guild_channels
        r[("GET", "/guilds/{guild_id}/roles")] = self._r_guild_roles
        r[("GET", "/guilds/{guild_id}/members/{user_id}")] = self._r_guild_member
        r[("GET", "/channels/{channel_id}")] = self._r_channel
        r[("POST", "/channels/{channel_id}/messages")] = self._r_create_message
        r[("GET", "/channels/{channel_id}/messages")] = self._r_list_messages
        r[("GET", "/channels/{channel_id}/messages/{message_id}")] = self._r_get_message
        r[("PATCH", "/channels/{channel_id}/messages/{message_id}")] = self._r_edit_message
        r[("DELETE", "/channels/{channel_id}/messages/{message_id}")] = self._r_delete_message
        r[("POST", "/users/@me/channels")] = self._r_open_dm
        r[("PUT", "/applications/{application_id}/commands")] = self._r_put_commands
        r[("GET", "/applications/{application_id}/commands")] = self._r_get_commands
        r[("PUT", "/applications/{application_id}/guilds/{guild_id}/commands")] = self._r_put_commands
        r[("GET", "/applications/{application_id}/guilds/{guild_id}/commands")] = self._r_get_commands
        r[("POST", "/interactions/{interaction_id}/{interaction_token}/callback")] = self._r_callback
        r[("POST", "/webhooks/{webhook_id}/{webhook_token}")] = self._r_followup
        for m in ("GET", "PATCH", "DELETE"):
            r[(m, "/webhooks/{webhook_id}/{webhook_token}/messages/@original")] = self._r_webhook_message
            r[(m, "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}")] = self._r_webhook_message
        r[("POST", "/guilds/{guild_id}/scheduled-events")] = self._r_create_event
        r[("GET", "/guilds/{guild_id}/scheduled-events")] = self._r_list_events
        r[("GET", "/guilds/{guild_id}/scheduled-events/{guild_scheduled_event_id}")] = self._r_get_event
        r[("PATCH", "/guilds/{guild_id}/scheduled-events/{guild_scheduled_event_id}")] = self._r_modify_event
        r[("DELETE", "/guilds/{guild_id}/scheduled-events/{guild_scheduled_event_id}")] = self._r_delete_event
        r[("GET", "/guilds/{guild_id}/scheduled-events/{guild_scheduled_event_id}/users")] = (
            self._r_event_users
        )
        r[("PATCH", "/guilds/{guild_id}/voice-states/@me")] = self._r_my_voice_state

    def add_route(self, method: str, template: str, handler: Callable[[_Req], Awaitable[Any]]) -> None:
        """Implement (or override) a route of the description: ``await handler(req)`` returns the JSON answer
        (None for 204) or raises :class:`DcError`."""
        self._handlers[(method.upper(), template)] = handler

    # ------------------------------------------------------------------ serializers
    def message_to_api(self, m: DcMessage) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": str(m.id),
            "channel_id": str(m.channel_id),
            "author": m.author.to_api(),
            "content": m.content,
            "timestamp": m.timestamp,
            "edited_timestamp": m.edited_timestamp,
            "tts": False,
            "mention_everyone": m.mention_everyone,
            "mentions": [self.users[u].to_api() for u in m.mentioned if u in self.users],
            "mention_roles": [str(r) for r in m.mention_roles],
            "attachments": [],
            "embeds": [{"type": "rich", **e} for e in m.embeds],
            "pinned": False,
            "type": 0,
            "flags": m.flags,
            "components": with_ids(m.components),
        }
        if m.guild_id is not None:
            d["guild_id"] = str(m.guild_id)
        if m.nonce is not None:
            d["nonce"] = m.nonce
        if m.webhook_id is not None:
            d["webhook_id"] = str(m.webhook_id)
            d["application_id"] = str(self.application_id)
        if m.interaction_id is not None:
            rec = self.interactions.get(m.interaction_id)
            if rec is not None:
                d["interaction_metadata"] = self._interaction_metadata(rec)
                if rec.original is m and rec.type == 2:
                    d["type"] = 20  # CHAT_INPUT_COMMAND
        if m.message_reference is not None:
            d["message_reference"] = m.message_reference
            d["type"] = 19  # REPLY
        return d

    def _interaction_metadata(self, rec: InteractionRecord) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "id": str(rec.id),
            "type": rec.type,
            "user": rec.user.to_api(),
            "authorizing_integration_owners": rec.payload.get("authorizing_integration_owners", {}),
        }
        if rec.original is not None:
            meta["original_response_message_id"] = str(rec.original.id)
        if rec.type == 3 and rec.message is not None:
            meta["interacted_message_id"] = str(rec.message.id)
        if rec.type == 5:
            opener = next(
                (
                    r
                    for r in self.interactions.values()
                    if r.modal is not None
                    and r.modal.get("custom_id") == (rec.payload.get("data") or {}).get("custom_id")
                ),
                None,
            )
            meta["triggering_interaction_metadata"] = (
                self._interaction_metadata(opener)
                if opener is not None and opener is not rec
                else {"id": "0", "type": 2, "authorizing_integration_owners": {}}
            )
        return meta

    def event_to_api(self, ev: DcEvent, *, with_user_count: bool = False) -> dict[str, Any]:
        """The event object; ``user_count`` only when asked (``?with_user_count=true``), as Discord does."""
        creator = self.users.get(ev.creator_id)
        return {
            "id": str(ev.id),
            "guild_id": str(ev.guild_id),
            "creator_id": str(ev.creator_id),
            "creator": creator.to_api() if creator else None,
            "image": None,
            "recurrence_rule": None,
            "guild_scheduled_event_exceptions": [],
            **ev.fields,
        } | ({"user_count": len(ev.interested)} if with_user_count else {})

    # ------------------------------------------------------------------ message rules
    def _check_message_body(self, body: dict[str, Any], *, creating: bool) -> None:
        content = body.get("content")
        if isinstance(content, str) and len(content) > self.max_content_length:
            raise bad_request(
                f"Invalid Form Body: content: Must be {self.max_content_length} or fewer in length."
            )
        if creating and not (
            content
            or body.get("embeds")
            or body.get("components")
            or body.get("sticker_ids")
            or body.get("poll")
            or body.get("__files__")
        ):
            raise bad_request("Cannot send an empty message", code=50006)
        total = 0
        for e in body.get("embeds") or []:
            total += len(str(e.get("title") or "")) + len(str(e.get("description") or ""))
            total += len(str((e.get("footer") or {}).get("text") or "")) + len(
                str((e.get("author") or {}).get("name") or "")
            )
            total += sum(
                len(str(f.get("name", ""))) + len(str(f.get("value", ""))) for f in e.get("fields") or []
            )
        if total > 6000:
            raise bad_request("Invalid Form Body: embeds: Embed size exceeds maximum size of 6000")
        ids = [c["custom_id"] for c in walk_components(body.get("components") or []) if "custom_id" in c]
        if len(ids) != len(set(ids)):
            raise bad_request("Invalid Form Body: components: Component custom id cannot be duplicated")
        for c in walk_components(body.get("components") or []):
            if c.get("type") == 2:
                link = c.get("style") == 5
                if link and ("url" not in c or "custom_id" in c):
                    raise bad_request(
                        "Invalid Form Body: components: a link button has a url and no custom_id"
                    )
                if not link and c.get("style") != 6 and "custom_id" not in c:
                    raise bad_request("Invalid Form Body: components: a button needs a custom_id")
        am = body.get("allowed_mentions")
        if isinstance(am, dict):
            parse = am.get("parse") or []
            for kind in ("users", "roles"):
                if kind in parse and am.get(kind):
                    raise bad_request(
                        f'Invalid Form Body: allowed_mentions: parse:["{kind}"] and {kind}: [ids] are mutually exclusive.'
                    )

    def _mentions(
        self, channel: DcChannel, content: str, allowed: dict[str, Any] | None, author: DcUser
    ) -> tuple[set[int], list[int], bool, set[int]]:
        """(users mentioned, roles mentioned, mention_everyone, user ids actually pinged) for ``content``
        under ``allowed_mentions`` (absent: Discord parses everything)."""
        if allowed is None:
            parse, users, roles = {"users", "roles", "everyone"}, set(), set()
        else:
            parse = set(allowed.get("parse") or [])
            users = {int(u) for u in allowed.get("users") or []}
            roles = {int(r) for r in allowed.get("roles") or []}
        guild = self.guilds.get(channel.guild_id) if channel.guild_id else None
        if not (
            USER_MENTION_RE.search(content) or ROLE_MENTION_RE.search(content) or EVERYONE_RE.search(content)
        ):
            return set(), [], False, set()  # the common case, without walking the members
        audience: set[int]
        if guild is None:
            audience = {channel.recipient.id} if channel.recipient else set()
        else:
            audience = {uid for uid in guild.members if self.permissions(channel, uid) & Perm.VIEW_CHANNEL}
        mentioned = {int(u) for u in USER_MENTION_RE.findall(content)}
        mentioned = {u for u in mentioned if ("users" in parse or u in users) and u in audience}
        pinged = set(mentioned)
        role_ids: list[int] = []
        can_everyone = guild is not None and bool(self.permissions(channel, author) & Perm.MENTION_EVERYONE)
        if guild is not None:
            for rid in (int(r) for r in ROLE_MENTION_RE.findall(content)):
                role = guild.roles.get(rid)
                if role is None or not ("roles" in parse or rid in roles):
                    continue
                if role.mentionable or can_everyone:
                    role_ids.append(rid)
                    pinged |= {uid for uid, m in guild.members.items() if rid in m.roles and uid in audience}
        everyone = bool(EVERYONE_RE.search(content)) and "everyone" in parse and can_everyone
        if everyone:
            pinged |= audience
        pinged.discard(author.id)
        return mentioned, role_ids, everyone, pinged

    async def _create_message(
        self,
        channel: DcChannel,
        body: dict[str, Any],
        *,
        webhook: bool = False,
        interaction: InteractionRecord | None = None,
    ) -> DcMessage:
        self._check_message_body(body, creating=True)
        if not webhook:
            if channel.guild_id is not None:
                perms = self.permissions(channel, self.bot)
                if not perms & Perm.VIEW_CHANNEL:
                    raise DcError(403, 50001, "Missing Access")
                if not perms & Perm.SEND_MESSAGES:
                    raise DcError(403, 50013, "Missing Permissions")
                if body.get("embeds") and not perms & Perm.EMBED_LINKS:
                    raise DcError(403, 50013, "Missing Permissions")
            elif channel.recipient is not None and channel.recipient.dms_closed:
                raise DcError(403, 50007, "Cannot send messages to this user")
        nonce = body.get("nonce")
        now = self.clock()
        if nonce is not None and body.get("enforce_nonce") and not webhook:
            key = (channel.id, self.bot.id, str(nonce))
            seen = self._nonces.get(key)
            if seen is not None and now - seen[0] <= self.nonce_window and seen[1] in self.messages:
                self.nonce_hits[str(nonce)] += 1
                return self.messages[seen[1]]
        flags = int(body.get("flags") or 0)
        mentioned, role_ids, everyone, pinged = self._mentions(
            channel, str(body.get("content") or ""), body.get("allowed_mentions"), self.bot
        )
        ephemeral = bool(flags & EPHEMERAL) and interaction is not None
        if ephemeral:
            pinged = set()
        msg = DcMessage(
            id=self._next_id(),
            channel_id=channel.id,
            guild_id=channel.guild_id,
            author=self.bot,
            versions=[
                MessageVersion(
                    str(body.get("content") or ""),
                    list(body.get("embeds") or []),
                    list(body.get("components") or []),
                    flags,
                    now,
                )
            ],
            timestamp=iso(self.wall_clock()),
            nonce=nonce,
            pinged=frozenset(pinged),
            mention_everyone=everyone,
            mention_roles=role_ids,
            webhook_id=self.application_id if webhook else None,
            interaction_id=interaction.id if interaction else None,
            visible_to=interaction.user.id if (ephemeral and interaction) else None,
            mentioned=tuple(sorted(mentioned)),
            body=dict(body),
            message_reference=body.get("message_reference"),
        )
        self.messages[msg.id] = msg
        channel.last_message_id = msg.id
        for uid in pinged:
            self.pings[uid] += 1
        if nonce is not None and body.get("enforce_nonce") and not webhook:
            self._nonces[(channel.id, self.bot.id, str(nonce))] = (now, msg.id)
        if not ephemeral:
            await self._dispatch("MESSAGE_CREATE", self.message_to_api(msg), guild_id=channel.guild_id)
        return msg

    async def _edit_message(self, msg: DcMessage, body: dict[str, Any]) -> DcMessage:
        self._check_message_body(body, creating=False)
        last = msg.versions[-1]
        flags = int(body["flags"]) if body.get("flags") is not None else last.flags
        flags = (flags & ~LOADING) | (last.flags & EPHEMERAL)
        msg.versions.append(
            MessageVersion(
                str(body["content"] or "") if "content" in body else last.content,
                list(body["embeds"] or []) if "embeds" in body else last.embeds,
                list(body["components"] or []) if "components" in body else last.components,
                flags,
                self.clock(),
            )
        )
        msg.edited_timestamp = iso(self.wall_clock())
        if not msg.ephemeral:
            await self._dispatch("MESSAGE_UPDATE", self.message_to_api(msg), guild_id=msg.guild_id)
        return msg

    def _channel(self, cid: str) -> DcChannel:
        channel = self.channels.get(int(cid)) if cid.isdigit() else None
        if channel is None:
            raise DcError(404, 10003, "Unknown Channel")
        return channel

    def _guild(self, gid: str) -> DcGuild:
        guild = self.guilds.get(int(gid)) if gid.isdigit() else None
        if guild is None:
            raise DcError(404, 10004, "Unknown Guild")
        return guild

    def _message(self, channel: DcChannel, mid: str) -> DcMessage:
        msg = self.messages.get(int(mid)) if mid.isdigit() else None
        if msg is None or msg.deleted or msg.channel_id != channel.id or msg.visible_to is not None:
            raise DcError(404, 10008, "Unknown Message")
        return msg

    # ------------------------------------------------------------------ routes: identity, guilds, channels
    async def _r_me(self, req: _Req) -> Any:
        return {
            **self.bot.to_api(),
            "verified": True,
            "mfa_enabled": False,
            "locale": "en-US",
            "email": None,
            "bio": "",
        }

    async def _r_user(self, req: _Req) -> Any:
        user = self.users.get(int(req.params["user_id"])) if req.params["user_id"].isdigit() else None
        if user is None:
            raise DcError(404, 10013, "Unknown User")
        return user.to_api()

    async def _r_application(self, req: _Req) -> Any:
        return {
            "id": str(self.application_id),
            "name": self.bot.username,
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "rpc_origins": [],
            "bot_public": True,
            "bot_require_code_grant": False,
            "bot": self.bot.to_api(),
            "owner": self.app_owner.to_api(),
            "verify_key": self.public_key,
            "team": None,
            "flags": 0,
            "flags_new": "0",
            "tags": [],
            "install_params": {"scopes": ["bot", "applications.commands"], "permissions": "0"},
            "integration_types_config": {"0": {}},
            "interactions_endpoint_url": self.interactions_url,
            "role_connections_verification_url": None,
            "approximate_guild_count": len(self.guilds),
            "approximate_user_install_count": 0,
            "approximate_user_authorization_count": 0,
            "explicit_content_filter": 0,
            "eligible_oauth2_scopes": ["bot", "applications.commands"],
            "redirect_uris": [],
        }

    async def _r_gateway(self, req: _Req) -> Any:
        return {"url": self.gateway_url.rstrip("/")}

    async def _r_gateway_bot(self, req: _Req) -> Any:
        return {
            "url": self.gateway_url.rstrip("/"),
            "shards": self.recommended_shards,
            "session_start_limit": {
                "total": 1000,
                "remaining": 999,
                "reset_after": 14_400_000,
                "max_concurrency": 1,
            },
        }

    async def _r_guild(self, req: _Req) -> Any:
        guild = self._guild(req.params["guild_id"])
        data = self.guild_payload(guild)
        for key in (
            "members",
            "channels",
            "threads",
            "presences",
            "voice_states",
            "joined_at",
            "large",
            "member_count",
        ):
            data.pop(key, None)
        if req.query.get("with_counts") in ("true", "1", "True"):
            data.update(approximate_member_count=len(guild.members), approximate_presence_count=0)
        return data

    async def _r_guild_channels(self, req: _Req) -> Any:
        return [c.to_api() for c in self._guild(req.params["guild_id"]).channels.values()]

    async def _r_guild_roles(self, req: _Req) -> Any:
        return [r.to_api() for r in self._guild(req.params["guild_id"]).roles.values()]

    async def _r_guild_member(self, req: _Req) -> Any:
        guild = self._guild(req.params["guild_id"])
        uid = req.params["user_id"]
        member = guild.members.get(int(uid)) if uid.isdigit() else None
        if member is None:
            raise DcError(404, 10007, "Unknown Member")
        return member.to_api()

    async def _r_channel(self, req: _Req) -> Any:
        channel = self._channel(req.params["channel_id"])
        if channel.guild_id is not None and not self.permissions(channel, self.bot) & Perm.VIEW_CHANNEL:
            raise DcError(403, 50001, "Missing Access")
        return channel.to_api()

    # ------------------------------------------------------------------ routes: messages and DMs
    async def _r_create_message(self, req: _Req) -> Any:
        channel = self._channel(req.params["channel_id"])
        return self.message_to_api(await self._create_message(channel, req.body or {}))

    async def _r_list_messages(self, req: _Req) -> Any:
        channel = self._channel(req.params["channel_id"])
        limit = int(req.query.get("limit", 50))
        msgs = sorted(self.messages_in(channel), key=lambda m: m.id, reverse=True)
        if "before" in req.query:
            msgs = [m for m in msgs if m.id < int(req.query["before"])]
        if "after" in req.query:
            msgs = [m for m in msgs if m.id > int(req.query["after"])]
        return [self.message_to_api(m) for m in msgs[:limit]]

    async def _r_get_message(self, req: _Req) -> Any:
        channel = self._channel(req.params["channel_id"])
        return self.message_to_api(self._message(channel, req.params["message_id"]))

    async def _r_edit_message(self, req: _Req) -> Any:
        channel = self._channel(req.params["channel_id"])
        msg = self._message(channel, req.params["message_id"])
        if msg.author.id != self.bot.id or msg.webhook_id is not None:
            raise DcError(403, 50005, "Cannot edit a message authored by another user")
        return self.message_to_api(await self._edit_message(msg, req.body or {}))

    async def _r_delete_message(self, req: _Req) -> Any:
        channel = self._channel(req.params["channel_id"])
        msg = self._message(channel, req.params["message_id"])
        if msg.author.id != self.bot.id and not self.permissions(channel, self.bot) & Perm.MANAGE_MESSAGES:
            raise DcError(403, 50013, "Missing Permissions")
        msg.deleted = True
        await self._dispatch(
            "MESSAGE_DELETE",
            {
                "id": str(msg.id),
                "channel_id": str(channel.id),
                **({"guild_id": str(msg.guild_id)} if msg.guild_id else {}),
            },
            guild_id=msg.guild_id,
        )
        return None

    async def _r_open_dm(self, req: _Req) -> Any:
        body = req.body or {}
        uid = snowflake_int(body.get("recipient_id"))
        user = self.users.get(uid) if uid is not None else None
        if user is None or user.bot:
            raise (
                DcError(400, 50007, "Cannot send messages to this user")
                if user
                else DcError(404, 10013, "Unknown User")
            )
        self.dm_opens[user.id] += 1
        if self.dm_open_spam_limit is not None:
            now = self.clock()
            opens = self._dm_open_times
            opens.append(now)
            while opens and opens[0] <= now - self.dm_open_spam_limit.per:
                opens.popleft()
            if len(opens) > self.dm_open_spam_limit.limit:
                raise DcError(403, 40003, "You are opening direct messages too fast.")
        return self.ensure_dm_channel(user).to_api()

    # ------------------------------------------------------------------ routes: application commands
    async def _r_put_commands(self, req: _Req) -> Any:
        commands = req.body or []
        gid = int(req.params["guild_id"]) if "guild_id" in req.params else None
        if int(req.params["application_id"]) != self.application_id:
            raise DcError(403, 50001, "Missing Access")
        if gid is not None:
            self._guild(str(gid))
        pool = self.guild_commands.get(gid, []) if gid is not None else self.global_commands
        old = {(c["name"], c.get("type", 1)): c for c in pool}
        seen: set[tuple[str, int]] = set()
        stored: list[dict[str, Any]] = []
        for cmd in commands:
            kind = int(cmd.get("type") or 1)
            name = str(cmd.get("name", ""))
            if kind == 1 and (not re.fullmatch(r"[-_\w]{1,32}", name) or name != name.lower()):
                raise bad_request(f"Invalid Form Body: name: Command name is invalid: {name!r}")
            if (name, kind) in seen:
                raise bad_request(f"Invalid Form Body: Application command names must be unique: {name!r}")
            seen.add((name, kind))
            prev = old.get((name, kind))
            entry = {
                "id": prev["id"] if prev else str(self._next_id()),
                "application_id": str(self.application_id),
                "version": str(self._next_id()),
                "type": kind,
                "name": name,
                "description": cmd.get("description", ""),
                "options": cmd.get("options") or [],
                "default_member_permissions": cmd.get("default_member_permissions"),
                "dm_permission": cmd.get("dm_permission", True),
                "contexts": cmd.get("contexts"),
                "integration_types": cmd.get("integration_types") or [0],
                "nsfw": bool(cmd.get("nsfw", False)),
                "name_localizations": cmd.get("name_localizations"),
                "description_localizations": cmd.get("description_localizations"),
            }
            if gid is not None:
                entry["guild_id"] = str(gid)
            stored.append(entry)
        if gid is not None:
            self.guild_commands[gid] = stored
        else:
            self.global_commands = stored
        return stored

    async def _r_get_commands(self, req: _Req) -> Any:
        gid = int(req.params["guild_id"]) if "guild_id" in req.params else None
        return self.guild_commands.get(gid, []) if gid is not None else self.global_commands

    # ------------------------------------------------------------------ routes: interactions
    def _interaction_by(self, iid: str, token: str) -> InteractionRecord:
        rec = self.interactions.get(int(iid)) if iid.isdigit() else None
        if rec is None or not secrets.compare_digest(rec.token, token):
            raise DcError(404, 10062, "Unknown interaction")
        return rec

    def _interaction_by_token(self, app_id: str, token: str) -> InteractionRecord:
        if app_id != str(self.application_id):
            raise DcError(404, 10015, "Unknown Webhook")
        rec = next((r for r in self.interactions.values() if secrets.compare_digest(r.token, token)), None)
        if rec is None or not rec.callbacks:
            raise DcError(404, 10015, "Unknown Webhook")
        if self.clock() - rec.created_at > self.followup_window:
            raise DcError(401, 50027, "Invalid Webhook Token")
        return rec

    async def _r_callback(self, req: _Req) -> Any:
        rec = self._interaction_by(req.params["interaction_id"], req.params["interaction_token"])
        body = req.body or {}
        cb_type = int(body.get("type", 0))
        message = await self._apply_callback(rec, cb_type, body.get("data"))
        if req.query.get("with_response", "").lower() not in ("1", "true"):
            return None
        out: dict[str, Any] = {
            "interaction": {
                "id": str(rec.id),
                "type": rec.type,
                "response_message_loading": cb_type == 5,
                "response_message_ephemeral": rec.ephemeral,
            }
        }
        if message is not None:
            out["interaction"]["response_message_id"] = str(message.id)
        if message is not None and cb_type in (4, 7):  # the description has a resource for these only
            out["resource"] = {"type": cb_type, "message": self.message_to_api(message)}
        return out

    async def _apply_callback(
        self, rec: InteractionRecord, cb_type: int, data: dict[str, Any] | None
    ) -> DcMessage | None:
        now = self.clock()
        if rec.callbacks:
            raise DcError(400, 40060, "Interaction has already been acknowledged.", violation="content")
        if now - rec.created_at > self.response_window:
            rec.late_callbacks.append(Callback(cb_type, data, now, late=True))
            self._changed()
            raise DcError(404, 10062, "Unknown interaction")
        allowed = {1: {1}, 2: {4, 5, 9}, 3: {4, 5, 6, 7, 9}, 4: {8}, 5: {4, 5, 6, 7}}[rec.type]
        if cb_type not in allowed:
            raise bad_request(
                f"Interaction callback type {cb_type} is not valid for interaction type {rec.type}"
            )
        data = data or {}
        channel = self.channels[rec.channel_id]
        message: DcMessage | None = None
        if cb_type == 4:
            message = rec.original = await self._create_message(channel, data, webhook=True, interaction=rec)
        elif cb_type == 5:
            flags = (int(data.get("flags") or 0) & EPHEMERAL) | LOADING
            placeholder = {"content": "", "flags": flags}
            rec.original = await self._placeholder(channel, placeholder, rec)
            message = rec.original
        elif cb_type == 7:
            if rec.message is None:
                raise bad_request("UPDATE_MESSAGE needs an interaction on a message")
            message = await self._edit_message(rec.message, data)
        elif cb_type == 8:
            choices = data.get("choices") or []
            if len(choices) > 25:
                raise bad_request("Invalid Form Body: choices: Must be 25 or fewer in length.")
        elif cb_type == 9:
            for c in walk_components(data.get("components") or []):
                if c.get("type") == 4 and len(str(c.get("label", ""))) > 45:
                    raise bad_request("Invalid Form Body: a text input label must be 45 or fewer in length")
        rec.callbacks.append(Callback(cb_type, data, now))
        self._changed()
        return message

    async def _placeholder(
        self, channel: DcChannel, body: dict[str, Any], rec: InteractionRecord
    ) -> DcMessage:
        flags = int(body["flags"])
        msg = DcMessage(
            id=self._next_id(),
            channel_id=channel.id,
            guild_id=channel.guild_id,
            author=self.bot,
            versions=[MessageVersion("", [], [], flags, self.clock())],
            timestamp=iso(self.wall_clock()),
            webhook_id=self.application_id,
            interaction_id=rec.id,
            visible_to=rec.user.id if flags & EPHEMERAL else None,
        )
        self.messages[msg.id] = msg
        return msg

    async def _r_followup(self, req: _Req) -> Any:
        rec = self._interaction_by_token(req.params["webhook_id"], req.params["webhook_token"])
        channel = self.channels[rec.channel_id]
        msg = await self._create_message(channel, req.body or {}, webhook=True, interaction=rec)
        rec.followups.append(msg)
        self._changed()
        if req.query.get("wait", "").lower() in ("1", "true"):
            return self.message_to_api(msg)
        return None

    async def _r_webhook_message(self, req: _Req) -> Any:
        rec = self._interaction_by_token(req.params["webhook_id"], req.params["webhook_token"])
        mid = req.params.get("message_id")
        if mid is None:  # @original
            target = rec.original
            if target is None and rec.response_type in (6, 7):
                target = rec.message
        else:
            target = next((m for m in rec.messages if str(m.id) == mid), None)
        if target is None or target.deleted:
            raise DcError(404, 10008, "Unknown Message")
        if req.method == "GET":
            return self.message_to_api(target)
        if req.method == "DELETE":
            target.deleted = True
            self._changed()
            return None
        msg = await self._edit_message(target, req.body or {})
        self._changed()
        return self.message_to_api(msg)

    # ------------------------------------------------------------------ routes: scheduled events
    def _check_event_perms(self, guild: DcGuild, ev: DcEvent | None) -> None:
        perms = self.base_permissions(guild, self.bot)
        if perms & Perm.MANAGE_EVENTS:
            return
        if perms & Perm.CREATE_EVENTS and (ev is None or ev.creator_id == self.bot.id):
            return
        raise DcError(403, 50013, "Missing Permissions")

    def _check_event_entity(self, guild: DcGuild, fields: dict[str, Any]) -> None:
        kind = int(fields["entity_type"])
        channel_id = fields.get("channel_id")
        if kind in (ENTITY_STAGE, ENTITY_VOICE):
            want = STAGE if kind == ENTITY_STAGE else VOICE
            channel = guild.channels.get(int(channel_id)) if channel_id is not None else None
            if channel is None:
                raise bad_request(
                    "Invalid Form Body: channel_id: a voice or stage event needs a channel of this guild"
                )
            if channel.type != want:
                raise bad_request(
                    f"Invalid Form Body: channel_id: entity_type {kind} needs a channel of type {want}"
                )
            if (fields.get("entity_metadata") or {}).get("location"):
                raise bad_request("Invalid Form Body: entity_metadata: only external events have a location")
            if not self.permissions(channel, self.bot) & Perm.VIEW_CHANNEL:
                raise DcError(403, 50013, "Missing Permissions")
        else:
            if channel_id is not None:
                raise bad_request("Invalid Form Body: channel_id: an external event has no channel")
            location = (fields.get("entity_metadata") or {}).get("location")
            if not location:
                raise bad_request("Invalid Form Body: entity_metadata.location: required for external events")
            if len(location) > 100:
                raise bad_request(
                    "Invalid Form Body: entity_metadata.location: Must be 100 or fewer in length."
                )
            if not fields.get("scheduled_end_time"):
                raise bad_request("Invalid Form Body: scheduled_end_time: required for external events")
        start = parse_iso(str(fields["scheduled_start_time"]))
        end = fields.get("scheduled_end_time")
        if end and parse_iso(str(end)) <= start:
            raise bad_request("Invalid Form Body: scheduled_end_time: must be after the start")

    async def _r_create_event(self, req: _Req) -> Any:
        guild = self._guild(req.params["guild_id"])
        body = dict(req.body or {})
        self._check_event_perms(guild, None)
        self._check_event_entity(guild, body)
        start = parse_iso(str(body["scheduled_start_time"])).timestamp()
        if self.reject_past_events and start < self.wall_clock():
            raise DcError(
                400, 50035, "Invalid Form Body: scheduled_start_time: Cannot schedule event in the past."
            )
        live = sum(1 for e in guild.events.values() if e.status in (EV_SCHEDULED, EV_ACTIVE))
        if live >= self.max_active_events:
            raise DcError(
                400, 30038, f"Maximum number of guild scheduled events reached ({self.max_active_events})"
            )
        eid = self._next_id()
        fields = {
            "channel_id": opt_str(snowflake_int(body.get("channel_id"))),
            "name": body["name"],
            "description": body.get("description"),
            "scheduled_start_time": body["scheduled_start_time"],
            "scheduled_end_time": body.get("scheduled_end_time"),
            "privacy_level": body.get("privacy_level", 2),
            "status": EV_SCHEDULED,
            "entity_type": int(body["entity_type"]),
            "entity_id": None,
            "entity_metadata": body.get("entity_metadata"),
        }
        ev = DcEvent(eid, guild.id, fields, self.bot.id, history=[body])
        guild.events[eid] = ev
        data = self.event_to_api(ev)
        await self._dispatch(
            "GUILD_SCHEDULED_EVENT_CREATE", data, guild_id=guild.id, intent=INTENT_GUILD_SCHEDULED_EVENTS
        )
        return data

    def _event_of(self, req: _Req) -> tuple[DcGuild, DcEvent]:
        guild = self._guild(req.params["guild_id"])
        eid = req.params["guild_scheduled_event_id"]
        ev = guild.events.get(int(eid)) if eid.isdigit() else None
        if ev is None:
            raise DcError(404, 10070, "Unknown Guild Scheduled Event")
        return guild, ev

    async def _r_list_events(self, req: _Req) -> Any:
        guild = self._guild(req.params["guild_id"])
        count = req.query.get("with_user_count", "").lower() in ("1", "true")
        return [self.event_to_api(e, with_user_count=count) for e in guild.events.values()]

    async def _r_get_event(self, req: _Req) -> Any:
        count = req.query.get("with_user_count", "").lower() in ("1", "true")
        return self.event_to_api(self._event_of(req)[1], with_user_count=count)

    async def _r_modify_event(self, req: _Req) -> Any:
        guild, ev = self._event_of(req)
        body = dict(req.body or {})
        self._check_event_perms(guild, ev)
        if ev.status in (EV_COMPLETED, EV_CANCELED):
            raise bad_request("Cannot modify a completed or canceled event", code=180000)
        status = body.pop("status", None)
        if (
            status is not None
            and int(status) != ev.status
            and (ev.status, int(status)) not in LEGAL_STATUS_CHANGES
        ):
            raise bad_request(f"Invalid Form Body: status: cannot change from {ev.status} to {status}")
        merged = {**ev.fields, **{k: v for k, v in body.items()}}
        if "entity_type" in body and int(body["entity_type"]) == ENTITY_EXTERNAL and "channel_id" not in body:
            merged["channel_id"] = None
        if (
            "entity_type" in body
            and int(body["entity_type"]) != ENTITY_EXTERNAL
            and "entity_metadata" not in body
        ):
            merged["entity_metadata"] = None
        self._check_event_entity(guild, merged)
        if "channel_id" in merged:
            merged["channel_id"] = opt_str(snowflake_int(merged["channel_id"]))
        if (
            "scheduled_start_time" in body
            and self.reject_past_events
            and ev.status == EV_SCHEDULED
            and status in (None, EV_SCHEDULED)
            and parse_iso(str(body["scheduled_start_time"])).timestamp() < self.wall_clock()
        ):
            raise DcError(
                400, 50035, "Invalid Form Body: scheduled_start_time: Cannot schedule event in the past."
            )
        ev.fields = merged
        ev.history.append(dict(req.body or {}))
        if status is not None and int(status) != ev.status:
            self._set_event_status(ev, int(status))
        data = self.event_to_api(ev)
        await self._dispatch(
            "GUILD_SCHEDULED_EVENT_UPDATE", data, guild_id=guild.id, intent=INTENT_GUILD_SCHEDULED_EVENTS
        )
        return data

    async def _r_delete_event(self, req: _Req) -> Any:
        guild, ev = self._event_of(req)
        self._check_event_perms(guild, ev)
        del guild.events[ev.id]
        await self._dispatch(
            "GUILD_SCHEDULED_EVENT_DELETE",
            self.event_to_api(ev),
            guild_id=guild.id,
            intent=INTENT_GUILD_SCHEDULED_EVENTS,
        )
        return None

    async def _r_event_users(self, req: _Req) -> Any:
        guild, ev = self._event_of(req)
        limit = int(req.query.get("limit", 100))
        if not 1 <= limit <= 100:
            raise bad_request("Invalid Form Body: limit: must be between 1 and 100")
        ids = sorted(
            ev.interested
        )  # ascending by user id; with both, only ``before`` counts (Discord's docs)
        if "before" in req.query:
            ids = [u for u in ids if u < int(req.query["before"])][-limit:]
        elif "after" in req.query:
            ids = [u for u in ids if u > int(req.query["after"])]
        with_member = req.query.get("with_member", "").lower() in ("1", "true")
        out = []
        for uid in ids[:limit]:
            entry: dict[str, Any] = {
                "guild_scheduled_event_id": str(ev.id),
                "guild_scheduled_event_exception_id": None,
                "user_id": str(uid),
                "user": self.users[uid].to_api(),
                "response": 1,  # INTERESTED
            }
            if with_member and uid in guild.members:
                entry["member"] = guild.members[uid].to_api()
            out.append(entry)
        return out


@dataclass
class _Req:
    method: str
    route: str
    params: dict[str, str]
    query: dict[str, str]
    body: Any
    op: Operation


def _json_response(data: Any, status: int, headers: dict[str, str]) -> web.Response:
    # exactly "application/json": discord.py reads any other content type (even with "; charset=") as text
    return web.Response(
        body=json.dumps(data).encode(), status=status, headers={**headers, "Content-Type": "application/json"}
    )


def _form_errors(problems: list[str]) -> dict[str, Any]:
    """Discord's ``errors`` shape: ``{"<field path>": {"_errors": [{"code", "message"}]}}``."""
    out: dict[str, Any] = {}
    for problem in problems:
        where, _, what = problem.partition(": ")
        out.setdefault(where, {"_errors": []})["_errors"].append(
            {"code": "EMULATOR_SPEC", "message": what or where}
        )
    return out


def _problems(err: DcError) -> str:
    lines = [f"{k}: {e['message']}" for k, v in (err.errors or {}).items() for e in v.get("_errors", [])]
    return ": " + "; ".join(lines) if lines else ""


def _user(who: DcUser | DcMember) -> DcUser:
    return who.user if isinstance(who, DcMember) else who


def _uid(who: DcUser | DcMember | int) -> int:
    if isinstance(who, int):
        return who
    return _user(who).id


@contextlib.contextmanager
def pointed_at(dc: DiscordEmulator) -> Iterator[None]:
    """Point discord.py's REST base and default gateway at ``dc`` (class attributes: the whole process), and
    restore them on exit."""
    import discord.gateway
    import discord.http
    import yarl

    old_base, old_gateway = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = dc.base_url
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(dc.gateway_url)
    try:
        yield
    finally:
        discord.http.Route.BASE = old_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway


@pytest_asyncio.fixture
async def discord_emulator() -> AsyncIterator[DiscordEmulator]:
    """A started emulator with discord.py pointed at it; at teardown fails the test if any request violated
    Discord's API (strict)."""
    async with DiscordEmulator() as dc:
        with pointed_at(dc):
            yield dc


@contextlib.asynccontextmanager
async def client_running(dc: DiscordEmulator, client: Any, *, within: float = 5.0) -> AsyncIterator[Any]:
    """Log ``client`` (a discord.py ``Client`` / ``AutoShardedClient``, built with
    ``guild_ready_timeout=0.05``) in to ``dc``, run its gateway connection until READY and every
    GUILD_CREATE, yield it, then close it. Call inside :func:`pointed_at` (the fixture does)."""
    await client.login(dc.token)
    task = asyncio.create_task(client.connect(reconnect=True), name="discord-client")
    try:
        waiter = asyncio.ensure_future(client.wait_until_ready())
        done, _ = await asyncio.wait({waiter, task}, timeout=within, return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            waiter.cancel()
            if task in done:
                task.result()  # raises what stopped the client
            raise TimeoutError("the discord.py client did not get READY from the emulator")
        yield client
    finally:
        await client.close()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, 5.0)
