"""Live audio on the web: what it needs from the audio engine (the ports below), and the listen stream.

- ``GET /s/{id}/listen``: the Space's audio as one Ogg/Opus stream a browser's ``<audio>`` plays. The frames
  are the bridge's (encoded once for every listener and voice channel); a listener too slow to keep up is
  dropped by the bridge, and a client that stops reading is cut off here, so nobody waits for anyone.
- The host's microphone page and its websocket: ``bots/web/host.py``, on the same ports.

One process owns a live Space's audio (the audio lease). Any other web process relays to it: the listen
stream and the host's websocket are forwarded to the owner's internal URL with ``relay=1``, and a request
with ``relay=1`` is served only from what this process owns, so two processes never relay in a loop.
"""

from __future__ import annotations

import asyncio
import html
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp
from aiohttp import web

from bots.web.pages import page, request_locale
from core.ids import looks_like_space_id
from core.models import Space
from core.texts import t

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------ what this needs


class BrowserSession(Protocol):
    """One host session's recorded audio going into the bridge (``bots.audio.bridge.BrowserInput``)."""

    # True once the session ended, or was replaced by a newer one (the host opened the page elsewhere)
    closed: bool

    async def write(self, chunk: bytes) -> None:
        """One MediaRecorder chunk (WebM or Ogg bytes), in order."""
        ...

    async def close(self) -> None:
        """The session ended: listeners hear silence until the next one. Idempotent."""
        ...


class LiveBridge(Protocol):
    """One live Space's audio in this process (``bots.audio.bridge.Bridge``)."""

    def ogg_stream(self) -> AsyncIterator[bytes]:
        """One web listener: the Ogg headers, then pages of live frames. Ends when the bridge stops or when
        this listener fell too far behind (the others never wait for it)."""
        ...

    def browser_input(self) -> BrowserSession:
        """A new host session (BROWSER sources): the container starts afresh with its first chunk."""
        ...


class AudioDirectory(Protocol):
    """Where a live Space's audio is (``bots.audio.supervisor`` implements it from the audio lease)."""

    def local(self, space_id: str) -> LiveBridge | None:
        """The bridge when this process owns the Space's audio, else None."""
        ...

    async def owner_url(self, space_id: str) -> str | None:
        """The base URL (``SPACES_INTERNAL_URL``) of the process that owns it, or None when none does."""
        ...


class HostKeys(Protocol):
    """``core.services.audio.AudioService`` provides it."""

    async def check_host_key(self, space_id: str, key: str) -> Space:
        """The Space when ``key`` is its host key; raises ``NotFound`` otherwise (unknown Space included)."""
        ...


@dataclass(slots=True)
class ListenDeps:
    audio: AudioDirectory
    host_keys: HostKeys | None = None  # None: no host page (the listen stream still works)
    default_locale: str = "en"
    # each bridge's newest host session opened here (every session of a bridge is opened by bots/web/host.py,
    # in the owning process): an older one that finds itself closed knows it was replaced, not stopped
    newest: weakref.WeakKeyDictionary[LiveBridge, BrowserSession] = field(
        default_factory=weakref.WeakKeyDictionary
    )


LISTEN_KEY: web.AppKey[ListenDeps] = web.AppKey("spaces_listen", ListenDeps)
SESSION_KEY: web.AppKey[aiohttp.ClientSession] = web.AppKey("spaces_relay_session", aiohttp.ClientSession)

# ------------------------------------------------------------------------------------------- limits

# A listener whose socket has not taken a chunk for this long (its buffers full) is cut off: its handler
# must not sit on a dead connection. The bridge already stopped feeding it long before (its backlog).
WRITE_TIMEOUT = 10.0
# Relaying: the owner answers at once, and a live stream carries a page at least every few frames (silence
# included), so a long quiet means the owner is gone.
RELAY_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=15)

