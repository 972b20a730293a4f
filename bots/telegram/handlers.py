"""Thin PTB handlers: translate the update into the core's inbound request, render the answers.

Parsing, permissions, texts and conversations are the core's (``core.services.inbound``); here only what is
Telegram's: which update is which command, anonymous senders, and how an answer looks — a message queued in
the outbox, or for a button press a callback-query toast.

Answers are not sent from here: :meth:`Handlers._render` hands them to the adapter, which queues them in the
outbox once the whole update is handled (``core.services.replies``), so a crash can neither lose an answer
nor send it twice. Only callback-query toasts are answered inline: they are not chat messages, must come
within seconds, and are harmless if repeated.

Every effect is idempotent on the update, because Telegram may deliver an update again after a crash:
schedule and manage carry the request id ``tg:<bot id>:<update id>``, subscribing and unsubscribing set a
state, a conversation step taken again answers the same. Updates of one chat are handled one at a time, in
order (the adapter sees to it).

Odd updates (no sender, no chat, anonymous posts) get a plain answer or nothing — never an assertion.
"""

from __future__ import annotations

import functools
import logging
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
from core.notices import ActionKind, Verb, parse_callback, reply
from core.refs import ChatRef, UserRef
from core.services import inbound as ib
from core.services.inbound import InboundService
from core.services.profiles import ProfileService
from core.services.replies import Answer
from core.texts import pick_locale, t

if TYPE_CHECKING:
    from bots.telegram.adapter import TelegramPlatform

log = logging.getLogger(__name__)

CALLBACK_TEXT_LIMIT = 200  # Telegram's limit for answerCallbackQuery text
Ctx = ContextTypes.DEFAULT_TYPE
_VERBS = {"cancel": Verb.CANCEL, "live": Verb.START, "end": Verb.END}


