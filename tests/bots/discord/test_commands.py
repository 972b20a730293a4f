"""The application command JSON: Discord's rules for names, lengths and option order."""

from __future__ import annotations

import re
from typing import Any

from bots.discord.commands import commands, space_command

NAME = re.compile(r"^[-_\w]{1,32}$")  # Discord: lower-case where cased, no spaces


def _walk(node: dict[str, Any]) -> list[dict[str, Any]]:
    out = [node]
    for child in node.get("options", []):
        out += _walk(child)
    return out


def test_one_command_for_servers_and_the_bot_dm() -> None:
    [space] = commands()
    # servers (0) and the bot's own DM (1, where link/unlink link a person's accounts); a guild install
    # only, and no deprecated dm_permission beside contexts
    assert space["name"] == "space" and space["contexts"] == [0, 1] and space["integration_types"] == [0]
    assert "dm_permission" not in space


def test_subcommands_and_their_options() -> None:
    subs = {o["name"]: o for o in space_command()["options"]}
    assert list(subs) == [
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
    ]
    # linking chats across platforms (core.services.links): an optional code, nothing to unlink
    assert [(o["name"], o.get("required", False)) for o in subs["link"]["options"]] == [("code", False)]
    assert subs["unlink"]["options"] == []
    schedule = [
        (o["name"], o.get("required", False), o.get("autocomplete", False))
        for o in subs["schedule"]["options"]
    ]
    assert schedule == [
        ("title", True, False),
        ("when", True, True),
        ("timezone", False, True),
        ("voice_channel", False, False),
        ("description", False, False),
        ("source", False, False),
    ]
    voice = subs["schedule"]["options"][3]
    assert voice["type"] == 7 and voice["channel_types"] == [2, 13]
    for verb in ("end", "cancel"):
        [opt] = subs[verb]["options"]
        assert (opt["name"], opt["required"], opt["autocomplete"]) == ("space", True, True)
    # a Space goes live with the source it has, or one given now
    assert [(o["name"], o.get("required")) for o in subs["start"]["options"]] == [
        ("space", True),
        ("source", False),
    ]
    assert [(o["name"], o.get("required")) for o in subs["source"]["options"]] == [
        ("space", True),
        ("source", True),
    ]
    for verb in ("bridge", "unbridge"):
        space, channel = subs[verb]["options"]
        assert (space["name"], space["autocomplete"], channel["name"]) == ("space", True, "channel")
        # only voice and stage channels can be picked
        assert channel["type"] == 7 and channel["required"] and channel["channel_types"] == [2, 13]
    assert [o["name"] for o in subs["reschedule"]["options"]] == ["space", "when"]
    assert all(o.get("autocomplete") for o in subs["reschedule"]["options"])
    assert [(o["name"], o.get("autocomplete", False)) for o in subs["rename"]["options"]] == [
        ("space", True),
        ("title", False),
    ]


def test_names_and_descriptions_follow_discords_limits_in_both_languages() -> None:
    for node in _walk(space_command()):
        assert NAME.match(node["name"]) and node["name"] == node["name"].lower()
        assert NAME.match(node["name_localizations"]["fr"])
        assert 1 <= len(node["description"]) <= 100
        assert 1 <= len(node["description_localizations"]["fr"]) <= 100
        assert node["description"] != node["description_localizations"]["fr"] or node["name"] == "description"


def test_required_options_come_first() -> None:
    for node in _walk(space_command()):
        flags = [o.get("required", False) for o in node.get("options", []) if o["type"] not in (1, 2)]
        assert flags == sorted(flags, reverse=True)
