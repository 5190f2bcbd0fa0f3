"""Tiers read nearest first, computed last, filled back on the way out."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .base import Tier


class TieredCache:
    def __init__(self, tiers: Sequence[Tier]) -> None:
        self.tiers = list(tiers)

    def get(self, key: str) -> bytes | None:
        for i, tier in enumerate(self.tiers):
            value = tier.get(key)
            if value is not None:
                for nearer in self.tiers[:i]:
                    nearer.put(key, value)
                return value
        return None

    def put(self, key: str, value: bytes) -> None:
        for tier in self.tiers:
            tier.put(key, value)

    def get_or_compute(self, key: str, compute: Callable[[], bytes]) -> tuple[bytes, bool]:
        """(value, hit): the cached value, or ``compute()`` stored in every tier."""
        value = self.get(key)
        if value is not None:
            return value, True
        value = compute()
        self.put(key, value)
        return value, False

    def delete(self, key: str) -> None:
        for tier in self.tiers:
            tier.delete(key)

    def stats(self) -> dict[str, dict[str, int]]:
        return {t.name: t.stats.as_dict() for t in self.tiers}

    def close(self) -> None:
        for tier in self.tiers:
            tier.close()
