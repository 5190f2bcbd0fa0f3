"""Per-rep measures (tempo phases, range of motion, faults) and fatigue, on synthetic reps with known truth."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import builders as B
import numpy as np
import pytest

from pipeline import angles, measures
from pipeline.exercises import EXERCISES
from pipeline.records import Rep

TEMPO = (1.0, 0.5, 0.8)  # down, hold, up (s)
PHASE_TOL_S = 0.1
ROM_TOL_DEG = 5.0


@pytest.mark.parametrize("yaw", [0.0, 40.0, 90.0, 180.0])
def test_built_angles_match_the_parameters(yaw: float) -> None:
    """The builder's truth: 3D angles follow the joint parameters from any view (float32: ~0.5 deg near 180)."""
    m = B.squat(2, depth_deg=100.0, yaw=yaw).with_(elbow=B.curl(2).get("elbow"))  # same rep timing
    table = angles.compute(B.build(m))
    for side in ("left", "right"):
        assert table[f"{side}_knee"] == pytest.approx(180.0 - m.get("knee"), abs=0.5)
        assert table[f"{side}_elbow"] == pytest.approx(180.0 - m.get("elbow"), abs=0.5)
    assert table["trunk_lean"] == pytest.approx(m.get("lean"), abs=0.5)


def _trapezoid(hold_s: float = TEMPO[1], depth: float = 100.0) -> tuple[Rep, ...]:
    """Four squats with linear ramps (a true trapezoid), 60 fps; the measured reps."""
    m = B.squat(4, fps=60.0, tempo=(TEMPO[0], hold_s, TEMPO[2]), rest_s=1.0, depth_deg=depth, shape="linear")
    result = B.finish(B.build(m), "squat")
    assert len(result.reps) == 4
    return result.reps


def _built_reps(m: B.Motion) -> np.ndarray:
    """(k, 3) frames (start, peak, end) of the built reps: rest ends, turn, rest begins."""
    moving = m.get("knee") > 1e-6
    starts = np.flatnonzero(~moving[:-1] & moving[1:])
    ends = np.flatnonzero(moving[:-1] & ~moving[1:]) + 1
    peaks = np.round(np.array(m.peaks) * m.fps).astype(np.int64)
    return np.stack([starts, peaks, ends], axis=1)


def _measure(m: B.Motion, exercise: str = "squat") -> tuple[Rep, ...]:
    """measure_reps on the built rep boundaries (independent of the counter)."""
    pose = B.build(m)
    table = angles.compute(pose)
    _, vis = angles.compute_raw(pose)
    reps = _built_reps(m)
    return measures.measure_reps(EXERCISES[exercise], table, vis, pose.t, m.get("knee"), reps)


def test_tempo_phases_match_a_trapezoid() -> None:
    reps = _trapezoid()
    for r in reps:
        assert (r.eccentric_s, r.pause_s, r.concentric_s) == pytest.approx(TEMPO, abs=PHASE_TOL_S)


def test_tempo_phases_are_consistent() -> None:
    """What holds despite the band bias: phases tile the rep, ratios and hold differences are right."""
    short = _trapezoid(0.5)
    long = _trapezoid(1.5)
    for r in short:
        assert r.eccentric_s + r.pause_s + r.concentric_s == pytest.approx(r.end_s - r.start_s, abs=1e-6)
        assert r.eccentric_s / r.concentric_s == pytest.approx(TEMPO[0] / TEMPO[2], rel=0.15)
        assert r.start_s < r.peak_s < r.end_s and r.pause_s > 0
    for a, b in zip(short, long, strict=True):
        assert b.pause_s - a.pause_s == pytest.approx(1.0, abs=PHASE_TOL_S)
        assert b.eccentric_s == pytest.approx(a.eccentric_s, abs=PHASE_TOL_S)


def test_peak_velocity_of_a_linear_ramp() -> None:
    reps = _trapezoid()
    # knee angle falls 100 deg in 1.0 s and rises back in 0.8 s: fastest 125 deg/s
    assert [r.peak_velocity_dps for r in reps] == pytest.approx([125.0] * 4, rel=0.1)


@pytest.mark.parametrize("depth", [80.0, 100.0, 120.0])
def test_rom_matches_the_built_depth(depth: float) -> None:
    reps = _trapezoid(depth=depth)
    assert [r.rom_deg for r in reps] == pytest.approx([depth] * 4, abs=ROM_TOL_DEG)


def test_rom_on_the_built_rep_boundaries() -> None:
    """Given the true rep boundaries, the range of the (smoothed) primary angle is the built depth."""
    for r in _measure(B.squat(3, depth_deg=100.0)):
        assert r.rom_deg == pytest.approx(100.0, abs=ROM_TOL_DEG)


def test_rom_scales_with_depth() -> None:
    roms = [np.mean([r.rom_deg for r in _trapezoid(depth=d)]) for d in (80.0, 120.0)]
    assert roms[1] / roms[0] == pytest.approx(1.5, rel=0.05)


