"""Per-frame geometry of the subject, from one pass over its landmarks.

Reading the landmarks (tens of megabytes for a ten-minute clip) costs as much as the
arithmetic on them, so one kernel reads each frame once for everything the features
stage measures per frame:

- the joint angles of :mod:`pipeline.angles`, their visibility and the gated table;
- the image scale (frame heights per metre of the least foreshortened body segment) and
  the hip midpoint's x, from which :mod:`pipeline.reps` tells walking from exercising;
- the shoulder and hip lines in the world and the shoulders' order in the image, from
  which :mod:`pipeline.classify` reads the camera view;
- on request, the posture series the exercise classifier reads (arm height, stance).

Frames are independent: a long clip's ranges of frames are measured by two threads at once
(:mod:`pipeline.parallel`) while a core is idle: 1.9 -> 1.15 ms on 18,000 frames here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import angles, kernels
from . import landmarks as L
from .parallel import map2
from .records import AngleTable, PoseSeries

SEGMENTS = (  # rigid body segments (landmark pairs) used to measure image scale
    (11, 12), (11, 13), (12, 14), (13, 15), (14, 16), (23, 25), (24, 26), (25, 27), (26, 28), (11, 23), (12, 24),
)
_SEG_A = np.array([a for a, _ in SEGMENTS], np.int64)
_SEG_B = np.array([b for _, b in SEGMENTS], np.int64)
_LINES = np.array([L.L_SHOULDER, L.R_SHOULDER, L.L_HIP, L.R_HIP], np.int64)
POSTURE_LANDMARKS = np.array([L.NOSE, L.L_SHOULDER, L.R_SHOULDER, L.L_WRIST, L.R_WRIST, L.L_HIP, L.R_HIP, L.L_ANKLE,
                              L.R_ANKLE], np.int64)  # what kernels.posture_series reads, in its order


@dataclass(frozen=True, slots=True)
class Geometry:
    """raw: (n, m) float64 joint angles (degrees, :data:`pipeline.angles.ANGLES`), ungated.
    vis: (n, m) float64 visibility of each angle (its least visible landmark).
    table: the angles gated at :data:`pipeline.angles.VISIBLE` (NaN where not seen).
    scale: (n,) frame heights per metre (NaN where no segment is longer than 5 cm in the world).
    hip_x: (n,) hip midpoint x in frame heights.
    line_dx, line_dz: (2, n) |right - left| of the shoulders (row 0) and hips (row 1) along the
    world's x and z, metres.
    posed: (n,) bool, a pose was found.
    shoulders_x: (n,) x(left shoulder) - x(right shoulder) in normalized image coords, in the
    landmarks' precision (float32 from the model).
    detected: how many frames have a pose in the image (``pose.detected.sum()``).
    arm_height, split, wrists_up: :func:`pipeline.kernels.posture_series` of the clip (for the
    exercise classifier), when asked for (else empty and 0)."""

    raw: np.ndarray
    vis: np.ndarray
    table: AngleTable
    scale: np.ndarray
    hip_x: np.ndarray
    line_dx: np.ndarray
    line_dz: np.ndarray
    posed: np.ndarray
    shoulders_x: np.ndarray
    detected: int
    arm_height: np.ndarray
    split: np.ndarray
    wrists_up: int


_into: Callable[..., tuple[int, int]] = kernels.pose_geometry_into
CHUNKS = 2  # a long clip's frames in this many ranges, one per thread (each range a GIL-free call)


def _run(pose: PoseSeries, what: int) -> tuple[Any, ...]:
    """:func:`pipeline.kernels.pose_geometry` of ``pose``; a long clip in two halves at once."""
    args = (np.ascontiguousarray(pose.world), np.ascontiguousarray(pose.xy), np.ascontiguousarray(pose.visibility),
            float(pose.aspect), what, angles.TRIPLES, angles.VIS_COLUMNS, angles.VISIBLE, _SEG_A, _SEG_B, _LINES,
            POSTURE_LANDMARKS)
    n = len(pose)
    out = kernels.geometry_tables(n, len(angles.TRIPLES), what, args[1])
    per = -(-n // CHUNKS)
    step = max(kernels.BLOCK, -(-per // kernels.BLOCK) * kernels.BLOCK)  # whole blocks, rounded up
    counts = map2(lambda lo: _into(*args, lo, min(lo + step, n), *out), range(0, n, step), n)
    raw, vis, gated, *rest = out
    return (raw.T, vis.T, gated.T, *rest, sum(c[0] for c in counts), sum(c[1] for c in counts))


def measure(pose: PoseSeries, posture: bool = False) -> Geometry:
    """All of :class:`Geometry` for ``pose`` (the posture series too with ``posture``)."""
    what = kernels.ANGLES | kernels.SCALE | kernels.LINES | (kernels.POSTURE if posture else 0)
    raw, vis, gated, scale, hip_x, dx, dz, posed, shoulders, arm, split, found, up = _run(pose, what)
    return Geometry(raw, vis, AngleTable(angles.NAMES, gated), scale, hip_x, dx, dz, posed, shoulders, int(found),
                    arm, split, int(up))


def scale(pose: PoseSeries) -> tuple[np.ndarray, np.ndarray]:
    """(scale, hip_x) of :class:`Geometry` alone."""
    out = _run(pose, kernels.SCALE)
    return out[3], out[4]


def lines(pose: PoseSeries) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(line_dx, line_dz, posed, shoulders_x) of :class:`Geometry` alone."""
    out = _run(pose, kernels.LINES)
    return out[5], out[6], out[7], out[8]
