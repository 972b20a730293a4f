"""A Telegram Bot API emulator on 127.0.0.1 for tests that run the real python-telegram-bot.

Point PTB at it with ``ApplicationBuilder().token(tg.token).base_url(tg.base_url)`` (and
``.base_file_url(tg.base_file_url)``), or ``telegram.Bot(tg.token, base_url=tg.base_url)``. It speaks the
real Bot API over HTTP (urlencoded, multipart or JSON requests; ``{"ok": ..., "result"|"error_code"...}``
answers), checks every request against the official description (``tests/fakes/specs/telegram-bot-api.json``)
and enforces the rules that bite in production: flood limits (429 + ``retry_after``), users who never opened
the bot or blocked it (403), text length, HTML parse errors, ``callback_data`` size, edits that change
nothing, stale callback queries.

Tests act as users (``user_sends``, ``user_starts_bot``, ``press_button``, ``block_bot``...); updates reach
the bot through ``getUpdates`` long polling or a webhook (with ``X-Telegram-Bot-Api-Secret-Token`` and
retries). Everything is recorded (``calls``, ``messages_in``, ``dms_to``, ``count_429``, ``violations``).

A request the real Telegram would refuse because the bot was built wrong (unknown method or parameter,
missing or mistyped parameter, malformed HTML, over-long text, bad button) is a *violation*: it is answered
with a 400 like Telegram does, and also recorded in ``tg.violations``; ``assert_clean()`` (called on exit
when ``strict``) fails the test. A test that provokes one on purpose takes it with ``take_violations()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import itertools
import json
import math
import random
import re
import secrets
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypedDict

import aiohttp
import pytest_asyncio
from aiohttp import web

from tests.fakes.emulator import StrictEmulator
from tests.fakes.secrets import TELEGRAM_TOKEN
from tests.fakes.telegram_spec import BotApiSpec, EntityParseError, load_spec, parse_html, utf16_len

__all__ = [
    "STRICT_LIMITS",
    "ApiCall",
    "ApiError",
    "CallbackQueryRecord",
    "RateRule",
    "SendAttempt",
    "TelegramEmulator",
    "TgChat",
    "TgMessage",
    "TgUser",
    "Violation",
    "WebhookDelivery",
    "telegram_emulator",
]

DEFAULT_TOKEN = TELEGRAM_TOKEN  # a canary: the session fails if it shows up in any log (tests/logcapture.py)
_TOKEN_RE = re.compile(r"^\d{1,20}:[A-Za-z0-9_-]{20,}$")
_DEEP_LINK_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_COMMAND_RE = re.compile(r"^/([A-Za-z0-9_]{1,64})(?:@([A-Za-z0-9_]{1,64}))?(?=\s|$)")
_BOT_COMMAND_RE = re.compile(r"^[a-z0-9_]{1,32}$")
_SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_DEFAULT_EXCLUDED_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})

#: Methods subject to the flood limits (messages that land in a chat).
RATE_LIMITED_METHODS = frozenset(
    {
        "sendmessage",
        "sendphoto",
        "sendaudio",
        "senddocument",
        "sendvideo",
        "sendanimation",
        "sendvoice",
        "sendvideonote",
        "sendmediagroup",
        "sendlocation",
        "sendvenue",
        "sendcontact",
        "sendpoll",
        "senddice",
        "sendsticker",
        "forwardmessage",
        "forwardmessages",
        "copymessage",
        "copymessages",
    }
)

_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)
_QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"

_ADMIN_DEFAULT_RIGHTS: dict[str, bool] = {
    "can_be_edited": False,
    "is_anonymous": False,
    "can_manage_chat": True,
    "can_delete_messages": True,
    "can_manage_video_chats": True,
    "can_restrict_members": True,
    "can_promote_members": False,
    "can_change_info": True,
    "can_invite_users": True,
    "can_post_stories": False,
    "can_edit_stories": False,
    "can_delete_stories": False,
    "can_pin_messages": True,
    "can_manage_topics": False,
}

Handler = Callable[[dict[str, Any]], Any]


# --------------------------------------------------------------------------- records
class ApiError(Exception):
    """An error answer of the Bot API. Raise it from a method handler.

    ``violation`` ("content" or "spec") marks a request the bot should never have sent: it is recorded in
    ``tg.violations`` as well as answered.
    """

    def __init__(
        self, code: int, description: str, *, retry_after: int | None = None, violation: str | None = None
    ) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after
        self.violation = violation


@dataclass(frozen=True)
class RateRule:
    """At most ``limit`` messages in any sliding window of ``window`` seconds."""

    limit: int
    window: float


#: Telegram's flood limits read strictly, for tests that judge pacing: its Bots FAQ asks for no more than one
#: message per second in a chat ("short bursts" may pass — nothing to count on), about 30 messages per second
#: in all, and 20 messages per minute in a group. ``TelegramEmulator(**STRICT_LIMITS)``. (The default
#: ``chat_rate``, 3 in any 3 s, tolerates the short bursts.)
class FloodLimits(TypedDict):
    global_rate: RateRule
    chat_rate: RateRule
    group_rate: RateRule


STRICT_LIMITS: FloodLimits = {
    "global_rate": RateRule(30, 1.0),
    "chat_rate": RateRule(1, 1.0),
    "group_rate": RateRule(20, 60.0),
}


@dataclass(frozen=True)
class SendAttempt:
    """A message that met the flood limits: accepted, or refused with 429 (see ``send_attempts``)."""

    time: float  # emulator clock: when the flood limits judged it (else when it was answered)
    chat_id: int
    accepted: bool
    retry_after: int | None = None


@dataclass
class ApiCall:
    method: str  # canonical spelling, e.g. "sendMessage"
    params: dict[str, Any]  # coerced: ints, bools, parsed JSON objects
    time: float  # emulator clock
    status: int  # HTTP status answered
    result: Any = None
    error_code: int | None = None
    description: str | None = None
    retry_after: int | None = None
    flood_time: float | None = None  # when the flood limits judged it (emulator clock), if they did

    @property
    def ok(self) -> bool:
        return self.error_code is None


@dataclass
class Violation:
    method: str
    kind: str  # "spec" | "content" | "unimplemented" | "token"
    message: str
    params: dict[str, Any]

    def __str__(self) -> str:
        return f"[{self.kind}] {self.method}: {self.message} (params={_short(self.params)})"


@dataclass
class TgUser:
    id: int
    first_name: str
    username: str | None = None
    last_name: str | None = None
    language_code: str | None = "en"
    is_bot: bool = False
    started: bool = False  # opened a private chat with the bot (so the bot may DM them)
    blocked: bool = False  # blocked the bot

    def to_api(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "is_bot": self.is_bot, "first_name": self.first_name}
        if self.last_name:
            d["last_name"] = self.last_name
        if self.username:
            d["username"] = self.username
        if self.language_code:
            d["language_code"] = self.language_code
        return d


@dataclass
class TgChat:
    id: int
    type: str  # "private" | "group" | "supergroup"
    title: str | None = None
    username: str | None = None
    user: TgUser | None = None  # the other side of a private chat
    members: dict[int, str] = field(
        default_factory=dict
    )  # user id -> creator/administrator/member/left/kicked
    admin_rights: dict[int, dict[str, bool]] = field(default_factory=dict)
    bot_status: str = "member"  # for groups: member/administrator/left/kicked
    is_forum: bool = False
    description: str | None = None
    pinned: list[int] = field(default_factory=list)  # pinned message ids, most recent last
    menu_button: dict[str, Any] | None = None
    next_message_id: int = 1

    @property
    def is_group(self) -> bool:
        return self.type in ("group", "supergroup")

    def to_api(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "type": self.type}
        if self.type == "private" and self.user is not None:
            d["first_name"] = self.user.first_name
            if self.user.last_name:
                d["last_name"] = self.user.last_name
            if self.user.username:
                d["username"] = self.user.username
        else:
            d["title"] = self.title or ""
            if self.username:
                d["username"] = self.username
            if self.is_forum:
                d["is_forum"] = True
        return d


@dataclass
class MessageVersion:
    text: str
    entities: list[dict[str, Any]]
    reply_markup: dict[str, Any] | None
    time: float


@dataclass
class TgMessage:
    """One message of a chat, as the emulator keeps it (bot's or user's)."""

    chat_id: int
    message_id: int
    from_id: int
    from_bot: bool
    date: int
    versions: list[MessageVersion]
    reply_to_message_id: int | None = None
    edit_date: int | None = None
    deleted: bool = False
    delivered: bool = True  # for user messages: was an update sent to the bot (privacy mode)
    service: dict[str, Any] | None = None  # service payload, e.g. {"pinned_message": ...}
    raw: dict[str, Any] | None = None  # the Message object given to the bot, for user messages
    params: dict[str, Any] = field(default_factory=dict)  # for bot messages: the sendMessage parameters

    @property
    def text(self) -> str:
        return self.versions[-1].text

    @property
    def entities(self) -> list[dict[str, Any]]:
        return self.versions[-1].entities

    @property
    def reply_markup(self) -> dict[str, Any] | None:
        return self.versions[-1].reply_markup

    @property
    def edits(self) -> list[MessageVersion]:
        """Versions after the original, oldest first."""
        return self.versions[1:]

    @property
    def buttons(self) -> list[dict[str, Any]]:
        """Inline keyboard buttons, flattened row by row."""
        markup = self.reply_markup or {}
        return [b for row in markup.get("inline_keyboard", []) for b in row]

    @property
    def callback_data(self) -> list[str]:
        return [b["callback_data"] for b in self.buttons if "callback_data" in b]


@dataclass
class CallbackQueryRecord:
    id: str
    user: TgUser
    chat_id: int
    message_id: int
    data: str
    created_at: float
    update_id: int
    answer: dict[str, Any] | None = None  # answerCallbackQuery parameters once answered


@dataclass
class WebhookDelivery:
    update_id: int
    attempt: int
    status: int | None  # HTTP status, None when the connection failed
    error: str | None
    time: float


@dataclass
class _Fault:
    method: str
    code: int
    description: str
    retry_after: int | None
    remaining: int


@dataclass
class _Chaos:
    rng: random.Random
    error_rate: float
    reset_rate: float
    methods: set[str]

    def draw(self, method: str) -> str | None:
        if method.lower() not in self.methods:
            return None
        x = self.rng.random()
        if x < self.error_rate:
            return "error"
        if x < self.error_rate + self.reset_rate:
            return "reset"
        return None


def _short(obj: Any, limit: int = 300) -> str:
    text = repr(obj)
    return text if len(text) <= limit else text[:limit] + "..."


def _canon(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False)


def _max_in_window(times: Iterable[float], window: float) -> int:
    """The most of ``times`` in any window ``(t - window, t]``."""
    ordered = sorted(times)
    best = lo = 0
    for hi, t in enumerate(ordered):
        while ordered[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def _update_kind(update: dict[str, Any]) -> str | None:
    return next((k for k in update if k != "update_id"), None)


# --------------------------------------------------------------------------- emulator
class TelegramEmulator(StrictEmulator):
    """An aiohttp server speaking the Telegram Bot API; see the module docstring."""

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        accept_any_token: bool = False,
        bot_username: str = "SpacesTestBot",
        bot_first_name: str = "Spaces",
        strict: bool = True,
        spec_path: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        host: str = "127.0.0.1",
        port: int = 0,
        rate_limits: bool = True,
        global_rate: RateRule = RateRule(30, 1.0),
        paid_global_rate: RateRule = RateRule(1000, 1.0),
        chat_rate: RateRule = RateRule(3, 3.0),
        group_rate: RateRule = RateRule(20, 60.0),
        max_text_length: int = 4096,
        max_callback_data_bytes: int = 64,
        callback_query_ttl: float | None = 15.0,
        privacy_mode: bool = True,
        strict_html_ampersand: bool = True,
        content_errors_are_violations: bool = True,
        validate_responses: bool = True,
        webhook_max_attempts: int = 3,
        webhook_retry_delay: float = 0.05,
        webhook_timeout: float = 5.0,
    ) -> None:
        self.token = token
        self.accept_any_token = accept_any_token
        self.bot_id = (
            int(token.split(":", 1)[0]) if ":" in token and token.split(":", 1)[0].isdigit() else 7000000001
        )
        self.bot_username = bot_username
        self.bot_first_name = bot_first_name
        self.strict = strict
        self.spec: BotApiSpec = load_spec(spec_path)
        self.clock = clock
        self.wall_clock = wall_clock
        self.host = host
        self._requested_port = port
        self.rate_limits = rate_limits
        self.global_rate = global_rate
        self.paid_global_rate = paid_global_rate
        self.chat_rate = chat_rate
        self.group_rate = group_rate
        self.max_text_length = max_text_length
        self.max_callback_data_bytes = max_callback_data_bytes
        self.callback_query_ttl = callback_query_ttl
        self.privacy_mode = privacy_mode
        self.strict_html_ampersand = strict_html_ampersand
        self.content_errors_are_violations = content_errors_are_violations
        self.validate_responses = validate_responses
        self.webhook_max_attempts = webhook_max_attempts
        self.webhook_retry_delay = webhook_retry_delay
        self.webhook_timeout = webhook_timeout

        # recordings
        self.api_calls: list[ApiCall] = []
        self.violations: list[Violation] = []
        self.count_429 = 0
        self.updates_sent: list[dict[str, Any]] = []  # every update ever enqueued
        self.webhook_deliveries: list[WebhookDelivery] = []
        self.webhook_failures: list[dict[str, Any]] = []  # updates given up after all attempts
        self.callback_queries: dict[str, CallbackQueryRecord] = {}

        # world state
        self.users: dict[int, TgUser] = {}
        self.chats: dict[int, TgChat] = {}
        self.messages: dict[tuple[int, int], TgMessage] = {}
        self.commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.default_menu_button: dict[str, Any] = {"type": "commands"}
        self.files: dict[str, tuple[str, bytes]] = {}  # file_id -> (file_path, content)

        # updates
        self._pending: list[dict[str, Any]] = []
        self._next_update_id = 100_000_001
        self._allowed_updates: list[str] | None = None
        self._poll_generation = 0
        self.webhook_url: str = ""
        self.webhook_secret: str | None = None
        self.webhook_allowed_updates: list[str] | None = None
        self.webhook_max_connections = 40
        self._webhook_last_error: tuple[int, str] | None = None

        # random faults (inject_faults): seeded, so a failing run can be replayed
        self._chaos: _Chaos | None = None
        self.faults_injected: Counter[str] = Counter()  # "error" (not delivered), "reset" (delivered)

        # machinery
        self._windows: dict[tuple[str, int], deque[float]] = {}
        self._flood_time: float | None = None
        self._faults: list[_Fault] = []
        self._handlers: dict[str, Handler] = {}
        self._user_ids = itertools.count(1_000_001)
        self._group_ids = itertools.count(1)
        self._wake = asyncio.Event()
        self._call_event = asyncio.Event()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._webhook_task: asyncio.Task[None] | None = None
        self.port: int | None = None
        self._register_builtin_methods()

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> TelegramEmulator:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_get("/file/bot{token}/{path:.*}", self._handle_file)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._requested_port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self._closing = False
        self._session = aiohttp.ClientSession()
        self._webhook_task = asyncio.create_task(self._webhook_worker(), name="telegram-emulator-webhook")
        return self

    async def stop(self) -> None:
        self._closing = True
        self._notify()
        if self._webhook_task is not None:
            self._webhook_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._webhook_task
            self._webhook_task = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        """For ``ApplicationBuilder().base_url(...)``: PTB appends the token and ``/method``."""
        if self.port is None:
            raise RuntimeError("TelegramEmulator not started")
        return f"http://{self.host}:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        if self.port is None:
            raise RuntimeError("TelegramEmulator not started")
        return f"http://{self.host}:{self.port}/file/bot"

    @property
    def bot_user(self) -> dict[str, Any]:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": self.bot_first_name,
            "username": self.bot_username,
        }

    # ------------------------------------------------------------------ violations
    def assert_clean(self) -> None:
        """Raise AssertionError listing every request Telegram would have refused."""
        if self.violations:
            lines = "\n".join(f"  - {v}" for v in self.violations)
            raise AssertionError(
                f"{len(self.violations)} request(s) to the Telegram emulator that Telegram would refuse:\n"
                f"{lines}"
            )

    def take_violations(self) -> list[Violation]:
        """Return and forget the recorded violations (for tests that provoke them on purpose)."""
        taken, self.violations = self.violations, []
        return taken

    # ------------------------------------------------------------------ extension and faults
    def add_method(self, name: str, handler: Handler) -> None:
        """Implement (or override) a Bot API method: ``handler(params) -> result`` (sync or async).

        ``params`` are already checked against the description and coerced; raise :class:`ApiError` for
        errors.
        """
        self._handlers[name.lower()] = handler

    def method(self, name: str) -> Callable[[Handler], Handler]:
        """Decorator form of :meth:`add_method`."""

        def deco(fn: Handler) -> Handler:
            self.add_method(name, fn)
            return fn

        return deco

    def fail_next(
        self,
        method: str,
        code: int = 500,
        description: str = "Internal Server Error",
        *,
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` valid calls of ``method`` with this error (fault injection)."""
        if code == 429 and retry_after is None:
            retry_after = 1
        self._faults.append(_Fault(method.lower(), code, description, retry_after, times))

    def inject_faults(
        self,
        *,
        seed: int,
        error_rate: float = 0.0,
        reset_rate: float = 0.0,
        methods: Iterable[str] = ("sendMessage",),
    ) -> None:
        """Random faults on valid calls of ``methods``, drawn from ``random.Random(seed)``:

        * ``error_rate``: answer HTTP 500 *without* doing anything (the message is not delivered);
        * ``reset_rate``: do the call (the message IS delivered), then cut the connection before answering
          — the bot cannot know it arrived, and a platform without idempotency keys shows its retry twice.

        Counted in ``faults_injected`` ("error", "reset"); ``inject_faults(seed=…)`` with no rates stops it."""
        if error_rate + reset_rate > 1:
            raise ValueError("error_rate + reset_rate must be at most 1")
        self._chaos = _Chaos(random.Random(seed), error_rate, reset_rate, {m.lower() for m in methods})

    def received(self, *, containing: str | None = None) -> Counter[int]:
        """How many messages from the bot each chat received (not deleted), optionally only those whose text
        contains ``containing``. What people saw: count losses and duplicates from here, not from keys."""
        return Counter(
            m.chat_id
            for m in self.messages.values()
            if m.from_bot and not m.deleted and (containing is None or containing in m.versions[0].text)
        )

    # ------------------------------------------------------------------ acting as users
    def create_user(
        self,
        first_name: str = "Alice",
        *,
        id: int | None = None,
        username: str | None = None,
        last_name: str | None = None,
        language_code: str | None = "en",
        is_bot: bool = False,
        started: bool = False,
    ) -> TgUser:
        """A Telegram user (and their private chat with the bot, whose id is the user id)."""
        uid = id if id is not None else next(self._user_ids)
        if uid <= 0:
            raise ValueError("user ids are positive")
        user = TgUser(uid, first_name, username, last_name, language_code, is_bot, started)
        self.users[uid] = user
        self.chats[uid] = TgChat(uid, "private", user=user, members={uid: "member"})
        return user

    def create_group(
        self,
        title: str = "Test Group",
        *,
        id: int | None = None,
        supergroup: bool = True,
        username: str | None = None,
        creator: TgUser | None = None,
        admins: Iterable[TgUser] = (),
        members: Iterable[TgUser] = (),
        bot_is_admin: bool = False,
        is_forum: bool = False,
    ) -> TgChat:
        """A group (``supergroup=False``) or supergroup with the bot in it (as admin if ``bot_is_admin``)."""
        n = next(self._group_ids)
        cid = id if id is not None else (-1_001_000_000_000 - n if supergroup else -4_000_000_000 - n)
        if cid >= 0:
            raise ValueError("group ids are negative")
        chat = TgChat(
            cid,
            "supergroup" if supergroup else "group",
            title=title,
            username=username,
            is_forum=is_forum,
            bot_status="administrator" if bot_is_admin else "member",
        )
        if creator is not None:
            chat.members[creator.id] = "creator"
        for user in admins:
            self.make_admin(chat, user)
        for user in members:
            chat.members.setdefault(user.id, "member")
        self.chats[cid] = chat
        return chat

    def private_chat(self, user: TgUser | int) -> TgChat:
        return self.chats[user if isinstance(user, int) else user.id]

    def chat(self, chat: TgChat | int) -> TgChat:
        return self.chats[chat if isinstance(chat, int) else chat.id]

    def make_admin(self, chat: TgChat | int, user: TgUser, **rights: bool) -> None:
        """Promote ``user`` in ``chat`` (rights override the defaults, e.g. ``can_pin_messages=False``)."""
        c = self.chat(chat) if isinstance(chat, int) else chat
        if c.members.get(user.id) != "creator":
            c.members[user.id] = "administrator"
        c.admin_rights[user.id] = {**_ADMIN_DEFAULT_RIGHTS, **rights}

    def remove_admin(self, chat: TgChat | int, user: TgUser) -> None:
        c = self.chat(chat)
        c.members[user.id] = "member"
        c.admin_rights.pop(user.id, None)

    def add_member(self, chat: TgChat | int, user: TgUser) -> None:
        c = self.chat(chat)
        if c.members.get(user.id) in (None, "left", "kicked"):
            c.members[user.id] = "member"

    def leave_chat(self, chat: TgChat | int, user: TgUser) -> None:
        self.chat(chat).members[user.id] = "left"

    async def user_sends(
        self, user: TgUser, chat: TgChat | int | None, text: str, *, reply_to: TgMessage | None = None
    ) -> TgMessage:
        """``user`` writes ``text`` in ``chat`` (``None`` = their private chat with the bot).

        Commands get a ``bot_command`` entity at offset 0 (``/cmd`` or ``/cmd@botname``). In groups with
        privacy mode on (and the bot not an admin) only commands, replies to the bot and mentions reach the
        bot (``message.delivered`` tells).
        """
        c = self.private_chat(user) if chat is None else self.chat(chat)
        if c.type == "private":
            if c.id != user.id:
                raise ValueError("a user can only write in their own private chat with the bot")
            if user.blocked:
                raise RuntimeError(
                    f"user {user.id} blocked the bot: call unblock_bot() or user_starts_bot() first"
                )
            user.started = True
        else:
            self.add_member(c, user)
        entities: list[dict[str, Any]] = []
        m = _COMMAND_RE.match(text)
        if m:
            entities.append({"type": "bot_command", "offset": 0, "length": utf16_len(m.group(0))})
        msg = self._store_message(c, user.id, False, text, entities, None)
        if reply_to is not None:
            msg.reply_to_message_id = reply_to.message_id
        raw = self._message_to_api(msg)
        raw["from"] = user.to_api()
        msg.raw = raw
        msg.delivered = self._bot_sees(c, text, m, reply_to)
        if msg.delivered:
            self._enqueue("message", raw)
        return msg

    async def user_starts_bot(self, user: TgUser, payload: str | None = None) -> TgMessage:
        """Open ``t.me/<bot>?start=<payload>``: ``/start [payload]`` in the private chat (unblocks too)."""
        if payload is not None and not _DEEP_LINK_RE.match(payload):
            raise ValueError(f"Telegram drops deep-link payloads outside [A-Za-z0-9_-]{{1,64}}: {payload!r}")
        if user.blocked:
            await self.unblock_bot(user)
        return await self.user_sends(user, None, "/start" if payload is None else f"/start {payload}")

    async def press_button(
        self, user: TgUser, message: TgMessage, callback_data: str | None = None, *, text: str | None = None
    ) -> CallbackQueryRecord:
        """``user`` taps an inline button of ``message`` (by ``callback_data`` or button ``text``).

        Enqueues a ``callback_query`` update; ``record.answer`` holds the bot's answerCallbackQuery later.
        """
        current = self.messages.get((message.chat_id, message.message_id))
        if current is None or current.deleted:
            raise ValueError("that message does not exist (any more): nothing to press")
        buttons = [b for b in current.buttons if "callback_data" in b]
        if callback_data is not None:
            chosen = [b for b in buttons if b["callback_data"] == callback_data]
        elif text is not None:
            chosen = [b for b in buttons if b.get("text") == text]
        else:
            chosen = buttons if len(buttons) == 1 else []
        if not chosen:
            raise ValueError(f"no such callback button on message {message.message_id}: {current.buttons}")
        data = chosen[0]["callback_data"]
        qid = str(secrets.randbits(62) + (1 << 62))
        query = {
            "id": qid,
            "from": user.to_api(),
            "message": self._message_to_api(current),
            "chat_instance": self._chat_instance(current.chat_id),
            "data": data,
        }
        update_id = self._enqueue("callback_query", query)
        record = CallbackQueryRecord(
            qid, user, current.chat_id, current.message_id, data, self.clock(), update_id
        )
        self.callback_queries[qid] = record
        return record

    async def block_bot(self, user: TgUser) -> None:
        """The user blocks the bot: later sends get 403, and the bot gets a ``my_chat_member`` (kicked)."""
        if user.blocked:
            return
        user.blocked = True
        self._enqueue_my_chat_member(self.private_chat(user), user, "member", "kicked")

    async def unblock_bot(self, user: TgUser) -> None:
        if not user.blocked:
            return
        user.blocked = False
        self._enqueue_my_chat_member(self.private_chat(user), user, "kicked", "member")

    async def kick_bot(self, chat: TgChat | int, by: TgUser | None = None) -> None:
        """Someone removes the bot from a group: later sends get 403."""
        c = self.chat(chat)
        old, c.bot_status = c.bot_status, "kicked"
        actor = by or next(
            (self.users[u] for u, s in c.members.items() if s == "creator" and u in self.users), None
        )
        self._enqueue_my_chat_member(c, actor, old, "kicked")

    async def post_raw_update(self, update: dict[str, Any]) -> int:
        """Enqueue any update dict verbatim (hostile/malformed tests); adds ``update_id`` if missing."""
        update = dict(update)
        if "update_id" not in update:
            update["update_id"] = self._take_update_id()
        else:
            self._next_update_id = max(self._next_update_id, int(update["update_id"]) + 1)
        self._push(update)
        return int(update["update_id"])

    def add_file(self, content: bytes, file_path: str | None = None) -> str:
        """Make a file downloadable via getFile + ``base_file_url``; returns its ``file_id``."""
        file_id = "BQAC" + secrets.token_urlsafe(24)
        self.files[file_id] = (file_path or f"documents/file_{len(self.files)}.bin", content)
        return file_id

    # ------------------------------------------------------------------ inspection
    def calls(self, method: str | None = None) -> list[ApiCall]:
        """Recorded API calls, all or of one method (case-insensitive)."""
        if method is None:
            return list(self.api_calls)
        low = method.lower()
        return [c for c in self.api_calls if c.method.lower() == low]

    def send_attempts(self) -> list[SendAttempt]:
        """Every message the bot tried to land in a chat (the flood-limited methods), in arrival order:
        accepted, or refused with 429. Pacing is judged on these — what the bot *tried* — since the emulator
        refuses whatever is over a limit, so the accepted ones alone always look within limits."""
        out = []
        for c in self.api_calls:
            if c.method.lower() not in RATE_LIMITED_METHODS or not (c.ok or c.error_code == 429):
                continue
            chat_id: Any = c.params.get("chat_id")
            result = c.result[0] if isinstance(c.result, list) and c.result else c.result
            if isinstance(result, dict) and isinstance(result.get("chat"), dict):
                chat_id = result["chat"]["id"]
            with contextlib.suppress(TypeError, ValueError):
                at = c.flood_time if c.flood_time is not None else c.time
                out.append(SendAttempt(at, int(chat_id), c.ok, c.retry_after))
        return out

    def max_in_window(
        self,
        window: float,
        *,
        chat: int | None = None,
        where: Callable[[int], bool] | None = None,
        accepted_only: bool = False,
    ) -> int:
        """The most send attempts (or only accepted messages) in any sliding window ``(t - window, t]`` (how
        the flood limits count): all chats together, one ``chat``, or the busiest chat among those
        ``where(chat_id)`` selects."""
        attempts = [a for a in self.send_attempts() if a.accepted or not accepted_only]
        if chat is not None:
            return _max_in_window([a.time for a in attempts if a.chat_id == chat], window)
        if where is None:
            return _max_in_window([a.time for a in attempts], window)
        per_chat: dict[int, list[float]] = {}
        for a in attempts:
            if where(a.chat_id):
                per_chat.setdefault(a.chat_id, []).append(a.time)
        return max((_max_in_window(times, window) for times in per_chat.values()), default=0)

    def window_maxima(self, *, accepted_only: bool = False) -> dict[str, int]:
        """Send attempts (or accepted messages) in the busiest window of each of Telegram's limits
        (compare with STRICT_LIMITS)."""
        a = accepted_only
        return {
            "all chats, any 1 s": self.max_in_window(1.0, accepted_only=a),
            "one private chat, any 1 s": self.max_in_window(1.0, where=lambda c: c > 0, accepted_only=a),
            "one group, any 1 s": self.max_in_window(1.0, where=lambda c: c < 0, accepted_only=a),
            "one group, any 60 s": self.max_in_window(60.0, where=lambda c: c < 0, accepted_only=a),
        }

    def messages_in(
        self, chat: TgChat | int, *, include_deleted: bool = False, include_service: bool = False
    ) -> list[TgMessage]:
        """Messages of a chat (bot's and users'), oldest first."""
        cid = chat if isinstance(chat, int) else chat.id
        out = [m for (c, _), m in self.messages.items() if c == cid]
        out = [
            m for m in out if (include_deleted or not m.deleted) and (include_service or m.service is None)
        ]
        return sorted(out, key=lambda m: m.message_id)

    def dms_to(self, user: TgUser | int) -> list[TgMessage]:
        """Messages the bot sent to ``user`` in their private chat (not deleted)."""
        uid = user if isinstance(user, int) else user.id
        return [m for m in self.messages_in(uid) if m.from_bot]

    def bot_messages(self, chat: TgChat | int) -> list[TgMessage]:
        return [m for m in self.messages_in(chat) if m.from_bot]

    def message(self, chat: TgChat | int, message_id: int) -> TgMessage:
        cid = chat if isinstance(chat, int) else chat.id
        return self.messages[(cid, message_id)]

    def pinned_message(self, chat: TgChat | int) -> TgMessage | None:
        c = self.chat(chat)
        return self.messages.get((c.id, c.pinned[-1])) if c.pinned else None

    def callback_answer(self, query: CallbackQueryRecord | str) -> dict[str, Any] | None:
        qid = query if isinstance(query, str) else query.id
        return self.callback_queries[qid].answer

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        """Updates not yet confirmed by getUpdates (offset) nor delivered to the webhook."""
        return list(self._pending)

    async def wait_for_call(
        self,
        method: str,
        predicate: Callable[[ApiCall], bool] | None = None,
        *,
        within: float = 5.0,
        start: int = 0,
    ) -> ApiCall:
        """Wait until a call of ``method`` (matching ``predicate``; index >= ``start``) has been answered."""
        low = method.lower()

        def find() -> ApiCall | None:
            for call in self.api_calls[start:]:
                if call.method.lower() == low and (predicate is None or predicate(call)):
                    return call
            return None

        return await self._wait_until(find, within, f"no {method} call matched within {within}s")

    async def wait_for_message(
        self, chat: TgChat | int, predicate: Callable[[TgMessage], bool] | None = None, *, within: float = 5.0
    ) -> TgMessage:
        """Wait until the bot has sent a message in ``chat`` matching ``predicate``."""

        def find() -> TgMessage | None:
            return next((m for m in self.bot_messages(chat) if predicate is None or predicate(m)), None)

        return await self._wait_until(find, within, f"no bot message in chat {chat} matched within {within}s")

    async def wait_updates_consumed(self, within: float = 5.0) -> None:
        """Wait until every update was confirmed (polling) or delivered (webhook)."""
        await self._wait_until(lambda: True if not self._pending else None, within, "updates still pending")

    async def _wait_until(self, find: Callable[[], Any], within: float, message: str) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            found = find()
            if found is not None:
                return found
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(message)
            event = self._call_event
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(remaining, 0.05))

    # ------------------------------------------------------------------ HTTP
    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        if not self._token_ok(request.match_info["token"]):
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        path = request.match_info["path"]
        for file_path, content in self.files.values():
            if file_path == path:
                return web.Response(body=content, content_type="application/octet-stream")
        return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)

    def _token_ok(self, token: str) -> bool:
        if self.accept_any_token:
            return bool(_TOKEN_RE.match(token))
        return token == self.token

    async def _read_params(self, request: web.Request) -> tuple[dict[str, Any], dict[str, tuple[str, bytes]]]:
        params: dict[str, Any] = dict(request.query)
        files: dict[str, tuple[str, bytes]] = {}
        ctype = request.content_type
        if request.method == "POST" and request.can_read_body:
            if ctype == "application/json":
                body = await request.json()
                if not isinstance(body, dict):
                    raise ApiError(
                        400, "Bad Request: emulator: JSON body must be an object", violation="spec"
                    )
                params.update(body)
            elif ctype == "multipart/form-data":
                reader = await request.multipart()
                async for part in reader:
                    if not isinstance(part, aiohttp.BodyPartReader) or part.name is None:
                        continue
                    if part.filename is not None:
                        files[part.name] = (part.filename, bytes(await part.read()))
                    else:
                        params[part.name] = await part.text()
            else:
                post = await request.post()
                for key, value in post.items():
                    if isinstance(value, web.FileField):
                        files[key] = (value.filename, value.file.read())
                    else:
                        params[key] = value
        return params, files

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        method_raw = request.match_info["method"]
        spec = self.spec.method(method_raw)
        method = spec.name if spec else method_raw
        if not self._token_ok(request.match_info["token"]):
            self._violate(method, "token", "request with a wrong bot token", {})
            return self._answer(method, {}, ApiError(401, "Unauthorized"))
        try:
            raw_params, files = await self._read_params(request)
        except ApiError as err:
            self._violate(method, err.violation or "spec", err.description, {})
            return self._answer(method, {}, err)
        except (ValueError, UnicodeDecodeError) as err:
            self._violate(method, "spec", f"unreadable request body: {err}", {})
            return self._answer(method, {}, ApiError(400, f"Bad Request: emulator: unreadable body: {err}"))
        if spec is None:
            self._violate(method, "spec", "unknown method", raw_params)
            return self._answer(method, raw_params, ApiError(404, "Not Found"))
        # multipart parts referenced as attach://<name> are attachments, not parameters
        file_params: dict[str, Any] = {}
        attachments: dict[str, tuple[str, bytes]] = {}
        for name, (filename, content) in files.items():
            referenced = any(isinstance(v, str) and f"attach://{name}" in v for v in raw_params.values())
            if referenced and name not in spec.fields:
                attachments[name] = (filename, content)
            else:
                file_params[name] = (filename, content)
        params, problems = self.spec.check_request(method, {**raw_params, **file_params}, set(file_params))
        if problems:
            for problem in problems:
                self._violate(method, "spec", problem, raw_params)
            desc = "Bad Request: emulator: " + "; ".join(problems)
            return self._answer(method, params, ApiError(400, desc))
        if attachments:
            params["__attachments__"] = attachments
        handler = self._handlers.get(method.lower())
        if handler is None:
            msg = f"method {method} is valid but not implemented by the emulator: add it with add_method()"
            self._violate(method, "unimplemented", msg, raw_params)
            return self._answer(method, params, ApiError(400, "Bad Request: emulator: " + msg))
        chaos = self._chaos.draw(method) if self._chaos is not None else None
        if chaos == "error":
            self.faults_injected["error"] += 1
            return self._answer(method, params, ApiError(500, "Internal Server Error"))
        for fault in self._faults:
            if fault.method == method.lower() and fault.remaining > 0:
                fault.remaining -= 1
                if fault.code == 429:
                    self.count_429 += 1
                fault_error = ApiError(fault.code, fault.description, retry_after=fault.retry_after)
                return self._answer(method, params, fault_error)
        try:
            result = handler(params)
            if inspect.isawaitable(result):
                result = await result
        except ApiError as err:
            if err.violation and (err.violation != "content" or self.content_errors_are_violations):
                self._violate(method, err.violation, err.description, params)
            return self._answer(method, params, err)
        if chaos == "reset":  # done (delivered), but the answer never reaches the bot
            self.faults_injected["reset"] += 1
            self._record(ApiCall(method, params, self.clock(), 0, result=result, description="reset"))
            if request.transport is not None:
                request.transport.abort()
            raise web.HTTPServiceUnavailable()  # not sent: the connection is gone
        return self._answer(method, params, None, result)

    def _answer(
        self, method: str, params: dict[str, Any], error: ApiError | None, result: Any = None
    ) -> web.Response:
        params = {k: v for k, v in params.items() if k != "__attachments__"}
        if error is None:
            self._check_result(method, result)
            self._record(ApiCall(method, params, self.clock(), 200, result=result))
            return web.json_response({"ok": True, "result": result})
        body: dict[str, Any] = {"ok": False, "error_code": error.code, "description": error.description}
        if error.retry_after is not None:
            body["parameters"] = {"retry_after": error.retry_after}
        self._record(
            ApiCall(
                method,
                params,
                self.clock(),
                error.code,
                None,
                error.code,
                error.description,
                error.retry_after,
            )
        )
        return web.json_response(body, status=error.code)

    def _record(self, call: ApiCall) -> None:
        # the instant the flood limits judged this call (set by check_flood during the same handler run)
        call.flood_time, self._flood_time = self._flood_time, None
        self.api_calls.append(call)
        self._call_event.set()
        self._call_event = asyncio.Event()

    def _violate(self, method: str, kind: str, message: str, params: dict[str, Any]) -> None:
        self.violations.append(Violation(method, kind, message, dict(params)))

    # ------------------------------------------------------------------ updates
    def _take_update_id(self) -> int:
        uid = self._next_update_id
        self._next_update_id += 1
        return uid

    def _enqueue(self, kind: str, payload: dict[str, Any]) -> int:
        uid = self._take_update_id()
        update = {"update_id": uid, kind: payload}
        if self.validate_responses:
            errors = self.spec.check_value("Update", update, "update")
            if errors:
                raise AssertionError(f"the emulator built a malformed update: {errors}")
        self._push(update)
        return uid

    def _check_result(self, method: str, result: Any) -> None:
        """Our own answers must match the documented return type (catches emulator and add_method bugs)."""
        spec = self.spec.method(method)
        if not self.validate_responses or spec is None or not spec.returns:
            return
        alternatives = [self.spec.check_value(t, result, "result") for t in spec.returns]
        if all(alternatives):
            worst = sorted(alternatives, key=lambda errs: len(errs))[0]
            self._violate(method, "emulator", f"malformed {' or '.join(spec.returns)} answered: {worst}", {})

    def _push(self, update: dict[str, Any]) -> None:
        self._pending.append(update)
        self.updates_sent.append(update)
        self._notify()

    def _notify(self) -> None:
        self._wake.set()
        self._wake = asyncio.Event()
        self._call_event.set()
        self._call_event = asyncio.Event()

    def _enqueue_my_chat_member(self, chat: TgChat, actor: TgUser | None, old: str, new: str) -> None:
        bot = self.bot_user
        payload = {
            "chat": chat.to_api(),
            "from": (actor.to_api() if actor else bot),
            "date": int(self.wall_clock()),
            "old_chat_member": self._member_object(old, bot, chat),
            "new_chat_member": self._member_object(new, bot, chat),
        }
        self._enqueue("my_chat_member", payload)

    def _is_allowed(self, update: dict[str, Any], allowed: list[str] | None) -> bool:
        kind = _update_kind(update)
        if kind is None:
            return True
        if not allowed:
            return kind not in _DEFAULT_EXCLUDED_UPDATES
        return kind in allowed

    def _select_updates(self, limit: int) -> list[dict[str, Any]]:
        kept = [u for u in self._pending if self._is_allowed(u, self._allowed_updates)]
        self._pending[:] = kept
        return kept[:limit]

    # ------------------------------------------------------------------ webhook delivery
    async def _webhook_worker(self) -> None:
        while not self._closing:
            wake = self._wake
            if self.webhook_url and self._pending:
                update = self._pending[0]
                if self._is_allowed(update, self.webhook_allowed_updates):
                    await self._deliver(update)
                if self._pending and self._pending[0] is update:
                    self._pending.pop(0)
                self._notify()
                continue
            await wake.wait()

    async def _deliver(self, update: dict[str, Any]) -> bool:
        assert self._session is not None
        headers = {"Content-Type": "application/json"}
        if self.webhook_secret:
            headers["X-Telegram-Bot-Api-Secret-Token"] = self.webhook_secret
        url = self.webhook_url
        body = json.dumps(update)
        for attempt in range(1, self.webhook_max_attempts + 1):
            status: int | None = None
            error: str | None = None
            try:
                timeout = aiohttp.ClientTimeout(total=self.webhook_timeout)
                async with self._session.post(url, data=body, headers=headers, timeout=timeout) as resp:
                    status = resp.status
                    await resp.read()
                    if not 200 <= status <= 299:
                        error = f"Wrong response from the webhook: {status} {resp.reason}"
            except (aiohttp.ClientError, TimeoutError) as err:
                error = f"Connection failed: {err!r}"
            self.webhook_deliveries.append(
                WebhookDelivery(update["update_id"], attempt, status, error, self.clock())
            )
            self._notify()
            if error is None:
                return True
            self._webhook_last_error = (int(self.wall_clock()), error)
            if attempt < self.webhook_max_attempts:
                await asyncio.sleep(self.webhook_retry_delay)
        self.webhook_failures.append(update)
        return False

    # ------------------------------------------------------------------ helpers for handlers
    def resolve_chat(self, chat_id: Any) -> TgChat:
        """The chat for a ``chat_id`` parameter (id or ``@username``), or 400 "chat not found"."""
        if isinstance(chat_id, int):
            chat = self.chats.get(chat_id)
            if chat is not None:
                return chat
        elif isinstance(chat_id, str) and chat_id.startswith("@"):
            name = chat_id[1:].lower()
            for chat in self.chats.values():
                if chat.type != "private" and chat.username and chat.username.lower() == name:
                    return chat
        raise ApiError(400, "Bad Request: chat not found")

    def check_can_send(self, chat: TgChat) -> None:
        """403s for chats the bot cannot write to."""
        if chat.type == "private":
            user = chat.user
            assert user is not None
            if user.is_bot:
                raise ApiError(403, "Forbidden: bot can't send messages to bots")
            if user.blocked:
                raise ApiError(403, "Forbidden: bot was blocked by the user")
            if not user.started:
                raise ApiError(403, "Forbidden: bot can't initiate conversation with a user")
            return
        kind = "supergroup chat" if chat.type == "supergroup" else "group chat"
        if chat.bot_status == "kicked":
            raise ApiError(403, f"Forbidden: bot was kicked from the {kind}")
        if chat.bot_status == "left":
            raise ApiError(403, f"Forbidden: bot is not a member of the {kind}")

    def check_flood(self, chat_id: int, *, paid: bool = False) -> None:
        """Sliding-window flood limits: global, per chat, per group. Raises 429 with ``retry_after``."""
        if not self.rate_limits:
            return
        now = self._flood_time = self.clock()
        rules: list[tuple[tuple[str, int], RateRule]] = [
            (("paid", 0), self.paid_global_rate) if paid else (("global", 0), self.global_rate),
            (("chat", chat_id), self.chat_rate),
        ]
        if chat_id < 0:
            rules.append((("group", chat_id), self.group_rate))
        wait = 0.0
        for key, rule in rules:
            window = self._windows.setdefault(key, deque())
            while window and window[0] <= now - rule.window:
                window.popleft()
            if len(window) >= rule.limit:
                wait = max(wait, window[0] + rule.window - now)
        if wait > 0:
            self.count_429 += 1
            retry_after = max(1, math.ceil(wait))
            raise ApiError(429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after)
        for key, _ in rules:
            self._windows[key].append(now)

    def parse_text(
        self,
        text: str,
        parse_mode: str | None,
        entities: list[dict[str, Any]] | None,
        *,
        what: str = "message",
    ) -> tuple[str, list[dict[str, Any]]]:
        """Apply ``parse_mode``; 400s for malformed markup, empty or too long text."""
        mode = (parse_mode or "").lower()
        if entities is not None:
            plain, ents = text, list(entities)
        elif mode == "html":
            try:
                plain, ents = parse_html(text, strict_ampersand=self.strict_html_ampersand)
            except EntityParseError as err:
                raise ApiError(
                    400, f"Bad Request: can't parse entities: {err}", violation="content"
                ) from None
            for ent in ents:
                if ent["type"] == "text_mention":
                    user = self.users.get(ent["user"]["id"])
                    ent["user"] = (
                        user.to_api() if user else {**ent["user"], "is_bot": False, "first_name": "User"}
                    )
        elif mode in ("markdown", "markdownv2"):
            plain, ents = text, []  # not parsed by the emulator: accepted as is
        elif mode == "":
            plain, ents = text, []
        else:
            raise ApiError(400, f"Bad Request: unsupported parse_mode {parse_mode!r}", violation="content")
        if not plain.strip():
            raise ApiError(400, f"Bad Request: {what} text is empty", violation="content")
        if len(plain) > self.max_text_length:
            raise ApiError(400, f"Bad Request: {what} is too long", violation="content")
        return plain, ents

    def check_reply_markup(self, markup: dict[str, Any] | None) -> dict[str, Any] | None:
        """Button rules Telegram enforces beyond the types; returns the inline markup to echo (or None)."""
        if not markup or "inline_keyboard" not in markup:
            return None
        actions = {
            "url",
            "callback_data",
            "web_app",
            "login_url",
            "switch_inline_query",
            "switch_inline_query_current_chat",
            "switch_inline_query_chosen_chat",
            "copy_text",
            "callback_game",
            "pay",
        }
        count = 0
        for row in markup["inline_keyboard"]:
            for button in row:
                count += 1
                present = [k for k in button if k in actions]
                if len(present) != 1:
                    raise ApiError(
                        400,
                        "Bad Request: can't parse inline keyboard button: exactly one of the optional fields "
                        f"must be used, got {present or 'none'}",
                        violation="content",
                    )
                if "callback_data" in button:
                    size = len(str(button["callback_data"]).encode("utf-8"))
                    if not 1 <= size <= self.max_callback_data_bytes:
                        raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID", violation="content")
                if "url" in button and not re.match(r"^(https?|tg)://\S+$", str(button["url"])):
                    raise ApiError(
                        400,
                        f"Bad Request: inline keyboard button URL '{button['url']}' is invalid: "
                        "Wrong HTTP URL",
                        violation="content",
                    )
                if not str(button.get("text", "")):
                    raise ApiError(400, "Bad Request: BUTTON_TEXT_INVALID", violation="content")
        if count > 100:
            raise ApiError(400, "Bad Request: reply markup is too long", violation="content")
        return markup

    def _bot_message(self, chat: TgChat, message_id: Any, *, action: str) -> TgMessage:
        msg = self.messages.get((chat.id, message_id)) if isinstance(message_id, int) else None
        if msg is None or msg.deleted or msg.service is not None:
            raise ApiError(400, f"Bad Request: message to {action} not found")
        return msg

    def _store_message(
        self,
        chat: TgChat,
        from_id: int,
        from_bot: bool,
        text: str,
        entities: list[dict[str, Any]],
        reply_markup: dict[str, Any] | None,
        params: dict[str, Any] | None = None,
    ) -> TgMessage:
        mid = chat.next_message_id
        chat.next_message_id += 1
        msg = TgMessage(
            chat.id,
            mid,
            from_id,
            from_bot,
            int(self.wall_clock()),
            [MessageVersion(text, entities, reply_markup, self.clock())],
            params=dict(params or {}),
        )
        self.messages[(chat.id, mid)] = msg
        return msg

    def _message_to_api(self, msg: TgMessage, *, with_reply: bool = True) -> dict[str, Any]:
        chat = self.chats[msg.chat_id]
        if msg.from_bot:
            sender = self.bot_user
        else:
            user = self.users.get(msg.from_id)
            sender = user.to_api() if user else {"id": msg.from_id, "is_bot": False, "first_name": "User"}
        d: dict[str, Any] = {
            "message_id": msg.message_id,
            "from": sender,
            "date": msg.date,
            "chat": chat.to_api(),
        }
        if msg.service is not None:
            d.update(msg.service)
            return d
        d["text"] = msg.text
        if msg.entities:
            d["entities"] = msg.entities
        if msg.reply_markup and "inline_keyboard" in msg.reply_markup:
            d["reply_markup"] = msg.reply_markup
        if msg.edit_date is not None:
            d["edit_date"] = msg.edit_date
        if with_reply and msg.reply_to_message_id is not None:
            replied = self.messages.get((msg.chat_id, msg.reply_to_message_id))
            if replied is not None and not replied.deleted:
                d["reply_to_message"] = self._message_to_api(replied, with_reply=False)
        return d

    def _bot_sees(
        self, chat: TgChat, text: str, command: re.Match[str] | None, reply_to: TgMessage | None
    ) -> bool:
        if chat.type == "private":
            return True
        if chat.bot_status in ("kicked", "left"):
            return False
        if not self.privacy_mode or chat.bot_status == "administrator":
            return True
        if command is not None:
            target = command.group(2)
            return target is None or target.lower() == self.bot_username.lower()
        if reply_to is not None and reply_to.from_bot:
            return True
        return f"@{self.bot_username.lower()}" in text.lower()

    def _chat_instance(self, chat_id: int) -> str:
        digest = hashlib.sha256(f"{self.bot_id}:{chat_id}".encode()).hexdigest()
        return str(int(digest[:15], 16) - (1 << 59))

    def _member_object(self, status: str, user: dict[str, Any], chat: TgChat) -> dict[str, Any]:
        if status == "creator":
            return {"status": "creator", "user": user, "is_anonymous": False}
        if status == "administrator":
            rights = chat.admin_rights.get(user["id"]) or dict(_ADMIN_DEFAULT_RIGHTS)
            obj: dict[str, Any] = {"status": "administrator", "user": user}
            for name in self.spec.required_fields("ChatMemberAdministrator"):
                if name not in obj:
                    obj[name] = bool(rights.get(name, False))
            for name in ("can_pin_messages", "can_post_messages", "can_edit_messages", "can_manage_topics"):
                if name in rights and name in self.spec.types["ChatMemberAdministrator"].fields:
                    obj[name] = rights[name]
            return obj
        if status == "kicked":
            return {"status": "kicked", "user": user, "until_date": 0}
        if status == "left":
            return {"status": "left", "user": user}
        return {"status": "member", "user": user}

    def _chat_member(self, chat: TgChat, user_id: int) -> dict[str, Any]:
        if user_id == self.bot_id:
            status = "member" if chat.type == "private" else chat.bot_status
            if chat.type == "private" and chat.user is not None and chat.user.blocked:
                status = "kicked"
            return self._member_object(status, self.bot_user, chat)
        user = self.users.get(user_id)
        if user is None:
            raise ApiError(400, "Bad Request: user not found")
        if chat.type == "private":
            status = "member" if user_id == chat.id else "left"
        else:
            status = chat.members.get(user_id, "left")
        return self._member_object(status, user.to_api(), chat)

    def _bot_can_pin(self, chat: TgChat) -> bool:
        if chat.type == "private":
            return True
        if chat.bot_status != "administrator":
            return False
        return bool(chat.admin_rights.get(self.bot_id, _ADMIN_DEFAULT_RIGHTS).get("can_pin_messages", True))

    # ------------------------------------------------------------------ built-in methods
    def _register_builtin_methods(self) -> None:
        for name in (
            "getMe",
            "logOut",
            "close",
            "setWebhook",
            "deleteWebhook",
            "getWebhookInfo",
            "getUpdates",
            "sendMessage",
            "editMessageText",
            "editMessageReplyMarkup",
            "deleteMessage",
            "answerCallbackQuery",
            "pinChatMessage",
            "unpinChatMessage",
            "unpinAllChatMessages",
            "getChat",
            "getChatMember",
            "getChatAdministrators",
            "getChatMemberCount",
            "setMyCommands",
            "getMyCommands",
            "deleteMyCommands",
            "setChatMenuButton",
            "getChatMenuButton",
            "sendChatAction",
            "getFile",
        ):
            self._handlers[name.lower()] = getattr(self, "_m_" + name)

    def _m_getMe(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": not self.privacy_mode,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    def _m_logOut(self, params: dict[str, Any]) -> bool:
        return True

    def _m_close(self, params: dict[str, Any]) -> bool:
        return True

    def _m_setWebhook(self, params: dict[str, Any]) -> bool:
        url = params["url"]
        secret = params.get("secret_token")
        if secret is not None and not _SECRET_RE.match(secret):
            raise ApiError(
                400, "Bad Request: secret token contains unallowed characters", violation="content"
            )
        if url and not re.match(r"^https?://", url):
            raise ApiError(
                400,
                "Bad Request: bad webhook: An HTTPS URL must be provided for webhook",
                violation="content",
            )
        if params.get("drop_pending_updates"):
            self._pending.clear()
        self.webhook_url = url
        self.webhook_secret = secret if url else None
        if "allowed_updates" in params:
            self.webhook_allowed_updates = list(params["allowed_updates"])
        self.webhook_max_connections = int(params.get("max_connections", 40))
        self._poll_generation += 1  # a pending getUpdates is now in conflict
        self._notify()
        return True

    def _m_deleteWebhook(self, params: dict[str, Any]) -> bool:
        if params.get("drop_pending_updates"):
            self._pending.clear()
        self.webhook_url = ""
        self.webhook_secret = None
        self._notify()
        return True

    def _m_getWebhookInfo(self, params: dict[str, Any]) -> dict[str, Any]:
        info: dict[str, Any] = {
            "url": self.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._pending),
        }
        if self.webhook_url:
            info["max_connections"] = self.webhook_max_connections
            if self.webhook_allowed_updates is not None:
                info["allowed_updates"] = self.webhook_allowed_updates
            if self._webhook_last_error is not None:
                info["last_error_date"], info["last_error_message"] = self._webhook_last_error
        return info

    async def _m_getUpdates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        if self.webhook_url:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete "
                "the webhook first",
            )
        self._poll_generation += 1
        generation = self._poll_generation
        self._notify()  # an older pending getUpdates is terminated with 409
        offset = int(params.get("offset", 0))
        if offset > 0:
            self._pending[:] = [u for u in self._pending if int(u.get("update_id", 0)) >= offset]
        elif offset < 0:
            del self._pending[: max(0, len(self._pending) + offset)]
        limit = max(1, min(100, int(params.get("limit", 100))))
        timeout = max(0.0, float(params.get("timeout", 0)))
        if "allowed_updates" in params:
            self._allowed_updates = list(params["allowed_updates"])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if generation != self._poll_generation:
                raise ApiError(
                    409,
                    "Conflict: terminated by other getUpdates request; make sure that only one bot instance "
                    "is running",
                )
            updates = self._select_updates(limit)
            remaining = deadline - loop.time()
            if updates or self._closing or remaining <= 0:
                self._notify()
                return updates
            wake = self._wake
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), remaining)

    async def _m_sendMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        text, entities = self.parse_text(params["text"], params.get("parse_mode"), params.get("entities"))
        markup = params.get("reply_markup")
        inline_markup = self.check_reply_markup(markup)
        chat = self.resolve_chat(params["chat_id"])
        self.check_can_send(chat)
        reply_to: int | None = None
        reply_params = params.get("reply_parameters")
        if reply_params:
            target = self.messages.get((chat.id, int(reply_params["message_id"])))
            if target is None or target.deleted:
                if not reply_params.get("allow_sending_without_reply"):
                    raise ApiError(400, "Bad Request: message to be replied not found")
            else:
                reply_to = target.message_id
        self.check_flood(chat.id, paid=bool(params.get("allow_paid_broadcast")))
        msg = self._store_message(chat, self.bot_id, True, text, entities, inline_markup, params)
        msg.reply_to_message_id = reply_to
        return self._message_to_api(msg)

    def _edit_target(self, params: dict[str, Any]) -> tuple[TgChat, TgMessage]:
        if "inline_message_id" in params:
            raise ApiError(400, "Bad Request: message to edit not found")  # no inline mode in the emulator
        if "chat_id" not in params or "message_id" not in params:
            raise ApiError(400, "Bad Request: message identifier is not specified", violation="content")
        chat = self.resolve_chat(params["chat_id"])
        msg = self._bot_message(chat, params["message_id"], action="edit")
        if not msg.from_bot:
            raise ApiError(400, "Bad Request: message can't be edited")
        return chat, msg

    def _apply_edit(
        self, msg: TgMessage, text: str, entities: list[dict[str, Any]], markup: dict[str, Any] | None
    ) -> dict[str, Any]:
        if (
            text == msg.text
            and _canon(entities) == _canon(msg.entities)
            and _canon(markup) == _canon(msg.reply_markup)
        ):
            raise ApiError(400, _NOT_MODIFIED)
        msg.versions.append(MessageVersion(text, entities, markup, self.clock()))
        msg.edit_date = int(self.wall_clock())
        return self._message_to_api(msg)

    def _m_editMessageText(self, params: dict[str, Any]) -> dict[str, Any]:
        text, entities = self.parse_text(params["text"], params.get("parse_mode"), params.get("entities"))
        markup = self.check_reply_markup(params.get("reply_markup"))
        _, msg = self._edit_target(params)
        return self._apply_edit(msg, text, entities, markup)

    def _m_editMessageReplyMarkup(self, params: dict[str, Any]) -> dict[str, Any]:
        markup = self.check_reply_markup(params.get("reply_markup"))
        _, msg = self._edit_target(params)
        return self._apply_edit(msg, msg.text, msg.entities, markup)

    def _m_deleteMessage(self, params: dict[str, Any]) -> bool:
        chat = self.resolve_chat(params["chat_id"])
        msg = self._bot_message(chat, params["message_id"], action="delete")
        if not msg.from_bot and chat.is_group:
            rights = chat.admin_rights.get(self.bot_id, _ADMIN_DEFAULT_RIGHTS)
            if chat.bot_status != "administrator" or not rights.get("can_delete_messages", True):
                raise ApiError(400, "Bad Request: message can't be deleted")
        msg.deleted = True
        if msg.message_id in chat.pinned:
            chat.pinned.remove(msg.message_id)
        return True

    def _m_answerCallbackQuery(self, params: dict[str, Any]) -> bool:
        record = self.callback_queries.get(params["callback_query_id"])
        if record is None or record.answer is not None:
            raise ApiError(400, _QUERY_TOO_OLD)
        if self.callback_query_ttl is not None and self.clock() - record.created_at > self.callback_query_ttl:
            raise ApiError(400, _QUERY_TOO_OLD)
        if len(params.get("text", "")) > 200:
            raise ApiError(400, "Bad Request: MESSAGE_TOO_LONG", violation="content")
        record.answer = {**params, "time": self.clock()}
        return True

    def _m_pinChatMessage(self, params: dict[str, Any]) -> bool:
        chat = self.resolve_chat(params["chat_id"])
        if chat.type != "private":
            self.check_can_send(chat)
        if not self._bot_can_pin(chat):
            raise ApiError(400, "Bad Request: not enough rights to manage pinned messages in the chat")
        msg = self._bot_message(chat, params["message_id"], action="pin")
        if msg.message_id in chat.pinned:
            chat.pinned.remove(msg.message_id)
        chat.pinned.append(msg.message_id)
        service = self._store_message(chat, self.bot_id, True, "", [], None)
        service.service = {"pinned_message": self._message_to_api(msg, with_reply=False)}
        return True

    def _m_unpinChatMessage(self, params: dict[str, Any]) -> bool:
        chat = self.resolve_chat(params["chat_id"])
        if not self._bot_can_pin(chat):
            raise ApiError(400, "Bad Request: not enough rights to manage pinned messages in the chat")
        if "message_id" in params:
            if params["message_id"] not in chat.pinned:
                raise ApiError(400, "Bad Request: message to unpin not found")
            chat.pinned.remove(params["message_id"])
        elif chat.pinned:
            chat.pinned.pop()
        return True

    def _m_unpinAllChatMessages(self, params: dict[str, Any]) -> bool:
        chat = self.resolve_chat(params["chat_id"])
        if not self._bot_can_pin(chat):
            raise ApiError(400, "Bad Request: not enough rights to manage pinned messages in the chat")
        chat.pinned.clear()
        return True

    def _m_getChat(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self.resolve_chat(params["chat_id"])
        if chat.type == "private" and chat.user is not None and not chat.user.started:
            raise ApiError(400, "Bad Request: chat not found")
        info = chat.to_api()
        info["accent_color_id"] = 0
        info["max_reaction_count"] = 11
        info["accepted_gift_types"] = {name: True for name in self.spec.required_fields("AcceptedGiftTypes")}
        if chat.description:
            info["description"] = chat.description
        pinned = self.pinned_message(chat)
        if pinned is not None:
            info["pinned_message"] = self._message_to_api(pinned, with_reply=False)
        return info

    def _m_getChatMember(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self.resolve_chat(params["chat_id"])
        return self._chat_member(chat, int(params["user_id"]))

    def _m_getChatAdministrators(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        chat = self.resolve_chat(params["chat_id"])
        if chat.type == "private":
            raise ApiError(400, "Bad Request: there are no administrators in the private chat")
        self.check_can_send(chat)
        out = [
            self._chat_member(chat, uid)
            for uid, status in sorted(chat.members.items(), key=lambda kv: kv[1] != "creator")
            if status in ("creator", "administrator") and uid in self.users
        ]
        if chat.bot_status == "administrator":
            out.append(self._chat_member(chat, self.bot_id))
        return out

    def _m_getChatMemberCount(self, params: dict[str, Any]) -> int:
        chat = self.resolve_chat(params["chat_id"])
        if chat.type == "private":
            return 2
        return sum(1 for s in chat.members.values() if s in ("creator", "administrator", "member")) + 1

    @staticmethod
    def _commands_key(params: dict[str, Any]) -> tuple[str, str]:
        scope = params.get("scope") or {"type": "default"}
        return _canon(scope), params.get("language_code", "")

    def _m_setMyCommands(self, params: dict[str, Any]) -> bool:
        commands = params["commands"]
        if len(commands) > 100:
            raise ApiError(400, "Bad Request: too many commands", violation="content")
        for cmd in commands:
            if not _BOT_COMMAND_RE.match(cmd["command"]):
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID", violation="content")
            if not 1 <= len(cmd["description"]) <= 256:
                raise ApiError(400, "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID", violation="content")
        self.commands[self._commands_key(params)] = [dict(c) for c in commands]
        return True

    def _m_getMyCommands(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        return list(self.commands.get(self._commands_key(params), []))

    def _m_deleteMyCommands(self, params: dict[str, Any]) -> bool:
        self.commands.pop(self._commands_key(params), None)
        return True

    def _m_setChatMenuButton(self, params: dict[str, Any]) -> bool:
        button = params.get("menu_button") or {"type": "default"}
        if "chat_id" in params:
            chat = self.resolve_chat(params["chat_id"])
            if chat.type != "private":
                raise ApiError(400, "Bad Request: chat must be a private chat")
            chat.menu_button = button
        else:
            self.default_menu_button = button
        return True

    def _m_getChatMenuButton(self, params: dict[str, Any]) -> dict[str, Any]:
        if "chat_id" in params:
            chat = self.resolve_chat(params["chat_id"])
            return chat.menu_button or self.default_menu_button
        return self.default_menu_button

    def _m_sendChatAction(self, params: dict[str, Any]) -> bool:
        chat = self.resolve_chat(params["chat_id"])
        self.check_can_send(chat)
        return True

    def _m_getFile(self, params: dict[str, Any]) -> dict[str, Any]:
        entry = self.files.get(params["file_id"])
        if entry is None:
            raise ApiError(400, "Bad Request: invalid file_id")
        path, content = entry
        return {
            "file_id": params["file_id"],
            "file_unique_id": hashlib.sha1(params["file_id"].encode()).hexdigest()[:16],
            "file_size": len(content),
            "file_path": path,
        }


@pytest_asyncio.fixture
async def telegram_emulator() -> AsyncIterator[TelegramEmulator]:
    """A started emulator; at teardown fails the test if any request violated the Bot API (strict).

    Register it once with ``pytest_plugins = ["tests.fakes.telegram"]`` in the root ``conftest.py``.
    """
    async with TelegramEmulator() as tg:
        yield tg
