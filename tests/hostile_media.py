"""Builders of hostile media for ``test_hostile.py``: real files whose headers lie.

- ``claim_video_size(mp4, w, h)``: the H.264 sequence parameter set in ``avcC`` (what the
  decoder believes) rewritten to ``w x h``; ``tkhd`` and ``avc1`` say so too (clamped to
  their 16-bit fields).
- ``claim_video_duration(mp4, seconds)``: ``mvhd``, ``tkhd``, ``mdhd``, ``elst`` and the
  video track's ``stts`` sample durations say the clip lasts ``seconds``.
- ``png_bomb(w, h)`` / ``jpeg_bomb(w, h)``: valid headers claiming ``w x h`` pixels, a few KB.

Only what the dev clips need is handled (moov after mdat, version-0 boxes, baseline/main/high
SPS without scaling matrices); anything else fails with the reason.
"""

from __future__ import annotations

import struct
import zlib

CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts"}


class Box:
    def __init__(self, kind: bytes, start: int, size: int, header: int, parents: list[int]) -> None:
        self.kind, self.start, self.size, self.header, self.parents = kind, start, size, header, parents

    @property
    def body(self) -> int:
        return self.start + self.header


def walk(data: bytes | bytearray, start: int = 0, end: int | None = None,
         parents: list[int] | None = None) -> list[Box]:
    """Every box in file order (containers, ``stsd`` and ``avc1`` descended into)."""
    end = len(data) if end is None else end
    parents = parents or []
    out, i = [], start
    while i + 8 <= end:
        size, kind = struct.unpack(">I4s", data[i:i + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[i + 8:i + 16])[0], 16
        elif size == 0:
            size = end - i
        assert size >= header, f"box {kind!r} at {i} has size {size}"
        box = Box(kind, i, size, header, parents)
        out.append(box)
        inner = [*parents, i]
        if kind in CONTAINERS:
            out += walk(data, i + header, i + size, inner)
        elif kind == b"stsd":
            out += walk(data, i + header + 8, i + size, inner)
        elif kind == b"avc1":
            out += walk(data, i + header + 78, i + size, inner)
        i += size
    return out


def _find(data: bytes | bytearray, kind: bytes) -> list[Box]:
    return [b for b in walk(data) if b.kind == kind]


def _video_trak(data: bytes | bytearray) -> Box:
    boxes = walk(data)
    for avc in (b for b in boxes if b.kind == b"avc1"):
        return next(b for b in boxes if b.start == avc.parents[1] and b.kind == b"trak")
    raise AssertionError("no avc1 (H.264) track in this mp4")


def _in(box: Box, outer: Box) -> bool:
    return outer.start in box.parents


# --- H.264 SPS ------------------------------------------------------------------------------------


class _Bits:
    def __init__(self, data: bytes) -> None:
        self.bits = "".join(f"{b:08b}" for b in data)
        self.pos = 0

    def u(self, n: int) -> int:
        v = int(self.bits[self.pos:self.pos + n], 2)
        self.pos += n
        return v

    def ue(self) -> int:
        zeros = 0
        while self.bits[self.pos] == "0":
            zeros += 1
            self.pos += 1
        return self.u(zeros + 1) - 1


def _ue(v: int) -> str:
    code = f"{v + 1:b}"
    return "0" * (len(code) - 1) + code


def _unescape(nal: bytes) -> bytes:
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


def _escape(rbsp: bytes) -> bytes:
    out, zeros = bytearray(), 0
    for b in rbsp:
        if zeros >= 2 and b <= 3:
            out.append(3)
            zeros = 0
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


def sps_with_size(nal: bytes, width: int, height: int) -> bytes:
    """The SPS NAL unit (header byte included) with its picture size in macroblocks replaced."""
    r = _Bits(_unescape(nal[1:]))
    profile = r.u(8)
    r.u(16)  # constraint flags, level
    r.ue()  # sps id
    if profile in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
        if r.ue() == 3:
            r.u(1)
        r.ue()
        r.ue()
        r.u(1)
        assert r.u(1) == 0, "SPS with scaling matrices: not handled"
    r.ue()  # log2_max_frame_num_minus4
    poc = r.ue()
    assert poc in (0, 2), f"pic_order_cnt_type {poc}: not handled"
    if poc == 0:
        r.ue()
    r.ue()  # max_num_ref_frames
    r.u(1)  # gaps allowed
    before = r.pos
    r.ue()
    r.ue()
    after = r.pos
    bits = r.bits[:before] + _ue(-(-width // 16) - 1) + _ue(-(-height // 16) - 1) + r.bits[after:]
    stop = bits.rstrip("0")  # the rbsp stop bit ends the payload; re-pad to a byte
    assert stop.endswith("1")
    bits = stop + "0" * (-len(stop) % 8)
    return nal[:1] + _escape(int(bits, 2).to_bytes(len(bits) // 8, "big"))


def claim_video_size(mp4: bytes, width: int, height: int) -> bytes:
    """``mp4`` (moov after mdat) whose decoder configuration says ``width x height``."""
    data = bytearray(mp4)
    avcc = _find(data, b"avcC")[0]
    body = avcc.body
    assert data[body + 5] & 0x1F == 1, "expected exactly one SPS in avcC"
    n = struct.unpack(">H", data[body + 6:body + 8])[0]
    old = bytes(data[body + 8:body + 8 + n])
    new = sps_with_size(old, width, height)
    data[body + 6:body + 8 + n] = struct.pack(">H", len(new)) + new
    grow = len(new) - len(old)
    moov = _find(mp4, b"moov")[0]
    mdat = _find(mp4, b"mdat")[0]
    assert mdat.start < moov.start, "moov before mdat: chunk offsets would move (not handled)"
    for start in [*avcc.parents, avcc.start]:  # every enclosing box grows by the same bytes
        size = struct.unpack(">I", data[start:start + 4])[0]
        data[start:start + 4] = struct.pack(">I", size + grow)
    avc1 = _find(data, b"avc1")[0]
    data[avc1.body + 24:avc1.body + 28] = struct.pack(">HH", min(width, 0xFFFF), min(height, 0xFFFF))
    tkhd = next(b for b in _find(data, b"tkhd") if _in(b, _video_trak(data)))
    assert data[tkhd.body] == 0, "tkhd version 1: not handled"
    data[tkhd.body + 76:tkhd.body + 84] = struct.pack(">II", min(width, 0xFFFF) << 16, min(height, 0xFFFF) << 16)
    return bytes(data)


def claim_video_duration(mp4: bytes, seconds: float) -> bytes:
    """``mp4`` whose movie and video track headers, edit list and sample table say ``seconds``."""
    data = bytearray(mp4)
    trak = _video_trak(data)
    mvhd = _find(data, b"mvhd")[0]
    assert data[mvhd.body] == 0, "mvhd version 1: not handled"
    movie_scale = struct.unpack(">I", data[mvhd.body + 12:mvhd.body + 16])[0]
    data[mvhd.body + 16:mvhd.body + 20] = struct.pack(">I", int(seconds * movie_scale))
    for kind in (b"tkhd", b"mdhd", b"elst", b"stts"):
        box = next(b for b in _find(data, kind) if _in(b, trak))
        assert data[box.body] == 0, f"{kind!r} version 1: not handled"
        at = box.body
        if kind == b"tkhd":
            data[at + 20:at + 24] = struct.pack(">I", int(seconds * movie_scale))
        elif kind == b"mdhd":
            track_scale = struct.unpack(">I", data[at + 12:at + 16])[0]
            data[at + 16:at + 20] = struct.pack(">I", int(seconds * track_scale))
        elif kind == b"elst":
            data[at + 8:at + 12] = struct.pack(">I", int(seconds * movie_scale))
        else:  # every sample as long as the claimed duration over the sample count
            entries = struct.unpack(">I", data[at + 4:at + 8])[0]
            counts = [struct.unpack(">I", data[at + 8 + 8 * e:at + 12 + 8 * e])[0] for e in range(entries)]
            delta = int(seconds * track_scale / sum(counts))
            for e in range(entries):
                data[at + 12 + 8 * e:at + 16 + 8 * e] = struct.pack(">I", delta)
    return bytes(data)


# --- decompression bombs ----------------------------------------------------------------------


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(width: int, height: int, rows: int = 64) -> bytes:
    """A valid PNG header claiming ``width x height`` (8-bit gray), then ``rows`` rows of zeros
    compressed (a few KB; a decoder that trusts the header allocates width x height bytes)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    raw = zlib.compress(b"\x00" * ((width + 1) * rows), 9)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", raw) + _chunk(b"IEND", b"")


def jpeg_bomb(width: int, height: int, small: bytes) -> bytes:
    """``small`` (a real baseline JPEG) with its frame header (SOF0) claiming ``width x height``."""
    i = small.find(b"\xff\xc0")
    assert i > 0, "expected a baseline JPEG (SOF0)"
    return small[:i + 5] + struct.pack(">HH", height, width) + small[i + 9:]
