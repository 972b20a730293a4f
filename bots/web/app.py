"""The aiohttp application: ``/healthz``, ``/metrics``, the share page ``/s/{space_id}`` (its ``.ics``,
``.json``, ``/events`` and ``/preview.png``: bots/web/share.py), plus adapters' routes.

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
import hashlib
import hmac
import json
import logging
import re
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
from bots.web.calendar import (
    FEED_NAME,
    ICS_SUFFIX,
    feed_ics,
    feed_version,
    google_calendar_url,
    ics_filename,
    ics_version,
    outlook_calendar_url,
    space_ics,
)
from bots.web.host import add_host_routes
from bots.web.listen import AudioDirectory, HostKeys, ListenDeps, add_listen_routes
from bots.web.pages import not_found, page, request_locale
from bots.web.preview import PreviewCache, preview_of
from bots.web.share import (
    SHARE_JS,
    SHARE_STYLE,
    Place,
    PlacesFor,
    ShareView,
    localized,
    share_head,
    share_html,
    share_title,
    state,
)
from bots.web.watch import MAX_STREAMS, POLL_INTERVAL, Closed, SpaceWatch, State, TooManyStreams
from core.errors import NotFound
from core.ids import looks_like_space_id
from core.models import Space, UserProfile
from core.ports import Links, Outbox
from core.refs import UserRef
from core.services.feeds import Feed

log = logging.getLogger(__name__)

FEED_PREFIX = "/feeds/"  # a community's calendar feed: /feeds/<token>.ics

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

    def feed(self, token: str) -> str:
        """A community's calendar feed (core.services.feeds): served by :func:`make_web_app` at
        ``/feeds/<token>.ics``."""
        return f"{self.base}{FEED_PREFIX}{token}{ICS_SUFFIX}"


class FeedReader(Protocol):
    """A community's feed by its token (core.services.feeds.FeedService provides it)."""

    async def feed(self, token: str) -> Feed | None: ...


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
    profiles: ProfileReader | None = None  # the host's name in the .ics and on the page (None: not named)
    # the .ics's DTSTAMP (when the copy was made) and the share page's "in 2 days"
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    # every place a Space is announced (Telegram deep link, Discord event, Slack permalink): the share page's
    # "Subscribe on …" buttons. None (or none found): the page says to subscribe from the chat
    places: PlacesFor | None = None
    # the host's avatar (an https URL) when a platform gives one; None: a monogram stands in
    avatars: Callable[[UserRef], Awaitable[str | None]] | None = None
    # /feeds/<token>.ics, a community's upcoming Spaces (needs ``links`` too); None: not served here
    feeds: FeedReader | None = None
    # the share page's "All Spaces of this community" link: the feed URL of the Space's chat, made on first
    # ask (the composition root wires FeedService.url_for); None: no such link
    feed_url: Callable[[Space], Awaitable[str | None]] | None = None
    share_poll: float = POLL_INTERVAL  # seconds between two reads of a Space its page's viewers follow
    share_streams: int = MAX_STREAMS  # open /s/<id>/events streams in this process, at most


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
    watch = SpaceWatch(
        lambda space_id: _shared_state(deps, space_id),
        interval=deps.share_poll,
        max_streams=deps.share_streams,
    )
    app[WATCH_KEY] = watch
    app[PREVIEW_KEY] = PreviewCache()

    async def close_streams(_: web.Application) -> None:
        # before the server waits for its handlers: an open event stream would hold the shutdown
        await watch.close()

    app.on_shutdown.append(close_streams)
    app.router.add_get("/healthz", _healthz)
    if deps.public_metrics:
        app.router.add_get("/metrics", _metrics)
    if deps.links is not None:
        # before the share page: "{space_id}" would match "<id>.ics" too (aiohttp tries routes in order)
        app.router.add_get("/s/{space_id}" + ICS_SUFFIX, _space_calendar)
        if deps.feeds is not None:
            app.router.add_get(FEED_PREFIX + "{token}" + ICS_SUFFIX, _community_calendar)
    app.router.add_get("/s/{space_id}" + JSON_SUFFIX, _space_json)
    # no HEAD: it would hold a stream open to send nothing
    app.router.add_get("/s/{space_id}/events", _space_events, allow_head=False)
    app.router.add_get("/s/{space_id}/preview.png", _space_preview)
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


# ------------------------------------------------------------------------------------------ share page

JSON_SUFFIX = ".json"
WATCH_KEY: web.AppKey[SpaceWatch] = web.AppKey("spaces_watch", SpaceWatch)
PREVIEW_KEY: web.AppKey[PreviewCache] = web.AppKey("spaces_preview", PreviewCache)
# the security headers of every page (bots/web/pages.py), on the share page's other routes too
PAGE_HEADERS: Mapping[str, str] = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'",
    "Referrer-Policy": "no-referrer",
}
HEARTBEAT = 15.0  # seconds: an SSE comment line keeps proxies from closing a quiet stream, finds gone readers
PREVIEW_CACHE = "public, max-age=300"  # unfurlers fetch once; a change makes a new ETag anyway