class Handlers:
    def __init__(
        self, platform: TelegramPlatform, *, inbound: InboundService, profiles: ProfileService
    ) -> None:
        self._tg = platform
        self._inbound = inbound
        self._profiles = profiles

    def register(self, app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        app.add_handler(CommandHandler("start", self.on_start, filters.ChatType.PRIVATE))
        app.add_handler(CommandHandler(["space", "schedule"], self.on_space))
        app.add_handler(CommandHandler("spaces", self.on_list))
        for name, verb in _VERBS.items():  # one handler each: the verb never depends on parsing the text
            app.add_handler(CommandHandler(name, functools.partial(self.on_manage, verb=verb, command=name)))
        for name in ("reschedule", "rename"):
            app.add_handler(CommandHandler(name, functools.partial(self.on_edit, command=name)))
        app.add_handler(CommandHandler("source", self.on_source))
        app.add_handler(CommandHandler("tz", self.on_tz))
        app.add_handler(CommandHandler("chattz", self.on_chat_tz))
        app.add_handler(CommandHandler("help", self.on_help))
        app.add_handler(CommandHandler("link", self.on_link))
        app.add_handler(CommandHandler("unlink", self.on_unlink))
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
            ("source", "Le son d'un Space" if fr else "Set a Space's audio"),
            ("cancel", "Annuler un Space" if fr else "Cancel a Space"),
            ("live", "Démarrer un Space" if fr else "Start a Space now"),
            ("end", "Terminer un Space" if fr else "End a live Space"),
            ("tz", "Votre fuseau horaire" if fr else "Your time zone"),
            ("link", "Relier à un autre groupe ou compte" if fr else "Link with another chat or account"),
            ("unlink", "Détacher ce groupe ou compte" if fr else "Unlink this chat or account"),
            ("help", "Aide" if fr else "Help"),
        ]

    # ------------------------------------------------------------------ update → request, answers → Telegram

    def _request(self, update: Update) -> ib.Request | None:
        """The core's request for this update; None when it names no one (a channel post, an odd shape):
        there is no one to act for."""
        u, chat, msg = update.effective_user, update.effective_chat, update.effective_message
        if u is None or chat is None:
            return None
        replied = msg.reply_to_message if msg is not None else None
        ours = (
            replied is not None and replied.from_user is not None and replied.from_user.id == self._tg.bot_id
        )
        return ib.Request(
            actor=tr.user_ref(u.id),
            chat=tr.chat_ref(chat.id),
            locale=pick_locale(u.language_code),
            request_id=self._tg.event_key(update.update_id),
            private=chat.type == "private",
            is_moderator=self._is_mod,
            message_id=str(msg.message_id) if msg is not None else None,
            replied_to=str(replied.message_id) if replied is not None and ours else None,
            display_name=tr.display_name(u.first_name, u.last_name, u.username),
            language=u.language_code,
            greet_name=u.first_name,
            dm_link=functools.partial(tr.deep_link, self._tg.username),
        )

    async def _run(self, update: Update, command: ib.Command) -> None:
        """Hand the command to the core and queue its answers (in order: the n-th is the update's n-th)."""
        req = self._request(update)
        if req is None:
            return
        answers = await self._inbound.handle(req, command)
        msg = update.effective_message
        if msg is None:
            return
        for a in answers:
            self._tg.answer(update.update_id, msg.chat_id, a.notice)

    async def _refuse_anonymous(self, update: Update) -> bool:
        """Anonymous admins and posts "as a channel" reach us with a shared placeholder user: acting as them
        would let anyone posting anonymously anywhere manage a Space. Ask for a personal message instead."""
        msg, u = update.effective_message, update.effective_user
        if msg is None or not tr.is_anonymous(u.id if u else None, msg.sender_chat is not None):
            return False
        locale = pick_locale(u.language_code if u else None)
        notice = reply(t(locale, "tg.anonymous"), locale=locale, reply_to=str(msg.message_id))
        self._tg.answer(update.update_id, msg.chat_id, notice)
        return True

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

    # ------------------------------------------------------------------ commands

    async def on_start(self, update: Update, context: Ctx) -> None:
        payload = context.args[0] if context.args else None
        await self._run(update, ib.OpenLink(tr.parse_start_payload(payload)))

    async def on_help(self, update: Update, context: Ctx) -> None:
        await self._run(update, ib.Help())

    async def on_space(self, update: Update, context: Ctx) -> None:
        if await self._refuse_anonymous(update):
            return
        args = context.args or []
        # `/space link [code]` and `/space unlink`, as the other platforms type them (and the texts say)
        linking = ib.link_words(args[0], " ".join(args[1:])) if args else None
        await self._run(update, linking or ib.Schedule(" ".join(args)))

    async def on_link(self, update: Update, context: Ctx) -> None:
        """``/link`` (a code for this group, or in private for this account) or ``/link <code>``."""
        if await self._refuse_anonymous(update):  # an anonymous admin is no one we could check
            return
        await self._run(update, ib.Link(" ".join(context.args or [])))

    async def on_unlink(self, update: Update, context: Ctx) -> None:
        if await self._refuse_anonymous(update):
            return
        await self._run(update, ib.Unlink())

    async def on_text(self, update: Update, context: Ctx) -> None:
        msg = update.effective_message
        if msg is None or not msg.text:
            return
        await self._run(update, ib.Say(msg.text))

    async def on_list(self, update: Update, context: Ctx) -> None:
        await self._run(update, ib.ListSpaces())

    async def on_manage(self, update: Update, context: Ctx, *, verb: Verb, command: str) -> None:
        if await self._refuse_anonymous(update):
            return
        space_id, rest = tr.split_id(" ".join(context.args or []))
        # "/live <id> <source>": go live with that audio source (the other verbs take the id alone)
        source = rest if verb is Verb.START else ""
        await self._run(update, ib.Manage(verb, space_id or "", command, source=source))

    async def on_edit(self, update: Update, context: Ctx, *, command: str) -> None:
        """``/reschedule <id> <when>`` and ``/rename <id> <title>``: a Space's id, then its new value."""
        if await self._refuse_anonymous(update):
            return
        space_id, value = tr.split_id(" ".join(context.args or []))
        edit = (
            ib.Reschedule(space_id or "", value)
            if command == "reschedule"
            else ib.Rename(space_id or "", value)
        )
        await self._run(update, edit)

    async def on_source(self, update: Update, context: Ctx) -> None:
        """``/source <id> <source>``: a stream URL, ``file:<name>``, ``browser``, or ``none``. (Telegram has
        no voice channels to bridge: bridging is Discord's.)"""
        if await self._refuse_anonymous(update):
            return
        args = " ".join(context.args or [])
        space_id, value = tr.split_id(args)
        await self._run(update, ib.SetSource(space_id or "", value))

    async def on_tz(self, update: Update, context: Ctx) -> None:
        await self._run(update, ib.SetZone(context.args[0] if context.args else ""))

    async def on_chat_tz(self, update: Update, context: Ctx) -> None:
        if await self._refuse_anonymous(update):
            return
        await self._run(update, ib.SetChatZone(context.args[0] if context.args else ""))

    # ------------------------------------------------------------------ buttons and membership

    async def on_button(self, update: Update, context: Ctx) -> None:
        query = update.callback_query
        if query is None:
            return
        req = self._request(update) if update.effective_user is not None else None
        parsed = parse_callback(query.data or "")
        if req is None or parsed is None:  # no one to act for, or a button we did not make (or an old one)
            await self._toast(query)
            return
        verb, space_id = parsed
        chat = update.effective_chat
        via = tr.chat_ref(chat.id) if chat is not None and chat.type in tr.GROUP_TYPES else None
        answers = await self._inbound.handle(req, ib.Press(verb, space_id, via_chat=via))
        await self._toast_answers(query, answers)

    async def _toast_answers(self, query: CallbackQuery, answers: list[Answer]) -> None:
        """A button's (ephemeral) answer as the press's toast: a link opens (the bot's private chat), an
        answer not to be missed is an alert."""
        if not answers:
            await self._toast(query)
            return
        answer = answers[0]
        urls = [a.value for a in answer.notice.actions if a.kind is ActionKind.URL]
        if urls:
            await self._toast(query, url=urls[0])
            return
        await self._toast(query, "\n".join(answer.notice.lines), alert=answer.alert)

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
