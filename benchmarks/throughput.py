"""Throughput and peak memory of formcheck against the naive MediaPipe loop, on the same clips.

Usage::

    python benchmarks/throughput.py VIDEO... [--workers N] [--json OUT] [--markdown OUT] [--repeat 1]

One run holds one warm inference pool (``--workers`` processes, model loaded and warmed, as a
server or a batch job keeps it), the numba kernels loaded (one untimed analysis first). Per clip:

(a) naive: in a ``spawn`` child, after its imports: ``cv2.VideoCapture`` read -> BGR->RGB ->
    ``mediapipe.solutions.pose.Pose(model_complexity=1)`` on every full-resolution frame, timed
    from opening the capture to the last landmark; the landmarks are then counted (untimed) with
    formcheck's own ``pipeline.analyze.finish`` (auto exercise) for the reps column;
(b) ``pipeline.analyze.analyze`` on every frame (``fps=0``), cache off, on the warm pool;
(c) the same at the default rate (``AnalysisConfig.fps``);
(d) (c)'s options with the cache on (memory + disk tiers in a fresh folder), after one untimed
    run that fills it: a whole-result hit;
(e) the inference ceiling: frames decoded and downscaled as formcheck does, held in memory; one
    process per worker runs PoseLandmarker (VIDEO mode, formcheck's model) over its contiguous
    share; only inference is timed (earliest start to latest end);
(f) the CLI, cold: ``formcheck analyze CLIP --json --no-video --no-cache`` (default rate) in a new
    process, timed from launch to exit; ``cold`` = launch to the first frame sent to the model
    (the CLI's ``timing.first_inference_epoch``); a fresh ``XDG_CACHE_HOME`` holding a copy of the
    built model bundle; the numba cache is whatever this checkout has (warm after the first run).
(g) (b) on a Dask ``LocalCluster`` on 127.0.0.1 (``--workers`` worker processes, one thread each,
    model shipped and warmed by formcheck's worker plugin, clip bytes scattered) through
    ``pipeline.cluster.ClusterExecutor``: the engine's overhead over the local pool is (g)/(b).

frames/s = analyzed frames / wall; ``x`` = frames/s over (a)'s; speedup = (a)'s wall / this wall.
Peak RSS per process: (a), (e): each child's VmHWM at its end; (b)-(d): this process and the pool's
workers (VmHWM, read after each mode); (f): the CLI's process tree sampled every 50 ms (and VmHWM).
The pool workers' resident memory after warm-up and after the last clip is in ``meta.pool_rss``.
``--repeat R`` keeps each mode's median-wall run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MODES = ("a", "b", "c", "d", "e", "f", "g")
TITLES = {"a": "(a) naive", "b": "(b) every frame", "c": "(c) default rate", "d": "(d) cache hit",
          "e": "(e) ceiling", "f": "(f) CLI cold", "g": "(g) Dask"}
SAMPLE_S, FALLBACK_FPS, TIMEOUT_S = 0.05, 15.0, 1800.0
PROC_CHILDREN = any(Path("/proc/self/task").glob("*/children"))


@dataclasses.dataclass(frozen=True, slots=True)
class Run:
    """wall_s: seconds measured by this process; frames: analyzed; rss_mb: process role -> peak MB;
    json_wall_s: the analysis's own ``timing.wall_s``; cache: its ``cache.result``;
    cold_s: (f) only, launch to the first frame sent to the model."""

    wall_s: float
    frames: int
    reps: int | None
    rss_mb: dict[str, float]
    exercise: str | None = None
    json_wall_s: float | None = None
    cache: str | None = None
    cold_s: float | None = None

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0


def ratio(value: float, base: float) -> float | None:
    """value / base, None when base is not positive."""
    return value / base if base > 0 else None


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text()
    except OSError:  # the process has exited
        return ""


def read_status(pid: int) -> dict[str, int]:
    """{'VmRSS': kB, 'VmHWM': kB} of ``pid``; {} once it has exited (or is a zombie)."""
    lines = (ln.split(":", 1) for ln in _read(f"/proc/{pid}/status").splitlines())
    return {k: int(v.split()[0]) for k, v in lines if k in ("VmRSS", "VmHWM")}


def children(pid: int) -> list[int]:
    """From /proc/<pid>/task/*/children, or by parent pid (field 4 of /proc/*/stat) on kernels built
    without CONFIG_PROC_CHILDREN; [] once ``pid`` has exited."""
    try:
        if PROC_CHILDREN:
            return [int(c) for f in Path(f"/proc/{pid}/task").glob("*/children") for c in _read(f).split()]
        stats = [(int(d.name), _read(d / "stat")) for d in Path("/proc").iterdir() if d.name.isdigit()]
    except OSError:  # the process exited while its task folder was listed
        return []
    return [p for p, st in stats if st and int(st[st.rindex(")") + 2:].split()[1]) == pid]


def tree(root: int) -> list[int]:
    """``root`` and all its descendants."""
    out, todo = [], [root]
    while todo:
        out.append(todo.pop())
        todo += children(out[-1])
    return out


class TreeSampler(threading.Thread):
    """Peak kB per process of ``root``'s tree: max of sampled VmRSS and the last VmHWM seen. A forked
    child is skipped until it has exec'd (until then it shows the parent's command line and memory)."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root, self.root_cmd = root, _read(f"/proc/{root}/cmdline")
        self.peak_kb: dict[int, int] = {}
        self.roles: dict[int, str] = {root: "main"}
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            # read each time: right after Popen the root may not have exec'd yet (it still shows
            # its parent's command line), and a child forked later would then pass for exec'd
            self.root_cmd = _read(f"/proc/{self.root}/cmdline") or self.root_cmd
            for pid in tree(self.root):
                cmd = self.roles.get(pid) or _read(f"/proc/{pid}/cmdline")
                if cmd and cmd != self.root_cmd and pid not in self.roles:
                    argv = cmd.split("\0")
                    self.roles[pid] = ("worker" if "spawn_main" in cmd else "tracker" if "resource_tracker" in cmd
                                       else f"other:{os.path.basename(argv[0])} {' '.join(argv[1:3])}".strip())
                if pid in self.roles and (status := read_status(pid)):
                    self.peak_kb[pid] = max(self.peak_kb.get(pid, 0), *status.values())
            self._done.wait(SAMPLE_S)

    def stop(self) -> dict[str, float]:
        """Stop sampling; role -> peak MB ('main', 'worker1', 'worker2', 'tracker')."""
        self._done.set()
        self.join()
        names = [self.roles[p] for p in sorted(self.peak_kb)]
        names = [f"worker{names[:i].count('worker') + 1}" if n == "worker" else n for i, n in enumerate(names)]
        return {n: round(self.peak_kb[p] / 1024, 1) for n, p in zip(names, sorted(self.peak_kb), strict=True)}


