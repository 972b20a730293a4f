"""The aiohttp application: ``/healthz``, ``/metrics``, ``/s/{space_id}`` (and its ``.ics``), plus adapters' routes.

Adding routes from a platform adapter: give the adapter a method

    def web_routes(self) -> Sequence[tuple[str, str, Handler]]:   # (method, path, handler)
        return [("POST", "/telegram/webhook", self._on_webhook)]

(plain aiohttp types: the adapter needs nothing from this package). The composition root collects them from
every platform that has ``web_routes`` (see :class:`ContributesRoutes`) into ``WebDeps.routes``; a path may be
claimed once. Adapters verify their own signatures (Slack, Discord) or secret tokens (Telegram).

This package talks to the core's ports only (no ``storage``): the import contracts in pyproject.toml hold it.
"""

from __future__ import annotations

import asyncio
import hmac
import html
import logging
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from aiohttp import web
from aiohttp.helpers import ETAG_ANY, ETag
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from bots.metrics import FleetView, render
from bots.web.calendar import ICS_SUFFIX, ics_filename, ics_version, space_ics
from bots.web.host import add_host_routes
from bots.web.listen import AudioDirectory, HostKeys, ListenDeps, add_listen_routes, listen_path
from bots.web.pages import not_found, page, request_locale
from core.errors import NotFound
from core.ids import looks_like_space_id
from core.models import Space, SpaceStatus, UserProfile
from core.ports import Links, Outbox
from core.refs import UserRef
from core.texts import t
from core.timeparse import format_local

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
WebRoute = tuple[str, str, Handler]  # (HTTP method, path, handler)


@runtime_checkable
class ContributesRoutes(Protocol):
    """A platform adapter that receives HTTP (webhooks, interactions, events)."""

    def web_routes(self) -> Sequence[WebRoute]: ...


class SpaceReader(Protocol):
    """What the share page needs (SpaceService provides it)."""

    async def get(self, space_id: str) -> Space: ...

    async def subscriber_count(self, space_id: str) -> int: ...


class ProfileReader(Protocol):
    """The host's display name for the calendar entry (ProfileService provides it)."""

    async def get(self, user: UserRef) -> UserProfile | None: ...


class WebLinks:
    """core.ports.Links: the share page of a Space under SPACES_PUBLIC_URL."""

    def __init__(self, public_url: str) -> None:
        self.base = public_url.rstrip("/")

    def space(self, space_id: str) -> str:
        return f"{self.base}/s/{space_id}"


@dataclass(slots=True)
class WebDeps:
    spaces: SpaceReader
    outbox: Outbox
    registry: CollectorRegistry
    # called with the outbox counts (or None when the database failed) before each /metrics scrape
    on_counts: Callable[[dict[str, int] | None], None] = lambda counts: None
    routes: Sequence[WebRoute] = ()
    default_locale: str = "en"
    # live audio (bots/web/listen.py): /s/<id>/listen and the share page's player; None: no audio here
    audio: AudioDirectory | None = None
    host_keys: HostKeys | None = None  # the host's microphone page (AudioService.check_host_key)
    extra_health: dict[str, str] = field(default_factory=dict)  # e.g. role, worker id
    # each platform's state ("up", "down: …", "standby …"): one platform down is shown, and the service is
    # still healthy (the others run, and it is retried in the background)
    platform_health: Callable[[], Mapping[str, str]] | None = None
    # live audio owned by this process, per Space (source, channels, listeners) and whether any part of it
    # gave up (FAILED: the status reads "degraded"; a link that is reconnecting is not a failure)
    audio_health: Callable[[], AudioHealth] | None = None
    # /metrics: the live workers' figures, read from the database on each scrape (None: this process only)
    fleet: Callable[[], Awaitable[FleetView]] | None = None
    on_fleet: Callable[[FleetView | None], None] = lambda fleet: None
    worker_label: str | None = None  # this process's own series get worker=<id> (it delivers)
    metrics_token: str | None = None  # require `Authorization: Bearer <token>`
    public_metrics: bool = True  # False: /metrics lives on its own listener (make_metrics_app)
    # the share links under SPACES_PUBLIC_URL: the .ics route needs them (its UID names their host, and a
    # Host header must never choose it); None: no /s/<id>.ics here
    links: Links | None = None
    profiles: ProfileReader | None = None  # the host's name in the .ics (None: the entry names no host)
    now: Callable[[], datetime] = lambda: datetime.now(UTC)  # the .ics's DTSTAMP: when the copy was made


