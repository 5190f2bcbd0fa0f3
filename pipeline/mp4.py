"""Where an MP4/MOV file's video keyframes are, read from its sample table (no decoding).

A chunk that starts inside a clip is reached by decoding from the keyframe before it: on a
long group of pictures that is hundreds of frames decoded for nothing, which
:func:`pipeline.pool.plan_chunks` weighs when it splits a clip between workers.

Only box headers and the video track's ``stss`` box are read; the moov box is read whole only
up to :data:`MAX_MOOV` bytes. Anything unexpected (another container, a damaged or hostile
file) answers None, "unknown", and the planner splits as if every frame were a keyframe.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

MAX_MOOV = 64 << 20  # bytes; a larger moov box is not read
_CONTAINERS = (b"trak", b"mdia", b"minf", b"stbl")


def keyframes(path: str) -> np.ndarray | None:
    """Sorted 0-based frame numbers (decode order) of the first video track's keyframes, or None:
    not an MP4/MOV file, no ``stss`` box (every frame is a keyframe), or unreadable."""
    try:
        with open(path, "rb") as f:
            moov = _top_box(f, b"moov")
            return None if moov is None else _video_sync_samples(moov)
    except (OSError, ValueError, struct.error):
        return None


def _boxes(buf: bytes | BinaryIO, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, box end) of the boxes in buf[start:end] (a file: read header by header)."""
    at = start
    while at + 8 <= end:
        head = _read(buf, at, 16 if at + 16 <= end else 8)
        size, kind = struct.unpack(">I4s", head[:8])
        body = at + 8
        if size == 1:  # 64-bit size
            if len(head) < 16:
                raise ValueError("truncated box header")
            size, body = struct.unpack(">Q", head[8:16])[0], at + 16
        elif size == 0:  # to the end
            size = end - at
        if size < body - at or at + size > end:
            raise ValueError(f"box {kind!r} of {size} bytes overruns its parent")
        yield kind, body, at + size
        at += size


def _read(buf: bytes | BinaryIO, at: int, n: int) -> bytes:
    if isinstance(buf, bytes):
        return buf[at : at + n]
    buf.seek(at)
    return buf.read(n)


def _top_box(f: BinaryIO, kind: bytes) -> bytes | None:
    f.seek(0, 2)
    size = f.tell()
    for k, body, end in _boxes(f, 0, size):
        if k == kind:
            if end - body > MAX_MOOV:
                return None
            f.seek(body)
            return f.read(end - body)
    return None


def _video_sync_samples(moov: bytes) -> np.ndarray | None:
    for kind, body, end in _boxes(moov, 0, len(moov)):
        if kind != b"trak":
            continue
        found = _track(moov, body, end)
        if found is not None:
            return found[1]
    return None


def _track(buf: bytes, start: int, end: int) -> tuple[bool, np.ndarray | None] | None:
    """(is video, sync samples or None) of a trak box; None when it is not a video track."""
    video, sync = False, None
    stack = [(start, end)]
    while stack:
        a, b = stack.pop()
        for kind, body, stop in _boxes(buf, a, b):
            if kind in _CONTAINERS:
                stack.append((body, stop))
            elif kind == b"hdlr" and buf[body + 8 : body + 12] == b"vide":
                video = True
            elif kind == b"stss":
                (count,) = struct.unpack(">I", buf[body + 4 : body + 8])
                if body + 8 + 4 * count > stop:
                    raise ValueError("stss lists more samples than it holds")
                sync = np.frombuffer(buf, ">u4", count, body + 8).astype(np.int64) - 1
    if not video:
        return None
    return True, None if sync is None else np.unique(sync[sync >= 0])