def _leaning() -> B.Motion:
    m = B.squat(3, depth_deg=110.0)
    return m.with_(lean=0.55 * m.get("knee"))  # trunk 60 deg from vertical at the bottom


def _asymmetric() -> B.Motion:
    m = B.squat(3, depth_deg=110.0)
    return m.with_(knee_l=0.6 * m.get("knee"))  # left knee bends 66 deg, right 110


FAULT_CASES = [  # (name, motion, fault expected, faults that must be absent)
    ("shallow", lambda: B.squat(3, depth_deg=40.0), "shallow_depth", ("trunk_lean", "knee_asymmetry")),
    ("deep", lambda: B.squat(3, depth_deg=110.0), None, ("shallow_depth", "trunk_lean", "knee_asymmetry")),
    ("leaning", _leaning, "trunk_lean", ("shallow_depth", "knee_asymmetry")),
    ("asymmetric", _asymmetric, "knee_asymmetry", ()),
]


@pytest.mark.parametrize(("name", "motion", "fault", "absent"), FAULT_CASES, ids=[c[0] for c in FAULT_CASES])
def test_faults_on_the_built_reps(
    name: str, motion: Callable[[], B.Motion], fault: str | None, absent: tuple[str, ...]
) -> None:
    reps = _measure(motion())
    for r in reps:
        if fault is not None:
            assert fault in r.faults, r
        assert not set(absent) & set(r.faults), r


@pytest.mark.parametrize(("depth", "shallow"), [
    (40.0, True),
    (75.0, True),
    (110.0, False),
])
def test_shallow_depth_through_finish(depth: float, shallow: bool) -> None:
    result = B.finish(B.build(B.squat(4, depth_deg=depth), noise_m=0.005), "squat")
    assert len(result.reps) == 4
    assert all(("shallow_depth" in r.faults) == shallow for r in result.reps)


def _rep(i: int, duration: float, rom: float) -> Rep:
    return Rep(i + 1, 3.0 * i, 3.0 * i + duration / 2, 3.0 * i + duration, rom, 0.8, 0.1, 0.8, 150.0, None, 0.9)


@pytest.mark.parametrize(("durations", "roms", "flags"), [
    ([2.0] * 9, [100.0] * 9, []),
    ([2.0] * 9, list(np.linspace(100, 70, 9)), ["rom_loss"]),
    (list(np.linspace(2.0, 2.8, 9)), [100.0] * 9, ["tempo_slowing"]),
    (list(np.linspace(2.0, 2.8, 9)), list(np.linspace(100, 70, 9)), ["tempo_slowing", "rom_loss"]),
    ([2.0] * 3, [100.0, 100.0, 90.0], []),
])
def test_fatigue_flags(durations: list[float], roms: list[float], flags: list[str]) -> None:
    out = measures.fatigue(tuple(_rep(i, d, r) for i, (d, r) in enumerate(zip(durations, roms, strict=True))))
    assert out["flags"] == flags


@pytest.mark.parametrize("n", [0, 1, 2])
def test_fatigue_needs_three_reps(n: int) -> None:
    out = measures.fatigue(tuple(_rep(i, 2.0, 100.0) for i in range(n)))
    assert out["tempo_drift_pct"] is None and out["rom_loss_pct"] is None and out["flags"] == []


@pytest.mark.parametrize(("depths", "flags"), [
    (list(np.linspace(110, 77, 9)), ["rom_loss"]),
    ([100.0] * 9, []),
])
def test_fatigue_through_finish(depths: list[float], flags: list[str]) -> None:
    result = B.finish(B.build(B.squat(depths=depths), noise_m=0.005), "squat")
    assert result.summary["rep_count"] == 9
    assert result.summary["fatigue"]["flags"] == flags


def test_fatigue_through_finish_with_two_reps() -> None:
    fat = B.finish(B.build(B.squat(2)), "squat").summary["fatigue"]
    assert fat["rom_loss_pct"] is None and fat["tempo_drift_pct"] is None


def test_phases_follow_the_exercise_direction() -> None:
    """A curl lifts first: the lift is concentric, the lowering eccentric (a squat is the reverse)."""
    fps = 30.0
    up = np.linspace(170, 40, 16)  # 0.5 s lift (elbow flexes)
    hold = np.full(6, 40.0)
    down = np.linspace(40, 170, 31)  # 1.0 s lowering
    elbow = np.r_[np.full(10, 170.0), up, hold, down, np.full(10, 170.0)]
    n = len(elbow)
    raw = np.full((n, len(angles.NAMES)), np.nan)
    raw[:, angles.NAMES.index("left_elbow")] = elbow
    raw[:, angles.NAMES.index("right_elbow")] = elbow
    vis = np.ones_like(raw)
    table = angles.gate(raw, vis)
    t = np.arange(n) / fps
    reps = np.array([[9, 30, 63]], np.int64)
    curl = measures.measure_reps(EXERCISES["bicep_curl"], table, vis, t, -elbow, reps)[0]
    assert curl.concentric_s == pytest.approx(0.5, abs=0.1) and curl.eccentric_s == pytest.approx(1.0, abs=0.1)
    d = curl.to_dict()
    assert d["concentric_s"] < d["eccentric_s"]  # type: ignore[operator]


