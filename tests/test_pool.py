"""Chunk planning, seeking on variable-rate files, stride caps and failing or hung workers."""

from __future__ import annotations

import gc
import multiprocessing as mp
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from helpers import REPO, events, label, within

from pipeline import decode, plan, pool
from pipeline.cache import CacheConfig
from pipeline.config import AnalysisConfig
from pipeline.errors import WorkerError
from pipeline.infer import ChunkJob, ChunkResult, InferOptions
from pipeline.records import VideoInfo

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


@pytest.fixture(scope="module")
def vfr(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """240 frames: the first 120 at 30 fps, then 1/15 s apart (the header's count and rate are averages)."""
    d = tmp_path_factory.mktemp("vfr")
    base, out = d / "base.mp4", d / "vfr.mp4"
    run = [FFMPEG, "-hide_banner", "-loglevel", "error", "-y"]
    subprocess.run([*run, "-f", "lavfi", "-i", "testsrc=size=160x120:rate=30", "-t", "8", "-c:v", "libx264",
                    "-g", "30", "-pix_fmt", "yuv420p", str(base)], check=True, timeout=60)
    subprocess.run([*run, "-i", str(base), "-vf", "setpts='if(lt(N,120),N/30/TB,(120+(N-120)*2)/30/TB)'",
                    "-fps_mode", "passthrough", "-c:v", "libx264", "-g", "30", "-pix_fmt", "yuv420p", str(out)],
                   check=True, timeout=60)
    return out


def test_keyframes_are_read_from_the_packets(tmp_path: Path) -> None:
    clip = tmp_path / "gop25.mp4"
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25",
                    "-t", "4", "-c:v", "libx264", "-g", "25", "-keyint_min", "25", "-sc_threshold", "0",
                    "-pix_fmt", "yuv420p", str(clip)], check=True, timeout=60)
    keys = decode.keyframes(str(clip))
    assert keys is not None and keys.tolist() == [0, 25, 50, 75]
    (tmp_path / "text.mp4").write_text("not a video")
    assert decode.keyframes(str(tmp_path / "text.mp4")) is None
    assert decode.keyframes(str(tmp_path / "missing.mp4")) is None, "the plan then assumes a typical seek"


def _info(path: Path, frames: int, fps: float) -> VideoInfo:
    return VideoInfo(str(path), frames, fps, 160, 120, 0, path.stat().st_size)


@pytest.mark.parametrize("start", [0, 50, 119, 121, 200])
def test_seeking_a_variable_rate_file_gives_the_same_frames_as_reading_through(vfr: Path, start: int) -> None:
    info = decode.probe(str(vfr))
    full = [(f.index, round(f.t, 4)) for f in decode.iter_frames(str(vfr), fps_hint=info.fps)]
    assert len(full) == 240
    part = [(f.index, round(f.t, 4)) for f in decode.iter_frames(str(vfr), start, start + 20, fps_hint=info.fps)]
    assert part == full[start : start + 20]


