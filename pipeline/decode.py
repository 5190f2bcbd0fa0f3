"""Decode stage: probe a clip and iterate its frames with OpenCV.

Steps: open (clear errors for missing/empty/non-video input) -> honour rotation
metadata (OpenCV applies it; we report it) -> real presentation timestamps per
frame (variable frame rate safe) -> frame stride -> max-side downscale.
The capture is released on every path, including a consumer that stops early.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import cv2
import numpy as np

from .errors import CorruptVideo, EmptyInput, FormcheckError, InvalidParameter, NotAVideo, VideoNotFound
from .records import VideoInfo

MAX_PIXELS = 8192 * 8192


@dataclass(frozen=True, slots=True)
class Frame:
    """index: source frame number; t: seconds; rgb: (h, w, 3) uint8."""

    index: int
    t: float
    rgb: np.ndarray


def check_file(path: str) -> None:
    """Raise unless ``path`` is a non-empty regular file (before anything opens or hashes it)."""
    if not os.path.exists(path):
        raise VideoNotFound(f"no file at {path!r}: expected a path to a video file")
    if os.path.isdir(path):
        raise NotAVideo(f"{path!r} is a directory: expected a video file")
    if os.path.getsize(path) == 0:
        raise EmptyInput(f"{path!r} is empty (0 bytes): expected a video file")


@contextmanager
def open_capture(path: str, threads: int = 0) -> Iterator[cv2.VideoCapture]:
    """``threads``: FFmpeg decoding threads (0: its default, one per core). An inference worker
    decodes with one: frame threading costs ~25% more CPU, and the cores are already busy."""
    check_file(path)
    if not _looks_like_video(path):  # FFmpeg would guess a raw stream: ~1 in 12 random files "decode" as H.263
        raise NotAVideo(f"{path!r} could not be opened as a video: expected a container with a video stream "
                        "(mp4, mov, avi, mkv, webm)")
    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, threads] if threads else [])
    try:
        if not cap.isOpened():
            raise CorruptVideo(
                f"{path!r} starts like a video container but cannot be opened: expected a "
                "complete file (it may be truncated or damaged)"
            )
        cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
        yield cap
    finally:
        cap.release()


_MOV_BOXES = (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot")
_SIGNATURES = (b"\x1aE\xdf\xa3", b"FLV\x01", b"OggS", b"\x00\x00\x01\xba",  # Matroska/WebM, FLV, Ogg, MPEG-PS
               b"\x30\x26\xb2\x75")  # ASF/WMV


def _looks_like_video(path: str) -> bool:
    """The file starts with a known container signature (MP4/MOV, Matroska/WebM, AVI, MPEG
    transport or program stream, FLV, Ogg, ASF)."""
    with open(path, "rb") as f:
        head = f.read(190)
    return (head[4:8] in _MOV_BOXES or head.startswith(_SIGNATURES)
            or (head[:4] == b"RIFF" and head[8:12] == b"AVI ")
            or (len(head) > 188 and head[0] == head[188] == 0x47))  # MPEG-TS: a sync byte every 188


def probe(path: str) -> VideoInfo:
    """Read the container's facts and decode the first frame to prove it decodes."""
    with open_capture(path) as cap:
        frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        rotation = int(cap.get(cv2.CAP_PROP_ORIENTATION_META) or 0) % 360
        claimed = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0) * int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        if claimed > MAX_PIXELS:
            raise InvalidParameter(
                f"{path!r} claims {claimed} pixels per frame: expected at most {MAX_PIXELS} (8192x8192)"
            )
        ok, img = cap.read()
        if not ok or img is None:
            raise CorruptVideo(
                f"{path!r} has a video stream but no frame could be decoded: expected a "
                "playable video (the file may be truncated or damaged)"
            )
        h, w = img.shape[:2]
    if not (0 < fps < 1000):
        fps = 30.0
    if frames <= 0:
        frames = _count_frames(path)
    return VideoInfo(
        path=path, frames=frames, fps=fps, width=w, height=h,
        rotation=rotation, size_bytes=os.path.getsize(path),
    )