def fresh_xdg(model: Path) -> Path:
    """A new XDG_CACHE_HOME holding a copy of the built model bundle and its checksum sidecar."""
    from api import settings

    root = Path(tempfile.mkdtemp(prefix="formcheck-throughput-"))
    dest = settings.load({"XDG_CACHE_HOME": str(root)}).model_cache
    dest.mkdir(parents=True)
    for src in (model, model.with_suffix(".sha256")):
        shutil.copy2(src, dest / src.name)
    return root


def cli_run(clip: str, workers: int, xdg: Path, extra: Sequence[str]) -> Run:
    cmd = [sys.executable, "-m", "api.cli", "analyze", clip, "--json", "--no-video", "--workers", str(workers)]
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"} | {"XDG_CACHE_HOME": str(xdg)}
    t0, epoch0 = time.perf_counter(), time.time()
    proc = subprocess.Popen([*cmd, *extra], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    sampler = TreeSampler(proc.pid)
    sampler.start()
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    finally:
        wall, rss = time.perf_counter() - t0, sampler.stop()
        if proc.poll() is None:
            proc.kill()
    if proc.returncode != 0:
        raise RuntimeError(f"formcheck exited {proc.returncode} on {clip}: {err.strip()[-600:]}")
    s = json.loads(out)
    first = s["timing"].get("first_inference_epoch")
    return Run(wall, s["frames"]["analyzed"], s["rep_count"], rss, s["exercise"]["name"], s["timing"]["wall_s"],
               s["cache"]["result"], first - epoch0 if first else None)


def _child(target: Callable[..., dict[str, Any]], q: Any, *args: Any) -> None:
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)  # MediaPipe's native log noise; errors come back on q
    try:
        out = target(*args)
        # VmHWM: this process's own peak; ru_maxrss also counts the parent's RSS at spawn (exec keeps it)
        peak = {"peak": read_status(os.getpid())["VmHWM"],
                "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
        q.put(("ok", out | {k: round(v / 1024, 1) for k, v in peak.items()}))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises
        q.put(("error", f"{type(exc).__name__}: {exc}"))


def spawn_all(target: Callable[..., dict[str, Any]], arg_lists: Sequence[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Run ``target(*args)`` in one spawn child per args; the results in any order, or raise the first error."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_child, args=(target, q, *a)) for a in arg_lists]
    for p in procs:
        p.start()
    try:
        got = [q.get(timeout=TIMEOUT_S) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    if errors := [v for status, v in got if status != "ok"]:
        raise RuntimeError(errors[0])
    return [v for _, v in got]


def _arrays(marks: Sequence[Any]) -> tuple[Any, Any, Any]:
    """Solutions-API landmarks per frame (None: no pose) -> xy (n,33,2), visibility (n,33), world (n,33,3)."""
    import numpy as np

    n = len(marks)
    xy, vis, world = np.full((n, 33, 2), np.nan, np.float32), np.zeros((n, 33), np.float32), np.full(
        (n, 33, 3), np.nan, np.float32)
    for i, m in enumerate(marks):
        if m:
            xy[i], vis[i] = [(p.x, p.y) for p in m[0]], [p.visibility for p in m[0]]
            world[i] = [(p.x, p.y, p.z) for p in m[1]]
    return xy, vis, world


def naive_loop(clip: str) -> dict[str, Any]:
    """The loop most projects use, full resolution; its landmarks counted by formcheck's ``finish``."""
    import cv2
    import mediapipe as mp_
    import numpy as np

    from models.registry import ModelSpec
    from pipeline.analyze import finish
    from pipeline.config import AnalysisConfig
    from pipeline.records import VideoInfo
    from pipeline.subject import select

    t0, cap, t, marks = time.perf_counter(), cv2.VideoCapture(clip), [0.0], list[Any]()
    with mp_.solutions.pose.Pose(model_complexity=1, static_image_mode=False) as pose:
        while (got := cap.read())[0]:
            res = pose.process(cv2.cvtColor(got[1], cv2.COLOR_BGR2RGB))
            t.append(max(cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0, t[-1] + 1e-3 if marks else 0.0))
            marks.append(res.pose_landmarks and (res.pose_landmarks.landmark, res.pose_world_landmarks.landmark))
            h, w = got[1].shape[:2]
    loop_s = time.perf_counter() - t0
    fps, n = cap.get(cv2.CAP_PROP_FPS) or 30.0, len(marks)
    cap.release()
    if not n:
        raise RuntimeError(f"no frame could be decoded from {clip}")
    xy, vis, world = _arrays(marks)
    series = select(np.arange(n), np.asarray(t[1:]), xy[:, None], vis[:, None], world[:, None], w / h)
    cfg = AnalysisConfig(model_cache=Path(tempfile.gettempdir()), fps=0.0, workers=1)
    info, spec = VideoInfo(clip, n, fps, w, h, 0, os.path.getsize(clip)), ModelSpec("solutions-pose-full", Path(), "")
    s: dict[str, Any] = finish(info, series, cfg, spec, 1, time.perf_counter() - t0, 0.0).summary
    return {"frames": n, "reps": s["rep_count"], "exercise": s["exercise"]["name"], "loop_s": loop_s}


def naive_run(clip: str) -> Run:
    r = spawn_all(naive_loop, [(clip,)])[0]
    rss = {"main": r["peak"], "ru_maxrss:main": r["ru_maxrss"]}
    return Run(r["loop_s"], r["frames"], r["reps"], rss, r["exercise"])


def ceiling_share(clip: str, start: int, stop: int | None, fps: float, max_side: int, model: str,
                  barrier: Any) -> dict[str, Any]:
    """Decode this share into memory, load and warm the model, wait for the others, time inference."""
    try:
        import mediapipe as mp_

        from pipeline.decode import iter_frames
        from pipeline.infer import InferOptions, load, warm

        warm(InferOptions(model))
        lm: Any = load(InferOptions(model))
        images = [(round(f.t * 1000), mp_.Image(image_format=mp_.ImageFormat.SRGB, data=f.rgb))
                  for f in iter_frames(clip, start, stop, 1, max_side, fps)]
        barrier.wait(timeout=TIMEOUT_S)
    except BaseException:
        barrier.abort()  # the other shares stop waiting
        raise
    t0, clock = time.monotonic(), 0
    for ms, image in images:
        clock = max(clock + 1, 10_000_000 + ms)  # past warm()'s clock, strictly increasing
        lm.detect_for_video(image, clock)
    return {"frames": len(images), "start": t0, "end": time.monotonic()}


def ceiling_run(clip: str, workers: int, model: Path, max_side: int) -> Run:
    from pipeline.decode import probe

    info, barrier = probe(clip), mp.get_context("spawn").Barrier(workers)
    cuts = [round(k * info.frames / workers) for k in range(workers)] + [None]
    args = [(clip, cuts[i], cuts[i + 1], info.fps, max_side, str(model), barrier) for i in range(workers)]
    res = sorted(spawn_all(ceiling_share, args), key=lambda r: r["start"])
    wall = max(r["end"] for r in res) - res[0]["start"]
    rss = {f"{k}worker{i + 1}": r[v] for i, r in enumerate(res) for k, v in (("", "peak"), ("ru_maxrss:", "ru_maxrss"))}
    return Run(wall, sum(r["frames"] for r in res), None, rss)


class Service:
    """This process as a warm service: one pool (model loaded, warmed), kernels loaded."""

    def __init__(self, workers: int, model_cache: Path, max_side: int, warm_clip: str) -> None:
        from pipeline.analyze import analyze
        from pipeline.config import AnalysisConfig
        from pipeline.pool import make_pool, prestart, settle_heap
        from pipeline.stored import infer_options, resolve_model

        self.workers, self.analyze, self.frames = workers, analyze, 0
        self.base = AnalysisConfig(model_cache=model_cache, workers=workers, max_side=max_side)
        self.pool = make_pool(workers, infer_options(self.base, resolve_model(self.base)))
        prestart(self.pool, workers)
        self.run(warm_clip, self.base.fps, None)  # untimed: workers warm, kernels loaded
        settle_heap()  # as the server does once warm
        self.rss_warm, self.frames = self.worker_rss(), 0

    def worker_pids(self) -> list[int]:
        return sorted(p.pid for p in (getattr(self.pool, "_processes", None) or {}).values())

    def worker_rss(self) -> dict[str, float]:
        """Current resident MB of each worker."""
        return {f"worker{i + 1}": round(read_status(pid).get("VmRSS", 0) / 1024, 1)
                for i, pid in enumerate(self.worker_pids())}

    def peaks(self) -> dict[str, float]:
        """VmHWM of this process and each worker, MB."""
        pids = {"main": os.getpid()} | {f"worker{i + 1}": p for i, p in enumerate(self.worker_pids())}
        return {k: round(read_status(p).get("VmHWM", 0) / 1024, 1) for k, p in pids.items()}

    def run(self, clip: str, fps: float, cache: Any) -> Run:
        cfg = dataclasses.replace(self.base, fps=fps, cache=cache)
        t0 = time.perf_counter()
        s = self.analyze(clip, cfg, self.pool).summary
        wall = time.perf_counter() - t0
        if s["cache"]["result"] != "hit":
            self.frames += s["frames"]["analyzed"]
        return Run(wall, s["frames"]["analyzed"], s["rep_count"], self.peaks(), s["exercise"]["name"],
                   s["timing"]["wall_s"], s["cache"]["result"])

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class DaskService(Service):
    """(b) on a warm Dask LocalCluster of ``workers`` processes instead of the local pool."""

    def __init__(self, workers: int, model_cache: Path, max_side: int, warm_clip: str) -> None:
        from distributed import Client, LocalCluster

        from pipeline.analyze import analyze
        from pipeline.cluster import ClusterExecutor
        from pipeline.config import AnalysisConfig
        from pipeline.pool import settle_heap
        from pipeline.stored import infer_options, resolve_model

        self.workers, self.analyze, self.frames = workers, analyze, 0
        self.base = AnalysisConfig(model_cache=model_cache, workers=workers, max_side=max_side)
        env = dict(os.environ)  # LocalCluster leaves its workers' variables in ours (MALLOC_TRIM_THRESHOLD_
        self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                    dashboard_address="127.0.0.1:0")
        os.environ.clear()  # among them, which slows (a), (e) and (f)'s children by 20-25%): put ours back
        os.environ.update(env)
        self.client = Client(self.cluster, set_as_default=False)
        self.client.wait_for_workers(workers, timeout=120)
        self.pool = ClusterExecutor(self.client, infer_options(self.base, resolve_model(self.base)))  # type: ignore[assignment]
        self._pids = sorted(int(p) for p in self.client.run(os.getpid).values())
        self.run(warm_clip, self.base.fps, None)
        settle_heap()  # as the server does once warm
        self.rss_warm, self.frames = self.worker_rss(), 0

    def worker_pids(self) -> list[int]:
        return self._pids

    def close(self) -> None:
        self.pool.shutdown()
        self.client.close()
        self.cluster.close()


def median_run(make: Callable[[], Run], repeat: int) -> Run:
    """The run of median wall time out of ``repeat``."""
    return sorted((make() for _ in range(repeat)), key=lambda r: r.wall_s)[repeat // 2]


def measure_clip(clip: str, svc: Service, repeat: int, model: Path, c_fps: float) -> dict[str, Run]:
    """Modes (a)-(f) on one clip ((g) runs after every clip's, with no Dask cluster beside these)."""
    from pipeline.cache import CacheConfig

    xdg = fresh_xdg(model)
    try:
        cache = CacheConfig(disk_path=xdg / "bench-cache.sqlite3")
        runs = {"a": median_run(lambda: naive_run(clip), repeat),
                "b": median_run(lambda: svc.run(clip, 0.0, None), repeat),
                "c": median_run(lambda: svc.run(clip, c_fps, None), repeat)}
        svc.run(clip, c_fps, cache)  # fills the result cache
        runs["d"] = median_run(lambda: svc.run(clip, c_fps, cache), repeat)
        runs["e"] = median_run(lambda: ceiling_run(clip, svc.workers, model, svc.base.max_side), repeat)
        runs["f"] = median_run(lambda: cli_run(clip, svc.workers, xdg, ["--fps", f"{c_fps:g}", "--no-cache"]),
                               repeat)
    finally:
        shutil.rmtree(xdg, ignore_errors=True)
    return runs


def summarize(runs: dict[str, Run]) -> dict[str, dict[str, Any]]:
    """Per mode: the run's fields plus fps, x (fps over (a)'s) and speedup ((a)'s wall over this wall)."""
    a = runs["a"]
    return {m: dataclasses.asdict(r) | {"fps": round(r.fps, 2), "x": ratio(r.fps, a.fps),
                                        "speedup": ratio(a.wall_s, r.wall_s)} for m, r in runs.items()}


def overall(clips: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Totals over clips per mode (frames, walls) and the largest peak per process role."""
    runs = {}
    for m in MODES:
        if any(m not in c["runs"] for c in clips):
            continue
        rows = [c["runs"][m] for c in clips]
        rss = {k: max(r["rss_mb"].get(k, 0.0) for r in rows) for r in rows for k in r["rss_mb"]}
        colds = [r["cold_s"] for r in rows if r.get("cold_s") is not None]
        runs[m] = Run(sum(r["wall_s"] for r in rows), sum(r["frames"] for r in rows), None, rss,
                      json_wall_s=sum(r["json_wall_s"] or 0.0 for r in rows) or None,
                      cold_s=max(colds) if colds else None)
    return summarize(runs)


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *("| " + " | ".join(r) + " |" for r in rows)]


def _rss(d: dict[str, float]) -> str:
    workers = "/".join(f"{v:.0f}" for k, v in d.items() if k.startswith("worker"))
    return " + ".join(p for p in (f"{d['main']:.0f}" if "main" in d else "", f"w {workers}" if workers else "") if p)


def _cells(r: dict[str, Any]) -> tuple[list[str], list[str], list[str], str]:
    """One row's frames/s, wall and memory cells, and its reps a/b/c/d ('≠': not all equal (b)'s)."""
    def times(m: str, key: str) -> str:
        return f" ×{r[m][key]:.2f}" if m != "a" and r[m][key] else ""

    modes = [m for m in MODES if m in r]
    fps = [f"{r[m]['fps']:.1f}{times(m, 'x')}" for m in modes]
    wall = [f"{r[m]['wall_s']:.3g}" + (f" ({r[m]['json_wall_s']:.3g})" if r[m]["json_wall_s"] else "")
            + times(m, "speedup") + (f", cold {r[m]['cold_s']:.2f}" if r[m].get("cold_s") is not None else "")
            for m in modes]
    reps = [r[m]["reps"] for m in "abcdg" if m in r]
    same = "" if all(v == reps[1] for v in reps) else " ≠"
    return fps, wall, [_rss(r[m]["rss_mb"]) for m in modes], "" if reps[0] is None else "/".join(map(str, reps)) + same


def markdown(report: dict[str, Any]) -> str:
    meta, total = report["meta"], report["overall"]
    rows = [(c["clip"], str(c["frames"]), *_cells(c["runs"])) for c in report["clips"]]
    rows.append(("**overall**", str(total["frames"]), *_cells(total["runs"])))
    head = ["clip", "frames", *(TITLES[m] for m in MODES if m in total["runs"])]
    g = total["runs"].get("g")
    engine = ([f"(g) Dask over (b) the local pool, overall: {g['fps'] / total['runs']['b']['fps']:.3f}x the frames/s "
               f"(overhead {100 * (1 - g['fps'] / total['runs']['b']['fps']):.1f}%).", ""] if g else [])
    return "\n".join([
        f"{meta['cpus']} CPUs, --workers {meta['workers']}, --repeat {meta['repeat']}; load average (1, 5, 15 min) "
        f"{meta['load_before']} before, {meta['load_after']} after; whole run {meta['total_wall_s']:.0f} s.",
        f"(c): {meta['c_note']}. (d): (c)'s options, second run (result cache: {meta['d_cache']}). "
        "(b)-(d) on one warm pool; (f): a new CLI process per clip at (c)'s rate.", "",
        "Analyzed frames/s (× = over (a)'s); reps a/b/c/d(/g) (≠: not all equal to (b)):", "",
        *_table([*head, "reps"], [[n, f, *fps, reps] for n, f, fps, _, _, reps in rows]), "",
        "Wall s ((a): its loop; (b)-(d): analyze() on the warm pool; (e): inference only; (f): launch to exit, "
        "cold = launch to first inference; overall: the largest); (the analysis's own timing.wall_s); "
        "× = (a)'s wall / this wall:", "", *_table(head, [[n, f, *wall] for n, f, _, wall, _, _ in rows]), "",
        "Peak RSS MB per process (main + w workers); (a), (e): VmHWM in each child:", "",
        *_table(head, [[n, f, *mem] for n, f, _, _, mem, _ in rows]), "", *engine, *_pool_lines(meta)])


def _pool_lines(meta: dict[str, Any]) -> list[str]:
    pool = meta.get("pool_rss")
    if not pool:
        return []
    def fmt(d: dict[str, float]) -> str:
        return "/".join(f"{v:.0f}" for v in d.values())
    return [f"Pool workers' resident MB: {fmt(pool['warm'])} after warm-up, {fmt(pool['end'])} after "
            f"{pool['frames']} more analyzed frames.", ""]


def default_rate() -> tuple[float, str]:
    from pipeline.config import AnalysisConfig

    fps = float({f.name: f.default for f in dataclasses.fields(AnalysisConfig)}["fps"])  # type: ignore[arg-type]
    if fps > 0:
        return fps, f"--fps {fps:g}, the default (AnalysisConfig.fps)"
    return FALLBACK_FPS, f"AnalysisConfig.fps is 0 (every frame), so (c) uses --fps {FALLBACK_FPS:g}"


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="formcheck throughput against the naive MediaPipe loop")
    ap.add_argument("videos", nargs="+", metavar="VIDEO")
    ap.add_argument("--workers", type=int, default=2, help="formcheck --workers, and (e)'s processes")
    ap.add_argument("--json", type=Path, help="write all numbers here")
    ap.add_argument("--markdown", type=Path, help="write the tables here")
    ap.add_argument("--repeat", type=int, default=1, help="runs per mode; the median-wall run is kept")
    ap.add_argument("--no-dask", action="store_true", help="skip (g), the Dask LocalCluster column")
    args = ap.parse_args(argv)
    if missing := [v for v in args.videos if not Path(v).is_file()]:
        ap.error(f"clip not found: {', '.join(missing)} (expected paths to video files)")
    if args.workers < 1 or args.repeat < 1:
        ap.error(f"--workers and --repeat must be >= 1; got {args.workers} and {args.repeat}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    from api import settings
    from models import registry

    cfg = settings.load()
    model = registry.resolve(None, cfg.model_cache).path
    (c_fps, c_note), t0, load0 = default_rate(), time.perf_counter(), os.getloadavg()
    clips: list[dict[str, Any]] = []
    svc = Service(args.workers, cfg.model_cache, cfg.max_side, args.videos[0])
    per_clip: list[dict[str, Run]] = []
    try:
        for clip in args.videos:
            print(f"throughput: {clip}", file=sys.stderr, flush=True)
            per_clip.append(measure_clip(clip, svc, args.repeat, model, c_fps))
        pool_rss = {"warm": svc.rss_warm, "end": svc.worker_rss(), "frames": svc.frames}
    finally:
        svc.close()
    if not args.no_dask:  # after the others: an idle cluster beside them took ~4% of (b)'s frames/s
        dask = DaskService(args.workers, cfg.model_cache, cfg.max_side, args.videos[0])
        try:
            for clip, runs in zip(args.videos, per_clip, strict=True):
                print(f"throughput (g): {clip}", file=sys.stderr, flush=True)
                runs["g"] = median_run(lambda: dask.run(clip, 0.0, None), args.repeat)  # noqa: B023 - run at once
        finally:
            dask.close()
    for clip, runs in zip(args.videos, per_clip, strict=True):
        clips.append({"clip": Path(clip).name, "frames": runs["b"].frames, "runs": summarize(runs)})
    meta: dict[str, Any] = {"pool_rss": pool_rss,
        "workers": args.workers, "repeat": args.repeat, "cpus": os.cpu_count(), "c_fps": c_fps, "c_note": c_note,
        "load_before": [round(v, 2) for v in load0], "load_after": [round(v, 2) for v in os.getloadavg()],
        "total_wall_s": time.perf_counter() - t0, "d_cache": "/".join({c["runs"]["d"]["cache"] for c in clips})}
    report = {"meta": meta, "clips": clips, "overall": {"frames": sum(c["frames"] for c in clips),
                                                        "runs": overall(clips)}}
    print(text := markdown(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
