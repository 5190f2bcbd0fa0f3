"""Infer stage: MediaPipe pose on one chunk of a clip. The only pipeline module that imports mediapipe
(``models/registry.py`` uses its metadata writer to build the model bundle).

A worker process loads the model once (``load``) and keeps it for every chunk it
is given. Each chunk is decoded by the worker itself (no frames cross process
boundaries) and tracked in VIDEO mode from a fresh detection on its first frame (optionally
steered to one person, see :class:`ChunkJob`). Results leave as plain numpy arrays (see
:class:`ChunkResult`), never MediaPipe objects.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import numpy as np

from .cache import CacheConfig, TieredCache, shared
from .cache.keys import frame_key
from .decode import Frame, iter_frames
from .errors import ModelError
from .records import N_LANDMARKS
from .serialize import frame_from_bytes, frame_to_bytes
from .subject import box

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
    """Frames ``start <= i < stop`` (every ``stride``; ``stop=None``: to the end) of ``path``.

    ``steer``: (x0, y0, x1, y1), normalized, the box of the person to track: the first frame is
    also shown to the model with everything outside that box (widened by :data:`STEER_MARGIN`)
    blacked out, so its detection finds that person and tracking follows them (None: whoever
    the detector finds first). ``anchor``: without ``steer``, steer to where the person the
    detector finds on frame ``anchor`` stands (a later chunk anchors on the clip's first frame,
    where the first chunk's tracking starts: the subject of an exercise done in place)."""

    path: str
    start: int
    stop: int | None
    stride: int
    max_side: int
    fps_hint: float
    options: InferOptions
    cache: CacheConfig | None = None  # per-frame landmark cache (None: off)
    steer: tuple[float, float, float, float] | None = None
    anchor: int | None = None


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
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8  # glibc mallopt parameters
WORKER_MEMORY_CACHE = 64 << 20  # per-process memory tier for frame landmarks
STEER_MARGIN = 0.25  # a steered first frame keeps the box widened by this share of its size per side
# One chunk at a time per process: the landmarker and its clock are per process, and a Dask
# worker may run several tasks at once in threads (``dask worker --nthreads 1`` avoids waiting).
_RUN_LOCK = threading.Lock()


_BARE = ("mediapipe", "mediapipe.tasks", "mediapipe.tasks.python", "mediapipe.tasks.python.vision")


def _import_tasks() -> None:
    """Import only MediaPipe's pose landmarker task, skipping four package ``__init__`` files.

    ``import mediapipe`` also loads the legacy solutions and, through their drawing utils,
    matplotlib: 2 s of a worker's start instead of 0.5 s. The packages are entered without
    running their ``__init__``; a submodule still imports on attribute access, and any other
    missing attribute (``mediapipe.solutions`` in a test or the naive benchmark) runs the real
    ``__init__`` files first, so the rest of the process sees the whole package.
    """
    if "mediapipe" in sys.modules:
        return
    for name in _BARE:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            raise ModelError(f"MediaPipe is not installed: {name} not found (expected mediapipe==0.10.21)")
        module = importlib.util.module_from_spec(spec)
        module.__getattr__ = _on_missing(name)  # type: ignore[method-assign]
        sys.modules[name] = module
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, module)


def _on_missing(name: str) -> Callable[[str], object]:
    def getattr_(attr: str) -> object:
        if not attr.startswith("__") and importlib.util.find_spec(f"{name}.{attr}") is not None:
            return importlib.import_module(f"{name}.{attr}")  # a submodule: no __init__ needed
        for bare in _BARE:  # parents first, as a normal import would
            module = sys.modules[bare]
            if "__getattr__" in vars(module):
                del module.__getattr__
                spec = module.__spec__
                assert spec is not None and spec.loader is not None
                spec.loader.exec_module(module)
        return getattr(sys.modules[name], attr)

    return getattr_


def create(options: InferOptions, video: bool = True, threads: int = 1) -> object:
    """A new PoseLandmarker for ``options``, in VIDEO mode (tracking) or IMAGE mode (stills);
    ``threads`` > 1 lets XNNPACK spread one frame over that many threads (same landmarks)."""
    _import_tasks()
    from mediapipe.tasks.python.vision import pose_landmarker
    from mediapipe.tasks.python.vision.core.vision_task_running_mode import VisionTaskRunningMode

    opts = pose_landmarker.PoseLandmarkerOptions(
        base_options=_base_options(options.model_path, threads),
        running_mode=VisionTaskRunningMode.VIDEO if video else VisionTaskRunningMode.IMAGE,
        num_poses=options.num_poses,
        min_pose_detection_confidence=options.min_detection,
        min_pose_presence_confidence=options.min_presence,
        min_tracking_confidence=options.min_tracking,
    )
    try:
        return pose_landmarker.PoseLandmarker.create_from_options(opts)
    except (RuntimeError, ValueError) as exc:
        raise ModelError(
            f"model file {options.model_path} could not be loaded by MediaPipe ({exc}): expected a "
            "pose landmarker .task bundle"
        ) from None


