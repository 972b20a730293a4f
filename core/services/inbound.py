"""One inbound path for every platform: a command in, the answers out.

An adapter translates what its platform delivered (a Telegram update, a Discord interaction, a console line)
into a :class:`Request` (who, where, in which language, the event's idempotency key, how to ask the platform
whether someone moderates the chat) and one command below, calls :meth:`InboundService.handle`, and renders
the :class:`~core.services.replies.Answer` list it gets back. Parsing the arguments, permissions, the texts,
confirmations and conversations live here, once:

* permissions: the host may manage their Space; anyone else only if ``Request.is_moderator`` says so — it
  is a network call on most platforms, so it is made only when needed, never for the host;
* conversations (``/space`` alone: the title, then the time) are kept in the database
  (:class:`core.ports.ConversationStore`): a restart between two answers, or the next message reaching
  another process, loses nothing. They expire after :data:`CONVERSATION_TTL`;
* idempotency: every effect carries ``Request.request_id`` (or sets a state), and a conversation step
  delivered again after a crash takes the same step again, answering the same.

Answers: the n-th answer (0-based) becomes the outbox row ``reply_key(request_id, n)`` when the adapter
queues them in order as the event's answers (:meth:`RepliesService.finish`); a conversation's questions are
found by those keys. ``notice.ephemeral`` marks an answer only the asker should see — every answer but a
list and a conversation's questions; ``Answer.alert`` one they must not miss (a refused button, a reminder
removed). Platforms without ephemeral messages (Telegram's chat answers, the console) post them all.

What stays in an adapter: reading its platform's payload (command names, ids, anonymous senders), the
platform's own settings commands (the console's ``/as``, ``/mod``), and how an answer looks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from urllib.parse import urlsplit

from core.audio import SourceKind, parse_source
from core.commands import (
    BridgeChannel,
    ScheduleSpace,
    SetAudioSource,
    Subscribe,
    UnbridgeChannel,
    schedule_text,
)
from core.errors import UserError
from core.hostlink import host_link
from core.ids import looks_like_space_id, normal_short_code
from core.models import Conversation, ConversationStep, Space, SpaceStatus
from core.notices import Action, ActionKind, Verb, callback, reply
from core.ports import Clock, Links, OneTimeCodes, UnitOfWorkFactory
from core.refs import ChatRef, UserRef
from core.rules import Actor, clean_title
from core.services.audio import AudioService
from core.services.feeds import FeedService
from core.services.links import LINK_TTL, LinkService, describe_accounts, describe_chats
from core.services.manage import ManageService, ModeratorCheck, Reply
from core.services.profiles import ProfileService
from core.services.replies import Answer, RepliesService, reply_key
from core.services.spaces import SpaceService
from core.texts import t
from core.timeparse import format_local

CONVERSATION_TTL = timedelta(minutes=10)  # how long a conversation waits for the next answer
MAX_INPUT = 1000  # characters of a command's arguments we are willing to parse
LIST_LIMIT = 15  # Spaces shown by a chat's list
TABLE_LIMIT = 20  # Spaces shown by a terminal's list

# conversation steps
TITLE, TIME, DONE = "title", "time", "done"
# what clears a Space's audio source (``/source <id> none``)
NO_SOURCE_WORDS = frozenset({"none", "off", "clear", "-", "aucune", "aucun"})


# --------------------------------------------------------------------------- what comes in


@dataclass(frozen=True, slots=True)
class Request:
    """Who asks, where, and how to answer them; the same for every command.

    ``request_id`` is the platform's id for the event (``tg:<bot>:<update>``, an interaction id): a retried
    delivery acts once. ``is_moderator(chat, user)`` asks the platform whether ``user`` moderates ``chat``;
    it is awaited only when a permission depends on it."""

    actor: UserRef
    chat: ChatRef
    locale: str  # the language answers are written in (core.texts.pick_locale)
    request_id: str | None
    private: bool  # a one-to-one chat with the bot (then the bot can also reach the person there)
    is_moderator: ModeratorCheck
    message_id: str | None = None  # the inbound message, in ``chat``: answers quote it
    replied_to: str | None = None  # the bot's message the inbound message answers (conversations in groups)
    display_name: str | None = None  # remembered on the person's profile (cards show it)
    language: str | None = None  # the platform's language code for the person, remembered likewise
    greet_name: str = ""  # how to greet the person (a first name)
    tz: str | None = None  # a zone the platform chose for this request: it overrides the profile's
    # a link that opens the bot's private chat and subscribes there (Telegram's deep link), for platforms
    # where the bot may not write first: then schedulers and subscribers who never opened it are sent there
    dm_link: Callable[[str], str] | None = None
    # the platform shows an answer marked ephemeral to the asker alone (Discord interactions), even in a
    # group: then an answer may carry what only the asker may see (the host's private link)
    ephemeral: bool = False

    @property
    def confidential(self) -> bool:
        """Whether an ephemeral answer reaches nobody but the asker."""
        return self.private or self.ephemeral


class ListStyle(StrEnum):
    CHAT = "chat"  # a header, then one line per Space in the Space's own zone (a message in a chat)
    TABLE = "table"  # one line per Space with its id and status, in the reader's zone (a terminal)


@dataclass(frozen=True, slots=True)
class Schedule:
    """Schedule a Space. Either ``text`` ("tomorrow 20:00 Weekly AMA", optionally after "schedule"), or the
    fields apart (``title`` and ``when``, from a form). Nothing at all starts a conversation."""

    text: str = ""
    title: str = ""
    when: str = ""
    tz: str | None = None
    description: str = ""
    voice: ChatRef | None = None  # a voice or stage channel where it happens (Discord)
    source: str = ""  # the audio source, as typed (core.audio.parse_source); "" for none


@dataclass(frozen=True, slots=True)
class ListSpaces:
    style: ListStyle = ListStyle.CHAT


@dataclass(frozen=True, slots=True)
class Manage:
    """A typed command about one Space: start, end, cancel, subscribe or unsubscribe. ``space_id`` is as
    typed (checked here); ``command`` is the command's name, for the usage text."""

    verb: Verb
    space_id: str
    command: str
    source: str = ""  # START: the audio source to go live with, as typed ("" keeps the Space's)


