"""``POST /v1/recommendations`` on Litestar's test client: keys (401), ownership (404), jobs not
done (409), unusable input (422 problem details saying what was expected and what came), the
rules answer without a key, the model through the fake server with ``X-Cache: MISS`` then
``HIT``, a failing upstream answered by the rules (never a 500), the recommendation rate limit,
and the metrics. Apps need no inference here (``warm=False, run_jobs=False``).
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_openai import ANSWER, USAGE, FakeOpenAI
from litestar.testing import TestClient
from test_api import PROBLEM, _key, _settings
from test_recommend import MODEL, SECRET, SQUAT, SQUAT_1

from api.app import create_app
from api.store import NewJob, open_store

PATH = "/v1/recommendations"


def _owner(headers: dict[str, str]) -> str:
    return headers["Authorization"].split("_")[1]  # fc_<id>_<secret>


async def _seed(s: Any, owner: str) -> tuple[str, str]:
    """A finished analysis (SQUAT_1) and a queued one, both of ``owner``."""
    store = open_store(s.server.database_url, s.server.sqlite_path, 1, 2)
    await store.open()
    try:
        done_id, queued_id = uuid.uuid4().hex[:20], uuid.uuid4().hex[:20]
        await store.add_done(NewJob(done_id, owner, "squat.mp4", "/nowhere/a.mp4", "{}", ""), json.dumps(SQUAT_1),
                             time.time())
        await store.add_job(NewJob(queued_id, owner, "squat.mp4", "/nowhere/b.mp4", "{}", ""), time.time())
        return done_id, queued_id
    finally:
        await store.close()


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(scope="module")
def rules_app(xdg_cache: Path,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict, dict, tuple]]:  # type: ignore[type-arg]
    s = _settings(xdg_cache, tmp_path_factory.mktemp("rec-rules"), FORMCHECK_RECOMMEND_RATE_LIMIT="1000/1m")
    alice, bob = _key(s, "alice"), _key(s, "bob")
    jobs = asyncio.run(_seed(s, _owner(alice)))
    with TestClient(create_app(s, workers=1, warm=False, run_jobs=False)) as client:
        yield client, alice, bob, jobs


@pytest.fixture(scope="module")
def model_app(xdg_cache: Path, tmp_path_factory: pytest.TempPathFactory,
              fake: FakeOpenAI) -> Iterator[tuple[TestClient, dict]]:  # type: ignore[type-arg]
    s = _settings(xdg_cache, tmp_path_factory.mktemp("rec-model"), OPENAI_API_KEY=SECRET, OPENAI_MODEL=MODEL,
                  OPENAI_BASE_URL=fake.base_url, FORMCHECK_OPENAI_TIMEOUT_S="0.5", FORMCHECK_OPENAI_RETRIES="1",
                  FORMCHECK_OPENAI_BACKOFF_S="0.01", FORMCHECK_RECOMMEND_RATE_LIMIT="1000/1m")
    alice = _key(s, "alice")
    with TestClient(create_app(s, workers=1, warm=False, run_jobs=False)) as client:
        yield client, alice


def test_a_key_is_needed(rules_app) -> None:  # type: ignore[no-untyped-def]
    client, *_ = rules_app
    r = client.post(PATH, json={"analysis": SQUAT_1, "goal": "strength"})
    assert r.status_code == 401 and r.headers["content-type"] == PROBLEM


def test_rules_answer_for_an_inline_analysis(rules_app) -> None:  # type: ignore[no-untyped-def]
    client, alice, *_ = rules_app
    r = client.post(PATH, json={"analysis": SQUAT_1, "goal": "strength", "level": "beginner"}, headers=alice)
    assert r.status_code == 200, r.text
    assert r.headers["x-cache"] == "MISS"
    body = r.json()
    assert body["source"] == "rules" and body["cached"] is False and body["usage"] is None
    assert body["cues"][0]["fault"] == "trunk_lean" and body["cues"][0]["reps"] == [1]
    assert body["prescription"]["sets"] == 3 and body["prescription"]["reps"] == 5
    assert body["measured"]["reps"][0]["rom_deg"] == 84 and body["goal"] == "strength"
    assert {"summary", "cues", "prescription", "progressions", "regressions", "safety_flags", "source", "cached",
            "prompt_version", "usage"} <= set(body)


def test_an_analysis_by_id_is_the_owners_and_done(rules_app) -> None:  # type: ignore[no-untyped-def]
    client, alice, bob, (done_id, queued_id) = rules_app
    ok = client.post(PATH, json={"analysis_id": done_id, "goal": "hypertrophy"}, headers=alice)
    assert ok.status_code == 200 and ok.json()["measured"]["exercise"] == "squat"
    assert ok.json()["level"] == "intermediate"  # the default
    other = client.post(PATH, json={"analysis_id": done_id, "goal": "hypertrophy"}, headers=bob)
    assert other.status_code == 404 and other.headers["content-type"] == PROBLEM
    assert f"no analysis '{done_id}' for this API key" == other.json()["detail"]
    queued = client.post(PATH, json={"analysis_id": queued_id, "goal": "strength"}, headers=alice)
    assert queued.status_code == 409 and "is queued: a recommendation needs a finished analysis" in queued.json()[
        "detail"]
    assert client.post(PATH, json={"analysis_id": "nope", "goal": "strength"}, headers=alice).status_code == 404


@pytest.mark.parametrize(("body", "says"), [
    ({"analysis": SQUAT_1, "goal": "bulk"}, "goal must be one of strength, hypertrophy, endurance, mobility, rehab; "
                                            "got 'bulk'"),
    ({"analysis": SQUAT_1}, "goal is required: expected one of strength"),
    ({"analysis": SQUAT_1, "goal": "strength", "level": "pro"}, "level must be one of beginner, intermediate, "
                                                                "advanced; got 'pro'"),
    ({"goal": "strength"}, "expected exactly one of analysis_id"),
    ({"analysis": SQUAT_1, "analysis_id": "x", "goal": "strength"}, "got both"),
    ({"analysis": SQUAT_1, "goal": "strength", "mood": "great"}, "unexpected field(s) 'mood': expected analysis_id"),
    ({"analysis": SQUAT_1, "goal": "strength", "notes": "x" * 501}, "notes must be at most 500 characters; got 501"),
    ({"analysis": SQUAT_1, "goal": "strength", "notes": 5}, "notes must be a string"),
    ({"analysis_id": 7, "goal": "strength"}, "analysis_id must be a string (an id from POST /v1/analyses); got 7"),
    ({"analysis": {"reps": "lots"}, "goal": "strength"}, "analysis.reps must be a list of reps"),
    ({"analysis": {**SQUAT_1, "reps": [{**SQUAT_1["reps"][0], "rom_deg": "deep"}]}, "goal": "strength"},
     "analysis.reps[0].rom_deg must be a number or null; got 'deep'"),
])
def test_unusable_requests_are_422_problems(rules_app, body: dict[str, Any], says: str) -> None:  # type: ignore[no-untyped-def]
    client, alice, *_ = rules_app
    r = client.post(PATH, json=body, headers=alice)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    problem = r.json()
    assert problem["status"] == 422 and problem["title"] == "Unprocessable Entity" and says in problem["detail"]


def test_the_model_answers_then_the_cache(model_app, fake: FakeOpenAI) -> None:  # type: ignore[no-untyped-def]
    client, alice = model_app
    fake.reset("ok")
    body = {"analysis": copy.deepcopy(SQUAT), "goal": "strength", "notes": uuid.uuid4().hex}  # a key of its own
    first = client.post(PATH, json=body, headers=alice)
    second = client.post(PATH, json=body, headers=alice)
    assert first.status_code == second.status_code == 200
    assert [first.headers["x-cache"], second.headers["x-cache"]] == ["MISS", "HIT"]
    assert first.json()["source"] == second.json()["source"] == f"openai:{MODEL}"
    assert first.json()["usage"] == USAGE and second.json()["cached"] is True
    assert first.json()["summary"] == ANSWER["summary"] and fake.calls == 1


def test_a_failing_model_is_a_rules_answer_not_an_error(model_app, fake: FakeOpenAI) -> None:  # type: ignore[no-untyped-def]
    client, alice = model_app
    for mode, reason in (("429", "rate_limited"), ("500", "server_error"), ("malformed", "malformed")):
        fake.reset(mode)
        r = client.post(PATH, json={"analysis": SQUAT, "goal": "endurance", "notes": uuid.uuid4().hex}, headers=alice)
        assert r.status_code == 200 and r.headers["x-cache"] == "MISS"
        assert r.json()["source"] == "rules" and r.json()["fallback"] == reason


def test_recommendations_have_their_own_rate_limit(xdg_cache: Path, tmp_path: Path) -> None:
    s = _settings(xdg_cache, tmp_path, FORMCHECK_RECOMMEND_RATE_LIMIT="2/1m")
    key = _key(s, "k")
    with TestClient(create_app(s, workers=1, warm=False, run_jobs=False)) as client:
        got = [client.post(PATH, json={"analysis": SQUAT_1, "goal": "strength"}, headers=key) for _ in range(3)]
        assert [r.status_code for r in got] == [200, 200, 429]
        assert got[-1].headers["content-type"] == PROBLEM and int(got[-1].headers["retry-after"]) > 0
        assert got[-1].headers["ratelimit-limit"] == "2"
        assert client.get("/v1/analyses", headers=key).status_code == 200  # other routes are not affected


def test_metrics_and_schema(model_app, fake: FakeOpenAI) -> None:  # type: ignore[no-untyped-def]
    client, alice = model_app
    fake.reset("ok")
    client.post(PATH, json={"analysis": SQUAT, "goal": "mobility", "notes": uuid.uuid4().hex}, headers=alice)
    text = client.get("/metrics").text
    for name in ('formcheck_recommend_upstream_calls_total{outcome="ok"}',
                 "formcheck_recommend_upstream_seconds_bucket", 'formcheck_recommend_tokens_total{kind="prompt"}',
                 'formcheck_recommend_cache_total{outcome="miss"}'):
        assert name in text, name
    assert PATH in client.get("/schema/openapi.json").json()["paths"]
