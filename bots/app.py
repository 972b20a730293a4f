"""The composition root: settings → database → stores → services → platforms → web → waker.

The only module that knows every concrete class. Nothing is built at import time: ``bots.cli`` calls
:func:`build` once, then ``start()``; tests call it with a fake clock, fake platforms and an in-memory console.

Roles (one process may play several):

* ``run``    web + worker, and the console when stdin is a terminal — the embedded, one-process default.
* ``web``    the web app only (webhooks, pages, /healthz, /metrics). Its writes arm nothing: the workers'
             periodic sweep picks new rows up (within SPACES_SWEEP_SECONDS).
* ``worker`` the delivery engine, its waker (wake-ups, sweep, lease renewal) and the heartbeat (live
             workers, since when the fleet is up, metrics snapshots).

Send budgets: one process alone (``run`` on SQLite) paces itself in memory; whenever several processes can
send (PostgreSQL, or ``web`` / ``worker`` roles), every process takes its slots from the budget shared in
the database, replies of the web process included (storage/budget.py).

Adding a platform: write ``bots/<platform>/adapter.py`` and add one entry to ``_platform_factories`` below.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol, TextIO, runtime_checkable

from aiohttp import web
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from bots.audio.bridge import Bridge
from bots.audio.supervisor import AudioSupervisor, LiveSpaceAudio, SpaceAudioHealth
from bots.console.adapter import ConsolePlatform
from bots.console.repl import HOST_NAME, MAIN_CHAT, ConsoleIO, ConsoleRepl
from bots.metrics import FleetView, Metrics
from bots.places import SpacePlaces
from bots.router import Router, Startable
from bots.runtime.budget import (
    DEFAULT_GLOBAL,
    PAID_TELEGRAM,
    PAID_TELEGRAM_SHARED,
    SHARED_LIMITS,
    Rate,
    TokenBucketBudget,
)
from bots.runtime.clock import SystemClock
from bots.runtime.gateway import LeasedGateway, needs_gateway_lease
from bots.runtime.waker import Waker
from bots.web.app import (
    AudioHealth,
    ContributesRoutes,
    WebDeps,
    WebLinks,
    WebRoute,
    make_metrics_app,
    make_web_app,
)
from config.settings import Settings
from core import rules
from core.ports import (
    Budget,
    ChatPlatform,
    Clock,
    Links,
    OneTimeCodes,
    UnitOfWorkFactory,
    VoiceBridge,
    WakeUps,
)
from core.refs import Platform
from core.services.audio import AudioService
from core.services.deliveries import DeliveryEngine, EngineConfig
from core.services.events import EventsService
from core.services.feeds import FeedService
from core.services.inbound import InboundService
from core.services.profiles import ProfileService
from core.services.replies import RepliesService
from core.services.spaces import SpaceService
from storage.budget import SendLimits, SqlBudget
from storage.codes import SqlOneTimeCodes
from storage.db import make_engine, make_session_factory, normalize_url
from storage.lease import SqlGatewayLease
from storage.metrics import SqlMetricSnapshots
from storage.notify import PgWakeChannel
from storage.stores import SqlHeartbeats, SqlOutbox, unit_of_work_factory

if TYPE_CHECKING:
    from bots.discord.adapter import DiscordPlatform

log = logging.getLogger(__name__)
WEB_SHUTDOWN_GRACE = 5.0  # seconds an in-flight web request may finish in at shutdown
PRUNE_EVERY = timedelta(hours=1)
SHUTDOWN_GRACE = 10.0  # seconds the delivery run in progress gets to finish its batch at shutdown

VERSION = "0.1.0"


class Role(StrEnum):
    RUN = "run"
    WEB = "web"
    WORKER = "worker"

    @property
    def serves_web(self) -> bool:
        return self in (Role.RUN, Role.WEB)

    @property
    def delivers(self) -> bool:
        return self in (Role.RUN, Role.WORKER)


# ------------------------------------------------------------------------------------------ platforms


@dataclass(frozen=True, slots=True)
class AdapterContext:
    """What a platform adapter may use: the core's services and ports, never storage."""

    settings: Settings
    spaces: SpaceService
    uow: UnitOfWorkFactory  # for the core services an adapter builds for itself (profiles …)
    clock: Clock
    links: Links
    # receive inbound events (webhooks, polling, gateway commands) here? Only where the web app runs: a
    # `spaces worker` process sends and nothing else, so one update is never handled by two processes.
    receive: bool
    replies: RepliesService  # answers to inbound events, written to the outbox with the event's effect
    # native events changed in the platform's own UI (started, ended, cancelled, "Interested")
    events: EventsService | None = None
    read_uow: UnitOfWorkFactory | None = None  # queries: no SQLite write lock (None: ``uow``)
    feeds: FeedService | None = None  # the community feed offered under `/space list` (None: not offered)

    def inbound(self) -> InboundService:
        """The core's one inbound path, for the adapter's handlers: they translate, it decides."""
        return InboundService(
            spaces=self.spaces,
            profiles=ProfileService(self.uow),
            replies=self.replies,
            links=self.links,
            clock=self.clock,
            uow=self.uow,
            read_uow=self.read_uow,
            codes=self.codes,  # `/space link`: codes shared by every process
            feeds=self.feeds,
        )

    # the send budget, for the platform calls an adapter makes on its own behalf inside a send (Discord's
    # DM opens: the engine budgets the message, the adapter the request that opens the DM channel)
    budget: Budget | None = None
    # the service's database, for a library's own tables (slack_sdk's installation store); never storage
    sql: AsyncEngine | None = None
    codes: OneTimeCodes | None = None  # single-use codes shared by every process (OAuth states)


