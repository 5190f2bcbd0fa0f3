"""Infer stage: MediaPipe pose on one chunk of a clip. The only module that imports mediapipe.

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
from dataclasses import dataclass

import numpy as np

from .decode import iter_frames
from .errors import ModelError
from .records import N_LANDMARKS

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class InferOptions:
    model_path: str
    num_poses: int = 1
    min_detection: float = 0.5
    min_presence: float = 0.5
    min_tracking: float = 0.5


@dataclass(frozen=True, slots=True)
class ChunkJob:
    """Frames ``start <= i < stop`` (every ``stride``) of ``path``; decode from ``lead_start``."""

    path: str
    start: int
    stop: int
    lead_start: int
    stride: int
    max_side: int
    fps_hint: float
    options: InferOptions


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


_LANDMARKER: object | None = None
_LOADED: InferOptions | None = None
_CLOCK_MS = 0  # this process's landmarker timeline; VIDEO mode needs it strictly increasing


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
    """Pool initializer / warm-up: load the model and run it once on a blank frame."""
    import mediapipe as mp

    global _CLOCK_MS
    try:
        lm = load(options)
    except ModelError:  # leave the worker alive: run_chunk raises it again, to the caller
        log.exception("could not warm the pose model")
        return os.getpid()
    blank = np.zeros((64, 64, 3), np.uint8)
    _CLOCK_MS += 1000
    lm.detect_for_video(mp.Image(image_format=mp.ImageFormat.SRGB, data=blank), _CLOCK_MS)  # type: ignore[attr-defined]
    return os.getpid()


def run_chunk(job: ChunkJob) -> ChunkResult:
    import mediapipe as mp

    global _CLOCK_MS
    lm = load(job.options)
    # One landmarker per process, reused across chunks: each chunk continues this
    # process's clock after a gap; the lead-in frames let the tracker re-acquire.
    base_ms = _CLOCK_MS + 10_000
    k = job.options.num_poses
    frames, ts, xys, vis, worlds = [], [], [], [], []
    size = (0, 0)
    infer_s = 0.0
    for fr in iter_frames(job.path, job.lead_start, job.stop, job.stride, job.max_side, job.fps_hint):
        size = (fr.rgb.shape[1], fr.rgb.shape[0])
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=fr.rgb)
        t0 = time.perf_counter()
        _CLOCK_MS = max(_CLOCK_MS + 1, base_ms + int(round(fr.t * 1000)))
        res = lm.detect_for_video(image, _CLOCK_MS)  # type: ignore[attr-defined]
        infer_s += time.perf_counter() - t0
        if fr.index < job.start:
            continue
        xy = np.full((k, N_LANDMARKS, 2), np.nan, np.float32)
        v = np.zeros((k, N_LANDMARKS), np.float32)
        w = np.full((k, N_LANDMARKS, 3), np.nan, np.float32)
        for p, (lms, wlms) in enumerate(zip(res.pose_landmarks, res.pose_world_landmarks, strict=True)):
            if p >= k:
                break
            xy[p] = [(q.x, q.y) for q in lms]
            v[p] = [q.visibility if q.visibility is not None else 0.0 for q in lms]
            w[p] = [(q.x, q.y, q.z) for q in wlms]
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
    )
