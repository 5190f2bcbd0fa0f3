"""Numba kernels for the features stage: arrays and scalars in, arrays out, no I/O.

Every kernel has a plain numpy twin in :mod:`pipeline.reference`; tests assert
they agree on random inputs, NaN runs, zero length and one frame. Where the twin is
the numpy code the pipeline used before the kernel, the kernel reproduces numpy's
arithmetic (pairwise sums, ``(a + b) / 2`` medians, percentile interpolation) so
the answers are the same to the bit.

- ``joint_angles``: angle at the middle landmark of each (a, b, c) triple, degrees.
- ``pose_geometry``: one pass over the landmarks for the angles (with the virtual landmarks,
  visibility and gating), the image scale and hip position (walking), the body lines (view)
  and the classifier's posture series; ``geometry_tables`` + ``pose_geometry_into`` measure
  ranges of frames into shared tables (two threads at once, the GIL released).
- ``fill_gaps``: linear interpolation across NaN runs no longer than ``max_gap``.
- ``smooth``: NaN-aware centred moving average (NaN stays NaN).
- ``envelope`` / ``rolling_max`` / ``rolling_min``: NaN-aware centred window extremes.
- ``levels``: rest / turn thresholds from the envelope (NaN where it is too narrow).
- ``masked_median``, ``combine``: the visibility-weighted combined signal.
- ``centre_finite``, ``lag_counts``, ``power``, ``pick_period``: the autocorrelation period estimate.
- ``period_inputs``, ``settle``, ``count_reps``: a counting signal's preparation and count in
  three calls (the single kernels above in turn, the GIL released); ``signal_inputs`` (combine +
  period_inputs) and ``ready_signal`` (pick_period + the smoothing and envelope it sets +
  settle): a counter's signal made ready in two calls around its FFT.
- ``segment_reps``: hysteresis state machine over per-frame thresholds -> (start, peak, end).
- ``valid_reps``, ``refine_reps``, ``add_disjoint``, ``gait_votes``: filters and fixes on the reps.
- ``walking``: frames where the body travels rather than exercising in place.
- ``rep_phases``: eccentric / pause / concentric frame counts and peak speed per rep.
- ``merge_pair``, ``window_extremes``, ``amplitudes``, ``rep_extras``: per-rep measures.
- ``posture_series``, ``pair_mean``, ``percentiles``, ``nan_median``: clip-level posture features.
- ``view_yaw``, ``posed_median``: the camera view.
- ``pairwise_sum``, ``round_half_even``: numpy's ``sum`` and Python's ``round``, to the bit.

The one kernel that is not numpy to the bit is the angle's acos (``_acos_deg``, within 2 ulp
of libm's): libm's is a scalar call that would cost as much as all the rest of the angles.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# asin's rational approximation on [0, 0.25] and pi/2 in two parts (fdlibm, as in musl's acos)
_PIO2_HI, _PIO2_LO = 1.57079632679489655800e00, 6.12323399573676603587e-17
_PS = (1.66666666666666657415e-01, -3.25565818622400915405e-01, 2.01212532134862925881e-01,
       -4.00555345006794114027e-02, 7.91534994289814532176e-04, 3.47933107596021167570e-05)
_QS = (-2.40339491173441421878e00, 2.02094576023350569471e00, -6.88283971605453293030e-01,
       7.70381505559019352791e-02)


@njit(cache=True, inline="always")
def _acos_deg(x: float) -> float:
    """acos(x) in degrees for x in [-1, 1] (NaN stays NaN), within 2 ulp of libm's.

    fdlibm's algorithm without branches (every case computed, one selected), so loops over
    arrays vectorize: libm's acos is a scalar call that costs as much as the rest of the
    angle put together. The head of sqrt((1 - x) / 2) comes from a Veltkamp split rather
    than by clearing bits.
    """
    ax = abs(x)
    big = (1.0 - ax) * 0.5
    small = ax <= 0.5
    z = x * x if small else big
    p = z * (_PS[0] + z * (_PS[1] + z * (_PS[2] + z * (_PS[3] + z * (_PS[4] + z * _PS[5])))))
    q = 1.0 + z * (_QS[0] + z * (_QS[1] + z * (_QS[2] + z * _QS[3])))
    r = p / q
    s = math.sqrt(big)
    t = s * 134217729.0
    head = t - (t - s)
    c = (big - head * head) / (s + head) if s > 0.0 else 0.0  # x = 1: no 0 / 0
    near = _PIO2_HI - (x - (_PIO2_LO - x * r))
    pos = 2.0 * (head + (r * s + c))
    neg = 2.0 * (_PIO2_HI - (s + (r * s - _PIO2_LO)))
    return (near if small else (pos if x > 0.0 else neg)) * (180.0 / math.pi)


@njit(cache=True, nogil=True, error_model="numpy")
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
                out[i, j] = _acos_deg(min(1.0, max(-1.0, dot / den)))
            else:
                out[i, j] = np.nan
    return out


@njit(cache=True, nogil=True)
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


@njit(cache=True, nogil=True)
def smooth(x: np.ndarray, half: int) -> np.ndarray:
    """Centred mean over finite values in [i-half, i+half]; NaN where x[i] is NaN.

    A running sum: frame i + half comes in, then frame i - half - 1 goes out. NaN enters as
    0.0, which leaves the sum unchanged (it is never -0.0), so the loop has no branches.
    """
    n = x.shape[0]
    out = np.empty(n)
    s = 0.0
    c = 0
    for j in range(min(n, half + 1)):
        v = x[j]
        ok = v == v
        s += v if ok else 0.0
        c += ok
    for i in range(n):
        if i > 0:
            j = i + half
            if j < n:
                v = x[j]
                ok = v == v
                s += v if ok else 0.0
                c += ok
            k = i - half - 1
            if k >= 0:
                v = x[k]
                ok = v == v
                s -= v if ok else 0.0
                c -= ok
        v = x[i]
        out[i] = s / c if (v == v and c > 0) else np.nan
    return out


@njit(cache=True, nogil=True)
def envelope(x: np.ndarray, half: int) -> tuple[np.ndarray, np.ndarray]:
    """(min, max) of the finite values of x in [i-half, i+half] per frame; NaN where none.

    van Herk / Gil-Werman: over x padded with half NaN each side, blocks of the window's width
    carry running extremes from their start (prefix) and to their end (suffix); a window
    spans at most two blocks, so its extreme is that of one suffix and one prefix.
    """
    n = x.shape[0]
    w = 2 * half + 1
    size = n + 2 * half
    y = np.full(size, np.nan)
    y[half : half + n] = x
    pre_lo = np.empty(size)
    pre_hi = np.empty(size)
    suf_lo = np.empty(size)
    suf_hi = np.empty(size)
    for start in range(0, size, w):
        end = min(start + w, size)
        lo = hi = np.nan
        for j in range(start, end):
            v = y[j]
            lo = v if ((lo != lo) | (v < lo)) else lo
            hi = v if ((hi != hi) | (v > hi)) else hi
            pre_lo[j], pre_hi[j] = lo, hi
        lo = hi = np.nan
        for j in range(end - 1, start - 1, -1):
            v = y[j]
            lo = v if ((lo != lo) | (v < lo)) else lo
            hi = v if ((hi != hi) | (v > hi)) else hi
            suf_lo[j], suf_hi[j] = lo, hi
    lo_out = np.empty(n)
    hi_out = np.empty(n)
    for i in range(n):
        a, b = suf_lo[i], pre_lo[i + w - 1]
        lo_out[i] = b if ((a != a) | (b < a)) else a
        a, b = suf_hi[i], pre_hi[i + w - 1]
        hi_out[i] = b if ((a != a) | (b > a)) else a
    return lo_out, hi_out


@njit(cache=True, nogil=True)
def rolling_max(x: np.ndarray, half: int) -> np.ndarray:
    """Max of finite values in [i-half, i+half]; NaN if none."""
    return envelope(x, half)[1]


@njit(cache=True, nogil=True)
def rolling_min(x: np.ndarray, half: int) -> np.ndarray:
    """Min of finite values in [i-half, i+half]; NaN if none."""
    return envelope(x, half)[0]


@njit(cache=True, nogil=True)
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


@njit(cache=True, nogil=True)
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


# ------------------------------------------------------------- numpy's arithmetic, exactly


@njit(cache=True, nogil=True)
def _pw_block(x: np.ndarray, lo: int, n: int) -> float:
    # numpy's pairwise_sum leaf (n <= 128): 8 accumulators, combined as a tree, then the tail
    if n < 8:
        res = 0.0
        for i in range(n):
            res += x[lo + i]
        return res
    r0, r1, r2, r3 = x[lo], x[lo + 1], x[lo + 2], x[lo + 3]
    r4, r5, r6, r7 = x[lo + 4], x[lo + 5], x[lo + 6], x[lo + 7]
    i = 8
    end = n - n % 8
    while i < end:
        r0 += x[lo + i]
        r1 += x[lo + i + 1]
        r2 += x[lo + i + 2]
        r3 += x[lo + i + 3]
        r4 += x[lo + i + 4]
        r5 += x[lo + i + 5]
        r6 += x[lo + i + 6]
        r7 += x[lo + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += x[lo + i]
        i += 1
    return res


@njit(cache=True, nogil=True)
def _pw(x: np.ndarray, lo: int, n: int) -> float:
    # numpy's pairwise_sum: split in halves (the left one a multiple of 8) down to leaves of <= 128,
    # summed as left + right at every level. Iterative: cached numba functions cannot recurse.
    if n <= 128:
        return _pw_block(x, lo, n)
    st_lo = np.empty(64, np.int64)
    st_n = np.empty(64, np.int64)
    st_left = np.empty(64)
    st_right = np.zeros(64, np.bool_)  # the left half is summed, the right one is in progress
    top = 0
    st_lo[0], st_n[0], st_right[0] = lo, n, False
    while True:
        m = st_n[top]
        if m > 128:  # descend into the left half
            half = m // 2
            half -= half % 8
            top += 1
            st_lo[top], st_n[top], st_right[top] = st_lo[top - 1], half, False
            continue
        v = _pw_block(x, st_lo[top], m)
        top -= 1
        while top >= 0 and st_right[top]:  # a right half is done: combine with its left
            v = st_left[top] + v
            top -= 1
        if top < 0:
            return v
        st_left[top] = v  # a left half is done: start the right one
        st_right[top] = True
        half = st_n[top] // 2
        half -= half % 8
        top += 1
        st_lo[top], st_n[top], st_right[top] = st_lo[top - 1] + half, st_n[top - 1] - half, False


@njit(cache=True, nogil=True)
def _np_sum(x: np.ndarray, lo: int, n: int) -> float:
    # np.sum of x[lo:lo+n]: pairwise within blocks of numpy's buffer size (8192), blocks added in turn
    res = 0.0
    for start in range(0, n, 8192):
        res += _pw(x, lo + start, min(8192, n - start))
    return res


@njit(cache=True, nogil=True)
def pairwise_sum(x: np.ndarray) -> float:
    """``np.sum`` of a contiguous 1-D float64 array, to the bit: numpy's pairwise summation within
    blocks of its default buffer size (8192 values), the blocks added in turn."""
    return _np_sum(x, 0, x.shape[0])


@njit(cache=True, nogil=True)
def _select(a: np.ndarray, k: int, lo: int, hi: int) -> float:
    """Reorder a[lo:hi+1] so a[k] holds what a sorted copy would (smaller left, larger right); no NaN."""
    while hi > lo:
        mid = (lo + hi) >> 1
        x, y, z = a[lo], a[mid], a[hi]
        pivot = max(min(x, y), min(max(x, y), z))
        i, j = lo, hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            break
    return a[k]


@njit(cache=True, nogil=True)
def _min_from(a: np.ndarray, lo: int, hi: int) -> float:
    m = a[lo]
    for i in range(lo + 1, hi):
        if a[i] < m:
            m = a[i]
    return m


@njit(cache=True, nogil=True)
def _bin_members(buf: np.ndarray, n: int, bins: np.ndarray, target: int, size: int) -> np.ndarray:
    # the size values of buf[:n] in bin target, in a new array (one spare slot: the stores are
    # unconditional, so the test whether a value belongs is not a branch to predict)
    out = np.empty(size + 1, buf.dtype)
    m = 0
    for i in range(n):
        out[min(m, size)] = buf[i]
        m += bins[i] == target
    return out


@njit(cache=True, nogil=True)
def _binning(buf: np.ndarray, n: int) -> tuple[int, float, np.ndarray, np.ndarray]:
    """How to select in buf[:n] (n >= 1, no NaN): (0, -, -, -) by quickselect (short, or infinite values),
    (1, the value, -, -) when all are equal, else (2, min, each value's bin, per-bin counts) with
    n // 8 bins between min and max (the bin of a value never decreases as the value grows)."""
    none = np.zeros(0, np.int32)
    lo, hi = buf[0], buf[0]  # (n >= 1) in buf's precision: float32 medians stay float32
    if n <= 512:
        return 0, lo, none, none.astype(np.int64)
    for i in range(1, n):
        v = buf[i]
        lo = v if v < lo else lo
        hi = v if v > hi else hi
    if lo == hi:
        return 1, lo, none, none.astype(np.int64)
    width = hi - lo
    if not np.isfinite(width):
        return 0, lo, none, none.astype(np.int64)
    nbins = n // 8
    scale = nbins / width
    last = np.int32(nbins - 1)
    bins = np.empty(n, np.int32)  # each value's bin, in a loop of its own (it vectorizes)
    for i in range(n):
        b = np.int32((buf[i] - lo) * scale)
        bins[i] = b if b < last else last
    counts = np.zeros(nbins, np.int64)
    for i in range(n):
        counts[bins[i]] += 1
    return 2, lo, bins, counts


@njit(cache=True, nogil=True)
def _pair(
    buf: np.ndarray, n: int, k: int, mode: int, lo: float, bins: np.ndarray, counts: np.ndarray
) -> tuple[float, float]:
    # _order_pair with the binning of buf[:n] given (see _binning)
    if mode == 0:
        a = _select(buf, k, 0, n - 1)
        return a, (a if k + 1 >= n else _min_from(buf, k + 1, n))
    if mode == 1:
        return lo, lo
    below = 0
    target = 0
    while below + counts[target] <= k:
        below += counts[target]
        target += 1
    rank = k - below
    size = counts[target]
    tmp = _bin_members(buf, n, bins, target, size)
    a = _select(tmp, rank, 0, size - 1)
    if k + 1 >= n:
        return a, a
    if rank + 1 < size:
        return a, _min_from(tmp, rank + 1, size)
    nxt = target + 1  # rank k + 1 is the smallest value of the next bin that has any
    while counts[nxt] == 0:
        nxt += 1
    return a, _min_from(_bin_members(buf, n, bins, nxt, counts[nxt]), 0, counts[nxt])


@njit(cache=True, nogil=True)
def _order_pair(buf: np.ndarray, n: int, k: int) -> tuple[float, float]:
    """The k-th and (k+1)-th smallest of buf[:n] (0-based; both the last when k == n - 1).
    No NaN; reorders buf.

    Long inputs are first counted into bins between their min and max, then only the bin
    holding rank k is selected in (and, when rank k + 1 is the next bin's, that bin's minimum
    taken).
    """
    mode, lo, bins, counts = _binning(buf, n)
    return _pair(buf, n, k, mode, lo, bins, counts)


@njit(cache=True, nogil=True)
def _median(buf: np.ndarray, n: int) -> float:
    """``np.median`` of buf[:n] (no NaN; reorders buf): the middle value or the mean of the two."""
    if n == 0:
        return np.nan
    half = n >> 1
    if n & 1:
        return (0.0 + _order_pair(buf, n, half)[0]) / 1.0
    a, b = _order_pair(buf, n, half - 1)
    return ((0.0 + a) + b) / 2.0


@njit(cache=True, nogil=True)
def _quantile(
    buf: np.ndarray, n: int, q: float, mode: int, lo: float, bins: np.ndarray, counts: np.ndarray
) -> float:
    """``np.percentile(buf[:n], 100 * q)`` (linear; reorders buf), numpy's index and lerp arithmetic;
    buf's binning given (see _binning), so several quantiles share it."""
    virtual = (n - 1) * q
    if virtual >= n - 1:  # numpy takes the last value and keeps -1 as the "previous index"
        prev = n - 1
        gamma = virtual - (-1.0)
    else:
        fl = math.floor(virtual)
        prev = int(fl)
        gamma = virtual - fl
        if virtual < 0:
            prev = 0
    a, b = _pair(buf, n, prev, mode, lo, bins, counts)
    if virtual >= n - 1 or virtual < 0:
        b = a
    diff = b - a
    out = a + diff * gamma
    if gamma >= 0.5:
        out = b - diff * (1 - gamma)
    return out


@njit(cache=True, nogil=True)
def _kept(x: np.ndarray, finite_only: bool) -> tuple[np.ndarray, int]:
    # (buffer holding the non-NaN values of x (finite ones only if finite_only) first, how many)
    buf = np.empty(x.shape[0])
    n = 0
    for v in x:
        if not np.isnan(v) and (not finite_only or np.isfinite(v)):
            buf[n] = v
            n += 1
    return buf, n


@njit(cache=True, nogil=True)
def percentiles(x: np.ndarray, qs: np.ndarray, finite_only: bool) -> tuple[np.ndarray, int]:
    """(``np.nanpercentile(x, 100 * qs)``, how many values it was taken over); with finite_only
    over the finite values only, as ``np.percentile(x[np.isfinite(x)], ...)``. NaN when none."""
    buf, n = _kept(x, finite_only)
    out = np.full(qs.shape[0], np.nan)
    if n:
        mode, lo, bins, counts = _binning(buf, n)
        for i in range(qs.shape[0]):
            out[i] = _quantile(buf, n, qs[i], mode, lo, bins, counts)
    return out, n


@njit(cache=True, nogil=True)
def nan_median(x: np.ndarray, finite_only: bool = False) -> float:
    """``np.nanmedian`` of a 1-D array (or ``np.median`` of its finite values); NaN when none."""
    buf, n = _kept(x, finite_only)
    return _median(buf, n)


@njit(cache=True, nogil=True)
def pair_mean(raw: np.ndarray, jl: int, jr: int) -> np.ndarray:
    """``np.nanmean`` of columns jl and jr of raw (n, m), per frame (NaN where both are NaN)."""
    n = raw.shape[0]
    out = np.empty(n)
    for i in range(n):
        a, b = raw[i, jl], raw[i, jr]
        cnt = (0 if np.isnan(a) else 1) + (0 if np.isnan(b) else 1)
        tot = (0.0 + (0.0 if np.isnan(a) else a)) + (0.0 if np.isnan(b) else b)
        out[i] = tot / cnt if cnt else np.nan
    return out


# --------------------------------------------------------------- per-frame geometry

BLOCK, _STRIDE = 64, 72  # frames per block; buffer row length (its buffers stay in L1/L2)
ANGLES, SCALE, LINES, POSTURE = 1, 2, 4, 8  # what pose_geometry measures (flags)
# The landmarks the features stage reads (shoulders to wrists, hips to ankles, feet) are copied
# with constant bounds, so the copy loops unroll; any other landmark goes through an index list.
_ARM0, _ARM1, _LEG0, _LEG1, _FOOT0, _FOOT1 = 11, 17, 23, 29, 31, 33


@njit(cache=True, nogil=True, error_model="numpy")
def _sqrt_limit(y: float) -> float:
    # the largest x with sqrt(x) <= y (rounded): sqrt(x) > y exactly when x > this
    x = y * y
    while math.sqrt(np.nextafter(x, np.inf)) <= y:
        x = np.nextafter(x, np.inf)
    while math.sqrt(x) > y:
        x = np.nextafter(x, -np.inf)
    return x


@njit(cache=True, nogil=True)
def _others(need: np.ndarray, width: int) -> np.ndarray:
    # the columns (width per item) of the flagged items outside the constant ranges
    out = np.empty(width * need.shape[0], np.int64)
    k = 0
    for i in range(need.shape[0]):
        if need[i] and not (_ARM0 <= i < _ARM1 or _LEG0 <= i < _LEG1 or _FOOT0 <= i < _FOOT1):
            for c in range(width):
                out[k] = width * i + c
                k += 1
    return out[:k]


@njit(cache=True, nogil=True, error_model="numpy")
def _copy_block(
    fw: np.ndarray, fx: np.ndarray, fv: np.ndarray, start: int, size: int, pts: np.ndarray, pix: np.ndarray,
    lv: np.ndarray, ow: np.ndarray, ox: np.ndarray, ov: np.ndarray,
) -> int:
    # frames start..start+size to one row of _STRIDE per coordinate of the flat buffers pts (world),
    # pix (image) and lv (visibility): rows at constant offsets, no row addresses to keep; returns
    # how many frames have a pose in the image (xy of landmark 0 not NaN)
    found = 0
    for f in range(size):
        rw, rx, rv = fw[start + f], fx[start + f], fv[start + f]
        found += not np.isnan(rx[0])
        pts[f] = rw[0]
        for c in range(3 * _ARM0, 3 * _ARM1):
            pts[c * _STRIDE + f] = rw[c]
        for c in range(3 * _LEG0, 3 * _LEG1):
            pts[c * _STRIDE + f] = rw[c]
        for c in range(3 * _FOOT0, 3 * _FOOT1):
            pts[c * _STRIDE + f] = rw[c]
        for c in range(2 * _ARM0, 2 * _ARM1):
            pix[c * _STRIDE + f] = rx[c]
        for c in range(2 * _LEG0, 2 * _LEG1):
            pix[c * _STRIDE + f] = rx[c]
        for c in range(_ARM0, _ARM1):
            lv[c * _STRIDE + f] = rv[c]
        for c in range(_LEG0, _LEG1):
            lv[c * _STRIDE + f] = rv[c]
        for c in range(_FOOT0, _FOOT1):
            lv[c * _STRIDE + f] = rv[c]
        for q in range(ow.shape[0]):
            pts[ow[q] * _STRIDE + f] = rw[ow[q]]
        for q in range(ox.shape[0]):
            pix[ox[q] * _STRIDE + f] = rx[ox[q]]
        for q in range(ov.shape[0]):
            lv[ov[q] * _STRIDE + f] = rv[ov[q]]
    return found


@njit(cache=True, nogil=True, error_model="numpy")
def _block_angles(
    pts: np.ndarray, lv: np.ndarray, cos: np.ndarray, size: int, start: int, triples: np.ndarray,
    vis_rows: np.ndarray, visible: float, raw: np.ndarray, vis: np.ndarray, gated: np.ndarray,
) -> None:
    # pts rows 3 * landmark + coordinate (33..35: the virtual landmarks), lv rows by landmark;
    # raw, vis, gated (m, n): one row per angle; cos: scratch
    for k in range(3):  # as numpy's mean over two: (0 + a + b) / 2
        sa, sb, ha, hb = pts[33 + k], pts[36 + k], pts[69 + k], pts[72 + k]
        mid_s, mid_h, up = pts[99 + k], pts[102 + k], pts[105 + k]
        step = -1.0 if k == 1 else 0.0
        for f in range(size):
            mid_s[f] = ((0.0 + sa[f]) + sb[f]) / 2.0
            mid_h[f] = ((0.0 + ha[f]) + hb[f]) / 2.0
            up[f] = mid_h[f] + step
    for j in range(triples.shape[0]):
        a, b, c = 3 * triples[j, 0], 3 * triples[j, 1], 3 * triples[j, 2]
        ax, ay, az, bx, by, bz = pts[a], pts[a + 1], pts[a + 2], pts[b], pts[b + 1], pts[b + 2]
        cx, cy, cz = pts[c], pts[c + 1], pts[c + 2]
        for f in range(size):
            ux, uy, uz = ax[f] - bx[f], ay[f] - by[f], az[f] - bz[f]
            vx, vy, vz = cx[f] - bx[f], cy[f] - by[f], cz[f] - bz[f]
            dot = ((0.0 + ux * vx) + uy * vy) + uz * vz
            den = math.sqrt((((0.0 + ux * ux) + uy * uy) + uz * uz) * (((0.0 + vx * vx) + vy * vy) + vz * vz))
            cos[f] = min(1.0, max(-1.0, dot / den)) if den > 0.0 else np.nan
        out, low, seen = raw[j, start : start + size], vis[j, start : start + size], gated[j, start : start + size]
        r0, r1, r2, r3 = lv[vis_rows[j, 0]], lv[vis_rows[j, 1]], lv[vis_rows[j, 2]], lv[vis_rows[j, 3]]
        for f in range(size):  # np.minimum over up to 4 landmarks (NaN wins), in registers
            m = r0[f]
            x = r1[f]
            m = x if ((x < m) | (x != x)) else m
            x = r2[f]
            m = x if ((x < m) | (x != x)) else m
            x = r3[f]
            m = x if ((x < m) | (x != x)) else m
            r = _acos_deg(cos[f])
            low[f] = m
            out[f] = r
            seen[f] = r if m >= visible else np.nan


@njit(cache=True, nogil=True, error_model="numpy")
def _block_scale(
    pts: np.ndarray, pix: np.ndarray, size: int, start: int, aspect: float, seg_a: np.ndarray, seg_b: np.ndarray,
    long2: float, best: np.ndarray, ppm: np.ndarray, hip_x: np.ndarray,
) -> None:
    # sqrt of the largest img2 / wld2 over segments with sqrt(wld2) > 0.05 (np.fmax; NaN if none),
    # image x in frame heights (x * aspect). best (2, STRIDE): the running maximum moves between
    # its rows, so no store is conditional (a select stored back where it was loaded becomes a
    # slow masked store).
    best[0, :size] = -1.0
    for q in range(seg_a.shape[0]):
        prev, cur = best[q % 2], best[(q + 1) % 2]
        a, b = seg_a[q], seg_b[q]
        xa, ya, xb, yb = pix[2 * a], pix[2 * a + 1], pix[2 * b], pix[2 * b + 1]
        ax, ay, az, bx, by, bz = pts[3 * a], pts[3 * a + 1], pts[3 * a + 2], pts[3 * b], pts[3 * b + 1], pts[3 * b + 2]
        for f in range(size):
            dx, dy = xa[f] * aspect - xb[f] * aspect, ya[f] - yb[f]
            wx, wy, wz = ax[f] - bx[f], ay[f] - by[f], az[f] - bz[f]
            w2 = (wx * wx + wy * wy) + wz * wz
            v = (dx * dx + dy * dy) / w2  # the ratio squared: one square root per frame, not two per segment
            v = v if ((w2 > long2) & (v == v)) else -1.0  # sqrt(w2) > 0.05; v >= 0, so -1 is "none"
            cur[f] = v if v > prev[f] else prev[f]
    top = best[seg_a.shape[0] % 2]
    x23, x24 = pix[46], pix[48]
    out, mid = ppm[start : start + size], hip_x[start : start + size]
    for f in range(size):
        out[f] = math.sqrt(top[f]) if top[f] >= 0.0 else np.nan
        mid[f] = ((0.0 + x23[f] * aspect) + x24[f] * aspect) / 2.0


@njit(cache=True, nogil=True, error_model="numpy")
def _block_posture(
    pts: np.ndarray, pix: np.ndarray, size: int, start: int, aspect: float, lm: np.ndarray, arm: np.ndarray,
    split: np.ndarray,
) -> int:
    # posture_series of the block's frames, its arithmetic to the bit (from the float64 copies of
    # the landmarks; see there); returns how many have the wrists above the nose
    nose, ls, rs, lw, rw, lh, rh, la, ra = lm[0], lm[1], lm[2], lm[3], lm[4], lm[5], lm[6], lm[7], lm[8]
    xls, yls, xrs, yrs = pix[2 * ls], pix[2 * ls + 1], pix[2 * rs], pix[2 * rs + 1]
    xlh, ylh, xrh, yrh = pix[2 * lh], pix[2 * lh + 1], pix[2 * rh], pix[2 * rh + 1]
    ylw, yrw, ynose = pix[2 * lw + 1], pix[2 * rw + 1], pix[2 * nose + 1]
    out_arm, out_split = arm[start : start + size], split[start : start + size]
    up = 0
    for f in range(size):
        sx = ((0.0 + xls[f] * aspect) + xrs[f] * aspect) / 2.0
        sy = ((0.0 + yls[f]) + yrs[f]) / 2.0
        hx = ((0.0 + xlh[f] * aspect) + xrh[f] * aspect) / 2.0
        hy = ((0.0 + ylh[f]) + yrh[f]) / 2.0
        wy = ((0.0 + ylw[f]) + yrw[f]) / 2.0
        dx, dy = sx - hx, sy - hy
        out_arm[f] = (sy - wy) / math.sqrt(dx * dx + dy * dy)
        up += wy < 0.0 + ynose[f]
    hx_, hy_, hz_ = pts[3 * lh], pts[3 * lh + 1], pts[3 * lh + 2]  # left hip, left ankle, right ankle
    ax_, ay_, az_ = pts[3 * la], pts[3 * la + 1], pts[3 * la + 2]
    bx_, by_, bz_ = pts[3 * ra], pts[3 * ra + 1], pts[3 * ra + 2]
    sx_, sy_, sz_ = pts[3 * ls], pts[3 * ls + 1], pts[3 * ls + 2]  # left, right shoulder
    tx_, ty_, tz_ = pts[3 * rs], pts[3 * rs + 1], pts[3 * rs + 2]
    for f in range(size):
        lx, ly, lz = hx_[f] - ax_[f], hy_[f] - ay_[f], hz_[f] - az_[f]  # left hip - left ankle
        leg = math.sqrt((lx * lx + ly * ly) + lz * lz)
        qx, qy, qz = tx_[f] - sx_[f], ty_[f] - sy_[f], tz_[f] - sz_[f]  # shoulders, right - left
        norm = math.sqrt((qx * qx + qy * qy) + qz * qz)
        ux, uy, uz = qx / norm, qy / norm, qz / norm
        ax, ay, az = bx_[f] - ax_[f], by_[f] - ay_[f], bz_[f] - az_[f]  # ankles, right - left
        lateral = abs((ax * ux + az * uz) + ay * uy)
        rest = ((ax * ax + az * az) + ay * ay) - lateral * lateral
        rest = rest if (rest >= 0.0 or rest != rest) else 0.0  # np.maximum(rest, 0)
        out_split[f] = math.sqrt(rest) / leg
    return up


@njit(cache=True, nogil=True)
def geometry_tables(
    n: int, m: int, what: int, xy: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
           np.ndarray, np.ndarray]:
    """Empty outputs of :func:`pose_geometry_into` for n frames and m angles (the parts ``what``
    leaves out have no frames): raw, vis, gated (m, n) sharing one buffer 1 KiB apart modulo
    4 KiB (never at the same page offset, where a load can wait behind a store to another), ppm,
    hip_x (n,), line_dx, line_dz (2, n), posed (n,), pair_x (n,) in xy's precision, arm, split (n,)."""
    na, ns, nl = n if what & ANGLES else 0, n if what & SCALE else 0, n if what & LINES else 0
    npo = n if what & POSTURE else 0
    span = (m * na + 511) // 512 * 512 + 128  # 4 KiB multiples plus 1 KiB
    buf = np.empty(3 * span)
    raw = buf[: m * na].reshape(m, na)
    vis = buf[span : span + m * na].reshape(m, na)
    gated = buf[2 * span : 2 * span + m * na].reshape(m, na)
    return (raw, vis, gated, np.empty(ns), np.empty(ns), np.empty((2, nl)), np.empty((2, nl)), np.zeros(nl, np.bool_),
            np.empty(nl, xy.dtype), np.empty(npo), np.empty(npo))


@njit(cache=True, nogil=True, error_model="numpy")
def pose_geometry_into(
    world: np.ndarray, xy: np.ndarray, visibility: np.ndarray, aspect: float, what: int,
    triples: np.ndarray, vis_idx: np.ndarray, visible: float, seg_a: np.ndarray, seg_b: np.ndarray,
    lines: np.ndarray, posture_lm: np.ndarray, lo: int, hi: int, raw: np.ndarray, vis: np.ndarray,
    gated: np.ndarray, ppm: np.ndarray, hip_x: np.ndarray, line_dx: np.ndarray, line_dz: np.ndarray,
    posed: np.ndarray, pair_x: np.ndarray, arm: np.ndarray, split: np.ndarray,
) -> tuple[int, int]:
    """:func:`pose_geometry` of frames lo..hi, written into the outputs of :func:`geometry_tables`
    (raw, vis, gated untransposed); returns how many of them have a pose in the image and how
    many the wrists above the nose. Frames are independent, so ranges can be measured at the
    same time (the GIL is released)."""
    m = triples.shape[0]
    do_angles, do_scale, do_lines = (what & ANGLES) > 0, (what & SCALE) > 0, (what & LINES) > 0
    do_posture = (what & POSTURE) > 0
    need_w = np.zeros(36, np.bool_)
    need_xy = np.zeros(33, np.bool_)
    need_v = np.zeros(33, np.bool_)
    vis_rows = np.zeros((m, 4), np.int64)  # up to 4 landmarks; pads repeat the first
    if do_angles:
        for j in range(m):
            for q in range(3):
                need_w[triples[j, q]] = True
            for q in range(4):
                r = vis_idx[j, min(q, vis_idx.shape[1] - 1)]
                vis_rows[j, q] = r if r >= 0 else vis_idx[j, 0]
                need_v[vis_rows[j, q]] = True
        if need_w[33] or need_w[34] or need_w[35]:
            need_w[11] = need_w[12] = need_w[23] = need_w[24] = True
    if do_scale:
        need_xy[23] = need_xy[24] = True
        for q in range(seg_a.shape[0]):
            need_w[seg_a[q]] = need_w[seg_b[q]] = need_xy[seg_a[q]] = need_xy[seg_b[q]] = True
    if do_lines:
        for q in range(4):
            need_w[lines[q]] = True
    if do_posture:
        for q in range(9):
            need_w[posture_lm[q]] = need_xy[posture_lm[q]] = True
    ow, ox, ov = _others(need_w[:33], 3), _others(need_xy, 2), _others(need_v, 1)
    n = world.shape[0]
    fw, fx = world.reshape(n, 99), xy.reshape(n, 66)
    flat_pts, flat_pix, flat_lv = np.zeros(108 * _STRIDE), np.zeros(66 * _STRIDE), np.zeros(33 * _STRIDE)
    pts = flat_pts.reshape(108, _STRIDE)  # row 3 * landmark + coordinate
    pix = flat_pix.reshape(66, _STRIDE)  # row 2 * landmark + coordinate
    lv = flat_lv.reshape(33, _STRIDE)
    cos = np.empty(_STRIDE)
    best = np.empty((2, _STRIDE))
    long2 = _sqrt_limit(0.05)
    found = up = 0
    for start in range(lo, hi, BLOCK):
        size = min(BLOCK, hi - start)
        found += _copy_block(fw, fx, visibility, start, size, flat_pts, flat_pix, flat_lv, ow, ox, ov)
        if do_angles:
            _block_angles(pts, lv, cos, size, start, triples, vis_rows, visible, raw, vis, gated)
        if do_scale:
            _block_scale(pts, pix, size, start, aspect, seg_a, seg_b, long2, best, ppm, hip_x)
        if do_lines:
            for row in range(2):
                a, b = 3 * lines[2 * row], 3 * lines[2 * row + 1]
                xa, xb, za, zb = pts[a], pts[b], pts[a + 2], pts[b + 2]
                dx, dz = line_dx[row, start : start + size], line_dz[row, start : start + size]
                for f in range(size):
                    dx[f] = abs(xb[f] - xa[f])
                    dz[f] = abs(zb[f] - za[f])
            nose = pts[0]
            for f in range(size):
                posed[start + f] = np.isfinite(nose[f])
                pair_x[start + f] = fx[start + f, 2 * lines[0]] - fx[start + f, 2 * lines[1]]
        if do_posture:
            up += _block_posture(pts, pix, size, start, aspect, posture_lm, arm, split)
    return found, up


@njit(cache=True, nogil=True, error_model="numpy")
def pose_geometry(
    world: np.ndarray, xy: np.ndarray, visibility: np.ndarray, aspect: float, what: int,
    triples: np.ndarray, vis_idx: np.ndarray, visible: float, seg_a: np.ndarray, seg_b: np.ndarray,
    lines: np.ndarray, posture_lm: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
           np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Everything the features stage measures per frame, in one pass over the landmarks:
    world (n, 33, 3) metres, xy (n, 33, 2) normalized, visibility (n, 33), all C-contiguous.

    ``what`` (flags ANGLES | SCALE | LINES) picks the parts; the others come back empty.

    - ANGLES: raw (n, m) degrees at the middle of each triple (m, 3) over the 33 landmarks and
      the virtual 33 (shoulder midpoint), 34 (hip midpoint), 35 (one metre above 34); vis (n, m)
      the least visibility of the landmarks vis_idx (m, k) lists (-1 pads; the first 4 count);
      gated (n, m): raw where vis >= visible, else NaN.
    - SCALE: ppm (n,) the largest image length (frame heights, x times aspect) over world length
      of the segments (seg_a[s], seg_b[s]) longer than 5 cm in the world (NaN if none), and
      hip_x (n,) the hip midpoint's x in frame heights.
    - LINES: line_dx, line_dz (2, n) |right - left| in the world of the landmark pairs
      lines[0:2] and lines[2:4]; posed (n,) a pose was found (landmark 0 finite); pair_x (n,)
      x(lines[0]) - x(lines[1]) in the image, in xy's precision.
    - POSTURE: arm, split (n,) and how many frames have the wrists above the nose, as
      :func:`posture_series` of the landmarks posture_lm (9) gives them.
    - always: how many frames have a pose in the image (x of landmark 0 not NaN).

    Blocks of frames are copied to one row per coordinate first, so the loops over frames
    vectorize, and each frame's landmarks are read from memory once for all parts. The (n, m)
    arrays are column-major: an angle's frames are contiguous, as its readers want them.
    """
    n = world.shape[0]
    raw, vis, gated, ppm, hip_x, line_dx, line_dz, posed, pair_x, arm, split = geometry_tables(
        n, triples.shape[0], what, xy)
    found, up = pose_geometry_into(world, xy, visibility, aspect, what, triples, vis_idx, visible, seg_a, seg_b,
                                   lines, posture_lm, 0, n, raw, vis, gated, ppm, hip_x, line_dx, line_dz, posed,
                                   pair_x, arm, split)
    return raw.T, vis.T, gated.T, ppm, hip_x, line_dx, line_dz, posed, pair_x, arm, split, found, up


@njit(cache=True, nogil=True)
def masked_median(a: np.ndarray, v: np.ndarray, min_vis: float) -> float:
    """Median of the finite a[i] with v[i] >= min_vis; NaN when fewer than two."""
    buf = np.empty(a.shape[0])
    n = 0
    for i in range(a.shape[0]):
        if np.isfinite(a[i]) and v[i] >= min_vis:
            buf[n] = a[i]
            n += 1
    return _median(buf, n) if n >= 2 else np.nan


@njit(cache=True, nogil=True, error_model="numpy")
def combine(
    raw: np.ndarray, vis: np.ndarray, cols: np.ndarray, dirs: np.ndarray, weights: np.ndarray,
    meds: np.ndarray, min_vis: float, min_den: float,
) -> np.ndarray:
    """Per frame, sum(w * dir * (a - med)) / sum(w) over components (columns ``cols`` of raw);
    w = weight * visibility where the angle is finite and visibility >= min_vis, else 0.
    Components with a NaN median are left out; NaN where sum(w) < min_den."""
    n = raw.shape[0]
    num = np.zeros(n)
    den = np.zeros(n)
    for c in range(cols.shape[0]):  # per frame, the components are summed in turn
        if np.isnan(meds[c]):
            continue
        a, v = raw[:, cols[c]], vis[:, cols[c]]
        d, wt, med = dirs[c], weights[c], meds[c]
        for i in range(n):
            ok = np.isfinite(a[i]) & (v[i] >= min_vis)
            w = wt * v[i] if ok else 0.0
            num[i] += w * (d * (a[i] - med) if ok else 0.0)
            den[i] += w
    out = np.empty(n)
    for i in range(n):
        out[i] = num[i] / den[i] if den[i] >= min_den else np.nan
    return out


@njit(cache=True, nogil=True)
def centre_finite(x: np.ndarray) -> tuple[np.ndarray, int]:
    """(x minus the mean of its finite values, 0 where not finite; how many are finite)."""
    n = x.shape[0]
    buf = np.empty(n)
    k = 0
    for i in range(n):
        if np.isfinite(x[i]):
            buf[k] = x[i]
            k += 1
    y = np.zeros(n)
    if k:
        mean = _np_sum(buf, 0, k) / k
        for i in range(n):
            if np.isfinite(x[i]):
                y[i] = x[i] - mean
    return y, k


@njit(cache=True, nogil=True)
def lag_counts(x: np.ndarray, lags: int) -> np.ndarray:
    """(lags,) int64: for each lag k, the frames i where x[i] and x[i + k] are both finite.

    Works from whichever is fewer, the missing or the finite frames: O(min(missing, finite) * lags).
    """
    n = x.shape[0]
    fin = np.empty(n, np.bool_)
    m = 0
    for i in range(n):
        fin[i] = np.isfinite(x[i])
        m += fin[i]
    out = np.zeros(lags, np.int64)
    if 2 * m >= n:  # few missing: all pairs minus those touching a missing frame
        miss = np.flatnonzero(~fin)
        before = np.zeros(n + 1, np.int64)  # missing frames in x[:j]
        for i in range(n):
            before[i + 1] = before[i] + (0 if fin[i] else 1)
        for k in range(min(lags, n)):
            both = 0
            for j in miss:
                if j + k < n and not fin[j + k]:
                    both += 1
            out[k] = (n - k) - before[n - k] - (before[n] - before[k]) + both
    else:
        seen = np.flatnonzero(fin)
        for k in range(min(lags, n)):
            c = 0
            for i in seen:
                if i + k < n and fin[i + k]:
                    c += 1
            out[k] = c
    return out


@njit(cache=True, nogil=True)
def pick_period(ac: np.ndarray, cnt: np.ndarray, n: int, lo: int, hi: int) -> tuple[int, float]:
    """The period lag in [lo, hi) from autocorrelation sums ``ac`` and overlap counts ``cnt``
    (lags 0..hi-1) of an n-frame signal: the first clear peak nearly as strong (0.8) as the
    strongest, lags overlapping less than a quarter of the frames count as 0.
    Returns (lag, normalized strength clipped to [0, 1]) or (-1, 0.0)."""
    lim = n * 0.25
    c0 = ac[0] / max(cnt[0], 1) if cnt[0] > lim else 0.0
    if c0 <= 0:
        return -1, 0.0
    size = hi - lo
    seg = np.empty(size)
    for k in range(size):
        lag = lo + k
        seg[k] = (ac[lag] / max(cnt[lag], 1) if cnt[lag] > lim else 0.0) / c0
    top = -np.inf
    for k in range(1, size - 1):
        if seg[k] > seg[k - 1] and seg[k] >= seg[k + 1] and seg[k] > top:
            top = seg[k]
    if top == -np.inf:
        return -1, 0.0
    for k in range(1, size - 1):
        if seg[k] > seg[k - 1] and seg[k] >= seg[k + 1] and seg[k] >= 0.8 * top:
            return lo + k, min(max(seg[k], 0.0), 1.0)
    return -1, 0.0


@njit(cache=True, nogil=True)
def levels(
    e_lo: np.ndarray, e_hi: np.ndarray, lo_frac: float, hi_frac: float, min_span: float
) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) = e_lo + frac * (e_hi - e_lo); NaN where the span is below min_span (or NaN)."""
    n = e_lo.shape[0]
    lo = np.empty(n)
    hi = np.empty(n)
    for i in range(n):
        span = e_hi[i] - e_lo[i]
        if span >= min_span:
            lo[i] = e_lo[i] + lo_frac * span
            hi[i] = e_lo[i] + hi_frac * span
        else:
            lo[i] = np.nan
            hi[i] = np.nan
    return lo, hi


@njit(cache=True, nogil=True)
def period_inputs(
    x: np.ndarray, max_gap: int, half: int, lags: int, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """What the period estimate of a counting signal x needs, in one call: (filled =
    ``fill_gaps(x, max_gap)``, first = ``smooth(filled, half)``, how many frames of first are finite,
    ``lag_counts(first, lags)``); y (at least len(x), zeros past it) receives ``centre_finite(first)``,
    the FFT's input."""
    filled = fill_gaps(x, max_gap)
    first = smooth(filled, half)
    centred, finite = centre_finite(first)
    y[: x.shape[0]] = centred
    return filled, first, finite, lag_counts(first, lags)


@njit(cache=True, nogil=True)
def power(f: np.ndarray) -> np.ndarray:
    """|f|^2 of complex f, as ``f.real**2 + f.imag**2``."""
    out = np.empty(f.shape)
    flat, src = out.reshape(-1), f.reshape(-1)
    for i in range(flat.shape[0]):
        re, im = src[i].real, src[i].imag
        flat[i] = re * re + im * im
    return out


@njit(cache=True, nogil=True)
def settle(
    filled: np.ndarray, first: np.ndarray, half: int, env_half: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(s, e_lo, e_hi): the counting signal s = ``smooth(filled, half)`` (first itself when
    half <= 0) and its ``envelope(s, env_half)``."""
    s = smooth(filled, half) if half > 0 else first
    e_lo, e_hi = envelope(s, env_half)
    return s, e_lo, e_hi


@njit(cache=True, nogil=True)
def count_reps(
    s: np.ndarray, e_lo: np.ndarray, e_hi: np.ndarray, lo_frac: float, hi_frac: float, min_rom: float,
    min_len: int, max_gap: int, walking: np.ndarray, posture: np.ndarray, walk_share: float, posture_deg: float,
    rest_band: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lo, hi, reps): ``levels``, ``segment_reps``, ``valid_reps`` and ``refine_reps`` of the counting
    signal s with envelope (e_lo, e_hi), in one call."""
    lo, hi = levels(e_lo, e_hi, lo_frac, hi_frac, min_rom)
    found = segment_reps(s, lo, hi, min_len, max_gap)
    keep = valid_reps(s, found, min_rom, walking, posture, walk_share, posture_deg)
    return lo, hi, refine_reps(s, found[keep], rest_band)


@njit(cache=True, nogil=True, error_model="numpy")
def signal_inputs(
    raw: np.ndarray, vis: np.ndarray, cols: np.ndarray, dirs: np.ndarray, weights: np.ndarray, meds: np.ndarray,
    min_vis: float, min_den: float, max_gap: int, half: int, lags: int, y: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, np.ndarray]:
    """``combine`` and the ``period_inputs`` of its result in one call: (x, filled, first, finite,
    counts), y receiving the FFT's input."""
    x = combine(raw, vis, cols, dirs, weights, meds, min_vis, min_den)
    filled, first, finite, counts = period_inputs(x, max_gap, half, lags, y)
    return x, filled, first, finite, counts


@njit(cache=True, nogil=True, error_model="numpy")
def ready_signal(
    ac: np.ndarray, counts: np.ndarray, n: int, fps: float, lo: int, hi: int, filled: np.ndarray,
    first: np.ndarray, smooth_lo_s: float, smooth_hi_s: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(s, e_lo, e_hi, period s): a counting signal made ready from its autocorrelation sums ``ac``
    (lags 0..hi-1; empty: no period) in one call: the period (``pick_period``; NaN when none),
    the smoothing it sets (period / 20 within [smooth_lo_s, smooth_hi_s], 0 without a period)
    and the envelope (two periods within [2, 8] s, 4 s without one), ``settle``."""
    period = np.nan
    if ac.shape[0]:
        lag, _ = pick_period(ac, counts, n, lo, hi)
        if lag >= 0:
            period = lag / fps
    if period == period:
        half = max(1, int(round(min(max(period / 20, smooth_lo_s), smooth_hi_s) * fps)))  # as np.clip
        span = 2.0 * period
    else:
        half = 0
        span = 4.0
    s, e_lo, e_hi = settle(filled, first, half, max(2, int(min(max(span, 2.0), 8.0) * fps / 2)))
    return s, e_lo, e_hi, period


# --------------------------------------------------------------------- rep filters


@njit(cache=True, nogil=True)
def _nanmin(x: np.ndarray, lo: int, hi: int) -> float:
    # min of the non-NaN values of x[lo:hi] (slice bounds as Python's); NaN if none
    hi = min(hi, x.shape[0])
    m = np.nan
    for i in range(max(lo, 0), hi):
        if not np.isnan(x[i]) and not x[i] >= m:
            m = x[i]
    return m


@njit(cache=True, nogil=True)
def _rest_window(reps: np.ndarray, r: int, n: int) -> tuple[int, int]:
    # from the previous rep's end (or as far back as the rise took) to the next rep's start
    a, p, b = reps[r, 0], reps[r, 1], reps[r, 2]
    lo = reps[r - 1, 2] if r > 0 else max(0, a - 2 * (p - a))
    hi = reps[r + 1, 0] if r + 1 < reps.shape[0] else min(n - 1, b + 2 * (b - p))
    return min(lo, a), max(hi, b)


@njit(cache=True, nogil=True)
def _small_nanmedian(x: np.ndarray, lo: int, hi: int, buf: np.ndarray) -> tuple[bool, float]:
    # (any finite value in x[lo:hi], np.nanmedian of it) for a slice of at most len(buf) frames
    hi = min(hi, x.shape[0])
    n = 0
    finite = False
    for i in range(lo, hi):
        if not np.isnan(x[i]):
            buf[n] = x[i]
            n += 1
            finite = finite or np.isfinite(x[i])
    return finite, _median(buf, n)


@njit(cache=True, nogil=True)
def valid_reps(
    s: np.ndarray, reps: np.ndarray, min_rom: float, walking: np.ndarray, posture: np.ndarray,
    walk_share: float, posture_deg: float,
) -> np.ndarray:
    """(k,) bool: the rep rises and falls enough from the rest floor of its window (both halves
    0.6 x min_rom, one of them min_rom), is not walking for more than ``walk_share`` of its frames
    and ends in the posture it started from (medians of 4 frames within posture_deg).
    ``walking`` / ``posture`` of length 0 are not checked."""
    n, k = s.shape[0], reps.shape[0]
    keep = np.zeros(k, np.bool_)
    buf = np.empty(4)
    for r in range(k):
        a, p, b = reps[r, 0], reps[r, 1], reps[r, 2]
        w0, w1 = _rest_window(reps, r, n)
        rise = s[p] - _nanmin(s, w0, p + 1)
        fall = s[p] - _nanmin(s, p, w1 + 1)
        low = fall if fall < rise else rise  # Python's min / max of two
        high = fall if fall > rise else rise
        if low < 0.6 * min_rom or high < min_rom:
            continue
        if walking.shape[0]:
            moving = 0
            for i in range(a, b + 1):
                moving += walking[i]
            if moving / (b + 1 - a) > walk_share:
                continue
        if posture.shape[0]:
            ok0, m0 = _small_nanmedian(posture, max(0, a - 3), a + 1, buf)
            ok1, m1 = _small_nanmedian(posture, b, b + 4, buf)
            if ok0 and ok1 and abs(m0 - m1) > posture_deg:
                continue
        keep[r] = True
    return keep


@njit(cache=True, nogil=True)
def refine_reps(s: np.ndarray, reps: np.ndarray, rest_band: float) -> np.ndarray:
    """Move each rep's start back / end on while the signal keeps falling toward its rest floor
    (the window's minimum) and stays more than rest_band x the rep's span above it."""
    out = reps.copy()
    n = s.shape[0]
    for r in range(reps.shape[0]):
        a, p, b = reps[r, 0], reps[r, 1], reps[r, 2]
        prev_end, nxt = _rest_window(reps, r, n)
        floor_a = _nanmin(s, prev_end, a + 1)
        floor_b = _nanmin(s, b, nxt + 1) if nxt >= b else s[b]
        low = floor_b if floor_b < floor_a else floor_a
        tol = rest_band * (s[p] - low)
        j = a
        while j > prev_end and np.isfinite(s[j - 1]) and s[j - 1] <= s[j] + 1e-9 and s[j - 1] > floor_a + tol:
            j -= 1
        out[r, 0] = j
        q = b
        while q < nxt and np.isfinite(s[q + 1]) and s[q + 1] <= s[q] + 1e-9 and s[q + 1] > floor_b + tol:
            q += 1
        out[r, 2] = q
    return out


@njit(cache=True, nogil=True)
def _in_order(rows: np.ndarray) -> bool:
    # every row non-empty (start < end) and ending at or before the next one starts
    for r in range(rows.shape[0]):
        if rows[r, 0] >= rows[r, 2] or (r > 0 and rows[r - 1, 2] > rows[r, 0]):
            return False
    return True


@njit(cache=True, nogil=True)
def add_disjoint(reps: np.ndarray, extra: np.ndarray) -> np.ndarray:
    """reps followed by each row of extra that overlaps none of the rows kept so far
    (rows (start, peak, end); touching is not overlapping).

    Counted reps come in time order without overlaps (both sets): then no row of extra can
    overlap another, and one sweep over reps finds each one's only candidate. Otherwise every
    pair is checked.
    """
    out = np.empty((reps.shape[0] + extra.shape[0], 3), np.int64)
    m = reps.shape[0]
    out[:m] = reps
    if _in_order(reps) and _in_order(extra):
        p = 0
        for e in range(extra.shape[0]):
            a, b = extra[e, 0], extra[e, 2]
            while p < reps.shape[0] and reps[p, 2] <= a:  # ends at or before a: overlaps no later row
                p += 1
            if p == reps.shape[0] or not min(reps[p, 2], b) > max(reps[p, 0], a):
                out[m] = extra[e]
                m += 1
        return out[:m].copy()
    for e in range(extra.shape[0]):
        a, b = extra[e, 0], extra[e, 2]
        free = True
        for q in range(m):
            if min(out[q, 2], b) > max(out[q, 0], a):
                free = False
                break
        if free:
            out[m] = extra[e]
            m += 1
    return out[:m].copy()


@njit(cache=True, nogil=True)
def gait_votes(
    raw: np.ndarray, vis: np.ndarray, reps: np.ndarray, jl: int, jr: int, visible: float, min_seen: float
) -> np.ndarray:
    """Per rep (int8): 1 where angles jl and jr (both seen in min_seen of the frames) move in
    anti-phase (negative correlation), 0 where not, 2 where too close to call in float
    arithmetic (a side constant, or a covariance within 1e-9 of its magnitude)."""
    k = reps.shape[0]
    out = np.zeros(k, np.int8)
    for r in range(k):
        a, b = reps[r, 0], reps[r, 2] + 1
        seen = 0
        for i in range(a, b):
            seen += vis[i, jl] >= visible and vis[i, jr] >= visible
        if not seen / (b - a) >= min_seen:
            continue
        cnt = 0
        sa = 0.0
        sb = 0.0
        lo_a, hi_a, lo_b, hi_b = np.inf, -np.inf, np.inf, -np.inf
        for i in range(a, b):
            x, y = raw[i, jl], raw[i, jr]
            if np.isfinite(x) and np.isfinite(y):
                cnt += 1
                sa += x
                sb += y
                lo_a, hi_a = min(lo_a, x), max(hi_a, x)
                lo_b, hi_b = min(lo_b, y), max(hi_b, y)
        if cnt < 5:
            continue
        if lo_a == hi_a or lo_b == hi_b:
            out[r] = 2
            continue
        ma, mb = sa / cnt, sb / cnt
        cov = 0.0
        mag = 0.0
        for i in range(a, b):
            x, y = raw[i, jl], raw[i, jr]
            if np.isfinite(x) and np.isfinite(y):
                cov += (x - ma) * (y - mb)
                mag += abs((x - ma) * (y - mb))
        if abs(cov) <= 1e-9 * mag:
            out[r] = 2
        elif cov < 0.0:
            out[r] = 1
    return out


# ---------------------------------------------------------------------- per-rep measures


@njit(cache=True, nogil=True, error_model="numpy")
def merge_pair(values: np.ndarray, vis: np.ndarray, jl: int, jr: int) -> np.ndarray:
    """Columns jl and jr of values (n, m) averaged per frame with vis (n, m) as weights over the
    finite ones; NaN where neither is finite or their weights sum to <= 0."""
    n = values.shape[0]
    out = np.empty(n)
    for i in range(n):
        a, b = values[i, jl], values[i, jr]
        fa, fb = np.isfinite(a), np.isfinite(b)
        wa = vis[i, jl] if fa else 0.0
        wb = vis[i, jr] if fb else 0.0
        den = (0.0 + wa) + wb
        num = (0.0 + (a if fa else 0.0) * wa) + (b if fb else 0.0) * wb
        out[i] = num / den if den > 0 else np.nan
    return out


@njit(cache=True, nogil=True)
def window_extremes(series: np.ndarray, reps: np.ndarray) -> np.ndarray:
    """(k, q, 2): min and max of the finite values of each series (q, n) over each rep's frames
    start..end; NaN where there are none."""
    k, q = reps.shape[0], series.shape[0]
    out = np.full((k, q, 2), np.nan)
    for r in range(k):
        for j in range(q):
            lo, hi = np.inf, -np.inf
            for i in range(reps[r, 0], min(reps[r, 2] + 1, series.shape[1])):
                v = series[j, i]
                if np.isfinite(v):
                    lo = min(lo, v)
                    hi = max(hi, v)
            if hi >= lo:
                out[r, j, 0] = lo
                out[r, j, 1] = hi
    return out


@njit(cache=True, nogil=True)
def amplitudes(signal: np.ndarray, reps: np.ndarray) -> np.ndarray:
    """(k,) signal at each rep's turning point minus its lowest (non-NaN) value over the rep."""
    out = np.empty(reps.shape[0])
    for r in range(reps.shape[0]):
        out[r] = signal[reps[r, 1]] - _nanmin(signal, reps[r, 0], reps[r, 2] + 1)
    return out


@njit(cache=True, nogil=True)
def rep_extras(
    signal: np.ndarray, vis: np.ndarray, vis_cols: np.ndarray, left: np.ndarray, right: np.ndarray,
    reps: np.ndarray, full_amp: float,
) -> np.ndarray:
    """Per rep (k, 3): amplitude of the combined signal (turn minus the rep's lowest value),
    confidence (mean visibility of the best seen ``vis_cols`` column, scaled down for amplitudes
    under full_amp) and left/right asymmetry (mean |left - right| where both are finite, NaN
    unless that is half the rep or more; left/right of length 0: NaN)."""
    k = reps.shape[0]
    out = np.full((k, 3), np.nan)
    longest = 0
    for r in range(k):
        longest = max(longest, reps[r, 2] + 1 - reps[r, 0])
    buf = np.empty(longest)
    amps = amplitudes(signal, reps)
    for r in range(k):
        a, b = reps[r, 0], reps[r, 2]
        size = b + 1 - a
        amp = amps[r]
        for i in range(a, b + 1):
            best = vis[i, vis_cols[0]]
            for c in range(1, vis_cols.shape[0]):
                v = vis[i, vis_cols[c]]
                if v > best or np.isnan(v):
                    best = v
            buf[i - a] = best
        mean = _np_sum(buf, 0, size) / size
        mean = min(max(mean, 0.0), 1.0) if not np.isnan(mean) else mean
        scale = amp / full_amp
        out[r, 0] = amp
        out[r, 1] = mean * (scale if scale < 1.0 else 1.0)
        if left.shape[0]:
            finite = 0
            for i in range(a, b + 1):
                d = abs(left[i] - right[i])
                if np.isfinite(d):
                    finite += 1
                    buf[i - a] = d
                else:
                    buf[i - a] = 0.0
            if not finite / size < 0.5:
                out[r, 2] = _np_sum(buf, 0, size) / finite
    return out


# ------------------------------------------------------------------- posture


@njit(cache=True, nogil=True, error_model="numpy")
def posture_series(
    xy: np.ndarray, world: np.ndarray, aspect: float, lm: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    """Per frame, from the landmarks lm = (nose, l/r shoulder, l/r wrist, l/r hip, l/r ankle):
    arm height (shoulder midpoint y minus wrist midpoint y, over the image torso length, x in
    frame heights); the ankles' split (their separation in the world, across the shoulder line
    removed, over the left leg's length); and how many frames have the wrists above the nose.

    numpy's arithmetic, as ``classify`` wrote it: means of two as (0 + a + b) / 2, norms as
    sqrt of x*x + y*y (+ z*z), and einsum's order for the row dot products ((x + z) + y).
    """
    n = xy.shape[0]
    nose, ls, rs, lw, rw, lh, rh = lm[0], lm[1], lm[2], lm[3], lm[4], lm[5], lm[6]
    arm = np.empty(n)
    split = np.empty(n)
    up = 0
    w = np.empty((9, 3))  # float64 copies: numba's float() keeps float32 as float32
    for i in range(n):
        for k in range(9):
            for c in range(3):
                w[k, c] = world[i, lm[k], c]
        sx = ((0.0 + float(xy[i, ls, 0]) * aspect) + float(xy[i, rs, 0]) * aspect) / 2.0
        sy = ((0.0 + float(xy[i, ls, 1])) + float(xy[i, rs, 1])) / 2.0
        hx = ((0.0 + float(xy[i, lh, 0]) * aspect) + float(xy[i, rh, 0]) * aspect) / 2.0
        hy = ((0.0 + float(xy[i, lh, 1])) + float(xy[i, rh, 1])) / 2.0
        wy = ((0.0 + float(xy[i, lw, 1])) + float(xy[i, rw, 1])) / 2.0
        dx, dy = sx - hx, sy - hy
        arm[i] = (sy - wy) / math.sqrt(dx * dx + dy * dy)
        up += wy < 0.0 + xy[i, nose, 1]
        lx, ly, lz = w[5, 0] - w[7, 0], w[5, 1] - w[7, 1], w[5, 2] - w[7, 2]  # left hip - left ankle
        leg = math.sqrt((lx * lx + ly * ly) + lz * lz)
        qx, qy, qz = w[2, 0] - w[1, 0], w[2, 1] - w[1, 1], w[2, 2] - w[1, 2]  # shoulders, right - left
        norm = math.sqrt((qx * qx + qy * qy) + qz * qz)
        ux, uy, uz = qx / norm, qy / norm, qz / norm
        ax, ay, az = w[8, 0] - w[7, 0], w[8, 1] - w[7, 1], w[8, 2] - w[7, 2]  # ankles, right - left
        lateral = abs((ax * ux + az * uz) + ay * uy)
        rest = ((ax * ax + az * az) + ay * ay) - lateral * lateral
        rest = rest if (rest >= 0.0 or rest != rest) else 0.0  # np.maximum(rest, 0)
        split[i] = math.sqrt(rest) / leg
    return arm, split, up


# ------------------------------------------------------------------ walking, view


@njit(cache=True, nogil=True, error_model="numpy")
def walking(
    ppm: np.ndarray, hip_x: np.ndarray, half: int, walk_m: float, walk_log_scale: float
) -> np.ndarray:
    """(n,) bool: over frames i-half..i+half the hips travel more than walk_m metres sideways or
    the log of the apparent size changes by more than walk_log_scale. ppm: image units per metre,
    hip_x: hip midpoint x in the same image units (see :func:`pose_geometry`); metres come from
    ppm's clip median."""
    n = ppm.shape[0]
    out = np.zeros(n, np.bool_)
    if not np.isfinite(ppm).any():
        return out
    med = nan_median(ppm)
    x_m = np.empty(n)
    logs = np.empty(n)
    for i in range(n):
        x_m[i] = hip_x[i] / med
        logs[i] = math.log(ppm[i]) if ppm[i] > 0 else (-np.inf if ppm[i] == 0 else np.nan)
    x_m = fill_gaps(x_m, 2 * half)
    logs = smooth(fill_gaps(logs, 2 * half), max(1, half // 2))
    for i in range(n):
        a, b = min(max(i - half, 0), n - 1), min(max(i + half, 0), n - 1)
        out[i] = abs(x_m[b] - x_m[a]) > walk_m or abs(logs[b] - logs[a]) > walk_log_scale
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def view_yaw(line_dx: np.ndarray, line_dz: np.ndarray, posed: np.ndarray) -> float:
    """Median over posed frames and both lines (rows) of atan2(dz, dx) in degrees; NaN when
    there are none or a line is NaN.

    atan2 is taken only where the median can be: the order of dz / dx is that of the angles
    except within rounding, so values clearly below or above the middle ones are counted, not
    converted (all are converted when the middle ratios are extreme).
    """
    n = posed.shape[0]
    dxs = np.empty(2 * n)
    dzs = np.empty(2 * n)
    key = np.empty(2 * n)
    k = 0
    nan = False
    for row in range(2):
        for i in range(n):
            if posed[i]:
                dx, dz = line_dx[row, i], line_dz[row, i]
                nan = nan or np.isnan(dx) or np.isnan(dz)
                dxs[k], dzs[k] = dx, dz
                key[k] = dz / dx if dx > 0 else (np.inf if dz > 0 else 0.0)
                k += 1
    if k == 0 or nan:
        return np.nan
    half = k >> 1
    r0 = half if k & 1 else half - 1
    lo_key, hi_key = _order_pair(key.copy(), k, r0)
    if k & 1:
        hi_key = lo_key
    if hi_key < 1e8:
        lo_band, hi_band = lo_key * (1 - 1e-6), hi_key * (1 + 1e-6)
    else:  # extreme ratios: angles within rounding of 90 degrees; convert all
        lo_band, hi_band = -1.0, np.inf
    pick = np.empty(k, np.int64)
    m = 0
    below = 0
    for q in range(k):  # without branches: which side of the band a value falls is a coin toss
        below += key[q] < lo_band
        pick[m] = q
        m += (key[q] >= lo_band) & (key[q] <= hi_band)
    vals = np.empty(m)
    for j in range(m):
        vals[j] = math.atan2(dzs[pick[j]], dxs[pick[j]]) * (180.0 / math.pi)
    a, b = _order_pair(vals, m, r0 - below)
    if k & 1:
        return (0.0 + a) / 1.0
    return ((0.0 + a) + b) / 2.0


@njit(cache=True, nogil=True)
def posed_median(x: np.ndarray, posed: np.ndarray) -> float:
    """np.median of x over the posed frames, in x's precision (NaN when none)."""
    buf = np.empty(x.shape[0] + 1, x.dtype)  # float32 stays float32, as numpy's median of float32 does
    k = 0
    for i in range(x.shape[0]):
        buf[k] = x[i]
        k += posed[i]
    if k == 0:
        return np.nan
    half = k >> 1
    if k & 1:
        return float(_order_pair(buf, k, half)[0])
    a, b = _order_pair(buf, k, half - 1)
    return float(a + b) / 2.0  # halving is exact: the same value as numpy's float32 mean


# ------------------------------------------------------------------------------- JSON


@njit(cache=True, nogil=True)
def round_half_even(x: np.ndarray, digits: int) -> np.ndarray:
    """Python's ``round(v, digits)`` of each value (0 <= digits <= 15): the double nearest the
    decimal that the exact binary value rounds to, ties to even. NaN where v is not finite,
    inf where |v| >= 1e15 (left to Python).

    v * 10**digits is split into a double and its exact error (Dekker's product), the integer
    nearest their sum taken with ties to even, and divided back (IEEE division rounds to nearest).
    """
    p = 10.0**digits
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        v = x[i]
        if not np.isfinite(v):
            out[i] = np.nan
            continue
        if abs(v) >= 1e15:
            out[i] = np.inf
            continue
        hi = v * p
        t = 134217729.0 * v
        vh = t - (t - v)
        lo = (vh * p - hi) + (v - vh) * p
        r = np.rint(hi)
        d = hi - r
        if d == 0.5 and lo > 0.0:
            r += 1.0
        elif d == -0.5 and lo < 0.0:
            r -= 1.0
        out[i] = r / p
    return out
