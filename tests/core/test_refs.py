"""References round-trip through their text form, scoped or not; old text forms read as before."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.refs import (
    WHOLE_SCOPE,
    ChatRef,
    MessageRef,
    Platform,
    UserRef,
    parse_chat,
    parse_message,
    parse_user,
)

platforms = st.sampled_from(list(Platform))
# ids are whatever the platform uses; chat ids never contain ':' (message ids may)
ids = st.text(min_size=1, max_size=30).filter(lambda s: ":" not in s)
any_ids = st.text(min_size=1, max_size=30)
scopes = st.none() | st.text(min_size=1, max_size=20).filter(lambda s: ":" not in s and "@" not in s)


@given(platforms, any_ids, scopes)
def test_user_round_trip(platform: Platform, uid: str, scope: str | None) -> None:
    ref = UserRef(platform, uid, scope=scope)
    assert parse_user(str(ref)) == ref


@given(platforms, any_ids, scopes)
def test_chat_round_trip(platform: Platform, cid: str, scope: str | None) -> None:
    ref = ChatRef(platform, cid, scope=scope)
    assert parse_chat(str(ref)) == ref


@given(platforms, ids, any_ids, scopes)
def test_message_round_trip_keeps_its_chat(platform: Platform, cid: str, mid: str, scope: str | None) -> None:
    ref = MessageRef(platform, cid, mid, scope=scope)
    back = parse_message(str(ref))
    assert back == ref
    assert back.chat == ChatRef(platform, cid, scope=scope)


def test_unscoped_text_forms_are_unchanged() -> None:
    # rows written before scopes existed must read back equal to the refs code builds today
    assert str(ChatRef(Platform.TELEGRAM, "-100200")) == "telegram:chat:-100200"
    assert str(UserRef(Platform.TELEGRAM, "42")) == "telegram:user:42"
    assert str(MessageRef(Platform.TELEGRAM, "-100200", "7")) == "telegram:msg:-100200:7"
    assert parse_chat("telegram:chat:-100200") == ChatRef(Platform.TELEGRAM, "-100200")
    assert parse_user("console:user:ana") == UserRef(Platform.CONSOLE, "ana")
    assert parse_message("discord:msg:5:6") == MessageRef(Platform.DISCORD, "5", "6")
    assert parse_chat("telegram:chat:-100200").scope is None


def test_scoped_text_forms() -> None:
    chat = ChatRef(Platform.DISCORD, "111", scope="999")
    assert str(chat) == "discord@999:chat:111"
    assert str(MessageRef(Platform.DISCORD, "111", "222", scope="999")) == "discord@999:msg:111:222"
    assert str(UserRef(Platform.SLACK, "U1", scope="T9")) == "slack@T9:user:U1"
    assert parse_message("discord@999:msg:111:222").chat == chat
    # scope is part of identity: a guild channel is not the same chat as an unscoped one with its id
    assert chat != ChatRef(Platform.DISCORD, "111")


def test_community_of_a_scoped_chat_is_its_whole_scope() -> None:
    chat = ChatRef(Platform.DISCORD, "111", scope="999")
    assert chat.community == ChatRef(Platform.DISCORD, WHOLE_SCOPE, scope="999")
    assert ChatRef(Platform.DISCORD, "222", scope="999").community == chat.community
    unscoped = ChatRef(Platform.TELEGRAM, "-1")
    assert unscoped.community is unscoped
    assert parse_chat(str(chat.community)) == chat.community


@pytest.mark.parametrize("scope", ["", "a:b", "a@b"])
def test_scopes_that_would_not_round_trip_are_refused(scope: str) -> None:
    with pytest.raises(ValueError):
        ChatRef(Platform.DISCORD, "1", scope=scope)
    with pytest.raises(ValueError):
        UserRef(Platform.DISCORD, "1", scope=scope)
    with pytest.raises(ValueError):
        MessageRef(Platform.DISCORD, "1", "2", scope=scope)


@pytest.mark.parametrize(
    "text",
    [
        "discord@:chat:1",
        "discord@a@b:chat:1",
        "nope@1:chat:1",
        "discord@1:user:1",
        "discord@1:chat:",
        "chat:1",
    ],
)
def test_malformed_chat_texts_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_chat(text)