def budget_rates(settings: Settings) -> dict[Platform, Rate]:
    """Each platform's global send rate, as configured (paid Telegram broadcasts lift Telegram's)."""
    rates = dict(DEFAULT_GLOBAL)
    if settings.telegram_paid_broadcast:
        rates[Platform.TELEGRAM] = PAID_TELEGRAM
    return rates


def shared_limits(settings: Settings) -> dict[Platform, SendLimits]:
    """The limits of the budget shared in the database (paid Telegram broadcasts lift Telegram's rate)."""
    limits = dict(SHARED_LIMITS)
    if settings.telegram_paid_broadcast:
        limits[Platform.TELEGRAM] = PAID_TELEGRAM_SHARED
    return limits


def shares_budget(settings: Settings, role: Role) -> bool:
    """Can another process send for this bot? Then the budget must be the shared one: on PostgreSQL any
    number of processes may run; on SQLite only `web` + `worker` split the roles (``run`` is one process)."""
    return not settings.is_sqlite or role is not Role.RUN


def _telegram_file_base(api_base: str) -> str:
    """https://api.telegram.org/bot → https://api.telegram.org/file/bot (the same for an emulator's URL)."""
    root = api_base.removesuffix("/bot")
    return f"{root}/file/bot"


def _telegram(ctx: AdapterContext) -> ChatPlatform:
    from bots.telegram.adapter import TelegramConfig, TelegramPlatform

    s = ctx.settings
    assert s.telegram_bot_token is not None
    secret = s.telegram_webhook_secret.get_secret_value() if s.telegram_webhook_secret else None
    config = TelegramConfig(
        token=s.telegram_bot_token.get_secret_value(),
        mode=s.telegram_mode,
        webhook_secret=secret,
        public_url=s.public_url,
        api_base=s.telegram_api_base,
        file_base=_telegram_file_base(s.telegram_api_base),
        paid_broadcast=s.telegram_paid_broadcast,
        take_over_webhook=s.telegram_take_over_webhook,
        # every Bot API call gives up before the engine's send timeout (config/timing.py)
        connect_timeout=s.timings.http_connect,
        read_timeout=s.timings.http_read,
        write_timeout=s.timings.http_write,
        pool_timeout=s.timings.http_pool,
    )
    return TelegramPlatform(
        config,
        spaces=ctx.spaces,
        profiles=ProfileService(ctx.uow),
        replies=ctx.replies,
        links=ctx.links,
        clock=ctx.clock,
        receive=ctx.receive,
        inbound=ctx.inbound(),
    )


def _discord(ctx: AdapterContext) -> ChatPlatform:
    from bots.discord.adapter import DiscordConfig, DiscordPlatform

    s = ctx.settings
    assert s.discord_bot_token is not None
    config = DiscordConfig(
        token=s.discord_bot_token.get_secret_value(),
        application_id=s.discord_application_id,
        shard_count=s.discord_shard_count,
        shard_ids=s.discord_shard_ids,
        guild_ids=s.discord_guild_ids,
        moderator_role=s.discord_moderator_role,
        api_base=s.discord_api_base,
    )
    # DM channel ids are kept in the users' profiles (ctx.uow): a restart does not reopen every DM.
    # start() logs in over REST in every process; the gateway is connected by start_gateway() in the one
    # process holding the gateway lease (needs_gateway_lease), never by every web process at once.
    platform = DiscordPlatform(
        config, receive=ctx.receive, uow=ctx.uow, budget=ctx.budget, gateway_on_start=False
    )
    _discord_inbound(ctx, platform)
    return platform


