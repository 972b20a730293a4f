"""Ogg framing for Opus (RFC 3533, RFC 7845), pure: read ffmpeg's Ogg output into packets, and write the
packets back as an Ogg stream a browser plays.

ffmpeg could mux for each web listener, but that would be one process per listener; the frames are already
encoded, so a listener costs a few page headers here.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

from core.audio import CHANNELS, FRAME_SAMPLES, SAMPLE_RATE

CAPTURE = b"OggS"
# header_type flags
CONTINUED = 0x01  # the page's first packet began on the previous page
BOS = 0x02  # first page of a logical stream
EOS = 0x04  # last page of a logical stream

# Opus's encoder look-ahead at 48 kHz (what libopus and ffmpeg write): the decoder drops these first samples
PRE_SKIP = 312
OPUS_HEAD = b"OpusHead"
OPUS_TAGS = b"OpusTags"
VENDOR = b"spaces"

_HEADER = struct.Struct("<4sBBqIIIB")  # capture, version, type, granule, serial, sequence, crc, segments
MAX_SEGMENTS = 255
# a page this big is not Ogg (the format's maximum is 27 + 255 + 255 × 255 bytes)
MAX_PAGE = _HEADER.size + MAX_SEGMENTS + MAX_SEGMENTS * 255


# Ogg's CRC is zlib's polynomial without zlib's bit reflection (nor its initial and final inversion). Rather
# than a byte-by-byte loop in Python (~40 µs a page, for every page of every web listener), reflect the bits
# of each byte in C (bytes.translate), let zlib run, and reflect the 32-bit result back (~1 µs).
_REFLECT = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def crc32(data: bytes) -> int:
    """Ogg's CRC-32: polynomial 0x04C11DB7, not reflected, initial value 0, no final xor (not zlib's)."""
    # zlib.crc32(d, v) starts its register at ~v and returns ~register: v = 0xFFFFFFFF and a final xor give
    # the raw (init 0, xorout 0) reflected CRC, whose bit-reversal is the non-reflected one
    raw = zlib.crc32(data.translate(_REFLECT), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return int.from_bytes(raw.to_bytes(4, "little").translate(_REFLECT), "big")


def is_header(packet: bytes) -> bool:
    """OpusHead or OpusTags: a stream's two header packets, not audio."""
    return packet.startswith((OPUS_HEAD, OPUS_TAGS))


def opus_packets(data: bytes) -> list[bytes]:
    """Every packet of an Ogg/Opus byte string, in order (headers included; a trailing partial page ignored)."""
    return OggReader().feed(data)


