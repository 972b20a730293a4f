"""The console REPL: reads command lines and hands them to the core's inbound path as if they came from a
chat platform.

Input is read by a daemon thread (a blocking ``readline`` must neither block the event loop nor keep the
process alive at exit), handed to the loop line by line; parsing is :mod:`bots.console.translate` (pure).
Space commands become the core's inbound commands (``core.services.inbound``), whose answers are printed;
only the console's own settings (``/as``, ``/mod``, ``/tz``, ``/lang``, ``/help``, ``/quit``) are handled
here. Everyone typing shares one chat, ``#main``; ``/as alice`` switches who is acting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from bots.console import translate as tr
from bots.console.adapter import ConsolePlatform
from core.errors import UserError
from core.notices import Verb
from core.ports import Links
from core.refs import ChatRef, Platform, UserRef
from core.services import inbound as ib
from core.services.inbound import InboundService
from core.services.manage import ModeratorCheck
from core.services.spaces import SpaceService
from core.texts import pick_locale, t
from core.timeparse import check_zone

log = logging.getLogger(__name__)

MAIN_CHAT = ChatRef(Platform.CONSOLE, "main")
HOST_NAME = "you"


@dataclass(frozen=True, slots=True)
class ConsoleIO:
    """Where the console reads commands and prints what the service sends."""

    input: TextIO
    output: TextIO
    color: bool | None = None  # None: colours when output is a terminal


@dataclass(slots=True)
class _Person:
    name: str
    locale: str
    tz: str | None = None
    moderator: bool = False


@dataclass(slots=True)
class _State:
    default_locale: str
    acting: str = HOST_NAME
    people: dict[str, _Person] = field(default_factory=dict)

    def person(self, name: str | None = None) -> _Person:
        name = name or self.acting
        if name not in self.people:
            self.people[name] = _Person(name, self.default_locale)
        return self.people[name]


class ConsoleRepl:
    def __init__(
        self,
        spaces: SpaceService,
        platform: ConsolePlatform,
        links: Links,
        *,
        inbound: InboundService,
        on_quit: Callable[[], None] = lambda: None,
        default_locale: str = "en",
        chat: ChatRef = MAIN_CHAT,
    ) -> None:
        self._spaces = spaces
        self._platform = platform
        self._links = links
        self._inbound = inbound
        self._on_quit = on_quit
        self._chat = chat
        self._state = _State(pick_locale(default_locale))

    # ------------------------------------------------------------------ reading

    async def run(self, stream: TextIO) -> None:
        """Handle lines from ``stream`` until /quit or end of input; both call ``on_quit``."""
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def reader() -> None:
            try:
                while True:
                    line = stream.readline()
                    if not line:
                        break
                    loop.call_soon_threadsafe(queue.put_nowait, line)
            except (OSError, ValueError, RuntimeError):  # closed stream, or the loop closed under us
                pass
            finally:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(queue.put_nowait, None)

        threading.Thread(target=reader, name="console-input", daemon=True).start()
        while True:
            line = await queue.get()
            if line is None or not await self.handle(line):
                break
        self._on_quit()

    def greet(self) -> None:
        self._say(t(self._state.default_locale, "console.greet", host=HOST_NAME, chat=self._chat.id))

    # ------------------------------------------------------------------ one line

    async def handle(self, line: str) -> bool:
        """Execute one line. Returns False when the console should stop (/quit)."""
        cmd = tr.parse(line)
        me = self._state.person()
        try:
            return await self._execute(cmd, me)
        except UserError as e:
            self._say(t(me.locale, e.key, **e.params))
        except Exception:
            log.exception("console command failed", extra={"line": line.strip()[:200]})
            self._say(t(me.locale, "console.error"))
        return True

    async def _execute(self, cmd: tr.Command, me: _Person) -> bool:
        if isinstance(cmd, tr.Empty):
            return True
        loc = me.locale
        if isinstance(cmd, tr.Problem):
            # a Problem without a key (English only) is still shown rather than lost
            self._say(t(loc, cmd.key, **cmd.params) if cmd.key else cmd.message)
        elif isinstance(cmd, tr.Help):
            zone = await self._zone(me)
            self._say(t(loc, "console.help", host=HOST_NAME, zone=zone))
        elif isinstance(cmd, tr.Quit):
            self._say(t(loc, "console.bye"))
            return False
        elif isinstance(cmd, tr.ActAs):
            self._state.acting = cmd.name
            now = self._state.person()  # who is acting from now on: answered in their language
            if cmd.name == HOST_NAME:
                self._say(t(now.locale, "console.as_host", host=HOST_NAME))
            else:
                self._say(t(now.locale, "console.as_listener", name=cmd.name, host=HOST_NAME))
        elif isinstance(cmd, tr.SetModerator):
            me.moderator = cmd.on
            key = "console.mod_on" if cmd.on else "console.mod_off"
            self._say(t(loc, key, name=me.name, chat=self._chat.id))
        elif isinstance(cmd, tr.SetZone):
            me.tz = check_zone(cmd.zone)
            self._say(t(loc, "console.zone_set", name=me.name, zone=me.tz))
        elif isinstance(cmd, tr.SetLanguage):
            me.locale = cmd.locale
            self._say(t(me.locale, "console.lang_set", name=me.name))  # said in the new language
        else:
            await self._space_command(cmd, me)
        return True

    async def _space_command(self, cmd: tr.Command, me: _Person) -> None:
        command = _inbound_command(cmd)
        if command is None:
            return
        req = ib.Request(
            actor=UserRef(Platform.CONSOLE, me.name),
            chat=self._chat,
            locale=me.locale,
            request_id=None,  # a line is typed once: nothing retries it
            private=False,
            # answers are printed on the operator's own terminal, which nobody else in #main reads: the
            # host's private link (live audio from the browser) may be shown there
            ephemeral=True,
            is_moderator=self._moderator(me),
            tz=me.tz,
        )
        for answer in await self._inbound.handle(req, command):
            self._say("\n".join(answer.notice.lines))
            if isinstance(command, ib.Schedule) and answer.notice.space_id is not None:
                self._say(t(me.locale, "console.scheduled_hint", space_id=answer.notice.space_id))

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _moderator(me: _Person) -> ModeratorCheck:
        async def check(chat: ChatRef, user: UserRef) -> bool:
            return me.moderator  # the console's /mod switch stands for the platform's admin check

        return check

    async def _zone(self, me: _Person) -> str:
        """The acting user's zone: /tz, else their profile's, else the chat's, else the default."""
        return await self._spaces.zone_for(UserRef(Platform.CONSOLE, me.name), self._chat, me.tz)

    def _say(self, text: str) -> None:
        self._platform.say(text)


