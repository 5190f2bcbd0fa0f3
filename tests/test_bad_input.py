"""Bad, odd and hostile input through the CLI: exit code, one clear error line, never a traceback or a hang.

Files that are not videos fail before any model loads (exit 2). Videos that are merely odd
(no person, 4K, portrait, rotation metadata, 1 s long, truncated) are analyzed (exit 0) with a
``reason`` where nothing was counted. Options outside their range exit 2 naming the option.
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Callable
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np
import pytest
from helpers import (
    EXERCISE_NAMES,
    assert_no_traceback,
    check_summary,
    decoded_frame_count,
    error_line,
    events,
    meaningful_lines,
    mp4_top_boxes,
    parse_json_stdout,
    read_frames,
    within,
    write_video,
)

SQUAT = "squat_kaiakol_1.mp4"  # 38 frames, 1280x720, one squat (bottom f16-21)
PUSHUP = "pushup_kaiakol_2.mp4"  # 90 frames, moov box after mdat
JACKS = "jumpingjack_ahmedlila_1.mp4"  # 313 frames, moov box first ("fast start")

FAST = ("--json", "--workers", "1", "--no-video")


# --- not a video: exit 2 before any model loads ----------------------------------------------

def _missing(tmp: Path, dev: Path) -> Path:
    return tmp / "no_such_clip.mp4"


def _zero_bytes(tmp: Path, dev: Path) -> Path:
    (tmp / "empty.mp4").write_bytes(b"")
    return tmp / "empty.mp4"


def _text(tmp: Path, dev: Path) -> Path:
    (tmp / "notes.mp4").write_text("squat 3x10, push-ups 3x15\n")
    return tmp / "notes.mp4"


def _random_bytes(tmp: Path, dev: Path) -> Path:
    (tmp / "noise.mp4").write_bytes(np.random.default_rng(7).integers(0, 256, 200_000, np.uint8).tobytes())
    return tmp / "noise.mp4"


def _directory(tmp: Path, dev: Path) -> Path:
    (tmp / "clips.mp4").mkdir()
    return tmp / "clips.mp4"


NOT_A_VIDEO: dict[str, tuple[Callable[[Path, Path], Path], str]] = {
    "missing": (_missing, "no file at"),
    "zero_bytes": (_zero_bytes, "empty (0 bytes)"),
    "text_named_mp4": (_text, "could not be opened as a video"),
    "random_bytes_named_mp4": (_random_bytes, "could not be opened as a video"),
    "directory": (_directory, "is a directory"),
}


@pytest.mark.parametrize("case", list(NOT_A_VIDEO))
def test_not_a_video_exits_2_with_one_clear_line(case: str, run_cli, dev_dir: Path, tmp_path: Path) -> None:
    make, expected = NOT_A_VIDEO[case]
    path = make(tmp_path, dev_dir)
    res = run_cli("analyze", path, *FAST, timeout=60)
    assert res.code == 2, meaningful_lines(res.stderr)
    line = error_line(res)
    assert expected in line and str(path) in line, line


# --- truncated files --------------------------------------------------------------------------

def _truncate(src: Path, dst: Path, share: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * share)])
    return dst


@pytest.mark.parametrize("share", [0.05, 0.5])
def test_truncated_mp4_with_index_at_the_end_is_rejected(share: float, run_cli, dev_dir: Path, tmp_path: Path) -> None:
    """The moov index comes after the media data, so any cut loses it: reported as truncated."""
    src = dev_dir / PUSHUP
    assert mp4_top_boxes(src)[-1] == "moov"
    clip = _truncate(src, tmp_path / f"cut{int(share * 100)}.mp4", share)
    res = run_cli("analyze", clip, *FAST, timeout=60)
    assert res.code == 2
    line = error_line(res)
    assert str(clip) in line and "truncated" in line, line


def test_truncated_mp4_with_index_first_and_no_whole_frame_is_rejected(run_cli, dev_dir: Path, tmp_path: Path) -> None:
    src = dev_dir / JACKS
    assert mp4_top_boxes(src)[:2] == ["ftyp", "moov"]
    clip = _truncate(src, tmp_path / "cut5.mp4", 0.05)  # 5 % is the index plus a partial first frame
    res = run_cli("analyze", clip, *FAST, timeout=60)
    assert res.code == 2
    line = error_line(res)
    assert str(clip) in line and "no frame could be decoded" in line and "truncated" in line, line


@pytest.mark.slow
def test_truncated_mp4_with_index_first_analyzes_what_decodes(run_cli, dev_dir: Path, tmp_path: Path) -> None:
    """Half the bytes of a fast-start mp4 decode to about half its frames: analyzed, not a crash."""
    src = dev_dir / JACKS
    clip = _truncate(src, tmp_path / "cut50.mp4", 0.5)
    decodable = decoded_frame_count(clip)
    assert 100 < decodable < 200
    doc = parse_json_stdout(run_cli("analyze", clip, *FAST))
    check_summary(doc)
    assert doc["frames"]["total"] == 313  # what the container header claims
    assert doc["frames"]["analyzed"] == math.ceil(decodable / doc["params"]["stride"])
    # Six labeled tops lie in the decodable part; the sixth rep closes right at the cut.
    inside = [lo for lo, hi in events(dev_dir, JACKS) if hi * 29.29 < decodable]
    assert len(inside) == 6
    assert doc["exercise"]["name"] == "jumping_jack"
    assert doc["rep_count"] in (5, 6), doc["reps"]


# --- odd but valid videos: exit 0 -------------------------------------------------------------

def _noise(i: int, rng_base: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rng_base[i : i + 240, i : i + 320])


def _gradient(i: int, _: np.ndarray) -> np.ndarray:
    x = np.linspace(0, 255, 320, dtype=np.float32)[None, :] + 3 * i
    y = np.linspace(0, 120, 240, dtype=np.float32)[:, None]
    g = ((x + y) % 256).astype(np.uint8)
    return np.dstack([g, 255 - g, np.full_like(g, 128)])


@pytest.mark.slow
@pytest.mark.parametrize("pattern", [_noise, _gradient], ids=["moving_noise", "moving_gradient"])
def test_video_without_a_person_counts_zero_and_says_so(pattern, run_cli, tmp_path: Path) -> None:
    base = np.random.default_rng(3).integers(0, 256, (320, 400, 3), np.uint8)
    clip = write_video(tmp_path / "empty_scene.mp4", (pattern(i, base) for i in range(60)), 30.0)
    doc = parse_json_stdout(run_cli("analyze", clip, *FAST))
    check_summary(doc)
    assert doc["frames"]["analyzed"] == math.ceil(60 / doc["params"]["stride"]) and doc["frames"]["detected"] == 0
    assert doc["rep_count"] == 0
    assert "no person" in doc["reason"], doc["reason"]


@pytest.mark.slow
def test_4k_video_is_downscaled_and_analyzed(run_cli, dev_dir: Path, tmp_path: Path) -> None:
    frames, fps = read_frames(dev_dir / SQUAT)
    clip = write_video(tmp_path / "squat_4k.mp4", (cv2.resize(f, (3840, 2160)) for f in frames), fps)
    doc = parse_json_stdout(run_cli("analyze", clip, "--exercise", "squat", *FAST))
    check_summary(doc)
    assert (doc["file"]["width"], doc["file"]["height"]) == (3840, 2160)
    assert len(frames) == 38 and doc["frames"]["analyzed"] == math.ceil(38 / doc["params"]["stride"])
    assert doc["frames"]["detected"] > 0.75 * doc["frames"]["analyzed"]
    assert doc["rep_count"] == 1
    (lo, hi), = events(dev_dir, SQUAT)
    assert within(doc["reps"][0]["peak_s"], lo, hi)


@pytest.mark.slow
def test_portrait_video_from_rotated_pixels(run_cli, dev_dir: Path, tmp_path: Path) -> None:
    """Frames turned 90 degrees (the athlete lies sideways): analyzed without error."""
    frames, fps = read_frames(dev_dir / SQUAT)
    clip = write_video(tmp_path / "portrait.mp4", (cv2.rotate(f, cv2.ROTATE_90_CLOCKWISE) for f in frames), fps)
    doc = parse_json_stdout(run_cli("analyze", clip, *FAST))
    check_summary(doc)
    assert (doc["file"]["width"], doc["file"]["height"]) == (720, 1280)
    assert doc["frames"]["analyzed"] == math.ceil(38 / doc["params"]["stride"]) and doc["frames"]["detected"] > 0


@pytest.mark.slow
def test_rotation_metadata_is_applied(run_cli, dev_dir: Path, tmp_path: Path) -> None:
    """Pixels stored turned 90 degrees clockwise with a display rotation that turns them back,
    as phones record: decoded upright, so the squat is counted as in the original."""
    frames, fps = read_frames(dev_dir / SQUAT)
    stored = write_video(tmp_path / "stored.mp4", (cv2.rotate(f, cv2.ROTATE_90_CLOCKWISE) for f in frames), fps)
    clip = tmp_path / "phone.mp4"
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-display_rotation", "90",
           "-i", str(stored), "-c", "copy", str(clip)]
    subprocess.run(cmd, check=True, timeout=60)
    doc = parse_json_stdout(run_cli("analyze", clip, "--exercise", "squat", *FAST))
    check_summary(doc)
    assert (doc["file"]["width"], doc["file"]["height"]) == (1280, 720)
    assert doc["file"]["rotation"] in (90, 270)
    assert doc["rep_count"] == 1
    (lo, hi), = events(dev_dir, SQUAT)
    assert within(doc["reps"][0]["peak_s"], lo, hi)


@pytest.mark.slow
def test_one_second_clip(run_cli, dev_dir: Path, tmp_path: Path) -> None:
    """The first 30 frames of a push-up clip end at the bottom of the rep (bottom f17-30)."""
    frames, fps = read_frames(dev_dir / PUSHUP, 0, 30)
    clip = write_video(tmp_path / "one_second.mp4", frames, fps)
    doc = parse_json_stdout(run_cli("analyze", clip, *FAST))
    check_summary(doc)
    assert doc["file"]["duration_s"] == pytest.approx(1.0, abs=0.05)
    assert doc["frames"]["analyzed"] == math.ceil(30 / doc["params"]["stride"])
    assert doc["rep_count"] in (0, 1)
    if doc["rep_count"] == 0:
        assert doc["reason"]


# --- options outside their range: exit 2 ------------------------------------------------------

def test_unknown_exercise_lists_the_allowed_names(run_cli, dev_dir: Path) -> None:
    res = run_cli("analyze", dev_dir / SQUAT, "--exercise", "burpee", *FAST, timeout=60)
    assert res.code == 2
    assert_no_traceback(res)
    last = error_line(res)
    assert "--help" in last, "points at the help"
    assert "--exercise" in last and "invalid choice: 'burpee'" in last, last
    for name in ("auto", "generic", *EXERCISE_NAMES):
        assert f"'{name}'" in last, name
    assert res.stdout == ""


@pytest.mark.parametrize(
    ("option", "value", "named"),
    [
        ("--fps", "-1", "fps"),
        ("--workers", "0", "workers"),
        ("--max-side", "10", "max_side"),
        ("--people", "0", "people"),
    ],
)
def test_option_out_of_range_exits_2_naming_it(option: str, value: str, named: str, run_cli, dev_dir: Path) -> None:
    res = run_cli("analyze", dev_dir / SQUAT, *FAST, option, value, timeout=60)
    assert res.code == 2
    line = error_line(res)
    assert named in line and value in line, line


def test_non_numeric_fps_is_an_argparse_error(run_cli, dev_dir: Path) -> None:
    res = run_cli("analyze", dev_dir / SQUAT, "--fps", "fast", *FAST, timeout=60)
    assert res.code == 2
    assert_no_traceback(res)
    assert "argument --fps: invalid float value: 'fast'" in res.stderr


def test_bad_option_and_missing_file_give_one_error(run_cli, tmp_path: Path) -> None:
    """Both wrong at once: still exit 2 with one line (whichever is found first)."""
    res = run_cli("analyze", tmp_path / "missing.mp4", "--workers", "0", *FAST[:1], timeout=60)
    assert res.code == 2
    error_line(res)


def test_nothing_is_left_behind_on_error(run_cli, dev_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = run_cli("analyze", tmp_path / "missing.mp4", "--out", out, *FAST, timeout=60)
    assert res.code == 2
    assert not out.exists(), "no output folder for a failed run"