def _discord_inbound(ctx: AdapterContext, platform: DiscordPlatform) -> None:
    """Interactions: the gateway's go to the handlers; with DISCORD_PUBLIC_KEY set, the same handlers also
    answer the HTTP interactions endpoint (``/discord/interactions`` on the web app)."""
    from bots.discord.handlers import Handlers
    from bots.discord.interactions import InteractionsEndpoint

    s = ctx.settings
    handlers = Handlers(
        spaces=ctx.spaces,
        inbound=ctx.inbound(),
        replies=ctx.replies,
        links=ctx.links,
        clock=ctx.clock,
        moderator_role=s.discord_moderator_role,
        is_moderator=platform.is_moderator,
    )
    platform.attach(handlers)
    if s.discord_public_key and ctx.receive:
        platform.attach_routes(InteractionsEndpoint(s.discord_public_key, handlers.on_http).web_routes())


def _slack(ctx: AdapterContext) -> ChatPlatform:
    """One app, one or many workspaces (bots/slack/workspaces.py); its Bolt handlers receive over HTTP
    (``/slack/events`` and the OAuth pages on the web app) or Socket Mode (SLACK_APP_TOKEN)."""
    from bots.slack.adapter import SlackPlatform
    from bots.slack.handlers import SlackHandlers
    from bots.slack.workspaces import Workspaces

    s = ctx.settings
    workspaces = Workspaces(
        api_base=s.slack_api_base,
        token=s.slack_bot_token.get_secret_value() if s.slack_bot_token else None,
        client_id=s.slack_client_id if s.slack_oauth else None,
        client_secret=s.slack_client_secret.get_secret_value() if s.slack_client_secret else None,
        engine=ctx.sql,
        codes=ctx.codes,
        clock=ctx.clock,
        # the redirect Slack sends installers back to; unset, Slack uses the app's one configured URL
        public_url=s.public_url_setting,
        authorize_url=s.slack_oauth_base,
        timeout=s.send_timeout,  # a send gives up before the engine's send timeout
    )
    platform = SlackPlatform(workspaces, links=ctx.links, moderator_group=s.slack_moderator_group)
    if s.slack_signing_secret is not None:
        signing_secret = s.slack_signing_secret.get_secret_value()
    else:
        # Socket Mode needs no signing secret, but /slack/events is still mounted: an unknown random secret
        # makes every HTTP request fail verification (an empty one would let anyone sign). The doctor warns.
        signing_secret = secrets.token_hex(32)
        log.warning("SLACK_SIGNING_SECRET is not set: Slack requests over HTTP will all be refused")
    handlers = SlackHandlers(
        workspaces=workspaces,
        platform=platform,
        inbound=ctx.inbound(),
        spaces=ctx.spaces,
        replies=ctx.replies,
        links=ctx.links,
        clock=ctx.clock,
        signing_secret=signing_secret,
        app_token=s.slack_app_token.get_secret_value() if s.slack_app_token else None,
        receive=ctx.receive,
        api_base=s.slack_api_base,
    )
    platform.attach(handlers)
    return platform


@dataclass(frozen=True, slots=True)
class PlatformFactory:
    platform: Platform
    enabled: Callable[[Settings], bool]
    # None: this build has no adapter for the platform yet. Import the adapter inside the function, so an
    # SDK is only loaded when its platform is configured.
    build: Callable[[AdapterContext], ChatPlatform] | None
    how_to_connect: str  # one line for the banner (see README, "Connecting a platform")


# THE extension point: one entry per platform adapter.
_platform_factories: tuple[PlatformFactory, ...] = (
    PlatformFactory(
        Platform.DISCORD,
        lambda s: s.discord_enabled,
        _discord,
        "set DISCORD_BOT_TOKEN (Developer Portal → your app → Bot), plus DISCORD_APPLICATION_ID and "
        "DISCORD_PUBLIC_KEY",
    ),
    PlatformFactory(
        Platform.TELEGRAM,
        lambda s: s.telegram_enabled,
        _telegram,
        "set TELEGRAM_BOT_TOKEN (from @BotFather); TELEGRAM_MODE=webhook also needs TELEGRAM_WEBHOOK_SECRET "
        "and a public SPACES_PUBLIC_URL",
    ),
    PlatformFactory(
        Platform.SLACK,
        lambda s: s.slack_enabled,
        _slack,
        "set SLACK_BOT_TOKEN (xoxb-…) and SLACK_SIGNING_SECRET (plus SLACK_APP_TOKEN, xapp-…, for Socket "
        "Mode), or SLACK_CLIENT_ID and SLACK_CLIENT_SECRET to install in many workspaces from /slack/install",
    ),
)


# ------------------------------------------------------------------------------------------ the service


@runtime_checkable
class _Receives(Protocol):
    """An adapter that can stop taking updates before it stops sending (shutdown order)."""

    platform: Platform

    async def stop_receiving(self) -> None: ...


@runtime_checkable
class _TakesEvents(Protocol):
    """An adapter that reports its native events' changes (started in its UI, "Interested" clicks)."""

    def attach_events(self, events: EventsService) -> None: ...


