"""core.markup: the code spans of core texts, and commands named as a platform's /space subcommands."""

from __future__ import annotations

from core.markup import as_subcommands, with_code_spans


def test_code_spans_are_rendered_apart_from_the_rest() -> None:
    out = with_code_spans("a <b> `x <y>` c `z`", plain=str.upper, code=lambda inner: f"[{inner}]")
    assert out == "A <B> [x <y>] C [z]"
    assert with_code_spans("no spans, `unclosed", plain=str.upper, code=str) == "NO SPANS, `UNCLOSED"
    assert with_code_spans("`two\nlines`", plain=str.upper, code=str) == "`TWO\nLINES`"  # one line only


def test_commands_become_subcommands_and_others_stay() -> None:
    names = {"rename": "rename", "spaces": "list"}
    text = "try `/rename abc New title`, `/spaces`, `/help` or `/space tomorrow 20:00 AMA`"
    assert as_subcommands(text, names) == (
        "try `/space rename abc New title`, `/space list`, `/help` or `/space tomorrow 20:00 AMA`"
    )
    assert as_subcommands("`/space x`", names, space=lambda span: "`/space schedule`") == "`/space schedule`"
