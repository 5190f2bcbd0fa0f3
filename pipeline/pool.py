"""Run inference over a clip on an executor: plan chunks, submit, stitch in order.

The seam is ``concurrent.futures.Executor``: the local default is a ``spawn``
process pool whose workers load the model once (initializer); a Dask
``distributed`` client's executor fits the same seam because ``run_chunk``
loads the model lazily on whatever process runs it.
"""

from __future__ import annotations

import gc
import logging
import math
import multiprocessing as mp
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace

import numpy as np

from .cache import CacheConfig
from .errors import FormcheckError, WorkerError
from .infer import ChunkJob, ChunkResult, InferOptions, libc, run_chunk, warm
from .records import VideoInfo
from .subject import box, switched

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]  # (frames done, frames total)

MIN_CHUNK = 15  # analyzed frames (0.5 s at 30 fps): no chunk is planned shorter
# What a chunk's parts cost a worker on a busy core, as measured on the dev clips (2-vCPU VM,
# 2026-12-06; the machine's speed moved 1.7x between days, their ratios much less): inferring one
# analyzed frame; decoding one frame, per megapixel and per kilobyte of the clip's mean frame (every
# frame of the stretch is decoded, the stride's skipped ones too; 0.9-3.3 ms a frame on the dev
# clips, by bitrate more than by size); a later chunk's start: opening the file and decoding from the
# keyframe before its first frame (the seek; SEEK_S when the keyframes are unknown), and the anchor
# (frame 0 decoded, detected on, then the steered detection). The plan balances their sums.
INFER_S, DECODE_MPIX_S, DECODE_KB_S = 0.011, 0.0008, 0.00013
OPEN_S, SEEK_S, ANCHOR_S = 0.01, 0.1, 0.07
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


def chunk_count(analyzed: int, workers: int) -> int:
    """The most chunks a clip of ``analyzed`` frames is cut into: one per worker, each at least
    ``MIN_CHUNK`` frames (a clip too short for that gets fewer, down to one). :func:`plan_chunks`
    takes fewer still where a later chunk's start would cost more than its share saves."""
    return max(1, min(workers, analyzed // MIN_CHUNK))


def plan_chunks(
    info: VideoInfo, stride: int, workers: int, max_side: int, options: InferOptions,
    cache: CacheConfig | None = None, keys: np.ndarray | None = None,
) -> list[ChunkJob]:
    """Split the clip into chunks on the stride grid that should take equally long by the costs
    above: a later chunk's start (its seek to the frame, from the keyframe ``keys`` lists before it,
    and its anchor) is paid with fewer frames; as many chunks as end soonest, up to one per worker.
    The last chunk reads to the real end of the stream (frame counts in headers lie).

    No chunk decodes frames before its own: each tracks from a detection on its first frame,
    steered to where the clip's first frame shows its subject (:attr:`ChunkJob.anchor`), and
    :func:`keep_subject` runs a chunk again when it still found someone else.
    """
    analyzed = math.ceil(info.frames / stride)
    anchor = 0 if options.num_poses == 1 else None  # several people a frame: subject.select picks
    frame_kb = info.size_bytes / 1024 / max(info.frames, 1)
    decode_s = DECODE_MPIX_S * info.width * info.height / 1e6 + DECODE_KB_S * frame_kb
    cost = Costs(stride, decode_s, ANCHOR_S if anchor is not None else 0.0, keys)
    plans = [balance(analyzed, n, cost) for n in range(1, chunk_count(analyzed, workers) + 1)]
    best = min(plans, key=lambda cuts: (cost.worst(cuts, analyzed), len(cuts)))  # ties: fewer chunks
    n, cuts = len(best), [stride * a for a in best]
    return [ChunkJob(info.path, a, cuts[i + 1] if i + 1 < n else None, stride, max_side, info.fps, options, cache,
                     anchor=anchor if a else None)
            for i, a in enumerate(cuts)]


@dataclass(frozen=True)
class Costs:
    """What a chunk costs (seconds, the constants above) by where it starts and how long it runs."""

    stride: int
    decode_s: float  # one frame of this clip
    anchor_s: float
    keys: np.ndarray | None  # keyframes (frame numbers, ascending, from 0), None: unknown

    def start(self, first: np.ndarray) -> np.ndarray:
        """What starting at analyzed frame ``first`` costs beyond the first chunk's start."""
        frame = first * self.stride
        if self.keys is None:
            seek = np.full(frame.shape, SEEK_S)
        else:
            seek = (frame - self.keys[np.searchsorted(self.keys, frame, "right") - 1]) * self.decode_s
        return np.where(first > 0, OPEN_S + self.anchor_s + seek, 0.0)

    def frames(self, count: np.ndarray) -> np.ndarray:
        """What ``count`` analyzed frames cost (with the stride's frames decoded between them)."""
        return count * (INFER_S + self.stride * self.decode_s)

    def worst(self, cuts: list[int], analyzed: int) -> float:
        """The costliest chunk's cost when chunks start at ``cuts`` (analyzed frames)."""
        first, ends = np.array(cuts), np.array([*cuts[1:], analyzed])
        return float(np.max(self.start(first) + self.frames(ends - first)))


def balance(analyzed: int, n: int, cost: Costs) -> list[int]:
    """Where n chunks of ``analyzed`` frames start (in analyzed frames) so that the costliest one
    costs least, every chunk keeping at least half an equal share.

    A chunk's cost grows with its end and falls with a later start (a seek decodes fewer frames
    than the chunk would infer), so filling each chunk in turn up to a budget and searching the
    least budget that leaves the last chunk within it is optimal (the linear partition argument).
    """
    least = max(1, math.ceil(analyzed / n / 2))
    per = float(cost.frames(np.array(1)))

    def fill(budget: float) -> list[int]:
        cuts = [0]
        for k in range(n - 1):
            room = (budget - float(cost.start(np.array(cuts[-1])))) / per
            cuts.append(cuts[-1] + min(max(least, math.floor(room + 1e-9)), analyzed - cuts[-1] - least * (n - 1 - k)))
        return cuts

    def fits(budget: float) -> bool:
        last = fill(budget)[-1]
        return float(cost.start(np.array(last)) + cost.frames(np.array(analyzed - last))) <= budget

    lo, hi = 0.0, float(np.max(cost.start(np.arange(1, analyzed + 1)), initial=0.0) + cost.frames(np.array(analyzed)))
    for _ in range(60):  # to well under a frame's cost
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
    return fill(hi)


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
