"""Run inference over a clip on an executor: plan chunks, submit, stitch in order.

The seam is ``concurrent.futures.Executor``: the local default is a ``spawn``
process pool whose workers load the model once (initializer); a Dask
``distributed`` client's executor fits the same seam because ``run_chunk``
loads the model lazily on whatever process runs it.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from . import mp4
from .cache import CacheConfig
from .errors import FormcheckError, WorkerError
from .infer import ChunkJob, ChunkResult, InferOptions, libc, run_chunk, warm
from .records import VideoInfo

Progress = Callable[[int, int], None]  # (frames done, frames total)

MIN_CHUNK = 45  # analyzed frames; below this a chunk's lead-in costs more than it saves
LEAD_S = 0.5  # seconds decoded before a chunk's first frame so tracking has re-acquired
# a frame decoded on a seek's way from its keyframe (decode only) costs about this share of an
# analyzed one (decode + inference): 0.9 ms against ~21 ms at 720p here
SEEK_SHARE = 1 / 20
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


def chunk_count(analyzed: int, workers: int) -> int:
    """Chunks for a clip of ``analyzed`` frames: one per worker, each at least ``MIN_CHUNK``
    frames (a clip too short for that gets fewer, down to one). Equal shares on a warm pool
    finish together; every extra chunk would cost another lead-in."""
    return max(1, min(workers, analyzed // MIN_CHUNK))


def plan_chunks(
    info: VideoInfo, stride: int, workers: int, max_side: int, options: InferOptions,
    cache: CacheConfig | None = None,
) -> list[ChunkJob]:
    """Split the clip into chunks on the stride grid; each but the first decodes a lead-in first.

    Every chunk gets the same work: the first one's share is larger by the lead-in the others
    infer before their first frame, and by the frames they decode on the way to it from the
    keyframe before (:func:`pipeline.mp4.keyframes`; SEEK_SHARE of an analyzed frame each). The
    last chunk reads to the real end of the stream (frame counts in headers lie).
    """
    analyzed = math.ceil(info.frames / stride)
    n = chunk_count(analyzed, workers)
    lead_n = math.ceil(LEAD_S * info.fps / stride)  # analyzed frames of lead-in
    lead = lead_n * stride
    keys = mp4.keyframes(info.path) if n > 1 else None
    jobs = []
    cuts = _cuts(analyzed, n, lead_n, stride, keys)
    for i, a in enumerate(cuts):
        b = cuts[i + 1] if i + 1 < len(cuts) else None
        jobs.append(ChunkJob(info.path, a, b, max(0, a - lead), stride, max_side, info.fps, options, cache))
    return jobs


def _cuts(analyzed: int, n: int, lead_n: int, stride: int, keys: np.ndarray | None) -> list[int]:
    """The first source frame of each of n chunks (on the stride grid), equal in work: analyzed
    frames, plus for each chunk but the first its lead-in and SEEK_SHARE per frame decoded from
    the keyframe before the lead-in (none when ``keys`` is None: unknown, or every frame one)."""
    waste = [0.0] * n  # seek cost of each chunk, in analyzed frames
    starts = [0]
    for _ in range(3):  # the seek costs depend on where the cuts fall: settle them
        share = (analyzed + (n - 1) * lead_n + sum(waste)) / n
        starts, at = [0], share
        for k in range(1, n):
            starts.append(min(analyzed - 1, max(starts[-1] + 1, int(round(at)))))
            at += share - lead_n - waste[k]
        waste = [0.0, *(SEEK_SHARE * _decoded_before(max(0, (s - lead_n) * stride), keys) for s in starts[1:])]
    return sorted({s * stride for s in starts})


def _decoded_before(frame: int, keys: np.ndarray | None) -> int:
    """Frames decoded to reach ``frame`` from the keyframe at or before it."""
    if keys is None or len(keys) == 0 or frame <= 0:
        return 0
    i = int(np.searchsorted(keys, frame, side="right")) - 1
    return frame - int(keys[i]) if i >= 0 else frame


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
            frames = (stop - jobs[i].lead_start) / jobs[i].stride
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
