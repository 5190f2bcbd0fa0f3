"""The orchestrator: decode -> infer -> subject -> angles -> exercise -> reps -> measures -> summary.

``analyze`` wires the stages; each stage is a pure function of its inputs.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import NamedTuple, cast

import numpy as np

from models import registry

from . import angles, classify, geometry, kernels, measures
from . import reps as R
from .config import AUTO, AnalysisConfig
from .decode import keyframes, probe
from .exercises import EXERCISES, GENERIC, Component, Exercise
from .infer import ChunkResult
from .parallel import Once, call, map2
from .plan import chunk_count, plan_chunks
from .pool import Progress, keep_subject, run_chunks
from .records import Analysis, PoseSeries, Rep, VideoInfo
from .stored import SCHEMA_VERSION, Lookup, infer_options, lookup, resolve_model, store
from .subject import select

log = logging.getLogger(__name__)

MIN_SCORE = 0.2  # auto detection below this falls back to the generic counter


def stitch(results: list[ChunkResult]) -> tuple[np.ndarray, ...]:
    cat = [np.concatenate([getattr(r, a) for r in results]) for a in ("frame", "t", "xy", "visibility", "world")]
    return tuple(cat)


class Inferred(NamedTuple):
    """What :func:`infer_pose` hands to :func:`finish`."""

    info: VideoInfo
    pose: PoseSeries
    model: registry.ModelSpec
    stride: int
    wall_s: float
    infer_s: float
    frame_cache: dict[str, int]
    first_inference_epoch: float | None = None  # time.time() of the first frame sent to the model
    started: float = 0.0  # perf_counter() when inference began


def infer_pose(
    path: str, cfg: AnalysisConfig, executor: Executor | None = None, progress: Progress | None = None
) -> Inferred:
    """The inference half of :func:`analyze`: probe, run the model, stitch, select the subject.

    Ready for :func:`finish`, so a caller can infer once and finish several times (e.g. with
    different exercises). Frames seen before (same pixels, model, parameters) come from the cache.
    """
    t0 = time.perf_counter()
    info = probe(path)
    model = resolve_model(cfg)
    stride = cfg.stride(info.fps)
    opts = infer_options(cfg, model)
    workers = cfg.workers if executor is not None else 1
    total = math.ceil(info.frames / stride)
    keys = keyframes(path) if chunk_count(total, workers) > 1 else None  # where seeks start decoding
    jobs = plan_chunks(info, stride, workers, cfg.max_side, opts, cfg.cache, keys)
    results = keep_subject(jobs, run_chunks(jobs, executor, total, progress), executor, total)
    frame, t, xy, vis, world = stitch(results)
    size = next((r.size for r in results if r.size[1]), (info.width, info.height))
    pose = select(frame, t, xy, vis, world, size[0] / max(size[1], 1))
    infer_s = sum(r.infer_s for r in results)
    hits = sum(r.cache_hits for r in results)
    frame_stats = {"hits": hits, "misses": sum(r.cache_misses for r in results)}
    firsts = [r.first_inference_epoch for r in results if r.first_inference_epoch]
    inferred = Inferred(info, pose, model, stride, time.perf_counter() - t0, infer_s, frame_stats,
                        min(firsts) if firsts else None, t0)
    return inferred


def analyze(
    path: str, cfg: AnalysisConfig, executor: Executor | None = None, progress: Progress | None = None
) -> Analysis:
    """Analyze one clip. ``executor`` runs inference chunks (None: in this process).

    With ``cfg.cache``, the same bytes analyzed with the same parameters return the stored
    result without decoding (``summary["cache"]["result"] == "hit"``).
    """
    found = lookup(path, cfg)
    return found.hit if found.hit is not None else compute(path, cfg, found, executor, progress)


def compute(
    path: str, cfg: AnalysisConfig, found: Lookup, executor: Executor | None = None,
    progress: Progress | None = None,
) -> Analysis:
    """The analysis after a cache miss (``found`` from :func:`pipeline.stored.lookup`); stores it."""
    inferred = infer_pose(path, cfg, executor, progress)
    wall = inferred.wall_s + (inferred.started - found.started)
    result = finish(inferred.info, inferred.pose, cfg, found.model, inferred.stride, wall, inferred.infer_s)
    timing = result.summary["timing"]
    if isinstance(timing, dict):
        timing["first_inference_epoch"] = inferred.first_inference_epoch
    result.summary["cache"] = {"frames": inferred.frame_cache}
    store(found, result)
    return result


GENERIC_ANGLES = ("knee", "hip", "elbow", "shoulder", "trunk_lean", "leg_spread", "body_line")
GENERIC_MIN_ROM = 30.0


def _generic(raw: np.ndarray, vis: np.ndarray, t: np.ndarray) -> Exercise:
    """The class-agnostic fallback: the major joint angle with the strongest periodic, visible motion.

    Short segments (the foot) are left out: their angles swing with landmark jitter.
    """
    fps = (len(t) - 1) / max(t[-1] - t[0], 1e-6) if len(t) > 1 else 30.0
    best, best_score, best_dir = angles.NAMES[0], -1.0, 1
    for j, name in enumerate(angles.NAMES):
        if not name.endswith(GENERIC_ANGLES):
            continue
        a = np.where(vis[:, j] >= angles.VISIBLE, raw[:, j], np.nan)
        (lo, hi), seen = kernels.percentiles(a, _Q_GENERIC, True)
        if seen < 8:
            continue
        _, strength = R.dominant_period(a, fps)
        score = (hi - lo) * strength * (seen / len(a))
        if score > best_score:
            med = kernels.nan_median(a, True)
            # the turning point is the brief extreme: rest is where the signal mostly sits
            best, best_score, best_dir = name, score, (1 if med - lo < hi - med else -1)
    return Exercise(GENERIC, best, (Component(best, best_dir),), (), GENERIC_MIN_ROM, ())


_Q_GENERIC = np.array([5 / 100, 95 / 100])  # np.percentile's q / 100


def _motion_evidence(
    ex: Exercise, pose: PoseSeries, raw: np.ndarray, vis: np.ndarray, counter: R.Counter | None = None
) -> float:
    """0.6 when the exercise's own counter finds no rep, rising to 1 with two reps whose range is
    at least twice the exercise's minimum (a real set moves well past the bare minimum)."""
    if counter is None:
        counter = R.Counter(raw, vis, angles.NAMES, pose.t, raw[:, angles.NAMES.index("trunk_lean")])
    seg = counter.count(ex.components, ex.min_rom_deg)
    if len(seg.reps) == 0:
        return 0.6
    amp = float(np.median(kernels.amplitudes(seg.signal, seg.reps)))
    return 0.6 + 0.4 * min(len(seg.reps), 2) / 2 * min(1.0, amp / (2 * ex.min_rom_deg))