@dataclass(frozen=True, slots=True)
class SetSource:
    """``/source <id> <source>``: the Space's audio source (``none`` clears it; nothing: the usage)."""

    space_id: str
    source: str


@dataclass(frozen=True, slots=True)
class Bridge:
    """Play a Space (its id, or its share link) in a voice channel, or stop (``remove``). ``label`` is how
    the platform names the channel in a text (Discord: ``#name``, as picked). ``channel`` None: none given."""

    space_id: str
    channel: ChatRef | None
    label: str
    remove: bool = False


@dataclass(frozen=True, slots=True)
class Reschedule:
    space_id: str
    when: str


@dataclass(frozen=True, slots=True)
class Rename:
    space_id: str
    title: str


@dataclass(frozen=True, slots=True)
class Press:
    """A button of ours was pressed (``core.notices.callback``). The answer is ephemeral. ``via_chat``: the
    group the button was in, where a subscriber with closed DMs is mentioned (None in private)."""

    verb: Verb
    space_id: str
    via_chat: ChatRef | None = None


@dataclass(frozen=True, slots=True)
class OpenLink:
    """The person opened the bot's private chat, maybe through a ``dm_link`` for a Space (then they are
    subscribed there: the link from a group's "Set reminder", or a host's "Get my reminders")."""

    space_id: str | None = None


@dataclass(frozen=True, slots=True)
class SetZone:
    """The person's own zone (empty: say how to use it)."""

    zone: str


@dataclass(frozen=True, slots=True)
class SetChatZone:
    """The chat's default zone: moderators only."""

    zone: str


@dataclass(frozen=True, slots=True)
class Link:
    """``/space link``: a code that links this chat (in a group) or this account (in private); with a code
    typed, redeem it here (core.services.links)."""

    code: str = ""


@dataclass(frozen=True, slots=True)
class Unlink:
    """``/space unlink``: take this chat (in a group) or this account (in private) out of its link group."""


@dataclass(frozen=True, slots=True)
class Help:
    pass


