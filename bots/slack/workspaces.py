"""Every Slack workspace the app is installed in, and the bot token to use there.

Two ways to be installed, usable together:

* **One token** (``SLACK_BOT_TOKEN``): a self-hosted app in one workspace. ``auth.test`` at start tells which
  workspace it is; a send to any other workspace is ``ChatUnavailable``.
* **OAuth v2** (``SLACK_CLIENT_ID`` + ``SLACK_CLIENT_SECRET``): a distributed app. People install it from
  ``/slack/install``; Bolt's OAuth flow exchanges the code and saves the installation with slack_sdk's
  ``AsyncSQLAlchemyInstallationStore`` in the service's own database (tables ``slack_installations`` and
  ``slack_bots``, made by migration 0010_slack), so every process finds every workspace's token. The OAuth
  ``state`` (Bolt's CSRF protection) is a :class:`core.ports.OneTimeCodes` code: single use across processes,
  where Bolt's default file store would be per machine.

Tokens are looked up per send, through a small cache of clients per workspace (``client_ttl`` seconds): an
uninstall seen by another process reaches this one within that time, and at once when Slack answers
``invalid_auth`` / ``token_revoked`` (the adapter calls :meth:`Workspaces.invalidate`). :meth:`forget` (on
``app_uninstalled`` / ``tokens_revoked``) deletes the workspace's rows: nothing of its tokens is kept.

Not handled: token rotation (refresh tokens, ``token_rotation_expiration_minutes``): installs made with
rotation turned on would stop working after 12 hours. Org-wide Enterprise Grid installs (one token for every
workspace of an org) are not looked up; workspace-level installs inside a Grid are.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import aiohttp
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_sdk.errors import SlackApiError
from slack_sdk.oauth.installation_store.sqlalchemy import AsyncSQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import desc, select
from sqlalchemy.ext.asyncio import AsyncEngine

from core.errors import ChatUnavailable, TransientError
from core.ports import Clock, OneTimeCodes

log = logging.getLogger(__name__)

# The bot scopes the app asks for at install (config/slack-manifest.yml lists the same; a test checks):
SCOPES: tuple[str, ...] = (
    "commands",  # /space
    "chat:write",  # cards, DMs (chat.postMessage to a user id), mentions
    "chat:write.public",  # cards in public channels the bot was never invited to
    "im:write",  # the app's DM with a user
    "users:read",  # users.info: time zone, locale, admin / owner (moderators)
    "usergroups:read",  # SLACK_MODERATOR_GROUP members
    "calls:write",  # the Call card while a Space is live
    "calls:read",
)

INSTALL_PATH = "/slack/install"
REDIRECT_PATH = "/slack/oauth_redirect"
STATE_PURPOSE = "slack-oauth"
STATE_TTL = timedelta(minutes=10)  # Bolt's default state lifetime (OAuthStateUtils: 600 s)
CLIENT_TTL = 60.0  # seconds a workspace's client (its token) is reused before the store is read again
CLIENTS_KEPT = 1_000  # workspaces whose client stays cached (least recently used beyond)
REQUEST_TIMEOUT = 10.0  # seconds per Web API call (slack_sdk's default is 30)


class CodesStateStore(AsyncOAuthStateStore):
    """Bolt's OAuth state store on the core's one-time codes: a state is issued for one install attempt and
    accepted once, by whichever process receives the redirect, within :data:`STATE_TTL`."""

    def __init__(self, codes: OneTimeCodes, clock: Clock, *, ttl: timedelta = STATE_TTL) -> None:
        self._codes = codes
        self._clock = clock
        self._ttl = ttl
        self._logger = logging.getLogger(__name__)

    @property
    def logger(self) -> logging.Logger:
        return self._logger

    async def async_issue(self, *args: Any, **kwargs: Any) -> str:
        return await self._codes.issue(STATE_PURPOSE, now=self._clock.now(), ttl=self._ttl)

    async def async_consume(self, state: str) -> bool:
        return await self._codes.consume(STATE_PURPOSE, state, now=self._clock.now())


class Workspaces:
    """Every workspace the app is installed in, and its bot token: one SLACK_BOT_TOKEN (self-hosting), or
    OAuth installations stored with slack_sdk's AsyncSQLAlchemyInstallationStore in the service's database."""

    def __init__(
        self,
        *,
        api_base: str = "https://slack.com/api/",
        token: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        engine: AsyncEngine | None = None,
        codes: OneTimeCodes | None = None,
        clock: Clock | None = None,
        public_url: str | None = None,
        authorize_url: str | None = None,
        client_ttl: float = CLIENT_TTL,
        timeout: float = REQUEST_TIMEOUT,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if token is None and client_id is None:
            raise ValueError("Slack needs SLACK_BOT_TOKEN or SLACK_CLIENT_ID/SLACK_CLIENT_SECRET")
        self.api_base = api_base
        self._token = token
        self._client_id = client_id
        self._client_secret = client_secret
        self._public_url = public_url.rstrip("/") if public_url else None
        self._authorize_url = authorize_url
        self._codes = codes
        self._clock = clock
        self._ttl = client_ttl
        self._timeout = timeout
        self._monotonic = monotonic
        self.store: AsyncSQLAlchemyInstallationStore | None = None
        if client_id is not None:
            if client_secret is None or engine is None or codes is None or clock is None:
                raise ValueError(
                    "OAuth installs need the client secret, the database, one-time codes, a clock"
                )
            self.store = AsyncSQLAlchemyInstallationStore(client_id=client_id, engine=engine, logger=log)
        self.token_team: str | None = None  # the workspace of SLACK_BOT_TOKEN (auth.test at start)
        self._session: aiohttp.ClientSession | None = None
        self._clients: OrderedDict[str, tuple[AsyncWebClient, float]] = OrderedDict()
        self._forgotten: set[str] = set()  # the token's workspace uninstalled the app

    @property
    def single_workspace(self) -> bool:
        """One token, no OAuth: every event and send belongs to the token's workspace."""
        return self.store is None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open the HTTP session the clients share, and learn the token's workspace (auth.test)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout))
        if self._token is not None and self.token_team is None:
            try:
                auth = await self._new_client(self._token).auth_test()
            except SlackApiError as e:
                raise ChatUnavailable(f"slack auth.test: {e.response.get('error')}") from e
            except (aiohttp.ClientError, TimeoutError, OSError) as e:
                raise TransientError(f"slack auth.test: {type(e).__name__}") from e
            self.token_team = str(auth["team_id"])
            log.info("slack token checked", extra={"team": self.token_team, "bot_user": auth.get("user_id")})

    async def stop(self) -> None:
        self._clients.clear()
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    # ------------------------------------------------------------------ tokens

    def _new_client(self, token: str | None) -> AsyncWebClient:
        # No retry handler: a 429 or a dropped connection goes back to the delivery engine (RateLimited,
        # TransientError), which re-queues the send under the shared budget instead of sleeping here.
        return AsyncWebClient(
            token=token,
            base_url=self.api_base,
            session=self._session,
            timeout=max(1, math.ceil(self._timeout)),  # whole seconds; the session's own limit is exact
            retry_handlers=[],
            logger=logging.getLogger("slack_sdk.web"),
        )

    async def client(self, team_id: str | None) -> AsyncWebClient:
        """That workspace's client (its bot token); ``None``: the only workspace (one token). Raises
        ChatUnavailable when the app is not (or no longer) installed there."""
        if team_id is None or team_id == self.token_team:
            if self._token is not None and self.token_team is not None and team_id not in self._forgotten:
                return self._cached(self.token_team, self._token)
            if team_id is None:
                raise ChatUnavailable("slack: which workspace? (no workspace in the reference)")
        assert team_id is not None
        entry = self._clients.get(team_id)
        if entry is not None and entry[1] > self._monotonic():
            self._clients.move_to_end(team_id)
            return entry[0]
        token = await self._stored_token(team_id)
        if token is None:
            self._clients.pop(team_id, None)
            raise ChatUnavailable(f"slack: the app is not installed in {team_id}")
        return self._cached(team_id, token)

    def _cached(self, team_id: str, token: str) -> AsyncWebClient:
        entry = self._clients.get(team_id)
        if entry is not None and entry[0].token == token and entry[1] > self._monotonic():
            self._clients.move_to_end(team_id)
            return entry[0]
        client = self._new_client(token)
        self._clients[team_id] = (client, self._monotonic() + self._ttl)
        self._clients.move_to_end(team_id)
        while len(self._clients) > CLIENTS_KEPT:
            self._clients.popitem(last=False)
        return client

    async def _stored_token(self, team_id: str) -> str | None:
        """The newest bot token installed in ``team_id`` (any enterprise: a Grid workspace's install is
        stored with its enterprise id, and our references carry only the team)."""
        if self.store is None:
            return None
        bots = self.store.bots
        query = (
            select(bots.c.bot_token)
            .where(
                bots.c.client_id == self._client_id,
                bots.c.team_id == team_id,
                bots.c.bot_token.is_not(None),
            )
            .order_by(desc(bots.c.installed_at))
            .limit(1)
        )
        try:
            async with self.store.engine.connect() as conn:
                token = (await conn.execute(query)).scalar_one_or_none()
        except Exception as e:  # the database is down: the send is retried later, not dropped
            raise TransientError(f"slack installation lookup: {type(e).__name__}") from e
        return str(token) if token else None

    def invalidate(self, team_id: str | None) -> None:
        """Slack refused the workspace's token (revoked, app uninstalled): read it again next time."""
        if team_id is not None:
            self._clients.pop(team_id, None)

    async def forget(self, team_id: str, *, enterprise_id: str | None = None) -> None:
        """``app_uninstalled`` / ``tokens_revoked``: delete the workspace's installation and bot rows and
        drop its cached client. Later sends there raise ChatUnavailable (until the app is installed again)."""
        self._clients.pop(team_id, None)
        if team_id == self.token_team:
            self._forgotten.add(team_id)
        if self.store is not None:
            await self.store.async_delete_bot(enterprise_id=enterprise_id, team_id=team_id)
            await self.store.async_delete_installation(enterprise_id=enterprise_id, team_id=team_id)
            # and whatever else holds a token of that team (an install recorded under another enterprise
            # id than the event names): tokens are looked up by team, so they are deleted by team too
            async with self.store.engine.begin() as conn:
                for table in (self.store.bots, self.store.installations):
                    await conn.execute(
                        table.delete().where(table.c.client_id == self._client_id, table.c.team_id == team_id)
                    )
        log.info("slack workspace forgotten", extra={"team": team_id})

    def installed_again(self, team_id: str) -> None:
        """A new OAuth install in ``team_id``: its old client (revoked token) must not be reused."""
        self._clients.pop(team_id, None)
        self._forgotten.discard(team_id)

    # ------------------------------------------------------------------ Bolt

    def bolt_options(self) -> dict[str, Any]:
        """kwargs for slack_bolt's AsyncApp (besides the signing secret and the client, whose base URL the
        handlers set): ``token=`` for one workspace; with OAuth the installation store and the OAuth
        settings (install and redirect paths, scopes, the state store shared by every process)."""
        if self.store is None:
            assert self._token is not None
            return {"token": self._token}
        assert self._client_id is not None and self._client_secret is not None
        assert self._codes is not None and self._clock is not None
        redirect_uri = f"{self._public_url}{REDIRECT_PATH}" if self._public_url else None
        settings = AsyncOAuthSettings(
            client_id=self._client_id,
            client_secret=self._client_secret,
            scopes=list(SCOPES),
            user_scopes=[],
            redirect_uri=redirect_uri,
            install_path=INSTALL_PATH,
            redirect_uri_path=REDIRECT_PATH,
            authorization_url=self._authorize_url,
            installation_store=self.store,
            installation_store_bot_only=True,  # we act as the bot only: no user tokens are asked for
            state_store=CodesStateStore(self._codes, self._clock),
            state_expiration_seconds=int(STATE_TTL.total_seconds()),
            logger=logging.getLogger("slack_bolt.oauth"),
        )
        return {
            "installation_store": self.store,
            "installation_store_bot_only": True,
            "oauth_settings": settings,
        }


__all__ = ["INSTALL_PATH", "REDIRECT_PATH", "SCOPES", "CodesStateStore", "Workspaces"]
