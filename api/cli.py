"""Command line front: ``formcheck analyze VIDEO``, ``demo``, ``batch DIR``, ``serve``, ``keys``,
``recommend``.

Exit codes: 0 done; 2 bad input or option; 3 model problem; 4 an inference
worker failed; 5 the Dask scheduler unreachable or without workers; 1 anything
unexpected (message on stderr, traceback only with ``--debug``; for ``batch``: some
files failed); 130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from pipeline.config import AUTO, DEFAULT_FPS, AnalysisConfig
from pipeline.errors import ClusterError, FormcheckError, InputError, ModelError, WorkerError
from pipeline.exercises import GENERIC, NAMES
from pipeline.stored import infer_options, lookup

from . import samples, settings
from .engines import Engine, open_engine
from .progress import Bar

EXIT: dict[type[Exception], int] = {
    InputError: 2, NotADirectoryError: 2, ModelError: 3, WorkerError: 4, ClusterError: 5,
}


def _bounded(lo: int, hi: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {raw!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"expected {lo}..{hi}, got {value}")
        return value

    return parse


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, like every other error (exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"formcheck: error: {message} (see '{self.prog} --help')\n")


def _parser(cfg: settings.Settings) -> argparse.ArgumentParser:
    p = _Parser(prog="formcheck", description="Count reps and check form in workout videos.")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("analyze", help="analyze a workout video")
    a.add_argument("video", help="path to a video file")
    _common(a, cfg)
    d = sub.add_parser("demo", help="download a real sample clip (from the sports2d wheel) and analyze it")
    _common(d, cfg, default_out="formcheck-demo")
    sv = sub.add_parser("serve", help="run the HTTP API (uploads, jobs, frames, results)")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    sv.add_argument("--port", type=_bounded(1, 65535), default=8000, help="port (default 8000)")
    sv.add_argument("--workers", type=_bounded(1, 64), default=1,
                    help="API worker processes (default 1); FORMCHECK_WORKERS inference processes are split "
                    "between them")
    sv.add_argument("--open", action="store_true", help="no API keys (development only)")
    sv.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                    help="run inference on this Dask scheduler's workers (default: FORMCHECK_SCHEDULER, "
                    "else local processes)")
    sv.add_argument("--data-dir", type=Path, default=None,
                    help=f"jobs database, uploads and artifacts (default {cfg.server.data_dir})")
    k = sub.add_parser("keys", help="manage API keys")
    ksub = k.add_subparsers(dest="keys_command", required=True)
    kc = ksub.add_parser("create", help="create an API key and print it on stdout (shown only once)")
    kc.add_argument("--name", default="default", help="a label for the key")
    kc.add_argument("--data-dir", type=Path, default=None, help="as for serve")
    from .batch_cmd import add_parser as add_batch
    from .recommend.cli import add_parser as add_recommend

    add_batch(sub, cfg)
    add_recommend(sub)
    return p


def _common(p: argparse.ArgumentParser, cfg: settings.Settings, default_out: str | None = None) -> None:
    p.add_argument("--out", type=Path, default=Path(default_out) if default_out else None,
                   help="write analysis.json, angles.csv, annotated.mp4, reps.png here")
    p.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    p.add_argument("--no-video", action="store_true", help="skip annotated.mp4")
    analysis_options(p, cfg)


def analysis_options(p: argparse.ArgumentParser, cfg: settings.Settings) -> None:
    p.add_argument("--exercise", default=AUTO, choices=(AUTO, GENERIC, *NAMES),
                   help="exercise, or auto to detect it (default: auto)")
    p.add_argument("--fps", type=float, default=DEFAULT_FPS,
                   help=f"analyze at least this many frames/s, skipping the rest (default {DEFAULT_FPS:g}; "
                   "0: every frame)")
    p.add_argument("--workers", type=_bounded(1, 64), default=cfg.workers,
                   help=f"inference processes (default {cfg.workers}; with --scheduler: the cluster's)")
    p.add_argument("--scheduler", default=cfg.scheduler, metavar="tcp://HOST:PORT",
                   help="run inference on this Dask scheduler's workers (default: FORMCHECK_SCHEDULER, "
                   "else a local process pool)")
    p.add_argument("--model", default=None, help="path to a pose landmarker .task file (default: bundled full)")
    p.add_argument("--people", type=_bounded(1, 6), default=1,
                   help="people to look for per frame, 1..6 (the subject is chosen among them)")
    p.add_argument("--max-side", type=int, default=cfg.max_side, help="downscale longer side before inference")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the result and frame caches")


def _config(args: argparse.Namespace, cfg: settings.Settings) -> AnalysisConfig:
    return AnalysisConfig(
        model_cache=cfg.model_cache, exercise=args.exercise, fps=args.fps, max_side=args.max_side,
        workers=args.workers, model=args.model, num_poses=args.people, cache=cfg.cache(not args.no_cache),
    )


def run_analysis(video: str, args: argparse.Namespace, cfg: settings.Settings) -> dict[str, object]:
    from pipeline import outputs  # matplotlib and the video writer load only when needed

    conf = _config(args, cfg)
    if args.out is not None:
        outputs.check_dir(args.out)  # a bad --out fails before the analysis, creating nothing
    found = lookup(video, conf)  # a cache hit answers here: no worker started, no kernels loaded
    engine: Engine | None = None
    try:
        if found.hit is not None:
            result = found.hit
        else:
            # local workers start and warm while this process loads the features stage
            engine = open_engine(args.scheduler, conf.workers, infer_options(conf, found.model))
            conf = dataclasses.replace(conf, workers=engine.workers)
            from pipeline.analyze import compute  # numba and the kernels' disk cache: ~0.7 s

            result = compute(video, conf, found, engine.executor, Bar("analyzing"))
    except BaseException:
        if engine is not None:
            engine.close(True)  # a failed or interrupted analysis must not wait for busy workers
        raise
    if engine is not None:
        engine.close(False)
    summary = result.summary
    if args.out is not None:
        paths = outputs.write_all(result, args.out, Bar("rendering"), video=not args.no_video)
        summary = {**summary, "outputs": {k: str(v) for k, v in paths.items()}}
    return summary


def _fmt(x: object, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def _human(s: dict[str, object]) -> str:
    ex = s["exercise"]
    assert isinstance(ex, dict)
    lines = [
        f"exercise: {ex['name']} ({ex['source']}, confidence {ex['confidence']:.2f}); view: {s['view']['name']}",  # type: ignore[index]
        f"reps: {s['rep_count']}" + (f"  ({s['reason']})" if s.get("reason") else ""),
    ]
    for r in s["reps"]:  # type: ignore[attr-defined]
        faults = ", ".join(r["faults"]) or "-"
        lines.append(
            f"  #{r['index']:<2} {r['start_s']:6.2f}-{r['end_s']:6.2f}s  turn {r['peak_s']:6.2f}s  "
            f"ROM {_fmt(r['rom_deg'], '5.1f')}°  eccentric {_fmt(r['eccentric_s'])}s pause {_fmt(r['pause_s'])}s "
            f"concentric {_fmt(r['concentric_s'])}s  faults: {faults}"
        )
    fat = s.get("fatigue") or {}
    if isinstance(fat, dict) and fat.get("tempo_drift_pct") is not None:
        lines.append(f"fatigue: tempo drift {fat['tempo_drift_pct']}%, ROM loss {fat['rom_loss_pct']}% {fat['flags']}")
    t = s["timing"]
    rate = "cached result" if t["fps"] is None else f"{t['fps']} frames/s"  # type: ignore[index]
    lines.append(f"time: {t['wall_s']}s ({rate})")  # type: ignore[index]
    if "outputs" in s:
        lines.append("wrote: " + ", ".join(s["outputs"].values()))  # type: ignore[union-attr]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = settings.load()
    except settings.SettingsError as exc:
        print(f"formcheck: error: {exc}", file=sys.stderr)
        return 2
    args = _parser(cfg).parse_args(argv)
    if args.command in ("serve", "keys"):
        return _server_command(args)
    if args.command == "recommend":
        from .recommend.cli import run as recommend

        return recommend(args, cfg)
    try:
        if args.command == "batch":
            from . import batch_cmd

            return batch_cmd.run(args, _config(args, cfg))
        if args.command == "demo":
            print("formcheck: fetching the sample clip (sports2d wheel, cached)...", file=sys.stderr)
            video = str(samples.fetch("sports2d_demo", cfg.sample_cache))
        else:
            video = args.video
        summary = run_analysis(video, args, cfg)
    except KeyboardInterrupt:
        print("formcheck: interrupted", file=sys.stderr)
        return 130
    except (FormcheckError, samples.FetchError, OSError) as exc:
        if args.debug:
            traceback.print_exc()
        code = next((c for k, c in EXIT.items() if isinstance(exc, k)), 1)
        print(f"formcheck: error: {exc}", file=sys.stderr)
        return code
    except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
        if args.debug:
            traceback.print_exc()
        print(f"formcheck: unexpected error ({type(exc).__name__}): {exc} (rerun with --debug)", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.write(json.dumps(summary, allow_nan=False) + "\n")
    else:
        print(_human(summary))
    return 0


def _server_command(args: argparse.Namespace) -> int:
    from . import serve

    if args.data_dir is not None:
        settings.export(FORMCHECK_DATA_DIR=str(args.data_dir))  # read back by settings in every process
    if getattr(args, "scheduler", None):
        settings.export(FORMCHECK_SCHEDULER=args.scheduler)
    try:
        settings.load()  # a bad setting fails here, before any process starts
        if args.command == "keys":
            return serve.create_key(args.name)
        return serve.serve(args.host, args.port, args.workers, args.open)
    except settings.SettingsError as exc:
        print(f"formcheck: error: {exc}", file=sys.stderr)
        return 2
    except ClusterError as exc:
        print(f"formcheck: error: {exc}", file=sys.stderr)
        return 5
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        print(f"formcheck: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
