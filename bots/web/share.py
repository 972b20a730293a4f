"""The share page ``/s/<id>``: the link every card and DM carries. Pure functions of what they are given.

Server-rendered and complete without JavaScript: the title, the host, the time in the host's zone, "in 2
days", the status in words, the subscriber count, where to subscribe, the calendar links. The page's one
script (:data:`SHARE_JS`, fixed text allowed by its hash in the CSP, see bots/web/pages.py) only enhances:
the time in the reader's own zone, a live countdown, and following the Space through ``/s/<id>/events``
(server-sent events, bots/web/watch.py) without a reload. Every dynamic value reaches the script through
escaped ``data-*`` attributes or the events' JSON, never inside the script.

Decisions, and why:

- The status is never told by colour alone: each has its word ("Live now") and its shape (◷ ● ■ ✕), and
  live also draws the purple ring around the host's avatar (as X marks a live Space) whose label says it
  in words for a screen reader.
- The OpenGraph / Twitter tags and the preview image are in the host's language (``Space.locale``), not the
  reader's: unfurlers (Discord, Slack, Telegram) send no Accept-Language, and the card they build is seen
  by the whole chat, which speaks the host's language. The page itself is in the reader's language.
- The countdown's screen-reader text changes at most once a minute (it is minute-grained and ``aria-live=
  polite``); the ticking seconds are ``aria-hidden``: a reader would otherwise hear the clock every second.
"""

from __future__ import annotations

import html
import json
import zlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from bots.web.listen import listen_path
from core.models import Space, SpaceStatus
from core.texts import t
from core.timeparse import format_local


@dataclass(frozen=True, slots=True)
class Place:
    """One place a Space is announced, where a reader can subscribe (and join once it is live): the
    Telegram deep link, the Discord event or message, the Slack permalink."""

    platform: str  # "telegram", "discord", "slack": styles the button, never shown
    label: str  # what the reader sees: "Telegram", "Discord · #events"
    url: str  # absolute https:// or tg:// link


# The composition root's provider of places (WebDeps.places, bots/places.py): every place the Space is
# announced from, labelled in the reader's language (the second argument, a locale).
PlacesFor = Callable[[Space, str], Awaitable[Sequence[Place]]]

SHAPES: Mapping[SpaceStatus, str] = {
    # the status's shape, shown next to its word (never colour alone)
    SpaceStatus.SCHEDULED: "◷",
    SpaceStatus.LIVE: "●",
    SpaceStatus.ENDED: "■",
    SpaceStatus.CANCELLED: "✕",
}
PREVIEW_WIDTH, PREVIEW_HEIGHT = 1200, 630
DESCRIPTION_CHARS = 200  # of the Space's description in og:description (unfurls cut around there anyway)
_SAFE_URL_SCHEMES = ("https://", "http://", "tg://")


@dataclass(frozen=True, slots=True)
class ShareView:
    """Everything the page shows. ``link``: the absolute share link under SPACES_PUBLIC_URL (None: no
    OpenGraph URL/image and no Google/Outlook links, which need absolute URLs). ``calendar``: the ``.ics``
    route is mounted. ``audio``: this service plays live audio (the page carries a player, hidden until
    the Space is live with a source)."""

    space: Space
    subscribers: int
    locale: str  # the reader's
    now: datetime
    host_name: str = ""
    avatar_url: str | None = None  # the host's picture (Discord, Slack); None: a monogram stands in
    places: Sequence[Place] = ()
    link: str | None = None
    calendar: bool = False
    audio: bool = False
    google_url: str | None = None
    outlook_url: str | None = None
    feed_url: str | None = None  # the community's calendar feed (every upcoming Space of its chats)


# ------------------------------------------------------------------------------------- the page


def share_title(space: Space) -> str:
    return space.title


def has_player(space: Space, *, audio: bool) -> bool:
    return audio and space.status is SpaceStatus.LIVE and bool(space.audio_source)