async def _find_space(request: web.Request) -> Space | None:
    """The Space the URL names, in any case (ids are lowercase: core.ids); None for anything else."""
    space_id = request.match_info["space_id"].lower()
    if not looks_like_space_id(space_id):
        return None
    try:
        return await request.app[DEPS_KEY].spaces.get(space_id)
    except NotFound:
        return None


def _missing(request: web.Request) -> web.Response:
    deps = request.app[DEPS_KEY]
    return not_found(request_locale(request, deps.default_locale), request.match_info["space_id"])


async def _space_page(request: web.Request) -> web.Response:
    deps = request.app[DEPS_KEY]
    locale = request_locale(request, deps.default_locale)
    space = await _find_space(request)
    if space is None:
        return _missing(request)
    subscribers = await deps.spaces.subscriber_count(space.id)
    link = deps.links.space(space.id) if deps.links is not None else None
    view = ShareView(
        space=space,
        subscribers=subscribers,
        locale=locale,
        now=deps.now(),
        host_name=await _host_name(deps, space.host),
        avatar_url=await _avatar_url(deps, space.host),
        places=await _places(deps, space, locale),
        link=link,
        calendar=link is not None,
        audio=deps.audio is not None,
        google_url=google_calendar_url(space, link) if link is not None else None,
        outlook_url=outlook_calendar_url(space, link) if link is not None else None,
        feed_url=await _feed_url(deps, space) if link is not None else None,
    )
    allow = ["connect-src 'self'"]  # the events stream
    if deps.audio is not None:
        allow.append("media-src 'self'")  # the player, there or revealed when the Space goes live
    if view.avatar_url:
        allow.append("img-src https:")
    response = page(
        share_title(space),
        share_html(view),
        script=SHARE_JS,
        allow=allow,
        lang=locale,
        head=share_head(space, link),
        style=SHARE_STYLE,
    )
    response.headers["Vary"] = "Accept-Language"  # the page is in the reader's language
    return response


async def _shared_state(deps: WebDeps, space_id: str) -> State | None:
    """The Space as its viewers follow it (bots.web.share.state); None once it is gone."""
    try:
        space = await deps.spaces.get(space_id)
    except NotFound:
        return None
    count = await deps.spaces.subscriber_count(space_id)
    return state(space, count, audio=deps.audio is not None)


async def _space_json(request: web.Request) -> web.Response:
    """``/s/<id>.json``: the page's state for pollers, with a strong ETag (304 while nothing changed)."""
    deps = request.app[DEPS_KEY]
    space = await _find_space(request)
    if space is None:
        return _missing(request)
    count = await deps.spaces.subscriber_count(space.id)
    body = json.dumps(
        localized(
            state(space, count, audio=deps.audio is not None), request_locale(request, deps.default_locale)
        ),
        ensure_ascii=False,
        sort_keys=True,
    ).encode()
    etag = ETag(value=hashlib.sha256(body).hexdigest()[:32])
    headers = {**PAGE_HEADERS, "Cache-Control": "no-cache", "Vary": "Accept-Language"}
    if _none_match(request.if_none_match, etag):
        response = web.Response(status=304, headers=headers)
    else:
        response = web.Response(body=body, content_type="application/json", charset="utf-8", headers=headers)
    response.etag = etag
    return response


async def _space_events(request: web.Request) -> web.StreamResponse:
    """``/s/<id>/events``: server-sent events, one ``data:`` JSON per change of the Space (its status,
    times, title, count), the first at once; a comment line every HEARTBEAT seconds. Ends after a closed
    Space (ended, cancelled: nothing more will change), when it is gone, or when the app stops."""
    deps = request.app[DEPS_KEY]
    space = await _find_space(request)
    if space is None:
        return _missing(request)
    locale = request_locale(request, deps.default_locale)
    count = await deps.spaces.subscriber_count(space.id)
    first = state(space, count, audio=deps.audio is not None)
    try:
        async with request.app[WATCH_KEY].follow(space.id, first) as queue:
            return await _stream(request, queue, first, locale)
    except TooManyStreams:
        # the page works without it (a reload shows the news): tell the browser to come back later
        return web.Response(
            status=503, text="too many streams\n", headers={**PAGE_HEADERS, "Retry-After": "30"}
        )


async def _stream(
    request: web.Request, queue: asyncio.Queue[State | Closed | None], first: State, locale: str
) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={
            **PAGE_HEADERS,
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # nginx: pass each event on at once
        }
    )
    await response.prepare(request)
    try:
        # a reconnecting browser waits 5 s (not 3): a restart of the service is not a stampede
        await response.write(b"retry: 5000\n\n")
        current: State | None = first
        while current is not None:
            await response.write(_event(localized(current, locale)))
            if current["status"] in ("ended", "cancelled"):
                break  # nothing more will change
            try:
                async with asyncio.timeout(HEARTBEAT):
                    item = await queue.get()
            except TimeoutError:
                await response.write(b": ping\n\n")
                continue
            if isinstance(item, Closed):
                break
            current = item
        await response.write_eof()
    except ConnectionError:
        pass  # the reader left
    return response


