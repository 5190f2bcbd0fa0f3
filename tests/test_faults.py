"""Faults injected into a running ``formcheck serve`` on real, private services (``servicekit``):
none may lose a job, and every test counts the jobs answered 202 against the jobs that ended.

- Redis killed while analyses are submitted and polled: they finish, ``/health/ready`` is 200
  ``degraded``; Redis back: ``ready`` again and written to again.
- PostgreSQL stopped and started mid-run: the asyncpg pool reconnects, every job ends done.
- The server SIGKILLed mid-job and restarted on the same data: the job resumes at once (the
  lease of a runner whose process is gone is ended, not waited out) and finishes.
- The artifacts folder full, then read-only: the job fails saying so, the service keeps
  serving, and once there is room a job finishes.
- The model endpoint hanging (accepts, never answers; or trickles its answer): the
  recommendation comes from the rules within the configured timeouts.

A killed inference worker is ``test_api_e2e.test_worker_killed_mid_job_job_ends_and_service_serves``.

With Redis away the rate limits count in each process (``api/limits.py``) and every keyed route
keeps answering. A SIGKILLed API process's inference workers leave by themselves (they watch
their parent, ``pipeline/pool.py``); the test still kills any left, as a supervisor would.
Clips are short (38 to 90 frames), jobs few, and the file has a time budget
(``FILE_BUDGET_S``): about 1.5 minutes on 2 busy cores.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from litestar.testing import TestClient
from servicekit import (
    TERMINAL,
    Api,
    PrivateCluster,
    PrivateRedis,
    Served,
    StuckUpstream,
    TinyDisk,
    create_key,
    fresh_cache,
    serve_env,
    variant,
)
from test_api import _key, _settings
from test_recommend import MODEL, SECRET, SQUAT

from api.app import create_app
from api.store import NewJob, PostgresStore, SqliteStore, Store
from api.store.leases import NODE, holder_gone, runner_name
from pipeline.cache.redis_tier import RedisTier

SQUAT_CLIP = "squat_kaiakol_1.mp4"  # 38 frames
PUSHUP = "pushup_kaiakol_2.mp4"  # 90 frames

PG_URL = os.environ.get("FORMCHECK_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
MARGIN_S = 1.5  # over a recommendation's bound: retries x timeout + backoff (a busy machine's scheduling)

FILE_BUDGET_S = 300.0  # the whole file (~100 s on 2 busy cores); a hang fails, it never stalls CI
TEST_BUDGET_S = 120.0

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def _file_started() -> float:
    return time.monotonic()


@pytest.fixture(autouse=True)
def _bounded(_file_started: float) -> Iterator[None]:
    """Each test gets what is left of the file's budget (at most TEST_BUDGET_S): SIGALRM fails it
    where it waits (the main thread's sleep, HTTP call or subprocess), its ``finally`` blocks and
    context managers still stop the services it started."""
    left = min(TEST_BUDGET_S, FILE_BUDGET_S - (time.monotonic() - _file_started))
    if left <= 0:
        pytest.fail(f"the fault tests used their {FILE_BUDGET_S:.0f} s budget before this one", pytrace=False)

    def expired(signum: int, frame: object) -> None:
        pytest.fail(f"over budget: {left:.0f} s (the file's {FILE_BUDGET_S:.0f} s, at most {TEST_BUDGET_S:.0f} s "
                    "a test)", pytrace=False)

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, left)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def clips(dev_dir: Path, tmp_path: Path) -> Iterator[list[Path]]:
    """Distinct short clips (new pixels each): every upload is a job that infers."""
    out = tmp_path / "clips"
    out.mkdir()
    made = [variant(dev_dir / PUSHUP, out / f"pushup_{i}.mp4", seed=i, start=0, stop=60) for i in range(3)]
    made += [variant(dev_dir / SQUAT_CLIP, out / f"squat_{i}.mp4", seed=10 + i) for i in range(3)]
    yield made


class Poller:
    """Status polls (and liveness) in a background thread while a fault is injected: the answers
    by status code (``no answer`` for a transport failure), before/while/after the fault."""

    def __init__(self, api: Api) -> None:
        self.api, self.phase = api, "before"
        self.seen: dict[str, Counter[str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for job_id in list(self.api.submitted) or [""]:
                path = f"/v1/analyses/{job_id}" if job_id else "/health"
                try:
                    code = str(self.api.get(path, timeout=5).status_code)
                except httpx.HTTPError:
                    code = "no answer"
                self.seen.setdefault(self.phase, Counter())[code] += 1
            self._stop.wait(0.2)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def _ended(api: Api) -> dict[str, dict[str, Any]]:
    jobs = api.wait_all()
    assert len(jobs) == len(api.submitted), "a job accepted with 202 was lost"
    return jobs


# --------------------------------------------------------------------------- the server SIGKILLed


def test_server_sigkilled_mid_job_resumes_it_at_restart(xdg_cache: Path, tmp_path: Path, dev_dir: Path) -> None:
    env = serve_env(fresh_cache(xdg_cache, tmp_path), tmp_path / "data")
    api = Api("", create_key(env))
    srv = Served(env, tmp_path / "serve.log")
    try:
        srv.start()
        api.url = srv.url
        job_id = api.submit(dev_dir / PUSHUP, fps="0", exercise="pushup")  # every frame: a few seconds of work
        job = api.wait(job_id, {"running", "done"})
        deadline = time.monotonic() + 60
        while job["status"] == "running" and job["progress"] <= 0.05 and time.monotonic() < deadline:
            time.sleep(0.05)
            job = api.job(job_id) or job
        assert job["status"] == "running", f"the job ended before the kill: {job['status']}"
        srv.kill(signal.SIGKILL)
        killed = time.monotonic()
        orphans = srv.group()
        print(f"after SIGKILL of the API process: {len(orphans)} process(es) of its group left: {orphans}")
        srv.kill_all()  # its orphaned inference workers (see the module docstring)
        ready = srv.start()
        while (job := api.job(job_id) or job)["attempts"] < 2 and time.monotonic() - ready < 60:
            time.sleep(0.05)  # still "running" as the dead runner left it, until claimed again
        resumed = time.monotonic()
        job = api.wait(job_id, {"done", "failed"}, timeout=120)
        ended = _ended(api)
    finally:
        srv.kill_all()
    print(f"SIGKILL -> ready again {ready - killed:.1f} s; ready -> job resumed {resumed - ready:.1f} s")
    assert job["status"] == "done", job["error"]
    assert job["attempts"] == 2 and job["result"]["frames"]["analyzed"] == 90
    # Resumed at once: the lease (30 s from its last renewal) was ended, not waited out.
    assert resumed - ready < 5.0, f"the job waited {resumed - ready:.1f} s after the restart"
    assert "the runner holding a job is gone" in srv.tail(200_000)
    assert list(ended) == [job_id]  # submitted 1, ended 1


# --------------------------------------------------------------------------- artifacts disk full, read-only


def test_artifacts_disk_full_then_read_only_fails_jobs_clearly_and_serves_on(
        xdg_cache: Path, tmp_path: Path, dev_dir: Path) -> None:
    data = tmp_path / "data"
    art = data / "artifacts"
    env = serve_env(fresh_cache(xdg_cache, tmp_path), data)
    api = Api("", create_key(env))
    disk = TinyDisk(art, size="16m")
    with Served(env, tmp_path / "serve.log", prefix=disk.prefix()) as srv:
        assert srv.proc is not None
        api.url, disk.pid = srv.url, srv.proc.pid
        disk.sh('head -c 17m /dev/zero > "$DISK/.filler" 2>/dev/null; df -k "$DISK" | tail -1')  # full
        full = api.wait(api.submit(dev_dir / SQUAT_CLIP), TERMINAL)
        assert full["status"] == "failed" and full["error"].startswith(
            f"could not write the artifacts under {art}: No space left on device"), full["error"]
        assert disk.sh('ls -A "$DISK"').split() == [".filler"]  # nothing half-written left behind
        assert httpx.get(f"{srv.url}/health", timeout=10).status_code == 200 and api.ready()[0] == 200

        disk.sh('rm "$DISK/.filler" && head -c 16674816 /dev/zero > "$DISK/.filler"')  # 100 kB left: not the video
        short = api.wait(api.submit(dev_dir / SQUAT_CLIP), TERMINAL)
        assert short["status"] == "failed" and short["error"].startswith(
            f"could not write the artifacts under {art}: No space left on device"), short["error"]
        assert disk.sh('ls -A "$DISK"').split() == [".filler"]

        disk.sh('rm "$DISK/.filler" && mount -o remount,bind,ro "$DISK"')  # room, but read-only
        read_only = api.wait(api.submit(dev_dir / SQUAT_CLIP), TERMINAL)
        assert read_only["status"] == "failed" and read_only["error"].startswith(
            f"could not write the artifacts under {art}: Read-only file system"), read_only["error"]

        disk.sh('mount -o remount,bind,rw "$DISK"')  # fixed: the next job works, on the same process
        good = api.wait(api.submit(dev_dir / SQUAT_CLIP), TERMINAL)
        assert good["status"] == "done", good["error"]
        png = api.get(f"/v1/analyses/{good['id']}/reps.png")
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
        jobs = _ended(api)
    assert Counter(j["status"] for j in jobs.values()) == {"failed": 3, "done": 1}  # submitted 4, ended 4


# --------------------------------------------------------------------------- Redis killed under load

def _cache(api: Api) -> dict[str, Any]:
    return api.ready()[1]["checks"]["cache"]["redis"]  # type: ignore[no-any-return]


def _done_in_db(url: str) -> int:
    """Jobs done, from /metrics (read from the database at scrape time, never rate limited)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    line = next(ln for ln in text.splitlines() if ln.startswith('formcheck_jobs{state="done"}'))
    return int(float(line.split()[-1]))


def test_redis_killed_under_load_jobs_finish_degraded_then_recovers(
        xdg_cache: Path, tmp_path: Path, clips: list[Path]) -> None:
    backoff_s = inspect.signature(RedisTier).parameters["backoff_s"].default  # its quiet spell after a failure
    redis = PrivateRedis(tmp_path / "redis")
    redis.start()
    env = serve_env(fresh_cache(xdg_cache, tmp_path), tmp_path / "data", REDIS_URL=redis.url)
    api = Api("", create_key(env))
    try:
        with Served(env, tmp_path / "serve.log") as srv:
            api.url = srv.url
            poller = Poller(api).__enter__()
            code, body = api.ready()
            assert (code, body["status"], body["checks"]["redis"]["ok"]) == (200, "ready", True)
            for clip in clips[:4]:  # two run at once, two wait: those run entirely without Redis
                api.submit(clip)
            api.wait(api.submitted[0], {"running", "done"})
            poller.phase = "redis down"
            redis.stop()  # SIGKILL, while jobs run and polls go on
            code, body = api.ready()
            assert (code, body["status"], body["degraded"]) == (200, "degraded", ["redis"]), body
            assert not body["checks"]["redis"]["ok"] and "Connection" in body["checks"]["redis"]["error"]
            outage_post = api.try_submit(clips[4])
            deadline = time.monotonic() + 120
            while _done_in_db(srv.url) < len(api.submitted) and time.monotonic() < deadline:
                time.sleep(0.3)
            assert _done_in_db(srv.url) == len(api.submitted), "jobs did not finish while Redis was away"
            last_failure = time.monotonic()
            assert api.ready()[1]["status"] == "degraded"

            poller.phase = "redis back"
            redis.start()  # empty, on the same port
            code, body = api.ready()
            assert (code, body["status"], body["degraded"]) == (200, "ready", []), body
            assert _cache(api)["errors"] >= 1  # the tier noticed, and answered as a miss
            time.sleep(max(0.0, last_failure + backoff_s + 0.5 - time.monotonic()))
            before = _cache(api)
            back_posts = [api.try_submit(clips[5])]
            assert back_posts == [202], back_posts
            jobs = _ended(api)
            after = _cache(api)
            assert after["puts"] > before["puts"] and after["errors"] == before["errors"], (before, after)
            assert redis.dbsize() > 0  # written to again since it came back empty
            poller.__exit__()
    finally:
        redis.stop()
    assert all(j["status"] == "done" for j in jobs.values()), jobs  # every 202 ended done
    print(f"jobs submitted {len(api.submitted)}, done {len(jobs)}; uploads while Redis was down {[outage_post]}, "
          f"once back {back_posts}; status polls by answer: {poller.seen}")
    answers = {str(outage_post), *map(str, back_posts), *poller.seen["redis down"], *poller.seen["redis back"]}
    assert answers <= {"200", "202"}, poller.seen  # the front door (rate limits, keys) held without Redis


# --------------------------------------------------------------------------- PostgreSQL restarted


@pytest.fixture
def cluster() -> Iterator[PrivateCluster]:
    pg = PrivateCluster()
    try:
        pg.init()
        pg.start()
        yield pg
    finally:
        pg.destroy()


def test_postgres_restarted_mid_run_pool_reconnects_no_job_lost(
        xdg_cache: Path, tmp_path: Path, clips: list[Path], cluster: PrivateCluster) -> None:
    env = serve_env(fresh_cache(xdg_cache, tmp_path), tmp_path / "data", DATABASE_URL=cluster.url,
                    FORMCHECK_DB_POOL_MIN="2", FORMCHECK_DB_POOL_MAX="5")
    api = Api("", create_key(env))
    with Served(env, tmp_path / "serve.log") as srv:
        api.url = srv.url
        with Poller(api) as poller:
            for clip in clips[:4]:
                api.submit(clip)
            deadline = time.monotonic() + 120
            while (api.job(api.submitted[0]) or {}).get("phase") != "rendering" and time.monotonic() < deadline:
                time.sleep(0.05)  # stop it just before a job ends: its result is written while it is down
            poller.phase = "postgres down"
            cluster.stop("fast")  # every session is ended, as in a restart
            code, body = api.ready()
            assert code == 503 and not body["checks"]["database"]["ok"], body
            assert httpx.get(f"{srv.url}/health", timeout=10).status_code == 200  # alive, not ready
            outage_post = api.try_submit(clips[4])
            r = api.get(f"/v1/analyses/{api.submitted[0]}")
            assert r.status_code == 503 and r.headers["content-type"].startswith("application/problem+json"), r.text
            assert int(r.headers["retry-after"]) > 0 and "database is unavailable" in r.json()["detail"], r.text
            deadline = time.monotonic() + 30
            while "recording a job result failed" not in srv.tail(1_000_000) and time.monotonic() < deadline:
                time.sleep(0.2)  # jobs run on; lease renewals and the result write fail meanwhile
            time.sleep(1.0)
            cluster.start()
            poller.phase = "postgres back"
            deadline = time.monotonic() + 30
            while (code := api.ready()[0]) != 200 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert code == 200, "not ready again after PostgreSQL came back"
            api.submit(clips[5])
            jobs = _ended(api)
    log = srv.tail(1_000_000)
    print(f"jobs submitted {len(api.submitted)}, ended {len(jobs)} "
          f"{Counter(j['status'] for j in jobs.values())}, attempts {sorted(j['attempts'] for j in jobs.values())}; "
          f"upload while down: {outage_post}; status polls by answer: {poller.seen}; "
          f"result writes retried: {log.count('recording a job result failed')}")
    assert all(j["status"] == "done" for j in jobs.values()), jobs  # every 202 ended done
    assert all(j["attempts"] == 1 for j in jobs.values()), "a job ran twice: its result was not recorded in time"
    assert set(poller.seen["postgres back"]) == {"200"}, poller.seen  # the pool reconnected
    # while it was down: 503 problem details with Retry-After ("come back"), never a 500
    assert "503" in poller.seen["postgres down"] and "500" not in poller.seen["postgres down"], poller.seen
    assert outage_post == 503, outage_post
    assert "recording a job result failed" in log and "lost its lease" not in log


# --------------------------------------------------------------------------- the model endpoint hanging


@pytest.mark.parametrize("mode", ["silent", "trickle"])
def test_model_endpoint_hanging_answers_with_the_rules_in_time(xdg_cache: Path, tmp_path: Path, mode: str) -> None:
    """The route, in process (no inference needed); the upstream is a real socket that never answers.
    (429, 5xx, malformed and slow-then-answered upstreams: ``test_recommend_api``, ``test_recommend``.)"""
    import openai  # noqa: F401 - imported on the first model call: its ~0.5 s is not the timeout's

    timeout_s, retries, backoff_s = 1.0, 1, 0.05
    with StuckUpstream(mode) as stuck:
        s = _settings(xdg_cache, tmp_path, OPENAI_API_KEY=SECRET, OPENAI_MODEL=MODEL, OPENAI_BASE_URL=stuck.base_url,
                      FORMCHECK_OPENAI_TIMEOUT_S=str(timeout_s), FORMCHECK_OPENAI_RETRIES=str(retries),
                      FORMCHECK_OPENAI_BACKOFF_S=str(backoff_s), FORMCHECK_RECOMMEND_RATE_LIMIT="1000/1m")
        key = _key(s, "k")
        with TestClient(create_app(s, workers=1, warm=False, run_jobs=False), timeout=60) as client:
            t0 = time.monotonic()
            r = client.post("/v1/recommendations", json={"analysis": SQUAT, "goal": "strength"}, headers=key)
            elapsed = time.monotonic() - t0
            assert client.get("/health").status_code == 200
        attempts = stuck.connections
    bound = (retries + 1) * timeout_s + retries * backoff_s
    print(f"{mode}: answered in {elapsed:.2f} s (bound {bound:.2f} s + {MARGIN_S} s), {attempts} attempts")
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["source"], body["fallback"], body["cached"]) == ("rules", "timeout", False)
    assert body["cues"] and body["prescription"]["sets"] >= 1  # a usable answer all the same
    assert attempts == retries + 1
    assert bound * 0.9 <= elapsed < bound + MARGIN_S


