"""``formcheck batch DIR --out DIR``: every video under DIR, whole files on the local pool or a
Dask cluster (``--scheduler``), resumable, with a progress bar and ``OUT/summary.csv``."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from pipeline.batch import MANIFEST, SUMMARY, find_videos, run_batch
from pipeline.config import AnalysisConfig
from pipeline.stored import infer_options, resolve_model

from . import settings
from .engines import open_engine
from .progress import Bar

IN_FLIGHT_PER_WORKER = 2  # files submitted per worker: the next one is ready when one ends


def add_parser(sub: argparse._SubParsersAction, cfg: settings.Settings) -> None:  # type: ignore[type-arg]
    from .cli import analysis_options

    b = sub.add_parser(
        "batch", help="analyze every video in a folder (resumable; local pool or a Dask cluster)",
        description=f"Writes OUT/<file>.json per video, OUT/{SUMMARY} and OUT/{MANIFEST}; a rerun skips "
        "files whose content was analyzed before.",
    )
    b.add_argument("folder", type=Path, help="folder of videos (searched recursively)")
    b.add_argument("--out", type=Path, required=True, help="where the results go")
    b.add_argument("--json", action="store_true", help="print the run's counts as one JSON object on stdout")
    analysis_options(b, cfg)


def run(args: argparse.Namespace, conf: AnalysisConfig) -> int:
    """Run the batch; 0 when every file is done (or was before), 1 when some failed."""
    if args.out.exists() and not args.out.is_dir():
        print(f"formcheck: error: --out must be a folder, got {str(args.out)!r} (a file)", file=sys.stderr)
        return 2
    find_videos(args.folder, args.out)  # a bad folder fails before any worker starts
    model = resolve_model(conf)
    # a pool even of one: a worker that crashes costs one file, not the batch
    engine = open_engine(args.scheduler, conf.workers, infer_options(conf, model), pool_of_one=True)
    try:
        assert engine.executor is not None
        outcomes = run_batch(args.folder, args.out, conf, engine.executor, IN_FLIGHT_PER_WORKER * engine.workers,
                             Bar("batch"))
    except BaseException:
        engine.close(True)
        raise
    engine.close(False)
    counts = Counter(o.status for o in outcomes)
    report = {"files": len(outcomes), **{k: counts.get(k, 0) for k in ("done", "cached", "skipped", "failed")},
              "engine": engine.kind, "workers": engine.workers, "summary": str(args.out / SUMMARY)}
    if args.json:
        sys.stdout.write(json.dumps(report) + "\n")
    else:
        print(f"batch: {report['files']} file(s): {report['done']} analyzed, {report['cached']} from the cache, "
              f"{report['skipped']} skipped, {report['failed']} failed; wrote {report['summary']}")
    for o in outcomes:
        if o.status == "failed":
            print(f"formcheck: {o.file}: {o.error}", file=sys.stderr)
    return 1 if counts.get("failed") else 0
