"""What the person who scheduled, moved or renamed a Space is told: the same text on every platform.

Time and title are shown on lines of their own, so a misread of either is seen at once, and each reply ends
with the one-step fixes (``/rename <id> <title>``, ``/reschedule <id> <when>``). Adapters call these with the
reader's locale and send the text as their platform formats it (Markdown-style `code` marks the commands).
"""

from __future__ import annotations

from core.models import Space
from core.texts import t
from core.timeparse import format_local


def fixes(space: Space, locale: str) -> str:
    """ "Wrong title? /rename <id> <new title> · Wrong time? /reschedule <id> <new time>"."""
    return t(locale, "reply.fix", space_id=space.id)


def when_text(space: Space, locale: str) -> str:
    """The words every confirmation states the start with (in the Space's zone): a reply carries them as
    ``Notice.when_text`` so a platform can show the time natively instead."""
    return format_local(space.starts_at, space.tz, locale)


def preview(title: str, when: str, locale: str) -> str:
    """What scheduling would do, before it is done (a form's preview): the title and time it would get."""
    return t(locale, "reply.preview", title=title, when=when)


def scheduled(space: Space, locale: str, link: str, *, more: str = "") -> str:
    """The confirmation of a new Space: title, time (in the Space's zone), link, ``more`` lines (the host's
    private link), and the fixes — last, as in every confirmation."""
    when = when_text(space, locale)
    head = t(locale, "reply.scheduled", title=space.title, when=when, link=link)
    return head + more + "\n" + fixes(space, locale)


def rescheduled(space: Space, locale: str) -> str:
    when = when_text(space, locale)
    return t(locale, "reply.rescheduled", title=space.title, when=when) + "\n" + fixes(space, locale)


def renamed(space: Space, locale: str) -> str:
    when = when_text(space, locale)
    return t(locale, "reply.renamed", title=space.title, when=when) + "\n" + fixes(space, locale)
