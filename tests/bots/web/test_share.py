"""The share page's pure render (bots/web/share.py) and preview image (bots/web/preview.py).

The HTML is parsed back with the standard library's HTMLParser: a hostile title that broke out of its
element or attribute would show up as an extra element, attribute or script.
"""

from __future__ import annotations

import io
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest
from PIL import Image

from bots.web.preview import PreviewCache, preview_of, render_preview, wrap
from bots.web.share import (
    AVATAR_COLOURS,
    Place,
    ShareView,
    monogram,
    not_found_html,
    relative,
    share_head,
    share_html,
    state,
)
from core.models import Space, SpaceStatus
from tests.builders import T0
from tests.builders import space as make_space

SPACE_ID = "sp2345abcd"
LINK = f"https://spaces.example.org/s/{SPACE_ID}"
NOW = T0 - timedelta(days=2, hours=3)


class Doc(HTMLParser):
    """Every start tag with its attributes, the text, and the text of each element with an id."""

    def __init__(self, markup: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.by_id: dict[str, str] = {}
        self._open: list[str | None] = []
        self.feed(markup)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in ("meta", "link", "img", "br", "input", "path", "circle"):
            self._open.append(dict(attrs).get("id"))
            if self._open[-1]:
                self.by_id[self._open[-1] or ""] = ""

    def handle_endtag(self, tag: str) -> None:
        if self._open and tag not in ("meta", "link", "img", "br", "input", "path", "circle"):
            self._open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        for ident in self._open:
            if ident:
                self.by_id[ident] += data

    def attrs(self, ident: str) -> dict[str, str | None]:
        return next(a for _, a in self.tags if a.get("id") == ident)

    def meta(self) -> dict[str, str]:
        return {
            str(a.get("property") or a.get("name")): str(a.get("content"))
            for tag, a in self.tags
            if tag == "meta" and a.get("content") is not None
        }


def view(space: Space, locale: str = "en", **overrides: object) -> ShareView:
    fields: dict[str, object] = {
        "space": space,
        "subscribers": 12,
        "locale": locale,
        "now": NOW,
        "host_name": "Ada Lovelace",
        "link": LINK,
        "calendar": True,
        "google_url": "https://calendar.google.com/calendar/render?action=TEMPLATE&text=x",
        "outlook_url": "https://outlook.live.com/calendar/0/action/compose?subject=x",
    }
    fields.update(overrides)
    return ShareView(**fields)  # type: ignore[arg-type]


def scheduled(**overrides: object) -> Space:
    fields: dict[str, object] = {"description": "Bring questions", "locale": "en"}
    fields.update(overrides)
    return make_space(SPACE_ID, **fields)


STATUSES = {
    SpaceStatus.SCHEDULED: {},
    SpaceStatus.LIVE: {"started_at": T0 + timedelta(minutes=2), "audio_source": "browser"},
    SpaceStatus.ENDED: {"started_at": T0, "ended_at": T0 + timedelta(hours=1)},
    SpaceStatus.CANCELLED: {},
}


@pytest.mark.parametrize("status", list(SpaceStatus))
def test_each_status_is_told_in_words_and_shape(status: SpaceStatus) -> None:
    space = scheduled(status=status, **STATUSES[status])
    now = T0 + timedelta(minutes=12) if status is SpaceStatus.LIVE else NOW
    doc = Doc(share_html(view(space, now=now, audio=True)))
    main = next(a for tag, a in doc.tags if tag == "main")
    assert main["class"] == f"share status-{status.value}"
    label, shape = doc.by_id["status-label"], doc.by_id["status-shape"]
    assert (label, shape) == {
        SpaceStatus.SCHEDULED: ("Scheduled", "◷"),
        SpaceStatus.LIVE: ("Live now", "●"),
        SpaceStatus.ENDED: ("Ended", "■"),
        SpaceStatus.CANCELLED: ("Cancelled", "✕"),
    }[status]
    avatar = doc.attrs("avatar")
    assert avatar["role"] == "img"
    if status is SpaceStatus.LIVE:
        assert avatar["class"] == "avatar-wrap ring"
        assert avatar["aria-label"] == "Ada Lovelace is live now"  # the ring, in words
        assert doc.by_id["relative"] == "Started 10 minutes ago"
        assert "hidden" not in doc.attrs("listen") and doc.attrs("player")["src"] == f"/s/{SPACE_ID}/listen"
    else:
        assert avatar["class"] == "avatar-wrap"
        assert avatar["aria-label"] == "Ada Lovelace's avatar"
        assert "hidden" in doc.attrs("listen") and "src" not in doc.attrs("player")
    if status is SpaceStatus.SCHEDULED:
        assert doc.by_id["relative"] == "Starts in 2 days"  # the no-JavaScript countdown
        assert "hidden" not in doc.attrs("calendar")
    else:
        assert "hidden" in doc.attrs("calendar")  # nothing left to add to a calendar
    closed = not status.is_open
    assert ("hidden" in doc.attrs("subscribers")) is closed
    assert ("hidden" in doc.attrs("subscribe")) is closed
    assert ("hidden" in doc.attrs("note")) is not closed
    if status is SpaceStatus.CANCELLED:
        assert doc.by_id["note"] == "The host cancelled this Space. It won't take place."
    assert doc.by_id["relative"] == "" or status in (SpaceStatus.SCHEDULED, SpaceStatus.LIVE)


def test_the_page_carries_the_host_the_times_and_the_calendar_links() -> None:
    doc = Doc(share_html(view(scheduled(tz="America/New_York"))))
    assert doc.by_id["title"] == "Friday jam"
    assert "Hosted by Ada Lovelace" in "".join(doc.text)
    assert doc.by_id["host-time"] == "Sat 14 Mar 2026, 14:30 EDT"  # T0 18:30 UTC in New York
    assert doc.attrs("host-time")["datetime"] == "2026-03-14T18:30:00Z"
    assert "Host's time (America/New York):" in "".join(doc.text)
    assert doc.by_id["subscribers-text"] == "12 subscribed"
    assert doc.attrs("relative")["aria-live"] == "polite"
    assert doc.attrs("countdown")["aria-hidden"] == "true"  # the ticking seconds are not read out
    hrefs = [a["href"] for tag, a in doc.tags if tag == "a"]
    assert f"/s/{SPACE_ID}.ics" in hrefs
    assert any(str(h).startswith("https://calendar.google.com/") for h in hrefs)
    assert any(str(h).startswith("https://outlook.live.com/") for h in hrefs)
    assert any(tag == "header" for tag, _ in doc.tags) and any(tag == "footer" for tag, _ in doc.tags)
    # the monogram stands in for an avatar; no <img> without one
    assert not any(tag == "img" for tag, _ in doc.tags[1:] if _.get("class") == "avatar")
    assert "AL" in doc.by_id["avatar"]


def test_places_become_buttons_and_none_says_to_use_the_chat() -> None:
    places = [
        Place("telegram", "Telegram", "https://t.me/spacesbot?start=sp2345abcd"),
        Place("discord", "Discord · #events", "https://discord.com/events/1/2"),
        Place("evil", "JS", "javascript:alert(1)"),  # never a link
    ]
    doc = Doc(share_html(view(scheduled(), places=places)))
    buttons = [(a["href"], a["data-join"]) for tag, a in doc.tags if tag == "a" and a.get("data-sub")]
    assert buttons == [
        ("https://t.me/spacesbot?start=sp2345abcd", "Join on Telegram"),
        ("https://discord.com/events/1/2", "Join on Discord · #events"),
    ]
    assert "Subscribe on Telegram" in "".join(doc.text)
    live = Doc(share_html(view(scheduled(status=SpaceStatus.LIVE), places=places[:1])))
    assert "Join on Telegram" in "".join(live.text)
    none = Doc(share_html(view(scheduled(), places=())))
    assert "Press 🔔 on the Space's card in the chat" in "".join(none.text)


def test_french_reader() -> None:
    doc = Doc(share_html(view(scheduled(), locale="fr", subscribers=1)))
    assert doc.by_id["status-label"] == "Programmé"
    assert doc.by_id["relative"] == "Commence dans 2 jours"
    assert doc.by_id["subscribers-text"] == "1 abonné"
    assert "Animé par Ada Lovelace" in "".join(doc.text)
    assert doc.by_id["host-time"] == "sam. 14 mars 2026, 19:30 CET"
    labels = json.loads(str(next(a for tag, a in doc.tags if tag == "main")["data-labels"]))
    assert labels["status"]["live"] == "En direct" and labels["units"] == "j h min s"


HOSTILE = [
    '<script>alert("x")</script>',
    '" onmouseover="alert(1)" x=\'',
    "</title><script>alert(1)</script>",
    "& &amp; &lt; ]]> -->",
    "x" * 5000,
]


@pytest.mark.parametrize("title", HOSTILE)
def test_hostile_titles_stay_text(title: str) -> None:
    space = scheduled(title=title, description=title)
    body = share_html(view(space, host_name=title))
    head = share_head(space, LINK)
    doc = Doc(head + body)
    assert doc.by_id["title"] == title
    assert not any(tag == "script" for tag, _ in doc.tags)
    assert all(not k.startswith("on") for _, attrs in doc.tags for k in attrs)
    meta = doc.meta()
    assert meta["og:title"] == title and meta["twitter:title"] == title
    labels = json.loads(str(next(a for tag, a in doc.tags if tag == "main")["data-labels"]))
    assert labels["ring_live"] == f"{title} is live now"


def test_opengraph_tags_in_the_hosts_language_and_zone() -> None:
    space = scheduled(locale="fr", description="Questions\net réponses " + "x" * 400)
    meta = Doc(share_head(space, LINK)).meta()
    assert meta["og:title"] == "Friday jam"
    assert meta["og:url"] == LINK
    assert meta["og:type"] == "website"
    assert meta["og:image"] == meta["twitter:image"] == f"{LINK}/preview.png"
    assert (meta["og:image:width"], meta["og:image:height"]) == ("1200", "630")
    assert meta["twitter:card"] == "summary_large_image"
    assert meta["og:description"].startswith(
        "sam. 14 mars 2026, 19:30 CET · Programmé — Questions et réponses"
    )
    assert meta["og:description"].endswith("…") and len(meta["og:description"]) < 260
    without_link = Doc(share_head(space, None)).meta()
    assert "og:url" not in without_link and "og:image" not in without_link  # never a relative URL


def test_relative_times_both_languages() -> None:
    at = datetime(2026, 12, 1, 18, 0, tzinfo=UTC)
    assert relative(at - timedelta(days=2, hours=5), at, "en") == "in 2 days"
    assert relative(at - timedelta(hours=1, minutes=59), at, "en") == "in 1 hour"
    assert relative(at - timedelta(seconds=30), at, "en") == "in 1 minute"
    assert relative(at + timedelta(minutes=5), at, "fr") == "il y a 5 minutes"
    assert relative(at - timedelta(days=1), at, "fr") == "dans 1 jour"


def test_monograms_and_their_colours() -> None:
    assert monogram("Ada Lovelace") == "AL"
    assert monogram("bob") == "B"
    assert monogram("") == "?"
    assert monogram("  🎧 dj_mix") == "DM"

    def luminance(hex_colour: str) -> float:
        channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    for colour in AVATAR_COLOURS:  # white initials on each: WCAG AA for text
        assert (1.05) / (luminance(colour) + 0.05) >= 4.5, colour


def test_the_state_the_page_follows() -> None:
    live = scheduled(status=SpaceStatus.LIVE, audio_source="browser", started_at=T0)
    assert state(live, 3, audio=True) == {
        "id": SPACE_ID,
        "status": "live",
        "title": "Friday jam",
        "starts_at": "2026-03-14T18:30:00Z",
        "started_at": "2026-03-14T18:30:00Z",
        "tz": "Europe/Paris",
        "subscribers": 3,
        "listen": f"/s/{SPACE_ID}/listen",
    }
    assert state(live, 3, audio=False)["listen"] is None
    assert state(replace(live, audio_source=None), 3, audio=True)["listen"] is None


def test_the_404_page_is_helpful_in_both_languages() -> None:
    doc = Doc(not_found_html("fr", "<b>nope</b>"))
    assert doc.by_id["title"] == "Ce Space n'existe pas"
    assert "« <b>nope</b> »" in "".join(doc.text)  # as text
    assert not any(tag == "b" for tag, _ in doc.tags)


# ------------------------------------------------------------------------------------ preview image


@pytest.mark.parametrize("status", list(SpaceStatus))
def test_the_preview_is_a_1200x630_png(status: SpaceStatus) -> None:
    png = render_preview(preview_of(scheduled(status=status, title="Friday jam " * 40)))
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (1200, 630)


def test_long_titles_wrap_to_three_lines_with_an_ellipsis() -> None:
    from bots.web.preview import BOLD, _font

    font = _font(BOLD, 64)
    lines = wrap("word " * 200, font, 1040, 3)
    assert len(lines) == 3 and lines[-1].endswith("…")
    assert all(font.getlength(line) <= 1040 for line in lines)
    assert wrap("x" * 5000, font, 1040, 3)[-1].endswith("…")
    assert wrap("Short", font, 1040, 3) == ["Short"]


async def test_the_preview_cache_draws_each_image_once_and_stays_bounded() -> None:
    cache = PreviewCache(size=2)
    a, b, c = (preview_of(scheduled(title=t)) for t in ("A", "B", "C"))
    first = await cache.get(a)
    assert await cache.get(a) == first and cache.renders == 1
    await cache.get(b)
    await cache.get(c)  # evicts a (least recently used)
    await cache.get(a)
    assert cache.renders == 4
    assert preview_of(scheduled()).etag == preview_of(scheduled()).etag
    assert preview_of(scheduled()).etag != preview_of(scheduled(status=SpaceStatus.LIVE)).etag
