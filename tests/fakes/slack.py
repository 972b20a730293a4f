"""A Slack emulator on 127.0.0.1 for tests that run the real slack_sdk and slack_bolt.

Outbound (the app calls Slack): point the client at it, ``AsyncWebClient(token=..., base_url=emu.api_base)``
(Bolt: ``AsyncApp(client=...)``). It answers the Web API methods the Spaces adapter uses (see
``_register_methods``) the way Slack does: HTTP 200 with ``{"ok": false, "error": ...}`` for errors, 429 with
``Retry-After`` when rate limited. Every call is checked against Slack's description
(``tests/fakes/specs/slack-web-openapi-v2.json`` via :mod:`tests.fakes.slack_spec`) and Block Kit's limits.

Inbound (Slack calls the app): :meth:`SlackEmulator.slash_command`, :meth:`click`, :meth:`submit_view`,
:meth:`close_view`, :meth:`send_event`, :meth:`user_says`, :meth:`open_home`, :meth:`uninstall`,
:meth:`verify_url` build Slack's payloads and deliver them signed
(``X-Slack-Signature: v0=HMAC-SHA256(signing_secret, "v0:{ts}:{body}")``) to ``emu.request_url`` over HTTP,
or, with ``emu.transport = "socket"``, as Socket Mode envelopes over the websocket the app opened through
``apps.connections.open`` (``disconnect_socket`` plays Slack refreshing the link). Each returns an
:class:`Inbound`: the app's status and body (its ack), plus what it later posted to the ``response_url``
(``rec.responses``). OAuth v2 installs are played by :meth:`install_via_oauth`.

What people saw is recorded at the emulator: ``messages_in``, ``dms_to``, ``ephemeral_to``, ``views_of``
(``open_views_of``), ``home_of``, ``calls_in``, ``received``, ``broadcasts`` (``<!channel>``/``<!here>``/
``<!everyone>`` sent); every Web API call in ``api_calls()``. Bolt acks before its listener runs: wait for
the effects with ``wait_until``/``wait_for_call``/``wait_for_message`` (woken by each call, never a fixed
sleep).

Typical use (see ``tests/fakes/test_slack_emulator.py``)::

    async with SlackEmulator(clock=clock) as emu:         # or the ``slack_emulator`` fixture
        team = emu.create_workspace("Acme")                 # the app installed: emu.bot_token(team)
        alice = emu.add_user(team, "alice", tz="Europe/Paris", locale="fr-FR")
        general = emu.add_channel(team, "general", members=[alice])
        app = AsyncApp(signing_secret=emu.signing_secret,
                       client=AsyncWebClient(token=emu.bot_token(team), base_url=emu.api_base))
        ...serve app.web_app() on 127.0.0.1:0; emu.request_url = "http://127.0.0.1:PORT/slack/events"
        rec = await emu.slash_command(alice, general, "/space", "tomorrow 20:00 AMA")
        await emu.wait_for_call("views.open")
        [modal] = emu.open_views_of(alice)
        rec = await emu.submit_view(alice, modal, values={"title": {"value": "AMA"}})

The secrets it hands out (bot tokens, the default signing and client secrets) contain
``tests.fakes.secrets.CANARY``, so the session's log check catches any of them in a log line. slack_sdk and
slack_bolt log whole response bodies and payloads at DEBUG: production (and a test capturing logs) must hold
them at INFO or above.

Violations: a request Slack would refuse because the app was built wrong (unknown method or argument,
missing or mistyped argument, a scope it did not ask for at install, Block Kit over its limits, a trigger_id
used twice, view errors naming no input block...) is answered with Slack's error AND recorded; ``assert_clean()`` (on exit of ``async with``, when
``strict``) fails the test. A test provoking one on purpose takes it with ``take_violations()``. Errors that
happen to correct apps (rate limits, revoked tokens, deactivated users, an expired trigger_id) are answered
but not recorded as violations: the app must handle them.

Rate limits (``emu.unlimited = True`` turns them off), per app per workspace per method, sliding windows of
60 s of the emulator's ``clock``:

* Tiers, from https://docs.slack.dev/apis/web-api/rate-limits ("Tier 1: 1+ per minute, Tier 2: 20+, Tier 3:
  50+, Tier 4: 100+"); the emulator allows exactly the lower bound (Tier 1: 3, see ``_TIER_PER_MINUTE``).
  Each method's tier is the one on its reference page (``TIERS``: checked for calls.add/info, views.open,
  usergroups.users.list, conversations.open; the others as documented in 2025, not re-checked); a test may
  change one with ``emu.tiers[method] = n``.
* ``chat.postMessage`` is "Special": "generally allows posting one message per second per channel, while also
  maintaining a workspace-wide limit" (same page; the figure of the workspace-wide limit is not published).
  The emulator keeps a token bucket per channel (refill 1/s, a burst of ``post_burst`` = 3: "short bursts >1
  allowed") and a workspace-wide sliding window of ``post_workspace_per_minute`` = 600/min (our figure,
  chosen high enough not to bite a single live event but to catch runaway loops).
* Over a limit: HTTP 429, ``Retry-After`` in whole seconds (rounded up), ``{"ok": false, "error":
  "ratelimited"}``; the call has no effect. slack_sdk raises ``SlackApiError`` unless the app added
  ``AsyncRateLimitErrorRetryHandler``.

Deactivated users (:meth:`deactivate`): ``conversations.open`` answers ``user_disabled`` (documented on its
reference page). For ``chat.postMessage`` (and ``chat.postEphemeral``) to their user id or their DM, Slack's
page lists no error, and a Slack engineer confirmed that posting to a deactivated user SUCCEEDS (the DM's
history still exists; slackapi/python-slack-sdk#1156, 2022). ``emu.deactivated_post_error`` picks what the
emulator does: ``"user_disabled"`` (default, so an adapter's "unreachable" path is exercised; the
conservative reading) or ``"channel_not_found"``, or ``None`` for Slack's observed behaviour: the post is
accepted and stored with ``undelivered=True``, nobody sees it (``dms_to`` and ``received`` leave it out). An
adapter cannot count on an error: to skip deactivated accounts it reads ``users.info`` (``deleted``).

Time: ``clock`` (default ``time.monotonic``) drives rate limits, trigger_id (3 s) and response_url (30 min)
expiry; ``wall_clock`` (default ``time.time``) the timestamps the app checks (request signatures, ``ts``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import math
import re
import secrets
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs, urlencode, urljoin, urlparse

import aiohttp
import pytest_asyncio
from aiohttp import web

from tests.fakes.emulator import StrictEmulator
from tests.fakes.secrets import CANARY, SLACK_APP_TOKEN, SLACK_SIGNING_SECRET
from tests.fakes.slack_spec import SlackSpec, event_problems, load_spec, message_problems, view_problems

__all__ = [
    "TIERS",
    "ApiCall",
    "Inbound",
    "SlCall",
    "SlChannel",
    "SlMessage",
    "SlTeam",
    "SlUser",
    "SlackApiFailure",
    "SlackEmulator",
    "Violation",
    "slack_emulator",
]

DEFAULT_CLIENT_ID = "1111.2222"
DEFAULT_CLIENT_SECRET = "LeakCanary-slack-client-secret-0123456789"

#: Rate-limit tier of each method (reference pages on docs.slack.dev, 2026). chat.postMessage is "special".
TIERS: dict[str, int] = {
    # auth.test is "Special" on its page, with no figure; Bolt calls it on every request when it authorizes
    # from an installation store without ``cache_enabled``: left unlimited here (count the calls instead)
    "chat.update": 3,
    "chat.delete": 3,
    "chat.postEphemeral": 4,
    "chat.getPermalink": 4,
    "conversations.open": 3,
    "conversations.info": 3,
    "conversations.members": 4,
    "users.info": 4,
    "usergroups.users.list": 2,
    "usergroups.list": 2,
    "views.open": 4,
    "views.update": 4,
    "views.push": 4,
    "views.publish": 4,
    "calls.add": 3,
    "calls.end": 3,
    "calls.info": 3,
    "oauth.v2.access": 4,
    "apps.connections.open": 1,
    "team.info": 3,
}
#: Calls allowed in any 60 s per tier: the documented lower bounds, except Tier 1 ("1+ per minute ... a small
#: amount of burst behavior is tolerated"): 3, so that a Socket Mode reconnect right after a connect passes.
#: The bot scopes each method needs, any one of them (docs.slack.dev reference pages; the 2021 description
#: names the legacy user scopes). Methods absent here need none (auth.test, chat.getPermalink, views.*).
METHOD_SCOPES: dict[str, tuple[str, ...]] = {
    "chat.postMessage": ("chat:write",),
    "chat.update": ("chat:write",),
    "chat.delete": ("chat:write",),
    "chat.postEphemeral": ("chat:write",),
    "conversations.open": ("im:write", "mpim:write"),
    "conversations.info": ("channels:read", "groups:read", "im:read", "mpim:read"),
    "conversations.members": ("channels:read", "groups:read", "im:read", "mpim:read"),
    "users.info": ("users:read",),
    "usergroups.list": ("usergroups:read",),
    "usergroups.users.list": ("usergroups:read",),
    "calls.add": ("calls:write",),
    "calls.end": ("calls:write",),
    "calls.info": ("calls:read",),
    "team.info": ("team:read",),
}

_TIER_PER_MINUTE = {1: 3, 2: 20, 3: 50, 4: 100}

_MENTION_RE = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
_BROADCAST_RE = re.compile(r"<!(channel|here|everyone)(?:\|[^>]*)?>")
_SUBTEAM_RE = re.compile(r"<!subteam\^(S[A-Z0-9]+)(?:\|[^>]*)?>")

TRIGGER_TTL = 3.0  # "trigger_id ... expires in 3 seconds" (docs.slack.dev, modals)
RESPONSE_URL_TTL = 30 * 60.0  # "up to 5 times within 30 minutes" (docs.slack.dev, handling interactions)
RESPONSE_URL_USES = 5
ACK_TIMEOUT = 3.0  # Slack waits 3 s for an ack


# --------------------------------------------------------------------------- records
class SlackApiFailure(Exception):
    """An error answer of the Web API; raise it from a method handler.

    ``violation`` ("spec", "blocks", "view", "trigger"...) marks a request the app should never have sent: it
    is recorded in ``emu.violations`` as well as answered."""

    def __init__(
        self,
        error: str,
        *,
        status: int = 200,
        retry_after: int | None = None,
        violation: str | None = None,
        detail: str = "",
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{error}: {detail}" if detail else error)
        self.error = error
        self.status = status
        self.retry_after = retry_after
        self.violation = violation
        self.detail = detail
        self.extra = extra or {}


@dataclass
class ApiCall:
    method: str
    params: dict[str, Any]  # normalised arguments (JSON ones parsed), token excluded
    team_id: str | None  # the workspace of the token used (None: no or unknown token)
    time: float  # emulator clock
    status: int  # HTTP status answered
    ok: bool
    error: str | None = None
    response: dict[str, Any] | None = None
    retry_after: int | None = None


@dataclass
class Violation:
    method: str
    kind: str  # "spec" | "blocks" | "view" | "trigger" | "response_url" | "unknown_method" | "interaction"
    message: str
    params: dict[str, Any]

    def __str__(self) -> str:
        return f"[{self.kind}] {self.method}: {self.message} (params={_short(self.params)})"


@dataclass
class SlUser:
    id: str
    team_id: str
    name: str
    real_name: str
    display_name: str
    tz: str
    tz_offset: int
    locale: str
    is_admin: bool = False
    is_owner: bool = False
    deleted: bool = False
    is_bot: bool = False

    def to_api(self, *, include_locale: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "team_id": self.team_id,
            "name": self.name,
            "deleted": self.deleted,
            "real_name": self.real_name,
            "tz": self.tz,
            "tz_label": self.tz,
            "tz_offset": self.tz_offset,
            "is_admin": self.is_admin,
            "is_owner": self.is_owner,
            "is_primary_owner": self.is_owner,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_bot": self.is_bot,
            "is_app_user": False,
            "updated": 1_700_000_000,
            "profile": {
                "real_name": self.real_name,
                "display_name": self.display_name,
                "real_name_normalized": self.real_name,
                "display_name_normalized": self.display_name,
                "avatar_hash": f"g{self.id[-6:]}",
                "title": "",
                "phone": "",
                "skype": "",
                "status_text": "",
                "status_emoji": "",
                "fields": None,
                "image_24": f"https://avatars.slack-edge.test/{self.id}_24.png",
                "image_48": f"https://avatars.slack-edge.test/{self.id}_48.png",
                "image_72": f"https://avatars.slack-edge.test/{self.id}_72.png",
                "image_192": f"https://avatars.slack-edge.test/{self.id}_192.png",
                "team": self.team_id,
            },
        }
        if include_locale:
            d["locale"] = self.locale
        return d


@dataclass
class SlTeam:
    id: str
    name: str
    domain: str
    bot_user_id: str
    bot_id: str
    installed: bool = True
    scopes: tuple[str, ...] = ()

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "domain": self.domain,
            "email_domain": f"{self.domain}.test",
            "icon": {"image_68": f"https://avatars.slack-edge.test/{self.id}_68.png", "image_default": True},
        }


@dataclass
class SlChannel:
    id: str
    team_id: str
    name: str
    is_private: bool = False
    is_im: bool = False
    im_user: str | None = None  # for the app's DM ("D..."): the other side
    members: list[str] = field(default_factory=list)  # user ids (the bot user included when it is in it)
    created: int = 1_700_000_000

    def to_api(self) -> dict[str, Any]:
        if self.is_im:
            return {
                "id": self.id,
                "is_im": True,
                "user": self.im_user,
                "created": self.created,
                "is_open": True,
            }
        return {
            "id": self.id,
            "name": self.name,
            "is_channel": not self.is_private,
            "is_group": self.is_private,
            "is_im": False,
            "is_mpim": False,
            "is_private": self.is_private,
            "is_archived": False,
            "is_general": self.name == "general",
            "created": self.created,
            "creator": self.members[0] if self.members else "",
            "name_normalized": self.name,
            "context_team_id": self.team_id,
            "shared_team_ids": [self.team_id],
        }


@dataclass
class MessageVersion:
    text: str
    blocks: list[dict[str, Any]] | None
    time: float


@dataclass
class SlMessage:
    """A message as people see it: the latest version (edits applied) and its history."""

    channel: str
    ts: str
    user: str  # the author's user id (the app's bot user for the app's messages)
    versions: list[MessageVersion]
    team_id: str
    thread_ts: str | None = None
    metadata: dict[str, Any] | None = None
    ephemeral_to: str | None = None  # user id, for ephemeral messages
    deleted: bool = False
    bot_id: str | None = None
    source: str = "chat.postMessage"  # or "chat.postEphemeral", "response_url", "ack", "user"
    app_id: str = "A0SPACES"
    undelivered: bool = False  # posted in the DM of a deactivated account: accepted, seen by nobody

    @property
    def text(self) -> str:
        return self.versions[-1].text

    @property
    def blocks(self) -> list[dict[str, Any]]:
        return self.versions[-1].blocks or []

    @property
    def edits(self) -> list[MessageVersion]:
        return self.versions[1:]

    @property
    def action_ids(self) -> list[str]:
        return [el["action_id"] for _b, el in _interactive_elements(self.blocks) if "action_id" in el]

    def to_api(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": "message", "ts": self.ts, "user": self.user, "text": self.text}
        if self.versions[-1].blocks is not None:
            d["blocks"] = self.blocks
        if self.bot_id:
            d["bot_id"] = self.bot_id
            d["app_id"] = self.app_id
        d["team"] = self.team_id
        if self.thread_ts:
            d["thread_ts"] = self.thread_ts
        if self.metadata:
            d["metadata"] = self.metadata
        if len(self.versions) > 1:
            d["edited"] = {"user": self.user, "ts": self.ts}
        return d


@dataclass
class SlCall:
    id: str
    team_id: str
    external_unique_id: str
    join_url: str
    title: str | None
    date_start: int
    created_by: str | None = None
    desktop_app_join_url: str | None = None
    external_display_id: str | None = None
    users: list[dict[str, Any]] = field(default_factory=list)
    ended: bool = False
    duration: int | None = None

    def to_api(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "date_start": self.date_start,
            "external_unique_id": self.external_unique_id,
            "join_url": self.join_url,
            "users": self.users,
        }
        for key in ("title", "desktop_app_join_url", "external_display_id"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        if self.ended:
            d["date_end"] = self.date_start + (self.duration or 0)
        return d


@dataclass
class Inbound:
    """One request the emulator made to the app (a command, an interaction, an event) and what came of it."""

    kind: str  # "slash_command" | "block_actions" | "view_submission" | "event" | "url_verification" | "raw"
    payload: dict[str, Any]  # what was sent (the form fields of a command, the interaction/event payload)
    team_id: str | None = None
    user_id: str | None = None
    channel_id: str | None = None
    status: int | None = None  # HTTP status (200 for a socket ack); None: no answer within 3 s
    body: Any = None  # the app's answer: parsed JSON when it is JSON, else text ("" when empty)
    headers: dict[str, str] = field(default_factory=dict)  # the app's response headers
    sent_headers: dict[str, str] = field(default_factory=dict)
    raw_body: bytes = b""
    # every post to the response_url, in order, refused ones (expired, 6th use) included
    responses: list[dict[str, Any]] = field(default_factory=list)
    response_url: str | None = None
    trigger_id: str | None = None
    event_id: str | None = None
    retry_num: int | None = None
    error: str | None = None  # delivery error ("timeout", a connection error)

    @property
    def acked(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass
class _Token:
    value: str
    kind: Literal["bot", "app"]
    team_id: str | None
    revoked: bool = False
    scopes: frozenset[str] | None = (
        None  # granted bot scopes; None: not checked (a test's ready-made install)
    )


@dataclass
class _Trigger:
    id: str
    user_id: str
    team_id: str
    created: float
    used: bool = False


@dataclass
class _ResponseUrl:
    key: str
    inbound: Inbound
    team_id: str
    user_id: str
    channel_id: str | None
    created: float
    message: SlMessage | None = None  # the message the interaction came from (replace_original)
    uses: int = 0


@dataclass
class _View:
    id: str
    team_id: str
    user_id: str
    view: dict[str, Any]  # as Slack answers it (with id, hash, state...)
    root_id: str
    previous_id: str | None = None
    closed: bool = False
    is_home: bool = False


@dataclass
class _Fault:
    method: str
    error: str
    status: int
    retry_after: int | None
    remaining: int


@dataclass
class _Code:
    code: str
    team_id: str
    user_id: str
    scopes: str
    redirect_uri: str | None
    created: float
    used: bool = False


Handler = Callable[["_Ctx"], Any]


@dataclass
class _Ctx:
    """One Web API call being answered."""

    method: str
    params: dict[str, Any]
    token: _Token | None
    basic_auth: tuple[str, str] | None

    @property
    def team_id(self) -> str:
        assert self.token is not None and self.token.team_id is not None
        return self.token.team_id


def _short(obj: Any, limit: int = 300) -> str:
    text = repr(obj)
    return text if len(text) <= limit else text[:limit] + "..."


def _interactive_elements(blocks: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(block, element) for every element with an action_id, in display order."""
    found: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for block in blocks:
        if not isinstance(block, dict):
            continue
        candidates: list[Any] = []
        if block.get("type") == "actions":
            candidates = list(block.get("elements") or [])
        elif block.get("type") == "section" and "accessory" in block:
            candidates = [block["accessory"]]
        elif block.get("type") == "input" and "element" in block:
            candidates = [block["element"]]
        found.extend((block, el) for el in candidates if isinstance(el, dict) and "action_id" in el)
    return found


