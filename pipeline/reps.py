"""Rep counting on a combined, clip-adaptive signal.

Steps:
1. combine: the exercise's angle components (left/right, and a supporting joint), each
   centred on its clip median and oriented so the turning point is a maximum,
   averaged per frame with MediaPipe visibility as weight; frames where too
   little is visible are NaN (visibility gates what is counted).
2. clean: short gaps interpolated, NaN-aware smoothing.
3. period: the dominant period from the autocorrelation (for window sizes).
4. thresholds adapt to the clip: a rolling envelope (about two periods wide)
   sets rest/turn levels locally, so fatigue, partial range and side changes
   keep being counted; where the envelope is narrower than the exercise's
   minimum range of motion nothing is counted (idle, noise).
5. segment: a hysteresis state machine (numba kernel) over those thresholds.
6. filter: minimum duration, both halves of the excursion large enough, no
   walking (the body translating) during the rep, and the rep ends in the
   posture it started from.
7. sides: each body side is also counted on its own; a side's rep that the
   combined signal missed (alternating curls, one arm partly hidden) is added.
8. gait: where both sides of a pair should move together (knees in a squat or
   lunge), a rep in which they move in anti-phase (walking, stepping) is dropped.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from . import kernels
from .exercises import Component
from .records import PoseSeries

VISIBLE = 0.5  # a landmark this visible counts as seen
MIN_WEIGHT = 0.35  # total visibility weight below which a frame has no signal
SIDE_MIN_WEIGHT = 0.25  # the same for one body side counted on its own
SOFT_VIS = 0.15  # a component below this visibility contributes nothing
LO_FRAC, HI_FRAC = 0.3, 0.55  # thresholds as fractions of the local envelope
MIN_REP_S = 0.4
SMOOTH_S = (0.08, 0.15)  # smoothing half-window bounds, seconds (period / 12 in between)
POSTURE_DEG = 50.0  # trunk orientation may differ this much between a rep's start and end
REST_BAND = 0.03  # a rep starts/ends where the signal leaves/reaches this share of its span above rest
MAX_GAP_S = 0.4
WALK_M = 1.0  # net hip travel (metres) within the window that counts as walking
WALK_LOG_SCALE = 0.35  # change of log apparent size within the window (toward/away)


@dataclass(frozen=True, slots=True)
class Segmentation:
    """signal: (n,) oriented combined signal (deg, turning point = max).
    lo, hi: (n,) thresholds; reps: (k, 3) int64 (start, peak, end) frame positions.
    period_s: dominant period estimate (NaN when none)."""

    signal: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    reps: np.ndarray
    period_s: float


def combine(
    raw: np.ndarray, vis: np.ndarray, names: tuple[str, ...], comps: tuple[Component, ...],
    min_weight: float = MIN_WEIGHT,
) -> np.ndarray:
    """Visibility-weighted mean of centred, oriented components; NaN where too little is seen.

    Each component is centred on its clip median and oriented so the turning
    point is a maximum; an occluded side (low visibility) fades out and the
    visible side carries the signal.
    """
    n = raw.shape[0]
    num = np.zeros(n)
    den = np.zeros(n)
    top = max((c.weight for c in comps), default=1.0)
    for c in comps:
        j = names.index(c.angle)
        a, v = raw[:, j], vis[:, j]
        ok = np.isfinite(a) & (v >= SOFT_VIS)
        if ok.sum() < 2:
            continue
        med = np.median(a[ok])
        w = np.where(ok, c.weight * v, 0.0)
        num += w * np.where(ok, c.direction * (a - med), 0.0)
        den += w
    out = np.full(n, np.nan)
    good = den >= min_weight * top
    out[good] = num[good] / den[good]
    return out


def dominant_period(x: np.ndarray, fps: float, lo_s: float = 0.5, hi_s: float = 10.0) -> tuple[float, float]:
    """(period seconds, autocorrelation strength in [0, 1]) of the finite part of ``x``."""
    y = x.copy()
    ok = np.isfinite(y)
    if ok.sum() < max(8, int(2 * lo_s * fps)):
        return float("nan"), 0.0
    y[ok] -= y[ok].mean()
    y[~ok] = 0.0
    n = len(y)
    f = np.fft.rfft(y, 2 * n)
    ac = np.fft.irfft(f * np.conj(f))[:n]
    g = np.fft.rfft(ok.astype(float), 2 * n)
    cnt = np.rint(np.fft.irfft(g * np.conj(g))[:n])  # frames where both x[i] and x[i + lag] exist
    ac = np.where(cnt > n * 0.25, ac / np.maximum(cnt, 1), 0.0)
    if ac[0] <= 0:
        return float("nan"), 0.0
    ac /= ac[0]
    a, b = int(lo_s * fps), min(n - 1, int(hi_s * fps))
    if b <= a + 1:
        return float("nan"), 0.0
    seg = ac[a:b]
    # first local maximum that is a clear peak
    peaks = np.flatnonzero((seg[1:-1] > seg[:-2]) & (seg[1:-1] >= seg[2:])) + 1
    if len(peaks) == 0:
        return float("nan"), 0.0
    # the first peak nearly as strong as the strongest: later ones are multiples of the period
    strong = peaks[seg[peaks] >= 0.8 * seg[peaks].max()]
    best = strong[0]
    return (a + best) / fps, float(np.clip(seg[best], 0.0, 1.0))


SEGMENTS = (  # rigid body segments (landmark pairs) used to measure image scale
    (11, 12), (11, 13), (12, 14), (13, 15), (14, 16), (23, 25), (24, 26), (25, 27), (26, 28), (11, 23), (12, 24),
)


def walking_mask(pose: PoseSeries, window_s: float = 2.0) -> np.ndarray:
    """(n,) bool: the body travels (walks in, out or across) rather than exercising in place.

    Scale comes from the least foreshortened body segment: image length over its
    3D world length (image units per metre), so posture changes do not read as
    motion. Walking is a net hip travel over ``window_s`` above WALK_M (sideways)
    or a change of apparent size above WALK_LOG_SCALE (toward or away).
    """
    n = len(pose)
    out = np.zeros(n, bool)
    if n < 3:
        return out
    u = pose.xy_units()
    idx_a = [a for a, _ in SEGMENTS]
    idx_b = [b for _, b in SEGMENTS]
    img = np.linalg.norm(u[:, idx_a] - u[:, idx_b], axis=2)
    wld = np.linalg.norm(pose.world[:, idx_a].astype(np.float64) - pose.world[:, idx_b], axis=2)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # frames without a pose
        ppm = np.nanmax(np.where(wld > 0.05, img / wld, np.nan), axis=1)
    if not np.isfinite(ppm).any():
        return out
    fps = (n - 1) / max(pose.t[-1] - pose.t[0], 1e-6)
    half = max(1, int(window_s * fps / 2))
    hip_x = u[:, [23, 24], 0].mean(axis=1)
    x_m = kernels.fill_gaps(hip_x / np.nanmedian(ppm), 2 * half)
    logs = kernels.smooth(kernels.fill_gaps(np.log(ppm), 2 * half), max(1, half // 2))
    idx = np.arange(n)
    a, b = np.clip(idx - half, 0, n - 1), np.clip(idx + half, 0, n - 1)
    travel = np.abs(x_m[b] - x_m[a])
    zoom = np.abs(logs[b] - logs[a])
    return (np.nan_to_num(travel) > WALK_M) | (np.nan_to_num(zoom) > WALK_LOG_SCALE)


def thresholds(s: np.ndarray, half: int, min_rom: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame (lo, hi) from a rolling envelope; NaN where the envelope spans < min_rom."""
    e_hi = kernels.rolling_max(s, half)
    e_lo = kernels.rolling_min(s, half)
    span = e_hi - e_lo
    lo = e_lo + LO_FRAC * span
    hi = e_lo + HI_FRAC * span
    flat = ~(span >= min_rom)
    lo[flat] = np.nan
    hi[flat] = np.nan
    return lo, hi