@dataclass(frozen=True, slots=True)
class Say:
    """Free text: the next answer of a conversation, if the person is in one here; otherwise nothing."""

    text: str


Command = (
    Schedule
    | ListSpaces
    | Manage
    | Reschedule
    | Rename
    | SetSource
    | Bridge
    | Press
    | OpenLink
    | SetZone
    | SetChatZone
    | Link
    | Unlink
    | Help
    | Say
)


def link_words(word: str, rest: str) -> Link | Unlink | None:
    """``link``, ``link <code>`` and ``unlink`` as typed after ``/space`` (Slack, Telegram, the console): the
    command, or None when the words are something else — a title that starts with "link" ("link building
    workshop friday 20:00") stays a Space to schedule. A code is one word or two (``K7QM4 ZP9XA``)."""
    word, rest = word.lower(), rest.strip()
    if word == "unlink" and not rest:
        return Unlink()
    if word == "link" and (not rest or normal_short_code(rest) is not None):
        return Link(rest)
    return None


def normalise_id(text: str) -> str | None:
    """A Space id as typed → its canonical form, or None if it cannot be one."""
    candidate = text.strip().lower()
    return candidate if looks_like_space_id(candidate) else None


def shown_source(stored: str) -> str:
    """A source as an answer states it: a stream by its scheme and host only — its path may hold a stream
    key (``rtmp://host/live/<key>``), and an answer may be read by a whole group."""
    try:
        source = parse_source(stored)
    except UserError:
        return "?"
    if source.kind is not SourceKind.URL:
        return str(source)
    parts = urlsplit(source.location)
    return f"{parts.scheme}://{parts.hostname}/…"


def id_or_link(text: str) -> str | None:
    """A Space id, or the id in a Space's share link (``…/s/<id>``, what a community is given)."""
    head, sep, tail = text.strip().rstrip("/").rpartition("/s/")
    return normalise_id(tail if sep and head else text)


# --------------------------------------------------------------------------- the service


class _Answers:
    """The answers of one request, in order: the n-th is the outbox row ``reply_key(request_id, n)``."""

    def __init__(self, req: Request) -> None:
        self._req = req
        self.items: list[Answer] = []

    def say(
        self,
        text: str,
        *,
        ask: bool = False,
        public: bool = False,
        actions: tuple[Action, ...] = (),
        space_id: str | None = None,
        alert: bool = False,
        about: Reply | None = None,
    ) -> str | None:
        """Add an answer; returns its outbox key (None without a request id: nothing to find it by).

        Answers are for the asker alone (ephemeral) unless ``public`` (a list the chat may read) or a
        question (``ask``: in a group it is answered by replying to it, so everyone sees it)."""
        notice = reply(text, locale=self._req.locale, reply_to=self._req.message_id, ask=ask, actions=actions)
        if about is not None and about.space is not None:
            # the Space's start and status travel with the answer: platforms show the time natively
            data = about.notice(self._req.locale)
            notice = dataclasses.replace(notice, when=data.when, when_text=data.when_text, status=data.status)
        notice = dataclasses.replace(notice, space_id=space_id, ephemeral=not (public or ask))
        self.items.append(Answer(self._req.chat, notice, alert=alert))
        if self._req.request_id is None:
            return None
        return reply_key(self._req.request_id, len(self.items) - 1)

    def result(self, r: Reply, *, more: str = "", actions: tuple[Action, ...] = ()) -> str | None:
        """A service's reply (a confirmation) as an answer, ``more`` appended: the one place a reply becomes
        an answer, so what a reply carries besides its text reaches every platform."""
        return self.say(
            r.text + more, actions=actions, space_id=r.space.id if r.space is not None else None, about=r
        )

    def error(self, e: UserError, *, ask: bool = False, alert: bool = False) -> str | None:
        return self.say(t(self._req.locale, e.key, **e.params), ask=ask, alert=alert)


