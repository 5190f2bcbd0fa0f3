"""Which cache tiers to open: a plain, picklable record (it travels to inference workers)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .disk import DiskTier
from .memory import MemoryTier
from .redis_tier import RedisTier
from .tiered import TieredCache


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """disk_path: the SQLite file of the disk tier (None: no disk tier).
    redis_url: the Redis tier (None: none). Sizes in bytes, TTL in seconds."""

    disk_path: Path | None
    memory_bytes: int = 256 << 20
    disk_bytes: int = 2 << 30
    redis_url: str | None = None
    redis_ttl_s: int = 7 * 86400


_OPEN: dict[tuple[CacheConfig, int | None], TieredCache] = {}


def shared(cfg: CacheConfig, memory_bytes: int | None = None) -> TieredCache:
    """This process's cache for ``cfg``, opened on first use and kept (pools, workers, servers)."""
    key = (cfg, memory_bytes)
    if key not in _OPEN:
        _OPEN[key] = open_cache(cfg, memory_bytes)
    return _OPEN[key]


def open_cache(cfg: CacheConfig, memory_bytes: int | None = None) -> TieredCache:
    tiers: list[MemoryTier | DiskTier | RedisTier] = [MemoryTier(memory_bytes or cfg.memory_bytes)]
    if cfg.disk_path is not None:
        tiers.append(DiskTier(cfg.disk_path, cfg.disk_bytes))
    if cfg.redis_url:
        tiers.append(RedisTier(cfg.redis_url, cfg.redis_ttl_s))
    return TieredCache(tiers)
