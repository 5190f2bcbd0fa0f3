"""Output writers on a small synthetic analysis: CSV, PNG, MP4 and write_all."""

from __future__ import annotations

import csv
import json
import subprocess
from dataclasses import replace
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np
import pytest

from pipeline import landmarks as lm
from pipeline.decode import probe
from pipeline.errors import VideoNotFound
from pipeline.outputs import write_all, write_angles_csv, write_annotated_mp4, write_reps_png
from pipeline.records import N_LANDMARKS, Analysis, AngleTable, PoseSeries, Rep

FRAMES, WIDTH, HEIGHT, FPS, STRIDE = 40, 160, 120, 10.0, 2
UNDETECTED = (4, 5)  # analyzed rows with no pose
NAN_CELL = (7, 2)  # one missing angle in a detected row
ANGLE_NAMES = ("left_knee", "right_knee", "left_hip")


def make_video(path: Path, frames: int = FRAMES, size: tuple[int, int] = (WIDTH, HEIGHT)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, size)
    assert writer.isOpened()
    w, h = size
    for i in range(frames):
        img = np.full((h, w, 3), 90, np.uint8)
        cv2.rectangle(img, (i * 3 % w, 10), (i * 3 % w + 12, 30), (200, 200, 200), -1)
        writer.write(img)
    writer.release()
    return path


def make_rep(index: int, start: float, peak: float, end: float, faults=()) -> Rep:
    return Rep(
        index=index, start_s=start, peak_s=peak, end_s=end, rom_deg=80.0,
        eccentric_s=peak - start, pause_s=0.0, concentric_s=end - peak,
        peak_velocity_dps=150.0, asymmetry_deg=None, confidence=0.9, faults=tuple(faults),
    )


def make_pose(n: int) -> PoseSeries:
    frame = np.arange(n, dtype=np.int64) * STRIDE
    xy = np.full((n, N_LANDMARKS, 2), 0.5, np.float32)
    for i in range(N_LANDMARKS):  # spread the points so the skeleton has extent
        xy[:, i] = (0.2 + 0.03 * (i % 20), 0.1 + 0.025 * i)
    vis = np.full((n, N_LANDMARKS), 0.9, np.float32)
    vis[:, lm.L_WRIST] = 0.2
    xy[list(UNDETECTED)] = np.nan
    vis[list(UNDETECTED)] = 0.0
    world = np.zeros((n, N_LANDMARKS, 3), np.float32)
    world[list(UNDETECTED)] = np.nan
    return PoseSeries(frame, frame / FPS, xy, vis, world, aspect=WIDTH / HEIGHT)


@pytest.fixture
def analysis(tmp_path: Path) -> Analysis:
    video = make_video(tmp_path / "src.mp4")
    n = FRAMES // STRIDE
    pose = make_pose(n)
    phase = np.cos(2 * np.pi * pose.t / 1.8)
    values = np.stack([120 + 50 * phase, 118 + 49 * phase, 100 + 30 * phase], axis=1)
    values[list(UNDETECTED)] = np.nan
    values[NAN_CELL] = np.nan
    angles = AngleTable(ANGLE_NAMES, values)
    reps = (
        make_rep(0, 0.2, 0.8, 1.6),
        make_rep(1, 2.0, 2.6, 3.4, faults=("knees_in", "shallow_depth")),
    )
    summary = {"exercise": {"name": "squat"}, "rep_count": 2, "reps": [r.to_dict() for r in reps]}
    primary = angles["left_knee"]
    return Analysis(probe(str(video)), pose, angles, "left_knee", primary, reps, summary)


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]


def expected_counts(t: float) -> tuple[str, str]:
    """(rep_count, in_rep) for the two reps of the fixture."""
    count = (t >= 1.6) + (t >= 3.4)
    inside = "1" if 0.2 <= t <= 1.6 else "2" if 2.0 <= t <= 3.4 else ""
    return str(count), inside


def test_csv_rows_columns_and_missing_cells(analysis: Analysis, tmp_path: Path) -> None:
    header, rows = read_csv(write_angles_csv(analysis, tmp_path / "angles.csv"))
    assert header == ["frame", "t_s", "detected", "primary_left_knee", *ANGLE_NAMES,
                      "rep_count", "in_rep"]
    assert len(rows) == len(analysis.pose)
    for i, row in enumerate(rows):
        assert row["frame"] == str(i * STRIDE)
        t = float(row["t_s"])
        assert t == pytest.approx(i * STRIDE / FPS, abs=5e-4)
        assert (row["rep_count"], row["in_rep"]) == expected_counts(t)
        missing = i in UNDETECTED
        assert row["detected"] == ("0" if missing else "1")
        # The primary is left_knee (column 0), so NAN_CELL (column 2) only empties left_hip.
        for name in ("primary_left_knee", *ANGLE_NAMES):
            cell_missing = missing or (name == "left_hip" and i == NAN_CELL[0])
            assert (row[name] == "") == cell_missing, (i, name)
            if not cell_missing:
                assert len(row[name].split(".")[1]) == 1  # 0.1 degree
    assert rows[-1]["rep_count"] == "2"


def test_png_is_1400_by_500(analysis: Analysis, tmp_path: Path) -> None:
    img = cv2.imread(str(write_reps_png(analysis, tmp_path / "reps.png")))
    assert img is not None and img.shape == (500, 1400, 3)


