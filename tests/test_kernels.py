"""Numba kernels agree with their numpy twins, and segment_reps / rep_phases behave.

Table-driven: every 1-D kernel runs against every input case and window/gap
parameter; joint_angles, segment_reps and rep_phases have their own tables.
Run once with ``NUMBA_DISABLE_JIT=1`` to check the pure-Python path too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pipeline import kernels, reference

NAN = np.nan
HYPOTHESIS = settings(max_examples=50, deadline=None, database=None)


# --------------------------------------------------------------------- builders


def walk(seed: int, n: int) -> np.ndarray:
    """Smooth-ish random walk around 90 (an angle-like signal)."""
    rng = np.random.default_rng(seed)
    return 90.0 + np.cumsum(rng.normal(0.0, 3.0, n))


def with_nans(x: np.ndarray, runs: list[tuple[int, int]]) -> np.ndarray:
    """Copy of x with x[a:b] = NaN for each (a, b); negative a counts from the end."""
    out = x.astype(np.float64).copy()
    for a, b in runs:
        out[a:b] = NAN
    return out


def random_nans(seed: int, n: int, p: float = 0.15) -> np.ndarray:
    """Random walk with random NaN runs of length 1..8 starting with probability p."""
    rng = np.random.default_rng(seed + 1000)
    x = walk(seed, n)
    for i in np.flatnonzero(rng.random(n) < p):
        x[i : i + rng.integers(1, 9)] = NAN
    return x


def cosine_train(
    cycles: int, period: float, rest: int = 0, phase0: float = 0.0, scale: int = 1
) -> np.ndarray:
    """-cos(phase): rest at -1, turn at +1; ``rest`` frames of -1 padding each side.

    ``phase0`` = pi starts the clip at the turning point (mid-rep). ``scale``
    resamples the same motion at ``scale`` x the frame rate.
    """
    frames = int(round((2 * np.pi * cycles - phase0) / (2 * np.pi) * period * scale))
    phase = phase0 + 2 * np.pi * np.arange(frames + 1) / (period * scale)
    pad = np.full(rest * scale, -1.0)
    return np.concatenate([pad, -np.cos(phase), pad])


def flat(n: int, value: float) -> np.ndarray:
    return np.full(n, value, dtype=np.float64)


# --------------------------------------------------------- 1-D kernels x inputs


@dataclass(frozen=True)
class Pair:
    kernel: Callable[[np.ndarray, int], np.ndarray]
    twin: Callable[[np.ndarray, int], np.ndarray]
    rtol: float


PAIRS = {
    "fill_gaps": Pair(kernels.fill_gaps, reference.fill_gaps, 1e-12),
    # Running sum (kernel) vs cumulative-sum differences (twin): round-off differs.
    "smooth": Pair(kernels.smooth, reference.smooth, 1e-9),
    "rolling_max": Pair(kernels.rolling_max, reference.rolling_max, 0.0),
    "rolling_min": Pair(kernels.rolling_min, reference.rolling_min, 0.0),
}

N = 60
INPUTS: dict[str, np.ndarray] = {
    **{f"random-s{s}-n{n}": walk(s, n) for s in (0, 1, 2) for n in (2, 17, 500)},
    **{f"random-nans-s{s}": random_nans(s, 400) for s in (3, 4, 5)},
    "empty": np.empty(0),
    "one-frame": np.array([3.5]),
    "one-frame-nan": np.array([NAN]),
    "two-frames-nan-first": np.array([NAN, 1.0]),
    "all-nan": flat(25, NAN),
    "constant": flat(N, 42.25),
    "constant-with-gap": with_nans(flat(N, -7.0), [(20, 24)]),
    "nan-head-short": with_nans(walk(6, N), [(0, 2)]),
    "nan-head-long": with_nans(walk(7, N), [(0, 30)]),
    "nan-tail-short": with_nans(walk(8, N), [(-2, N)]),
    "nan-tail-long": with_nans(walk(9, N), [(-35, N)]),
    "nan-interior-short": with_nans(walk(10, N), [(20, 21), (40, 43)]),
    "nan-interior-long": with_nans(walk(11, N), [(10, 50)]),
    "nan-only-one-finite": with_nans(walk(12, N), [(0, 30), (31, N)]),
    "nan-alternating": with_nans(walk(13, N), [(i, i + 1) for i in range(0, N, 2)]),
    "ties": np.array([1.0, 2.0, 2.0, 1.0, 1.0, 3.0, 3.0, 3.0, 0.0]),
    "strided-view": random_nans(14, 2 * N)[::2],  # non-contiguous, like angles[:, j]
}
PARAMS = (0, 1, 2, 5, 100)


@pytest.mark.parametrize("param", PARAMS)
@pytest.mark.parametrize("case", INPUTS)
@pytest.mark.parametrize("name", PAIRS)
def test_1d_kernel_matches_twin(name: str, case: str, param: int) -> None:
    pair, x = PAIRS[name], INPUTS[case]
    before = x.copy()
    got = pair.kernel(x, param)
    want = pair.twin(x, param)
    assert got.shape == want.shape == x.shape
    np.testing.assert_allclose(got, want, rtol=pair.rtol, atol=pair.rtol, equal_nan=True)
    np.testing.assert_array_equal(x, before)  # input untouched


@HYPOTHESIS
@given(
    x=hnp.arrays(
        np.float64,
        st.integers(0, 80),
        elements=st.one_of(st.just(NAN), st.floats(-1e3, 1e3, allow_nan=False)),
    ),
    param=st.integers(0, 12),
    name=st.sampled_from(sorted(PAIRS)),
)
def test_1d_kernel_matches_twin_property(x: np.ndarray, param: int, name: str) -> None:
    pair = PAIRS[name]
    np.testing.assert_allclose(
        pair.kernel(x, param), pair.twin(x, param), rtol=pair.rtol, atol=1e-9, equal_nan=True
    )


def test_fill_gaps_semantics() -> None:
    x = np.array([NAN, 0.0, NAN, 2.0, NAN, NAN, NAN, 6.0, NAN])
    want = np.array([NAN, 0.0, 1.0, 2.0, NAN, NAN, NAN, 6.0, NAN])
    np.testing.assert_array_equal(kernels.fill_gaps(x, 2), want)
    want[4:7] = [3.0, 4.0, 5.0]
    np.testing.assert_array_equal(kernels.fill_gaps(x, 3), want)


# ------------------------------------------------------------------ joint_angles

TRIPLES = np.array([[0, 1, 2], [2, 1, 0], [3, 4, 5], [0, 0, 1], [1, 2, 3]], dtype=np.int64)


def landmarks(seed: int, n: int, dim: int, nan_frac: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pts = rng.random((n, 6, dim))
    pts[rng.random((n, 6)) < nan_frac] = NAN
    return pts


def special_frames() -> np.ndarray:
    """Right angle, straight (180), folded (0), coincident (NaN), collinear off-unit."""
    pts = np.zeros((4, 6, 2))
    pts[0, :3] = [[1, 0], [0, 0], [0, 1]]
    pts[1, :3] = [[-1, 0], [0, 0], [3, 0]]
    pts[2, :3] = [[1, 1], [0, 0], [3, 3]]
    pts[3, :3] = [[0.1, 0.3], [0.1, 0.3], [0.2, 0.2]]
    pts[:, 3:] = [[0.1, 0.1], [0.2, 0.2], [0.7, 0.7]]
    return pts


ANGLE_CASES: dict[str, tuple[np.ndarray, np.ndarray]] = {
    **{
        f"random-s{s}-n{n}-{d}d": (landmarks(s, n, d), TRIPLES)
        for s in (0, 1)
        for n in (1, 50)
        for d in (2, 3)
    },
    "random-nans": (landmarks(2, 100, 3, nan_frac=0.2), TRIPLES),
    "all-nan": (np.full((5, 6, 2), NAN), TRIPLES),
    "zero-frames": (np.empty((0, 6, 2)), TRIPLES),
    "zero-triples": (landmarks(3, 4, 2), np.empty((0, 3), dtype=np.int64)),
    "special": (special_frames(), TRIPLES),
}


@pytest.mark.parametrize("case", ANGLE_CASES)
def test_joint_angles_matches_twin(case: str) -> None:
    pts, triples = ANGLE_CASES[case]
    got = kernels.joint_angles(pts, triples)
    want = reference.joint_angles(pts, triples)
    assert got.shape == want.shape == (pts.shape[0], triples.shape[0])
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-9, equal_nan=True)
    finite = got[~np.isnan(got)]
    assert np.all((finite >= 0.0) & (finite <= 180.0))


def test_joint_angles_known_values() -> None:
    got = kernels.joint_angles(special_frames(), TRIPLES[:1])[:, 0]
    np.testing.assert_allclose(got, [90.0, 180.0, 0.0, NAN], atol=1e-6, equal_nan=True)


# ------------------------------------------------------------------ segment_reps


def thresholds(n: int, lo: float = -0.5, hi: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    return flat(n, lo), flat(n, hi)


def reps_of(
    s: np.ndarray, lo: np.ndarray, hi: np.ndarray, min_len: int, max_gap: int
) -> np.ndarray:
    """Run kernel and twin, assert they agree exactly and rows are well-formed."""
    got = kernels.segment_reps(s, lo, hi, min_len, max_gap)
    want = reference.segment_reps(s, lo, hi, min_len, max_gap)
    assert got.dtype == want.dtype == np.int64
    np.testing.assert_array_equal(got, want)
    seen = ~(np.isnan(s) | np.isnan(lo) | np.isnan(hi))
    for start, peak, end in got:
        assert start < peak < end and end - start >= min_len
        assert s[start] <= lo[start] and s[end] <= lo[end]
        inside = np.arange(start + 1, end)
        inside = inside[seen[inside]]
        assert np.all(s[inside] > lo[inside])  # no rest frame inside a rep
        turn = inside[s[inside] >= hi[inside]][0]  # first frame at the turn (IndexError if none)
        assert s[peak] == s[turn:end][seen[turn:end]].max()  # argmax from the turn on
    return got


def band_thresholds(s: np.ndarray, half: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame thresholds from the rolling range, as the features stage might."""
    top, bot = reference.rolling_max(s, half), reference.rolling_min(s, half)
    return bot + 0.3 * (top - bot), bot + 0.7 * (top - bot)


