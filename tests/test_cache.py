"""One suite for every cache tier (memory, SQLite disk, real Redis), plus tiering and fallbacks.

Redis is the one CI runs on 127.0.0.1:6379 (``.ci/run`` starts it); a missing server fails here.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from pipeline.cache import DiskTier, MemoryTier, RedisTier, Tier, TieredCache
from pipeline.cache.keys import file_digest, file_key, frame_key

REDIS_URL = os.environ.get("FORMCHECK_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _redis_tier() -> RedisTier:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is needed at {REDIS_URL} (start it: see .ci/run): {exc}")
    return RedisTier(REDIS_URL, ttl_s=60, prefix=f"fc-test-{uuid.uuid4().hex}:")


@pytest.fixture(params=["memory", "disk", "redis"])
def tier(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Tier]:
    t: Tier
    if request.param == "memory":
        t = MemoryTier(1 << 20)
    elif request.param == "disk":
        t = DiskTier(tmp_path / "c.sqlite3", 1 << 20)
    else:
        t = _redis_tier()
    yield t
    t.close()


def test_miss_then_hit(tier: Tier) -> None:
    assert tier.get("k") is None
    tier.put("k", b"value")
    assert tier.get("k") == b"value"
    assert (tier.stats.hits, tier.stats.misses, tier.stats.puts) == (1, 1, 1)


def test_overwrite_and_delete(tier: Tier) -> None:
    tier.put("k", b"one")
    tier.put("k", b"two")
    assert tier.get("k") == b"two"
    tier.delete("k")
    assert tier.get("k") is None


@pytest.mark.parametrize("value", [b"", b"\x00\xff" * 1000, os.urandom(100_000)])
def test_binary_values_round_trip(tier: Tier, value: bytes) -> None:
    tier.put("bin", value)
    assert tier.get("bin") == value


def test_memory_tier_is_bounded_in_bytes_and_evicts_least_recent() -> None:
    t = MemoryTier(max_bytes=1000)
    for i in range(5):
        t.put(f"k{i}", bytes(300))
    t.get("k2")  # recently used survives
    t.put("k5", bytes(300))
    assert t.size_bytes <= 1000
    assert t.get("k2") is not None and t.get("k0") is None
    assert t.stats.evictions >= 3


def test_disk_tier_is_bounded_and_shared_between_instances(tmp_path: Path) -> None:
    a = DiskTier(tmp_path / "c.sqlite3", max_bytes=10_000)
    for i in range(30):
        a.put(f"k{i}", bytes(1000))
    b = DiskTier(tmp_path / "c.sqlite3", max_bytes=10_000)  # another process, same file
    assert b.get("k29") == bytes(1000)
    assert b.get("k0") is None
    assert (tmp_path / "c.sqlite3").stat().st_size < 200_000
    a.close()
    b.close()


def test_disk_tier_on_an_unwritable_path_answers_misses(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    t = DiskTier(blocker / "sub" / "c.sqlite3")
    t.put("k", b"v")
    assert t.get("k") is None and t.stats.errors >= 1


def test_redis_down_is_a_counted_miss_not_an_error() -> None:
    t = RedisTier("redis://127.0.0.1:1/0", timeout_s=0.2, backoff_s=60)
    t.put("k", b"v")
    assert t.get("k") is None
    assert t.get("k") is None
    assert t.stats.errors == 1, "one failure, then quiet during the back-off"
    assert t.stats.extra["skipped"] >= 1


def test_redis_entries_expire() -> None:
    t = _redis_tier()
    t.ttl_s = 1
    t.put("k", b"v")
    ttl = t._client.ttl(t.prefix + "k")  # noqa: SLF001
    assert 0 < ttl <= 1
    t.close()


def test_tiered_reads_nearest_first_and_fills_back(tmp_path: Path) -> None:
    near, far = MemoryTier(1 << 20), DiskTier(tmp_path / "c.sqlite3")
    cache = TieredCache([near, far])
    far.put("k", b"v")
    assert cache.get("k") == b"v"
    assert near.get("k") == b"v", "filled back into the nearer tier"
    calls = []
    value, hit = cache.get_or_compute("new", lambda: calls.append(1) or b"computed")
    assert (value, hit, calls) == (b"computed", False, [1])
    assert cache.get_or_compute("new", lambda: b"again") == (b"computed", True)
    assert far.get("new") == b"computed", "stored in every tier"
    assert set(cache.stats()) == {"memory", "disk"}


def test_keys_depend_on_content_and_parameters(tmp_path: Path) -> None:
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"same bytes")
    b.write_bytes(b"same bytes")
    assert file_digest(a) == file_digest(b)
    assert file_key(file_digest(a), {"fps": 0}) != file_key(file_digest(a), {"fps": 10})
    img = np.zeros((4, 4, 3), np.uint8)
    k1 = frame_key(img, {"model": "m"})
    img2 = img.copy()
    img2[0, 0, 0] = 1
    assert k1 == frame_key(img.copy(), {"model": "m"})
    assert k1 != frame_key(img2, {"model": "m"}) != frame_key(img, {"model": "other"})
    assert k1 != frame_key(img.reshape(2, 8, 3), {"model": "m"}), "shape is part of the key"
