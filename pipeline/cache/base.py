"""The cache tier interface and its hit/miss counters.

A tier maps ``str`` keys to ``bytes`` values. Tiers never raise on a backend
failure: a tier that cannot answer reports a miss and counts an error, so a
broken neighbour (Redis down) never fails an analysis.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(slots=True)
class Stats:
    """Counts for one tier: hits, misses, puts, errors (backend failures), evictions."""

    hits: int = 0
    misses: int = 0
    puts: int = 0
    errors: int = 0
    evictions: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "puts": self.puts, "errors": self.errors,
                "evictions": self.evictions, **self.extra}


class Tier(Protocol):
    name: str
    stats: Stats

    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, value: bytes) -> None: ...

    def delete(self, key: str) -> None: ...

    def close(self) -> None: ...
