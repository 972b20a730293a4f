"""Discord interaction payloads → Incoming: exact payloads as Discord sends them, and hostile ones."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bots.discord import translate as tr
from bots.discord.translate import BadInteraction, Incoming, Kind, from_payload
from core.notices import Verb
from core.refs import Platform, UserRef
from core.services.inbound import (
    Bridge,
    Link,
    ListSpaces,
    Manage,
    Rename,
    Reschedule,
    Schedule,
    SetSource,
    Unlink,
)

GUILD, CHANNEL, USER, APP = "1100000000000000001", "1200000000000000002", "1300000000000000003", "99"

# a slash command as Discord posts it to the interactions endpoint (trimmed of fields we do not read)
SCHEDULE: dict[str, Any] = {
    "id": "1400000000000000004",
    "application_id": APP,
    "type": 2,
    "token": "aW50ZXJhY3Rpb246dG9rZW4",
    "version": 1,
    "guild_id": GUILD,
    "channel_id": CHANNEL,
    "channel": {"id": CHANNEL, "type": 0},
    "locale": "fr",
    "guild_locale": "en-US",
    "app_permissions": "2248473465835073",
    "member": {
        "user": {"id": USER, "username": "ada", "global_name": "Ada L", "discriminator": "0"},
        "nick": None,
        "roles": ["1500000000000000005"],
        "permissions": str(1 << 33 | 1 << 10),
        "joined_at": "2026-01-01T00:00:00+00:00",
    },
    "data": {
        "id": "1600000000000000006",
        "name": "space",
        "type": 1,
        "options": [
            {
                "type": 1,
                "name": "schedule",
                "options": [
                    {"type": 3, "name": "title", "value": "Weekly AMA"},
                    {"type": 3, "name": "when", "value": "tomorrow 20:00"},
                    {"type": 7, "name": "voice_channel", "value": "1700000000000000007"},
                ],
            }
        ],
    },
}


def test_a_slash_command() -> None:
    inc = from_payload(SCHEDULE)
    assert inc.kind is Kind.COMMAND
    assert (inc.id, inc.application_id, inc.token) == ("1400000000000000004", APP, SCHEDULE["token"])
    assert (inc.guild_id, inc.channel_id, inc.user_id) == (GUILD, CHANNEL, USER)
    assert inc.display_name == "Ada L"
    assert inc.locale == "fr"
    assert (inc.command, inc.subcommand) == ("space", "schedule")
    assert dict(inc.options) == {
        "title": "Weekly AMA",
        "when": "tomorrow 20:00",
        "voice_channel": "1700000000000000007",
    }
    assert inc.roles == frozenset({"1500000000000000005"})
    assert inc.manages_events
    assert inc.request_id == "dc:1400000000000000004"
    assert inc.user == UserRef(Platform.DISCORD, USER)  # users carry no scope: their ids are global
    assert inc.chat is not None and inc.chat.id == CHANNEL and inc.chat.platform is Platform.DISCORD
    assert tr.scope_of(inc.chat) in (GUILD, None)  # the guild, once references carry one


def test_the_token_never_shows_in_a_log_line() -> None:
    assert SCHEDULE["token"] not in repr(from_payload(SCHEDULE))


def test_nickname_first_then_global_name_then_username() -> None:
    p = copy.deepcopy(SCHEDULE)
    p["member"]["nick"] = "Captain"
    assert from_payload(p).display_name == "Captain"
    p["member"]["nick"] = None
    p["member"]["user"]["global_name"] = None
    assert from_payload(p).display_name == "ada"


@pytest.mark.parametrize(
    ("discord_locale", "ours"), [("fr", "fr"), ("en-US", "en"), ("en-GB", "en"), ("de", "en"), (None, "en")]
)
def test_locales(discord_locale: str | None, ours: str) -> None:
    p = copy.deepcopy(SCHEDULE)
    p["locale"] = discord_locale
    assert from_payload(p).locale == ours


@pytest.mark.parametrize(
    ("bits", "manages"),
    [(0, False), (1 << 10, False), (1 << 33, True), (1 << 3, True), ((1 << 33) | (1 << 3), True)],
)
def test_manage_events_or_administrator(bits: int, manages: bool) -> None:
    p = copy.deepcopy(SCHEDULE)
    p["member"]["permissions"] = str(bits)
    assert from_payload(p).manages_events is manages


def test_autocomplete_names_the_focused_option() -> None:
    p = copy.deepcopy(SCHEDULE)
    p["type"] = 4
    p["data"]["options"][0]["options"] = [
        {"type": 3, "name": "title", "value": "AMA"},
        {"type": 3, "name": "when", "value": "tomorrow 8pm", "focused": True},
    ]
    inc = from_payload(p)
    assert inc.kind is Kind.AUTOCOMPLETE and inc.focused == "when" and inc.option("when") == "tomorrow 8pm"


def test_a_subcommand_without_options() -> None:
    p = copy.deepcopy(SCHEDULE)
    p["data"]["options"] = [{"type": 1, "name": "list"}]
    inc = from_payload(p)
    assert inc.subcommand == "list" and dict(inc.options) == {}


def test_a_button_press() -> None:
    p = copy.deepcopy(SCHEDULE)
    p["type"] = 3
    p["data"] = {"custom_id": "sub:abcdefghjk", "component_type": 2}
    p["message"] = {"id": "1800000000000000008", "channel_id": CHANNEL}
    inc = from_payload(p)
    assert inc.kind is Kind.COMPONENT and inc.custom_id == "sub:abcdefghjk"
    assert tr.parse_button(inc.custom_id) == tr.Button(Verb.SUBSCRIBE, "abcdefghjk")


@pytest.mark.parametrize(
    ("custom_id", "parsed"),
    [
        ("sub:abcdefghjk", tr.Button(Verb.SUBSCRIBE, "abcdefghjk")),
        ("unsub:abcdefghjk", tr.Button(Verb.UNSUBSCRIBE, "abcdefghjk")),
        ("start:abcdefghjk", tr.Button(Verb.START, "abcdefghjk")),
        ("end:abcdefghjk", tr.Button(Verb.END, "abcdefghjk")),
        ("cancel:abcdefghjk", tr.Button(Verb.CANCEL, "abcdefghjk")),
        ("share:abcdefghjk", tr.Button(None, "abcdefghjk")),
        ("sub:ABCDEFGHJK", None),
        ("sub:../../etc", None),
        ("nuke:abcdefghjk", None),
        ("", None),
        (None, None),
        ("sub:" + "a" * 200, None),
    ],
)
def test_buttons(custom_id: str | None, parsed: tr.Button | None) -> None:
    assert tr.parse_button(custom_id) == parsed


def test_a_dm_has_a_user_and_no_guild() -> None:
    p = copy.deepcopy(SCHEDULE)
    del p["guild_id"], p["member"]
    p["user"] = {"id": USER, "username": "ada"}
    inc = from_payload(p)
    assert inc.guild_id is None and inc.user_id == USER and not inc.manages_events
    assert inc.chat is not None and tr.scope_of(inc.chat) is None


def test_ping() -> None:
    inc = from_payload({"id": "1", "type": 1, "application_id": APP, "token": "x", "version": 1})
    assert inc.kind is Kind.PING


def _broken(**changes: Any) -> dict[str, Any]:
    p = copy.deepcopy(SCHEDULE)
    for path, value in changes.items():
        node = p
        *parents, last = path.split("__")
        for part in parents:
            node = node[part]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value
    return p


_DELETE = object()


@pytest.mark.parametrize(
    "payload",
    [
        [],
        "x",
        _broken(type=99),
        _broken(type="2"),
        _broken(type=True),
        _broken(id="12abc"),
        _broken(id=True),
        _broken(token=_DELETE),
        _broken(token=5),
        _broken(member="x"),
        _broken(member__user=_DELETE),
        _broken(member__user__id="../1"),
        _broken(member__permissions="-1"),
        _broken(member__permissions=8),
        _broken(member__roles="1"),
        _broken(member__roles=[{"id": "1"}]),
        _broken(data="x"),
        _broken(data__options="x"),
        _broken(data__options=[{"type": 1, "name": "schedule", "options": [{"name": "t", "value": {}}]}]),
        _broken(data__name=_DELETE),
        _broken(guild_id="guild"),
        _broken(member=_DELETE),  # no user at all
    ],
)
def test_hostile_or_odd_payloads_are_refused_plainly(payload: object) -> None:
    with pytest.raises(BadInteraction):
        from_payload(payload)


def test_very_long_option_values_are_cut_just_past_what_we_parse() -> None:
    p = _broken()
    p["data"]["options"][0]["options"][0]["value"] = "x" * 6000
    assert len(from_payload(p).option("title")) == tr.MAX_INPUT + 1


def test_same_guild() -> None:
    inc = from_payload(SCHEDULE)
    assert tr.same_guild(tr.chat_ref(CHANNEL, GUILD), inc)
    other_guild = tr.chat_ref("1900000000000000009", "2000000000000000010")
    if tr.scope_of(other_guild) is not None:
        assert not tr.same_guild(other_guild, inc)
    dm = from_payload(_broken(guild_id=_DELETE))
    assert not tr.same_guild(tr.chat_ref(CHANNEL, GUILD), dm)


@pytest.mark.parametrize(
    ("typed", "first"),
    [("europe/pa", "Europe/Paris"), ("Paris", "Europe/Paris"), ("new york", "America/New_York"), ("", "UTC")],
)
def test_zone_matching(typed: str, first: str) -> None:
    zones = tr.matching_zones(typed)
    assert zones[0] == first and len(zones) <= tr.MAX_CHOICES


def test_zone_matching_finds_nothing_for_nonsense() -> None:
    assert tr.matching_zones("zzzqqq") == []


def test_answer_bodies() -> None:
    assert tr.defer_body(ephemeral=True) == {"type": 5, "data": {"flags": 64}}
    body = tr.followup_body("@everyone look", ephemeral=True)
    assert body["allowed_mentions"] == {"parse": []} and body["flags"] == 64
    choices = tr.choices_body([("x" * 150, "v")] * 30)
    assert len(choices["data"]["choices"]) == 25
    assert len(choices["data"]["choices"][0]["name"]) == 100


def test_incoming_defaults_are_safe() -> None:
    inc = Incoming("1", "tok", APP, Kind.COMMAND)
    assert inc.user is None and inc.chat is None and not inc.manages_events and not inc.has_role(None)


# --------------------------------------------------------------------------- to the core's commands


def _sub(name: str, *options: tuple[str, object, int]) -> dict[str, Any]:
    p = copy.deepcopy(SCHEDULE)
    p["data"]["options"] = [
        {"type": 1, "name": name, "options": [{"name": n, "value": v, "type": k} for n, v, k in options]}
    ]
    return p


def test_schedule_becomes_the_core_schedule_form() -> None:
    cmd = tr.to_command(from_payload(SCHEDULE), "")
    assert cmd == Schedule(
        title="Weekly AMA",
        when="tomorrow 20:00",
        tz=None,
        description="",
        voice=tr.chat_ref("1700000000000000007", GUILD),
    )


def test_schedule_with_every_option() -> None:
    p = _sub(
        "schedule",
        ("title", "AMA", 3),
        ("when", "demain 20h", 3),
        ("timezone", "Europe/Paris", 3),
        ("description", "On parle de tout", 3),
    )
    assert tr.to_command(from_payload(p), "") == Schedule(
        title="AMA", when="demain 20h", tz="Europe/Paris", description="On parle de tout"
    )


@pytest.mark.parametrize(
    ("name", "options", "expected"),
    [
        ("list", (), ListSpaces()),
        ("start", (("space", "abcdefghjk", 3),), Manage(Verb.START, "abcdefghjk", command="space start")),
        ("end", (("space", "abcdefghjk", 3),), Manage(Verb.END, "abcdefghjk", command="space end")),
        ("cancel", (("space", "abcdefghjk", 3),), Manage(Verb.CANCEL, "abcdefghjk", command="space cancel")),
        (
            "reschedule",
            (("space", "abcdefghjk", 3), ("when", "friday 18:30", 3)),
            Reschedule("abcdefghjk", "friday 18:30"),
        ),
        ("rename", (("space", "abcdefghjk", 3), ("title", "AMA #2", 3)), Rename("abcdefghjk", "AMA #2")),
        ("link", (), Link("")),
        ("link", (("code", "K7QM4-ZP9XA", 3),), Link("K7QM4-ZP9XA")),
        ("unlink", (), Unlink()),
        (
            "start",
            (("space", "abcdefghjk", 3), ("source", "browser", 3)),
            Manage(Verb.START, "abcdefghjk", command="space start", source="browser"),
        ),
        (
            "source",
            (("space", "abcdefghjk", 3), ("source", "https://radio.example/x", 3)),
            SetSource("abcdefghjk", "https://radio.example/x"),
        ),
        (
            "bridge",
            (("space", "https://spaces.test/s/abcdefghjk", 3), ("channel", "1700000000000000009", 7)),
            Bridge(
                "https://spaces.test/s/abcdefghjk",
                tr.chat_ref("1700000000000000009", GUILD),
                "#1700000000000000009",
            ),
        ),
        (
            "unbridge",
            (("space", "abcdefghjk", 3), ("channel", "1700000000000000009", 7)),
            Bridge(
                "abcdefghjk", tr.chat_ref("1700000000000000009", GUILD), "#1700000000000000009", remove=True
            ),
        ),
        (
            "bridge",
            (("space", "abcdefghjk", 3), ("channel", "not-a-channel", 7)),
            Bridge("abcdefghjk", None, ""),
        ),
        ("nuke", (), None),
    ],
)
def test_subcommands_become_core_commands(
    name: str, options: tuple[tuple[str, object, int], ...], expected: object
) -> None:
    inc = from_payload(_sub(name, *options))
    assert tr.to_command(inc, inc.option("space")) == expected


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            "Wrong title? `/rename abcdefghjk <new title>`",
            "Wrong title? `/space rename abcdefghjk <new title>`",
        ),
        ("`/reschedule <id> <new time>`", "`/space reschedule <id> <new time>`"),
        ("— `/spaces` lists them.", "— `/space list` lists them."),
        (
            "`/live <id>` · `/end <id>` · `/cancel <id>`",
            "`/space start <id>` · `/space end <id>` · `/space cancel <id>`",
        ),
        ("e.g. `/space tomorrow 20:00 Weekly AMA`.", "e.g. `/space schedule`."),
        ("`/space start <id>`", "`/space start <id>`"),
        ("`/tz Europe/Paris`", "`/tz Europe/Paris`"),
        ("no code here: /rename", "no code here: /rename"),
    ],
)
def test_commands_named_as_discord_has_them(text: str, shown: str) -> None:
    assert tr.discord_commands(text) == shown


def test_a_bridged_channel_is_named_as_discord_resolved_it() -> None:
    p = _sub("bridge", ("space", "abcdefghjk", 3), ("channel", "1700000000000000009", 7))
    p["data"]["resolved"] = {
        "channels": {"1700000000000000009": {"id": "1700000000000000009", "name": "Stage"}}
    }
    inc = from_payload(p)
    assert inc.channel_names == {"1700000000000000009": "Stage"}
    assert tr.to_command(inc, "abcdefghjk") == Bridge(
        "abcdefghjk", tr.chat_ref("1700000000000000009", GUILD), "#Stage"
    )
    p["data"]["resolved"] = {"channels": {"1700000000000000009": {"name": 7}}}  # odd: ignored, the id instead
    assert from_payload(p).channel_names == {}
