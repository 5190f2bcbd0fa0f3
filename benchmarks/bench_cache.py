"""Cache costs: key hashing, and get/put on every tier with a frame's and a result's worth of bytes.

    python -m pytest benchmarks/bench_cache.py --benchmark-only -q

- ``test_frame_key``: ``frame_key`` on 1280x720x3 and 640x360x3 uint8 frames.
- ``test_file_digest``: ``file_digest`` on a 10 MB file (page cache warm after the first read).
- ``test_get`` / ``test_put``: memory, disk (SQLite in a tmp dir) and Redis
  (redis://127.0.0.1:6379/15, or ``$FORMCHECK_TEST_REDIS_URL``, with a unique prefix, cleaned up)
  with 1 KB (one frame's landmarks) and 1 MB (a whole result) values. ``put`` overwrites one key.

Tiers swallow backend errors and answer misses, so each case checks the tier answered
(hit for ``get``, no error counted): a dead Redis must fail the bench, not time fast misses.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
from pytest_benchmark.fixture import BenchmarkFixture

from pipeline.cache import DiskTier, MemoryTier, RedisTier, Tier
from pipeline.cache.keys import file_digest, frame_key

REDIS_URL = os.environ.get("FORMCHECK_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
FRAME_PARAMS: dict[str, object] = {"model": "full-" + "0" * 16, "num_poses": 1, "max_side": 960}
VALUE_SIZES = {"1KB": 1 << 10, "1MB": 1 << 20}
FILE_BYTES = 10 * 1000 * 1000


@pytest.mark.parametrize("shape", [(720, 1280, 3), (360, 640, 3)], ids=["1280x720", "640x360"])
def test_frame_key(benchmark: BenchmarkFixture, shape: tuple[int, int, int]) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    benchmark.group = "hash"
    key = benchmark(frame_key, rgb, FRAME_PARAMS)
    assert key.startswith("f:")


def test_file_digest(benchmark: BenchmarkFixture, tmp_path: Path) -> None:
    path = tmp_path / "clip.bin"
    path.write_bytes(np.random.default_rng(0).bytes(FILE_BYTES))
    file_digest(path)  # warm the page cache: time the hashing, not the disk
    benchmark.group = "hash"
    assert len(benchmark(file_digest, path)) == 32


def _redis_tier() -> RedisTier:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is needed at {REDIS_URL}: {exc}")
    finally:
        client.close()
    return RedisTier(REDIS_URL, ttl_s=600, prefix=f"fc-bench-{uuid.uuid4().hex}:", timeout_s=2.0)


@pytest.fixture(params=["memory", "disk", "redis"])
def tier(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Tier]:
    t: Tier
    if request.param == "memory":
        t = MemoryTier()
    elif request.param == "disk":
        t = DiskTier(tmp_path / "cache.sqlite")
    else:
        t = _redis_tier()
    yield t
    for key in ("k-get", "k-put"):
        t.delete(key)
    t.close()


@pytest.mark.parametrize("size", VALUE_SIZES)
def test_get(benchmark: BenchmarkFixture, tier: Tier, size: str) -> None:
    value = os.urandom(VALUE_SIZES[size])
    tier.put("k-get", value)
    benchmark.group = f"get {size}"
    got = benchmark(tier.get, "k-get")
    assert got == value, f"{tier.name} answered a miss: {tier.stats.as_dict()}"
    assert tier.stats.errors == 0 and tier.stats.misses == 0, tier.stats.as_dict()


@pytest.mark.parametrize("size", VALUE_SIZES)
def test_put(benchmark: BenchmarkFixture, tier: Tier, size: str) -> None:
    value = os.urandom(VALUE_SIZES[size])
    benchmark.group = f"put {size}"
    benchmark(tier.put, "k-put", value)
    assert tier.stats.errors == 0, tier.stats.as_dict()
    assert tier.get("k-put") == value
