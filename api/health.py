"""``/health`` (liveness), ``/health/ready`` (can it serve?) and ``/metrics`` (Prometheus).

``/health/ready`` is 503 ``not ready`` when a job could not be served: the database does not
answer, or inference workers are missing. Redis is a cache tier: without it analyses run and
finish (only the shared cache is missed), so Redis down is 200 ``degraded``, named in
``degraded``, with the error under ``checks.redis``; a load balancer keeps sending traffic.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from litestar import Controller, Request, Response, get
from litestar.plugins.prometheus import PrometheusController

from . import metrics
from .service import Service

REDIS_TIMEOUT_S = 1.0
_last_cache: dict[str, dict[str, int]] = {}


class Health(Controller):
    path = "/health"
    tags = ["health"]

    @get("/", summary="Liveness: the process answers", cache_control=None)
    async def live(self) -> dict[str, str]:
        return {"status": "ok"}

    @get("/ready", summary="Readiness: database, Redis, inference workers, queue, cache")
    async def ready(self, request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        service: Service = request.app.state.service
        checks: dict[str, Any] = {}
        ok = service.ready
        try:
            await asyncio.wait_for(service.store.ping(), 2.0)
            checks["database"] = {"ok": True, "kind": "postgresql" if service.settings.server.database_url
                                  else "sqlite"}
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            ok = False
            checks["database"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        degraded: list[str] = []
        if service.settings.redis_url:
            checks["redis"] = await asyncio.to_thread(_redis, service.settings.redis_url)
            if not checks["redis"]["ok"]:
                degraded.append("redis")
        alive = await asyncio.to_thread(service.pools.alive) if hasattr(service, "pools") else 0
        still = service.pools.still_alive() if hasattr(service, "pools") else 0
        cluster = bool(service.settings.scheduler)  # a cluster's workers come and go: one is enough
        want_ok = alive >= 1 if cluster else alive == service.workers and still == 1
        checks["workers"] = {"ok": want_ok or not service.warm, "alive": alive,
                             "engine": "dask" if cluster else "local",
                             "configured": service.workers, "still_worker": still == 1,
                             "replaced": service.pools.replaced if hasattr(service, "pools") else 0}
        ok = ok and checks["workers"]["ok"]
        counts = await service.store.counts() if checks["database"]["ok"] else {}
        checks["queue"] = {"depth": counts.get("queued"), "running": counts.get("running"),
                           "limit": service.settings.server.queue_max}
        checks["cache"] = _hit_rates(service.cache.stats() if service.cache is not None else {})
        status = "not ready" if not ok else "degraded" if degraded else "ready"
        body = {"status": status, "degraded": degraded, "uptime_s": round(time.time() - service.started, 1),
                "checks": checks}
        return Response(body, status_code=200 if ok else 503)


def _redis(url: str) -> dict[str, Any]:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S)
        client.ping()
        client.close()
        return {"ok": True}
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def _hit_rates(stats: dict[str, dict[str, int]]) -> dict[str, Any]:
    out = {}
    for tier, st in stats.items():
        total = st.get("hits", 0) + st.get("misses", 0)
        out[tier] = {"hits": st.get("hits", 0), "misses": st.get("misses", 0),
                     "hit_rate": round(st.get("hits", 0) / total, 3) if total else None,
                     "puts": st.get("puts", 0), "errors": st.get("errors", 0)}
    return out


class Metrics(PrometheusController):
    """Litestar's Prometheus endpoint; the job gauges are read from the database first."""

    path = "/metrics"

    @get(include_in_schema=False)
    async def get(self, request: Request[Any, Any, Any]) -> Response[str | bytes]:  # type: ignore[override]
        global _last_cache
        service: Service = request.app.state.service
        try:
            counts = await service.store.counts()
        except Exception:  # noqa: BLE001 - metrics must answer even when the database does not
            counts = {}
        for state, n in counts.items():
            metrics.JOBS.labels(state).set(n)
        metrics.QUEUE.set(counts.get("queued", 0))
        if hasattr(service, "pools"):
            metrics.POOL_ALIVE.set(service.pools.alive())
        if service.cache is not None:
            stats = service.cache.stats()
            metrics.count_cache(stats, _last_cache)
            _last_cache = stats
        return await PrometheusController.get.fn(self)  # type: ignore[no-any-return]