STREAM_HEADERS: Mapping[str, str] = {
    "Content-Type": "audio/ogg",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


def add_listen_routes(app: web.Application, deps: ListenDeps) -> None:
    app[LISTEN_KEY] = deps
    app.cleanup_ctx.append(_relay_session)
    # no HEAD: it would hold a stream open to send nothing
    app.router.add_get("/s/{space_id}/listen", _listen, allow_head=False)


def listen_path(space_id: str) -> str:
    return f"/s/{space_id}/listen"


async def _relay_session(app: web.Application) -> AsyncIterator[None]:
    # no pool limit: each relayed listener holds one connection to the owner for as long as it listens, and
    # aiohttp's default (100) would make the 101st wait for a free one, silently
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, timeout=RELAY_TIMEOUT, auto_decompress=False
    ) as session:
        app[SESSION_KEY] = session
        yield


# ------------------------------------------------------------------------------------- the listen stream


async def _listen(request: web.Request) -> web.StreamResponse:
    deps = request.app[LISTEN_KEY]
    space_id = request.match_info["space_id"]
    if looks_like_space_id(space_id):
        bridge = deps.audio.local(space_id)
        if bridge is not None:
            return await _pump(request, bridge.ogg_stream(), space_id)
        url = await owner(request, space_id)
        if url is not None:
            forwarded = await _relay_stream(request, url, space_id)
            if forwarded is not None:
                return forwarded
    text = t(request_locale(request, deps.default_locale), "web.listen_missing")
    return page("Not found", f"<h1>🔇</h1><p>{html.escape(text)}</p>", status=404)


def relayed(request: web.Request) -> bool:
    return request.query.get("relay") == "1"


async def owner(request: web.Request, space_id: str) -> str | None:
    """The process to relay to; None when this request is itself a relay (no loops) or when nobody can be
    named (the lease unreadable: this request answers "nothing to hear" and the player may retry)."""
    if relayed(request):
        return None
    try:
        return await request.app[LISTEN_KEY].audio.owner_url(space_id)
    except Exception:
        log.warning("finding the audio owner of space_id=%s failed", space_id, exc_info=True)
        return None


async def _pump(request: web.Request, chunks: AsyncIterator[bytes], space_id: str) -> web.StreamResponse:
    """Copy ``chunks`` to the client as they come, chunked, never buffering more than the socket's own."""
    resp = web.StreamResponse(headers=STREAM_HEADERS)
    resp.enable_chunked_encoding()
    transport = request.transport
    try:
        await resp.prepare(request)
        async for chunk in chunks:
            if transport is not None and not transport.get_write_buffer_size():
                # the socket took everything so far: a frame's page does not make this write wait (and a
                # timer per frame and per listener is a measurable share of the loop with many listeners)
                await resp.write(chunk)
                continue
            async with asyncio.timeout(WRITE_TIMEOUT):
                await resp.write(chunk)
    except TimeoutError:
        log.info("web listener of space_id=%s stopped reading; cut off", space_id)
        if transport is not None:
            transport.abort()  # its buffered bytes would hold the handler on write_eof
    except ConnectionError:
        pass  # the listener went away
    finally:
        aclose: Callable[[], Awaitable[object]] | None = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()  # the bridge forgets this listener now, not at its next frame
    return resp


async def _relay_stream(request: web.Request, owner_url: str, space_id: str) -> web.StreamResponse | None:
    """The owner's stream, forwarded as it arrives; None when the owner does not serve it."""
    url = f"{owner_url.rstrip('/')}{listen_path(space_id)}"
    try:
        upstream = await request.app[SESSION_KEY].get(url, params={"relay": "1"})
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("relaying space_id=%s to %s failed: %s", space_id, owner_url, type(exc).__name__)
        return None
    if upstream.status != 200:
        upstream.release()
        return None
    return await _pump(request, _upstream_chunks(upstream, space_id), space_id)


async def _upstream_chunks(upstream: aiohttp.ClientResponse, space_id: str) -> AsyncIterator[bytes]:
    try:
        async for chunk in upstream.content.iter_any():
            yield chunk
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.info("relayed stream of space_id=%s ended: %s", space_id, type(exc).__name__)
    finally:
        upstream.close()
