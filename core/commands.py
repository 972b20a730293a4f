"""Imperative commands: what an adapter asks the core to do, already translated from a platform payload.

``request_id`` is the platform's id for the inbound event (Telegram update_id, Slack event_id/trigger_id,
Discord interaction id): a retried delivery of the same event must not act twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.refs import ChatRef, UserRef
from core.rules import Actor

SCHEDULE_VERBS = ("schedule", "programmer")


def schedule_text(args: str) -> str:
    """What follows ``/space``: ``schedule tomorrow 20:00 AMA`` and ``tomorrow 20:00 AMA`` mean the same
    (the verb is optional on every platform; Discord and Slack show it as a subcommand)."""
    first, _, rest = args.strip().partition(" ")
    return rest.strip() if first.lower() in SCHEDULE_VERBS else args.strip()


@dataclass(frozen=True, slots=True)
class ScheduleSpace:
    actor: Actor
    chat: ChatRef
    title: str
    when_text: str  # with an empty ``title``: time and title in one string ("tomorrow 20:00 Weekly AMA")
    tz: str | None = None  # overrides the host's and the community's default zone
    description: str = ""
    audio_source: str | None = None
    request_id: str | None = None
    voice: ChatRef | None = None  # a voice or stage channel of the same platform (Discord)


@dataclass(frozen=True, slots=True)
class RescheduleSpace:
    actor: Actor
    space_id: str
    when_text: str
    tz: str | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class RenameSpace:
    """A new title for a scheduled or live Space (the one-step fix when the title came out wrong)."""

    actor: Actor
    space_id: str
    title: str
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class CancelSpace:
    actor: Actor
    space_id: str
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class StartSpace:
    actor: Actor
    space_id: str
    request_id: str | None = None
    audio_source: str | None = None  # set (replacing any earlier one) as the Space goes live; None: keep


@dataclass(frozen=True, slots=True)
class SetAudioSource:
    """The Space's audio source (host or moderator, while scheduled or live); ``source`` None clears it."""

    actor: Actor
    space_id: str
    source: str | None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class BridgeChannel:
    """Play a Space's audio in ``channel`` too (a voice or stage channel). ``actor.is_moderator`` says whether
    the actor moderates the CHANNEL's community (not the Space's): a community brings a Space to itself."""

    actor: Actor
    space_id: str
    channel: ChatRef
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class UnbridgeChannel:
    """Stop playing a Space's audio in ``channel`` (same ``actor.is_moderator`` as :class:`BridgeChannel`)."""

    actor: Actor
    space_id: str
    channel: ChatRef
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class EndSpace:
    actor: Actor
    space_id: str
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Subscribe:
    user: UserRef
    space_id: str
    via_chat: ChatRef | None = None
    locale: str | None = None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    user: UserRef
    space_id: str
