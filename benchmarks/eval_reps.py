"""Accuracy of the rep counter on a labeled clip set (e.g. ../shared/eval/dev).

Usage::

    python benchmarks/eval_reps.py --data DIR [--workers N] [--json OUT] [--markdown OUT] [--fps F]

DIR holds the videos, ``labels.csv`` (file, exercise, reps, fps, view, ...) and optionally
``events.csv`` (file, kind=rep|partial, peak_lo, peak_hi: frame range of each turning point).

Steps, per clip: infer the pose once (``pipeline.analyze.infer_pose``), then ``finish`` it
twice, with the labeled exercise ('given') and with auto detection ('auto'). Scores:

- count: MAE = mean |pred - true| / true, OBO = share with |pred - true| <= 1, exact accuracy;
- exercise detection accuracy and view accuracy (informational);
- peaks: each predicted rep's ``peak_s`` (as the nearest analyzed frame) is matched one to one
  to a ``kind=rep`` event within 0.25 s of its [peak_lo, peak_hi] range; a peak that only lands
  on a ``partial`` event is a false positive (counting partials is wrong). Precision/recall/F1
  are micro-averaged over clips.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from api import settings
from pipeline.analyze import finish, infer_options, infer_pose, resolve_model
from pipeline.config import AUTO, DEFAULT_FPS, AnalysisConfig
from pipeline.errors import FormcheckError
from pipeline.pool import make_pool

TOL_S = 0.25
MODES = ("given", "auto")


@dataclass(frozen=True, slots=True)
class Event:
    kind: str  # 'rep' | 'partial'
    lo: int  # first frame of the turning point
    hi: int  # last frame of the turning point


@dataclass(frozen=True, slots=True)
class PeakMatch:
    tp: int
    fp: int
    fn: int
    fp_partial: int = 0  # false positives that landed on a partial rep


# ---- pure scoring ---------------------------------------------------------------------------


def count_scores(pairs: Sequence[tuple[int, int]]) -> dict[str, float]:
    """(pred, true) pairs -> n, mae (|p-t|/t; absolute when t == 0), obo, exact. Empty -> NaN."""
    if not pairs:
        return {"n": 0, "mae": float("nan"), "obo": float("nan"), "exact": float("nan")}
    err = [abs(p - t) for p, t in pairs]
    rel = [e / t if t > 0 else float(e) for e, (_, t) in zip(err, pairs, strict=True)]
    return {
        "n": len(pairs), "mae": float(np.mean(rel)),
        "obo": float(np.mean([e <= 1 for e in err])), "exact": float(np.mean([e == 0 for e in err])),
    }


def gap(frame: float, ev: Event) -> float:
    """Frames from ``frame`` to the event's [lo, hi] range (0 inside)."""
    return max(ev.lo - frame, 0.0, frame - ev.hi)


def match_peaks(peaks: Sequence[float], events: Sequence[Event], tol: float) -> PeakMatch:
    """Greedy one-to-one matching (closest pairs first) of predicted peak frames to rep events."""
    reps = [e for e in events if e.kind == "rep"]
    pairs = sorted(
        (gap(p, e), i, j) for i, p in enumerate(peaks) for j, e in enumerate(reps) if gap(p, e) <= tol
    )
    used_p: set[int] = set()
    used_e: set[int] = set()
    for _, i, j in pairs:
        if i not in used_p and j not in used_e:
            used_p.add(i)
            used_e.add(j)
    partials = [e for e in events if e.kind == "partial"]
    stray = [p for i, p in enumerate(peaks) if i not in used_p]
    on_partial = sum(any(gap(p, e) <= tol for e in partials) for p in stray)
    return PeakMatch(len(used_p), len(stray), len(reps) - len(used_e), on_partial)


def prf(m: PeakMatch) -> dict[str, float]:
    """Precision, recall, F1. A zero denominator scores 1 when nothing was wrong, else 0."""
    p = m.tp / (m.tp + m.fp) if m.tp + m.fp else float(m.fn == 0)
    r = m.tp / (m.tp + m.fn) if m.tp + m.fn else float(m.fp == 0)
    f1 = 2 * p * r / (p + r) if p + r > 0 else 0.0
    return {"tp": m.tp, "fp": m.fp, "fn": m.fn, "fp_partial": m.fp_partial,
            "precision": p, "recall": r, "f1": f1}


