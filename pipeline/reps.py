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

Every per-frame loop is a kernel of :mod:`pipeline.kernels`; a :class:`Counter` keeps
what several counts on one clip share (auto detection tries each exercise's counter,
then the chosen one counts again with the walking filter): per-angle medians, the
combined signals with their smoothing, period and envelope, and finished counts. On a long
clip its signals are made ready and counted on two threads while a core is idle
(:mod:`pipeline.parallel`), each in two kernels around its FFT.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import geometry, kernels
from .exercises import Component
from .geometry import Geometry
from .parallel import call, map2
from .records import PoseSeries

VISIBLE = 0.5  # a landmark this visible counts as seen
MIN_WEIGHT = 0.35  # total visibility weight below which a frame has no signal
# a body side counted on its own must be seen (VISIBLE): an arm hidden behind the torso has
# visibility 0.25-0.5 while MediaPipe guesses it, and its guessed reps came and went with the
# frame stride, the chunking and the worker's history (the dev alternating-curl clip gave 1-3)
SIDE_MIN_WEIGHT = VISIBLE
SOFT_VIS = 0.15  # a component below this visibility contributes nothing
LO_FRAC, HI_FRAC = 0.3, 0.55  # thresholds as fractions of the local envelope
MIN_REP_S = 0.4
SMOOTH_S = (0.08, 0.15)  # smoothing half-window bounds, seconds (period / 12 in between)
POSTURE_DEG = 50.0  # trunk orientation may differ this much between a rep's start and end
REST_BAND = 0.03  # a rep starts/ends where the signal leaves/reaches this share of its span above rest
MAX_GAP_S = 0.4
WALK_M = 1.0  # net hip travel (metres) within the window that counts as walking
WALK_LOG_SCALE = 0.35  # change of log apparent size within the window (toward/away)
WALK_SHARE = 0.3  # a rep walking for more than this share of its frames is not counted
GAIT_SEEN = 0.6  # both sides of a pair seen in this share of a rep's frames to judge its gait
NONE_BOOL = np.zeros(0, np.bool_)  # "no walking mask" for the kernels
NONE_FLOAT = np.zeros(0)  # "no posture signal" for the kernels


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


def _fps(t: np.ndarray) -> float:
    return float((len(t) - 1) / max(t[-1] - t[0], 1e-6))


def combine(
    raw: np.ndarray, vis: np.ndarray, names: tuple[str, ...], comps: tuple[Component, ...],
    min_weight: float = MIN_WEIGHT, medians: dict[int, float] | None = None,
) -> np.ndarray:
    """Visibility-weighted mean of centred, oriented components; NaN where too little is seen.

    Each component is centred on its clip median and oriented so the turning
    point is a maximum; an occluded side (low visibility) fades out and the
    visible side carries the signal. ``medians`` caches the per-column medians.
    """
    cols, dirs, weights, min_den = _combine_args(names, comps, min_weight)
    meds = _medians(raw, vis, cols.tolist(), {} if medians is None else medians)
    return kernels.combine(raw, vis, cols, dirs, weights, meds, SOFT_VIS, min_den)


def _medians(raw: np.ndarray, vis: np.ndarray, cols: list[int], cache: dict[int, float]) -> np.ndarray:
    """The clip median of each column (seen at SOFT_VIS or more; NaN, left out, under two frames),
    from ``cache`` where it is there, else found and put there."""
    for j in cols:
        if j not in cache:
            cache[j] = kernels.masked_median(raw[:, j], vis[:, j], SOFT_VIS)
    return np.array([cache[j] for j in cols], np.float64)


