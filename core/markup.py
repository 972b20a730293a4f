"""How core texts mark what a platform renders specially, and pure helpers to render it: every adapter's.

Texts in :mod:`core.texts` are plain text in which a `code` span (backquotes, one line) marks a command or a
value to copy ("try `/space tomorrow 20:00`"). Each platform shows a code span its own way and escapes the
rest its own way; the split is the same everywhere, so it lives here, once.

Commands are named as the console and Telegram type them (`/rename <id> …`, `/spaces`, `/tz`); a platform
whose users type one ``/space`` command with subcommands (Discord, Slack) rewrites them with
:func:`as_subcommands`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

CODE_SPAN = re.compile(r"`([^`\n]+)`")
_COMMAND_SPAN = re.compile(r"`/([a-z]+)([^`\n]*)`")


def with_code_spans(text: str, *, plain: Callable[[str], str], code: Callable[[str], str]) -> str:
    """``text`` rendered piece by piece: ``plain`` for what lies outside code spans, ``code`` for the inside
    of each span (which must add the platform's own code markup)."""
    out: list[str] = []
    last = 0
    for m in CODE_SPAN.finditer(text):
        out.append(plain(text[last : m.start()]))
        out.append(code(m.group(1)))
        last = m.end()
    out.append(plain(text[last:]))
    return "".join(out)


def as_subcommands(
    text: str, subcommands: Mapping[str, str], *, space: Callable[[str], str] | None = None
) -> str:
    """The commands ``text`` names in code spans, as subcommands of ``/space``: `/rename <id> …` →
    `/space rename <id> …` for each ``{"rename": "rename"}`` of ``subcommands``. Commands the platform lacks
    stay as they are. ``space``: how a span naming ``/space`` itself is rewritten (given the whole span), if
    the platform's ``/space`` differs from the chat's."""

    def fix(m: re.Match[str]) -> str:
        name, rest = m.group(1), m.group(2)
        if name == "space":
            return space(m.group(0)) if space is not None else m.group(0)
        if name in subcommands:
            return f"`/space {subcommands[name]}{rest}`"
        return m.group(0)

    return _COMMAND_SPAN.sub(fix, text)
