"""Per-frame CSV of an analysis: one row per analyzed frame, opens in any spreadsheet.

Columns: ``frame, t_s, detected, primary_<primary>, <every angle...>, rep_count, in_rep``.

- frame: source frame index; t_s: seconds, rounded to the millisecond.
- detected: 1 if a pose was found in the frame, else 0.
- primary_<name>: the primary signal. It is prefixed because the primary is often
  an angle that also has its own column (and may differ from it, e.g. smoothed).
- angles: degrees rounded to 0.1.
- rep_count: reps whose ``end_s <= t`` (running count).
- in_rep: 1-based number of the rep whose ``[start_s, end_s]`` contains t, else empty.

Missing values (NaN) are written as empty cells.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from ..records import Analysis, Rep


def write_angles_csv(analysis: Analysis, path: Path) -> Path:
    """Write the per-frame table to ``path`` (overwritten) and return it."""
    path = Path(path)
    t = np.asarray(analysis.pose.t, dtype=np.float64)
    angles = analysis.angles
    signal = np.asarray(analysis.primary_signal, dtype=np.float64)
    if signal.shape != t.shape or angles.values.shape[0] != t.shape[0]:
        raise ValueError(
            f"analysis arrays disagree: expected primary_signal {t.shape} and angles "
            f"({t.shape[0]}, m), got {signal.shape} and {angles.values.shape}"
        )
    signal_fmt = "{:.1f}" if analysis.primary in angles.names else "{:.4g}"
    counts = rep_counts(t, analysis.reps)
    inside = rep_numbers(t, analysis.reps)
    detected = analysis.pose.detected

    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["frame", "t_s", "detected", f"primary_{analysis.primary}",
             *angles.names, "rep_count", "in_rep"]
        )
        for i in range(t.shape[0]):
            writer.writerow([
                int(analysis.pose.frame[i]),
                _fmt(t[i], "{:.3f}"),
                int(bool(detected[i])),
                _fmt(signal[i], signal_fmt),
                *(_fmt(v, "{:.1f}") for v in angles.values[i]),
                int(counts[i]),
                int(inside[i]) if inside[i] else "",
            ])
    return path


def rep_counts(t: np.ndarray, reps: tuple[Rep, ...]) -> np.ndarray:
    """(n,) int: how many reps have ended (``end_s <= t``) at each time."""
    ends = np.array([r.end_s for r in reps], dtype=np.float64)
    return (ends[None, :] <= t[:, None]).sum(axis=1)


def rep_numbers(t: np.ndarray, reps: tuple[Rep, ...]) -> np.ndarray:
    """(n,) int: 1-based number of the rep containing each time, 0 outside every rep.

    Where two reps touch (one ends as the next starts) the later rep wins.
    """
    out = np.zeros(t.shape[0], dtype=np.int64)
    for number, rep in enumerate(reps, start=1):
        out[(t >= rep.start_s) & (t <= rep.end_s)] = number
    return out


def _fmt(value: float, fmt: str) -> str:
    return "" if not math.isfinite(value) else fmt.format(value)
