"""The host's microphone: a private page and its websocket.

- ``GET /s/{id}/host?key=…``: the page: a button, the microphone, a level meter, the connection's state. The
  browser records Opus with MediaRecorder and sends each chunk as one binary websocket message.
- ``GET /s/{id}/host/ws?key=…``: that websocket; each message goes to ``bridge.browser_input()`` in the
  process that owns the Space's audio (another process relays the socket there, like the listen stream).

A wrong or missing host key answers exactly like an unknown Space (404, the same page, before any websocket
upgrade): a key cannot be guessed one Space at a time, and a Space's existence is not revealed by its host page.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
from urllib.parse import urlsplit

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

from bots.web.listen import LISTEN_KEY, SESSION_KEY, owner
from bots.web.pages import not_found, page, request_locale
from core.audio import SourceKind, parse_source
from core.errors import NotFound, UserError
from core.ids import looks_like_space_id
from core.models import Space, SpaceStatus
from core.texts import t

log = logging.getLogger(__name__)

# A browser's MediaRecorder chunk of 100–250 ms of Opus is a few KB; anything near this is not a microphone.
MAX_CHUNK = 256 * 1024
# The host's websocket is pinged so that a vanished laptop (lid closed, network gone) ends its session.
HEARTBEAT = 15.0
MAX_KEY = 200

# Close codes the host's page understands (4000–4999 are the application's).
CLOSE_NOT_LIVE = 4409  # the key is right but the Space has no audio running yet: the page waits and retries
CLOSE_ENDED = 4410  # the Space is over: the page stops
CLOSE_NOT_BROWSER = 4415  # the Space's source is a stream or a file: nothing to send from a browser
CLOSE_REPLACED = 4412  # the host connected from another page (or device): this one stops, and says why


def add_host_routes(app: web.Application) -> None:
    """After :func:`bots.web.listen.add_listen_routes` (whose deps carry the host keys)."""
    app.router.add_get("/s/{space_id}/host", _host_page)
    app.router.add_get("/s/{space_id}/host/ws", _host_ws, allow_head=False)


# ------------------------------------------------------------------------------------- the host's page


async def _host_space(request: web.Request) -> Space | None:
    """The Space when the request carries its host key; None for anything else, alike."""
    deps = request.app[LISTEN_KEY]
    space_id, key = request.match_info["space_id"], request.query.get("key", "")
    if deps.host_keys is None or not looks_like_space_id(space_id) or not key or len(key) > MAX_KEY:
        return None
    try:
        return await deps.host_keys.check_host_key(space_id, key)
    except NotFound:
        return None


async def _host_page(request: web.Request) -> web.Response:
    deps = request.app[LISTEN_KEY]
    locale = request_locale(request, deps.default_locale)
    space = await _host_space(request)
    if space is None:
        return not_found(locale, request.match_info["space_id"])
    return page(
        t(locale, "web.host_title", title=space.title),
        host_html(space, locale),
        script=MIC_JS,
        # the websocket back to this page's origin; and a page that opens the microphone is never framed
        allow=("connect-src 'self'", "frame-ancestors 'none'"),
        private=True,
    )


MIC_TEXTS = (
    "web.mic_start",
    "web.mic_stop",
    "web.mic_idle",
    "web.mic_asking",
    "web.mic_connecting",
    "web.mic_live",
    "web.mic_reconnecting",
    "web.mic_waiting",
    "web.mic_denied",
    "web.mic_no_device",
    "web.mic_unsupported",
    "web.mic_insecure",
    "web.mic_ended",
    "web.mic_not_browser",
    "web.mic_replaced",
)


def host_html(space: Space, locale: str) -> str:
    e = html.escape
    texts = {key.removeprefix("web."): t(locale, key) for key in MIC_TEXTS}
    parts = [
        f'<main id="mic" data-state="mic_idle" data-texts="{e(json.dumps(texts, ensure_ascii=False))}">',
        f"<h1>{e(t(locale, 'web.host_title', title=space.title))}</h1>",
        f'<p class="private">{e(t(locale, "web.host_private"))}</p>',
    ]
    if not space.audio_source:
        parts.append(f'<p class="hint">{e(t(locale, "web.host_no_source"))}</p>')
    elif (shown := _shown_source(space.audio_source)) is not None:
        parts.append(f'<p class="hint">{e(t(locale, "web.host_not_browser", source=shown))}</p>')
    parts += [
        '<p><button id="start" type="button" aria-describedby="state">'
        f"{e(t(locale, 'web.mic_start'))}</button></p>",
        f'<p><label for="level">{e(t(locale, "web.mic_level"))}</label><br>'
        '<meter id="level" min="0" max="1" value="0"></meter></p>',
        f'<p id="state" role="status" aria-live="polite">{e(t(locale, "web.mic_idle"))}</p>',
        "</main>",
    ]
    return "\n".join(parts)


def _shown_source(stored: str) -> str | None:
    """How the page names a source that is not the browser (None when it is): a URL by its scheme and host
    only — its path or query often holds a stream key, and a host may be sharing their screen."""
    try:
        source = parse_source(stored)
    except UserError:
        return stored[:80]
    if source.kind is SourceKind.BROWSER:
        return None
    if source.kind is SourceKind.FILE:
        return str(source)
    url = urlsplit(source.location)
    return f"{url.scheme}://{url.hostname}/…"


# The host's microphone, fixed text allowed by its hash. Each websocket connection starts a new
# MediaRecorder: a WebM/Ogg stream is only decodable from its first chunk (its headers), and the server opens
# a fresh session per connection. Reconnects back off (0.5 s doubling to 10 s, with jitter); a Space not live
# yet is waited for; texts come from the page's data-texts (the reader's language). The meter shows the
# level in dB (-60 dBFS to 0 across its width), which is how loudness is heard.
MIC_JS = """(()=>{'use strict';
const root=document.getElementById('mic'),T=JSON.parse(root.dataset.texts);
const btn=document.getElementById('start'),state=document.getElementById('state'),meter=document.getElementById('level');
const TYPES=['audio/webm;codecs=opus','audio/ogg;codecs=opus','audio/webm','audio/ogg'];
let on=false,busy=false,mic=null,ws=null,rec=null,timer=0,delay=500,ctx=null,raf=0;
function say(k){state.textContent=T[k];root.dataset.state=k}
function wsUrl(){const p=location.pathname.replace(/\\/+$/,'');
return(location.protocol==='https:'?'wss:':'ws:')+'//'+location.host+p+'/ws'+location.search}
function record(sock){let type='';for(const m of TYPES){if(MediaRecorder.isTypeSupported(m)){type=m;break}}
rec=type?new MediaRecorder(mic,{mimeType:type}):new MediaRecorder(mic);
rec.ondataavailable=e=>{if(e.data.size&&sock.readyState===WebSocket.OPEN)sock.send(e.data)};
rec.start(200)}
function unrecord(){if(rec&&rec.state!=='inactive')rec.stop();rec=null}
function retry(max){clearTimeout(timer);timer=setTimeout(connect,Math.min(delay,max)*(0.8+Math.random()*0.4));
delay=Math.min(delay*2,10000)}
function connect(){if(!on)return;const sock=new WebSocket(wsUrl());ws=sock;
sock.onopen=()=>{if(ws!==sock)return;delay=500;say('mic_live');record(sock)};
sock.onclose=e=>{if(ws!==sock)return;ws=null;unrecord();if(!on)return;
if(e.code===4410){stop('mic_ended');return}if(e.code===4415){stop('mic_not_browser');return}if(e.code===4412){stop('mic_replaced');return}
if(e.code===4409){say('mic_waiting');retry(5000)}else{say('mic_reconnecting');retry(10000)}}}
function level(){try{ctx=new AudioContext();const a=ctx.createAnalyser();a.fftSize=1024;
ctx.createMediaStreamSource(mic).connect(a);const buf=new Float32Array(a.fftSize);
const tick=()=>{a.getFloatTimeDomainData(buf);let s=0;for(const v of buf)s+=v*v;
const db=10*Math.log10(s/buf.length+1e-12);meter.value=Math.max(0,Math.min(1,1+db/60));raf=requestAnimationFrame(tick)};tick()}catch(e){}}
async function start(){
if(!window.isSecureContext||!navigator.mediaDevices||!navigator.mediaDevices.getUserMedia){say('mic_insecure');return}
if(!window.MediaRecorder||!window.WebSocket){say('mic_unsupported');return}
busy=true;say('mic_asking');
try{mic=await navigator.mediaDevices.getUserMedia({audio:{echoCancellation:true,noiseSuppression:true}})}
catch(e){busy=false;const n=e&&e.name;
say(n==='NotFoundError'||n==='OverconstrainedError'?'mic_no_device':n==='NotAllowedError'||n==='SecurityError'?'mic_denied':'mic_unsupported');return}
busy=false;on=true;delay=500;btn.textContent=T.mic_stop;
level();say('mic_connecting');connect()}
function stop(k){on=false;clearTimeout(timer);unrecord();if(ws){const s=ws;ws=null;s.close(1000)}
if(mic){for(const tr of mic.getTracks())tr.stop();mic=null}
if(ctx){ctx.close();ctx=null}cancelAnimationFrame(raf);meter.value=0;
btn.textContent=T.mic_start;say(k||'mic_idle')}
btn.addEventListener('click',()=>{if(busy)return;if(on)stop();else start()});
})();"""


# ------------------------------------------------------------------------------------ the host's websocket


async def _host_ws(request: web.Request) -> web.StreamResponse:
    deps = request.app[LISTEN_KEY]
    space = await _host_space(request)
    if space is None:  # refused before any upgrade, like an unknown Space
        return not_found(request_locale(request, deps.default_locale), request.match_info["space_id"])
    bridge = deps.audio.local(space.id)
    if bridge is None:
        url = await owner(request, space.id)
        if url is not None:
            return await _relay_ws(request, url, space.id)
    ws = web.WebSocketResponse(max_msg_size=MAX_CHUNK, heartbeat=HEARTBEAT)
    await ws.prepare(request)
    if bridge is None:
        over = space.status in (SpaceStatus.ENDED, SpaceStatus.CANCELLED)
        await ws.close(code=CLOSE_ENDED if over else CLOSE_NOT_LIVE, message=b"no audio running")
        return ws
    try:
        session = deps.newest[bridge] = bridge.browser_input()
    except ValueError:  # the source is not the browser (changed since the page was opened)
        await ws.close(code=CLOSE_NOT_BROWSER, message=b"not a browser source")
        return ws
    log.info("host microphone connected for space_id=%s", space.id)
    try:
        async for msg in ws:
            if msg.type is not WSMsgType.BINARY:  # TEXT (ERROR: too big or broken, already closing)
                if msg.type is WSMsgType.TEXT:
                    await ws.close(code=WSCloseCode.UNSUPPORTED_DATA, message=b"binary frames only")
                break
            await session.write(msg.data)
            if session.closed:
                if deps.newest.get(bridge) is not session:  # the host's other page took over: stop here
                    await ws.close(code=CLOSE_REPLACED, message=b"speaking from another page")
                else:  # the bridge stopped (the Space ended, or its audio moves): the page reconnects
                    await ws.close(code=WSCloseCode.GOING_AWAY, message=b"audio stopped")
                break
    except Exception:
        log.exception("host microphone of space_id=%s failed", space.id)
        await ws.close(code=WSCloseCode.INTERNAL_ERROR, message=b"audio failed")
    finally:
        await session.close()
        log.info("host microphone disconnected for space_id=%s", space.id)
    return ws


async def _relay_ws(request: web.Request, owner_url: str, space_id: str) -> web.StreamResponse:
    """The host's websocket, forwarded to the owning process (which checks the key again)."""
    url = f"{owner_url.rstrip('/')}/s/{space_id}/host/ws"
    params = {"key": request.query.get("key", ""), "relay": "1"}
    try:
        upstream = await request.app[SESSION_KEY].ws_connect(url, params=params, heartbeat=HEARTBEAT)
    except (aiohttp.ClientError, TimeoutError) as exc:  # the URL carries the key: never logged
        log.warning(
            "relaying the host of space_id=%s to %s failed: %s", space_id, owner_url, type(exc).__name__
        )
        return web.Response(status=503, text="the Space's audio is moving; try again\n")
    ws = web.WebSocketResponse(max_msg_size=MAX_CHUNK, heartbeat=HEARTBEAT)
    await ws.prepare(request)

    async def owner_closes() -> None:
        async for _ in upstream:  # the owner sends nothing but its close (4409, 4410, 1011 …)
            pass
        await ws.close(code=upstream.close_code or WSCloseCode.GOING_AWAY, message=b"closed by the owner")

    follower = asyncio.create_task(owner_closes(), name=f"host-relay-{space_id}")
    try:
        async for msg in ws:
            if msg.type is not WSMsgType.BINARY:
                if msg.type is WSMsgType.TEXT:
                    await ws.close(code=WSCloseCode.UNSUPPORTED_DATA, message=b"binary frames only")
                break
            await upstream.send_bytes(msg.data)
    except ConnectionError:
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"owner gone")
    finally:
        # the follower stops reading first: aiohttp's close() would otherwise wait for that reader to time out
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        await upstream.close()
    return ws
