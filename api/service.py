"""Everything one API process holds: settings, store, inference pool, runner, caches, metrics.

Built by the app's lifespan (``start``) and torn down by it (``stop``); routes reach it as
``request.app.state.service``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.cache import TieredCache, shared
from pipeline.config import AnalysisConfig
from pipeline.pool import settle_heap
from pipeline.stored import infer_options, resolve_model

from . import metrics
from .jobs import Runner
from .pools import ClusterHolder, PoolHolder, holder
from .settings import Settings
from .store import Job, Store, open_store

log = logging.getLogger(__name__)


@dataclass
class Service:
    settings: Settings
    workers: int  # inference processes of this API process
    warm: bool = True  # start and warm the pool before reporting ready (tests may skip it)
    render_video: bool = True
    run_jobs: bool = True  # False: accept and serve, but leave the queue to other processes
    store: Store = field(init=False)
    pools: PoolHolder | ClusterHolder = field(init=False)
    runner: Runner = field(init=False)
    cache: TieredCache | None = field(init=False, default=None)
    ready: bool = False
    started: float = field(default_factory=time.time)

    def analysis_config(self, params: dict[str, object]) -> AnalysisConfig:
        s = self.settings
        return AnalysisConfig(
            model_cache=s.model_cache, exercise=str(params.get("exercise", "auto")),
            fps=float(params.get("fps", 15.0)),  # type: ignore[arg-type]
            max_side=s.max_side, workers=self.workers, cache=s.cache(True),
        )

    def _job_config(self, job: Job) -> AnalysisConfig:
        return self.analysis_config(json.loads(job.params))

    async def start(self) -> None:
        srv = self.settings.server
        for d in (srv.data_dir, srv.uploads, srv.artifacts):
            d.mkdir(parents=True, exist_ok=True)
        self.store = open_store(srv.database_url, srv.sqlite_path, srv.db_pool_min, srv.db_pool_max)
        await self.store.open()
        cfg = self.analysis_config({})
        model = await asyncio.to_thread(resolve_model, cfg)  # builds the bundle on first run
        self.pools = holder(self.settings.scheduler, self.workers, infer_options(cfg, model))
        cache_cfg = self.settings.cache(True)
        self.cache = shared(cache_cfg) if cache_cfg is not None else None
        if self.warm or isinstance(self.pools, ClusterHolder):
            await asyncio.to_thread(self.pools.start)
            self.workers = self.pools.workers  # a cluster: one chunk per worker thread
            await asyncio.to_thread(_load_kernels)
        self.runner = Runner(self.store, self.pools, self._job_config, srv.artifacts, attempts=srv.job_attempts,
                             render_video=self.render_video)
        if self.run_jobs:
            self.runner.start()
        metrics.POOL_SIZE.set(self.workers)
        metrics.POOL_ALIVE.set(self.pools.alive())
        if self.warm:
            settle_heap()  # a full collection no longer walks the warm server's ~116k objects
        self.ready = True
        log.info("ready", extra={"settings": srv.describe(), "workers": self.workers})

    async def stop(self, grace_s: float = 10.0) -> None:
        self.ready = False
        if self.warm:
            gc.unfreeze()  # what start froze is collectable again (an app made and stopped in one process)
        runner = getattr(self, "runner", None)
        if runner is not None:
            await runner.stop(grace_s)
        pools = getattr(self, "pools", None)
        if pools is not None:
            await asyncio.to_thread(pools.close)
        store = getattr(self, "store", None)
        if store is not None:
            await store.close()
        log.info("stopped")

    def upload_path(self, job_id: str, suffix: str) -> Path:
        return self.settings.server.uploads / f"{job_id}{suffix}"


def _load_kernels() -> None:
    """Import (and load from numba's disk cache) the features stage before the first job."""
    import pipeline.analyze  # noqa: F401
