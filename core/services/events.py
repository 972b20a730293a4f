"""Native events: a Space mirrored as the platform's own event object (Discord Scheduled Events).

Outbound, the Space service writes ``event_create`` / ``event_update`` rows with each change and the delivery
engine sends them, rendering :func:`event_spec` from the Space as it is at send time. Inbound, the platform
reports what its members did to the event in its own UI: :class:`EventsService` turns a status change into
the core's command (the platform is the trusted actor: it only lets members who may manage events do it) and
an "Interested" click into a subscription, so one audience gets one notice.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from core.commands import CancelSpace, EndSpace, StartSpace, Subscribe, Unsubscribe
from core.errors import UserError, WrongState
from core.models import EventSpec, EventStatus, NativeEvent, Space, SpaceStatus
from core.ports import UnitOfWorkFactory
from core.refs import Platform, UserRef
from core.rules import Actor
from core.services.spaces import SpaceService, SubscribeResult

log = logging.getLogger(__name__)

# an event needs an end; a Space has none until it ends (an hour is what most hosts plan)
DEFAULT_EVENT_LENGTH = timedelta(hours=1)

_STATUS: dict[SpaceStatus, EventStatus] = {
    SpaceStatus.SCHEDULED: EventStatus.SCHEDULED,
    SpaceStatus.LIVE: EventStatus.ACTIVE,
    SpaceStatus.ENDED: EventStatus.COMPLETED,
    SpaceStatus.CANCELLED: EventStatus.CANCELED,
}


def event_spec(space: Space, link: str) -> EventSpec:
    """What the platform's event shows of ``space`` now (pure). Tied to the Space's voice channel when it
    has one, else located at the share link."""
    ends = space.starts_at + DEFAULT_EVENT_LENGTH
    if space.status is SpaceStatus.ENDED and space.ended_at is not None and space.ended_at > space.starts_at:
        ends = space.ended_at
    channel = space.voice
    status = _STATUS[space.status]
    if space.status is SpaceStatus.ENDED and space.started_at is None:
        # closed as stale without ever going live: an event that never started can only be cancelled
        status = EventStatus.CANCELED
    return EventSpec(
        title=space.title,
        description=space.description,
        starts_at=space.starts_at,
        ends_at=ends,
        status=status,
        location=None if channel is not None else link,
        channel=channel,
    )


class EventsService:
    """Inbound changes of native events, from the platform's own UI."""

    def __init__(self, uow: UnitOfWorkFactory, spaces: SpaceService) -> None:
        self._uow = uow
        self._spaces = spaces

    async def find(self, platform: Platform, scope: str | None, event_id: str) -> NativeEvent | None:
        async with self._uow() as uow:
            return await uow.events.find(platform, scope, event_id)

    async def status_changed(
        self,
        platform: Platform,
        scope: str | None,
        event_id: str,
        status: EventStatus,
        actor: UserRef | None,
    ) -> Space | None:
        """A member started, ended or cancelled the event in the platform's UI: do the same to the Space,
        everywhere. The platform already checked that they may (Discord: Manage Events), so the actor is
        trusted. A status the Space already has is a no-op: our own updates come back this way (echoes),
        and platforms repeat dispatches. Returns the Space as it is now, or None if the event is not ours."""
        event = await self.find(platform, scope, event_id)
        if event is None:
            return None
        space = await self._spaces.get(event.space_id)
        who = Actor(actor or space.host, is_moderator=True, locale=space.locale)
        try:
            if status is EventStatus.ACTIVE and space.status is SpaceStatus.SCHEDULED:
                return (await self._spaces.start(StartSpace(who, space.id), echo_of=event.chat)).space
            if status is EventStatus.COMPLETED and space.status is SpaceStatus.LIVE:
                return await self._spaces.end(EndSpace(who, space.id), echo_of=event.chat)
            if status is EventStatus.CANCELED and space.status is SpaceStatus.SCHEDULED:
                return await self._spaces.cancel(CancelSpace(who, space.id), echo_of=event.chat)
        except WrongState:  # changed meanwhile (a command, another process handling the same dispatch)
            return await self._spaces.get(space.id)
        if _STATUS[space.status] is not status:
            # a transition the platform allows and a Space cannot make (an event completed that never
            # started, a live one cancelled): the Space keeps its state, and the log says why
            log.warning(
                "native event status ignored",
                extra={"space_id": space.id, "status": str(status), "space_status": str(space.status)},
            )
        return space

    async def interest(
        self, platform: Platform, scope: str | None, event_id: str, user: UserRef, interested: bool
    ) -> SubscribeResult | None:
        """A member clicked (or un-clicked) "Interested" on the event: subscribe them (or not), reached in the
        event's announcement chat if their DMs are closed. Subscribing is per person: one who also pressed
        the card's button is one subscriber and gets one notice. None if the event is not ours, or the
        click cannot be a subscription (the host, a Space that is over)."""
        event = await self.find(platform, scope, event_id)
        if event is None:
            return None
        try:
            if interested:
                return await self._spaces.subscribe(Subscribe(user, event.space_id, via_chat=event.chat))
            return await self._spaces.unsubscribe(Unsubscribe(user, event.space_id))
        except UserError as e:
            log.info("interest not taken as a subscription", extra={"space_id": event.space_id, "why": e.key})
            return None
