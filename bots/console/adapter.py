"""ConsolePlatform: core.ports.ChatPlatform for Platform.CONSOLE — every send is printed, readably.

    [#main] card 1 · Weekly AMA
    [#main] (edited card 1) 🟣 LIVE Weekly AMA
    [DM → alice] 🟣 “Weekly AMA” is live now — hosted by you.
    [#main] @alice @bob — I couldn't message you privately: …

Callback buttons are shown as the console command that does the same thing (``/subscribe <id>``), so
everything a Discord user can click, a console user can type.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from typing import TextIO

from core.notices import ActionKind, Notice, Verb, parse_callback
from core.refs import ChatRef, MessageRef, Platform, UserRef
from core.texts import t

log = logging.getLogger(__name__)

_VERB_COMMANDS: dict[Verb, str] = {
    Verb.SUBSCRIBE: "/subscribe",
    Verb.UNSUBSCRIBE: "/unsubscribe",
    Verb.START: "/start",
    Verb.END: "/end",
    Verb.CANCEL: "/cancel",
}
_INDENT = "    "
_KEYS_KEPT = 1000  # idempotency keys remembered (like Discord's nonce window)


class _Style:
    """ANSI colours when writing to a terminal; plain text otherwise (pipes, files, tests)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def _wrap(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.enabled else text

    def chat(self, text: str) -> str:
        return self._wrap("36", text)  # cyan

    def dm(self, text: str) -> str:
        return self._wrap("35", text)  # magenta

    def title(self, text: str) -> str:
        return self._wrap("1", text)  # bold

    def dim(self, text: str) -> str:
        return self._wrap("2", text)


def _safe(text: str) -> str:
    """Titles are user input: never let them move the cursor or recolour the terminal."""
    return "".join(c if c.isprintable() or c == "\n" else "�" for c in text)


class ConsolePlatform:
    platform = Platform.CONSOLE

    def __init__(self, out: TextIO, *, color: bool | None = None) -> None:
        self._out = out
        if color is None:
            isatty = getattr(out, "isatty", None)
            color = bool(isatty()) if callable(isatty) else False
        self._style = _Style(color)
        self._next_id = 0
        self._kinds: dict[
            str, str
        ] = {}  # message id → what it was ("card", "reply" …), for "(edited card 3)"
        self._keys: OrderedDict[str, MessageRef] = OrderedDict()
        self.started = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.started = False

    # ------------------------------------------------------------------ ChatPlatform

    async def post(self, chat: ChatRef, notice: Notice, *, key: str) -> MessageRef:
        if (seen := self._seen(key)) is not None:
            return seen
        ref = self._new(chat.id, notice.kind, key)
        self._print(self._style.chat(f"[#{chat.id}]"), f"{notice.kind} {ref.id} ·", notice)
        return ref

    async def edit(self, message: MessageRef, notice: Notice) -> None:
        kind = self._kinds.get(message.id, notice.kind)
        self._print(
            self._style.chat(f"[#{message.chat_id}]"),
            self._style.dim(t(notice.locale, "console.edited", kind=kind, id=message.id)),
            notice,
        )

    async def direct(self, user: UserRef, notice: Notice, *, key: str) -> MessageRef:
        if (seen := self._seen(key)) is not None:
            return seen
        ref = self._new(f"dm-{user.id}", notice.kind, key)
        self._print(self._style.dm(f"[DM → {_safe(user.id)}]"), "", notice)
        return ref

    async def mention(
        self, chat: ChatRef, users: Mapping[UserRef, str], notice: Notice, *, key: str
    ) -> MessageRef:
        if (seen := self._seen(key)) is not None:
            return seen
        ref = self._new(chat.id, "mention", key)
        # console users are named by their id; the display name is what the engine knows them as
        mentions = " ".join(f"@{_safe(name or u.id)}" for u, name in users.items())
        head = t(notice.locale, "notice.mention", mentions=mentions)
        self._print(self._style.chat(f"[#{chat.id}]"), head, notice)
        return ref

    # ------------------------------------------------------------------ helpers

    def render(self, notice: Notice) -> list[str]:
        """The notice as console lines (pure apart from the colour choice)."""
        head = _safe(notice.title)
        if notice.marker:
            head = f"{notice.marker} {head}"
        lines = [self._style.title(head)]
        lines += [_INDENT + _safe(line) for line in notice.lines]
        buttons: list[str] = []
        for action in notice.actions:
            if action.kind is ActionKind.URL:
                buttons.append(f"[{action.label} → {action.value}]")
                continue
            parsed = parse_callback(action.value)
            if parsed is None:
                continue
            verb, space_id = parsed
            command = f"{_VERB_COMMANDS.get(verb, '/' + verb.value)} {space_id}"
            host_only = " " + t(notice.locale, "console.host_only") if action.host_only else ""
            buttons.append(f"[{action.label}: {command}{host_only}]")
        if buttons:
            lines.append(_INDENT + self._style.dim(" ".join(buttons)))
        return lines

    def _print(self, where: str, tag: str, notice: Notice) -> None:
        body = self.render(notice)
        first = " ".join(part for part in (where, tag, body[0]) if part)
        self._out.write("\n".join([first, *body[1:]]) + "\n")
        self._out.flush()

    def _new(self, chat_id: str, kind: str, key: str | None) -> MessageRef:
        self._next_id += 1
        ref = MessageRef(Platform.CONSOLE, chat_id, str(self._next_id))
        self._kinds[ref.id] = kind
        if key is not None:
            self._keys[key] = ref
            if len(self._keys) > _KEYS_KEPT:
                self._keys.popitem(last=False)
        return ref

    def _seen(self, key: str) -> MessageRef | None:
        # the same idempotency key twice (a crash between send and record): shown once, like a Discord nonce
        return self._keys.get(key)

    def say(self, text: str) -> None:
        """A line from the console itself (replies to the person typing, help)."""
        self._out.write(_safe(text) + "\n")
        self._out.flush()
