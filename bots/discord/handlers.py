"""Interaction handlers: acknowledge first, then hand the core's inbound path a command, and render its answers.

Commands and buttons go through :class:`core.services.inbound.InboundService`, like every platform's: the
handlers only read the interaction (:mod:`bots.discord.translate`) into a ``Request`` and a command
(``Schedule``, ``ListSpaces``, ``Manage``, ``Reschedule``, ``Rename``, ``Press``) and render the answers
(:func:`bots.discord.render.render_reply`: escaped, the stated time native, nobody pinged).

Both transports end here: the gateway (:meth:`Handlers.on_interaction`, a ``discord.Interaction``) and the
HTTP endpoint (:meth:`Handlers.on_http`, the raw JSON; its return value is the HTTP response body). Each
interaction gets its first response within Discord's 3 seconds, before anything slow:

- autocomplete answers at once from cheap queries (the parsed time's preview, zone names, the Spaces this
  member may manage);
- everything else is deferred ("thinking…"), privately unless meant for the channel, and followed up.

Answers to the member are interaction follow-ups (the interaction's webhook), NOT outbox replies: only the
interaction token can make a message private to its reader, and it expires after 15 minutes — an engine
retrying later could not send it at all. So the outbox carries what must survive a crash (the Space's
public card, reminders, notices: written with the effect, in one transaction) and the follow-up carries the
private "done ✓" or "refused because …", sent once, best effort: if it is lost, the effect is committed and
the card shows it. The interaction itself is the idempotency key: its id is the core's request id
(``dc:<interaction id>``), so a duplicated interaction (a gateway resume, a replayed HTTP request) never
acts twice; subscribing and unsubscribing set a state, which is idempotent on its own. And before acting,
the interaction is claimed in the database (:meth:`RepliesService.finish` with no rows): a copy that reached
a second web process is not answered twice either.

Permissions come with the interaction: the host; members with Manage Events (or Administrator) in the guild
where the Space is announced, read from the member's permission bits; or the configured moderator role (by
id). No network call is needed — but for a moderator role configured by NAME, which only the guild's role
list resolves: then the adapter's own check is asked, after the deferral.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Protocol

import aiohttp
import discord
from discord import app_commands

from bots.discord import commands as slash
from bots.discord import translate as tr
from bots.discord.render import Rendered, render_reply
from bots.discord.translate import Incoming, Kind
from core import rules
from core.commands import ScheduleSpace
from core.errors import UserError
from core.ids import looks_like_space_id
from core.models import SpaceStatus
from core.notices import Notice, reply
from core.ports import Clock, Links
from core.refs import ChatRef, Platform, UserRef
from core.rules import Actor
from core.services.inbound import (
    InboundService,
    Press,
    Request,
)
from core.services.manage import ModeratorCheck
from core.services.replies import Answer, RepliesService
from core.services.spaces import SpaceService
from core.texts import t
from core.timeparse import format_local, parse_when

log = logging.getLogger(__name__)

DISCORD_API = "https://discord.com/api/v10"
FIRST_RESPONSE_WITHIN = 2.5  # seconds: Discord drops an interaction not answered within 3
FOLLOWUP_TIMEOUT = 10.0
# what /space does in the bot's DMs: link (or unlink) this person's accounts across platforms — a private
# Request is what makes the core link the account rather than a chat. Everything else is about a server
# channel's Spaces and is answered dc.guild_only there
DM_SUBCOMMANDS = frozenset({"link", "unlink"})
# which Spaces each subcommand can act on (autocomplete offers only those)
_STATUSES = {
    "start": (SpaceStatus.SCHEDULED,),
    "cancel": (SpaceStatus.SCHEDULED,),
    "reschedule": (SpaceStatus.SCHEDULED,),
    "rename": (SpaceStatus.SCHEDULED, SpaceStatus.LIVE),
    "end": (SpaceStatus.LIVE,),
    "source": (SpaceStatus.SCHEDULED, SpaceStatus.LIVE),
    "bridge": (SpaceStatus.SCHEDULED, SpaceStatus.LIVE),
    "unbridge": (SpaceStatus.SCHEDULED, SpaceStatus.LIVE),
}


class Responder(Protocol):
    """How one interaction is answered, whatever its transport."""

    responded: bool  # the first response was given

    async def pong(self) -> None: ...

    async def choices(self, choices: list[tuple[str, str]]) -> None:
        """The autocomplete result: (shown name, value) pairs."""
        ...

    async def defer(self, *, ephemeral: bool) -> None:
        """Acknowledge now, answer later with :meth:`send`."""
        ...

    async def send(self, message: Rendered) -> None:
        """A follow-up message (after :meth:`defer`), private when ``message.ephemeral``. Never pings
        anyone (``allowed_mentions`` is empty)."""
        ...


class GatewayResponder:
    """Answers through discord.py's interaction objects (the callback and follow-up webhooks)."""

    def __init__(self, interaction: discord.Interaction[Any]) -> None:
        self._i = interaction
        self.responded = False

    async def pong(self) -> None:  # the gateway never pings
        self.responded = True

    async def choices(self, choices: list[tuple[str, str]]) -> None:
        self.responded = True
        await self._i.response.autocomplete(
            [app_commands.Choice(name=tr.clip(n), value=tr.clip(v)) for n, v in choices[: tr.MAX_CHOICES]]
        )

    async def defer(self, *, ephemeral: bool) -> None:
        self.responded = True
        await self._i.response.defer(ephemeral=ephemeral, thinking=True)

    async def send(self, message: Rendered) -> None:
        # answers carry no buttons (they would need a discord.ui.View here): text only
        await self._i.followup.send(
            message.content or "…",
            ephemeral=message.ephemeral,
            allowed_mentions=discord.AllowedMentions.none(),
        )


