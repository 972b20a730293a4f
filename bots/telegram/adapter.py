"""The Telegram adapter: lifecycle (polling or webhook), sending, and error mapping onto the core's errors.

Sending is paced by the engine's shared budget (not PTB's AIORateLimiter, which would pace a second time and
knows nothing of other processes); Telegram's ``retry_after`` comes back to the engine as RateLimited.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import warnings
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from aiohttp import web
from telegram import BotCommand, LinkPreviewOptions, Message, Update
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.ext import Application, ApplicationBuilder
from telegram.warnings import PTBUserWarning

from bots.telegram.handlers import Handlers
from bots.telegram.render import Rendered, render, render_mentions
from core.errors import ChatUnavailable, RateLimited, RecipientUnreachable, TransientError
from core.notices import Notice
from core.ports import Budget, Clock, Links
from core.refs import ChatRef, MessageRef, Platform, UserRef
from core.services.manage import ManageService
from core.services.profiles import ProfileService
from core.services.spaces import SpaceService
from core.texts import t

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/telegram/webhook"
# How long a reply may wait, in all, for the send budget and for Telegram's flood limits (a group's 20/min can
# mean most of a minute) before it is given up, loudly: an answer later than this answers nothing any more.
REPLY_PATIENCE = 90.0
REPLY_ATTEMPTS = 30  # and at most this many flood rejections (a retry_after of 0 must not spin)
ALLOWED_UPDATES = ["message", "callback_query", "my_chat_member"]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TelegramConfig:
    token: str
    mode: str = "polling"  # or "webhook"
    webhook_secret: str | None = None
    public_url: str = ""
    api_base: str = "https://api.telegram.org/bot"
    file_base: str = "https://api.telegram.org/file/bot"
    poll_timeout: float = 10.0  # long-polling hold, seconds
    paid_broadcast: bool = False  # DMs with allow_paid_broadcast: ~1,000/s instead of ~30/s, paid in Stars


class TelegramPlatform:
    """core.ports.ChatPlatform for Telegram; also contributes the webhook route to the web app."""

    platform = Platform.TELEGRAM

    def __init__(
        self,
        config: TelegramConfig,
        *,
        spaces: SpaceService,
        profiles: ProfileService,
        links: Links,
        clock: Clock,
        receive: bool = True,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        budget: Budget | None = None,
    ) -> None:
        self.config = config
        self._sleep = sleep
        self._budget = budget  # replies are paced with the deliveries (None: only 429s pace them)
        self._receive = receive  # False in worker-only processes: they send, the web process receives
        self._handlers = Handlers(
            self,
            spaces=spaces,
            manage=ManageService(spaces, links),
            profiles=profiles,
            links=links,
            clock=clock,
        )
        self._app: Application[Any, Any, Any, Any, Any, Any] | None = None
        self._recent_updates: OrderedDict[int, None] = OrderedDict()
        self._poller: asyncio.Task[None] | None = None
        self.username = ""

    # ------------------------------------------------------------------ lifecycle

    @property
    def app(self) -> Application[Any, Any, Any, Any, Any, Any]:
        if self._app is None:
            raise RuntimeError("TelegramPlatform.start() has not run")
        return self._app

    def web_routes(self) -> Sequence[tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]]:
        if self._receive and self.config.mode == "webhook":
            return [("POST", WEBHOOK_PATH, self._on_webhook)]
        return []

    async def start(self) -> None:
        if self._receive and self.config.mode == "webhook" and not self.config.webhook_secret:
            # without it every update would be refused with 403: a deaf bot; say so at start-up instead
            raise ValueError("TELEGRAM_MODE=webhook needs TELEGRAM_WEBHOOK_SECRET")
        builder = (
            ApplicationBuilder()
            .token(self.config.token)
            .base_url(self.config.api_base)
            .base_file_url(self.config.file_base)
            .job_queue(None)  # scheduling belongs to the core (PLATFORMS.md: don't use PTB's JobQueue)
            .concurrent_updates(True)
            # PTB's default pool is one connection: the engine's concurrent sends would queue behind it
            .connection_pool_size(32)
            .pool_timeout(30.0)
        )
        # no PTB Updater: its polling loop retries a batch holding one unparsable update forever (the bot
        # goes deaf); ours takes updates one by one, through the same door as the webhook
        builder = builder.updater(None)
        app = builder.build()
        self._handlers.register(app)
        await app.initialize()  # getMe
        self._app = app
        self.username = app.bot.username
        if not self._receive:
            return
        await app.bot.set_my_commands([BotCommand(c, d) for c, d in self._handlers.command_menu("en")])
        await app.bot.set_my_commands(
            [BotCommand(c, d) for c, d in self._handlers.command_menu("fr")], language_code="fr"
        )
        await app.start()
        if self.config.mode == "webhook":
            url = f"{self.config.public_url.rstrip('/')}{WEBHOOK_PATH}"
            await app.bot.set_webhook(
                url,
                secret_token=self.config.webhook_secret,
                allowed_updates=ALLOWED_UPDATES,
                drop_pending_updates=False,
            )
            log.info("telegram webhook set", extra={"url": url})
        else:
            await app.bot.delete_webhook()
            self._poller = asyncio.create_task(self._poll(), name="telegram-polling")
            log.info("telegram long polling started", extra={"bot": self.username})

    async def stop_receiving(self) -> None:
        """Shutdown, first step: no new updates (polling ends); sending keeps working for the last batch."""
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await poller

    async def stop(self) -> None:
        await self.stop_receiving()
        app, self._app = self._app, None
        if app is None:
            return
        with contextlib.suppress(Exception):
            if app.running:
                await app.stop()
        with contextlib.suppress(Exception):
            await app.shutdown()

    # ------------------------------------------------------------------ webhook

    async def _on_webhook(self, request: web.Request) -> web.StreamResponse:
        secret = self.config.webhook_secret or ""
        got = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
        # constant time: the secret is the only thing between the internet and our command handlers
        if not secret or not hmac.compare_digest(got.encode(), secret.encode()):
            return web.Response(status=403, text="forbidden")
        try:
            data = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            return web.Response(status=400, text="not JSON")
        if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
            return web.Response(status=400, text="no update_id")
        await self._accept(data)
        return web.Response(status=200)  # also for a malformed update: retrying it cannot help

    async def _accept(self, data: dict[str, Any]) -> None:
        """One raw update, from the webhook or from polling: dedupe on update_id, parse, queue."""
        update_id = int(data["update_id"])
        if update_id in self._recent_updates:  # Telegram retried an update we already took
            return
        self._recent_updates[update_id] = None
        if len(self._recent_updates) > 10_000:
            self._recent_updates.popitem(last=False)
        try:
            update = Update.de_json(data, self.app.bot)
        except Exception:
            log.warning("malformed telegram update ignored", extra={"update_id": update_id})
            return
        await self.app.update_queue.put(update)

    async def _poll(self) -> None:
        """Long polling (getUpdates), update by update; errors back off and never end the loop."""
        offset: int | None = None
        failures = 0
        while True:
            try:
                with warnings.catch_warnings():  # PTB prefers get_updates(), which parses the batch whole
                    warnings.simplefilter("ignore", PTBUserWarning)
                    raw = await self.app.bot.do_api_request(
                        "getUpdates",
                        api_kwargs={
                            "offset": offset,
                            "timeout": int(self.config.poll_timeout),
                            "allowed_updates": ALLOWED_UPDATES,
                        },
                        read_timeout=self.config.poll_timeout + 10,
                    )
            except asyncio.CancelledError:
                raise
            except RetryAfter as e:
                wait = e.retry_after
                await asyncio.sleep(wait.total_seconds() if isinstance(wait, timedelta) else float(wait))
                continue
            except Exception as e:  # TelegramError, or a body we cannot read
                failures += 1
                delay = min(30.0, 0.5 * 2 ** min(failures, 6))
                log.warning("getUpdates failed (%s); retrying in %.1f s", e, delay)
                await asyncio.sleep(delay)
                continue
            failures = 0
            for item in raw if isinstance(raw, list) else []:
                if isinstance(item, dict) and isinstance(item.get("update_id"), int):
                    # confirmed whatever happens next: an update we cannot parse must not block the rest
                    offset = max(offset or 0, item["update_id"] + 1)
                    await self._accept(item)

    # ------------------------------------------------------------------ sending (core.ports.ChatPlatform)

    async def post(self, chat: ChatRef, notice: Notice, *, key: str) -> MessageRef:
        msg = await self._send(int(chat.id), render(notice), to_user=False)
        # the chat the message really landed in: a group upgraded to a supergroup has a new id
        return MessageRef(Platform.TELEGRAM, str(msg.chat_id), str(msg.message_id))

    async def edit(self, message: MessageRef, notice: Notice) -> None:
        r = render(notice)
        try:
            await self._call(
                self.app.bot.edit_message_text(
                    chat_id=int(message.chat_id),
                    message_id=int(message.id),
                    text=r.text,
                    parse_mode=ParseMode.HTML,
                    reply_markup=r.markup,
                    link_preview_options=LinkPreviewOptions(is_disabled=True),
                ),
                to_user=False,
            )
        except _NotModified:
            pass  # the contract: an edit that changes nothing succeeds
        except _Migrated as e:
            raise ChatUnavailable(
                f"the group became supergroup {e.new_chat_id}; its old card cannot be edited"
            ) from e

    async def direct(self, user: UserRef, notice: Notice, *, key: str) -> MessageRef:
        # a private chat's id is the user's id
        msg = await self._send(int(user.id), render(notice), to_user=True)
        return MessageRef(Platform.TELEGRAM, user.id, str(msg.message_id))

    async def mention(
        self, chat: ChatRef, users: Mapping[UserRef, str], notice: Notice, *, key: str
    ) -> MessageRef:
        prefix = t(notice.locale, "notice.mention", mentions="{mentions}")
        msg = await self._send(int(chat.id), render_mentions(users, notice, prefix), to_user=False)
        return MessageRef(Platform.TELEGRAM, str(msg.chat_id), str(msg.message_id))

    async def reply(self, chat_id: int, rendered: Rendered, *, reply_to: int | None = None) -> int | None:
        """An answer to someone who just wrote to us (not a delivery: no outbox). Paced by the same budget
        as the deliveries — every process's sends count against the same limits — and a flood limit is
        waited out, then tried again, up to REPLY_PATIENCE seconds in all: a burst of commands in one group
        still gets every answer. Returns the sent message's id (None if it could not be sent)."""
        chat = str(chat_id)
        waited = 0.0
        attempts = 0
        while attempts < REPLY_ATTEMPTS:
            attempts += 1
            if self._budget is not None:
                got = await self._budget.acquire(Platform.TELEGRAM, chat, max_wait=REPLY_PATIENCE - waited)
                if got < 0:
                    break
                waited += got
            try:
                msg = await self.app.bot.send_message(
                    chat_id,
                    rendered.text,
                    parse_mode=ParseMode.HTML,
                    reply_markup=rendered.markup,
                    reply_to_message_id=reply_to,
                    allow_sending_without_reply=True,
                    link_preview_options=LinkPreviewOptions(is_disabled=True),
                )
                return int(msg.message_id)
            except RetryAfter as e:
                wait = e.retry_after
                seconds = wait.total_seconds() if isinstance(wait, timedelta) else float(wait)
                log.warning("reply rate limited; retrying in %.0f s", seconds, extra={"chat_id": chat_id})
                if self._budget is not None:
                    # as the engine does: a group's 429 holds that group, a private chat's the whole platform
                    # (we pace chats ourselves: it was the global limit) — in every process
                    await self._budget.penalise(
                        Platform.TELEGRAM, seconds, chat=chat if chat_id < 0 else None
                    )
                    continue  # the next acquire waits the hold out
                if waited + seconds > REPLY_PATIENCE:
                    break
                await self._sleep(seconds)
                waited += seconds
            except TelegramError as e:
                log.warning("reply failed: %s", e, extra={"chat_id": chat_id})
                return None
        log.warning(
            "reply given up: flood limits for %.0f s (%d attempts)",
            waited,
            attempts,
            extra={"chat_id": chat_id},
        )
        return None

    async def _send(self, chat_id: int, r: Rendered, *, to_user: bool) -> Message:
        def call(target: int) -> Awaitable[Message]:
            return self.app.bot.send_message(
                target,
                r.text,
                parse_mode=ParseMode.HTML,
                reply_markup=r.markup,
                link_preview_options=LinkPreviewOptions(is_disabled=True),
                # only DMs: the fan-out is what needs the higher rate; chats keep their own limits anyway
                allow_paid_broadcast=True if to_user and self.config.paid_broadcast else None,
            )

        try:
            return await self._call(call(chat_id), to_user=to_user)
        except _Migrated as m:
            # Telegram upgraded the group to a supergroup: same people, new id — post there
            log.info("telegram group migrated", extra={"old": chat_id, "new": m.new_chat_id})
            return await self._call(call(m.new_chat_id), to_user=to_user)

    async def _call(self, call: Awaitable[T], *, to_user: bool) -> T:
        """Map PTB's errors onto what the engine understands."""
        try:
            return await call
        except RetryAfter as e:
            wait = e.retry_after
            seconds = wait.total_seconds() if isinstance(wait, timedelta) else float(wait)
            raise RateLimited(seconds, "telegram") from e
        except ChatMigrated as e:
            raise _Migrated(int(e.new_chat_id)) from e
        except Forbidden as e:  # blocked, never started, kicked from the group
            if to_user:
                raise RecipientUnreachable(e.message) from e
            raise ChatUnavailable(e.message) from e
        except BadRequest as e:
            text = e.message.lower()
            if "message is not modified" in text:
                raise _NotModified() from e
            if to_user and "chat not found" in text:
                raise RecipientUnreachable(e.message) from e
            # not found, no rights, or a payload Telegram refuses: retrying cannot help; dead-letter with it
            raise ChatUnavailable(f"telegram refused: {e.message}") from e
        except (TimedOut, NetworkError) as e:
            raise TransientError(f"telegram: {e}") from e

    # ------------------------------------------------------------------ platform queries for handlers

    async def is_admin(self, chat: ChatRef, user: UserRef) -> bool:
        """Telegram's moderators are the chat's creator and administrators; a private chat has none."""
        chat_id = int(chat.id)
        if chat_id > 0:
            return False
        try:
            member = await self.app.bot.get_chat_member(chat_id, int(user.id))
        except TelegramError as e:
            log.warning("getChatMember failed: %s", e)
            return False
        return member.status in ("creator", "administrator")


class _NotModified(Exception):
    pass


class _Migrated(Exception):
    def __init__(self, new_chat_id: int) -> None:
        super().__init__(new_chat_id)
        self.new_chat_id = new_chat_id
