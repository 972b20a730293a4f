"""The HTML pages' frame: one document shape, its security headers, the reader's language.

Every script is fixed text, allowed by its hash in the Content-Security-Policy: no other script can run on a
page, and a page's dynamic values travel in escaped ``data-*`` attributes, never inside a script.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
from collections.abc import Sequence

from aiohttp import web

from core.texts import pick_locale, t

# Each viewer sees the start in their own zone too (the page is shared across time zones).
LOCAL_TIME_JS = (
    "for(const t of document.querySelectorAll('time[datetime]')){"
    "const d=new Date(t.dateTime);if(isNaN(d))continue;"
    "const p=document.createElement('p');p.className='local';"
    "p.textContent=(t.dataset.localLabel||'')+' '+d.toLocaleString(undefined,{weekday:'short',day:'numeric',"
    "month:'short',year:'numeric',hour:'2-digit',minute:'2-digit',timeZoneName:'short'});"
    "t.parentNode.after(p)}"
)

STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem}"
    ".marker{font-weight:bold}.when{font-size:1.2rem}.local{color:#555}"
    ".listen audio{width:100%}"
    "#start{font-size:1.5rem;padding:.8rem 1.6rem;border-radius:.5rem;cursor:pointer}"
    "#start:focus-visible{outline:3px solid #5b3cc4;outline-offset:3px}"
    "#level{width:100%;height:1.2rem}.private{color:#8a1c1c}"
)


@functools.cache
def script_hash(script: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()


def page(
    title: str,
    body: str,
    *,
    status: int = 200,
    script: str = LOCAL_TIME_JS,
    allow: Sequence[str] = (),
    private: bool = False,
    lang: str = "en",
    head: str = "",
    style: str = STYLE,
) -> web.Response:
    """A complete page. ``allow``: CSP directives a page needs beyond the default (``"media-src 'self'"``
    for a player, ``"connect-src 'self'"`` for a websocket); everything else stays forbidden. ``private``: a
    page that carries a secret (the host's link) is never stored by a cache. ``lang``: the reader's language
    (screen readers pick their voice from it). ``head``: extra, already escaped ``<head>`` markup (the share
    page's OpenGraph tags). ``style``: the page's stylesheet (inline: the CSP allows no other)."""
    doc = (
        f'<!doctype html>\n<html lang="{html.escape(lang)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)} · Spaces</title>{head}"
        f"<style>{style}</style></head>\n"
        f"<body>\n{body}\n<script>{script}</script>\n</body></html>\n"
    )
    policy = "; ".join(
        ["default-src 'none'", "style-src 'unsafe-inline'", f"script-src '{script_hash(script)}'", *allow]
    )
    headers = {
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": policy,
        "Referrer-Policy": "no-referrer",  # the host's key is in its page's URL: never sent on
    }
    if private:
        headers["Cache-Control"] = "no-store"
    return web.Response(text=doc, status=status, content_type="text/html", charset="utf-8", headers=headers)


def not_found(locale: str, space_id: str) -> web.Response:
    """A real 404 for an unknown Space, in the reader's language, styled like the share page."""
    # imported here: share.py builds on this module (its page frame), not the other way round
    from bots.web.share import SHARE_STYLE, not_found_html

    return page(
        t(locale, "web.not_found_title"),
        not_found_html(locale, space_id),
        status=404,
        lang=locale,
        style=SHARE_STYLE,
    )


def request_locale(request: web.Request, default: str) -> str:
    """The reader's language: the first of Accept-Language, else the service's default."""
    accept = request.headers.get("Accept-Language", "")
    first = accept.split(",", 1)[0].split(";", 1)[0].strip()
    return pick_locale(first) if first else pick_locale(default)
