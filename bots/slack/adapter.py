"""The Slack adapter: lifecycle, sending (cards, DMs, mentions), the live Space's Call, queries the handlers
need (moderators, a user's profile), and error mapping onto the core's errors.

Receiving is Bolt's: the handlers attached with :meth:`SlackPlatform.attach` (bots/slack/handlers.py) own the
AsyncApp, its HTTP routes on the web app (``/slack/events``, the OAuth pages) and Socket Mode.

Every call goes through the workspace's own client (:class:`bots.slack.workspaces.Workspaces`): Slack's limits
and tokens are per app per workspace. Sending is paced by the engine's shared budget, per workspace
(bots/runtime/budget.py); slack_sdk never retries a 429 here (no retry handler): it comes back to the engine
as RateLimited(Retry-After), which holds back that channel or workspace in every process.

Slack has no idempotency key for chat.postMessage: a send whose answer was lost (timeout after Slack
accepted it) is retried by the engine and can show twice. That is the platform's limit; the engine's short
send timeouts keep it rare.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import urlencode

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bots.slack.render import MENTIONS_PER_MESSAGE, Rendered, render, render_call, render_mention
from bots.slack.workspaces import Workspaces
from core.errors import ChatUnavailable, RateLimited, RecipientUnreachable, TransientError
from core.models import EventSpec, EventStatus
from core.notices import Notice
from core.ports import Links
from core.refs import ChatRef, MessageRef, Platform, UserRef

log = logging.getLogger(__name__)

NO_CALL = "-"  # the event id of a Space not live yet: Slack's Call is made when it goes live
CACHE_TTL = 60.0  # seconds users.info and moderator answers are reused
CACHE_SIZE = 5_000  # entries per cache (least recently used beyond)
GROUPS_TTL = 300.0  # seconds a resolved user group handle and its members are reused
AVATAR_TTL = 600.0  # seconds the share page reuses a host's picture (or its absence, or a failed read)
AVATAR_FAILED_TTL = 60.0
DEFAULT_RETRY_AFTER = 1.0  # a 429 without a usable Retry-After

# Slack's error codes, by what they mean for a send
_WORKSPACE_GONE = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "token_revoked",
        "token_expired",
        "account_inactive",
        "app_uninstalled",
        "team_access_not_granted",
        "team_not_found",
        "org_login_required",
        "ekm_access_denied",
    }
)
_USER_UNREACHABLE = frozenset(
    {
        "user_not_found",
        "user_disabled",  # a deactivated account
        "cannot_dm_bot",
        "channel_not_found",  # for a user id: a deactivated or invisible user (seen in the wild)
        "messages_tab_disabled",
        "user_not_visible",
        "not_allowed_token_type",
    }
)
_TRANSIENT = frozenset({"internal_error", "fatal_error", "service_unavailable", "request_timeout"})
_CALL_GONE = frozenset({"invalid_call_id", "call_already_ended", "not_found"})


class SlackHandlers(Protocol):
    """What bots/slack/handlers.py gives the adapter."""

    def web_routes(self) -> Sequence[tuple[str, str, Any]]: ...

    async def start(self) -> None:
        """Socket Mode (when configured); nothing for HTTP events."""
        ...

    async def stop(self) -> None:
        """Idempotent."""
        ...


K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """A small cache whose entries expire after ``ttl`` seconds; beyond ``size`` the least recently used go."""

    def __init__(self, ttl: float, size: int, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._size = size
        self._monotonic = monotonic
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[0] <= self._monotonic():
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return item[1]

    def put(self, key: K, value: V) -> None:
        self._items[key] = (self._monotonic() + self._ttl, value)
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


def _retry_after(response: Any) -> float:
    headers = getattr(response, "headers", None) or {}
    value = None
    for name, v in dict(headers).items():
        if str(name).lower() == "retry-after":
            value = v
    try:
        return max(float(value), 0.0) if value is not None else DEFAULT_RETRY_AFTER
    except (TypeError, ValueError):
        return DEFAULT_RETRY_AFTER


def mapped(e: SlackApiError, *, to_user: bool) -> Exception:
    """A Slack error answer → the core's error (what the engine does next: wait, fall back, retry, give up)."""
    response = e.response
    status = int(getattr(response, "status_code", 200) or 200)
    error = str(response.get("error", "") if response is not None else "")
    detail = f"slack {status}/{error}"
    if status == 429 or error == "ratelimited":
        return RateLimited(_retry_after(response), "slack")
    if status >= 500 or error in _TRANSIENT:
        return TransientError(detail)
    if error in _WORKSPACE_GONE:  # the app lost this workspace: nothing sent there can work now
        return ChatUnavailable(detail)
    if to_user and error in _USER_UNREACHABLE:
        return RecipientUnreachable(detail)
    # channel_not_found, not_in_channel, is_archived, message_not_found, invalid_blocks, msg_too_long …:
    # retrying cannot help; dead-lettered with the reason
    return ChatUnavailable(detail)