def total(matches: Sequence[PeakMatch]) -> PeakMatch:
    return PeakMatch(*(sum(getattr(m, f) for m in matches) for f in ("tp", "fp", "fn", "fp_partial")))


def nearest_frames(peaks_s: Sequence[float], t: np.ndarray, frame: np.ndarray) -> list[int]:
    """Source frame index of the analyzed frame (times ``t``, indices ``frame``) nearest each time."""
    if len(t) == 0:
        return []
    pick = np.abs(np.asarray(t)[None, :] - np.asarray(peaks_s, dtype=float)[:, None]).argmin(axis=1)
    return [int(frame[i]) for i in pick]


# ---- data ------------------------------------------------------------------------------------


def load(data: Path) -> tuple[list[dict[str, str]], dict[str, list[Event]]]:
    """labels rows and events per file; exits with a message when something is missing."""
    if not data.is_dir():
        sys.exit(f"eval_reps: expected a directory with videos and labels.csv; {data} is not a directory")
    if not (data / "labels.csv").is_file():
        sys.exit(f"eval_reps: expected {data / 'labels.csv'}; it does not exist")
    with open(data / "labels.csv", newline="") as f:
        labels = list(csv.DictReader(f))
    need = {"file", "exercise", "reps", "fps", "view"}
    if labels and not need <= labels[0].keys():
        sys.exit(f"eval_reps: labels.csv needs columns {sorted(need)}; got {sorted(labels[0].keys())}")
    missing = [r["file"] for r in labels if not (data / r["file"]).is_file()]
    if missing:
        sys.exit(f"eval_reps: labels.csv lists videos that are not in {data}: {', '.join(missing)}")
    events: dict[str, list[Event]] = {}
    if (data / "events.csv").is_file():
        with open(data / "events.csv", newline="") as f:
            for r in csv.DictReader(f):
                events.setdefault(r["file"], []).append(Event(r["kind"], int(r["peak_lo"]), int(r["peak_hi"])))
    return labels, events


# ---- run -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModeResult:
    pred: int
    peak_frames: list[int]
    match: PeakMatch | None  # None when the data set has no events.csv


@dataclass(frozen=True, slots=True)
class ClipResult:
    file: str
    exercise: str
    true: int
    detected: str
    confidence: float
    view_true: str
    view_detected: str
    wall_s: float
    given: ModeResult
    auto: ModeResult

    def mode(self, m: str) -> ModeResult:
        return self.given if m == "given" else self.auto


def evaluate_clip(
    path: Path, row: dict[str, str], events: list[Event] | None, cfg: AnalysisConfig, pool: Executor | None
) -> ClipResult:
    """Infer once, finish with the labeled exercise and with auto detection."""
    inf = infer_pose(str(path), cfg, pool)
    info, pose, model, stride, wall_s, infer_s = inf.info, inf.pose, inf.model, inf.stride, inf.wall_s, inf.infer_s
    tol = TOL_S * float(row.get("fps") or info.fps)
    res: dict[str, ModeResult] = {}
    summ: dict[str, Any] = {}
    for m in MODES:
        c = replace(cfg, exercise=row["exercise"] if m == "given" else AUTO)
        summ = finish(info, pose, c, model, stride, wall_s, infer_s).summary
        peaks = nearest_frames([r["peak_s"] for r in summ["reps"]], pose.t, pose.frame)
        res[m] = ModeResult(summ["rep_count"], peaks, None if events is None else match_peaks(peaks, events, tol))
    return ClipResult(
        row["file"], row["exercise"], int(row["reps"]), summ["exercise"]["name"], summ["exercise"]["confidence"],
        row["view"], summ["view"]["name"], round(wall_s, 2), res["given"], res["auto"],
    )