@pytest.mark.parametrize(("frames", "stride", "workers"), [
    (900, 1, 2), (900, 2, 2), (901, 3, 2), (100, 1, 4), (50, 2, 2),
])
def test_chunks_tile_the_clip_on_the_stride_grid(frames: int, stride: int, workers: int) -> None:
    info = VideoInfo("x.mp4", frames, 30.0, 64, 64, 0, 1)
    jobs = plan.plan_chunks(info, stride, workers, 0, InferOptions("m"))
    assert jobs[0].start == 0 and jobs[-1].stop is None, "the last chunk reads to the real end"
    for a, b in zip(jobs, jobs[1:], strict=False):
        assert a.stop == b.start
    for j in jobs:
        assert j.start % stride == 0
        assert j.anchor == (0 if j.start else None), "later chunks steer to the first frame's subject"
    assert len(jobs) == plan.chunk_count(-(-frames // stride), workers)
    several = plan.plan_chunks(info, stride, workers, 0, InferOptions("m", num_poses=2))
    assert all(j.anchor is None for j in several), "with several people a frame, subject.select picks"


@pytest.mark.parametrize(("analyzed", "workers", "chunks"), [
    (900, 2, 2), (900, 4, 4), (90, 2, 2), (30, 2, 2), (29, 2, 1), (14, 2, 1), (0, 2, 1), (45, 4, 3), (900, 1, 1),
])
def test_one_chunk_per_worker_when_the_clip_affords_it(analyzed: int, workers: int, chunks: int) -> None:
    assert plan.chunk_count(analyzed, workers) == chunks
    if chunks > 1:
        info = VideoInfo("x.mp4", analyzed, 30.0, 1280, 720, 0, 3000 * analyzed)
        for options, keys in ((InferOptions("m"), None), (InferOptions("m", num_poses=2), None),
                              (InferOptions("m"), np.array([0, 250, 500, 750]))):
            jobs = plan.plan_chunks(info, 1, workers, 0, options, None, keys)
            cost = plan.Costs.of(info, 1, options, keys)
            costs = cost.each([j.start for j in jobs], analyzed).tolist()
            work = [(j.stop or analyzed) - j.start for j in jobs]  # frames each worker infers
            frame = float(cost.frames(np.array(1)))  # whole frames: each cut rounds by less than one
            assert len(jobs) == chunks and max(costs) - min(costs) <= (chunks - 1) * frame, (work, costs)
            assert work[0] > max(work[1:]), "the first chunk, with no seek and no anchor to pay, infers the most"


@pytest.mark.parametrize("keys", [None, [0], [0, 100], [0, 30, 60, 90, 120, 150, 180], [0, 105]])
@pytest.mark.parametrize(("analyzed", "stride", "anchor"), [(210, 1, True), (210, 2, True), (91, 1, False)])
def test_balanced_cut_is_the_best_of_all_cuts(keys: list[int] | None, analyzed: int, stride: int, anchor: bool) -> None:
    cost = plan.Costs(stride, 0.002, plan.ANCHOR_S if anchor else 0.0, None if keys is None else np.array(keys))
    cut = plan.balance(analyzed, 2, cost)[1]
    half = -(-analyzed // 4)  # each chunk keeps at least half an equal share
    best = min(cost.worst([0, c], analyzed) for c in range(half, analyzed - half + 1))
    assert cost.worst([0, cut], analyzed) == best, cut
    assert cut > analyzed / 2, "the second chunk pays for its start with fewer frames"


def test_a_keyframe_before_the_cut_shortens_the_head_start() -> None:
    """Seeking decodes from the keyframe before the cut: far from one (a single keyframe at 0), the
    second chunk starts well past the middle; just after one, near it."""
    far, near = (plan.balance(210, 2, plan.Costs(1, 0.003, plan.ANCHOR_S, np.array(k)))[1] for k in ([0], [0, 100]))
    assert near < far
    assert far - near >= 8, (near, far)  # ~100 frames of decoding (0.3 s) is ~20 frames of work


@pytest.mark.parametrize(("analyzed", "workers", "decode_s", "keys"), [
    (900, 4, 0.001, None), (200, 4, 0.02, [0]), (60, 4, 0.002, [0, 30]), (40, 2, 0.05, [0]),
])
def test_plan_takes_as_many_chunks_as_end_soonest(analyzed: int, workers: int, decode_s: float,
                                                  keys: list[int] | None) -> None:
    frame_mb = (decode_s - plan.DECODE_KB_S * 1.0) / plan.DECODE_MPIX_S  # 1 KB frames of this many megapixels
    info = VideoInfo("x.mp4", analyzed, 30.0, int(frame_mb * 1e6), 1, 0, 1024 * analyzed)
    cost = plan.Costs.of(info, 1, InferOptions("m"), None if keys is None else np.array(keys))
    assert cost.decode_s == pytest.approx(decode_s, rel=1e-5)
    worst = {n: cost.worst(plan.balance(analyzed, n, cost), analyzed)
             for n in range(1, plan.chunk_count(analyzed, workers) + 1)}
    jobs = plan.plan_chunks(info, 1, workers, 0, InferOptions("m"), None, cost.keys)
    assert cost.worst([j.start for j in jobs], analyzed) == pytest.approx(min(worst.values())), worst
    assert len(jobs) == min(n for n, w in worst.items() if w == min(worst.values())), "ties go to fewer chunks"


def test_chunk_cuts_keep_half_a_share_and_tile_the_clip() -> None:
    for analyzed, n in ((900, 3), (90, 2), (91, 2), (135, 3)):
        cuts = plan.balance(analyzed, n, plan.Costs(1, 0.0, 100.0, None))  # a start dearer than the clip
        ends = [*cuts[1:], analyzed]
        assert cuts[0] == 0 and all(b - a >= analyzed / n / 2 for a, b in zip(cuts, ends, strict=True)), cuts


@pytest.mark.parametrize(("clip_fps", "target", "stride"), [
    (29.97, 15, 2), (30, 15, 2), (29.29, 15, 2), (24, 15, 2), (22, 15, 1), (30, 20, 2), (30, 30, 1),
    (60, 24, 3), (60, 15, 4), (24, 30, 1), (30, 0, 1), (30, 10, 3), (120, 15, 8), (float("nan"), 15, 1),
])
def test_fps_option_picks_the_nearest_stride(tmp_path: Path, clip_fps: float, target: float, stride: int) -> None:
    cfg = AnalysisConfig(model_cache=tmp_path, fps=target)
    assert cfg.stride(clip_fps) == stride
    if target and clip_fps == clip_fps:
        rate = clip_fps / cfg.stride(clip_fps)
        assert min(target, clip_fps) * 2 / 3 <= rate <= max(target * 2, clip_fps)


def _job(path: str = "x.mp4") -> ChunkJob:
    return ChunkJob(path, 0, None, 1, 0, 30.0, InferOptions("m"))


def test_an_unexpected_worker_exception_is_a_worker_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(job: ChunkJob) -> None:
        raise RuntimeError("mediapipe graph failed")

    monkeypatch.setattr(pool, "run_chunk", boom)
    with ThreadPoolExecutor(1) as ex, pytest.raises(WorkerError, match="RuntimeError: mediapipe graph failed"):
        pool.run_chunks([_job()], ex, 10)


def test_terminate_stops_a_busy_pool_at_once() -> None:
    ex = ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"))
    fut = ex.submit(time.sleep, 60)
    while not fut.running():
        time.sleep(0.05)
    procs = list(ex._processes.values())  # noqa: SLF001 - checking the kill
    t0 = time.perf_counter()
    pool.terminate(ex)
    while any(p.is_alive() for p in procs) and time.perf_counter() - t0 < 10:
        time.sleep(0.05)  # the pool's own thread may reap the process: poll, don't join
    assert time.perf_counter() - t0 < 5, "a busy worker was killed, not waited for"
    assert all(p.exitcode is not None and p.exitcode < 0 for p in procs), procs


def test_workers_freeze_their_warm_heap() -> None:
    """A worker's warm heap (modules, model) is frozen: full collections walk only what came later."""
    ex = pool.make_pool(1, InferOptions("/nonexistent.task"))  # warm logs the missing model; the heap settles
    try:
        assert ex.submit(gc.get_freeze_count).result(timeout=120) > 10_000
    finally:
        ex.shutdown()
    before = gc.get_freeze_count()
    pool.settle_heap()
    try:
        assert gc.get_freeze_count() > before
    finally:
        gc.unfreeze()


ORPHAN_PARENT = """
import sys, time
from pipeline import pool
from pipeline.infer import InferOptions
ex = pool.make_pool(2, InferOptions("/nonexistent.task"))  # warm logs the missing model and lives on
pool.prestart(ex, 2)
pids = [f.result(timeout=120) for f in [ex.submit(__import__("os").getpid) for _ in range(4)]]
print(" ".join(map(str, sorted(set(pids)))), flush=True)
time.sleep(600)
"""


def test_pool_workers_leave_when_their_parent_is_killed() -> None:
    import os
    import signal
    import sys

    parent = subprocess.Popen([sys.executable, "-c", ORPHAN_PARENT], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[1])
    try:
        assert parent.stdout is not None
        workers = [int(p) for p in parent.stdout.readline().split()]
        assert workers and parent.pid not in workers
        assert all(Path(f"/proc/{w}").exists() for w in workers)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        parent.stdout.close()  # type: ignore[union-attr]
    deadline = time.time() + 15
    alive = workers
    while alive and time.time() < deadline:
        time.sleep(0.2)
        alive = [w for w in workers if Path(f"/proc/{w}").exists() and "Z" not in _state(w)]
    for w in alive:  # don't leave them behind even when the test fails
        os.kill(w, signal.SIGKILL)
    assert not alive, f"pool workers {alive} outlived their killed parent"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1]
    except (OSError, IndexError):
        return "Z"


def test_dask_malloc_trim_setting_is_undone_in_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dask's nanny sets MALLOC_TRIM_THRESHOLD_ (every frame buffer then mmapped and unmapped):
    formcheck's worker plugin sets fixed thresholds back."""
    import ctypes

    from pipeline import infer

    calls: list[tuple[int, int]] = []

    class FakeLibc:
        def __init__(self, name: str) -> None:
            pass

        def mallopt(self, param: int, value: int) -> int:
            calls.append((param, value))
            return 1

    monkeypatch.setattr(ctypes, "CDLL", FakeLibc)
    infer.undo_malloc_trim()
    assert calls == [(infer.M_TRIM_THRESHOLD, 128 << 20), (infer.M_MMAP_THRESHOLD, 32 << 20)]
    calls.clear()
    infer.limit_malloc_arenas(2)
    assert calls == [(infer.M_ARENA_MAX, 2)]


_ARENA_PROBE = """
import ctypes, sys, threading
from pipeline import infer
if sys.argv[1] != "default":
    infer.limit_malloc_arenas(int(sys.argv[1]))
barrier = threading.Barrier(8)
def work():
    keep = [bytearray(1 << 16) for _ in range(10)]  # malloc'd while the other threads hold theirs
    barrier.wait()
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
ctypes.CDLL(None).malloc_stats()  # glibc: one 'Arena N:' block per arena, on stderr
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
def test_malloc_arenas_are_limited_for_the_api_process() -> None:
    """Eight threads allocating at once get their own glibc arenas (the API process's RSS crept up
    in a soak); limit_malloc_arenas(2), as ``formcheck serve`` calls it, keeps them to two."""

    def arenas(arg: str) -> int:
        done = subprocess.run([sys.executable, "-c", _ARENA_PROBE, arg], cwd=REPO, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        return sum(1 for line in done.stderr.splitlines() if line.startswith("Arena "))

    assert arenas("default") > 2
    assert arenas("2") == 2
    assert arenas("1") == 1


def _person(x: float) -> np.ndarray:
    """(1, 33, 2): one candidate whose landmarks fill a box 0.4 tall, 0.2 wide, centred at (x, 0.5)."""
    pts = np.stack([np.linspace(x - 0.1, x + 0.1, 33), np.linspace(0.3, 0.7, 33)], axis=1)
    return pts[None].astype(np.float32)


def _tracked(job: ChunkJob, people: dict[int, float]) -> ChunkResult:
    """A fake chunk result: frames start..stop tracking the person at x = people[start], or, when
    steered, the one inside the steer box."""
    frames = np.arange(job.start, job.stop if job.stop is not None else job.start + 10)
    x = (job.steer[0] + job.steer[2]) / 2 if job.steer is not None else people[job.start]
    n = len(frames)
    return ChunkResult(job.start, frames, frames / 30.0, np.repeat(_person(x)[None], n, axis=0),
                       np.ones((n, 1, 33), np.float32), np.zeros((n, 1, 33, 3), np.float32), (640, 480), 0.0, 0)


@pytest.mark.parametrize(("second", "third", "reruns"), [
    (0.3, 0.3, []),  # the same person all through: nothing runs again
    (0.7, 0.3, [10]),  # the second chunk took the other person; the third is right once the second is
    (0.3, 0.7, [20]),
    (0.7, 0.7, [10, 20]),
])
def test_a_chunk_that_tracks_someone_else_runs_again_steered_to_the_previous_chunks_person(
    monkeypatch: pytest.MonkeyPatch, second: float, third: float, reruns: list[int]
) -> None:
    people = {0: 0.3, 10: second, 20: third}
    ran: list[ChunkJob] = []

    def run(job: ChunkJob) -> ChunkResult:
        ran.append(job)
        return _tracked(job, people)

    monkeypatch.setattr(pool, "run_chunk", run)
    cache = CacheConfig(None, memory_bytes=1 << 20)
    jobs = [ChunkJob("x.mp4", a, b, 1, 0, 30.0, InferOptions("m"), cache) for a, b in ((0, 10), (10, 20), (20, None))]
    with ThreadPoolExecutor(2) as ex:
        first = pool.run_chunks(jobs, ex, 30)
        out = pool.keep_subject(jobs, first, ex, 30)
    again = ran[3:]
    assert [j.start for j in again] == reruns
    for j in again:
        assert j.cache is None, "the frame cache holds the other person's landmarks for these frames"
        assert j.steer is not None and j.steer[0] < 0.3 < j.steer[2], "steered to the previous chunk's person"
    centres = [float(np.mean(r.xy[:, 0, :, 0])) for r in out]
    assert centres == pytest.approx([0.3, 0.3, 0.3], abs=1e-6)
    assert [r.start for r in out] == [0, 10, 20]


def test_several_people_per_frame_are_left_to_subject_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[ChunkJob] = []

    def run(job: ChunkJob) -> ChunkResult:
        ran.append(job)
        return _tracked(job, {0: 0.3, 10: 0.7})

    monkeypatch.setattr(pool, "run_chunk", run)
    jobs = [ChunkJob("x.mp4", a, b, 1, 0, 30.0, InferOptions("m", num_poses=2)) for a, b in ((0, 10), (10, None))]
    out = pool.keep_subject(jobs, pool.run_chunks(jobs, None, 20), None, 20)
    assert len(ran) == 2 and out[1].xy[0, 0, 0, 0] > 0.5


TWO_WOMEN = "jumpingjack_kaiakol_1.mp4"  # two women doing jumping jacks in sync, side by side


@pytest.mark.slow
def test_chunks_keep_the_subject_where_two_people_exercise_side_by_side(xdg_cache: Path, dev_dir: Path) -> None:
    """Every frame, two chunks cut at frame 80: the second chunk's own detection takes the other
    woman, and the second rep (turning point at frames 83-96) was lost. Anchored on the clip's
    first frame, it tracks the first woman; and a chunk that did take the other woman runs again,
    steered. analyze (cut where the plan puts it) counts both reps."""
    from dataclasses import replace

    from pipeline.analyze import analyze, stitch
    from pipeline.decode import probe
    from pipeline.stored import infer_options, resolve_model
    from pipeline.subject import switched

    cfg = AnalysisConfig(model_cache=xdg_cache / "formcheck" / "models", fps=0, workers=2)
    path = str(dev_dir / TWO_WOMEN)
    info = probe(path)
    jobs = plan.plan_chunks(info, 1, 2, cfg.max_side, infer_options(cfg, resolve_model(cfg)))
    assert [j.anchor for j in jobs] == [None, 0]
    jobs = [replace(jobs[0], stop=80), replace(jobs[1], start=80)]  # where the second chunk's detection swaps
    free = [replace(j, anchor=None) for j in jobs]
    ex = pool.make_pool(2, jobs[0].options)
    try:
        unsteered = pool.run_chunks(free, ex, info.frames)
        assert switched(unsteered[0].xy[-1, 0], unsteered[1].xy[0, 0]), "left alone, it tracks the other woman"
        for results in (pool.run_chunks(jobs, ex, info.frames), pool.keep_subject(free, unsteered, ex, info.frames)):
            assert not switched(results[0].xy[-1, 0], results[1].xy[0, 0])
            frame, _, xy, _, _ = stitch(results)
            assert np.array_equal(frame, np.arange(info.frames))
            x = np.nanmean(xy[:, 0, :, 0], axis=1)
            assert np.nanmax(np.abs(np.diff(x))) < 0.05, "one woman all through: no jump in the track"
        doc = analyze(path, cfg, ex).summary
    finally:
        pool.terminate(ex)
    assert doc["rep_count"] == int(label(dev_dir, TWO_WOMEN)["reps"]) == 2
    peaks = [r["peak_s"] for r in doc["reps"]]  # type: ignore[union-attr, index, attr-defined]
    assert all(within(p, lo, hi) for p, (lo, hi) in zip(peaks, events(dev_dir, TWO_WOMEN), strict=True)), peaks


def test_a_steered_first_frame_shows_only_the_widened_box() -> None:
    from pipeline.infer import STEER_MARGIN, steered

    rgb = np.full((100, 200, 3), 200, np.uint8)
    out = steered(rgb, (0.4, 0.2, 0.6, 0.6))  # 40 px wide, 40 px tall; widened by a quarter: 10 px a side
    assert STEER_MARGIN == 0.25
    rows, cols = np.nonzero(out[:, :, 0])
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (10, 69, 70, 129)
    assert rgb.min() == 200, "the frame itself is untouched"
    assert np.array_equal(steered(rgb, (-0.5, -0.5, 1.5, 1.5)), rgb), "a box past the edges keeps the whole frame"
