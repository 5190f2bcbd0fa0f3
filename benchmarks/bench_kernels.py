"""Numba kernels vs their numpy twins, and the whole features stage on a 10-minute clip.

    python -m pytest benchmarks/bench_kernels.py --benchmark-only -q

- ``test_kernel``: the per-frame kernels of :mod:`pipeline.kernels` (those with one array
  answer) against their twins in :mod:`pipeline.reference`, parametrized by implementation x
  size (1k, 10k, 100k frames);
  one group per kernel and size. The JIT is warmed (and the twins' answers checked
  against the kernel's) before timing.
- ``test_full_features``: ``pipeline.analyze.finish`` (everything after inference) on a
  synthetic 18,000-frame squat clip (10 min at 30 fps), with ``squat`` given and ``auto``;
  ``test_full_features_one_thread`` the same without the helper thread of
  :mod:`pipeline.parallel`. The helper takes pieces only while a core is idle
  (``parallel.spare_core``): run on a quiet machine; ``extra_info["spare_core"]`` says in how
  many of the stage's shares a core was free.

Inputs are realistic: the real angle triples over (n, 36, 3) points (33 landmarks plus the
virtual ones), a noisy rest -> turn -> rest cosine train with NaN runs, per-frame thresholds
from ``pipeline.reps.thresholds``. Timings are reported, never asserted.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import builders
import numpy as np
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from models.registry import ModelSpec
from pipeline import analyze, angles, kernels, parallel, reference
from pipeline.config import AnalysisConfig
from pipeline.measures import PAUSE_BAND
from pipeline.records import Analysis, PoseSeries, VideoInfo
from pipeline.reps import thresholds

FPS = 30.0
SIZES = (1_000, 10_000, 100_000)
IMPLS: dict[str, ModuleType] = {"numba": kernels, "numpy": reference}
KERNELS = (
    "joint_angles", "fill_gaps", "smooth", "rolling_max", "envelope", "combine", "segment_reps", "valid_reps",
    "refine_reps", "rep_phases",
)
PERIOD_S = 2.0  # one rep every 2 s
MAX_GAP = 12  # frames (0.4 s), as pipeline.reps uses at 30 fps
SMOOTH_HALF = 3  # frames (0.1 s)
ENVELOPE_HALF = 60  # frames: the threshold envelope spans two periods
MIN_LEN = 12  # frames (0.4 s)
MIN_ROM = 30.0  # degrees
CLIP_FRAMES = 18_000  # 10 min at 30 fps


def _with_gaps(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A copy of x with NaN runs of 1..20 frames over roughly 2% of the frames."""
    out = x.copy()
    runs = len(x) // 200
    for start, length in zip(rng.integers(0, len(x), runs), rng.integers(1, 21, runs), strict=True):
        out[start : start + length] = np.nan
    return out


