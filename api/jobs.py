"""The job runner: claims persisted jobs, runs them on the inference pool, records the outcome.

Nothing here runs CPU work on the event loop: an analysis runs in a thread (the pipeline's
``analyze``, whose inference chunks go to the process pool through the executor seam), and
the loop only claims, renews leases and records results.

A job is claimed with a lease this runner renews while it works; if the process dies, the
lease runs out and any runner (this one after a restart included) claims the job again.
A runner's name says where it runs (``<pid>-<token>@<host>#<node>``, node: this boot and PID
namespace): a runner on the same node sees that a holder's process is gone (killed, crashed)
and ends its lease at once (at start, then every ``sweep_s``), so a restart after a SIGKILL
resumes the job without waiting the lease out. A pool worker that dies mid-job breaks the
pool: the pool is replaced and the job goes back to the queue until it has had ``attempts``
tries, then it fails with the reason. The write that ends a job is retried through a
database blip (a restart, a failover) for as long as the lease would hold the job anyway.
An artifacts folder that cannot be written (disk full, read-only) fails the job, saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config import AnalysisConfig
from pipeline.errors import FormcheckError, WorkerError

from .pools import ClusterHolder, PoolHolder
from .store import Job, Store
from .store.leases import holder_gone, runner_name

log = logging.getLogger(__name__)

ARTIFACTS = ("analysis.json", "angles.csv", "reps.png", "annotated.mp4")


class ArtifactsError(FormcheckError):
    """The artifacts folder cannot take a job's files (disk full, read-only, not a folder)."""


@dataclass
class Live:
    """What a running job reports between lease renewals (read by SSE in this process)."""

    progress: float = 0.0
    phase: str = "analyzing"
    changed: asyncio.Event = field(default_factory=asyncio.Event)


def artifact_dir(root: Path, job: Job) -> Path:
    """Where a job's files go: shared by jobs with the same content and parameters."""
    name = job.result_key.split(":")[-1] if job.result_key else job.id
    return root / name