def segment(
    signal: np.ndarray,
    t: np.ndarray,
    min_rom: float,
    walking: np.ndarray | None = None,
    posture: np.ndarray | None = None,
) -> Segmentation:
    """Count reps in an oriented combined signal sampled at times ``t``."""
    n = len(signal)
    if n < 3:
        e = np.full(n, np.nan)
        return Segmentation(signal, e, e, np.zeros((0, 3), np.int64), float("nan"))
    fps = (n - 1) / max(t[-1] - t[0], 1e-6)
    filled = kernels.fill_gaps(signal, max(1, int(MAX_GAP_S * fps)))
    s = kernels.smooth(filled, max(1, int(round(SMOOTH_S[0] * fps))))
    period, _ = dominant_period(s, fps)
    if np.isfinite(period):  # slower movements tolerate (and need) more smoothing
        s = kernels.smooth(filled, max(1, int(round(np.clip(period / 20, *SMOOTH_S) * fps))))
    span_s = 2.0 * period if np.isfinite(period) else 4.0
    half = max(2, int(np.clip(span_s, 2.0, 8.0) * fps / 2))
    lo, hi = thresholds(s, half, min_rom)
    raw = kernels.segment_reps(s, lo, hi, max(1, int(MIN_REP_S * fps)), max(1, int(MAX_GAP_S * fps)))
    windows = _rest_windows(raw, n)
    keep = [r for r, w in zip(raw, windows, strict=True) if _valid(s, r, w, min_rom, walking, posture)]
    reps = np.array(keep, np.int64).reshape(-1, 3)
    return Segmentation(s, lo, hi, _refine(s, reps), period)


