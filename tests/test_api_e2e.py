"""End to end: ``formcheck serve`` as a subprocess, driven over HTTP.

- a real dev clip uploaded, the SSE stream followed to ``done``, every file downloaded;
  on SQLite, and on PostgreSQL + Redis (a fresh database per test; both must be up);
- SIGTERM mid-job, then a restart: the job finishes, none is lost;
- a pool worker killed with SIGKILL mid-job: the job still ends (done or failed with a
  reason) and the service keeps serving.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from helpers import REPO, sse_events

from pipeline.pool import STILL_WORKER_NAME, WORKER_NAME

PG_URL = os.environ.get("FORMCHECK_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("FORMCHECK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
LONG_CLIP = "squat_rjsong_2.mp4"  # 900 frames: ~10 s of inference at every frame on two workers


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log, self.port = env, log, _port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> None:
        with open(self.log, "ab") as out:  # the child keeps its own descriptor
            self.proc = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", str(self.port)],
                                         cwd=REPO, env=self.env, stdout=out, stderr=out, start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"formcheck serve exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        pytest.fail(f"formcheck serve not ready in {timeout:.0f} s:\n{self.log.read_text()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> bool:
        """Signal the server; True when it shut down cleanly (uvicorn re-raises the signal it
        caught once it has shut down, so the exit status is -sig)."""
        assert self.proc is not None
        before = self.log.read_text().count('"msg": "stopped"')
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            pytest.fail(f"formcheck serve did not stop within {timeout:.0f} s of signal {sig}")
        clean = self.log.read_text().count('"msg": "stopped"') > before
        return code in (0, -sig) and clean

    def kill_all(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def workers(self, name: str = WORKER_NAME) -> list[int]:
        """The inference pool's workers (or, by ``name``, the still worker): spawned children of
        the server, told apart by the process name they set."""
        assert self.proc is not None
        kids = []
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            kids += [int(p) for p in (task / "children").read_text().split()]
        return [k for k in kids if "spawn_main" in _proc(k, "cmdline") and _proc(k, "comm").strip() == name]


def _proc(pid: int, what: str) -> str:
    try:
        return Path(f"/proc/{pid}/{what}").read_bytes().decode(errors="replace")
    except OSError:  # gone meanwhile
        return ""


def _post_frame(srv: Server, key: dict[str, str], dev_dir: Path, index: int = 0) -> httpx.Response:
    """A new 640x480 JPEG (frame ``index`` of a dev clip, not seen before by this server)."""
    import cv2

    cap = cv2.VideoCapture(str(dev_dir / "squat_kaiakol_1.mp4"))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 10 * index)
    ok, img = cap.read()
    cap.release()
    assert ok
    jpg = cv2.imencode(".jpg", cv2.resize(img, (640, 480)))[1].tobytes()
    return httpx.post(f"{srv.url}/v1/frames", files={"file": (f"f{index}.jpg", jpg, "image/jpeg")},
                      headers=key, timeout=60)


def _env(xdg: Path, data: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORMCHECK_") and k not in ("DATABASE_URL",
                                                                                                  "REDIS_URL")}
    env.update({"XDG_CACHE_HOME": str(xdg), "FORMCHECK_DATA_DIR": str(data), "FORMCHECK_WORKERS": "2",
                "FORMCHECK_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1", "FORMCHECK_RATE_LIMIT": "100000/1m",
                "FORMCHECK_POST_RATE_LIMIT": "1000/1m", **extra})
    return env


def _fresh_cache(xdg: Path, root: Path) -> Path:
    """An XDG cache with the session's model but no cached frames or results (a job that must infer)."""
    fresh = root / "xdg"
    (fresh / "formcheck").mkdir(parents=True)
    (fresh / "formcheck" / "models").symlink_to(xdg / "formcheck" / "models")
    return fresh