def share_html(view: ShareView) -> str:
    """The page's body: header, main (the Space), footer."""
    e = _attr
    space, locale = view.space, view.locale
    status = space.status
    host = view.host_name.strip() or t(locale, "web.host_unknown")
    labels = _labels(locale, host)
    events = f"/s/{space.id}/events"
    parts = [
        _brand(locale),
        f'<main id="main" class="share status-{e(status.value)}" data-space="{e(space.id)}" '
        f'data-status="{e(status.value)}" data-starts="{e(_iso(space.starts_at))}" '
        f'data-started="{e(_iso(space.started_at) if space.started_at else "")}" '
        f'data-events="{e(events)}" data-labels="{e(json.dumps(labels, ensure_ascii=False))}">',
        '<article class="card" aria-labelledby="title">',
        '<div class="host">',
        _avatar(view, host),
        f'<p class="hosted">{_hosted_by(locale, host)}</p>',
        "</div>",
        f'<p class="badge" id="status"><span class="shape" id="status-shape" aria-hidden="true">'
        f"{SHAPES[status]}</span> "
        f'<span id="status-label">{_text(t(locale, f"web.status.{status.value}"))}</span></p>',
        f'<h1 id="title">{_text(space.title)}</h1>',
    ]
    note = _note(status, locale)
    parts.append(f'<p class="note" id="note"{"" if note else " hidden"}>{_text(note)}</p>')
    if space.description:
        parts.append(f'<p class="description">{_text(space.description)}</p>')
    parts.append(_when(view))
    open_ = status.is_open
    parts.append(
        f'<p class="subscribers" id="subscribers"{"" if open_ else " hidden"}>'
        f'<span id="subscribers-text">'
        f"{_text(subscribers_text(locale, view.subscribers))}</span></p>"
    )
    if view.audio:
        parts.append(_listen(space, locale))
    parts.append(_subscribe(view))
    parts.append(_calendar(view))
    if open_:
        parts.append(f'<p class="updates">{_text(t(locale, "web.updates"))}</p>')
    parts += ["</article>", "</main>", _footer(locale)]
    return "\n".join(parts)


def share_head(space: Space, link: str | None) -> str:
    """OpenGraph and Twitter card tags (in the host's language: see the module's docstring), escaped."""
    locale = space.locale
    description = og_description(space)
    tags: list[tuple[str, str, str]] = [
        ("name", "description", description),
        ("property", "og:type", "website"),
        ("property", "og:site_name", "Spaces"),
        ("property", "og:title", space.title),
        ("property", "og:description", description),
        ("property", "og:locale", "fr_FR" if locale == "fr" else "en_US"),
        ("name", "twitter:card", "summary_large_image"),
        ("name", "twitter:title", space.title),
        ("name", "twitter:description", description),
    ]
    if link is not None:
        image = f"{link}/preview.png"
        tags += [
            ("property", "og:url", link),
            ("property", "og:image", image),
            ("property", "og:image:type", "image/png"),
            ("property", "og:image:width", str(PREVIEW_WIDTH)),
            ("property", "og:image:height", str(PREVIEW_HEIGHT)),
            ("property", "og:image:alt", space.title),
            ("name", "twitter:image", image),
        ]
    head = "".join(f'<meta {kind}="{_attr(key)}" content="{_attr(value)}">' for kind, key, value in tags)
    if link is not None:
        head += f'<link rel="canonical" href="{_attr(link)}">'
    return head


def og_description(space: Space) -> str:
    """ "Tue 1 Dec 2026, 18:30 CET · Scheduled — <description>", in the host's zone and language."""
    locale = space.locale
    when = format_local(space.starts_at, space.tz, locale)
    line = f"{when} · {t(locale, f'web.status.{space.status.value}')}"
    text = " ".join(space.description.split())
    if text:
        if len(text) > DESCRIPTION_CHARS:
            text = text[: DESCRIPTION_CHARS - 1].rstrip() + "…"
        line += f" — {text}"
    return line


def subscribers_text(locale: str, count: int) -> str:
    return t(locale, "web.subscribers", count=count)