def test_unmeasurable_values_are_null_in_json() -> None:
    rep = Rep(1, 0.0, 1.0, 2.0, math.nan, math.nan, 0.1, math.nan, math.inf, None, 0.5, ("x",),
              (("hip", math.nan, 120.0),))
    d = rep.to_dict()
    assert d["rom_deg"] is None and d["eccentric_s"] is None and d["peak_velocity_dps"] is None
    assert d["secondary"] == {"hip": {"min_deg": None, "max_deg": 120.0}}
    json.dumps(d, allow_nan=False)


@pytest.mark.parametrize("exercise", ["squat", "bicep_curl", "pushup", "jumping_jack"])
def test_measure_json_is_to_json_of_the_reps(exercise: str) -> None:
    """finish's JSON, rounded from the measures' arrays, is each rep's to_dict (unmeasurable values too)."""
    m = B.squat(4, depth_deg=100.0).with_(elbow=B.curl(4).get("elbow"))
    pose = B.build(m)
    table = angles.compute(pose)
    _, vis = angles.compute_raw(pose)
    reps = _built_reps(m)
    signal = m.get("knee").copy()
    signal[reps[1, 0] : reps[1, 2] + 1] = np.nan  # a rep whose range of motion falls back to its amplitude
    ex = EXERCISES[exercise]
    out, primary, js = measures.measure_json(ex, table, vis, pose.t, signal, reps)
    assert out == measures.measure_reps(ex, table, vis, pose.t, signal, reps)
    assert js == [r.to_dict() for r in out] == measures.to_json(out)
    assert json.dumps(js) == json.dumps([r.to_dict() for r in out])
    assert measures.measure_json(ex, table, vis, pose.t, signal, reps[:0])[2] == []


def test_columns_of_some_reps_are_those_measured_alone() -> None:
    """Each rep's measures depend on that rep alone: the columns of a subset (any order) taken from
    those of all equal the subset measured on its own; a rep not measured gives None."""
    m = B.squat(5, depth_deg=100.0)
    pose = B.build(m)
    table = angles.compute(pose)
    _, vis = angles.compute_raw(pose)
    reps = _built_reps(m)
    ex = EXERCISES["squat"]
    _, every = measures.columns(ex, table, vis, pose.t, m.get("knee"), reps)
    assert every.of(reps) is every
    some = reps[[3, 0, 2]]
    taken, alone = every.of(some), measures.columns(ex, table, vis, pose.t, m.get("knee"), some)[1]
    assert taken is not None
    np.testing.assert_array_equal(taken.reps, alone.reps)
    np.testing.assert_array_equal(taken.values, alone.values)
    np.testing.assert_array_equal(taken.lows, alone.lows)
    np.testing.assert_array_equal(taken.highs, alone.highs)
    assert taken.faults == alone.faults and measures.reps_of(taken) == measures.reps_of(alone)
    assert every.of(reps + np.array([1, 0, 0])) is None
    none = every.of(reps[:0])
    assert none is not None and measures.reps_of(none) == ((), [])
    assert measures.reps_of(every)[0] == measures.measure_reps(ex, table, vis, pose.t, m.get("knee"), reps)


def test_reps_built_by_drafts_are_reps() -> None:
    """measures builds Rep records through a mutable twin (for speed): the same frozen records."""
    import dataclasses
    import pickle

    cols = [range(1, 4), [0.0, 1.0, 2.0], [0.5, 1.5, 2.5], [1.0, 2.0, 3.0], [90.0, math.nan, 80.0],
            [0.4, 0.4, 0.3], [0.1, 0.0, 0.2], [0.5, 0.6, 0.5], [120.0, 110.0, math.inf], [None, 2.0, 3.5],
            [0.9, 0.8, 0.7], [(), ("shallow_depth",), ("a", "b")], [(("hip", 70.0, 170.0),), (), ()]]
    got, want = measures._new_reps(*cols), tuple(map(Rep, *cols))
    assert measures._REP_DRAFT is not None  # Rep has no __post_init__: the fast path is taken
    assert [type(r) for r in got] == [Rep] * 3
    assert repr(got) == repr(want) and [dataclasses.asdict(r) for r in got] == [dataclasses.asdict(r) for r in want]
    assert got[0] == want[0] and hash(got[0]) == hash(want[0])
    assert repr(pickle.loads(pickle.dumps(got))) == repr(got)  # (NaN fields: == compares identity)
    with pytest.raises(dataclasses.FrozenInstanceError):
        got[0].rom_deg = 1.0  # type: ignore[misc]
