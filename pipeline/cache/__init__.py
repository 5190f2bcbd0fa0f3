"""Content-keyed caches: memory (LRU in bytes) -> disk (SQLite, bounded) -> Redis (TTL, optional).

Keys come from :mod:`pipeline.cache.keys` (xxh3-128 of content plus parameters).
"""

from .base import Stats, Tier
from .config import CacheConfig, open_cache, shared
from .disk import DiskTier
from .memory import MemoryTier
from .redis_tier import RedisTier
from .tiered import TieredCache

__all__ = ["CacheConfig", "open_cache", "shared", "DiskTier", "MemoryTier", "RedisTier", "Stats", "Tier", "TieredCache"]
