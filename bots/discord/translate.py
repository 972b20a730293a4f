"""Discord interactions → platform-neutral values. Pure functions: no I/O, no network, no client state.

One :class:`Incoming` is built from either source of interactions: a ``discord.Interaction`` of the gateway
(:func:`from_interaction`) or the raw JSON body posted to the HTTP interactions endpoint
(:func:`from_payload`). Both go through the same validation, so the handlers see one shape whatever the
transport, and a forged or odd payload is refused here as :class:`BadInteraction` (one plain log line),
never as a traceback deep in a handler.
"""

from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from core.ids import looks_like_space_id
from core.markup import as_subcommands
from core.notices import Verb, parse_callback
from core.refs import ChatRef, Platform, UserRef
from core.services.inbound import (
    Bridge,
    Command,
    Link,
    ListSpaces,
    Manage,
    Rename,
    Reschedule,
    Schedule,
    SetSource,
    Unlink,
)
from core.texts import pick_locale

if TYPE_CHECKING:
    import discord

# Permission bits (https://discord.com/developers/docs/topics/permissions)
ADMINISTRATOR = 1 << 3
MANAGE_EVENTS = 1 << 33
EPHEMERAL = 1 << 6  # message flag: only the asker sees it
MAX_INPUT = 1000  # characters of one option we are willing to parse (Discord allows 6,000)
MAX_CHOICES = 25  # autocomplete results Discord shows
MAX_CHOICE_TEXT = 100  # characters of a choice's name and of its value
SHARE_PREFIX = "share"  # custom_id "share:<space id>": answered with the link, privately
REQUEST_PREFIX = "dc"


class Kind(IntEnum):
    """Interaction types."""

    PING = 1
    COMMAND = 2
    COMPONENT = 3
    AUTOCOMPLETE = 4
    MODAL = 5


class BadInteraction(ValueError):
    """The payload is not an interaction we can act on (malformed, forged, or of a shape we never asked for)."""


@dataclass(frozen=True, slots=True)
class Incoming:
    """One interaction, as the handlers need it."""

    id: str
    token: str = field(repr=False)  # a credential for 15 minutes: never in a log line
    application_id: str
    kind: Kind
    guild_id: str | None = None
    channel_id: str | None = None
    user_id: str | None = None
    display_name: str = ""
    locale: str = "en"  # "en" | "fr": the member's client language
    permissions: int = 0  # the member's permission bits in the channel (overwrites applied by Discord)
    roles: frozenset[str] = frozenset()
    command: str | None = None  # "space"
    subcommand: str | None = None  # "schedule", "list", "start", ...
    options: Mapping[str, str] = field(default_factory=dict)  # option name → its value, as text
    focused: str | None = None  # autocomplete: the option being typed
    custom_id: str | None = None  # components
    # channel options: the channels' names, as Discord resolved them (id → name), to name them in answers
    channel_names: Mapping[str, str] = field(default_factory=dict)

    @property
    def request_id(self) -> str:
        """The core's request id: interaction ids are unique across Discord, so a replayed or duplicated
        interaction finds its effect already done."""
        return f"{REQUEST_PREFIX}:{self.id}"

    @property
    def user(self) -> UserRef | None:
        return user_ref(self.user_id) if self.user_id else None

    @property
    def chat(self) -> ChatRef | None:
        return chat_ref(self.channel_id, self.guild_id) if self.channel_id else None

    @property
    def manages_events(self) -> bool:
        """Manage Events (or Administrator, which implies every permission) in this guild's channel."""
        return self.guild_id is not None and bool(self.permissions & (ADMINISTRATOR | MANAGE_EVENTS))

    def has_role(self, role_id: str | None) -> bool:
        return self.guild_id is not None and role_id is not None and role_id in self.roles

    def option(self, name: str) -> str:
        return self.options.get(name, "").strip()


# --------------------------------------------------------------------------- references


def user_ref(user_id: str) -> UserRef:
    # Discord user ids are global: users carry no scope
    return UserRef(Platform.DISCORD, user_id)


