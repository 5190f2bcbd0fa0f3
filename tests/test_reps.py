"""Rep counting on synthetic skeletons: through ``analyze.finish`` (exercise given) and ``reps.segment``.

Each case is a motion with known turning points, optionally cropped, occluded or with
the pose lost for a while, and the number of reps a person would count in it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import builders as B
import numpy as np
import pytest

from pipeline import landmarks as L
from pipeline import reps as R
from pipeline.exercises import EXERCISES
from pipeline.records import PoseSeries

SQUAT_ROM = EXERCISES["squat"].min_rom_deg
PEAK_TOL_S = 0.1


def _plank_after_squats() -> B.Motion:
    """Two squats, then down into a squat that ends in a plank (hands down, legs back)."""
    bottom = {"knee": 100.0, "hip": 100.0, "lean": 30.0}
    plank = {"knee": 0.0, "hip": 0.0, "lean": 90.0, "flexion": 90.0}
    return B.squat(2).then(B.keyframes(30.0, [(0.0, {}), (1.0, bottom), (2.0, plank), (4.0, plank)]))


@dataclass(frozen=True)
class Case:
    name: str
    motion: Callable[[], B.Motion]
    count: int
    noise_m: float = 0.005  # landmark noise (finish) or ~100x that in degrees (segment)
    vis: dict[int, float] = field(default_factory=dict)  # per-landmark visibility overrides
    lost: tuple[tuple[float, float], ...] = ()  # spans (s) where the pose is lost
    window: tuple[float, float] = (0.0, np.inf)  # crop to t0 <= t < t1
    check_peaks: bool = True  # the motion's own turning points (inside the window) are the reps
    direct: bool = True  # also run reps.segment on the built knee flexion


CASES = (
    Case("clean", lambda: B.squat(5), 5),
    Case("partial_range_80", lambda: B.squat(depths=[100, 100, 80, 100, 100]), 5),
    Case("partial_range_60", lambda: B.squat(depths=[100, 100, 60, 100, 100]), 5),
    Case("mixed_tempo", lambda: B.squat(periods=[1.2, 1.2, 1.2, 4.0, 4.0, 1.2, 1.2]), 7),
    Case("left_leg_occluded", lambda: B.squat(5), 5,
         vis={L.L_HIP: 0.1, L.L_KNEE: 0.1, L.L_ANKLE: 0.1}, direct=False),
    Case("starts_at_bottom", lambda: B.squat(5), 4, window=(1.5, np.inf)),
    Case("ends_in_descent", lambda: B.squat(5), 4, window=(0.0, 11.1)),
    Case("idle_noise", lambda: B.idle(8.0), 0, noise_m=0.02),
    Case("walking_across", lambda: B.walk(6.0, 1.3), 0, direct=False),
    Case("squat_into_plank", _plank_after_squats, 2, check_peaks=False),
    Case("30fps", lambda: B.squat(12, fps=30.0), 12),
    Case("60fps", lambda: B.squat(12, fps=60.0), 12),
    Case("depth_70", lambda: B.squat(6, depth_deg=70.0), 6),
    Case("depth_110", lambda: B.squat(6, depth_deg=110.0), 6),
    Case("lost_0.2s_mid_rep", lambda: B.squat(5), 5, lost=((6.3, 6.5),)),
    Case("lost_2s_drops_one", lambda: B.squat(5), 4, lost=((5.6, 7.6),), check_peaks=False),
)


def _params(cases: tuple[Case, ...]) -> list[object]:
    return [pytest.param(c, id=c.name) for c in cases]


def _peaks(case: Case, m: B.Motion) -> list[float]:
    t0, t1 = case.window
    return [p - t0 for p in m.peaks if t0 < p < t1]


def _pose(case: Case, m: B.Motion) -> PoseSeries:
    return B.crop(B.build(m, noise_m=case.noise_m, vis=case.vis, lost=case.lost), *case.window)


@pytest.mark.parametrize("case", _params(CASES))
def test_finish_counts(case: Case) -> None:
    m = case.motion()
    result = B.finish(_pose(case, m), "squat")
    got = [r.peak_s for r in result.reps]
    assert result.summary["rep_count"] == case.count, f"peaks at {got}, built {_peaks(case, m)}"
    if case.count == 0:
        assert isinstance(result.summary["reason"], str) and result.summary["reason"]
    if case.check_peaks:
        assert np.allclose(got, _peaks(case, m), atol=PEAK_TOL_S), f"peaks at {got}, built {_peaks(case, m)}"


@pytest.mark.parametrize("case", _params(tuple(c for c in CASES if c.direct)))
def test_segment_counts(case: Case) -> None:
    """The oriented signal is the built knee flexion itself (NaN where the pose was lost)."""
    m = case.motion()
    t = np.arange(m.n) / m.fps
    signal, posture = m.get("knee"), m.get("lean")
    signal = signal + np.random.default_rng(1).normal(0.0, 100 * case.noise_m, m.n)  # ~1 degree per cm
    for a, b in case.lost:
        signal[(t >= a) & (t < b)] = np.nan
    k = (t >= case.window[0]) & (t < case.window[1])
    seg = R.segment(signal[k], t[k] - t[k][0], SQUAT_ROM, None, posture[k])
    got = [float(t[k][p] - t[k][0]) for p in seg.reps[:, 1]]
    assert len(seg.reps) == case.count, f"peaks at {got}, built {_peaks(case, m)}"
    if case.check_peaks:
        assert np.allclose(got, _peaks(case, m), atol=PEAK_TOL_S)
    assert np.all(seg.reps[:, 0] <= seg.reps[:, 1]) and np.all(seg.reps[:, 1] <= seg.reps[:, 2])


def test_posture_is_what_drops_the_squat_into_plank() -> None:
    m = _plank_after_squats()
    t = np.arange(m.n) / m.fps
    assert len(R.segment(m.get("knee"), t, SQUAT_ROM).reps) == 3
    assert len(R.segment(m.get("knee"), t, SQUAT_ROM, None, m.get("lean")).reps) == 2


def test_alternating_curls_count_each_arm() -> None:
    """Left arm on reps 1, 3, 5, right arm on 2, 4, 6: the side counters add what the mean hides."""
    m = B.curl(6)
    t = np.arange(m.n) / m.fps
    left = np.any([np.abs(t - p) < 1.1 for p in m.peaks[::2]], axis=0)
    flex = m.get("elbow") - 10.0
    alt = m.with_(elbow_l=10.0 + np.where(left, flex, 0.0), elbow_r=10.0 + np.where(left, 0.0, flex))
    result = B.finish(B.build(alt, noise_m=0.005), "bicep_curl")
    assert [r.peak_s for r in result.reps] == pytest.approx(list(m.peaks), abs=PEAK_TOL_S)


@pytest.mark.parametrize(("hidden_vis", "count"), [(0.3, 3), (0.6, 6)])
def test_an_arm_seen_too_little_is_not_counted_on_its_own(hidden_vis: float, count: int) -> None:
    """Alternating curls with the right arm behind the torso: MediaPipe's guesses for it (visibility
    under 0.5, "not seen") add no reps; seen, its reps count."""
    m = B.curl(6)
    t = np.arange(m.n) / m.fps
    left = np.any([np.abs(t - p) < 1.1 for p in m.peaks[::2]], axis=0)
    flex = m.get("elbow") - 10.0
    alt = m.with_(elbow_l=10.0 + np.where(left, flex, 0.0), elbow_r=10.0 + np.where(left, 0.0, flex))
    right_arm = {i: hidden_vis for i in (12, 14, 16, 18, 20, 22)}  # shoulder, elbow, wrist, hand
    result = B.finish(B.build(alt, noise_m=0.005, vis=right_arm), "bicep_curl")
    assert [r.peak_s for r in result.reps] == pytest.approx(list(m.peaks[:: 6 // count]), abs=PEAK_TOL_S)


@pytest.mark.parametrize(("speed_m_s", "count"), [(0.0, 5), (1.3, 0)])
def test_knee_bends_while_travelling_are_not_reps(speed_m_s: float, count: int) -> None:
    """The same squat motion, in place or carried across the frame at walking speed (the walking filter)."""
    m = B.squat(5)
    x = 0.05 + speed_m_s * np.arange(m.n) / m.fps * B.DEFAULTS["scale"] / B.ASPECT
    assert len(B.finish(B.build(m.with_(x=x), noise_m=0.005), "squat").reps) == count


def test_walking_across_is_seen_as_walking() -> None:
    pose = B.build(B.walk(6.0, 1.3))
    assert R.walking_mask(pose).mean() > 0.8


def test_standing_still_is_not_walking() -> None:
    assert not R.walking_mask(B.build(B.squat(5), noise_m=0.005)).any()


def test_frame_rate_does_not_change_the_count() -> None:
    counts = {fps: len(B.finish(B.build(B.squat(12, fps=fps)), "squat").reps) for fps in (15.0, 24.0, 30.0, 60.0)}
    assert set(counts.values()) == {12}, counts


@pytest.mark.parametrize("depth", [
    50.0, 60.0, 70.0, 90.0, 110.0, 130.0,
])
def test_amplitude_does_not_change_the_count(depth: float) -> None:
    assert len(B.finish(B.build(B.squat(6, depth_deg=depth), noise_m=0.005), "squat").reps) == 6


@pytest.mark.parametrize("depth", [50.0, 60.0])
def test_segment_counts_excursions_above_min_rom(depth: float) -> None:
    """A clean 0 -> depth -> 0 excursion larger than min_rom (35) is a rep."""
    m = B.squat(6, depth_deg=depth)
    assert len(R.segment(m.get("knee"), np.arange(m.n) / m.fps, SQUAT_ROM).reps) == 6


@pytest.mark.parametrize(("label", "pose", "reason"), [
    ("empty", lambda: B.build(B.idle(0.0)), "no person"),
    ("one_frame", lambda: B.build(B.idle(1 / 30)), "no complete repetition"),
    ("never_detected", lambda: B.build(B.squat(3), lost=[(0.0, 99.0)]), "no person"),
])
@pytest.mark.parametrize("exercise", ["squat", "auto", "generic"])
def test_degenerate_clips_give_zero_reps_and_say_why(
    label: str, pose: Callable[[], PoseSeries], reason: str, exercise: str
) -> None:
    summary = B.finish(pose(), exercise).summary
    assert summary["rep_count"] == 0
    assert str(summary["reason"]).startswith(reason)


def test_only_the_visible_rep_is_counted_after_a_long_loss() -> None:
    result = B.finish(B.build(B.squat(3), lost=[(0.0, 5.0)]), "squat")
    assert [r.peak_s for r in result.reps] == pytest.approx([6.5], abs=PEAK_TOL_S)


@pytest.mark.parametrize("n", [0, 1, 2])
def test_segment_tiny_inputs(n: int) -> None:
    seg = R.segment(np.zeros(n), np.arange(n) / 30.0, SQUAT_ROM)
    assert seg.reps.shape == (0, 3)


def test_segment_all_nan() -> None:
    seg = R.segment(np.full(90, np.nan), np.arange(90) / 30.0, SQUAT_ROM)
    assert seg.reps.shape == (0, 3)


@pytest.mark.parametrize(("period_s", "n"), [
    (1.2, 8),
    (2.0, 8),
    (3.0, 5),
])
def test_dominant_period_of_a_clean_set(period_s: float, n: int) -> None:
    m = B.squat(n, period_s=period_s, rest_s=0.5)
    period, strength = R.dominant_period(m.get("knee"), m.fps)
    assert period == pytest.approx(period_s + 0.5, abs=0.1) and 0.8 < strength <= 1.0


def test_summary_reports_the_rep_period() -> None:
    result = B.finish(B.build(B.squat(8, period_s=2.0, rest_s=0.5)), "squat")
    assert result.summary["primary_signal"]["period_s"] == pytest.approx(2.5, abs=0.1)


def test_combine_falls_back_to_the_visible_side() -> None:
    from pipeline import angles

    pose = B.build(B.squat(3), vis={L.L_HIP: 0.1, L.L_KNEE: 0.1, L.L_ANKLE: 0.1})
    raw, vis = angles.compute_raw(pose)
    both = R.combine(raw, vis, angles.NAMES, EXERCISES["squat"].components)
    right = R.combine(raw, vis, angles.NAMES, EXERCISES["squat"].components[1::2])
    assert np.allclose(both, right, equal_nan=True)


def test_a_mask_never_walking_reuses_the_count_without_one() -> None:
    """Counter.count with an all-False walking mask is the maskless count (the same object) and what
    the kernels give with that mask."""
    from pipeline import angles, kernels

    pose = B.build(B.squat(5), noise_m=0.005)
    raw, vis, _ = angles.compute_all(pose)
    comps, rom = EXERCISES["squat"].components, SQUAT_ROM
    counter = R.Counter(raw, vis, angles.NAMES, pose.t)
    bare = counter.count(comps, rom)
    still = np.zeros(len(pose), bool)
    assert counter.count(comps, rom, still) is bare
    assert len(bare.reps) == 5
    base = counter._prepared[R._signal_keys(comps)[0]]
    fps = base.fps
    *_, masked = kernels.count_reps(base.s, base.e_lo, base.e_hi, R.LO_FRAC, R.HI_FRAC, rom, int(R.MIN_REP_S * fps),
                                    int(R.MAX_GAP_S * fps), still, R.NONE_FLOAT, R.WALK_SHARE, R.POSTURE_DEG,
                                    R.REST_BAND)
    np.testing.assert_array_equal(masked, R._count_prepared(base, rom, None, None).reps)


@pytest.mark.parametrize("exercise", ["squat", "auto"])
def test_long_clips_on_two_threads_finish_as_on_one(exercise: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Clips of parallel.MIN_FRAMES or more share the features stage between two threads: same analysis."""
    from pipeline import parallel

    pose = B.build(B.squat(70), noise_m=0.01, seed=3, lost=((20.0, 20.5),))
    assert len(pose) >= parallel.MIN_FRAMES
    monkeypatch.setattr(parallel, "spare_core", lambda: True)  # two threads even on a busy machine
    two = B.finish(pose, exercise)
    monkeypatch.setattr(parallel, "MIN_FRAMES", 10**9)
    one = B.finish(pose, exercise)
    for a in (one, two):
        a.summary.pop("timing")
    assert two.summary == one.summary and two.reps == one.reps and len(one.reps) == 70
    np.testing.assert_array_equal(two.angles.values, one.angles.values)
    np.testing.assert_array_equal(two.primary_signal, one.primary_signal)


