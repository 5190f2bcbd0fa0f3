"""Private services for the fault tests: stopped, killed and restarted at will, never the shared
PostgreSQL (5432) and Redis (6379) that other suites use at the same time.

- ``PrivateRedis``: ``redis-server`` on a free port, no persistence; ``stop`` (SIGKILL, as a crash)
  and ``start`` again on the same port (empty, as a restarted cache).
- ``PrivateCluster``: a PostgreSQL cluster of its own (``initdb``, ``pg_ctl``) on a free port, its
  socket in its own folder. As root the binaries run as ``postgres`` (``initdb`` refuses root),
  the cluster in a ``/tmp`` folder owned by that user (pytest's ``tmp_path`` is root-only).
- ``Served``: ``formcheck serve`` in its own session (the API process leads the process group;
  inference workers and ffmpeg are in it), optionally behind a command ``prefix``
  (``unshare`` for the disk fault); ``kill`` signals the API process alone, ``kill_all`` the group.
- ``Api``: a key and the few calls the tests make (submit, status, wait until every job ended).
- ``StuckUpstream``: an OpenAI-compatible address that accepts and never answers (or trickles).
- ``variant``: a clip cut and re-encoded with a noise patch on every frame: new bytes and new
  pixels, so neither the result cache nor the frame cache answers it (a job that must infer).

A missing binary (``redis-server``, ``initdb``, ``pg_ctl``, ``unshare``, ``nsenter``) fails the
test, never skips it: CI installs them (``.ci/run``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from helpers import REPO, read_frames, write_video

TERMINAL = ("done", "failed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def need(name: str, *fallbacks: str) -> str:
    """The path of executable ``name`` (on PATH, else the first existing fallback glob), or fail."""
    found = shutil.which(name)
    for pattern in fallbacks:
        found = found or next(iter(sorted(glob.glob(pattern), reverse=True)), None)
    if not found:
        pytest.fail(f"{name} is needed by the fault tests: expected it on PATH"
                    f"{' or at ' + ', '.join(fallbacks) if fallbacks else ''}, found nothing", pytrace=False)
    return found


def _wait_port(port: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"{what} did not accept connections on 127.0.0.1:{port} within {timeout:.0f} s")


# --------------------------------------------------------------------------- Redis


class PrivateRedis:
    def __init__(self, folder: Path) -> None:
        self.exe = need("redis-server")
        self.folder, self.port = folder, free_port()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self.proc is None, "already running"
        with open(self.folder / "redis.log", "ab") as log:
            self.proc = subprocess.Popen(
                [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--daemonize", "no", "--dir", str(self.folder)], stdout=log, stderr=log, start_new_session=True)
        _wait_port(self.port, 10, "redis-server")

    def stop(self) -> None:
        """SIGKILL: the cache vanishes mid-conversation, as in a crash."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def dbsize(self) -> int:
        import redis

        client = redis.Redis.from_url(self.url, socket_timeout=2)
        try:
            return int(client.dbsize())  # type: ignore[arg-type]
        finally:
            client.close()

    def __enter__(self) -> PrivateRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- PostgreSQL


class PrivateCluster:
    """One PostgreSQL cluster; ``url`` names its ``postgres`` database (trust auth, 127.0.0.1)."""

    def __init__(self) -> None:
        self.bin = Path(need("pg_ctl", "/usr/lib/postgresql/*/bin/pg_ctl")).resolve().parent
        need("initdb", str(self.bin / "initdb"))
        self.as_postgres = os.geteuid() == 0
        self.root = Path(tempfile.mkdtemp(prefix="formcheck-pg-"))
        if self.as_postgres:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                pytest.fail("running as root, the fault tests run PostgreSQL as the 'postgres' user (initdb refuses "
                            "root); no such user here", pytrace=False)
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self.data, self.log = self.root / "data", self.root / "postgres.log"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60) -> None:
        cmd = [str(a) for a in args]
        if self.as_postgres:
            cmd = [need("runuser"), "-u", "postgres", "--", *cmd]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.root,
                             stdin=subprocess.DEVNULL)
        if res.returncode != 0:
            tail = self.log.read_text()[-1500:] if self.log.exists() else ""
            pytest.fail(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr[-1500:]}\n{tail}")

    def init(self) -> None:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                  "--no-sync", "--no-instructions")

    def start(self) -> None:
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c full_page_writes=off -c synchronous_commit=off")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.log), "-w", "-t", "30",
                  "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast``: every session is told to end (as in a restart); ``immediate``: as a crash."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


