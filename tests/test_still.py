"""Stills (``POST /v1/frames``): the IMAGE-mode landmarker on one or two XNNPACK threads, same landmarks;
where the API sends each still (the still worker, or the pool when it is busy)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import read_frames

from pipeline import infer
from pipeline.config import AnalysisConfig
from pipeline.stored import infer_options, resolve_model

pytestmark = pytest.mark.slow


def test_thread_count_reaches_the_task_options(xdg_cache: Path) -> None:
    path = str(resolve_model(AnalysisConfig(model_cache=xdg_cache / "formcheck" / "models")).path)
    assert infer._base_options(path, 2).to_pb2().acceleration.xnnpack.num_threads == 2  # type: ignore[attr-defined]
    assert not infer._base_options(path, 1).to_pb2().HasField("acceleration")  # type: ignore[attr-defined]


def test_two_threads_give_the_same_landmarks(xdg_cache: Path, dev_dir: Path) -> None:
    cfg = AnalysisConfig(model_cache=xdg_cache / "formcheck" / "models")
    opts = infer_options(cfg, resolve_model(cfg))
    frames, _ = read_frames(dev_dir / "squat_rjsong_2.mp4", 0, 60)
    one, two = infer.create(opts, video=False), infer.create(opts, video=False, threads=2)
    try:
        for bgr in frames[::20]:
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            a = infer.unpack(one.detect(infer.image(rgb)), 1)  # type: ignore[attr-defined]
            b = infer.unpack(two.detect(infer.image(rgb)), 1)  # type: ignore[attr-defined]
            assert np.isfinite(a[0]).all()  # a pose was found: the comparison means something
            for x, y in zip(a, b, strict=True):
                assert np.array_equal(x, y)
    finally:
        one.close()  # type: ignore[attr-defined]
        two.close()  # type: ignore[attr-defined]


def test_a_still_runs_on_the_thread_count_its_caller_picks(xdg_cache: Path, dev_dir: Path) -> None:
    """Each thread count has its own IMAGE-mode landmarker (warm_still builds both); same landmarks."""
    from pipeline import still

    cfg = AnalysisConfig(model_cache=xdg_cache / "formcheck" / "models")
    opts = infer_options(cfg, resolve_model(cfg))
    still.warm_still(opts)
    assert sorted(still._IMAGE_LANDMARKERS) == [1, still.IDLE_THREADS]
    frames, _ = read_frames(dev_dir / "squat_rjsong_2.mp4", 0, 1)
    ok, jpg = cv2.imencode(".jpg", frames[0])
    assert ok
    one, two, many = (still.run_still(still.StillJob(jpg.tobytes(), "a.jpg", 640, opts, threads=t)) for t in (1, 2, 8))
    assert np.isfinite(one.xy).all()
    for res in (two, many):  # 8 is capped at IDLE_THREADS: no third landmarker
        for a, b in ((one.xy, res.xy), (one.visibility, res.visibility), (one.world, res.world)):
            assert np.array_equal(a, b)
    assert sorted(still._IMAGE_LANDMARKERS) == [1, still.IDLE_THREADS]


def test_stills_go_to_the_still_worker_on_two_threads_only_when_nothing_else_infers(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """XNNPACK's threads spin after each run: two threads only for a still alone on the still worker;
    a still arriving while the still worker is busy goes to the inference pool on one thread."""
    import os
    from types import SimpleNamespace

    from api.frames import _Stills

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    service = SimpleNamespace(runner=SimpleNamespace(running=0))
    stills = _Stills()
    assert stills.route(service) == (True, 2)  # type: ignore[arg-type]  # alone: the still worker, two threads
    stills.in_flight, stills.on_still_worker = 1, 1
    assert stills.route(service) == (False, 1)  # type: ignore[arg-type]  # busy: the pool, one thread
    stills.on_still_worker = 0  # the still worker is free again, another still (on the pool) still runs
    assert stills.route(service) == (True, 1)  # type: ignore[arg-type]
    stills.in_flight = 0
    service.runner.running = 1  # a video job runs on the pool
    assert stills.route(service) == (True, 1)  # type: ignore[arg-type]
    service.runner.running = 0
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert stills.route(service) == (True, 1)  # type: ignore[arg-type]
