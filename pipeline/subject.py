"""Pick one subject per frame from the pose candidates, and drop frames that belong to someone else.

MediaPipe reports up to ``k`` poses per frame in no stable order, and a tracker
that re-acquires (a new chunk, an occlusion) may lock on to another person. The
subject is the person who is largest and most consistently present over the
clip, not whoever is nearest in one frame:

1. reference: the median centre of the largest candidate per frame;
2. per frame, the candidate nearest the running reference (exponential average)
   in position (body heights) and size (log ratio);
3. the chosen track is cut where it jumps by more than ``JUMP`` body heights
   between analyzed frames; segments unlike the dominant one (position or size)
   are set to NaN.
"""

from __future__ import annotations

import warnings

import numpy as np

from .records import PoseSeries

JUMP = 0.6  # body heights between consecutive analyzed frames that mean "another person"
# at a chunk boundary, where nothing smooths the track: the same person, a frame apart, moves a
# few hundredths of a body height (0.25 body heights in 1/15 s is 6 m/s for someone 1.7 m tall)
BOUNDARY_JUMP = 0.25


def _extent(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """xy (..., 33, 2) -> the landmark box's corners lo, hi (..., 2) (NaN for frames without a pose)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: frames without a pose
        return np.nanmin(xy, axis=-2), np.nanmax(xy, axis=-2)


def _boxes(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """xy (..., 33, 2) -> centre (..., 2), height (...) of the landmark box."""
    lo, hi = _extent(xy)
    return (lo + hi) / 2, np.maximum(hi[..., 1] - lo[..., 1], hi[..., 0] - lo[..., 0])


def choose(xy: np.ndarray) -> np.ndarray:
    """xy (n, k, 33, 2) -> (n,) int candidate index per frame (-1: none)."""
    n, k = xy.shape[:2]
    if n == 0:
        return np.zeros(0, np.int64)
    valid = np.isfinite(xy[:, :, 0, 0])
    centre, height = _boxes(xy)
    height = np.where(valid, height, -1.0)
    out = np.full(n, -1, np.int64)
    if k == 1:
        out[valid[:, 0]] = 0
        return out
    largest = np.argmax(height, axis=1)
    has = valid.any(axis=1)
    if not has.any():
        return out
    ref = np.median(centre[np.arange(n), largest][has], axis=0)
    ref_h = float(np.median(height[np.arange(n), largest][has]))
    for i in np.flatnonzero(has):
        # distance in the subject's body heights plus how much the size differs (log ratio)
        with np.errstate(divide="ignore", invalid="ignore"):
            cost = np.linalg.norm(centre[i] - ref, axis=1) / ref_h + np.abs(np.log(height[i] / ref_h))
        cost[~valid[i]] = np.inf
        j = int(np.argmin(cost))
        out[i] = j
        ref = 0.8 * ref + 0.2 * centre[i, j]
        ref_h = 0.8 * ref_h + 0.2 * float(height[i, j])
    return out


def consistent(xy: np.ndarray) -> np.ndarray:
    """xy (n, 33, 2) of the chosen track -> (n,) bool: frames of the dominant person."""
    n = xy.shape[0]
    ok = np.isfinite(xy[:, 0, 0])
    if ok.sum() < 2:
        return ok
    centre, height = _boxes(xy)
    idx = np.flatnonzero(ok)
    step = np.linalg.norm(np.diff(centre[idx], axis=0), axis=1) / np.maximum(height[idx[1:]], 1e-6)
    cuts = np.flatnonzero(step > JUMP) + 1
    segs = np.split(idx, cuts)
    weight = [len(s) * float(np.median(height[s])) for s in segs]
    main = segs[int(np.argmax(weight))]
    c0, h0 = np.median(centre[main], axis=0), float(np.median(height[main]))
    keep = np.zeros(n, bool)
    for s in segs:
        c, h = np.median(centre[s], axis=0), float(np.median(height[s]))
        if np.linalg.norm(c - c0) <= 0.75 * h0 and 0.6 <= h / h0 <= 1.6:
            keep[s] = True
    return keep


def switched(before: np.ndarray, after: np.ndarray) -> bool:
    """True when ``after`` (33, 2), a chunk's first frame, does not show the person of ``before``,
    the previous chunk's last frame: box centres more than BOUNDARY_JUMP body heights apart.
    False when either frame has no pose (nothing to tell)."""
    if not (np.isfinite(before[0, 0]) and np.isfinite(after[0, 0])):
        return False
    (c0, c1), (h0, h1) = _boxes(np.stack([before, after]))
    return bool(np.linalg.norm(c1 - c0) > BOUNDARY_JUMP * max(float(h0), float(h1), 1e-6))


def box(xy: np.ndarray) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1): the extent of one pose's landmarks xy (33, 2), normalized."""
    lo, hi = _extent(xy)
    return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


def select(
    frame: np.ndarray, t: np.ndarray, xy: np.ndarray, vis: np.ndarray, world: np.ndarray, aspect: float
) -> PoseSeries:
    """Candidates (n, k, ...) -> the subject's PoseSeries (other people's frames are NaN)."""
    n = xy.shape[0]
    pick = choose(xy)
    rows = np.arange(n)
    safe = np.maximum(pick, 0)
    sxy = xy[rows, safe].copy()
    svis = vis[rows, safe].copy()
    sworld = world[rows, safe].copy()
    none = pick < 0
    keep = consistent(sxy) & ~none
    sxy[~keep] = np.nan
    sworld[~keep] = np.nan
    svis[~keep] = 0.0
    return PoseSeries(frame, t, sxy, svis, sworld, aspect)
