"""Cache keys: xxh3-128 of content plus the parameters that change the answer.

- ``file_key``: the uploaded bytes + analysis parameters -> a whole result.
- ``frame_key``: the decoded pixels (after downscale) + model id + inference
  parameters -> one frame's landmarks; trimmed or re-encoded-identical copies
  of a clip share frames.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xxhash

SCHEMA = "1"  # bump when a cached value's layout or meaning changes


def _params(params: dict[str, object]) -> bytes:
    return json.dumps(params, sort_keys=True, default=str).encode()


def file_digest(path: str | Path, block: int = 1 << 20) -> str:
    """xxh3-128 hex digest of a file's bytes."""
    h = xxhash.xxh3_128()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(block), b""):
            h.update(chunk)
    return h.hexdigest()


def file_key(digest: str, params: dict[str, object]) -> str:
    h = xxhash.xxh3_128(SCHEMA.encode() + b"|file|" + digest.encode() + b"|" + _params(params))
    return "a:" + h.hexdigest()


def frame_key(rgb: np.ndarray, params: dict[str, object]) -> str:
    h = xxhash.xxh3_128()
    h.update(SCHEMA.encode() + b"|frame|" + str(rgb.shape).encode() + _params(params))
    h.update(np.ascontiguousarray(rgb).data)
    return "f:" + h.hexdigest()
