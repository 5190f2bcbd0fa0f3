"""The server's inference pool, replaced when a worker dies (or a Dask cluster, :class:`ClusterHolder`).

A ``ProcessPoolExecutor`` whose worker is killed is broken for good: every pending and later
future fails. The holder swaps in a fresh pool (warm before it is used) so the service keeps
serving, and counts the replacements for ``/health/ready`` and metrics.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor

from pipeline.infer import InferOptions, warm
from pipeline.pool import make_pool, make_still_pool, prestart, terminate
from pipeline.still import warm_still

from .engines import Engine, cluster

log = logging.getLogger(__name__)

WORKER_NICE = 5


class PoolHolder:
    """The inference pool (``workers`` processes: video chunks, and stills when the still worker is
    busy) and the still worker (one process for ``POST /v1/frames``, never niced)."""

    def __init__(self, workers: int, options: InferOptions) -> None:
        self.workers, self.options = workers, options
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._still: ProcessPoolExecutor | None = None
        self.replaced = 0

    def start(self) -> None:
        """Start the workers and load the model in each (blocks until they are warm)."""
        with self._lock:
            if self._pool is None:
                self._pool = make_pool(self.workers, self.options)
            if self._still is None:
                self._still = make_still_pool(self.options)
            pool, still = self._pool, self._still
        prestart(pool, self.workers)
        warming = [still.submit(warm_still, self.options)]
        warming += [pool.submit(warm, self.options) for _ in range(self.workers)]
        for fut in warming:
            fut.result(timeout=120)
        self._lower_priority()

    def _lower_priority(self) -> None:
        """Inference yields the CPU to the API process: a status poll should not wait behind a frame."""
        for pid in self.pids():
            try:
                os.setpriority(os.PRIO_PROCESS, pid, WORKER_NICE)
            except OSError:  # not permitted here: leave it
                pass

    def executor(self) -> Executor:
        with self._lock:
            if self._pool is None or _broken(self._pool):
                self._swap()
            assert self._pool is not None
            return self._pool

    def still_executor(self) -> Executor:
        """The still worker (replaced, cold, if it died)."""
        with self._lock:
            if self._still is None or _broken(self._still):
                self._swap_still()
            assert self._still is not None
            return self._still

    def replace_if_broken(self) -> bool:
        with self._lock:
            pool_broken = self._pool is not None and _broken(self._pool)
            still_broken = self._still is not None and _broken(self._still)
            if pool_broken:
                self._swap()
            if still_broken:
                self._swap_still()
            return pool_broken or still_broken

    def _swap_still(self) -> None:
        if self._still is not None:
            log.warning("the still worker died: starting a new one")
            terminate(self._still)
            self.replaced += 1
        self._still = make_still_pool(self.options)

    def _swap(self) -> None:
        if self._pool is not None:
            log.warning("the inference pool broke (a worker died): starting a new one")
            terminate(self._pool)
            self.replaced += 1
        self._pool = make_pool(self.workers, self.options)
        prestart(self._pool, self.workers)
        threading.Timer(5.0, self._lower_priority).start()  # once the new workers exist

    def alive(self) -> int:
        """Worker processes alive now."""
        with self._lock:
            return _alive(self._pool)

    def still_alive(self) -> int:
        """1 when the still worker's process is alive."""
        with self._lock:
            return _alive(self._still)

    def pids(self) -> list[int]:
        """The inference pool's worker processes (not the still worker)."""
        with self._lock:
            pool = self._pool
        procs = getattr(pool, "_processes", None) or {}
        return [p.pid for p in list(procs.values()) if p.is_alive() and p.pid is not None]

    def close(self, kill: bool = False) -> None:
        with self._lock:
            pools, self._pool, self._still = [self._pool, self._still], None, None
        for pool in pools:
            if pool is None:
                continue
            if kill:
                terminate(pool)
            else:
                pool.shutdown(wait=True, cancel_futures=True)


class ClusterHolder:
    """:class:`PoolHolder`'s face over a Dask cluster (``FORMCHECK_SCHEDULER``): the model is
    shipped to and warmed on every worker; a worker that dies is Dask's to replace, and its
    tasks are rescheduled on the others, so nothing here is ever "broken"."""

    def __init__(self, address: str, options: InferOptions) -> None:
        self.address, self.options = address, options
        self.workers = 1  # chunks per clip: the cluster's worker threads, once connected
        self.replaced = 0
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self._asker = ThreadPoolExecutor(1, thread_name_prefix="formcheck-cluster-info")

    def start(self) -> None:
        with self._lock:
            if self._engine is None:
                self._engine = cluster(self.address, self.options)
                self.workers = self._engine.workers

    def executor(self) -> Executor:
        self.start()
        assert self._engine is not None and self._engine.executor is not None
        return self._engine.executor

    def still_executor(self) -> Executor:
        return self.executor()  # stills go to the cluster's workers too

    def replace_if_broken(self) -> bool:
        return False

    def still_alive(self) -> int:
        return 1  # no still worker of its own: the cluster's workers take stills

    def alive(self) -> int:
        """Workers the scheduler knows now."""
        engine = self._engine
        if engine is None or engine.executor is None:
            return 0
        from pipeline.cluster import worker_count

        client = engine.executor.client  # type: ignore[attr-defined]
        try:  # off the caller's thread: a sync Dask call on a running asyncio loop would not block
            return self._asker.submit(worker_count, client).result(timeout=5)
        except Exception:  # noqa: BLE001 - the scheduler is unreachable or slow: none alive
            return 0

    def pids(self) -> list[int]:
        return []  # the workers are not this machine's children

    def close(self, kill: bool = False) -> None:
        with self._lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            engine.close(kill)
        self._asker.shutdown(wait=False)


def holder(scheduler: str | None, workers: int, options: InferOptions) -> PoolHolder | ClusterHolder:
    return ClusterHolder(scheduler, options) if scheduler else PoolHolder(workers, options)


def _broken(pool: ProcessPoolExecutor) -> bool:
    return bool(getattr(pool, "_broken", False))


def _alive(pool: ProcessPoolExecutor | None) -> int:
    if pool is None or _broken(pool):
        return 0
    procs = getattr(pool, "_processes", None) or {}
    return sum(1 for p in list(procs.values()) if p.is_alive())
