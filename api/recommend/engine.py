"""One recommendation: the model's (cached, coalesced) or the rules', never an error.

With a key, the answer for a cache key (``prompt.cache_key``) comes from the cache tiers or
from one upstream call: identical requests that arrive while that call runs wait for it
(a task per key in this process, shielded, so a client that disconnects cancels nothing).
Only validated model answers are stored; a rules answer is computed afresh each time (it
costs well under a millisecond), so a recovered upstream is used at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from pipeline.cache import TieredCache

from .. import metrics
from ..settings import RecommendSettings
from . import rules
from .cache import RecommendCache
from .client import Upstream, UpstreamFailed
from .prompt import PROMPT_VERSION, cache_key
from .schema import from_dict, to_dict

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Result:
    body: dict[str, Any]
    cached: bool  # no upstream call was made for this request (a cache hit or a coalesced wait)


@dataclass(frozen=True, slots=True)
class _Fetched:
    entry: dict[str, Any] | None  # {"answer": {...}, "usage": {...} | None, "model": str, "created_at": float}
    hit: bool
    failure: str | None  # why there is no entry


class Recommender:
    def __init__(self, cfg: RecommendSettings, tiers: TieredCache | None) -> None:
        self.cfg = cfg
        self.cache = RecommendCache(tiers, cfg.ttl_s)
        self.upstream = Upstream(cfg) if cfg.api_key else None
        self._inflight: dict[str, asyncio.Task[_Fetched]] = {}

    @property
    def source(self) -> str:
        return self.upstream.source if self.upstream is not None else "rules"

    async def close(self) -> None:
        if self.upstream is not None:
            await self.upstream.close()

    async def recommend(self, inputs: dict[str, Any], goal: str, level: str, notes: str = "") -> Result:
        """``inputs`` from ``prompt.normalize``."""
        if self.upstream is None:
            return self._rules(inputs, goal, level, notes, None)
        if not inputs["reps"]:  # nothing measured for the model to ground anything in
            return self._rules(inputs, goal, level, notes, "no_reps")
        key = cache_key(self.cfg.model, inputs, goal, level, notes)
        task = self._inflight.get(key)
        joined = task is not None
        if task is None:
            task = asyncio.create_task(self._fetch(key, inputs, goal, level, notes))
            self._inflight[key] = task
            task.add_done_callback(lambda t: self._inflight.pop(key) if self._inflight.get(key) is t else None)
        got = await asyncio.shield(task)
        if got.entry is None:
            return self._rules(inputs, goal, level, notes, got.failure or "error")
        metrics.RECOMMEND_CACHE.labels("coalesced" if joined else "hit" if got.hit else "miss").inc()
        cached = joined or got.hit
        body = _body(got.entry["answer"], self.source, cached, got.entry.get("usage"), inputs, goal, level, None)
        return Result(body, cached)

    async def _fetch(self, key: str, inputs: dict[str, Any], goal: str, level: str, notes: str) -> _Fetched:
        assert self.upstream is not None
        try:
            entry = await self.cache.get(key)
            if entry is not None:
                try:
                    from_dict(entry["answer"])  # an entry of another shape is a miss
                    return _Fetched(entry, True, None)
                except Exception:  # noqa: BLE001
                    log.warning("recommendation cache entry of an unexpected shape ignored")
            answer, usage = await self.upstream.ask(inputs, goal, level, notes)
            entry = {"answer": to_dict(answer), "usage": usage, "model": self.cfg.model, "created_at": time.time()}
            await self.cache.put(key, entry)
            return _Fetched(entry, False, None)
        except UpstreamFailed as exc:
            return _Fetched(None, False, exc.outcome)
        except Exception:  # a bug must not become a 500: the rules still answer
            log.exception("recommendation failed unexpectedly; answering with the rules")
            return _Fetched(None, False, "error")

    def _rules(self, inputs: dict[str, Any], goal: str, level: str, notes: str, reason: str | None) -> Result:
        if reason is not None:
            metrics.RECOMMEND_FALLBACKS.labels(reason).inc()
        answer = to_dict(rules.recommend(inputs, goal, level, notes))
        return Result(_body(answer, "rules", False, None, inputs, goal, level, reason), False)


def _body(answer: dict[str, Any], source: str, cached: bool, usage: dict[str, int] | None, inputs: dict[str, Any],
          goal: str, level: str, fallback: str | None) -> dict[str, Any]:
    return {**answer, "source": source, "cached": cached, "prompt_version": PROMPT_VERSION, "usage": usage,
            "fallback": fallback, "goal": goal, "level": level, "measured": inputs}