def chat_ref(channel_id: str, guild_id: str | None) -> ChatRef:
    """A guild channel carries its guild as scope (permissions and communities are per guild); a DM none."""
    return ChatRef(Platform.DISCORD, channel_id, scope=guild_id)


def scope_of(chat: ChatRef) -> str | None:
    return chat.scope


def same_guild(chat: ChatRef, incoming: Incoming) -> bool:
    """Whether ``chat`` (a Space's channel) is in the guild the interaction came from: a member's guild
    permissions say nothing about another guild's Spaces. Without a scope on the reference (a Space from
    before scopes), only the interaction's own channel is known to be in the guild."""
    if chat.platform is not Platform.DISCORD or incoming.guild_id is None:
        return False
    scope = scope_of(chat)
    if scope is not None:
        return scope == incoming.guild_id
    return chat.id == incoming.channel_id


# --------------------------------------------------------------------------- buttons


@dataclass(frozen=True, slots=True)
class Button:
    verb: Verb | None  # None: the Share button
    space_id: str


def parse_button(custom_id: str | None) -> Button | None:
    """``sub:<id>``, ``unsub:<id>``, ``start:<id>``, ``end:<id>``, ``cancel:<id>`` (core's verbs) and
    ``share:<id>``; None for anything else (hostile, stale, another bot's)."""
    if not custom_id or len(custom_id) > 100:
        return None
    head, _, space_id = custom_id.partition(":")
    if not looks_like_space_id(space_id):
        return None
    if head == SHARE_PREFIX:
        return Button(None, space_id)
    parsed = parse_callback(custom_id)
    return Button(parsed[0], space_id) if parsed else None


# --------------------------------------------------------------------------- untrusted payloads


def _snowflake(v: object, where: str, *, required: bool = True) -> str | None:
    if v is None and not required:
        return None
    # snowflakes arrive as strings; an int is accepted (some test tools send them), a bool never
    if type(v) is int and v >= 0:
        return str(v)
    if isinstance(v, str) and v.isascii() and v.isdigit() and len(v) <= 20:
        return v
    raise BadInteraction(f"{where} is not a snowflake")


def _text(v: object, where: str, *, limit: int = 200) -> str:
    if v is None:
        return ""
    if not isinstance(v, str) or len(v) > limit:
        raise BadInteraction(f"{where} is not a short string")
    return v


def _person(data: Mapping[str, Any]) -> tuple[str | None, str, int, frozenset[str]]:
    """(user id, display name, permission bits, role ids) from ``member`` (guild) or ``user`` (DM)."""
    member = data.get("member")
    if member is not None:
        if not isinstance(member, dict) or not isinstance(member.get("user"), dict):
            raise BadInteraction("member is malformed")
        user = member["user"]
        perms = member.get("permissions", "0")
        if not (isinstance(perms, str) and perms.isascii() and perms.isdigit() and len(perms) <= 24):
            raise BadInteraction("member.permissions is malformed")
        roles = member.get("roles", [])
        if not isinstance(roles, list) or len(roles) > 250:
            raise BadInteraction("member.roles is malformed")
        role_ids = frozenset(str(_snowflake(r, "member.roles[]")) for r in roles)
        nick = _text(member.get("nick"), "member.nick")
        bits = int(perms)
    else:
        user = data.get("user")
        if user is None:
            return None, "", 0, frozenset()
        if not isinstance(user, dict):
            raise BadInteraction("user is malformed")
        nick, bits, role_ids = "", 0, frozenset()
    uid = _snowflake(user.get("id"), "user.id")
    name = (
        nick
        or _text(user.get("global_name"), "user.global_name")
        or _text(user.get("username"), "user.username")
    )
    return uid, name.strip() or "someone", bits, role_ids


def _option_value(v: object, where: str) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(v)
    if isinstance(v, str):
        return v[: MAX_INPUT + 1]  # longer than we parse: kept just long enough to be refused as such
    raise BadInteraction(f"{where} has an odd value")


