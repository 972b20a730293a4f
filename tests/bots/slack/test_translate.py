"""Slack payload pieces → core commands: /space subcommands, modal state, buttons (ours only)."""

from __future__ import annotations

from typing import Any

import pytest

from bots.slack.render import LINK, PRESS, RESCHEDULE
from bots.slack.translate import (
    chat_ref,
    error_block,
    locale_of,
    metadata,
    press_from_action,
    read_metadata,
    request_id,
    reschedule_from_action,
    reschedule_from_view,
    schedule_from_view,
    slash_command,
    unformat,
    user_ref,
)
from core.errors import FIELDS
from core.notices import Verb
from core.refs import ChatRef, Platform, UserRef
from core.services.inbound import (
    Help,
    Link,
    ListSpaces,
    Manage,
    Press,
    Rename,
    Reschedule,
    Schedule,
    SetChatZone,
    SetSource,
    SetZone,
    Unlink,
)

SID = "abcdefghjk"
CHAT = ChatRef(Platform.SLACK, "C1", scope="T1")


def test_refs_carry_the_team_as_scope() -> None:
    assert user_ref("T1", "U1") == UserRef(Platform.SLACK, "U1", scope="T1")
    assert chat_ref("T1", "D9") == ChatRef(Platform.SLACK, "D9", scope="T1")
    assert str(user_ref("T1", "U1")) == "slack@T1:user:U1"
    assert request_id("T1", "123.456") == "sl:T1:123.456"


@pytest.mark.parametrize(
    ("info", "locale"),
    [
        ({"locale": "fr-FR"}, "fr"),
        ({"locale": "fr-CA"}, "fr"),
        ({"locale": "en-US"}, "en"),
        ({"locale": "de-DE"}, "en"),
        ({}, "en"),
        ({"locale": 3}, "en"),
        (None, "en"),
    ],
)
def test_locale_of(info: Any, locale: str) -> None:
    assert locale_of(info) == locale


# --------------------------------------------------------------------------- /space


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("", None),
        ("   ", None),
        ("schedule", None),
        ("tomorrow 20:00 Weekly AMA", Schedule(text="tomorrow 20:00 Weekly AMA")),
        ("demain 20h AMA hebdo", Schedule(text="demain 20h AMA hebdo")),
        ("schedule tomorrow 20:00 Weekly AMA", Schedule(text="tomorrow 20:00 Weekly AMA")),
        ("SCHEDULE  friday 18:30 | Launch", Schedule(text="friday 18:30 | Launch")),
        ("list", ListSpaces()),
        ("List", ListSpaces()),
        ("spaces", ListSpaces()),
        ("help", Help()),
        ("list of things friday 20:00", Schedule(text="list of things friday 20:00")),
        ("help desk AMA tomorrow 20:00", Schedule(text="help desk AMA tomorrow 20:00")),
        (f"start {SID}", Manage(Verb.START, SID, command="space start")),
        (f"start {SID} browser", Manage(Verb.START, SID, command="space start", source="browser")),
        (f"live {SID}", Manage(Verb.START, SID, command="space live")),
        (f"end {SID.upper()}", Manage(Verb.END, SID, command="space end")),
        (f"cancel https://spaces.example/s/{SID}", Manage(Verb.CANCEL, SID, command="space cancel")),
        (f"subscribe {SID}", Manage(Verb.SUBSCRIBE, SID, command="space subscribe")),
        (f"unsubscribe {SID}", Manage(Verb.UNSUBSCRIBE, SID, command="space unsubscribe")),
        ("cancel", Manage(Verb.CANCEL, "", command="space cancel")),  # the core answers its usage
        ("cancel culture debate friday 20:00", Schedule(text="cancel culture debate friday 20:00")),
        (f"reschedule {SID} tomorrow 21:00", Reschedule(SID, "tomorrow 21:00")),
        (f"reschedule {SID}", Reschedule(SID, "")),
        ("reschedule", Reschedule("", "")),
        (f"rename {SID} Weekly AMA #2", Rename(SID, "Weekly AMA #2")),
        (f"source {SID} https://radio.example/live.m3u8", SetSource(SID, "https://radio.example/live.m3u8")),
        (f"source {SID} none", SetSource(SID, "none")),
        ("zone Europe/Paris", SetZone("Europe/Paris")),
        ("zone America/Argentina/Buenos_Aires", SetZone("America/Argentina/Buenos_Aires")),
        ("tz UTC", SetZone("UTC")),
        ("zone", SetZone("")),
        ("chatzone Europe/Paris", SetChatZone("Europe/Paris")),
        ("chatzone", SetChatZone("")),
        ("zone out party friday 20:00", Schedule(text="zone out party friday 20:00")),
        # linking chats across platforms (core.services.links)
        ("link", Link("")),
        ("LINK k7qm4-zp9xa", Link("k7qm4-zp9xa")),
        ("link K7QM4 ZP9XA", Link("K7QM4 ZP9XA")),
        ("unlink", Unlink()),
        ("link building workshop friday 20:00", Schedule(text="link building workshop friday 20:00")),
        ("unlink me friday 20:00", Schedule(text="unlink me friday 20:00")),
    ],
)
def test_slash_command(text: str, command: object) -> None:
    assert slash_command(text) == command


