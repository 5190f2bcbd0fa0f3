"""Small builders and checks shared by the CLI-level suites (no fixtures here; see conftest.py).

- ``load_fetch_samples``: the sample fetcher, ``api.samples`` (``scripts/fetch_samples.py`` is its CLI).
- Video builders over OpenCV: ``read_frames``, ``write_video``, ``cut_clip``.
- Label readers for the dev set: ``label``, ``events``.
- CLI output checks: ``meaningful_lines`` (drops MediaPipe/FFmpeg/progress noise),
  ``assert_no_traceback``, ``error_line``, ``parse_json_stdout``, ``check_summary``.
"""

from __future__ import annotations

import csv
import gc
import json
import re
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]

# Lines other libraries print on stderr: absl/MediaPipe (W0000..., I0000..., "INFO: Created
# TensorFlow Lite...", "WARNING: All log messages..."), FFmpeg ("[h264 @ 0x...]") and
# OpenCV ("[ WARN:0@1.1] ..."), plus our own progress bars.
NOISE = re.compile(
    r"^(?:[WIE]\d{4} |INFO: |WARNING: |ERROR: |\[ ?WARN:|\[[^\]]+ @ 0x[0-9a-f]+\]|(?:analyzing|rendering)\s+\[)"
)

EXERCISE_NAMES = ("squat", "lunge", "pushup", "bicep_curl", "shoulder_press", "jumping_jack", "pullup", "situp")


class CliResult(NamedTuple):
    code: int
    stdout: str
    stderr: str


def load_fetch_samples() -> ModuleType:
    import api.samples

    return api.samples


@contextmanager
def mediapipe_file_leaks_ignored() -> Iterator[None]:
    """Building a bundle runs MediaPipe's metadata writer, which leaks an open temp file
    (``mediapipe/tasks/python/metadata/metadata.py`` ``_open_as_zipfile`` hands ``ZipFile`` a file
    object nobody closes). Under ``filterwarnings = error`` its ResourceWarning would surface as an
    unraisable exception in whatever test runs next, so collect it here with the warning ignored."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            yield
        finally:
            gc.collect()


# --- videos -----------------------------------------------------------------------------------


def read_frames(path: Path, start: int = 0, stop: int | None = None) -> tuple[list[np.ndarray], float]:
    """BGR frames ``start <= i < stop`` of ``path`` and the container's fps."""
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"cannot open {path}"
    fps = float(cap.get(cv2.CAP_PROP_FPS))
    frames, i = [], 0
    try:
        while stop is None or i < stop:
            ok, img = cap.read()
            if not ok:
                break
            if i >= start:
                frames.append(img)
            i += 1
    finally:
        cap.release()
    assert frames, f"no frames {start}..{stop} in {path}"
    return frames, fps


def write_video(path: Path, frames: Iterable[np.ndarray], fps: float) -> Path:
    """Write BGR frames (all the same size) as an MPEG-4 Part 2 ('mp4v') .mp4."""
    writer = None
    n = 0
    for img in frames:
        if writer is None:
            h, w = img.shape[:2]
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
            assert writer.isOpened(), f"cv2 cannot write {path}"
        writer.write(np.ascontiguousarray(img))
        n += 1
    assert writer is not None and n > 0, "no frames to write"
    writer.release()
    return path


def cut_clip(src: Path, dst: Path, start: int, stop: int) -> Path:
    frames, fps = read_frames(src, start, stop)
    return write_video(dst, frames, fps)


def mp4_top_boxes(path: Path) -> list[str]:
    """Top-level ISO-BMFF box types in file order, e.g. ['ftyp', 'free', 'mdat', 'moov']."""
    data = path.read_bytes()
    boxes, i = [], 0
    while i + 8 <= len(data):
        size = int.from_bytes(data[i:i + 4], "big")
        kind = data[i + 4:i + 8].decode("latin-1")
        if size == 1:
            size = int.from_bytes(data[i + 8:i + 16], "big")
        boxes.append(kind)
        if size < 8:
            break
        i += size
    return boxes


