"""Redis tier (when ``REDIS_URL`` is set): values with a TTL, short timeouts.

Redis down or slow never fails an analysis: a failed call counts an error and
answers as a miss, and after a failure the tier stays quiet for ``backoff_s``
before trying again (so a dead server costs one timeout, not one per frame).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from .base import Stats

if TYPE_CHECKING:
    import redis as redis_lib

log = logging.getLogger(__name__)


class RedisTier:
    def __init__(
        self, url: str, ttl_s: int = 7 * 86400, prefix: str = "formcheck:", timeout_s: float = 0.25,
        backoff_s: float = 5.0, name: str = "redis",
    ) -> None:
        self.name = name
        self.ttl_s = ttl_s
        self.prefix = prefix
        self.backoff_s = backoff_s
        self.stats = Stats(extra={"skipped": 0})
        self._down_until = 0.0
        import redis as redis_lib  # only when a Redis tier is configured (the import costs ~0.3 s)

        self._errors: tuple[type[Exception], ...] = (redis_lib.RedisError,)
        self._client: redis_lib.Redis = redis_lib.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry_on_timeout=False,
        )

    def _available(self) -> bool:
        if time.monotonic() < self._down_until:
            self.stats.extra["skipped"] += 1
            return False
        return True

    def _failed(self, what: str, exc: Exception) -> None:
        self.stats.errors += 1
        self._down_until = time.monotonic() + self.backoff_s
        log.warning("redis cache %s failed (%s); falling back for %.0f s", what, type(exc).__name__, self.backoff_s)

    def get(self, key: str) -> bytes | None:
        if not self._available():
            self.stats.misses += 1
            return None
        try:
            value = self._client.get(self.prefix + key)
        except self._errors as exc:
            self._failed("get", exc)
            self.stats.misses += 1
            return None
        if value is None:
            self.stats.misses += 1
            return None
        self.stats.hits += 1
        return bytes(value)  # type: ignore[arg-type]

    def put(self, key: str, value: bytes) -> None:
        if not self._available():
            return
        try:
            self._client.set(self.prefix + key, value, ex=self.ttl_s)
            self.stats.puts += 1
        except self._errors as exc:
            self._failed("put", exc)

    def delete(self, key: str) -> None:
        if not self._available():
            return
        try:
            self._client.delete(self.prefix + key)
        except self._errors as exc:
            self._failed("delete", exc)

    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except self._errors:
            return False

    def close(self) -> None:
        self._client.close()
