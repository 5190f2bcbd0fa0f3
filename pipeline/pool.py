"""Run inference over a clip on an executor: submit the chunks (cut by :mod:`pipeline.plan`), stitch in order.

The seam is ``concurrent.futures.Executor``: the local default is a ``spawn``
process pool whose workers load the model once (initializer); a Dask
``distributed`` client's executor fits the same seam because ``run_chunk``
loads the model lazily on whatever process runs it.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing as mp
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace

from .errors import FormcheckError, WorkerError
from .infer import ChunkJob, ChunkResult, InferOptions, libc, run_chunk, warm
from .subject import box, switched

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]  # (frames done, frames total)

CHUNK_TIMEOUT_S = 120.0  # plus CHUNK_FRAME_S per frame: a worker this late is hung
CHUNK_FRAME_S = 0.5
PARENT_CHECK_S = 1.0  # how often a pool worker checks that the process that started it lives
WORKER_NAME, STILL_WORKER_NAME = "formcheck-infer", "formcheck-still"  # process names (/proc/PID/comm)


def make_pool(workers: int, options: InferOptions) -> ProcessPoolExecutor:
    """A spawn pool (fork + numba/OpenMP hangs) whose workers warm the model at start."""
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=mp.get_context("spawn"),
        initializer=start_worker,
        initargs=(options, os.getpid()),
    )


def start_worker(options: InferOptions, parent: int) -> None:
    """Pool initializer: leave when the parent is gone (a SIGKILLed server must not leave
    workers holding a model forever), then load and warm the model."""
    _begin(WORKER_NAME, parent)
    warm(options)
    settle_heap()


def make_still_pool(options: InferOptions) -> ProcessPoolExecutor:
    """The server's still worker: one spawn process for ``POST /v1/frames``, warm with the
    IMAGE-mode landmarkers only (:func:`pipeline.still.warm_still`), so a frame never waits behind
    a video's chunks and consecutive frames meet the same warm threads (see ``pipeline.still``)."""
    return ProcessPoolExecutor(
        max_workers=1,
        mp_context=mp.get_context("spawn"),
        initializer=start_still_worker,
        initargs=(options, os.getpid()),
    )


def start_still_worker(options: InferOptions, parent: int) -> None:
    """:func:`make_still_pool`'s initializer: as :func:`start_worker`, for stills."""
    from .still import warm_still

    _begin(STILL_WORKER_NAME, parent)
    warm_still(options)
    settle_heap()


def settle_heap() -> None:
    """Once a long-lived process is warm (modules, model, kernels loaded), put what it holds out of
    the cyclic garbage collector's reach (``gc.freeze``): a full collection then walks only what
    came after. Unfrozen, one walked ~116k objects of a warm service in ~40 ms, every few hundred
    analyses: the pause that turned a 1 ms cache hit into 25-38 ms in throughput runs. Frozen
    objects are not collected (``gc.unfreeze`` gives them back): call it once, when warm."""
    gc.collect()
    gc.freeze()


def _begin(name: str, parent: int) -> None:
    """A worker's first steps: its process name in ``ps``/``top`` and ``/proc/PID/comm`` (Linux;
    elsewhere nothing), and a thread that ends it when ``parent`` is gone."""
    try:
        libc().prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (AttributeError, OSError):
        pass
    threading.Thread(target=_watch_parent, args=(parent,), name="formcheck-parent-watch", daemon=True).start()


def _watch_parent(parent: int, every_s: float = PARENT_CHECK_S) -> None:
    while os.getppid() == parent:
        time.sleep(every_s)
    os._exit(0)  # reparented: the process that started this worker died without stopping it


def prestart(executor: Executor, workers: int) -> None:
    """Start a process pool's workers now (they load and warm the model in the background);
    ``ProcessPoolExecutor`` otherwise starts one per task submitted."""
    if isinstance(executor, ProcessPoolExecutor):
        for _ in range(workers):
            executor.submit(int)  # a no-op: its submission spawns a worker when none is idle


def terminate(executor: Executor | None) -> None:
    """Stop a process pool now, killing busy workers (a hung chunk would block ``shutdown``)."""
    if isinstance(executor, ProcessPoolExecutor):
        for proc in list((getattr(executor, "_processes", None) or {}).values()):
            if proc.is_alive():
                proc.kill()
        executor.shutdown(wait=False, cancel_futures=True)


def keep_subject(
    jobs: list[ChunkJob], results: list[ChunkResult], executor: Executor | None, total: int
) -> list[ChunkResult]:
    """Chunks (in clip order) whose first frame shows another person than the previous chunk's
    last, run again steered to that chunk's person (:attr:`ChunkJob.steer`).

    Each chunk tracks from a fresh detection, which may take someone else (two people side by
    side): their frames were then dropped as another person's and a rep at the boundary was lost.
    Steered, the chunk tracks whom an analysis in one piece tracks. Rare; it costs one chunk again
    (without the frame cache, which holds the other person's landmarks for those frames).
    """
    out = list(results)
    for i in range(1, len(out)):
        a, b = out[i - 1], out[i]
        if jobs[i].options.num_poses != 1 or not (len(a.frame) and len(b.frame)):
            continue  # several people per frame: subject.select already picks among them
        if switched(a.xy[-1, 0], b.xy[0, 0]):
            log.info("the chunk from frame %d tracks another person: running it again, steered", jobs[i].start)
            job = replace(jobs[i], cache=None, steer=box(a.xy[-1, 0]))
            out[i] = run_chunks([job], executor, total)[0]
    return out


def run_chunks(
    jobs: list[ChunkJob], executor: Executor | None, total: int, progress: Progress | None = None
) -> list[ChunkResult]:
    """Run jobs (in this process when ``executor`` is None) and return them in clip order."""
    if executor is None:
        out = []
        for job in jobs:
            out.append(run_chunk(job))
            if progress:
                progress(sum(len(r.frame) for r in out), total)
        return out
    futures: list[Future[ChunkResult]] = [executor.submit(run_chunk, j) for j in jobs]
    results: list[ChunkResult | None] = [None] * len(jobs)
    done = 0
    try:
        for i, fut in enumerate(futures):
            last = jobs[i].stop
            stop = last if last is not None else max(total * jobs[i].stride, jobs[i].start)
            frames = (stop - jobs[i].start) / jobs[i].stride
            results[i] = fut.result(timeout=CHUNK_TIMEOUT_S + CHUNK_FRAME_S * frames)
            done += len(results[i].frame)  # type: ignore[union-attr]
            if progress:
                progress(done, total)
    except BrokenProcessPool as exc:
        for f in futures:
            f.cancel()
        raise WorkerError(f"an inference worker died while analyzing {jobs[0].path!r}: {exc}") from exc
    except FormcheckError:
        for f in futures:
            f.cancel()
        raise
    except Exception as exc:  # a worker raised something we did not plan for: the job can be retried
        for f in futures:
            f.cancel()
        raise WorkerError(
            f"an inference worker failed on {jobs[0].path!r}: {type(exc).__name__}: {exc}"
        ) from exc
    except FutureTimeout:
        for f in futures:
            f.cancel()
        terminate(executor)
        raise WorkerError(
            f"an inference worker did not finish its chunk of {jobs[0].path!r} in time: expected "
            f"under {CHUNK_TIMEOUT_S:.0f} s plus {CHUNK_FRAME_S} s per frame"
        ) from None
    return [r for r in results if r is not None]