def _event(payload: Mapping[str, object]) -> bytes:
    # JSON never holds a raw newline (json.dumps escapes them): one data line per event
    return b"data: " + json.dumps(payload, ensure_ascii=False, sort_keys=True).encode() + b"\n\n"


async def _space_preview(request: web.Request) -> web.Response:
    """``/s/<id>/preview.png``: the unfurl image (bots/web/preview.py), cached by what it shows, ETag."""
    space = await _find_space(request)
    if space is None:
        return _missing(request)
    preview = preview_of(space)
    etag = ETag(value=preview.etag)
    headers = {**PAGE_HEADERS, "Cache-Control": PREVIEW_CACHE}
    if _none_match(request.if_none_match, etag):
        response = web.Response(status=304, headers=headers)
    else:
        png = await request.app[PREVIEW_KEY].get(preview)
        response = web.Response(body=png, content_type="image/png", headers=headers)
    response.etag = etag
    return response


async def _places(deps: WebDeps, space: Space, locale: str) -> list[Place]:
    """Where the Space is announced; a failure costs the buttons only (the page says to use the chat)."""
    if deps.places is None:
        return []
    try:
        return list(await deps.places(space, locale))
    except Exception:
        log.warning("listing the places of Space %s failed", space.id, exc_info=True)
        return []


async def _avatar_url(deps: WebDeps, host: UserRef) -> str | None:
    if deps.avatars is None:
        return None
    try:
        url = await deps.avatars(host)
    except Exception:
        log.warning("reading the host's avatar failed", exc_info=True)
        return None
    return url if url and url.startswith("https://") else None


# Calendar apps poll a subscribed .ics (Google every few hours, Apple and Outlook more often): each poll
# revalidates (no-cache) and costs a 304 while nothing changed. A cancel reaches them on the next poll.
CALENDAR_CACHE = "no-cache"


async def _space_calendar(request: web.Request) -> web.Response:
    """``/s/<id>.ics``: the Space as a calendar entry (bots/web/calendar.py), for every status: a cancel
    must reach the calendars that hold it. Ids are lowercase (core.ids); an id retyped in capitals works."""
    deps = request.app[DEPS_KEY]
    assert deps.links is not None  # mounted only with links
    space = await _find_space(request)
    if space is None:
        return _missing(request)
    link = deps.links.space(space.id)
    host_name = await _host_name(deps, space.host)
    # weak: the bytes differ in every copy (DTSTAMP), the entry they describe does not (RFC 9110 §8.8.1)
    etag = ETag(value=ics_version(space, link=link, host_name=host_name), is_weak=True)
    # the pages' headers: nothing in this response may run or load anything, should a browser show it
    headers = {"Cache-Control": CALENDAR_CACHE, **PAGE_HEADERS}
    if _none_match(request.if_none_match, etag):
        response = web.Response(status=304, headers=headers)
    else:
        body = space_ics(space, link=link, host_name=host_name, now=deps.now())
        headers["Content-Disposition"] = f'attachment; filename="{ics_filename(space)}"'
        response = web.Response(body=body, content_type="text/calendar", charset="utf-8", headers=headers)
    response.etag = etag
    return response


_TOKEN = re.compile(
    r"[A-Za-z0-9_-]{16,64}"
)  # what secrets.token_urlsafe makes: anything else is a 404 at once


async def _community_calendar(request: web.Request) -> web.Response:
    """``/feeds/<token>.ics``: a community's upcoming Spaces (core.services.feeds), soonest first, each
    VEVENT as in its own ``/s/<id>.ics``. A closed Space leaves the feed: a subscribed calendar drops an
    entry the feed no longer holds. Unknown token: 404, the same for a malformed one (no database read)."""
    deps = request.app[DEPS_KEY]
    assert deps.links is not None and deps.feeds is not None  # mounted only with both
    token = request.match_info["token"]
    feed = await deps.feeds.feed(token) if _TOKEN.fullmatch(token) else None
    if feed is None:
        return web.Response(status=404, text="no such calendar\n", headers=dict(PAGE_HEADERS))
    entries = [(space, deps.links.space(space.id)) for space in feed.spaces]
    etag = ETag(value=feed_version(entries, name=FEED_NAME), is_weak=True)
    headers = {"Cache-Control": CALENDAR_CACHE, **PAGE_HEADERS}
    if _none_match(request.if_none_match, etag):
        response = web.Response(status=304, headers=headers)
    else:
        body = feed_ics(entries, name=FEED_NAME, now=deps.now())
        # inline, not attachment: a calendar subscribes to the URL; a browser that opens it may offer to
        headers["Content-Disposition"] = 'inline; filename="spaces.ics"'
        response = web.Response(body=body, content_type="text/calendar", charset="utf-8", headers=headers)
    response.etag = etag
    return response


async def _feed_url(deps: WebDeps, space: Space) -> str | None:
    """The share page's community feed link; a failure costs the link only, not the page."""
    if deps.feed_url is None:
        return None
    try:
        return await deps.feed_url(space)
    except Exception:
        log.warning("making the community's feed link failed", exc_info=True)
        return None


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