def _rest_windows(reps: np.ndarray, n: int) -> list[tuple[int, int]]:
    """Per rep, the span that holds its rest before and after: from the previous rep's end
    (or as far back as the rise took) to the next rep's start (or as far on as the fall took)."""
    out = []
    for i, (a, p, b) in enumerate(reps):
        lo = int(reps[i - 1, 2]) if i > 0 else max(0, int(a) - 2 * (int(p) - int(a)))
        hi = int(reps[i + 1, 0]) if i + 1 < len(reps) else min(n - 1, int(b) + 2 * (int(b) - int(p)))
        out.append((min(lo, int(a)), max(hi, int(b))))
    return out


def _valid(
    s: np.ndarray, rep: np.ndarray, window: tuple[int, int], min_rom: float,
    walking: np.ndarray | None, posture: np.ndarray | None,
) -> bool:
    a, p, b = int(rep[0]), int(rep[1]), int(rep[2])
    rise = s[p] - np.nanmin(s[window[0] : p + 1])  # from the rest floor, not the threshold crossing
    fall = s[p] - np.nanmin(s[p : window[1] + 1])
    if min(rise, fall) < 0.6 * min_rom or max(rise, fall) < min_rom:
        return False
    if walking is not None and walking[a : b + 1].mean() > 0.3:
        return False
    if posture is not None:  # a rep ends in the posture it started from (not squat -> plank)
        before = posture[max(0, a - 3) : a + 1]
        after = posture[b : b + 4]
        if np.isfinite(before).any() and np.isfinite(after).any():
            if abs(np.nanmedian(before) - np.nanmedian(after)) > POSTURE_DEG:
                return False
    return True


def _refine(s: np.ndarray, reps: np.ndarray) -> np.ndarray:
    """Move start/end from the threshold crossings out to where the rest phase ends/begins."""
    out = reps.copy()
    for i, ((a, p, b), (prev_end, nxt)) in enumerate(zip(reps, _rest_windows(reps, len(s)), strict=True)):
        floor_a = np.nanmin(s[prev_end : a + 1])
        floor_b = np.nanmin(s[b : nxt + 1]) if nxt >= b else s[b]
        span = s[p] - min(floor_a, floor_b)
        tol = REST_BAND * span
        j = int(a)
        while j > prev_end and np.isfinite(s[j - 1]) and s[j - 1] <= s[j] + 1e-9 and s[j - 1] > floor_a + tol:
            j -= 1
        # now go to the last frame still near the rest floor
        out[i, 0] = j
        k = int(b)
        while k < nxt and np.isfinite(s[k + 1]) and s[k + 1] <= s[k] + 1e-9 and s[k + 1] > floor_b + tol:
            k += 1
        out[i, 2] = k
    return out


def count(
    raw: np.ndarray,
    vis: np.ndarray,
    names: tuple[str, ...],
    comps: tuple[Component, ...],
    t: np.ndarray,
    min_rom: float,
    walking: np.ndarray | None = None,
    posture: np.ndarray | None = None,
) -> Segmentation:
    """Reps of the combined signal, plus those only one body side shows (merged in time order)."""
    base = segment(combine(raw, vis, names, comps), t, min_rom, walking, posture)
    reps = [tuple(int(v) for v in r) for r in base.reps]
    sides: dict[str, list[Component]] = {}
    for c in comps:
        if c.angle.startswith(("left_", "right_")):
            sides.setdefault(c.angle.split("_", 1)[0], []).append(c)
    if len(sides) > 1:
        for side in sides.values():
            sig = combine(raw, vis, names, tuple(side), SIDE_MIN_WEIGHT)
            for r in segment(sig, t, min_rom, walking, posture).reps:
                a, b = int(r[0]), int(r[2])
                if all(min(b0, b) <= max(a0, a) for a0, _, b0 in reps):
                    reps.append((a, int(r[1]), b))
    reps.sort(key=lambda r: r[1])
    arr = np.array(reps, np.int64).reshape(-1, 3)
    return Segmentation(base.signal, base.lo, base.hi, arr, base.period_s)


def _sync(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of two angle traces over frames where both are finite (NaN if too few)."""
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 5 or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
        return float("nan")
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def drop_gait(
    seg: Segmentation, raw: np.ndarray, vis: np.ndarray, names: tuple[str, ...], in_phase: tuple[str, ...]
) -> Segmentation:
    """Drop reps in which paired angles that should move together (both knees in a squat or a
    lunge) move in anti-phase, as in walking or stepping; sides must both be seen."""
    if not in_phase or len(seg.reps) == 0:
        return seg
    keep = []
    for r in seg.reps:
        a, b = int(r[0]), int(r[2]) + 1
        ok = True
        for pair in in_phase:
            jl, jr = names.index(f"left_{pair}"), names.index(f"right_{pair}")
            seen = (vis[a:b, jl] >= VISIBLE) & (vis[a:b, jr] >= VISIBLE)
            if seen.mean() >= 0.6 and _sync(raw[a:b, jl], raw[a:b, jr]) < 0.0:
                ok = False
        keep.append(ok)
    reps = seg.reps[np.array(keep, bool)]
    return Segmentation(seg.signal, seg.lo, seg.hi, reps, seg.period_s)