def _base_options(model_path: str, threads: int) -> object:
    """MediaPipe's BaseOptions, with XNNPACK's thread count when ``threads`` > 1: the Python
    class does not expose it, but the BaseOptions proto it builds has ``acceleration.xnnpack``."""
    from mediapipe.calculators.tensor import inference_calculator_pb2
    from mediapipe.tasks.cc.core.proto import acceleration_pb2
    from mediapipe.tasks.python.core.base_options import BaseOptions

    if threads <= 1:
        return BaseOptions(model_asset_path=model_path)
    xnnpack = inference_calculator_pb2.InferenceCalculatorOptions.Delegate.Xnnpack(num_threads=threads)

    class Threaded(BaseOptions):  # type: ignore[misc]
        def to_pb2(self) -> object:
            pb = super().to_pb2()
            pb.acceleration.CopyFrom(acceleration_pb2.Acceleration(xnnpack=xnnpack))
            return pb

    return Threaded(model_asset_path=model_path)


def load(options: InferOptions) -> object:
    """Create (or reuse) this process's VIDEO-mode PoseLandmarker for ``options``."""
    global _LANDMARKER, _LOADED
    if _LANDMARKER is not None and _LOADED == options:
        return _LANDMARKER
    close()
    _LANDMARKER = create(options)
    _LOADED = options
    return _LANDMARKER


def close() -> None:
    global _LANDMARKER, _LOADED
    if _LANDMARKER is not None:
        _LANDMARKER.close()  # type: ignore[attr-defined]
    _LANDMARKER, _LOADED = None, None


def undo_malloc_trim() -> None:
    """Give glibc malloc back its large-buffer behaviour in a Dask worker (``ModelPlugin.setup``).

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``; setting it turns off glibc's
    dynamic mmap threshold, so every decoded frame (MBs) is mmapped and unmapped, page faults and
    all: a pool worker with that variable analyzed 20-25% fewer frames/s here. A fixed trim
    threshold of 128 MB and mmap threshold of 32 MB keep frame buffers on the heap, reused.
    """
    _mallopt((M_TRIM_THRESHOLD, 128 << 20), (M_MMAP_THRESHOLD, 32 << 20))


def limit_malloc_arenas(arenas: int = 2) -> None:
    """At most ``arenas`` glibc malloc arenas in this process (the API process, before its threads).

    glibc gives each thread that allocates while another holds an arena a new one, up to 8 per
    core, and frees inside one arena rarely go back to the system: the API process's thread hops
    (uploads, cache reads, a job's features stage) spread its heap over many arenas and its RSS
    crept up all through a 10-minute soak (380 -> 430 MB). With two, it levelled off after the
    first minutes. Later arenas only: call it before the threads start.
    """
    _mallopt((M_ARENA_MAX, arenas))


def _mallopt(*settings: tuple[int, int]) -> None:
    lib = libc()
    try:
        for param, value in settings:
            lib.mallopt(param, value)
    except (AttributeError, OSError):  # no C library found, or not glibc: nothing to tune
        pass


def libc() -> Any:
    """The C library through ctypes (None where none is found: calls on it raise AttributeError)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def warm(options: InferOptions) -> int:
    """Pool initializer / warm-up: load the model and run it once on a blank frame.

    Workers are one per core: OpenCV's own threads would only compete with the other workers.
    """
    import cv2

    cv2.setNumThreads(1)
    global _CLOCK_MS
    with _RUN_LOCK:
        try:
            lm = load(options)
        except ModelError as exc:  # leave the worker alive: run_chunk raises it again, to the caller
            log.warning("could not warm the pose model: %s", exc)
            return os.getpid()
        blank = np.zeros((64, 64, 3), np.uint8)
        _CLOCK_MS += 1000
        lm.detect_for_video(image(blank), _CLOCK_MS)  # type: ignore[attr-defined]
    return os.getpid()


def image(rgb: np.ndarray) -> object:
    """A MediaPipe image over an RGB uint8 (h, w, 3) array."""
    from mediapipe.python._framework_bindings.image import Image
    from mediapipe.python._framework_bindings.image_frame import ImageFormat

    return Image(image_format=ImageFormat.SRGB, data=rgb)


def unpack(res: object, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A landmarker result as (xy (k,33,2), visibility (k,33), world (k,33,3)), NaN-filled past
    the poses found."""
    xy = np.full((k, N_LANDMARKS, 2), np.nan, np.float32)
    v = np.zeros((k, N_LANDMARKS), np.float32)
    w = np.full((k, N_LANDMARKS, 3), np.nan, np.float32)
    found = zip(res.pose_landmarks, res.pose_world_landmarks, strict=True)  # type: ignore[attr-defined]
    for p, (lms, wlms) in enumerate(found):
        if p >= k:
            break
        xy[p] = [(q.x, q.y) for q in lms]
        v[p] = [q.visibility if q.visibility is not None else 0.0 for q in lms]
        w[p] = [(q.x, q.y, q.z) for q in wlms]
    return xy, v, w