def _mrkdwn_texts(text: str | None, blocks: list[dict[str, Any]] | None) -> list[str]:
    """The texts Slack parses for mentions: the message ``text`` and every mrkdwn text object of the blocks."""
    texts = [text or ""]
    for block in blocks or []:
        if not isinstance(block, dict):
            continue
        objs: list[Any] = [block.get("text"), *(block.get("fields") or [])]
        if block.get("type") == "context":
            objs.extend(block.get("elements") or [])
        texts.extend(
            o["text"] for o in objs if isinstance(o, dict) and o.get("type") == "mrkdwn" and "text" in o
        )
    return texts


def _permalink_ts(ts: str) -> str:
    return "p" + ts.replace(".", "")


# --------------------------------------------------------------------------- emulator
class SlackEmulator(StrictEmulator):
    """An aiohttp server speaking Slack's Web API and calling the app like Slack; see the module docstring."""

    def __init__(
        self,
        *,
        signing_secret: str = SLACK_SIGNING_SECRET,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        app_id: str = "A0SPACES",
        app_token: str = SLACK_APP_TOKEN,
        request_url: str | None = None,
        strict: bool = True,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        host: str = "127.0.0.1",
        port: int = 0,
        spec_path: str | None = None,
        ack_timeout: float = ACK_TIMEOUT,
        auto_retry_events: bool = False,
    ) -> None:
        self.signing_secret = signing_secret
        self.client_id = client_id
        self.client_secret = client_secret
        self.app_id = app_id
        self.app_token = app_token
        self.request_url: str | None = request_url
        self.redirect_uri: str | None = (
            None  # the app's OAuth redirect (default: derived from the install URL)
        )
        self.strict = strict
        self.clock = clock
        self.wall_clock = wall_clock
        self.host = host
        self._requested_port = port
        self.spec: SlackSpec = load_spec(spec_path)
        self.ack_timeout = ack_timeout
        self.auto_retry_events = auto_retry_events
        self.transport: Literal["http", "socket"] = "http"
        self.unlimited = False
        self.tiers: dict[str, int] = dict(TIERS)
        self.post_burst = 3
        self.post_workspace_per_minute = 600
        self.deactivated_post_error: str | None = "user_disabled"  # see the module docstring
        # the deprecated `token` field of every payload: Spaces verifies signatures and never configures it,
        # so it is no test secret (Bolt logs whole payloads at DEBUG)
        self.verification_token = "deprecated-verification-token"

        # recordings
        self.calls: list[ApiCall] = []
        self.violations: list[Violation] = []
        self.inbound: list[Inbound] = []
        self.broadcasts: list[tuple[str, str, str]] = []  # (channel id, "channel"|"here"|"everyone", ts)

        # world
        self.teams: dict[str, SlTeam] = {}
        self.users: dict[str, SlUser] = {}
        self.channels: dict[str, SlChannel] = {}
        self.usergroups: dict[str, tuple[str, str, list[str]]] = {}  # id -> (team id, handle, user ids)
        self.messages: dict[tuple[str, str], SlMessage] = {}  # (channel id, ts) -> message
        self._by_channel: dict[str, list[SlMessage]] = {}  # channel id -> its messages, oldest first
        self.ephemerals: list[SlMessage] = []
        self.views: dict[str, _View] = {}
        self.homes: dict[str, dict[str, Any]] = {}  # user id -> published home view
        self.call_records: dict[str, SlCall] = {}
        self._tokens: dict[str, _Token] = {app_token: _Token(app_token, "app", None)}  # the app-level token
        self._team_tokens: dict[str, list[str]] = {}  # team id -> its bot tokens, newest last
        self._ims: dict[tuple[str, str], str] = {}  # (team id, user id) -> D... channel id
        self._triggers: dict[str, _Trigger] = {}
        self._response_urls: dict[str, _ResponseUrl] = {}
        self._codes: dict[str, _Code] = {}
        self._tickets: set[str] = set()
        self.oauth_log: list[dict[str, Any]] = []  # each authorize request the browser made
        self.oauth_result_page = ""  # what the app answered the browser at the end of the last install
        self.oauth_codes: list[str] = []  # every code handed to the app's redirect, oldest first

        # machinery
        self._handlers: dict[str, Handler] = {}
        self._faults: list[_Fault] = []
        self._windows: dict[tuple[str, ...], deque[float]] = {}
        self._buckets: dict[str, tuple[float, float]] = {}  # channel -> (tokens, at)
        self._ids = itertools.count(1)
        self._ts_seq = itertools.count(1)
        self._last_ts = 0.0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._sockets: list[web.WebSocketResponse] = []
        self._acks: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._socket_connected = asyncio.Event()
        self._changed = asyncio.Event()  # set (and replaced) whenever a call, a response or an ack arrives
        self.socket_messages: list[dict[str, Any]] = []  # every envelope sent over Socket Mode
        self.port: int | None = None
        self._register_methods()

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> SlackEmulator:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_get("/oauth/v2/authorize", self._handle_authorize)
        app.router.add_post("/respond/{key}", self._handle_response_url)
        app.router.add_get("/link/", self._handle_socket)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._requested_port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self._session = aiohttp.ClientSession()
        return self

    async def stop(self) -> None:
        for ws in list(self._sockets):
            with contextlib.suppress(Exception):
                await ws.close()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _base(self) -> str:
        if self.port is None:
            raise RuntimeError("SlackEmulator not started")
        return f"http://{self.host}:{self.port}"

    @property
    def api_base(self) -> str:
        """For ``AsyncWebClient(base_url=...)``: the client appends the method name."""
        return f"{self._base()}/api/"

    @property
    def oauth_base(self) -> str:
        """Slack's authorize page (``OAuthSettings(authorization_url=...)`` / AuthorizeUrlGenerator)."""
        return f"{self._base()}/oauth/v2/authorize"

    # ------------------------------------------------------------------ violations
    def assert_clean(self) -> None:
        """Raise AssertionError listing every request Slack would have refused."""
        if self.violations:
            lines = "\n".join(f"  - {v}" for v in self.violations)
            raise AssertionError(
                f"{len(self.violations)} request(s) to the Slack emulator that Slack would refuse:\n{lines}"
            )

    def take_violations(self) -> list[Violation]:
        """Return and forget the recorded violations (for tests that provoke them on purpose)."""
        taken, self.violations = self.violations, []
        return taken

    def _violate(self, method: str, kind: str, message: str, params: dict[str, Any]) -> None:
        self.violations.append(Violation(method, kind, message, params))

    # ------------------------------------------------------------------ extension and faults
    def add_method(self, name: str, handler: Handler) -> None:
        """Implement (or override) a Web API method: ``handler(ctx) -> dict`` (sync or async), answered with
        ``{"ok": true, **result}``; raise :class:`SlackApiFailure` for errors. The method must be in the
        description (or in ``slack_spec.KNOWN_GAPS``)."""
        self._handlers[name] = handler

    def fail_next(
        self,
        method: str,
        error: str = "ratelimited",
        *,
        status: int | None = None,
        retry_after: int | None = 1,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` with this error, doing nothing (chaos).

        ``status`` defaults to 429 for "ratelimited" (with ``Retry-After``), 500 for "internal_error"/
        "fatal_error" (Slack's HTTP status for them), else 200 (Slack's usual ``ok: false``)."""
        if status is None:
            status = (
                429 if error == "ratelimited" else 500 if error in ("internal_error", "fatal_error") else 200
            )
        self._faults.append(_Fault(method, error, status, retry_after if status == 429 else None, times))

    # ------------------------------------------------------------------ the world
    def _new_id(self, prefix: str) -> str:
        return f"{prefix}0{next(self._ids):08d}"

    def create_workspace(
        self,
        name: str = "Acme",
        *,
        domain: str | None = None,
        installed: bool = True,
        token: str | None = None,
        scopes: str | None = None,
    ) -> SlTeam:
        """A workspace; ``installed`` (default) installs the app in it (see :meth:`bot_token`), with ``token``
        as its bot token when given (e.g. ``tests.fakes.secrets.SLACK_BOT_TOKEN``). ``scopes`` ("chat:write,
        commands,...") are the bot scopes granted, checked on each call (``missing_scope``); None grants all.
        An install through :meth:`install_via_oauth` grants what the authorize URL asked for."""
        team_id = self._new_id("T")
        domain = domain or re.sub(r"[^a-z0-9-]", "-", name.lower()) or "team"
        team = SlTeam(team_id, name, domain, self._new_id("U"), self._new_id("B"), installed=False)
        self.teams[team_id] = team
        self._team_tokens[team_id] = []
        bot = SlUser(team.bot_user_id, team_id, "spaces", "Spaces", "Spaces", "UTC", 0, "en-US", is_bot=True)
        self.users[bot.id] = bot
        if installed:
            self._install(team, token=token, scopes=scopes)
        return team

    def _install(self, team: SlTeam, *, token: str | None = None, scopes: str | None = None) -> str:
        team.installed = True
        granted = None if scopes is None else frozenset(s for s in scopes.split(",") if s)
        team.scopes = tuple(sorted(granted or ()))
        value = token or f"xoxb-{team.id}-{secrets.token_hex(6)}-{CANARY}-{secrets.token_hex(4)}"
        self._tokens[value] = _Token(value, "bot", team.id, scopes=granted)
        self._team_tokens[team.id].append(value)
        return value

    def bot_token(self, team: SlTeam) -> str:
        """The app's current bot token in ``team`` (it must be installed)."""
        live = [t for t in self._team_tokens[team.id] if not self._tokens[t].revoked]
        if not live:
            raise AssertionError(f"the app is not installed in {team.name} ({team.id})")
        return live[-1]

    def add_user(
        self,
        team: SlTeam,
        name: str = "alice",
        *,
        tz: str = "Europe/Paris",
        locale: str = "en-US",
        is_admin: bool = False,
        is_owner: bool = False,
        deleted: bool = False,
        real_name: str | None = None,
        display_name: str | None = None,
        tz_offset: int | None = None,
    ) -> SlUser:
        if tz_offset is None:
            tz_offset = _tz_offset(tz, self.wall_clock())
        user = SlUser(
            self._new_id("U"),
            team.id,
            name,
            real_name or name.capitalize(),
            display_name if display_name is not None else name,
            tz,
            tz_offset,
            locale,
            is_admin=is_admin,
            is_owner=is_owner,
            deleted=deleted,
        )
        self.users[user.id] = user
        return user

    def add_users(self, team: SlTeam, count: int, prefix: str = "user", **kw: Any) -> list[SlUser]:
        return [self.add_user(team, f"{prefix}{i}", **kw) for i in range(1, count + 1)]

    def add_channel(
        self,
        team: SlTeam,
        name: str = "general",
        members: list[SlUser] | None = None,
        *,
        is_private: bool = False,
        bot_member: bool = True,
    ) -> SlChannel:
        """A channel; the app's bot user is a member unless ``bot_member=False``."""
        ids = [u.id for u in members or []]
        if bot_member:
            ids.append(team.bot_user_id)
        chan = SlChannel(self._new_id("C"), team.id, name, is_private=is_private, members=ids)
        self.channels[chan.id] = chan
        return chan

    def add_usergroup(self, team: SlTeam, handle: str, users: list[SlUser]) -> str:
        gid = self._new_id("S")
        self.usergroups[gid] = (team.id, handle, [u.id for u in users])
        return gid

    def deactivate(self, user: SlUser) -> None:
        """The user's account is deactivated: the app can no longer DM them (see the module docstring)."""
        user.deleted = True

    def remove_bot_from(self, chan: SlChannel) -> None:
        """The app is removed from the channel: posting there answers ``not_in_channel`` (public) or
        ``channel_not_found`` (private)."""
        team = self.teams[chan.team_id]
        chan.members = [m for m in chan.members if m != team.bot_user_id]

    def im_channel(self, user: SlUser) -> SlChannel:
        """The app's DM with ``user`` (opened on first use, like ``conversations.open``)."""
        key = (user.team_id, user.id)
        if key not in self._ims:
            team = self.teams[user.team_id]
            chan = SlChannel(self._new_id("D"), user.team_id, "", is_im=True, im_user=user.id)
            chan.members = [user.id, team.bot_user_id]
            self.channels[chan.id] = chan
            self._ims[key] = chan.id
        return self.channels[self._ims[key]]

    # ------------------------------------------------------------------ what people saw
    def messages_in(self, chan: SlChannel | str) -> list[SlMessage]:
        cid = chan if isinstance(chan, str) else chan.id
        return [m for m in self._by_channel.get(cid, []) if not m.deleted]

    def dms_to(self, user: SlUser) -> list[SlMessage]:
        cid = self._ims.get((user.team_id, user.id))
        return [m for m in self.messages_in(cid) if not m.undelivered] if cid else []

    def ephemeral_to(self, user: SlUser) -> list[SlMessage]:
        return [m for m in self.ephemerals if m.ephemeral_to == user.id]

    def views_of(self, user: SlUser) -> list[dict[str, Any]]:
        """Every modal opened for ``user`` (latest state each: updates applied), oldest first, open or not."""
        return [v.view for v in self.views.values() if v.user_id == user.id and not v.is_home]

    def open_views_of(self, user: SlUser) -> list[dict[str, Any]]:
        """The modals on ``user``'s screen now, bottom of the stack first."""
        return [
            v.view for v in self.views.values() if v.user_id == user.id and not v.is_home and not v.closed
        ]

    def is_open(self, view: dict[str, Any]) -> bool:
        rec = self.views.get(view["id"])
        return rec is not None and not rec.closed and not rec.is_home

    def home_of(self, user: SlUser) -> dict[str, Any] | None:
        return self.homes.get(user.id)

    def calls_in(self, team: SlTeam) -> list[SlCall]:
        return [c for c in self.call_records.values() if c.team_id == team.id]

    def received(self, *, containing: str | None = None) -> Counter[str]:
        """Per recipient user id: the app's DMs they received plus the messages mentioning them (``<@U…>``, or
        ``<!subteam^S…>`` for a group's members, in the text or a mrkdwn block; escaped ``&lt;@U…&gt;`` is
        not a mention). Judged on each message as first posted: Slack notifies on posting, not on edits.
        What people saw: count losses and duplicates from here."""
        counts: Counter[str] = Counter()
        for msg in self.messages.values():
            if msg.deleted or msg.undelivered or msg.ephemeral_to is not None or msg.bot_id is None:
                continue  # only the app's messages: what users write is not "received"
            first = msg.versions[0]
            if (
                containing is not None
                and containing not in first.text
                and containing not in json.dumps(first.blocks)
            ):
                continue
            texts = " ".join(_mrkdwn_texts(first.text, first.blocks))
            mentioned = set(_MENTION_RE.findall(texts))
            chan = self.channels.get(msg.channel)
            if chan is not None and chan.is_im and chan.im_user:
                mentioned.add(chan.im_user)  # a DM naming its recipient is still one message received
            for gid in _SUBTEAM_RE.findall(texts):  # a user group mention notifies its members
                mentioned.update(self.usergroups[gid][2] if gid in self.usergroups else [])
            for uid in mentioned:
                counts[uid] += 1
        return counts

    def api_calls(self, method: str | None = None) -> list[ApiCall]:
        return [c for c in self.calls if method is None or c.method == method]

    # ------------------------------------------------------------------ waiting for the app
    # Bolt acks first and runs the listener after: a test waits for its effects with these (polling the
    # recordings on each change, never sleeping a fixed time).
    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_until(
        self, find: Callable[[], Any], *, within: float = 5.0, what: str = "condition"
    ) -> Any:
        """Wait until ``find()`` returns something truthy (and return it); TimeoutError after ``within`` s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            found = find()
            if found:
                return found
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"{what} not met within {within}s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.05))

    async def wait_for_call(
        self,
        method: str,
        predicate: Callable[[ApiCall], bool] | None = None,
        *,
        within: float = 5.0,
        start: int = 0,
    ) -> ApiCall:
        """The first answered call of ``method`` (index >= ``start`` in ``api_calls()``) matching ``predicate``."""

        def find() -> ApiCall | None:
            return next(
                (c for c in self.calls[start:] if c.method == method and (predicate is None or predicate(c))),
                None,
            )

        found: ApiCall = await self.wait_until(find, within=within, what=f"a {method} call")
        return found

    async def wait_for_message(
        self,
        chan: SlChannel | str,
        predicate: Callable[[SlMessage], bool] | None = None,
        *,
        within: float = 5.0,
    ) -> SlMessage:
        """The first message in ``chan`` (a DM too: ``emu.im_channel(user)``) matching ``predicate``."""

        def find() -> SlMessage | None:
            return next((m for m in self.messages_in(chan) if predicate is None or predicate(m)), None)

        found: SlMessage = await self.wait_until(find, within=within, what="a message")
        return found

    def bot_user(self, team: SlTeam) -> SlUser:
        """The app's bot user in ``team``."""
        return self.users[team.bot_user_id]

    def find_message(self, ts: str) -> SlMessage:
        for (_, mts), msg in self.messages.items():
            if mts == ts:
                return msg
        raise KeyError(ts)

    # ------------------------------------------------------------------ Web API plumbing
    async def _read_params(
        self, request: web.Request
    ) -> tuple[dict[str, Any], str | None, tuple[str, str] | None]:
        params: dict[str, Any] = dict(request.query)
        ctype = request.content_type
        if request.method == "POST" and request.can_read_body:
            if ctype == "application/json":
                try:
                    body = await request.json()
                except ValueError as e:
                    raise SlackApiFailure("invalid_json", violation="spec", detail=str(e)) from e
                if not isinstance(body, dict):
                    raise SlackApiFailure("json_not_object", violation="spec")
                if "token" in body:
                    # "you must send your token as a bearer token" with JSON bodies (docs.slack.dev, Web API)
                    raise SlackApiFailure("not_authed", violation="spec", detail="token in a JSON body")
                params.update(body)
            else:
                form = await request.post()
                params.update({k: v for k, v in form.items() if isinstance(v, str)})
        token: str | None = params.pop("token", None)
        basic: tuple[str, str] | None = None
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            token = auth[len("Bearer ") :].strip()
        elif auth.startswith("Basic "):
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
                basic = (user, pw)
        return params, token, basic

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        params: dict[str, Any] = {}
        team_id: str | None = None
        try:
            params, token_value, basic = await self._read_params(request)
            if method not in self.spec.methods or method not in self._handlers:
                kind = "unknown_method" if method not in self.spec.methods else "unimplemented"
                raise SlackApiFailure("unknown_method", violation=kind, detail=f"{method} is not emulated")
            token = self._tokens.get(token_value) if token_value else None
            team_id = token.team_id if token else None
            for fault in self._faults:
                if fault.method == method and fault.remaining > 0:
                    fault.remaining -= 1
                    raise SlackApiFailure(fault.error, status=fault.status, retry_after=fault.retry_after)
            self._check_token(method, token_value, token)
            self._check_scope(method, token)
            norm, problems = self.spec.check_params(method, params)
            if problems:
                unknown_only = all(p.startswith("unknown argument") for p in problems)
                for p in problems:
                    self._violate(method, "spec", p, params)
                if not unknown_only:  # Slack ignores unknown arguments but refuses the others
                    raise SlackApiFailure("invalid_arguments", detail="; ".join(problems))
            params = norm
            self._check_rate(method, team_id, params)
            ctx = _Ctx(method, params, token, basic)
            result = self._handlers[method](ctx)
            if asyncio.iscoroutine(result):
                result = await result
        except SlackApiFailure as e:
            if e.violation:
                self._violate(method, e.violation, e.detail or e.error, params)
            body: dict[str, Any] = {"ok": False, "error": e.error, **e.extra}
            if e.detail and e.error in ("invalid_arguments", "invalid_blocks"):
                body.setdefault("response_metadata", {"messages": [f"[ERROR] {e.detail}"]})
            headers = {"Retry-After": str(e.retry_after)} if e.retry_after is not None else {}
            call = ApiCall(
                method, params, team_id, self.clock(), e.status, False, e.error, body, e.retry_after
            )
            self.calls.append(call)
            self._notify()
            return web.json_response(body, status=e.status, headers=headers)
        body = {"ok": True, **(result or {})}
        for problem in self.spec.response_problems(method, body):
            # the emulator's own answer lacks a field Slack documents: a bug here, shown like a violation
            self._violate(method, "emulator", problem, params)
        self.calls.append(ApiCall(method, params, team_id, self.clock(), 200, True, None, body))
        self._notify()
        return web.json_response(body)

    def _check_token(self, method: str, value: str | None, token: _Token | None) -> None:
        if method == "oauth.v2.access":
            return  # authenticated by client id and secret
        if not value:
            raise SlackApiFailure("not_authed")
        if token is None:
            raise SlackApiFailure("invalid_auth")
        if token.revoked:
            raise SlackApiFailure("token_revoked")
        if (method == "apps.connections.open") != (token.kind == "app"):
            raise SlackApiFailure("not_allowed_token_type")

    def _check_scope(self, method: str, token: _Token | None) -> None:
        needed = METHOD_SCOPES.get(method)
        if token is None or token.scopes is None or not needed or token.scopes & set(needed):
            return
        provided = ",".join(sorted(token.scopes))
        raise SlackApiFailure(
            "missing_scope",
            violation="scope",  # the app asks for too few scopes at install (manifest / OAuth settings)
            detail=f"{method} needs {' or '.join(needed)}; granted: {provided or 'none'}",
            extra={"needed": needed[0], "provided": provided},
        )

    def _check_rate(self, method: str, team_id: str | None, params: dict[str, Any]) -> None:
        if self.unlimited:
            return
        now = self.clock()
        scope = team_id or "-"
        if method == "chat.postMessage":
            wait = self._window_wait(("post", scope), self.post_workspace_per_minute, 60.0, now)
            chan = self._post_target(scope, str(params.get("channel", "")))
            tokens, at = self._buckets.get(f"{scope}/{chan}", (float(self.post_burst), now))
            tokens = min(float(self.post_burst), tokens + (now - at))
            if tokens < 1.0:
                wait = max(wait, 1.0 - tokens)
            if wait > 0:
                raise SlackApiFailure("ratelimited", status=429, retry_after=max(1, math.ceil(wait)))
            self._buckets[f"{scope}/{chan}"] = (tokens - 1.0, now)
            self._windows[("post", scope)].append(now)
            return
        tier = self.tiers.get(method)
        if tier is None:
            return
        key = (method, scope)
        wait = self._window_wait(key, _TIER_PER_MINUTE[tier], 60.0, now)
        if wait > 0:
            raise SlackApiFailure("ratelimited", status=429, retry_after=max(1, math.ceil(wait)))
        self._windows[key].append(now)

    def _post_target(self, team_id: str, channel: str) -> str:
        """One key per conversation whichever way the app names it (a DM by its D... id or the user's id)."""
        if channel.startswith(("U", "W")):
            return f"im:{channel}"
        chan = self.channels.get(channel)
        if chan is not None and chan.is_im:
            return f"im:{chan.im_user}"
        if chan is None:  # a name: the same bucket as the id
            name = channel.removeprefix("#")
            found = [c.id for c in self.channels.values() if c.team_id == team_id and c.name == name]
            return found[0] if found else channel
        return channel

    def _window_wait(self, key: tuple[str, ...], limit: int, window: float, now: float) -> float:
        q = self._windows.setdefault(key, deque())
        while q and q[0] <= now - window:
            q.popleft()
        if len(q) < limit:
            return 0.0
        return q[len(q) - limit] + window - now

    # ------------------------------------------------------------------ helpers for the methods
    def _team(self, ctx: _Ctx) -> SlTeam:
        return self.teams[ctx.team_id]

    def _user_in(self, team_id: str, user_id: Any) -> SlUser | None:
        user = self.users.get(str(user_id))
        return user if user is not None and user.team_id == team_id else None

    def _conversation(self, ctx: _Ctx, channel_id: Any, *, for_post: bool = False) -> SlChannel:
        """The conversation ``channel_id`` names for this token (a user id names the app's DM with them when
        ``for_post``), checked for what the app may see."""
        cid = str(channel_id)
        team = self._team(ctx)
        if for_post and cid.startswith(("U", "W")):
            user = self._user_in(team.id, cid)
            if user is None:
                raise SlackApiFailure("channel_not_found")
            if user.deleted and self.deactivated_post_error is not None:
                raise SlackApiFailure(self.deactivated_post_error)
            return self.im_channel(user)
        chan = self.channels.get(cid)
        if chan is None and for_post:
            # chat.postMessage also takes a channel's name ("#general" or "general")
            name = cid.removeprefix("#")
            chan = next(
                (
                    c
                    for c in self.channels.values()
                    if c.team_id == team.id and not c.is_im and c.name == name
                ),
                None,
            )
        if chan is None or chan.team_id != team.id:
            raise SlackApiFailure("channel_not_found")
        if chan.is_private and team.bot_user_id not in chan.members:
            raise SlackApiFailure("channel_not_found")  # a private channel the app is not in is invisible
        return chan

    def _check_post(self, ctx: _Ctx, chan: SlChannel) -> None:
        team = self._team(ctx)
        if chan.is_im:
            other = self.users.get(chan.im_user or "")
            if other is not None and other.deleted and self.deactivated_post_error is not None:
                raise SlackApiFailure(self.deactivated_post_error)
            return
        if team.bot_user_id not in chan.members:
            # chat:write.public lets an app post in public channels it has not joined; a ready-made install
            # (scopes None) is taken as without it, so remove_bot_from() bites
            scopes = ctx.token.scopes if ctx.token is not None else None
            if chan.is_private or scopes is None or "chat:write.public" not in scopes:
                raise SlackApiFailure("not_in_channel")

    def _check_message(self, method: str, params: dict[str, Any]) -> None:
        error, problems = message_problems(params.get("text"), params.get("blocks"))
        if error is None:
            return
        kind = "content" if error == "no_text" else "blocks"
        raise SlackApiFailure(error, violation=kind, detail="; ".join(problems))

    def _new_ts(self) -> str:
        now = max(self.wall_clock(), self._last_ts + 0.000001)
        self._last_ts = now
        return f"{now:.6f}"

    def _record_broadcasts(
        self, chan: str, ts: str, text: str | None, blocks: list[dict[str, Any]] | None
    ) -> None:
        for t in _mrkdwn_texts(text, blocks):
            for kind in _BROADCAST_RE.findall(t):
                self.broadcasts.append((chan, kind, ts))

    def _store(
        self,
        team: SlTeam,
        chan: SlChannel,
        text: str,
        blocks: list[dict[str, Any]] | None,
        *,
        thread_ts: str | None = None,
        metadata: dict[str, Any] | None = None,
        source: str = "chat.postMessage",
    ) -> SlMessage:
        ts = self._new_ts()
        msg = SlMessage(
            chan.id,
            ts,
            team.bot_user_id,
            [MessageVersion(text, blocks, self.clock())],
            team.id,
            thread_ts=thread_ts,
            metadata=metadata,
            bot_id=team.bot_id,
            app_id=self.app_id,
            source=source,
        )
        if chan.is_im and chan.im_user in self.users and self.users[chan.im_user].deleted:
            msg.undelivered = True
        self.messages[(chan.id, ts)] = msg
        self._by_channel.setdefault(chan.id, []).append(msg)  # ts only grow: the list stays in order
        self._record_broadcasts(chan.id, ts, text, blocks)
        return msg

    # ------------------------------------------------------------------ methods
    def _register_methods(self) -> None:
        for name, fn in {
            "auth.test": self._m_auth_test,
            "team.info": self._m_team_info,
            "chat.postMessage": self._m_post_message,
            "chat.update": self._m_update,
            "chat.postEphemeral": self._m_post_ephemeral,
            "chat.getPermalink": self._m_permalink,
            "chat.delete": self._m_delete,
            "conversations.open": self._m_conv_open,
            "conversations.info": self._m_conv_info,
            "conversations.members": self._m_conv_members,
            "users.info": self._m_users_info,
            "usergroups.users.list": self._m_usergroup_users,
            "usergroups.list": self._m_usergroups_list,
            "views.open": self._m_views_open,
            "views.push": self._m_views_push,
            "views.update": self._m_views_update,
            "views.publish": self._m_views_publish,
            "calls.add": self._m_calls_add,
            "calls.end": self._m_calls_end,
            "calls.info": self._m_calls_info,
            "oauth.v2.access": self._m_oauth_access,
            "apps.connections.open": self._m_connections_open,
        }.items():
            self.add_method(name, fn)

    def _m_auth_test(self, ctx: _Ctx) -> dict[str, Any]:
        team = self._team(ctx)
        return {
            "url": f"https://{team.domain}.slack.com/",
            "team": team.name,
            "user": "spaces",
            "team_id": team.id,
            "user_id": team.bot_user_id,
            "bot_id": team.bot_id,
            "is_enterprise_install": False,
        }

    def _m_team_info(self, ctx: _Ctx) -> dict[str, Any]:
        team = self._team(ctx)
        if ctx.params.get("team") not in (None, team.id):
            raise SlackApiFailure("team_not_found")
        return {"team": team.to_api()}

    def _m_post_message(self, ctx: _Ctx) -> dict[str, Any]:
        p = ctx.params
        team = self._team(ctx)
        self._check_message(ctx.method, p)
        chan = self._conversation(ctx, p["channel"], for_post=True)
        self._check_post(ctx, chan)
        thread_ts = p.get("thread_ts")  # not checked: Slack documents no error for an unknown thread
        msg = self._store(
            team, chan, p.get("text", ""), p.get("blocks"), thread_ts=thread_ts, metadata=p.get("metadata")
        )
        return {"channel": chan.id, "ts": msg.ts, "message": msg.to_api()}

    def _m_update(self, ctx: _Ctx) -> dict[str, Any]:
        p = ctx.params
        team = self._team(ctx)
        chan = self._conversation(ctx, p["channel"])
        msg = self.messages.get((chan.id, p["ts"]))
        if msg is None or msg.deleted:
            raise SlackApiFailure("message_not_found")
        if msg.user != team.bot_user_id:
            raise SlackApiFailure("cant_update_message")
        text = p.get("text", msg.text)
        blocks = p["blocks"] if "blocks" in p else msg.versions[-1].blocks
        self._check_message(ctx.method, {"text": text, "blocks": blocks})
        msg.versions.append(MessageVersion(text, blocks, self.clock()))
        if "metadata" in p:
            msg.metadata = p["metadata"]
        self._record_broadcasts(chan.id, msg.ts, p.get("text"), p.get("blocks"))
        return {"channel": chan.id, "ts": msg.ts, "text": text, "message": msg.to_api()}

    def _m_delete(self, ctx: _Ctx) -> dict[str, Any]:
        p = ctx.params
        if "channel" not in p or "ts" not in p:  # optional in the 2021 description, required by Slack
            raise SlackApiFailure("invalid_arguments", violation="spec", detail="channel and ts are required")
        chan = self._conversation(ctx, p["channel"])
        msg = self.messages.get((chan.id, str(p["ts"])))
        if msg is None or msg.deleted:
            raise SlackApiFailure("message_not_found")
        if msg.user != self._team(ctx).bot_user_id:
            raise SlackApiFailure("cant_delete_message")  # a bot token deletes only its own messages
        msg.deleted = True
        return {"channel": chan.id, "ts": msg.ts}

    def _m_post_ephemeral(self, ctx: _Ctx) -> dict[str, Any]:
        p = ctx.params
        team = self._team(ctx)
        self._check_message(ctx.method, p)
        chan = self._conversation(ctx, p["channel"], for_post=True)
        try:
            self._check_post(ctx, chan)
        except SlackApiFailure as e:
            # chat.postEphemeral documents channel_not_found (not not_in_channel) for a channel the app is not in
            raise SlackApiFailure("channel_not_found" if e.error == "not_in_channel" else e.error) from e
        user = self._user_in(team.id, p["user"])
        if user is None or user.id not in chan.members:
            raise SlackApiFailure("user_not_in_channel")
        msg = self._ephemeral(
            team, chan.id, user.id, p.get("text", ""), p.get("blocks"), "chat.postEphemeral"
        )
        return {"message_ts": msg.ts}

    def _ephemeral(
        self, team: SlTeam, channel_id: str, user_id: str, text: str, blocks: Any, source: str
    ) -> SlMessage:
        msg = SlMessage(
            channel_id,
            self._new_ts(),
            team.bot_user_id,
            [MessageVersion(text, blocks, self.clock())],
            team.id,
            ephemeral_to=user_id,
            bot_id=team.bot_id,
            app_id=self.app_id,
            source=source,
        )
        self.ephemerals.append(msg)
        return msg

    def _m_permalink(self, ctx: _Ctx) -> dict[str, Any]:
        p = ctx.params
        chan = self._conversation(ctx, p["channel"])
        if (chan.id, p["message_ts"]) not in self.messages:
            raise SlackApiFailure("message_not_found")
        domain = self._team(ctx).domain
        return {
            "channel": chan.id,
            "permalink": f"https://{domain}.slack.com/archives/{chan.id}/{_permalink_ts(p['message_ts'])}",
        }

    def _m_conv_open(self, ctx: _Ctx) -> dict[str, Any]:
        p = ctx.params
        team = self._team(ctx)
        if "channel" in p:
            chan = self._conversation(ctx, p["channel"])
            return {"channel": chan.to_api() if p.get("return_im") else {"id": chan.id}}
        ids = [u for u in str(p.get("users", "")).split(",") if u]
        if not ids:
            raise SlackApiFailure("users_list_not_supplied")
        if len(ids) > 1:
            # group DMs (mpim) are not emulated: Spaces only opens one-to-one DMs
            raise SlackApiFailure(
                "not_enough_users" if len(ids) < 2 else "method_not_supported_for_channel_type"
            )
        user = self._user_in(team.id, ids[0])
        if user is None:
            raise SlackApiFailure("user_not_found")
        if user.deleted:
            raise SlackApiFailure("user_disabled")
        existed = (team.id, user.id) in self._ims
        if p.get("prevent_creation") and not existed:
            # Slack documents the flag, not its answer when no DM exists: the emulator says channel_not_found
            raise SlackApiFailure("channel_not_found")
        chan = self.im_channel(user)
        out: dict[str, Any] = {"channel": chan.to_api() if p.get("return_im") else {"id": chan.id}}
        if existed:
            out.update({"no_op": True, "already_open": True})
        return out

    def _m_conv_info(self, ctx: _Ctx) -> dict[str, Any]:
        chan = self._conversation(ctx, ctx.params.get("channel", ""))
        d = chan.to_api()
        if not chan.is_im:
            d["is_member"] = self._team(ctx).bot_user_id in chan.members
            if ctx.params.get("include_num_members"):
                d["num_members"] = len(chan.members)
        return {"channel": d}

    def _m_conv_members(self, ctx: _Ctx) -> dict[str, Any]:
        p = ctx.params
        chan = self._conversation(ctx, p.get("channel", ""))
        limit = int(p.get("limit", 100))
        if not 1 <= limit <= 1000:
            raise SlackApiFailure("invalid_limit")
        start = 0
        if p.get("cursor"):
            try:
                start = int(base64.b64decode(str(p["cursor"])).decode().removeprefix("members:"))
            except ValueError as e:
                raise SlackApiFailure("invalid_cursor") from e
        page = chan.members[start : start + limit]
        nxt = start + limit
        cursor = base64.b64encode(f"members:{nxt}".encode()).decode() if nxt < len(chan.members) else ""
        return {"members": page, "response_metadata": {"next_cursor": cursor}}

    def _m_users_info(self, ctx: _Ctx) -> dict[str, Any]:
        user = self._user_in(ctx.team_id, ctx.params.get("user", ""))
        if user is None:
            raise SlackApiFailure("user_not_found")
        return {"user": user.to_api(include_locale=bool(ctx.params.get("include_locale")))}

    def _m_usergroups_list(self, ctx: _Ctx) -> dict[str, Any]:
        p = ctx.params
        groups = []
        for gid, (team_id, handle, members) in self.usergroups.items():
            if team_id != ctx.team_id:
                continue
            group: dict[str, Any] = {
                "id": gid,
                "team_id": team_id,
                "is_usergroup": True,
                "is_subteam": True,
                "name": handle.replace("-", " ").title(),
                "description": "",
                "handle": handle,
                "is_external": False,
                "date_create": 1_700_000_000,
                "date_update": 1_700_000_000,
                "date_delete": 0,
                "auto_type": None,
                "auto_provision": False,
                "enterprise_subteam_id": "",
                "created_by": self.teams[team_id].bot_user_id,
                "updated_by": self.teams[team_id].bot_user_id,
                "deleted_by": None,
                "prefs": {"channels": [], "groups": []},
            }
            if p.get("include_users"):
                group["users"] = list(members)
            if p.get("include_count"):
                group["user_count"] = len(members)
            groups.append(group)
        return {"usergroups": groups}

    def _m_usergroup_users(self, ctx: _Ctx) -> dict[str, Any]:
        group = self.usergroups.get(str(ctx.params["usergroup"]))
        if group is None or group[0] != ctx.team_id:
            raise SlackApiFailure("no_such_subteam")
        include_disabled = bool(ctx.params.get("include_disabled"))
        return {"users": [u for u in group[2] if include_disabled or not self.users[u].deleted]}

    # views
    def _take_trigger(self, ctx: _Ctx) -> _Trigger:
        tid = ctx.params.get("trigger_id") or ctx.params.get("interactivity_pointer")
        trig = self._triggers.get(str(tid))
        if trig is None or trig.team_id != ctx.team_id:
            raise SlackApiFailure(
                "invalid_trigger_id", violation="trigger", detail=f"unknown trigger_id {tid!r}"
            )
        if trig.used:
            raise SlackApiFailure("exchanged_trigger_id", violation="trigger", detail="trigger_id used twice")
        if self.clock() - trig.created > TRIGGER_TTL:
            raise SlackApiFailure("expired_trigger_id")  # a slow app, not a malformed request
        trig.used = True
        return trig

    def _check_view(self, ctx: _Ctx, kind: str | None = None) -> dict[str, Any]:
        view = ctx.params.get("view")
        problems = view_problems(view)
        if not problems and kind is not None and view.get("type") != kind:  # type: ignore[union-attr]
            problems = [f"{ctx.method} takes a {kind} view"]
        if problems:
            raise SlackApiFailure("invalid_arguments", violation="view", detail="; ".join(problems))
        assert isinstance(view, dict)
        return view

    def _make_view(
        self,
        team: SlTeam,
        user_id: str,
        view: dict[str, Any],
        *,
        view_id: str | None = None,
        root: str | None = None,
        previous: str | None = None,
    ) -> _View:
        vid = view_id or self._new_id("V")
        full = {
            "id": vid,
            "team_id": team.id,
            "type": view["type"],
            "blocks": view.get("blocks", []),
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "state": {"values": {}},
            "hash": f"{int(self.wall_clock())}.{secrets.token_hex(4)}",
            "title": view.get("title"),
            "clear_on_close": bool(view.get("clear_on_close", False)),
            "notify_on_close": bool(view.get("notify_on_close", False)),
            "close": view.get("close"),
            "submit": view.get("submit"),
            "previous_view_id": previous,
            "root_view_id": root or vid,
            "app_id": self.app_id,
            "external_id": view.get("external_id", ""),
            "app_installed_team_id": team.id,
            "bot_id": team.bot_id,
        }
        rec = _View(vid, team.id, user_id, full, root or vid, previous)
        self.views[vid] = rec
        return rec

    def _check_external_id(self, ctx: _Ctx, view: dict[str, Any], keep: str | None = None) -> None:
        ext = view.get("external_id")
        if ext and any(
            v.view.get("external_id") == ext and v.team_id == ctx.team_id and v.id != keep
            for v in self.views.values()
        ):
            raise SlackApiFailure("duplicate_external_id")  # "unique for all views on a team"

    def _m_views_open(self, ctx: _Ctx) -> dict[str, Any]:
        view = self._check_view(ctx, "modal")
        self._check_external_id(ctx, view)
        trig = self._take_trigger(ctx)
        rec = self._make_view(self._team(ctx), trig.user_id, view)
        return {"view": rec.view}

    def _m_views_push(self, ctx: _Ctx) -> dict[str, Any]:
        view = self._check_view(ctx, "modal")
        trig = self._take_trigger(ctx)
        stack = [
            v for v in self.views.values() if v.user_id == trig.user_id and not v.closed and not v.is_home
        ]
        if not stack:
            raise SlackApiFailure("not_found", violation="view", detail="views.push without an open modal")
        if len(stack) >= 3:
            raise SlackApiFailure("push_limit_reached")
        top = stack[-1]
        rec = self._make_view(self._team(ctx), trig.user_id, view, root=top.root_id, previous=top.id)
        return {"view": rec.view}

    def _m_views_update(self, ctx: _Ctx) -> dict[str, Any]:
        p = ctx.params
        view = self._check_view(ctx)
        rec: _View | None = None
        if "view_id" in p:
            rec = self.views.get(str(p["view_id"]))
        elif "external_id" in p:
            rec = next(
                (v for v in self.views.values() if v.view.get("external_id") == p["external_id"]), None
            )
        else:
            raise SlackApiFailure(
                "invalid_arguments", violation="spec", detail="view_id or external_id needed"
            )
        if rec is None or rec.team_id != ctx.team_id or rec.closed:
            raise SlackApiFailure("not_found")
        if "hash" in p and p["hash"] != rec.view["hash"]:
            raise SlackApiFailure("hash_conflict")
        new = self._make_view(
            self._team(ctx), rec.user_id, view, view_id=rec.id, root=rec.root_id, previous=rec.previous_id
        )
        return {"view": new.view}

    def _m_views_publish(self, ctx: _Ctx) -> dict[str, Any]:
        p = ctx.params
        view = self._check_view(ctx, "home")
        user = self._user_in(ctx.team_id, p["user_id"])
        if user is None:
            raise SlackApiFailure("user_not_found")
        current = self.homes.get(user.id)
        if "hash" in p and current is not None and p["hash"] != current["hash"]:
            raise SlackApiFailure("hash_conflict")
        rec = self._make_view(self._team(ctx), user.id, view, view_id=current["id"] if current else None)
        rec.is_home = True  # a home tab is not a modal: kept out of views_of
        self.homes[user.id] = rec.view
        return {"view": rec.view}

    # calls
    def _m_calls_add(self, ctx: _Ctx) -> dict[str, Any]:
        p = ctx.params
        users = p.get("users") or []
        call = SlCall(
            self._new_id("R"),
            ctx.team_id,
            p["external_unique_id"],
            p["join_url"],
            p.get("title"),
            int(p.get("date_start") or self.wall_clock()),
            created_by=p.get("created_by"),
            desktop_app_join_url=p.get("desktop_app_join_url"),
            external_display_id=p.get("external_display_id"),
            users=list(users) if isinstance(users, list) else [],
        )
        self.call_records[call.id] = call
        return {"call": call.to_api()}

    def _call(self, ctx: _Ctx) -> SlCall:
        call = self.call_records.get(str(ctx.params["id"]))
        if call is None or call.team_id != ctx.team_id:
            raise SlackApiFailure("invalid_call_id")
        return call

    def _m_calls_end(self, ctx: _Ctx) -> dict[str, Any]:
        call = self._call(ctx)
        if call.ended:
            # documented as it is: "when the call is already been terminated" -> {"ok": true, "error": ...}
            return {"error": "inactive_call"}
        call.ended = True
        call.duration = int(ctx.params.get("duration") or max(0, int(self.wall_clock()) - call.date_start))
        return {}

    def _m_calls_info(self, ctx: _Ctx) -> dict[str, Any]:
        return {"call": self._call(ctx).to_api()}

    # oauth and socket mode
    def _m_oauth_access(self, ctx: _Ctx) -> dict[str, Any]:
        p = ctx.params
        client_id, client_secret = ctx.basic_auth or (p.get("client_id"), p.get("client_secret"))
        if client_id != self.client_id:
            raise SlackApiFailure("invalid_client_id")
        if client_secret != self.client_secret:
            raise SlackApiFailure("bad_client_secret")
        code = self._codes.get(str(p.get("code")))
        if code is None or code.used or self.clock() - code.created > 600:
            raise SlackApiFailure("invalid_code")
        code.used = True  # single use, even when the exchange fails below
        if code.redirect_uri is not None and p.get("redirect_uri") not in (None, code.redirect_uri):
            raise SlackApiFailure("bad_redirect_uri")
        team = self.teams[code.team_id]
        token = self._install(team, scopes=code.scopes)
        return {
            "access_token": token,
            "token_type": "bot",
            "scope": code.scopes,
            "bot_user_id": team.bot_user_id,
            "app_id": self.app_id,
            "team": {"id": team.id, "name": team.name},
            "enterprise": None,
            "is_enterprise_install": False,
            "authed_user": {"id": code.user_id},
        }

    def _m_connections_open(self, ctx: _Ctx) -> dict[str, Any]:
        ticket = secrets.token_hex(8)
        self._tickets.add(ticket)
        return {"url": f"ws://{self.host}:{self.port}/link/?ticket={ticket}"}

    # ------------------------------------------------------------------ OAuth install
    async def _handle_authorize(self, request: web.Request) -> web.StreamResponse:
        q = dict(request.query)
        self.oauth_log.append(q)
        return web.Response(
            text="<html><body>Slack would ask the user to allow the app here.</body></html>",
            content_type="text/html",
        )

    async def install_via_oauth(
        self, install_url: str, team: SlTeam, user: SlUser, *, approve: bool = True
    ) -> tuple[int, str | None]:
        """Play a user installing the app from the app's install page: GET ``install_url`` (Bolt answers an
        "Add to Slack" page or a redirect, and sets its state cookie), follow to the authorize URL (checked:
        ``client_id``, ``scope``, ``state``), consent, and GET the app's ``redirect_uri?code=&state=`` with the
        same cookies. ``approve=False`` plays the user cancelling (``?error=access_denied&state=``).

        Returns the app's final status and its ``Location`` header (None when it answered a page)."""
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
            async with session.get(install_url, allow_redirects=False) as res:
                page = await res.text()
                # Bolt's state cookie is ``Secure``: browsers keep it for http://127.0.0.1 too (a secure
                # context), aiohttp's jar does not, so the browser's cookies are carried by hand
                cookies = "; ".join(c.split(";", 1)[0] for c in res.headers.getall("Set-Cookie", []))
                if res.status in (301, 302, 303, 307):
                    authorize = res.headers["Location"]
                else:
                    m = re.search(r'href="([^"]*oauth/v2/authorize[^"]*)"', page)
                    if res.status != 200 or m is None:
                        raise AssertionError(
                            f"the install page answered {res.status} without a link to Slack"
                        )
                    authorize = m.group(1).replace("&amp;", "&")
            parsed = urlparse(authorize)
            if not authorize.startswith(self.oauth_base):
                raise AssertionError(
                    f"the install page sends users to {parsed.netloc}{parsed.path}, not Slack"
                )
            q = {k: v[0] for k, v in parse_qs(parsed.query).items()}
            self.oauth_log.append(q)
            if q.get("client_id") != self.client_id:
                raise AssertionError(f"authorize URL has client_id {q.get('client_id')!r}")
            if "state" not in q:
                raise AssertionError("authorize URL without state: CSRF protection is missing")
            redirect = (
                q.get("redirect_uri") or self.redirect_uri or urljoin(install_url, "/slack/oauth_redirect")
            )
            if approve:
                code = secrets.token_hex(12)
                self._codes[code] = _Code(
                    code, team.id, user.id, q.get("scope", ""), q.get("redirect_uri"), self.clock()
                )
                args = {"code": code, "state": q["state"]}
                self.oauth_codes.append(code)
            else:
                args = {"error": "access_denied", "state": q["state"]}
            sep = "&" if "?" in redirect else "?"
            headers = {"Cookie": cookies} if cookies else {}
            async with session.get(
                f"{redirect}{sep}{urlencode(args)}", headers=headers, allow_redirects=False
            ) as res:
                self.oauth_result_page = await res.text()
                return res.status, res.headers.get("Location")

    # ------------------------------------------------------------------ inbound: signing and delivery
    def sign(self, body: bytes, timestamp: str) -> str:
        base = b"v0:" + timestamp.encode() + b":" + body
        return "v0=" + hmac.new(self.signing_secret.encode(), base, hashlib.sha256).hexdigest()

    def _signed_headers(self, body: bytes, content_type: str) -> dict[str, str]:
        ts = str(int(self.wall_clock()))
        return {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": self.sign(body, ts),
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        }

    async def post_raw(self, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        """POST exactly this to the app's request URL (hostile traffic: bad signatures, stale timestamps)."""
        assert self._session is not None and self.request_url, "start the emulator and set request_url"
        async with self._session.post(self.request_url, data=body, headers=headers) as res:
            return res.status, await res.text()

    async def _deliver(
        self, rec: Inbound, body: bytes, content_type: str, extra: dict[str, str] | None = None
    ) -> Inbound:
        self.inbound.append(rec)
        if self.transport == "socket":
            return await self._deliver_socket(rec)
        assert self._session is not None, "start the emulator first"
        if not self.request_url:
            raise AssertionError("set emu.request_url to the app's /slack/events URL")
        headers = {**self._signed_headers(body, content_type), **(extra or {})}
        rec.sent_headers, rec.raw_body = headers, body
        try:
            async with self._session.post(
                self.request_url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.ack_timeout),
            ) as res:
                text = await res.text()
                rec.status = res.status
                rec.headers = dict(res.headers)
                rec.body = text
                if text and res.content_type == "application/json":
                    rec.body = json.loads(text)
        except TimeoutError:
            rec.error = "timeout"
        except aiohttp.ClientError as e:
            rec.error = f"{type(e).__name__}: {e}"
        self._notify()
        return rec

    # ------------------------------------------------------------------ inbound: socket mode
    async def _handle_socket(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets:
            return web.Response(status=401, text="invalid ticket")
        self._tickets.discard(ticket)
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": len(self._sockets),
                "debug_info": {"host": "emulator", "approximate_connection_time": 3600},
                "connection_info": {"app_id": self.app_id},
            }
        )
        self._socket_connected.set()
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(msg.data)
                except ValueError:
                    continue
                fut = self._acks.get(str(data.get("envelope_id")))
                if fut is not None and not fut.done():
                    fut.set_result(data)
        finally:
            self._sockets.remove(ws)
            if not self._sockets:
                self._socket_connected.clear()
        return ws

    async def disconnect_socket(self, reason: str = "refresh_requested") -> None:
        """Slack ends a Socket Mode connection: a ``disconnect`` message ("warning" 10 s before,
        "refresh_requested" when the connection is being refreshed, "link_disabled" when Socket Mode was
        turned off), then the close. slack_sdk reconnects through apps.connections.open."""
        if not self._sockets:
            raise AssertionError("no app is connected by Socket Mode")
        ws = self._sockets[-1]
        await ws.send_json({"type": "disconnect", "reason": reason, "debug_info": {"host": "emulator"}})
        await ws.close()

    async def wait_socket_connected(self, within: float = 5.0) -> None:
        await asyncio.wait_for(self._socket_connected.wait(), within)

    async def _deliver_socket(self, rec: Inbound) -> Inbound:
        if not self._sockets:
            raise AssertionError("emu.transport is 'socket' but no app is connected")
        envelope_type = {"slash_command": "slash_commands", "event": "events_api"}.get(
            rec.kind, "interactive"
        )
        envelope_id = secrets.token_hex(16)
        envelope: dict[str, Any] = {
            "envelope_id": envelope_id,
            "type": envelope_type,
            "payload": rec.payload,
            "accepts_response_payload": envelope_type != "events_api",
        }
        if rec.retry_num is not None:
            envelope["retry_attempt"] = rec.retry_num
            envelope["retry_reason"] = "timeout"
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._acks[envelope_id] = fut
        self.socket_messages.append(envelope)
        await self._sockets[-1].send_json(envelope)
        try:
            ack = await asyncio.wait_for(fut, self.ack_timeout)
            rec.status = 200
            rec.body = ack.get("payload", "")
        except TimeoutError:
            rec.error = "timeout"
        finally:
            self._acks.pop(envelope_id, None)
        return rec

    # ------------------------------------------------------------------ inbound: what users do
    def _user_api(self, user: SlUser) -> dict[str, Any]:
        return {"id": user.id, "username": user.name, "name": user.name, "team_id": user.team_id}

    def _new_trigger(self, user: SlUser) -> str:
        tid = f"{next(self._ids)}.{secrets.randbelow(10**12)}.{secrets.token_hex(16)}"
        self._triggers[tid] = _Trigger(tid, user.id, user.team_id, self.clock())
        return tid

    def _new_response_url(
        self, rec: Inbound, user: SlUser, channel_id: str | None, message: SlMessage | None
    ) -> str:
        key = secrets.token_hex(12)
        self._response_urls[key] = _ResponseUrl(
            key, rec, user.team_id, user.id, channel_id, self.clock(), message
        )
        return f"{self._base()}/respond/{key}"

    async def slash_command(self, user: SlUser, chan: SlChannel, command: str, text: str = "") -> Inbound:
        """``user`` types ``command text`` in ``chan``: the app gets Slack's form (signed) and its ack body, if
        it has ``text``/``blocks``, is shown to the user (ephemeral unless ``response_type: in_channel``)."""
        team = self.teams[user.team_id]
        rec = Inbound("slash_command", {}, team.id, user.id, chan.id)
        rec.trigger_id = self._new_trigger(user)
        rec.response_url = self._new_response_url(rec, user, chan.id, None)
        rec.payload = {
            "token": self.verification_token,
            "team_id": team.id,
            "team_domain": team.domain,
            "channel_id": chan.id,
            "channel_name": "directmessage" if chan.is_im else chan.name,
            "user_id": user.id,
            "user_name": user.name,
            "command": command,
            "text": text,
            "api_app_id": self.app_id,
            "is_enterprise_install": "false",
            "response_url": rec.response_url,
            "trigger_id": rec.trigger_id,
        }
        body = urlencode(rec.payload).encode()
        await self._deliver(rec, body, "application/x-www-form-urlencoded")
        self._show_ack(rec, team, user, chan.id)
        return rec

    def _show_ack(self, rec: Inbound, team: SlTeam, user: SlUser, channel_id: str) -> None:
        """A slash command's ack with a message body is displayed like a response_url post."""
        if not rec.acked:
            return
        if isinstance(rec.body, dict) and ("text" in rec.body or "blocks" in rec.body):
            self._respond(team, user.id, channel_id, None, rec.body, "ack", rec)
        elif isinstance(rec.body, str) and rec.body:
            # Bolt answers ack(text=...) alone as text/plain; Slack shows it as an ephemeral message
            self._respond(team, user.id, channel_id, None, {"text": rec.body}, "ack", rec)

    async def click(
        self,
        user: SlUser,
        message_or_view: SlMessage | dict[str, Any],
        action_id: str,
        value: str | None = None,
    ) -> Inbound:
        """``user`` clicks the element ``action_id`` of a message or a view (a button; for a select, ``value``
        is the chosen option's value). With several buttons of that ``action_id`` (a card's Set reminder,
        Start, Cancel…), ``value`` picks the one carrying it. Fails the test if no such element is shown
        there, or the message is in a conversation ``user`` cannot see (another workspace's, a private
        channel they are not in, someone else's DM or ephemeral message)."""
        if not isinstance(message_or_view, SlMessage):
            # what is on screen: the view's latest state, even when the test holds an older copy of it
            live = self.views.get(str(message_or_view.get("id")))
            if live is None or (live.closed and not live.is_home) or live.user_id != user.id:
                raise AssertionError(f"view {message_or_view.get('id')} is not on {user.name}'s screen")
            message_or_view = live.view
        elif message_or_view.deleted:
            raise AssertionError(f"message {message_or_view.ts} was deleted")
        else:
            msg_chan = self.channels.get(message_or_view.channel)
            hidden = (
                message_or_view.ephemeral_to not in (None, user.id)
                or (msg_chan is not None and msg_chan.is_im and msg_chan.im_user != user.id)
                or (msg_chan is not None and msg_chan.is_private and user.id not in msg_chan.members)
                # no shared (Slack Connect) channels here: a workspace's channels are its members' alone
                or (msg_chan is not None and msg_chan.team_id != user.team_id)
            )
            if hidden:
                raise AssertionError(f"{user.name} cannot see message {message_or_view.ts}")
        blocks = (
            message_or_view.blocks if isinstance(message_or_view, SlMessage) else message_or_view["blocks"]
        )
        found = [(b, el) for b, el in _interactive_elements(blocks) if el.get("action_id") == action_id]
        if not found:
            shown = [el.get("action_id") for _b, el in _interactive_elements(blocks)]
            raise AssertionError(f"no element with action_id {action_id!r} is shown (shown: {shown})")
        if value is not None:
            # the button carrying that value, when there is one; else the first (a select: its option)
            found = [(b, el) for b, el in found if el.get("value") == value] or found
        block, el = found[0]
        team = self.teams[user.team_id]
        action: dict[str, Any] = {
            "action_id": action_id,
            # Slack gives a block without a block_id one of its own (stable for the message)
            "block_id": block.get("block_id")
            or hashlib.sha1(json.dumps(block, sort_keys=True).encode()).hexdigest()[:5],
            "type": el["type"],
            "action_ts": self._new_ts(),
        }
        if el["type"] == "button":
            action["text"] = el.get("text")
            if value is not None and value != el.get("value"):
                raise AssertionError(f"button {action_id!r} has value {el.get('value')!r}, not {value!r}")
            if "value" in el:
                action["value"] = el["value"]
        elif "options" in el:
            opt = next((o for o in el["options"] if o.get("value") == value), None)
            if opt is None:
                raise AssertionError(f"{action_id!r} has no option {value!r}")
            action["selected_option"] = opt
        elif value is not None:
            action["value"] = value
        rec = Inbound("block_actions", {}, team.id, user.id)
        rec.trigger_id = self._new_trigger(user)
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": self._user_api(user),
            "api_app_id": self.app_id,
            "token": self.verification_token,
            "trigger_id": rec.trigger_id,
            "team": {"id": team.id, "domain": team.domain},
            "enterprise": None,
            "is_enterprise_install": False,
            "actions": [action],
            "state": {"values": {}},
        }
        if isinstance(message_or_view, SlMessage):
            msg = message_or_view
            rec.channel_id = msg.channel
            rec.response_url = self._new_response_url(rec, user, msg.channel, msg)
            chan = self.channels.get(msg.channel)
            payload["container"] = {
                "type": "message",
                "message_ts": msg.ts,
                "channel_id": msg.channel,
                "is_ephemeral": msg.ephemeral_to is not None,
            }
            payload["channel"] = {
                "id": msg.channel,
                "name": chan.name if chan and not chan.is_im else "directmessage",
            }
            if msg.ephemeral_to is None:
                payload["message"] = msg.to_api()
            payload["response_url"] = rec.response_url
        else:
            view = message_or_view
            payload["container"] = {"type": "view", "view_id": view["id"]}
            payload["view"] = view
        rec.payload = payload
        await self._deliver(
            rec, urlencode({"payload": json.dumps(payload)}).encode(), "application/x-www-form-urlencoded"
        )
        return rec

    async def submit_view(
        self, user: SlUser, view: dict[str, Any], values: dict[str, dict[str, Any]] | None = None
    ) -> Inbound:
        """``user`` fills the modal's inputs (``{block_id: {action_id: value}}``; a select's value is the
        option value, checkboxes a list of values) and presses submit. The app's answer is applied like Slack
        does: ``errors`` keep the modal open (they must name input blocks), ``update``/``push`` replace or
        stack a view, ``clear`` closes them all, an empty ack closes this one."""
        rec_view = self.views.get(view["id"])
        if rec_view is None or rec_view.closed or rec_view.user_id != user.id:
            raise AssertionError(f"view {view.get('id')} is not open for {user.name}")
        current = rec_view.view
        state = self._view_state(current, values or {})
        team = self.teams[user.team_id]
        rec = Inbound("view_submission", {}, team.id, user.id)
        rec.trigger_id = self._new_trigger(user)
        submitted = {**current, "state": {"values": state}}
        rec.payload = {
            "type": "view_submission",
            "team": {"id": team.id, "domain": team.domain},
            "user": self._user_api(user),
            "api_app_id": self.app_id,
            "token": self.verification_token,
            "trigger_id": rec.trigger_id,
            "view": submitted,
            "response_urls": [],
            "is_enterprise_install": False,
            "enterprise": None,
        }
        await self._deliver(
            rec, urlencode({"payload": json.dumps(rec.payload)}).encode(), "application/x-www-form-urlencoded"
        )
        if rec.acked:
            self._apply_view_answer(rec_view, rec.body, team, user)
        return rec

    async def close_view(self, user: SlUser, view: dict[str, Any]) -> Inbound | None:
        """``user`` presses the modal's close button: the view (its whole stack with ``clear_on_close``) is
        closed, and with ``notify_on_close`` the app gets a ``view_closed`` interaction (returned)."""
        rec_view = self.views.get(view["id"])
        if rec_view is None or rec_view.closed or rec_view.user_id != user.id:
            raise AssertionError(f"view {view.get('id')} is not open for {user.name}")
        current = rec_view.view
        for v in self.views.values():
            if v.id == rec_view.id or (current.get("clear_on_close") and v.root_id == rec_view.root_id):
                v.closed = True
        if not current.get("notify_on_close"):
            return None
        team = self.teams[user.team_id]
        rec = Inbound("view_closed", {}, team.id, user.id)
        rec.payload = {
            "type": "view_closed",
            "team": {"id": team.id, "domain": team.domain},
            "user": self._user_api(user),
            "api_app_id": self.app_id,
            "token": self.verification_token,
            "view": current,
            "is_cleared": bool(current.get("clear_on_close")),
            "is_enterprise_install": False,
            "enterprise": None,
        }
        body = urlencode({"payload": json.dumps(rec.payload)}).encode()
        return await self._deliver(rec, body, "application/x-www-form-urlencoded")

    def _view_state(self, view: dict[str, Any], values: dict[str, dict[str, Any]]) -> dict[str, Any]:
        inputs = {
            b.get("block_id"): b
            for b in view.get("blocks", [])
            if isinstance(b, dict) and b.get("type") == "input"
        }
        state: dict[str, Any] = {}
        for block_id, actions in values.items():
            block = inputs.get(block_id)
            if block is None:
                raise AssertionError(f"the modal has no input block {block_id!r} (has {list(inputs)})")
            el = block["element"]
            for action_id, value in actions.items():
                if el.get("action_id") != action_id:
                    raise AssertionError(f"input {block_id!r} has action_id {el.get('action_id')!r}")
                state.setdefault(block_id, {})[action_id] = _element_value(el, value)
        for input_id, block in inputs.items():
            if not block.get("optional") and input_id not in state:
                raise AssertionError(f"required input {input_id!r} left empty: Slack would not submit")
        return state

    def _apply_view_answer(self, rec_view: _View, body: Any, team: SlTeam, user: SlUser) -> None:
        stack = [v for v in self.views.values() if v.root_id == rec_view.root_id and not v.closed]
        if not body:
            rec_view.closed = True
            return
        if not isinstance(body, dict):
            self._violate("view_submission", "interaction", f"ack body is not JSON: {body!r:.80}", {})
            return
        action = body.get("response_action")
        if action == "errors":
            inputs = {b.get("block_id") for b in rec_view.view.get("blocks", []) if b.get("type") == "input"}
            bad = [k for k in body.get("errors", {}) if k not in inputs]
            if bad or not body.get("errors"):
                self._violate(
                    "view_submission",
                    "interaction",
                    f"errors name no input block: {bad or 'none given'}",
                    body,
                )
        elif action in ("update", "push"):
            problems = view_problems(body.get("view"))
            if problems:
                self._violate("view_submission", "view", "; ".join(problems), body)
                return
            if action == "update":
                self._make_view(
                    team,
                    user.id,
                    body["view"],
                    view_id=rec_view.id,
                    root=rec_view.root_id,
                    previous=rec_view.previous_id,
                )
            else:
                self._make_view(team, user.id, body["view"], root=rec_view.root_id, previous=rec_view.id)
        elif action == "clear":
            for v in stack:
                v.closed = True
        else:
            self._violate("view_submission", "interaction", f"unknown response_action {action!r}", body)

    async def user_says(self, user: SlUser, chan: SlChannel, text: str) -> Inbound:
        """``user`` writes ``text`` in ``chan`` (a channel, or the app's DM from :meth:`im_channel`): the
        message is stored and the app gets the ``message`` event (``channel_type`` "im" or "channel")."""
        team = self.teams[user.team_id]
        ts = self._new_ts()
        msg = SlMessage(
            chan.id, ts, user.id, [MessageVersion(text, None, self.clock())], team.id, source="user"
        )
        self.messages[(chan.id, ts)] = msg
        self._by_channel.setdefault(chan.id, []).append(msg)
        kind = "im" if chan.is_im else "group" if chan.is_private else "channel"
        event = {
            "type": "message",
            "user": user.id,
            "text": text,
            "ts": ts,
            "channel": chan.id,
            "channel_type": kind,
        }
        return await self.send_event(team, event)

    async def send_event(
        self,
        team: SlTeam,
        event: dict[str, Any],
        *,
        event_id: str | None = None,
        retry_num: int | None = None,
        retry_reason: str | None = None,
    ) -> Inbound:
        """Deliver an Events API ``event_callback`` carrying ``event`` (signed; with ``X-Slack-Retry-*`` when
        ``retry_num``). With ``auto_retry_events``, an event not acked within 3 s is retried up to 3 times."""
        event = {"event_ts": self._new_ts(), **event}
        payload = {
            "token": self.verification_token,
            "team_id": team.id,
            "api_app_id": self.app_id,
            "event": event,
            "type": "event_callback",
            "event_id": event_id or f"Ev0{next(self._ids):010d}",
            "event_time": int(self.wall_clock()),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": team.id,
                    "user_id": team.bot_user_id,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
            # deprecated (2020) in favour of `authorizations`, still sent with one id: kept for old apps
            "authed_users": [team.bot_user_id],
        }
        for problem in event_problems(payload):
            self._violate("send_event", "emulator", problem, payload)
        rec = await self._send_event_payload(team, payload, retry_num, retry_reason)
        if self.auto_retry_events:
            n = retry_num or 0
            while not rec.acked and n < 3:
                n += 1
                rec = await self._send_event_payload(
                    team, payload, n, "http_timeout" if rec.error == "timeout" else "http_error"
                )
        return rec

    async def _send_event_payload(
        self, team: SlTeam, payload: dict[str, Any], retry_num: int | None, retry_reason: str | None
    ) -> Inbound:
        rec = Inbound("event", payload, team.id, event_id=payload["event_id"], retry_num=retry_num)
        rec.user_id = payload["event"].get("user")
        extra = {}
        if retry_num is not None:
            extra = {
                "X-Slack-Retry-Num": str(retry_num),
                "X-Slack-Retry-Reason": retry_reason or "http_timeout",
            }
        return await self._deliver(rec, json.dumps(payload).encode(), "application/json", extra)

    async def retry(self, rec: Inbound, reason: str = "http_timeout") -> Inbound:
        """Deliver ``rec``'s event again, as Slack's next retry (``X-Slack-Retry-Num`` one more)."""
        assert rec.kind == "event", "only events are retried by Slack"
        team = self.teams[str(rec.team_id)]
        return await self._send_event_payload(team, rec.payload, (rec.retry_num or 0) + 1, reason)

    async def verify_url(self) -> Inbound:
        """Slack's ``url_verification`` when the request URL is saved: the app must echo the challenge."""
        challenge = secrets.token_urlsafe(24)
        payload = {"token": self.verification_token, "challenge": challenge, "type": "url_verification"}
        rec = Inbound("url_verification", payload)
        return await self._deliver(rec, json.dumps(payload).encode(), "application/json")

    async def open_home(self, user: SlUser) -> Inbound:
        """``user`` opens the app's Home tab: an ``app_home_opened`` event (with the published view, if any)."""
        team = self.teams[user.team_id]
        event: dict[str, Any] = {
            "type": "app_home_opened",
            "user": user.id,
            "channel": self.im_channel(user).id,
            "tab": "home",
        }
        if user.id in self.homes:
            event["view"] = self.homes[user.id]
        return await self.send_event(team, event)

    async def uninstall(self, team: SlTeam) -> list[Inbound]:
        """The workspace removes the app: its tokens stop working (``token_revoked``), then the app gets
        ``tokens_revoked`` and ``app_uninstalled`` (both signed events)."""
        revoked = [t for t in self._team_tokens[team.id] if not self._tokens[t].revoked]
        for t in revoked:
            self._tokens[t].revoked = True
        team.installed = False
        first = await self.send_event(
            team, {"type": "tokens_revoked", "tokens": {"oauth": [], "bot": [team.bot_user_id]}}
        )
        second = await self.send_event(team, {"type": "app_uninstalled"})
        return [first, second]

    # ------------------------------------------------------------------ response_url
    async def _handle_response_url(self, request: web.Request) -> web.StreamResponse:
        entry = self._response_urls.get(request.match_info["key"])
        try:
            body = await request.json()
        except ValueError:
            body = None
        if entry is None:
            self._violate("response_url", "response_url", "unknown response_url", {})
            return web.json_response({"ok": False, "error": "invalid_url"}, status=404)
        entry.inbound.responses.append(body if isinstance(body, dict) else {"_raw": body})
        self._notify()
        if self.clock() - entry.created > RESPONSE_URL_TTL or entry.uses >= RESPONSE_URL_USES:
            return web.json_response({"ok": False, "error": "expired_url"}, status=404)
        entry.uses += 1
        if not isinstance(body, dict):
            self._violate("response_url", "response_url", "body is not a JSON object", {})
            return web.json_response({"ok": False, "error": "invalid_payload"}, status=400)
        team = self.teams[entry.team_id]
        error = self._respond(
            team, entry.user_id, entry.channel_id, entry.message, body, "response_url", None
        )
        if error:
            return web.json_response({"ok": False, "error": error}, status=400)
        return web.json_response({"ok": True})

    def _respond(
        self,
        team: SlTeam,
        user_id: str,
        channel_id: str | None,
        original: SlMessage | None,
        body: dict[str, Any],
        source: str,
        rec: Inbound | None,
    ) -> str | None:
        """Show a response_url post (or a command's ack): ephemeral, in channel, replacing or deleting the
        original. Returns Slack's error, if any."""
        if body.get("delete_original"):
            if original is not None:
                original.deleted = True
            return None
        text, blocks = body.get("text", ""), body.get("blocks")
        error, problems = message_problems(text, blocks)
        if error is not None:
            self._violate(source, "blocks", "; ".join(problems), body)
            return error
        if body.get("replace_original") and original is not None:
            original.versions.append(MessageVersion(text, blocks, self.clock()))
            return None
        if body.get("response_type") == "in_channel" and channel_id in self.channels:
            self._store(team, self.channels[channel_id], text, blocks, source=source)
        else:
            self._ephemeral(team, channel_id or "", user_id, text, blocks, source)
        return None


def _element_value(el: dict[str, Any], value: Any) -> dict[str, Any]:
    """The ``state.values`` entry Slack sends for an input element holding ``value``."""
    kind = el.get("type")
    out: dict[str, Any] = {"type": kind}
    if kind in ("plain_text_input", "number_input", "email_text_input", "url_text_input"):
        out["value"] = None if value is None else str(value)
        max_length = el.get("max_length")
        if max_length and value is not None and len(str(value)) > int(max_length):
            raise AssertionError(
                f"{el.get('action_id')!r}: Slack's client stops typing at {max_length} characters"
            )
    elif kind == "static_select":
        opt = next((o for o in el.get("options", []) if o.get("value") == value), None)
        if opt is None:
            raise AssertionError(f"{el.get('action_id')!r} has no option {value!r}")
        out["selected_option"] = opt
    elif kind in ("checkboxes", "multi_static_select"):
        values = list(value or [])
        opts = [o for o in el.get("options", []) if o.get("value") in values]
        if len(opts) != len(values):
            raise AssertionError(f"{el.get('action_id')!r}: unknown options in {values!r}")
        out["selected_options"] = opts
    elif kind == "radio_buttons":
        opt = next((o for o in el.get("options", []) if o.get("value") == value), None)
        if opt is None:
            raise AssertionError(f"{el.get('action_id')!r} has no option {value!r}")
        out["selected_option"] = opt
    elif kind == "datepicker":
        out["selected_date"] = value
    elif kind == "timepicker":
        out["selected_time"] = value
    elif kind == "datetimepicker":
        out["selected_date_time"] = int(value)
    elif kind == "users_select":
        out["selected_user"] = value
    elif kind in ("conversations_select", "channels_select"):
        out["selected_conversation" if kind == "conversations_select" else "selected_channel"] = value
    else:
        out["value"] = value
    return out


def _tz_offset(tz: str, at: float) -> int:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    offset = datetime.fromtimestamp(at, ZoneInfo(tz)).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


@pytest_asyncio.fixture
async def slack_emulator() -> AsyncIterator[SlackEmulator]:
    """A started emulator; at teardown fails the test if any request violated Slack's rules (strict)."""
    async with SlackEmulator() as emu:
        yield emu
