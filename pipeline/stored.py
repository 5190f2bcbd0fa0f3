"""Whole-result cache and model resolution: everything :func:`pipeline.analyze.analyze` does before
it needs the features stage, kept free of numba so a caller can answer a cache hit (or start its
inference pool) before the kernels load.
"""

from __future__ import annotations

import dataclasses
import os
import time

from models import registry

from . import __version__
from .cache import TieredCache, shared
from .cache.keys import file_digest, file_key
from .config import AnalysisConfig
from .decode import check_file
from .errors import ModelError
from .infer import InferOptions
from .records import Analysis
from .serialize import analysis_from_bytes, analysis_to_bytes

SCHEMA_VERSION = 1

_RESOLVED: dict[tuple[str | None, str], tuple[registry.ModelSpec, tuple[int, int]]] = {}


def resolve_model(cfg: AnalysisConfig) -> registry.ModelSpec:
    """The model for ``cfg``, verified once per process while the file stays unchanged
    (the CLI resolves it for the pool, then :func:`analyze` again: hash the 13 MB once)."""
    key = (cfg.model, str(cfg.model_cache))
    known = _RESOLVED.get(key)
    if known is not None:
        try:
            st = known[0].path.stat()
            if (st.st_mtime_ns, st.st_size) == known[1]:
                return known[0]
        except OSError:
            pass
    try:
        spec = registry.resolve(cfg.model, cfg.model_cache)
    except registry.ModelError as exc:
        raise ModelError(str(exc)) from None
    st = spec.path.stat()
    _RESOLVED[key] = (spec, (st.st_mtime_ns, st.st_size))
    return spec


def infer_options(cfg: AnalysisConfig, model: registry.ModelSpec) -> InferOptions:
    """The inference options for ``cfg`` (also what a pool's workers warm up with)."""
    return InferOptions(str(model.path), num_poses=cfg.num_poses, model_id=model.id)


def result_key(path: str, cfg: AnalysisConfig, model: registry.ModelSpec) -> str:
    """Cache key of a whole analysis: the file's bytes and every parameter that changes the answer."""
    params = {"v": __version__, "schema": SCHEMA_VERSION, "exercise": cfg.exercise, "fps": cfg.fps,
              "max_side": cfg.max_side, "num_poses": cfg.num_poses, "model": model.id}
    return file_key(file_digest(path), params)


@dataclasses.dataclass(frozen=True, slots=True)
class Lookup:
    """What :func:`lookup` found: ``hit`` (the stored analysis, re-pointed at this file) or None;
    ``key`` to store a computed result under (empty with the cache off)."""

    model: registry.ModelSpec
    cache: TieredCache | None
    key: str
    hit: Analysis | None
    started: float  # perf_counter() when the lookup began


def lookup(path: str, cfg: AnalysisConfig) -> Lookup:
    """Check the file, resolve the model and look the whole result up (with ``cfg.cache``)."""
    t0 = time.perf_counter()
    check_file(path)
    model = resolve_model(cfg)
    cache = shared(cfg.cache) if cfg.cache is not None else None
    key = result_key(path, cfg, model) if cache is not None else ""
    hit = None
    if cache is not None and (stored := cache.get(key)) is not None:
        hit = _replay(analysis_from_bytes(stored), path, time.perf_counter() - t0, cache)
    return Lookup(model, cache, key, hit, t0)


def store(found: Lookup, result: Analysis) -> None:
    """Record the cache outcome in ``result.summary`` and keep the result for next time."""
    report: dict[str, object] = {"result": "miss" if found.cache is not None else "off"}
    frames = result.summary.get("cache")
    if isinstance(frames, dict) and "frames" in frames:
        report["frames"] = frames["frames"]
    result.summary["cache"] = report
    if found.cache is not None:
        found.cache.put(found.key, analysis_to_bytes(result))
        report["tiers"] = found.cache.stats()


def _replay(stored: Analysis, path: str, wall_s: float, cache: TieredCache) -> Analysis:
    """A cached analysis, re-pointed at this file (same bytes, maybe another name)."""
    summary = dict(stored.summary)
    summary["file"] = {**summary["file"], "name": os.path.basename(path)}  # type: ignore[dict-item]
    summary["timing"] = {"wall_s": round(wall_s, 4), "fps": None, "infer_s": 0.0}
    summary["cache"] = {"result": "hit", "tiers": cache.stats()}
    info = dataclasses.replace(stored.info, path=path)
    return dataclasses.replace(stored, info=info, summary=summary)
