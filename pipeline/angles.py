"""Joint angles as data: name -> three landmarks (angle at the middle one).

Virtual landmarks extend MediaPipe's 33: the shoulder and hip midpoints and a
point straight above the hip midpoint, so trunk lean and leg spread are angles
like any other. Angles are computed on MediaPipe's 3D world landmarks, which
makes them independent of the camera view (their y axis points down).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import kernels
from . import landmarks as L
from .records import AngleTable, PoseSeries

MID_SHOULDER, MID_HIP, UP = 33, 34, 35  # virtual landmarks
VISIBLE = 0.5  # MediaPipe visibility below which a landmark does not count


@dataclass(frozen=True, slots=True)
class JointAngle:
    name: str
    a: int
    b: int  # vertex
    c: int


ANGLES: tuple[JointAngle, ...] = (
    JointAngle("left_knee", L.L_HIP, L.L_KNEE, L.L_ANKLE),
    JointAngle("right_knee", L.R_HIP, L.R_KNEE, L.R_ANKLE),
    JointAngle("left_hip", L.L_SHOULDER, L.L_HIP, L.L_KNEE),
    JointAngle("right_hip", L.R_SHOULDER, L.R_HIP, L.R_KNEE),
    JointAngle("left_elbow", L.L_SHOULDER, L.L_ELBOW, L.L_WRIST),
    JointAngle("right_elbow", L.R_SHOULDER, L.R_ELBOW, L.R_WRIST),
    JointAngle("left_shoulder", L.L_HIP, L.L_SHOULDER, L.L_ELBOW),
    JointAngle("right_shoulder", L.R_HIP, L.R_SHOULDER, L.R_ELBOW),
    JointAngle("left_ankle", L.L_KNEE, L.L_ANKLE, L.L_FOOT),
    JointAngle("right_ankle", L.R_KNEE, L.R_ANKLE, L.R_FOOT),
    JointAngle("left_body_line", L.L_SHOULDER, L.L_HIP, L.L_ANKLE),
    JointAngle("right_body_line", L.R_SHOULDER, L.R_HIP, L.R_ANKLE),
    JointAngle("leg_spread", L.L_ANKLE, MID_HIP, L.R_ANKLE),
    JointAngle("trunk_lean", MID_SHOULDER, MID_HIP, UP),
)
NAMES = tuple(a.name for a in ANGLES)


def _extend(points: np.ndarray, up: np.ndarray) -> np.ndarray:
    """(n, 33, d) -> (n, 36, d) with the virtual landmarks appended."""
    mid_s = points[:, [L.L_SHOULDER, L.R_SHOULDER]].mean(axis=1)
    mid_h = points[:, [L.L_HIP, L.R_HIP]].mean(axis=1)
    return np.concatenate([points, mid_s[:, None], mid_h[:, None], (mid_h + up)[:, None]], axis=1)


def _visibility_columns(angle: JointAngle) -> list[int]:
    """The landmarks whose least visibility is the angle's (virtual ones stand for their sources)."""
    idx = [i for i in (angle.a, angle.b, angle.c) if i < 33]
    extra = {MID_SHOULDER: [L.L_SHOULDER, L.R_SHOULDER], MID_HIP: [L.L_HIP, L.R_HIP], UP: []}
    for i in (angle.a, angle.b, angle.c):
        idx += extra.get(i, [])
    return idx


def compute(pose: PoseSeries, visible: float = VISIBLE) -> AngleTable:
    """All angles of :data:`ANGLES` per frame; NaN where a landmark is not visible enough."""
    return gate(*compute_raw(pose), visible)


def gate(raw: np.ndarray, vis: np.ndarray, visible: float = VISIBLE) -> AngleTable:
    """The angle table with angles whose landmarks are seen less than ``visible`` set to NaN."""
    return AngleTable(NAMES, np.where(vis >= visible, raw, np.nan))


TRIPLES = np.array([(a.a, a.b, a.c) for a in ANGLES], np.int64)
_COLS = [_visibility_columns(a) for a in ANGLES]
VIS_COLUMNS = np.array([c + [-1] * (max(map(len, _COLS)) - len(c)) for c in _COLS], np.int64)  # -1 pads


def compute_all(pose: PoseSeries, visible: float = VISIBLE) -> tuple[np.ndarray, np.ndarray, AngleTable]:
    """(raw, vis, table): ungated angles (n, m) degrees, their visibility (n, m) (that of the least
    visible landmark) and the table gated at ``visible``, in one pass over the landmarks
    (:func:`pipeline.geometry.measure` measures them along with the rest of the frame's geometry)."""
    none = np.zeros(0, np.int64)
    raw, vis, gated, *_ = kernels.pose_geometry(
        np.ascontiguousarray(pose.world), np.ascontiguousarray(pose.xy), np.ascontiguousarray(pose.visibility),
        float(pose.aspect), kernels.ANGLES, TRIPLES, VIS_COLUMNS, visible, none, none, none, none,
    )
    return raw, vis, AngleTable(NAMES, gated)


def compute_raw(pose: PoseSeries) -> tuple[np.ndarray, np.ndarray]:
    """Ungated angles (n, m) degrees and their visibility (n, m): the least visible landmark."""
    raw, vis, _ = compute_all(pose)
    return raw, vis
