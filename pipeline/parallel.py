"""Independent pieces of work on two threads: the caller's and one helper thread.

The features stage's kernels release the GIL (``nogil``), and so does numpy's FFT, so on a
machine with a free second core long clips finish sooner; the answers are the same, since
each piece writes only its own outputs. The caller takes pieces too, so a busy helper (another
caller's work, or no free core) only means the caller does more itself. The helper is started
on first use (starting a thread costs ~0.1 ms, too much to pay per call) and forgotten in a
forked child, which starts its own. Short inputs stay on the caller's thread.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")
A = TypeVar("A")
B = TypeVar("B")

MIN_FRAMES = 4096  # clips shorter than this are not worth a second thread


class _Job(Generic[T, R]):
    """fn over items, each item taken by whichever thread asks next."""

    def __init__(self, fn: Callable[[T], R], items: Sequence[T]) -> None:
        self.fn, self.items = fn, items
        self.out: list[R | None] = [None] * len(items)
        self.failed: list[BaseException] = []
        self.next = 0
        self.busy = 0  # items being worked on
        self.cond = threading.Condition()

    def _take(self) -> int:
        with self.cond:
            if self.failed or self.next >= len(self.items):
                return -1
            self.next += 1
            self.busy += 1
            return self.next - 1

    def run(self, first: bool = False) -> None:
        """Work on items until none is left (``first``: the caller's, item 0 was kept for it)."""
        i = 0 if first else self._take()
        while i >= 0:
            try:
                self.out[i] = self.fn(self.items[i])
            except BaseException as exc:  # re-raised on the caller's thread
                with self.cond:
                    self.failed.append(exc)
            finally:
                with self.cond:
                    self.busy -= 1
                    self.cond.notify_all()
            i = self._take()

    def wait(self) -> None:
        """Until no item is being worked on (the caller has run out of items to take)."""
        with self.cond:
            while self.busy:
                self.cond.wait()


_lock = threading.Lock()
_jobs: queue.SimpleQueue[_Job[object, object]] | None = None  # the helper's, once started


def _helper() -> queue.SimpleQueue[_Job[object, object]]:
    global _jobs
    with _lock:
        if _jobs is None:
            jobs: queue.SimpleQueue[_Job[object, object]] = queue.SimpleQueue()
            threading.Thread(target=_serve, args=(jobs,), name="features-helper", daemon=True).start()
            _jobs = jobs
        return _jobs


def _serve(jobs: queue.SimpleQueue[_Job[object, object]]) -> None:
    while True:
        jobs.get().run()


def _forget() -> None:  # in a forked child: the helper thread did not come along
    global _jobs, _lock
    _jobs, _lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget)


def map2(fn: Callable[[T], R], items: Sequence[T], frames: int) -> list[R]:
    """``[fn(x) for x in items]``, the items shared with the helper thread when there are two or
    more and the clip has ``frames`` >= MIN_FRAMES."""
    if len(items) < 2 or frames < MIN_FRAMES:
        return [fn(x) for x in items]
    job = _Job(fn, items)
    job.next = job.busy = 1  # item 0 is the caller's: the helper starts on the others
    _helper().put(job)  # type: ignore[arg-type]  # the helper only runs it
    job.run(first=True)
    job.wait()
    if job.failed:
        raise job.failed[0]
    return job.out  # type: ignore[return-value]  # every slot was filled


def both(first: Callable[[], A], second: Callable[[], B], frames: int) -> tuple[A, B]:
    """``(first(), second())``, either on the helper thread when the clip has ``frames`` >= MIN_FRAMES."""
    done = map2(lambda f: f(), [first, second], frames)
    return done[0], done[1]  # type: ignore[return-value]  # map2 keeps the order