class _Broadcast:
    """WakeUps: this process's waker, and every other process through the database's wake channel."""

    def __init__(self, local: WakeUps, channel: PgWakeChannel) -> None:
        self._local = local
        self._channel = channel

    def arm(self, at: datetime) -> None:
        self._local.arm(at)
        self._channel.arm(at)


class _NoWake:
    """WakeUps for the web role: nothing to wake here; a worker's sweep finds the new rows."""

    def arm(self, at: datetime) -> None:
        pass


class _AudioKick:
    """WakeUps that also runs the audio supervisor's round at once: a Space started, ended or changed in this
    process gets (or loses) its audio now, not at the next poll. Kicks coalesce: a burst costs one round."""

    def __init__(self, inner: WakeUps) -> None:
        self._inner = inner
        self.supervisor: AudioSupervisor[Bridge] | None = None

    def arm(self, at: datetime) -> None:
        self._inner.arm(at)
        if self.supervisor is not None:
            self.supervisor.kick()


@dataclass(slots=True)
class PlatformStatus:
    platform: Platform
    connected: bool
    note: str  # "connected", or how to connect it


@dataclass(eq=False)
class Service:
    """Everything the process runs. ``db`` is the SQL engine; ``engine`` the delivery engine."""

    settings: Settings
    role: Role
    clock: Clock
    db: AsyncEngine
    uow: UnitOfWorkFactory
    outbox: SqlOutbox
    heartbeats: SqlHeartbeats
    spaces: SpaceService
    engine: DeliveryEngine
    router: Router
    console: ConsolePlatform
    budget: Budget
    metrics: Metrics
    links: WebLinks
    web_app: web.Application
    waker: Waker | None
    wake_channel: PgWakeChannel | None  # PostgreSQL: wake-ups across processes
    repl: ConsoleRepl | None
    console_io: ConsoleIO | None
    statuses: list[PlatformStatus]
    out: TextIO
    web_url: str | None = None
    # workers publish their metrics here at each heartbeat; a web process's /metrics reads every worker's
    metric_snapshots: SqlMetricSnapshots | None = None
    metrics_app: web.Application | None = None  # /metrics on its own listener (SPACES_METRICS_PORT)
    metrics_url: str | None = None
    _metrics_runner: web.AppRunner | None = None
    _runner: web.AppRunner | None = None
    _repl_task: asyncio.Task[None] | None = None
    _started: bool = False
    _stopped: bool = False
    _pruned_at: datetime | None = None
    _stop_requested: asyncio.Event = field(default_factory=asyncio.Event)
    budget_db: AsyncEngine | None = None  # the shared budget's own small pool (PostgreSQL)
    # live audio: one owner per live Space across processes (the roles that serve web, where the Discord
    # gateway and so the voice connections live)
    audio: AudioSupervisor[Bridge] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        log.info("starting", extra={"role": str(self.role), "worker_id": self.settings.worker_id})
        await self.router.start()
        if self.role.delivers and self.waker is not None:
            self._pruned_at = self.clock.now()  # housekeeping waits for a sweep: boot is for the catch-up
            # a crashed process of this worker id left rows claimed: they are ours to redo, now
            await self.engine.recover()
            await self.heartbeat()
            await self._listen()
            await self.waker.start()  # includes the catch-up run: whatever came due while we were down
        if self.role.serves_web:
            # in-flight requests get a few seconds at shutdown, not aiohttp's 60: platforms kill a process
            # soon after SIGTERM, and an update cut here was not confirmed, so it is delivered again
            runner = web.AppRunner(
                self.web_app, access_log=None, handle_signals=False, shutdown_timeout=WEB_SHUTDOWN_GRACE
            )
            await runner.setup()
            self._runner = runner
            site = web.TCPSite(runner, self.settings.host, self.settings.port)
            await site.start()
            self.web_url = _bound_url(runner, self.settings.host, self.settings.port)
            if self.settings.public_url_setting is None:  # PORT=0 picks a port: links must name the real one
                self.links.base = self.web_url
            if self.metrics_app is not None and self.settings.metrics_port is not None:
                metrics_runner = web.AppRunner(
                    self.metrics_app,
                    access_log=None,
                    handle_signals=False,
                    shutdown_timeout=WEB_SHUTDOWN_GRACE,
                )
                await metrics_runner.setup()
                self._metrics_runner = metrics_runner
                host, port = self.settings.metrics_host, self.settings.metrics_port
                await web.TCPSite(metrics_runner, host, port).start()
                self.metrics_url = _bound_url(metrics_runner, host, port) + "/metrics"
        if self.audio is not None:  # after the web server: its bound address is where others relay to
            await self.audio.start()
        self._print_banner()
        if self.repl is not None and self.console_io is not None:
            self.repl.greet()
            self._repl_task = asyncio.get_running_loop().create_task(self.repl.run(self.console_io.input))
        log.info("started", extra={"role": str(self.role), "web": self.web_url or "-"})

    async def stop(self) -> None:
        """Stop everything that started. Idempotent, and safe after a start() that failed half-way."""
        if self._stopped:
            return
        self._stopped = True
        self._stop_requested.set()
        if self._repl_task is not None:
            self._repl_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._repl_task
        # live audio first: every ffmpeg reaped, every voice channel left while the platforms still run, the
        # leases released (another process takes over at once), and the web listeners' streams ended so
        # that the web server's shutdown does not wait for them
        if self.audio is not None:
            with _logged("stopping the live audio"):
                await self.audio.stop()
        # inbound first (no new webhooks), then let the delivery run in progress finish its batch so its
        # sends are recorded rather than repeated after the lease, then the platforms it sends through
        if self._runner is not None:
            with _logged("stopping the web server"):
                await self._runner.cleanup()
        if self._metrics_runner is not None:
            with _logged("stopping the metrics listener"):
                await self._metrics_runner.cleanup()
        for p in self.router.platforms:
            if isinstance(p, _Receives):
                with _logged(f"stopping {p.platform} updates"):
                    await p.stop_receiving()
        self.engine.request_stop()
        if self.waker is not None:
            with _logged("stopping the waker"):
                await self.waker.stop(grace=SHUTDOWN_GRACE)
        with _logged("stopping platforms"):
            await self.router.stop()
        if self.wake_channel is not None:
            with _logged("closing the wake channel"):
                await self.wake_channel.close()
        if self.role.delivers and self._started:
            with _logged("forgetting the heartbeat"):
                await self.heartbeats.forget(self.settings.worker_id)
            if self.metric_snapshots is not None:
                with _logged("forgetting the metrics snapshot"):
                    await self.metric_snapshots.forget(self.settings.worker_id)
        if isinstance(self.budget, SqlBudget):
            with _logged("closing the send budget"):
                await self.budget.close()
        with _logged("closing the database"):
            if self.budget_db is not None:
                await self.budget_db.dispose()
            await self.db.dispose()
        log.info("stopped", extra={"role": str(self.role)})

    async def _listen(self) -> None:
        """Workers on PostgreSQL hear other processes' new rows at once (LISTEN), not at their next sweep.
        Called at start and at every sweep, which reconnects a listener the database dropped."""
        if self.wake_channel is not None and self.waker is not None:
            with _logged("listening for wake-ups"):
                await self.wake_channel.listen(self.waker.arm)

    def request_stop(self) -> None:
        """Ask :meth:`wait` to return (signals, /quit). Safe from signal handlers on the loop."""
        self._stop_requested.set()

    async def wait(self) -> None:
        await self._stop_requested.wait()

    async def heartbeat(self) -> int:
        """Register this worker as alive (``spaces_live_workers``). Also closes Spaces left open long after
        their time (several workers may race: each close locks) and, hourly, prunes the outbox."""
        with _logged("closing stale spaces"):
            await self.spaces.close_stale()
        now = self.clock.now()
        if self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY:
            self._pruned_at = now
            with _logged("pruning the outbox"):
                n = await self.outbox.prune(
                    settled_before=now - rules.KEEP_SETTLED, requests_before=now - rules.KEEP_REQUEST_IDS
                )
                log.info("pruned", extra={"rows": n})
            if isinstance(self.budget, SqlBudget):
                with _logged("pruning the send budget"):
                    await self.budget.prune()
        await self._listen()
        fleet = await self.heartbeats.beat_status(self.settings.worker_id, self.clock.now())
        self.metrics.workers(fleet.live)
        # a notice due before the service last came up is late because of an outage (core.rules)
        self.engine.up_since = fleet.up_since
        if self.metric_snapshots is not None:  # so that a web process's /metrics shows this worker too
            with _logged("publishing metrics"):
                await self.metric_snapshots.publish(
                    self.settings.worker_id, self.clock.now(), self.metrics.snapshot()
                )
        return fleet.live

    # ------------------------------------------------------------------ banner

    def banner(self) -> list[str]:
        s = self.settings
        lines = [f"Spaces {VERSION} — {self.role}"]
        if self.role.serves_web:
            url = self.web_url or f"http://{s.host}:{s.port}"
            paths = "/healthz" if self.metrics_app is not None else "/healthz, /metrics"
            lines.append(f"  web        {url}   ({paths}; Space links: {self.links.base}/s/<id>)")
            if self.metrics_app is not None:
                shown = self.metrics_url or f"http://{s.metrics_host}:{s.metrics_port}/metrics"
                lines.append(f"  metrics    {shown}   (every worker's figures)")
            if s.host in ("127.0.0.1", "localhost", "::1"):
                lines.append("             listening on this machine only — set HOST=0.0.0.0 in production")
        lines.append(f"  database   {display_url(s.database_url)}")
        if self.role.delivers:
            lines.append(f"  worker     {s.worker_id}   (sweep every {s.sweep_seconds:g} s)")
        else:
            lines.append("  worker     none in this process — run `spaces worker` to send reminders")
        if self.audio is not None:
            files = (
                f"file: sources from {s.media_dir}"
                if s.media_dir
                else "set SPACES_MEDIA_DIR for file: sources"
            )
            lines.append(
                f"  audio      live Spaces' audio plays here, {s.audio_bitrate_kbps} kbit/s Opus; sources: stream "
                f"URLs, the host's browser, {files}"
            )
        connected = [st for st in self.statuses if st.connected]
        lines.append("  platforms  " + ", ".join(str(st.platform) for st in connected))
        health = self.router.health()
        for st in connected:  # started, but not (yet) connected: failing and retried, or another's gateway
            state = health.get(str(st.platform), "up")
            if state.startswith(("down", "standby")):
                lines.append(f"    {st.platform!s:<9} {state}")
        for st in self.statuses:
            if not st.connected:
                lines.append(f"    {st.platform!s:<9} {st.note}")
        if self.repl is not None:
            lines.append(
                f'  console    on — you are "{HOST_NAME}" in #{MAIN_CHAT.id}; /help lists the commands'
            )
        elif self.role is Role.RUN:
            lines.append("  console    off (stdin is not a terminal)")
        lines.append("  See README.md, “Connecting a platform”, for each platform's set-up.")
        return lines

    def _print_banner(self) -> None:
        self.out.write("\n".join(self.banner()) + "\n")
        self.out.flush()


