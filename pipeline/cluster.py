"""Dask ``distributed`` behind the executor seam: the same ``submit(fn, job)`` as the local pool.

:class:`ClusterExecutor` is a ``concurrent.futures.Executor`` over a Dask client. It makes a
job runnable on a worker that shares no disk with this machine:

- the clip: a job whose ``path`` is a file here has the file's bytes scattered to the cluster
  once per clip (Dask copies them to each worker that needs them, once), and the worker writes
  them to its own temporary directory under the same name before running the job;
- the model: :class:`ModelPlugin` carries the model bundle's bytes to every worker, present
  and future, which writes it once, loads it and runs it on a blank frame (warm) at start;
  jobs whose ``options.model_path`` names that bundle are pointed at the worker's copy.

Nothing here decodes frames in the client: workers decode their own chunk, as in the local
pool, and return the same landmark arrays. A worker that dies mid-task is Dask's to handle
(the task is rescheduled on another worker; after ``distributed.scheduler.allowed-failures``
deaths it fails with ``KilledWorker``, which the caller sees as a :class:`WorkerError`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any, TypeVar

import xxhash
from distributed import Client
from distributed.diagnostics.plugin import WorkerPlugin

from .errors import ClusterError, FormcheckError, ModelError, WorkerError
from .infer import ChunkJob, InferOptions, undo_malloc_trim, warm

T = TypeVar("T")
log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
WORKER_DIR = "formcheck-worker"  # under the worker's temporary directory
LOST_ATTEMPTS = 3  # submissions of a task whose scattered input the cluster lost
SCHEMES = ("tcp://", "tls://", "inproc://", "ucx://", "ws://", "wss://")

_MODELS: dict[str, str] = {}  # in a worker: the client's model path -> this worker's copy
_WRITE_LOCK = threading.Lock()


def check_address(address: str) -> str:
    """The scheduler address, or :class:`ClusterError` saying what was expected."""
    address = address.strip()
    if not address.startswith(SCHEMES) or len(address.split("://", 1)[1]) == 0:
        raise ClusterError(f"expected a Dask scheduler address like tcp://HOST:8786, got {address!r}")
    return address


def connect(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> Client:
    """A ``distributed.Client`` on the scheduler at ``address`` (it is not made the default)."""
    address = check_address(address)
    try:
        return Client(address, timeout=timeout_s, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(
            f"could not reach the Dask scheduler at {address} within {timeout_s:.0f} s ({exc}); expected a "
            "running `dask scheduler` there (see DEVELOPERS.md, 'Running on a Dask cluster')"
        ) from None


def wait_for_workers(client: Any, n: int = 1, timeout_s: float = 60.0) -> int:
    """Block until ``n`` workers have joined; return how many there are."""
    try:
        client.wait_for_workers(n, timeout=timeout_s)
    except TimeoutError:
        have = len(client.scheduler_info(n_workers=-1)["workers"])
        raise ClusterError(
            f"the Dask scheduler at {client.scheduler.address} has {have} worker(s) after {timeout_s:.0f} s; "
            f"expected at least {n} (start some with `dask worker {client.scheduler.address}`)"
        ) from None
    return worker_count(client)


def worker_count(client: Any) -> int:
    return len(client.scheduler_info(n_workers=-1)["workers"])


def _worker_dir() -> Path:
    d = Path(tempfile.gettempdir()) / f"{WORKER_DIR}-{os.getuid()}"
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    return d


def materialize(data: bytes, digest: str, name: str) -> Path:
    """Write ``data`` once per worker machine as ``<tmp>/formcheck-worker-UID/<digest>/<name>``."""
    folder = _worker_dir() / digest
    path = folder / (os.path.basename(name) or "input")
    with _WRITE_LOCK:
        if path.is_file() and path.stat().st_size == len(data):
            return path
        folder.mkdir(exist_ok=True)
        tmp = folder / f".{path.name}.{os.getpid()}.part"
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return path


def forget(digest: str) -> None:
    """Delete a materialized clip (best effort: another task on this machine may still hold it)."""
    folder = _worker_dir() / digest
    for f in folder.glob("*"):
        f.unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:
        pass


def local_model(options: InferOptions) -> InferOptions:
    """``options`` pointed at this worker's copy of the model (shipped by :class:`ModelPlugin`)."""
    here = _MODELS.get(options.model_path)
    if here is not None:
        return dataclasses.replace(options, model_path=here)
    if os.path.isfile(options.model_path):  # same machine, or a shared file system
        return options
    raise ModelError(
        f"model {options.model_path} is not on this Dask worker and was not shipped to it: expected the "
        "client to register formcheck's ModelPlugin before submitting work"
    )


def _localized(job: Any) -> Any:
    options = getattr(job, "options", None)
    if isinstance(options, InferOptions):
        job = dataclasses.replace(job, options=local_model(options))
    return job


def run_remote(fn: Callable[[Any], T], job: Any, data: bytes | None, digest: str) -> T:
    """On a worker: put the shipped clip and model in place, then run ``fn(job)``. Errors name
    the client's file, not the worker's copy."""
    if data is None:
        return fn(_localized(job))
    here = str(materialize(data, digest, os.path.basename(job.path)))
    try:
        return fn(_localized(dataclasses.replace(job, path=here)))
    except FormcheckError as exc:
        if here not in str(exc):
            raise
        raise type(exc)(str(exc).replace(here, job.path)) from None


