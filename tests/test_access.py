"""Access isolation: one key never reaches another key's analyses, keys are kept hashed and
compared as hashes, and rate limits hold across API worker processes.

- Every route that takes an analysis id (read from the app's routes: a new one fails
  ``test_every_id_route_is_covered`` until ``CALLS`` says how to call it) and the
  recommendation route (the id in the body): key B gets the same 404 for key A's analyses as
  for an id that does not exist, and A's analyses are untouched; B's list never shows them.
- No plaintext key (nor its secret part) in any row of SQLite or PostgreSQL, nor in the
  SQLite files' bytes; the store is only ever asked for the SHA-256 of a key.
- ``formcheck serve --workers 2`` with Redis and a limit of 5: both API processes answer,
  exactly 5 requests get through in all, the rest are 429 problems with Retry-After and the
  RateLimit headers.
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import json
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_routes import fill, id_routes
from helpers import REPO
from litestar.testing import TestClient
from serving import REDIS_URL, create_key, server_env, serving

from api import settings
from api.app import create_app
from api.serve import add_key
from api.store import NewJob, open_store

PROBLEM = "application/problem+json"
FILES = ("annotated.mp4", "reps.png", "angles.csv", "analysis.json")
RESULT = {"schema_version": 1, "exercise": {"name": "squat", "source": "given", "confidence": 1.0},
          "view": {"name": "side", "confidence": 0.9}, "rep_count": 1, "reason": None,
          "reps": [{"rom_deg": 84.0, "eccentric_s": 0.6, "pause_s": 0.1, "concentric_s": 0.5, "asymmetry_deg": 3.0,
                    "confidence": 0.99, "faults": [], "secondary": {}}],
          "fatigue": {"tempo_drift_pct": None, "rom_loss_pct": None, "flags": []}, "fault_definitions": {}}

# How each id route is called: template -> the file names it takes (None: the id only). A route
# added with an id and no entry here fails test_every_id_route_is_covered.
CALLS: dict[tuple[str, str], tuple[str, ...] | None] = {
    ("GET", "/v1/analyses/{job_id:str}"): None,
    ("DELETE", "/v1/analyses/{job_id:str}"): None,
    ("GET", "/v1/analyses/{job_id:str}/events"): None,
    ("GET", "/v1/analyses/{job_id:str}/{name:str}"): FILES,
}


@dataclass
class Two:
    client: TestClient  # type: ignore[type-arg]
    a: dict[str, str]
    b: dict[str, str]
    done: str  # A's finished analysis (every file on disk)
    queued: str  # A's queued analysis
    data: Path
    keys: tuple[str, str]


def _owner(key: str) -> str:
    return key.split("_")[1]  # fc_<id>_<secret>


async def _seed(s: settings.Settings, owner: str) -> tuple[str, str]:
    store = open_store(s.server.database_url, s.server.sqlite_path, 1, 2)
    await store.open()
    try:
        done, queued = uuid.uuid4().hex[:20], uuid.uuid4().hex[:20]
        await store.add_done(NewJob(done, owner, "a.mp4", str(s.server.uploads / "a.mp4"), '{"exercise": "squat"}',
                                    ""), json.dumps(RESULT), time.time())
        await store.add_job(NewJob(queued, owner, "b.mp4", str(s.server.uploads / "b.mp4"), "{}", ""), time.time())
    finally:
        await store.close()
    folder = s.server.artifacts / done  # a job without a result key keeps its files under its id
    folder.mkdir(parents=True)
    for name in FILES:
        (folder / name).write_bytes(b"\x89PNG" if name == "reps.png" else json.dumps(RESULT).encode())
    return done, queued


@pytest.fixture(scope="module")
def two(xdg_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Two]:
    data = tmp_path_factory.mktemp("access")
    s = settings.load({"XDG_CACHE_HOME": str(xdg_cache), "FORMCHECK_DATA_DIR": str(data),
                       "FORMCHECK_RATE_LIMIT": "100000/1m", "FORMCHECK_POST_RATE_LIMIT": "100000/1m",
                       "FORMCHECK_RECOMMEND_RATE_LIMIT": "100000/1m"})
    ka, kb = asyncio.run(add_key(s.server, "a")), asyncio.run(add_key(s.server, "b"))
    done, queued = asyncio.run(_seed(s, _owner(ka)))
    with TestClient(create_app(s, workers=1, warm=False, run_jobs=False), timeout=30) as client:
        yield Two(client, {"Authorization": f"Bearer {ka}"}, {"Authorization": f"Bearer {kb}"}, done, queued, data,
                  (ka, kb))


def _calls(job_id: str) -> Iterator[tuple[str, str, str]]:
    """(method, template, path) of every id route for ``job_id``."""
    for (method, template), names in CALLS.items():
        for name in names or ("",):
            yield method, template, fill(template, job_id, name)


def _same_404(theirs: httpx.Response, missing: httpx.Response, their_id: str, missing_id: str) -> None:
    """Another key's analysis is answered exactly like one that does not exist."""
    assert theirs.status_code == missing.status_code == 404, (theirs.text, missing.text)
    assert theirs.headers["content-type"] == missing.headers["content-type"] == PROBLEM
    assert theirs.json() == json.loads(missing.text.replace(missing_id, their_id))
    skip = {"x-response-time", "content-length"}
    assert {k for k in theirs.headers if k not in skip} == {k for k in missing.headers if k not in skip}


