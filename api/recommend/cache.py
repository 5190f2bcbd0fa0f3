"""Model answers in the service's cache tiers (memory, disk, Redis when configured), with a TTL.

The tiers keep their own lifetimes (the Redis tier expires entries after FORMCHECK_CACHE_TTL),
so each value carries its own expiry: ``{"exp": epoch seconds, "rec": {...}}``; an expired
entry reads as a miss and is deleted. The tiers' API is synchronous: calls run in a thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from pipeline.cache import TieredCache

log = logging.getLogger(__name__)


class RecommendCache:
    def __init__(self, tiers: TieredCache | None, ttl_s: int) -> None:
        self.tiers, self.ttl_s = tiers, ttl_s

    def get_sync(self, key: str) -> dict[str, Any] | None:
        if self.tiers is None:
            return None
        raw = self.tiers.get(key)
        if raw is None:
            return None
        try:
            entry = json.loads(raw)
            exp, rec = float(entry["exp"]), entry["rec"]
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable recommendation cache entry dropped")
            self.tiers.delete(key)
            return None
        if exp <= time.time() or not isinstance(rec, dict):
            self.tiers.delete(key)
            return None
        return rec

    def put_sync(self, key: str, rec: dict[str, Any]) -> None:
        if self.tiers is not None:
            self.tiers.put(key, json.dumps({"exp": time.time() + self.ttl_s, "rec": rec}).encode())

    async def get(self, key: str) -> dict[str, Any] | None:
        return await asyncio.to_thread(self.get_sync, key) if self.tiers is not None else None

    async def put(self, key: str, rec: dict[str, Any]) -> None:
        if self.tiers is not None:
            await asyncio.to_thread(self.put_sync, key, rec)