class HttpResponder:
    """The first response becomes the HTTP response body (:attr:`first`); follow-ups are POSTed to the
    interaction's webhook, ``{api}/webhooks/{application id}/{token}`` (no bot token needed)."""

    def __init__(self, incoming: Incoming, session: Callable[[], aiohttp.ClientSession], api: str) -> None:
        self._incoming = incoming
        self._session = session
        self._api = api.rstrip("/")
        self.first: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.responded = False

    def _respond(self, body: dict[str, Any]) -> None:
        self.responded = True
        if not self.first.done():
            self.first.set_result(body)

    async def pong(self) -> None:
        self._respond({"type": 1})

    async def choices(self, choices: list[tuple[str, str]]) -> None:
        self._respond(tr.choices_body(choices))

    async def defer(self, *, ephemeral: bool) -> None:
        self._respond(tr.defer_body(ephemeral=ephemeral))

    async def send(self, message: Rendered) -> None:
        inc = self._incoming
        url = f"{self._api}/webhooks/{inc.application_id}/{inc.token}"
        body = message.interaction_data()
        # the URL holds the interaction token: log the status or the error's kind, never the URL
        try:
            async with self._session() as session, session.post(url, json=body) as resp:
                if resp.status >= 300:
                    log.warning(
                        "discord follow-up refused: HTTP %s", resp.status, extra={"interaction_id": inc.id}
                    )
        except (aiohttp.ClientError, TimeoutError) as e:
            log.warning("discord follow-up not sent: %s", type(e).__name__, extra={"interaction_id": inc.id})