def _channel_names(data: object) -> dict[str, str]:
    """``data.resolved.channels``: id → name of the channels given as options (ignored when odd)."""
    resolved = data.get("resolved") if isinstance(data, dict) else None
    channels = resolved.get("channels") if isinstance(resolved, dict) else None
    if not isinstance(channels, dict) or len(channels) > 25:
        return {}
    names: dict[str, str] = {}
    for cid, channel in channels.items():
        name = channel.get("name") if isinstance(channel, dict) else None
        if isinstance(cid, str) and cid.isdigit() and isinstance(name, str) and 0 < len(name) <= 100:
            names[cid] = name
    return names


def _command(data: object) -> tuple[str, str | None, dict[str, str], str | None]:
    """(command name, subcommand, options, focused option) of an application command or autocomplete."""
    if not isinstance(data, dict):
        raise BadInteraction("data is malformed")
    name = _text(data.get("name"), "data.name", limit=32)
    if not name:
        raise BadInteraction("data.name is missing")
    options = data.get("options") or []
    sub: str | None = None
    if (
        isinstance(options, list)
        and len(options) == 1
        and isinstance(options[0], dict)
        and options[0].get("type") in (1, 2)  # SUB_COMMAND, SUB_COMMAND_GROUP
    ):
        sub = _text(options[0].get("name"), "data.options[0].name", limit=32)
        options = options[0].get("options") or []
    if not isinstance(options, list) or len(options) > 25:
        raise BadInteraction("data.options is malformed")
    values: dict[str, str] = {}
    focused: str | None = None
    for i, opt in enumerate(options):
        if not isinstance(opt, dict):
            raise BadInteraction(f"data.options[{i}] is malformed")
        oname = _text(opt.get("name"), f"data.options[{i}].name", limit=32)
        values[oname] = _option_value(opt.get("value", ""), f"data.options[{i}]")
        if opt.get("focused") is True:
            focused = oname
    return name, sub, values, focused


def from_payload(data: object) -> Incoming:
    """The interaction in a raw JSON body (the HTTP endpoint, or a gateway INTERACTION_CREATE's ``d``).
    Raises BadInteraction for anything we cannot act on safely."""
    if not isinstance(data, dict):
        raise BadInteraction("not an object")
    raw_type = data.get("type")
    if type(raw_type) is not int:
        raise BadInteraction("unknown interaction type")
    try:
        kind = Kind(raw_type)
    except ValueError:
        raise BadInteraction("unknown interaction type") from None
    iid = str(_snowflake(data.get("id"), "id"))
    app = str(_snowflake(data.get("application_id"), "application_id"))
    token = _text(data.get("token"), "token", limit=500)
    if not token and kind is not Kind.PING:
        raise BadInteraction("token is missing")
    if kind is Kind.PING:
        return Incoming(iid, token, app, kind)
    guild = _snowflake(data.get("guild_id"), "guild_id", required=False)
    channel = data.get("channel_id")
    if channel is None and isinstance(data.get("channel"), dict):
        channel = data["channel"].get("id")
    channel_id = _snowflake(channel, "channel_id", required=False)
    uid, name, bits, roles = _person(data)
    if uid is None:
        raise BadInteraction("no user")
    locale = pick_locale(_text(data.get("locale"), "locale", limit=16) or None)
    command = sub = focused = custom_id = None
    options: dict[str, str] = {}
    names: dict[str, str] = {}
    if kind in (Kind.COMMAND, Kind.AUTOCOMPLETE):
        command, sub, options, focused = _command(data.get("data"))
        names = _channel_names(data.get("data"))
    elif kind is Kind.COMPONENT:
        body = data.get("data")
        if not isinstance(body, dict):
            raise BadInteraction("data is malformed")
        custom_id = _text(body.get("custom_id"), "data.custom_id", limit=100)
    return Incoming(
        id=iid,
        token=token,
        application_id=app,
        kind=kind,
        guild_id=guild,
        channel_id=channel_id,
        user_id=uid,
        display_name=name,
        locale=locale,
        permissions=bits,
        roles=roles,
        command=command,
        subcommand=sub,
        options=options,
        focused=focused,
        custom_id=custom_id,
        channel_names=names,
    )


