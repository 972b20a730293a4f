"""Console input → command, pure: a line of text in, a dataclass out (or a Problem explaining the syntax).

No core calls here, so every parse is a one-line unit test; :mod:`bots.console.repl` executes the result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from core.commands import schedule_text
from core.texts import t


@dataclass(frozen=True, slots=True)
class Schedule:
    text: str  # "<when> <title>", split by core.timeparse.split_when_and_title


@dataclass(frozen=True, slots=True)
class ListSpaces:
    pass


@dataclass(frozen=True, slots=True)
class SubscribeTo:
    space_id: str


@dataclass(frozen=True, slots=True)
class UnsubscribeFrom:
    space_id: str


@dataclass(frozen=True, slots=True)
class Start:
    space_id: str


@dataclass(frozen=True, slots=True)
class End:
    space_id: str


@dataclass(frozen=True, slots=True)
class Cancel:
    space_id: str


@dataclass(frozen=True, slots=True)
class Reschedule:
    space_id: str
    when_text: str


@dataclass(frozen=True, slots=True)
class Rename:
    space_id: str
    title: str


@dataclass(frozen=True, slots=True)
class SetSource:
    space_id: str
    source: str


@dataclass(frozen=True, slots=True)
class LinkChat:
    """``/link`` (a code linking the console with another chat) or ``/link <code>``."""

    code: str


@dataclass(frozen=True, slots=True)
class UnlinkChat:
    pass


@dataclass(frozen=True, slots=True)
class ActAs:
    name: str


@dataclass(frozen=True, slots=True)
class SetModerator:
    on: bool


@dataclass(frozen=True, slots=True)
class SetZone:
    zone: str


@dataclass(frozen=True, slots=True)
class SetLanguage:
    locale: str


@dataclass(frozen=True, slots=True)
class Help:
    pass


@dataclass(frozen=True, slots=True)
class Quit:
    pass


@dataclass(frozen=True, slots=True)
class Empty:
    pass


@dataclass(frozen=True, slots=True)
class Problem:
    """The line could not be understood; ``message`` says how to write it (in English), ``key`` and
    ``params`` the same in the reader's language (core/texts.py)."""

    message: str
    key: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)


def _problem(key: str, **params: str) -> Problem:
    return Problem(t("en", key, **params), key, params)


Command = (
    Schedule
    | ListSpaces
    | SubscribeTo
    | UnsubscribeFrom
    | Start
    | End
    | Cancel
    | Reschedule
    | Rename
    | SetSource
    | LinkChat
    | UnlinkChat
    | ActAs
    | SetModerator
    | SetZone
    | SetLanguage
    | Help
    | Quit
    | Empty
    | Problem
)

_ID_COMMANDS: dict[str, type[SubscribeTo | UnsubscribeFrom | Start | End | Cancel]] = {
    "subscribe": SubscribeTo,
    "sub": SubscribeTo,
    "unsubscribe": UnsubscribeFrom,
    "unsub": UnsubscribeFrom,
    "start": Start,
    "end": End,
    "cancel": Cancel,
}
_LANGS = ("en", "fr")
_NAME_MAX = 32


def parse(line: str) -> Command:
    """One console line → one command. Never raises."""
    text = line.strip()
    if not text:
        return Empty()
    if not text.startswith("/"):
        return _problem("console.not_a_command")
    head, _, rest = text[1:].partition(" ")
    verb = head.lower()
    rest = rest.strip()
    if verb == "space":
        args = schedule_text(rest)
        if not args:
            return _problem("console.usage.space")
        return Schedule(args)
    if verb == "spaces":
        return ListSpaces()
    if verb in _ID_COMMANDS:
        space_id = rest.split(" ", 1)[0] if rest else ""
        if not space_id:
            return _problem("console.usage.id", command=verb)
        return _ID_COMMANDS[verb](space_id)
    if verb == "reschedule":
        space_id, _, when = rest.partition(" ")
        if not space_id or not when.strip():
            return _problem("console.usage.reschedule")
        return Reschedule(space_id, when.strip())
    if verb == "rename":
        space_id, _, title = rest.partition(" ")
        if not space_id or not title.strip():
            return Problem("Usage: /rename <id> <new title>, e.g. /rename abcd234567 Weekly AMA #2")
        return Rename(space_id, title.strip())
    if verb == "source":
        space_id, _, source = rest.partition(" ")
        if not space_id or not source.strip():
            return _problem("console.usage.source")
        return SetSource(space_id, source.strip())
    if verb == "link":
        return LinkChat(rest)
    if verb == "unlink":
        return UnlinkChat()
    if verb == "as":
        name = rest.split(" ", 1)[0].lstrip("@") if rest else ""
        if not name or len(name) > _NAME_MAX or not all(c.isalnum() or c in "_-." for c in name):
            return _problem("console.usage.as")
        return ActAs(name.lower())
    if verb == "mod":
        flag = rest.lower()
        if flag not in ("on", "off"):
            return _problem("console.usage.mod")
        return SetModerator(flag == "on")
    if verb == "tz":
        if not rest or " " in rest:
            return _problem("console.usage.tz")
        return SetZone(rest)
    if verb in ("lang", "language"):
        loc = rest.lower()
        if loc not in _LANGS:
            return _problem("console.usage.lang", choices="|".join(_LANGS))
        return SetLanguage(loc)
    if verb in ("help", "?"):
        return Help()
    if verb in ("quit", "exit"):
        return Quit()
    return _problem("console.unknown", command=head)