def display_url(url: str) -> str:
    """The database URL without its password, for banners and logs."""
    try:
        return make_url(normalize_url(url)).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable DATABASE_URL>"


def _bound_url(runner: web.AppRunner, host: str, port: int) -> str:
    for addr in runner.addresses:
        if isinstance(addr, tuple) and len(addr) >= 2:
            h = str(addr[0])
            shown = "127.0.0.1" if h in ("0.0.0.0", "::") else h
            return f"http://{f'[{shown}]' if ':' in shown else shown}:{addr[1]}"
    return f"http://{host}:{port}"


class _logged(contextlib.AbstractContextManager[None]):
    """Shut-down steps: log a failure and carry on with the next step."""

    def __init__(self, what: str) -> None:
        self._what = what

    def __exit__(self, et: object, e: object, tb: object) -> bool:
        if e is not None and isinstance(e, Exception):
            log.warning("%s failed: %s", self._what, e, exc_info=e)
            return True
        return False


# ------------------------------------------------------------------------------------------ building


async def build(
    settings: Settings,
    *,
    role: Role = Role.RUN,
    clock: Clock | None = None,
    platforms: Sequence[ChatPlatform] | None = None,
    console_io: ConsoleIO | None = None,
    out: TextIO | None = None,
) -> Service:
    """Build (not start) the service.

    ``platforms``: adapters to use instead of the configured ones (tests); the console platform is added
    unless one is given. ``console_io``: run the console REPL on these streams (only for ``run``).
    ``out``: where the banner goes (default: the console output, else stdout).
    """
    clock = clock or SystemClock()
    out = out or (console_io.output if console_io is not None else sys.stdout)
    db = make_engine(normalize_url(settings.database_url))
    sessions = make_session_factory(db)
    uow = unit_of_work_factory(sessions)
    read_uow = unit_of_work_factory(sessions, write_lock=False)  # queries: no SQLite write lock
    outbox = SqlOutbox(db)
    # a worker silent for three sweeps is presumed dead (spaces_live_workers)
    heartbeats = SqlHeartbeats(
        db, ttl=max(timedelta(seconds=30), timedelta(seconds=3 * settings.sweep_seconds))
    )
    metrics = Metrics(delivers=role.delivers)
    metric_snapshots = SqlMetricSnapshots(db, ttl=heartbeats.ttl)

    async def fleet() -> FleetView:
        live, snapshots = await metric_snapshots.fleet(clock.now())
        return FleetView(live, snapshots)

    budget: Budget
    budget_db: AsyncEngine | None = None
    if shares_budget(settings, role):
        if db.dialect.name == "postgresql":
            # its own small pool, without the pre-ping: one round trip per send, not two
            budget_db = make_engine(
                normalize_url(settings.database_url), pool_pre_ping=False, pool_size=2, max_overflow=2
            )
        budget = SqlBudget(budget_db or db, shared_limits(settings))
    else:
        budget = TokenBucketBudget(budget_rates(settings))
    links = WebLinks(settings.public_url)
    # a community's calendar feed, /feeds/<token>.ics (core/services/feeds.py): served by the web app,
    # offered under `/space list` and on the share page
    feeds = FeedService(uow, clock, links.feed, read_uow=read_uow)

    waker: Waker | None = None
    wake: WakeUps
    engine_ref: list[DeliveryEngine] = []
    timings = settings.timings

    async def deliver() -> int:
        return await engine_ref[0].deliver_due()

    async def renew() -> int:
        return await engine_ref[0].renew_leases()

    service_ref: list[Service] = []

    async def on_sweep() -> None:
        await service_ref[0].heartbeat()

    if role.delivers:
        waker = Waker(
            deliver,
            clock,
            sweep_every=timedelta(seconds=settings.sweep_seconds),
            on_sweep=on_sweep,
            # short leases, renewed while this worker lives: a dead worker's rows come back within a lease
            renew_every=timings.renew_every,
            on_renew=renew,
        )
        wake = waker
    else:
        wake = _NoWake()
    # PostgreSQL: changes made here (a webhook's new Space, a subscription) wake every worker at once
    wake_channel = PgWakeChannel(db) if db.dialect.name == "postgresql" else None
    audio_kick = _AudioKick(wake if wake_channel is None else _Broadcast(wake, wake_channel))
    service_wake: WakeUps = audio_kick

    spaces = SpaceService(uow, clock, service_wake, default_tz=settings.default_tz, read_uow=read_uow)
    replies = RepliesService(uow, clock, service_wake, read_uow=read_uow)
    events = EventsService(uow, spaces)
    console_color = console_io.color if console_io is not None else None
    console = ConsolePlatform(console_io.output if console_io is not None else out, color=console_color)

    statuses: list[PlatformStatus] = []
    adapters: list[ChatPlatform]
    if platforms is not None:
        adapters = list(platforms)
        statuses += [PlatformStatus(p.platform, True, "connected") for p in adapters]
    else:
        adapters, more = _configured_adapters(
            AdapterContext(
                settings,
                spaces,
                uow,
                clock,
                links,
                receive=role.serves_web,
                replies=replies,
                read_uow=read_uow,
                events=events,
                budget=budget,
                sql=db,
                codes=SqlOneTimeCodes(db),
                feeds=feeds,
            )
        )
        statuses += more
    if not any(p.platform is Platform.CONSOLE for p in adapters):
        adapters.insert(0, console)
        statuses.insert(0, PlatformStatus(Platform.CONSOLE, True, "connected"))
    for p in adapters:
        if isinstance(p, _TakesEvents):  # the platform's own event changes come back through the core
            p.attach_events(events)
    # a gateway connection has one owner across processes: adapters that open one (only where updates are
    # received: a worker's adapter sends over REST) start under a lease
    holder = f"{settings.worker_id}:{secrets.token_hex(4)}"  # unique per process, even for one worker id
    gateway_lease = SqlGatewayLease(db)
    starters: dict[Platform, Startable] = {
        p.platform: LeasedGateway(p, gateway_lease, holder=holder, clock=clock)
        for p in adapters
        if role.serves_web and needs_gateway_lease(p)
    }
    router = Router(adapters, starters=starters)
    audio: AudioSupervisor[Bridge] | None = None
    audio_service: AudioService | None = None
    if role.serves_web:
        audio_service, audio = live_audio(
            settings,
            clock,
            uow,
            read_uow,
            service_wake,
            links,
            gateway_lease,
            adapters,
            internal_url=lambda: settings.internal_url_setting or service_ref[0].web_url,
        )
        audio_kick.supervisor = audio
        metrics.watch_audio(audio.health)
    # Spaces announced on a platform with its own events are mirrored there
    spaces.mirror_native_events(router.native_event_platforms())

    engine = DeliveryEngine(
        outbox,
        uow,
        router,
        clock,
        budget,
        links,
        wake,
        EngineConfig(
            worker_id=settings.worker_id,
            lease=timings.lease,
            lease_margin=timings.lease_margin,
            send_timeout=timings.send_timeout,
        ),
        observer=metrics,
        read_uow=read_uow,
    )
    engine_ref.append(engine)

    share_places = SpacePlaces(router, read_uow)
    routes: list[WebRoute] = []
    for p in adapters:
        if isinstance(p, ContributesRoutes):
            routes += p.web_routes()
    web_deps = WebDeps(
        spaces=spaces,
        outbox=outbox,
        registry=metrics.registry,
        on_counts=metrics.outbox_counts,
        routes=routes,
        default_locale=settings.default_locale,
        extra_health={"role": str(role)},
        platform_health=router.health,
        audio_health=(lambda: audio_health(audio.health())) if audio is not None else None,
        audio=audio,  # /s/<id>/listen and the host's page (bots/web/listen.py, bots/web/host.py)
        host_keys=audio_service,
        fleet=fleet,
        on_fleet=metrics.fleet_seen,
        worker_label=settings.worker_id if role.delivers else None,
        metrics_token=settings.metrics_token.get_secret_value() if settings.metrics_token else None,
        public_metrics=settings.metrics_port is None,
        links=links,  # /s/<id>.ics (bots/web/calendar.py): its UID and links name SPACES_PUBLIC_URL
        profiles=ProfileService(read_uow),  # the host's name in the .ics
        # the share page's "Subscribe on …" buttons and the host's picture, from every platform (bots/places.py)
        places=share_places,
        avatars=share_places.avatar,
        feeds=feeds,  # /feeds/<token>.ics
        # no "All Spaces of this community" on the share page: the page is public (a link shared anywhere),
        # and a private group's whole schedule is for its members — they get the feed from /space list
    )
    web_app = make_web_app(web_deps)

    service = Service(
        settings=settings,
        role=role,
        clock=clock,
        db=db,
        uow=uow,
        outbox=outbox,
        heartbeats=heartbeats,
        spaces=spaces,
        engine=engine,
        router=router,
        console=console,
        budget=budget,
        metrics=metrics,
        links=links,
        web_app=web_app,
        waker=waker,
        wake_channel=wake_channel,
        repl=None,
        console_io=console_io,
        statuses=statuses,
        out=out,
        metric_snapshots=metric_snapshots,
        metrics_app=make_metrics_app(web_deps) if settings.metrics_port is not None else None,
        budget_db=budget_db,
        audio=audio,
    )
    service_ref.append(service)
    if console_io is not None and role is Role.RUN:
        service.repl = ConsoleRepl(
            spaces,
            console,
            links,
            inbound=InboundService(
                spaces=spaces,
                profiles=ProfileService(uow),
                replies=replies,
                links=links,
                clock=clock,
                uow=uow,
                read_uow=read_uow,
                codes=SqlOneTimeCodes(db),
                feeds=feeds,
            ),
            on_quit=service.request_stop,
            default_locale=settings.default_locale,
        )
    return service