def choose_exercise(
    cfg: AnalysisConfig, pose: PoseSeries, raw: np.ndarray, vis: np.ndarray, counter: R.Counter | None = None,
    geo: geometry.Geometry | None = None,
) -> tuple[Exercise, str, float, dict[str, float]]:
    """(exercise, source 'given'|'detected', confidence, scores). ``counter`` shares the counts
    tried here with the caller's final count; ``geo`` the clip's geometry (with its posture series)."""
    if cfg.exercise == GENERIC:
        return _generic(raw, vis, pose.t), "given", 1.0, {}
    if cfg.exercise != AUTO:
        return EXERCISES[cfg.exercise], "given", 1.0, {}
    if counter is None:
        counter = R.Counter(raw, vis, angles.NAMES, pose.t, raw[:, angles.NAMES.index("trunk_lean")])
    posture = classify.score_exercises(classify.features(pose, raw, angles.NAMES, geo))
    counter.prepare([EXERCISES[k].components for k, v in posture.items() if v > 0.01])
    scores = {k: v * _motion_evidence(EXERCISES[k], pose, raw, vis, counter) if v > 0.01 else v
              for k, v in posture.items()}
    name = max(scores, key=lambda k: scores[k])
    total = sum(scores.values())
    conf = scores[name] / total if total > 0 else 0.0
    if scores[name] < MIN_SCORE:
        return _generic(raw, vis, pose.t), "detected", round(1.0 - scores[name], 3), scores
    return EXERCISES[name], "detected", conf, scores


class _Counted(NamedTuple):
    seg: R.Segmentation  # the final count
    reps: tuple[Rep, ...]
    primary: np.ndarray  # the primary angle per frame (merged sides)
    reps_json: list[dict[str, object]]
    view: tuple[str, float, float]  # classify.detect_view