SEGMENT_CASES: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {
    **{f"walk-s{s}": (walk(s, 600), *band_thresholds(walk(s, 600), 40)) for s in range(4)},
    **{
        f"walk-nans-s{s}": (random_nans(s, 600), *band_thresholds(random_nans(s, 600), 40))
        for s in range(4, 8)
    },
    "noisy-cosines": (
        cosine_train(8, 30, rest=5) + np.random.default_rng(0).normal(0, 0.2, 251),
        *thresholds(251),
    ),
    "empty": (np.empty(0), *thresholds(0)),
    "one-frame": (np.array([-1.0]), *thresholds(1)),
    "all-nan": (flat(30, NAN), *thresholds(30)),
    "constant": (flat(30, 0.0), *thresholds(30)),
    "nan-thresholds": (
        cosine_train(4, 20),
        with_nans(flat(81, -0.5), [(28, 31), (50, 52)]),
        with_nans(flat(81, 0.5), [(29, 33)]),
    ),
}


@pytest.mark.parametrize("max_gap", (0, 2, 10))
@pytest.mark.parametrize("min_len", (0, 5, 15))
@pytest.mark.parametrize("case", SEGMENT_CASES)
def test_segment_reps_matches_twin(case: str, min_len: int, max_gap: int) -> None:
    s, lo, hi = SEGMENT_CASES[case]
    reps_of(s, lo, hi, min_len, max_gap)


