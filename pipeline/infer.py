"""Infer stage: MediaPipe pose on one chunk of a clip. The only pipeline module that imports mediapipe
(``models/registry.py`` uses its metadata writer to build the model bundle).

A worker process loads the model once (``load``) and keeps it for every chunk it
is given. Each chunk is decoded by the worker itself (no frames cross process
boundaries) and tracked in VIDEO mode; the chunk starts ``lead`` frames early so
the tracker has re-acquired the subject by the first frame it reports. Results
leave as plain numpy arrays (see :class:`ChunkResult`), never MediaPipe objects.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass

import numpy as np

from .cache import CacheConfig, TieredCache, shared
from .cache.keys import frame_key
from .decode import Frame, iter_frames
from .errors import ModelError
from .records import N_LANDMARKS
from .serialize import frame_from_bytes, frame_to_bytes

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class InferOptions:
    model_path: str
    num_poses: int = 1
    model_id: str = ""
    min_detection: float = 0.5
    min_presence: float = 0.5
    min_tracking: float = 0.5


@dataclass(frozen=True, slots=True)
class ChunkJob:
    """Frames ``start <= i < stop`` (every ``stride``; ``stop=None``: to the end) of ``path``;
    decoding begins at ``lead_start`` (on the same stride grid) so tracking has re-acquired."""

    path: str
    start: int
    stop: int | None
    lead_start: int
    stride: int
    max_side: int
    fps_hint: float
    options: InferOptions
    cache: CacheConfig | None = None  # per-frame landmark cache (None: off)


@dataclass(frozen=True, slots=True)
class ChunkResult:
    """k = num_poses candidates per frame, NaN-filled where fewer were found.

    frame (n,) int64; t (n,) float64 s; xy (n, k, 33, 2) float32 normalized;
    visibility (n, k, 33) float32; world (n, k, 33, 3) float32 metres;
    size (w, h) of the analyzed frames; infer_s: seconds spent in MediaPipe.
    """

    start: int
    frame: np.ndarray
    t: np.ndarray
    xy: np.ndarray
    visibility: np.ndarray
    world: np.ndarray
    size: tuple[int, int]
    infer_s: float
    pid: int
    cache_hits: int = 0
    cache_misses: int = 0
    first_inference_epoch: float = 0.0  # time.time() when this chunk's first frame went to the model


_LANDMARKER: object | None = None
_LOADED: InferOptions | None = None
_CLOCK_MS = 0  # this process's landmarker timeline; VIDEO mode needs it strictly increasing
WORKER_MEMORY_CACHE = 64 << 20  # per-process memory tier for frame landmarks


def load(options: InferOptions) -> object:
    """Create (or reuse) this process's PoseLandmarker for ``options``."""
    global _LANDMARKER, _LOADED
    if _LANDMARKER is not None and _LOADED == options:
        return _LANDMARKER
    from mediapipe.tasks.python import BaseOptions, vision

    close()
    opts = vision.PoseLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=options.model_path),
        running_mode=vision.RunningMode.VIDEO,
        num_poses=options.num_poses,
        min_pose_detection_confidence=options.min_detection,
        min_pose_presence_confidence=options.min_presence,
        min_tracking_confidence=options.min_tracking,
    )
    try:
        _LANDMARKER = vision.PoseLandmarker.create_from_options(opts)
    except (RuntimeError, ValueError) as exc:
        raise ModelError(
            f"model file {options.model_path} could not be loaded by MediaPipe ({exc}): expected a "
            "pose landmarker .task bundle"
        ) from None
    _LOADED = options
    return _LANDMARKER


def close() -> None:
    global _LANDMARKER, _LOADED
    if _LANDMARKER is not None:
        _LANDMARKER.close()  # type: ignore[attr-defined]
    _LANDMARKER, _LOADED = None, None


def warm(options: InferOptions) -> int:
    """Pool initializer / warm-up: load the model and run it once on a blank frame.

    Workers are one per core: OpenCV's own threads would only compete with the other workers.
    """
    import cv2

    cv2.setNumThreads(1)
    import mediapipe as mp

    global _CLOCK_MS
    try:
        lm = load(options)
    except ModelError as exc:  # leave the worker alive: run_chunk raises it again, to the caller
        log.warning("could not warm the pose model: %s", exc)
        return os.getpid()
    blank = np.zeros((64, 64, 3), np.uint8)
    _CLOCK_MS += 1000
    lm.detect_for_video(mp.Image(image_format=mp.ImageFormat.SRGB, data=blank), _CLOCK_MS)  # type: ignore[attr-defined]
    return os.getpid()