@dataclass(frozen=True, slots=True)
class AudioHealth:
    spaces: Mapping[str, Mapping[str, object]]  # space id → {"source": …, "channels": …, "listeners": n}
    failed: bool = False


DEPS_KEY: web.AppKey[WebDeps] = web.AppKey("spaces_deps", WebDeps)

# A connection has this long to deliver a complete request line and headers (and, kept alive, to start
# the next request): a client that stalls mid-headers is cut off instead of holding a connection forever.
# Bodies are the handlers' to time out (the Telegram webhook gives a body 5 s).
HEADER_TIMEOUT = 5.0


class _ServerLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's server logger, without tracebacks for what a client did wrong (a malformed request line or
    header, a connection cut mid-request): one line at INFO. Our own failures keep their traceback."""

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        error = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        if isinstance(error, (HttpProcessingError, ConnectionError)):
            self.info("%s: %s", str(msg) % args if args else msg, type(error).__name__)
            return
        self.error(msg, *args, exc_info=exc_info, **kwargs)


def server_options() -> Mapping[str, Any]:
    """Options of the HTTP server under the web app (aiohttp's request handler)."""
    return {
        "keepalive_timeout": HEADER_TIMEOUT,
        "logger": _ServerLog(logging.getLogger("aiohttp.server"), {}),
    }


def make_web_app(deps: WebDeps) -> web.Application:
    # webhooks are small; refuse large bodies early (413)
    app = web.Application(client_max_size=1024 * 1024, handler_args=server_options())
    app[DEPS_KEY] = deps
    app[HEALTH_KEY] = _Health()
    app.router.add_get("/healthz", _healthz)
    if deps.public_metrics:
        app.router.add_get("/metrics", _metrics)
    if deps.links is not None:
        # before the share page: "{space_id}" would match "<id>.ics" too (aiohttp tries routes in order)
        app.router.add_get("/s/{space_id}" + ICS_SUFFIX, _space_calendar)
    app.router.add_get("/s/{space_id}", _space_page)
    app.router.add_get("/", _index)
    if deps.audio is not None:
        add_listen_routes(app, ListenDeps(deps.audio, deps.host_keys, deps.default_locale))
        if deps.host_keys is not None:
            add_host_routes(app)
    claimed: set[tuple[str, str]] = set()
    for method, path, handler in deps.routes:
        key = (method.upper(), path)
        if key in claimed:
            raise ValueError(f"two adapters claim {method} {path}")
        claimed.add(key)
        app.router.add_route(method.upper(), path, handler)
    return app


def make_metrics_app(deps: WebDeps) -> web.Application:
    """/metrics alone, for its own listener (SPACES_METRICS_PORT): kept off the public port."""
    app = web.Application(client_max_size=1024)
    app[DEPS_KEY] = deps
    app.router.add_get("/metrics", _metrics)
    return app


# ---------------------------------------------------------------------------------------------- handlers


async def _counts(deps: WebDeps) -> dict[str, int] | None:
    try:
        return await deps.outbox.counts()
    except Exception:
        log.warning("database check failed", exc_info=True)
        return None


# /healthz answers from the last database check while it is fresh, and never queues behind a busy database
# for longer than that: a load balancer probing during a burst must see a busy service, not a dead one.
HEALTH_FRESH = 2.0  # seconds a database check is reused; an older one is redone in the background
HEALTH_STALE = 10.0  # a check older than this is waited for (also the very first one)
HEALTH_TIMEOUT = 3.0  # a database that takes longer to answer is reported down


@dataclass(slots=True)
class _Health:
    counts: dict[str, int] | None = None
    at: float = -1e18  # loop time of the last check
    refresh: asyncio.Task[None] | None = None


HEALTH_KEY: web.AppKey[_Health] = web.AppKey("spaces_health", _Health)


async def _check(deps: WebDeps, state: _Health) -> None:
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT):
            counts = await deps.outbox.counts()
    except TimeoutError:
        log.warning("database check timed out after %.0f s", HEALTH_TIMEOUT)
        counts = None
    except Exception:
        log.warning("database check failed", exc_info=True)
        counts = None
    state.counts, state.at = counts, asyncio.get_running_loop().time()