def from_interaction(interaction: discord.Interaction[Any]) -> Incoming:
    """The same from discord.py's parsed object (the gateway): rebuilt as the raw shape and read by
    :func:`from_payload`, so both transports are held to one set of rules."""
    try:
        raw = _raw(interaction)
    except (AttributeError, TypeError, ValueError) as e:  # no user (MISSING), an odd shape
        raise BadInteraction(f"unreadable interaction ({type(e).__name__})") from None
    return from_payload(raw)


def _raw(interaction: discord.Interaction[Any]) -> dict[str, Any]:
    user = interaction.user
    person: dict[str, Any] = {
        "id": str(user.id),
        "username": user.name,
        "global_name": getattr(user, "global_name", None),
    }
    raw: dict[str, Any] = {
        "id": str(interaction.id),
        "type": interaction.type.value,
        "token": interaction.token,
        "application_id": str(interaction.application_id),
        "locale": interaction.locale.value,
        "data": interaction.data,
    }
    if interaction.guild_id is not None:
        raw["guild_id"] = str(interaction.guild_id)
        roles = getattr(user, "roles", None) or []
        raw["member"] = {
            "user": person,
            "nick": getattr(user, "nick", None),
            "permissions": str(interaction.permissions.value),
            # @everyone's id is the guild's own: not a role anyone was given
            "roles": [str(r.id) for r in roles if r.id != interaction.guild_id],
        }
    else:
        raw["user"] = person
    if interaction.channel_id is not None:
        raw["channel_id"] = str(interaction.channel_id)
    return raw


# --------------------------------------------------------------------------- the core's commands

MANAGE_VERBS = {"start": Verb.START, "end": Verb.END, "cancel": Verb.CANCEL}


def _cut(text: str) -> str:
    """Options longer than we parse are cut just past the limit: the core then refuses them plainly."""
    return text[: MAX_INPUT + 1]


def _channel(channel_id: str, inc: Incoming) -> ChatRef | None:
    """A channel option (its id) as a channel of the interaction's guild; None when absent or odd."""
    if not (channel_id.isascii() and channel_id.isdigit()) or len(channel_id) > 20 or inc.guild_id is None:
        return None
    return chat_ref(channel_id, inc.guild_id)


def to_command(inc: Incoming, space: str) -> Command | None:
    """The ``/space`` subcommand as the core's inbound command (the options are typed: nothing to parse
    but the time, which the core reads). ``space``: the Space the member named."""
    sub, opt = inc.subcommand, inc.option
    if sub == "schedule":
        voice = opt("voice_channel")
        return Schedule(
            title=opt("title"),
            when=_cut(opt("when")),
            tz=opt("timezone") or None,
            description=_cut(opt("description")),
            voice=_channel(voice, inc),
            source=_cut(opt("source")),
        )
    if sub == "list":
        return ListSpaces()
    if sub == "start":
        return Manage(Verb.START, space, command="space start", source=_cut(opt("source")))
    if sub in MANAGE_VERBS:
        return Manage(MANAGE_VERBS[sub], space, command=f"space {sub}")
    if sub == "source":
        return SetSource(space, _cut(opt("source")))
    if sub in ("bridge", "unbridge"):
        channel = _channel(opt("channel"), inc)
        # named as the member picked it (answers are escaped text: a <#id> mention would show as typed)
        label = f"#{inc.channel_names.get(channel.id, channel.id)}" if channel is not None else ""
        return Bridge(space, channel, label, remove=sub == "unbridge")
    if sub == "reschedule":
        return Reschedule(space, opt("when"))
    if sub == "rename":
        return Rename(space, opt("title"))
    if sub == "link":
        return Link(opt("code"))
    if sub == "unlink":
        return Unlink()
    return None


