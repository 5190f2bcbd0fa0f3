"""Plain numpy reference twins of the numba kernels in :mod:`pipeline.kernels`.

Each function here has the same name, signature and semantics as its kernel,
but is written for clarity rather than speed: whole-array numpy where that is
natural, a short Python loop where the algorithm is inherently sequential.
Tests in ``tests/test_kernels.py`` and ``tests/test_kernels_features.py`` assert that
kernel and twin agree on random inputs, NaN runs, zero length, one frame, all-NaN
and constant signals. Most twins of the features-stage kernels are the numpy code
the pipeline ran before the kernels existed, so agreeing with them to the bit is
agreeing with the old answers.

Nothing in the pipeline imports this module; it exists to pin down what the
kernels are supposed to compute.

- ``joint_angles``: einsum dot products and arccos, NaN for degenerate triples.
- ``fill_gaps``: previous/next finite index per frame, interpolate short interior runs.
- ``smooth``: windowed sums from cumulative sums over the finite values.
- ``rolling_max`` / ``rolling_min`` / ``envelope``: ``sliding_window_view`` over a NaN-padded copy.
- ``segment_reps``: the rest -> turn -> rest state machine as a readable loop.
- ``rep_phases``: per-rep slices; pause found as the run of frames near the turn.
- the features-stage kernels (angles and per-frame geometry, the counting signal, rep
  filters, per-rep measures, view, rounding): the numpy code they replaced.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

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


def envelope(x: Floats, half: int) -> tuple[Floats, Floats]:
    """(min, max) of the finite values of x in [i-half, i+half] per frame; NaN where none."""
    return rolling_min(x, half), rolling_max(x, half)


# ------------------------------------------------------------- numpy's arithmetic


def pairwise_sum(x: Floats) -> float:
    """``np.sum`` of a contiguous 1-D float64 array."""
    return float(np.sum(x))


def percentiles(x: Floats, qs: Floats, finite_only: bool) -> tuple[Floats, int]:
    """(np.nanpercentile(x, 100 * qs) or np.percentile over the finite values, how many values)."""
    kept = x[np.isfinite(x)] if finite_only else x[~np.isnan(x)]
    if kept.size == 0:
        return np.full(qs.shape[0], np.nan), 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # inf - inf between infinite neighbours
        return np.array([np.quantile(kept, q) for q in qs]), int(kept.size)


def nan_median(x: Floats, finite_only: bool = False) -> float:
    """``np.nanmedian`` of a 1-D array (or ``np.median`` of its finite values); NaN when none."""
    kept = x[np.isfinite(x)] if finite_only else x[~np.isnan(x)]
    return float(np.median(kept)) if kept.size else float("nan")


def pair_mean(raw: Floats, jl: int, jr: int) -> Floats:
    """``np.nanmean`` of columns jl and jr of raw (n, m), per frame (NaN where both are NaN)."""
    if raw.shape[0] == 0:
        return np.zeros(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out: Floats = np.nanmean(np.vstack([raw[:, jl], raw[:, jr]]), axis=0)
    return out


# --------------------------------------------------------- per-frame geometry


def _extend(points: Floats) -> Floats:
    """(n, 33, 3) -> (n, 36, 3) with the shoulder and hip midpoints and a point 1 m above the hips."""
    mid_s = points[:, [11, 12]].mean(axis=1)
    mid_h = points[:, [23, 24]].mean(axis=1)
    up = np.array([0.0, -1.0, 0.0])
    return np.concatenate([points, mid_s[:, None], mid_h[:, None], (mid_h + up)[:, None]], axis=1)


def _scale(xy: NDArray[np.floating], world: NDArray[np.floating], aspect: float, seg_a: Ints, seg_b: Ints) -> Floats:
    """Frame heights per metre of the least foreshortened segment longer than 5 cm (NaN if none)."""
    u = xy.astype(np.float64)
    u[..., 0] *= aspect
    d = u[:, seg_a] - u[:, seg_b]
    w = world[:, seg_a].astype(np.float64) - world[:, seg_b]
    img2 = d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1]
    wld2 = (w[..., 0] * w[..., 0] + w[..., 1] * w[..., 1]) + w[..., 2] * w[..., 2]
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        # the largest ratio of squares, then its root: sqrt(img2 / wld2), not sqrt(img2) / sqrt(wld2)
        out: Floats = np.sqrt(np.nanmax(np.where(np.sqrt(wld2) > 0.05, img2 / wld2, np.nan), axis=1))
    return out


def _angles_in_order(pts: Floats, triples: Ints) -> Floats:
    """:func:`joint_angles` with the sums taken x, y, z in turn (as the kernels do) and libm's acos."""
    u = pts[:, triples[:, 0]] - pts[:, triples[:, 1]]
    v = pts[:, triples[:, 2]] - pts[:, triples[:, 1]]
    dot = ((0.0 + u[..., 0] * v[..., 0]) + u[..., 1] * v[..., 1]) + u[..., 2] * v[..., 2]
    na = ((0.0 + u[..., 0] * u[..., 0]) + u[..., 1] * u[..., 1]) + u[..., 2] * u[..., 2]
    nc = ((0.0 + v[..., 0] * v[..., 0]) + v[..., 1] * v[..., 1]) + v[..., 2] * v[..., 2]
    den = np.sqrt(na * nc)
    ok = den > 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.clip(dot / den, -1.0, 1.0)
    return np.where(ok, np.degrees(np.arccos(np.where(ok, cos, 0.0))), np.nan)