def relative(now: datetime, at: datetime, locale: str) -> str:
    """ "in 2 days" / "3 hours ago" (the largest whole unit); the no-JavaScript countdown."""
    seconds = (at - now).total_seconds()
    ahead = seconds >= 0
    span = abs(seconds)
    if span >= 86400:
        key, count = "days", int(span // 86400)
    elif span >= 3600:
        key, count = "hours", int(span // 3600)
    else:
        key, count = "minutes", max(1, int(span // 60))
    return t(locale, f"web.{'in' if ahead else 'ago'}_{key}", count=count)


def state(space: Space, subscribers: int, *, audio: bool) -> dict[str, object]:
    """What the page follows (``/s/<id>/events`` and ``/s/<id>.json``), the same for every reader: a
    change in any field is a change to send."""
    return {
        "id": space.id,
        "status": space.status.value,
        "title": space.title,
        "starts_at": _iso(space.starts_at),
        "started_at": _iso(space.started_at) if space.started_at else None,
        "tz": space.tz,
        "subscribers": subscribers,
        "listen": listen_path(space.id) if has_player(space, audio=audio) else None,
    }


def localized(shared: Mapping[str, object], locale: str) -> dict[str, object]:
    """One reader's copy of :func:`state`: plus the texts the script cannot make itself (the host's wall
    time in the reader's language, the count with its plural)."""
    starts = datetime.fromisoformat(str(shared["starts_at"]))
    count = shared["subscribers"]
    return {
        **shared,
        "host_time": format_local(starts, str(shared["tz"]), locale),
        "subscribers_text": subscribers_text(locale, count if isinstance(count, int) else 0),
    }


def monogram(name: str) -> str:
    """Up to two initials of a display name ("Ada Lovelace" → "AL", "bob" → "B"); "?" for nothing."""
    words = [w for w in name.replace("_", " ").replace(".", " ").split() if w[0].isalnum()]
    letters = "".join(w[0] for w in words[:2]).upper()
    return letters or "?"


# Dark enough for white initials at ≥ 4.5:1 (each checked in tests/bots/web/test_share.py).
AVATAR_COLOURS = ("#5b3cc4", "#1f5f8b", "#2e6b30", "#8e2f62", "#7a4406", "#37474f")


def avatar_colour(name: str) -> str:
    return AVATAR_COLOURS[zlib.crc32(name.encode()) % len(AVATAR_COLOURS)]


def not_found_html(locale: str, space_id: str) -> str:
    shown = space_id[:40]
    return "\n".join(
        [
            _brand(locale),
            '<main id="main" class="share missing">',
            '<article class="card" aria-labelledby="title">',
            '<p class="badge"><span class="shape" aria-hidden="true">?</span> 404</p>',
            f'<h1 id="title">{_text(t(locale, "web.not_found_title"))}</h1>',
            f"<p>{_text(t(locale, 'web.not_found_body', space_id=shown))}</p>",
            f"<p>{_text(t(locale, 'web.not_found_help'))}</p>",
            f'<p><a class="btn" href="/">{_text(t(locale, "web.home"))}</a></p>',
            "</article>",
            "</main>",
            _footer(locale),
        ]
    )


# ------------------------------------------------------------------------------------------ pieces


def _brand(locale: str) -> str:
    return f'<header class="top"><a class="brand" href="/">{MARK_SVG}<span>Spaces</span></a></header>'


def _footer(locale: str) -> str:
    return f'<footer class="foot"><p>Spaces · {_text(t(locale, "web.tagline"))}</p></footer>'


def _hosted_by(locale: str, host: str) -> str:
    # the name in <strong>, the sentence around it translated: split the template at its placeholder
    before, _, after = t(locale, "web.hosted_by", host="\x00").partition("\x00")
    return f"{_text(before)}<strong>{_text(host)}</strong>{_text(after)}"


def _avatar(view: ShareView, host: str) -> str:
    live = view.space.status is SpaceStatus.LIVE
    label = t(view.locale, "web.ring_live" if live else "web.host_avatar", host=host)
    ring = " ring" if live else ""
    if view.avatar_url and view.avatar_url.startswith("https://"):
        inner = f'<img class="avatar" src="{_attr(view.avatar_url)}" alt="" width="72" height="72">'
    else:
        colour = avatar_colour(view.host_name or host)
        inner = (
            f'<span class="avatar mono" style="background:{colour}" aria-hidden="true">'
            f"{_text(monogram(view.host_name))}</span>"
        )
    return f'<div class="avatar-wrap{ring}" id="avatar" role="img" aria-label="{_attr(label)}">{inner}</div>'


def _note(status: SpaceStatus, locale: str) -> str:
    if status is SpaceStatus.ENDED:
        return t(locale, "web.ended_note")
    if status is SpaceStatus.CANCELLED:
        return t(locale, "web.cancelled_note")
    return ""


def _when(view: ShareView) -> str:
    space, locale = view.space, view.locale
    rel = ""
    if space.status is SpaceStatus.SCHEDULED:
        if (space.starts_at - view.now).total_seconds() > 60:
            rel = t(locale, "web.starts", relative=relative(view.now, space.starts_at, locale))
        else:
            rel = t(locale, "web.starting_soon")
    elif space.status is SpaceStatus.LIVE and space.started_at is not None:
        rel = t(locale, "web.started", relative=relative(view.now, space.started_at, locale))
    zone = space.tz.replace("_", " ")
    return "\n".join(
        [
            '<section class="when">',
            # minute-grained: a screen reader hears it change at most once a minute
            f'<p class="relative" id="relative" aria-live="polite">{_text(rel)}</p>',
            f'<p class="countdown" id="countdown" aria-hidden="true" '
            f'title="{_attr(t(locale, "web.countdown_label"))}" hidden></p>',
            '<p class="local" id="local" hidden></p>',
            f'<p class="hosttime">{_text(t(locale, "web.host_zone", zone=zone))} '
            f'<time id="host-time" datetime="{_attr(_iso(space.starts_at))}">'
            f"{_text(format_local(space.starts_at, space.tz, locale))}</time></p>",
            "</section>",
        ]
    )


def _listen(space: Space, locale: str) -> str:
    # always on the page when this service plays audio: the script reveals it the moment the Space goes
    # live. preload="none": nothing is fetched (no listener counted) until the reader presses play.
    playing = has_player(space, audio=True)
    src = f' src="{_attr(listen_path(space.id))}"' if playing else ""
    return (
        f'<section class="listen" id="listen" aria-labelledby="listen-label"{"" if playing else " hidden"}>'
        f'<h2 id="listen-label">{_text(t(locale, "web.listen"))}</h2>'
        f'<audio id="player" controls preload="none"{src} aria-labelledby="listen-label"></audio></section>'
    )


def _subscribe(view: ShareView) -> str:
    locale, space = view.locale, view.space
    hidden = "" if space.status.is_open else " hidden"
    live = space.status is SpaceStatus.LIVE
    places = [p for p in view.places if p.url.startswith(_SAFE_URL_SCHEMES)]
    out = [
        f'<section class="subscribe" id="subscribe" aria-labelledby="subscribe-h"{hidden}>',
        f'<h2 id="subscribe-h" data-sub="{_attr(t(locale, "web.subscribe"))}" '
        f'data-join="{_attr(t(locale, "web.join"))}">'
        f"{_text(t(locale, 'web.join' if live else 'web.subscribe'))}</h2>",
    ]
    if places:
        out.append('<ul class="actions">')
        for place in places:
            sub = t(locale, "web.subscribe_on", label=place.label)
            join = t(locale, "web.join_on", label=place.label)
            out.append(
                f'<li><a class="btn place-{_attr(_slug(place.platform))}" href="{_attr(place.url)}" '
                f'rel="noopener" data-sub="{_attr(sub)}" data-join="{_attr(join)}">'
                f"{_text(join if live else sub)}</a></li>"
            )
        out.append("</ul>")
    else:
        out.append(f"<p>{_text(t(locale, 'web.subscribe_in_chat'))}</p>")
    out.append("</section>")
    return "\n".join(out)


def _calendar(view: ShareView) -> str:
    locale, space = view.locale, view.space
    links: list[tuple[str, str, str]] = []
    if view.calendar:
        links.append((f"/s/{space.id}.ics", t(locale, "web.calendar_file"), "ics"))
    if view.feed_url:
        links.append((view.feed_url, t(locale, "web.calendar_feed"), "feed"))
    if view.google_url:
        links.append((view.google_url, t(locale, "web.google"), "google"))
    if view.outlook_url:
        links.append((view.outlook_url, t(locale, "web.outlook"), "outlook"))
    if not links:
        return ""
    hidden = "" if space.status is SpaceStatus.SCHEDULED else " hidden"
    # the web calendars open in a new tab (the reader comes back to the page); the .ics downloads
    external = ' rel="noopener" target="_blank"'
    items = "".join(
        f'<li><a class="btn ghost cal-{kind}" href="{_attr(url)}"{"" if kind in ("ics", "feed") else external}>'
        f"{_text(label)}</a></li>"
        for url, label, kind in links
    )
    return (
        f'<section class="calendar" id="calendar" aria-labelledby="calendar-h"{hidden}>'
        f'<h2 id="calendar-h">{_text(t(locale, "web.add_to_calendar"))}</h2>'
        f'<ul class="actions">{items}</ul></section>'
    )


def _labels(locale: str, host: str) -> dict[str, object]:
    """The texts the script needs, in the reader's language (travels in ``data-labels`` as JSON)."""
    return {
        "status": {s.value: t(locale, f"web.status.{s.value}") for s in SpaceStatus},
        "shape": {s.value: SHAPES[s] for s in SpaceStatus},
        "note": {s.value: _note(s, locale) for s in SpaceStatus},
        "ring_live": t(locale, "web.ring_live", host=host),
        "avatar": t(locale, "web.host_avatar", host=host),
        "starts": t(locale, "web.starts", relative="{relative}"),
        "started": t(locale, "web.started", relative="{relative}"),
        "soon": t(locale, "web.starting_soon"),
        "your_time": t(locale, "web.your_time"),
        "units": t(locale, "web.units"),
    }


def _slug(value: str) -> str:
    return "".join(c for c in value.lower() if c.isalnum())[:20] or "other"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _text(value: str) -> str:
    return html.escape(value, quote=False)


def _attr(value: str) -> str:
    return html.escape(value, quote=True)


# The Spaces mark: a circle with two sound waves (the same drawing as the preview image's).
MARK_SVG = (
    '<svg class="mark" viewBox="0 0 32 32" width="28" height="28" aria-hidden="true" focusable="false">'
    '<circle cx="16" cy="16" r="15" fill="#5b3cc4"/>'
    '<circle cx="12" cy="16" r="3" fill="#fff"/>'
    '<path d="M17 10a8 8 0 0 1 0 12M21 6.5a13 13 0 0 1 0 19" stroke="#fff" stroke-width="2.4" '
    'fill="none" stroke-linecap="round"/></svg>'
)

# ------------------------------------------------------------------------------------ style and script

SHARE_STYLE = (
    ":root{--bg:#f4f2fa;--card:#fff;--fg:#1d1b26;--muted:#57536a;--line:#dcd7ea;--accent:#5b3cc4;"
    "--accent-fg:#fff;--live:#7c3aed;--ended:#4b5563;--cancel:#b42318;--focus:#1d4ed8;color-scheme:light dark}"
    "@media (prefers-color-scheme:dark){:root{--bg:#12101a;--card:#1d1a28;--fg:#eeebf7;--muted:#b9b4cc;"
    "--line:#3a3550;--accent:#b6a2ff;--accent-fg:#15121f;--live:#c4a6ff;--ended:#c3c7cf;--cancel:#ff9b8f;"
    "--focus:#93b4ff}}"
    "*{box-sizing:border-box}[hidden]{display:none!important}"
    "html{-webkit-text-size-adjust:100%}"
    "body{margin:0;background:var(--bg);color:var(--fg);font:1rem/1.5 system-ui,-apple-system,'Segoe UI',"
    "Roboto,sans-serif;min-height:100vh;display:flex;flex-direction:column}"
    "a{color:var(--accent)}"
    "a:focus-visible,button:focus-visible,audio:focus-visible{outline:3px solid var(--focus);"
    "outline-offset:3px;border-radius:.4rem}"
    ".top{padding:1rem 1.25rem;max-width:44rem;width:100%;margin:0 auto}"
    ".brand{display:inline-flex;align-items:center;gap:.5rem;font-weight:700;text-decoration:none;"
    "color:var(--fg);font-size:1.1rem}"
    "main{flex:1;width:100%;max-width:44rem;margin:0 auto;padding:0 1rem 2rem}"
    ".card{background:var(--card);border:1px solid var(--line);border-radius:1.25rem;padding:1.5rem;"
    "box-shadow:0 1px 2px rgba(0,0,0,.04),0 8px 24px rgba(40,20,90,.06)}"
    "@media (min-width:700px){.card{padding:2.25rem 2.5rem}}"
    ".host{display:flex;align-items:center;gap:.9rem;margin-bottom:1rem}"
    ".hosted{margin:0;color:var(--muted)}.hosted strong{color:var(--fg)}"
    ".avatar-wrap{flex:none;width:4.5rem;height:4.5rem;border-radius:50%;padding:4px;"
    "border:3px solid transparent}"
    ".avatar{display:flex;align-items:center;justify-content:center;width:100%;height:100%;"
    "border-radius:50%;color:#fff;font-weight:700;font-size:1.35rem;object-fit:cover}"
    ".ring{border-color:var(--live);animation:pulse 2s ease-in-out infinite}"
    "@keyframes pulse{0%,100%{box-shadow:0 0 0 0 rgba(124,58,237,.45)}50%{box-shadow:0 0 0 8px "
    "rgba(124,58,237,0)}}"
    ".badge{display:inline-flex;align-items:center;gap:.45rem;margin:0 0 .5rem;padding:.2rem .75rem;"
    "border-radius:999px;font-weight:700;font-size:.9rem;letter-spacing:.02em;border:2px solid currentColor}"
    ".status-scheduled .badge{color:var(--accent)}"
    ".status-live .badge{background:var(--live);border-color:var(--live);color:#fff;text-transform:uppercase}"
    "@media (prefers-color-scheme:dark){.status-live .badge{color:#15121f}}"
    ".status-ended .badge{color:var(--ended);border-style:dashed;border-radius:.35rem}"
    ".status-cancelled .badge{color:var(--cancel);border-radius:.35rem}"
    ".missing .badge{color:var(--muted)}"
    "h1{font-size:clamp(1.6rem,5vw,2.4rem);line-height:1.15;margin:.25rem 0 .75rem;overflow-wrap:anywhere}"
    ".status-cancelled h1{text-decoration:line-through;text-decoration-thickness:2px}"
    "h2{font-size:1rem;margin:1.5rem 0 .6rem}"
    ".description{white-space:pre-line;overflow-wrap:anywhere;color:var(--fg)}"
    ".note{font-weight:600}"
    ".when{border-top:1px solid var(--line);border-bottom:1px solid var(--line);margin:1.25rem 0;"
    "padding:1rem 0}"
    ".when p{margin:.2rem 0}.relative{font-size:1.25rem;font-weight:700}"
    ".countdown{font-variant-numeric:tabular-nums;font-size:1.05rem;color:var(--accent);font-weight:600}"
    ".local{font-weight:600}.hosttime{color:var(--muted)}"
    ".subscribers{font-weight:600}"
    ".actions{list-style:none;padding:0;margin:0;display:flex;flex-wrap:wrap;gap:.6rem}"
    ".btn{display:inline-block;padding:.65rem 1.1rem;border-radius:.7rem;background:var(--accent);"
    "color:var(--accent-fg);text-decoration:none;font-weight:600;border:2px solid var(--accent)}"
    ".btn:hover{filter:brightness(1.08)}"
    ".btn.ghost{background:transparent;color:var(--accent)}"
    ".listen audio{width:100%}"
    ".updates{color:var(--muted);font-size:.875rem;margin-top:1.5rem}"
    ".foot{text-align:center;color:var(--muted);font-size:.875rem;padding:1rem}"
    "@media (prefers-reduced-motion:reduce){*{animation:none!important;transition:none!important}}"
)

# Fixed text (its hash is in the CSP): reads the page's data-* attributes and the events' JSON only.
SHARE_JS = (
    "(()=>{const m=document.querySelector('main[data-space]');if(!m)return;"
    "const L=JSON.parse(m.dataset.labels),lang=document.documentElement.lang||'en',$=i=>document.getElementById(i);"
    "let st={status:m.dataset.status,starts_at:m.dataset.starts,started_at:m.dataset.started||null},es=null;"
    "const rtf=window.Intl&&Intl.RelativeTimeFormat?new Intl.RelativeTimeFormat(lang,{numeric:'always'}):null;"
    "const pad=n=>String(n).padStart(2,'0');"
    "function rel(ms){const a=Math.abs(ms),s=ms<0?-1:1;let v,u;"
    "if(a>=864e5){v=Math.floor(a/864e5);u='day'}else if(a>=36e5){v=Math.floor(a/36e5);u='hour'}"
    "else{v=Math.max(1,Math.floor(a/6e4));u='minute'}return rtf?rtf.format(s*v,u):''}"
    "function local(){const d=new Date(st.starts_at),p=$('local');if(isNaN(d)||!p)return;"
    "p.textContent=L.your_time+' '+d.toLocaleString(lang,{weekday:'short',day:'numeric',month:'short',"
    "year:'numeric',hour:'2-digit',minute:'2-digit',hour12:false,timeZoneName:'short'});p.hidden=false}"
    "function tick(){const r=$('relative'),c=$('countdown');let text='',cd='';"
    "if(st.status==='scheduled'){const ms=new Date(st.starts_at)-Date.now();"
    "if(ms>6e4){text=L.starts.replace('{relative}',rel(ms));const s=Math.floor(ms/1e3),u=L.units.split(' ');"
    "const d=Math.floor(s/86400),h=Math.floor(s%86400/3600),mi=Math.floor(s%3600/60);"
    "cd=(d?d+' '+u[0]+' ':'')+pad(h)+' '+u[1]+' '+pad(mi)+' '+u[2]+' '+pad(s%60)+' '+u[3]}"
    "else text=L.soon}"
    "else if(st.status==='live'&&st.started_at)text=L.started.replace('{relative}',"
    "rel(new Date(st.started_at)-Date.now()));"
    "if(r&&r.textContent!==text)r.textContent=text;if(c){c.textContent=cd;c.hidden=!cd}}"
    "function apply(s){st=s;const open=s.status==='scheduled'||s.status==='live';"
    "m.dataset.status=s.status;m.className=m.className.replace(/status-[a-z]+/,'status-'+s.status);"
    "$('status-label').textContent=L.status[s.status]||s.status;$('status-shape').textContent=L.shape[s.status]||'';"
    "$('title').textContent=s.title;document.title=s.title+' \\u00b7 Spaces';"
    "const n=$('note');n.textContent=L.note[s.status]||'';n.hidden=!n.textContent;"
    "const a=$('avatar');a.classList.toggle('ring',s.status==='live');"
    "a.setAttribute('aria-label',s.status==='live'?L.ring_live:L.avatar);"
    "const ht=$('host-time');if(s.host_time){ht.textContent=s.host_time;ht.dateTime=s.starts_at}"
    "$('subscribers-text').textContent=s.subscribers_text;$('subscribers').hidden=!open;"
    "const sb=$('subscribe');if(sb)sb.hidden=!open;const cal=$('calendar');if(cal)cal.hidden=s.status!=='scheduled';"
    "for(const b of document.querySelectorAll('[data-join]'))"
    "b.textContent=s.status==='live'?b.dataset.join:b.dataset.sub;"
    "const ls=$('listen'),p=$('player');if(ls&&p){if(s.listen){if(!p.getAttribute('src'))p.src=s.listen;"
    "ls.hidden=false}else{ls.hidden=true;if(p.getAttribute('src')){p.pause();p.removeAttribute('src')}}}"
    "local();tick();if(!open&&es){es.close();es=null}}"
    "local();tick();setInterval(tick,1000);"
    "if(window.EventSource&&(st.status==='scheduled'||st.status==='live')){"
    "es=new EventSource(m.dataset.events);"
    "es.onmessage=e=>{try{apply(JSON.parse(e.data))}catch(_){}}}})();"
)