def _detect(lm: object, rgb: np.ndarray, k: int, base_ms: int, t: float) -> tuple[np.ndarray, ...]:
    """Run the landmarker on one frame: (xy (k,33,2), visibility (k,33), world (k,33,3))."""
    global _CLOCK_MS
    _CLOCK_MS = max(_CLOCK_MS + 1, base_ms + int(round(t * 1000)))
    return unpack(lm.detect_for_video(image(rgb), _CLOCK_MS), k)  # type: ignore[attr-defined]


def steered(rgb: np.ndarray, area: tuple[float, float, float, float]) -> np.ndarray:
    """A copy of ``rgb`` black outside ``area`` (normalized x0, y0, x1, y1) widened by
    :data:`STEER_MARGIN` of its width and height on each side."""
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = area
    mx, my = STEER_MARGIN * (x1 - x0), STEER_MARGIN * (y1 - y0)
    c0, c1 = max(0, int((x0 - mx) * w)), min(w, int(math.ceil((x1 + mx) * w)))
    r0, r1 = max(0, int((y0 - my) * h)), min(h, int(math.ceil((y1 + my) * h)))
    out = np.zeros_like(rgb)
    out[r0:r1, c0:c1] = rgb[r0:r1, c0:c1]
    return out


def run_chunk(job: ChunkJob) -> ChunkResult:
    """Decode and infer one chunk; frames whose pixels were seen before come from the cache."""
    with _RUN_LOCK:
        lm = load(job.options)
        cache = shared(job.cache, WORKER_MEMORY_CACHE) if job.cache is not None else None
        frames_in = iter_frames(job.path, job.start, job.stop, job.stride, job.max_side, job.fps_hint, threads=1)
        with closing(frames_in):  # the capture is released even if inference raises
            chunk = _infer_frames(frames_in, job, lm, cache)
    return chunk


def _forget(lm: object, rgb: np.ndarray, k: int, base_ms: int) -> None:
    """Make the landmarker forget whom it tracked (a blank frame): its next frame runs the detector."""
    _detect(lm, np.zeros_like(rgb), k, base_ms, 0.0)


def _anchor_box(lm: object, job: ChunkJob, base_ms: int) -> tuple[float, float, float, float] | None:
    """The box of the person a fresh detection finds on frame ``job.anchor`` (None: nobody), on
    the landmarker's clock just after ``base_ms``."""
    assert job.anchor is not None
    frames_in = iter_frames(job.path, job.anchor, job.anchor + 1, 1, job.max_side, job.fps_hint, threads=1)
    with closing(frames_in):
        fr = next(frames_in, None)
    if fr is None:
        return None
    _forget(lm, fr.rgb, job.options.num_poses, base_ms)
    xy, _, _ = _detect(lm, fr.rgb, job.options.num_poses, base_ms + 1, 0.0)
    return box(xy[0]) if np.isfinite(xy[0, 0, 0]) else None


def _infer_frames(
    frames_in: Iterator[Frame], job: ChunkJob, lm: object, cache: TieredCache | None
) -> ChunkResult:
    params = {"model": job.options.model_id or job.options.model_path, "k": job.options.num_poses,
              "det": job.options.min_detection, "pres": job.options.min_presence, "trk": job.options.min_tracking}
    # One landmarker per process, reused across chunks: each chunk continues this
    # process's clock after a gap, and tracks from a detection on its first frame.
    base_ms = _CLOCK_MS + 10_000
    k = job.options.num_poses
    frames, ts, xys, vis, worlds = [], [], [], [], []
    size = (0, 0)
    infer_s = 0.0
    hits = misses = 0
    first = 0.0
    for fr in frames_in:
        size = (fr.rgb.shape[1], fr.rgb.shape[0])
        key = frame_key(fr.rgb, params) if cache is not None else ""
        cached = cache.get(key) if cache is not None else None
        if cached is not None:
            xy, v, w = frame_from_bytes(cached)
            hits += 1
        else:
            if not first:  # forget the previous chunk's (or clip's) subject: track from a detection
                steer = job.steer
                if steer is None and job.anchor is not None:  # only once a frame is inferred
                    steer = _anchor_box(lm, job, base_ms - 8_000)
                _forget(lm, fr.rgb, k, base_ms - 5_000)
                if steer is not None:  # detect the steered person just before the real frame
                    _detect(lm, steered(fr.rgb, steer), k, base_ms - 1, fr.t)
                first = time.time()
            t0 = time.perf_counter()
            xy, v, w = _detect(lm, fr.rgb, k, base_ms, fr.t)
            infer_s += time.perf_counter() - t0
            misses += 1
            if cache is not None:
                cache.put(key, frame_to_bytes(xy, v, w))
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
