"""Annotated MP4: the source clip re-decoded with the analysis drawn on every frame.

Steps: decode every source frame (downscaled to ``max_side``) -> pick the latest
analyzed frame at or before it (analysis may have used a stride) -> draw the
skeleton (landmarks with visibility >= 0.5), the primary value, the running rep
count, a rep-number flash when a rep is counted and its faults in red for 1.5 s
-> pad to even width/height -> pipe RGB frames to imageio-ffmpeg's ffmpeg ->
H.264 / yuv420p / faststart, which browsers play.

The file is written under a temporary name in the target directory and moved
into place only when complete; on any error the temporary file is removed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Generator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np

from ..decode import Frame, iter_frames
from ..errors import CorruptVideo
from ..landmarks import EDGES
from ..records import Analysis
from .csvout import rep_counts

Progress = Callable[[int, int], None]

MIN_VISIBILITY = 0.5
FAULT_SHOW_S = 1.5
REP_FLASH_S = 0.7
FONT = cv2.FONT_HERSHEY_SIMPLEX
# Frames are RGB (as decoded), so colours are (r, g, b).
WHITE, BLACK, RED = (255, 255, 255), (0, 0, 0), (230, 40, 40)
GREEN, YELLOW = (60, 220, 120), (255, 210, 0)
FFMPEG_OUTPUT = ["-movflags", "+faststart", "-preset", "veryfast", "-crf", "23"]
_POINTS = sorted({i for edge in EDGES for i in edge})


def write_annotated_mp4(
    analysis: Analysis, path: Path, progress: Progress | None = None, max_side: int = 1280
) -> Path:
    """Write the annotated clip to ``path`` (H.264 MP4, replaced atomically) and return it."""
    path = Path(path)
    if not path.parent.is_dir():
        raise NotADirectoryError(
            f"cannot write {path.name!r}: expected {str(path.parent)!r} to be an "
            "existing directory"
        )
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp.mp4")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        frames = _encode(analysis, tmp, progress, max_side)
        if frames == 0:
            raise CorruptVideo(
                f"{analysis.info.path!r} delivered no frames on re-decoding: expected "
                f"{analysis.info.frames} frames"
            )
        if tmp.stat().st_size == 0:
            raise OSError(
                f"ffmpeg wrote nothing for {path.name!r}: expected an MP4 of {frames} frames"
            )
        boxes = top_boxes(tmp)
        if not {"ftyp", "moov", "mdat"} <= set(boxes):  # ffmpeg through a pipe hides a short write
            raise OSError(
                f"ffmpeg left {path.name!r} unfinished (top-level boxes {boxes}): expected ftyp, moov "
                "and mdat; is the disk full?"
            )
        tmp.chmod(0o644)  # mkstemp makes it owner-only; the video is meant to be served
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # gone already after a successful replace
    return path


def top_boxes(path: Path) -> list[str]:
    """The MP4's top-level box types, in order, as far as their sizes are consistent."""
    out: list[str] = []
    size_total = path.stat().st_size
    with open(path, "rb") as f:
        pos = 0
        while pos + 8 <= size_total:
            f.seek(pos)
            head = f.read(16)
            size, kind = int.from_bytes(head[:4], "big"), head[4:8].decode("latin-1")
            if size == 1 and len(head) == 16:
                size = int.from_bytes(head[8:16], "big")
            elif size == 0:
                size = size_total - pos
            if size < 8 or pos + size > size_total:
                break  # cut short: the box does not fit in the file
            out.append(kind)
            pos += size
    return out


def _encode(analysis: Analysis, tmp: Path, progress: Progress | None, max_side: int) -> int:
    """Decode, annotate and encode every frame into ``tmp``; return the frame count."""
    info = analysis.info
    total = max(int(info.frames), 0)
    writer: Generator[None, np.ndarray | None, None] | None = None
    done = 0
    try:
        frames = iter_frames(info.path, max_side=max_side, fps_hint=info.fps)
        with closing(frames):  # release the capture even if encoding fails midway
            for frame in frames:
                rgb = _pad_even(annotate(frame, analysis))
                if writer is None:
                    writer = _open_writer(tmp, rgb.shape[1], rgb.shape[0], info.fps)
                writer.send(rgb)
                done += 1
                if progress is not None:
                    progress(done, max(total, done))
    finally:
        if writer is not None:
            writer.close()  # flushes and waits for ffmpeg on every path
    if progress is not None and done and done != total:
        progress(done, done)  # containers over-report frame counts: finish at 100 %
    return done