class OggReader:
    """Incremental demux of one Ogg stream (ffmpeg's stdout): feed it bytes as they come, get the packets
    each chunk completes. A page whose CRC is wrong is skipped (the reader re-syncs on the next ``OggS``),
    and the packet it would have continued is dropped rather than glued to the wrong bytes."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._partial = bytearray()  # a packet continued on the next page
        self._in_packet = False  # whether _partial is a packet's valid beginning

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        packets: list[bytes] = []
        while True:
            page = self._next_page()
            if page is None:
                return packets
            flags, lacing, body = page
            pos = 0
            if not flags & CONTINUED:
                self._partial.clear()
                self._in_packet = False
            elif not self._in_packet:
                # a continuation whose beginning we never saw: skip its first (partial) packet
                self._partial.clear()
            keep = not flags & CONTINUED or self._in_packet
            for seg in lacing:
                if keep:
                    self._partial += body[pos : pos + seg]
                pos += seg
                if seg < 255:
                    if keep:
                        packets.append(bytes(self._partial))
                    self._partial.clear()
                    keep = True
            # a page ending on a 255 segment: its last packet continues on the next page
            self._in_packet = bool(lacing) and lacing[-1] == 255 and keep

    def _next_page(self) -> tuple[int, bytes, bytes] | None:
        buf = self._buf
        while True:
            start = buf.find(CAPTURE)
            if start < 0:
                if len(buf) > 3:  # bytes that belong to no page: a packet they interrupt is lost
                    del buf[:-3]  # (keep what could be the start of "OggS")
                    self._in_packet = False
                return None
            if start:
                del buf[:start]
                self._in_packet = False
            if len(buf) < _HEADER.size:
                return None
            _cap, version, flags, _granule, _serial, _seq, crc, nseg = _HEADER.unpack_from(buf)
            if len(buf) < _HEADER.size + nseg:
                return None
            lacing = bytes(buf[_HEADER.size : _HEADER.size + nseg])
            size = _HEADER.size + nseg + sum(lacing)
            if len(buf) < size:
                return None
            page = bytes(buf[:size])
            check = page[:22] + b"\0\0\0\0" + page[26:]
            if version != 0 or crc32(check) != crc:
                del buf[:1]  # not a page after all (or damaged): look for the next capture pattern
                self._in_packet = False
                continue
            del buf[:size]
            return flags, lacing, page[_HEADER.size + nseg :]


def opus_head(*, pre_skip: int = PRE_SKIP) -> bytes:
    """The identification header (RFC 7845 §5.1): version 1, stereo, 48 kHz input, no gain, mapping family 0."""
    return OPUS_HEAD + struct.pack("<BBHIhB", 1, CHANNELS, pre_skip, SAMPLE_RATE, 0, 0)


def opus_tags() -> bytes:
    """The comment header (RFC 7845 §5.2): our vendor string, no comments."""
    return OPUS_TAGS + struct.pack("<I", len(VENDOR)) + VENDOR + struct.pack("<I", 0)


class OggWriter:
    """Mux for one web listener: :meth:`headers` once, then :meth:`pages` for each batch of 20-ms frames.

    Granule positions count 48-kHz samples (960 per frame) from the first audio packet, pre-skip included as
    RFC 7845 says; every batch is flushed as complete pages, so a listener hears it at once."""

    def __init__(self, serial: int | None = None) -> None:
        if serial is None:
            import random  # a fresh logical-stream id per listener is enough; no secret involved

            serial = random.getrandbits(32)
        self.serial = serial & 0xFFFFFFFF
        self._sequence = 0
        self._granule = 0
        self._ended = False

    def headers(self) -> bytes:
        """The OpusHead page (BOS) and the OpusTags page, both at granule 0."""
        return self._page([opus_head()], BOS, 0) + self._page([opus_tags()], 0, 0)

    def pages(self, frames: Sequence[bytes], *, eos: bool = False) -> bytes:
        """Audio pages carrying ``frames`` in order (each frame one Opus packet of 20 ms); ``eos`` marks the
        last page the end of the stream."""
        if self._ended:
            raise ValueError("the stream already ended")
        out = bytearray()
        # split the batch so that each page has at most 255 lacing values; a packet never spans pages here
        # (an Opus frame is at most 1275 bytes: 6 segments), so every page's granule is exact
        page: list[bytes] = []
        used = 0
        for i, frame in enumerate(frames):
            need = len(frame) // 255 + 1
            if page and used + need > MAX_SEGMENTS:
                self._granule += FRAME_SAMPLES * len(page)
                out += self._page(page, 0, self._granule)
                page, used = [], 0
            if need > MAX_SEGMENTS:
                raise ValueError(f"frame {i} is too big for one Ogg page ({len(frame)} bytes)")
            page.append(frame)
            used += need
        if page or eos:
            self._granule += FRAME_SAMPLES * len(page)
            out += self._page(page, EOS if eos else 0, self._granule)
        self._ended = eos
        return bytes(out)

    def _page(self, packets: Sequence[bytes], flags: int, granule: int) -> bytes:
        lacing = bytearray()
        for p in packets:
            lacing += b"\xff" * (len(p) // 255) + bytes([len(p) % 255])
        header = _HEADER.pack(CAPTURE, 0, flags, granule, self.serial, self._sequence, 0, len(lacing))
        page = bytearray(header + lacing + b"".join(packets))
        struct.pack_into("<I", page, 22, crc32(bytes(page)))
        self._sequence += 1
        return bytes(page)