def decoded_frame_count(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    try:
        while cap.read()[0]:
            n += 1
    finally:
        cap.release()
    return n


# --- labels -----------------------------------------------------------------------------------


def label(dev_dir: Path, file: str) -> dict[str, str]:
    with (dev_dir / "labels.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["file"] == file]
    assert len(rows) == 1, f"labels.csv has {len(rows)} rows for {file}"
    return rows[0]


def events(dev_dir: Path, file: str, kind: str = "rep") -> list[tuple[float, float]]:
    """Labeled turning-point ranges of ``file`` in seconds (peak_lo / fps, peak_hi / fps)."""
    with (dev_dir / "events.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["file"] == file and r["kind"] == kind]
    return [(int(r["peak_lo"]) / float(r["fps"]), int(r["peak_hi"]) / float(r["fps"])) for r in rows]


def within(t: float, lo: float, hi: float, tol: float = 0.25) -> bool:
    return lo - tol <= t <= hi + tol


# --- CLI output -------------------------------------------------------------------------------


def meaningful_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.strip() and not NOISE.match(ln)]


def assert_no_traceback(res: CliResult) -> None:
    assert "Traceback" not in res.stderr, f"traceback on stderr:\n{res.stderr[-3000:]}"
    assert "Traceback" not in res.stdout


def error_line(res: CliResult) -> str:
    """The one ``formcheck: error: ...`` line; fails unless it is the only thing said on stderr."""
    assert_no_traceback(res)
    said = meaningful_lines(res.stderr)
    errors = [ln for ln in said if ln.startswith("formcheck: error: ")]
    assert len(errors) == 1 and said == errors, f"expected one error line, stderr said: {said}"
    assert res.stdout == "", f"nothing belongs on stdout on error, got {res.stdout[:300]!r}"
    return errors[0]


def parse_json_stdout(res: CliResult) -> dict[str, object]:
    """stdout must be exactly one JSON object (one line, nothing before or after)."""
    assert_no_traceback(res)
    assert res.code == 0, f"exit {res.code}; stderr said: {meaningful_lines(res.stderr)}"
    assert res.stdout.endswith("\n") and res.stdout.count("\n") == 1, f"stdout: {res.stdout[:500]!r}"
    doc = json.loads(res.stdout)
    assert isinstance(doc, dict)
    return doc


def _num(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and np.isfinite(x)


def check_summary(d: dict[str, object]) -> None:
    """The documented keys and types of the analysis JSON (values checked by each test)."""
    assert d["schema_version"] == 1
    ex = d["exercise"]
    assert isinstance(ex, dict)
    assert ex["name"] in (*EXERCISE_NAMES, "generic"), ex
    assert ex["source"] in ("given", "detected"), ex
    assert _num(ex["confidence"]) and 0.0 <= ex["confidence"] <= 1.0, ex
    view = d["view"]
    assert isinstance(view, dict) and view["name"] in ("side", "front", "oblique", "back", "unknown"), view
    reps = d["reps"]
    assert isinstance(reps, list)
    assert isinstance(d["rep_count"], int) and d["rep_count"] == len(reps)
    for r in reps:
        for key in ("start_s", "peak_s", "end_s", "rom_deg", "eccentric_s", "concentric_s", "confidence"):
            assert _num(r[key]), (key, r)
        assert r["start_s"] <= r["peak_s"] <= r["end_s"], r
        assert r["rom_deg"] > 0 and r["eccentric_s"] >= 0 and r["concentric_s"] >= 0, r
        assert 0.0 <= r["confidence"] <= 1.0, r
        assert isinstance(r["faults"], list) and all(isinstance(f, str) for f in r["faults"]), r
    starts = [r["start_s"] for r in reps]
    assert starts == sorted(starts), "reps in time order"
    if d["rep_count"] == 0:
        assert isinstance(d["reason"], str) and d["reason"], "zero reps must say why"
    frames = d["frames"]
    assert isinstance(frames, dict)
    assert all(isinstance(frames[k], int) for k in ("total", "analyzed", "detected")), frames
    assert 0 <= frames["detected"] <= frames["analyzed"] <= frames["total"], frames
    timing = d["timing"]
    assert isinstance(timing, dict) and _num(timing["wall_s"]) and timing["wall_s"] > 0, timing
    assert timing["fps"] is None or _num(timing["fps"]), timing
    model = d["model"]
    assert isinstance(model, dict) and isinstance(model["id"], str) and model["id"], model
    assert re.fullmatch(r"[0-9a-f]{64}", str(model["sha256"])), model


def sse_events(lines: Iterable[str]) -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    """(event name, JSON data) of each Server-Sent Event in a stream's lines."""
    events, name = [], ""
    for line in lines:
        if line.startswith("event:"):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            events.append((name, json.loads(line.split(":", 1)[1])))
    return events
