"""Slack inbound: slack-bolt's ``AsyncApp`` listeners on the core's inbound path.

One Bolt app receives everything Slack sends — slash commands, button presses, modal submissions and
events — over one signed URL (``POST /slack/events``, mounted in the web app through :meth:`web_routes`)
or over Socket Mode (:meth:`start`, with an ``xapp-`` token: no public URL needed). Bolt verifies the
signature and the 5-minute timestamp window of HTTP requests (401 otherwise) and answers each request with
what the listener passed to ``ack()``.

Every listener acknowledges first: Slack gives 3 seconds, and Bolt (``process_before_response=False``)
returns the HTTP response as soon as ``ack()`` is called. The rest runs in a task of ours (tracked, so
:meth:`drain` and :meth:`stop` can wait for it). Two exceptions, where the ack carries the answer:

- a modal submission whose fields are wrong is acknowledged WITH the errors (``response_action:
  "errors"``) — the only way Slack shows them next to the field. So its checks (the service's preview,
  writing nothing, then the schedule itself) run before the ack, under :data:`SUBMIT_BUDGET`. Measured
  against the emulator on a busy 2-core machine (users.info, preview, claim, schedule, HTTP): 35-330 ms
  from submit to ack on SQLite and PostgreSQL alike. A database too slow for the budget closes the modal
  at once, and the outcome (the Space, or the errors the modal can no longer show) follows privately.
- ``/space`` alone opens the schedule modal with its ``trigger_id``, which Slack honours for 3 seconds:
  the modal is opened FIRST with the zone we remember for the person (one indexed read), then refreshed
  (``views.update``) in the person's language and Slack time zone once ``users.info`` answered. Opening
  after ``users.info`` would put a network round trip (uncached: often 200-500 ms, under load more)
  between the trigger and the modal; the refresh costs nothing visible.

Answers are ephemeral (``respond()`` → the payload's ``response_url``: only the asker sees them), but a
list, which the channel may read. A press in the App Home has no ``response_url``: its answer is a DM.

Idempotency: the core's request id is ``sl:<team>:<trigger_id>`` for commands and interactions and
``sl:<team>:<event_id>`` for events, and before acting the request is claimed in the database
(:meth:`RepliesService.finish` with no rows, as Discord's handlers do): Slack retries an event it thinks
un-acknowledged (``X-Slack-Retry-Num``), and a copy reaching a second web process is not acted on twice.

Permissions are the platform's (:meth:`SlackPlatform.is_moderator`: workspace admins and owners, or the
configured user group), asked only when a permission depends on it. Locale and display name come from
``users.info`` (:meth:`SlackPlatform.user_info`, cached briefly by the adapter).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.oauth.async_callback_options import AsyncSuccessArgs
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack import render, translate, views
from core import rules
from core.commands import ScheduleSpace
from core.errors import UserError
from core.models import Space
from core.notices import Notice, reply
from core.ports import Clock, Links
from core.refs import ChatRef, Platform, UserRef
from core.rules import Actor
from core.services.inbound import InboundService, Request, Reschedule, Schedule
from core.services.profiles import ProfileService
from core.services.replies import Answer, RepliesService
from core.services.spaces import SpaceService
from core.texts import pick_locale, t
from core.timeparse import check_zone, format_local, parse_when

log = logging.getLogger(__name__)

SLACK_API = "https://slack.com/api/"
EVENTS_PATH = "/slack/events"
INSTALL_PATH = "/slack/install"
REDIRECT_PATH = "/slack/oauth_redirect"
# seconds a modal submission may spend deciding before its ack (Slack waits 3 s for it, the network
# takes its share): the schedule itself is a few database statements, milliseconds
SUBMIT_BUDGET = 2.0
HOME_LIMIT = 10  # Spaces per App Home section

Route = tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]


class WorkspacesLike(Protocol):
    """What the handlers need of :class:`bots.slack.workspaces.Workspaces`."""

    api_base: str  # Slack's Web API ("https://slack.com/api/"; the emulator's in tests)

    def bolt_options(self) -> dict[str, Any]: ...

    def installed_again(self, team_id: str) -> None: ...

    async def forget(self, team_id: str, *, enterprise_id: str | None = None) -> None: ...


class PlatformLike(Protocol):
    """What the handlers need of :class:`bots.slack.adapter.SlackPlatform`."""

    async def is_moderator(self, chat: ChatRef, user: UserRef) -> bool: ...

    async def user_info(self, user: UserRef) -> dict[str, Any]: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Person:
    """Who acts, as ``users.info`` describes them (defaults when it could not be asked)."""

    user: UserRef
    locale: str = "en"
    language: str | None = None  # Slack's own code ("fr-FR"), remembered on the profile
    name: str | None = None
    tz: str | None = None  # Slack's IANA zone for the person


class SlackHandlers:
    def __init__(
        self,
        *,
        workspaces: WorkspacesLike,
        platform: PlatformLike,
        inbound: InboundService,
        spaces: SpaceService,
        replies: RepliesService,
        links: Links,
        clock: Clock,
        signing_secret: str,
        app_token: str | None = None,
        receive: bool = True,
        api_base: str | None = None,
        submit_budget: float = SUBMIT_BUDGET,
    ) -> None:
        self._workspaces = workspaces
        self._platform = platform
        self._inbound = inbound
        self._spaces = spaces
        self._replies = replies
        self._profiles = ProfileService(replies.uow)
        self._links = links
        self._clock = clock
        self._app_token = app_token
        self._receive = receive
        self._budget = submit_budget
        self._tasks: set[asyncio.Task[Any]] = set()
        self._socket: AsyncSocketModeHandler | None = None
        options = dict(workspaces.bolt_options())
        # the client Bolt copies per request (and the OAuth flow uses): its base URL is the emulator's in
        # tests. A single workspace's token goes in it: Bolt ignores ``token=`` next to ``client=``
        client = AsyncWebClient(token=options.pop("token", None), base_url=api_base or workspaces.api_base)
        self.app = AsyncApp(
            signing_secret=signing_secret,
            client=client,
            request_verification_enabled=True,
            process_before_response=False,
            # events caused by our own bot user (none we subscribe to, today) are not acted on
            ignoring_self_events_enabled=True,
            # a workspace that uninstalled the app has no token left to ask users.info for the person's
            # language with: Bolt answers its members this, in both languages (its own is an English apology)
            user_facing_authorize_error_message=not_installed(),
            logger=logging.getLogger("slack_bolt"),
            **options,
        )
        self._register()
        self._watch_installs()

    # ------------------------------------------------------------------ transports

    def web_routes(self) -> list[Route]:
        """The aiohttp routes the web app mounts: events, commands and interactivity on one URL; the OAuth
        install pages when the app is distributed (installation store)."""
        routes: list[Route] = [("POST", EVENTS_PATH, self._on_events)]
        if self.app.oauth_flow is not None:
            routes += [("GET", INSTALL_PATH, self._on_install), ("GET", REDIRECT_PATH, self._on_redirect)]
        return routes

    async def _on_events(self, request: web.Request) -> web.StreamResponse:
        stamp = request.headers.get("X-Slack-Request-Timestamp", "")
        if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
            # Bolt's verifier would raise on int("now") (a 500 with a traceback): refuse it as unsigned
            return web.Response(status=401, text="invalid request")
        bolt_response = await self.app.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(bolt_response)

    async def _on_install(self, request: web.Request) -> web.StreamResponse:
        flow = self.app.oauth_flow
        if flow is None:
            raise web.HTTPNotFound()
        return await to_aiohttp_response(await flow.handle_installation(await to_bolt_request(request)))

    async def _on_redirect(self, request: web.Request) -> web.StreamResponse:
        flow = self.app.oauth_flow
        if flow is None:
            raise web.HTTPNotFound()
        return await to_aiohttp_response(await flow.handle_callback(await to_bolt_request(request)))

    async def start(self) -> None:
        """Connect Socket Mode when an app token is configured and this process receives; else nothing
        (HTTP requests arrive through the web app)."""
        if not self._receive or not self._app_token or self._socket is not None:
            return
        self._socket = AsyncSocketModeHandler(self.app, self._app_token)
        await self._socket.connect_async()
        log.info("slack socket mode connected")

    async def stop(self) -> None:
        """Close Socket Mode and wait for the work in flight. Idempotent."""
        socket, self._socket = self._socket, None
        if socket is not None:
            try:
                await socket.close_async()
            except Exception as e:  # closing a dead connection: nothing left to do
                log.warning("slack socket mode close failed: %s", type(e).__name__)
        await self.drain()

    async def drain(self) -> None:
        """Wait for the listeners' background work (tests; shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _spawn(self, work: Coroutine[Any, Any, Any], what: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(self._logged(work, what))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @staticmethod
    async def _logged(work: Coroutine[Any, Any, Any], what: str) -> Any:
        try:
            return await work
        except Exception as e:  # a bug or an outage: one line; Slack already has its ack
            log.error("slack %s failed", what, exc_info=e)
            return None

    def _watch_installs(self) -> None:
        """A workspace installing the app (again) through OAuth: the workspaces must drop what they cached
        for it (a client with the revoked token of a previous install)."""
        flow = self.app.oauth_flow
        if flow is None:
            return
        success = flow.success_handler

        async def installed(args: AsyncSuccessArgs) -> BoltResponse:
            team = args.installation.team_id
            if team:
                self._workspaces.installed_again(team)
                log.info("slack app installed", extra={"team_id": team})
            return await success(args)

        flow.success_handler = installed

    # ------------------------------------------------------------------ listeners

    def _register(self) -> None:
        app = self.app
        app.command("/space")(self._command)
        app.action(render.PRESS)(self._press)
        app.action(render.RESCHEDULE)(self._reschedule_button)
        app.action(render.LINK)(self._link)
        app.view(views.SCHEDULE_VIEW)(self._schedule_submitted)
        app.view(views.RESCHEDULE_VIEW)(self._reschedule_submitted)
        app.event("app_home_opened")(self._home_opened)
        app.event("app_uninstalled")(self._uninstalled)
        app.event("tokens_revoked")(self._uninstalled)

    async def _command(self, ack: Any, body: dict[str, Any], respond: Any, client: AsyncWebClient) -> None:
        # Slack wants the ack within 3 s: before anything else; the answers follow through respond()
        await ack()
        self._spawn(self._run_command(body, respond, client), "command")

    async def _run_command(self, body: dict[str, Any], respond: Any, client: AsyncWebClient) -> None:
        team, channel = _team(body), str(body.get("channel_id") or "")
        user = translate.user_ref(team, str(body.get("user_id") or ""))
        chat = translate.chat_ref(team, channel)
        text = str(body.get("text") or "")
        command = translate.slash_command(text)
        if command is None:
            await self._open_schedule_modal(body, client, user, chat)
            return
        request_id = _request_id(team, body.get("trigger_id"))
        if not await self._first_time(request_id):
            return
        person = await self._person(user)
        try:
            answers = await self._inbound.handle(self._request(person, chat, request_id), command)
        except Exception as e:
            log.error("slack command failed", exc_info=e)
            await self._respond(respond, _notice(t(person.locale, "error.generic"), person.locale))
            return
        for answer in answers:
            await self._respond(respond, answer.notice)

    async def _open_schedule_modal(
        self, body: dict[str, Any], client: AsyncWebClient, user: UserRef, chat: ChatRef
    ) -> None:
        """Open at once with what we remember, then refresh in Slack's language and zone for the person
        (the trigger expires 3 s after the command; users.info may take a network round trip)."""
        profile = await self._profiles.get(user)
        locale = (profile.locale if profile else None) or "en"
        zone = await self._spaces.zone_for(user, chat)
        now = self._clock.now()
        meta = translate.metadata(channel_id=chat.id)  # where the Space is announced, and answers go
        opened = await client.views_open(
            trigger_id=str(body.get("trigger_id") or ""),
            view=views.schedule_modal(pick_locale(locale), tz=zone, now=now, private_metadata=meta),
        )
        person = await self._person(user)
        better_zone = zone if profile is not None and profile.tz else (person.tz or zone)
        if person.locale == pick_locale(locale) and better_zone == zone:
            return
        view = opened.get("view") or {}
        await client.views_update(
            view_id=str(view.get("id") or ""),
            hash=view.get("hash"),
            view=views.schedule_modal(person.locale, tz=better_zone, now=now, private_metadata=meta),
        )

    async def _press(
        self, ack: Any, body: dict[str, Any], action: dict[str, Any], respond: Any, client: AsyncWebClient
    ) -> None:
        await ack()
        self._spawn(self._run_press(body, action, respond, client), "button")

    async def _run_press(
        self, body: dict[str, Any], action: dict[str, Any], respond: Any, client: AsyncWebClient
    ) -> None:
        team = _team(body)
        user = translate.user_ref(team, _user_id(body))
        chat, via = self._chat_of(body, team, user)
        press = translate.press_from_action(action, via_chat=via)
        request_id = _request_id(team, body.get("trigger_id"))
        if press is None or not await self._first_time(request_id):
            return
        person = await self._person(user)
        try:
            answers = await self._inbound.handle(self._request(person, chat, request_id), press)
        except Exception as e:  # an outage: the member is told, never left wondering
            log.error("slack button failed", exc_info=e)
            await self._answer(
                body, respond, client, _notice(t(person.locale, "error.generic"), person.locale), user
            )
            return
        for answer in answers:
            # a button's answer is for the one who pressed it
            await self._answer(
                body, respond, client, dataclasses.replace(answer.notice, ephemeral=True), user
            )
        if _in_home(body):
            await self._publish_home(person, team, client)

    async def _reschedule_button(
        self, ack: Any, body: dict[str, Any], action: dict[str, Any], respond: Any, client: AsyncWebClient
    ) -> None:
        await ack()
        self._spawn(self._run_reschedule_button(body, action, respond, client), "reschedule button")

    async def _run_reschedule_button(
        self, body: dict[str, Any], action: dict[str, Any], respond: Any, client: AsyncWebClient
    ) -> None:
        team = _team(body)
        user = translate.user_ref(team, _user_id(body))
        person = await self._person(user)
        try:
            space = await self._spaces.get(translate.reschedule_from_action(action) or "")
            # host or moderators only: checked BEFORE the modal opens, so nobody fills a form in vain
            mod = user != space.host and await self._platform.is_moderator(space.chat, user)
            rules.check_may_manage(Actor(user, is_moderator=mod, locale=person.locale), space, "reschedule")
        except UserError as e:
            await self._answer(body, respond, client, _notice(_error(person.locale, e), person.locale), user)
            return
        await client.views_open(
            trigger_id=str(body.get("trigger_id") or ""),
            view=views.reschedule_modal(
                person.locale, space, tz=space.tz, private_metadata=translate.metadata(space_id=space.id)
            ),
        )

    async def _link(self, ack: Any) -> None:
        # URL buttons (calendar, share) open their link in the browser; Slack still tells us: nothing to do
        await ack()

    # ------------------------------------------------------------------ modals

    async def _schedule_submitted(
        self, ack: Any, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient
    ) -> None:
        team = _team(body)
        user = translate.user_ref(team, _user_id(body))
        person = await self._person(user)
        parsed = translate.schedule_from_view(_state(view), locale=person.locale)
        if isinstance(parsed, dict):  # a field we can tell is wrong without the service
            await ack(response_action="errors", errors=parsed)
            return
        channel = translate.read_metadata(view.get("private_metadata")).get("channel") or user.id
        chat = translate.chat_ref(team, channel)
        request_id = _request_id(team, _view_key(body, view))
        check = self._check_schedule(person, chat, parsed)
        await self._decide(ack, client, person, chat, request_id, check, parsed)

    async def _reschedule_submitted(
        self, ack: Any, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient
    ) -> None:
        team = _team(body)
        user = translate.user_ref(team, _user_id(body))
        person = await self._person(user)
        command = translate.reschedule_from_view(_state(view), str(view.get("private_metadata") or ""))
        request_id = _request_id(team, _view_key(body, view))
        try:
            space = await self._spaces.get(command.space_id)
        except UserError as e:
            await ack(response_action="errors", errors=self._errors(e, person.locale))
            return
        check = self._check_reschedule(person, space, command)
        await self._decide(ack, client, person, space.chat, request_id, check, command)

    async def _decide(
        self,
        ack: Any,
        client: AsyncWebClient,
        person: Person,
        chat: ChatRef,
        request_id: str,
        check: Coroutine[Any, Any, None],
        command: Schedule | Reschedule,
    ) -> None:
        """Check, act and ack a modal submission within :data:`SUBMIT_BUDGET`: a field error keeps the
        modal open with the error on the field; success closes it and the answer follows ephemerally."""

        async def work() -> list[Answer] | dict[str, str]:
            try:
                await check
            except UserError as e:
                return self._errors(e, person.locale)
            if not await self._first_time(request_id):
                return []
            return await self._inbound.handle(self._request(person, chat, request_id), command)

        task = self._spawn(work(), "modal submission")
        try:
            outcome = await asyncio.wait_for(asyncio.shield(task), self._budget)
        except TimeoutError:
            # too slow to show errors in the modal: close it; the outcome comes as a message
            log.warning("slack modal submission slower than its ack budget")
            await ack()
            self._spawn(self._tell_later(task, client, person, chat), "late modal answer")
            return
        if isinstance(outcome, dict):
            await ack(response_action="errors", errors=outcome)
            return
        await ack()  # closes the modal; the answer follows
        self._spawn(self._tell_later(task, client, person, chat), "modal answer")

    async def _tell_later(
        self, task: asyncio.Task[Any], client: AsyncWebClient, person: Person, chat: ChatRef
    ) -> None:
        outcome = await task
        if isinstance(outcome, dict):  # field errors, now without a modal to show them in
            notices = [_notice(text, person.locale) for text in outcome.values()]
        else:
            notices = [a.notice for a in outcome or []]
        for notice in notices:
            await self._post_private(client, person.user, chat, notice)

    async def _check_schedule(self, person: Person, chat: ChatRef, cmd: Schedule) -> None:
        """The schedule command's own checks, writing nothing (raises UserError with its field)."""
        await self._spaces.preview(
            ScheduleSpace(
                actor=Actor(person.user, locale=person.locale, tz=cmd.tz),
                chat=chat,
                title=cmd.title,
                when_text=cmd.when,
                tz=cmd.tz,
                description=cmd.description,
            )
        )

    async def _check_reschedule(self, person: Person, space: Space, cmd: Reschedule) -> None:
        """The new time read as the reschedule will read it (the Space's zone), and not in the past."""
        now = self._clock.now()
        parsed = parse_when(cmd.when, now=now, tz=check_zone(space.tz), locale=person.locale)
        rules.check_start_time(parsed.at, now, format_local(parsed.at, parsed.tz, person.locale))

    def _errors(self, e: UserError, locale: str) -> dict[str, str]:
        """A core error as the modal shows it: on its field's block; one with no field (a quota, a state)
        on the first field, where it is seen."""
        block = translate.error_block(e.field) or translate.error_block("title") or "title"
        return {block: _error(locale, e)}

    # ------------------------------------------------------------------ events

    async def _home_opened(
        self, ack: Any, body: dict[str, Any], event: dict[str, Any], client: AsyncWebClient
    ) -> None:
        await ack()
        if event.get("tab") not in (None, "home"):
            return  # the Messages tab: nothing to draw
        team = _team(body)
        user = translate.user_ref(team, str(event.get("user") or ""))
        self._spawn(self._run_home(body, team, user, client), "home")

    async def _run_home(self, body: dict[str, Any], team: str, user: UserRef, client: AsyncWebClient) -> None:
        if not await self._first_time(_request_id(team, body.get("event_id"))):
            return
        await self._publish_home(await self._person(user), team, client)

    async def _publish_home(self, person: Person, team: str, client: AsyncWebClient) -> None:
        workspace = ChatRef(Platform.SLACK, "-", scope=team).community
        mine = await self._spaces.manageable(person.user, workspace, is_moderator=False, limit=HOME_LIMIT)
        followed = await self._spaces.following(person.user, limit=HOME_LIMIT)
        everything: list[Space] | None = None
        if await self._platform.is_moderator(workspace, person.user):
            found = await self._spaces.manageable(person.user, workspace, is_moderator=True, limit=HOME_LIMIT)
            everything = found
        view = views.home_view(
            person.locale, mine=mine, followed=followed, workspace=everything, link=self._links.space
        )
        await client.views_publish(user_id=person.user.id, view=view)

    async def _uninstalled(self, ack: Any, body: dict[str, Any], event: dict[str, Any]) -> None:
        await ack()
        if event.get("type") == "tokens_revoked" and not (event.get("tokens") or {}).get("bot"):
            return  # only user tokens (we ask for none): the bot's install stands
        team = _team(body)
        self._spawn(self._run_uninstalled(body, team), "uninstall")

    async def _run_uninstalled(self, body: dict[str, Any], team: str) -> None:
        if not await self._first_time(_request_id(team, body.get("event_id"))):
            return
        log.info("slack app uninstalled or tokens revoked", extra={"team_id": team})
        await self._workspaces.forget(team, enterprise_id=body.get("enterprise_id") or None)

    # ------------------------------------------------------------------ helpers

    async def _first_time(self, request_id: str) -> bool:
        """Claim the request in the database (every process shares it): a retried event or a copy that
        reached another process is acted on once."""
        if await self._replies.finish(Platform.SLACK, request_id, []):
            return True
        log.info("slack request already handled", extra={"request_id": request_id})
        return False

    async def _person(self, user: UserRef) -> Person:
        try:
            info = await self._platform.user_info(user)
        except Exception as e:  # no language and name is no reason to refuse the request
            log.warning("slack users.info failed: %s", type(e).__name__)
            return Person(user)
        profile = info.get("profile") or {}
        name = (
            profile.get("display_name")
            or profile.get("real_name")
            or info.get("real_name")
            or info.get("name")
        )
        tz = info.get("tz")
        try:
            zone = check_zone(tz) if isinstance(tz, str) and tz else None
        except UserError:
            zone = None
        return Person(
            user,
            locale=translate.locale_of(info),
            language=info.get("locale") or None,
            name=str(name) if name else None,
            tz=zone,
        )

    def _request(self, person: Person, chat: ChatRef, request_id: str) -> Request:
        return Request(
            actor=person.user,
            chat=chat,
            locale=person.locale,
            request_id=request_id,
            # the app's DM with the person (or the App Home, answered there): the bot can reach them there
            private=chat.id.startswith("D") or chat.id == person.user.id,
            is_moderator=self._platform.is_moderator,
            display_name=person.name,
            language=person.language,
            # answers go through respond() / chat.postEphemeral: the asker alone sees them
            ephemeral=True,
        )

    def _chat_of(self, body: dict[str, Any], team: str, user: UserRef) -> tuple[ChatRef, ChatRef | None]:
        """Where a button was pressed: (the request's chat, the channel where a subscriber with closed DMs
        could be mentioned — None in a DM or the App Home)."""
        channel = str(
            (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id") or ""
        )
        if not channel:  # the App Home: the person's DM with the app
            return translate.chat_ref(team, user.id), None
        chat = translate.chat_ref(team, channel)
        return chat, None if channel.startswith("D") else chat

    async def _respond(self, respond: Any, notice: Notice) -> None:
        shown = render.render(notice)
        await respond(
            text=shown.text,
            blocks=shown.blocks,
            response_type="ephemeral" if notice.ephemeral else "in_channel",
            replace_original=False,
        )

    async def _answer(
        self, body: dict[str, Any], respond: Any, client: AsyncWebClient, notice: Notice, user: UserRef
    ) -> None:
        """An answer to an interaction: through its response_url, or as a DM where there is none (the App
        Home)."""
        if body.get("response_url"):
            await self._respond(respond, notice)
            return
        await self._post_private(client, user, None, notice)

    async def _post_private(
        self, client: AsyncWebClient, user: UserRef, chat: ChatRef | None, notice: Notice
    ) -> None:
        """Ephemeral in ``chat`` when the app may post there, else in the app's DM with the person."""
        shown = render.render(notice)
        if chat is not None and not chat.id.startswith("D") and chat.id != user.id:
            try:
                await client.chat_postEphemeral(
                    channel=chat.id, user=user.id, text=shown.text, blocks=shown.blocks
                )
                return
            except SlackApiError as e:  # not a member there, archived…: the DM still reaches them
                log.info("slack ephemeral refused (%s): sent as a DM", e.response.get("error"))
        await client.chat_postMessage(channel=user.id, text=shown.text, blocks=shown.blocks)


# --------------------------------------------------------------------------- payload helpers (pure)


def _team(body: dict[str, Any]) -> str:
    """The workspace a request came from (on Enterprise Grid: the user's workspace, not the org)."""
    team = (
        body.get("team_id") or (body.get("team") or {}).get("id") or (body.get("user") or {}).get("team_id")
    )
    return str(team or "")


def _user_id(body: dict[str, Any]) -> str:
    return str((body.get("user") or {}).get("id") or body.get("user_id") or "")


def _request_id(team: str, key: object) -> str:
    return translate.request_id(team, str(key or ""))


def _view_key(body: dict[str, Any], view: dict[str, Any]) -> str:
    # a submission has its own trigger_id; the view id stays the same across resubmissions after errors,
    # so it is not the key
    return str(body.get("trigger_id") or view.get("id") or "")


def _state(view: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = (view.get("state") or {}).get("values") or {}
    return values


def _in_home(body: dict[str, Any]) -> bool:
    return (body.get("view") or {}).get("type") == "home"


def not_installed() -> str:
    """What a member of a workspace without the app (uninstalled) is told when they use it."""
    return "\n".join(t(locale, "sl.not_installed") for locale in ("en", "fr"))


def _notice(text: str, locale: str) -> Notice:
    return reply(text, locale=locale, ephemeral=True)


def _error(locale: str, e: UserError) -> str:
    return t(locale, e.key, **e.params)