async def _healthz(request: web.Request) -> web.Response:
    deps, state = request.app[DEPS_KEY], request.app[HEALTH_KEY]
    age = asyncio.get_running_loop().time() - state.at
    if age > HEALTH_FRESH and (state.refresh is None or state.refresh.done()):
        state.refresh = asyncio.create_task(_check(deps, state), name="healthz-check")
    if age > HEALTH_STALE and state.refresh is not None:
        await asyncio.shield(state.refresh)
    counts = state.counts
    checked = round(max(0.0, asyncio.get_running_loop().time() - state.at), 1)
    if counts is None:
        failed: dict[str, object] = {
            "ok": False,
            "db": "error",
            "checked_s_ago": checked,
            **deps.extra_health,
        }
        if deps.platform_health is not None:
            failed["platforms"] = dict(deps.platform_health())
        return web.json_response(failed, status=503)
    body: dict[str, object] = {
        "ok": True,
        "db": "ok",
        "checked_s_ago": checked,
        "pending": counts.get("pending", 0),
        "claimed": counts.get("claimed", 0),
        "dead": counts.get("dead", 0),
        **deps.extra_health,
    }
    if deps.platform_health is not None:
        body["platforms"] = dict(deps.platform_health())
    if deps.audio_health is not None:
        # degraded, not down: a host's dead stream is not this process's fault, and restarting it won't help
        audio = deps.audio_health()
        body["status"] = "degraded" if audio.failed else "ok"
        body["audio"] = dict(audio.spaces)
    return web.json_response(body)