class InboundService:
    def __init__(
        self,
        *,
        spaces: SpaceService,
        profiles: ProfileService,
        replies: RepliesService,
        links: Links,
        clock: Clock,
        uow: UnitOfWorkFactory,
        read_uow: UnitOfWorkFactory | None = None,
        audio: AudioService | None = None,
        codes: OneTimeCodes | None = None,
        feeds: FeedService | None = None,
    ) -> None:
        self._spaces = spaces
        # the community's calendar feed, offered under `/space list` (None: no feed URL is served)
        self._feeds = feeds
        # linking chats and accounts needs the shared one-time codes (None: `/space link` says it's off)
        self._linking = LinkService(uow, clock, spaces.wake, codes, spaces) if codes is not None else None
        # sources and bridged channels (no outbox rows of its own here: its problem reports are the audio
        # side's, with the composition root's AudioService)
        self._audio = audio or AudioService(uow, clock, read_uow=read_uow)
        self._profiles = profiles
        self._replies = replies
        self._links = links
        self._clock = clock
        self._uow = uow
        # reading a conversation (every private message) must not queue for SQLite's one write lock
        self._read = read_uow or uow
        self._manage = ManageService(spaces, links)

    async def handle(self, req: Request, cmd: Command) -> list[Answer]:
        """Do what ``cmd`` asks for ``req.actor`` and return the answers to show, in order.

        A refusal (no permission, a time that cannot be read, an unknown Space) is an answer, never an
        exception; anything else that fails (the database) raises: the adapter lets the platform retry."""
        out = _Answers(req)
        if isinstance(cmd, Say):
            await self._continue(req, cmd.text, out)
            return out.items
        await self._seen(req)
        if isinstance(cmd, Schedule):
            await self._schedule_command(req, cmd, out)
        elif isinstance(cmd, ListSpaces):
            await self._list(req, cmd.style, out)
        elif isinstance(cmd, Manage):
            await self._manage_command(req, cmd, out)
        elif isinstance(cmd, Reschedule | Rename):
            await self._edit(req, cmd, out)
        elif isinstance(cmd, SetSource):
            await self._set_source(req, cmd, out)
        elif isinstance(cmd, Bridge):
            await self._bridge(req, cmd, out)
        elif isinstance(cmd, Press):
            await self._press(req, cmd, out)
        elif isinstance(cmd, OpenLink):
            await self._open_link(req, cmd, out)
        elif isinstance(cmd, SetZone):
            await self._set_zone(req, cmd.zone, out)
        elif isinstance(cmd, SetChatZone):
            await self._set_chat_zone(req, cmd.zone, out)
        elif isinstance(cmd, Link):
            await self._link(req, cmd.code, out)
        elif isinstance(cmd, Unlink):
            await self._unlink(req, out)
        else:
            zone = await self._spaces.zone_for(req.actor, req.chat, req.tz)
            out.say(t(req.locale, "help", zone=zone))
        return out.items

    async def _seen(self, req: Request) -> None:
        """Remember the person's name, language and (writing to us privately) that we can reach them."""
        if req.display_name is None and req.language is None and not req.private:
            return  # nothing to learn (the console)
        await self._profiles.seen(
            req.actor,
            display_name=req.display_name,
            locale=req.language,
            dm_reachable=True if req.private else None,
        )

    # ------------------------------------------------------------------ scheduling

    async def _schedule_command(self, req: Request, cmd: Schedule, out: _Answers) -> None:
        if cmd.title.strip() or cmd.when.strip():  # a form: the fields apart
            if len(cmd.title) + len(cmd.when) > MAX_INPUT:  # the description has its own rule
                out.say(t(req.locale, "input.too_long", limit=MAX_INPUT))
                return
            await self._schedule(
                req,
                out,
                title=cmd.title,
                when_text=cmd.when,
                tz=cmd.tz,
                desc=cmd.description,
                voice=cmd.voice,
                source=cmd.source,
            )
            return
        args = schedule_text(cmd.text)
        if not args:  # a bare /space: ask for the title, then the time
            await self._begin(req, out)
            return
        if len(args) > MAX_INPUT:
            out.say(t(req.locale, "input.too_long", limit=MAX_INPUT))
            return
        await self._schedule(
            req, out, title="", when_text=args, tz=cmd.tz, desc=cmd.description, source=cmd.source
        )

    async def _schedule(
        self,
        req: Request,
        out: _Answers,
        *,
        title: str,
        when_text: str,
        tz: str | None,
        desc: str = "",
        voice: ChatRef | None = None,
        source: str = "",
    ) -> bool:
        zone = tz or req.tz
        if len(source) > MAX_INPUT:  # never a source cut short by the platform's limit: refused whole
            out.say(t(req.locale, "input.too_long", limit=MAX_INPUT))
            return False
        try:
            space = await self._spaces.schedule(
                ScheduleSpace(
                    actor=Actor(req.actor, locale=req.locale, tz=zone),
                    chat=req.chat,
                    title=title,
                    when_text=when_text,
                    tz=zone,
                    description=desc,
                    request_id=req.request_id,
                    voice=voice,
                    audio_source=source or None,
                )
            )
        except UserError as e:
            out.error(e)
            return False
        # what was understood, title and time apart, with the one-step fixes: a misreading shows at once
        confirmation = self._manage.scheduled(space, req.locale, more=self._host_line(req, space))
        if not req.private and req.dm_link is not None:
            profile = await self._profiles.get(req.actor)
            if not (profile and profile.dm_reachable):
                # host reminders take the subscribers' path: the link opens the DM ("you're the host")
                button = Action(t(req.locale, "button.get_reminders"), ActionKind.URL, req.dm_link(space.id))
                out.result(confirmation, more="\n\n" + t(req.locale, "reply.host_open_dm"), actions=(button,))
                return True
        out.result(confirmation)
        return True

    # ------------------------------------------------------------------ conversations

    async def _begin(self, req: Request, out: _Answers) -> None:
        question = out.say(t(req.locale, "ask.title"), ask=True)
        await self._save(req, ConversationStep(TITLE, questions=_some(question)), before=None)

    async def _save(self, req: Request, state: ConversationStep, *, before: ConversationStep | None) -> None:
        conversation = Conversation(
            chat=req.chat,
            user=req.actor,
            state=state,
            expires_at=self._clock.now() + CONVERSATION_TTL,
            request_id=req.request_id,
            before=before,
        )
        async with self._uow() as uow:
            await uow.conversations.put(conversation)
            await uow.commit()

    async def _load(self, req: Request) -> ConversationStep | None:
        """The step this message answers, or None (no conversation here, or it expired: pruned later)."""
        async with self._read() as uow:
            found = await uow.conversations.get(req.chat, req.actor)
        if found is None or found.expires_at <= self._clock.now():
            return None
        if req.request_id is not None and found.request_id == req.request_id and found.before is not None:
            return found.before  # this very message again (a retry after a crash): the same step again
        return found.state

    async def _is_our_question(self, state: ConversationStep, req: Request) -> bool:
        """Whether the message answered is one of this step's questions. A question the engine has not
        recorded as sent yet may be the one: then any reply to one of our messages is taken."""
        unknown = False
        for key in state.questions:
            ref = await self._replies.sent_message(key)
            if ref is None:
                unknown = True
            elif ref.chat_id == req.chat.id and ref.id == req.replied_to:
                return True
        return unknown

    async def _continue(self, req: Request, text: str, out: _Answers) -> None:
        state = await self._load(req)
        if state is None or state.step == DONE:
            return  # not a conversation of ours (a DM about something else, a reply to someone else)
        # in a group, only an answer to our question continues the conversation
        if not req.private and (req.replied_to is None or not await self._is_our_question(state, req)):
            return
        await self._seen(req)
        text = text.strip()
        if len(text) > MAX_INPUT:
            asked = out.say(t(req.locale, "input.too_long", limit=MAX_INPUT), ask=True)
            await self._save(req, _asked(state, asked), before=state)
            return
        if state.step == TITLE:
            try:
                title = clean_title(text)
            except UserError as e:  # ask again: the conversation goes on
                await self._save(req, _asked(state, out.error(e, ask=True)), before=state)
                return
            asked = out.say(t(req.locale, "ask.time", title=title), ask=True)
            await self._save(req, ConversationStep(TIME, (("title", title),), _some(asked)), before=state)
            return
        title = state.field("title")
        if await self._schedule(req, out, title=title, when_text=text, tz=None):
            await self._save(req, ConversationStep(DONE, state.fields), before=state)
            return
        # a time we could not use: the error was said; ask again rather than drop the conversation
        asked = out.say(t(req.locale, "ask.time", title=title), ask=True)
        await self._save(req, ConversationStep(TIME, state.fields, _some(asked)), before=state)

    # ------------------------------------------------------------------ lists and settings

    async def _list(self, req: Request, style: ListStyle, out: _Answers) -> None:
        loc = req.locale
        if style is ListStyle.TABLE:
            found = await self._spaces.upcoming(req.chat, limit=TABLE_LIMIT)
            if not found:
                out.say(t(loc, "reply.no_spaces"), public=True)
                return
            zone = await self._spaces.zone_for(req.actor, req.chat, req.tz)  # one list, one clock
            rows = [
                f"  {s.id}  {format_local(s.starts_at, zone, loc)}  {s.title}  [{t(loc, f'status.{s.status.value}')}]"
                for s in found
            ]
            rows += await self._feed_line(req)
            out.say("\n".join(rows), public=True)
            return
        spaces = await self._spaces.upcoming(req.chat, limit=LIST_LIMIT)
        if not spaces:
            out.say(t(loc, "reply.no_spaces"), public=True)
            return
        lines = [t(loc, "list.header")]
        for s in spaces:
            marker = "🟣 " if s.status is SpaceStatus.LIVE else ""
            when = format_local(s.starts_at, s.tz, loc)
            lines.append(t(loc, "list.item", marker=marker, title=s.title, when=when, space_id=s.id))
        lines += await self._feed_line(req)
        out.say("\n".join(lines), public=True)

    async def _feed_line(self, req: Request) -> list[str]:
        """ "📅 All of them in your calendar: <url>" under a group's list: its feed (made on first ask). Not in
        a private chat: a feed is a community's."""
        if self._feeds is None or req.private:
            return []
        return [t(req.locale, "list.feed", url=await self._feeds.url_for(req.chat))]

    async def _set_zone(self, req: Request, zone: str, out: _Answers) -> None:
        if not zone.strip():
            out.say(t(req.locale, "usage.tz"))
            return
        try:
            name = await self._profiles.set_zone(req.actor, zone.strip())
        except UserError as e:
            out.error(e)
            return
        out.say(t(req.locale, "reply.zone_set", zone=name))

    async def _set_chat_zone(self, req: Request, zone: str, out: _Answers) -> None:
        if not zone.strip():
            out.say(t(req.locale, "usage.tz"))
            return
        if not await req.is_moderator(req.chat, req.actor):
            out.say(t(req.locale, "perm.admins_only"))
            return
        try:
            community = await self._profiles.set_community(req.chat, zone=zone.strip())
        except UserError as e:
            out.error(e)
            return
        out.say(t(req.locale, "reply.community_zone_set", zone=community.tz))

    # ------------------------------------------------------------------ linking across platforms

    async def _may_link(self, req: Request, out: _Answers) -> LinkService | None:
        """The link service, if linking is on and the asker may link here: in a group its moderators
        (the chat's Spaces are theirs to share), in private the person themselves."""
        if self._linking is None:
            out.say(t(req.locale, "link.unavailable"))
            return None
        if not req.private and not await req.is_moderator(req.chat, req.actor):
            out.say(t(req.locale, "link.moderators_only"))
            return None
        return self._linking

    async def _link(self, req: Request, code: str, out: _Answers) -> None:
        linking = await self._may_link(req, out)
        if linking is None:
            return
        loc, code = req.locale, code.strip()[:MAX_INPUT]
        minutes = int(LINK_TTL.total_seconds() // 60)
        if not code:
            if req.private:
                issued = await linking.new_code(req.actor)
                out.say(t(loc, "link.code_private", code=issued, minutes=minutes))
            else:
                issued = await linking.new_code(req.chat)
                out.say(t(loc, "link.code", code=issued, minutes=minutes))
            return
        try:
            if req.private:
                done = await linking.link_account(req.actor, code, request_id=req.request_id)
                accounts = describe_accounts([a for a in done.members if isinstance(a, UserRef)])
                out.say(t(loc, "link.accounts_linked", accounts=accounts))
            else:
                done = await linking.link_chat(req.chat, code, locale=loc, request_id=req.request_id)
                chats = [c for c in done.members if isinstance(c, ChatRef)]
                out.say(t(loc, "link.linked", what=describe_chats(req.chat, chats, loc)), public=True)
        except UserError as e:
            out.error(e)

    async def _unlink(self, req: Request, out: _Answers) -> None:
        linking = await self._may_link(req, out)
        if linking is None:
            return
        loc = req.locale
        if req.private:
            accounts = await linking.unlink_account(req.actor)
            if not accounts:
                out.say(t(loc, "link.not_linked_account"))
                return
            out.say(t(loc, "link.unlinked_account", accounts=describe_accounts(accounts)))
            return
        left = await linking.unlink_chat(req.chat, locale=loc, request_id=req.request_id)
        if not left:
            out.say(t(loc, "link.not_linked"))
            return
        out.say(t(loc, "link.unlinked", what=describe_chats(req.chat, left, loc)), public=True)

    # ------------------------------------------------------------------ managing a Space

    async def _manage_command(self, req: Request, cmd: Manage, out: _Answers) -> None:
        space_id = normalise_id(cmd.space_id)
        if space_id is None:
            out.say(t(req.locale, "usage.id", command=cmd.command))
            return
        stateless = cmd.verb in (Verb.SUBSCRIBE, Verb.UNSUBSCRIBE)
        try:
            result = await self._manage.run(
                cmd.verb,
                req.actor,
                req.locale,
                space_id,
                is_moderator=req.is_moderator,
                via_chat=None if req.private else req.chat,
                request_id=None if stateless else req.request_id,
                audio_source=cmd.source or None,
            )
        except UserError as e:
            out.error(e)
            return
        out.result(result, more=self._host_line(req, result.space) if cmd.verb is Verb.START else "")

    def _host_line(self, req: Request, space: Space | None) -> str:
        """The host's private link (core.hostlink), as a line to add to an answer — only for the host, and
        only where the answer reaches the host alone (a private chat, an ephemeral answer); "" otherwise."""
        if space is None or req.actor != space.host or not space.host_key or not req.confidential:
            return ""
        link = host_link(self._links.space(space.id), space.host_key)
        return "\n" + t(req.locale, "reply.host_link", link=link)

    async def _set_source(self, req: Request, cmd: SetSource, out: _Answers) -> None:
        space_id = normalise_id(cmd.space_id)
        raw = cmd.source.strip()
        if space_id is None or not raw:
            out.say(t(req.locale, "usage.source"))
            return
        if len(raw) > MAX_INPUT:
            out.say(t(req.locale, "input.too_long", limit=MAX_INPUT))
            return
        source = None if raw.lower() in NO_SOURCE_WORDS else raw
        try:
            space = await self._spaces.get(space_id)
            actor = await self._manage.actor_for(req.actor, space, req.locale, req.is_moderator)
            space = await self._audio.set_source(
                SetAudioSource(actor, space_id, source, request_id=req.request_id)
            )
        except UserError as e:
            out.error(e)
            return
        if space.audio_source is None:
            text = t(req.locale, "reply.source_cleared", title=space.title)
        elif space.audio_source == "browser":
            text = t(req.locale, "reply.source_browser", title=space.title)
        else:
            text = t(
                req.locale, "reply.source_set", title=space.title, source=shown_source(space.audio_source)
            )
        out.result(Reply(text + self._host_line(req, space), space))

    async def _bridge(self, req: Request, cmd: Bridge, out: _Answers) -> None:
        space_id = id_or_link(cmd.space_id)
        if space_id is None or cmd.channel is None:
            out.say(t(req.locale, "usage.bridge"))
            return
        # the permission is about the CHANNEL's community: a moderator there may bring any open Space in
        mod = await req.is_moderator(cmd.channel, req.actor)
        actor = Actor(req.actor, is_moderator=mod, locale=req.locale)
        try:
            if cmd.remove:
                res = await self._audio.unbridge_result(
                    UnbridgeChannel(actor, space_id, cmd.channel, request_id=req.request_id)
                )
                key = "reply.unbridged" if res.changed else "reply.not_bridged"
            else:
                res = await self._audio.bridge_result(
                    BridgeChannel(actor, space_id, cmd.channel, request_id=req.request_id)
                )
                key = "reply.bridged" if res.changed else "reply.already_bridged"
        except UserError as e:
            out.error(e)
            return
        out.say(t(req.locale, key, title=res.space.title, channel=cmd.label), space_id=res.space.id)

    async def _edit(self, req: Request, cmd: Reschedule | Rename, out: _Answers) -> None:
        """``/reschedule <id> <when>`` and ``/rename <id> <title>``: a Space's id, then its new value."""
        command = "reschedule" if isinstance(cmd, Reschedule) else "rename"
        value = (cmd.when if isinstance(cmd, Reschedule) else cmd.title).strip()
        space_id = normalise_id(cmd.space_id)
        if space_id is None or not value:
            out.say(t(req.locale, f"usage.{command}"))
            return
        if len(value) > MAX_INPUT:
            out.say(t(req.locale, "input.too_long", limit=MAX_INPUT))
            return
        edit = self._manage.reschedule if isinstance(cmd, Reschedule) else self._manage.rename
        try:
            result = await edit(
                req.actor,
                req.locale,
                space_id,
                value,
                is_moderator=req.is_moderator,
                request_id=req.request_id,
            )
        except UserError as e:
            out.error(e)
            return
        out.result(result)

    async def _press(self, req: Request, cmd: Press, out: _Answers) -> None:
        # subscribe and unsubscribe set a state: a retried press lands on the same state; the others carry
        # the request id
        stateless = cmd.verb in (Verb.SUBSCRIBE, Verb.UNSUBSCRIBE)
        try:
            result = await self._manage.run(
                cmd.verb,
                req.actor,
                req.locale,
                cmd.space_id,
                is_moderator=req.is_moderator,
                via_chat=cmd.via_chat,
                request_id=None if stateless else req.request_id,
            )
        except UserError as e:
            out.error(e, alert=True)
            return
        sub = result.subscription
        if cmd.verb is Verb.SUBSCRIBE and sub is not None and cmd.via_chat is not None and req.dm_link:
            profile = await self._profiles.get(req.actor)
            if not (profile and profile.dm_reachable):
                # never opened the bot's private chat: the link opens it; starting it there completes the
                # subscription and makes reminders deliverable
                link = Action(
                    t(req.locale, "button.get_reminders"), ActionKind.URL, req.dm_link(cmd.space_id)
                )
                out.result(result, actions=(link,))
                return
        if cmd.verb is Verb.UNSUBSCRIBE and sub is not None and sub.changed:
            # say plainly that this press removed the reminder (and how to set it back)
            out.say(t(req.locale, "tg.unsubscribed", title=sub.space.title), alert=True)
            return
        out.result(result, more=self._host_line(req, result.space) if cmd.verb is Verb.START else "")

    async def _open_link(self, req: Request, cmd: OpenLink, out: _Answers) -> None:
        if cmd.space_id is None:
            out.say(t(req.locale, "welcome", name=req.greet_name))
            return
        # subscribing sets a state: the same link opened twice (or this request delivered twice) is one
        # subscription and one "Reminder set"
        try:
            res = await self._spaces.subscribe(Subscribe(req.actor, cmd.space_id, locale=req.locale))
        except UserError as e:
            out.error(e)
            return
        if res.space.status is SpaceStatus.LIVE:
            link = self._links.space(cmd.space_id)
            out.say(t(req.locale, "reply.live_now", title=res.space.title, link=link))
            return
        undo = Action(
            t(req.locale, "button.unsubscribe"), ActionKind.CALLBACK, callback(Verb.UNSUBSCRIBE, cmd.space_id)
        )
        out.say(t(req.locale, "reply.subscribed", title=res.space.title), actions=(undo,))


def _some(key: str | None) -> tuple[str, ...]:
    return (key,) if key is not None else ()


def _asked(state: ConversationStep, question: str | None) -> ConversationStep:
    """The same step, asked once more: a reply to the new question continues it too."""
    return dataclasses.replace(state, questions=state.questions + _some(question))
