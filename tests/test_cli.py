"""The command line front: help, --json (exactly one object on stdout), human output, --fps,
and the exit-code contract for problems with options and settings."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import (
    EXERCISE_NAMES,
    assert_no_traceback,
    check_summary,
    error_line,
    events,
    meaningful_lines,
    parse_json_stdout,
    within,
)

SQUAT = "squat_kaiakol_1.mp4"
PUSHUP = "pushup_kaiakol_2.mp4"


def test_help_lists_the_commands(run_cli) -> None:
    res = run_cli("--help", timeout=60)
    assert res.code == 0
    assert_no_traceback(res)
    assert res.stdout.startswith("usage: formcheck")
    assert "analyze" in res.stdout and "demo" in res.stdout


def test_analyze_help_lists_every_option_and_exercise(run_cli) -> None:
    res = run_cli("analyze", "--help", timeout=60)
    assert res.code == 0
    assert_no_traceback(res)
    for option in ("--exercise", "--out", "--json", "--fps", "--workers", "--model", "--people", "--no-video"):
        assert option in res.stdout, option
    for name in EXERCISE_NAMES:
        assert name in res.stdout, name


def test_console_script_is_installed(run_cli) -> None:
    """``formcheck`` in the venv's bin is the same entry point as ``python -m api.cli``."""
    script = Path(sys.executable).with_name("formcheck")
    assert script.is_file(), f"no console script at {script}: is the project installed (uv sync)?"
    res = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.startswith("usage: formcheck")


def test_no_command_is_a_usage_error(run_cli) -> None:
    res = run_cli(timeout=60)
    assert res.code == 2
    assert_no_traceback(res)
    line = error_line(res)
    assert "required" in line and "formcheck --help" in line, line


@pytest.mark.slow
def test_json_stdout_is_exactly_one_object(run_cli, dev_dir: Path) -> None:
    res = run_cli("analyze", dev_dir / PUSHUP, "--json", "--workers", "1", "--no-video")
    doc = parse_json_stdout(res)  # the whole of stdout, one line
    check_summary(doc)
    assert json.loads(res.stdout.strip()) == doc
    assert "outputs" not in doc, "no --out, no files"
    assert doc["exercise"]["name"] == "pushup" and doc["exercise"]["source"] == "detected"
    assert doc["rep_count"] == 1
    (lo, hi), = events(dev_dir, PUSHUP)
    assert within(doc["reps"][0]["peak_s"], lo, hi)


@pytest.mark.slow
def test_human_output_reports_the_reps(run_cli, dev_dir: Path) -> None:
    res = run_cli("analyze", dev_dir / SQUAT, "--exercise", "squat", "--workers", "1", "--no-video")
    assert res.code == 0, meaningful_lines(res.stderr)
    assert_no_traceback(res)
    lines = res.stdout.splitlines()
    assert lines[0].startswith("exercise: squat (given")
    assert "reps: 1" in lines
    assert any(ln.strip().startswith("#1 ") and "ROM" in ln for ln in lines), lines
    assert lines[-1].startswith("time: ")
    with pytest.raises(json.JSONDecodeError):
        json.loads(res.stdout)


@pytest.mark.slow
def test_fps_option_strides_frames(run_cli, dev_dir: Path) -> None:
    doc = parse_json_stdout(run_cli("analyze", dev_dir / SQUAT, "--json", "--fps", "10", "--exercise", "squat",
                                    "--workers", "1", "--no-video"))
    check_summary(doc)
    assert doc["params"]["stride"] == 3
    assert doc["frames"]["total"] == 38
    assert doc["frames"]["analyzed"] == math.ceil(38 / 3)


@pytest.mark.slow
def test_out_path_that_is_a_file_exits_2(run_cli, dev_dir: Path, tmp_path: Path) -> None:
    taken = tmp_path / "results.txt"
    taken.write_text("already here\n")
    res = run_cli("analyze", dev_dir / SQUAT, "--json", "--workers", "1", "--out", taken)
    assert res.code == 2
    line = error_line(res)
    assert str(taken) in line
    assert "analyzing" not in res.stderr, "checked before the analysis"


def test_non_integer_worker_setting_exits_2(run_cli, cli_env: dict[str, str], dev_dir: Path) -> None:
    res = run_cli("analyze", dev_dir / SQUAT, "--json", env={**cli_env, "FORMCHECK_WORKERS": "many"}, timeout=60)
    assert_no_traceback(res)
    assert "FORMCHECK_WORKERS" in res.stderr and "'many'" in res.stderr
    assert res.code == 2
    error_line(res)