def run(data: Path, workers: int, fps: float) -> list[ClipResult]:
    labels, events = load(data)
    env = settings.load()
    cfg = AnalysisConfig(model_cache=env.model_cache, fps=fps, workers=workers, max_side=env.max_side)
    model = resolve_model(cfg)
    pool = make_pool(workers, infer_options(cfg, model)) if workers > 1 else None
    out = []
    try:
        for k, row in enumerate(labels, 1):
            t0 = time.perf_counter()
            ev = events.get(row["file"], []) if events else None
            try:
                out.append(evaluate_clip(data / row["file"], row, ev, cfg, pool))
            except FormcheckError as exc:
                sys.exit(f"eval_reps: {row['file']}: {exc}")
            print(f"[{k}/{len(labels)}] {row['file']} {time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    return out


# ---- report ----------------------------------------------------------------------------------


def scores(rows: Sequence[ClipResult]) -> dict[str, Any]:
    """Count scores per exercise and overall; peak scores over all clips (when events exist)."""
    names = sorted({r.exercise for r in rows})
    out: dict[str, Any] = {}
    for name, rs in [("overall", rows), *((n, [r for r in rows if r.exercise == n]) for n in names)]:
        g: dict[str, Any] = {m: count_scores([(r.mode(m).pred, r.true) for r in rs]) for m in MODES}
        g["detection"] = float(np.mean([r.detected == r.exercise for r in rs]))
        g["view"] = float(np.mean([r.view_detected == r.view_true for r in rs]))
        out[name] = g
    if rows and all(r.given.match is not None for r in rows):
        out["peaks"] = {m: prf(total([r.mode(m).match for r in rows])) for m in MODES}  # type: ignore[misc]
    return out


def _table(head: Sequence[str], body: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in b) + " |" for b in body])


def _pr(m: PeakMatch | None) -> str:
    return "-" if m is None else "{precision:.2f} / {recall:.2f}".format(**prf(m))


def markdown(rows: Sequence[ClipResult], sc: dict[str, Any]) -> str:
    f = "{:.3f}".format
    clips = _table(
        ("file", "exercise", "true", "given", "auto", "detected (conf)", "view true/det",
         "peak P/R given", "peak P/R auto"),
        [(r.file, r.exercise, r.true, r.given.pred, r.auto.pred, f"{r.detected} ({r.confidence:.2f})",
          f"{r.view_true}/{r.view_detected}", _pr(r.given.match), _pr(r.auto.match)) for r in rows],
    )
    counts = _table(
        ("group", "n", "MAE given", "OBO given", "exact given", "MAE auto", "OBO auto", "exact auto",
         "detection", "view"),
        [(k, g["given"]["n"], *(f(g[m][s]) for m in MODES for s in ("mae", "obo", "exact")), f(g["detection"]),
          f(g["view"])) for k, g in sc.items() if k != "peaks"],
    )
    parts = ["## Per clip", clips, "## Counts (MAE = mean |pred-true|/true, OBO = |pred-true| <= 1)", counts]
    if "peaks" in sc:
        p = sc["peaks"]
        parts += ["## Turning points (one to one, within 0.25 s of a labeled rep)", _table(
            ("mode", "tp", "fp", "fp on partial", "fn", "precision", "recall", "F1"),
            [(m, p[m]["tp"], p[m]["fp"], p[m]["fp_partial"], p[m]["fn"], f(p[m]["precision"]), f(p[m]["recall"]),
              f(p[m]["f1"])) for m in MODES],
        )]
    return "\n\n".join(parts) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="directory with videos, labels.csv, events.csv")
    ap.add_argument("--workers", type=int, default=2, help="inference processes (1: in this process)")
    ap.add_argument("--json", type=Path, help="write all numbers here")
    ap.add_argument("--markdown", type=Path, help="write the tables here")
    ap.add_argument("--fps", type=float, default=DEFAULT_FPS,
                    help=f"analysis frame rate (default {DEFAULT_FPS:g}, the product's; 0: every frame)")
    args = ap.parse_args(argv)
    if args.workers < 1:
        ap.error("--workers must be >= 1")
    rows = run(args.data, args.workers, args.fps)
    sc = scores(rows)
    md = markdown(rows, sc)
    print(md)
    if args.markdown:
        args.markdown.write_text(md)
    if args.json:
        args.json.write_text(json.dumps(
            {"data": str(args.data), "fps": args.fps, "clips": [asdict(r) for r in rows], "scores": sc}, indent=2
        ))


if __name__ == "__main__":
    main()
