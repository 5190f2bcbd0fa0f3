"""The caches through the orchestrator, on real video: a repeat is a hit, a trimmed copy reuses frames."""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg
import pytest

from api import settings
from pipeline.analyze import analyze
from pipeline.cache import CacheConfig
from pipeline.config import AnalysisConfig

CLIP = "pushup_kaiakol_2.mp4"  # 90 frames, one rep


@pytest.fixture()
def cfg(xdg_cache: Path, tmp_path: Path) -> AnalysisConfig:
    return AnalysisConfig(
        model_cache=settings.load({"XDG_CACHE_HOME": str(xdg_cache)}).model_cache,
        exercise="pushup", workers=1, cache=CacheConfig(disk_path=tmp_path / "cache.sqlite3"),
    )


@pytest.mark.slow
def test_a_repeat_is_a_hit_with_the_same_answer(cfg: AnalysisConfig, dev_dir: Path, tmp_path: Path) -> None:
    first = analyze(str(dev_dir / CLIP), cfg)
    assert first.summary["cache"]["result"] == "miss"  # type: ignore[index]
    copy = tmp_path / "renamed.mp4"
    copy.write_bytes((dev_dir / CLIP).read_bytes())
    second = analyze(str(copy), cfg)
    cache = second.summary["cache"]
    assert cache["result"] == "hit"  # type: ignore[index]
    assert second.summary["reps"] == first.summary["reps"] and second.summary["rep_count"] == 1
    assert second.summary["file"]["name"] == "renamed.mp4"  # type: ignore[index]
    assert second.info.path == str(copy), "outputs are rendered from the file given now"
    assert second.summary["timing"]["wall_s"] < first.summary["timing"]["wall_s"] / 10  # type: ignore[index]


@pytest.mark.slow
def test_options_that_change_the_answer_miss(cfg: AnalysisConfig, dev_dir: Path) -> None:
    from dataclasses import replace

    analyze(str(dev_dir / CLIP), cfg)
    other = analyze(str(dev_dir / CLIP), replace(cfg, exercise="squat"))
    assert other.summary["cache"]["result"] == "miss"  # type: ignore[index]
    assert other.summary["cache"]["frames"]["misses"] == 0, "every frame's landmarks came from the cache"  # type: ignore[index]


@pytest.mark.slow
def test_a_trimmed_copy_reuses_the_frames_it_shares(cfg: AnalysisConfig, dev_dir: Path, tmp_path: Path) -> None:
    analyze(str(dev_dir / CLIP), cfg)
    trimmed = tmp_path / "trimmed.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-i",
                    str(dev_dir / CLIP), "-t", "2", "-c", "copy", str(trimmed)], check=True, timeout=60)
    again = analyze(str(trimmed), cfg)
    frames = again.summary["cache"]["frames"]  # type: ignore[index]
    assert again.summary["cache"]["result"] == "miss"  # type: ignore[index]
    assert frames["hits"] >= 0.9 * again.summary["frames"]["analyzed"], frames  # type: ignore[index]


@pytest.mark.slow
def test_no_cache_computes_and_stores_nothing(xdg_cache: Path, dev_dir: Path, tmp_path: Path) -> None:
    cfg = AnalysisConfig(model_cache=settings.load({"XDG_CACHE_HOME": str(xdg_cache)}).model_cache,
                         exercise="pushup", workers=1, cache=None)
    result = analyze(str(dev_dir / CLIP), cfg)
    analyzed = result.summary["frames"]["analyzed"]  # type: ignore[index]
    assert result.summary["cache"] == {"result": "off", "frames": {"hits": 0, "misses": analyzed}}
