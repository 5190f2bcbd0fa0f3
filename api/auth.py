"""``Authorization: Bearer <key>`` on every route but health, metrics and the schema.

Known keys are remembered for a minute (a status poll should not cost a database round
trip); a revoked key stops working within that minute. ``--open`` skips keys: every caller
is the same anonymous owner.
"""

from __future__ import annotations

import time

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.middleware.authentication import AbstractAuthenticationMiddleware, AuthenticationResult

from .keys import PREFIX, hash_key
from .store import ApiKey

PUBLIC = ["^/health", "^/metrics", "^/schema"]
ANONYMOUS = ApiKey(id="", name="anonymous", key_hash="", created_at=0.0)
KNOWN_S = 60.0
_known: dict[str, tuple[float, ApiKey]] = {}


def _challenge(detail: str) -> NotAuthorizedException:
    return NotAuthorizedException(detail=detail, headers={"WWW-Authenticate": 'Bearer realm="formcheck"'})


class KeyAuth(AbstractAuthenticationMiddleware):
    async def authenticate_request(self, connection: ASGIConnection) -> AuthenticationResult:  # type: ignore[type-arg]
        service = connection.app.state.service
        if service.settings.server.open_mode:
            return AuthenticationResult(user=ANONYMOUS, auth=None)
        header = connection.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        if not header:
            raise _challenge("missing API key: expected an 'Authorization: Bearer fc_...' header "
                             "(create a key with 'formcheck keys create')")
        if scheme.lower() != "bearer" or not key.strip():
            raise _challenge(f"malformed Authorization header: expected 'Bearer fc_...', got a {scheme!r} scheme")
        key = key.strip()
        if not key.startswith(PREFIX):
            raise _challenge(f"invalid API key: expected a key starting with {PREFIX!r}")
        digest = hash_key(key)
        now = time.monotonic()
        hit = _known.get(digest)
        if hit is not None and now - hit[0] < KNOWN_S:
            return AuthenticationResult(user=hit[1], auth=digest)
        found = await service.store.key_by_hash(digest)
        if found is None:
            raise _challenge("invalid API key: no such key (or it was revoked)")
        if len(_known) > 10_000:
            _known.clear()
        _known[digest] = (now, found)
        return AuthenticationResult(user=found, auth=digest)
