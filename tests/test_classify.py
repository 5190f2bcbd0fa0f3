"""Exercise detection (``finish`` with exercise='auto') and camera-view detection on synthetic skeletons."""

from __future__ import annotations

from collections.abc import Callable

import builders as B
import numpy as np
import pytest

from pipeline import angles, classify
from pipeline import landmarks as L

NOISE_M = 0.005

EXERCISE_CASES = [  # (built motion, expected exercise, camera yaw)
    (B.squat, "squat", 0.0),
    (B.squat, "squat", 90.0),
    (B.curl, "bicep_curl", 0.0),
    (B.curl, "bicep_curl", 45.0),
    (B.jumping_jack, "jumping_jack", 0.0),
    (B.jumping_jack, "jumping_jack", 180.0),
    (B.pushup, "pushup", 90.0),
    (B.pushup, "pushup", 45.0),
]


@pytest.mark.parametrize(
    ("motion", "name", "yaw"), EXERCISE_CASES, ids=[f"{n}-yaw{y:.0f}" for _, n, y in EXERCISE_CASES]
)
def test_exercise_is_detected(motion: Callable[..., B.Motion], name: str, yaw: float) -> None:
    result = B.finish(B.build(motion(6, yaw=yaw), noise_m=NOISE_M), "auto")
    ex = result.summary["exercise"]
    assert isinstance(ex, dict)
    assert (ex["name"], ex["source"]) == (name, "detected"), ex["scores"]
    assert ex["confidence"] > 0.5
    assert result.summary["rep_count"] == 6


@pytest.mark.parametrize(("motion", "name"), [(B.squat, "squat"), (B.curl, "bicep_curl"),
                                              (B.jumping_jack, "jumping_jack"), (B.pushup, "pushup")])
def test_posture_scores_rank_the_exercise_first(motion: Callable[..., B.Motion], name: str) -> None:
    pose = B.build(motion(6), noise_m=NOISE_M)
    raw, _ = angles.compute_raw(pose)
    scores = classify.score_exercises(classify.features(pose, raw, angles.NAMES))
    assert max(scores, key=lambda k: scores[k]) == name, scores
    assert all(0.0 <= v <= 1.0 for v in scores.values())


def test_given_exercise_is_not_detected() -> None:
    ex = B.finish(B.build(B.curl(3)), "squat").summary["exercise"]
    assert ex == {"name": "squat", "source": "given", "confidence": 1.0, "scores": {}}


@pytest.mark.parametrize("seed", range(3))
def test_idle_with_auto_counts_nothing(seed: int) -> None:
    result = B.finish(B.build(B.idle(20.0), noise_m=0.01, seed=seed), "auto")
    assert result.summary["rep_count"] == 0
    assert isinstance(result.summary["reason"], str) and result.summary["reason"]


@pytest.mark.parametrize("seed", range(4))
def test_idle_with_auto_counts_nothing_at_2cm_noise(seed: int) -> None:
    assert B.finish(B.build(B.idle(20.0), noise_m=0.02, seed=seed), "auto").summary["rep_count"] == 0


def test_idle_with_auto_falls_back_to_generic() -> None:
    ex = B.finish(B.build(B.idle(10.0), noise_m=NOISE_M), "auto").summary["exercise"]
    assert isinstance(ex, dict) and (ex["name"], ex["source"]) == ("generic", "detected")


@pytest.mark.parametrize(("yaw", "view"), [
    (0.0, "front"), (10.0, "front"), (-10.0, "front"),
    (40.0, "oblique"), (-40.0, "oblique"), (140.0, "oblique"),
    (90.0, "side"), (-90.0, "side"), (70.0, "side"),
    (180.0, "back"), (170.0, "back"), (195.0, "back"),
])
def test_detect_view(yaw: float, view: str) -> None:
    name, got_yaw, conf = classify.detect_view(B.build(B.squat(2, yaw=yaw), noise_m=NOISE_M))
    assert name == view
    folded = min(abs(yaw) % 180, 180 - abs(yaw) % 180)  # yaw of the shoulder line, 0..90
    assert got_yaw == pytest.approx(folded, abs=3.0)
    assert 0.5 <= conf <= 1.0


def test_detect_view_back_is_the_mirror_of_front() -> None:
    front, back = (B.build(B.idle(1.0, yaw=y)) for y in (0.0, 180.0))
    assert front.xy[0, L.L_SHOULDER, 0] > front.xy[0, L.R_SHOULDER, 0]  # the body's left on the image's right
    assert back.xy[0, L.L_SHOULDER, 0] < back.xy[0, L.R_SHOULDER, 0]


def test_detect_view_without_a_pose() -> None:
    pose = B.build(B.idle(1.0), lost=[(0.0, 10.0)])
    name, yaw, conf = classify.detect_view(pose)
    assert name == "unknown" and np.isnan(yaw) and conf == 0.0


def test_features_of_an_empty_clip() -> None:
    pose = B.build(B.idle(0.0))
    raw, _ = angles.compute_raw(pose)
    feats = classify.features(pose, raw, angles.NAMES)
    assert set(feats) >= {r.feature for rules in classify.RULES.values() for r in rules}