@functools.lru_cache(maxsize=256)
def _combine_args(
    names: tuple[str, ...], comps: tuple[Component, ...], min_weight: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(columns, directions, weights, least total weight) of :func:`combine`'s kernel, built once."""
    cols = np.array([names.index(c.angle) for c in comps], np.int64)
    dirs = np.array([float(c.direction) for c in comps])
    weights = np.array([float(c.weight) for c in comps])
    top = max((c.weight for c in comps), default=1.0)
    return cols, dirs, weights, min_weight * top  # shared between calls: the kernels only read them


@functools.cache
def _fft_len(target: int) -> int:
    """The smallest 2^i 3^j 5^k >= target (sizes pocketfft transforms fastest)."""
    best = 1 << max(0, (target - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            p = p35
            while p < target:
                p *= 2
            best = min(best, p)
            p35 *= 3
        p5 *= 5
    return best


def dominant_period(x: np.ndarray, fps: float, lo_s: float = 0.5, hi_s: float = 10.0) -> tuple[float, float]:
    """(period seconds, autocorrelation strength in [0, 1]) of the finite part of ``x``."""
    return dominant_periods([x], fps, lo_s, hi_s)[0]


def dominant_periods(
    xs: list[np.ndarray], fps: float, lo_s: float = 0.5, hi_s: float = 10.0
) -> list[tuple[float, float]]:
    """:func:`dominant_period` of each of several signals of one length.

    The autocorrelation (finite part centred on its mean, lags overlapping under a quarter of
    the frames ignored) comes from FFTs just long enough for the lags looked at, all signals in
    one transform.
    """
    if not xs:
        return []
    n = len(xs[0])
    a, b = int(lo_s * fps), min(n - 1, int(hi_s * fps))
    ys = np.zeros((len(xs), _fft_len(n + b)))
    finite, counts = [], []
    for i, x in enumerate(xs):
        y, k = kernels.centre_finite(np.ascontiguousarray(x, np.float64))
        ys[i, :n] = y
        finite.append(k)
        counts.append(kernels.lag_counts(x, max(b, 0)))
    return _periods(ys, finite, counts, n, fps, lo_s, a, b)


def _has_period(finite: int, fps: float, lo_s: float, a: int, b: int) -> bool:
    """Enough finite frames (two of the shortest periods, 8 at least) and lags a..b to look at."""
    return finite >= max(8, int(2 * lo_s * fps)) and b > a + 1


def _periods(
    ys: np.ndarray, finite: list[int], counts: list[np.ndarray], n: int, fps: float, lo_s: float, a: int, b: int
) -> list[tuple[float, float]]:
    # (period s, strength) of each row of ys (centred signals, zero-padded to the FFT's length) from
    # its finite frames and lag counts; (NaN, 0) without enough frames or lags, or without a peak
    out = [(float("nan"), 0.0)] * len(ys)
    todo = [i for i in range(len(ys)) if _has_period(finite[i], fps, lo_s, a, b)]
    if not todo:
        return out
    size = ys.shape[1]
    f = np.fft.rfft(ys if len(todo) == len(ys) else ys[todo], size, axis=1)
    ac = np.fft.irfft(kernels.power(f), size, axis=1)[:, :b]
    for row, i in enumerate(todo):
        lag, strength = kernels.pick_period(np.ascontiguousarray(ac[row]), counts[i], n, a, b)
        if lag >= 0:
            out[i] = (lag / fps, strength)
    return out


def walking_mask(pose: PoseSeries, window_s: float = 2.0, geo: Geometry | None = None) -> np.ndarray:
    """(n,) bool: the body travels (walks in, out or across) rather than exercising in place.

    Scale comes from the least foreshortened body segment: image length over its
    3D world length (image units per metre), so posture changes do not read as
    motion. Walking is a net hip travel over ``window_s`` above WALK_M (sideways)
    or a change of apparent size above WALK_LOG_SCALE (toward or away).
    ``geo``: the clip's geometry when already measured.
    """
    n = len(pose)
    if n < 3:
        return np.zeros(n, bool)
    scale, hip_x = (geo.scale, geo.hip_x) if geo is not None else geometry.scale(pose)
    half = max(1, int(window_s * _fps(pose.t) / 2))
    return kernels.walking(scale, hip_x, half, WALK_M, WALK_LOG_SCALE)


def thresholds(s: np.ndarray, half: int, min_rom: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame (lo, hi) from a rolling envelope; NaN where the envelope spans < min_rom."""
    return kernels.levels(kernels.rolling_min(s, half), kernels.rolling_max(s, half), LO_FRAC, HI_FRAC, min_rom)


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A combined signal made ready for counting at any minimum range: smoothed (s), its period
    and the rolling envelope (e_lo, e_hi) the thresholds come from."""

    raw: np.ndarray
    s: np.ndarray
    period: float
    fps: float
    e_lo: np.ndarray
    e_hi: np.ndarray


@dataclass(frozen=True, slots=True)
class _Clip:
    """What making any counting signal of one clip (n >= 3 frames) ready needs: its frame rate,
    the lags its period is looked for at (dominant_periods' default range), the FFT's length."""

    n: int
    fps: float
    a: int
    b: int
    size: int
    gap: int  # frames of the longest gap filled
    half0: int  # smoothing half-window before the period is known

    @staticmethod
    def of(t: np.ndarray) -> _Clip:
        fps, n = _fps(t), len(t)
        a, b = int(0.5 * fps), min(n - 1, int(10.0 * fps))
        return _Clip(n, fps, a, b, _fft_len(n + b), max(1, int(MAX_GAP_S * fps)),
                     max(1, int(round(SMOOTH_S[0] * fps))))

    def ready(
        self, x: np.ndarray, filled: np.ndarray, first: np.ndarray, finite: int, counts: np.ndarray, y: np.ndarray
    ) -> _Prepared:
        """x made ready from its ``period_inputs`` (y (1, size): the FFT's input): the period from
        the autocorrelation (its own FFT: cheaper than several signals stacked in one call), then
        smoothed by it (slower movements tolerate, and need, more) and enveloped, in one kernel."""
        ac = NONE_FLOAT
        if _has_period(finite, self.fps, 0.5, self.a, self.b):
            ac = np.fft.irfft(kernels.power(np.fft.rfft(y, self.size, axis=1)), self.size, axis=1)[0, : self.b]
        s, e_lo, e_hi, period = kernels.ready_signal(ac, counts, self.n, self.fps, self.a, self.b, filled, first,
                                                     *SMOOTH_S)
        return _Prepared(x, s, period, self.fps, e_lo, e_hi)


def _preparer(t: np.ndarray) -> Callable[[np.ndarray], _Prepared]:
    """A function making a signal of len(t) (>= 3) frames ready: filled, smoothed by its period
    and enveloped."""
    clip = _Clip.of(t)

    def one(x: np.ndarray) -> _Prepared:
        y = np.zeros((1, clip.size))
        filled, first, finite, counts = kernels.period_inputs(x, clip.gap, clip.half0, max(clip.b, 0), y[0])
        return clip.ready(x, filled, first, finite, counts, y)

    return one


def _count_prepared(
    prep: _Prepared, min_rom: float, walking: np.ndarray | None, posture: np.ndarray | None
) -> Segmentation:
    n = len(prep.raw)
    if n < 3:
        e = np.full(n, np.nan)
        return Segmentation(prep.raw, e, e, np.zeros((0, 3), np.int64), float("nan"))
    fps = prep.fps
    lo, hi, reps = kernels.count_reps(
        prep.s, prep.e_lo, prep.e_hi, LO_FRAC, HI_FRAC, min_rom, max(1, int(MIN_REP_S * fps)),
        max(1, int(MAX_GAP_S * fps)), NONE_BOOL if walking is None else walking,
        NONE_FLOAT if posture is None else posture, WALK_SHARE, POSTURE_DEG, REST_BAND,
    )
    return Segmentation(prep.s, lo, hi, reps, prep.period)


def segment(
    signal: np.ndarray,
    t: np.ndarray,
    min_rom: float,
    walking: np.ndarray | None = None,
    posture: np.ndarray | None = None,
) -> Segmentation:
    """Count reps in an oriented combined signal sampled at times ``t``."""
    if len(signal) < 3:
        e = np.full(len(signal), np.nan)
        return Segmentation(signal, e, e, np.zeros((0, 3), np.int64), float("nan"))
    return _count_prepared(_preparer(t)(np.asarray(signal, np.float64)), min_rom, walking, posture)


class Counter:
    """Rep counts on one clip for any components and minimum range, sharing the work they have in
    common (see the module docstring). ``posture`` (trunk orientation per frame) filters every count."""

    def __init__(
        self, raw: np.ndarray, vis: np.ndarray, names: tuple[str, ...], t: np.ndarray,
        posture: np.ndarray | None = None,
    ) -> None:
        self.raw, self.vis, self.names, self.t, self.posture = raw, vis, names, t, posture
        self._medians: dict[int, float] = {}
        self._prepared: dict[tuple[tuple[Component, ...], float], _Prepared] = {}
        self._counts: dict[tuple[object, ...], Segmentation] = {}
        self._masks: list[np.ndarray] = []  # keeps the walking masks (keyed by id) alive
        self._clip: _Clip | None = None  # what making its signals ready needs

    def prepare(self, exercises: list[tuple[Component, ...]]) -> None:
        """Make the combined and one-sided signals of these components ready (each signal once,
        whichever exercises share it; a long clip's shared between two threads)."""
        keys = [k for comps in exercises for k in _signal_keys(comps) if k not in self._prepared]
        keys = list(dict.fromkeys(keys))
        if keys:
            map2(self._ready, keys, len(self.t))  # each keeps its signal

    def _ready(self, key: tuple[tuple[Component, ...], float]) -> _Prepared:
        """The signal of ``key`` (components, minimum weight) made ready (kept for the next count):
        combined and its period's inputs in one kernel, the FFT, then the rest in another."""
        prep = self._prepared.get(key)
        if prep is not None:
            return prep
        comps, weight = key
        if len(self.t) < 3:
            x = combine(self.raw, self.vis, self.names, comps, weight, self._medians)
            prep = _Prepared(x, x, np.nan, 0.0, x, x)
        else:
            if self._clip is None:
                self._clip = _Clip.of(self.t)
            clip = self._clip
            cols, dirs, weights, min_den = _combine_args(self.names, comps, weight)
            meds = _medians(self.raw, self.vis, cols.tolist(), self._medians)
            y = np.zeros((1, clip.size))
            x, filled, first, finite, counts = kernels.signal_inputs(
                self.raw, self.vis, cols, dirs, weights, meds, SOFT_VIS, min_den, clip.gap, clip.half0,
                max(clip.b, 0), y[0])
            prep = clip.ready(x, filled, first, finite, counts, y)
        self._prepared[key] = prep
        return prep

    def _mask(self, walking: np.ndarray | None) -> np.ndarray | None:
        if walking is not None and not walking.any():
            return None  # a frame never walking filters nothing: the count without a mask, maybe done already
        if walking is not None and not any(m is walking for m in self._masks):
            self._masks.append(walking)
        return walking

    def count(self, comps: tuple[Component, ...], min_rom: float, walking: np.ndarray | None = None) -> Segmentation:
        """Reps of the combined signal, plus those only one body side shows (merged in time order);
        on a long clip, the signals made ready and counted by two threads."""
        done = self.counted(comps, min_rom, walking)
        if done is not None:
            return done
        return self.merge(comps, min_rom, walking, map2(call, self.pieces(comps, min_rom, walking), len(self.t)))

    def counted(self, comps: tuple[Component, ...], min_rom: float, walking: np.ndarray | None) -> Segmentation | None:
        """The count of :meth:`count` when it was done already, else None."""
        walking = self._mask(walking)
        return self._counts.get((comps, min_rom, None if walking is None else id(walking)))

    def pieces(
        self, comps: tuple[Component, ...], min_rom: float,
        walking: np.ndarray | Callable[[], np.ndarray] | None,
    ) -> list[Callable[[], Segmentation]]:
        """The work of :meth:`count` as one function per signal (the combined one first, then each
        body side's), for a caller that shares it out with other work; :meth:`merge` their results.
        ``walking`` may be a function giving the mask (called when a count needs it)."""
        return [functools.partial(self._count_one, k, min_rom, walking) for k in _signal_keys(comps)]

    def _count_one(
        self, key: tuple[tuple[Component, ...], float], min_rom: float,
        walking: np.ndarray | Callable[[], np.ndarray] | None,
    ) -> Segmentation:
        prep = self._ready(key)
        return _count_prepared(prep, min_rom, self._mask(walking() if callable(walking) else walking), self.posture)

    def merge(
        self, comps: tuple[Component, ...], min_rom: float, walking: np.ndarray | None, segs: list[Segmentation]
    ) -> Segmentation:
        """The count of :meth:`count` from the results of its :meth:`pieces` (kept for the next call)."""
        walking = self._mask(walking)
        seg, *sides = segs
        reps = seg.reps
        for side in sides:
            reps = kernels.add_disjoint(reps, side.reps)
        reps = reps[np.argsort(reps[:, 1], kind="stable")]
        out = Segmentation(seg.signal, seg.lo, seg.hi, reps, seg.period_s)
        self._counts[(comps, min_rom, None if walking is None else id(walking))] = out
        return out


def _signal_keys(comps: tuple[Component, ...]) -> list[tuple[tuple[Component, ...], float]]:
    """(components, minimum weight) of the combined signal, then of each body side's when there
    are two sides (a side's reps the combined signal misses are added)."""
    sides: dict[str, list[Component]] = {}
    for c in comps:
        if c.angle.startswith(("left_", "right_")):
            sides.setdefault(c.angle.split("_", 1)[0], []).append(c)
    keys = [(comps, MIN_WEIGHT)]
    if len(sides) > 1:
        keys += [(tuple(side), SIDE_MIN_WEIGHT) for side in sides.values()]
    return keys


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
    return Counter(raw, vis, names, t, posture).count(comps, min_rom, walking)


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
    lunge) move in anti-phase, as in walking or stepping; sides must both be seen.

    The kernel judges the sign of the correlation; the few reps too close to call in its
    arithmetic (a constant side, a covariance near zero) are judged by numpy's ``corrcoef``.
    """
    if not in_phase or len(seg.reps) == 0:
        return seg
    keep = np.ones(len(seg.reps), bool)
    for pair in in_phase:
        jl, jr = names.index(f"left_{pair}"), names.index(f"right_{pair}")
        votes = kernels.gait_votes(raw, vis, seg.reps, jl, jr, VISIBLE, GAIT_SEEN)
        for i in np.flatnonzero(votes == 2):
            a, b = int(seg.reps[i, 0]), int(seg.reps[i, 2]) + 1
            votes[i] = 1 if _sync(raw[a:b, jl], raw[a:b, jr]) < 0.0 else 0
        keep &= votes != 1
    return Segmentation(seg.signal, seg.lo, seg.hi, seg.reps[keep], seg.period_s)
