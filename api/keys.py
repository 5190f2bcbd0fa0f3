"""API keys: ``fc_<id>_<secret>``; the store keeps only the SHA-256 of the whole key.

The secret is 32 random bytes, so a fast hash is enough (nothing to brute-force); the id
names the key in logs and owns its jobs without revealing anything.
"""

from __future__ import annotations

import hashlib
import secrets
import time

from .store import ApiKey

PREFIX = "fc_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def new_key(name: str) -> tuple[str, ApiKey]:
    """(the key to hand out once, its record)."""
    key_id = secrets.token_hex(6)
    key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    return key, ApiKey(id=key_id, name=name, key_hash=hash_key(key), created_at=time.time())
