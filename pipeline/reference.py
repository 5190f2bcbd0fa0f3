"""Plain numpy reference twins of the numba kernels in :mod:`pipeline.kernels`.

Each function here has the same name, signature and semantics as its kernel,
but is written for clarity rather than speed: whole-array numpy where that is
natural, a short Python loop where the algorithm is inherently sequential.
Tests in ``tests/test_kernels.py`` assert that kernel and twin agree on random
inputs, NaN runs, zero length, one frame, all-NaN and constant signals.

Nothing in the pipeline imports this module; it exists to pin down what the
kernels are supposed to compute.

- ``joint_angles``: einsum dot products and arccos, NaN for degenerate triples.
- ``fill_gaps``: previous/next finite index per frame, interpolate short interior runs.
- ``smooth``: windowed sums from cumulative sums over the finite values.
- ``rolling_max`` / ``rolling_min``: ``sliding_window_view`` over a NaN-padded copy.
- ``segment_reps``: the rest -> turn -> rest state machine as a readable loop.
- ``rep_phases``: per-rep slices; pause found as the run of frames near the turn.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]


def joint_angles(pts: Floats, triples: Ints) -> Floats:
    """pts (n, L, d) float64, triples (m, 3) int64 -> (n, m) float64 degrees in [0, 180].

    NaN where either arm has zero length or any of the three points is NaN.
    """
    a = pts[:, triples[:, 0]]  # (n, m, d)
    b = pts[:, triples[:, 1]]
    c = pts[:, triples[:, 2]]
    u = a - b
    v = c - b
    dot = np.einsum("nmd,nmd->nm", u, v)
    den = np.sqrt(np.einsum("nmd,nmd->nm", u, u) * np.einsum("nmd,nmd->nm", v, v))
    ok = den > 0.0  # False for zero-length arms and for NaN
    cos = np.clip(np.divide(dot, den, out=np.zeros_like(dot), where=ok), -1.0, 1.0)
    return np.where(ok, np.degrees(np.arccos(cos)), np.nan)


def _prev_next_finite(x: Floats) -> tuple[Ints, Ints]:
    """Index of the nearest finite sample at or before / at or after each frame.

    -1 where there is none before, ``len(x)`` where there is none after.
    """
    n = x.shape[0]
    idx = np.arange(n)
    finite = ~np.isnan(x)
    prev = np.maximum.accumulate(np.where(finite, idx, -1))
    nxt = np.minimum.accumulate(np.where(finite, idx, n)[::-1])[::-1]
    return prev, nxt


def fill_gaps(x: Floats, max_gap: int) -> Floats:
    """Linearly interpolate interior NaN runs of length <= max_gap; edges stay NaN."""
    n = x.shape[0]
    out = x.copy()
    prev, nxt = _prev_next_finite(x)
    run = nxt - prev - 1  # length of the NaN run a frame sits in (0 if finite)
    fill = np.isnan(x) & (prev >= 0) & (nxt < n) & (run <= max_gap)
    j, lo, hi = np.arange(n)[fill], prev[fill], nxt[fill]
    w = (j - lo) / (hi - lo)
    out[fill] = x[lo] * (1.0 - w) + x[hi] * w
    return out


def smooth(x: Floats, half: int) -> Floats:
    """Centred mean over finite values in [i-half, i+half]; NaN where x[i] is NaN."""
    n = x.shape[0]
    finite = ~np.isnan(x)
    total = np.concatenate(([0.0], np.cumsum(np.where(finite, x, 0.0))))
    count = np.concatenate(([0], np.cumsum(finite)))
    i = np.arange(n)
    lo = np.maximum(0, i - half)
    hi = np.minimum(n, i + half + 1)  # exclusive
    s = total[hi] - total[lo]
    c = count[hi] - count[lo]
    mean = s / np.maximum(c, 1)
    return np.where(finite & (c > 0), mean, np.nan)


def _windows(x: Floats, half: int) -> Floats:
    """(n, 2*half+1) view of the centred windows of a NaN-padded copy of x."""
    padded = np.pad(x, half, constant_values=np.nan)
    return sliding_window_view(padded, 2 * half + 1)


def rolling_max(x: Floats, half: int) -> Floats:
    """Max of finite values in [i-half, i+half]; NaN if none."""
    if x.shape[0] == 0:
        return np.empty(0)
    # fmax ignores NaN unless both sides are NaN, so all-NaN windows give NaN.
    out: Floats = np.fmax.reduce(_windows(x, half), axis=1)
    return out


def rolling_min(x: Floats, half: int) -> Floats:
    """Min of finite values in [i-half, i+half]; NaN if none."""
    if x.shape[0] == 0:
        return np.empty(0)
    out: Floats = np.fmin.reduce(_windows(x, half), axis=1)
    return out


def segment_reps(s: Floats, lo: Floats, hi: Floats, min_len: int, max_gap: int) -> Ints:
    """Count excursions rest (s <= lo) -> turn (s >= hi) -> rest (s <= lo).

    Returns (k, 3) int64 rows (last rest frame before the rise, argmax of s
    within the rep, first rest frame after it). A frame is missing when s, lo
    or hi is NaN; a run of more than ``max_gap`` missing frames forgets
    everything, so the subject must be seen at rest again before a rep counts.
    """
    missing = np.isnan(s) | np.isnan(lo) | np.isnan(hi)
    reps: list[tuple[int, int, int]] = []
    armed = False  # seen at rest since the start or the last long gap
    start = -1  # latest rest frame
    peak: int | None = None  # argmax so far while inside a rep, else None
    gap = 0
    for i in range(s.shape[0]):
        if missing[i]:
            gap += 1
            if gap > max_gap:
                armed, peak = False, None
            continue
        gap = 0
        at_rest = bool(s[i] <= lo[i])
        if peak is None:
            if at_rest:
                armed, start = True, i
            elif armed and s[i] >= hi[i]:
                peak = i
            continue
        if s[i] > s[peak]:
            peak = i
        if at_rest:
            if i - start >= min_len:
                reps.append((start, peak, i))
            start, peak = i, None
    return np.array(reps, dtype=np.int64).reshape(-1, 3)


def _rep_row(a: Floats, t: Floats, s0: int, p: int, e: int, band: float) -> Floats:
    """eccentric_s, pause_s, concentric_s, rom, peak |da/dt| for one rep (or NaNs)."""
    seg = a[s0 : e + 1]
    finite = ~np.isnan(seg)
    if not finite.any() or np.isnan(a[p]):
        return np.full(5, np.nan)
    vals = seg[finite]
    rom = float(vals.max() - vals.min())

    # Speed between consecutive finite samples, where time moves forward.
    dt = np.diff(t[s0 : e + 1][finite])
    da = np.abs(np.diff(vals))
    forward = dt > 0
    vmax = float((da[forward] / dt[forward]).max()) if forward.any() else 0.0

    # Pause: the contiguous run around p of frames that are NaN or within tol of a[p].
    near = np.isnan(seg) | (np.abs(seg - a[p]) <= band * rom)
    k = p - s0
    far_before = np.flatnonzero(~near[:k])
    far_after = np.flatnonzero(~near[k + 1 :])
    p0 = s0 + (far_before[-1] + 1 if far_before.size else 0)
    p1 = p + (far_after[0] if far_after.size else e - p)
    return np.array([t[p0] - t[s0], t[p1] - t[p0], t[e] - t[p1], rom, vmax])


def rep_phases(a: Floats, t: Floats, reps: Ints, band: float) -> Floats:
    """Per rep (k, 5): eccentric_s, pause_s, concentric_s, rom, peak |da/dt|.

    ``a`` is the joint angle (degrees, NaN allowed), ``t`` the frame times and
    ``reps`` the (start, peak, end) rows from :func:`segment_reps`. A row is
    NaN when the rep has no finite angle or the angle at its peak is NaN.
    """
    out = np.full((reps.shape[0], 5), np.nan)
    for r, (s0, p, e) in enumerate(reps):
        out[r] = _rep_row(a, t, int(s0), int(p), int(e), band)
    return out