@pytest.mark.parametrize("cycles", (1, 3, 7))
def test_clean_cycles_from_rest_count_exactly(cycles: int) -> None:
    s = cosine_train(cycles, 24, rest=4)
    assert len(reps_of(s, *thresholds(s.size), min_len=3, max_gap=0)) == cycles


@pytest.mark.parametrize("cycles", (1, 3, 7))
def test_noisy_cycles_count_exactly(cycles: int) -> None:
    s = cosine_train(cycles, 30, rest=3)
    s = s + np.random.default_rng(cycles).normal(0.0, 0.15, s.size)
    assert len(reps_of(s, *thresholds(s.size), min_len=5, max_gap=0)) == cycles


def test_clip_opening_mid_rep_skips_the_partial() -> None:
    # Starts at the turning point, descends to rest, then 3 full cycles.
    s = cosine_train(4, 24, phase0=np.pi)
    assert s[0] == pytest.approx(1.0) and s[-1] == pytest.approx(-1.0)
    reps = reps_of(s, *thresholds(s.size), min_len=3, max_gap=0)
    assert len(reps) == 3
    assert reps[0, 0] >= 12  # first rep starts after the opening descent


@pytest.mark.parametrize(("max_gap", "expected"), [(5, 2), (6, 3), (50, 3)])
def test_long_nan_gap_abandons_rep_in_progress(max_gap: int, expected: int) -> None:
    s = cosine_train(3, 24)
    s[34:40] = NAN  # 6 missing frames around the second turning point (frame 36)
    assert len(reps_of(s, *thresholds(s.size), min_len=3, max_gap=max_gap)) == expected