def _open_writer(
    tmp: Path, width: int, height: int, fps: float
) -> Generator[None, np.ndarray | None, None]:
    writer: Generator[None, np.ndarray | None, None] = imageio_ffmpeg.write_frames(
        str(tmp), (width, height), fps=float(fps), codec="libx264",
        pix_fmt_in="rgb24", pix_fmt_out="yuv420p",
        quality=None,  # the -crf below sets quality; imageio's default would add a second -crf
        macro_block_size=2, output_params=list(FFMPEG_OUTPUT),
    )
    writer.send(None)  # start ffmpeg
    return writer


def _pad_even(rgb: np.ndarray) -> np.ndarray:
    """yuv420p needs even sizes: add a black row/column where a side is odd."""
    h, w = rgb.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return np.ascontiguousarray(rgb)
    return cv2.copyMakeBorder(rgb, 0, h % 2, 0, w % 2, cv2.BORDER_CONSTANT, value=BLACK)


@dataclass(frozen=True, slots=True)
class _Style:
    scale: float
    thick: int
    line_h: int

    @staticmethod
    def for_height(height: int) -> _Style:
        scale = max(0.35, height / 700)
        return _Style(scale, max(1, round(height / 400)), max(12, round(34 * scale)))


def annotate(frame: Frame, analysis: Analysis) -> np.ndarray:
    """A copy of ``frame.rgb`` with the analysis drawn for that frame's time."""
    rgb = frame.rgb.copy()
    style = _Style.for_height(rgb.shape[0])
    k = int(np.searchsorted(analysis.pose.frame, frame.index, side="right")) - 1
    if k >= 0:
        _draw_skeleton(rgb, analysis.pose.xy[k], analysis.pose.visibility[k], style)
        value = float(analysis.primary_signal[k])
    else:
        value = float("nan")
    shown = "--" if not np.isfinite(value) else f"{value:.0f}"
    _text(rgb, f"{analysis.primary}: {shown}", 1, WHITE, style)
    count = int(rep_counts(np.array([frame.t]), analysis.reps)[0])
    _text(rgb, f"reps: {count}", 2, WHITE, style)
    _draw_events(rgb, frame.t, analysis, style)
    return rgb


def _draw_skeleton(rgb: np.ndarray, xy: np.ndarray, vis: np.ndarray, style: _Style) -> None:
    h, w = rgb.shape[:2]
    ok = np.isfinite(xy).all(axis=1) & (vis >= MIN_VISIBILITY)
    px = np.clip(np.nan_to_num(xy * (w, h)), -1e5, 1e5).round().astype(np.int32)
    for a, b in EDGES:
        if ok[a] and ok[b]:
            cv2.line(rgb, _pt(px[a]), _pt(px[b]), GREEN, style.thick + 1, cv2.LINE_AA)
    radius = style.thick + 2
    for i in _POINTS:
        if ok[i]:
            cv2.circle(rgb, _pt(px[i]), radius, YELLOW, -1, cv2.LINE_AA)


def _pt(p: np.ndarray) -> tuple[int, int]:
    return int(p[0]), int(p[1])


def _draw_events(rgb: np.ndarray, t: float, analysis: Analysis, style: _Style) -> None:
    """Flash the number of a rep just counted; list a just-ended rep's faults in red."""
    line = 3
    for number, rep in enumerate(analysis.reps, start=1):
        since = t - rep.end_s
        if 0 <= since < REP_FLASH_S:
            _flash(rgb, f"rep {number}", style)
        if rep.faults and 0 <= since < FAULT_SHOW_S:
            _text(rgb, f"rep {number}: {', '.join(rep.faults)}", line, RED, style)
            line += 1


def _flash(rgb: np.ndarray, text: str, style: _Style) -> None:
    """Big text centred in the frame."""
    big = _Style(style.scale * 2.5, style.thick * 3, style.line_h)
    (tw, th), _ = cv2.getTextSize(text, FONT, big.scale, big.thick)
    h, w = rgb.shape[:2]
    _text(rgb, text, 0, YELLOW, big, at=((w - tw) // 2, (h + th) // 2))


def _text(
    rgb: np.ndarray, text: str, line: int, color: tuple[int, int, int], style: _Style,
    at: tuple[int, int] | None = None,
) -> None:
    """Outlined text (readable on any background) on ``line`` of the top-left block, or ``at``."""
    org = at if at is not None else (8, line * style.line_h)
    text = text.encode("ascii", "replace").decode()  # Hershey fonts are ASCII only
    cv2.putText(rgb, text, org, FONT, style.scale, BLACK, style.thick + 2, cv2.LINE_AA)
    cv2.putText(rgb, text, org, FONT, style.scale, color, style.thick, cv2.LINE_AA)