@pytest.mark.parametrize(
    ("sent", "typed"),
    [
        ("Q&amp;A &lt;3 &amp;lt;", "Q&A <3 &lt;"),
        ("&lt;!channel&gt; party", "<!channel> party"),
        ("<https://radio.example/live.m3u8>", "https://radio.example/live.m3u8"),
        ("<https://radio.example/a?b=1&amp;c=2|radio.example/a>", "https://radio.example/a?b=1&c=2"),
        ("ask <@U123|ana> in <#C9|general>", "ask @ana in #general"),
        ("ping <@U123>", "ping @U123"),
        ("<!here> <!subteam^S1|@mods>", "@here @mods"),
        ("<mailto:a@b.example|a@b.example>", "a@b.example"),
        ("no markup at all", "no markup at all"),
    ],
)
def test_unformat_gives_back_what_was_typed(sent: str, typed: str) -> None:
    assert unformat(sent) == typed


def test_commands_read_slacks_encoding() -> None:
    assert slash_command("tomorrow 20:00 Q&amp;A &lt;live&gt;") == Schedule(text="tomorrow 20:00 Q&A <live>")
    assert slash_command(f"source {SID} <https://radio.example/live.m3u8>") == SetSource(
        SID, "https://radio.example/live.m3u8"
    )
    assert slash_command(f"cancel <https://spaces.example/s/{SID}>") == Manage(
        Verb.CANCEL, SID, command="space cancel"
    )


def test_a_very_long_command_is_cut_just_past_the_limit_for_the_core_to_refuse() -> None:
    cmd = slash_command("tomorrow 20:00 " + "x" * 5000)
    assert isinstance(cmd, Schedule) and len(cmd.text) == 1001


# --------------------------------------------------------------------------- the schedule modal


def state(
    title: str | None = "Weekly AMA",
    date: str | None = "2026-12-24",
    time: str | None = "20:00",
    zone: str | None = "Europe/Paris",
    description: str | None = "All about it",
) -> dict[str, Any]:
    values: dict[str, Any] = {
        "title": {"title": {"type": "plain_text_input", "value": title}},
        "description": {"description": {"type": "plain_text_input", "value": description}},
        "when": {"date": {"type": "datepicker", "selected_date": date}},
        "time": {"time": {"type": "timepicker", "selected_time": time}},
        "timezone": {
            "timezone": {
                "type": "static_select",
                "selected_option": None if zone is None else {"text": {}, "value": zone},
            }
        },
    }
    return values


def test_schedule_from_view() -> None:
    assert schedule_from_view(state(), locale="en") == Schedule(
        title="Weekly AMA", when="2026-12-24 20:00", tz="Europe/Paris", description="All about it"
    )


def test_schedule_from_view_without_zone_or_description() -> None:
    assert schedule_from_view(state(zone=None, description=None), locale="en") == Schedule(
        title="Weekly AMA", when="2026-12-24 20:00", tz=None, description=""
    )