@functools.cache
def _inputs(n: int) -> dict[str, tuple[object, ...]]:
    """Arguments for each kernel at n frames (built once per size)."""
    rng = np.random.default_rng(n)
    t = np.arange(n) / FPS
    world = rng.normal(0.0, 0.3, (n, 33, 3))
    pts = np.ascontiguousarray(angles._extend(world, np.array([0.0, -1.0, 0.0])))
    # excursion from rest (0) to the turn (~100 deg) and back, plus 2 deg of jitter
    excursion = 50.0 * (1.0 - np.cos(2.0 * np.pi * t / PERIOD_S)) + rng.normal(0.0, 2.0, n)
    gappy = _with_gaps(excursion, rng)
    s = kernels.smooth(kernels.fill_gaps(gappy, MAX_GAP), SMOOTH_HALF)
    lo, hi = thresholds(s, ENVELOPE_HALF, MIN_ROM)
    reps = kernels.segment_reps(s, lo, hi, MIN_LEN, MAX_GAP)
    assert len(reps) > n / FPS / PERIOD_S / 2, f"only {len(reps)} reps in {n} frames: not a realistic signal"
    # four knee/hip-like angle columns around the excursion, visibility that dips now and then
    raw = np.stack([170.0 - gappy + rng.normal(0.0, 3.0, n) for _ in range(4)], axis=1)
    vis = np.clip(rng.normal(0.8, 0.25, (n, 4)), 0.0, 1.0)
    meds = np.nanmedian(raw, axis=0)
    walking = rng.random(n) < 0.1
    posture = rng.normal(10.0, 5.0, n)
    return {
        "joint_angles": (pts, angles.TRIPLES),
        "fill_gaps": (gappy, MAX_GAP),
        "smooth": (gappy, SMOOTH_HALF),
        "rolling_max": (s, ENVELOPE_HALF),
        "envelope": (s, ENVELOPE_HALF),
        "combine": (raw, vis, np.arange(4), np.array([-1.0, -1.0, -1.0, -1.0]), np.array([1.0, 1.0, 0.5, 0.5]),
                    meds, 0.15, 0.35),
        "segment_reps": (s, lo, hi, MIN_LEN, MAX_GAP),
        "valid_reps": (s, reps, MIN_ROM, walking, posture, 0.3, 50.0),
        "refine_reps": (s, reps, 0.03),
        "rep_phases": (170.0 - gappy, t, reps, PAUSE_BAND),  # the knee angle itself, NaN runs and all
    }


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kernel", KERNELS)
def test_kernel(benchmark: BenchmarkFixture, kernel: str, impl: str, n: int) -> None:
    args = _inputs(n)[kernel]
    expected = getattr(kernels, kernel)(*args)  # warms (or loads) the JIT outside the timing
    fn: Callable[..., np.ndarray] = getattr(IMPLS[impl], kernel)
    benchmark.group = f"{kernel} n={n}"
    got = benchmark(fn, *args)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)  # same answer, not a timing check


@functools.cache
def _clip() -> PoseSeries:
    """10 min of squats at 30 fps (2 s reps, 0.5 s rest), 1 cm landmark noise, two tracking losses."""
    motion = builders.squat(n_reps=240, fps=FPS, period_s=PERIOD_S, rest_s=0.5)
    pose = builders.build(motion, noise_m=0.01, seed=1, lost=((100.0, 100.2), (300.0, 301.0)))
    return builders.crop(pose, 0.0, CLIP_FRAMES / FPS)


@pytest.mark.parametrize("exercise", ["squat", "auto"])
def test_full_features(benchmark: BenchmarkFixture, exercise: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _full_features(benchmark, exercise, "", monkeypatch)


@pytest.mark.parametrize("exercise", ["squat", "auto"])
def test_full_features_one_thread(benchmark: BenchmarkFixture, exercise: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "MIN_FRAMES", 10**9)
    _full_features(benchmark, exercise, ", one thread", monkeypatch)


def _full_features(benchmark: BenchmarkFixture, exercise: str, group: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pose = _clip()
    assert len(pose) == CLIP_FRAMES
    info = VideoInfo("bench.mp4", len(pose), FPS, 1280, 720, 0, 0)
    cfg = AnalysisConfig(model_cache=Path("/tmp"), exercise=exercise)
    model = ModelSpec("bench", Path("x"), "0" * 64)

    def run() -> Analysis:
        return analyze.finish(info, pose, cfg, model, stride=1, wall_s=0.0, infer_s=0.0)

    run()  # warm: JIT, first-call imports
    spare = [0, 0]  # shares without, with a free core
    is_spare = parallel.spare_core

    def counted() -> bool:
        free = is_spare()
        spare[free] += 1
        return free

    monkeypatch.setattr(parallel, "spare_core", counted)
    benchmark.group = f"full features n={CLIP_FRAMES}{group}"
    result = benchmark(run)
    benchmark.extra_info["spare_core"] = f"{spare[1]}/{sum(spare)}"
    benchmark.extra_info["rep_count"] = result.summary["rep_count"]
    benchmark.extra_info["exercise"] = result.summary["exercise"]
    assert result.summary["rep_count"], "the benchmark clip should yield reps (else it times the wrong path)"
