"""Per-rep measures, fault rules and fatigue across reps.

For each counted rep: times, range of motion of the primary angle, eccentric /
pause / concentric durations and peak angular velocity (kernel ``rep_phases``),
left/right asymmetry where both sides are visible, a confidence, and the faults
of the exercise's rule table evaluated on named measures such as
``primary_min_deg`` or ``trunk_lean_range_deg``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from . import kernels
from .exercises import Exercise, Fault
from .records import AngleTable, Rep

PAUSE_BAND = 0.05  # within 5% of the rep's range of the turning point counts as a pause


def merged(table: AngleTable, vis: np.ndarray, name: str) -> np.ndarray:
    """A left/right pair merged per frame (visibility-weighted), or a single angle as is."""
    if name in table.names:
        return table[name]
    return kernels.merge_pair(table.values, vis, table.names.index(f"left_{name}"), table.names.index(f"right_{name}"))


class Series:
    """Merged per-frame angles by name, computed once per analysis (see :func:`merged`)."""

    def __init__(self, table: AngleTable, vis: np.ndarray, primary: str) -> None:
        self.table, self.vis, self.primary = table, vis, primary
        self._done: dict[str, np.ndarray] = {}

    def __call__(self, name: str) -> np.ndarray:
        name = self.primary if name == "primary" else name
        if name not in self._done:
            self._done[name] = merged(self.table, self.vis, name)
        return self._done[name]


def _flags(fault: Fault, values: np.ndarray) -> np.ndarray:
    """Per value (bool): finite and beyond the fault's threshold."""
    hit = values > fault.threshold if fault.op == ">" else values < fault.threshold
    out: np.ndarray = np.isfinite(values) & hit
    return out


def _window_stats(ex: Exercise, series: Series, reps: np.ndarray) -> dict[str, np.ndarray]:
    """Per-rep min and max of every series the exercise's faults and secondary angles name:
    ``{"<name>_min_deg": (k,), "<name>_max_deg": (k,), "<name>_range_deg": (k,)}``."""
    bases = list(dict.fromkeys([f.measure.rsplit("_", 2)[0] for f in ex.faults if f.measure != "asymmetry_deg"]
                               + list(ex.secondary)))
    if not bases:
        return {}
    out = {}
    for base in bases:  # one series at a time: no (q, n) copy
        ext = kernels.window_extremes(series(base)[None, :], reps)
        out[f"{base}_min_deg"], out[f"{base}_max_deg"] = ext[:, 0, 0], ext[:, 0, 1]
        out[f"{base}_range_deg"] = ext[:, 0, 1] - ext[:, 0, 0]
    return out


def measure(
    ex: Exercise, table: AngleTable, vis: np.ndarray, t: np.ndarray, signal: np.ndarray, reps: np.ndarray
) -> tuple[tuple[Rep, ...], np.ndarray]:
    """(the reps' measures, the merged primary angle per frame): :func:`measure_reps`, with the
    primary series it used (the per-frame work is done by kernels, over all reps at once)."""
    primary, cols = columns(ex, table, vis, t, signal, reps)
    return _new_reps_of(cols), primary


def measure_json(
    ex: Exercise, table: AngleTable, vis: np.ndarray, t: np.ndarray, signal: np.ndarray, reps: np.ndarray
) -> tuple[tuple[Rep, ...], np.ndarray, list[dict[str, object]]]:
    """:func:`measure` and ``to_json`` of its reps, the JSON rounded from the measures' arrays."""
    primary, cols = columns(ex, table, vis, t, signal, reps)
    out, js = reps_of(cols)
    return out, primary, js


def reps_of(cols: Columns) -> tuple[tuple[Rep, ...], list[dict[str, object]]]:
    """The :class:`Rep` records of measured reps and their JSON (``to_json``), rounded from the columns."""
    return _new_reps_of(cols), (_json(cols) if cols.reps.shape[0] else [])


