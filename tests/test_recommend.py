"""Recommendations without the HTTP layer: normalized inputs and the cache key, the rules
recommender on real analyses of dev clips, answer validation, and the engine with the REAL
``openai`` client against a fake OpenAI-compatible server on 127.0.0.1 (``fake_openai``):
pass-through, cache hits (memory and Redis), coalescing, and every failure falling back to rules.

The analyses below are ``formcheck analyze --json`` of three dev clips (squat_rjsong_2: 12 reps
from the front; squat_kaiakol_1: 1 rep with trunk lean; pushup_rjsong_1: 15 reps, hip sag on
rep 1), kept to the fields a recommendation reads.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fake_openai import ANSWER, USAGE, FakeOpenAI
from prometheus_client import REGISTRY

from api.recommend import cache as rcache
from api.recommend.engine import Recommender
from api.recommend.prompt import PROMPT_VERSION, cache_key, normalize
from api.recommend.rules import ranges
from api.recommend.rules import recommend as rules_recommend
from api.recommend.schema import (
    ANSWER_SCHEMA,
    GOALS,
    LEVELS,
    Answer,
    AnswerError,
    RequestError,
    check_answer,
    check_grounded,
    from_dict,
    to_dict,
)
from api.settings import RecommendSettings
from pipeline.cache.memory import MemoryTier
from pipeline.cache.redis_tier import RedisTier
from pipeline.cache.tiered import TieredCache
from pipeline.exercises import EXERCISES

REDIS_URL = os.environ.get("FORMCHECK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SECRET = "sk-test-" + "S3CRET" * 4
MODEL = "fake-model"


def _analysis(file: str, exercise: str, confidence: float, view: str, fatigue: tuple[float | None, float | None],
              rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    """An analysis summary as ``formcheck analyze --json`` prints it (the fields recommendations read)."""
    reps, t = [], 0.5
    for i, (rom, ecc, pause, con, asym, conf, faults, secondary) in enumerate(rows, 1):
        reps.append({"index": i, "start_s": round(t, 3), "peak_s": round(t + ecc, 3),
                     "end_s": round(t + ecc + pause + con, 3), "rom_deg": rom, "eccentric_s": ecc, "pause_s": pause,
                     "concentric_s": con, "asymmetry_deg": asym, "confidence": conf, "faults": faults,
                     "secondary": {k: {"min_deg": lo, "max_deg": hi} for k, (lo, hi) in secondary.items()}})
        t += ecc + pause + con + 0.4
    drift, loss = fatigue
    return {
        "schema_version": 1, "file": {"name": file, "size_bytes": 1}, "timing": {"wall_s": 1.0},
        "exercise": {"name": exercise, "source": "detected", "confidence": confidence},
        "view": {"name": view, "confidence": 1.0}, "rep_count": len(reps), "reason": None, "reps": reps,
        "fatigue": {"tempo_drift_pct": drift, "rom_loss_pct": loss, "flags": [],
                    "reason": None if drift is not None else "needs at least 3 reps"},
        "fault_definitions": {f.name: f.message for f in EXERCISES[exercise].faults},
    }


SQUAT = _analysis('squat_rjsong_2.mp4', 'squat', 0.715, 'front', (9.3, 5.2), [
    (81.5, 0.533, 0.133, 0.6, 5.7, 0.997, [], {'hip': (80.6, 157.5), 'trunk_lean': (6.4, 24.9)}),
    (80.7, 0.6, 0.2, 0.667, 5.8, 0.996, [], {'hip': (74.8, 161.4), 'trunk_lean': (5.1, 28.4)}),
    (86.2, 0.6, 0.2, 0.667, 7.2, 0.996, [], {'hip': (73.2, 160.1), 'trunk_lean': (5.7, 24.5)}),
    (81.6, 0.667, 0.2, 0.667, 5.8, 0.996, [], {'hip': (65.2, 159.1), 'trunk_lean': (6.7, 27.8)}),
    (83.6, 0.667, 0.267, 0.667, 3.4, 0.995, [], {'hip': (58.1, 162.1), 'trunk_lean': (4.0, 38.4)}),
    (82.6, 0.733, 0.133, 0.6, 4.4, 0.996, [], {'hip': (64.2, 160.7), 'trunk_lean': (7.9, 32.9)}),
    (82.7, 0.733, 0.133, 0.733, 5.9, 0.997, [], {'hip': (67.6, 160.9), 'trunk_lean': (5.8, 32.8)}),
    (83.5, 0.667, 0.2, 0.667, 4.6, 0.994, [], {'hip': (51.8, 157.7), 'trunk_lean': (6.1, 41.8)}),
    (67.8, 0.667, 0.333, 0.6, 4.2, 0.99, [], {'hip': (64.2, 157.0), 'trunk_lean': (11.8, 47.3)}),
    (82.6, 0.733, 0.2, 0.667, 4.0, 0.994, [], {'hip': (61.0, 159.3), 'trunk_lean': (5.3, 37.5)}),
    (83.9, 0.667, 0.2, 0.733, 3.8, 0.994, [], {'hip': (60.1, 158.9), 'trunk_lean': (6.7, 36.1)}),
    (78.8, 0.667, 0.133, 0.667, 4.1, 0.996, [], {'hip': (70.5, 157.6), 'trunk_lean': (7.4, 34.8)}),
])
SQUAT_1 = _analysis('squat_kaiakol_1.mp4', 'squat', 0.867, 'side', (None, None), [
    (84.3, 0.333, 0.0, 0.4, None, 0.993, ['trunk_lean'], {'hip': (37.2, 163.6), 'trunk_lean': (11.2, 58.8)}),
])
PUSHUP = _analysis('pushup_rjsong_1.mp4', 'pushup', 0.73, 'front', (2.7, -2.9), [
    (56.0, 0.667, 0.133, 0.733, 9.5, 0.993, ['hip_sag'], {'body_line': (110.6, 116.8), 'shoulder': (63.4, 101.6)}),
    (59.8, 0.6, 0.2, 0.667, 10.5, 0.991, [], {'body_line': (None, None), 'shoulder': (56.3, 100.2)}),
    (60.3, 0.6, 0.067, 0.667, 12.1, 0.986, [], {'body_line': (None, None), 'shoulder': (55.2, 100.4)}),
    (79.0, 0.8, 0.2, 0.4, 8.5, 0.945, [], {'body_line': (None, None), 'shoulder': (57.4, 100.6)}),
    (68.9, 0.867, 0.267, 0.533, 4.9, 0.995, [], {'body_line': (None, None), 'shoulder': (36.3, 68.4)}),
    (56.3, 0.8, 0.067, 0.533, 5.8, 0.997, [], {'body_line': (None, None), 'shoulder': (34.4, 63.8)}),
    (54.9, 0.667, 0.2, 0.6, 6.8, 0.997, [], {'body_line': (None, None), 'shoulder': (35.3, 63.5)}),
    (56.7, 0.733, 0.4, 0.133, 6.2, 0.798, [], {'body_line': (None, None), 'shoulder': (37.2, 85.9)}),
    (60.6, 0.733, 0.2, 0.6, 6.7, 0.997, [], {'body_line': (None, None), 'shoulder': (38.1, 67.7)}),
    (73.3, 0.667, 0.133, 0.533, 5.6, 0.997, [], {'body_line': (None, None), 'shoulder': (37.1, 73.0)}),
    (65.2, 0.733, 0.133, 0.467, 6.5, 0.996, [], {'body_line': (None, None), 'shoulder': (38.0, 71.1)}),
    (64.7, 0.8, 0.133, 0.533, 6.9, 0.997, [], {'body_line': (None, None), 'shoulder': (36.8, 70.3)}),
    (65.8, 0.867, 0.133, 0.533, 7.1, 0.998, [], {'body_line': (None, None), 'shoulder': (35.5, 70.1)}),
    (66.0, 0.867, 0.267, 0.533, 3.5, 0.996, [], {'body_line': (None, None), 'shoulder': (34.8, 68.9)}),
    (71.7, 0.8, 0.333, 0.467, 4.0, 0.996, [], {'body_line': (None, None), 'shoulder': (36.8, 76.9)}),
])


def _inputs(analysis: dict[str, Any] = SQUAT) -> dict[str, Any]:
    return normalize(copy.deepcopy(analysis))


# --- normalized inputs and the cache key ---------------------------------------------------------------------

def test_normalize_keeps_what_the_prompt_uses_rounded() -> None:
    got = _inputs()
    assert got["exercise"] == "squat" and got["view"] == "front" and got["rep_count"] == 12
    assert got["rom_target_deg"] == 95 and got["exercise_confidence"] == 0.7
    assert got["reps"][0] == {"rep": 1, "rom_deg": 82, "eccentric_s": 0.5, "pause_s": 0.1, "concentric_s": 0.6,
                              "asymmetry_deg": 6, "confidence": 1.0, "faults": [],
                              "angles": {"hip": [81, 158], "trunk_lean": [6, 25]}}
    assert got["reps"][8]["rom_deg"] == 68  # the short rep
    assert got["fatigue"] == {"tempo_drift_pct": 9, "rom_loss_pct": 5, "flags": []}
    assert set(got["faults_checked"]) == {"shallow_depth", "trunk_lean", "knee_asymmetry"}
    assert "file" not in json.dumps(got) and "start_s" not in json.dumps(got)
    # an API job body (GET /v1/analyses/{id}) is unwrapped to its result
    assert normalize({"id": "x", "status": "done", "result": copy.deepcopy(SQUAT)}) == got


def test_cache_key_ignores_noise_and_follows_what_changes_the_answer() -> None:
    base = cache_key(MODEL, _inputs(), "strength", "beginner", "")
    noisy = copy.deepcopy(SQUAT)
    noisy["file"]["name"], noisy["timing"]["wall_s"] = "other.mp4", 9.9
    noisy["reps"][0]["rom_deg"] += 0.2  # 81.7 rounds to 82 like 81.5
    noisy["reps"][0]["start_s"] += 1.0
    assert cache_key(MODEL, normalize(noisy), "strength", "beginner", "") == base
    moved = copy.deepcopy(SQUAT)
    moved["reps"][0]["rom_deg"] = 75.0
    changed = [cache_key(MODEL, normalize(moved), "strength", "beginner", ""),
               cache_key(MODEL, _inputs(), "hypertrophy", "beginner", ""),
               cache_key(MODEL, _inputs(), "strength", "advanced", ""),
               cache_key(MODEL, _inputs(), "strength", "beginner", "sore knee"),
               cache_key("other-model", _inputs(), "strength", "beginner", "")]
    assert base.startswith("recommend:") and len(set(changed + [base])) == 6


@pytest.mark.parametrize(("mutate", "says"), [
    (lambda a: a.update(reps="many"), "analysis.reps must be a list of reps"),
    (lambda a: a["reps"][2].update(rom_deg="deep"), "analysis.reps[2].rom_deg must be a number or null; got 'deep'"),
    (lambda a: a["reps"][0].update(faults="trunk_lean"), "analysis.reps[0].faults must be a list of strings"),
    (lambda a: a.update(exercise={"name": ""}), "analysis.exercise.name must be a non-empty string"),
    (lambda a: a.update(rep_count=-1), "analysis.rep_count must be an integer >= 0; got -1"),
    (lambda a: a["reps"].__setitem__(1, 7), "analysis.reps[1] must be an object (a rep); got int"),
    (lambda a: a["reps"][0].update(eccentric_s=float("nan")), "eccentric_s must be a number or null; got nan"),
])
def test_normalize_says_what_was_expected_and_what_came(mutate: Any, says: str) -> None:
    bad = copy.deepcopy(SQUAT)
    mutate(bad)
    with pytest.raises(RequestError, match=None) as err:
        normalize(bad)
    assert says in str(err.value)
    with pytest.raises(RequestError, match="must be an object"):
        normalize([SQUAT])


# --- the rules recommender ---------------------------------------------------------------------------------

def test_rules_name_the_reps_and_the_values_behind_each_cue() -> None:
    one = to_dict(rules_recommend(_inputs(SQUAT_1), "strength", "intermediate"))
    first = one["cues"][0]
    assert first["fault"] == "trunk_lean" and first["reps"] == [1] and first["priority"] == 1
    assert "trunk lean peaked at 59° (limit 50°)" in first["why"]
    assert one["prescription"]["load_change"].startswith("-10%")  # a safety fault: lighter
    assert one["regressions"][0].startswith("goblet squat") and any("lower back" in s for s in one["safety_flags"])
    assert any("fatigue not measured" in s for s in one["safety_flags"])
    assert "1 squat rep seen from the side, range of motion 84°" in one["summary"]

    push = to_dict(rules_recommend(_inputs(PUSHUP), "endurance", "beginner"))
    sag = push["cues"][0]
    assert sag["fault"] == "hip_sag" and sag["reps"] == [1] and "body line went down to 111° (limit 150°)" in sag["why"]
    assert push["prescription"]["load_change"].startswith("regress")  # bodyweight: a variation, not a load
    assert push["prescription"] | {} == {"sets": 2, "reps": 15, "tempo": "1-0-1", "rest_s": 45,
                                         "load_change": push["prescription"]["load_change"]}

    squat = to_dict(rules_recommend(_inputs(SQUAT), "hypertrophy", "advanced"))
    by_cue = {c["cue"]: c for c in squat["cues"]}
    assert by_cue["Control the lowering: about 3 s each rep"]["reps"] == list(range(1, 13))
    assert "0.7 s (median)" in by_cue["Control the lowering: about 3 s each rep"]["why"]
    assert by_cue["Use the full range of motion on every rep"]["reps"] == [9, 12]  # 68° and 79° of ~95°
    assert by_cue["Make every rep the same depth"]["reps"] == [9]
    assert "12 squat reps seen from the front, range of motion 68-86° (median 83°, 87%" in squat["summary"]
    assert "reps 9% slower, range 5% smaller" in squat["summary"]
    assert squat["prescription"]["sets"] == 4 and squat["prescription"]["reps"] == 8
    assert squat["prescription"]["load_change"].startswith("hold")  # short reps: not heavier yet


def test_rules_prescription_follows_fatigue_and_a_clean_set() -> None:
    clean = copy.deepcopy(SQUAT)
    for r in clean["reps"]:
        r["rom_deg"], r["eccentric_s"] = 92.0, 2.1
    rec = to_dict(rules_recommend(normalize(clean), "strength", "intermediate"))
    assert rec["cues"] == [] and rec["prescription"]["load_change"].startswith("+2.5-5%")
    assert rec["prescription"] == {**rec["prescription"], "sets": 4, "reps": 5, "tempo": "2-1-1", "rest_s": 180}
    tired = copy.deepcopy(clean)
    tired["fatigue"].update(rom_loss_pct=18.0, flags=["rom_loss"])
    rec = to_dict(rules_recommend(normalize(tired), "strength", "intermediate"))
    assert rec["cues"][0]["cue"] == "End the set when the range starts to drop" and rec["cues"][0]["reps"] == [9, 10,
                                                                                                                11, 12]
    assert rec["prescription"]["load_change"].startswith("-10%")
    assert any("fell 18%" in s for s in rec["safety_flags"])


def test_rules_without_reps_with_pain_and_for_rehab() -> None:
    none = copy.deepcopy(SQUAT)
    none.update(reps=[], rep_count=0, reason="no periodic motion found")
    rec = to_dict(rules_recommend(normalize(none), "rehab", "beginner", "my left knee hurts on the way down"))
    assert rec["cues"] == [] and "No squat reps were counted (no periodic motion found)" in rec["summary"]
    assert rec["safety_flags"][0].startswith("your notes mention pain")
    assert any(s.startswith("rehab:") for s in rec["safety_flags"])
    assert any("no reps were measured" in s for s in rec["safety_flags"])
    assert rec["prescription"]["load_change"].startswith("hold")


@pytest.mark.parametrize("goal", GOALS)
@pytest.mark.parametrize("level", LEVELS)
def test_rules_answers_meet_the_schema_the_model_must_meet(goal: str, level: str) -> None:
    for analysis in (SQUAT, SQUAT_1, PUSHUP):
        inputs = _inputs(analysis)
        answer = rules_recommend(inputs, goal, level, "some notes")
        again = from_dict(to_dict(answer))  # converting checks every bound and pattern
        check_grounded(again, inputs)
        check_answer(json.dumps(to_dict(answer)), inputs)
        priorities = [c.priority for c in answer.cues]
        assert priorities == list(range(1, len(priorities) + 1))


def test_ranges() -> None:
    assert ranges([1, 2, 3, 5, 7, 8]) == "1-3, 5, 7-8" and ranges([4]) == "4" and ranges([]) == ""


# --- the answer's schema and validation ---------------------------------------------------------------------

def test_response_schema_is_strict_and_matches_the_validator() -> None:
    def walk(node: dict[str, Any], struct: Any) -> None:
        if node.get("type") == "object":
            assert node["additionalProperties"] is False and node["required"] == list(node["properties"])
            assert tuple(node["properties"]) == struct.__struct_fields__
    walk(ANSWER_SCHEMA, Answer)
    from api.recommend.schema import Cue, Prescription
    walk(ANSWER_SCHEMA["properties"]["cues"]["items"], Cue)
    walk(ANSWER_SCHEMA["properties"]["prescription"], Prescription)


@pytest.mark.parametrize(("content", "kind", "says"), [
    ('{"summary": "x", "cues": [', "malformed", "not JSON"),
    (json.dumps({**ANSWER, "prescription": {**ANSWER["prescription"], "sets": "four"}}), "invalid",
     "Expected `int`, got `str` - at `$.prescription.sets`"),
    (json.dumps({**ANSWER, "extra": 1}), "invalid", "unknown field `extra`"),
    (json.dumps({**ANSWER, "prescription": {**ANSWER["prescription"], "tempo": "slow"}}), "invalid", "tempo"),
    (json.dumps({**ANSWER, "cues": [{**ANSWER["cues"][0], "reps": [13]}]}), "invalid",
     "cues[0] names rep 13, the analysis has 12"),
    (json.dumps({**ANSWER, "cues": [{**ANSWER["cues"][0], "fault": "bad_vibes"}]}), "invalid",
     "cues[0] names fault 'bad_vibes'"),
])
def test_answers_that_are_not_usable_are_rejected(content: str, kind: str, says: str) -> None:
    with pytest.raises(AnswerError) as err:
        check_answer(content, _inputs())
    assert err.value.kind == kind and says in str(err.value)
    assert check_answer(json.dumps(ANSWER), _inputs()).prescription.tempo == "3-0-1"


# --- the engine with the real openai client and the fake server ---------------------------------------------

@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeOpenAI) -> FakeOpenAI:
    server.reset("ok")
    return server


def _cfg(fake: FakeOpenAI, **kw: Any) -> RecommendSettings:
    base = {"api_key": SECRET, "model": MODEL, "base_url": fake.base_url, "timeout_s": 0.5, "retries": 1,
            "backoff_s": 0.01, "ttl_s": 60}
    return RecommendSettings(**{**base, **kw})


def _memory() -> TieredCache:
    return TieredCache([MemoryTier(4 << 20)])


def _count(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def _ask(rec: Recommender, n: int = 1, goal: str = "strength", notes: str = "") -> list[Any]:
    try:
        return list(await asyncio.gather(*(rec.recommend(_inputs(), goal, "intermediate", notes) for _ in range(n))))
    finally:
        await rec.close()


def test_a_valid_model_answer_passes_through_and_the_repeat_is_a_cache_hit(fake: FakeOpenAI) -> None:
    hits = _count("formcheck_recommend_cache_total", outcome="hit")
    tokens = _count("formcheck_recommend_tokens_total", kind="prompt")

    async def go() -> list[Any]:
        rec = Recommender(_cfg(fake), _memory())
        try:
            first = await rec.recommend(_inputs(), "strength", "intermediate")
            second = await rec.recommend(_inputs(), "strength", "intermediate")
            other = await rec.recommend(_inputs(), "hypertrophy", "intermediate")
            return [first, second, other]
        finally:
            await rec.close()

    first, second, other = asyncio.run(go())
    assert first.body["source"] == f"openai:{MODEL}" and first.body["cached"] is False and not first.cached
    assert first.body["usage"] == USAGE and first.body["prompt_version"] == PROMPT_VERSION
    assert {k: first.body[k] for k in ANSWER} == {**ANSWER, "cues": sorted(ANSWER["cues"], key=lambda c: c["priority"])}
    assert second.cached and second.body["cached"] is True and second.body["usage"] == USAGE
    assert {k: second.body[k] for k in ANSWER} == {k: first.body[k] for k in ANSWER}
    assert not other.cached and fake.calls == 2  # the repeat did not reach the server; another goal did
    assert _count("formcheck_recommend_cache_total", outcome="hit") == hits + 1
    assert _count("formcheck_recommend_tokens_total", kind="prompt") == tokens + 2 * USAGE["prompt_tokens"]
    # what the server was asked: the model, a strict JSON schema, the measured numbers, the key as a bearer token
    req = fake.requests[0]
    assert req["model"] == MODEL and req["response_format"]["type"] == "json_schema"
    assert req["response_format"]["json_schema"]["strict"] is True
    assert req["response_format"]["json_schema"]["schema"] == ANSWER_SCHEMA
    user = req["messages"][1]["content"]
    assert "Goal: strength. Level: intermediate." in user and '"rom_deg":68' in user and '"rom_target_deg":95' in user
    assert fake.auth[0] == f"Bearer {SECRET}"


def test_concurrent_identical_requests_make_one_upstream_call(fake: FakeOpenAI) -> None:
    fake.delay = 0.3
    coalesced = _count("formcheck_recommend_cache_total", outcome="coalesced")
    got = asyncio.run(_ask(Recommender(_cfg(fake), _memory()), n=8))
    assert fake.calls == 1
    assert sorted(r.cached for r in got) == [False] + [True] * 7
    assert all(r.body["source"] == f"openai:{MODEL}" and r.body["summary"] == ANSWER["summary"] for r in got)
    assert _count("formcheck_recommend_cache_total", outcome="coalesced") == coalesced + 7


def test_concurrent_requests_without_a_cache_still_coalesce(fake: FakeOpenAI) -> None:
    fake.delay = 0.2
    got = asyncio.run(_ask(Recommender(_cfg(fake), None), n=5))
    assert fake.calls == 1 and sum(not r.cached for r in got) == 1


@pytest.mark.parametrize(("mode", "calls", "outcome"), [
    ("429", 2, "rate_limited"),  # retried once (retries=1), then rules
    ("500", 2, "server_error"),
    ("sleep", 2, "timeout"),  # the server sleeps past the 0.5 s client timeout
    ("malformed", 1, "malformed"),  # not retried: the same prompt would likely fail the same way
    ("invalid", 1, "invalid"),
    ("length", 1, "truncated"),
])
def test_each_upstream_failure_is_a_rules_answer(fake: FakeOpenAI, caplog: pytest.LogCaptureFixture, mode: str,
                                                 calls: int, outcome: str) -> None:
    fake.reset(mode)
    fake.sleep_s = 1.0
    before = _count("formcheck_recommend_upstream_calls_total", outcome=outcome)
    fallbacks = _count("formcheck_recommend_fallbacks_total", reason=outcome)
    caplog.set_level(logging.WARNING, logger="api.recommend")
    t0 = time.perf_counter()
    tiers = _memory()
    [got] = asyncio.run(_ask(Recommender(_cfg(fake), tiers)))
    assert time.perf_counter() - t0 < 3.0
    assert got.body["source"] == "rules" and got.body["fallback"] == outcome and not got.cached
    assert got.body["usage"] is None and got.body["cues"] and got.body["prescription"]["sets"] == 4
    assert fake.calls == calls
    assert _count("formcheck_recommend_upstream_calls_total", outcome=outcome) == before + calls
    assert _count("formcheck_recommend_fallbacks_total", reason=outcome) == fallbacks + 1
    logged = [r for r in caplog.records if r.name.startswith("api.recommend")]
    assert len(logged) == calls and all(getattr(r, "outcome", None) == outcome for r in logged)
    assert SECRET not in caplog.text and all(SECRET not in json.dumps(vars(r), default=str) for r in logged)
    # the failure was not cached: once the server answers, the same request reaches it
    fake.reset("ok")
    [again] = asyncio.run(_ask(Recommender(_cfg(fake), tiers)))
    assert again.body["source"] == f"openai:{MODEL}" and fake.calls == 1


def test_a_retry_that_succeeds_is_the_model_answer(fake: FakeOpenAI) -> None:
    fake.reset("ok", "500", "429")
    [got] = asyncio.run(_ask(Recommender(_cfg(fake, retries=2), _memory())))
    assert got.body["source"] == f"openai:{MODEL}" and fake.calls == 3


def test_a_retry_after_longer_than_a_call_is_not_waited_for(fake: FakeOpenAI) -> None:
    fake.reset("429")
    fake.retry_after = "60"
    t0 = time.perf_counter()
    [got] = asyncio.run(_ask(Recommender(_cfg(fake, retries=3), _memory())))
    assert got.body["fallback"] == "rate_limited" and fake.calls == 1 and time.perf_counter() - t0 < 1.0


def test_an_unreachable_server_and_no_key(fake: FakeOpenAI) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    [got] = asyncio.run(_ask(Recommender(_cfg(fake, base_url=f"http://127.0.0.1:{port}/v1", retries=0), None)))
    assert got.body["source"] == "rules" and got.body["fallback"] == "connection"
    [plain] = asyncio.run(_ask(Recommender(RecommendSettings(), _memory())))
    assert plain.body["source"] == "rules" and plain.body["fallback"] is None and fake.calls == 0


def test_a_set_without_reps_never_reaches_the_model(fake: FakeOpenAI) -> None:
    empty = {**copy.deepcopy(SQUAT), "reps": [], "rep_count": 0}

    async def go() -> Any:
        rec = Recommender(_cfg(fake), _memory())
        try:
            return await rec.recommend(normalize(empty), "strength", "beginner")
        finally:
            await rec.close()

    got = asyncio.run(go())
    assert got.body["source"] == "rules" and got.body["fallback"] == "no_reps" and fake.calls == 0


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is needed at {REDIS_URL} (set FORMCHECK_TEST_REDIS_URL): {exc}")
    prefix = f"fc-test-rec-{uuid.uuid4().hex}:"
    yield prefix
    for key in client.scan_iter(match=prefix + "*"):  # only this test's keys
        client.delete(key)
    client.close()


def test_the_redis_tier_answers_a_fresh_process(fake: FakeOpenAI, redis_prefix: str) -> None:
    def tiers() -> TieredCache:  # what another API process would open: its own memory, the shared Redis
        return TieredCache([MemoryTier(1 << 20), RedisTier(REDIS_URL, ttl_s=120, prefix=redis_prefix)])

    [first] = asyncio.run(_ask(Recommender(_cfg(fake), tiers())))
    [second] = asyncio.run(_ask(Recommender(_cfg(fake), tiers())))
    assert not first.cached and second.cached and fake.calls == 1
    assert second.body["source"] == f"openai:{MODEL}" and second.body["usage"] == USAGE
    stored = redis.Redis.from_url(REDIS_URL).get(redis_prefix + cache_key(MODEL, _inputs(), "strength",
                                                                          "intermediate", ""))
    assert stored is not None and json.loads(stored)["rec"]["answer"]["summary"] == ANSWER["summary"]


def test_entries_expire_after_the_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    tiers = _memory()
    cache = rcache.RecommendCache(tiers, ttl_s=60)
    cache.put_sync("recommend:k", {"answer": ANSWER})
    assert cache.get_sync("recommend:k") == {"answer": ANSWER}
    now = time.time()
    monkeypatch.setattr(rcache.time, "time", lambda: now + 61)
    assert cache.get_sync("recommend:k") is None and tiers.get("recommend:k") is None  # and dropped
    tiers.put("recommend:j", b"not json")
    assert cache.get_sync("recommend:j") is None and tiers.get("recommend:j") is None


# --- the CLI -------------------------------------------------------------------------------------------------

def test_cli_recommend(fake: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                       capsys: pytest.CaptureFixture[str]) -> None:
    from api.cli import main

    path = tmp_path / "analysis.json"
    path.write_text(json.dumps(SQUAT_1))
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert main(["recommend", str(path), "--goal", "strength", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["source"] == "rules" and body["cues"][0]["reps"] == [1] and body["cues"][0]["fault"] == "trunk_lean"
    assert main(["recommend", str(path), "--goal", "mobility", "--level", "beginner"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("source: rules") and "1. Chest up" in text and "next session: 2 x 8" in text
    assert main(["recommend", str(tmp_path / "missing.json"), "--goal", "strength"]) == 2
    path.write_text("{")
    assert main(["recommend", str(path), "--goal", "strength"]) == 2
    assert "is not JSON" in capsys.readouterr().err
    # with a key: the model, then the disk cache
    path.write_text(json.dumps(SQUAT))
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
    monkeypatch.setenv("OPENAI_MODEL", MODEL)
    notes = ["--notes", uuid.uuid4().hex]
    assert main(["recommend", str(path), "--goal", "strength", "--json", *notes]) == 0
    assert main(["recommend", str(path), "--goal", "strength", "--json", *notes]) == 0
    runs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["source"] for r in runs] == [f"openai:{MODEL}"] * 2 and [r["cached"] for r in runs] == [False, True]
    assert fake.calls == 1
