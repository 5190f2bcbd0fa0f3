"""Per-rep measures, fault rules and fatigue across reps.

For each counted rep: times, range of motion of the primary angle, eccentric /
pause / concentric durations and peak angular velocity (kernel ``rep_phases``),
left/right asymmetry where both sides are visible, a confidence, and the faults
of the exercise's rule table evaluated on named measures such as
``primary_min_deg`` or ``trunk_lean_range_deg``.
"""

from __future__ import annotations

import numpy as np

from . import kernels
from .exercises import Exercise, Fault
from .records import AngleTable, Rep

PAUSE_BAND = 0.05  # within 5% of the rep's range of the turning point counts as a pause


def merged(table: AngleTable, vis: np.ndarray, name: str) -> np.ndarray:
    """A left/right pair merged per frame (visibility-weighted), or a single angle as is."""
    if name in table.names:
        return table[name]
    pair = [f"left_{name}", f"right_{name}"]
    vals = np.vstack([table[p] for p in pair])
    w = np.vstack([vis[:, table.names.index(p)] for p in pair])
    w = np.where(np.isfinite(vals), w, 0.0)
    den = w.sum(axis=0)
    with np.errstate(invalid="ignore"):
        out = (np.where(np.isfinite(vals), vals, 0.0) * w).sum(axis=0) / den
    out[den <= 0] = np.nan
    return out


def _stat(x: np.ndarray, stat: str) -> float:
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return float("nan")
    return float({"min": x.min(), "max": x.max(), "range": x.max() - x.min()}[stat])


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


def rep_measure(name: str, series: Series, a: int, b: int) -> float:
    """Evaluate a measure named ``<angle>_<min|max|range>_deg`` over frames a..b."""
    base, stat, _ = name.rsplit("_", 2)
    return _stat(series(base)[a : b + 1], stat)


def check(fault: Fault, value: float) -> bool:
    if not np.isfinite(value):
        return False
    return value > fault.threshold if fault.op == ">" else value < fault.threshold


def asymmetry(table: AngleTable, name: str, a: int, b: int) -> float | None:
    """Mean |left - right| of a paired angle over the rep; None unless both sides are seen in half of it."""
    pair = [f"left_{name}", f"right_{name}"]
    if not all(p in table.names for p in pair):
        return None
    d = np.abs(table[pair[0]][a : b + 1] - table[pair[1]][a : b + 1])
    if np.isfinite(d).mean() < 0.5:
        return None
    return float(np.nanmean(d))


def rep_faults(ex: Exercise, series: Series, a: int, b: int, asym: float | None) -> tuple[str, ...]:
    """Names of the exercise's fault rules that the rep over frames a..b breaks."""
    out = []
    for f in ex.faults:
        if f.measure == "asymmetry_deg":
            value = float("nan") if asym is None else asym
        else:
            value = rep_measure(f.measure, series, a, b)
        if check(f, value):
            out.append(f.name)
    return tuple(out)


def measure_reps(
    ex: Exercise, table: AngleTable, vis: np.ndarray, t: np.ndarray, signal: np.ndarray, reps: np.ndarray
) -> tuple[Rep, ...]:
    fps = (len(t) - 1) / max(float(t[-1] - t[0]), 1e-6) if len(t) > 1 else 30.0
    series = Series(table, vis, ex.primary)
    primary = kernels.smooth(series("primary"), max(1, int(round(0.05 * fps))))
    phases = kernels.rep_phases(primary, t, reps, PAUSE_BAND) if len(reps) else np.zeros((0, 5))
    pvis = vis[:, [i for i, n in enumerate(table.names) if n.endswith(ex.primary)]].max(axis=1)
    out = []
    for i, (a, p, b) in enumerate(reps):
        a, p, b = int(a), int(p), int(b)
        asym = asymmetry(table, ex.primary, a, b)
        faults = rep_faults(ex, series, a, b, asym)
        amp = float(signal[p] - np.nanmin(signal[a : b + 1]))
        conf = float(np.clip(np.mean(pvis[a : b + 1]), 0, 1) * min(1.0, amp / (1.5 * ex.min_rom_deg)))
        first, pause, second, rom, vel = (float(v) for v in phases[i])
        ecc, conc = (first, second) if ex.eccentric_first else (second, first)
        secondary = tuple(
            (name, rep_measure(f"{name}_min_deg", series, a, b), rep_measure(f"{name}_max_deg", series, a, b))
            for name in ex.secondary
        )
        out.append(Rep(
            index=i + 1, start_s=float(t[a]), peak_s=float(t[p]), end_s=float(t[b]),
            rom_deg=rom if np.isfinite(rom) else amp, eccentric_s=ecc, pause_s=pause, concentric_s=conc,
            peak_velocity_dps=vel, asymmetry_deg=asym, confidence=conf, faults=faults, secondary=secondary,
        ))
    return tuple(out)


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
