"""Same frames, same landmarks: a chunk's result depends on its frames only, not on what the worker
analyzed before (each chunk runs on a landmarker no other chunk used)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from api import settings
from pipeline.analyze import infer_pose
from pipeline.config import AnalysisConfig
from pipeline.pool import make_pool, prestart
from pipeline.stored import infer_options, resolve_model

CLIP, OTHER = "pushup_kaiakol_2.mp4", "squat_kaiakol_1.mp4"


@pytest.fixture(scope="module")
def cfg(xdg_cache: Path) -> AnalysisConfig:
    return AnalysisConfig(model_cache=settings.load({"XDG_CACHE_HOME": str(xdg_cache)}).model_cache, workers=2,
                          fps=0.0)


@pytest.fixture(scope="module")
def pool(cfg: AnalysisConfig) -> Iterator[ProcessPoolExecutor]:
    executor = make_pool(2, infer_options(cfg, resolve_model(cfg)))
    prestart(executor, 2)
    yield executor
    executor.shutdown(wait=True, cancel_futures=True)


def _landmarks(path: Path, cfg: AnalysisConfig, pool: ProcessPoolExecutor | None) -> np.ndarray:
    pose = infer_pose(str(path), cfg, pool).pose
    return np.concatenate([pose.world.reshape(len(pose), -1), pose.xy.reshape(len(pose), -1),
                           pose.visibility], axis=1)


@pytest.mark.slow
def test_a_clip_gives_the_same_landmarks_whatever_ran_before(
    cfg: AnalysisConfig, pool: ProcessPoolExecutor, dev_dir: Path
) -> None:
    first = _landmarks(dev_dir / CLIP, cfg, pool)
    again = _landmarks(dev_dir / CLIP, cfg, pool)
    _landmarks(dev_dir / OTHER, cfg, pool)
    after_other = _landmarks(dev_dir / CLIP, cfg, pool)
    assert np.isfinite(first).any(), "the clip should have a detected person"
    np.testing.assert_array_equal(again, first)
    np.testing.assert_array_equal(after_other, first)


@pytest.mark.slow
def test_in_process_inference_repeats_exactly(cfg: AnalysisConfig, dev_dir: Path) -> None:
    one = AnalysisConfig(model_cache=cfg.model_cache, workers=1, fps=0.0)
    np.testing.assert_array_equal(_landmarks(dev_dir / OTHER, one, None), _landmarks(dev_dir / OTHER, one, None))