@dataclass(frozen=True, slots=True)
class Columns:
    """Measured reps as columns (the numbers; :func:`reps_of` makes the records): reps (k, 3) their
    frames; values: the ten numeric fields of Rep in _ROUNDED's order (10, k) float64 with NaN for
    None; the faults; the secondary angles' names with their per-rep minima and maxima (q, k).
    Each rep's column depends on that rep alone, so the columns of some of the reps are taken
    from those of all."""

    reps: np.ndarray
    values: np.ndarray
    faults: list[tuple[str, ...]]
    names: tuple[str, ...]
    lows: np.ndarray
    highs: np.ndarray

    def take(self, rows: np.ndarray) -> Columns:
        """The columns of the reps at ``rows`` (int positions), in that order."""
        return Columns(self.reps[rows], self.values[:, rows], [self.faults[i] for i in rows.tolist()], self.names,
                       self.lows[:, rows], self.highs[:, rows])

    def of(self, reps: np.ndarray) -> Columns | None:
        """The columns of ``reps`` (k, 3) when each of them is measured here, else None."""
        if reps.shape == self.reps.shape and np.array_equal(reps, self.reps):
            return self
        where = {tuple(r): i for i, r in enumerate(self.reps.tolist())}
        rows = [where.get(tuple(r), -1) for r in reps.tolist()]
        return None if -1 in rows else self.take(np.array(rows, np.int64))


def _fault_names(ex: Exercise, stats: dict[str, np.ndarray], k: int) -> list[tuple[str, ...]]:
    """Per rep, the names of the faults it shows (one bit per fault, each combination built once)."""
    if not ex.faults:
        return [()] * k
    bits = np.zeros(k, np.int64)
    for j, f in enumerate(ex.faults):
        bits |= _flags(f, stats[f.measure]).astype(np.int64) << j
    codes = bits.tolist()
    combos = {b: tuple(f.name for j, f in enumerate(ex.faults) if b >> j & 1) for b in set(codes)}
    return list(map(combos.__getitem__, codes))


def columns(
    ex: Exercise, table: AngleTable, vis: np.ndarray, t: np.ndarray, signal: np.ndarray, reps: np.ndarray
) -> tuple[np.ndarray, Columns]:
    """(the merged primary angle per frame, the reps' measures as :class:`Columns`): times, range of
    motion, tempo phases, asymmetry, confidence, faults and secondary angles of each rep."""
    fps = (len(t) - 1) / max(float(t[-1] - t[0]), 1e-6) if len(t) > 1 else 30.0
    series = Series(table, vis, ex.primary)
    primary = series("primary")
    k, q = len(reps), len(ex.secondary)
    if k == 0:
        return primary, Columns(np.zeros((0, 3), np.int64), np.zeros((len(_ROUNDED), 0)), [], ex.secondary,
                                np.zeros((q, 0)), np.zeros((q, 0)))
    phases = kernels.rep_phases(kernels.smooth(primary, max(1, int(round(0.05 * fps)))), t, reps, PAUSE_BAND)
    names = table.names
    cols = np.array([i for i, n in enumerate(names) if n.endswith(ex.primary)], np.int64)
    paired = f"left_{ex.primary}" in names and f"right_{ex.primary}" in names
    left, right = (table[f"left_{ex.primary}"], table[f"right_{ex.primary}"]) if paired else (np.zeros(0),) * 2
    extras = kernels.rep_extras(signal, vis, cols, left, right, reps, 1.5 * ex.min_rom_deg)
    amp_a, conf_a, asym_a = extras[:, 0], extras[:, 1], extras[:, 2]
    stats = _window_stats(ex, series, reps)
    stats["asymmetry_deg"] = np.array(asym_a)
    faults = _fault_names(ex, stats, k)
    lows = np.array([stats[f"{name}_min_deg"] for name in ex.secondary]).reshape(q, k)
    highs = np.array([stats[f"{name}_max_deg"] for name in ex.secondary]).reshape(q, k)
    p_first, p_pause, p_second, p_rom, p_vel = (phases[:, c] for c in range(5))
    ecc_a, conc_a = (p_first, p_second) if ex.eccentric_first else (p_second, p_first)
    rom_a = np.where(np.isfinite(p_rom), p_rom, amp_a)
    values = np.vstack([t[reps[:, 0]], t[reps[:, 1]], t[reps[:, 2]], rom_a, ecc_a, p_pause, conc_a, p_vel, asym_a,
                        conf_a])
    return primary, Columns(np.asarray(reps, np.int64), values, faults, ex.secondary, lows, highs)


