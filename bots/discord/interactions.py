"""The HTTP interactions endpoint: ``POST /discord/interactions``, an alternative to the gateway.

Discord signs every request: ``X-Signature-Ed25519`` over ``X-Signature-Timestamp + raw body`` with the
application's key (``DISCORD_PUBLIC_KEY``). Anything that does not verify gets 401 — Discord itself probes
the endpoint with bad signatures and refuses to save a URL that accepts them. A timestamp more than
:data:`WINDOW` away from our clock is refused too, and within the window an interaction id is answered once:
a captured request replayed later, or at once, does nothing.

The response body is the interaction's FIRST response (a deferral, an autocomplete result, a pong), produced
by the handlers within Discord's 3 seconds; later answers go through the follow-up webhook. Never a
traceback: a body we cannot read is a plain 4xx, a handler failure a plain 500 and one log line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

log = logging.getLogger(__name__)

PATH = "/discord/interactions"
SIGNATURE = "X-Signature-Ed25519"
TIMESTAMP = "X-Signature-Timestamp"
WINDOW = 300.0  # seconds either side of our clock a signed timestamp is accepted
MAX_BODY = 64 * 1024  # an interaction is a few KiB; more is not one
BODY_TIMEOUT = 5.0
MAX_REMEMBERED = 50_000  # interaction ids kept for the replay window (memory bound under a flood)

Handle = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
Route = tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]


def verify_key(public_key_hex: str) -> VerifyKey:
    """The application's public key (hex, from the developer portal); ValueError if it is not one."""
    try:
        raw = bytes.fromhex(public_key_hex.strip())
    except ValueError:
        raise ValueError("DISCORD_PUBLIC_KEY is not hexadecimal") from None
    if len(raw) != 32:
        raise ValueError("DISCORD_PUBLIC_KEY is not an Ed25519 public key (32 bytes)")
    return VerifyKey(raw)


def signature_ok(key: VerifyKey, signature_hex: str, timestamp: str, body: bytes) -> bool:
    try:
        signature = bytes.fromhex(signature_hex)
    except ValueError:
        return False
    if len(signature) != 64:
        return False
    try:
        key.verify(timestamp.encode() + body, signature)
    except (BadSignatureError, ValueError):
        return False
    return True


class InteractionsEndpoint:
    """The aiohttp route; ``handle`` turns a verified interaction payload into its first response body."""

    def __init__(
        self,
        public_key_hex: str,
        handle: Handle,
        *,
        now: Callable[[], float] = time.time,
        window: float = WINDOW,
    ) -> None:
        self._key = verify_key(public_key_hex)
        self._handle = handle
        self._now = now
        self._window = window
        self._seen: OrderedDict[str, float] = OrderedDict()  # interaction id → when it may be forgotten

    def web_routes(self) -> Sequence[Route]:
        return [("POST", PATH, self.on_request)]

    def _replayed(self, interaction_id: str, now: float) -> bool:
        while self._seen and (next(iter(self._seen.values())) <= now or len(self._seen) > MAX_REMEMBERED):
            self._seen.popitem(last=False)
        if interaction_id in self._seen:
            return True
        # kept as long as its timestamp could still pass the window check
        self._seen[interaction_id] = now + 2 * self._window
        return False

    async def on_request(self, request: web.Request) -> web.StreamResponse:
        signature = request.headers.get(SIGNATURE, "")
        stamp = request.headers.get(TIMESTAMP, "")
        if not signature or not stamp or not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
            return _unauthorized("missing or malformed signature headers")
        now = self._now()
        if abs(now - int(stamp)) > self._window:
            return _unauthorized("timestamp outside the window")
        if request.content_length is not None and request.content_length > MAX_BODY:
            return web.Response(status=413, text="too large")
        try:
            async with asyncio.timeout(BODY_TIMEOUT):
                body = await _read_limited(request, MAX_BODY)
        except TimeoutError:
            return web.Response(status=408, text="body too slow")
        except _TooLarge:
            return web.Response(status=413, text="too large")
        except Exception:  # the client went away mid-body, or a broken chunked encoding
            return web.Response(status=400, text="unreadable body")
        if not signature_ok(self._key, signature, stamp, body):
            return _unauthorized("bad signature")
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            return web.Response(status=400, text="not JSON")
        if not isinstance(payload, dict):
            return web.Response(status=400, text="not an interaction")
        if payload.get("type") == 1:  # PING: Discord checking the endpoint
            return _json({"type": 1})
        iid = payload.get("id")
        if not isinstance(iid, str | int) or isinstance(iid, bool):
            return web.Response(status=400, text="no interaction id")
        if self._replayed(str(iid), now):
            log.warning("replayed discord interaction refused", extra={"interaction_id": str(iid)[:24]})
            return _unauthorized("replayed")
        try:
            first = await self._handle(payload)
        except ValueError as e:  # signed, but not an interaction we can act on
            log.warning("unusable discord interaction: %s", e)
            return web.Response(status=400, text="not an interaction we handle")
        except Exception as e:  # a bug: one line, no traceback to the caller
            log.error("discord interaction failed: %s", type(e).__name__, exc_info=e)
            return web.Response(status=500, text="internal error")
        return _json(first)


class _TooLarge(Exception):
    pass


async def _read_limited(request: web.Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(16 * 1024):
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _json(body: dict[str, Any]) -> web.Response:
    return web.Response(
        body=json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
        content_type="application/json",
    )


def _unauthorized(reason: str) -> web.Response:
    log.info("discord interaction refused: %s", reason)
    return web.Response(status=401, text="invalid request signature")
