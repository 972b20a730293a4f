"""The nouns of Spaces. Plain dataclasses: storage maps them to rows, adapters render them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from core.refs import ChatRef, MessageRef, Platform, UserRef


class SpaceStatus(StrEnum):
    SCHEDULED = "scheduled"
    LIVE = "live"
    ENDED = "ended"
    CANCELLED = "cancelled"

    @property
    def is_open(self) -> bool:
        """Still upcoming or running: can be subscribed to, counts toward the host's limit."""
        return self in (SpaceStatus.SCHEDULED, SpaceStatus.LIVE)


@dataclass(slots=True)
class Space:
    id: str  # short and unguessable: it is the Space link
    title: str
    host: UserRef
    chat: ChatRef  # where it was scheduled; its card is posted there first
    starts_at: datetime  # aware UTC
    tz: str  # the host's IANA zone, to show the time as the host meant it
    locale: str  # the host's locale: language of the card in the chat
    created_at: datetime
    description: str = ""
    # str(core.audio.AudioSource): a URL or media file ffmpeg reads, or "browser"; None until the host sets one
    audio_source: str | None = None
    # a voice or stage channel linked at scheduling (Discord), where the Space takes place; same platform
    voice: ChatRef | None = None
    status: SpaceStatus = SpaceStatus.SCHEDULED
    revision: int = 1  # bumped on reschedule, so reminders planned for an old time can be withdrawn
    started_at: datetime | None = None
    ended_at: datetime | None = None
    # the secret of the host's private page ({share link}/host?key=…): made at scheduling, shown to the host
    # only (a DM, an ephemeral answer), never on a card or in anyone else's notice
    host_key: str = field(default="", repr=False)  # a credential: never in a log line or a repr

    @property
    def platform(self) -> Platform:
        return self.chat.platform


@dataclass(frozen=True, slots=True)
class BridgedChannel:
    """A voice or stage channel a Space's audio is also played in, besides its own (``Space.voice``): a
    community can bring an open Space into its voice channel. One per (Space, channel)."""

    space_id: str
    channel: ChatRef
    added_by: UserRef
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Subscription:
    space_id: str
    user: UserRef
    created_at: datetime
    # the chat the user subscribed from: where a mention reaches them if their DMs are closed
    via_chat: ChatRef | None = None


class DeliveryKind(StrEnum):
    HOST_T30 = "host_t30"
    HOST_T0 = "host_t0"
    LIVE_NOTICE = "live_notice"
    CANCELLED_NOTICE = "cancelled_notice"
    RESCHEDULED_NOTICE = "rescheduled_notice"
    CARD_POST = "card_post"  # recipient: a chat; the sent MessageRef becomes an Announcement
    CARD_EDIT = "card_edit"  # recipient: an announcement's MessageRef string
    MENTION = "mention"  # fallback: the subject is mentioned in the recipient chat (batched)
    # the platform's own event object mirroring the Space (Discord Scheduled Events), one per announcement
    # chat: recipient the chat (str(ChatRef)); the spec is built at send time from the Space as it is then
    EVENT_CREATE = "event_create"
    EVENT_UPDATE = "event_update"
    # an answer to someone who wrote to us (a command, a button, a deep link): recipient a chat, content
    # in ``payload`` (rendered when the answer was decided), no Space. Through the outbox so that it is
    # paced with everything else, retried, and written with the effect it reports (never lost in a crash)
    REPLY = "reply"
    # the host is told that the live audio has a problem (a source that never works, a channel it cannot
    # join): recipient the host, ``payload`` the text key and its parameters (core.notices.host_problem),
    # key ``space:<id>:problem:<text key>`` — once per Space and problem
    HOST_PROBLEM = "host_problem"

    @property
    def to_user(self) -> bool:
        return self in _USER_KINDS


_USER_KINDS = frozenset(
    {
        DeliveryKind.HOST_T30,
        DeliveryKind.HOST_T0,
        DeliveryKind.LIVE_NOTICE,
        DeliveryKind.CANCELLED_NOTICE,
        DeliveryKind.RESCHEDULED_NOTICE,
        DeliveryKind.HOST_PROBLEM,
    }
)


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    CLAIMED = "claimed"
    SENT = "sent"
    SKIPPED = "skipped"  # decided not to send; reason in last_error
    FALLBACK = "fallback"  # recipient unreachable; a MENTION row carries it on
    DEAD = "dead"  # gave up after retries; reason in last_error
    WITHDRAWN = "withdrawn"  # superseded by a reschedule or cancel


