"""Route tests on Litestar's test client: a real app (SQLite, one warm inference worker) in-process.

Who sees what (401, another key's 404), limits (429, 413, 503), bad input (problem details),
the upload -> SSE -> result -> files path, identical content (X-Cache: HIT), frames, health,
metrics and the headers every response carries.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest
from helpers import sse_events
from litestar.testing import TestClient

from api import settings
from api.app import create_app
from api.serve import add_key

PROBLEM = "application/problem+json"
SECURITY = ("x-content-type-options", "x-frame-options", "referrer-policy", "content-security-policy")


def _settings(xdg: Path, data: Path, **env: str) -> settings.Settings:
    return settings.load({"XDG_CACHE_HOME": str(xdg), "FORMCHECK_DATA_DIR": str(data),
                          "FORMCHECK_RATE_LIMIT": "100000/1m", "FORMCHECK_POST_RATE_LIMIT": "100000/1m", **env})


def _key(s: settings.Settings, name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {asyncio.run(add_key(s.server, name))}"}


@pytest.fixture(scope="module")
def served(xdg_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict, dict]]:  # type: ignore[type-arg]
    s = _settings(xdg_cache, tmp_path_factory.mktemp("api-data"))
    alice, bob = _key(s, "alice"), _key(s, "bob")
    with TestClient(create_app(s, workers=1, render_video=False), timeout=120) as client:
        yield client, alice, bob


def _jpeg(dev_dir: Path, index: int = 0, size: tuple[int, int] = (640, 480)) -> bytes:
    cap = cv2.VideoCapture(str(dev_dir / "squat_kaiakol_1.mp4"))
    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, frame = cap.read()
    cap.release()
    assert ok
    return cv2.imencode(".jpg", cv2.resize(frame, size))[1].tobytes()


def _upload(client: TestClient, headers: dict[str, str], path: Path, **fields: str):  # type: ignore[no-untyped-def]
    with open(path, "rb") as f:
        return client.post("/v1/analyses", files={"file": (path.name, f, "video/mp4")}, data=fields, headers=headers)


def _follow(client: TestClient, headers: dict[str, str], job_id: str) -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    with client.stream("GET", f"/v1/analyses/{job_id}/events", headers=headers) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        return sse_events(resp.iter_lines())


def test_missing_and_invalid_keys_are_401_problems(served) -> None:  # type: ignore[no-untyped-def]
    client, _, _ = served
    for headers in ({}, {"Authorization": "Bearer fc_nope_nope"}, {"Authorization": "Basic abc"},
                    {"Authorization": "Bearer sk-other"}):
        r = client.get("/v1/analyses", headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["content-type"] == PROBLEM
        assert r.headers["www-authenticate"].startswith("Bearer")
        body = r.json()
        assert body["status"] == 401 and "expected" in body["detail"] or "no such key" in body["detail"]
        assert all(h in r.headers for h in (*SECURITY, "x-response-time"))
    assert client.get("/health").status_code == 200  # public


def test_upload_follow_fetch_and_cache_hit(served, dev_dir: Path) -> None:  # type: ignore[no-untyped-def]
    client, alice, bob = served
    r = _upload(client, alice, dev_dir / "squat_kaiakol_1.mp4", exercise="squat", fps="0")
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    assert r.headers["location"] == f"/v1/analyses/{job_id}" and r.headers["x-cache"] == "MISS"
    events = _follow(client, alice, job_id)
    assert events[-1][0] == "done", events[-1]
    assert all(name == "progress" for name, _ in events[:-1])
    progress = [e["progress"] for _, e in events[:-1]]
    assert progress == sorted(progress)
    done = client.get(f"/v1/analyses/{job_id}", headers=alice).json()
    assert done["status"] == "done" and done["progress"] == 1.0 and done["error"] is None
    assert done["result"]["exercise"]["name"] == "squat" and done["result"]["rep_count"] >= 1
    assert done["result"]["frames"]["analyzed"] == 38  # fps=0: every frame
    png = client.get(f"/v1/analyses/{job_id}/reps.png", headers=alice)
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    csv = client.get(f"/v1/analyses/{job_id}/angles.csv", headers=alice)
    assert csv.status_code == 200 and csv.text.splitlines()[0].startswith("frame")
    summary = client.get(f"/v1/analyses/{job_id}/analysis.json", headers=alice).json()
    assert summary["rep_count"] == done["result"]["rep_count"]
    missing = client.get(f"/v1/analyses/{job_id}/annotated.mp4", headers=alice)  # this app renders no video
    assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM
    # identical bytes and parameters: the finished analysis at once, for any key
    again = _upload(client, bob, dev_dir / "squat_kaiakol_1.mp4", exercise="squat", fps="0")
    assert again.status_code == 200 and again.headers["x-cache"] == "HIT"
    assert again.json()["status"] == "done" and again.json()["id"] != job_id
    assert again.json()["result"]["rep_count"] == done["result"]["rep_count"]
    # other parameters are another analysis
    other = _upload(client, alice, dev_dir / "squat_kaiakol_1.mp4", exercise="squat", fps="10")
    assert other.status_code == 202 and other.headers["x-cache"] == "MISS"
    assert _follow(client, alice, other.json()["id"])[-1][0] == "done"


def test_another_keys_analysis_is_404(served, dev_dir: Path) -> None:  # type: ignore[no-untyped-def]
    client, alice, bob = served
    r = _upload(client, alice, dev_dir / "squat_kaiakol_1.mp4", exercise="squat", fps="0")
    job_id = r.json()["id"]
    for path in (f"/v1/analyses/{job_id}", f"/v1/analyses/{job_id}/events", f"/v1/analyses/{job_id}/reps.png"):
        got = client.get(path, headers=bob)
        assert got.status_code == 404 and got.headers["content-type"] == PROBLEM, path
    assert client.delete(f"/v1/analyses/{job_id}", headers=bob).status_code == 404
    assert job_id not in [j["id"] for j in client.get("/v1/analyses", headers=bob).json()["items"]]
    assert client.get(f"/v1/analyses/{job_id}", headers=alice).status_code == 200


def test_list_is_paged_and_delete_removes(served, dev_dir: Path) -> None:  # type: ignore[no-untyped-def]
    client, alice, _ = served
    ids = [_upload(client, alice, dev_dir / "squat_kaiakol_1.mp4", exercise=ex).json()["id"]
           for ex in ("squat", "lunge", "generic")]
    page = client.get("/v1/analyses?limit=2&offset=0", headers=alice).json()
    assert len(page["items"]) == 2 and page["total"] >= 3 and page["next"] == "/v1/analyses?limit=2&offset=2"
    assert page["items"][0]["id"] == ids[-1]  # newest first
    assert client.get("/v1/analyses?limit=0", headers=alice).status_code == 400
    for job_id in ids:
        _follow(client, alice, job_id)
    assert client.delete(f"/v1/analyses/{ids[0]}", headers=alice).status_code == 204
    assert client.get(f"/v1/analyses/{ids[0]}", headers=alice).status_code == 404
    assert client.delete(f"/v1/analyses/{ids[0]}", headers=alice).status_code == 404


@pytest.mark.parametrize(("files", "fields", "status", "says"), [
    ({"file": ("junk.mp4", b"this is not a video" * 50, "video/mp4")}, {}, 422, "could not be opened as a video"),
    ({"file": ("empty.mp4", b"", "video/mp4")}, {}, 422, "empty"),
    ({"video": ("a.mp4", b"x" * 10, "video/mp4")}, {}, 400, "field named 'file'"),
    ({"file": ("a.mp4", b"x" * 10, "video/mp4")}, {"exercise": "yoga"}, 422, "exercise must be one of"),
    ({"file": ("a.mp4", b"x" * 10, "video/mp4")}, {"fps": "fast"}, 422, "fps must be a number"),
    ({"file": ("a.mp4", b"x" * 10, "video/mp4")}, {"fps": "-1"}, 422, "fps must be 0..240"),
])
def test_bad_uploads_are_problems(served, files, fields, status, says) -> None:  # type: ignore[no-untyped-def]
    client, alice, _ = served
    r = client.post("/v1/analyses", files=files, data=fields, headers=alice)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    assert says in r.json()["detail"]
    assert "/uploads/" not in r.json()["detail"]  # no server paths in messages


def test_not_a_multipart_body(served) -> None:  # type: ignore[no-untyped-def]
    client, alice, _ = served
    r = client.post("/v1/analyses", content=b'{"file": 1}', headers={**alice, "content-type": "application/json"})
    assert 400 <= r.status_code < 500 and r.headers["content-type"] == PROBLEM


def test_frames(served, dev_dir: Path) -> None:  # type: ignore[no-untyped-def]
    client, alice, _ = served
    jpg = _jpeg(dev_dir, 5)
    first = client.post("/v1/frames", files={"file": ("a.jpg", jpg, "image/jpeg")}, headers=alice)
    assert first.status_code == 200, first.text
    frame = first.json()["frames"][0]
    assert frame["pose_found"] and (frame["width"], frame["height"]) == (640, 480)
    assert len(frame["landmarks"]) == 33 and len(frame["world_landmarks"]) == 33
    seen = {k: v for k, v in frame["angles"].items() if v is not None}
    assert len(frame["angles"]) == 14 and len(seen) >= 4, frame["angles"]  # hidden joints are null
    assert all(0 <= v <= 180 for v in seen.values())
    again = client.post("/v1/frames", files={"file": ("a.jpg", jpg, "image/jpeg")}, headers=alice)
    assert again.headers["x-cache"] == "HIT" and again.json()["frames"][0]["angles"] == frame["angles"]
    png = cv2.imencode(".png", cv2.imdecode(__import__("numpy").frombuffer(_jpeg(dev_dir, 20), "uint8"), 1))[1]
    batch = client.post("/v1/frames", files=[("file", ("b.jpg", _jpeg(dev_dir, 10), "image/jpeg")),
                                             ("file", ("c.png", png.tobytes(), "image/png"))], headers=alice)
    assert batch.status_code == 200 and [f["name"] for f in batch.json()["frames"]] == ["b.jpg", "c.png"]
    junk = client.post("/v1/frames", files={"file": ("x.jpg", b"GIF89a....", "image/jpeg")}, headers=alice)
    assert junk.status_code == 415 and "JPEG or PNG" in junk.json()["detail"]
    broken = client.post("/v1/frames", files={"file": ("x.jpg", jpg[:200], "image/jpeg")}, headers=alice)
    assert broken.status_code == 422 and broken.headers["content-type"] == PROBLEM
    many = client.post("/v1/frames", files=[("file", (f"{i}.jpg", jpg, "image/jpeg")) for i in range(17)],
                       headers=alice)
    assert many.status_code == 413 and "limit is 16" in many.json()["detail"]


def test_health_ready_and_metrics(served) -> None:  # type: ignore[no-untyped-def]
    client, alice, _ = served
    ready = client.get("/health/ready")
    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert checks["database"]["ok"] and checks["workers"]["alive"] == 1 and checks["queue"]["limit"] == 64
    assert "memory" in checks["cache"]
    client.get("/v1/analyses", headers=alice)
    text = client.get("/metrics").text
    for name in ("formcheck_jobs{state=\"done\"}", "formcheck_pool_workers", "formcheck_requests_total",
                 "formcheck_request_duration_seconds_bucket", "formcheck_cache_lookups_total"):
        assert name in text, name
    assert 'path="/v1/analyses/{job_id:str}"' in text or 'path="/v1/analyses"' in text
    assert gc.get_freeze_count() > 10_000, "the warm server froze its heap (pipeline.pool.settle_heap)"


def test_compression_and_schema(served) -> None:  # type: ignore[no-untyped-def]
    client, alice, _ = served
    schema = client.get("/schema/openapi.json", headers={"accept-encoding": "br"})
    assert schema.status_code == 200 and schema.headers["content-encoding"] == "br"
    assert "/v1/analyses" in schema.json()["paths"] and "/v1/frames" in schema.json()["paths"]
    gz = client.get("/schema/openapi.json", headers={"accept-encoding": "gzip"})
    assert gz.headers["content-encoding"] == "gzip" and gz.json() == schema.json()
    html = client.get("/schema/swagger")
    assert "text/html" in html.headers["content-type"] and "frame-ancestors 'none'" in html.headers[
        "content-security-policy"]


def test_rate_limit_429(xdg_cache: Path, tmp_path: Path) -> None:
    s = _settings(xdg_cache, tmp_path, FORMCHECK_RATE_LIMIT="3/1m", FORMCHECK_POST_RATE_LIMIT="1/1m")
    key, other = _key(s, "k"), _key(s, "other")
    with TestClient(create_app(s, workers=1, warm=False, run_jobs=False)) as client:
        got = [client.get("/v1/analyses", headers=key) for _ in range(4)]
        assert [r.status_code for r in got] == [200, 200, 200, 429]
        limited = got[-1]
        assert limited.headers["content-type"] == PROBLEM and "rate limit" in limited.json()["detail"]
        assert int(limited.headers["retry-after"]) > 0 and limited.headers["ratelimit-limit"] == "3"
        assert limited.headers["ratelimit-remaining"] == "0"
        assert client.get("/v1/analyses", headers=other).status_code == 200  # per key, not global
        assert client.get("/health").status_code == 200  # health is never limited
        posts = [client.post("/v1/analyses", files={"file": ("a.mp4", b"x", "video/mp4")}, headers=other)
                 for _ in range(2)]
        assert [p.status_code for p in posts] == [422, 429]


def test_upload_limits_413_and_full_queue_503(xdg_cache: Path, tmp_path: Path, dev_dir: Path) -> None:
    s = _settings(xdg_cache, tmp_path, FORMCHECK_MAX_UPLOAD_MB="1", FORMCHECK_QUEUE_MAX="1")
    key = _key(s, "k")
    with TestClient(create_app(s, workers=1, warm=False, run_jobs=False)) as client:
        big = client.post("/v1/analyses", files={"file": ("big.mp4", b"\0" * (3 << 20), "video/mp4")}, headers=key)
        assert big.status_code == 413 and big.headers["content-type"] == PROBLEM
        assert "limit" in big.json()["detail"]
        first = _upload(client, key, dev_dir / "squat_kaiakol_1.mp4")
        assert first.status_code == 202  # queued (no runner in this app)
        full = _upload(client, key, dev_dir / "pushup_kaiakol_2.mp4")
        assert full.status_code == 503 and int(full.headers["retry-after"]) > 0
        assert "queue is full" in full.json()["detail"]


def test_finished_jobs_are_read_from_memory(served, dev_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    client, alice, bob = served
    job_id = _upload(client, alice, dev_dir / "squat_kaiakol_1.mp4", exercise="squat", fps="0").json()["id"]
    _follow(client, alice, job_id)
    store = client.app.state.service.store
    calls = []
    real = store.get_job

    async def counted(*args):  # type: ignore[no-untyped-def]
        calls.append(args)
        return await real(*args)

    monkeypatch.setattr(store, "get_job", counted)
    for _ in range(5):
        assert client.get(f"/v1/analyses/{job_id}", headers=alice).json()["status"] == "done"
    assert len(calls) <= 1
    assert client.get(f"/v1/analyses/{job_id}", headers=bob).status_code == 404  # the memory checks the owner too
    assert client.delete(f"/v1/analyses/{job_id}", headers=alice).status_code == 204
    assert client.get(f"/v1/analyses/{job_id}", headers=alice).status_code == 404


def test_cors_only_for_configured_origins(xdg_cache: Path, tmp_path: Path) -> None:
    s = _settings(xdg_cache, tmp_path, FORMCHECK_CORS_ORIGINS="https://coach.example")
    key = _key(s, "k")
    with TestClient(create_app(s, workers=1, warm=False, run_jobs=False)) as client:
        pre = client.options("/v1/analyses", headers={"Origin": "https://coach.example",
                                                       "Access-Control-Request-Method": "POST",
                                                       "Access-Control-Request-Headers": "authorization"})
        assert pre.status_code in (200, 204)
        assert pre.headers["access-control-allow-origin"] == "https://coach.example"
        got = client.get("/v1/analyses", headers={**key, "Origin": "https://coach.example"})
        assert got.headers["access-control-allow-origin"] == "https://coach.example"
        assert "x-cache" in got.headers["access-control-expose-headers"].lower()
        other = client.get("/v1/analyses", headers={**key, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
