"""Slack rendering: exact Block Kit payloads, hostile text that shows as typed and notifies nobody, date
tokens, buttons by status, and Block Kit's limits."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from bots.slack.render import (
    BUTTON_TEXT_LIMIT,
    HEADER_LIMIT,
    LINK,
    MENTIONS_PER_MESSAGE,
    PRESS,
    RESCHEDULE,
    SECTION_LIMIT,
    TEXT_LIMIT,
    VALUE_LIMIT,
    Rendered,
    calendar_url,
    date_token,
    escape,
    render,
    render_call,
    render_mention,
    units,
)
from core.models import DeliveryKind, Space, SpaceStatus, SpaceView
from core.notices import card, for_delivery, problem_payload, reply
from core.refs import ChatRef, Platform, UserRef

SID = "abcdefghjk"
LINK_URL = f"https://spaces.example/s/{SID}"
START = datetime(2026, 12, 24, 19, 0, tzinfo=UTC)  # 20:00 in Paris
UNIX = int(START.timestamp())
TOKEN = f"<!date^{UNIX}^{{date_long_pretty}} {{time}}|Thu 24 Dec 2026, 20:00 CET>"
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


def card_of(locale: str = "en", subscribers: int = 3, **changes: Any) -> Any:
    return card(SpaceView(space(**changes), subscribers, LINK_URL), "Ana", locale)


def pt(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


def md(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text, "verbatim": True}}


def press(label: str, value: str, **extra: Any) -> dict[str, Any]:
    return {"type": "button", "action_id": PRESS, "text": pt(label), "value": value, **extra}


def link(label: str, url: str) -> dict[str, Any]:
    return {"type": "button", "action_id": LINK, "text": pt(label), "url": url}


CANCEL_CONFIRM = {
    "title": pt("Cancel this Space?"),
    "text": pt("Everyone subscribed is told it's cancelled. This can't be undone."),
    "confirm": pt("Cancel the Space"),
    "deny": pt("Keep it"),
    "style": "danger",
}
END_CONFIRM = {
    "title": pt("End this Space?"),
    "text": pt("The live audio stops for everyone. This can't be undone."),
    "confirm": pt("End it"),
    "deny": pt("Not yet"),
    "style": "danger",
}


def all_buttons(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for b in blocks if b["type"] == "actions" for e in b["elements"]]


def all_text(blocks: list[dict[str, Any]]) -> str:
    return "\n".join(b["text"]["text"] for b in blocks if b["type"] in ("section", "header") and "text" in b)


# --------------------------------------------------------------------------- cards by status


def test_scheduled_card_is_exact() -> None:
    r = render(card_of())
    assert r.blocks == [
        {"type": "header", "text": pt("Weekly AMA")},
        md(f"🗓 {TOKEN}\nHost: Ana\n🔔 3 subscribed"),
        {
            "type": "actions",
            "elements": [
                press("🔔 Set reminder", f"sub:{SID}", style="primary"),
                link("🗓 Add to calendar", f"{LINK_URL}.ics"),
            ],
        },
        {
            "type": "actions",
            "elements": [press("🔕 Unsubscribe", f"unsub:{SID}"), link("🔗 Share link", LINK_URL)],
        },
        {
            "type": "actions",
            "elements": [
                press("▶️ Start now", f"start:{SID}"),
                {"type": "button", "action_id": RESCHEDULE, "text": pt("🕑 Reschedule"), "value": SID},
            ],
        },
        {
            "type": "actions",
            "elements": [press("❌ Cancel", f"cancel:{SID}", style="danger", confirm=CANCEL_CONFIRM)],
        },
    ]
    assert r.text == f"Weekly AMA\n🗓 {TOKEN}\nHost: Ana\n🔔 3 subscribed"
    assert r.message() == {"text": r.text, "blocks": r.blocks}
    assert not r.ephemeral


def test_live_card_has_join_and_end_with_a_confirm() -> None:
    r = render(card_of(status=SpaceStatus.LIVE, started_at=START))
    assert r.blocks == [
        {"type": "header", "text": pt("🟣 LIVE Weekly AMA")},
        md("Host: Ana"),
        {"type": "actions", "elements": [link("🎧 Join", LINK_URL)]},
        {
            "type": "actions",
            "elements": [press("⏹ End", f"end:{SID}", style="danger", confirm=END_CONFIRM)],
        },
    ]
    assert r.text == "🟣 LIVE Weekly AMA\nHost: Ana"


def test_ended_card_keeps_only_details() -> None:
    r = render(card_of(status=SpaceStatus.ENDED))
    assert r.blocks == [
        {"type": "header", "text": pt("Ended Weekly AMA")},
        md("Host: Ana"),
        {"type": "actions", "elements": [link("Details", LINK_URL)]},
    ]


def test_cancelled_card_has_no_buttons_and_keeps_its_time() -> None:
    r = render(card_of(status=SpaceStatus.CANCELLED))
    assert r.blocks == [{"type": "header", "text": pt("❌ Cancelled Weekly AMA")}, md(f"🗓 {TOKEN}")]


def test_french_card_buttons_and_confirm() -> None:
    r = render(card_of("fr"))
    buttons = all_buttons(r.blocks)
    assert [b["text"]["text"] for b in buttons] == [
        "🔔 Me le rappeler",
        "🗓 Ajouter à l'agenda",
        "🔕 Me désabonner",
        "🔗 Lien à partager",
        "▶️ Démarrer",
        "🕑 Reporter",
        "❌ Annuler",
    ]
    assert buttons[-1]["confirm"] == {
        "title": pt("Annuler ce Space ?"),
        "text": pt("Tous les abonnés sont prévenus de l'annulation. C'est définitif."),
        "confirm": pt("Annuler le Space"),
        "deny": pt("Le garder"),
        "style": "danger",
    }
    live = render(card_of("fr", status=SpaceStatus.LIVE, started_at=START))
    assert all_buttons(live.blocks)[-1]["confirm"]["title"] == pt("Terminer ce Space ?")


def test_no_actions_block_holds_two_buttons_with_one_action_id() -> None:
    for status in SpaceStatus:
        for b in render(card_of(status=status, started_at=START)).blocks:
            if b["type"] == "actions":
                ids = [e["action_id"] for e in b["elements"]]
                assert len(ids) == len(set(ids)), (status, ids)


def test_calendar_url() -> None:
    assert calendar_url(LINK_URL) == f"{LINK_URL}.ics"


# --------------------------------------------------------------------------- hostile text


@pytest.mark.parametrize(
    ("typed", "shown"),
    [
        ("<!channel> hi", "&lt;!channel&gt; hi"),
        ("<!here>", "&lt;!here&gt;"),
        ("<!everyone>", "&lt;!everyone&gt;"),
        ("<@U123>", "&lt;@U123&gt;"),
        ("<https://evil|click>", "&lt;https://evil|click&gt;"),
        ("<!date^1^{date}|x>", "&lt;!date^1^{date}|x&gt;"),
        ("*bold*", f"{Z}*{Z}bold{Z}*{Z}"),
        ("_it_ ~del~", f"{Z}_{Z}it{Z}_{Z} {Z}~{Z}del{Z}~{Z}"),
        ("`code`", f"{Z}`{Z}code{Z}`{Z}"),
        ("&amp;", "&amp;amp;"),
        ("> quote", "&gt; quote"),
        (
            "a\u202eb",
            "\u2068a\u202eb\u2069",
        ),  # a right-to-left override is isolated: it cannot flip what follows
        ("zero\u200bwidth", "zero\u200bwidth"),
    ],
)
def test_escape_shows_text_as_typed(typed: str, shown: str) -> None:
    assert escape(typed) == shown


HOSTILE = "<!channel> <!here> <!everyone> <@U123> <https://evil|click> *bold* `code` &amp; \u202eevil"


def test_hostile_title_and_description_notify_nobody() -> None:
    r = render(card_of(title=HOSTILE, description=f"{HOSTILE}\nsecond line"))
    # the header is plain_text: Slack parses nothing in it, it shows as typed
    assert r.blocks[0] == {"type": "header", "text": pt(HOSTILE)}
    body = r.blocks[1]["text"]["text"]
    # a description is user text: even its `code` shows as typed (escaped, not a code span)
    assert body == escape(f"{HOSTILE}\nsecond line") + f"\n🗓 {TOKEN}\nHost: Ana\n🔔 3 subscribed"
    assert body.startswith("\u2068&lt;!channel&gt; &lt;!here&gt; &lt;!everyone&gt; &lt;@U123&gt; ")
    for text in (body, r.text):
        assert not re.search(r"<[!@#]|<https?:", text.replace(TOKEN, "")), text


def test_plain_at_channel_and_urls_are_not_auto_parsed() -> None:
    # no < > to escape: Slack's automatic parsing is what would make these live, and verbatim turns it off
    r = render(card_of(description="@channel @here @everyone #general https://evil.example"))
    assert r.blocks[1]["text"] == {
        "type": "mrkdwn",
        "text": f"@channel @here @everyone #general https://evil.example\n🗓 {TOKEN}\nHost: Ana\n🔔 3 subscribed",
        "verbatim": True,
    }
    for b in r.blocks:
        if b["type"] == "section":
            assert b["text"]["verbatim"] is True


def test_newlines_in_a_title_do_not_break_the_header() -> None:
    r = render(card_of(title="line one\nline two"))
    assert r.blocks[0] == {"type": "header", "text": pt("line one line two")}


def test_a_5000_character_title_gives_valid_blocks() -> None:
    r = render(card_of(title="<@U1>*" * 834, description="&" * 5000))
    header = r.blocks[0]["text"]["text"]
    assert units(header) <= HEADER_LIMIT and header.endswith("…")
    for b in r.blocks:
        if b["type"] == "section":
            text = b["text"]["text"]
            assert units(text) <= SECTION_LIMIT
            # cut before escaping: never half an entity
            assert not re.search(r"&(?!amp;|lt;|gt;)", text)
    assert units(r.text) <= TEXT_LIMIT
    assert TOKEN in all_text(r.blocks)


def test_long_description_is_cut_never_inside_an_escape_and_keeps_the_time() -> None:
    r = render(card_of(description="*" * 4000))
    sections = [b["text"]["text"] for b in r.blocks if b["type"] == "section"]
    assert all(units(s) <= SECTION_LIMIT for s in sections)
    assert sections[0].endswith("…") and sections[0].count(f"{Z}*{Z}") == (len(sections[0]) - 1) // 3
    assert TOKEN in "\n".join(sections)


# --------------------------------------------------------------------------- times


def test_date_token_format() -> None:
    assert date_token(START, "Thu 24 Dec 2026, 20:00 CET") == TOKEN
    assert date_token(START, "a<b>&") == f"<!date^{UNIX}^{{date_long_pretty}} {{time}}|a&lt;b&gt;&amp;>"


def test_a_dm_notice_states_its_time_as_a_token_in_bold_title() -> None:
    view = SpaceView(space(), 3, LINK_URL)
    r = render(for_delivery(DeliveryKind.HOST_T30, view, "Ana", "en", None))
    assert r.blocks[0] == md(f"*⏰ Your Space “Weekly AMA” starts in 30 minutes ({TOKEN}).*")
    assert r.blocks[1] == md(
        "Press Start when you're ready — your subscribers are notified the moment you do."
    )
    assert r.blocks[2] == {
        "type": "actions",
        "elements": [press("▶️ Start now", f"start:{SID}"), link("Details", LINK_URL)],
    }
    assert all(b["type"] != "header" for b in r.blocks)


def test_a_hostile_title_in_a_dm_notice_is_escaped_around_the_token() -> None:
    view = SpaceView(space(title="<!channel> *x*"), 0, LINK_URL)
    r = render(for_delivery(DeliveryKind.CANCELLED_NOTICE, view, "Ana", "en", None))
    assert r.blocks == [md(f"*❌ “&lt;!channel&gt; {Z}*{Z}x{Z}*{Z}” ({TOKEN}) was cancelled.*")]


def test_a_title_that_quotes_the_time_keeps_its_words() -> None:
    when = "Thu 24 Dec 2026, 20:00 CET"
    r = render(card_of(title=f"AMA {when}"))
    assert r.blocks[0] == {"type": "header", "text": pt(f"AMA {when}")}
    assert r.blocks[1] == md(f"🗓 {TOKEN}\nHost: Ana\n🔔 3 subscribed")


# --------------------------------------------------------------------------- replies


def test_reply_is_plain_mrkdwn_with_code_spans_kept() -> None:
    r = render(reply("Wrong title? `/rename abcdefghjk <new title>` · *not bold* <!here>", ephemeral=True))
    assert r.blocks == [
        md(
            f"Wrong title? `/space rename abcdefghjk &lt;new title&gt;` · {Z}*{Z}not bold{Z}*{Z} &lt;!here&gt;"
        )
    ]
    assert r.ephemeral
    assert r.text == r.blocks[0]["text"]["text"]


def test_reply_names_slacks_own_commands() -> None:
    r = render(reply("`/spaces` · `/tz <zone>` · `/live <id>` · `/space tomorrow 20:00 AMA` · `/chattz x`"))
    assert r.blocks == [
        md(
            "`/space list` · `/space zone &lt;zone&gt;` · `/space start &lt;id&gt;` · "
            "`/space tomorrow 20:00 AMA` · `/space chatzone x`"
        )
    ]


def test_reply_with_a_time_gets_a_token() -> None:
    text = "Rescheduled ✓\nTitle: *AMA*\nTime: Thu 24 Dec 2026, 20:00 CET"
    r = render(reply(text, when=START, when_text="Thu 24 Dec 2026, 20:00 CET"))
    assert r.blocks == [md(f"Rescheduled ✓\nTitle: {Z}*{Z}AMA{Z}*{Z}\nTime: {TOKEN}")]


def test_a_placeholder_character_typed_by_a_user_is_dropped_not_turned_into_a_time() -> None:
    r = render(card_of(title="a\ufdd0b", description="c\ufdd0d"))
    assert r.blocks[0]["text"]["text"] == "ab"
    assert r.blocks[1]["text"]["text"].startswith("cd\n")


# --------------------------------------------------------------------------- buttons and limits


def test_every_button_is_within_limits() -> None:
    for status in SpaceStatus:
        for locale in ("en", "fr"):
            for b in all_buttons(render(card_of(locale, status=status, started_at=START)).blocks):
                assert units(b["text"]["text"]) <= BUTTON_TEXT_LIMIT
                assert b["action_id"] in (PRESS, RESCHEDULE, LINK)
                assert len(b.get("value", "")) <= VALUE_LIMIT
                if "confirm" in b:
                    assert units(b["confirm"]["confirm"]["text"]) <= 30
                    assert units(b["confirm"]["title"]["text"]) <= 100


def test_a_button_value_we_did_not_make_fails_loudly() -> None:
    from core.notices import Action, ActionKind, Notice

    with pytest.raises(ValueError):
        render(Notice(kind="x", title="t", actions=(Action("x", ActionKind.CALLBACK, "rm -rf"),)))


# --------------------------------------------------------------------------- mentions


def test_mention_names_exactly_its_users_then_the_notice() -> None:
    view = SpaceView(space(), 3, LINK_URL)
    notice = for_delivery(DeliveryKind.LIVE_NOTICE, view, "Ana", "en", None)
    r = render_mention(["U1", "W2"], notice)
    assert r.blocks[0] == md("<@U1> <@W2> — I couldn't message you privately:")
    assert r.blocks[1:] == render(notice).blocks
    assert r.text.startswith(
        "<@U1> <@W2> — I couldn't message you privately:\n🟣 “Weekly AMA” is live now — hosted by Ana."
    )
    assert re.findall(r"<@(\w+)>", all_text(r.blocks)) == ["U1", "W2"]


def test_mention_contract_is_enforced() -> None:
    notice = reply("hi")
    render_mention(["U1"] * MENTIONS_PER_MESSAGE, notice)
    with pytest.raises(ValueError):
        render_mention(["U1"] * (MENTIONS_PER_MESSAGE + 1), notice)
    with pytest.raises(ValueError):
        render_mention([], notice)
    with pytest.raises(ValueError):
        render_mention(["U1>|<!channel"], notice)


def test_french_mention() -> None:
    r = render_mention(["U1"], reply("salut", locale="fr"))
    assert r.blocks[0] == md("<@U1> — je n'ai pas pu vous écrire en privé :")


def test_a_hosts_audio_problem_names_slacks_own_command() -> None:
    view = SpaceView(space(), 0, LINK_URL)
    payload = problem_payload("audio.problem.browser", {})
    r = render(for_delivery(DeliveryKind.HOST_PROBLEM, view, "Ana", "en", None, payload=payload))
    assert "`/space source abcdefghjk &lt;source&gt;`" in r.blocks[1]["text"]["text"]
    assert "`/space source abcdefghjk browser`" in r.blocks[1]["text"]["text"]


def test_the_call_message_escapes_the_title() -> None:
    r = render_call("R123", "<!channel> *AMA*")
    assert r == Rendered(
        text=f"🟣 &lt;!channel&gt; {Z}*{Z}AMA{Z}*{Z}", blocks=[{"type": "call", "call_id": "R123"}]
    )


# --------------------------------------------------------------------------- against the emulator's checks


def every_rendering() -> list[tuple[str, Rendered]]:
    out: list[tuple[str, Rendered]] = []
    hostile: dict[str, Any] = {"title": "<!channel>*" * 500, "description": "&<>`_~*" * 1000}
    for locale in ("en", "fr"):
        for status in SpaceStatus:
            for changes in ({}, hostile):
                notice = card_of(locale, status=status, started_at=START, **changes)
                out.append((f"card {locale} {status} {bool(changes)}", render(notice)))
        for kind in DeliveryKind:
            view = SpaceView(space(**hostile), 2, LINK_URL)
            try:
                notice = for_delivery(kind, view, "<!here>" * 100, locale, 600.0, host_link=LINK_URL)
            except ValueError:
                continue  # not a user notice
            out.append((f"{kind} {locale}", render(notice)))
            out.append((f"{kind} {locale} mention", render_mention(["U1"] * MENTIONS_PER_MESSAGE, notice)))
        out.append((f"reply {locale}", render(reply("`/spaces`\n" + "x*" * 5000, locale=locale))))
    out.append(("call", render_call("R1", "<!channel>" * 1000)))
    return out


def test_everything_rendered_passes_the_emulators_block_kit_checks() -> None:
    from tests.fakes.slack_spec import message_problems

    for name, r in every_rendering():
        assert message_problems(r.text, r.blocks) == (None, []), name