def test_schedule_from_view_errors_name_their_blocks() -> None:
    assert schedule_from_view(state(title="  ", date=None, time=None), locale="en") == {
        "title": "Give your Space a title.",
        "when": "Pick the day it starts.",
        "time": "Pick the time it starts.",
    }
    assert schedule_from_view(state(time="8pm", zone="../../etc/passwd"), locale="fr") == {
        "time": "Choisissez l'heure à laquelle il commence.",
        "timezone": "Choisissez un fuseau horaire dans la liste.",
    }


def test_schedule_from_view_survives_odd_shapes() -> None:
    odd: dict[str, Any] = {"title": {"title": "x"}, "when": [], "time": {"time": {"selected_time": 5}}}
    for values in ({}, odd):
        errors = schedule_from_view(values, locale="en")
        assert isinstance(errors, dict) and set(errors) == {"title", "when", "time"}


def test_schedule_from_view_leaves_past_dates_to_the_core() -> None:
    # presence and shape only: whether 1999 is past is the core's to say (with its own text)
    assert isinstance(schedule_from_view(state(date="1999-01-01"), locale="en"), Schedule)


def test_error_block_maps_core_fields() -> None:
    assert {f: error_block(f) for f in FIELDS} == {
        "title": "title",
        "when": "when",
        "timezone": "timezone",
        "description": "description",
        "voice": None,
        "source": None,
    }
    assert error_block(None) is None


# --------------------------------------------------------------------------- the reschedule modal


def test_metadata_round_trip_and_hostile_metadata() -> None:
    meta = metadata(SID, "C1")
    assert meta == '{"channel":"C1","space":"abcdefghjk"}'
    assert read_metadata(meta) == {"space": SID, "channel": "C1"}
    assert read_metadata(SID) == {"space": SID}
    assert read_metadata('{"space": "../x", "channel": "<!here>"}') == {}
    assert read_metadata("not json") == {}
    assert read_metadata("[1]") == {}
    assert read_metadata(None) == {}


def test_reschedule_from_view() -> None:
    assert reschedule_from_view(state(), metadata(SID, "C1")) == Reschedule(
        SID, "2026-12-24 20:00 Europe/Paris"
    )
    assert reschedule_from_view(state(zone=None), SID) == Reschedule(SID, "2026-12-24 20:00")
    assert reschedule_from_view(state(time=None), SID) == Reschedule(SID, "")
    assert reschedule_from_view(state(), "garbage") == Reschedule("", "2026-12-24 20:00 Europe/Paris")


# --------------------------------------------------------------------------- buttons


def action(action_id: str, value: Any, kind: str = "button") -> dict[str, Any]:
    return {"action_id": action_id, "block_id": "x", "type": kind, "value": value, "action_ts": "1.2"}


@pytest.mark.parametrize("verb", list(Verb))
def test_press_from_our_buttons(verb: Verb) -> None:
    assert press_from_action(action(PRESS, f"{verb}:{SID}"), via_chat=CHAT) == Press(verb, SID, via_chat=CHAT)
    assert press_from_action(action(PRESS, f"{verb}:{SID}"), via_chat=None) == Press(verb, SID)


@pytest.mark.parametrize(
    "payload",
    [
        action("other.app", f"sub:{SID}"),
        action(LINK, f"sub:{SID}"),
        action(RESCHEDULE, SID),
        action(PRESS, "delete:abcdefghjk"),
        action(PRESS, "sub:../../etc"),
        action(PRESS, "sub:ABCDEFGHJK"),
        action(PRESS, f"sub:{SID}" + "x" * 3000),
        action(PRESS, None),
        action(PRESS, 42),
        action(PRESS, f"sub:{SID}", kind="static_select"),
        {"value": f"sub:{SID}"},
        "sub",
    ],
)
def test_press_refuses_what_we_did_not_produce(payload: Any) -> None:
    assert press_from_action(payload, via_chat=CHAT) is None


def test_reschedule_button() -> None:
    assert reschedule_from_action(action(RESCHEDULE, SID)) == SID
    assert reschedule_from_action(action(RESCHEDULE, "<!here>")) is None
    assert reschedule_from_action(action(PRESS, SID)) is None
