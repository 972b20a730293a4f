"""Ogg/Opus framing against ffmpeg's own muxer and demuxer."""

from __future__ import annotations

import random
import struct
import zlib
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from bots.audio.ffmpeg import offline_encode
from bots.audio.ogg import (
    BOS,
    CONTINUED,
    EOS,
    OggReader,
    OggWriter,
    crc32,
    is_header,
    opus_head,
    opus_packets,
)
from tests.bots.audio.conftest import decode_ogg, encode_ogg_file


def _page(body_packets: list[bytes], lacing: bytes, flags: int, seq: int, granule: int = 0) -> bytes:
    header = struct.pack("<4sBBqIIIB", b"OggS", 0, flags, granule, 7, seq, 0, len(lacing))
    page = bytearray(header + lacing + b"".join(body_packets))
    struct.pack_into("<I", page, 22, crc32(bytes(page)))
    return bytes(page)


def test_crc_is_oggs_not_zlibs() -> None:
    # the CRC-32/MPEG-2 family without the final xor: "123456789" → 0x89A1897F (the "CRC-32/BZIP2" polynomial
    # non-reflected, init 0, xorout 0: the Ogg variant)
    assert crc32(b"123456789") == 0x89A1897F
    assert crc32(b"123456789") != zlib.crc32(b"123456789")


def test_reader_matches_ffmpeg_pages_in_any_chunking(ffmpeg_exe: str, tone: Path) -> None:
    data = encode_ogg_file(ffmpeg_exe, tone)
    whole = opus_packets(data)
    assert whole[0].startswith(b"OpusHead") and whole[1].startswith(b"OpusTags")
    audio = [p for p in whole if not is_header(p)]
    assert len(audio) >= 99  # 2 s of 20-ms frames (plus the encoder's pre-skip)
    rng = random.Random(12)
    reader, got, pos = OggReader(), [], 0
    while pos < len(data):
        n = rng.choice([1, 2, 7, 100, 4096])
        got += reader.feed(data[pos : pos + n])
        pos += n
    assert got == whole


def test_packet_spanning_pages_and_damaged_page() -> None:
    big = bytes(range(256)) * 3  # 768 bytes: lacing 255 255 255 3
    small = b"\x01\x02\x03"
    p1 = _page([big[:510]], b"\xff\xff", BOS, 0)  # the packet continues on the next page
    p2 = _page([big[510:], small], b"\xff\x03\x03", CONTINUED, 1)
    assert opus_packets(p1 + p2) == [big, small]
    # a damaged first page: its partial packet is lost, the continuation is not glued to anything
    broken = bytearray(p1)
    broken[-1] ^= 0xFF
    p3 = _page([b"next"], b"\x04", EOS, 2)
    assert opus_packets(bytes(broken) + p2 + p3) == [small, b"next"]


def test_writer_round_trip_and_flags() -> None:
    frames = [bytes([i % 256]) * (i % 700 + 1) for i in range(300)]
    w = OggWriter(serial=5)
    data = w.headers() + w.pages(frames[:10]) + w.pages(frames[10:]) + w.pages([], eos=True)
    packets = opus_packets(data)
    assert packets[0] == opus_head() and packets[1].startswith(b"OpusTags")
    assert packets[2:] == frames
    # page by page: BOS first, EOS last, granules advancing 960 per frame, sequence numbers in order
    pos, seq, flags_seen, granules = 0, 0, [], []
    while pos < len(data):
        _c, _v, flags, granule, serial, sequence, _crc, nseg = struct.unpack_from("<4sBBqIIIB", data, pos)
        assert serial == 5 and sequence == seq
        size = 27 + nseg + sum(data[pos + 27 : pos + 27 + nseg])
        flags_seen.append(flags)
        granules.append(granule)
        pos, seq = pos + size, seq + 1
    assert flags_seen[0] == BOS and flags_seen[-1] == EOS and not any(f & CONTINUED for f in flags_seen)
    assert granules[:2] == [0, 0] and granules[-1] == 960 * len(frames)
    assert granules == sorted(granules)


def test_writer_output_decodes_like_ffmpegs_own(ffmpeg_exe: str, tone: Path) -> None:
    reference = decode_ogg(ffmpeg_exe, encode_ogg_file(ffmpeg_exe, tone))
    frames = offline_encode(str(tone), ffmpeg=ffmpeg_exe)
    w = OggWriter()
    ours = decode_ogg(ffmpeg_exe, w.headers() + w.pages(frames[:37]) + w.pages(frames[37:], eos=True))
    # ffmpeg's file ends with a granule that trims the last frame's padding; ours has no end trimming
    assert len(ours) >= len(reference)
    assert len(ours) - len(reference) < 960 * 4
    assert ours[: len(reference)] == reference


def test_crc_equals_the_bitwise_definition() -> None:
    def slow(data: bytes) -> int:  # RFC 3533's direct form: MSB first, polynomial 0x04C11DB7
        crc = 0
        for byte in data:
            crc ^= byte << 24
            for _ in range(8):
                crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
                crc &= 0xFFFFFFFF
        return crc

    rng = random.Random(3)
    for n in (0, 1, 2, 27, 255, 4000):
        data = rng.randbytes(n)
        assert crc32(data) == slow(data), n


@given(
    frames=st.lists(st.binary(min_size=1, max_size=1275), max_size=60),
    cuts=st.lists(st.integers(min_value=1, max_value=700), max_size=30),
    batch=st.integers(min_value=1, max_value=60),
)
def test_any_frames_in_any_chunking_round_trip(frames: list[bytes], cuts: list[int], batch: int) -> None:
    w = OggWriter(serial=1)
    data = w.headers() + b"".join(w.pages(frames[i : i + batch]) for i in range(0, len(frames), batch))
    reader, got, pos = OggReader(), [], 0
    for cut in [*cuts, len(data)]:
        got += reader.feed(data[pos : pos + cut])
        pos += cut
    got += reader.feed(data[pos:])
    assert got[2:] == frames and is_header(got[0]) and is_header(got[1])