def pose_geometry(
    world: NDArray[np.floating], xy: NDArray[np.floating], visibility: NDArray[np.floating], aspect: float,
    what: int, triples: Ints, vis_idx: Ints, visible: float, seg_a: Ints, seg_b: Ints, lines: Ints,
    posture_lm: Ints,
) -> tuple[Any, ...]:
    """raw, vis, gated, ppm, hip_x, line_dx, line_dz, posed, pair_x, arm, split, frames with a pose
    in the image, frames with the wrists above the nose (see the kernel); ``what`` flags 1 angles,
    2 scale, 4 lines, 8 posture."""
    n, m = world.shape[0], triples.shape[0]
    raw = vis = gated = np.empty((0, m))
    ppm = hip_x = np.empty(0)
    line_dx = line_dz = np.empty((2, 0))
    posed, pair_x = np.zeros(0, bool), np.empty(0, xy.dtype)
    if what & 1:
        raw = _angles_in_order(_extend(world.astype(np.float64)), triples)
        cols = [[int(i) for i in row if i >= 0] for row in vis_idx]
        vis = np.stack([visibility[:, c].min(axis=1) for c in cols], axis=1).astype(np.float64) if n else raw.copy()
        gated = np.where(vis >= visible, raw, np.nan)
    if what & 2:
        ppm = _scale(xy, world, aspect, seg_a, seg_b) if n else np.empty(0)
        hip_x = (xy[:, [23, 24], 0].astype(np.float64) * aspect).mean(axis=1)
    if what & 4:
        w = world.astype(np.float64)
        line_dx = np.abs(np.stack([w[:, lines[1], 0] - w[:, lines[0], 0], w[:, lines[3], 0] - w[:, lines[2], 0]]))
        line_dz = np.abs(np.stack([w[:, lines[1], 2] - w[:, lines[0], 2], w[:, lines[3], 2] - w[:, lines[2], 2]]))
        posed = np.isfinite(w[:, 0, 0])
        pair_x = xy[:, lines[0], 0] - xy[:, lines[1], 0]
    arm, split, up = np.empty(0), np.empty(0), 0
    if what & 8:
        arm, split, up = posture_series(xy, world, aspect, posture_lm)
    found = int((~np.isnan(xy[:, 0, 0])).sum())
    return raw, vis, gated, ppm, hip_x, line_dx, line_dz, posed, pair_x, arm, split, found, up