@dataclass
class Runner:
    store: Store
    pools: PoolHolder | ClusterHolder
    config_for: Callable[[Job], AnalysisConfig]
    artifacts: Path
    attempts: int = 3
    concurrency: int = 2
    lease_s: float = 30.0
    poll_s: float = 0.5
    render_video: bool = True
    sweep_s: float = 10.0  # how often leases held by gone runners on this node are looked for
    name: str = field(default_factory=runner_name)
    live: dict[str, Live] = field(default_factory=dict)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _stopping: bool = False
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _loop_task: asyncio.Task[None] | None = None
    _cancel: dict[str, threading.Event] = field(default_factory=dict)

    def start(self) -> None:
        self._loop_task = asyncio.get_running_loop().create_task(self._claim_loop(), name="formcheck-runner")

    def wake(self) -> None:
        """A job was queued: look now rather than at the next poll."""
        self._wake.set()

    @property
    def running(self) -> int:
        return len(self._tasks)

    async def _claim_loop(self) -> None:
        next_sweep = 0.0
        while not self._stopping:
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + self.sweep_s
                await self._end_gone_leases()
            job = None
            if len(self._tasks) < self.concurrency:
                try:
                    job = await self.store.claim(self.name, time.time(), self.lease_s, self.attempts)
                except Exception:  # a database hiccup must not kill the runner: retry at the next poll
                    log.exception("claiming a job failed")
            if job is not None:
                task = asyncio.get_running_loop().create_task(self._run(job), name=f"job-{job.id}")
                self._tasks.add(task)
                task.add_done_callback(self._done)
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)

    async def _end_gone_leases(self) -> None:
        """Jobs held by a runner of this node whose process is gone become claimable now."""
        try:
            for job_id, runner in await self.store.holders():
                if runner != self.name and holder_gone(runner) and await self.store.expire(job_id, runner,
                                                                                           time.time()):
                    log.warning("the runner holding a job is gone: the job is claimable now",
                                extra={"job": job_id, "runner": runner})
        except Exception:  # a database hiccup: the leases still run out on their own
            log.exception("looking for jobs held by gone runners failed")

    async def _record(self, what: str, job_id: str, write: Callable[[], Awaitable[bool]]) -> bool:
        """A store write that ends a job, retried through a database blip for as long as the lease
        would hold the job anyway (after that another runner may have claimed it)."""
        deadline = time.monotonic() + self.lease_s
        delay = 0.25
        while True:
            try:
                return await write()
            except Exception as exc:
                if time.monotonic() + delay > deadline:
                    log.exception("recording a job %s failed; its lease will run out", what, extra={"job": job_id})
                    return False
                log.warning("recording a job %s failed (%s: %s); retrying in %.2f s", what, type(exc).__name__,
                            exc, delay, extra={"job": job_id})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wake.set()

    async def _run(self, job: Job) -> None:
        live = self.live.setdefault(job.id, Live())
        loop = asyncio.get_running_loop()
        cancel = self._cancel.setdefault(job.id, threading.Event())

        def report(progress: float, phase: str) -> None:  # called from the analysis thread
            def apply() -> None:
                live.progress, live.phase = progress, phase
                live.changed.set()
            loop.call_soon_threadsafe(apply)

        log.info("job started", extra={"job": job.id, "attempt": job.attempts, "runner": self.name})
        beat = loop.create_task(self._renew(job, live))
        try:
            summary = await asyncio.to_thread(self._work, job, report, cancel)
        except asyncio.CancelledError:
            raise
        except _Shutdown:
            await self._record("release", job.id, lambda: self.store.release(job.id, self.name, time.time(),
                                                                             count_attempt=False))
            log.info("job re-queued at shutdown", extra={"job": job.id})
        except WorkerError as exc:
            await self._worker_failed(job, exc)
        except (FormcheckError, OSError) as exc:
            await self._fail(job, str(exc))
            log.info("job failed", extra={"job": job.id, "error": str(exc)})
        except Exception as exc:  # noqa: BLE001 - a job must end in a state, whatever went wrong
            log.exception("job crashed", extra={"job": job.id})
            await self._fail(job, f"unexpected error ({type(exc).__name__}): {exc}")
        else:
            text = json.dumps(summary, allow_nan=False)
            ok = await self._record("result", job.id, lambda: self.store.finish(job.id, self.name, text, time.time()))
            log.info("job done" if ok else "job done but lost its lease", extra={"job": job.id})
        finally:
            beat.cancel()
            live.phase = "ended"
            live.changed.set()
            self.live.pop(job.id, None)
            self._cancel.pop(job.id, None)

    async def _worker_failed(self, job: Job, exc: WorkerError) -> None:
        self.pools.replace_if_broken()
        if job.attempts < self.attempts:
            await self._record("release", job.id, lambda: self.store.release(job.id, self.name, time.time(),
                                                                             count_attempt=True))
            log.warning("job re-queued after a worker failure", extra={"job": job.id, "error": str(exc)})
        else:
            reason = f"gave up after {job.attempts} attempts: {exc}"
            await self._fail(job, reason)
            log.warning("job failed", extra={"job": job.id, "error": reason})

    async def _fail(self, job: Job, reason: str) -> bool:
        return await self._record("failure", job.id, lambda: self.store.fail(job.id, self.name, reason, time.time()))

    async def _renew(self, job: Job, live: Live) -> None:
        while True:
            await asyncio.sleep(min(self.lease_s / 3, 2.0))
            try:
                held = await self.store.renew(job.id, self.name, time.time(), self.lease_s, live.progress, live.phase)
            except Exception:  # keep trying: the lease is long enough to ride out a blip
                log.exception("renewing the lease of job %s failed", job.id)
                continue
            if not held:
                log.warning("lost the lease of job %s", job.id)
                cancel = self._cancel.get(job.id)
                if cancel is not None:
                    cancel.set()
                return

    def _work(self, job: Job, report: Callable[[float, str], None], cancel: threading.Event) -> dict[str, object]:
        """The analysis and its files (in a worker thread)."""
        from pipeline import outputs
        from pipeline.analyze import analyze

        cfg = self.config_for(job)

        def progress(done: int, total: int) -> None:
            if cancel.is_set():
                raise _Shutdown()
            report(0.9 * done / max(total, 1), "analyzing")

        try:
            result = analyze(job.upload_path, cfg, self.pools.executor(), progress)
        except BrokenProcessPool as exc:
            raise WorkerError(f"an inference worker died: {exc}") from exc
        if cancel.is_set():
            raise _Shutdown()
        out = artifact_dir(self.artifacts, job)
        if not (out / ARTIFACTS[-1 if self.render_video else -2]).exists():
            report(0.9, "rendering")
            video_total = max(len(result.pose), 1)

            def video_progress(done: int, total: int) -> None:
                if cancel.is_set():
                    raise _Shutdown()
                report(0.9 + 0.1 * done / max(total, video_total), "rendering")

            self._write_files(out, lambda tmp: outputs.write_all(result, tmp, video_progress,
                                                                 video=self.render_video))
        return result.summary

    def _write_files(self, out: Path, write: Callable[[Path], object]) -> None:
        """``write`` into a temporary folder beside ``out``, then renamed into place; on any failure
        the temporary folder is removed (a full disk is not filled further by a half-written job)."""
        tmp = out.with_name(out.name + f".tmp-{self.name}")
        try:
            shutil.rmtree(tmp, ignore_errors=True)
            write(tmp)
            _room_left(tmp)
            shutil.rmtree(out, ignore_errors=True)
            tmp.rename(out)
        except _Shutdown:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise ArtifactsError(f"could not write the artifacts under {self.artifacts}: {_why(exc, self.artifacts)}"
                                 " (expected a writable folder with free space)") from exc

    def cancel(self, job_id: str) -> None:
        """Stop working on a job (it was deleted)."""
        ev = self._cancel.get(job_id)
        if ev is not None:
            ev.set()

    async def stop(self, grace_s: float) -> None:
        """Claim nothing more; give running jobs ``grace_s`` to finish, then re-queue them."""
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace_s)
        if not pending:
            return
        for job_id in list(self._cancel):  # back to the queue now: a restart resumes them at once
            self._cancel[job_id].set()
            await self.store.release(job_id, self.name, time.time(), count_attempt=False)
            log.info("job re-queued at shutdown", extra={"job": job_id})
        self.pools.close(kill=True)  # the analysis threads wake with a broken pool and end
        await asyncio.wait(pending, timeout=10.0)


def _room_left(folder: Path) -> None:
    """Raise ENOSPC when the file system is full after writing: the video encoder (ffmpeg through a
    pipe) does not report a failed write, it leaves a truncated MP4 (no ``moov`` box) behind."""
    fs = os.statvfs(folder)
    if fs.f_bfree == 0:  # not even the blocks reserved for root: some write came short
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(folder))


def _why(exc: Exception, folder: Path) -> str:
    """The reason a write failed, plainly: the OS error's own words, else (an encoder that reports
    only a broken pipe) what the folder's file system says, else the exception's first line."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    with contextlib.suppress(OSError):
        fs = os.statvfs(folder)
        if fs.f_flag & os.ST_RDONLY:
            return "Read-only file system"
        if fs.f_bavail * fs.f_frsize < 1 << 20:
            return f"No space left on device ({fs.f_bavail * fs.f_frsize} bytes free)"
    first = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {first[0] if first else ''}"


class _Shutdown(Exception):
    """Raised inside the analysis thread to abandon a job that is re-queued."""