class Handlers:
    def __init__(
        self,
        *,
        spaces: SpaceService,
        inbound: InboundService,
        replies: RepliesService | None = None,
        links: Links,
        clock: Clock,
        moderator_role: str | None = None,
        is_moderator: ModeratorCheck | None = None,
        api_base: str = DISCORD_API,
        first_response_within: float = FIRST_RESPONSE_WITHIN,
    ) -> None:
        self._spaces = spaces
        self._inbound = inbound
        self._replies = replies
        self._links = links
        self._clock = clock
        role = (moderator_role or "").strip() or None
        # a role id is checked against the interaction's roles; a role NAME needs the guild's role list:
        # then the platform's own (network) check decides what the interaction alone cannot
        self._moderator_role = role if role is None or role.isdigit() else None
        self._slow_check = is_moderator if role is not None and not role.isdigit() else None
        self._api = api_base
        self._first_within = first_response_within
        self._tasks: set[asyncio.Task[None]] = set()

    @staticmethod
    def commands() -> list[dict[str, Any]]:
        """The application commands to register (the adapter does, after login)."""
        return slash.commands()

    # ------------------------------------------------------------------ transports

    async def on_interaction(self, interaction: discord.Interaction[Any]) -> None:
        """Every gateway INTERACTION_CREATE (the adapter forwards them)."""
        try:
            incoming = tr.from_interaction(interaction)
        except tr.BadInteraction as e:
            log.warning("unusable discord interaction ignored: %s", e)
            return
        await self._dispatch(incoming, GatewayResponder(interaction))

    async def on_http(self, payload: dict[str, Any]) -> dict[str, Any]:
        """A verified interaction from the HTTP endpoint → the first response's body. The rest of the work
        (the effect, the follow-up) goes on in the background. Raises BadInteraction (a ValueError) for a
        payload we cannot act on."""
        incoming = tr.from_payload(payload)
        if incoming.kind is Kind.PING:
            return {"type": 1}
        responder = HttpResponder(incoming, self._session, self._api)
        task = asyncio.create_task(self._dispatch(incoming, responder))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            return await asyncio.wait_for(asyncio.shield(responder.first), self._first_within)
        except TimeoutError:
            # too slow to decide in time (a database stall): acknowledge anyway; the answer follows
            log.warning("discord interaction deferred late", extra={"interaction_id": incoming.id})
            return tr.defer_body(ephemeral=True)

    @staticmethod
    def _session() -> aiohttp.ClientSession:
        # one short-lived session per follow-up (one per interaction): nothing to close at shutdown
        return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=FOLLOWUP_TIMEOUT))

    async def drain(self) -> None:
        """Wait for the background work of HTTP interactions (tests; shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        await self.drain()

    # ------------------------------------------------------------------ routing

    async def _dispatch(self, inc: Incoming, r: Responder) -> None:
        try:
            await self._route(inc, r)
        except Exception as e:  # a bug or an outage: the member is told, never left "thinking…"
            log.error("discord interaction failed", exc_info=e, extra={"interaction_id": inc.id})
            try:
                if inc.kind is Kind.AUTOCOMPLETE:
                    if not r.responded:
                        await r.choices([])
                    return
                if not r.responded:
                    await r.defer(ephemeral=True)
                await r.send(_private(t(inc.locale, "error.generic"), inc.locale))
            except Exception as again:
                log.warning("could not tell the member: %s", type(again).__name__)

    async def _route(self, inc: Incoming, r: Responder) -> None:
        if inc.kind is Kind.PING:
            await r.pong()
        elif inc.kind is Kind.AUTOCOMPLETE:
            await r.choices(await self._autocomplete(inc))
        elif inc.kind is Kind.COMPONENT:
            await r.defer(ephemeral=True)
            if not await self._first_time(inc):
                return
            for message in await self._button(inc):
                await r.send(message)
        elif inc.kind is Kind.COMMAND and inc.command == "space":
            # answers are private, but for a list (the channel may read it): what the channel sees of a
            # schedule (the card) is posted by the delivery engine. The first follow-up takes the place of
            # the deferral, and its privacy with it: decided here, before anything slow. In the bot's DM
            # a list is refused, privately like every other answer there
            await r.defer(ephemeral=inc.subcommand != "list" or inc.guild_id is None)
            if not await self._first_time(inc):
                return
            for message in await self._command(inc):
                await r.send(message)
        else:  # a command or a modal we never registered
            await r.defer(ephemeral=True)
            await r.send(_private(t(inc.locale, "error.generic"), inc.locale))

    async def _first_time(self, inc: Incoming) -> bool:
        """Claim the interaction in the database (every process shares it): a copy of it that reached
        another process too (a replayed HTTP request behind a load balancer, a gateway replay) is answered
        once. The effects would be done once anyway (the interaction id is their request id); this keeps
        the member from being answered twice. Without a replies service (tests of one process), True."""
        if self._replies is None:
            return True
        if await self._replies.finish(Platform.DISCORD, inc.request_id, []):
            return True
        log.info("discord interaction already handled elsewhere", extra={"interaction_id": inc.id})
        return False

    # ------------------------------------------------------------------ permissions

    def _may_moderate(self, inc: Incoming, chat: ChatRef) -> bool:
        """Manage Events in the guild where ``chat`` is, or the moderator role there."""
        if not tr.same_guild(chat, inc):
            return False
        return inc.manages_events or inc.has_role(self._moderator_role)

    def _moderator_check(self, inc: Incoming) -> ModeratorCheck:
        async def check(chat: ChatRef, user: UserRef) -> bool:
            if user != inc.user:
                return False
            if self._may_moderate(inc, chat):
                return True
            slow = self._slow_check
            return slow is not None and tr.same_guild(chat, inc) and await slow(chat, user)

        return check

    # ------------------------------------------------------------------ commands and buttons (the inbound path)

    def _request(self, inc: Incoming, user: UserRef, chat: ChatRef) -> Request:
        return Request(
            actor=user,
            chat=chat,
            locale=inc.locale,
            request_id=inc.request_id,
            private=inc.guild_id is None,
            is_moderator=self._moderator_check(inc),
            display_name=inc.display_name or None,
            language=inc.locale,
            # every answer but a list is an ephemeral follow-up: the host's private link may go in one
            ephemeral=inc.guild_id is not None,
        )

    async def _command(self, inc: Incoming) -> list[Rendered]:
        """The answers to a ``/space`` subcommand: what was done (its time rendered natively), or why not."""
        user, chat, locale = inc.user, inc.chat, inc.locale
        if user is None or chat is None:
            return [_private(t(locale, "dc.guild_only"), locale)]
        if inc.guild_id is None and inc.subcommand not in DM_SUBCOMMANDS:
            # what does work here, said along with why this does not
            return [_private(t(locale, "dc.guild_only") + "\n" + t(locale, "dc.dm_link_hint"), locale)]
        if inc.subcommand == "schedule" and not inc.option("title"):
            # a title of spaces only: the core would read one out of the time instead
            return [_private(t(locale, "title.empty"), locale)]
        command = tr.to_command(inc, await self._space_named(inc))
        if command is None:
            return [_private(t(locale, "error.generic"), locale)]
        return _rendered(await self._inbound.handle(self._request(inc, user, chat), command))

    async def _space_named(self, inc: Incoming) -> str:
        """The id in the ``space`` option: the autocomplete choice's value — or, when the member sent what
        they typed without picking a choice, the one Space they may manage that it names (a title or the
        start of one). Anything else is passed on as typed, and the core says it is not a Space id."""
        typed = inc.option("space")
        if not typed or looks_like_space_id(typed.lower()) or inc.user is None or inc.chat is None:
            return typed
        found = [
            s
            for s in await self._spaces.manageable(
                inc.user,
                inc.chat,
                is_moderator=self._may_moderate(inc, inc.chat),
                limit=2,
                prefix=typed[:100],
            )
            if s.status in _STATUSES.get(inc.subcommand or "", ())
        ]
        return found[0].id if len(found) == 1 else typed

    async def _button(self, inc: Incoming) -> list[Rendered]:
        user, chat, locale = inc.user, inc.chat, inc.locale
        button = tr.parse_button(inc.custom_id)
        if button is None or user is None or chat is None:  # not ours, or from an older version
            return [_private(t(locale, "error.generic"), locale)]
        if button.verb is None:
            return [_private(t(locale, "dc.share", link=self._links.space(button.space_id)), locale)]
        press = Press(button.verb, button.space_id, via_chat=chat if inc.guild_id is not None else None)
        answers = await self._inbound.handle(self._request(inc, user, chat), press)
        # a button's answer is for the one who pressed it, whatever the command path would do
        return [_render(dataclasses.replace(a.notice, ephemeral=True)) for a in answers]

    # ------------------------------------------------------------------ autocomplete (cheap queries only)

    async def _autocomplete(self, inc: Incoming) -> list[tuple[str, str]]:
        if inc.user is None or inc.chat is None:
            return []
        if inc.guild_id is None and inc.subcommand not in DM_SUBCOMMANDS:
            # Discord offers every subcommand in the bot's DM; the command itself will be refused there,
            # so nothing to suggest (and nothing to query)
            return []
        if inc.focused == "when":
            return await self._when_choices(inc)
        if inc.focused == "timezone":
            return await self._zone_choices(inc)
        if inc.focused == "space":
            return await self._space_choices(inc)
        return []

    async def _zone_of(self, inc: Incoming, override: str | None) -> str:
        """The zone the typed time will be read in — as the command will read it. Raises InvalidTime."""
        if inc.subcommand == "reschedule":
            space_id = inc.option("space")
            if looks_like_space_id(space_id):
                return (await self._spaces.get(space_id)).tz
        assert inc.user is not None
        return await self._spaces.zone_for(inc.user, inc.chat, override)

    async def _preview(self, inc: Incoming, when: str, zone: str | None) -> str:
        """ "Thu 26 Nov 2026, 20:00 CET (Europe/Paris) — in 1 day", or why the time cannot be used."""
        locale, now = inc.locale, self._clock.now()
        title = inc.option("title")
        try:
            if inc.subcommand == "schedule" and title and inc.user is not None and inc.chat is not None:
                # the schedule command's own checks (title, zone, time, the host's quota), writing nothing
                preview = await self._spaces.preview(
                    ScheduleSpace(
                        actor=Actor(inc.user, locale=locale),
                        chat=inc.chat,
                        title=title,
                        when_text=_input(when),
                        tz=zone,
                    )
                )
                at, tz, shown = preview.starts_at, preview.tz, preview.when_text
            else:  # no title yet, or a reschedule: the time alone, read as the command will read it
                tz = await self._zone_of(inc, zone)
                parsed = parse_when(_input(when), now=now, tz=tz, locale=locale)
                at, tz = parsed.at, parsed.tz
                shown = format_local(at, tz, locale)
                rules.check_start_time(at, now, shown)
        except UserError as e:
            return "⚠️ " + _error(locale, e).replace("`", "")
        return f"{shown} ({tz}) — {_relative(at - now, locale)}"

    async def _when_choices(self, inc: Incoming) -> list[tuple[str, str]]:
        when = inc.option("when")
        if not when:
            return [
                (t(inc.locale, k), t(inc.locale, k)) for k in ("dc.example.tomorrow", "dc.example.in_hour")
            ]
        # the value is what was typed: picking the preview keeps the member's own words
        return [(await self._preview(inc, when, inc.option("timezone") or None), when)]

    async def _zone_choices(self, inc: Incoming) -> list[tuple[str, str]]:
        typed = inc.option("timezone")
        zones = tr.matching_zones(typed)
        if not typed:
            assert inc.user is not None
            mine = await self._spaces.zone_for(inc.user, inc.chat)
            zones = [mine, *(z for z in zones if z != mine)][: tr.MAX_CHOICES]
        choices = [(z, z) for z in zones]
        when = inc.option("when")
        if zones and when:
            # the first choice shows the time as it will be read in that zone
            choices[0] = (f"{zones[0]} · {await self._preview(inc, when, zones[0])}", zones[0])
        return choices

    async def _space_choices(self, inc: Incoming) -> list[tuple[str, str]]:
        """The Spaces this member may manage (their own; every one of the guild with Manage Events or the
        moderator role), matching what they typed, that this subcommand can act on."""
        if inc.user is None or inc.chat is None:
            return []
        statuses = _STATUSES.get(inc.subcommand or "", (SpaceStatus.SCHEDULED, SpaceStatus.LIVE))
        spaces = await self._spaces.manageable(
            inc.user,
            inc.chat,
            is_moderator=self._may_moderate(inc, inc.chat),
            limit=50,
            prefix=inc.option("space")[:100],
        )
        found = [
            (f"{s.title} — {format_local(s.starts_at, s.tz, inc.locale)}", s.id)
            for s in spaces
            if s.status in statuses
        ]
        return found[: tr.MAX_CHOICES]


# --------------------------------------------------------------------------- helpers


def _input(text: str) -> str:
    """Options longer than we parse are cut just past the limit: the core then refuses them plainly."""
    return text[: tr.MAX_INPUT + 1]


def _rendered(answers: list[Answer]) -> list[Rendered]:
    return [_render(a.notice) for a in answers]


def _render(notice: Notice) -> Rendered:
    """An answer as Discord shows it: the commands it names are Discord's (``/space rename …``)."""
    return render_reply(
        dataclasses.replace(notice, lines=tuple(tr.discord_commands(x) for x in notice.lines))
    )


def _notice(text: str, locale: str) -> Notice:
    return reply(text, locale=locale, ephemeral=True)


def _private(text: str, locale: str) -> Rendered:
    return _render(_notice(text, locale))


def _error(locale: str, e: UserError) -> str:
    return t(locale, e.key, **e.params)


def _relative(delta: timedelta, locale: str) -> str:
    minutes = max(0, round(delta.total_seconds() / 60))
    if minutes < 60:
        return t(locale, "dc.in.minutes", count=minutes)
    hours = round(minutes / 60)
    if hours < 24:
        return t(locale, "dc.in.hours", count=hours)
    return t(locale, "dc.in.days", count=round(hours / 24))
