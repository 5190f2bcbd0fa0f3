"""Independent pieces of work on two threads: the caller's and a short-lived second one.

The features stage's kernels release the GIL (``nogil``), and so does numpy's FFT, so on a
machine with a free second core long clips finish sooner; the answers are the same, since
each piece writes only its own outputs. No thread outlives the call (nothing to go wrong
in a forked child), and short inputs stay on the caller's thread: a thread costs ~0.1 ms.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")
A = TypeVar("A")
B = TypeVar("B")

MIN_FRAMES = 4096  # clips shorter than this are not worth a second thread


def map2(fn: Callable[[T], R], items: Sequence[T], frames: int) -> list[R]:
    """``[fn(x) for x in items]``, the items shared between two threads (each takes the next one
    not yet taken) when there are two or more and the clip has ``frames`` >= MIN_FRAMES."""
    if len(items) < 2 or frames < MIN_FRAMES:
        return [fn(x) for x in items]
    out: list[R | None] = [None] * len(items)
    failed: list[BaseException] = []
    lock = threading.Lock()
    nxt = [0]

    def work() -> None:
        while not failed:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= len(items):
                return
            try:
                out[i] = fn(items[i])
            except BaseException as exc:  # re-raised on the caller's thread
                failed.append(exc)

    helper = threading.Thread(target=work, name="features", daemon=True)
    helper.start()
    try:
        work()
    finally:
        helper.join()
    if failed:
        raise failed[0]
    return out  # type: ignore[return-value]  # every slot was filled


def both(first: Callable[[], A], second: Callable[[], B], frames: int) -> tuple[A, B]:
    """``(first(), second())``, second on the second thread (the clip has ``frames`` >= MIN_FRAMES)."""
    done = map2(lambda f: f(), [first, second], frames)
    return done[0], done[1]  # type: ignore[return-value]  # map2 keeps the order