def test_long_nan_gap_at_rest_needs_rest_again() -> None:
    # 8 missing frames at rest between rep 1 (ends at 20) and rep 2 (rises from 29).
    s = cosine_train(3, 24)
    s[22:30] = NAN  # with max_gap < 8 the rest is forgotten and rep 2 rises unarmed
    assert len(reps_of(s, *thresholds(s.size), min_len=3, max_gap=4)) == 2
    assert len(reps_of(s, *thresholds(s.size), min_len=3, max_gap=8)) == 3


def test_reps_shorter_than_min_len_are_dropped() -> None:
    short, long = cosine_train(2, 10), cosine_train(2, 40)
    s = np.concatenate([short, long[1:], short[1:]])  # 2 short, 2 long, 2 short
    lo, hi = thresholds(s.size)
    assert len(reps_of(s, lo, hi, min_len=3, max_gap=0)) == 6
    reps = reps_of(s, lo, hi, min_len=15, max_gap=0)
    assert len(reps) == 2
    assert np.all(reps[:, 2] - reps[:, 0] >= 15)
    assert reps[0, 0] >= 20 and reps[-1, 2] <= 20 + 80


@st.composite
def trains(draw: st.DrawFn) -> tuple[int, int, int, bool, int]:
    """(cycles, period, rest, keep, min_len) with min_len far from the rep length.

    A rep spans about 2/3 of a period (rest threshold at -0.5); ``keep`` picks
    min_len well below (reps counted) or well above it (all dropped).
    """
    cycles, period = draw(st.integers(0, 5)), draw(st.integers(16, 40))
    rest, keep = draw(st.integers(0, 8)), draw(st.booleans())
    frac = draw(st.floats(0.0, 0.4) if keep else st.floats(1.0, 1.5))
    return cycles, period, rest, keep, int(frac * period)


@HYPOTHESIS
@given(train=trains())
def test_time_scaling_keeps_the_count(train: tuple[int, int, int, bool, int]) -> None:
    cycles, period, rest, keep, min_len = train
    s1 = cosine_train(cycles, period, rest=rest)
    s2 = cosine_train(cycles, period, rest=rest, scale=2)
    n1 = len(reps_of(s1, *thresholds(s1.size), min_len, 0))
    n2 = len(reps_of(s2, *thresholds(s2.size), 2 * min_len, 0))
    assert n1 == n2 == (cycles if keep else 0)


@HYPOTHESIS
@given(
    train=trains(),
    gain=st.floats(1e-3, 1e3),
    offset=st.floats(-100.0, 100.0),
    seed=st.integers(0, 2**16),
)
def test_amplitude_scaling_keeps_the_count(
    train: tuple[int, int, int, bool, int], gain: float, offset: float, seed: int
) -> None:
    cycles, period, rest, keep, min_len = train
    s = cosine_train(cycles, period, rest=rest)
    s = s + np.random.default_rng(seed).normal(0.0, 0.05, s.size)
    lo, hi = thresholds(s.size)
    base = reps_of(s, lo, hi, min_len, 0)
    scaled = reps_of(s * gain + offset, lo * gain + offset, hi * gain + offset, min_len, 0)
    assert len(base) == len(scaled) == (cycles if keep else 0)


@HYPOTHESIS
@given(
    n=st.integers(0, 200),
    value=st.floats(-10.0, 10.0),
    lo=st.floats(-10.0, 10.0),
    hi=st.floats(-10.0, 10.0),
    min_len=st.integers(0, 10),
    max_gap=st.integers(0, 5),
    gap=st.tuples(st.integers(0, 200), st.integers(0, 20)),
)
def test_constant_signal_has_no_reps(
    n: int, value: float, lo: float, hi: float, min_len: int, max_gap: int, gap: tuple[int, int]
) -> None:
    s = with_nans(flat(n, value), [(gap[0], gap[0] + gap[1])])
    assert len(reps_of(s, *thresholds(n, lo, hi), min_len, max_gap)) == 0


@HYPOTHESIS
@given(
    s=hnp.arrays(
        np.float64,
        st.integers(0, 120),
        elements=st.one_of(st.just(NAN), st.floats(-2.0, 2.0, allow_nan=False)),
    ),
    lo=st.floats(-1.0, 0.5),
    width=st.floats(0.0, 1.0),
    min_len=st.integers(0, 8),
    max_gap=st.integers(0, 4),
)
def test_segment_reps_matches_twin_property(
    s: np.ndarray, lo: float, width: float, min_len: int, max_gap: int
) -> None:
    reps_of(s, *thresholds(s.size, lo, lo + width), min_len, max_gap)