async def _metrics(request: web.Request) -> web.Response:
    deps = request.app[DEPS_KEY]
    if deps.metrics_token is not None and not _bearer_ok(request, deps.metrics_token):
        return web.Response(
            status=401,
            text="/metrics needs `Authorization: Bearer <SPACES_METRICS_TOKEN>`\n",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    deps.on_counts(await _counts(deps))  # gauges refreshed on scrape: the database is the truth
    fleet = await _fleet(deps)
    deps.on_fleet(fleet)
    payload = render(deps.registry, own_worker=deps.worker_label, fleet=fleet)
    return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _fleet(deps: WebDeps) -> FleetView | None:
    if deps.fleet is None:
        return None
    try:
        return await deps.fleet()
    except Exception:
        log.warning("reading the workers' metrics failed", exc_info=True)
        return None


def _bearer_ok(request: web.Request, token: str) -> bool:
    """Exactly one Authorization header, ``Bearer <token>``, compared in constant time."""
    values = request.headers.getall("Authorization", [])
    if len(values) != 1:
        return False
    scheme, _, given = values[0].partition(" ")
    if scheme.lower() != "bearer":
        return False
    # surrogateescape: a header aiohttp could not decode compares as its raw bytes (and fails), not raises
    return hmac.compare_digest(
        given.strip().encode("utf-8", "surrogateescape"), token.encode("utf-8", "surrogateescape")
    )


async def _index(request: web.Request) -> web.Response:
    return page("Spaces", "<h1>Spaces</h1><p>Scheduled live audio rooms for Discord, Telegram and Slack.</p>")


async def _space_page(request: web.Request) -> web.Response:
    deps = request.app[DEPS_KEY]
    locale = request_locale(request, deps.default_locale)
    space_id = request.match_info["space_id"]
    if not looks_like_space_id(space_id):
        return not_found(locale, space_id)
    try:
        space = await deps.spaces.get(space_id)
    except NotFound:
        return not_found(locale, space_id)
    subscribers = await deps.spaces.subscriber_count(space_id)
    player = deps.audio is not None and space.status is SpaceStatus.LIVE and bool(space.audio_source)
    return page(
        space.title,
        _space_html(space, subscribers, locale, player=player),
        allow=("media-src 'self'",) if player else (),
    )


def _space_html(space: Space, subscribers: int, locale: str, *, player: bool = False) -> str:
    e = html.escape
    when = format_local(space.starts_at, space.tz, locale)
    status = t(locale, f"status.{space.status.value}")
    marker = {
        SpaceStatus.LIVE: t(locale, "card.live"),
        SpaceStatus.ENDED: t(locale, "card.ended"),
        SpaceStatus.CANCELLED: t(locale, "card.cancelled"),
    }.get(space.status)
    parts = [f'<article class="space status-{e(space.status.value)}">']
    if marker:
        parts.append(f'<p class="marker">{e(marker)}</p>')
    parts.append(f"<h1>{e(space.title)}</h1>")
    parts.append(
        f'<p class="when"><time datetime="{e(space.starts_at.isoformat())}" '
        f'data-local-label="{e(t(locale, "web.your_time"))}">{e(when)}</time></p>'
    )
    parts.append(f'<p class="status">{e(status)}</p>')
    if space.status.is_open:
        parts.append(f'<p class="subscribers">{e(t(locale, "card.subscribers", count=subscribers))}</p>')
    if space.description:
        parts.append(f'<p class="description">{e(space.description)}</p>')
    if player:
        # preload="none": nothing is fetched (no listener counted, no bytes spent) until the reader presses play
        parts.append(
            f'<section class="listen" aria-labelledby="listen-label"><h2 id="listen-label">{e(t(locale, "web.listen"))}</h2>'
            f'<audio controls preload="none" src="{e(listen_path(space.id))}" aria-labelledby="listen-label">'
            "</audio></section>"
        )
    parts.append("</article>")
    return "\n".join(parts)


# Calendar apps poll a subscribed .ics (Google every few hours, Apple and Outlook more often): each poll
# revalidates (no-cache) and costs a 304 while nothing changed. A cancel reaches them on the next poll.
CALENDAR_CACHE = "no-cache"


async def _space_calendar(request: web.Request) -> web.Response:
    """``/s/<id>.ics``: the Space as a calendar entry (bots/web/calendar.py), for every status: a cancel
    must reach the calendars that hold it. Ids are lowercase (core.ids); an id retyped in capitals works."""
    deps = request.app[DEPS_KEY]
    assert deps.links is not None  # mounted only with links
    raw = request.match_info["space_id"]
    space_id = raw.lower()
    if not looks_like_space_id(space_id):
        return not_found(request_locale(request, deps.default_locale), raw)
    try:
        space = await deps.spaces.get(space_id)
    except NotFound:
        return not_found(request_locale(request, deps.default_locale), raw)
    link = deps.links.space(space.id)
    host_name = await _host_name(deps, space.host)
    # weak: the bytes differ in every copy (DTSTAMP), the entry they describe does not (RFC 9110 §8.8.1)
    etag = ETag(value=ics_version(space, link=link, host_name=host_name), is_weak=True)
    headers = {
        "Cache-Control": CALENDAR_CACHE,
        # the pages' headers: nothing in this response may run or load anything, should a browser show it
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'",
        "Referrer-Policy": "no-referrer",
    }
    if _none_match(request.if_none_match, etag):
        response = web.Response(status=304, headers=headers)
    else:
        body = space_ics(space, link=link, host_name=host_name, now=deps.now())
        headers["Content-Disposition"] = f'attachment; filename="{ics_filename(space)}"'
        response = web.Response(body=body, content_type="text/calendar", charset="utf-8", headers=headers)
    response.etag = etag
    return response


def _none_match(given: tuple[ETag, ...] | None, etag: ETag) -> bool:
    """If-None-Match uses the weak comparison (RFC 9110 §13.1.2): the values alone, W/ or not; ``*`` any."""
    return given is not None and any(e.value in (ETAG_ANY, etag.value) for e in given)


async def _host_name(deps: WebDeps, host: UserRef) -> str:
    """The host's display name, or "" (no line about the host): never the raw platform id, which means
    nothing in a calendar. A failed read costs the name only, not the calendar."""
    if deps.profiles is None:
        return ""
    try:
        profile = await deps.profiles.get(host)
    except Exception:
        log.warning("reading the host's profile failed", exc_info=True)
        return ""
    return (profile.display_name or "") if profile is not None else ""
