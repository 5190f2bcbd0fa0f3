"""Exercise and camera-view detection from clip-level posture and motion features.

Features are physical and view-robust where possible (3D world angles, ratios),
and each exercise is scored by soft range rules (data, :data:`RULES`): a feature
inside [lo, hi] scores 1, outside it decays with the distance in units of
``soft``. The exercise's own rep counter finding reps adds evidence. Confidence
is the winner's share of the total score.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from . import geometry, kernels
from .geometry import Geometry
from .records import PoseSeries


@dataclass(frozen=True, slots=True)
class Rule:
    feature: str
    lo: float
    hi: float
    soft: float


_Q_ROM = np.array([95 / 100, 5 / 100])  # np.percentile's q / 100
_Q_P90 = np.array([90 / 100.0])


def _rom(x: np.ndarray) -> float:
    """5th to 95th percentile range of the finite values (0 with five or fewer)."""
    (p95, p5), n = kernels.percentiles(x, _Q_ROM, True)
    return float(p95 - p5) if n > 4 else 0.0


def _med(x: np.ndarray) -> float:
    return float(kernels.nan_median(x, True))


def _p90(x: np.ndarray) -> float:
    """90th percentile ignoring NaN (0 without a finite value)."""
    return float(kernels.percentiles(x, _Q_P90, False)[0][0]) if np.isfinite(x).any() else 0.0


def features(
    pose: PoseSeries, raw: np.ndarray, names: tuple[str, ...], geo: Geometry | None = None
) -> dict[str, float]:
    """Clip-level features: angle ranges (deg), trunk lean (deg), arm height, stance. ``geo``: the
    clip's geometry, when measured with its posture series."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NaN-only frames and columns are expected
        return _features(pose, raw, names, geo)


def _features(pose: PoseSeries, raw: np.ndarray, names: tuple[str, ...], geo: Geometry | None) -> dict[str, float]:

    def col(name: str) -> np.ndarray:
        return raw[:, names.index(name)]

    def pair(name: str) -> np.ndarray:
        return kernels.pair_mean(raw, names.index(f"left_{name}"), names.index(f"right_{name}"))

    if geo is not None and len(geo.arm_height) == len(pose):
        arm_height, split, wrists_up = geo.arm_height, geo.split, geo.wrists_up
    else:
        arm_height, split, wrists_up = kernels.posture_series(
            np.ascontiguousarray(pose.xy), np.ascontiguousarray(pose.world), float(pose.aspect),
            geometry.POSTURE_LANDMARKS,
        )
    shoulder = pair("shoulder")
    with np.errstate(invalid="ignore"):
        return {
            "trunk": _med(col("trunk_lean")),
            "trunk_rom": _rom(col("trunk_lean")),
            "knee_rom": _rom(pair("knee")),
            "hip_rom": _rom(pair("hip")),
            "elbow_rom": _rom(pair("elbow")),
            "shoulder_rom": _rom(shoulder),
            "spread_rom": _rom(col("leg_spread")),
            "wrists_over_head": wrists_up / len(raw) if len(raw) else 0.0,
            "arm_height_p90": _p90(arm_height),
            "split_p90": _p90(split),
            "jack_sync": _corr(shoulder, col("leg_spread")),
        }


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation over frames where both are finite (0 when undefined)."""
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 5 or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
        return 0.0
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


RULES: dict[str, tuple[Rule, ...]] = {
    "squat": (Rule("trunk", 0, 45, 15), Rule("knee_rom", 40, 180, 15), Rule("split_p90", 0, 0.45, 0.15),
              Rule("wrists_over_head", 0, 0.3, 0.2)),
    "lunge": (Rule("trunk", 0, 45, 15), Rule("knee_rom", 35, 180, 15), Rule("split_p90", 0.5, 3, 0.15),
              Rule("wrists_over_head", 0, 0.3, 0.2)),
    "pushup": (Rule("trunk", 50, 130, 15), Rule("elbow_rom", 25, 180, 10), Rule("knee_rom", 0, 40, 15),
               Rule("trunk_rom", 0, 40, 15)),
    "situp": (Rule("trunk", 40, 180, 15), Rule("hip_rom", 35, 180, 10), Rule("trunk_rom", 35, 180, 10),
              Rule("elbow_rom", 0, 40, 10)),
    "bicep_curl": (Rule("trunk", 0, 35, 10), Rule("elbow_rom", 45, 180, 10), Rule("shoulder_rom", 0, 50, 15),
                   Rule("arm_height_p90", -3, 0.3, 0.2), Rule("knee_rom", 0, 30, 10), Rule("spread_rom", 0, 15, 5)),
    "shoulder_press": (Rule("trunk", 0, 35, 10), Rule("elbow_rom", 35, 180, 10), Rule("shoulder_rom", 40, 180, 15),
                       Rule("arm_height_p90", 0.0, 5, 0.2), Rule("knee_rom", 0, 30, 10), Rule("spread_rom", 0, 20, 5),
                       Rule("jack_sync", -1, 0.5, 0.2), Rule("wrists_over_head", 0, 0.6, 0.1)),
    "jumping_jack": (Rule("trunk", 0, 35, 10), Rule("shoulder_rom", 80, 200, 20), Rule("spread_rom", 20, 90, 6),
                     Rule("jack_sync", 0.5, 1, 0.2), Rule("wrists_over_head", 0, 0.65, 0.1),
                     Rule("knee_rom", 0, 40, 10)),
    "pullup": (Rule("trunk", 0, 45, 15), Rule("elbow_rom", 30, 180, 10), Rule("wrists_over_head", 0.7, 1, 0.1),
               Rule("spread_rom", 0, 25, 5)),
}


def _score(rule: Rule, value: float) -> float:
    if not np.isfinite(value):
        return 0.5
    d = max(rule.lo - value, value - rule.hi, 0.0) / rule.soft
    return float(np.exp(-0.5 * d * d))


def score_exercises(feats: dict[str, float]) -> dict[str, float]:
    """Posture/motion plausibility of each exercise in [0, 1]."""
    return {ex: float(np.prod([_score(r, feats[r.feature]) for r in rules])) for ex, rules in RULES.items()}


SIDE_DEG, FRONT_DEG = 45.0, 20.0  # yaw of the shoulder/hip line; MediaPipe's depth underestimates it


def detect_view(pose: PoseSeries, geo: Geometry | None = None) -> tuple[str, float, float]:
    """(side|front|oblique|back|unknown, yaw degrees, confidence) from the 3D shoulder and hip lines.

    Facing away shows as the left shoulder on the image's left (MediaPipe labels
    sides by body, not by image position). ``geo``: the clip's geometry when already measured.
    """
    dx, dz, posed, shoulders_x = (
        (geo.line_dx, geo.line_dz, geo.posed, geo.shoulders_x) if geo is not None else geometry.lines(pose)
    )
    if not posed.any():
        return "unknown", float("nan"), 0.0
    yaw = float(kernels.view_yaw(dx, dz, posed))
    margin = min(abs(yaw - SIDE_DEG), abs(yaw - FRONT_DEG))
    conf = round(0.5 + 0.5 * min(1.0, margin / 15.0), 3)
    if yaw >= SIDE_DEG:
        return "side", yaw, conf
    if yaw > FRONT_DEG:
        return "oblique", yaw, conf
    return ("back" if kernels.posed_median(shoulders_x, posed) < -0.02 else "front"), yaw, conf
