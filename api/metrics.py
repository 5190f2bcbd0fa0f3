"""Service metrics beside Litestar's request metrics (``/metrics``, Prometheus text format).

With several API worker processes, ``formcheck serve`` sets ``PROMETHEUS_MULTIPROC_DIR``
before anything imports prometheus_client, so every process writes its samples there and
``/metrics`` adds them up (gauges: the most recent value, or the sum across live processes).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

JOBS = Gauge("formcheck_jobs", "Jobs by state (from the database, at scrape time)", ["state"],
             multiprocess_mode="mostrecent")
JOB_OUTCOMES = Counter("formcheck_job_outcomes", "Jobs ended by this service, by outcome", ["outcome"])
FRAMES = Counter("formcheck_frames_analyzed", "Frames analyzed (videos and still frames)", ["source"])
INFER_SECONDS = Counter("formcheck_inference_seconds", "Seconds spent in the pose model", ["source"])
CACHE = Counter("formcheck_cache_lookups", "Cache lookups by tier and outcome", ["tier", "outcome"])
POOL_SIZE = Gauge("formcheck_pool_workers", "Inference processes configured", multiprocess_mode="livesum")
POOL_ALIVE = Gauge("formcheck_pool_workers_alive", "Inference processes alive", multiprocess_mode="livesum")
LIMIT_FALLBACKS = Counter("formcheck_rate_limit_fallbacks",
                          "Rate-limit checks counted in process memory because Redis was unreachable")
POOL_REPLACED = Counter("formcheck_pool_replaced", "Inference pools replaced after a worker died")
QUEUE = Gauge("formcheck_queue_depth", "Queued jobs (from the database, at scrape time)",
              multiprocess_mode="mostrecent")
# recommendations (api.recommend)
RECOMMEND_UPSTREAM = Counter("formcheck_recommend_upstream_calls",
                             "Model calls by outcome (ok, rate_limited, server_error, timeout, connection, "
                             "client_error, malformed, invalid, truncated, refused)", ["outcome"])
RECOMMEND_LATENCY = Histogram("formcheck_recommend_upstream_seconds", "Model call latency, every attempt",
                              buckets=(0.25, 0.5, 1, 2, 4, 8, 15, 30, 60))
RECOMMEND_TOKENS = Counter("formcheck_recommend_tokens", "Model tokens used, by kind (prompt, completion)", ["kind"])
RECOMMEND_CACHE = Counter("formcheck_recommend_cache", "Recommendation cache lookups (hit, miss, coalesced)",
                          ["outcome"])
RECOMMEND_FALLBACKS = Counter("formcheck_recommend_fallbacks", "Rules answers given, by reason", ["reason"])


def count_cache(tiers: dict[str, dict[str, int]], before: dict[str, dict[str, int]] | None = None) -> None:
    """Add the change in a TieredCache's per-tier hit/miss counts since ``before``."""
    for tier, st in tiers.items():
        for outcome in ("hits", "misses"):
            prev = (before or {}).get(tier, {}).get(outcome, 0)
            delta = st.get(outcome, 0) - prev
            if delta > 0:
                CACHE.labels(tier, outcome).inc(delta)
