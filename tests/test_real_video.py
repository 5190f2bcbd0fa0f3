"""End to end on real footage through the CLI: counts, turning points, outputs, and clips with no exercise.

Every real MediaPipe run is one CLI subprocess; the squat run is shared by its three tests
through a module-scoped fixture. Tests that run MediaPipe are marked ``slow``.
Clips: hand-labeled dev clips (labels.csv / events.csv) and the sample clips that the
sports2d and pose2sim wheels ship (scripts/fetch_samples.py), cut with OpenCV.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import cv2
import pytest
from helpers import CliResult, check_summary, cut_clip, events, label, load_fetch_samples, parse_json_stdout, within

from models.registry import sha256_file

SQUAT = "squat_kaiakol_1.mp4"
JACKS = "jumpingjack_ahmedlila_1.mp4"

# Arms overhead in the sports2d demo's two jumping jacks, judged by eye from frames 0-78 every
# 3 frames (30 fps): hands above the head f21-27 and f54-63.
SPORTS2D_JACK_TOPS = ((20 / 30, 28 / 30), (54 / 30, 63 / 30))


@pytest.fixture(scope="module")
def squat_run(run_cli, dev_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[CliResult, Path]:
    out = tmp_path_factory.mktemp("squat-out") / "out"
    res = run_cli("analyze", dev_dir / SQUAT, "--json", "--out", out, "--exercise", "squat", "--workers", "1")
    return res, out


@pytest.mark.slow
def test_squat_json_follows_the_schema(squat_run, dev_dir: Path) -> None:
    res, _ = squat_run
    doc = parse_json_stdout(res)
    check_summary(doc)
    assert (doc["exercise"]["name"], doc["exercise"]["source"]) == ("squat", "given")
    frames = int(label(dev_dir, SQUAT)["frames"])
    assert doc["frames"]["total"] == frames == 38
    assert doc["frames"]["analyzed"] == math.ceil(38 / doc["params"]["stride"])
    assert doc["frames"]["detected"] > 0.75 * doc["frames"]["analyzed"]


@pytest.mark.slow
def test_squat_counts_one_rep_at_the_labeled_bottom(squat_run, dev_dir: Path) -> None:
    doc = parse_json_stdout(squat_run[0])
    want = events(dev_dir, SQUAT)
    assert doc["rep_count"] == int(label(dev_dir, SQUAT)["reps"]) == len(want) == 1
    (rep,) = doc["reps"]
    (lo, hi) = want[0]
    assert within(rep["peak_s"], lo, hi), f"turning point {rep['peak_s']} s, labeled {lo:.3f}-{hi:.3f} s"
    assert rep["start_s"] < lo and rep["end_s"] > hi
    assert rep["rom_deg"] > 35  # the squat's own minimum excursion


@pytest.mark.slow
def test_squat_writes_every_output(squat_run) -> None:
    res, out = squat_run
    doc = parse_json_stdout(res)
    names = ("analysis.json", "angles.csv", "reps.png", "annotated.mp4")
    for name in names:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert sorted(Path(p).name for p in doc["outputs"].values()) == sorted(names)
    saved = json.loads((out / "analysis.json").read_text())
    assert saved["rep_count"] == doc["rep_count"] and saved["reps"] == doc["reps"]
    header = (out / "angles.csv").read_text().splitlines()[0]
    assert "knee" in header
    assert cv2.imread(str(out / "reps.png")) is not None
    cap = cv2.VideoCapture(str(out / "annotated.mp4"))
    try:
        assert cap.isOpened()
        decoded = 0
        while True:
            ok, img = cap.read()
            if not ok:
                break
            assert img.shape[0] > 0 and img.shape[1] > 0
            decoded += 1
    finally:
        cap.release()
    assert decoded >= 30, f"annotated.mp4 decoded {decoded} frames, source has 38"


@pytest.mark.slow
def test_jumping_jacks_detected_and_counted_with_two_workers(run_cli, dev_dir: Path, tmp_path: Path) -> None:
    res = run_cli("analyze", dev_dir / JACKS, "--json", "--exercise", "auto", "--workers", "2", "--no-video",
                  "--out", tmp_path / "out")
    doc = parse_json_stdout(res)
    check_summary(doc)
    assert doc["exercise"]["name"] == "jumping_jack"
    assert doc["exercise"]["source"] == "detected"
    assert doc["params"]["workers"] == 2
    assert doc["rep_count"] == int(label(dev_dir, JACKS)["reps"]) == 12
    assert doc["frames"]["total"] == 313 and doc["params"]["stride"] == 2  # 29.29 fps at the default ~15
    assert doc["frames"]["analyzed"] == 157
    peaks = [r["peak_s"] for r in doc["reps"]]
    hits = [within(p, lo, hi) for p, (lo, hi) in zip(peaks, events(dev_dir, JACKS), strict=True)]
    assert all(hits), f"turning points {peaks} vs labels {events(dev_dir, JACKS)}"
    assert not (tmp_path / "out" / "annotated.mp4").exists()
    assert (tmp_path / "out" / "analysis.json").is_file()


# --- clips with no exercise -------------------------------------------------------------------

NO_EXERCISE = {
    # sports2d f90-229: the man walks along the cabinet top, backflips off it (~f142-185) and
    # lands in a crouch; a woman walks past below. Nothing repeats.
    "sports2d_after_jacks": ("sports2d_demo", 90, 230),
    # pose2sim Trial_1 cam01 (portrait, 60 fps): one sideways lunge-and-twist and back, done once.
    "pose2sim_single_move": ("pose2sim_cam01", 0, None),
}




@pytest.mark.slow
@pytest.mark.parametrize("case", [
    "sports2d_after_jacks",
    "pose2sim_single_move",
])
def test_clip_without_repetitions_counts_zero_and_says_why(
    case: str, run_cli, samples: dict[str, Path], tmp_path: Path
) -> None:
    sample, start, stop = NO_EXERCISE[case]
    clip = samples[sample] if stop is None else cut_clip(samples[sample], tmp_path / f"{case}.mp4", start, stop)
    doc = parse_json_stdout(run_cli("analyze", clip, "--json", "--exercise", "auto", "--workers", "1", "--no-video"))
    check_summary(doc)
    assert doc["frames"]["detected"] > 0.5 * doc["frames"]["analyzed"], "a person is in these clips"
    assert doc["rep_count"] == 0, f"{case}: counted {doc['reps']}"
    assert isinstance(doc["reason"], str) and "repetition" in doc["reason"]


@pytest.mark.slow
def test_sports2d_demo_jumping_jacks(run_cli, samples: dict[str, Path], tmp_path: Path) -> None:
    """Frames 0-78: two jumping jacks on a cabinet top, a woman walking past from ~f40."""
    clip = cut_clip(samples["sports2d_demo"], tmp_path / "jacks.mp4", 0, 79)
    doc = parse_json_stdout(run_cli("analyze", clip, "--json", "--exercise", "auto", "--workers", "1", "--no-video"))
    check_summary(doc)
    assert doc["exercise"]["name"] == "jumping_jack" and doc["exercise"]["source"] == "detected"
    assert doc["rep_count"] == 2
    for rep, (lo, hi) in zip(doc["reps"], SPORTS2D_JACK_TOPS, strict=True):
        assert within(rep["peak_s"], lo, hi), f"turning point {rep['peak_s']} s, arms overhead {lo:.2f}-{hi:.2f} s"


# --- scripts/fetch_samples.py -----------------------------------------------------------------

def test_fetch_samples_is_idempotent(samples: dict[str, Path]) -> None:
    fs = load_fetch_samples()
    assert set(samples) == set(fs.SAMPLES)
    stamps = {name: path.stat().st_mtime_ns for name, path in samples.items()}
    again = fs.fetch_all(next(iter(samples.values())).parent)
    assert again == samples
    assert {name: path.stat().st_mtime_ns for name, path in again.items()} == stamps, "nothing re-fetched"
    for name, path in samples.items():
        assert path.name == fs.SAMPLES[name].file and sha256_file(path) == fs.SAMPLES[name].sha256


def test_fetch_samples_replaces_a_damaged_copy(tmp_path: Path) -> None:
    fs = load_fetch_samples()
    damaged = tmp_path / fs.SAMPLES["sports2d_demo"].file
    damaged.write_bytes(b"half a video")
    assert fs.fetch("sports2d_demo", tmp_path) == damaged
    assert sha256_file(damaged) == fs.SAMPLES["sports2d_demo"].sha256
    assert sorted(p.name for p in tmp_path.iterdir()) == [damaged.name], "no wheel or temp dir left behind"
    cap = cv2.VideoCapture(str(damaged))
    try:
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 230
    finally:
        cap.release()


def test_fetch_samples_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fs = load_fetch_samples()
    with pytest.raises(SystemExit) as exc:
        fs.main(["--dest", str(tmp_path), "no_such_sample"])
    assert exc.value.code == 2
    assert "no_such_sample" in capsys.readouterr().err
    with pytest.raises(KeyError, match="no_such_sample"):
        fs.fetch("no_such_sample", tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("fps", ["0", "15"])
def test_the_readme_demo_counts_the_two_jumping_jacks(
    fps: str, run_cli, cli_env: dict[str, str], samples: dict[str, Path], tmp_path: Path
) -> None:
    """`formcheck demo` (the README's first command) on its whole clip: a woman walks past, he jumps down."""
    cached = Path(cli_env["XDG_CACHE_HOME"]) / "formcheck" / "samples" / samples["sports2d_demo"].name
    cached.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(samples["sports2d_demo"], cached)  # the demo finds it cached: no second download
    doc = parse_json_stdout(run_cli("demo", "--json", "--no-video", "--no-cache", "--fps", fps,
                                    "--out", tmp_path / "demo"))
    assert doc["exercise"]["name"] == "jumping_jack" and doc["exercise"]["source"] == "detected"
    assert doc["rep_count"] == 2
    for rep, (lo, hi) in zip(doc["reps"], SPORTS2D_JACK_TOPS, strict=True):
        assert within(rep["peak_s"], lo, hi), f"turning point {rep['peak_s']} s, arms overhead {lo:.2f}-{hi:.2f} s"
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == ["analysis.json", "angles.csv", "reps.png"]
