"""The console REPL: reads command lines and drives the SpaceService as if they came from a chat platform.

Input is read by a daemon thread (a blocking ``readline`` must neither block the event loop nor keep the
process alive at exit), handed to the loop line by line; parsing is :mod:`bots.console.translate` (pure).
Everyone typing shares one chat, ``#main``; ``/as alice`` switches who is acting.
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
from core.commands import (
    ScheduleSpace,
    Subscribe,
    Unsubscribe,
)
from core.errors import UserError
from core.models import Space
from core.notices import Verb
from core.ports import Links
from core.refs import ChatRef, Platform, UserRef
from core.rules import Actor
from core.services.manage import ManageService, ModeratorCheck
from core.services.spaces import SpaceService
from core.texts import pick_locale, t
from core.timeparse import check_zone, format_local

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
        on_quit: Callable[[], None] = lambda: None,
        default_locale: str = "en",
        chat: ChatRef = MAIN_CHAT,
    ) -> None:
        self._spaces = spaces
        self._platform = platform
        self._links = links
        self._manage = ManageService(spaces, links)
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
        user = UserRef(Platform.CONSOLE, me.name)
        actor = Actor(user, is_moderator=me.moderator, locale=me.locale, tz=me.tz)
        loc = me.locale
        if isinstance(cmd, tr.Schedule):
            # an empty title: the service splits "<when> <title>" once it knows the zone to read it in
            space = await self._spaces.schedule(
                ScheduleSpace(actor=actor, chat=self._chat, title="", when_text=cmd.text, tz=me.tz)
            )
            self._say(self._manage.scheduled(space, loc).text)
            self._say(t(loc, "console.scheduled_hint", space_id=space.id))
        elif isinstance(cmd, tr.ListSpaces):
            found = await self._spaces.upcoming(self._chat)
            if not found:
                self._say(t(loc, "reply.no_spaces"))
            zone = await self._zone(me)  # the reader's zone, not each Space's: one list, one clock
            for s in found:
                status = t(loc, f"status.{s.status.value}")
                self._say(f"  {s.id}  {format_local(s.starts_at, zone, loc)}  {s.title}  [{status}]")
        elif isinstance(cmd, tr.SubscribeTo):
            res = await self._spaces.subscribe(Subscribe(user, cmd.space_id, via_chat=self._chat, locale=loc))
            key = "reply.subscribed" if res.changed else "reply.already_subscribed"
            self._say(t(loc, key, title=res.space.title))
        elif isinstance(cmd, tr.UnsubscribeFrom):
            res = await self._spaces.unsubscribe(Unsubscribe(user, cmd.space_id))
            key = "reply.unsubscribed" if res.changed else "reply.not_subscribed"
            self._say(t(loc, key, title=res.space.title))
        elif isinstance(cmd, tr.Start | tr.End | tr.Cancel):
            verb = (
                Verb.START
                if isinstance(cmd, tr.Start)
                else Verb.END
                if isinstance(cmd, tr.End)
                else Verb.CANCEL
            )
            reply = await self._manage.run(verb, user, loc, cmd.space_id, is_moderator=self._moderator(me))
            self._say(reply.text)
        elif isinstance(cmd, tr.Reschedule):
            reply = await self._manage.reschedule(
                user, loc, cmd.space_id, cmd.when_text, is_moderator=self._moderator(me)
            )
            self._say(reply.text)
        elif isinstance(cmd, tr.Rename):
            reply = await self._manage.rename(
                user, loc, cmd.space_id, cmd.title, is_moderator=self._moderator(me)
            )
            self._say(reply.text)

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _moderator(me: _Person) -> ModeratorCheck:
        async def check(chat: ChatRef, user: UserRef) -> bool:
            return me.moderator  # the console's /mod switch stands for the platform's admin check

        return check

    @staticmethod
    def _when(space: Space, locale: str) -> str:
        return format_local(space.starts_at, space.tz, locale)

    async def _zone(self, me: _Person) -> str:
        """The acting user's zone: /tz, else their profile's, else the chat's, else the default."""
        return await self._spaces.zone_for(UserRef(Platform.CONSOLE, me.name), self._chat, me.tz)

    def _say(self, text: str) -> None:
        self._platform.say(text)
