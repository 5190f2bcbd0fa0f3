"""In-process tier: an LRU bounded by the total size of its values in bytes."""

from __future__ import annotations

import threading
from collections import OrderedDict

from .base import Stats


class MemoryTier:
    def __init__(self, max_bytes: int = 256 << 20, name: str = "memory") -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be > 0, got {max_bytes}")
        self.name = name
        self.max_bytes = max_bytes
        self.stats = Stats()
        self._data: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    @property
    def size_bytes(self) -> int:
        return self._size

    def get(self, key: str) -> bytes | None:
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self.stats.misses += 1
                return None
            self._data.move_to_end(key)
            self.stats.hits += 1
            return value

    def put(self, key: str, value: bytes) -> None:
        if len(value) > self.max_bytes:
            return  # larger than the whole tier: not worth evicting everything for
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._size -= len(old)
            self._data[key] = value
            self._size += len(value)
            self.stats.puts += 1
            while self._size > self.max_bytes:
                _, dropped = self._data.popitem(last=False)
                self._size -= len(dropped)
                self.stats.evictions += 1

    def delete(self, key: str) -> None:
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._size -= len(old)

    def close(self) -> None:
        with self._lock:
            self._data.clear()
            self._size = 0
