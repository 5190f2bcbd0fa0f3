"""Hypothesis properties of the counting kernels and of the rep counter.

``test_kernels.py`` already checks fill_gaps / smooth / rolling_* and segment_reps against their
twins on arbitrary arrays, and segment_reps' own scaling and constant-signal properties. Here:

- the rest of the counting chain (envelope, levels, centre_finite, lag_counts, period_inputs,
  settle, combine, count_reps) against its numpy twin on signals with NaN runs anywhere, and
  what each documents NaN to mean (where an output is NaN; everything else finite);
- the counter itself (``reps.segment`` and ``reps.Counter``, period estimate, adaptive
  thresholds and filters included): NaN runs anywhere never crash it, never add reps and leave
  its outputs finite or NaN; a constant signal, or noise narrower than the minimum range, has
  no reps; a clean periodic movement (periods of 1-6 s) is counted the same at any analysis rate
  (12-60 fps) and any clear amplitude (1.5 x the minimum range of motion and up).
- two strict xfails hold the counterexamples found (reported, not tuned here): white noise wider
  than the minimum range is counted, and fast shallow reps at 12 fps lose one.

Bounded: at most ``EXAMPLES`` examples each, no deadline.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import kernels, reference
from pipeline import reps as R
from pipeline.angles import NAMES
from pipeline.exercises import EXERCISES

EXAMPLES = 100
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
SQUAT = EXERCISES["squat"]
ROM = SQUAT.min_rom_deg
RATES = (12.0, 12.5, 15.0, 24.0, 25.0, 30.0, 50.0, 60.0)  # what --fps 15 (stride) or --fps 0 analyze


# --- builders -------------------------------------------------------------------------------------


def nan_runs(x: np.ndarray, runs: list[tuple[float, int]]) -> np.ndarray:
    """Copy of x with a NaN run of ``length`` frames at each relative position in [0, 1]."""
    out = x.copy()
    for at, length in runs:
        i = int(at * len(x))
        out[i:i + length] = np.nan
    return out


@st.composite
def signals(draw: st.DrawFn, max_n: int = 400) -> np.ndarray:
    """An angle-like signal (random walk, cosines, constant or white noise) with NaN runs anywhere:
    at the ends, inside, long, short, everywhere."""
    n = draw(st.integers(0, max_n))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["walk", "cosine", "constant", "noise"]))
    if kind == "walk":
        x = 90.0 + np.cumsum(rng.normal(0.0, 3.0, n))
    elif kind == "cosine":
        x = 130.0 - 40.0 * np.cos(2 * np.pi * np.arange(n) / rng.uniform(8, 60))
    elif kind == "constant":
        x = np.full(n, rng.uniform(0.0, 180.0))
    else:
        x = rng.normal(90.0, 20.0, n)
    runs = draw(st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(1, max(1, n))), max_size=5))
    return nan_runs(x, runs)


def train(cycles: int, period_s: float, amp: float, fps: float, rest_s: float,
          base: float = 170.0) -> tuple[np.ndarray, np.ndarray]:
    """(signal, t): ``cycles`` clean cosine reps of ``amp`` degrees over ``base`` (turning point at
    the top), ``rest_s`` at rest before and after, sampled at ``fps``."""
    frames = int(round(cycles * period_s * fps)) + 2 * int(round(rest_s * fps)) + 1
    t = np.arange(frames) / fps
    phase = 2 * np.pi * np.clip(t - rest_s, 0.0, cycles * period_s) / period_s
    return base + amp * (1.0 - np.cos(phase)) / 2.0, t


def well_formed(seg: R.Segmentation, n: int) -> None:
    """Reps in range, in order, not overlapping; every output finite or NaN (never inf)."""
    reps = seg.reps
    assert reps.dtype == np.int64 and reps.shape[1:] == (3,)
    assert np.all((0 <= reps[:, 0]) & (reps[:, 0] <= reps[:, 1]) & (reps[:, 1] <= reps[:, 2]) & (reps[:, 2] < n))
    assert np.all(reps[1:, 0] >= reps[:-1, 2]), reps
    for out in (seg.signal, seg.lo, seg.hi):
        assert out.shape == (n,) and not np.isinf(out).any()
    assert not np.isinf(seg.period_s)
    seen = np.isfinite(seg.lo) & np.isfinite(seg.hi)
    assert np.all(seg.lo[seen] <= seg.hi[seen])


def same(got: object, want: object, tol: float = 1e-9) -> None:
    if isinstance(got, tuple):
        assert isinstance(want, tuple) and len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            same(g, w, tol)
        return
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(want, np.float64), rtol=tol, atol=tol,
                               equal_nan=True)


# --- kernels: twins and what NaN means ------------------------------------------------------------


@PROPERTY
@given(x=signals(), half=st.integers(0, 40))
def test_envelope_bounds_the_finite_values_and_is_nan_only_where_none(x: np.ndarray, half: int) -> None:
    e_lo, e_hi = kernels.envelope(x, half)
    same((e_lo, e_hi), reference.envelope(x, half), 0.0)
    finite = np.isfinite(x)
    any_seen = np.array([finite[max(0, i - half):i + half + 1].any() for i in range(len(x))], bool)
    assert np.array_equal(np.isfinite(e_lo), any_seen) and np.array_equal(np.isfinite(e_hi), any_seen)
    assert np.all(e_lo[finite] <= x[finite]) and np.all(x[finite] <= e_hi[finite])


@PROPERTY
@given(x=signals(), half=st.integers(0, 20))
def test_smooth_is_nan_exactly_where_the_input_is_and_stays_in_its_window(x: np.ndarray, half: int) -> None:
    s = kernels.smooth(x, half)
    assert np.array_equal(np.isnan(s), np.isnan(x)) and not np.isinf(s).any()
    e_lo, e_hi = kernels.envelope(x, half)
    ok = np.isfinite(s)
    assert np.all(s[ok] >= e_lo[ok] - 1e-9) and np.all(s[ok] <= e_hi[ok] + 1e-9)


@PROPERTY
@given(x=signals(), max_gap=st.integers(0, 30))
def test_fill_gaps_fills_short_interior_runs_only(x: np.ndarray, max_gap: int) -> None:
    filled = kernels.fill_gaps(x, max_gap)
    finite = np.isfinite(x)
    assert np.array_equal(filled[finite], x[finite])  # what was seen is untouched
    idx = np.flatnonzero(finite)
    for i in np.flatnonzero(~finite):
        before, after = idx[idx < i], idx[idx > i]
        interior = len(before) > 0 and len(after) > 0
        short = interior and after[0] - before[-1] - 1 <= max_gap
        assert np.isfinite(filled[i]) == short, (i, max_gap)
        if short:
            a, b = x[before[-1]], x[after[0]]
            assert min(a, b) - 1e-9 <= filled[i] <= max(a, b) + 1e-9


@PROPERTY
@given(x=signals(), half=st.integers(0, 40), min_span=st.floats(0.0, 120.0),
       fracs=st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1.0)).map(sorted))
def test_levels_are_nan_exactly_where_the_span_is_too_small(x: np.ndarray, half: int, min_span: float,
                                                            fracs: list[float]) -> None:
    e_lo, e_hi = kernels.envelope(x, half)
    lo, hi = kernels.levels(e_lo, e_hi, fracs[0], fracs[1], min_span)
    same((lo, hi), reference.levels(e_lo, e_hi, fracs[0], fracs[1], min_span), 0.0)
    wide = (e_hi - e_lo) >= min_span  # False where the envelope is NaN
    assert np.array_equal(np.isfinite(lo), wide) and np.array_equal(np.isfinite(hi), wide)
    assert np.all(e_lo[wide] <= lo[wide]) and np.all(lo[wide] <= hi[wide]) and np.all(hi[wide] <= e_hi[wide])


@PROPERTY
@given(x=signals(), lags=st.integers(0, 120))
def test_centre_finite_and_lag_counts(x: np.ndarray, lags: int) -> None:
    y, k = kernels.centre_finite(x)
    same((y, k), reference.centre_finite(x))
    finite = np.isfinite(x)
    assert k == finite.sum() and np.all(y[~finite] == 0.0) and np.isfinite(y).all()
    if k:
        assert abs(y[finite].mean()) < 1e-6
    counts = kernels.lag_counts(x, lags)
    assert np.array_equal(counts, reference.lag_counts(x, lags))
    if lags and len(x):
        assert counts[0] == k and np.all(counts >= 0) and np.all(counts <= k)


@PROPERTY
@given(x=signals(), max_gap=st.integers(0, 20), half=st.integers(0, 8), env_half=st.integers(1, 60),
       lags=st.integers(0, 80))
def test_period_inputs_and_settle_match_their_twins(x: np.ndarray, max_gap: int, half: int, env_half: int,
                                                   lags: int) -> None:
    y_got, y_want = np.zeros(len(x) + 5), np.zeros(len(x) + 5)
    got = kernels.period_inputs(x, max_gap, half, lags, y_got)
    same(got, reference.period_inputs(x, max_gap, half, lags, y_want))
    same(y_got, y_want)
    assert np.isfinite(y_got).all()
    filled, first = got[0], got[1]
    settled = kernels.settle(filled, first, half, env_half)
    same(settled, reference.settle(filled, first, half, env_half))
    for out in settled:
        assert not np.isinf(out).any()


@PROPERTY
@given(n=st.integers(0, 300), seed=st.integers(0, 2**32 - 1),
       runs=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(1, 300)), max_size=6),
       min_vis=st.floats(0.0, 1.0), min_den=st.floats(0.01, 3.0))  # the counter's is > 0 (0 / 0 otherwise)
def test_combine_matches_its_twin_with_missing_angles_and_visibility(
    n: int, seed: int, runs: list[tuple[float, int]], min_vis: float, min_den: float
) -> None:
    rng = np.random.default_rng(seed)
    raw = rng.uniform(0.0, 180.0, (n, 4))
    vis = rng.uniform(0.0, 1.0, (n, 4))
    for j in range(4):
        raw[:, j] = nan_runs(raw[:, j], runs[j::4])
        vis[:, j] = np.where(np.isnan(nan_runs(vis[:, j], runs[(j + 1) % 4::4])), 0.0, vis[:, j])
    cols, dirs = np.arange(4, dtype=np.int64), np.array([1.0, -1.0, 1.0, -1.0])
    weights, meds = rng.uniform(0.1, 1.0, 4), np.array([90.0, np.nan, 45.0, 120.0])
    got = kernels.combine(raw, vis, cols, dirs, weights, meds, min_vis, min_den)
    same(got, reference.combine(raw, vis, cols, dirs, weights, meds, min_vis, min_den))
    assert not np.isinf(got).any()


@PROPERTY
@given(x=signals(max_n=600), half=st.integers(2, 60), min_rom=st.floats(5.0, 60.0),
       min_len=st.integers(1, 12), max_gap=st.integers(1, 12), seed=st.integers(0, 2**32 - 1),
       checks=st.sampled_from(["none", "walking", "posture", "both"]))
def test_count_reps_matches_its_twin_on_signals_with_gaps(
    x: np.ndarray, half: int, min_rom: float, min_len: int, max_gap: int, seed: int, checks: str
) -> None:
    rng = np.random.default_rng(seed)
    n = len(x)
    s = kernels.smooth(kernels.fill_gaps(x, max_gap), 2)
    e_lo, e_hi = kernels.envelope(s, half)
    walking = rng.random(n) < 0.2 if checks in ("walking", "both") else R.NONE_BOOL
    posture = nan_runs(rng.normal(10.0, 30.0, n), [(0.5, n // 4)]) if checks in ("posture", "both") else R.NONE_FLOAT
    args = (s, e_lo, e_hi, R.LO_FRAC, R.HI_FRAC, min_rom, min_len, max_gap, walking, posture, R.WALK_SHARE,
            R.POSTURE_DEG, R.REST_BAND)
    lo, hi, reps = kernels.count_reps(*args)
    want_lo, want_hi, want_reps = reference.count_reps(*args)
    same((lo, hi), (want_lo, want_hi), 0.0)
    assert np.array_equal(reps, want_reps)
    well_formed(R.Segmentation(s, lo, hi, reps, float("nan")), n)


# --- the counter ----------------------------------------------------------------------------------


@PROPERTY
@given(cycles=st.integers(0, 8), period_s=st.floats(0.8, 6.0), amp=st.floats(0.0, 170.0), rest_s=st.floats(0.0, 2.0),
       fps=st.sampled_from(RATES), runs=st.lists(st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 4.0)), max_size=6))
def test_missing_frames_never_crash_the_counter_nor_add_reps(
    cycles: int, period_s: float, amp: float, rest_s: float, fps: float, runs: list[tuple[float, float]]
) -> None:
    s, t = train(cycles, period_s, amp, fps, rest_s)
    s = nan_runs(s, [(at, int(seconds * fps)) for at, seconds in runs])
    seg = R.segment(s, t, ROM)
    well_formed(seg, len(s))
    assert len(seg.reps) <= cycles
    assert np.all(np.isfinite(seg.signal[seg.reps[:, 1]]))  # a turning point is a frame that was seen


@PROPERTY
@given(n=st.integers(0, 1800), value=st.floats(0.0, 180.0), fps=st.floats(5.0, 120.0),
       runs=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(1, 400)), max_size=4),
       min_rom=st.sampled_from(sorted({e.min_rom_deg for e in EXERCISES.values()})))
def test_a_constant_signal_has_no_reps(n: int, value: float, fps: float, runs: list[tuple[float, int]],
                                       min_rom: float) -> None:
    s = nan_runs(np.full(n, value), runs)
    seg = R.segment(s, np.arange(n) / fps, min_rom)
    well_formed(seg, n)
    assert len(seg.reps) == 0


@st.composite
def narrow_noise(draw: st.DrawFn) -> tuple[np.ndarray, float]:
    """(noise, fps): white, uniform, a random walk folded into range, or spikes, spanning less than
    the minimum range of motion (what the thresholds are documented to ignore: idle, jitter)."""
    fps = draw(st.sampled_from(RATES))
    n = int(draw(st.floats(1.0, 30.0)) * fps)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    width = draw(st.floats(0.0, 0.95)) * ROM
    kind = draw(st.sampled_from(["white", "uniform", "walk", "spikes"]))
    if kind == "white":
        x = rng.normal(0.0, 1.0, n)
    elif kind == "uniform":
        x = rng.uniform(-1.0, 1.0, n)
    elif kind == "walk":
        x = np.cumsum(rng.normal(0.0, 1.0, n))
    else:
        x = np.where(rng.random(n) < 0.05, 1.0, 0.0)
    span = np.ptp(x) if n else 0.0
    x = (x - x.min()) / span * width if span > 0 else np.zeros(n)
    return 120.0 + x, fps


@PROPERTY
@given(noise=narrow_noise())
def test_noise_narrower_than_the_minimum_range_has_no_reps(noise: tuple[np.ndarray, float]) -> None:
    x, fps = noise
    seg = R.segment(x, np.arange(len(x)) / fps, ROM)
    well_formed(seg, len(x))
    assert len(seg.reps) == 0


@pytest.mark.xfail(strict=True, reason=(
    "white noise wider than the minimum range of motion is counted: np.random.default_rng(17).normal(120, 10, 62) "
    "at 12.5 fps (5 s of jitter of sd 10 deg, min_rom 25) gives 1 rep; sd 20 deg at 15 fps for 20 s gives 6-16 reps "
    "for every seed tried. Left as found: counting thresholds change only with evidence from real clips "
    "(benchmarks/eval_reps.py), not to fit a property"))
@settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True)
@given(sd=st.floats(0.4 * ROM, ROM), fps=st.sampled_from(RATES), seconds=st.floats(5.0, 30.0),
       seed=st.integers(0, 2**32 - 1))
def test_white_noise_has_no_reps(sd: float, fps: float, seconds: float, seed: int) -> None:
    n = int(seconds * fps)
    x = np.random.default_rng(seed).normal(120.0, sd, n)
    assert len(R.segment(x, np.arange(n) / fps, ROM).reps) == 0


@PROPERTY
@given(cycles=st.integers(1, 10), period_s=st.floats(1.0, 6.0), amp=st.floats(1.5 * ROM, 170.0),
       rest_s=st.floats(0.0, 2.0), rates=st.lists(st.sampled_from(RATES), min_size=2, max_size=3, unique=True))
def test_a_clean_movement_counts_the_same_at_any_analysis_rate(
    cycles: int, period_s: float, amp: float, rest_s: float, rates: list[float]
) -> None:
    counts = [len(R.segment(*train(cycles, period_s, amp, fps, rest_s), ROM).reps) for fps in rates]
    assert counts == [cycles] * len(rates), dict(zip(rates, counts, strict=True))


@PROPERTY
@given(cycles=st.integers(1, 10), period_s=st.floats(1.0, 6.0), fps=st.sampled_from(RATES), rest_s=st.floats(0.0, 2.0),
       amps=st.lists(st.floats(1.5 * ROM, 170.0), min_size=2, max_size=3), base=st.floats(-90.0, 180.0))
def test_a_clean_movement_counts_the_same_at_any_clear_amplitude(
    cycles: int, period_s: float, fps: float, rest_s: float, amps: list[float], base: float
) -> None:
    counts = [len(R.segment(*train(cycles, period_s, a, fps, rest_s, base), ROM).reps) for a in amps]
    assert counts == [cycles] * len(amps), dict(zip(amps, counts, strict=True))


@pytest.mark.xfail(strict=True, reason=(
    "fast, shallow reps at the lowest analysis rate lose one: 3 reps of 0.8125 s and 38 deg (1.5 x min_rom 25) "
    "with 1 s of rest each side count 2 at 12 and 12.5 fps, 3 at 15-60 fps and 3 at 45 deg or more (found by "
    "test_a_clean_movement_counts_the_same_at_any_analysis_rate over periods from 0.8 s; a grid shows it only at "
    "12-12.5 fps, periods 0.80-0.85 s, 37.5-40 deg). Left as found: counting "
    "thresholds change only with evidence from real clips (benchmarks/eval_reps.py), not to fit a property"))
def test_fast_shallow_reps_count_the_same_at_the_lowest_rate() -> None:
    """The counterexample of the two scaling properties, which run from 1 s periods for that reason."""
    rates = {fps: len(R.segment(*train(3, 0.8125, 38.0, fps, 1.0), ROM).reps) for fps in (12.0, 12.5, 15.0, 30.0)}
    amps = {amp: len(R.segment(*train(3, 0.8125, amp, 12.0, 1.0), ROM).reps) for amp in (38.0, 80.0)}
    assert set(rates.values()) == set(amps.values()) == {3}, (rates, amps)


@PROPERTY
@given(cycles=st.integers(0, 6), period_s=st.floats(1.0, 4.0), fps=st.sampled_from(RATES),
       seed=st.integers(0, 2**32 - 1),
       raw_runs=st.lists(st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 3.0)), max_size=4),
       hidden=st.lists(st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 3.0)), max_size=4))
def test_the_counter_on_angle_tables_with_missing_and_hidden_frames(
    cycles: int, period_s: float, fps: float, seed: int, raw_runs: list[tuple[float, float]],
    hidden: list[tuple[float, float]],
) -> None:
    """The full counter (both knees and hips, visibility weights, the side counters): NaN angles
    and unseen frames anywhere give well-formed reps, never more than were made."""
    flex, t = train(cycles, period_s, 90.0, fps, 0.5, base=0.0)
    n = len(t)
    rng = np.random.default_rng(seed)
    raw = rng.uniform(60.0, 180.0, (n, len(NAMES)))
    vis = np.full((n, len(NAMES)), 0.95)
    for name, gain in (("left_knee", 1.0), ("right_knee", 1.0), ("left_hip", 0.8), ("right_hip", 0.8)):
        j = NAMES.index(name)
        raw[:, j] = 175.0 - gain * flex + rng.normal(0.0, 1.0, n)
        raw[:, j] = nan_runs(raw[:, j], [(at, int(sec * fps)) for at, sec in raw_runs])
        gone = np.isnan(nan_runs(np.zeros(n), [(at, int(sec * fps)) for at, sec in hidden]))
        vis[gone, j] = rng.uniform(0.0, 0.3)
    seg = R.Counter(raw, vis, NAMES, t).count(SQUAT.components, ROM)
    well_formed(seg, n)
    assert len(seg.reps) <= cycles
    if not raw_runs and not hidden:
        assert len(seg.reps) == cycles