def _count_and_measure(ex: Exercise, pose: PoseSeries, geo: geometry.Geometry, counter: R.Counter) -> _Counted:
    """The exercise's reps counted and measured, and the camera view.

    On a long clip the pieces run on two threads (:mod:`.parallel`): the walking frames (first, on
    the caller's thread: the counts need them), each of the exercise's signals made ready and
    counted, the combined signal's reps measured with it (they are nearly always all the reps: a
    body side adds reps, the gait check drops some, rarely; those are measured again) and the
    camera view.
    """
    n, table, vis = len(pose), geo.table, geo.vis
    find = Once(lambda: R.walking_mask(pose, geo=geo))  # the counts need it: usually found first, by the caller
    first, *sides = counter.pieces(ex.components, ex.min_rom_deg, find)

    def combined() -> tuple[R.Segmentation, tuple[np.ndarray, measures.Columns]]:
        s = first()
        return s, measures.columns(ex, table, vis, pose.t, s.signal, s.reps)

    pieces: list[Callable[[], object]] = [find, combined, *sides, lambda: classify.detect_view(pose, geo)]
    out = map2(call, pieces, n)
    walking = cast(np.ndarray, out[0])
    seg0, ahead = cast(tuple[R.Segmentation, tuple[np.ndarray, measures.Columns]], out[1])
    seg = counter.merge(ex.components, ex.min_rom_deg, walking, [seg0, *cast(list[R.Segmentation], out[2:-1])])
    view = cast(tuple[str, float, float], out[-1])
    seg = R.drop_gait(seg, geo.raw, vis, angles.NAMES, ex.in_phase)
    primary, cols = ahead[0], ahead[1].of(seg.reps)
    if cols is None:
        primary, cols = measures.columns(ex, table, vis, pose.t, seg.signal, seg.reps)
    reps, reps_json = measures.reps_of(cols)
    return _Counted(seg, reps, primary, reps_json, view)


def finish(
    info: VideoInfo, pose: PoseSeries, cfg: AnalysisConfig, model: registry.ModelSpec,
    stride: int, wall_s: float, infer_s: float,
) -> Analysis:
    t0 = time.perf_counter()
    geo = geometry.measure(pose, posture=cfg.exercise == AUTO)
    raw, vis, table = geo.raw, geo.vis, geo.table
    counter = R.Counter(raw, vis, angles.NAMES, pose.t, raw[:, angles.NAMES.index("trunk_lean")])
    ex, source, conf, scores = choose_exercise(cfg, pose, raw, vis, counter, geo)
    seg, reps, primary, reps_json, (view, yaw, view_conf) = _count_and_measure(ex, pose, geo, counter)
    detected = geo.detected
    reason = None
    if detected == 0:
        reason = "no person was detected in the video"
    elif not reps:
        reason = (
            "no complete repetition found: no movement of the "
            f"{ex.primary} reached the {ex.min_rom_deg:.0f} degree minimum range and returned to rest"
        )
    wall = wall_s + (time.perf_counter() - t0)
    summary: dict[str, object] = {
        "schema_version": SCHEMA_VERSION,
        "file": {
            "name": os.path.basename(info.path), "size_bytes": info.size_bytes, "width": info.width,
            "height": info.height, "fps": round(info.fps, 3), "duration_s": round(info.duration_s, 3),
            "rotation": info.rotation,
        },
        "exercise": {
            "name": ex.name, "source": source, "confidence": round(float(conf), 3),
            "scores": {k: round(v, 3) for k, v in scores.items()},
        },
        "view": {"name": view, "confidence": view_conf, "yaw_deg": None if not np.isfinite(yaw) else round(yaw, 1)},
        "rep_count": len(reps),
        "reason": reason,
        "primary_signal": {
            "angle": ex.primary, "period_s": None if not np.isfinite(seg.period_s) else round(seg.period_s, 2),
        },
        "reps": reps_json,
        "fatigue": measures.fatigue(reps),
        "fault_definitions": {f.name: f.message for f in ex.faults},
        "frames": {"total": info.frames, "analyzed": len(pose), "detected": detected},
        "timing": {
            "wall_s": round(wall, 3), "fps": round(len(pose) / wall, 1) if wall > 0 else None,
            "infer_s": round(infer_s, 3),
        },
        "model": {"id": model.id, "sha256": model.sha256},
        "params": {"fps": cfg.fps, "stride": stride, "max_side": cfg.max_side, "workers": cfg.workers,
                   "num_poses": cfg.num_poses},
    }
    return Analysis(info, pose, table, ex.primary, primary, reps, summary)
