"""pipeline.parallel: pieces shared with a helper thread while a core is idle, the caller never waiting."""

from __future__ import annotations

import multiprocessing
import threading
import time

import pytest

from pipeline import parallel

N = parallel.MIN_FRAMES


@pytest.fixture
def idle_core(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a machine with a core to spare, whatever else runs beside the tests."""
    monkeypatch.setattr(parallel, "spare_core", lambda: True)


def _slow_piece(x: int) -> tuple[int, str]:
    time.sleep(0.02)  # long enough for the helper to take pieces
    return x, threading.current_thread().name


def test_map2_keeps_order_and_raises(idle_core: None) -> None:
    assert parallel.map2(lambda x: x * x, list(range(9)), N) == [x * x for x in range(9)]
    assert parallel.map2(parallel.call, [lambda: "a", lambda: 2], N) == ["a", 2]

    def boom(x: int) -> int:
        if x == 5:
            raise ValueError("five")
        return x

    with pytest.raises(ValueError, match="five"):
        parallel.map2(boom, list(range(8)), N)


def test_the_helper_takes_pieces_while_a_core_is_idle(idle_core: None) -> None:
    out = parallel.map2(_slow_piece, list(range(6)), N)
    assert [x for x, _ in out] == list(range(6))
    threads = {name for _, name in out}
    assert threads == {threading.current_thread().name, parallel.HELPER_NAME}


@pytest.mark.parametrize("frames, spare", [(N - 1, True), (N, False)])
def test_short_clips_and_busy_machines_stay_on_the_callers_thread(
    frames: int, spare: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parallel, "spare_core", lambda: spare)
    out = parallel.map2(_slow_piece, list(range(4)), frames)
    assert {name for _, name in out} == {threading.current_thread().name}


def test_the_helper_shares_no_pieces_of_its_own(idle_core: None) -> None:
    """A piece that calls map2 on the helper's thread runs its items there, in order."""
    out = parallel.map2(lambda _: parallel.map2(_slow_piece, [0, 1, 2], N), [0, 1], N)
    for inner in out:
        assert [x for x, _ in inner] == [0, 1, 2] and len({name for _, name in inner}) == 1


def test_a_helper_with_no_core_costs_a_short_wait(idle_core: None) -> None:
    """A piece the helper is stuck on is done again by the caller after a short wait, its result kept."""

    def piece(x: int) -> tuple[int, str]:
        if threading.current_thread().name == parallel.HELPER_NAME:
            time.sleep(1.0)  # no core for the helper after all
        return x, threading.current_thread().name

    t0 = time.perf_counter()
    out = parallel.map2(piece, [0, 1, 2], N)
    assert time.perf_counter() - t0 < 0.5
    assert [x for x, _ in out] == [0, 1, 2] and {name for _, name in out} == {threading.current_thread().name}


def test_a_helper_a_little_slower_is_waited_for(idle_core: None) -> None:
    """The caller waits for a piece the helper is on (up to twice its own time per piece) rather than
    doing it again: each piece runs once."""
    calls: list[int] = []

    def piece(x: int) -> tuple[int, str]:
        calls.append(x)
        time.sleep(0.06 if threading.current_thread().name == parallel.HELPER_NAME else 0.04)
        return x, threading.current_thread().name

    out = parallel.map2(piece, [0, 1], N)
    assert out == [(0, threading.current_thread().name), (1, parallel.HELPER_NAME)]
    assert sorted(calls) == [0, 1]


def test_a_piece_failing_on_the_helper_is_raised_by_the_caller_at_once(idle_core: None) -> None:
    def piece(x: int) -> int:
        if x == 1:
            time.sleep(0.01)
            raise ValueError("one")
        time.sleep(0.03)
        return x

    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="one"):
        parallel.map2(piece, [0, 1], N)
    assert time.perf_counter() - t0 < 0.06  # no wait for the patience to run out


def test_map2_in_a_forked_child(idle_core: None) -> None:
    """The helper thread does not survive a fork: the child starts its own."""
    parallel.map2(abs, [-1, -2], N)  # the parent's helper is running
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.apply(_squares_in_two, (6,)) == [x * x for x in range(6)]


def _squares_in_two(k: int) -> list[int]:
    parallel.spare_core = lambda: True  # type: ignore[assignment]  # the child's own module state
    return parallel.map2(lambda x: x * x, list(range(k)), N)


@pytest.mark.parametrize("text, cpus, spare", [
    (b"0.50 0.40 0.30 1/234 5678\n", 2, True),  # only this thread runs
    (b"2.10 1.90 1.70 3/240 5678\n", 2, False),  # two inference workers and this thread
    (b"0.00 0.00 0.00 2/99 1\n", 2, False),
    (b"0.00 0.00 0.00 1/99 1\n", 1, False),  # one core: nothing to spare
    (b"garbage", 2, True),  # unreadable: whether there are two cores
])
def test_spare_core_reads_the_runnable_threads(text: bytes, cpus: int, spare: bool,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "_usable_cpus", lambda: cpus)
    monkeypatch.setattr(parallel, "_loadavg", lambda: text)
    assert parallel.spare_core() is spare


def test_spare_core_on_this_machine() -> None:
    """A real read of /proc/loadavg: this test's thread is runnable, so one core never has a spare."""
    assert isinstance(parallel.spare_core(), bool)
    assert parallel._runnable(parallel._loadavg()) >= 1