class ModelPlugin(WorkerPlugin):
    """On every worker (present and future): write the model bundle once, load it and warm it."""

    def __init__(self, options: InferOptions, bundle: bytes) -> None:
        self.options, self.bundle = options, bundle
        self.name = f"formcheck-model-{options.model_id[:16] or xxhash.xxh3_64_hexdigest(bundle)}"

    def setup(self, worker: Any = None) -> None:
        undo_malloc_trim()  # the nanny started this worker with MALLOC_TRIM_THRESHOLD_ set
        digest = self.options.model_id or xxhash.xxh3_128_hexdigest(self.bundle)
        here = materialize(self.bundle, f"model-{digest}", os.path.basename(self.options.model_path))
        _MODELS[self.options.model_path] = str(here)
        # Only the model: the features stage (numba and LLVM, ~85 MB resident) loads with the first
        # whole-file task (`formcheck batch`), ~0.5 s once per worker; chunk-only workers never hold it.
        warm(dataclasses.replace(self.options, model_path=str(here)))

    def teardown(self, worker: Any = None) -> None:
        _MODELS.pop(self.options.model_path, None)


def register_model(client: Any, options: InferOptions) -> None:
    """Ship ``options``' model bundle to every worker (those that join later too) and warm it."""
    client.register_plugin(ModelPlugin(options, Path(options.model_path).read_bytes()))


@dataclasses.dataclass
class _Clip:
    future: Any  # the scattered bytes on the cluster
    digest: str
    users: int = 0


class ClusterExecutor(Executor):
    """``submit(fn, job)`` on a Dask cluster, shipping ``job.path``'s bytes (once per clip) and
    pointing ``job.options`` at the worker's copy of the model.

    A scattered clip is released once the last job that uses it is done."""

    def __init__(self, client: Any, options: InferOptions | None = None) -> None:
        self.client = client
        self._lock = threading.Lock()
        self._clips: dict[tuple[str, int, int], _Clip] = {}
        self._closed = False
        if options is not None:
            register_model(client, options)

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        if self._closed:
            raise RuntimeError("cannot submit to a ClusterExecutor after shutdown")
        out: Future[T] = Future()
        job = args[0] if len(args) == 1 and not kwargs else None
        path = getattr(job, "path", None)
        shipped = path if isinstance(path, str) and os.path.isfile(path) else None
        self._attempt(out, fn, args, kwargs, shipped, 1)
        return out

    def _attempt(
        self, out: Future[Any], fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
        path: str | None, attempt: int,
    ) -> None:
        """Submit once; when the cluster loses the task's input (the worker holding the scattered
        clip died), ship the clip again and resubmit, up to ``LOST_ATTEMPTS`` times."""
        # chunks of one clip go to every worker (each decodes its own): the bytes to all of them,
        # else the scheduler keeps the tasks next to the one copy and the chunks run in turn
        clip = self._ship(path, isinstance(args[0], ChunkJob)) if path is not None else None
        if clip is not None:
            fut = self.client.submit(run_remote, fn, args[0], clip.future, clip.digest, pure=False)
        elif len(args) == 1 and not kwargs:
            fut = self.client.submit(run_remote, fn, args[0], None, "", pure=False)
        else:  # not a job: as is
            fut = self.client.submit(fn, *args, pure=False, **kwargs)

        def cancel_remote(f: Future[Any]) -> None:
            if f.cancelled():
                fut.cancel()

        if attempt == 1:
            out.add_done_callback(cancel_remote)

        def settle(f: Any) -> None:
            lost = f.status == "cancelled"
            if clip is not None:
                self._release(clip, lost)
            if out.done():
                return
            if lost and not self._closed and attempt < LOST_ATTEMPTS:
                log.warning("the cluster lost the input of a task on %s (a worker died?): resubmitting (%d of %d)",
                            path, attempt + 1, LOST_ATTEMPTS)
                try:
                    self._attempt(out, fn, args, kwargs, path, attempt + 1)
                except BaseException as exc:  # noqa: BLE001 - handed to the caller's future
                    out.set_exception(exc)
                return
            try:
                if lost:
                    raise WorkerError(f"the Dask cluster lost the task for {path or fn.__name__} {attempt} times "
                                      "(its workers died or left): expected it to finish on a live worker")
                out.set_result(f.result())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's future
                if not out.done():
                    out.set_exception(exc)

        fut.add_done_callback(settle)

    def _ship(self, path: str, broadcast: bool) -> _Clip:
        st = os.stat(path)
        key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
        with self._lock:
            clip = self._clips.get(key)
            if clip is None:
                data = Path(path).read_bytes()
                digest = xxhash.xxh3_128_hexdigest(data)
                clip = _Clip(self._scatter(data, path, broadcast), digest)
                self._clips[key] = clip
            clip.users += 1
            return clip

    def _scatter(self, data: bytes, path: str, broadcast: bool) -> Any:
        """The bytes onto one worker (or all); a worker that dies while receiving them is tried around."""
        for attempt in range(1, LOST_ATTEMPTS + 1):
            try:
                return self.client.scatter(data, hash=False, broadcast=broadcast)
            except OSError as exc:  # CommClosedError: the chosen worker went away
                if attempt == LOST_ATTEMPTS:
                    raise WorkerError(f"could not send {path} to the Dask cluster ({exc}): expected a live "
                                      f"worker to take it, {LOST_ATTEMPTS} tries") from None
                log.warning("sending %s to the cluster failed (%s): trying again", path, exc)
                time.sleep(0.5 * attempt)
        raise AssertionError("unreachable")

    def _release(self, clip: _Clip, lost: bool = False) -> None:
        """One user fewer; the bytes leave the cluster with the last (or at once when lost, so
        the next task ships them again)."""
        with self._lock:
            clip.users -= 1
            if clip.users <= 0 or lost:
                for k, c in list(self._clips.items()):
                    if c is clip:
                        del self._clips[k]
            if clip.users <= 0:
                clip.future.release()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._closed = True
        with self._lock:
            clips, self._clips = list(self._clips.values()), {}
        for c in clips:
            c.future.release()
