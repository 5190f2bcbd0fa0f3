"""The one place that reads the environment. Everything below receives plain config objects.

| variable            | default                              | meaning                                  |
|---------------------|--------------------------------------|------------------------------------------|
| XDG_CACHE_HOME      | ~/.cache                             | models and samples go under formcheck/   |
| FORMCHECK_WORKERS   | number of CPU cores                  | inference processes                      |
| FORMCHECK_MAX_SIDE  | 1280                                 | longest side (px) before inference       |
| FORMCHECK_CACHE_MB  | 2048                                 | bound of the on-disk cache               |
| FORMCHECK_MEMORY_CACHE_MB | 256                            | bound of the in-process cache            |
| REDIS_URL           | (none)                               | adds a Redis cache tier                  |
| FORMCHECK_CACHE_TTL | 604800                               | Redis entry lifetime, seconds            |
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pipeline.cache import CacheConfig


@dataclass(frozen=True, slots=True)
class Settings:
    cache_dir: Path
    workers: int
    max_side: int
    cache_mb: int = 2048
    memory_cache_mb: int = 256
    redis_url: str | None = None
    cache_ttl_s: int = 7 * 86400

    def cache(self, enabled: bool = True) -> CacheConfig | None:
        """The cache tiers to use (None with ``enabled=False``, i.e. ``--no-cache``)."""
        if not enabled:
            return None
        return CacheConfig(
            disk_path=self.cache_dir / "cache.sqlite3", memory_bytes=self.memory_cache_mb << 20,
            disk_bytes=self.cache_mb << 20, redis_url=self.redis_url, redis_ttl_s=self.cache_ttl_s,
        )

    @property
    def model_cache(self) -> Path:
        return self.cache_dir / "models"

    @property
    def sample_cache(self) -> Path:
        return self.cache_dir / "samples"


class SettingsError(ValueError):
    """An environment variable holds a value formcheck cannot use."""


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None


def _bounded(env: dict[str, str], name: str, default: int, lo: int, hi: int) -> int:
    value = _int(env, name, default)
    if not lo <= value <= hi:
        raise SettingsError(f"{name} must be {lo}..{hi}, got {value}")
    return value


def load(env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    base = Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return Settings(
        cache_dir=base / "formcheck",
        workers=_bounded(env, "FORMCHECK_WORKERS", os.cpu_count() or 1, 1, 64),
        max_side=_int(env, "FORMCHECK_MAX_SIDE", 1280),
        cache_mb=max(1, _int(env, "FORMCHECK_CACHE_MB", 2048)),
        memory_cache_mb=max(1, _int(env, "FORMCHECK_MEMORY_CACHE_MB", 256)),
        redis_url=env.get("REDIS_URL") or None,
        cache_ttl_s=max(1, _int(env, "FORMCHECK_CACHE_TTL", 7 * 86400)),
    )
