"""Independent pieces of work shared with a helper thread when a core is idle, the caller barely waiting.

The features stage's kernels release the GIL (``nogil``), and so does numpy's FFT, so a long
clip finishes sooner when a second core is free; the answers are the same, since each piece is
a pure function of its inputs (or writes the same values to its own outputs).

- The helper is used only while a core is idle (:func:`spare_core`: fewer runnable threads on
  the machine than cores this process may use). With every core busy (inference workers, other
  jobs), a second thread only competes for a core and for the GIL: a helper descheduled while
  holding the GIL stalls the caller for a time slice, which made two threads up to 1.5x slower
  than one under load.
- The caller takes pieces in turn with the helper; when none is left untaken it waits for the
  ones the helper is still on, at most twice its own time per piece, then computes them itself
  and keeps whichever result comes first: a helper that gets no core after all costs a short
  wait and those pieces done twice. (Not waiting at all redid pieces the helper was merely a
  little slower on: the signals' stage took 2.47 ms at the median on the 18k-frame clip, 2.18
  with the wait.)
- Pieces must not share work through this module themselves (the helper would be busy with the
  outer call): each call site hands over a flat list.
- The helper is started on first use (~0.1 ms, too much to pay per call) and forgotten in a
  forked child, which starts its own. Short inputs stay on the caller's thread.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar, cast

T = TypeVar("T")
R = TypeVar("R")

MIN_FRAMES = 4096  # clips shorter than this are not worth a second thread
HELPER_NAME = "features-helper"
MIN_PATIENCE_S = 0.5e-3  # the least time the caller waits for a piece the helper is on
_TODO, _TAKEN, _DONE = 0, 1, 2


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _loadavg() -> bytes:
    fd = os.open("/proc/loadavg", os.O_RDONLY)  # ~2 us; open() with a Python file object takes twice that
    try:
        return os.read(fd, 256)
    finally:
        os.close(fd)


def _runnable(loadavg: bytes) -> int:
    """The runnable threads in ``/proc/loadavg``'s text (its fourth field: runnable/all)."""
    return int(loadavg.split()[3].split(b"/")[0])


def spare_core() -> bool:
    """True when a core is idle right now: the machine's runnable threads (this one included) are
    fewer than the cores this process may run on. Without ``/proc`` (not Linux) or an unreadable
    one, whether there are two cores at all."""
    cpus = _usable_cpus()
    if cpus < 2:
        return False
    try:
        return _runnable(_loadavg()) < cpus
    except (OSError, ValueError, IndexError):
        return True


class _Job(Generic[T, R]):
    """fn over items: each item taken by whichever thread asks next, its first result kept."""

    def __init__(self, fn: Callable[[T], R], items: Sequence[T]) -> None:
        self.fn, self.items = fn, items
        self.out: list[R | None] = [None] * len(items)
        self.state = [_TODO] * len(items)
        self.ended = [threading.Event() for _ in items]  # done, or failed on the helper
        self.lock = threading.Lock()

    def _take(self) -> int:
        with self.lock:
            for i, s in enumerate(self.state):
                if s == _TODO:
                    self.state[i] = _TAKEN
                    return i
        return -1

    def _keep(self, i: int, result: R) -> None:
        with self.lock:
            if self.state[i] != _DONE:
                self.out[i], self.state[i] = result, _DONE
        self.ended[i].set()

    def help(self) -> None:
        """The helper: items nobody has taken, until none is left (a failure is left to the caller,
        who does that item again and raises)."""
        while (i := self._take()) >= 0:
            try:
                self._keep(i, self.fn(self.items[i]))
            except BaseException:  # the caller does this item again, and raises
                self.ended[i].set()

    def run(self) -> list[R]:
        """The caller: item 0, then the untaken ones, then any the helper is still on, each waited
        for at most twice the time the caller took per item (pieces are of about equal length:
        a helper that slow got no core) and else done again."""
        t0 = time.perf_counter()
        self._keep(0, self.fn(self.items[0]))
        mine = 1
        while (i := self._take()) >= 0:
            self._keep(i, self.fn(self.items[i]))
            mine += 1
        patience = max(MIN_PATIENCE_S, 2.0 * (time.perf_counter() - t0) / mine)
        for i in range(len(self.items)):
            with self.lock:
                done = self.state[i] == _DONE
            if not done:
                self.ended[i].wait(patience)
                with self.lock:
                    done = self.state[i] == _DONE
            if not done:
                self._keep(i, self.fn(self.items[i]))
        return self.out  # type: ignore[return-value]  # every slot is filled


_lock = threading.Lock()
_jobs: queue.SimpleQueue[_Job[object, object]] | None = None  # the helper's, once started


def _helper() -> queue.SimpleQueue[_Job[object, object]]:
    global _jobs
    with _lock:
        if _jobs is None:
            jobs: queue.SimpleQueue[_Job[object, object]] = queue.SimpleQueue()
            threading.Thread(target=_serve, args=(jobs,), name=HELPER_NAME, daemon=True).start()
            _jobs = jobs
        return _jobs


def _serve(jobs: queue.SimpleQueue[_Job[object, object]]) -> None:
    while True:
        jobs.get().help()


def _forget() -> None:  # in a forked child: the helper thread did not come along
    global _jobs, _lock
    _jobs, _lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget)


def map2(fn: Callable[[T], R], items: Sequence[T], frames: int) -> list[R]:
    """``[fn(x) for x in items]``, the items shared with the helper thread when there are two or
    more, the clip has ``frames`` >= MIN_FRAMES and a core is idle (fn may then run twice on an
    item). The caller starts with item 0, the helper with item 1."""
    if len(items) < 2 or frames < MIN_FRAMES or threading.current_thread().name == HELPER_NAME or not spare_core():
        return [fn(x) for x in items]
    job = _Job(fn, items)
    job.state[0] = _TAKEN  # item 0 is the caller's: the helper starts on the others
    _helper().put(job)  # type: ignore[arg-type]  # the helper only runs it
    return job.run()


class Once(Generic[R]):
    """fn's value, computed by the first thread that asks for it; another asking before it is done
    computes it too (the same answer) rather than wait."""

    def __init__(self, fn: Callable[[], R]) -> None:
        self.fn, self.done, self.value = fn, False, cast(R, None)

    def __call__(self) -> R:
        if not self.done:
            self.value, self.done = self.fn(), True
        return self.value


def call(f: Callable[[], R]) -> R:
    """``f()``: map2 over a list of functions runs each (``map2(call, fns, frames)``)."""
    return f()

