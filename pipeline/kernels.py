"""Numba kernels for the features stage: arrays and scalars in, arrays out, no I/O.

Every kernel has a plain numpy twin in :mod:`pipeline.reference`; tests assert
they agree on random inputs, NaN runs, zero length and one frame.

- ``joint_angles``: angle at the middle landmark of each (a, b, c) triple, degrees.
- ``fill_gaps``: linear interpolation across NaN runs no longer than ``max_gap``.
- ``smooth``: NaN-aware centred moving average (NaN stays NaN).
- ``rolling_max`` / ``rolling_min``: NaN-aware centred window extremes.
- ``segment_reps``: hysteresis state machine over per-frame thresholds -> (start, peak, end).
- ``rep_phases``: eccentric / pause / concentric frame counts and peak speed per rep.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True)
def joint_angles(pts: np.ndarray, triples: np.ndarray) -> np.ndarray:
    """pts (n, L, d) float64, triples (m, 3) int64 -> (n, m) float64 degrees in [0, 180]."""
    n, m, d = pts.shape[0], triples.shape[0], pts.shape[2]
    out = np.empty((n, m))
    for i in range(n):
        for j in range(m):
            a, b, c = triples[j, 0], triples[j, 1], triples[j, 2]
            dot = 0.0
            na = 0.0
            nc = 0.0
            for k in range(d):
                u = pts[i, a, k] - pts[i, b, k]
                v = pts[i, c, k] - pts[i, b, k]
                dot += u * v
                na += u * u
                nc += v * v
            den = math.sqrt(na * nc)
            if den > 0.0:
                cosv = min(1.0, max(-1.0, dot / den))
                out[i, j] = math.degrees(math.acos(cosv))
            else:
                out[i, j] = np.nan
    return out


@njit(cache=True)
def fill_gaps(x: np.ndarray, max_gap: int) -> np.ndarray:
    """Linearly interpolate interior NaN runs of length <= max_gap; edges stay NaN."""
    out = x.copy()
    n = x.shape[0]
    last = -1
    for i in range(n):
        if not np.isnan(x[i]):
            gap = i - last - 1
            if last >= 0 and 0 < gap <= max_gap:
                for j in range(last + 1, i):
                    w = (j - last) / (i - last)
                    out[j] = x[last] * (1.0 - w) + x[i] * w
            last = i
    return out


@njit(cache=True)
def smooth(x: np.ndarray, half: int) -> np.ndarray:
    """Centred mean over finite values in [i-half, i+half]; NaN where x[i] is NaN."""
    n = x.shape[0]
    out = np.empty(n)
    s = 0.0
    c = 0
    lo = 0
    hi = -1  # window [lo, hi] currently summed
    for i in range(n):
        want_lo = max(0, i - half)
        want_hi = min(n - 1, i + half)
        while hi < want_hi:
            hi += 1
            if not np.isnan(x[hi]):
                s += x[hi]
                c += 1
        while lo < want_lo:
            if not np.isnan(x[lo]):
                s -= x[lo]
                c -= 1
            lo += 1
        out[i] = np.nan if (np.isnan(x[i]) or c == 0) else s / c
    return out


@njit(cache=True)
def _rolling_ext(x: np.ndarray, half: int, sign: float) -> np.ndarray:
    # Monotonic deque over a centred window; O(n). sign=1 -> max, -1 -> min.
    n = x.shape[0]
    out = np.full(n, np.nan)
    dq = np.empty(n, np.int64)
    head = 0
    tail = 0
    nxt = 0
    for i in range(n):
        right = min(n - 1, i + half)
        while nxt <= right:
            v = x[nxt]
            if not np.isnan(v):
                while tail > head and sign * x[dq[tail - 1]] <= sign * v:
                    tail -= 1
                dq[tail] = nxt
                tail += 1
            nxt += 1
        while tail > head and dq[head] < i - half:
            head += 1
        if tail > head:
            out[i] = x[dq[head]]
    return out


@njit(cache=True)
def rolling_max(x: np.ndarray, half: int) -> np.ndarray:
    """Max of finite values in [i-half, i+half]; NaN if none."""
    return _rolling_ext(x, half, 1.0)


@njit(cache=True)
def rolling_min(x: np.ndarray, half: int) -> np.ndarray:
    """Min of finite values in [i-half, i+half]; NaN if none."""
    return _rolling_ext(x, half, -1.0)


@njit(cache=True)
def segment_reps(
    s: np.ndarray, lo: np.ndarray, hi: np.ndarray, min_len: int, max_gap: int
) -> np.ndarray:
    """Count excursions rest (s <= lo) -> turn (s >= hi) -> rest (s <= lo).

    s is oriented so the turning point is a maximum. A rep needs the subject at
    rest before it rises (so a clip that opens mid-rep does not count it), must
    span at least ``min_len`` frames, and is abandoned by a NaN run longer than
    ``max_gap``. Returns (k, 3) int64 rows: last rest frame before the rise,
    turning point (argmax), first rest frame after it.
    """
    n = s.shape[0]
    out = np.empty((n // 2 + 1, 3), np.int64)
    k = 0
    state = 0  # 0 unarmed, 1 at rest, 2 in a rep
    start = -1
    peak = -1
    nan_run = 0
    for i in range(n):
        v = s[i]
        if np.isnan(v) or np.isnan(lo[i]) or np.isnan(hi[i]):
            nan_run += 1
            if nan_run > max_gap:
                state = 0
            continue
        nan_run = 0
        if state == 0:
            if v <= lo[i]:
                state = 1
                start = i
        elif state == 1:
            if v <= lo[i]:
                start = i
            elif v >= hi[i]:
                state = 2
                peak = i
        else:
            if v > s[peak]:
                peak = i
            if v <= lo[i]:
                if i - start >= min_len:
                    out[k, 0] = start
                    out[k, 1] = peak
                    out[k, 2] = i
                    k += 1
                state = 1
                start = i
    return out[:k].copy()


@njit(cache=True)
def rep_phases(a: np.ndarray, t: np.ndarray, reps: np.ndarray, band: float) -> np.ndarray:
    """Per rep (k, 5): eccentric_s, pause_s, concentric_s, rom, peak |da/dt|.

    ``a`` is the joint angle (degrees, NaN allowed) and ``reps`` the (start, peak, end)
    rows. The pause is the time spent within ``band`` (fraction of the rep's range)
    of the turning-point value; eccentric runs from start to the pause, concentric
    from the pause to the end.
    """
    k = reps.shape[0]
    out = np.full((k, 5), np.nan)
    for r in range(k):
        s0, p, e = reps[r, 0], reps[r, 1], reps[r, 2]
        amin = np.inf
        amax = -np.inf
        vmax = 0.0
        prev = -1
        for i in range(s0, e + 1):
            if np.isnan(a[i]):
                continue
            amin = min(amin, a[i])
            amax = max(amax, a[i])
            if prev >= 0 and t[i] > t[prev]:
                vmax = max(vmax, abs(a[i] - a[prev]) / (t[i] - t[prev]))
            prev = i
        if prev < 0 or np.isnan(a[p]):
            continue
        rom = amax - amin
        tol = band * rom
        p0 = p
        while p0 > s0 and (np.isnan(a[p0 - 1]) or abs(a[p0 - 1] - a[p]) <= tol):
            p0 -= 1
        p1 = p
        while p1 < e and (np.isnan(a[p1 + 1]) or abs(a[p1 + 1] - a[p]) <= tol):
            p1 += 1
        out[r, 0] = t[p0] - t[s0]
        out[r, 1] = t[p1] - t[p0]
        out[r, 2] = t[e] - t[p1]
        out[r, 3] = rom
        out[r, 4] = vmax
    return out
