"""``benchmarks/load.py`` end to end: it starts its own server, runs a short load, reports every route.

Correctness only (every route exercised, no error other than 429, the caches answer as the
mix intends); never timing, which depends on the machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import REPO

ROUTES = {"status", "analysis_json", "reps_png", "list", "frame_cached", "frame_uncached", "upload"}


def test_short_run_covers_every_route_without_errors(dev_dir: Path, cli_env: dict[str, str], tmp_path: Path) -> None:
    out, md = tmp_path / "load.json", tmp_path / "load.md"
    cmd = [sys.executable, str(REPO / "benchmarks" / "load.py"), "--start", "--users", "5", "--duration", "3",
           "--video", str(dev_dir / "squat_kaiakol_1.mp4"), "--json", str(out), "--markdown", str(md), "--seed", "1",
           "--think-ms", "10", "50"]  # short thinks: every route gets requests in 3 s
    res = subprocess.run(cmd, cwd=REPO, env=cli_env, capture_output=True, text=True, timeout=180,
                         stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(out.read_text())
    routes = report["routes"]
    assert set(routes) == ROUTES
    for name, r in routes.items():
        assert r["requests"] > 0, name
        assert r["errors"] == 0, (name, r["statuses"], r["error_examples"])
        assert r["ok"] + r["limited"] == r["requests"], name
    assert report["overall"]["errors"] == 0
    # The limits are raised for --start: nothing is refused, and the caches answer as intended.
    assert report["overall"]["limited"] == 0
    assert routes["frame_cached"]["hits"] == routes["frame_cached"]["requests"]
    assert routes["frame_uncached"]["misses"] == routes["frame_uncached"]["requests"]
    assert routes["upload"]["hits"] == routes["upload"]["requests"]  # the same clip: the whole-result cache
    assert len(report["meta"]["analyses"]) == 1
    assert "Verdict" in res.stdout and md.read_text() == res.stdout
    assert "| status: GET /v1/analyses/{id} |" in res.stdout
