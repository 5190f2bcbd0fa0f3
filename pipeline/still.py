"""Single images (``POST /v1/frames``): decode, find the pose, return landmarks.

Runs in an inference worker like :func:`pipeline.infer.run_chunk`: the encoded bytes cross
the process boundary (tens of kilobytes), never the decoded pixels. Each image is
independent, so the worker keeps a second landmarker in IMAGE mode beside its VIDEO one.
Landmarks of pixels seen before come from the per-frame cache (the key says IMAGE mode:
tracking in a video gives different landmarks than a detection on a still).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import cv2
import numpy as np

from . import infer
from .cache import CacheConfig, shared
from .cache.keys import frame_key
from .decode import MAX_PIXELS, halvings
from .errors import InputError, ModelError
from .serialize import frame_from_bytes, frame_to_bytes

log = logging.getLogger(__name__)

MAGIC = {b"\xff\xd8\xff": "jpeg", b"\x89PNG\r\n\x1a\n": "png"}


class NotAnImage(InputError):
    pass


@dataclass(frozen=True, slots=True)
class StillJob:
    data: bytes  # the encoded image as uploaded
    name: str  # for error messages
    max_side: int
    options: infer.InferOptions
    cache: CacheConfig | None = None
    threads: int = 1  # XNNPACK threads for this image (same landmarks whatever the count)


@dataclass(frozen=True, slots=True)
class StillResult:
    """xy (k, 33, 2) normalized; visibility (k, 33); world (k, 33, 3) metres; NaN where no pose."""

    xy: np.ndarray
    visibility: np.ndarray
    world: np.ndarray
    size: tuple[int, int]  # (w, h) of the analyzed (downscaled) image
    infer_s: float
    cached: bool


def image_kind(data: bytes) -> str | None:
    """'jpeg' or 'png' from the leading bytes, else None."""
    return next((kind for magic, kind in MAGIC.items() if data.startswith(magic)), None)


# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic): they carry the size
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) that a JPEG or PNG header claims, read without decoding; None when the
    header does not say (the decoder then decides)."""
    kind = image_kind(data)
    if kind == "png":
        if len(data) < 24 or data[12:16] != b"IHDR":
            return None
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    i = 2
    while kind == "jpeg" and i + 9 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _SOF:
            return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
        if marker == 0xDA:  # start of scan before any frame header
            return None
        i += 2 if 0xD0 <= marker <= 0xD8 or marker == 0x01 else 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return None


def check_image(data: bytes, name: str) -> None:
    """Raise unless ``data`` is a JPEG or PNG whose header claims at most ``MAX_PIXELS``: a
    decompression bomb (a few KB claiming 30000x30000) is refused before anything decodes it."""
    if image_kind(data) is None:
        raise NotAnImage(f"{name!r} is not a JPEG or PNG image (first bytes {data[:8]!r}): expected one of those")
    size = image_size(data)
    if size is not None and size[0] * size[1] > MAX_PIXELS:
        raise NotAnImage(f"{name!r} claims {size[0]}x{size[1]} pixels: expected at most {MAX_PIXELS} (8192x8192)")


def decode_image(data: bytes, name: str, max_side: int) -> np.ndarray:
    """RGB uint8 (h, w, 3), halved until its longer side is at most ``max_side``."""
    check_image(data, name)
    try:
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:  # OpenCV's own limits (e.g. more than 2^30 pixels) raise rather than return None
        bgr = None
    if bgr is None:
        raise NotAnImage(f"{name!r} looks like an image but could not be decoded: expected a complete JPEG or PNG")
    if bgr.shape[0] * bgr.shape[1] > MAX_PIXELS:
        raise NotAnImage(f"{name!r} is {bgr.shape[1]}x{bgr.shape[0]}: expected at most {MAX_PIXELS} pixels")
    for _ in range(halvings(bgr.shape[1], bgr.shape[0], max_side)):
        bgr = cv2.resize(bgr, (bgr.shape[1] // 2, bgr.shape[0] // 2), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


# XNNPACK threads for a still when nothing else infers: two took a 640x480 full-model still
# from 38 to 28 ms p50 here. XNNPACK's pool threads spin for a while after each model run, so two
# threads pay only in a process that runs stills one after another (the server's still worker,
# ``pipeline.pool.make_still_pool``): in a shared pool the next still went to the other worker while
# the first one's threads still spun (42-58 ms p50), and with every worker on two threads under load
# they spun to seconds. The caller picks (``StillJob.threads``); each count has its own landmarker.
IDLE_THREADS = 2
_IMAGE_LANDMARKERS: dict[int, object] = {}
_IMAGE_OPTIONS: infer.InferOptions | None = None


def _landmarker(options: infer.InferOptions, threads: int = 1) -> object:
    global _IMAGE_OPTIONS
    if _IMAGE_OPTIONS != options:
        for lm in _IMAGE_LANDMARKERS.values():
            lm.close()  # type: ignore[attr-defined]
        _IMAGE_LANDMARKERS.clear()
        _IMAGE_OPTIONS = options
    threads = max(1, min(threads, IDLE_THREADS))
    if threads not in _IMAGE_LANDMARKERS:
        _IMAGE_LANDMARKERS[threads] = infer.create(options, video=False, threads=threads)
    return _IMAGE_LANDMARKERS[threads]


def warm_still(options: infer.InferOptions) -> int:
    """The still worker's warm-up: OpenCV on one thread, the IMAGE-mode landmarker of each thread
    count built and run once on a blank image. Returns the pid."""
    import os

    cv2.setNumThreads(1)
    blank = np.zeros((64, 64, 3), np.uint8)
    try:
        for threads in sorted({1, IDLE_THREADS}):
            _landmarker(options, threads).detect(infer.image(blank))  # type: ignore[attr-defined]
    except ModelError as exc:  # leave the worker alive: run_still raises it again, to the caller
        log.warning("could not warm the still model: %s", exc)
    return os.getpid()


def run_still(job: StillJob) -> StillResult:
    rgb = decode_image(job.data, job.name, job.max_side)
    o = job.options
    params = {"model": o.model_id or o.model_path, "k": o.num_poses, "det": o.min_detection,
              "pres": o.min_presence, "trk": o.min_tracking, "mode": "image"}
    cache = shared(job.cache, infer.WORKER_MEMORY_CACHE) if job.cache is not None else None
    key = frame_key(rgb, params) if cache is not None else ""
    size = (rgb.shape[1], rgb.shape[0])
    hit = cache.get(key) if cache is not None else None
    if hit is not None:
        xy, v, w = frame_from_bytes(hit)
        return StillResult(xy, v, w, size, 0.0, True)
    lm = _landmarker(o, job.threads)
    t0 = time.perf_counter()
    res = lm.detect(infer.image(rgb))  # type: ignore[attr-defined]
    infer_s = time.perf_counter() - t0
    xy, v, w = infer.unpack(res, o.num_poses)
    if cache is not None:
        cache.put(key, frame_to_bytes(xy, v, w))
    return StillResult(xy, v, w, size, infer_s, False)