def live_audio(
    settings: Settings,
    clock: Clock,
    uow: UnitOfWorkFactory,
    read_uow: UnitOfWorkFactory,
    wake: WakeUps,
    links: Links,
    lease: SqlGatewayLease,
    adapters: Sequence[ChatPlatform],
    *,
    internal_url: Callable[[], str | None],
) -> tuple[AudioService, AudioSupervisor[Bridge]]:
    """The AudioService and the supervisor that runs this process's share of the live Spaces' audio."""
    service = AudioService(uow, clock, wake, links=links, read_uow=read_uow)
    voice = [p for p in adapters if isinstance(p, VoiceBridge)]

    def make_bridge(live: LiveSpaceAudio, on_source_failed: Callable[[str], None]) -> Bridge:
        return Bridge(
            live.space_id,
            live.source,
            ffmpeg=settings.ffmpeg_path(),  # resolved per bridge: no file look-up at build
            media_dir=settings.media_dir,
            bitrate_kbps=settings.audio_bitrate_kbps,
            voice=voice,
            on_source_failed=on_source_failed,
        )

    supervisor: AudioSupervisor[Bridge] = AudioSupervisor(
        service,
        lease,
        make_bridge,
        worker_id=settings.worker_id,
        clock=clock,
        voice=voice,
        internal_url=internal_url,
    )
    return service, supervisor


def audio_health(health: Mapping[str, SpaceAudioHealth]) -> AudioHealth:
    """/healthz's audio section from the supervisor's health."""
    return AudioHealth(
        {space_id: h.as_json() for space_id, h in health.items()},
        failed=any(h.failed for h in health.values()),
    )


def _configured_adapters(ctx: AdapterContext) -> tuple[list[ChatPlatform], list[PlatformStatus]]:
    adapters: list[ChatPlatform] = []
    statuses: list[PlatformStatus] = []
    for factory in _platform_factories:
        name = str(factory.platform).capitalize()
        if not factory.enabled(ctx.settings):
            statuses.append(
                PlatformStatus(factory.platform, False, f"not connected — {factory.how_to_connect}")
            )
        elif factory.build is None:
            statuses.append(
                PlatformStatus(
                    factory.platform, False, f"configured, but this build has no {name} adapter yet"
                )
            )
            log.warning("platform configured without an adapter", extra={"platform": str(factory.platform)})
        else:
            adapters.append(factory.build(ctx))
            statuses.append(PlatformStatus(factory.platform, True, "connected"))
    return adapters, statuses