def _new_reps_of(c: Columns) -> tuple[Rep, ...]:
    """The Rep records of the columns, numbered from 1 in their order."""
    k = c.values.shape[1]
    if k == 0:
        return ()
    secondary: list[tuple[tuple[str, float, float], ...]] = [()] * k
    if c.names:
        secondary = list(zip(*[zip(itertools.repeat(name), lo, hi) for name, lo, hi in
                               zip(c.names, c.lows.tolist(), c.highs.tolist(), strict=True)], strict=True))
    start, peak, end, rom, ecc, pause, conc, vel, asym_f, conf = c.values.tolist()
    asym = [None if v != v else v for v in asym_f] if np.isnan(c.values[8]).any() else asym_f
    return _new_reps(range(1, k + 1), start, peak, end, rom, ecc, pause, conc, vel, asym, conf, c.faults, secondary)


def _draft_of(cls: type) -> type | None:
    """A mutable dataclass with cls's fields and slots (same layout), or None when cls has a
    __post_init__ (which building by drafts would skip)."""
    if hasattr(cls, "__post_init__"):
        return None
    fields = dataclasses.fields(cls)
    body: dict[str, object] = {"__annotations__": {f.name: f.type for f in fields}, "__module__": __name__}
    body.update({f.name: f.default for f in fields if f.default is not dataclasses.MISSING})
    return dataclasses.dataclass(slots=True)(type(f"_{cls.__name__}Draft", (), body))


_REP_DRAFT = _draft_of(Rep)


def _new_reps(*columns: Iterable[object]) -> tuple[Rep, ...]:
    """``tuple(map(Rep, *columns))``, built ~6x faster: a frozen dataclass's __init__ sets each field
    through object.__setattr__, its mutable twin with the same slots by plain stores; each
    finished draft then becomes a Rep (``__class__`` assignment, allowed between equal layouts)."""
    if _REP_DRAFT is None:
        return tuple(map(Rep, *columns))
    out = tuple(map(_REP_DRAFT, *columns))
    for r in out:
        r.__class__ = Rep
    return out  # type: ignore[return-value]  # every one is a Rep now


def measure_reps(
    ex: Exercise, table: AngleTable, vis: np.ndarray, t: np.ndarray, signal: np.ndarray, reps: np.ndarray
) -> tuple[Rep, ...]:
    """Per-rep times, range of motion, tempo phases, asymmetry, confidence, faults and secondary angles."""
    return measure(ex, table, vis, t, signal, reps)[0]


_ROUNDED = (("start_s", 3), ("peak_s", 3), ("end_s", 3), ("rom_deg", 1), ("eccentric_s", 3), ("pause_s", 3),
            ("concentric_s", 3), ("peak_velocity_dps", 1), ("asymmetry_deg", 1), ("confidence", 3))


def _rounded(values: list[float | None], digits: int) -> list[float | None]:
    """``Rep._num`` of each value: Python's round (by a kernel), None where not finite or None."""
    return _rounded_array(np.array([math.nan if v is None else v for v in values], np.float64), digits)


def _rounded_array(arr: np.ndarray, digits: int) -> list[float | None]:
    """:func:`_rounded` of a float64 array (NaN for None)."""
    r = kernels.round_half_even(arr, digits)
    out: list[float | None] = r.tolist()
    if np.isfinite(r).all():
        return out
    for i, v in enumerate(out):
        if v != v:  # NaN: not finite
            out[i] = None
        elif v == math.inf:  # too large for the kernel
            out[i] = round(float(arr[i]), digits)
    return out


