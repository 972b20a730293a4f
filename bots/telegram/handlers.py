"""Thin PTB handlers: translate the update, call the core, show the answer in the user's language.

Updates are processed concurrently (``concurrent_updates``): anything shared between two updates of the same
person (the ``/space`` conversation) is claimed before the first ``await``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from telegram import ForceReply, InlineKeyboardButton, InlineKeyboardMarkup, Update
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
from bots.telegram.render import Rendered, plain, plain_lines, rich
from core.commands import ScheduleSpace, Subscribe, schedule_text
from core.errors import UserError
from core.models import SpaceStatus
from core.notices import Verb, parse_callback
from core.ports import Clock, Links
from core.refs import ChatRef, UserRef
from core.rules import Actor, clean_title
from core.services.manage import ManageService, Reply
from core.services.profiles import ProfileService
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
    question: int | None  # the message_id of our question: in groups only a reply to it continues
    title: str = ""


class Handlers:
    def __init__(
        self,
        platform: TelegramPlatform,
        *,
        spaces: SpaceService,
        manage: ManageService,
        profiles: ProfileService,
        links: Links,
        clock: Clock,
    ) -> None:
        self._tg = platform
        self._spaces = spaces
        self._manage = manage
        self._profiles = profiles
        self._links = links
        self._clock = clock
        self._drafts: dict[tuple[int, int], _Draft] = {}

    def register(self, app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        app.add_handler(CommandHandler("start", self.on_start, filters.ChatType.PRIVATE))
        app.add_handler(CommandHandler(["space", "schedule"], self.on_space))
        app.add_handler(CommandHandler("spaces", self.on_list))
        for name, verb in _VERBS.items():  # one handler each: the verb never depends on parsing the text
            app.add_handler(CommandHandler(name, functools.partial(self.on_manage, verb=verb, command=name)))
        app.add_handler(CommandHandler("reschedule", self.on_reschedule))
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
            ("cancel", "Annuler un Space" if fr else "Cancel a Space"),
            ("live", "Démarrer un Space" if fr else "Start a Space now"),
            ("end", "Terminer un Space" if fr else "End a live Space"),
            ("tz", "Votre fuseau horaire" if fr else "Your time zone"),
            ("help", "Aide" if fr else "Help"),
        ]

    # ------------------------------------------------------------------ helpers

    async def _who(self, update: Update) -> tuple[UserRef, str]:
        """The acting user and their locale; remembers their name, language and (in a DM) reachability."""
        u = update.effective_user
        assert u is not None
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
        await self._answer(update, t(locale, "tg.anonymous"))
        return True

    async def _answer(self, update: Update, text: str | Rendered) -> int | None:
        msg = update.effective_message
        if msg is None:
            return None
        rendered = plain(text) if isinstance(text, str) else text
        return await self._tg.reply(msg.chat_id, rendered, reply_to=msg.message_id)

    async def _ask(self, update: Update, text: str) -> int | None:
        """A question answered by replying to it (which privacy mode lets through in groups)."""
        return await self._answer(update, Rendered(rich(text), ForceReply(selective=True)))

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
        user, locale = await self._who(update)
        payload = context.args[0] if context.args else None
        space_id = tr.parse_start_payload(payload)
        if space_id is None:
            name = update.effective_user.first_name if update.effective_user else ""
            await self._answer(update, t(locale, "welcome", name=name))
            return
        # the deep link from a group's "Set reminder": completes the subscription where we can DM later
        try:
            res = await self._spaces.subscribe(Subscribe(user, space_id, locale=locale))
        except UserError as e:
            await self._answer(update, self._error(locale, e))
            return
        if res.space.status is SpaceStatus.LIVE:
            link = self._links.space(space_id)
            await self._answer(update, t(locale, "reply.live_now", title=res.space.title, link=link))
            return
        await self._answer(update, t(locale, "reply.subscribed", title=res.space.title))

    async def on_help(self, update: Update, context: Ctx) -> None:
        user, locale = await self._who(update)
        chat = update.effective_chat
        zone = await self._spaces.zone_for(user, tr.chat_ref(chat.id) if chat else None)
        await self._answer(update, t(locale, "help", zone=zone))

    async def on_space(self, update: Update, context: Ctx) -> None:
        if await self._refuse_anonymous(update):
            return
        msg, chat, u = update.effective_message, update.effective_chat, update.effective_user
        assert msg is not None and chat is not None and u is not None
        args = schedule_text(" ".join(context.args or []))
        if not args:  # a bare /space: ask for the title, then the time
            self._forget_old_drafts()
            draft = _Draft("title", self._clock.now(), None)
            self._drafts[(chat.id, u.id)] = draft  # claimed before any await
            _, locale = await self._who(update)
            draft.question = await self._ask(update, t(locale, "ask.title"))
            return
        user, locale = await self._who(update)
        if len(args) > tr.MAX_INPUT:
            await self._answer(update, t(locale, "input.too_long", limit=tr.MAX_INPUT))
            return
        await self._schedule(update, user, locale, when_text=args, title="")

    async def _schedule(
        self, update: Update, user: UserRef, locale: str, *, when_text: str, title: str
    ) -> bool:
        chat = update.effective_chat
        assert chat is not None
        try:
            space = await self._spaces.schedule(
                ScheduleSpace(
                    actor=Actor(user, locale=locale),
                    chat=tr.chat_ref(chat.id),
                    title=title,
                    when_text=when_text,
                    request_id=f"update:{update.update_id}",
                )
            )
        except UserError as e:
            await self._answer(update, self._error(locale, e))
            return False
        if chat.type == "private":
            # in a group the card itself is the confirmation; in a DM say where to share it from
            when = format_local(space.starts_at, space.tz, locale)
            link = self._links.space(space.id)
            await self._answer(update, t(locale, "reply.scheduled", title=space.title, when=when, link=link))
            return True
        profile = await self._profiles.get(user)
        if not (profile and profile.dm_reachable):
            # host reminders take the subscribers' path: the deep link opens the DM (and says "you're the host")
            button = InlineKeyboardButton(
                t(locale, "button.get_reminders"), url=tr.deep_link(self._tg.username, space.id)
            )
            text = rich(t(locale, "reply.host_open_dm", title=space.title))
            await self._answer(update, Rendered(text, InlineKeyboardMarkup([[button]])))
        return True

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
        replied = msg.reply_to_message.message_id if msg.reply_to_message else None
        if chat.type != "private" and (draft.question is None or replied != draft.question):
            return  # in a group, only an answer to our question continues the conversation
        # claim this step before any await: a second quick answer must not schedule a second Space
        step, title = draft.step, draft.title
        self._drafts.pop(key, None)
        user, locale = await self._who(update)
        text = msg.text.strip()
        if len(text) > tr.MAX_INPUT:
            self._drafts[key] = draft
            draft.question = await self._ask(update, t(locale, "input.too_long", limit=tr.MAX_INPUT))
            return
        if step == "title":
            try:
                title = clean_title(text)
            except UserError as e:  # ask again: the conversation goes on
                self._drafts[key] = draft
                draft.question = await self._ask(update, self._error(locale, e))
                return
            nxt = _Draft("time", self._clock.now(), None, title)
            self._drafts[key] = nxt
            nxt.question = await self._ask(update, t(locale, "ask.time", title=title))
            return
        if not await self._schedule(update, user, locale, when_text=text, title=title):
            # a time we could not use: the error was said; ask again rather than drop the conversation
            again = _Draft("time", self._clock.now(), None, title)
            self._drafts[key] = again
            again.question = await self._ask(update, t(locale, "ask.time", title=title))

    async def on_list(self, update: Update, context: Ctx) -> None:
        _, locale = await self._who(update)
        chat = update.effective_chat
        assert chat is not None
        spaces = await self._spaces.upcoming(tr.chat_ref(chat.id), limit=15)
        if not spaces:
            await self._answer(update, t(locale, "reply.no_spaces"))
            return
        lines = [t(locale, "list.header")]
        for s in spaces:
            marker = "🟣 " if s.status is SpaceStatus.LIVE else ""
            when = format_local(s.starts_at, s.tz, locale)
            lines.append(t(locale, "list.item", marker=marker, title=s.title, when=when, space_id=s.id))
        await self._answer(update, plain_lines(lines))

    async def on_manage(self, update: Update, context: Ctx, *, verb: Verb, command: str) -> None:
        if await self._refuse_anonymous(update):
            return
        user, locale = await self._who(update)
        space_id, _ = tr.split_id(" ".join(context.args or []))
        if space_id is None:
            await self._answer(update, t(locale, "usage.id", command=command))
            return
        request = f"update:{update.update_id}"
        await self._reply_with(
            update,
            locale,
            self._manage.run(verb, user, locale, space_id, is_moderator=self._is_mod, request_id=request),
        )

    async def on_reschedule(self, update: Update, context: Ctx) -> None:
        if await self._refuse_anonymous(update):
            return
        user, locale = await self._who(update)
        space_id, when = tr.split_id(" ".join(context.args or []))
        if space_id is None or not when:
            await self._answer(update, t(locale, "usage.reschedule"))
            return
        request = f"update:{update.update_id}"
        await self._reply_with(
            update,
            locale,
            self._manage.reschedule(
                user, locale, space_id, when, is_moderator=self._is_mod, request_id=request
            ),
        )

    async def _reply_with(self, update: Update, locale: str, action: Awaitable[Reply]) -> None:
        """Run a management action and answer with its reply, or with the reason it was refused."""
        try:
            reply = await action
        except UserError as e:
            await self._answer(update, self._error(locale, e))
            return
        await self._answer(update, reply.text)

    async def on_tz(self, update: Update, context: Ctx) -> None:
        user, locale = await self._who(update)
        if not context.args:
            await self._answer(update, t(locale, "usage.tz"))
            return
        try:
            zone = await self._profiles.set_zone(user, context.args[0])
        except UserError as e:
            await self._answer(update, self._error(locale, e))
            return
        await self._answer(update, t(locale, "reply.zone_set", zone=zone))

    async def on_chat_tz(self, update: Update, context: Ctx) -> None:
        if await self._refuse_anonymous(update):
            return
        user, locale = await self._who(update)
        chat = update.effective_chat
        assert chat is not None
        ref = tr.chat_ref(chat.id)
        if not context.args:
            await self._answer(update, t(locale, "usage.tz"))
            return
        if not await self._is_mod(ref, user):
            await self._answer(update, t(locale, "perm.admins_only"))
            return
        try:
            community = await self._profiles.set_community(ref, zone=context.args[0])
        except UserError as e:
            await self._answer(update, self._error(locale, e))
            return
        await self._answer(update, t(locale, "reply.community_zone_set", zone=community.tz))

    # ------------------------------------------------------------------ buttons and membership

    async def on_button(self, update: Update, context: Ctx) -> None:
        query = update.callback_query
        if query is None:
            return
        user, locale = await self._who(update)
        parsed = parse_callback(query.data or "")
        if parsed is None:  # a button we did not make, or from an older version of the bot
            await query.answer()
            return
        verb, space_id = parsed
        chat = update.effective_chat
        via = tr.chat_ref(chat.id) if chat is not None and chat.type in tr.GROUP_TYPES else None
        try:
            reply = await self._manage.run(
                verb,
                user,
                locale,
                space_id,
                is_moderator=self._is_mod,
                via_chat=via,
                request_id=f"update:{update.update_id}" if verb is not Verb.SUBSCRIBE else None,
            )
        except UserError as e:
            await query.answer(self._error(locale, e)[:CALLBACK_TEXT_LIMIT], show_alert=True)
            return
        sub = reply.subscription
        if sub is not None and sub.subscribed and via is not None:
            profile = await self._profiles.get(user)
            if not (profile and profile.dm_reachable):
                # never opened the bot: Telegram lets a callback answer open the bot's DM through a deep
                # link; pressing Start there completes the subscription and makes reminders deliverable
                await query.answer(url=tr.deep_link(self._tg.username, space_id))
                return
        if sub is not None and not sub.subscribed:
            # the card's one button toggles: say plainly that this tap removed the reminder
            await query.answer(
                t(locale, "tg.unsubscribed", title=sub.space.title)[:CALLBACK_TEXT_LIMIT], show_alert=True
            )
            return
        await query.answer(reply.text[:CALLBACK_TEXT_LIMIT])

    async def on_my_chat_member(self, update: Update, context: Ctx) -> None:
        change = update.my_chat_member
        if change is None or change.chat.type != "private":
            return
        status = change.new_chat_member.status
        # a user who blocks the bot is unreachable until they unblock it; no knocking in between
        await self._profiles.seen(
            tr.user_ref(change.from_user.id), dm_reachable=status not in ("kicked", "left")
        )

    async def on_error(self, update: object, context: Ctx) -> None:
        """A bug or an outage: log it, and never leave the person waiting (a spinning button, no answer)."""
        log.error("telegram handler failed", exc_info=context.error)
        if not isinstance(update, Update):
            return
        locale = pick_locale(update.effective_user.language_code if update.effective_user else None)
        try:
            if update.callback_query is not None:
                await update.callback_query.answer(
                    t(locale, "error.generic")[:CALLBACK_TEXT_LIMIT], show_alert=True
                )
            elif update.effective_message is not None and update.effective_message.text:
                await self._answer(update, t(locale, "error.generic"))
        except Exception:
            log.warning("could not tell the user about the failure", exc_info=True)
