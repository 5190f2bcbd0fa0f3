"""On-disk tier: one SQLite file under the user's cache directory, bounded in bytes (LRU by access time).

Safe across processes (SQLite locking, WAL); a second ``formcheck analyze`` of the
same file in a new process finds what the first stored. Errors (disk full,
read-only, corrupt file) are counted and answered as misses.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path

from .base import Stats

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    size INTEGER NOT NULL,
    atime REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_atime ON entries (atime);
"""


class DiskTier:
    def __init__(self, path: Path, max_bytes: int = 2 << 30, name: str = "disk") -> None:
        self.name = name
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.stats = Stats()
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._total = 0  # bytes stored, as this process last knew it
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=10.0, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            self._total = int(db.execute("SELECT COALESCE(SUM(size), 0) FROM entries").fetchone()[0])
            self._db = db
        except (sqlite3.Error, OSError) as exc:
            log.warning("disk cache at %s unavailable (%s); continuing without it", self.path, exc)
            self.stats.errors += 1

    def get(self, key: str) -> bytes | None:
        if self._db is None:
            self.stats.misses += 1
            return None
        try:
            with self._lock:
                row = self._db.execute("SELECT value FROM entries WHERE key = ?", (key,)).fetchone()
                if row is not None:
                    self._db.execute("UPDATE entries SET atime = ? WHERE key = ?", (time.time(), key))
        except sqlite3.Error as exc:
            log.warning("disk cache read failed: %s", exc)
            self.stats.errors += 1
            self.stats.misses += 1
            return None
        if row is None:
            self.stats.misses += 1
            return None
        self.stats.hits += 1
        return bytes(row[0])

    def put(self, key: str, value: bytes) -> None:
        if self._db is None or len(value) > self.max_bytes:
            return
        try:
            with self._lock:
                self._db.execute(
                    "INSERT OR REPLACE INTO entries (key, value, size, atime) VALUES (?, ?, ?, ?)",
                    (key, value, len(value), time.time()),
                )
                self.stats.puts += 1
                self._total += len(value)
                if self._total > self.max_bytes:
                    self._evict()
        except sqlite3.Error as exc:
            log.warning("disk cache write failed: %s", exc)
            self.stats.errors += 1

    def _evict(self) -> None:
        """Drop least recently used entries until the file holds at most 90% of the bound."""
        assert self._db is not None
        total = int(self._db.execute("SELECT COALESCE(SUM(size), 0) FROM entries").fetchone()[0])
        target = int(self.max_bytes * 0.9)
        while total > target:
            rows = self._db.execute("SELECT key, size FROM entries ORDER BY atime LIMIT 64").fetchall()
            if not rows:
                break
            for key, size in rows:
                self._db.execute("DELETE FROM entries WHERE key = ?", (key,))
                total -= size
                self.stats.evictions += 1
                if total <= target:
                    break
        self._total = total

    def delete(self, key: str) -> None:
        if self._db is None:
            return
        try:
            with self._lock:
                self._db.execute("DELETE FROM entries WHERE key = ?", (key,))
        except sqlite3.Error:
            self.stats.errors += 1

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