def test_every_id_route_is_covered() -> None:
    routes = set(id_routes())
    assert routes == set(CALLS), (f"routes taking an id that this suite does not call: {routes - set(CALLS)}; "
                                  f"calls for routes that are gone: {set(CALLS) - routes}")


def test_the_owner_reaches_every_route(two: Two) -> None:
    """The control: A's own requests work (B's 404s below are not a broken route)."""
    c = two.client
    for method, _, path in _calls(two.done):
        if method == "DELETE":
            continue  # A deletes last
        if path.endswith("/events"):
            with c.stream("GET", path, headers=two.a) as r:
                assert r.status_code == 200 and "event: done" in "".join(r.iter_lines())
        else:
            assert c.request(method, path, headers=two.a).status_code == 200, path
    rec = c.post("/v1/recommendations", json={"analysis_id": two.done, "goal": "strength"}, headers=two.a)
    assert rec.status_code == 200, rec.text
    assert c.get(f"/v1/analyses/{two.queued}", headers=two.a).json()["status"] == "queued"


def test_another_key_gets_the_404_of_a_missing_id_on_every_route(two: Two) -> None:
    c = two.client
    tried = set()
    for their in (two.done, two.queued):
        c.get(f"/v1/analyses/{their}", headers=two.a)  # A's reads first: B must not get them from memory
        missing = uuid.uuid4().hex[:20]
        for (method, template, path), (_, _, nowhere) in zip(_calls(their), _calls(missing), strict=True):
            _same_404(c.request(method, path, headers=two.b), c.request(method, nowhere, headers=two.b), their, missing)
            tried.add((method, template))
        body = {"goal": "strength", "analysis_id": their}
        _same_404(c.post("/v1/recommendations", json=body, headers=two.b),
                  c.post("/v1/recommendations", json={**body, "analysis_id": missing}, headers=two.b), their, missing)
    assert tried == set(id_routes())
    listed = c.get("/v1/analyses?limit=100", headers=two.b).json()
    assert listed["total"] == 0 and listed["items"] == []
    mine = {j["id"] for j in c.get("/v1/analyses?limit=100", headers=two.a).json()["items"]}
    assert {two.done, two.queued} <= mine  # B's DELETE removed nothing
    for name in FILES:
        assert c.get(f"/v1/analyses/{two.done}/{name}", headers=two.a).status_code == 200
    assert c.delete(f"/v1/analyses/{two.done}", headers=two.a).status_code == 204
    assert c.get(f"/v1/analyses/{two.done}", headers=two.a).status_code == 404


# --- keys: stored hashed, compared as hashes ------------------------------------------------------


def _secret(key: str) -> str:
    return key.split("_", 2)[2]


def _no_plaintext(cells: list[Any], keys: tuple[str, ...]) -> None:
    text = "\n".join(map(str, cells))
    for key in keys:
        assert key not in text and _secret(key) not in text, "a key (or its secret) is stored in clear"
        assert hashlib.sha256(key.encode()).hexdigest() in text  # what is stored instead


