"""Redis stopped in the middle of an analysis: the analysis still ends with the right answer."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import CliResult, parse_json_stdout

CLIP = "jumpingjack_ahmedlila_1.mp4"  # 313 frames, 12 reps


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def private_redis(tmp_path: Path):  # type: ignore[no-untyped-def]
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is needed for this test (CI installs it; see .ci/run)")
    port = _free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield proc, f"redis://127.0.0.1:{port}/0"
    proc.kill()
    proc.wait(5)


@pytest.mark.slow
def test_stopping_redis_mid_analysis_still_gives_the_right_result(
    private_redis, cli_env: dict[str, str], dev_dir: Path, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    proc, url = private_redis
    env = {**cli_env, "REDIS_URL": url}
    cmd = [sys.executable, "-m", "api.cli", "analyze", str(dev_dir / CLIP), "--json", "--no-video", "--workers", "2",
           "--fps", "0", "--exercise", "jumping_jack", "--out", str(tmp_path / "out")]
    run = subprocess.Popen(cmd, cwd=Path(__file__).resolve().parents[1], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    assert run.stderr is not None
    stopped = False
    for line in run.stderr:
        if line.startswith("analyzing") and not stopped:  # the first chunk is done: stop Redis now
            proc.kill()
            proc.wait(5)
            stopped = True
    out, _ = run.communicate(timeout=300)
    assert stopped, "the progress bar reported a finished chunk before the end"
    assert run.returncode == 0
    doc = parse_json_stdout(CliResult(run.returncode, out, ""))
    assert doc["rep_count"] == 12
    assert doc["cache"]["result"] == "miss"
    assert doc["cache"]["tiers"]["redis"]["errors"] >= 1, doc["cache"]