# --------------------------------------------------------------------------- formcheck serve


def serve_env(xdg: Path, data: Path, **extra: str) -> dict[str, str]:
    """This environment minus formcheck's and the services' settings, plus a test server's."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FORMCHECK_", "OPENAI_")) and k not in ("DATABASE_URL", "REDIS_URL")}
    env.update({"XDG_CACHE_HOME": str(xdg), "FORMCHECK_DATA_DIR": str(data), "FORMCHECK_WORKERS": "2",
                "FORMCHECK_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1", "FORMCHECK_RATE_LIMIT": "100000/1m",
                "FORMCHECK_POST_RATE_LIMIT": "100000/1m", **extra})
    return env


def fresh_cache(xdg: Path, root: Path) -> Path:
    """An XDG cache with the session's model bundle but no cached frames or results."""
    fresh = root / "xdg"
    (fresh / "formcheck").mkdir(parents=True)
    (fresh / "formcheck" / "models").symlink_to(xdg / "formcheck" / "models")
    return fresh


def create_key(env: dict[str, str]) -> dict[str, str]:
    out = subprocess.run([sys.executable, "-m", "api.cli", "keys", "create", "--name", "faults"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr[-2000:]
    return {"Authorization": f"Bearer {out.stdout.strip()}"}


class Served:
    def __init__(self, env: dict[str, str], log: Path, prefix: Sequence[str] = ()) -> None:
        self.env, self.log, self.prefix = env, log, list(prefix)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120.0) -> float:
        """Start and wait until ``/health/ready`` is 200; the time it was."""
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([*self.prefix, sys.executable, "-m", "api.cli", "serve", "--port",
                                          str(self.port)], cwd=REPO, env=self.env, stdout=out, stderr=out,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"formcheck serve exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=2).status_code == 200:
                    return time.monotonic()
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        pytest.fail(f"formcheck serve not ready in {timeout:.0f} s:\n{self.tail()}")

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:]

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the API process alone (not its group) and reap it."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(60)

    def group(self) -> list[int]:
        """Live processes of the server's session (the API process, its workers, orphans included)."""
        assert self.proc is not None
        out = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[2]) == self.proc.pid and fields[0] not in ("Z", "X"):
                out.append(int(stat.parent.name))
        return out

    def kill_all(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(30)

    def __enter__(self) -> Served:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill_all()


class Api:
    """One key's view of a server; ``submitted`` holds every job id answered with 202."""

    def __init__(self, url: str, key: dict[str, str]) -> None:
        self.url, self.key = url, key
        self.submitted: list[str] = []

    def get(self, path: str, timeout: float = 10) -> httpx.Response:
        return httpx.get(self.url + path, headers=self.key, timeout=timeout)

    def post(self, clip: Path, **fields: str) -> httpx.Response:
        """Upload ``clip``; a 202 adds the job to ``submitted``."""
        with open(clip, "rb") as f:
            r = httpx.post(f"{self.url}/v1/analyses", files={"file": (clip.name, f, "video/mp4")}, data=fields,
                           headers=self.key, timeout=60)
        if r.status_code == 202:
            self.submitted.append(str(r.json()["id"]))
        return r

    def submit(self, clip: Path, **fields: str) -> str:
        r = self.post(clip, **fields)
        assert r.status_code == 202, (r.status_code, r.text[:500])
        return self.submitted[-1]

    def try_submit(self, clip: Path, **fields: str) -> int | str:
        """The status code of an upload, or the transport error's name."""
        try:
            return self.post(clip, **fields).status_code
        except httpx.HTTPError as exc:
            return type(exc).__name__

    def job(self, job_id: str) -> dict[str, Any] | None:
        """The job, or None when the server did not answer it (down, restarting, database away)."""
        try:
            r = self.get(f"/v1/analyses/{job_id}")
        except httpx.HTTPError:
            return None
        return r.json() if r.status_code == 200 else None  # type: ignore[no-any-return]

    def wait(self, job_id: str, want: Iterable[str], timeout: float = 120) -> dict[str, Any]:
        want = set(want)
        deadline = time.monotonic() + timeout
        job = None
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job is not None and job["status"] in want:
                return job
            time.sleep(0.1)
        pytest.fail(f"job {job_id} never reached {sorted(want)} in {timeout:.0f} s (last: {job})")

    def wait_all(self, timeout: float = 180) -> dict[str, dict[str, Any]]:
        """Every submitted job once it ended (done or failed)."""
        deadline = time.monotonic() + timeout
        return {j: self.wait(j, TERMINAL, max(1.0, deadline - time.monotonic())) for j in self.submitted}

    def ready(self) -> tuple[int, dict[str, Any]]:
        r = httpx.get(f"{self.url}/health/ready", timeout=10)
        return r.status_code, r.json()


class TinyDisk:
    """A small tmpfs over ``folder``, seen by the server alone: the server runs in a mount namespace
    of its own (``prefix`` for ``Served``; ``unshare``, as root, else with a user namespace), so
    nothing is mounted on the machine and nothing outlives the server. ``sh`` runs a command in
    that namespace (``nsenter``): fill the disk, free it, make the mount read-only (``remount,bind,ro``:
    allowed in a user namespace too)... ``$DISK`` names the folder. Root ignores permissions
    (``chmod`` would prove nothing); a full or read-only file system stops root too."""

    def __init__(self, folder: Path, size: str = "16m") -> None:
        self.folder, self.size = folder, size
        self.root = os.geteuid() == 0
        self.unshare, self.nsenter = need("unshare"), need("nsenter")
        self.pid: int | None = None

    def prefix(self) -> list[str]:
        ns = ["--mount", "--propagation", "private"] if self.root else ["--user", "--map-root-user", "--mount"]
        script = 'mkdir -p "$DISK" && mount -t tmpfs -o "size=$SIZE" formcheck-faults "$DISK" && exec "$@"'
        return ["env", f"DISK={self.folder}", f"SIZE={self.size}", self.unshare, *ns, "--", "sh", "-c", script, "sh"]

    def sh(self, script: str) -> str:
        assert self.pid is not None, "set pid to the server's (Served.proc.pid)"
        ns = ["--mount"] if self.root else ["--user", "--mount", "--preserve-credentials"]
        res = subprocess.run([self.nsenter, "--target", str(self.pid), *ns, "--", "sh", "-c", script],
                             env={**os.environ, "DISK": str(self.folder)}, capture_output=True, text=True,
                             timeout=30)
        assert res.returncode == 0, f"{script!r} in the server's mount namespace: {res.stderr}"
        return res.stdout


class StuckUpstream:
    """An OpenAI-compatible address on 127.0.0.1 that takes connections and never completes an
    answer: ``silent`` reads the request and says nothing; ``trickle`` sends a 200 header, then one
    byte of body every ``every_s`` (each read arrives within any per-read timeout), closing after
    ``give_up_s`` so a client without an overall deadline fails late instead of hanging the test.
    ``connections`` counts the attempts that reached it."""

    def __init__(self, mode: str, every_s: float = 0.3, give_up_s: float = 8.0) -> None:
        assert mode in ("silent", "trickle"), mode
        self.mode, self.every_s, self.give_up_s = mode, every_s, give_up_s
        self.connections = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._open: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}/v1"

    def _serve(self) -> None:
        self._sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            self._open.append(conn)
            threading.Thread(target=self._hold, args=(conn,), daemon=True).start()

    def _hold(self, conn: socket.socket) -> None:
        conn.settimeout(self.give_up_s)
        with contextlib.suppress(OSError):
            conn.recv(65536)  # the request (its head at least)
            if self.mode == "trickle":
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{")
                deadline = time.monotonic() + self.give_up_s
                while time.monotonic() < deadline and not self._stop.wait(self.every_s):
                    conn.sendall(b" ")
            else:
                self._stop.wait(self.give_up_s)
        conn.close()

    def __enter__(self) -> StuckUpstream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)  # out of accept() before its socket goes
        self._sock.close()
        for conn in self._open:
            with contextlib.suppress(OSError):
                conn.close()


def variant(src: Path, dst: Path, seed: int, start: int = 0, stop: int | None = None) -> Path:
    """Frames ``start..stop`` of ``src`` with a 24-px noise patch from ``seed`` on every frame."""
    frames, fps = read_frames(src, start, stop)
    patch = np.random.default_rng(seed).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    for img in frames:
        img[:24, :24] = patch
    return write_video(dst, frames, fps)
