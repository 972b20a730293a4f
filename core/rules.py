"""Pure policy: limits, validation, the reminder plan, the late/stale policy and who may do what.

No I/O and no clock: every function takes ``now``. Tests exercise these directly.
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.audio import parse_source
from core.errors import InvalidTime, InvalidTitle, NotAllowed, TooManySpaces, UserError, WrongState
from core.models import Delivery, DeliveryKind, Space, SpaceStatus
from core.refs import ChatRef, UserRef
from core.texts import TextKey

TITLE_MAX = 100
DESCRIPTION_MAX = 1000
MAX_AHEAD = timedelta(days=365)
# a time a few seconds in the past is a slow typist, not a mistake
PAST_GRACE = timedelta(minutes=1)
MAX_OPEN_PER_HOST = 10
# voice channels one Space's audio may be bridged into, besides its own: each costs a voice connection
# (a UDP socket and a player thread reading the shared feed), and a Space is one room, not a broadcast network
MAX_BRIDGED = 25
HOST_EARLY_REMINDER = timedelta(minutes=30)
LATE_MARK_AFTER = timedelta(minutes=1)
# a live notice more than this late is still sent (the Space is still live), but a host T-0 reminder
# that arrives after the Space ended makes no sense; see decide()
# A Space nobody started, or nobody ended, is closed this long after its start: it must not block its
# host's quota, stay "upcoming" in /spaces, or keep collecting subscribers forever.
STALE_AFTER = timedelta(hours=12)
# Housekeeping: settled notifications of finished Spaces are kept this long (reach counts, investigation),
# processed inbound request ids this long (platforms retry within minutes, at most hours).
KEEP_SETTLED = timedelta(days=30)
KEEP_REQUEST_IDS = timedelta(days=2)
MAX_ATTEMPTS = 8
BACKOFF_BASE = 5.0  # seconds
BACKOFF_CAP = 15 * 60.0
# why a fan-out row was settled as a fallback at once: a DM to this user failed before (on
# Discord failed DMs count toward the IP ban, and a closed door is not knocked on again)
KNOWN_UNREACHABLE = "known unreachable"
# a subscriber who cannot be DMed and subscribed privately: there is no group to mention them in
NO_GROUP_TO_MENTION = f"{KNOWN_UNREACHABLE}; no group to mention them in"


def clean_title(raw: str) -> str:
    """Trim, collapse whitespace and reject control characters; raises InvalidTitle."""
    title = " ".join(raw.split())
    if not title:
        raise InvalidTitle("title.empty")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co") and c not in "\u200d" for c in title):
        raise InvalidTitle("title.invalid")
    if len(title) > TITLE_MAX:
        raise InvalidTitle("title.too_long", length=len(title), limit=TITLE_MAX)
    return title


def clean_description(raw: str) -> str:
    text = raw.strip()
    if len(text) > DESCRIPTION_MAX:
        raise InvalidTitle(
            "description.too_long", field="description", length=len(text), limit=DESCRIPTION_MAX
        )
    return text


def check_voice(voice: ChatRef | None, chat: ChatRef) -> None:
    """A linked voice channel belongs to the platform and the guild/workspace the Space is scheduled in:
    a channel elsewhere could not be joined from the card."""
    if voice is not None and (voice.platform != chat.platform or voice.scope != chat.scope):
        raise UserError("voice.elsewhere", field="voice")


def clean_source(raw: str | None) -> str | None:
    """A host's audio source as stored (``str(AudioSource)``), None for none. Raises UserError (field
    "source", in the host's words) for anything core.audio.parse_source refuses."""
    if raw is None or not raw.strip():
        return None
    try:
        return str(parse_source(raw))
    except UserError as e:
        raise UserError(e.key, field="source", **e.params) from None


def check_may_bridge(actor: Actor, space: Space, channel: ChatRef, *, removing: bool = False) -> None:
    """Who may play a Space in a voice channel: a moderator of the CHANNEL's community (``actor.is_moderator``
    is about the channel there) — any community may bring an open Space, by its link, into its own voice
    channel — or the Space's host, in a channel of the Space's own community. The host may also remove the
    Space from any channel (it is their audio)."""
    if channel.scope is None:  # a voice channel always belongs to a guild (a DM call is not a room)
        raise UserError("bridge.not_voice")
    if actor.is_moderator:
        return
    if actor.user == space.host and (
        removing or (channel.platform == space.platform and channel.scope == space.chat.scope)
    ):
        return
    raise NotAllowed("perm.bridge")


