"""Rep chart: the primary signal over time with every counted rep marked.

Each rep is shaded from ``start_s`` to ``end_s`` and numbered (1-based, in time
order); its ``peak_s`` gets a dotted line; reps with faults are shaded red and
list their fault names. Drawn with matplotlib's Agg canvas directly (no pyplot,
so no global figure state and no display needed). Image size 1400 x 500 px.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..records import Analysis, Rep

if TYPE_CHECKING:
    from matplotlib.axes import Axes

WIDTH_IN, HEIGHT_IN, DPI = 14.0, 5.0, 100
OK_COLOR, FAULT_COLOR, LINE_COLOR = "#2a9d8f", "#d62828", "#1d3557"
MAX_FAULT_CHARS = 18


def write_reps_png(analysis: Analysis, path: Path) -> Path:
    """Draw the rep chart to ``path`` (PNG, overwritten) and return it."""
    path = Path(path)
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # 0.3 s: loaded only to draw
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.06, right=0.99, top=0.90, bottom=0.12)
    ax = fig.add_subplot()
    t = np.asarray(analysis.pose.t, dtype=np.float64)
    signal = np.asarray(analysis.primary_signal, dtype=np.float64)
    ax.plot(t, signal, color=LINE_COLOR, linewidth=1.4)
    for number, rep in enumerate(analysis.reps, start=1):
        _mark_rep(ax, number, rep, t, signal)
    if t.size:
        ax.set_xlim(float(t[0]), float(t[-1]) if t[-1] > t[0] else float(t[0]) + 1.0)
    ax.set_xlabel("time (s)")
    unit = " (deg)" if analysis.primary in analysis.angles.names else ""
    ax.set_ylabel(f"{analysis.primary}{unit}")
    ax.grid(True, alpha=0.3)
    ax.set_title(_title(analysis))
    fig.savefig(path, format="png", dpi=DPI)
    return path


def _mark_rep(ax: Axes, number: int, rep: Rep, t: np.ndarray, signal: np.ndarray) -> None:
    color = FAULT_COLOR if rep.faults else OK_COLOR
    ax.axvspan(rep.start_s, rep.end_s, color=color, alpha=0.15, linewidth=0)
    ax.axvline(rep.peak_s, color=color, linestyle=":", linewidth=1.2)
    peak = _value_at(t, signal, rep.peak_s)
    if peak is not None:
        ax.plot([rep.peak_s], [peak], marker="o", color=color, markersize=5)
    mid = (rep.start_s + rep.end_s) / 2
    # x in data units, y in axes fraction: labels stay at the top whatever the signal range.
    where = ax.get_xaxis_transform()
    ax.text(mid, 0.97, str(number), transform=where, ha="center", va="top",
            fontsize=11, fontweight="bold", color=color)
    if rep.faults:
        text = "\n".join(_short(f) for f in rep.faults)
        ax.text(mid, 0.90, text, transform=where, ha="center", va="top",
                fontsize=8, color=FAULT_COLOR)


def _value_at(t: np.ndarray, signal: np.ndarray, at: float) -> float | None:
    """Signal linearly interpolated at ``at`` over its finite samples; None if there are none."""
    ok = np.isfinite(signal) & np.isfinite(t)
    if not ok.any():
        return None
    return float(np.interp(at, t[ok], signal[ok]))


def _short(fault: str) -> str:
    text = fault.replace("_", " ")
    return text if len(text) <= MAX_FAULT_CHARS else text[: MAX_FAULT_CHARS - 1] + "…"


def _title(analysis: Analysis) -> str:
    """'<exercise> - N reps', tolerant of a summary without those keys."""
    summary = analysis.summary if isinstance(analysis.summary, dict) else {}
    exercise = summary.get("exercise")
    if isinstance(exercise, dict):
        name = str(exercise.get("name") or "exercise")
    elif isinstance(exercise, str) and exercise:
        name = exercise
    else:
        name = "exercise"
    count = summary.get("rep_count", len(analysis.reps))
    return f"{name} - {count} rep{'' if count == 1 else 's'}"
