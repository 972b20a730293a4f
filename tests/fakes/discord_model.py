"""The Discord emulator's world: permission bits, the records it keeps (users, guilds, channels, roles,
members, messages with their versions, scheduled events, interactions and their answers), the error it answers
with, and the small helpers that shape them as Discord's JSON. Used by ``tests/fakes/discord.py``, which
re-exports the names tests use."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


class Perm:
    """Permission bits (https://discord.com/developers/docs/topics/permissions)."""

    CREATE_INSTANT_INVITE = 1 << 0
    KICK_MEMBERS = 1 << 1
    BAN_MEMBERS = 1 << 2
    ADMINISTRATOR = 1 << 3
    MANAGE_CHANNELS = 1 << 4
    MANAGE_GUILD = 1 << 5
    ADD_REACTIONS = 1 << 6
    VIEW_CHANNEL = 1 << 10
    SEND_MESSAGES = 1 << 11
    MANAGE_MESSAGES = 1 << 13
    EMBED_LINKS = 1 << 14
    ATTACH_FILES = 1 << 15
    READ_MESSAGE_HISTORY = 1 << 16
    MENTION_EVERYONE = 1 << 17
    USE_EXTERNAL_EMOJIS = 1 << 18
    CONNECT = 1 << 20
    SPEAK = 1 << 21
    MUTE_MEMBERS = 1 << 22
    DEAFEN_MEMBERS = 1 << 23
    MOVE_MEMBERS = 1 << 24
    MANAGE_ROLES = 1 << 28
    USE_APPLICATION_COMMANDS = 1 << 31
    REQUEST_TO_SPEAK = 1 << 32
    MANAGE_EVENTS = 1 << 33
    SEND_MESSAGES_IN_THREADS = 1 << 38
    CREATE_EVENTS = 1 << 44


ALL_PERMISSIONS = (1 << 51) - 1
#: what @everyone may do in a fresh guild (view, send, embed, history, connect, speak, commands...)
DEFAULT_MEMBER_PERMISSIONS = (
    Perm.CREATE_INSTANT_INVITE
    | Perm.ADD_REACTIONS
    | Perm.VIEW_CHANNEL
    | Perm.SEND_MESSAGES
    | Perm.EMBED_LINKS
    | Perm.ATTACH_FILES
    | Perm.READ_MESSAGE_HISTORY
    | Perm.USE_EXTERNAL_EMOJIS
    | Perm.CONNECT
    | Perm.SPEAK
    | Perm.USE_APPLICATION_COMMANDS
    | Perm.REQUEST_TO_SPEAK
    | Perm.SEND_MESSAGES_IN_THREADS
)

# channel types
TEXT, DM, VOICE, STAGE = 0, 1, 2, 13
# scheduled events
EV_SCHEDULED, EV_ACTIVE, EV_COMPLETED, EV_CANCELED = 1, 2, 3, 4
ENTITY_STAGE, ENTITY_VOICE, ENTITY_EXTERNAL = 1, 2, 3
LEGAL_STATUS_CHANGES = {(EV_SCHEDULED, EV_ACTIVE), (EV_ACTIVE, EV_COMPLETED), (EV_SCHEDULED, EV_CANCELED)}
# gateway intents the emulator honours when dispatching
INTENT_GUILD_SCHEDULED_EVENTS = 1 << 16

USER_MENTION_RE = re.compile(r"<@!?(\d+)>")
ROLE_MENTION_RE = re.compile(r"<@&(\d+)>")
EVERYONE_RE = re.compile(r"@(everyone|here)")
EPHEMERAL = 1 << 6
LOADING = 1 << 7


# --------------------------------------------------------------------------- records
class DcError(Exception):
    """An error answer of the API, shaped like Discord's ``{"message", "code", "errors"?}``.

    ``violation`` ("spec" or "content") marks a request the bot should never have sent: it is recorded in
    ``dc.violations`` as well as answered."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        errors: dict[str, Any] | None = None,
        violation: str | None = None,
        headers: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors
        self.violation = violation
        self.headers = headers or {}
        self.body = body

    def payload(self) -> dict[str, Any]:
        if self.body is not None:
            return self.body
        out: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors:
            out["errors"] = self.errors
        return out


def bad_request(message: str, *, code: int = 50035, violation: str | None = "content") -> DcError:
    return DcError(400, code, message, violation=violation)


@dataclass(frozen=True)
class RateRule:
    """At most ``limit`` requests per ``per`` seconds (a bucket that refills all at once, like Discord's)."""

    limit: int
    per: float


@dataclass
class ApiCall:
    """One REST request as the emulator answered it."""

    method: str
    path: str  # without /api/v10
    route: str | None  # the description's path template, e.g. "/channels/{channel_id}/messages"
    params: dict[str, str]  # path parameters
    query: dict[str, str]
    body: Any
    time: float  # emulator clock
    status: int
    response: Any = None
    code: int | None = None  # Discord's error code when not 2xx
    headers: dict[str, str] = field(default_factory=dict)  # rate-limit headers answered

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass
class Violation:
    route: str
    kind: str  # "spec" | "content" | "unimplemented" | "token"
    message: str
    body: Any

    def __str__(self) -> str:
        return f"[{self.kind}] {self.route}: {self.message} (body={short(self.body)})"


@dataclass
class DcUser:
    id: int
    username: str
    global_name: str | None = None
    bot: bool = False
    locale: str = "en-US"
    dms_closed: bool = False  # "Allow direct messages from server members" off: 50007
    avatar: str | None = None  # the avatar's hash (its CDN file name); None: Discord's default picture

    def to_api(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": str(self.id),
            "username": self.username,
            "global_name": self.global_name,
            "discriminator": "0",
            "avatar": self.avatar,
            "public_flags": 0,
            "flags": 0,
            "banner": None,
            "accent_color": None,
            "avatar_decoration_data": None,
            "primary_guild": None,
            "collectibles": None,
        }
        if self.bot:
            d["bot"] = True
        return d


@dataclass
class DcRole:
    id: int
    guild_id: int
    name: str
    permissions: int
    position: int = 1
    mentionable: bool = False
    managed: bool = False

    def to_api(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.name,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": self.position,
            "permissions": str(self.permissions),
            "managed": self.managed,
            "mentionable": self.mentionable,
            "flags": 0,
            "tags": {},
        }


@dataclass
class DcChannel:
    id: int
    type: int  # 0 text, 1 DM, 2 voice, 13 stage
    name: str = ""
    guild_id: int | None = None
    position: int = 0
    overwrites: list[dict[str, Any]] = field(default_factory=list)  # {id, type 0 role/1 member, allow, deny}
    recipient: DcUser | None = None  # DM channels
    last_message_id: int | None = None

    def to_api(self) -> dict[str, Any]:
        if self.type == DM:
            assert self.recipient is not None
            return {
                "id": str(self.id),
                "type": DM,
                "last_message_id": opt_str(self.last_message_id),
                "flags": 0,
                "recipients": [self.recipient.to_api()],
            }
        d: dict[str, Any] = {
            "id": str(self.id),
            "type": self.type,
            "guild_id": str(self.guild_id),
            "name": self.name,
            "position": self.position,
            "permission_overwrites": [
                {"id": str(o["id"]), "type": o["type"], "allow": str(o["allow"]), "deny": str(o["deny"])}
                for o in self.overwrites
            ],
            "parent_id": None,
            "nsfw": False,
            "flags": 0,
            "last_message_id": opt_str(self.last_message_id),
            "rate_limit_per_user": 0,
        }
        if self.type == TEXT:
            d["topic"] = None
        else:
            d.update(bitrate=64000, user_limit=0, rtc_region=None, video_quality_mode=1)
        return d


@dataclass
class DcMember:
    user: DcUser
    guild_id: int
    roles: list[int] = field(default_factory=list)
    nick: str | None = None
    joined_at: str = "2025-01-01T00:00:00.000000+00:00"

    def to_api(self) -> dict[str, Any]:
        return {
            "user": self.user.to_api(),
            "nick": self.nick,
            "avatar": None,
            "banner": None,
            "roles": [str(r) for r in self.roles],
            "joined_at": self.joined_at,
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "pending": False,
            "flags": 0,
            "communication_disabled_until": None,
        }


@dataclass
class DcGuild:
    id: int
    name: str
    owner_id: int
    locale: str = "en-US"
    roles: dict[int, DcRole] = field(default_factory=dict)
    channels: dict[int, DcChannel] = field(default_factory=dict)
    members: dict[int, DcMember] = field(default_factory=dict)
    events: dict[int, DcEvent] = field(default_factory=dict)

    @property
    def everyone(self) -> DcRole:
        return self.roles[self.id]


@dataclass
class MessageVersion:
    """One state of a message: its content fields as the bot set them."""

    content: str
    embeds: list[dict[str, Any]]
    components: list[dict[str, Any]]
    flags: int
    time: float


@dataclass
class DcMessage:
    id: int
    channel_id: int
    guild_id: int | None
    author: DcUser
    versions: list[MessageVersion]
    timestamp: str
    nonce: str | int | None = None
    pinged: frozenset[int] = frozenset()  # user ids this message notified by mention
    mentioned: tuple[int, ...] = ()  # users mentioned in the content and allowed (the ``mentions`` field)
    mention_everyone: bool = False
    mention_roles: list[int] = field(default_factory=list)
    edited_timestamp: str | None = None
    deleted: bool = False
    webhook_id: int | None = None
    interaction_id: int | None = None  # the interaction it answers (original response or follow-up)
    visible_to: int | None = None  # ephemeral: the only user who sees it
    body: dict[str, Any] = field(default_factory=dict)  # the request body that created it
    message_reference: dict[str, Any] | None = None

    @property
    def content(self) -> str:
        return self.versions[-1].content

    @property
    def embeds(self) -> list[dict[str, Any]]:
        return self.versions[-1].embeds

    @property
    def components(self) -> list[dict[str, Any]]:
        return self.versions[-1].components

    @property
    def flags(self) -> int:
        return self.versions[-1].flags

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    @property
    def edits(self) -> list[MessageVersion]:
        """Versions after the original, oldest first."""
        return self.versions[1:]

    @property
    def buttons(self) -> list[dict[str, Any]]:
        """Buttons (and other interactive components), flattened row by row."""
        return [c for c in walk_components(self.components) if c.get("type") in (2, 3, 5, 6, 7, 8)]

    @property
    def custom_ids(self) -> list[str]:
        return [b["custom_id"] for b in self.buttons if "custom_id" in b]

    @property
    def text(self) -> str:
        """Content plus embed titles and descriptions: what a reader sees, for ``in`` checks."""
        parts = [self.content]
        for e in self.embeds:
            parts += [str(e.get("title") or ""), str(e.get("description") or "")]
            parts += [f"{f.get('name', '')} {f.get('value', '')}" for f in e.get("fields") or []]
        return "\n".join(p for p in parts if p)


@dataclass
class DcEvent:
    """A guild scheduled event (its API fields) and who clicked "Interested"."""

    id: int
    guild_id: int
    fields: dict[str, Any]  # name, description, scheduled_start_time, ..., status, entity_type
    creator_id: int
    interested: list[int] = field(default_factory=list)  # user ids in the order they clicked
    history: list[dict[str, Any]] = field(default_factory=list)  # every modify body, in order

    @property
    def status(self) -> int:
        return int(self.fields["status"])

    @property
    def name(self) -> str:
        return str(self.fields["name"])


@dataclass
class Callback:
    type: int
    data: dict[str, Any] | None
    time: float  # emulator clock
    late: bool = False  # arrived after the window (answered 10062)


@dataclass
class InteractionRecord:
    """An interaction the emulator sent (as a member acting), and everything the bot answered."""

    id: int
    token: str
    type: int  # 1 PING, 2 APPLICATION_COMMAND, 3 MESSAGE_COMPONENT, 4 AUTOCOMPLETE, 5 MODAL_SUBMIT
    payload: dict[str, Any]
    user: DcUser
    guild_id: int | None
    channel_id: int
    created_at: float  # emulator clock
    over_http: bool = False
    callbacks: list[Callback] = field(default_factory=list)  # accepted first responses (one, normally)
    late_callbacks: list[Callback] = field(default_factory=list)  # refused with 10062
    original: DcMessage | None = None
    followups: list[DcMessage] = field(default_factory=list)
    http_status: int | None = None  # over HTTP: the endpoint's answer
    http_request: tuple[bytes, str, str] | None = None  # over HTTP: (body, timestamp, signature) as sent
    message: DcMessage | None = None  # components: the message whose button was pressed

    @property
    def responded(self) -> bool:
        return bool(self.callbacks)

    @property
    def response(self) -> Callback | None:
        return self.callbacks[0] if self.callbacks else None

    @property
    def response_type(self) -> int | None:
        return self.callbacks[0].type if self.callbacks else None

    @property
    def ephemeral(self) -> bool:
        """The first visible answer (immediate message, or the deferred one) is only for the member."""
        cb = self.response
        if cb is None:
            return False
        return bool(int((cb.data or {}).get("flags") or 0) & EPHEMERAL)

    @property
    def choices(self) -> list[dict[str, Any]] | None:
        """Autocomplete: the choices the bot answered."""
        cb = self.response
        if cb is None or cb.type != 8:
            return None
        return list((cb.data or {}).get("choices") or [])

    @property
    def modal(self) -> dict[str, Any] | None:
        cb = self.response
        return cb.data if cb is not None and cb.type == 9 else None

    @property
    def messages(self) -> list[DcMessage]:
        """The original response (if any) then the follow-ups."""
        return ([self.original] if self.original is not None else []) + list(self.followups)


def short(obj: Any, limit: int = 300) -> str:
    text = repr(obj)
    return text if len(text) <= limit else text[:limit] + "..."


def opt_str(value: int | None) -> str | None:
    return None if value is None else str(value)


def walk_components(components: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for c in components:
        yield c
        if isinstance(c.get("components"), list):
            yield from walk_components(c["components"])
        if isinstance(c.get("component"), dict):
            yield from walk_components([c["component"]])
        if isinstance(c.get("accessory"), dict):
            yield from walk_components([c["accessory"]])


def with_ids(components: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A copy of ``components`` with the numeric ``id`` Discord gives each component (depth first, from 1)."""
    counter = itertools.count(1)

    def number(c: dict[str, Any]) -> dict[str, Any]:
        out = {**c, "id": c.get("id", next(counter))}
        if isinstance(c.get("components"), list):
            out["components"] = [number(x) for x in c["components"]]
        if isinstance(c.get("component"), dict):
            out["component"] = number(c["component"])
        if isinstance(c.get("accessory"), dict):
            out["accessory"] = number(c["accessory"])
        return out

    return [number(c) for c in components]


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds")


def parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def snowflake_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def shard_of(guild_id: int, num_shards: int) -> int:
    """The shard that receives a guild's events."""
    return (guild_id >> 22) % num_shards