def check_bridge_count(count: int) -> None:
    if count >= MAX_BRIDGED:
        raise TooManySpaces("bridge.too_many", limit=MAX_BRIDGED)


def check_start_time(at: datetime, now: datetime, shown: str) -> None:
    """``shown`` is the time as the user will recognise it (their zone), for the message."""
    if at < now - PAST_GRACE:
        raise InvalidTime("time.past", when=shown)
    if at > now + MAX_AHEAD:
        raise InvalidTime("time.too_far", days=MAX_AHEAD.days)


def check_host_quota(open_count: int) -> None:
    if open_count >= MAX_OPEN_PER_HOST:
        raise TooManySpaces("host.too_many", count=open_count, limit=MAX_OPEN_PER_HOST)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is acting. ``is_moderator`` is decided by the adapter from the platform's permission model
    (Discord Manage Events, Telegram chat admin, Slack admin) or the community's configured role."""

    user: UserRef
    is_moderator: bool = False
    locale: str = "en"
    tz: str | None = None


def check_may_manage(actor: Actor, space: Space, action: str) -> None:
    if actor.user == space.host or actor.is_moderator:
        return
    raise NotAllowed("perm.not_allowed", action=TextKey(f"action.{action}"))


_ALLOWED_FROM: dict[str, tuple[SpaceStatus, ...]] = {
    "reschedule": (SpaceStatus.SCHEDULED,),
    "cancel": (SpaceStatus.SCHEDULED,),
    "start": (SpaceStatus.SCHEDULED,),
    "end": (SpaceStatus.LIVE,),
    "edit": (SpaceStatus.SCHEDULED, SpaceStatus.LIVE),
    "source": (SpaceStatus.SCHEDULED, SpaceStatus.LIVE),
    "bridge": (SpaceStatus.SCHEDULED, SpaceStatus.LIVE),
}


def check_transition(space: Space, action: str) -> None:
    if space.status not in _ALLOWED_FROM[action]:
        raise WrongState(
            "space.wrong_state",
            status=TextKey(f"status.{space.status.value}"),
            action=TextKey(f"action.{action}"),
        )


def host_reminder_plan(starts_at: datetime, now: datetime) -> list[tuple[DeliveryKind, datetime]]:
    """The host gets one reminder 30 minutes before and one at the start time; the first is skipped when
    the Space is scheduled less than 30 minutes ahead (it would arrive late or at once, which helps nobody)."""
    plan: list[tuple[DeliveryKind, datetime]] = []
    early = starts_at - HOST_EARLY_REMINDER
    if early > now:
        plan.append((DeliveryKind.HOST_T30, early))
    plan.append((DeliveryKind.HOST_T0, starts_at))
    return plan


@dataclass(frozen=True, slots=True)
class Send:
    late_by: float  # seconds between due and now, whatever the reason (kept on the row, for the metrics)
    # the notice says "delayed by N min": late by more than LATE_MARK_AFTER because of an outage
    # (see late_because_of_an_outage), not merely queued behind the platform's limits
    marked: bool = False

    @property
    def shown_late_by(self) -> float | None:
        """The lateness to show in the notice, or None: no "delayed" mark."""
        return self.late_by if self.marked else None


@dataclass(frozen=True, slots=True)
class Skip:
    reason: str


