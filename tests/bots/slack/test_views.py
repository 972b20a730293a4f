"""Slack views: the modals (ids translate reads back, limits, the zone select) and the App Home."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from bots.slack.render import escape, units
from bots.slack.translate import metadata, reschedule_from_view, schedule_from_view
from bots.slack.views import (
    ITEMS_PER_LIST,
    RESCHEDULE_VIEW,
    SCHEDULE_VIEW,
    ZONES,
    home_view,
    reschedule_modal,
    schedule_modal,
    zone_options,
)
from core.models import Space, SpaceStatus
from core.refs import ChatRef, Platform, UserRef
from core.services.inbound import Reschedule, Schedule
from core.timeparse import parse_when

SID = "abcdefghjk"
NOW = datetime(2026, 12, 7, 22, 30, tzinfo=UTC)  # already the 8th in Tokyo
START = datetime(2026, 12, 24, 19, 0, tzinfo=UTC)
TOKEN = f"<!date^{int(START.timestamp())}^{{date_long_pretty}} {{time}}|Thu 24 Dec 2026, 20:00 CET>"
Z = "\u200b"


def space(**changes: Any) -> Space:
    s = Space(
        id=SID,
        title="Weekly AMA",
        host=UserRef(Platform.SLACK, "U1", scope="T1"),
        chat=ChatRef(Platform.SLACK, "C1", scope="T1"),
        starts_at=START,
        tz="Europe/Paris",
        locale="en",
        created_at=datetime(2026, 12, 1, tzinfo=UTC),
    )
    return dataclasses.replace(s, **changes)


def link(space_id: str) -> str:
    return f"https://spaces.example/s/{space_id}"


def texts(node: Any) -> list[tuple[str, str]]:
    """Every (key, text) pair of text objects and string leaves in a view, to check limits."""
    out: list[tuple[str, str]] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if isinstance(v, dict) and v.get("type") in ("plain_text", "mrkdwn"):
                out.append((k, v["text"]))
            out += texts(v)
    elif isinstance(node, list):
        for v in node:
            out += texts(v)
    return out


def blocks_by_id(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {b["block_id"]: b for b in view["blocks"] if "block_id" in b}


# --------------------------------------------------------------------------- the schedule modal


def test_schedule_modal_is_exact_apart_from_the_zone_options() -> None:
    view = schedule_modal("en", tz="Asia/Tokyo", now=NOW, private_metadata=metadata(channel_id="C1"))
    zone = blocks_by_id(view)["timezone"]["element"]
    assert zone["initial_option"] == {
        "text": {"type": "plain_text", "text": "(UTC+09:00) Tokyo — Asia/Tokyo", "emoji": True},
        "value": "Asia/Tokyo",
    }
    for b in view["blocks"]:
        if b["block_id"] == "timezone":
            b["element"]["options"] = "…"
    pt = lambda s: {"type": "plain_text", "text": s, "emoji": True}  # noqa: E731
    assert view == {
        "type": "modal",
        "callback_id": SCHEDULE_VIEW,
        "title": pt("Schedule a Space"),
        "submit": pt("Schedule"),
        "close": pt("Close"),
        "private_metadata": '{"channel":"C1"}',
        "blocks": [
            {
                "type": "input",
                "block_id": "title",
                "label": pt("Title"),
                "element": {
                    "type": "plain_text_input",
                    "action_id": "title",
                    "max_length": 100,
                    "focus_on_load": True,
                    "placeholder": pt("e.g. Weekly AMA"),
                },
                "optional": False,
            },
            {
                "type": "input",
                "block_id": "description",
                "label": pt("Description"),
                "element": {
                    "type": "plain_text_input",
                    "action_id": "description",
                    "multiline": True,
                    "max_length": 1000,
                    "placeholder": pt("What is it about? (optional)"),
                },
                "optional": True,
            },
            {
                "type": "input",
                "block_id": "when",
                "label": pt("Date"),
                # today where the person is (the 8th in Tokyo while it is the 7th in UTC)
                "element": {
                    "type": "datepicker",
                    "action_id": "date",
                    "placeholder": pt("Pick a day"),
                    "initial_date": "2026-12-08",
                },
                "optional": False,
            },
            {
                "type": "input",
                "block_id": "time",
                "label": pt("Time"),
                "element": {"type": "timepicker", "action_id": "time", "placeholder": pt("Pick a time")},
                "optional": False,
            },
            {
                "type": "input",
                "block_id": "timezone",
                "label": pt("Time zone"),
                "element": {
                    "type": "static_select",
                    "action_id": "timezone",
                    "placeholder": pt("The zone the time is in"),
                    "options": "…",
                    "initial_option": zone["initial_option"],
                },
                "optional": False,
            },
        ],
    }


@pytest.mark.parametrize("locale", ["en", "fr"])
def test_modals_are_within_limits(locale: str) -> None:
    for view in (
        schedule_modal(locale, tz="Europe/Paris", now=NOW, private_metadata="{}"),
        reschedule_modal(locale, space(title="x" * 5000), tz="Europe/Paris", private_metadata=SID),
    ):
        assert len(view["blocks"]) <= 100
        assert len(view["private_metadata"]) <= 3000
        for key in ("title", "submit", "close"):
            assert units(view[key]["text"]) <= 24
        for key, text in texts(view["blocks"]):
            limit = {"label": 2000, "placeholder": 150, "hint": 2000, "text": 3000}[key]
            assert units(text) <= limit, (key, text)
        for b in view["blocks"]:
            for option in b.get("element", {}).get("options", []):
                assert units(option["text"]["text"]) <= 75 and len(option["value"]) <= 150


def test_french_modal() -> None:
    view = schedule_modal("fr", tz="Europe/Paris", now=NOW, private_metadata="{}")
    assert view["title"]["text"] == "Programmer un Space"
    assert [b["label"]["text"] for b in view["blocks"]] == [
        "Titre",
        "Description",
        "Date",
        "Heure",
        "Fuseau horaire",
    ]


def test_metadata_over_3000_characters_fails_loudly() -> None:
    with pytest.raises(ValueError):
        schedule_modal("en", tz="UTC", now=NOW, private_metadata="x" * 3001)


def test_zone_select_offers_the_persons_zone_first_when_missing() -> None:
    options, initial = zone_options("Asia/Kathmandu", NOW)
    assert (
        options[0]
        == initial
        == {
            "text": {"type": "plain_text", "text": "(UTC+05:45) Kathmandu — Asia/Kathmandu", "emoji": True},
            "value": "Asia/Kathmandu",
        }
    )
    assert sorted(o["value"] for o in options[1:]) == sorted(ZONES)
    assert len(options) == len(ZONES) + 1 <= 100


def test_zone_select_keeps_a_listed_zone_in_place_and_orders_by_offset() -> None:
    options, initial = zone_options("Europe/Paris", NOW)
    values = [o["value"] for o in options]
    assert initial["value"] == "Europe/Paris" and len(values) == len(ZONES)
    assert values[0] == "Pacific/Honolulu" and values[-1] == "Pacific/Auckland"
    offsets = [o["text"]["text"][4:10] for o in options]  # "(UTC+01:00) …" → "+01:00"
    minutes = [(1 if x[0] == "+" else -1) * (int(x[1:3]) * 60 + int(x[4:6])) for x in offsets]
    assert minutes == sorted(minutes)
    # summer time as it stands then: Sydney is UTC+11 in December
    assert any(o["text"]["text"] == "(UTC+11:00) Sydney — Australia/Sydney" for o in options)


@pytest.mark.parametrize("tz", ["", "Not/AZone", "../../etc/passwd", "x" * 200])
def test_an_unknown_slack_zone_falls_back_to_utc(tz: str) -> None:
    _, initial = zone_options(tz, NOW)
    assert initial == {
        "text": {"type": "plain_text", "text": "(UTC+00:00) UTC", "emoji": True},
        "value": "UTC",
    }


@pytest.mark.parametrize("zone", ZONES)
def test_every_offered_zone_reads_back_through_the_core(zone: str) -> None:
    # what reschedule_from_view sends the core ("YYYY-MM-DD HH:MM Zone") is a time the core reads in that zone
    parsed = parse_when(f"2026-12-24 20:00 {zone}", tz="UTC", now=NOW)
    assert parsed.tz == zone and parsed.local.hour == 20


def submitted(view: dict[str, Any], title: str = "AMA", time: str | None = None) -> dict[str, Any]:
    """The state Slack would send back for a view left at its initial values (and a title typed)."""
    values: dict[str, Any] = {}
    for b in view["blocks"]:
        if b["type"] != "input":
            continue
        el = b["element"]
        state: dict[str, Any] = {"type": el["type"]}
        if el["type"] == "plain_text_input":
            state["value"] = title if el["action_id"] == "title" else None
        elif el["type"] == "datepicker":
            state["selected_date"] = el.get("initial_date")
        elif el["type"] == "timepicker":
            state["selected_time"] = time or el.get("initial_time")
        else:
            state["selected_option"] = el.get("initial_option")
        values[b["block_id"]] = {el["action_id"]: state}
    return values


def test_schedule_modal_round_trips_through_translate() -> None:
    view = schedule_modal("en", tz="Asia/Tokyo", now=NOW, private_metadata="{}")
    assert schedule_from_view(submitted(view, time="20:00"), locale="en") == Schedule(
        title="AMA", when="2026-12-08 20:00", tz="Asia/Tokyo", description=""
    )
    assert schedule_from_view(submitted(view), locale="en") == {"time": "Pick the time it starts."}


# --------------------------------------------------------------------------- the reschedule modal


def test_reschedule_modal_presets_the_current_time_and_shows_the_title_escaped() -> None:
    view = reschedule_modal("en", space(title="<!here> *AMA*"), tz="America/New_York", private_metadata=SID)
    assert view["callback_id"] == RESCHEDULE_VIEW
    assert view["blocks"][0] == {
        "type": "section",
        "text": {
            "type": "mrkdwn",
            "text": f"“&lt;!here&gt; {Z}*{Z}AMA{Z}*{Z}” is now scheduled for {TOKEN}.",
            "verbatim": True,
        },
    }
    by_id = blocks_by_id(view)
    assert by_id["when"]["element"]["initial_date"] == "2026-12-24"
    assert by_id["time"]["element"]["initial_time"] == "14:00"  # 19:00 UTC in New York
    assert by_id["timezone"]["element"]["initial_option"]["value"] == "America/New_York"
    assert reschedule_from_view(submitted(view), SID) == Reschedule(SID, "2026-12-24 14:00 America/New_York")


# --------------------------------------------------------------------------- the App Home


def test_home_lists_mine_and_followed_with_time_tokens_and_links() -> None:
    live = space(id="bcdefghjkm", title="Live <!channel>", status=SpaceStatus.LIVE, started_at=START)
    view = home_view("en", mine=[space()], followed=[live], workspace=None, link=link)
    assert view == {
        "type": "home",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "Your upcoming Spaces", "emoji": True}},
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"*<{link(SID)}|Weekly AMA>*\n{TOKEN} · id `{SID}`",
                    "verbatim": True,
                },
            },
            {"type": "divider"},
            {"type": "header", "text": {"type": "plain_text", "text": "Spaces you follow", "emoji": True}},
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"*🟣 LIVE <{link('bcdefghjkm')}|Live &lt;!channel&gt;>*\n{TOKEN} · id `bcdefghjkm`",
                    "verbatim": True,
                },
            },
            {"type": "divider"},
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": "`/space help` lists every command.", "verbatim": True}
                ],
            },
        ],
    }


def test_home_empty_states_say_what_to_do_and_admins_see_the_workspace() -> None:
    view = home_view("en", mine=[], followed=[], workspace=[], link=link)
    contexts = [b["elements"][0]["text"] for b in view["blocks"] if b["type"] == "context"]
    assert contexts == [
        "You have nothing scheduled. Type `/space tomorrow 20:00 Town hall` in a channel, or just `/space` for a form.",
        "You follow no Space yet: press 🔔 Set reminder on a Space's card.",
        "Nothing is scheduled in this workspace.",
        "`/space help` lists every command.",
    ]
    headers = [b["text"]["text"] for b in view["blocks"] if b["type"] == "header"]
    assert headers == ["Your upcoming Spaces", "Spaces you follow", "All upcoming Spaces in this workspace"]
    fr = home_view("fr", mine=[], followed=[], workspace=None, link=link)
    assert [b["text"]["text"] for b in fr["blocks"] if b["type"] == "header"] == [
        "Vos Spaces à venir",
        "Les Spaces que vous suivez",
    ]


def test_home_caps_each_list_and_stays_within_100_blocks() -> None:
    many = [space(title="t" * 5000) for _ in range(60)]
    view = home_view("en", mine=many, followed=many, workspace=many, link=link)
    assert len(view["blocks"]) <= 100
    sections = [b for b in view["blocks"] if b["type"] == "section"]
    assert len(sections) == 3 * ITEMS_PER_LIST
    assert all(units(b["text"]["text"]) <= 3000 for b in sections)
    more = [b["elements"][0]["text"] for b in view["blocks"] if b["type"] == "context"]
    assert more[0] == "…and 45 more: `/space list` in a channel shows its Spaces."


def test_home_does_not_link_a_url_that_could_break_out() -> None:
    view = home_view("en", mine=[space()], followed=[], workspace=None, link=lambda _: "https://x|<!here>")
    assert view["blocks"][1]["text"]["text"].startswith("*Weekly AMA*\n")
    assert escape("x") == "x"
    json.dumps(view)  # plain JSON all the way down


@pytest.mark.parametrize("locale", ["en", "fr"])
def test_every_view_passes_the_emulators_checks(locale: str) -> None:
    from tests.fakes.slack_spec import view_problems

    long = space(title="<!here>*" * 700)
    many = [long] * 40
    for view in (
        schedule_modal(locale, tz="Asia/Kathmandu", now=NOW, private_metadata=metadata(SID, "C1")),
        reschedule_modal(locale, long, tz="Nowhere/Else", private_metadata=SID),
        home_view(locale, mine=many, followed=many, workspace=many, link=link),
        home_view(locale, mine=[], followed=[], workspace=None, link=link),
    ):
        assert view_problems(view) == []