def _alternating_shallow_curls(n: int = 6) -> PoseSeries:
    """Curls of 50 degrees, arms in turn: the mean of both elbows moves 25 (under the 35 minimum),
    each arm's own signal 50."""
    m = B.curl(n)
    t = np.arange(m.n) / m.fps
    left = np.any([np.abs(t - p) < 1.1 for p in m.peaks[::2]], axis=0)
    flex = (m.get("elbow") - 10.0) * 50.0 / np.ptp(m.get("elbow"))
    return B.build(m.with_(elbow_l=10.0 + np.where(left, flex, 0.0), elbow_r=10.0 + np.where(left, 0.0, flex)),
                   noise_m=0.005)


@pytest.mark.parametrize(("clip", "exercise", "sides_add"), [
    (lambda: B.build(B.squat(5), noise_m=0.005), "squat", False),
    (_alternating_shallow_curls, "bicep_curl", True),
])
def test_finish_measures_the_final_reps(clip: Callable[[], PoseSeries], exercise: str, sides_add: bool) -> None:
    """finish measures the combined signal's reps while the sides are counted; the reps it reports
    are those of the final count measured on their own, also when a side added reps."""
    from pipeline import angles, geometry, measures

    pose = clip()
    got = B.finish(pose, exercise)
    geo = geometry.measure(pose)
    ex = EXERCISES[exercise]
    counter = R.Counter(geo.raw, geo.vis, angles.NAMES, pose.t, geo.raw[:, angles.NAMES.index("trunk_lean")])
    walking = R.walking_mask(pose, geo=geo)
    combined = counter.pieces(ex.components, ex.min_rom_deg, walking)[0]().reps
    seg = R.drop_gait(counter.count(ex.components, ex.min_rom_deg, walking), geo.raw, geo.vis, angles.NAMES,
                      ex.in_phase)
    assert (len(seg.reps) > len(combined)) is sides_add
    want = measures.measure_reps(ex, geo.table, geo.vis, pose.t, seg.signal, seg.reps)
    assert got.reps == want and len(want) in (5, 6)
    assert got.summary["reps"] == measures.to_json(want)
