"""``/s/<id>/preview.png``: the 1200×630 image an unfurl shows (og:image, twitter:image), drawn with Pillow.

What it shows is a :class:`Preview` (the title, the time in the host's zone, the status, in the host's
language: see bots/web/share.py): the cache is keyed by it, so a rename, a reschedule or going live makes a
new image and nothing else does. Rendering takes tens of milliseconds of CPU: it runs in a thread
(``asyncio.to_thread``), never on the event loop, and a bounded LRU keeps the recent ones.

The font is DejaVu Sans, vendored in bots/web/static/ with its licence (LICENSE-DejaVu.txt: the Bitstream
Vera licence, free to redistribute): a fresh machine has no fonts, and Pillow's bundled default has no
accents. Characters DejaVu lacks (emoji, most CJK) draw as boxes: the page itself shows them.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import io
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from bots.web.share import PREVIEW_HEIGHT, PREVIEW_WIDTH, SHAPES
from core.models import Space, SpaceStatus
from core.texts import t
from core.timeparse import format_local

STATIC = Path(__file__).parent / "static"
REGULAR = STATIC / "DejaVuSans.ttf"
BOLD = STATIC / "DejaVuSans-Bold.ttf"

CACHE_SIZE = 128  # images kept (≈ 30–60 KB each)
TITLE_LINES = 3
MARGIN = 80

BACKGROUND = (29, 22, 56)  # deep purple: white text on it is ≈ 16:1
ACCENT = (124, 58, 237)
TEXT = (255, 255, 255)
MUTED = (205, 198, 230)
STATUS_COLOURS: dict[SpaceStatus, tuple[int, int, int]] = {
    SpaceStatus.SCHEDULED: (182, 162, 255),
    SpaceStatus.LIVE: (196, 166, 255),
    SpaceStatus.ENDED: (195, 199, 207),
    SpaceStatus.CANCELLED: (255, 155, 143),
}


@dataclass(frozen=True, slots=True)
class Preview:
    """Everything the image shows (and nothing else: it is the cache key)."""

    title: str
    when: str
    status: SpaceStatus
    status_text: str
    tagline: str

    @property
    def etag(self) -> str:
        fields = "\x1f".join((self.title, self.when, self.status.value, self.status_text, self.tagline))
        return hashlib.sha256(fields.encode()).hexdigest()[:32]


def preview_of(space: Space) -> Preview:
    locale = space.locale
    return Preview(
        title=" ".join(space.title.split()),
        when=format_local(space.starts_at, space.tz, locale),
        status=space.status,
        status_text=t(locale, f"web.status.{space.status.value}"),
        tagline=t(locale, "web.tagline"),
    )


@functools.cache
def _font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size)


def render_preview(preview: Preview) -> bytes:
    """The PNG bytes (1200×630, RGB). Pure and thread-safe (fonts are read-only once loaded)."""
    image = Image.new("RGB", (PREVIEW_WIDTH, PREVIEW_HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(image)
    # a soft accent band on the right, and the Spaces mark with its name at the top left
    draw.ellipse((PREVIEW_WIDTH - 380, -220, PREVIEW_WIDTH + 260, 420), fill=(45, 33, 92))
    _mark(draw, MARGIN, 64, 56)
    draw.text((MARGIN + 76, 92), "Spaces", font=_font(BOLD, 40), fill=TEXT, anchor="lm")

    # the status: its shape and its word, in a pill (live: filled, as on the page)
    colour = STATUS_COLOURS[preview.status]
    label = f"{SHAPES[preview.status]}  {preview.status_text.upper()}"
    status_font = _font(BOLD, 30)
    left, top = MARGIN, 170
    width = int(draw.textlength(label, font=status_font)) + 48
    box = (left, top, left + width, top + 56)
    if preview.status is SpaceStatus.LIVE:
        draw.rounded_rectangle(box, radius=28, fill=ACCENT)
        draw.text((left + 24, top + 28), label, font=status_font, fill=TEXT, anchor="lm")
    else:
        draw.rounded_rectangle(
            box, radius=28 if preview.status is SpaceStatus.SCHEDULED else 10, outline=colour, width=3
        )
        draw.text((left + 24, top + 28), label, font=status_font, fill=colour, anchor="lm")

    # the title: wrapped to the width, at most three lines, the last ellipsised
    title_font = _font(BOLD, 64)
    lines = wrap(preview.title, title_font, PREVIEW_WIDTH - 2 * MARGIN, TITLE_LINES)
    y = 262
    for line in lines:
        draw.text((MARGIN, y), line, font=title_font, fill=TEXT)
        y += 76
    if preview.status is SpaceStatus.CANCELLED and lines:
        # struck through, as on the page (not by colour alone)
        for i, line in enumerate(lines):
            mid = 262 + i * 76 + 38
            draw.line(
                (MARGIN, mid, MARGIN + draw.textlength(line, font=title_font), mid), fill=colour, width=5
            )

    # the time in the host's zone, and the tagline at the bottom
    draw.text((MARGIN, PREVIEW_HEIGHT - 120), preview.when, font=_font(REGULAR, 38), fill=MUTED)
    draw.text((MARGIN, PREVIEW_HEIGHT - 62), preview.tagline, font=_font(REGULAR, 24), fill=MUTED)

    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def wrap(text: str, font: ImageFont.FreeTypeFont, width: int, max_lines: int) -> list[str]:
    """Greedy word wrap to ``width`` pixels; a word wider than a line is cut; beyond ``max_lines`` the
    last line ends with "…"."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if font.getlength(candidate) <= width:
            current = candidate
            continue
        if current:
            lines.append(current)
        current = word
        while font.getlength(current) > width:  # one word longer than a line: cut it
            cut = _fit(current, font, width)
            lines.append(current[:cut])
            current = current[cut:]
            if len(lines) >= max_lines:
                break
        if len(lines) >= max_lines:
            return _ellipsis(lines[:max_lines], font, width)
    if current:
        lines.append(current)
    if len(lines) > max_lines:
        return _ellipsis(lines[:max_lines], font, width)
    return lines