# --------------------------------------------------------------------------- leases of gone runners


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_lease_of_a_gone_runner_ends_at_once(backend: str, tmp_path: Path) -> None:
    """The store side of the SIGKILL test, on both backends (PostgreSQL: a fresh schema on the
    shared server, as ``test_api_store`` does; nothing there is stopped)."""
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    gone = f"{done.pid}-abcdef@{socket.gethostname()}#{NODE}"
    alive, elsewhere = runner_name(), f"{done.pid}-abcdef@elsewhere#00000000"
    assert NODE and holder_gone(gone) and not holder_gone(alive) and not holder_gone(elsewhere)
    assert not holder_gone("r1") and str(os.getpid()) in alive

    async def run() -> None:
        schema = f"t_{uuid.uuid4().hex}"
        store: Store = (SqliteStore(tmp_path / "jobs.sqlite3") if backend == "sqlite"
                        else PostgresStore(PG_URL, min_size=1, max_size=2, schema=schema))
        await store.open()
        try:
            for i, runner in enumerate((gone, alive, elsewhere)):
                await store.add_job(NewJob(f"job{i}", "o", "c.mp4", "/x", "{}", ""), now=float(i))
                assert (await store.claim(runner, now=100.0, lease_s=30.0, max_attempts=3)) is not None
            assert sorted(await store.holders()) == [("job0", gone), ("job1", alive), ("job2", elsewhere)]
            assert not await store.expire("job0", alive, now=101.0)  # only the holder's lease
            assert await store.expire("job0", gone, now=101.0)
            again = await store.claim("new", now=102.0, lease_s=30.0, max_attempts=3)
            assert again is not None and (again.id, again.attempts) == ("job0", 2)
            assert await store.claim("new", now=102.0, lease_s=30.0, max_attempts=3) is None  # the rest still held
        finally:
            await store.close()
            if backend == "postgres":
                conn = await asyncpg.connect(PG_URL)
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                await conn.close()

    asyncio.run(run())
