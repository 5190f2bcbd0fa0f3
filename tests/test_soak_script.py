"""``benchmarks/soak.py`` end to end, shortened to ~20 s: it starts its own server, runs the mixed
load and the job feeder, and reports windows, memory and jobs.

The report's shape and its invariants only (no job lost, no error, every window and server
process accounted for); never its timings or memory figures, which depend on the machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import REPO

DURATION, WINDOW, WARMUP = 20, 5, 4


def test_a_short_soak_reports_windows_memory_and_every_job(dev_dir: Path, cli_env: dict[str, str],
                                                           tmp_path: Path) -> None:
    out, md = tmp_path / "soak.json", tmp_path / "soak.md"
    cmd = [sys.executable, str(REPO / "benchmarks" / "soak.py"), "--duration", str(DURATION),
           "--window", str(WINDOW), "--warmup", str(WARMUP), "--users", "4", "--think-ms", "50", "200",
           "--job-every", "4",
           "--video", str(dev_dir / "squat_kaiakol_1.mp4"), "--json", str(out), "--markdown", str(md), "--seed", "1"]
    res = subprocess.run(cmd, cwd=REPO, env={**cli_env, "FORMCHECK_WORKERS": "2"}, capture_output=True, text=True,
                         timeout=300, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report) == {"meta", "overall", "routes", "windows", "memory", "jobs"}

    o = report["overall"]
    assert o["requests"] > 0 and o["errors"] == 0 and o["errors_by_status"] == {}, (o["errors_by_status"],
                                                                                     o["error_examples"])
    assert o["ok"] + o["limited"] == o["requests"]
    for name in ("status", "analysis_json", "reps_png", "frame_cached", "frame_uncached", "upload", "job_upload",
                 "job_status"):
        assert report["routes"][name]["requests"] > 0, name

    wins = report["windows"]
    assert [w["window"] for w in wins] == ["warm-up", *range(1, DURATION // WINDOW + 1)]
    assert (wins[0]["from_s"], wins[0]["to_s"]) == (-WARMUP, 0) and wins[1]["from_s"] == 0
    assert sum(w["requests"] for w in wins) == o["requests"] and all(w["requests"] > 0 for w in wins)
    assert all(w["p95_ms"] is not None and w["rss_mb"]["api"] > 0 and w["rss_mb"]["inference"] > 0
               and w["rss_mb"]["still"] > 0 for w in wins)

    procs = report["memory"]["processes"]
    roles = sorted(p["role"] for p in procs if p["role"] != "other")
    assert roles == ["api", "inference", "inference", "still"], procs  # one API process, FORMCHECK_WORKERS=2
    for p in procs:
        if p["role"] != "other":
            assert p["setup_mb"] > 0 and p["start_mb"] > 0 and p["end_mb"] > 0, p
            shown = (p["end_mb"] - p["start_mb"]) / p["start_mb"] * 100  # growth is start (after warm-up) to end
            assert abs(p["growth_pct"] - shown) < 0.2, p
    assert report["memory"]["totals"]["inference"]["processes"] == [2, 2]  # none died meanwhile

    jobs = report["jobs"]
    assert jobs["submitted"] >= 3 and jobs["completed"] == jobs["submitted"], jobs  # none lost, none failed
    assert jobs["failed"] == jobs["pending"] == 0 and jobs["refused"] == {}

    assert md.read_text() == res.stdout and "| window |" in res.stdout and "| process | role |" in res.stdout
    assert f"Jobs submitted {jobs['submitted']}, completed {jobs['completed']}" in res.stdout