# -------------------------------------------------------------------- rep_phases

FPS = 30.0
ECC, HOLD, CON, REST = 10, 6, 5, 4  # frames: descent, pause, ascent, rest each side


def trapezoid() -> tuple[np.ndarray, np.ndarray, int, int, int]:
    """Knee angle 170 -> 90 over ECC frames, hold HOLD frames, 90 -> 170 over CON frames.

    Returns (a, t, start, first pause frame, end).
    """
    down = np.linspace(170.0, 90.0, ECC + 1)
    hold = np.full(HOLD, 90.0)  # with down[-1], HOLD intervals at 90
    up = np.linspace(90.0, 170.0, CON + 1)[1:]
    a = np.concatenate([flat(REST - 1, 170.0), down, hold, up, flat(REST - 1, 170.0)])
    start = REST - 1
    return a, np.arange(a.size) / FPS, start, start + ECC, start + ECC + HOLD + CON


def phases_of(a: np.ndarray, t: np.ndarray, reps: np.ndarray, band: float) -> np.ndarray:
    got = kernels.rep_phases(a, t, reps, band)
    want = reference.rep_phases(a, t, reps, band)
    assert got.shape == want.shape == (reps.shape[0], 5)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, equal_nan=True)
    return got


def test_trapezoid_phases() -> None:
    a, t, start, peak, end = trapezoid()
    reps = reps_of(-a, *thresholds(a.size, -165.0, -100.0), min_len=5, max_gap=0)
    np.testing.assert_array_equal(reps, [[start, peak, end]])
    ecc, pause, con, rom, speed = phases_of(a, t, reps, band=0.05)[0]
    assert ecc == pytest.approx(ECC / FPS)
    assert pause == pytest.approx(HOLD / FPS)
    assert con == pytest.approx(CON / FPS)
    assert rom == pytest.approx(80.0)
    assert speed == pytest.approx(80.0 / CON * FPS)  # the steeper ramp


def test_trapezoid_tolerates_nan_in_pause_and_nan_peak() -> None:
    a, t, start, peak, end = trapezoid()
    a[peak + 2] = NAN
    row = phases_of(a, t, np.array([[start, peak, end]]), band=0.05)[0]
    assert row[1] == pytest.approx(HOLD / FPS)
    a[peak] = NAN
    assert np.all(np.isnan(phases_of(a, t, np.array([[start, peak, end]]), band=0.05)))


def phase_case(seed: int, n: int, nan_p: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random angle with NaNs, times with some repeated stamps, reps found plus hand-made."""
    rng = np.random.default_rng(seed)
    a = random_nans(seed, n, nan_p) if nan_p else walk(seed, n)
    t = np.cumsum(rng.choice([0.0, 1 / 30, 1 / 25], size=n, p=[0.1, 0.6, 0.3]))
    clean = reference.fill_gaps(a, n)
    found = reference.segment_reps(-clean, *band_thresholds(-clean, 30), 3, 0)
    s0 = rng.integers(0, n - 1, 6)
    e = np.minimum(n - 1, s0 + rng.integers(0, 40, 6))
    made = np.stack([s0, (s0 + e) // 2, e], axis=1)
    return a, t, np.concatenate([found, made]).astype(np.int64)


PHASE_CASES = {
    **{f"random-s{s}": phase_case(s, 300, 0.0) for s in range(3)},
    **{f"random-nans-s{s}": phase_case(s, 300, 0.1) for s in range(3, 6)},
    "no-reps": (walk(0, 10), np.arange(10.0), np.empty((0, 3), np.int64)),
    "one-frame-rep": (np.array([5.0]), np.array([0.0]), np.array([[0, 0, 0]])),
    "all-nan-rep": (flat(10, NAN), np.arange(10.0), np.array([[1, 4, 8]])),
    "constant-rep": (flat(10, 90.0), np.arange(10.0), np.array([[1, 4, 8]])),
}


@pytest.mark.parametrize("band", (0.0, 0.05, 0.3, 1.0))
@pytest.mark.parametrize("case", PHASE_CASES)
def test_rep_phases_matches_twin(case: str, band: float) -> None:
    a, t, reps = PHASE_CASES[case]
    phases_of(a, t, reps, band)