def keyframes(path: str) -> np.ndarray | None:
    """Frame numbers of the clip's keyframes (where decoding after a seek starts), read from the
    container's packets without decoding them (the dev clips: 0.2-4 ms after opening); None when
    the backend cannot tell, or the file cannot be read.

    Packets come in decoding order: with B-frames in an open GOP, a keyframe's number may read a
    few frames early. Good enough for what this is for: estimating what a seek costs.
    """
    try:
        with open_capture(path, threads=1) as cap:
            if not cap.set(cv2.CAP_PROP_FORMAT, -1):  # raw packets: demuxed, not decoded
                return None
            keys, index = [], 0
            while cap.grab():
                if cap.get(cv2.CAP_PROP_LRF_HAS_KEY_FRAME):
                    keys.append(index)
                index += 1
    except (FormcheckError, cv2.error):
        return None
    return np.array(keys, np.int64) if keys and keys[0] == 0 else None


def _count_frames(path: str) -> int:
    n = 0
    with open_capture(path) as cap:
        while cap.grab():
            n += 1
    return n


def halvings(width: int, height: int, max_side: int) -> int:
    """How many times a frame is halved so its longer side is at most ``max_side`` (0 = no limit).

    Halving only: a 2x2 box average is exact and cheap (~0.8 ms for 1080p), where an arbitrary
    factor costs ~6 ms a 720p frame; the result's longer side lies in (max_side / 2, max_side].
    """
    longest, n = max(width, height), 0
    while max_side > 0 and longest > max_side:
        longest //= 2
        n += 1
    return n


def _seek(cap: cv2.VideoCapture, start: int, fps: float) -> bool:
    """Position ``cap`` so that frame ``start`` is grabbed; True when it already is.

    OpenCV seeks by frame number assuming a constant rate; on a variable-rate file it
    lands elsewhere. The grabbed frame's time is checked against ``start / fps``, and
    on a mismatch the stream is decoded from its beginning instead.
    """
    if start <= 0:
        return False
    cap.set(cv2.CAP_PROP_POS_FRAMES, start)
    if cap.grab():
        t = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        if abs(t - start / fps) <= 0.5 / fps:
            return True
    cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
    for _ in range(start):
        if not cap.grab():
            break
    return False


def iter_frames(
    path: str,
    start: int = 0,
    stop: int | None = None,
    stride: int = 1,
    max_side: int = 0,
    fps_hint: float = 30.0,
    threads: int = 0,
) -> Generator[Frame, None, None]:
    """Yield RGB frames ``start <= index < stop`` every ``stride`` frames.

    Timestamps are the container's presentation times; where the backend has
    none, ``index / fps_hint``. Decoding stops quietly at the real end of the
    stream (containers often over- or under-report their frame count: pass
    ``stop=None`` to read to the end).
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    with open_capture(path, threads) as cap:
        grabbed = _seek(cap, start, fps_hint)
        index = start
        last_t = -1.0
        while stop is None or index < stop:
            if not grabbed and not cap.grab():
                return
            grabbed = False
            if (index - start) % stride:
                index += 1
                continue
            ok, bgr = cap.retrieve()
            if not ok or bgr is None:
                return
            msec = cap.get(cv2.CAP_PROP_POS_MSEC)
            t = msec / 1000.0 if msec > 0 or index == 0 else index / fps_hint
            if t <= last_t:  # keep time strictly increasing (MediaPipe VIDEO mode needs it)
                t = last_t + 1e-3
            last_t = t
            for _ in range(halvings(bgr.shape[1], bgr.shape[0], max_side)):
                bgr = cv2.resize(bgr, (bgr.shape[1] // 2, bgr.shape[0] // 2), interpolation=cv2.INTER_AREA)
            yield Frame(index, t, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            index += 1
