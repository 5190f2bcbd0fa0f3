"""Many videos at once: one whole video per task, on the local pool or a Dask cluster.

Each video is analyzed in one worker (no chunk lead-ins: with many files every core is busy
anyway). Results go to ``OUT/<relative path>.json`` (the CLI's JSON) as each one finishes,
and a line per finished file is appended to ``OUT/batch-manifest.jsonl``: a later run skips
every file whose content (xxh3-128 of its bytes) is listed there with its JSON still present,
whatever the file is called now. ``OUT/summary.csv`` lists every file of the run.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass
from pathlib import Path

from models.registry import ModelSpec

from .analyze import compute
from .cache.keys import file_digest
from .config import AnalysisConfig
from .errors import FormcheckError, InputError
from .infer import InferOptions
from .records import Analysis
from .stored import Lookup, infer_options, lookup, resolve_model, store

VIDEO_EXTS = frozenset({".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".mpg", ".mpeg"})
MANIFEST = "batch-manifest.jsonl"
SUMMARY = "summary.csv"
COLUMNS = ("file", "content_xxh3", "status", "exercise", "reps", "analyzed_frames", "seconds", "output", "error")

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class FileJob:
    """One whole video, analyzed in a worker with ``model`` (``options`` says which file the
    worker loads: the executor may point it at the worker's own copy)."""

    path: str
    cfg: AnalysisConfig
    model: ModelSpec
    options: InferOptions


@dataclass(frozen=True, slots=True)
class Outcome:
    file: str  # relative to the input folder
    digest: str
    status: str  # done | cached | skipped | failed
    output: str = ""
    exercise: str = ""
    reps: int | None = None
    analyzed_frames: int | None = None
    seconds: float | None = None
    error: str = ""

    def row(self) -> dict[str, object]:
        return {"file": self.file, "content_xxh3": self.digest, "status": self.status, "exercise": self.exercise,
                "reps": "" if self.reps is None else self.reps,
                "analyzed_frames": "" if self.analyzed_frames is None else self.analyzed_frames,
                "seconds": "" if self.seconds is None else round(self.seconds, 3), "output": self.output,
                "error": self.error}


def analyze_job(job: FileJob) -> Analysis:
    """In a worker: the whole analysis of one file, inference in this process."""
    model = dataclasses.replace(job.model, path=Path(job.options.model_path))
    found = Lookup(model, None, "", None, time.perf_counter())
    return compute(job.path, job.cfg, found, None, None)


def find_videos(folder: Path, out: Path) -> list[Path]:
    """Video files under ``folder`` (recursively, by extension, sorted), none from under ``out``."""
    if not folder.is_dir():
        raise InputError(f"expected a folder of videos, got {str(folder)!r} (not a directory)")
    out_abs = out.resolve()
    found = []
    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() in VIDEO_EXTS and p.is_file() and out_abs not in p.resolve().parents:
            found.append(p)
    return found


def done_before(out: Path) -> dict[str, str]:
    """content digest -> output JSON (relative to ``out``) of files a previous run finished."""
    done: dict[str, str] = {}
    manifest = out / MANIFEST
    if not manifest.is_file():
        return done
    for line in manifest.read_text().splitlines():
        try:
            rec = json.loads(line)
            digest, output = str(rec["content_xxh3"]), str(rec["output"])
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by an interrupted run
        if (out / output).is_file():
            done[digest] = output
    return done


def _output_name(rel: Path) -> Path:
    return rel.with_name(rel.name + ".json")


def _write_json(path: Path, summary: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    tmp.write_text(json.dumps(summary, allow_nan=False) + "\n")
    os.replace(tmp, path)


def _outcome(rel: str, digest: str, status: str, output: str, summary: dict[str, object], s: float) -> Outcome:
    ex, frames, reps = summary.get("exercise"), summary.get("frames"), summary.get("rep_count")
    return Outcome(
        rel, digest, status, output,
        exercise=str(ex.get("name", "")) if isinstance(ex, dict) else "",
        reps=reps if isinstance(reps, int) else None,
        analyzed_frames=int(frames["analyzed"]) if isinstance(frames, dict) else None,
        seconds=s,
    )


def run_batch(
    folder: Path, out: Path, cfg: AnalysisConfig, executor: Executor, in_flight: int,
    progress: Progress | None = None,
) -> list[Outcome]:
    """Analyze every video under ``folder`` into ``out``; at most ``in_flight`` at once on
    ``executor`` (whole files: a Dask cluster holds only those files' bytes at a time)."""
    out.mkdir(parents=True, exist_ok=True)
    videos = find_videos(folder, out)
    done = done_before(out)
    model = resolve_model(cfg)
    options = infer_options(cfg, model)
    outcomes: dict[int, Outcome] = {}
    seen: dict[str, int] = {}  # digest -> index of the first file with it in this run
    todo: list[tuple[int, Path, str, str, Lookup]] = []
    for i, path in enumerate(videos):
        rel = str(path.relative_to(folder))
        digest = file_digest(path)
        if digest in done:
            outcomes[i] = Outcome(rel, digest, "skipped", done[digest], error="analyzed by an earlier run")
        elif digest in seen:
            first = str(videos[seen[digest]].relative_to(folder))
            outcomes[i] = Outcome(rel, digest, "skipped", "", error=f"same content as {first}")
        else:
            seen[digest] = i
            try:
                found = lookup(str(path), cfg) if cfg.cache is not None else _no_lookup(model)
            except FormcheckError as exc:  # e.g. a zero-byte file: this file fails, not the batch
                outcomes[i] = Outcome(rel, digest, "failed", error=str(exc))
                continue
            todo.append((i, path, rel, digest, found))
    total = len(videos)
    if progress:
        progress(len(outcomes), total)
    with (out / MANIFEST).open("a") as manifest:
        for i, outcome in _analyze(todo, out, cfg, model, options, executor, max(1, in_flight)):
            outcomes[i] = outcome
            if outcome.status in ("done", "cached"):
                manifest.write(json.dumps({"file": outcome.file, "content_xxh3": outcome.digest,
                                           "output": outcome.output}) + "\n")
                manifest.flush()
            if progress:
                progress(len(outcomes), total)
    result = [outcomes[i] for i in sorted(outcomes)]
    write_summary(out / SUMMARY, result)
    return result


def _no_lookup(model: ModelSpec) -> Lookup:
    return Lookup(model, None, "", None, time.perf_counter())


def _analyze(
    todo: list[tuple[int, Path, str, str, Lookup]], out: Path, cfg: AnalysisConfig, model: ModelSpec,
    options: InferOptions, executor: Executor, in_flight: int,
) -> Iterator[tuple[int, Outcome]]:
    pending: dict[Future[Analysis], tuple[int, str, str, Lookup, float]] = {}
    queue = iter(todo)
    exhausted = False
    while True:
        while not exhausted and len(pending) < in_flight:
            item = next(queue, None)
            if item is None:
                exhausted = True
                break
            i, path, rel, digest, found = item
            output = str(_output_name(Path(rel)))
            if found.hit is not None:  # the whole-result cache already knows these bytes
                _write_json(out / output, found.hit.summary)
                yield i, _outcome(rel, digest, "cached", output, found.hit.summary, 0.0)
                continue
            job = FileJob(str(path), cfg, model, options)
            pending[executor.submit(analyze_job, job)] = (i, rel, digest, found, time.perf_counter())
        if not pending:
            return
        finished, _ = wait(list(pending), return_when=FIRST_COMPLETED)
        for fut in finished:
            i, rel, digest, found, t0 = pending.pop(fut)
            output = str(_output_name(Path(rel)))
            try:
                result = fut.result()
            except FormcheckError as exc:
                yield i, Outcome(rel, digest, "failed", error=str(exc))
                continue
            except Exception as exc:  # noqa: BLE001 - a worker's failure is this file's, not the batch's
                yield i, Outcome(rel, digest, "failed", error=f"{type(exc).__name__}: {exc}")
                continue
            store(found, result)
            summary = result.summary
            _write_json(out / output, summary)
            yield i, _outcome(rel, digest, "done", output, summary, time.perf_counter() - t0)


def write_summary(path: Path, outcomes: list[Outcome]) -> None:
    tmp = path.with_name(f".{path.name}.part")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for o in outcomes:
            w.writerow(o.row())
    os.replace(tmp, path)