def _fit(text: str, font: ImageFont.FreeTypeFont, width: int) -> int:
    """How many leading characters of ``text`` fit in ``width`` (at least one)."""
    low, high = 1, len(text)
    while low < high:
        mid = (low + high + 1) // 2
        if font.getlength(text[:mid]) <= width:
            low = mid
        else:
            high = mid - 1
    return low


def _ellipsis(lines: list[str], font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    last = lines[-1]
    while last and font.getlength(last.rstrip() + "…") > width:
        last = last[:-1]
    lines[-1] = last.rstrip() + "…"
    return lines


def _mark(draw: ImageDraw.ImageDraw, x: int, y: int, size: int) -> None:
    """The Spaces mark (bots/web/share.MARK_SVG): a purple disc, a dot and two sound waves."""
    s = size / 32
    draw.ellipse((x + s, y + s, x + 31 * s, y + 31 * s), fill=ACCENT)
    draw.ellipse((x + 9 * s, y + 13 * s, x + 15 * s, y + 19 * s), fill=TEXT)
    width = max(2, round(2.4 * s))
    draw.arc((x + 9 * s, y + 8 * s, x + 25 * s, y + 24 * s), start=-50, end=50, fill=TEXT, width=width)
    draw.arc((x + 6 * s, y + 4 * s, x + 30 * s, y + 28 * s), start=-50, end=50, fill=TEXT, width=width)


class PreviewCache:
    """A bounded LRU of rendered images, keyed by what they show; renders off the event loop, once per key
    even when many unfurlers ask at the same moment."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self._images: OrderedDict[Preview, bytes] = OrderedDict()
        self._pending: dict[Preview, asyncio.Future[bytes]] = {}
        self.renders = 0  # how many were drawn (tests: a second request is served from the cache)

    async def get(self, preview: Preview) -> bytes:
        if preview in self._images:
            self._images.move_to_end(preview)
            return self._images[preview]
        pending = self._pending.get(preview)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[preview] = future
        try:
            self.renders += 1
            png = await asyncio.to_thread(render_preview, preview)
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        finally:
            del self._pending[preview]
        future.set_result(png)
        self._images[preview] = png
        while len(self._images) > self.size:
            self._images.popitem(last=False)
        return png