def walking(ppm: Floats, hip_x: Floats, half: int, walk_m: float, walk_log_scale: float) -> NDArray[np.bool_]:
    """(n,) bool: over frames i-half..i+half the hips travel more than walk_m metres sideways or
    the log of the apparent size changes by more than walk_log_scale."""
    n = ppm.shape[0]
    if not np.isfinite(ppm).any():
        return np.zeros(n, bool)
    with np.errstate(divide="ignore", invalid="ignore"):  # log(0), inf - inf in the running sums
        x_m = fill_gaps(hip_x / np.nanmedian(ppm), 2 * half)
        logs = smooth(fill_gaps(np.log(ppm), 2 * half), max(1, half // 2))
    idx = np.arange(n)
    a, b = np.clip(idx - half, 0, n - 1), np.clip(idx + half, 0, n - 1)
    with np.errstate(invalid="ignore"):
        travel = np.abs(x_m[b] - x_m[a])
        zoom = np.abs(logs[b] - logs[a])
    out: NDArray[np.bool_] = (np.nan_to_num(travel) > walk_m) | (np.nan_to_num(zoom) > walk_log_scale)
    return out


def view_yaw(line_dx: Floats, line_dz: Floats, posed: NDArray[np.bool_]) -> float:
    """Median over posed frames and both lines of atan2(dz, dx) in degrees (NaN when none)."""
    if not posed.any():
        return float("nan")
    return float(np.median(np.degrees(np.arctan2(line_dz[:, posed].ravel(), line_dx[:, posed].ravel()))))


def posed_median(x: NDArray[np.floating], posed: NDArray[np.bool_]) -> float:
    """np.median of x over the posed frames, in x's precision (NaN when none)."""
    return float(np.median(x[posed])) if posed.any() else float("nan")


def posture_series(
    xy: NDArray[np.floating], world: NDArray[np.floating], aspect: float, lm: Ints
) -> tuple[Floats, Floats, int]:
    """Arm height, the ankles' split and the count of frames with the wrists above the nose
    (see the kernel), as ``classify`` computed them with numpy."""
    nose, ls, rs, lw, rw, lh, rh, la, ra = (int(i) for i in lm)
    u = xy.astype(np.float64)
    u[..., 0] *= aspect
    w = world.astype(np.float64)
    torso = np.linalg.norm(u[:, [ls, rs]].mean(1) - u[:, [lh, rh]].mean(1), axis=1)
    sh_y = u[:, [ls, rs], 1].mean(1)
    wr_y = u[:, [lw, rw], 1].mean(1)
    leg = np.linalg.norm(w[:, lh] - w[:, la], axis=1)
    shoulder_dir = w[:, rs] - w[:, ls]
    ankles = w[:, ra] - w[:, la]
    with np.errstate(invalid="ignore", divide="ignore"):
        sd = shoulder_dir / np.linalg.norm(shoulder_dir, axis=1, keepdims=True)
        lateral = np.abs(np.einsum("ij,ij->i", ankles, sd))
        split = np.sqrt(np.maximum(np.einsum("ij,ij->i", ankles, ankles) - lateral**2, 0)) / leg
        arm_height = (sh_y - wr_y) / torso
    return arm_height, split, int(np.sum(wr_y < u[:, nose, 1]))


# ------------------------------------------------------------ the counting signal


def masked_median(a: Floats, v: Floats, min_vis: float) -> float:
    """Median of the finite a[i] with v[i] >= min_vis; NaN when fewer than two."""
    ok = np.isfinite(a) & (v >= min_vis)
    return float(np.median(a[ok])) if ok.sum() >= 2 else float("nan")


def combine(
    raw: Floats, vis: Floats, cols: Ints, dirs: Floats, weights: Floats, meds: Floats, min_vis: float,
    min_den: float,
) -> Floats:
    """Per frame sum(w * dir * (a - med)) / sum(w) over the components; w = weight * visibility where
    the angle is finite and visibility >= min_vis; NaN median: left out; NaN where sum(w) < min_den."""
    n = raw.shape[0]
    num = np.zeros(n)
    den = np.zeros(n)
    for j, d, wt, med in zip(cols, dirs, weights, meds, strict=True):
        if np.isnan(med):
            continue
        a, v = raw[:, j], vis[:, j]
        ok = np.isfinite(a) & (v >= min_vis)
        w = np.where(ok, wt * v, 0.0)
        num += w * np.where(ok, d * (a - med), 0.0)
        den += w
    out = np.full(n, np.nan)
    good = den >= min_den
    out[good] = num[good] / den[good]
    return out


def centre_finite(x: Floats) -> tuple[Floats, int]:
    """(x minus the mean of its finite values, 0 where not finite; how many are finite)."""
    y = x.copy()
    ok = np.isfinite(y)
    if ok.any():
        y[ok] -= y[ok].mean()
    y[~ok] = 0.0
    return y, int(ok.sum())


def lag_counts(x: Floats, lags: int) -> Ints:
    """(lags,) int64: for each lag k, the frames i where x[i] and x[i + k] are both finite."""
    ok = np.isfinite(x).astype(np.int64)
    n = ok.shape[0]
    return np.array([int(ok[: n - k] @ ok[k:]) if k < n else 0 for k in range(lags)], np.int64)


def pick_period(ac: Floats, cnt: Ints, n: int, lo: int, hi: int) -> tuple[int, float]:
    """The period lag in [lo, hi) from autocorrelation sums and overlap counts (lags 0..hi-1), or
    (-1, 0.0): the first clear peak nearly as strong (0.8) as the strongest."""
    norm = np.where(cnt > n * 0.25, ac[: len(cnt)] / np.maximum(cnt, 1), 0.0)
    if norm[0] <= 0:
        return -1, 0.0
    norm = norm / norm[0]
    seg = norm[lo:hi]
    peaks = np.flatnonzero((seg[1:-1] > seg[:-2]) & (seg[1:-1] >= seg[2:])) + 1
    if len(peaks) == 0:
        return -1, 0.0
    best = int(peaks[seg[peaks] >= 0.8 * seg[peaks].max()][0])
    return lo + best, float(np.clip(seg[best], 0.0, 1.0))


def levels(e_lo: Floats, e_hi: Floats, lo_frac: float, hi_frac: float, min_span: float) -> tuple[Floats, Floats]:
    """(lo, hi) = e_lo + frac * (e_hi - e_lo); NaN where the span is below min_span (or NaN)."""
    span = e_hi - e_lo
    lo = e_lo + lo_frac * span
    hi = e_lo + hi_frac * span
    flat = ~(span >= min_span)
    lo[flat] = np.nan
    hi[flat] = np.nan
    return lo, hi


def period_inputs(x: Floats, max_gap: int, half: int, lags: int, y: Floats) -> tuple[Floats, Floats, int, Ints]:
    """(filled, first, finite frames of first, lag counts of first); y receives first centred."""
    filled = fill_gaps(x, max_gap)
    first = smooth(filled, half)
    centred, finite = centre_finite(first)
    y[: len(x)] = centred
    return filled, first, finite, lag_counts(first, lags)


def power(f: NDArray[np.complex128]) -> Floats:
    """|f|^2 as numpy writes it."""
    out: Floats = f.real**2 + f.imag**2
    return out


def settle(filled: Floats, first: Floats, half: int, env_half: int) -> tuple[Floats, Floats, Floats]:
    """(s, envelope of s): s = smooth(filled, half), or first when half <= 0."""
    s = smooth(filled, half) if half > 0 else first
    return (s, *envelope(s, env_half))


def count_reps(
    s: Floats, e_lo: Floats, e_hi: Floats, lo_frac: float, hi_frac: float, min_rom: float, min_len: int,
    max_gap: int, walking: NDArray[np.bool_], posture: Floats, walk_share: float, posture_deg: float, rest_band: float,
) -> tuple[Floats, Floats, Ints]:
    """(lo, hi, reps): levels, segment_reps, valid_reps, refine_reps in turn."""
    lo, hi = levels(e_lo, e_hi, lo_frac, hi_frac, min_rom)
    found = segment_reps(s, lo, hi, min_len, max_gap)
    keep = valid_reps(s, found, min_rom, walking, posture, walk_share, posture_deg)
    return lo, hi, refine_reps(s, found[keep], rest_band)


def signal_inputs(
    raw: Floats, vis: Floats, cols: Ints, dirs: Floats, weights: Floats, meds: Floats, min_vis: float,
    min_den: float, max_gap: int, half: int, lags: int, y: Floats,
) -> tuple[Floats, Floats, Floats, int, Ints]:
    """(x, filled, first, finite, counts): combine, then period_inputs of its result."""
    x = combine(raw, vis, cols, dirs, weights, meds, min_vis, min_den)
    return (x, *period_inputs(x, max_gap, half, lags, y))


def ready_signal(
    ac: Floats, counts: Ints, n: int, fps: float, lo: int, hi: int, filled: Floats, first: Floats,
    smooth_lo_s: float, smooth_hi_s: float,
) -> tuple[Floats, Floats, Floats, float]:
    """(s, e_lo, e_hi, period s) as the counter wrote it in Python: the period from pick_period
    (none when ac is empty), smoothing period / 20 clipped, envelope two periods clipped to 2-8 s."""
    period = float("nan")
    if len(ac):
        lag, _ = pick_period(ac, counts, n, lo, hi)
        if lag >= 0:
            period = lag / fps
    half = max(1, int(round(np.clip(period / 20, smooth_lo_s, smooth_hi_s) * fps))) if np.isfinite(period) else 0
    span_s = 2.0 * period if np.isfinite(period) else 4.0
    return (*settle(filled, first, half, max(2, int(np.clip(span_s, 2.0, 8.0) * fps / 2))), period)


# ------------------------------------------------------------------ rep filters


def _rest_windows(reps: Ints, n: int) -> list[tuple[int, int]]:
    out = []
    for i, (a, p, b) in enumerate(reps):
        lo = int(reps[i - 1, 2]) if i > 0 else max(0, int(a) - 2 * (int(p) - int(a)))
        hi = int(reps[i + 1, 0]) if i + 1 < len(reps) else min(n - 1, int(b) + 2 * (int(b) - int(p)))
        out.append((min(lo, int(a)), max(hi, int(b))))
    return out


def valid_reps(
    s: Floats, reps: Ints, min_rom: float, walking: NDArray[np.bool_], posture: Floats, walk_share: float,
    posture_deg: float,
) -> NDArray[np.bool_]:
    """(k,) bool: rises and falls enough from its window's rest floor, not walking, same posture at both ends."""
    keep = []
    for (a, p, b), (w0, w1) in zip(reps, _rest_windows(reps, len(s)), strict=True):
        rise = s[p] - np.nanmin(s[w0 : p + 1])
        fall = s[p] - np.nanmin(s[p : w1 + 1])
        ok = not (min(rise, fall) < 0.6 * min_rom or max(rise, fall) < min_rom)
        if ok and len(walking) and walking[a : b + 1].mean() > walk_share:
            ok = False
        if ok and len(posture):
            before, after = posture[max(0, a - 3) : a + 1], posture[b : b + 4]
            if np.isfinite(before).any() and np.isfinite(after).any():
                ok = not abs(np.nanmedian(before) - np.nanmedian(after)) > posture_deg
        keep.append(ok)
    return np.array(keep, bool)


def refine_reps(s: Floats, reps: Ints, rest_band: float) -> Ints:
    """Each rep's start back / end on while the signal keeps falling toward its window's rest floor."""
    out = reps.copy()
    for i, ((a, p, b), (prev_end, nxt)) in enumerate(zip(reps, _rest_windows(reps, len(s)), strict=True)):
        floor_a = np.nanmin(s[prev_end : a + 1])
        floor_b = np.nanmin(s[b : nxt + 1]) if nxt >= b else s[b]
        tol = rest_band * (s[p] - min(floor_a, floor_b))
        j = int(a)
        while j > prev_end and np.isfinite(s[j - 1]) and s[j - 1] <= s[j] + 1e-9 and s[j - 1] > floor_a + tol:
            j -= 1
        out[i, 0] = j
        k = int(b)
        while k < nxt and np.isfinite(s[k + 1]) and s[k + 1] <= s[k] + 1e-9 and s[k + 1] > floor_b + tol:
            k += 1
        out[i, 2] = k
    return out


def add_disjoint(reps: Ints, extra: Ints) -> Ints:
    """reps followed by each row of extra that overlaps none of the rows kept so far."""
    rows = [tuple(int(v) for v in r) for r in reps]
    for r in extra:
        a, b = int(r[0]), int(r[2])
        if all(min(b0, b) <= max(a0, a) for a0, _, b0 in rows):
            rows.append((a, int(r[1]), b))
    return np.array(rows, np.int64).reshape(-1, 3)


def gait_votes(
    raw: Floats, vis: Floats, reps: Ints, jl: int, jr: int, visible: float, min_seen: float
) -> NDArray[np.int8]:
    """Per rep (int8): 1 where angles jl and jr (both seen in min_seen of the frames) correlate
    negatively, else 0 (the kernel may say 2 where float arithmetic cannot tell)."""
    out = np.zeros(len(reps), np.int8)
    for i, r in enumerate(reps):
        a, b = int(r[0]), int(r[2]) + 1
        seen = (vis[a:b, jl] >= visible) & (vis[a:b, jr] >= visible)
        x, y = raw[a:b, jl], raw[a:b, jr]
        ok = np.isfinite(x) & np.isfinite(y)
        if seen.mean() < min_seen or ok.sum() < 5 or np.std(x[ok]) == 0 or np.std(y[ok]) == 0:
            continue
        out[i] = np.corrcoef(x[ok], y[ok])[0, 1] < 0.0
    return out


# ------------------------------------------------------------- per-rep measures


def merge_pair(values: Floats, vis: Floats, jl: int, jr: int) -> Floats:
    """Columns jl and jr averaged per frame with vis as weights over the finite ones; NaN where
    neither is finite or their weights sum to <= 0."""
    vals = np.vstack([values[:, jl], values[:, jr]])
    w = np.vstack([vis[:, jl], vis[:, jr]])
    w = np.where(np.isfinite(vals), w, 0.0)
    den = w.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out: Floats = (np.where(np.isfinite(vals), vals, 0.0) * w).sum(axis=0) / den
    out[den <= 0] = np.nan
    return out


def window_extremes(series: Floats, reps: Ints) -> Floats:
    """(k, q, 2): min and max of the finite values of each series over each rep's frames; NaN if none."""
    out = np.full((len(reps), series.shape[0], 2), np.nan)
    for r, (a, _, b) in enumerate(reps):
        for j in range(series.shape[0]):
            x = series[j, a : b + 1]
            x = x[np.isfinite(x)]
            if len(x):
                out[r, j] = x.min(), x.max()
    return out


def amplitudes(signal: Floats, reps: Ints) -> Floats:
    """(k,) signal at each rep's turning point minus its lowest (non-NaN) value over the rep."""
    return np.array([signal[p] - np.nanmin(signal[a : b + 1]) for a, p, b in reps], np.float64)


def rep_extras(
    signal: Floats, vis: Floats, vis_cols: Ints, left: Floats, right: Floats, reps: Ints, full_amp: float
) -> Floats:
    """Per rep (k, 3): amplitude, confidence (mean best visibility, scaled down under full_amp),
    asymmetry (mean |left - right| when both are finite in half the rep or more, else NaN)."""
    out = np.full((len(reps), 3), np.nan)
    pvis = vis[:, vis_cols].max(axis=1)
    for r, (a, p, b) in enumerate(reps):
        amp = float(signal[p] - np.nanmin(signal[a : b + 1]))
        out[r, 0] = amp
        out[r, 1] = float(np.clip(np.mean(pvis[a : b + 1]), 0, 1) * min(1.0, amp / full_amp))
        if len(left):
            d = np.abs(left[a : b + 1] - right[a : b + 1])
            if np.isfinite(d).mean() >= 0.5:
                out[r, 2] = float(np.nanmean(d))
    return out


# ------------------------------------------------------------------------ JSON


def round_half_even(x: Floats, digits: int) -> Floats:
    """Python's ``round(v, digits)``; NaN where v is not finite, inf where |v| >= 1e15."""
    return np.array([
        np.nan if not math.isfinite(v) else (math.inf if abs(v) >= 1e15 else round(v, digits)) for v in x.tolist()
    ], np.float64)
