"""Independent pieces of work shared with a helper thread, the caller never waiting for it.

The features stage's kernels release the GIL (``nogil``), and so does numpy's FFT, so on a
machine with a free second core long clips finish sooner; the answers are the same, since
each piece is a pure function of its inputs (or writes the same values to its own outputs).
The caller takes pieces in turn with the helper; when none is left untaken it computes the
ones the helper is still on itself and keeps whichever result comes first, so a helper that
gets no core (another process, another caller's work) costs at most one piece done twice,
never a wait. The helper is started on first use (~0.1 ms, too much to pay per call) and
forgotten in a forked child, which starts its own. Short inputs stay on the caller's thread.
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
_TODO, _TAKEN, _DONE = 0, 1, 2


class _Job(Generic[T, R]):
    """fn over items: each item taken by whichever thread asks next, its first result kept."""

    def __init__(self, fn: Callable[[T], R], items: Sequence[T]) -> None:
        self.fn, self.items = fn, items
        self.out: list[R | None] = [None] * len(items)
        self.state = [_TODO] * len(items)
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

    def help(self) -> None:
        """The helper: items nobody has taken, until none is left (a failure is left to the caller,
        who does that item again and raises)."""
        while (i := self._take()) >= 0:
            try:
                self._keep(i, self.fn(self.items[i]))
            except BaseException:  # the caller does this item again, and raises
                continue

    def run(self) -> list[R]:
        """The caller: item 0, then the untaken ones, then any the helper is still on."""
        self._keep(0, self.fn(self.items[0]))
        while (i := self._take()) >= 0:
            self._keep(i, self.fn(self.items[i]))
        for i in range(len(self.items)):
            with self.lock:
                pending = self.state[i] != _DONE
            if pending:
                self._keep(i, self.fn(self.items[i]))
        return self.out  # type: ignore[return-value]  # every slot is filled


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
        jobs.get().help()


def _forget() -> None:  # in a forked child: the helper thread did not come along
    global _jobs, _lock
    _jobs, _lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget)


def map2(fn: Callable[[T], R], items: Sequence[T], frames: int) -> list[R]:
    """``[fn(x) for x in items]``, the items shared with the helper thread when there are two or
    more and the clip has ``frames`` >= MIN_FRAMES (fn may then run twice on an item)."""
    if len(items) < 2 or frames < MIN_FRAMES:
        return [fn(x) for x in items]
    job = _Job(fn, items)
    job.state[0] = _TAKEN  # item 0 is the caller's: the helper starts on the others
    _helper().put(job)  # type: ignore[arg-type]  # the helper only runs it
    return job.run()


def both(first: Callable[[], A], second: Callable[[], B], frames: int) -> tuple[A, B]:
    """``(first(), second())``, second on the helper thread when the clip has ``frames`` >= MIN_FRAMES."""
    done = map2(lambda f: f(), [first, second], frames)
    return done[0], done[1]  # type: ignore[return-value]  # map2 keeps the order
