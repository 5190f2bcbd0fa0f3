"""The pure scoring functions of benchmarks/eval_reps.py: count scores, peak matching, P/R/F1."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "eval_reps.py"
_spec = importlib.util.spec_from_file_location("eval_reps", _PATH)
assert _spec is not None and _spec.loader is not None
ev = importlib.util.module_from_spec(_spec)
sys.modules["eval_reps"] = ev  # dataclasses look their module up by name
_spec.loader.exec_module(ev)

Event, PeakMatch = ev.Event, ev.PeakMatch


def rep(lo: int, hi: int) -> object:
    return Event("rep", lo, hi)


def partial(lo: int, hi: int) -> object:
    return Event("partial", lo, hi)


@pytest.mark.parametrize(
    ("pairs", "mae", "obo", "exact"),
    [
        ([(3, 3)], 0.0, 1.0, 1.0),
        ([(4, 3)], 1 / 3, 1.0, 0.0),
        ([(0, 2)], 1.0, 0.0, 0.0),
        ([(10, 12), (12, 12)], (2 / 12) / 2, 0.5, 0.5),
        ([(1, 0)], 1.0, 1.0, 0.0),  # true 0: absolute error
    ],
)
def test_count_scores(pairs: list[tuple[int, int]], mae: float, obo: float, exact: float) -> None:
    s = ev.count_scores(pairs)
    assert s["n"] == len(pairs)
    assert s["mae"] == pytest.approx(mae)
    assert s["obo"] == obo
    assert s["exact"] == exact


def test_count_scores_empty() -> None:
    s = ev.count_scores([])
    assert s["n"] == 0 and math.isnan(s["mae"]) and math.isnan(s["obo"]) and math.isnan(s["exact"])


@pytest.mark.parametrize(
    ("frame", "lo", "hi", "gap"),
    [(10, 10, 20, 0), (15, 10, 20, 0), (20, 10, 20, 0), (7, 10, 20, 3), (26, 10, 20, 6)],
)
def test_gap(frame: float, lo: int, hi: int, gap: float) -> None:
    assert ev.gap(frame, rep(lo, hi)) == gap


TOL = 7.5  # 0.25 s at 30 fps


@pytest.mark.parametrize(
    ("peaks", "events", "expect"),
    [
        # nothing predicted: every rep is missed, nothing invented
        ([], [rep(10, 12), rep(40, 42)], PeakMatch(0, 0, 2)),
        # nothing labeled: every prediction is a false positive
        ([10, 40], [], PeakMatch(0, 2, 0)),
        ([], [], PeakMatch(0, 0, 0)),
        # inside the range and within tolerance on either side
        ([11, 35, 57.5], [rep(10, 12), rep(40, 42), rep(60, 62)], PeakMatch(3, 0, 0)),
        # just past the tolerance
        ([2], [rep(10, 12)], PeakMatch(0, 1, 1)),
        # one to one: two predictions near one rep -> one tp, one fp
        ([10, 12], [rep(10, 12)], PeakMatch(1, 1, 0)),
        # one prediction between two reps matches only one of them
        ([25], [rep(20, 20), rep(30, 30)], PeakMatch(1, 0, 1)),
        # a peak on a partial rep is a false positive (flagged), never a match
        ([11, 100], [rep(10, 12), partial(98, 104)], PeakMatch(1, 1, 0, 1)),
        ([100], [partial(98, 104)], PeakMatch(0, 1, 0, 1)),
        # a peak near both a rep and a partial goes to the rep
        ([50], [rep(44, 46), partial(52, 54)], PeakMatch(1, 0, 0, 0)),
    ],
)
def test_match_peaks(peaks: list[float], events: list[object], expect: object) -> None:
    assert ev.match_peaks(peaks, events, TOL) == expect


def test_match_is_greedy_by_distance_not_order() -> None:
    # peak 14 is 2 frames from rep A (ends 12) and 1 frame from rep B (starts 15); peak 9 is only
    # near A. Closest-first gives 14->B and 9->A: two matches, where first-come would give one.
    assert ev.match_peaks([14, 9], [rep(10, 12), rep(15, 20)], 2) == PeakMatch(2, 0, 0)


@pytest.mark.parametrize(
    ("m", "p", "r", "f1"),
    [
        (PeakMatch(3, 1, 1), 0.75, 0.75, 0.75),
        (PeakMatch(2, 0, 2), 1.0, 0.5, 2 / 3),
        (PeakMatch(0, 0, 2), 0.0, 0.0, 0.0),  # predicted nothing, missed two
        (PeakMatch(0, 2, 0), 0.0, 0.0, 0.0),  # invented two, nothing to find
        (PeakMatch(0, 0, 0), 1.0, 1.0, 1.0),  # nothing to find, nothing invented
    ],
)
def test_prf(m: object, p: float, r: float, f1: float) -> None:
    s = ev.prf(m)
    assert (s["precision"], s["recall"], s["f1"]) == pytest.approx((p, r, f1))


def test_total_sums_fields() -> None:
    assert ev.total([PeakMatch(1, 2, 3, 1), PeakMatch(4, 0, 1, 0)]) == PeakMatch(5, 2, 4, 1)
    assert ev.total([]) == PeakMatch(0, 0, 0, 0)


@pytest.mark.parametrize(
    ("peaks_s", "expect"),
    [([], []), ([0.0], [0]), ([0.24], [2]), ([0.29], [2]), ([0.31], [4]), ([5.0], [8]), ([-1.0, 0.41], [0, 4])],
)
def test_nearest_frames(peaks_s: list[float], expect: list[int]) -> None:
    # stride 2 at 10 fps: analyzed frames 0, 2, 4, 6, 8 at 0.0 .. 0.8 s
    frame = np.arange(0, 10, 2)
    assert ev.nearest_frames(peaks_s, frame / 10.0, frame) == expect


def test_nearest_frames_no_analyzed_frames() -> None:
    assert ev.nearest_frames([1.0], np.zeros(0), np.zeros(0, dtype=np.int64)) == []