def decide(
    delivery: Delivery, space: Space | None, now: datetime, *, up_since: datetime | None = None
) -> Send | Skip:
    """Send, send late (marked), or skip (stale) — decided at send time from the row and the Space now.

    ``up_since``: since when the delivery service has been running without a gap (every worker down at
    once), as the workers' heartbeats tell it; None when unknown (then only failed attempts mark a row)."""
    late_by = max(0.0, (now - delivery.due_at).total_seconds())
    if space is None:
        return Skip("space deleted")
    kind = delivery.kind
    about = delivery.about if kind is DeliveryKind.MENTION and delivery.about else kind
    if delivery.revision != space.revision and about in (
        DeliveryKind.HOST_T30,
        DeliveryKind.HOST_T0,
        DeliveryKind.RESCHEDULED_NOTICE,  # moved again since: only the latest "moved to" is worth sending
    ):
        return Skip(f"planned for revision {delivery.revision}, Space is at {space.revision}")
    if about in (DeliveryKind.HOST_T30, DeliveryKind.HOST_T0):
        if space.status is SpaceStatus.LIVE:
            return Skip("already live")
        if space.status in (SpaceStatus.ENDED, SpaceStatus.CANCELLED):
            return Skip(f"space {space.status.value}")
        if about is DeliveryKind.HOST_T30 and now >= space.starts_at:
            return Skip("T-30 reminder after the start time")
    if about is DeliveryKind.HOST_PROBLEM and space.status is not SpaceStatus.LIVE:
        return Skip(f"space {space.status.value}: its audio is over")
    if about is DeliveryKind.LIVE_NOTICE and space.status is not SpaceStatus.LIVE:
        return Skip(f"space {space.status.value}, no longer live")
    if about is DeliveryKind.RESCHEDULED_NOTICE and space.status is not SpaceStatus.SCHEDULED:
        return Skip(f"space {space.status.value}")
    if kind is DeliveryKind.EVENT_CREATE and not space.status.is_open:
        # over before its event was made: an event created only to be closed would notify its audience
        return Skip(f"space {space.status.value} before its event was created")
    return Send(late_by, late_because_of_an_outage(delivery, now, up_since))


def is_marked_late(late_by: float) -> bool:
    return late_by > LATE_MARK_AFTER.total_seconds()


def late_because_of_an_outage(delivery: Delivery, now: datetime, up_since: datetime | None) -> bool:
    """Does this notice, sent now, carry the visible "delayed" mark?

    Only when it is more than LATE_MARK_AFTER late AND an outage is to blame: no worker was running when it
    came due (``due_at`` before ``up_since``: the service was down or restarting), or an earlier attempt at
    this very row failed (a platform error put it back, or the worker sending it died: ``attempts`` > 1 —
    rate limits and pacing give their attempt back, so they never count). A live notice that merely waited
    its turn behind the platform's limits during a big fan-out is on time as far as the service can help
    it: no mark.
    """
    if not is_marked_late((now - delivery.due_at).total_seconds()):
        return False
    service_was_down = up_since is not None and delivery.due_at < up_since
    return service_was_down or delivery.attempts > 1


# --------------------------------------------------------------------------- claim order

# Small, time-critical sends go ahead of bulk ones: a host's T-0 reminder must not wait behind a 2,000-person
# fan-out, nor a card's "LIVE" edit, nor the mentions of people who cannot be DMed. Lower is sooner; the
# value is stored on the row when it is written (the claim orders by it, then by due time).
PRIORITY_REPLY = 0  # someone just wrote to us and waits for the answer
PRIORITY_HOST = 10  # the host's own reminders: T-30, T-0
PRIORITY_CHAT = 20  # cards (post, edit), native events and fallback mentions: one message each, seen by many
PRIORITY_OTHER = 30  # a kind this version does not know: assume one addressee, ahead of bulk
PRIORITY_BULK = 90  # fan-outs to every subscriber: live, moved, cancelled

_PRIORITIES: dict[str, int] = {
    "reply": PRIORITY_REPLY,  # by name: the kind is added by the reply outbox
    DeliveryKind.HOST_T30: PRIORITY_HOST,
    DeliveryKind.HOST_T0: PRIORITY_HOST,
    DeliveryKind.HOST_PROBLEM: PRIORITY_HOST,
    DeliveryKind.CARD_POST: PRIORITY_CHAT,
    DeliveryKind.CARD_EDIT: PRIORITY_CHAT,
    DeliveryKind.MENTION: PRIORITY_CHAT,
    DeliveryKind.EVENT_CREATE: PRIORITY_CHAT,
    DeliveryKind.EVENT_UPDATE: PRIORITY_CHAT,
    DeliveryKind.LIVE_NOTICE: PRIORITY_BULK,
    DeliveryKind.RESCHEDULED_NOTICE: PRIORITY_BULK,
    DeliveryKind.CANCELLED_NOTICE: PRIORITY_BULK,
}


def priority(kind: str) -> int:
    """Claim order of a delivery kind (lower first); unknown kinds go after the urgent ones, before bulk."""
    return _PRIORITIES.get(str(kind), PRIORITY_OTHER)


def backoff(attempts: int, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number ``attempts`` (1-based): exponential, capped, full jitter on half."""
    base = min(BACKOFF_CAP, BACKOFF_BASE * (2 ** max(0, attempts - 1)))
    r = (rng or random).random()
    return base / 2 + r * base / 2
