"""The application commands, as the JSON Discord registers (``PUT /applications/{id}/commands``).

One ``/space`` command with subcommands: Discord shows them as a menu, with typed options, so nothing is
parsed out of free text but the time. Names and descriptions are localized (French) where Discord allows it;
the payload of an interaction always carries the English names, which the handlers read.

Offered in servers and in the bot's DMs: a Space is announced in the channel where it is scheduled, so most
subcommands are for server channels (the handlers answer ``dc.guild_only`` elsewhere), but ``link`` and
``unlink`` in a DM link a PERSON's accounts across platforms (core.services.links), which only a private chat
with the bot can do. Discord decides where a command is offered per command, not per subcommand, hence the
handlers' check. Only a global command reaches DMs: with ``guild_ids`` (per-guild commands, for development)
Discord ignores ``contexts`` and the DM half is simply absent.
"""

from __future__ import annotations

from typing import Any

from core.rules import DESCRIPTION_MAX, TITLE_MAX
from core.texts import t

# interaction contexts (Discord's InteractionContextType) and installation types (ApplicationIntegrationType)
CONTEXT_GUILD = 0
CONTEXT_BOT_DM = 1
GUILD_INSTALL = 0
# option types
SUB_COMMAND = 1
STRING = 3
CHANNEL = 7
# channel types a Space can take place in
GUILD_VOICE = 2
GUILD_STAGE_VOICE = 13
WHEN_MAX = 200  # characters of a time phrase (the parser refuses more anyway)
ZONE_MAX = 64
SPACE_ID_MAX = 100
SOURCE_MAX = 1000  # a stream URL (the core reads no more of one option: core.services.inbound.MAX_INPUT)  # the choice value is the id (10 characters); a typed search may be longer

# the French names of subcommands and options (lower-case, no spaces: Discord's rule for names)
_FR_NAMES = {
    "schedule": "programmer",
    "list": "liste",
    "start": "demarrer",
    "end": "terminer",
    "cancel": "annuler",
    "reschedule": "reprogrammer",
    "rename": "renommer",
    "title": "titre",
    "when": "quand",
    "timezone": "fuseau",
    "voice_channel": "salon_vocal",
    "description": "description",
    "space": "space",
    "source": "source",
    "bridge": "diffuser",
    "unbridge": "retirer",
    "channel": "salon",
    "link": "relier",
    "unlink": "detacher",
    "code": "code",
}


def _texts(name: str, key: str) -> dict[str, Any]:
    return {
        "name": name,
        "name_localizations": {"fr": _FR_NAMES.get(name, name)},
        "description": t("en", key),
        "description_localizations": {"fr": t("fr", key)},
    }


def _string(
    name: str, key: str, *, required: bool = False, autocomplete: bool = False, max_length: int
) -> dict[str, Any]:
    option = {**_texts(name, key), "type": STRING, "required": required, "max_length": max_length}
    if autocomplete:
        option["autocomplete"] = True
    return option


def _space_option() -> dict[str, Any]:
    return _string("space", "dc.opt.space", required=True, autocomplete=True, max_length=SPACE_ID_MAX)


def _source_option(*, required: bool = False) -> dict[str, Any]:
    return _string("source", "dc.opt.source", required=required, max_length=SOURCE_MAX)


def _voice_option(name: str, key: str, *, required: bool) -> dict[str, Any]:
    """A voice or stage channel: Discord's picker offers only those (the core refuses anything else)."""
    return {
        **_texts(name, key),
        "type": CHANNEL,
        "required": required,
        "channel_types": [GUILD_VOICE, GUILD_STAGE_VOICE],
    }


def _sub(name: str, options: list[dict[str, Any]]) -> dict[str, Any]:
    return {**_texts(name, f"dc.cmd.{name}"), "type": SUB_COMMAND, "options": options}


def space_command() -> dict[str, Any]:
    """``/space schedule|list|start|end|cancel|reschedule|rename|source|bridge|unbridge|link|unlink``."""
    schedule = _sub(
        "schedule",
        [
            _string("title", "dc.opt.title", required=True, max_length=TITLE_MAX),
            _string("when", "dc.opt.when", required=True, autocomplete=True, max_length=WHEN_MAX),
            _string("timezone", "dc.opt.timezone", autocomplete=True, max_length=ZONE_MAX),
            _voice_option("voice_channel", "dc.opt.voice_channel", required=False),
            _string("description", "dc.opt.description", max_length=DESCRIPTION_MAX),
            _source_option(),
        ],
    )
    reschedule = _sub(
        "reschedule",
        [
            _space_option(),
            _string("when", "dc.opt.new_when", required=True, autocomplete=True, max_length=WHEN_MAX),
        ],
    )
    return {
        **_texts("space", "dc.cmd.space"),
        "type": 1,  # CHAT_INPUT
        # servers and the bot's own DM (not other people's DMs or group DMs: that would be a user install,
        # which this bot is not). ``contexts`` supersedes the deprecated ``dm_permission``: not sent
        "contexts": [CONTEXT_GUILD, CONTEXT_BOT_DM],
        "integration_types": [GUILD_INSTALL],
        "options": [
            schedule,
            _sub("list", []),
            _sub("start", [_space_option(), _source_option()]),
            _sub("end", [_space_option()]),
            _sub("cancel", [_space_option()]),
            reschedule,
            _sub(
                "rename",
                [_space_option(), _string("title", "dc.opt.new_title", required=True, max_length=TITLE_MAX)],
            ),
            _sub("source", [_space_option(), _source_option(required=True)]),
            # the Space may be another server's: its id or share link is typed (autocomplete offers this
            # member's own), the channel is one of this server's
            _sub(
                "bridge", [_space_option(), _voice_option("channel", "dc.opt.bridge_channel", required=True)]
            ),
            _sub(
                "unbridge",
                [_space_option(), _voice_option("channel", "dc.opt.bridge_channel", required=True)],
            ),
            # this channel and another chat, of any platform, share their Spaces (core.services.links):
            # without a code, a code for the other chat; with one, redeem it here. In the bot's DM the same
            # two link this person's accounts instead (the only subcommands answered there)
            _sub("link", [_string("code", "dc.opt.link_code", max_length=40)]),
            _sub("unlink", []),
        ],
    }


def commands() -> list[dict[str, Any]]:
    """Every application command of the bot (registered in bulk: what is not listed is removed)."""
    return [space_command()]
