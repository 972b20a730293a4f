"""core.audio: what a host may give as a Space's audio source, read without I/O."""

from __future__ import annotations

import pytest

from core import texts
from core.audio import AudioSource, SourceKind, parse_source
from core.errors import UserError


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("https://radio.example.org/live.mp3", SourceKind.URL),
        ("http://icecast.example.org:8000/stream", SourceKind.URL),
        ("https://cdn.example.org/show/index.m3u8", SourceKind.URL),
        ("rtmp://live.example.org/app/key", SourceKind.URL),
        ("srt://relay.example.org:9000?mode=caller", SourceKind.URL),
        ("browser", SourceKind.BROWSER),
        ("  Microphone ", SourceKind.BROWSER),
        ("file:intro.ogg", SourceKind.FILE),
        ("file:shows/ep1.mp3", SourceKind.FILE),
    ],
)
def test_sources_a_host_may_give_read_back_from_their_stored_form(text: str, kind: SourceKind) -> None:
    source = parse_source(text)
    assert source.kind is kind
    assert parse_source(str(source)) == source


@pytest.mark.parametrize(
    "text",
    [
        "",
        "concat:/etc/passwd|/etc/shadow",
        "pipe:0",
        "-i /etc/passwd",
        "udp://0.0.0.0:1234",
        "https://",
        "https://example.org/a b",
        "gopher://example.org/",
    ],
)
def test_anything_else_is_refused_with_the_words_to_fix_it(text: str) -> None:
    with pytest.raises(UserError) as caught:
        parse_source(text)
    assert caught.value.key == "audio.bad_source"
    for locale in ("en", "fr"):
        assert "browser" in texts.t(locale, caught.value.key, **caught.value.params)


@pytest.mark.parametrize(
    "text",
    ["file:///etc/passwd", "file:/etc/passwd", "file:../secrets.env", "file:a/../../b", "file:~/x", "file:"],
)
def test_a_file_stays_inside_the_media_folder(text: str) -> None:
    with pytest.raises(UserError) as caught:
        parse_source(text)
    assert caught.value.key == "audio.bad_file"


def test_only_files_are_read_at_real_time_speed() -> None:
    assert AudioSource(SourceKind.FILE, "a.ogg").realtime
    assert not AudioSource(SourceKind.URL, "https://example.org/s").realtime
    assert not AudioSource(SourceKind.BROWSER).realtime