def test_sqlite_keeps_only_hashes(two: Two) -> None:
    db = sqlite3.connect(f"file:{two.data / 'formcheck.sqlite3'}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        cells = [v for t in tables for row in db.execute(f'SELECT * FROM "{t}"') for v in row]
    finally:
        db.close()
    _no_plaintext(cells, two.keys)
    for f in two.data.glob("formcheck.sqlite3*"):  # the pages themselves, the WAL included
        raw = f.read_bytes()
        assert not any(_secret(k).encode() in raw for k in two.keys), f.name


def test_postgres_keeps_only_hashes(tmp_path: Path, pg_database: str) -> None:
    import asyncpg

    async def every_cell(url: str) -> list[Any]:
        conn = await asyncpg.connect(url, timeout=5)
        try:
            tables = await conn.fetch("SELECT table_schema, table_name FROM information_schema.tables WHERE "
                                      "table_schema NOT IN ('pg_catalog', 'information_schema')")
            cells = []
            for t in tables:
                for row in await conn.fetch(f'SELECT * FROM "{t[0]}"."{t[1]}"'):
                    cells += list(row.values())
            return cells
        finally:
            await conn.close()

    srv = settings.load({"FORMCHECK_DATA_DIR": str(tmp_path), "DATABASE_URL": pg_database}).server
    keys = (asyncio.run(add_key(srv, "a")), asyncio.run(add_key(srv, "b")))
    _no_plaintext(asyncio.run(every_cell(pg_database)), keys)


def test_the_store_is_only_asked_for_hashes(two: Two, monkeypatch: pytest.MonkeyPatch) -> None:
    """Authentication hashes the presented key and looks the hash up: the secret itself is never
    compared with anything (so no comparison's timing can reveal it byte by byte)."""
    from api import auth

    store = two.client.app.state.service.store
    asked: list[tuple[Any, ...]] = []
    real = store.key_by_hash

    async def spy(*args: Any) -> Any:
        asked.append(args)
        return await real(*args)

    monkeypatch.setattr(store, "key_by_hash", spy)
    monkeypatch.setattr(auth, "_known", {})  # not from the minute's memory: from the store
    fresh = f"fc_{uuid.uuid4().hex[:12]}_{uuid.uuid4().hex}"
    for key in (two.keys[0], fresh):
        two.client.get("/v1/analyses", headers={"Authorization": f"Bearer {key}"})
    assert asked == [(hashlib.sha256(k.encode()).hexdigest(),) for k in (two.keys[0], fresh)]
    assert all(_secret(k) not in repr(asked) for k in (two.keys[0], fresh))


def test_no_key_or_hash_is_compared_with_equality() -> None:
    """Static: in auth.py and keys.py a key, its hash or a stored key are never the operands of
    ``==``/``!=``/``in`` (a lookup of the SHA-256, or hmac.compare_digest, is what compares them)."""
    names = {"key", "digest", "key_hash", "found", "hit", "secret"}
    for module in ("api/auth.py", "api/keys.py"):
        tree = ast.parse((REPO / module).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare) and any(isinstance(op, ast.Eq | ast.NotEq | ast.In | ast.NotIn)
                                                     for op in node.ops):
                used = {n.id for part in (node.left, *node.comparators) for n in ast.walk(part)
                        if isinstance(n, ast.Name)}
                assert not used & names, f"{module}:{node.lineno} compares {used & names} with =="
        calls = {ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
        if module == "api/auth.py":
            assert "hash_key" in calls and "service.store.key_by_hash" in calls, calls
    assert "hashlib.sha256" in (REPO / "api/keys.py").read_text()


# --- rate limits across API worker processes ------------------------------------------------------


def _served_by(prom: Path, path: str) -> dict[int, int]:
    """Requests to ``path`` each API process counted (its Prometheus multiprocess file), by pid."""
    from prometheus_client.mmap_dict import MmapedDict

    out: dict[int, int] = {}
    for f in prom.glob("counter_*.db"):
        pid = int(re.findall(r"\d+", f.name)[-1])
        for key, value, *_ in MmapedDict.read_all_values_from_file(str(f)):
            name, labels = json.loads(key)[1], json.loads(key)[2]
            if name == "formcheck_requests_total" and labels.get("path") == path:
                out[pid] = out.get(pid, 0) + int(value)
    return out


def test_rate_limit_holds_across_two_api_processes(xdg_cache: Path, tmp_path: Path) -> None:
    """Connections are opened first (each process holds some), then every client asks at once:
    a limit kept per process, or read and written back non-atomically, lets more through."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {REDIS_URL} is unavailable ({exc}); start it or set FORMCHECK_TEST_REDIS_URL")
    limit, callers = 10, 60
    env = server_env(xdg_cache, tmp_path / "data", REDIS_URL=REDIS_URL, FORMCHECK_WORKERS="2",
                     FORMCHECK_RATE_LIMIT=f"{limit}/1m")
    key = create_key(env, "limited")
    prom = tmp_path / "data" / "prometheus"
    with serving(env, tmp_path / "serve.log", tmp_path / "cwd", api_workers=2) as srv:
        deadline = time.time() + 90
        while srv.log.read_text().count('"msg": "ready"') < 2:  # both processes listen
            assert time.time() < deadline, f"two API processes never got ready:\n{srv.log_tail()}"
            time.sleep(0.3)
        clients = [httpx.Client(base_url=srv.url, timeout=30) for _ in range(callers)]
        try:
            for c in clients:  # open the connections (health is never limited)
                assert c.get("/health").status_code == 200
            assert len(_served_by(prom, "/health")) == 2, "the connections all went to one process"
            answers: list[httpx.Response] = []
            start = threading.Barrier(callers)

            def one(c: httpx.Client) -> None:
                start.wait(30)
                answers.append(c.get("/v1/analyses", headers=key))

            threads = [threading.Thread(target=one, args=(c,)) for c in clients]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
        finally:
            for c in clients:
                c.close()
        served = _served_by(prom, "/v1/analyses")
    assert len(served) == 2 and sum(served.values()) == callers == len(answers), served
    codes = [r.status_code for r in answers]
    assert codes.count(200) == limit, f"{codes.count(200)} allowed by two processes, limit {limit}: {sorted(codes)}"
    assert set(codes) == {200, 429}, codes
    for r in answers:
        if r.status_code == 429:
            assert r.headers["content-type"] == PROBLEM and "rate limit" in r.json()["detail"]
            assert int(r.headers["retry-after"]) > 0 and r.headers["ratelimit-limit"] == str(limit)
            assert r.headers["ratelimit-remaining"] == "0" and int(r.headers["ratelimit-reset"]) > 0