def test_png_tolerates_empty_summary_no_reps_all_nan(analysis: Analysis, tmp_path: Path) -> None:
    bare = replace(analysis, summary={}, reps=(),
                   primary="depth", primary_signal=np.full(len(analysis.pose), np.nan))
    img = cv2.imread(str(write_reps_png(bare, tmp_path / "bare.png")))
    assert img is not None and img.shape == (500, 1400, 3)


def ffmpeg_info(path: Path) -> str:
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)]
    return subprocess.run(cmd, capture_output=True, text=True, check=False).stderr


def decode_all(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    try:
        while True:
            ok, img = cap.read()
            if not ok:
                return frames
            frames.append(img)
    finally:
        cap.release()


def test_mp4_is_browser_h264_with_every_frame(analysis: Analysis, tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    calls: list[tuple[int, int]] = []
    path = write_annotated_mp4(analysis, out_dir / "annotated.mp4",
                               progress=lambda d, t: calls.append((d, t)))
    info = ffmpeg_info(path)
    assert "Video: h264" in info and "yuv420p" in info, info
    data = path.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # faststart: playable while downloading
    frames = decode_all(path)
    assert len(frames) == FRAMES
    assert frames[0].shape == (HEIGHT, WIDTH, 3)
    assert calls[-1] == (FRAMES, FRAMES) and [d for d, _ in calls] == list(range(1, FRAMES + 1))
    assert sorted(p.name for p in out_dir.iterdir()) == ["annotated.mp4"]  # no temp left


def test_mp4_fourcc_is_avc1(analysis: Analysis, tmp_path: Path) -> None:
    path = write_annotated_mp4(analysis, tmp_path / "a.mp4")
    cap = cv2.VideoCapture(str(path))
    try:
        code = int(cap.get(cv2.CAP_PROP_FOURCC))
    finally:
        cap.release()
    fourcc = code.to_bytes(4, "little").decode("ascii", "replace").lower()
    assert fourcc in {"avc1", "h264"}


def red_pixels(bgr: np.ndarray) -> int:
    b, g, r = (bgr[..., c].astype(int) for c in range(3))
    return int(((r > 150) & (g < 100) & (b < 100)).sum())


def test_mp4_shows_faults_in_red_after_the_faulty_rep(analysis: Analysis, tmp_path: Path) -> None:
    frames = decode_all(write_annotated_mp4(analysis, tmp_path / "a.mp4"))
    # Rep 2 (with faults) ends at 3.4 s = frame 34; rep 1 (clean) ends at 1.6 s.
    assert red_pixels(frames[36]) > 20
    assert red_pixels(frames[10]) == 0 and red_pixels(frames[17]) == 0


def test_mp4_odd_size_is_padded_even(analysis: Analysis, tmp_path: Path) -> None:
    src = make_video(tmp_path / "src.mp4", size=(162, 122))
    odd = replace(analysis, info=replace(analysis.info, path=str(src), width=162, height=122))
    path = write_annotated_mp4(odd, tmp_path / "small.mp4", max_side=81)
    frames = decode_all(path)
    assert len(frames) == FRAMES
    h, w = frames[0].shape[:2]
    assert (w, h) == (82, 62)  # 81 x 61 after halving, plus one black column and row


def test_mp4_error_leaves_no_file_and_keeps_old_one(analysis: Analysis, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "annotated.mp4").write_bytes(b"old")
    missing = replace(analysis, info=replace(analysis.info, path=str(tmp_path / "gone.mp4")))
    with pytest.raises(VideoNotFound):
        write_annotated_mp4(missing, out / "annotated.mp4")

    def fail(done: int, total: int) -> None:
        if done == 5:
            raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError, match="cancelled"):
        write_annotated_mp4(analysis, out / "annotated.mp4", progress=fail)
    assert [p.name for p in out.iterdir()] == ["annotated.mp4"]
    assert (out / "annotated.mp4").read_bytes() == b"old"


def test_write_all(analysis: Analysis, tmp_path: Path) -> None:
    paths = write_all(analysis, tmp_path / "new" / "dir")
    assert set(paths) == {"json", "csv", "png", "mp4"}
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths.values())
    assert json.loads(paths["json"].read_text()) == analysis.summary


@pytest.mark.parametrize("where", ["file", "under_file"])
def test_bad_out_dir_is_a_clear_error(analysis: Analysis, tmp_path: Path, where: str) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    out_dir = blocker if where == "file" else blocker / "sub"
    with pytest.raises(NotADirectoryError, match="expected a"):
        write_all(analysis, out_dir)
    with pytest.raises(NotADirectoryError, match="existing directory"):
        write_annotated_mp4(analysis, out_dir / "a.mp4")


def test_top_boxes_tells_a_finished_mp4_from_a_cut_one(dev_dir: Path, tmp_path: Path) -> None:
    from pipeline.outputs.video import top_boxes

    src = dev_dir / "squat_kaiakol_1.mp4"
    whole = top_boxes(src)
    assert {"ftyp", "moov", "mdat"} <= set(whole)
    cut = tmp_path / "cut.mp4"
    data = src.read_bytes()
    cut.write_bytes(data[: len(data) - 100])  # as a full disk leaves it: the last box cut short
    assert top_boxes(cut) == whole[:-1]