_VERBS: dict[type[tr.Command], tuple[Verb, str]] = {
    tr.SubscribeTo: (Verb.SUBSCRIBE, "subscribe"),
    tr.UnsubscribeFrom: (Verb.UNSUBSCRIBE, "unsubscribe"),
    tr.Start: (Verb.START, "start"),
    tr.End: (Verb.END, "end"),
    tr.Cancel: (Verb.CANCEL, "cancel"),
}


def _inbound_command(cmd: tr.Command) -> ib.Command | None:
    """A console command about Spaces → the core's inbound command (None for the console's own)."""
    if isinstance(cmd, tr.Schedule):
        # "<when> <title>": the core splits them once it knows the zone to read the time in
        return ib.Schedule(cmd.text)
    if isinstance(cmd, tr.ListSpaces):
        return ib.ListSpaces(ib.ListStyle.TABLE)  # a terminal: ids, statuses, the reader's clock
    if isinstance(cmd, tr.SubscribeTo | tr.UnsubscribeFrom | tr.Start | tr.End | tr.Cancel):
        verb, name = _VERBS[type(cmd)]
        return ib.Manage(verb, cmd.space_id, name)
    if isinstance(cmd, tr.Reschedule):
        return ib.Reschedule(cmd.space_id, cmd.when_text)
    if isinstance(cmd, tr.Rename):
        return ib.Rename(cmd.space_id, cmd.title)
    if isinstance(cmd, tr.SetSource):
        return ib.SetSource(cmd.space_id, cmd.source)
    if isinstance(cmd, tr.LinkChat):
        return ib.Link(cmd.code)
    if isinstance(cmd, tr.UnlinkChat):
        return ib.Unlink()
    return None
