"""Stills (``POST /v1/frames``): the IMAGE-mode landmarker runs one frame on two XNNPACK threads."""

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
