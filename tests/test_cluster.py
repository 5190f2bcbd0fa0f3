"""Dask distributed behind the executor seam (issue 7), on a real LocalCluster of processes.

The cluster's workers share this machine's disk, but nothing relies on it: clips and the model
reach them as scattered bytes (:mod:`pipeline.cluster`), exactly as on other machines.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import REPO
from test_api_e2e import _create_key, _env, _full_run, _server

from pipeline import batch, infer
from pipeline.analyze import stitch
from pipeline.cache import CacheConfig
from pipeline.config import AnalysisConfig
from pipeline.decode import probe
from pipeline.plan import plan_chunks
from pipeline.pool import make_pool, prestart, run_chunks
from pipeline.stored import infer_options, resolve_model

pytestmark = pytest.mark.slow

CLIP = "pushup_kaiakol_2.mp4"  # 90 frames
BATCH = ("squat_kaiakol_1.mp4", "pushup_kaiakol_2.mp4", "jumpingjack_kaiakol_1.mp4", "bicepcurl_vengaza_1.mp4")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    from distributed import Client, LocalCluster

    lc = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0", worker_dashboard_address=None)
    client = Client(lc, set_as_default=False)
    try:
        client.wait_for_workers(2, timeout=120)
        yield client
    finally:
        client.close()
        lc.close()


def _cfg(xdg_cache: Path, **kw: Any) -> AnalysisConfig:
    return AnalysisConfig(model_cache=xdg_cache / "formcheck" / "models", workers=2, **kw)


def _worker_pids(client: Any) -> dict[str, int]:
    return {addr: int(pid) for addr, pid in client.run(os.getpid).items()}


def _landmarks(path: str, cfg: AnalysisConfig, executor: Any) -> tuple[list[Any], tuple[np.ndarray, ...]]:
    info = probe(path)
    opts = infer_options(cfg, resolve_model(cfg))
    jobs = plan_chunks(info, cfg.stride(info.fps), cfg.workers, cfg.max_side, opts, None)
    results = run_chunks(jobs, executor, len(jobs))
    return results, stitch(results)


def test_cluster_gives_the_local_pools_landmarks(cluster: Any, xdg_cache: Path, dev_dir: Path) -> None:
    from pipeline.cluster import ClusterExecutor

    cfg = _cfg(xdg_cache, fps=0)
    opts = infer_options(cfg, resolve_model(cfg))
    ex = ClusterExecutor(cluster, opts)
    chunks, remote = _landmarks(str(dev_dir / CLIP), cfg, ex)
    pool = make_pool(2, opts)
    prestart(pool, 2)
    try:
        _, local = _landmarks(str(dev_dir / CLIP), cfg, pool)
    finally:
        pool.shutdown()
    assert len(chunks) == 2 and len(remote[0]) == len(local[0]) == 90
    for name, a, b in zip(("frame", "t", "xy", "visibility", "world"), remote, local, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True), name
    # the two chunks ran in the cluster's two worker processes, not here
    assert {c.pid for c in chunks} == set(_worker_pids(cluster).values())
    # the model was shipped by the plugin (a copy per worker) and stays loaded between clips
    def model() -> tuple[str | None, int]:
        return (infer._LOADED.model_path if infer._LOADED else None, id(infer._LANDMARKER))

    loaded = cluster.run(model)
    assert all(p is not None and p != opts.model_path and "formcheck-worker" in p for p, _ in loaded.values())
    _landmarks(str(dev_dir / "squat_kaiakol_1.mp4"), cfg, ex)
    assert cluster.run(model) == loaded
    # workers that only infer chunks never load the features stage (numba and LLVM, ~85 MB each)
    def numba_loaded() -> bool:  # nested: sent by value (importing this module would load numba)
        import sys

        return "numba" in sys.modules

    assert not any(cluster.run(numba_loaded).values())
    ex.shutdown()


def test_a_missing_model_on_a_worker_is_a_clear_error(cluster: Any, xdg_cache: Path, dev_dir: Path) -> None:
    """Without the plugin, a worker that cannot see the model file says so (here: a path no worker has)."""
    from pipeline.cluster import ClusterExecutor
    from pipeline.errors import WorkerError

    cfg = _cfg(xdg_cache)
    opts = infer_options(cfg, resolve_model(cfg))
    bogus = infer.InferOptions("/nonexistent/model.task", model_id="nope")
    ex = ClusterExecutor(cluster)  # no model registered
    job = infer.ChunkJob(str(dev_dir / CLIP), 0, 10, 1, 640, 30.0, bogus)
    with pytest.raises(Exception, match="not on this Dask worker") as info:
        ex.submit(infer.run_chunk, job).result(timeout=60)
    assert not isinstance(info.value, WorkerError) and opts.model_path != bogus.model_path


def test_batch_on_the_cluster_survives_a_killed_worker(cluster: Any, xdg_cache: Path, dev_dir: Path,
                                                       tmp_path: Path) -> None:
    from pipeline.cluster import ClusterExecutor

    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    for name in BATCH:
        shutil.copy(dev_dir / name, folder / name)
    cfg = _cfg(xdg_cache, cache=CacheConfig(None, memory_bytes=1 << 20))  # memory only: every file is computed
    ex = ClusterExecutor(cluster, infer_options(cfg, resolve_model(cfg)))
    before = _worker_pids(cluster)
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = batch.run_batch(folder, out, cfg, ex, in_flight=4)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            outcome["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    victim = None
    deadline = time.time() + 120
    while victim is None and time.time() < deadline:  # kill a worker while it analyzes a file
        busy = [addr for addr, keys in cluster.processing().items() if keys and addr in before]
        if busy:
            victim = before[busy[0]]
            os.kill(victim, signal.SIGKILL)
        time.sleep(0.05)
    t.join(300)
    assert victim is not None, "no worker was ever busy"
    assert not t.is_alive() and "error" not in outcome, outcome.get("error")
    results = outcome["result"]
    assert [r.status for r in results] == ["done"] * len(BATCH), [(r.file, r.status, r.error) for r in results]
    assert sorted(r.file for r in results) == sorted(BATCH)  # every file once
    assert sorted(p.name for p in out.glob("*.json")) == sorted(f"{n}.json" for n in BATCH)
    manifest = [json.loads(line) for line in (out / batch.MANIFEST).read_text().splitlines()]
    assert sorted(m["file"] for m in manifest) == sorted(BATCH)
    for r in results:
        summary = json.loads((out / r.output).read_text())
        assert summary["file"]["name"] == r.file and summary["rep_count"] == r.reps
    # the nanny replaced the killed worker
    cluster.wait_for_workers(2, timeout=60)
    assert victim not in _worker_pids(cluster).values()
    ex.shutdown()


def test_serve_on_a_cluster_end_to_end(cluster: Any, xdg_cache: Path, tmp_path: Path, dev_dir: Path) -> None:
    env = _env(xdg_cache, tmp_path / "data", FORMCHECK_SCHEDULER=cluster.scheduler.address)
    key = _create_key(env)
    with _server(env, tmp_path / "serve.log") as srv:
        import httpx

        ready = httpx.get(f"{srv.url}/health/ready", timeout=10).json()
        assert ready["checks"]["workers"]["alive"] == 2, ready
        _full_run(srv, key, dev_dir)
        assert srv.workers() == []  # no local inference processes: the cluster did the work
        assert srv.stop()


def test_cli_names_an_unreachable_or_malformed_scheduler(run_cli: Any, dev_dir: Path) -> None:
    clip = str(dev_dir / CLIP)
    res = run_cli("analyze", clip, "--no-cache", "--scheduler", "tcp://127.0.0.1:9")
    assert res.code == 5 and "could not reach the Dask scheduler at tcp://127.0.0.1:9" in res.stderr, res.stderr
    res = run_cli("analyze", clip, "--no-cache", "--scheduler", "127.0.0.1:8786")
    assert res.code == 5 and "expected a Dask scheduler address like tcp://HOST:8786" in res.stderr, res.stderr
    res = run_cli("serve", "--port", "8997", "--scheduler", "tcp://127.0.0.1:9")  # before any process starts
    assert res.code == 5 and "could not reach the Dask scheduler at tcp://127.0.0.1:9" in res.stderr, res.stderr
    assert len([ln for ln in res.stderr.splitlines() if ln.startswith("formcheck: error")]) == 1


def test_scheduler_setting_is_checked() -> None:
    import subprocess
    import sys

    env = {**os.environ, "FORMCHECK_SCHEDULER": "localhost"}
    out = subprocess.run([sys.executable, "-m", "api.cli", "analyze", "x.mp4"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "FORMCHECK_SCHEDULER must be a Dask scheduler address" in out.stderr
