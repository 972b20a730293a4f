"""The Telegram adapter: lifecycle (polling or webhook), receiving updates, sending, and error mapping onto
the core's errors.

Receiving: Telegram delivers each update at least once, and forgets it once confirmed (the long-polling
offset moves past it, or the webhook answered 200). An update is confirmed only once its effect is committed
and its answers are queued in the outbox (``core.services.replies``): a crash at any moment before that
makes Telegram deliver it again, and the database — shared by every web process — recognises what was
already done (the handled mark, the services' request ids ``tg:<bot id>:<update id>``, state-setting
subscriptions). Answers go through the outbox too: the delivery engine sends them under the shared budget.

Sending is paced by the engine's shared budget (not PTB's AIORateLimiter, which would pace a second time and
knows nothing of other processes); Telegram's ``retry_after`` comes back to the engine as RateLimited.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hmac
import json
import logging
import re
import warnings
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit

from aiohttp import web
from telegram import BotCommand, LinkPreviewOptions, Message, ReplyParameters, Update
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
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
from bots.telegram.translate import chat_ref, deep_link, update_problem
from core.errors import ChatUnavailable, RateLimited, RecipientUnreachable, TransientError
from core.notices import Notice
from core.ports import Clock, Links
from core.refs import ChatRef, MessageRef, Platform, UserRef
from core.services.inbound import InboundService
from core.services.profiles import ProfileService
from core.services.replies import Answer, RepliesService, reply_key
from core.services.spaces import SpaceService
from core.texts import t

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/telegram/webhook"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
ALLOWED_UPDATES = ["message", "callback_query", "my_chat_member"]
# Updates handled at once in this process: each holds a database connection for a moment, and the event
# loop must stay free for /healthz and the other routes however large the burst.
MAX_CONCURRENT_UPDATES = 8
# Webhook requests held at once (being handled or waiting for a slot); beyond it Telegram is told to come
# back later (503 + Retry-After: it retries) instead of the process queueing without bound.
MAX_WAITING_UPDATES = 64
RETRY_LATER_SECONDS = 1
BODY_TIMEOUT = 5.0  # seconds to receive a webhook body: a stalled client is cut off, not waited for
# A handler that keeps failing while the database answers (a bug meeting odd input) is given up after this
# many attempts: the person is told something went wrong, the update is confirmed — never a stuck queue.
MAX_UPDATE_ATTEMPTS = 3
PUBLIC_CHATS_REMEMBERED = 10_000  # chat id → its public @username, seen in updates and sent messages
_USERNAME_RE = re.compile(r"[A-Za-z0-9_]{4,32}")  # what Telegram allows: nothing else reaches a link
T = TypeVar("T")


class WebhookInUse(RuntimeError):
    """Polling would silently take the updates away from the deployment that set a webhook."""


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
    # polling: delete a webhook someone else set (TELEGRAM_TAKE_OVER_WEBHOOK) instead of refusing to start
    take_over_webhook: bool = False
    # HTTP timeouts of every Bot API call but getUpdates, per phase (seconds); the composition root derives
    # them from the engine's send timeout (config/timing.py) so that a call gives up before its lease does
    connect_timeout: float = 2.5
    read_timeout: float = 5.0
    write_timeout: float = 2.5
    pool_timeout: float = 2.5


class _Fate(enum.Enum):
    DONE = "done"  # confirm it: handled now or before, or unusable (retrying cannot help)
    RETRY = "retry"  # do not confirm: Telegram delivers it again (database down, a handler failed)


@dataclass(slots=True)
class _Run:
    """One attempt at handling one update: the answers its handlers decided on, and whether one failed."""

    key: str  # tg:<bot id>:<update id> — the event's key in the database
    answers: list[Answer] = field(default_factory=list)
    error: BaseException | None = None


def _order_key(data: Mapping[str, Any]) -> str:
    """Updates of one chat are handled in the order Telegram sent them (a /space conversation's steps);
    different chats in parallel. Pure dict walking: the update is not trusted yet."""
    for kind in ("message", "edited_message", "my_chat_member"):
        body = data.get(kind)
        if isinstance(body, dict) and isinstance(body.get("chat"), dict):
            return f"chat:{body['chat'].get('id')}"
    query = data.get("callback_query")
    if isinstance(query, dict):
        message = query.get("message")
        if isinstance(message, dict) and isinstance(message.get("chat"), dict):
            return f"chat:{message['chat'].get('id')}"
        if isinstance(query.get("from"), dict):
            return f"chat:{query['from'].get('id')}"
    return f"update:{data.get('update_id')}"


def _host(url: str) -> str:
    """A webhook URL may carry a secret in its path: logs and errors show its host only."""
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"


class TelegramPlatform:
    """core.ports.ChatPlatform and Places for Telegram; also contributes the webhook route to the web app."""

    platform = Platform.TELEGRAM

    def __init__(
        self,
        config: TelegramConfig,
        *,
        spaces: SpaceService,
        profiles: ProfileService,
        replies: RepliesService,
        links: Links,
        clock: Clock,
        receive: bool = True,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        inbound: InboundService | None = None,
    ) -> None:
        self.config = config
        self._sleep = sleep
        self._receive = receive  # False in worker-only processes: they send, the web process receives
        self._replies = replies
        self._handlers = Handlers(
            self,
            inbound=inbound
            or InboundService(
                spaces=spaces, profiles=profiles, replies=replies, links=links, clock=clock, uow=replies.uow
            ),
            profiles=profiles,
        )
        self._app: Application[Any, Any, Any, Any, Any, Any] | None = None
        self._poller: asyncio.Task[None] | None = None
        self._runs: dict[int, _Run] = {}  # update id → the attempt in progress
        self._failures: OrderedDict[int, int] = OrderedDict()  # update id → failed attempts (bounded)
        self._slots = asyncio.Semaphore(MAX_CONCURRENT_UPDATES)
        self._waiting = 0  # webhook requests queued for a slot or a chat's turn
        self._chat_turns: dict[str, tuple[asyncio.Lock, int]] = {}  # order key → (lock, users)
        self.receive_error: str | None = None  # why updates stopped arriving (also logged, once)
        self.username = ""
        self.bot_id = 0
        # public groups' usernames (t.me/<username>/<id> opens a message for anyone, members or not); only
        # what this process saw: a chat it never saw gets the members' t.me/c/ link instead
        self._public: OrderedDict[str, str] = OrderedDict()

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
            .job_queue(None)  # scheduling belongs to the core's outbox and waker, never to PTB's JobQueue
            # PTB's default pool is one connection: the engine's concurrent sends would queue behind it
            .connection_pool_size(32)
            .connect_timeout(self.config.connect_timeout)
            .read_timeout(self.config.read_timeout)
            .write_timeout(self.config.write_timeout)
            .pool_timeout(self.config.pool_timeout)
        )
        # no PTB Updater and no update queue: updates are handled here one by one (_handle), each confirmed
        # to Telegram only once its effect is committed
        builder = builder.updater(None)
        app = builder.build()
        self._handlers.register(app)
        await app.initialize()  # getMe
        self._app = app
        self.username = app.bot.username
        self.bot_id = app.bot.id
        if not self._receive:
            return
        await app.bot.set_my_commands([BotCommand(c, d) for c, d in self._handlers.command_menu("en")])
        await app.bot.set_my_commands(
            [BotCommand(c, d) for c, d in self._handlers.command_menu("fr")], language_code="fr"
        )
        if self.config.mode == "webhook":
            url = f"{self.config.public_url.rstrip('/')}{WEBHOOK_PATH}"
            await app.bot.set_webhook(
                url,
                secret_token=self.config.webhook_secret,
                allowed_updates=ALLOWED_UPDATES,
                drop_pending_updates=False,
            )
            log.info("telegram webhook set", extra={"host": _host(url)})
            return
        info = await app.bot.get_webhook_info()
        if info.url:
            if not self.config.take_over_webhook:
                # deleting it would silently take every update away from the deployment that set it
                raise WebhookInUse(
                    f"Telegram delivers this bot's updates to a webhook at {_host(info.url)}, set by another "
                    "deployment (or by TELEGRAM_MODE=webhook earlier). Polling here would take them away "
                    "from it. Stop that deployment, or use TELEGRAM_MODE=webhook here, or set "
                    "TELEGRAM_TAKE_OVER_WEBHOOK=true to delete the webhook and poll."
                )
            log.warning(
                "deleting the webhook set for this bot to poll instead (TELEGRAM_TAKE_OVER_WEBHOOK=true)",
                extra={"host": _host(info.url), "pending": info.pending_update_count},
            )
            await app.bot.delete_webhook(drop_pending_updates=False)
        self._poller = asyncio.create_task(self._poll(), name="telegram-polling")
        log.info("telegram long polling started", extra={"bot": self.username})

    async def stop_receiving(self) -> None:
        """Shutdown, first step: no new updates (polling ends); sending keeps working for the last batch.
        Updates being handled are cut short and not confirmed: Telegram delivers them again."""
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
            await app.shutdown()

    # ------------------------------------------------------------------ receiving: one update

    def event_key(self, update_id: int) -> str:
        """The update's key in the database: tied to the bot (two bots' update ids are unrelated)."""
        return f"tg:{self.bot_id}:{update_id}"

    def answer(self, update_id: int, chat_id: int, notice: Notice) -> str:
        """Queue an answer of the update being handled (sent once the update is done, by the engine).
        Returns the answer's outbox key (to find the message it became, for conversations)."""
        run = self._runs.get(update_id)
        if run is None:  # a handler running outside _handle: a bug, never a silent drop
            raise RuntimeError(f"no update {update_id} is being handled")
        run.answers.append(Answer(chat_ref(chat_id), notice))
        return reply_key(run.key, len(run.answers) - 1)

    def failed(self, update_id: int, error: BaseException | None) -> None:
        """Called by the error handler: this attempt failed; the update is not confirmed."""
        run = self._runs.get(update_id)
        if run is not None:
            run.error = error or RuntimeError("handler failed")

    @contextlib.asynccontextmanager
    async def _turn(self, order: str) -> AsyncIterator[None]:
        """This chat's turn (updates of one chat one at a time, in arrival order), then a free slot."""
        lock, users = self._chat_turns.get(order, (asyncio.Lock(), 0))
        self._chat_turns[order] = (lock, users + 1)
        try:
            async with lock, self._slots:
                yield
        finally:
            lock, users = self._chat_turns[order]
            if users <= 1:
                del self._chat_turns[order]
            else:
                self._chat_turns[order] = (lock, users - 1)

    async def _handle(self, data: dict[str, Any]) -> _Fate:
        """Handle one raw update (from polling or the webhook) and say whether it may be confirmed."""
        update_id = int(data["update_id"])
        key = self.event_key(update_id)
        self._seen_chat(data)
        try:
            if await self._replies.already_handled(self.platform, key):
                return _Fate.DONE  # delivered again (a crash before the confirmation, a webhook retry)
        except Exception as e:
            log.warning("database unavailable; update %s left for later: %s", update_id, type(e).__name__)
            return _Fate.RETRY
        problem = update_problem(data)
        if problem is None:
            try:
                update = Update.de_json(data, self.app.bot)
            except Exception as e:
                problem = f"unreadable ({type(e).__name__})"
        if problem is not None:  # forged or corrupted: retrying cannot help; one line, no traceback
            log.warning("malformed telegram update ignored: %s", problem, extra={"update_id": update_id})
            return _Fate.DONE
        attempts = self._failures.get(update_id, 0)
        run = _Run(key)
        if attempts >= MAX_UPDATE_ATTEMPTS:
            log.error("update given up after %d failed attempts", attempts, extra={"update_id": update_id})
            # the person learns it failed (their button stops spinning); the update is confirmed
            run.answers = await self._handlers.give_up(update)
        else:
            self._runs[update_id] = run
            try:
                await self.app.process_update(update)  # the handlers; failures reach failed() via on_error
            finally:
                self._runs.pop(update_id, None)
            if run.error is not None:
                self._failures[update_id] = attempts + 1
                while len(self._failures) > 10_000:
                    self._failures.popitem(last=False)
                return _Fate.RETRY
        try:
            await self._replies.finish(self.platform, key, run.answers)
        except Exception as e:
            log.warning("could not record update %s as handled: %s", update_id, type(e).__name__)
            return _Fate.RETRY
        self._failures.pop(update_id, None)
        return _Fate.DONE

    async def _handle_in_turn(self, data: dict[str, Any]) -> _Fate:
        async with self._turn(_order_key(data)):
            return await self._handle(data)

    # ------------------------------------------------------------------ receiving: webhook

    async def _on_webhook(self, request: web.Request) -> web.StreamResponse:
        secret = self.config.webhook_secret or ""
        sent = request.headers.getall(SECRET_HEADER, [])
        if len(sent) > 1:  # two credentials: which one would we be trusting?
            return web.Response(status=400, text="ambiguous secret token")
        got = sent[0] if sent else ""
        # constant time: the secret is the only thing between the internet and our command handlers.
        # Telegram's tokens are ASCII; anything else (a Latin-1 or undecodable header) is simply wrong.
        if not secret or not got.isascii() or not hmac.compare_digest(got.encode(), secret.encode()):
            return web.Response(status=403, text="forbidden")
        try:
            async with asyncio.timeout(BODY_TIMEOUT):
                body = await request.read()
        except TimeoutError:
            return web.Response(status=408, text="body too slow")
        except web.HTTPException:
            raise  # 413: larger than the web app accepts
        except Exception:  # the client went away mid-body, or sent a broken chunked encoding
            return web.Response(status=400, text="unreadable body")
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested deep enough to be hostile
            return web.Response(status=400, text="not JSON")
        if not isinstance(data, dict) or type(data.get("update_id")) is not int:
            return web.Response(status=400, text="no update_id")
        if self._app is None:  # starting or stopping: Telegram keeps the update and comes back
            return _retry_later("not ready")
        if self._waiting >= MAX_WAITING_UPDATES:
            # bounded work: Telegram keeps the update and retries; an unbounded queue would only move
            # the overload into our memory
            return _retry_later("busy")
        self._waiting += 1
        try:
            fate = await self._handle_in_turn(data)
        finally:
            self._waiting -= 1
        if fate is _Fate.RETRY:
            return _retry_later("not handled yet")
        return web.Response(status=200)

    # ------------------------------------------------------------------ receiving: long polling

    async def _poll(self) -> None:
        """Long polling (getUpdates). A batch is confirmed (the next offset) up to its first update not yet
        handled; that one and the rest come again, and those already handled are recognised and skipped."""
        offset: int | None = None
        failures = 0
        while True:
            try:
                raw = await self._get_updates(offset)
            except asyncio.CancelledError:
                raise
            except Conflict as e:
                # Telegram ends the OLDER of two getUpdates with 409, or refuses polling while a webhook is
                # set: either way another deployment receives this bot's updates now. Stop receiving
                # (sending goes on) and say so once, instead of fighting it forever.
                self.receive_error = f"telegram polling stopped: {e.message}"
                log.error(
                    "telegram polling stopped: %s. Another process polls this bot (or set a webhook): run "
                    "one receiving process per bot (`spaces web` or `spaces run`). This process keeps "
                    "sending.",
                    e.message,
                )
                return
            except RetryAfter as e:
                wait = e.retry_after
                await self._sleep(wait.total_seconds() if isinstance(wait, timedelta) else float(wait))
                continue
            except Exception as e:  # TelegramError, or a body we cannot read
                failures += 1
                delay = min(30.0, 0.5 * 2 ** min(failures, 6))
                log.warning("getUpdates failed (%s); retrying in %.1f s", type(e).__name__, delay)
                await self._sleep(delay)
                continue
            items = sorted(
                (i for i in raw if isinstance(i, dict) and type(i.get("update_id")) is int),
                key=lambda i: int(i["update_id"]),
            )
            if not items:
                failures = 0
                continue
            fates = await asyncio.gather(*(self._handle_in_turn(i) for i in items))
            for item, fate in zip(items, fates, strict=True):
                if fate is not _Fate.DONE:
                    break
                offset = int(item["update_id"]) + 1
            if all(f is _Fate.DONE for f in fates):
                failures = 0
            else:  # the database is down or a handler failed: give it a moment before the batch comes again
                failures += 1
                await self._sleep(min(30.0, 0.5 * 2 ** min(failures, 6)))

    async def _get_updates(self, offset: int | None) -> list[Any]:
        """getUpdates, raw: PTB's get_updates() parses the batch whole, and one update it cannot read
        would make every retry fail — the bot deaf. Each update is parsed on its own in _handle."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PTBUserWarning)  # PTB prefers get_updates()
            raw = await self.app.bot.do_api_request(
                "getUpdates",
                api_kwargs={
                    "offset": offset,
                    "timeout": int(self.config.poll_timeout),
                    "allowed_updates": ALLOWED_UPDATES,
                },
                read_timeout=self.config.poll_timeout + 10,
            )
        return raw if isinstance(raw, list) else []

    # ------------------------------------------------------------------ links for the share page (core Places)

    def _remember_public(self, chat_id: str, username: str | None) -> None:
        if not username or not chat_id.startswith("-") or not _USERNAME_RE.fullmatch(username):
            return  # private chats' usernames are people's: never put on a page
        self._public[chat_id] = username
        self._public.move_to_end(chat_id)
        while len(self._public) > PUBLIC_CHATS_REMEMBERED:
            self._public.popitem(last=False)

    def _seen_chat(self, data: Mapping[str, Any]) -> None:
        """Learn a group's public username from a raw update (its message, or the bot added to it)."""
        for kind in ("message", "my_chat_member"):
            chat = data.get(kind, {}).get("chat") if isinstance(data.get(kind), dict) else None
            if isinstance(chat, dict) and chat.get("id") is not None:
                username = chat.get("username")
                self._remember_public(str(chat["id"]), username if isinstance(username, str) else None)

    def message_link(self, message: MessageRef) -> str | None:
        """t.me/<username>/<id> in a public group this process knows; t.me/c/<id>/<id> in a supergroup
        (opens for its members); None elsewhere (a basic group or a private chat has no message links)."""
        chat, mid = message.chat_id, message.id
        if not mid.isdigit() or not chat.lstrip("-").isdigit():
            return None
        username = self._public.get(chat)
        if username is not None:
            return f"https://t.me/{username}/{mid}"
        if chat.startswith("-100") and chat[4:].isdigit():
            return f"https://t.me/c/{chat[4:]}/{mid}"
        return None

    def event_link(self, chat: ChatRef, event_id: str) -> str | None:
        return None  # Telegram has no events of its own

    def subscribe_link(self, space_id: str) -> str | None:
        """The bot's deep link that subscribes in the private chat; None before start() learnt the bot's
        username."""
        return deep_link(self.username, space_id) if self.username else None

    async def avatar_url(self, user: UserRef) -> str | None:
        # Telegram serves profile photos only at URLs carrying the bot token: never on a public page
        return None

    # ------------------------------------------------------------------ sending (core.ports.ChatPlatform)

    async def post(self, chat: ChatRef, notice: Notice, *, key: str) -> MessageRef:
        msg = await self._send(int(chat.id), render(notice), to_user=False)
        self._remember_public(str(msg.chat_id), msg.chat.username)
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
        if int(chat.id) > 0:
            # a private chat (its id is its user's): a mention there reaches nobody new, and names the
            # others to that one person. Mentions belong in groups only.
            raise ChatUnavailable("a private chat: mentions are for groups")
        prefix = t(notice.locale, "notice.mention", mentions="{mentions}")
        msg = await self._send(int(chat.id), render_mentions(users, notice, prefix), to_user=False)
        return MessageRef(Platform.TELEGRAM, str(msg.chat_id), str(msg.message_id))

    async def _send(self, chat_id: int, r: Rendered, *, to_user: bool) -> Message:
        def call(target: int) -> Awaitable[Message]:
            return self.app.bot.send_message(
                target,
                r.text,
                parse_mode=ParseMode.HTML,
                reply_markup=r.markup,
                link_preview_options=LinkPreviewOptions(is_disabled=True),
                # an answer quotes what it answers; still sent if that message was deleted meanwhile
                reply_parameters=(
                    ReplyParameters(r.reply_to, allow_sending_without_reply=True)
                    if r.reply_to is not None and target == chat_id
                    else None
                ),
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


def _retry_later(reason: str) -> web.Response:
    return web.Response(status=503, text=reason, headers={"Retry-After": str(RETRY_LATER_SECONDS)})
