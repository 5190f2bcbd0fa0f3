"""``formcheck serve`` as a subprocess, for the suites that need the real server
(``test_hostile.py``, ``test_access.py``): its own data dir and working dir under ``tmp_path``,
any number of API worker processes, killed with its whole process group afterwards.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from helpers import REPO

PG_URL = os.environ.get("FORMCHECK_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("FORMCHECK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(xdg: Path, data: Path, **extra: str) -> dict[str, str]:
    """This process's environment minus any formcheck/database/Redis settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("FORMCHECK_") and k not in ("DATABASE_URL", "REDIS_URL", "PROMETHEUS_MULTIPROC_DIR")}
    env.update({"XDG_CACHE_HOME": str(xdg), "FORMCHECK_DATA_DIR": str(data), "FORMCHECK_WORKERS": "1",
                "FORMCHECK_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1", "FORMCHECK_RATE_LIMIT": "100000/1m",
                "FORMCHECK_POST_RATE_LIMIT": "100000/1m", "FORMCHECK_RECOMMEND_RATE_LIMIT": "100000/1m", **extra})
    return env


def create_key(env: dict[str, str], name: str) -> dict[str, str]:
    """``formcheck keys create`` in the store ``env`` names; the Authorization header."""
    out = subprocess.run([sys.executable, "-m", "api.cli", "keys", "create", "--name", name], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return {"Authorization": f"Bearer {out.stdout.strip()}"}


@dataclass
class Served:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@contextmanager
def serving(env: dict[str, str], log: Path, cwd: Path, api_workers: int = 1,
            timeout: float = 120.0) -> Iterator[Served]:
    """Start ``formcheck serve`` (in ``cwd``), wait until ``/health/ready`` is 200, kill it after."""
    port = free_port()
    cwd.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", str(port),
                                 "--workers", str(api_workers)],
                                cwd=cwd, env=env, stdout=out, stderr=out, start_new_session=True)
    srv = Served(f"http://127.0.0.1:{port}", proc, log)
    try:
        deadline = time.time() + timeout
        while True:
            if proc.poll() is not None:
                pytest.fail(f"formcheck serve exited with {proc.returncode}:\n{srv.log_tail()}")
            try:
                if httpx.get(f"{srv.url}/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                pytest.fail(f"formcheck serve not ready in {timeout:.0f} s:\n{srv.log_tail()}")
            time.sleep(0.3)
        yield srv
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
        proc.wait(15)
