"""The pure parts of ``benchmarks/throughput.py``: ratios, the report tables, the /proc memory reader.

No MediaPipe and no video here: runs are built by hand.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
from helpers import REPO


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("throughput", REPO / "benchmarks" / "throughput.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["throughput"] = module  # dataclasses resolve their module through sys.modules
    spec.loader.exec_module(module)
    return module


T = _load()


def _runs(reps_c: int = 3, wall_a: float = 10.0) -> dict[str, object]:
    """One clip of 100 frames: naive at 10 frames/s, formcheck twice as fast, (c) on half the frames."""
    return {
        "a": T.Run(wall_a, 100, 3, {"main": 300.0, "ru_maxrss:main": 600.0}, "squat"),
        "b": T.Run(5.0, 100, 3, {"main": 350.0, "tracker": 12.0, "worker1": 280.0, "worker2": 290.5}, "squat", 4.0,
                   "off"),
        "c": T.Run(2.5, 50, reps_c, {"main": 350.0, "worker1": 280.0, "worker2": 281.0}, "squat", 2.0, "off"),
        "d": T.Run(0.5, 50, 3, {"main": 170.0}, "squat", 0.05, "hit"),
        "e": T.Run(2.0, 100, None, {"worker1": 900.0, "worker2": 880.0, "ru_maxrss:worker1": 950.0}),
        "f": T.Run(4.0, 50, 3, {"main": 250.0, "worker1": 230.0, "worker2": 231.0}, "squat", 3.0, "off", 1.25),
    }


def _report(*clips: dict[str, object]) -> dict[str, object]:
    rows = [{"clip": f"clip{i}.mp4", "frames": 100, "runs": T.summarize(r)} for i, r in enumerate(clips)]
    meta = {"workers": 2, "repeat": 1, "cpus": 2, "c_fps": 15.0, "c_note": "--fps 15, the default",
            "pool_rss": {"warm": {"worker1": 230.0, "worker2": 231.4}, "end": {"worker1": 240.0, "worker2": 239.6},
                         "frames": 1200},
            "load_before": [0.1, 0.2, 0.3], "load_after": [1.0, 0.5, 0.4], "total_wall_s": 123.4, "d_cache": "hit"}
    return {"meta": meta, "clips": rows, "overall": {"frames": 100 * len(rows), "runs": T.overall(rows)}}


@pytest.mark.parametrize(("value", "base", "expected"), [(6.0, 3.0, 2.0), (1.0, 4.0, 0.25), (5.0, 0.0, None),
                                                         (5.0, -1.0, None), (0.0, 2.0, 0.0)])
def test_ratio(value: float, base: float, expected: float | None) -> None:
    assert T.ratio(value, base) == expected


def test_summarize_computes_fps_ratio_and_speedup() -> None:
    s = T.summarize(_runs())
    assert s["a"]["fps"] == 10.0 and s["a"]["x"] == 1.0 and s["a"]["speedup"] == 1.0
    assert s["b"]["fps"] == 20.0 and s["b"]["x"] == 2.0 and s["b"]["speedup"] == 2.0
    assert s["c"]["fps"] == 20.0 and s["c"]["x"] == 2.0 and s["c"]["speedup"] == 4.0  # half the frames, 4x sooner
    assert s["e"]["reps"] is None and s["d"]["cache"] == "hit"


def test_overall_sums_frames_and_walls_and_keeps_largest_peaks() -> None:
    o = T.overall([{"runs": T.summarize(_runs())}, {"runs": T.summarize(_runs(wall_a=30.0))}])
    assert o["a"]["frames"] == 200 and o["a"]["wall_s"] == 40.0 and o["a"]["fps"] == 5.0
    assert o["b"]["speedup"] == 4.0 and o["b"]["json_wall_s"] == 8.0 and o["a"]["json_wall_s"] is None
    assert o["b"]["rss_mb"] == {"main": 350.0, "tracker": 12.0, "worker1": 280.0, "worker2": 290.5}
    assert o["f"]["cold_s"] == 1.25 and o["b"]["cold_s"] is None  # the slowest start over the clips


def test_markdown_tables() -> None:
    text = T.markdown(_report(_runs(), _runs(reps_c=2)))
    lines = text.splitlines()
    head = ("| clip | frames | (a) naive | (b) every frame | (c) default rate | (d) cache hit | (e) ceiling "
            "| (f) CLI cold |")
    assert lines.count(head + " reps |") == 1 and lines.count(head) == 2
    fps = "| 10.0 | 20.0 ×2.00 | 20.0 ×2.00 | 100.0 ×10.00 | 50.0 ×5.00 | 12.5 ×1.25 |"
    assert f"| clip0.mp4 | 100 {fps} 3/3/3/3 |" in lines
    assert f"| clip1.mp4 | 100 {fps} 3/3/2/3 ≠ |" in lines
    wall = ("| clip0.mp4 | 100 | 10 | 5 (4) ×2.00 | 2.5 (2) ×4.00 | 0.5 (0.05) ×20.00 | 2 ×5.00 "
            "| 4 (3) ×2.50, cold 1.25 |")
    assert wall in lines
    assert "| clip0.mp4 | 100 | 300 | 350 + w 280/290 | 350 + w 280/281 | 170 | w 900/880 | 250 + w 230/231 |" in lines
    assert any(line.startswith("| **overall** | 200 | 10.0 | 20.0 ×2.00 |") for line in lines)
    assert "[0.1, 0.2, 0.3] before" in text and "whole run 123 s" in text
    assert "Pool workers' resident MB: 230/231 after warm-up, 240/240 after 1200 more analyzed frames." in lines
    for line in lines:
        if line.startswith("|"):
            assert line.count("|") in (9, 10), line  # every row has as many cells as its header


def test_read_status_of_this_process() -> None:
    status = T.read_status(os.getpid())
    assert set(status) == {"VmRSS", "VmHWM"}
    assert 1024 < status["VmRSS"] <= status["VmHWM"]  # kB: a Python process holds more than 1 MB


def test_read_status_of_a_finished_process_is_empty() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert T.read_status(proc.pid) == {}


@pytest.mark.parametrize("proc_children", [False, True])
def test_tree_and_sampler_see_children(monkeypatch: pytest.MonkeyPatch, proc_children: bool) -> None:
    if proc_children and not T.PROC_CHILDREN:
        pytest.skip("this kernel has no /proc/<pid>/task/*/children")  # the /proc scan is tested below
    monkeypatch.setattr(T, "PROC_CHILDREN", proc_children)
    proc = subprocess.Popen(["sh", "-c", "sleep 30 & wait"])
    sampler = T.TreeSampler(proc.pid)
    sampler.start()
    try:
        for _ in range(200):
            if len(T.tree(proc.pid)) == 2:
                break
            time.sleep(0.05)
        assert T.tree(proc.pid)[0] == proc.pid and len(T.tree(proc.pid)) == 2
        child = T.tree(proc.pid)[1]
        for _ in range(400):  # until the sampler has measured the exec'd child (slow on a busy machine)
            if child in sampler.peak_kb and proc.pid in sampler.peak_kb:
                break
            time.sleep(0.05)
    finally:
        for pid in T.tree(proc.pid)[::-1]:
            os.kill(pid, signal.SIGKILL)
        proc.wait()
        peaks = sampler.stop()
    assert peaks["main"] > 0 and peaks["other:sleep 30"] > 0, peaks


def test_missing_clip_is_a_clear_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        T.parse(["/no/such/clip.mp4"])
    assert exc.value.code == 2
    assert "clip not found: /no/such/clip.mp4 (expected paths to video files)" in capsys.readouterr().err


def test_one_real_run_fills_every_mode(dev_dir: Path, cli_env: dict[str, str], tmp_path: Path) -> None:
    """The whole script on the shortest dev clip: every mode measured, counts agree, (d) is a hit."""
    out = tmp_path / "tp.json"
    script, clip = REPO / "benchmarks" / "throughput.py", dev_dir / "squat_kaiakol_1.mp4"
    cmd = [sys.executable, str(script), str(clip), "--json", str(out), "--markdown", str(tmp_path / "tp.md")]
    res = subprocess.run(cmd, cwd=REPO, env=cli_env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads(out.read_text())
    runs = report["clips"][0]["runs"]
    assert set(runs) == set(T.MODES)
    assert runs["a"]["frames"] == runs["b"]["frames"] == 38 and runs["c"]["frames"] == 19  # stride 2 at 30 fps
    assert runs["a"]["reps"] == runs["b"]["reps"] == runs["c"]["reps"] == runs["d"]["reps"] == 1
    assert runs["g"]["frames"] == 38 and runs["g"]["reps"] == 1 and runs["g"]["cache"] == "off"  # Dask = (b)
    assert set(runs["g"]["rss_mb"]) == {"main", "worker1", "worker2"}
    assert runs["d"]["cache"] == "hit" and runs["b"]["cache"] == runs["c"]["cache"] == "off"
    assert 0 < runs["f"]["cold_s"] < runs["f"]["wall_s"]
    assert all(r["wall_s"] > 0 for r in runs.values())
    pool = report["meta"]["pool_rss"]
    assert set(pool["warm"]) == set(pool["end"]) == {"worker1", "worker2"}
    assert pool["frames"] == 38 + 19 + 19  # (b), (c), and the run that fills (d)'s cache
    text = (tmp_path / "tp.md").read_text()
    assert "| squat_kaiakol_1.mp4 | 38 |" in text and "(g) Dask over (b) the local pool, overall:" in text