_DIGITS = np.array([d for _, d in _ROUNDED])
_ROWS_3, _ROWS_1 = np.flatnonzero(_DIGITS == 3), np.flatnonzero(_DIGITS == 1)


def _json(c: Columns) -> list[dict[str, object]]:
    # the rows of to_json from the columns; the fields rounded to 3 digits in one array, those to
    # 1 digit with the secondary angles in another; each secondary angle's {min, max} built by column
    k, q = c.values.shape[1], len(c.names)
    r3 = _rounded_array(c.values[_ROWS_3].ravel(), 3)
    r1 = _rounded_array(np.concatenate([c.values[_ROWS_1].ravel(), np.stack([c.lows, c.highs], 1).ravel()]), 1)
    cols: list[list[float | None]] = [[]] * len(_ROUNDED)
    for j, row in enumerate(_ROWS_3.tolist()):
        cols[row] = r3[j * k : (j + 1) * k]
    for j, row in enumerate(_ROWS_1.tolist()):
        cols[row] = r1[j * k : (j + 1) * k]
    at = len(_ROWS_1) * k  # then per angle: its k minima, its k maxima
    bounds = [[{"min_deg": lo, "max_deg": hi} for lo, hi in zip(r1[at + 2 * i * k : at + (2 * i + 1) * k],
                                                               r1[at + (2 * i + 1) * k : at + (2 * i + 2) * k],
                                                               strict=True)]
              for i in range(q)]
    second: list[dict[str, object]] = [{} for _ in range(k)]
    if q == 2:
        a, b = c.names
        second = [{a: x, b: y} for x, y in zip(*bounds, strict=True)]
    elif q:
        second = [dict(zip(c.names, row, strict=True)) for row in zip(*bounds, strict=True)]
    return [
        {"index": i, "start_s": a, "peak_s": b, "end_s": e, "rom_deg": d, "eccentric_s": ec, "pause_s": f,
         "concentric_s": g, "peak_velocity_dps": h, "asymmetry_deg": u, "confidence": v, "faults": list(fl),
         "secondary": sd}
        for i, a, b, e, d, ec, f, g, h, u, v, fl, sd in zip(range(1, k + 1), *cols, c.faults, second, strict=True)
    ]


def to_json(reps: tuple[Rep, ...]) -> list[dict[str, object]]:
    """``[r.to_dict() for r in reps]``, the rounding done for all reps at once."""
    if not reps:
        return []
    keys = ("index", *(name for name, _ in _ROUNDED), "faults", "secondary")
    cols = [_rounded([getattr(r, name) for r in reps], digits) for name, digits in _ROUNDED]
    flat = _rounded([v for r in reps for _, lo, hi in r.secondary for v in (lo, hi)], 1)
    bounds = iter(flat)
    second = [{name: {"min_deg": next(bounds), "max_deg": next(bounds)} for name, _, _ in r.secondary} for r in reps]
    rows = zip([r.index for r in reps], *cols, [list(r.faults) for r in reps], second, strict=True)
    return [dict(zip(keys, row, strict=True)) for row in rows]


def fatigue(reps: tuple[Rep, ...]) -> dict[str, object]:
    """Tempo drift and range-of-motion loss: last third of the set against the first third."""
    if len(reps) < 3:
        return {"tempo_drift_pct": None, "rom_loss_pct": None, "flags": [], "reason": "needs at least 3 reps"}
    k = max(1, len(reps) // 3)
    dur = np.array([r.end_s - r.start_s for r in reps])
    rom = np.array([r.rom_deg for r in reps])
    drift = 100.0 * (dur[-k:].mean() - dur[:k].mean()) / max(dur[:k].mean(), 1e-6)
    loss = 100.0 * (rom[:k].mean() - rom[-k:].mean()) / max(rom[:k].mean(), 1e-6)
    flags = []
    if drift > 20:
        flags.append("tempo_slowing")
    if loss > 15:
        flags.append("rom_loss")
    return {"tempo_drift_pct": round(float(drift), 1), "rom_loss_pct": round(float(loss), 1), "flags": flags,
            "reason": None}
