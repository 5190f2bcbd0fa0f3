"""Subject selection among pose candidates: keep the big person exercising, drop other people's frames."""

from __future__ import annotations

import builders as B
import numpy as np
import pytest

from pipeline import subject
from pipeline.records import PoseSeries


def _stack(poses: list[PoseSeries], seed: int = 0) -> tuple[np.ndarray, ...]:
    """(n, k, ...) candidate arrays in a random order per frame (MediaPipe has no stable order);
    also the (n,) candidate index where poses[0] ended up."""
    rng = np.random.default_rng(seed)
    n, k = len(poses[0]), len(poses)
    order = np.array([rng.permutation(k) for _ in range(n)])  # order[i, j]: which pose sits in slot j
    arrays = []
    for name in ("xy", "visibility", "world"):
        stacked = np.stack([getattr(p, name) for p in poses], axis=1)
        arrays.append(stacked[np.arange(n)[:, None], order])
    return (*arrays, np.argmax(order == 0, axis=1))


def _select(pose: PoseSeries, xy: np.ndarray, vis: np.ndarray, world: np.ndarray) -> PoseSeries:
    return subject.select(pose.frame, pose.t, xy, vis, world, pose.aspect)


def _big_and_passerby(seconds: float = 8.0) -> tuple[PoseSeries, PoseSeries]:
    big = B.build(B.squat(3, period_s=2.0, x=0.5, scale=0.35), noise_m=0.005)
    n = len(big)
    small = B.build(B.walk(n / 30.0, 1.3, scale=0.12, y=0.6, x=0.05), noise_m=0.005, seed=1)
    return big, small


def test_choose_takes_the_big_person_among_two() -> None:
    big, small = _big_and_passerby()
    xy, _, _, where = _stack([big, small])
    assert np.array_equal(subject.choose(xy), where)


def test_select_keeps_the_big_person_among_two() -> None:
    big, small = _big_and_passerby()
    xy, vis, world, _ = _stack([big, small])
    got = _select(big, xy, vis, world)
    assert np.array_equal(got.xy, big.xy, equal_nan=True)
    assert np.array_equal(got.world, big.world, equal_nan=True)
    assert np.array_equal(got.visibility, big.visibility)


def test_select_with_two_counts_the_big_persons_reps() -> None:
    big, small = _big_and_passerby()
    got = _select(big, *_stack([big, small])[:3])
    assert len(B.finish(got, "squat").reps) == 3


def test_select_keeps_the_subject_when_the_other_is_missing_at_times() -> None:
    big, small = _big_and_passerby()
    gone = B.build(B.walk(len(big) / 30.0, 1.3, scale=0.12, y=0.6, x=0.05), lost=[(2.0, 5.0)])
    xy, vis, world, _ = _stack([big, gone])
    assert np.array_equal(_select(big, xy, vis, world).xy, big.xy, equal_nan=True)


def test_a_passerby_crossing_in_front_does_not_steal_the_track() -> None:
    big = B.build(B.squat(3, period_s=2.0), noise_m=0.005)
    passerby = B.build(B.walk(len(big) / 30.0, 0.6, scale=0.25, y=0.85, x=0.2), noise_m=0.005, seed=1)
    xy, vis, world, where = _stack([big, passerby])
    assert np.array_equal(subject.choose(xy), where)
    assert len(B.finish(_select(big, xy, vis, world), "squat").reps) == 3


@pytest.mark.parametrize(("start", "length"), [(100, 10), (0, 10), (230, 10)])
def test_a_short_switch_to_someone_far_away_is_dropped(start: int, length: int) -> None:
    """k=1: the tracker locks on to another person (small, far to the side) for 10 frames."""
    main = B.build(B.squat(3), noise_m=0.005)
    other = B.build(B.idle(len(main) / 30.0, x=0.1, y=0.5, scale=0.15), noise_m=0.005, seed=2)
    swapped = np.zeros(len(main), bool)
    swapped[start : start + length] = True
    xy = np.where(swapped[:, None, None], other.xy, main.xy)[:, None]
    vis = np.where(swapped[:, None], other.visibility, main.visibility)[:, None]
    world = np.where(swapped[:, None, None], other.world, main.world)[:, None]
    got = _select(main, xy, vis, world)
    assert np.isnan(got.xy[swapped]).all() and np.isnan(got.world[swapped]).all()
    assert (got.visibility[swapped] == 0).all()
    assert np.array_equal(got.xy[~swapped], main.xy[~swapped])
    assert not got.detected[swapped].any() and got.detected[~swapped].all()


def test_single_candidate_without_switches_is_kept_whole() -> None:
    main = B.build(B.squat(3), noise_m=0.005, lost=[(2.0, 2.5)])
    got = _select(main, main.xy[:, None], main.visibility[:, None], main.world[:, None])
    assert np.array_equal(got.xy, main.xy, equal_nan=True)


def test_no_candidates_at_all() -> None:
    main = B.build(B.idle(1.0), lost=[(0.0, 5.0)])
    got = _select(main, main.xy[:, None], main.visibility[:, None], main.world[:, None])
    assert not got.detected.any()
    assert subject.choose(np.full((0, 2, 33, 2), np.nan)).shape == (0,)


def _pose_at(x: float, y: float = 0.5, height: float = 0.4) -> np.ndarray:
    """One standing pose's xy (33, 2): landmarks spread over a box ``height`` tall centred at (x, y)."""
    rng = np.random.default_rng(3)
    pts = rng.uniform(-0.5, 0.5, (33, 2)) * [height / 2, height]
    pts[0], pts[1] = [0.0, -height / 2], [0.0, height / 2]  # the box spans the full height
    return (pts + [x, y]).astype(np.float32)


@pytest.mark.parametrize(("dx", "expected"), [(0.0, False), (0.05, False), (0.09, False), (0.11, True), (0.3, True)])
def test_switched_at_a_boundary_means_a_jump_of_a_quarter_body_height(dx: float, expected: bool) -> None:
    # body height 0.4: the same person a frame later moves a few hundredths; another person sits elsewhere
    assert subject.switched(_pose_at(0.3), _pose_at(0.3 + dx)) is expected


def test_switched_cannot_tell_without_a_pose_on_both_sides() -> None:
    empty = np.full((33, 2), np.nan, np.float32)
    assert not subject.switched(empty, _pose_at(0.8))
    assert not subject.switched(_pose_at(0.2), empty)


def test_box_is_the_extent_of_the_landmarks() -> None:
    xy = _pose_at(0.3, 0.5, 0.4)
    xy[5] = np.nan  # a landmark without a position does not count
    x0, y0, x1, y1 = subject.box(xy)
    assert (x0, y0, x1, y1) == pytest.approx((np.nanmin(xy[:, 0]), 0.3, np.nanmax(xy[:, 0]), 0.7), abs=1e-6)
    assert x0 < 0.3 < x1