# the core's texts name the commands as typed in a chat ("/rename <id> …"); on Discord they are subcommands
SUBCOMMANDS = frozenset(
    {
        "schedule",
        "list",
        "start",
        "end",
        "cancel",
        "reschedule",
        "rename",
        "source",
        "bridge",
        "unbridge",
        "link",
        "unlink",
    }
)
_AS_SUBCOMMAND = {
    "source": "source",
    "rename": "rename",
    "reschedule": "reschedule",
    "cancel": "cancel",
    "start": "start",
    "live": "start",
    "end": "end",
    "spaces": "list",
    "link": "link",
    "unlink": "unlink",
}


def discord_commands(text: str) -> str:
    """The commands a text names (in `code` spans) as Discord's: `/rename <id> …` → `/space rename <id> …`,
    `/spaces` → `/space list`, and a chat's one-line `/space tomorrow 20:00 AMA` → `/space schedule` (on
    Discord the title and the time are options of their own). Commands Discord does not have stay."""

    def schedule(span: str) -> str:
        words = span.strip("`").removeprefix("/space").split(maxsplit=1)
        return span if words and words[0] in SUBCOMMANDS else "`/space schedule`"

    return as_subcommands(text, _AS_SUBCOMMAND, space=schedule)


# --------------------------------------------------------------------------- answers (raw shapes)


def clip(text: str, limit: int = MAX_CHOICE_TEXT) -> str:
    """At most ``limit`` characters (choice names and values), with an ellipsis when cut."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def choices_body(choices: list[tuple[str, str]]) -> dict[str, Any]:
    """The autocomplete result (interaction response type 8)."""
    return {
        "type": 8,
        "data": {"choices": [{"name": clip(n), "value": clip(v)} for n, v in choices[:MAX_CHOICES]]},
    }


def defer_body(*, ephemeral: bool) -> dict[str, Any]:
    """DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE (type 5): "thinking…", the answer follows as a follow-up."""
    return {"type": 5, "data": {"flags": EPHEMERAL if ephemeral else 0}}


def followup_body(text: str, *, ephemeral: bool) -> dict[str, Any]:
    """A follow-up message: never pings anyone, whatever a title contains."""
    return {
        "content": text[:2000],
        "flags": EPHEMERAL if ephemeral else 0,
        "allowed_mentions": {"parse": []},
    }


# --------------------------------------------------------------------------- time zones (autocomplete)

# offered first when nothing is typed yet: where most communities are
COMMON_ZONES = (
    "UTC",
    "Europe/London",
    "Europe/Paris",
    "Europe/Berlin",
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "America/Sao_Paulo",
    "Asia/Kolkata",
    "Asia/Tokyo",
    "Australia/Sydney",
)


@functools.cache
def _zones() -> tuple[str, ...]:
    """IANA names people pick (Area/Location and UTC), sorted; read once, lazily (no import-time I/O)."""
    return tuple(
        sorted(
            z
            for z in zoneinfo.available_timezones()
            if ("/" in z and not z.startswith(("posix/", "right/", "Etc/", "SystemV/"))) or z == "UTC"
        )
    )


def matching_zones(typed: str, limit: int = MAX_CHOICES) -> list[str]:
    """Zones for what was typed: names starting with it first ("europe/pa"), then zones whose city starts
    with it ("paris", "new york"), then any containing it. Case and spaces/underscores do not matter."""
    query = "_".join(typed.strip().lower().split())[:64]
    if not query:
        return list(COMMON_ZONES[:limit])
    zones = _zones()
    first = [z for z in zones if z.lower().startswith(query)]
    city = [z for z in zones if z.rsplit("/", 1)[-1].lower().startswith(query) and z not in first]
    taken = set(first) | set(city)
    rest = [z for z in zones if query in z.lower() and z not in taken]
    return (first + city + rest)[:limit]