@dataclass(slots=True)
class Delivery:
    """One row of the outbox: a notification decided but not yet settled (docs/architecture.md, "The outbox row lifecycle")."""

    key: str  # unique idempotency key; hashed into the platform nonce where one exists
    kind: DeliveryKind
    platform: Platform
    recipient: str  # str(UserRef) | str(ChatRef) | str(MessageRef) for CARD_EDIT
    space_id: str | None  # None for a REPLY: an answer is about a message, not a Space
    revision: int
    due_at: datetime
    status: DeliveryStatus = DeliveryStatus.PENDING
    # MENTION: the str(UserRef) being reached. User kinds: the str(ChatRef) where a mention reaches the
    # recipient if their DMs are closed (None: the Space's own chat).
    subject: str | None = None
    # the kind the user should have received, for a MENTION fallback (so it says the right thing)
    about: DeliveryKind | None = None
    id: int | None = None
    claimed_by: str | None = None
    lease_until: datetime | None = None
    attempts: int = 0
    last_error: str | None = None
    sent_ref: str | None = None
    sent_at: datetime | None = None
    late_by: float | None = None  # seconds between due_at and the send
    # REPLY: what to say, platform-neutral (JSON, see core.services.replies); HOST_PROBLEM (and its MENTION
    # fallback): the problem's text key and parameters (JSON, core.notices.host_problem); None otherwise
    payload: str | None = None
    # claim order: lower first (rules.priority decides it from the kind; None: decided when stored)
    priority: int | None = None
    # the claim's fencing token, new at every claim: an outcome or a lease renewal lands only on the claim
    # it was made for, never on a later claim of the same row (even by a process reusing the worker id)
    claim: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to a claimed delivery, to be recorded if the lease is still ours (Outbox.settle_many)."""

    delivery_id: int
    status: DeliveryStatus
    sent_ref: str | None = None
    error: str | None = None
    late_by: float | None = None
    due_at: datetime | None = None  # PENDING: when to try again
    refund_attempt: bool = False  # PENDING after a rate limit: the attempt does not count
    # the claim this outcome belongs to (Delivery.claim): a fencing token, so that an outcome can never
    # land on a later claim of the same row, even by a process reusing the same worker id
    claim: str | None = None


class EventStatus(StrEnum):
    """The status of a platform's own event object (Discord's Scheduled Event statuses)."""

    SCHEDULED = "scheduled"
    ACTIVE = "active"
    COMPLETED = "completed"
    CANCELED = "canceled"


@dataclass(frozen=True, slots=True)
class EventSpec:
    """What a platform's own event object shows of a Space (core.ports.NativeEvents)."""

    title: str
    description: str
    starts_at: datetime  # aware UTC
    ends_at: datetime  # aware UTC, after starts_at
    status: EventStatus
    location: str | None  # the share link, for an event not tied to a voice channel
    channel: ChatRef | None  # a voice or stage channel; the platform picks VOICE or STAGE_INSTANCE


@dataclass(frozen=True, slots=True)
class NativeEvent:
    """A Space mirrored as a platform's own event in one announcement chat. ``event_id`` is None until the
    create has been sent (or while it keeps failing)."""

    space_id: str
    chat: ChatRef
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class LeaseGrant:
    """A held lease on a named connection (core.ports.GatewayLease). ``fence`` grows with every change of
    holder: a renewal or release carrying an older fence is refused, so a holder that stalled past its
    lease can never act on a lease someone else has taken since."""

    name: str
    holder: str
    fence: int
    until: datetime


@dataclass(frozen=True, slots=True)
class Announcement:
    """A card of a Space posted somewhere: its handle is what later edits (live, ended…) target."""

    space_id: str
    message: MessageRef


@dataclass(slots=True)
class UserProfile:
    user: UserRef
    tz: str | None = None
    locale: str | None = None
    dm_reachable: bool | None = None  # None: never tried; False: a DM failed, fall back without knocking
    dm_channel: str | None = None  # cached DM channel id (Discord and Slack charge a call to open one)
    display_name: str | None = None


@dataclass(slots=True)
class Community:
    """Per-chat settings (a Telegram group, a Discord guild, a Slack workspace)."""

    chat: ChatRef
    tz: str | None = None
    locale: str | None = None
    moderator_role: str | None = None


@dataclass(frozen=True, slots=True)
class SpaceView:
    """What a card or notice needs to show about a Space, gathered at render time."""

    space: Space
    subscribers: int
    link: str  # the shareable Space link (web page)
    zone: str | None = None  # show times in this zone (the chat's for cards, the reader's for DMs)


@dataclass(frozen=True, slots=True)
class ConversationStep:
    """Where a multi-step exchange stands (``/space`` alone: ask the title, then the time)."""

    step: str  # what the next message of the person answers, e.g. "title" or "time"; "done" once over
    fields: tuple[tuple[str, str], ...] = ()  # what was collected so far, e.g. (("title", "AMA"),)
    # the outbox keys of our questions at this step: in a group only a reply to one of them continues it
    questions: tuple[str, ...] = ()

    def field(self, name: str) -> str:
        return dict(self.fields).get(name, "")


@dataclass(frozen=True, slots=True)
class Conversation:
    """One person's exchange with the bot in one chat, kept in the database: it survives a restart and is
    continued by whichever process receives the next message.

    ``request_id`` is the inbound request that took the last step, and ``before`` the state it started
    from: platforms deliver a message again after a crash, and that delivery must take the same step
    again (answering the same), not the next one."""

    chat: ChatRef
    user: UserRef
    state: ConversationStep
    expires_at: datetime  # aware UTC; an expired conversation is over (and pruned later)
    request_id: str | None = None
    before: ConversationStep | None = None
