"""Files people open elsewhere: JSON summary, per-frame CSV, rep chart PNG, annotated MP4.

``write_all`` writes the four into one directory (created if missing) and returns
name -> path. Each writer is also usable alone.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..records import Analysis
from .csvout import write_angles_csv
from .plot import write_reps_png
from .video import Progress, write_annotated_mp4

__all__ = ["check_dir", "ensure_dir", "write_all", "write_angles_csv", "write_reps_png", "write_annotated_mp4"]

FILE_NAMES = {
    "json": "analysis.json",
    "csv": "angles.csv",
    "png": "reps.png",
    "mp4": "annotated.mp4",
}


def write_all(
    analysis: Analysis, out_dir: Path, progress: Progress | None = None, video: bool = True
) -> dict[str, Path]:
    """Write every output into ``out_dir`` (``video=False``: all but annotated.mp4);
    ``progress(done, total)`` follows the video frames."""
    out_dir = ensure_dir(Path(out_dir))
    paths = {key: out_dir / name for key, name in FILE_NAMES.items() if video or key != "mp4"}
    paths["json"].write_text(json.dumps(analysis.summary, indent=2, allow_nan=False), encoding="utf-8")
    write_angles_csv(analysis, paths["csv"])
    write_reps_png(analysis, paths["png"])
    if video:
        write_annotated_mp4(analysis, paths["mp4"], progress=progress)
    return paths


def check_dir(out_dir: Path) -> Path:
    """Raise NotADirectoryError now if ``out_dir`` could not be created later (nothing is created)."""
    out_dir = Path(out_dir)
    probe = out_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        what = "is a file" if probe == out_dir else f"has a file on its path ({str(probe)!r})"
        raise NotADirectoryError(
            f"output directory {str(out_dir)!r} {what}: expected a directory or a path that can be created"
        )
    return out_dir


def ensure_dir(out_dir: Path) -> Path:
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(
            f"output directory {str(out_dir)!r} is a file: expected a directory or a path "
            "that can be created"
        )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as err:
        raise NotADirectoryError(
            f"cannot create output directory {str(out_dir)!r}: expected a path whose parents "
            f"are directories ({err.strerror})"
        ) from err
    return out_dir
