"""Thin PTB handlers: translate the update, call the core, decide the answer in the user's language.

Answers are not sent from here: :meth:`Handlers._answer` hands them to the adapter, which queues them in the
outbox once the whole update is handled (``core.services.replies``), so a crash can neither lose an answer
nor send it twice. Only callback-query toasts are answered inline: they are not chat messages, must come
within seconds, and are harmless if repeated.

Every effect is idempotent on the update, because Telegram may deliver an update again after a crash:
schedule and manage carry the request id ``tg:<bot id>:<update id>``, subscribing and unsubscribing set a
state. Updates of one chat are handled one at a time, in order (the adapter sees to it).

Odd updates (no sender, no chat, anonymous posts) get a plain answer or nothing — never an assertion.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from telegram import CallbackQuery, Update
from telegram.error import TelegramError
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    ChatMemberHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bots.telegram import translate as tr
from core.commands import ScheduleSpace, Subscribe, schedule_text
from core.errors import UserError
from core.models import SpaceStatus
from core.notices import Action, ActionKind, Verb, callback, parse_callback, reply
from core.ports import Clock, Links
from core.refs import ChatRef, UserRef
from core.rules import Actor, clean_title
from core.services.manage import ManageService, Reply
from core.services.profiles import ProfileService
from core.services.replies import Answer, RepliesService
from core.services.spaces import SpaceService
from core.texts import pick_locale, t
from core.timeparse import format_local

if TYPE_CHECKING:
    from bots.telegram.adapter import TelegramPlatform

log = logging.getLogger(__name__)

DRAFT_TTL = timedelta(minutes=10)  # how long a "/space" conversation waits for the next answer
CALLBACK_TEXT_LIMIT = 200  # Telegram's limit for answerCallbackQuery text
Ctx = ContextTypes.DEFAULT_TYPE
_VERBS = {"cancel": Verb.CANCEL, "live": Verb.START, "end": Verb.END}


@dataclass(slots=True)
class _Draft:
    step: str  # "title" | "time"
    started: datetime
    # the outbox keys of our questions in this conversation: in groups only a reply to one continues it
    # (their message ids are known once the engine has sent them)
    questions: list[str] = field(default_factory=list)
    title: str = ""


class Handlers:
    def __init__(
        self,
        platform: TelegramPlatform,
        *,
        spaces: SpaceService,
        manage: ManageService,
        profiles: ProfileService,
        replies: RepliesService,
        links: Links,
        clock: Clock,
    ) -> None:
        self._tg = platform
        self._spaces = spaces
        self._manage = manage
        self._profiles = profiles
        self._replies = replies
        self._links = links
        self._clock = clock
        # conversations live in the process that receives them (see docs/architecture.md, known limits)
        self._drafts: dict[tuple[int, int], _Draft] = {}

    def register(self, app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        app.add_handler(CommandHandler("start", self.on_start, filters.ChatType.PRIVATE))
        app.add_handler(CommandHandler(["space", "schedule"], self.on_space))
        app.add_handler(CommandHandler("spaces", self.on_list))
        for name, verb in _VERBS.items():  # one handler each: the verb never depends on parsing the text
            app.add_handler(CommandHandler(name, functools.partial(self.on_manage, verb=verb, command=name)))
        for name in ("reschedule", "rename"):
            app.add_handler(CommandHandler(name, functools.partial(self.on_edit, command=name)))
        app.add_handler(CommandHandler("tz", self.on_tz))
        app.add_handler(CommandHandler("chattz", self.on_chat_tz))
        app.add_handler(CommandHandler("help", self.on_help))
        # privacy mode: in groups the bot only sees replies to its own messages — which is what ForceReply asks
        app.add_handler(
            MessageHandler(
                filters.TEXT & ~filters.COMMAND & (filters.REPLY | filters.ChatType.PRIVATE), self.on_text
            )
        )
        app.add_handler(CallbackQueryHandler(self.on_button))
        app.add_handler(ChatMemberHandler(self.on_my_chat_member, ChatMemberHandler.MY_CHAT_MEMBER))
        app.add_error_handler(self.on_error)

    @staticmethod
    def command_menu(locale: str) -> list[tuple[str, str]]:
        fr = locale == "fr"
        return [
            ("space", "Programmer un Space" if fr else "Schedule a Space"),
            ("spaces", "Spaces à venir ici" if fr else "Upcoming Spaces here"),
            ("reschedule", "Reprogrammer un Space" if fr else "Reschedule a Space"),
            ("rename", "Renommer un Space" if fr else "Rename a Space"),
            ("cancel", "Annuler un Space" if fr else "Cancel a Space"),
            ("live", "Démarrer un Space" if fr else "Start a Space now"),
            ("end", "Terminer un Space" if fr else "End a live Space"),
            ("tz", "Votre fuseau horaire" if fr else "Your time zone"),
            ("help", "Aide" if fr else "Help"),
        ]

    # ------------------------------------------------------------------ helpers

    def _request_id(self, update: Update) -> str:
        """The core's request id for this update's effect: a redelivered update finds it done."""
        return self._tg.event_key(update.update_id)

    async def _who(self, update: Update) -> tuple[UserRef, str] | None:
        """The acting user and their locale; remembers their name, language and (in a DM) reachability.
        None when the update names nobody (a channel post, an odd shape): there is no one to act for."""
        u = update.effective_user
        if u is None:
            return None
        user = tr.user_ref(u.id)
        locale = pick_locale(u.language_code)
        chat = update.effective_chat
        private = chat is not None and chat.type == "private"
        await self._profiles.seen(
            user,
            display_name=tr.display_name(u.first_name, u.last_name, u.username),
            locale=u.language_code,
            dm_reachable=True if private else None,
        )
        return user, locale

    async def _refuse_anonymous(self, update: Update) -> bool:
        """Anonymous admins and posts "as a channel" reach us with a shared placeholder user: acting as them
        would let anyone posting anonymously anywhere manage a Space. Ask for a personal message instead."""
        msg, u = update.effective_message, update.effective_user
        if msg is None or not tr.is_anonymous(u.id if u else None, msg.sender_chat is not None):
            return False
        locale = pick_locale(u.language_code if u else None)
        self._answer(update, t(locale, "tg.anonymous"), locale=locale)
        return True

    def _answer(
        self,
        update: Update,
        text: str,
        *,
        locale: str,
        ask: bool = False,
        actions: tuple[Action, ...] = (),
    ) -> str | None:
        """Answer the update's message (queued; sent once the update is done). Returns the answer's outbox
        key, None if there is no message to answer."""
        msg = update.effective_message
        if msg is None:
            return None
        notice = reply(text, locale=locale, reply_to=str(msg.message_id), ask=ask, actions=actions)
        return self._tg.answer(update.update_id, msg.chat_id, notice)

    def _ask(self, update: Update, text: str, locale: str) -> str | None:
        """A question answered by replying to it (which privacy mode lets through in groups)."""
        return self._answer(update, text, locale=locale, ask=True)

    async def _toast(
        self, query: CallbackQuery, text: str | None = None, *, alert: bool = False, url: str | None = None
    ) -> None:
        """Answer a button press inline. Failing to (the press is too old, Telegram is slow) must not fail
        the update: its effect is done, and a second try would not be any younger."""
        try:
            await query.answer(text[:CALLBACK_TEXT_LIMIT] if text else None, show_alert=alert, url=url)
        except TelegramError as e:
            log.info("callback answer not delivered: %s", e.message)

    async def _is_mod(self, chat: ChatRef, user: UserRef) -> bool:
        return await self._tg.is_admin(chat, user)

    @staticmethod
    def _error(locale: str, e: UserError) -> str:
        return t(locale, e.key, **e.params)

    def _forget_old_drafts(self) -> None:
        """Abandoned conversations must not pile up in memory."""
        now = self._clock.now()
        for key in [k for k, d in self._drafts.items() if now - d.started > DRAFT_TTL]:
            del self._drafts[key]

    # ------------------------------------------------------------------ commands

    async def on_start(self, update: Update, context: Ctx) -> None:
        who = await self._who(update)
        if who is None:
            return
        user, locale = who
        payload = context.args[0] if context.args else None
        space_id = tr.parse_start_payload(payload)
        if space_id is None:
            u = update.effective_user
            self._answer(update, t(locale, "welcome", name=u.first_name if u else ""), locale=locale)
            return
        # the deep link from a group's "Set reminder": completes the subscription where we can DM later.
        # Subscribing sets a state: the same link opened twice (or this update delivered twice) is one
        # subscription and one "Reminder set".
        try:
            res = await self._spaces.subscribe(Subscribe(user, space_id, locale=locale))
        except UserError as e:
            self._answer(update, self._error(locale, e), locale=locale)
            return
        if res.space.status is SpaceStatus.LIVE:
            link = self._links.space(space_id)
            self._answer(update, t(locale, "reply.live_now", title=res.space.title, link=link), locale=locale)
            return
        undo = Action(
            t(locale, "button.unsubscribe"), ActionKind.CALLBACK, callback(Verb.UNSUBSCRIBE, space_id)
        )
        self._answer(
            update, t(locale, "reply.subscribed", title=res.space.title), locale=locale, actions=(undo,)
        )

    async def on_help(self, update: Update, context: Ctx) -> None:
        who = await self._who(update)
        if who is None:
            return
        user, locale = who
        chat = update.effective_chat
        zone = await self._spaces.zone_for(user, tr.chat_ref(chat.id) if chat else None)
        self._answer(update, t(locale, "help", zone=zone), locale=locale)

    async def on_space(self, update: Update, context: Ctx) -> None:
        if await self._refuse_anonymous(update):
            return
        chat, u = update.effective_chat, update.effective_user
        who = await self._who(update)
        if chat is None or u is None or who is None:
            return
        user, locale = who
        args = schedule_text(" ".join(context.args or []))
        if not args:  # a bare /space: ask for the title, then the time
            self._forget_old_drafts()
            draft = _Draft("title", self._clock.now())
            self._drafts[(chat.id, u.id)] = draft
            question = self._ask(update, t(locale, "ask.title"), locale)
            draft.questions += [question] if question else []
            return
        if len(args) > tr.MAX_INPUT:
            self._answer(update, t(locale, "input.too_long", limit=tr.MAX_INPUT), locale=locale)
            return
        await self._schedule(update, user, locale, when_text=args, title="")

    async def _schedule(
        self, update: Update, user: UserRef, locale: str, *, when_text: str, title: str
    ) -> bool:
        chat = update.effective_chat
        if chat is None:
            return False
        try:
            space = await self._spaces.schedule(
                ScheduleSpace(
                    actor=Actor(user, locale=locale),
                    chat=tr.chat_ref(chat.id),
                    title=title,
                    when_text=when_text,
                    request_id=self._request_id(update),
                )
            )
        except UserError as e:
            self._answer(update, self._error(locale, e), locale=locale)
            return False
        # what was understood, title and time apart, with the one-step fixes: a misreading shows at once
        text = self._manage.scheduled(space, locale).text
        if chat.type != "private":
            profile = await self._profiles.get(user)
            if not (profile and profile.dm_reachable):
                # host reminders take the subscribers' path: the deep link opens the DM ("you're the host")
                button = Action(
                    t(locale, "button.get_reminders"),
                    ActionKind.URL,
                    tr.deep_link(self._tg.username, space.id),
                )
                text += "\n\n" + t(locale, "reply.host_open_dm")
                self._answer(update, text, locale=locale, actions=(button,))
                return True
        self._answer(update, text, locale=locale)
        return True

    async def _is_our_question(self, draft: _Draft, chat_id: int, message_id: int) -> bool:
        """Whether ``message_id`` is one of this conversation's questions. A question the engine has not
        recorded as sent yet may be the one: then any reply to one of our messages is taken."""
        unknown = False
        for key in draft.questions:
            ref = await self._replies.sent_message(key)
            if ref is None:
                unknown = True
            elif ref.chat_id == str(chat_id) and ref.id == str(message_id):
                return True
        return unknown

    async def on_text(self, update: Update, context: Ctx) -> None:
        msg, chat, u = update.effective_message, update.effective_chat, update.effective_user
        if msg is None or chat is None or u is None or not msg.text:
            return
        key = (chat.id, u.id)
        draft = self._drafts.get(key)
        if draft is None:
            return  # not a conversation of ours (a DM about something else, a reply to someone else)
        if self._clock.now() - draft.started > DRAFT_TTL:
            self._drafts.pop(key, None)
            return
        if chat.type != "private":
            # in a group, only an answer to our question continues the conversation
            replied = msg.reply_to_message
            if replied is None or replied.from_user is None or replied.from_user.id != self._tg.bot_id:
                return
            if not await self._is_our_question(draft, chat.id, replied.message_id):
                return
        if self._drafts.get(key) is not draft:
            return  # another update of this person took this step meanwhile
        step, title = draft.step, draft.title
        self._drafts.pop(key, None)
        who = await self._who(update)
        if who is None:
            return
        user, locale = who
        text = msg.text.strip()
        if len(text) > tr.MAX_INPUT:
            self._drafts[key] = draft
            draft.questions += _some(
                self._ask(update, t(locale, "input.too_long", limit=tr.MAX_INPUT), locale)
            )
            return
        if step == "title":
            try:
                title = clean_title(text)
            except UserError as e:  # ask again: the conversation goes on
                self._drafts[key] = draft
                draft.questions += _some(self._ask(update, self._error(locale, e), locale))
                return
            nxt = _Draft("time", self._clock.now(), title=title)
            self._drafts[key] = nxt
            nxt.questions += _some(self._ask(update, t(locale, "ask.time", title=title), locale))
            return
        if not await self._schedule(update, user, locale, when_text=text, title=title):
            # a time we could not use: the error was said; ask again rather than drop the conversation
            again = _Draft("time", self._clock.now(), title=title)
            self._drafts[key] = again
            again.questions += _some(self._ask(update, t(locale, "ask.time", title=title), locale))

    async def on_list(self, update: Update, context: Ctx) -> None:
        who = await self._who(update)
        chat = update.effective_chat
        if who is None or chat is None:
            return
        _, locale = who
        spaces = await self._spaces.upcoming(tr.chat_ref(chat.id), limit=15)
        if not spaces:
            self._answer(update, t(locale, "reply.no_spaces"), locale=locale)
            return
        lines = [t(locale, "list.header")]
        for s in spaces:
            marker = "🟣 " if s.status is SpaceStatus.LIVE else ""
            when = format_local(s.starts_at, s.tz, locale)
            lines.append(t(locale, "list.item", marker=marker, title=s.title, when=when, space_id=s.id))
        self._answer(update, "\n".join(lines), locale=locale)

    async def on_manage(self, update: Update, context: Ctx, *, verb: Verb, command: str) -> None:
        if await self._refuse_anonymous(update):
            return
        who = await self._who(update)
        if who is None:
            return
        user, locale = who
        space_id, _ = tr.split_id(" ".join(context.args or []))
        if space_id is None:
            self._answer(update, t(locale, "usage.id", command=command), locale=locale)
            return
        await self._reply_with(
            update,
            locale,
            self._manage.run(
                verb, user, locale, space_id, is_moderator=self._is_mod, request_id=self._request_id(update)
            ),
        )

    async def on_edit(self, update: Update, context: Ctx, *, command: str) -> None:
        """``/reschedule <id> <when>`` and ``/rename <id> <title>``: a Space's id, then its new value."""
        if await self._refuse_anonymous(update):
            return
        who = await self._who(update)
        if who is None:
            return
        user, locale = who
        space_id, value = tr.split_id(" ".join(context.args or []))
        if space_id is None or not value:
            self._answer(update, t(locale, f"usage.{command}"), locale=locale)
            return
        edit = self._manage.reschedule if command == "reschedule" else self._manage.rename
        await self._reply_with(
            update,
            locale,
            edit(
                user, locale, space_id, value, is_moderator=self._is_mod, request_id=self._request_id(update)
            ),
        )

    async def _reply_with(self, update: Update, locale: str, action: Awaitable[Reply]) -> None:
        """Run a management action and answer with its reply, or with the reason it was refused."""
        try:
            result = await action
        except UserError as e:
            self._answer(update, self._error(locale, e), locale=locale)
            return
        self._answer(update, result.text, locale=locale)

    async def on_tz(self, update: Update, context: Ctx) -> None:
        who = await self._who(update)
        if who is None:
            return
        user, locale = who
        if not context.args:
            self._answer(update, t(locale, "usage.tz"), locale=locale)
            return
        try:
            zone = await self._profiles.set_zone(user, context.args[0])
        except UserError as e:
            self._answer(update, self._error(locale, e), locale=locale)
            return
        self._answer(update, t(locale, "reply.zone_set", zone=zone), locale=locale)

    async def on_chat_tz(self, update: Update, context: Ctx) -> None:
        if await self._refuse_anonymous(update):
            return
        who = await self._who(update)
        chat = update.effective_chat
        if who is None or chat is None:
            return
        user, locale = who
        ref = tr.chat_ref(chat.id)
        if not context.args:
            self._answer(update, t(locale, "usage.tz"), locale=locale)
            return
        if not await self._is_mod(ref, user):
            self._answer(update, t(locale, "perm.admins_only"), locale=locale)
            return
        try:
            community = await self._profiles.set_community(ref, zone=context.args[0])
        except UserError as e:
            self._answer(update, self._error(locale, e), locale=locale)
            return
        self._answer(update, t(locale, "reply.community_zone_set", zone=community.tz), locale=locale)

    # ------------------------------------------------------------------ buttons and membership

    async def on_button(self, update: Update, context: Ctx) -> None:
        query = update.callback_query
        if query is None:
            return
        who = await self._who(update)
        if who is None:
            await self._toast(query)
            return
        user, locale = who
        parsed = parse_callback(query.data or "")
        if parsed is None:  # a button we did not make, or from an older version of the bot
            await self._toast(query)
            return
        verb, space_id = parsed
        chat = update.effective_chat
        via = tr.chat_ref(chat.id) if chat is not None and chat.type in tr.GROUP_TYPES else None
        # subscribe and unsubscribe set a state: a retried press lands on the same state; the others carry
        # the update's request id
        stateless = verb in (Verb.SUBSCRIBE, Verb.UNSUBSCRIBE)
        try:
            result = await self._manage.run(
                verb,
                user,
                locale,
                space_id,
                is_moderator=self._is_mod,
                via_chat=via,
                request_id=None if stateless else self._request_id(update),
            )
        except UserError as e:
            await self._toast(query, self._error(locale, e), alert=True)
            return
        sub = result.subscription
        if verb is Verb.SUBSCRIBE and sub is not None and via is not None:
            profile = await self._profiles.get(user)
            if not (profile and profile.dm_reachable):
                # never opened the bot: Telegram lets a callback answer open the bot's DM through a deep
                # link; pressing Start there completes the subscription and makes reminders deliverable
                await self._toast(query, url=tr.deep_link(self._tg.username, space_id))
                return
        if verb is Verb.UNSUBSCRIBE and sub is not None and sub.changed:
            # say plainly that this press removed the reminder (and how to set it back)
            await self._toast(query, t(locale, "tg.unsubscribed", title=sub.space.title), alert=True)
            return
        await self._toast(query, result.text)

    async def on_my_chat_member(self, update: Update, context: Ctx) -> None:
        change = update.my_chat_member
        if change is None or change.chat.type != "private" or change.from_user is None:
            return
        status = change.new_chat_member.status if change.new_chat_member else None
        # a user who blocks the bot is unreachable until they unblock it; no knocking in between
        await self._profiles.seen(
            tr.user_ref(change.from_user.id), dm_reachable=status not in ("kicked", "left")
        )

    async def on_error(self, update: object, context: Ctx) -> None:
        """A handler failed (a bug, or the database went away): this attempt does not count — the update is
        not confirmed, and comes again. After a few failed attempts the adapter gives up (:meth:`give_up`)."""
        if isinstance(update, Update):
            self._tg.failed(update.update_id, context.error)
            log.error(
                "telegram handler failed", exc_info=context.error, extra={"update_id": update.update_id}
            )
        else:
            log.error("telegram handler failed", exc_info=context.error)

    async def give_up(self, update: Update) -> list[Answer]:
        """The update failed again and again: tell the person (never leave a button spinning or a command
        unanswered) and let it go. Returns the answers to queue."""
        u = update.effective_user
        locale = pick_locale(u.language_code if u else None)
        if update.callback_query is not None:
            await self._toast(update.callback_query, t(locale, "error.generic"), alert=True)
            return []
        msg = update.effective_message
        if msg is None or not msg.text:
            return []
        notice = reply(t(locale, "error.generic"), locale=locale, reply_to=str(msg.message_id))
        return [Answer(tr.chat_ref(msg.chat_id), notice)]


def _some(key: str | None) -> list[str]:
    return [key] if key is not None else []
