"""Schemathesis against the app's own OpenAPI document (``/schema/openapi.json``), in process
(ASGI, the app's lifespan run by schemathesis): generated requests, valid and invalid, with a
real key. No answer is a 5xx, every status code, content type and body is the one the document
declares, and a request without the key is refused. Bounded: ``EXAMPLES`` per operation.

A second test calls every operation once with real data (a finished analysis, a real clip and
a real image) so the documented success answers are checked too, not only the errors random
input gets.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar import Litestar
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api import settings as api_settings
from api.app import create_app
from api.serve import add_key
from api.store import NewJob, open_store

EXAMPLES = 100
# Not negative_data_rejection: unknown query parameters are ignored (as HTTP APIs do), which it
# counts as accepting invalid data, and the key this test adds undoes its "missing header" cases.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, ignored_auth]
FILES = {"annotated.mp4": b"\0\0\0\x18ftypisom", "reps.png": b"\x89PNG\r\n\x1a\n", "angles.csv": b"frame,t\n0,0\n",
         "analysis.json": b'{"rep_count": 1}'}
RESULT = {"schema_version": 1, "exercise": {"name": "squat", "source": "given", "confidence": 1.0},
          "view": {"name": "side", "confidence": 0.9}, "rep_count": 1, "reason": None,
          "reps": [{"rom_deg": 84.0, "eccentric_s": 0.6, "pause_s": 0.1, "concentric_s": 0.5, "asymmetry_deg": 3.0,
                    "confidence": 0.99, "faults": [], "secondary": {}}],
          "fatigue": {"tempo_drift_pct": None, "rom_loss_pct": None, "flags": []}, "fault_definitions": {}}


class Fuzzed:
    def __init__(self, app: Litestar, key: str, done: str) -> None:
        self.app, self.headers, self.done = app, {"Authorization": f"Bearer {key}"}, done


async def _seed_done(s: api_settings.Settings, owner: str) -> str:
    store = open_store(s.server.database_url, s.server.sqlite_path, 1, 2)
    await store.open()
    try:
        job_id = uuid.uuid4().hex[:20]
        await store.add_done(NewJob(job_id, owner, "a.mp4", str(s.server.uploads / "a.mp4"), "{}", ""),
                             json.dumps(RESULT), time.time())
    finally:
        await store.close()
    (s.server.artifacts / job_id).mkdir(parents=True)
    for name, data in FILES.items():
        (s.server.artifacts / job_id / name).write_bytes(data)
    return job_id


@pytest.fixture(scope="module")
def fuzzed(xdg_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    s = api_settings.load({"XDG_CACHE_HOME": str(xdg_cache), "FORMCHECK_DATA_DIR": str(tmp_path_factory.mktemp("fuzz")),
                           "FORMCHECK_RATE_LIMIT": "1000000/1m", "FORMCHECK_POST_RATE_LIMIT": "1000000/1m",
                           "FORMCHECK_RECOMMEND_RATE_LIMIT": "1000000/1m", "FORMCHECK_MAX_UPLOAD_MB": "2"})
    key = asyncio.run(add_key(s.server, "fuzz"))
    done = asyncio.run(_seed_done(s, key.split("_")[1]))
    yield Fuzzed(create_app(s, workers=1, warm=False, run_jobs=False), key, done)
    shutdown_lifespans()  # schemathesis started the app's lifespan; stop its pool and store now


@pytest.fixture(scope="module")
def api_schema(fuzzed: Fuzzed) -> Any:
    return schemathesis.openapi.from_asgi("/schema/openapi.json", fuzzed.app)


def _operations() -> list[tuple[str, str, bool]]:
    """(method, path, has inputs) of every documented operation (from an app never started)."""
    app = create_app(api_settings.load({"FORMCHECK_DATA_DIR": "/nonexistent", "XDG_CACHE_HOME": "/nonexistent"}),
                     workers=1, warm=False, run_jobs=False)
    doc = app.openapi_schema.to_schema()
    return [(method.upper(), path, bool(op.get("parameters") or op.get("requestBody")))
            for path, item in doc["paths"].items() for method, op in item.items()
            if method in ("get", "post", "put", "patch", "delete")]


# Valid and invalid requests for every operation (invalid only where there are inputs to break).
CASES = [pytest.param(method, path, mode, id=f"{method} {path} {mode.value}") for method, path, inputs in _operations()
         for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if inputs or mode is GenerationMode.POSITIVE]


# schemathesis' own pytest plugin (schema.parametrize on a fixture) fails on pytest 9
# (it sets node._nodeid), so cases are drawn from each operation's strategy here.
@pytest.mark.parametrize(("method", "path", "mode"), CASES)
@given(data=st.data())
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_generated_requests_get_documented_answers(api_schema: Any, fuzzed: Fuzzed, method: str, path: str,
                                                   mode: GenerationMode, data: st.DataObject) -> None:
    case = data.draw(api_schema[path][method].as_strategy(generation_mode=mode))
    case.call_and_validate(headers=fuzzed.headers, checks=CHECKS)


def test_the_served_document_is_the_one_fuzzed(api_schema: Any, fuzzed: Fuzzed) -> None:
    served = {(op.method.upper(), op.path) for op in (r.ok() for r in api_schema.get_all_operations())}
    assert served == {(method, path) for method, path, _ in _operations()}


def _jpeg(dev_dir: Path) -> bytes:
    cap = cv2.VideoCapture(str(dev_dir / "squat_kaiakol_1.mp4"))
    ok, img = cap.read()
    cap.release()
    assert ok
    return bytes(cv2.imencode(".jpg", cv2.resize(img, (320, 180)))[1].tobytes())


def test_real_requests_get_documented_answers(api_schema: Any, fuzzed: Fuzzed, dev_dir: Path) -> None:
    """Each operation once with data that works: the success answers match the document too."""
    ops = {(op.method.upper(), op.path): op for op in (r.ok() for r in api_schema.get_all_operations())}
    done, seen = fuzzed.done, []

    def call(method: str, path: str, expect: int, **parts: Any) -> Any:
        case = ops[(method, path)].Case(**parts)
        response = case.call_and_validate(headers=fuzzed.headers, checks=CHECKS[:5])
        assert response.status_code == expect, (method, path, response.status_code, response.text[:300])
        seen.append((method, path))
        return response

    call("GET", "/health", 200)
    call("GET", "/health/ready", 200)
    call("GET", "/v1/analyses", 200, query={"limit": 5})
    call("GET", "/v1/analyses/{job_id}", 200, path_parameters={"job_id": done})
    call("GET", "/v1/analyses/{job_id}/events", 200, path_parameters={"job_id": done})
    for name in FILES:
        call("GET", "/v1/analyses/{job_id}/{name}", 200, path_parameters={"job_id": done, "name": name})
    call("POST", "/v1/recommendations", 200, body={"analysis_id": done, "goal": "strength"},
         media_type="application/json")
    call("POST", "/v1/frames", 200, body={"file": _jpeg(dev_dir)}, media_type="multipart/form-data")
    clip = (dev_dir / "squat_kaiakol_1.mp4").read_bytes()
    queued = call("POST", "/v1/analyses", 202, body={"file": clip, "exercise": "squat"},
                  media_type="multipart/form-data").json()["id"]
    call("DELETE", "/v1/analyses/{job_id}", 204, path_parameters={"job_id": queued})
    assert set(seen) == set(ops), f"operations not called with real data: {set(ops) - set(seen)}"