class SlackPlatform:
    """core.ports.ChatPlatform, NativeEvents (the Call of a live Space) and Places for Slack."""

    platform = Platform.SLACK

    def __init__(
        self,
        workspaces: Workspaces,
        *,
        links: Links,
        moderator_group: str | None = None,
        cache_ttl: float = CACHE_TTL,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.workspaces = workspaces
        self._links = links
        self._moderator_group = (moderator_group or "").strip().removeprefix("@") or None
        self._handlers: SlackHandlers | None = None
        self._users: TtlCache[tuple[str | None, str], dict[str, Any]] = TtlCache(
            cache_ttl, CACHE_SIZE, monotonic
        )
        self._moderators: TtlCache[tuple[str | None, str], bool] = TtlCache(cache_ttl, CACHE_SIZE, monotonic)
        self._groups: TtlCache[str | None, frozenset[str]] = TtlCache(GROUPS_TTL, 1_000, monotonic)
        # (team, user) → the picture's URL, "" for none: the public share page reads it on every view
        self._avatars: TtlCache[tuple[str | None, str], str] = TtlCache(AVATAR_TTL, CACHE_SIZE, monotonic)
        self._avatars_failed: TtlCache[tuple[str | None, str], str] = TtlCache(
            AVATAR_FAILED_TTL, CACHE_SIZE, monotonic
        )
        # external_unique_id → (call id, its card posted): a retried "go live" (a step failed, or the id was
        # not stored) reuses the Call it made and does not post its card twice
        self._calls: TtlCache[str, tuple[str, bool]] = TtlCache(24 * 3600.0, 10_000, monotonic)
        self._started = False

    # ------------------------------------------------------------------ lifecycle

    def attach(self, handlers: SlackHandlers) -> None:
        """Inbound (commands, buttons, views, events) goes to ``handlers``, started and stopped with us."""
        self._handlers = handlers

    def web_routes(self) -> Sequence[tuple[str, str, Any]]:
        """The attached handlers' routes (``/slack/events``, ``/slack/install``, ``/slack/oauth_redirect``)."""
        return tuple(self._handlers.web_routes()) if self._handlers is not None else ()

    async def start(self) -> None:
        """auth.test for the configured token (its workspace), then the handlers (Socket Mode if any)."""
        await self.workspaces.start()
        self._started = True
        if self._handlers is not None:
            await self._handlers.start()
        log.info(
            "slack ready",
            extra={"team": self.workspaces.token_team or "-", "oauth": not self.workspaces.single_workspace},
        )

    async def stop_receiving(self) -> None:
        """Shutdown: no new inbound events before the last sends (bots.app stops inbound first)."""
        if self._handlers is not None:
            await self._handlers.stop()

    async def stop(self) -> None:
        if self._handlers is not None:
            try:
                await self._handlers.stop()
            except Exception as e:
                log.warning("stopping the slack handlers failed: %s", type(e).__name__)
        await self.workspaces.stop()
        self._started = False

    # ------------------------------------------------------------------ calls

    async def _call(
        self,
        team: str | None,
        call: Callable[[AsyncWebClient], Awaitable[AsyncSlackResponse]],
        *,
        to_user: bool = False,
    ) -> AsyncSlackResponse:
        """One Web API call in ``team`` with its workspace's token, errors mapped for the engine.

        A token Slack refuses (revoked, app uninstalled) may be one this process cached before the app was
        installed again: the token is read again and, if the store holds a newer one, the call is made once
        more with it."""
        client = await self.workspaces.client(team)
        try:
            return await self._once(client, call, to_user=to_user)
        except ChatUnavailable as e:
            cause = e.__cause__
            if not (isinstance(cause, SlackApiError) and cause.response.get("error") in _WORKSPACE_GONE):
                raise
            self.workspaces.invalidate(team)
            fresh = await self.workspaces.client(team)  # ChatUnavailable when nothing is installed now
            if fresh.token == client.token:
                raise
            return await self._once(fresh, call, to_user=to_user)

    async def _once(
        self,
        client: AsyncWebClient,
        call: Callable[[AsyncWebClient], Awaitable[AsyncSlackResponse]],
        *,
        to_user: bool,
    ) -> AsyncSlackResponse:
        try:
            return await call(client)
        except SlackApiError as e:
            raise mapped(e, to_user=to_user) from e
        except (TimeoutError, aiohttp.ClientError, OSError, SlackClientError) as e:
            raise TransientError(f"slack: {type(e).__name__}") from e

    async def _post(
        self, team: str | None, channel: str, rendered: Rendered, *, to_user: bool
    ) -> AsyncSlackResponse:
        # No unfurls: the card already shows the Space, and a preview of the share link would only repeat
        # it. Never link_names: mentions are the <@U…> tokens render put there on purpose, nothing else.
        return await self._call(
            team,
            lambda c: c.chat_postMessage(
                channel=channel,
                text=rendered.text,
                blocks=rendered.blocks,
                unfurl_links=False,
                unfurl_media=False,
            ),
            to_user=to_user,
        )

    # ------------------------------------------------------------------ sending (core.ports.ChatPlatform)

    async def post(self, chat: ChatRef, notice: Notice, *, key: str) -> MessageRef:
        data = await self._post(chat.scope, chat.id, render(notice), to_user=False)
        return MessageRef(Platform.SLACK, str(data["channel"]), str(data["ts"]), scope=chat.scope)

    async def edit(self, message: MessageRef, notice: Notice) -> None:
        rendered = render(notice)
        # Slack accepts an update that changes nothing: no special case for it
        await self._call(
            message.scope,
            lambda c: c.chat_update(
                channel=message.chat_id, ts=message.id, text=rendered.text, blocks=rendered.blocks
            ),
        )

    async def direct(self, user: UserRef, notice: Notice, *, key: str) -> MessageRef:
        """chat.postMessage with the user's id as the channel posts in the app's DM with them (no
        conversations.open, Tier 3, needed); the answer names the DM channel (D…) the message is in."""
        data = await self._post(user.scope, user.id, render(notice), to_user=True)
        return MessageRef(Platform.SLACK, str(data["channel"]), str(data["ts"]), scope=user.scope)

    async def mention(
        self, chat: ChatRef, users: Mapping[UserRef, str], notice: Notice, *, key: str
    ) -> MessageRef:
        """The DM fallback in the announcement channel: ``<@U…>`` for exactly the named users (never
        <!channel>, <!here>, a user group or link_names), :data:`MENTIONS_PER_MESSAGE` per message."""
        ids = [u.id for u in users]
        if not ids:
            raise ValueError("no user to mention")
        first: MessageRef | None = None
        for i in range(0, len(ids), MENTIONS_PER_MESSAGE):
            rendered = render_mention(ids[i : i + MENTIONS_PER_MESSAGE], notice)
            data = await self._post(chat.scope, chat.id, rendered, to_user=False)
            first = first or MessageRef(
                Platform.SLACK, str(data["channel"]), str(data["ts"]), scope=chat.scope
            )
        assert first is not None
        return first

    # ------------------------------------------------------------------ the Call (core.ports.NativeEvents)

    async def create_event(self, chat: ChatRef, spec: EventSpec, *, key: str) -> str:
        """Slack has nothing to show before a Space is live (a Call is only ever "happening now"): the id
        is a placeholder until :meth:`update_event` makes the Call. A Space already live gets it at once."""
        if spec.status is EventStatus.ACTIVE:
            new = await self.update_event(chat, NO_CALL, spec)
            return new or NO_CALL
        return NO_CALL

    async def update_event(self, chat: ChatRef, event_id: str, spec: EventSpec) -> str | None:
        """ACTIVE with no Call yet: calls.add (joining opens the Space's listen page) and the Call card in
        the announcement channel; returns the call id, which the engine stores. COMPLETED / CANCELED with a
        Call: calls.end (a Call already ended or gone is success). Anything else changes nothing on Slack:
        the card (edited by the engine) shows the new time or title."""
        if spec.status is EventStatus.ACTIVE and event_id == NO_CALL:
            return await self._start_call(chat, spec)
        if spec.status in (EventStatus.COMPLETED, EventStatus.CANCELED):
            if event_id == NO_CALL:  # a Call this process made whose id never reached the store
                known = self._calls.get(self._external_id(chat, spec))
                event_id = known[0] if known is not None else NO_CALL
            if event_id != NO_CALL:
                await self._end_call(chat, event_id)
        return None

    def _external_id(self, chat: ChatRef, spec: EventSpec) -> str:
        # one Call per Space per announcement channel; the share link names the Space
        raw = f"{spec.location or spec.title}|{chat}"
        return hashlib.blake2b(raw.encode(), digest_size=16).hexdigest()

    async def _start_call(self, chat: ChatRef, spec: EventSpec) -> str:
        external = self._external_id(chat, spec)
        known = self._calls.get(external)
        if known is not None and known[1]:
            return known[0]  # made and shown already: a repeated update
        if known is None:
            link = spec.location or ""
            if not link:
                raise ChatUnavailable("slack: a Call needs the Space's link (EventSpec.location)")
            data = await self._call(
                chat.scope,
                lambda c: c.calls_add(
                    external_unique_id=external,
                    join_url=f"{link.rstrip('/')}/listen",
                    title=_cap(spec.title, 255),
                    date_start=int(_epoch(spec.starts_at)),
                ),
            )
            call_id = str(data["call"]["id"])
            self._calls.put(external, (call_id, False))
        else:
            call_id = known[0]
        # the Call card: Slack renders a live "Join" for the call block
        await self._post(
            chat.scope,
            chat.id,
            render_call(call_id, spec.title),  # the title escaped: a "<!channel>" in it notifies nobody
            to_user=False,
        )
        self._calls.put(external, (call_id, True))
        return call_id

    async def _end_call(self, chat: ChatRef, call_id: str) -> None:
        try:
            await self._call(chat.scope, lambda c: c.calls_end(id=call_id))
        except ChatUnavailable as e:
            cause = e.__cause__
            if isinstance(cause, SlackApiError) and cause.response.get("error") in _CALL_GONE:
                return  # ended already (a retried end, or ended from Slack): that is the goal
            raise

    # ------------------------------------------------------------------ links for the share page (core Places)

    def message_link(self, message: MessageRef) -> str | None:
        """Slack's app_redirect into the channel, in the message's workspace: it opens for a member (and
        offers the workspace's sign-in to others) without a chat.getPermalink call per card."""
        team = message.scope or self.workspaces.token_team
        query = {"channel": message.chat_id} if team is None else {"team": team, "channel": message.chat_id}
        return f"https://slack.com/app_redirect?{urlencode(query)}"

    def event_link(self, chat: ChatRef, event_id: str) -> str | None:
        return None  # Slack's Call lives in its card, in the channel: the message link leads there

    def subscribe_link(self, space_id: str) -> str | None:
        return None  # subscribing is the card's button

    async def avatar_url(self, user: UserRef) -> str | None:
        """users.info's ``profile.image_192`` (through :meth:`user_info`), kept AVATAR_TTL; None on any
        failure (remembered a minute: a burst of page views never repeats it)."""
        if user.platform is not Platform.SLACK:
            return None
        key = (user.scope, user.id)
        cached = self._avatars.get(key)
        if cached is not None:
            return cached or None
        if self._avatars_failed.get(key) is not None:
            return None
        try:
            info = await self.user_info(user)
        except Exception as e:
            log.warning("reading a slack avatar failed: %s", type(e).__name__)
            self._avatars_failed.put(key, "")
            return None
        profile = info.get("profile")
        image = profile.get("image_192") if isinstance(profile, dict) else None
        url = image if isinstance(image, str) and image.startswith("https://") else ""
        self._avatars.put(key, url)
        return url or None

    # ------------------------------------------------------------------ queries for the handlers

    async def user_info(self, user: UserRef) -> dict[str, Any]:
        """users.info(include_locale=True)["user"]: tz, locale, is_admin/is_owner, profile. Cached briefly."""
        key = (user.scope, user.id)
        cached = self._users.get(key)
        if cached is not None:
            return cached
        data = await self._call(
            user.scope, lambda c: c.users_info(user=user.id, include_locale=True), to_user=True
        )
        info: dict[str, Any] = dict(data["user"])
        self._users.put(key, info)
        return info

    async def is_moderator(self, chat: ChatRef, user: UserRef) -> bool:
        """Workspace admins and owners, or members of SLACK_MODERATOR_GROUP (a handle such as "space-mods",
        or an id "S…"). Cached briefly; a failed check answers False (the host can still act).
        Only in the user's own workspace: an admin of one workspace moderates nothing in another."""
        if chat.platform is not Platform.SLACK or (user.scope and chat.scope and user.scope != chat.scope):
            return False
        team = user.scope or chat.scope
        key = (team, user.id)
        known = self._moderators.get(key)
        if known is not None:
            return known
        try:
            info = await self.user_info(UserRef(Platform.SLACK, user.id, scope=team))
            verdict = bool(info.get("is_admin") or info.get("is_owner") or info.get("is_primary_owner"))
            if not verdict and self._moderator_group is not None:
                verdict = user.id in await self._group_members(team)
        except (ChatUnavailable, RecipientUnreachable, TransientError, RateLimited) as e:
            log.warning("slack moderator check failed: %s", e)
            return False
        self._moderators.put(key, verdict)
        return verdict

    async def _group_members(self, team: str | None) -> frozenset[str]:
        members = self._groups.get(team)
        if members is not None:
            return members
        group = await self._group_id(team)
        if group is None:
            members = frozenset()
        else:
            data = await self._call(team, lambda c: c.usergroups_users_list(usergroup=group))
            members = frozenset(str(u) for u in data.get("users") or ())
        self._groups.put(team, members)
        return members

    async def _group_id(self, team: str | None) -> str | None:
        wanted = self._moderator_group
        if wanted is None:
            return None
        if wanted.startswith("S") and wanted[1:].isalnum() and wanted.upper() == wanted:
            return wanted
        data = await self._call(team, lambda c: c.usergroups_list())
        for group in data.get("usergroups") or ():
            if str(group.get("handle", "")).lower() == wanted.lower():
                return str(group["id"])
        log.warning("slack user group not found", extra={"team": team or "-", "group": wanted})
        return None


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _epoch(when: datetime) -> float:
    return when.timestamp()


__all__ = ["NO_CALL", "SlackHandlers", "SlackPlatform", "TtlCache", "mapped"]
