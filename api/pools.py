"""The server's inference pool, replaced when a worker dies.

A ``ProcessPoolExecutor`` whose worker is killed is broken for good: every pending and later
future fails. The holder swaps in a fresh pool (warm before it is used) so the service keeps
serving, and counts the replacements for ``/health/ready`` and metrics.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import Executor, ProcessPoolExecutor

from pipeline.infer import InferOptions, warm
from pipeline.pool import make_pool, prestart, terminate

log = logging.getLogger(__name__)

WORKER_NICE = 5


class PoolHolder:
    def __init__(self, workers: int, options: InferOptions) -> None:
        self.workers, self.options = workers, options
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self.replaced = 0

    def start(self) -> None:
        """Start the workers and load the model in each (blocks until they are warm)."""
        with self._lock:
            if self._pool is None:
                self._pool = make_pool(self.workers, self.options)
            pool = self._pool
        prestart(pool, self.workers)
        for fut in [pool.submit(warm, self.options) for _ in range(self.workers)]:
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

    def replace_if_broken(self) -> bool:
        with self._lock:
            if self._pool is not None and _broken(self._pool):
                self._swap()
                return True
            return False

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
            pool = self._pool
        if pool is None or _broken(pool):
            return 0
        procs = getattr(pool, "_processes", None) or {}
        return sum(1 for p in list(procs.values()) if p.is_alive())

    def pids(self) -> list[int]:
        with self._lock:
            pool = self._pool
        procs = getattr(pool, "_processes", None) or {}
        return [p.pid for p in list(procs.values()) if p.is_alive() and p.pid is not None]

    def close(self, kill: bool = False) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is None:
            return
        if kill:
            terminate(pool)
        else:
            pool.shutdown(wait=True, cancel_futures=True)


def _broken(pool: ProcessPoolExecutor) -> bool:
    return bool(getattr(pool, "_broken", False))
