"""Discord rendering: exact payloads, hostile titles that show as typed and ping nobody, and limits."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import pytest

from bots.discord.render import (
    CONTENT_LIMIT,
    DESCRIPTION_LIMIT,
    TITLE_LIMIT,
    components,
    escape,
    render,
    render_mentions,
    timestamp,
)
from core.models import DeliveryKind, Space, SpaceView
from core.notices import Action, ActionKind, Notice, for_delivery, problem_payload, reply
from core.refs import ChatRef, Platform, UserRef

LINK = "https://spaces.example/s/abcdefghjk"
CARD = Notice(
    kind="card",
    title="Weekly AMA",
    lines=("🗓 Thu 26 Nov 2026, 20:00 CET", "Host: Ana"),
    actions=(
        Action("🔔 Set reminder", ActionKind.CALLBACK, "sub:abcdefghjk"),
        Action("Share", ActionKind.URL, LINK, share=True),
        Action("▶ Start", ActionKind.CALLBACK, "start:abcdefghjk", host_only=True),
    ),
    space_id="abcdefghjk",
    link=LINK,
)


def test_card_payload_is_exact() -> None:
    assert render(CARD).payload(nonce="n1") == {
        "content": "",
        "embeds": [
            {
                "type": "rich",
                "title": "Weekly AMA",
                "description": "🗓 Thu 26 Nov 2026, 20:00 CET\nHost: Ana",
                "url": LINK,
                "color": 0x5865F2,
            }
        ],
        "components": [
            {
                "type": 1,
                "components": [
                    {"type": 2, "style": 1, "label": "🔔 Set reminder", "custom_id": "sub:abcdefghjk"},
                    {"type": 2, "style": 5, "label": "Share", "url": LINK},
                ],
            },
            {
                "type": 1,
                "components": [{"type": 2, "style": 2, "label": "▶ Start", "custom_id": "start:abcdefghjk"}],
            },
        ],
        "allowed_mentions": {"parse": []},
        "nonce": "n1",
        "enforce_nonce": True,
    }


def test_edit_payload_has_no_nonce_and_clears_what_went_away() -> None:
    live = Notice(kind="card", title="Weekly AMA", marker="🟣 LIVE", space_id="abcdefghjk")
    assert render(live).payload() == {
        "content": "",
        "embeds": [{"type": "rich", "title": "🟣 LIVE Weekly AMA", "color": 0x9B59B6}],
        "components": [],
        "allowed_mentions": {"parse": []},
    }


@pytest.mark.parametrize(
    ("title", "shown"),
    [
        ("@everyone come", "@\u200beveryone come"),
        ("@here", "@\u200bhere"),
        ("hi <@123>", "hi \\<@123\\>"),
        ("<@&1> role", "\\<@&1\\> role"),
        ("**x**", "\\*\\*x\\*\\*"),
        ("[click](https://evil)", "\\[click\\]\\(https://evil\\)"),
        ("# big", "\\# big"),
        ("`code` ~~s~~ ||spoiler|| __u__", "\\`code\\` \\~\\~s\\~\\~ \\|\\|spoiler\\|\\| \\_\\_u\\_\\_"),
    ],
)
def test_hostile_titles_show_as_typed(title: str, shown: str) -> None:
    assert escape(title) == shown
    payload = render(dataclasses.replace(CARD, title=title)).payload()
    assert payload["embeds"][0]["title"] == shown
    assert payload["allowed_mentions"] == {"parse": []}


def test_user_text_in_lines_is_escaped_but_code_spans_stay() -> None:
    n = dataclasses.replace(CARD, lines=("Host: @everyone <@1>", "try `/space list`"))
    assert render(n).payload()["embeds"][0]["description"] == (
        "Host: @\u200beveryone \\<@1\\>\ntry `/space list`"
    )


def test_long_titles_fit_and_never_end_in_half_an_escape() -> None:
    for title in ("a" * 300, "*" * 300, "é" * 300, "<@1>" * 100):
        shown = render(dataclasses.replace(CARD, title=title)).payload()["embeds"][0]["title"]
        assert len(shown) <= TITLE_LIMIT
        assert shown.endswith("…")
        body = shown.removesuffix("…")
        assert len(body) - len(body.rstrip("\\")) in (0, 2, 4)  # never a lone trailing backslash


def test_long_descriptions_drop_whole_lines() -> None:
    n = dataclasses.replace(CARD, lines=tuple("*" * 900 for _ in range(10)))
    description = render(n).payload()["embeds"][0]["description"]
    assert len(description) <= DESCRIPTION_LIMIT
    assert description.endswith("\n…")
    assert all(line == "\\*" * 900 for line in description.split("\n")[:-1])


def test_custom_id_over_100_characters_fails_loudly() -> None:
    with pytest.raises(ValueError, match="custom_id"):
        components((Action("x", ActionKind.CALLBACK, "x" * 101),))


def test_more_than_five_buttons_wrap_to_a_new_row() -> None:
    rows = components(tuple(Action(str(i), ActionKind.CALLBACK, f"sub:{i}") for i in range(7)))
    assert [len(r["components"]) for r in rows] == [5, 2]


def test_reply_is_plain_content_quoting_its_message() -> None:
    r = render(reply("Scheduled **x** for @everyone", reply_to="42"))
    assert r.payload() == {
        "content": "Scheduled \\*\\*x\\*\\* for @\u200beveryone",
        "embeds": [],
        "components": [],
        "allowed_mentions": {"parse": []},
        "message_reference": {"message_id": "42", "fail_if_not_exists": False},
    }


def test_mentions_name_exactly_their_users_and_nothing_else() -> None:
    users = {UserRef(Platform.DISCORD, "111"): "Ana", UserRef(Platform.DISCORD, "222"): "@everyone"}
    notice = dataclasses.replace(CARD, title="@everyone <@&1>")
    (msg,) = render_mentions(users, notice, "{mentions} — I couldn't message you privately:")
    payload = msg.payload(nonce="k")
    assert payload["content"] == "<@111>, <@222> — I couldn't message you privately:"
    assert payload["allowed_mentions"] == {"parse": [], "users": ["111", "222"]}
    assert payload["embeds"][0]["title"] == "@\u200beveryone \\<@&1\\>"


def test_many_mentions_are_split_within_2000_characters_losing_nobody() -> None:
    users = [UserRef(Platform.DISCORD, str(10**18 + i)) for i in range(150)]
    msgs = render_mentions(users, CARD, "{mentions} — I couldn't message you privately:")
    assert len(msgs) == 2
    named = [u for m in msgs for u in m.allowed_mentions["users"]]
    assert named == [u.id for u in users]
    assert all(len(m.content or "") <= CONTENT_LIMIT for m in msgs)
    assert all(m.allowed_mentions["parse"] == [] for m in msgs)


def test_a_non_snowflake_user_id_is_refused() -> None:
    with pytest.raises(ValueError):
        render_mentions([UserRef(Platform.DISCORD, "@everyone")], CARD, "{mentions}")


def test_timestamp_format() -> None:
    when = datetime(2026, 11, 26, 19, 0, tzinfo=UTC)
    assert timestamp(when) == "<t:1795719600:F> (<t:1795719600:R>)"


def test_when_text_becomes_a_native_timestamp() -> None:
    when = datetime(2026, 11, 26, 19, 0, tzinfo=UTC)
    n = dataclasses.replace(CARD, when=when, when_text="Thu 26 Nov 2026, 20:00 CET")
    assert render(n).payload()["embeds"][0]["description"] == (
        "🗓 <t:1795719600:F> (<t:1795719600:R>)\nHost: Ana"
    )
    # stated in the title only (embed titles show no timestamps): the native time leads the body
    t = dataclasses.replace(
        n,
        title="Weekly AMA starts Thu 26 Nov 2026, 20:00 CET",
        lines=("Host: Ana",),
    )
    assert render(t).payload()["embeds"][0]["description"] == (
        "🗓 <t:1795719600:F> (<t:1795719600:R>)\nHost: Ana"
    )


def test_ephemeral_answers_carry_the_flag() -> None:
    n = dataclasses.replace(reply("only you"), ephemeral=True)
    assert render(n).interaction_data()["flags"] == 64


def test_a_notice_without_a_title_has_no_empty_title() -> None:
    embed = render(dataclasses.replace(CARD, title="")).payload()["embeds"][0]
    assert "title" not in embed and embed["description"]


def test_a_live_space_held_in_a_voice_channel_offers_join_voice_first() -> None:
    from core.models import SpaceStatus
    from core.refs import ChatRef

    stage = ChatRef(Platform.DISCORD, "555", scope="777")
    live = dataclasses.replace(CARD, status=SpaceStatus.LIVE, voice=stage, locale="fr")
    first = render(live).payload()["components"][0]["components"][0]
    assert first == {
        "type": 2,
        "style": 5,
        "label": "🔊 Rejoindre le vocal",
        "url": "https://discord.com/channels/777/555",
    }
    # before it starts, and without a voice channel, the buttons are the notice's own
    scheduled = dataclasses.replace(CARD, status=SpaceStatus.SCHEDULED, voice=stage)
    assert render(scheduled).payload()["components"] == render(CARD).payload()["components"]
    plain_live = dataclasses.replace(CARD, status=SpaceStatus.LIVE)
    assert render(plain_live).payload()["components"] == render(CARD).payload()["components"]


def test_a_hosts_audio_problem_names_discords_own_command() -> None:
    at = datetime(2026, 12, 1, 20, 0, tzinfo=UTC)
    space = Space(
        "abcd234567",
        "Jam",
        UserRef(Platform.DISCORD, "1"),
        ChatRef(Platform.DISCORD, "2", scope="3"),
        at,
        "UTC",
        "en",
        at,
    )
    view = SpaceView(space, 0, "https://spaces.test/s/abcd234567")
    payload = problem_payload("audio.problem.source", {"detail": "HTTP 404"})
    notice = for_delivery(DeliveryKind.HOST_PROBLEM, view, "Host", "en", None, payload=payload)
    text = json.dumps(render(notice).embeds)  # escaped markdown: the command in a code span
    assert "/space source abcd234567" in text and "HTTP 404" in text
