"""``formcheck batch`` on the local pool: outputs, summary, resuming by content (issue 7)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from pipeline.batch import MANIFEST, SUMMARY, find_videos

pytestmark = pytest.mark.slow


def _rows(out: Path) -> dict[str, dict[str, str]]:
    with (out / SUMMARY).open() as f:
        return {r["file"]: r for r in csv.DictReader(f)}


def test_batch_writes_results_and_resumes_by_content(run_cli: Any, dev_dir: Path, tmp_path: Path) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(dev_dir / "squat_kaiakol_1.mp4", folder / "squat.mp4")
    shutil.copy(dev_dir / "pushup_kaiakol_2.mp4", folder / "sub" / "pushup.mp4")
    shutil.copy(dev_dir / "squat_kaiakol_1.mp4", folder / "sub" / "same_squat.mp4")  # same bytes
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x01" * 500)
    (folder / "notes.txt").write_text("not a video")

    res = run_cli("batch", str(folder), "--out", str(out), "--json", "--no-cache", "--workers", "2")
    assert res.code == 1, res.stderr  # one file failed
    report = json.loads(res.stdout)
    assert report == {"files": 4, "done": 2, "cached": 0, "skipped": 1, "failed": 1, "engine": "local",
                      "workers": 2, "summary": str(out / SUMMARY)}
    assert "broken.mp4" in res.stderr and "Traceback" not in res.stderr
    rows = _rows(out)
    assert {f: r["status"] for f, r in rows.items()} == {
        "broken.mp4": "failed", "squat.mp4": "done", "sub/pushup.mp4": "done", "sub/same_squat.mp4": "skipped"}
    assert "same content as squat.mp4" in rows["sub/same_squat.mp4"]["error"]
    assert rows["broken.mp4"]["error"]
    for name, exercise in (("squat.mp4", "squat"), ("sub/pushup.mp4", "pushup")):
        summary = json.loads((out / f"{name}.json").read_text())
        assert summary["exercise"]["name"] == exercise == rows[name]["exercise"]
        assert str(summary["rep_count"]) == rows[name]["reps"] and int(rows[name]["reps"]) >= 1
    assert len((out / MANIFEST).read_text().splitlines()) == 2

    # a rerun analyzes nothing again, even under a new name; a new file is analyzed
    (folder / "squat.mp4").rename(folder / "renamed.mp4")
    (folder / "broken.mp4").unlink()
    shutil.copy(dev_dir / "jumpingjack_kaiakol_1.mp4", folder / "jj.mp4")
    res = run_cli("batch", str(folder), "--out", str(out), "--json", "--no-cache", "--workers", "2")
    assert res.code == 0, res.stderr
    assert json.loads(res.stdout)["done"] == 1 and json.loads(res.stdout)["skipped"] == 3
    rows = _rows(out)
    assert rows["renamed.mp4"]["status"] == "skipped" and rows["renamed.mp4"]["output"] == "squat.mp4.json"
    assert rows["jj.mp4"]["status"] == "done"


def test_batch_errors(run_cli: Any, tmp_path: Path) -> None:
    res = run_cli("batch", str(tmp_path / "missing"), "--out", str(tmp_path / "out"))
    assert res.code == 2 and "expected a folder of videos" in res.stderr, res.stderr
    (tmp_path / "file").write_text("x")
    res = run_cli("batch", str(tmp_path), "--out", str(tmp_path / "file"))
    assert res.code == 2 and "--out must be a folder" in res.stderr, res.stderr


def test_find_videos_skips_the_output_folder(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    for p in ("a.mp4", "b.MOV", "c.txt", "out/d.mp4"):
        (tmp_path / p).write_bytes(b"x")
    assert [p.name for p in find_videos(tmp_path, tmp_path / "out")] == ["a.mp4", "b.MOV"]