def _create_key(env: dict[str, str]) -> dict[str, str]:
    out = subprocess.run([sys.executable, "-m", "api.cli", "keys", "create", "--name", "e2e"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    key = out.stdout.strip()
    assert key.startswith("fc_") and key not in out.stderr  # printed once, on stdout only
    return {"Authorization": f"Bearer {key}"}


@contextmanager
def _server(env: dict[str, str], log: Path) -> Iterator[Server]:
    srv = Server(env, log)
    try:
        srv.start()  # a server that never got ready is killed too (it lived on after a failed test)
        yield srv
    finally:
        srv.kill_all()


def _upload(srv: Server, key: dict[str, str], clip: Path, **fields: str) -> str:
    with open(clip, "rb") as f:
        r = httpx.post(f"{srv.url}/v1/analyses", files={"file": (clip.name, f, "video/mp4")}, data=fields,
                       headers=key, timeout=60)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def _follow(srv: Server, key: dict[str, str], job_id: str, timeout: float = 240) -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    with httpx.stream("GET", f"{srv.url}/v1/analyses/{job_id}/events", headers=key,
                      timeout=httpx.Timeout(timeout, connect=5)) as resp:
        assert resp.status_code == 200
        return sse_events(resp.iter_lines())


def _wait_status(srv: Server, key: dict[str, str], job_id: str, want: set[str], timeout: float = 120) -> dict:  # type: ignore[type-arg]
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = httpx.get(f"{srv.url}/v1/analyses/{job_id}", headers=key, timeout=10)
        assert r.status_code == 200, r.text
        job = r.json()
        if job["status"] in want:
            return job  # type: ignore[no-any-return]
        time.sleep(0.2)
    pytest.fail(f"job {job_id} never reached {want} in {timeout:.0f} s")


def _full_run(srv: Server, key: dict[str, str], dev_dir: Path) -> None:
    job_id = _upload(srv, key, dev_dir / "pushup_kaiakol_2.mp4", exercise="auto")
    events = _follow(srv, key, job_id)
    assert events[-1][0] == "done", events[-1]
    result = events[-1][1]["result"]
    assert result["rep_count"] >= 1 and result["exercise"]["name"] == "pushup"
    files = {}
    for name in ("annotated.mp4", "reps.png", "angles.csv", "analysis.json"):
        r = httpx.get(f"{srv.url}/v1/analyses/{job_id}/{name}", headers=key, timeout=30)
        assert r.status_code == 200, (name, r.text[:300])
        files[name] = r.content
    assert files["annotated.mp4"][4:8] == b"ftyp" and len(files["annotated.mp4"]) > 10_000
    assert files["reps.png"].startswith(b"\x89PNG")
    assert json.loads(files["analysis.json"])["rep_count"] == result["rep_count"]
    assert len(files["angles.csv"].splitlines()) > 10
    metrics = httpx.get(f"{srv.url}/metrics", timeout=10).text
    assert 'formcheck_jobs{state="done"} 1.0' in metrics


def test_serve_sqlite_end_to_end(xdg_cache: Path, tmp_path: Path, dev_dir: Path) -> None:
    env = _env(xdg_cache, tmp_path / "data")
    key = _create_key(env)
    with _server(env, tmp_path / "serve.log") as srv:
        _full_run(srv, key, dev_dir)
        assert srv.stop()
    logs = [json.loads(line) for line in (tmp_path / "serve.log").read_text().splitlines() if line.startswith("{")]
    assert any(rec["msg"] == "ready" for rec in logs) and not any(key["Authorization"][7:] in json.dumps(rec)
                                                                    for rec in logs)


def test_serve_postgres_redis_end_to_end(xdg_cache: Path, tmp_path: Path, dev_dir: Path, pg_database: str) -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {REDIS_URL} is unavailable ({exc}); start it or set FORMCHECK_TEST_REDIS_URL")
    env = _env(xdg_cache, tmp_path / "data", DATABASE_URL=pg_database, REDIS_URL=REDIS_URL)
    key = _create_key(env)
    with _server(env, tmp_path / "serve.log") as srv:
        ready = httpx.get(f"{srv.url}/health/ready", timeout=10).json()
        assert ready["checks"]["database"]["kind"] == "postgresql" and ready["checks"]["redis"]["ok"]
        assert "redis" in ready["checks"]["cache"]
        _full_run(srv, key, dev_dir)
        assert srv.stop()
    assert not (tmp_path / "data" / "formcheck.sqlite3").exists()  # the jobs went to PostgreSQL


def test_sigterm_mid_job_then_restart_finishes_it(xdg_cache: Path, tmp_path: Path, dev_dir: Path) -> None:
    env = _env(_fresh_cache(xdg_cache, tmp_path), tmp_path / "data")
    key = _create_key(env)
    srv = Server(env, tmp_path / "serve.log")
    try:
        srv.start()
        job_id = _upload(srv, key, dev_dir / LONG_CLIP, fps="0", exercise="squat")  # every frame: a long job
        _wait_status(srv, key, job_id, {"running"})
        time.sleep(1.0)
        t0 = time.time()
        assert srv.stop(signal.SIGTERM)
        assert time.time() - t0 < 45  # grace, then re-queued: SIGTERM does not hang
        srv.start()  # same data dir: the job is resumed
        events = _follow(srv, key, job_id)
        assert events[-1][0] == "done", events[-1]
        assert events[-1][1]["result"]["frames"]["analyzed"] == 900
        assert srv.stop()
    finally:
        srv.kill_all()
    text = (tmp_path / "serve.log").read_text()
    assert "re-queued at shutdown" in text or "job done" in text


def test_worker_killed_mid_job_job_ends_and_service_serves(xdg_cache: Path, tmp_path: Path, dev_dir: Path) -> None:
    env = _env(_fresh_cache(xdg_cache, tmp_path), tmp_path / "data", FORMCHECK_JOB_ATTEMPTS="2")
    key = _create_key(env)
    with _server(env, tmp_path / "serve.log") as srv:
        job_id = _upload(srv, key, dev_dir / LONG_CLIP, fps="0", exercise="squat")
        job = _wait_status(srv, key, job_id, {"running"})
        time.sleep(1.0)
        assert job["phase"] == "analyzing" and job["progress"] < 0.5, job  # the pool is busy with it
        victims = srv.workers()
        assert victims, "no inference worker found among the server's children"
        (still,) = srv.workers(STILL_WORKER_NAME)  # stills have a worker of their own
        frame = _post_frame(srv, key, dev_dir)  # answered while the pool is busy with the job
        assert frame.status_code == 200 and frame.json()["frames"][0]["pose_found"], frame.text
        os.kill(victims[0], signal.SIGKILL)
        job = _wait_status(srv, key, job_id, {"done", "failed"}, timeout=240)
        if job["status"] == "failed":
            assert job["error"] and "worker" in job["error"]
        else:
            assert job["result"]["frames"]["analyzed"] == 900 and job["attempts"] == 2
        ready = httpx.get(f"{srv.url}/health/ready", timeout=10)
        assert ready.status_code == 200 and ready.json()["checks"]["workers"]["replaced"] >= 1
        again = _upload(srv, key, dev_dir / "squat_kaiakol_1.mp4", exercise="squat")
        assert _follow(srv, key, again)[-1][0] == "done"
        assert victims[0] not in srv.workers()
        assert srv.workers(STILL_WORKER_NAME) == [still]  # the pool's replacement left it alone
        os.kill(still, signal.SIGKILL)  # now the still worker: the next frame gets 503 or its answer
        assert _post_frame(srv, key, dev_dir, 1).status_code in (200, 503)
        after = _post_frame(srv, key, dev_dir, 2)
        assert after.status_code == 200 and after.json()["frames"][0]["pose_found"], after.text
        assert srv.workers(STILL_WORKER_NAME) not in ([], [still])