def _detect(lm: object, rgb: np.ndarray, k: int, base_ms: int, t: float) -> tuple[np.ndarray, ...]:
    """Run the landmarker on one frame: (xy (k,33,2), visibility (k,33), world (k,33,3))."""
    import mediapipe as mp

    global _CLOCK_MS
    _CLOCK_MS = max(_CLOCK_MS + 1, base_ms + int(round(t * 1000)))
    image = mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb)
    res = lm.detect_for_video(image, _CLOCK_MS)  # type: ignore[attr-defined]
    xy = np.full((k, N_LANDMARKS, 2), np.nan, np.float32)
    v = np.zeros((k, N_LANDMARKS), np.float32)
    w = np.full((k, N_LANDMARKS, 3), np.nan, np.float32)
    for p, (lms, wlms) in enumerate(zip(res.pose_landmarks, res.pose_world_landmarks, strict=True)):
        if p >= k:
            break
        xy[p] = [(q.x, q.y) for q in lms]
        v[p] = [q.visibility if q.visibility is not None else 0.0 for q in lms]
        w[p] = [(q.x, q.y, q.z) for q in wlms]
    return xy, v, w


def run_chunk(job: ChunkJob) -> ChunkResult:
    """Decode and infer one chunk; frames whose pixels were seen before come from the cache."""
    lm = load(job.options)
    cache = shared(job.cache, WORKER_MEMORY_CACHE) if job.cache is not None else None
    frames_in = iter_frames(job.path, job.lead_start, job.stop, job.stride, job.max_side, job.fps_hint)
    with closing(frames_in):  # the capture is released even if inference raises
        chunk = _infer_frames(frames_in, job, lm, cache)
    return chunk


def _infer_frames(
    frames_in: Iterator[Frame], job: ChunkJob, lm: object, cache: TieredCache | None
) -> ChunkResult:
    params = {"model": job.options.model_id or job.options.model_path, "k": job.options.num_poses,
              "det": job.options.min_detection, "pres": job.options.min_presence, "trk": job.options.min_tracking}
    # One landmarker per process, reused across chunks: each chunk continues this
    # process's clock after a gap; the lead-in frames let the tracker re-acquire.
    base_ms = _CLOCK_MS + 10_000
    k = job.options.num_poses
    frames, ts, xys, vis, worlds = [], [], [], [], []
    size = (0, 0)
    infer_s = 0.0
    hits = misses = 0
    first = 0.0
    for fr in frames_in:
        size = (fr.rgb.shape[1], fr.rgb.shape[0])
        # lead-in frames are always inferred: they exist to warm the tracker, and a chunk must
        # give the same landmarks whether or not a neighbour cached its lead-in first
        key = frame_key(fr.rgb, params) if cache is not None else ""
        cached = cache.get(key) if cache is not None and fr.index >= job.start else None
        if cached is not None:
            xy, v, w = frame_from_bytes(cached)
            hits += 1
        else:
            if not first:  # forget the previous chunk's (or clip's) subject: track from a detection
                _detect(lm, np.zeros_like(fr.rgb), k, base_ms - 5_000, 0.0)
                first = time.time()
            t0 = time.perf_counter()
            xy, v, w = _detect(lm, fr.rgb, k, base_ms, fr.t)
            infer_s += time.perf_counter() - t0
            misses += 1
            if cache is not None:
                cache.put(key, frame_to_bytes(xy, v, w))
        if fr.index < job.start:
            continue
        frames.append(fr.index)
        ts.append(fr.t)
        xys.append(xy)
        vis.append(v)
        worlds.append(w)
    n = len(frames)
    return ChunkResult(
        start=job.start,
        frame=np.asarray(frames, np.int64),
        t=np.asarray(ts, np.float64),
        xy=np.asarray(xys, np.float32).reshape(n, k, N_LANDMARKS, 2),
        visibility=np.asarray(vis, np.float32).reshape(n, k, N_LANDMARKS),
        world=np.asarray(worlds, np.float32).reshape(n, k, N_LANDMARKS, 3),
        size=size,
        infer_s=infer_s,
        pid=os.getpid(),
        cache_hits=hits,
        cache_misses=misses,
        first_inference_epoch=first,
    )
