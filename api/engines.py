"""Where inference runs: the local process pool or a Dask cluster, behind one ``Executor``.

The CLI and the server pick one here (``--scheduler`` / ``FORMCHECK_SCHEDULER``); the pipeline
only ever sees a ``concurrent.futures.Executor``.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

from pipeline.infer import InferOptions
from pipeline.pool import make_pool, prestart, terminate

CLUSTER_WAIT_S = 60.0  # for the first Dask worker to join


@dataclass
class Engine:
    """``executor`` (None: run in this process) with ``workers`` inference processes;
    ``close(kill)`` stops it (kill: don't wait for running work)."""

    executor: Executor | None
    workers: int
    kind: str  # local | dask
    close: Callable[[bool], None]


def local(workers: int, options: InferOptions, pool_of_one: bool = False) -> Engine:
    """A spawn pool of ``workers`` that load and warm the model now (for one worker: none, the
    work runs in this process, unless ``pool_of_one``)."""
    if workers <= 1 and not pool_of_one:
        return Engine(None, 1, "local", lambda kill: None)
    pool = make_pool(workers, options)
    prestart(pool, workers)

    def close(kill: bool) -> None:
        if kill:
            terminate(pool)
        else:
            pool.shutdown(wait=True, cancel_futures=True)

    return Engine(pool, workers, "local", close)


def cluster(address: str, options: InferOptions, wait_s: float = CLUSTER_WAIT_S) -> Engine:
    """The Dask cluster at ``address``: the model is shipped to and warmed on every worker;
    one chunk per worker thread."""
    from pipeline import cluster as dask

    client = dask.connect(address)
    try:
        dask.wait_for_workers(client, 1, wait_s)
        threads = sum(w.get("nthreads", 1) for w in client.scheduler_info(n_workers=-1)["workers"].values())
        executor = dask.ClusterExecutor(client, options)
    except BaseException:
        client.close()
        raise

    def close(kill: bool) -> None:
        executor.shutdown(wait=not kill)
        client.close()

    return Engine(executor, max(1, threads), "dask", close)


def open_engine(scheduler: str | None, workers: int, options: InferOptions, pool_of_one: bool = False) -> Engine:
    return cluster(scheduler, options) if scheduler else local(workers, options, pool_of_one)
