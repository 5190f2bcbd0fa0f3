"""Per-key rate limits on Litestar's rate-limit middleware.

Two limits, each with its own store (a shared store would mix their histories): every
request, and the expensive posts (analyses; recommendations have their own). A caller is its API key (the
key's hash, so it never reaches the store in clear) or, without a key, its address. With
Redis configured the stores are Redis, so every API worker process counts together.

Litestar's windows are a second, minute, hour or day; ``window_s`` allows any (15 minutes).
On Redis a request is checked and recorded in one atomic step (``RedisLimitStore.take``).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from time import time
from typing import Any

import anyio
from litestar import Request
from litestar.exceptions import TooManyRequestsException
from litestar.middleware.rate_limit import CacheObject, RateLimitConfig, RateLimitMiddleware, get_remote_address
from litestar.serialization import decode_json, encode_json
from litestar.stores.base import Store
from litestar.stores.memory import MemoryStore
from litestar.stores.redis import RedisStore
from litestar.types import Empty, EmptyType, Receive, Scope, Send
from redis.asyncio import Redis
from redis.exceptions import RedisError

from . import metrics
from .settings import Limit

log = logging.getLogger(__name__)

POST_PATHS = ("/v1/analyses",)  # recommendations have their own limit (api/recommend/routes.py)
MAX_LOCKS = 10_000
REDIS_TIMEOUT_S = 0.5  # per Redis call of a limit check


def caller(request: Request[Any, Any, Any]) -> str:
    header = request.headers.get("authorization", "")
    if header:
        return "key:" + hashlib.sha256(header.encode()).hexdigest()[:32]
    return "addr:" + get_remote_address(request)


class WindowLimit(RateLimitMiddleware):
    """Litestar's middleware with a window of any length (``config.window_s``) and a lock per
    caller instead of one for all: Litestar's single lock is held across the store's awaits, so
    with many callers every request queued behind all the others (a convoy: seconds at 100
    concurrent users). A caller's own requests still update its history one at a time."""

    config: WindowConfig
    _locks: dict[str, anyio.Lock]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = scope["litestar_app"]
        request: Request[Any, Any, Any] = app.request_class(scope)
        store = self.config.get_store_from_app(app)
        if await self.should_check_request(request=request):
            key = self.cache_key_from_request(request)
            locks = self.__dict__.setdefault("_locks", {})
            if len(locks) > MAX_LOCKS:
                for k in [k for k, lk in locks.items() if not lk.locked()]:
                    del locks[k]
            lock = locks.setdefault(key, anyio.Lock())
            async with lock:
                if isinstance(store, RedisLimitStore):  # shared by processes: check and record in one step
                    try:
                        allowed, cache_object = await store.take(key, int(time()), self.config.window_s,
                                                                 self.max_requests)
                    except (RedisError, OSError, TimeoutError) as exc:  # Redis down: count in this process
                        store = self._fallback(exc)
                if not isinstance(store, RedisLimitStore):
                    cache_object = await self.retrieve_cached_history(key, store)
                    allowed = len(cache_object.history) < self.max_requests
                if not allowed:
                    raise TooManyRequestsException(
                        headers=self.create_response_headers(cache_object=cache_object)
                        if self.config.set_rate_limit_headers else None
                    )
                if not isinstance(store, RedisLimitStore):
                    await self.set_cached_history(key=key, cache_object=cache_object, store=store)
            if self.config.set_rate_limit_headers:
                send = self.create_send_wrapper(send=send, cache_object=cache_object)
        await self.app(scope, receive, send)

    def _fallback(self, exc: BaseException) -> Store:
        """This process's memory store, while Redis is unreachable: the limit still holds per
        process (not across them) and requests are served, not failed."""
        fallback = self.__dict__.get("_memory")
        if fallback is None:
            fallback = self.__dict__.setdefault("_memory", MemoryStore())
        now = time()
        if now - self.__dict__.get("_warned", 0.0) > 60:  # once a minute, not per request
            self.__dict__["_warned"] = now
            log.warning("rate limits: Redis unreachable (%s: %s); counting in this process until it is back",
                        type(exc).__name__, exc)
        metrics.LIMIT_FALLBACKS.inc()
        return fallback  # type: ignore[no-any-return]

    async def retrieve_cached_history(self, key: str, store: Store) -> CacheObject:
        now = int(time())
        raw = await store.get(key)
        if raw:
            obj = CacheObject(**decode_json(value=raw))
            if obj.reset > now:
                return obj
        return CacheObject(history=[], reset=now + self.config.window_s)

    async def set_cached_history(self, key: str, cache_object: CacheObject, store: Store) -> None:
        cache_object.history = [int(time()), *cache_object.history]
        await store.set(key, encode_json(cache_object), expires_in=max(1, cache_object.reset - int(time())))

    def create_response_headers(self, cache_object: CacheObject) -> dict[str, str]:
        used = len(cache_object.history)
        reset = str(max(0, cache_object.reset - int(time())))
        headers = {
            self.config.rate_limit_policy_header_key: f"{self.max_requests}; w={self.config.window_s}",
            self.config.rate_limit_limit_header_key: str(self.max_requests),
            self.config.rate_limit_remaining_header_key: str(max(0, self.max_requests - used)),
            self.config.rate_limit_reset_header_key: reset,
        }
        if used >= self.max_requests:
            headers["Retry-After"] = reset
        return headers


# KEYS[1]: a caller's history (Litestar's CacheObject as JSON); ARGV: now, window (s), limit.
# Returns {1 if this request is allowed (and recorded), the history after it}.
_TAKE = b"""
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local history, reset = {}, now + window
local raw = redis.call('GET', KEYS[1])
if raw then
  local kept = cjson.decode(raw)
  if kept.reset > now then history, reset = kept.history, kept.reset end
end
if #history >= limit then
  return {0, cjson.encode({history = history, reset = reset})}
end
table.insert(history, 1, now)
local value = cjson.encode({history = history, reset = reset})
redis.call('SET', KEYS[1], value, 'EX', math.max(1, reset - now))
return {1, value}
"""


class RedisLimitStore(RedisStore):
    """Litestar's Redis store plus one atomic step for the limits: read a caller's history, check
    it and record the request in one Lua script. Read, then written back (Litestar's way), two API
    processes both let the last allowed request through and overwrite each other's history: 15-70
    requests passed a limit of 10-40 under a concurrent burst."""

    __slots__ = ("_take",)

    def __init__(self, redis: Redis, namespace: str | None | EmptyType = Empty,
                 handle_client_shutdown: bool = False) -> None:
        super().__init__(redis, namespace, handle_client_shutdown)
        self._take = self._redis.register_script(_TAKE)

    @classmethod
    def with_url(cls, url: str, namespace: str, timeout_s: float = REDIS_TIMEOUT_S) -> RedisLimitStore:
        """A store on its own client with short timeouts: a Redis that hangs (rather than dies)
        must not hang requests; past the timeout the limit is counted in process."""
        client = Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        return cls(client, namespace=namespace, handle_client_shutdown=True)

    async def take(self, key: str, now: int, window_s: int, limit: int) -> tuple[bool, CacheObject]:
        allowed, raw = await self._take(keys=[self._make_key(key)], args=[now, window_s, limit])
        return bool(allowed), CacheObject(**decode_json(value=raw))


class PostLimit(WindowLimit):
    """The same, for the expensive posts only (its own history key)."""


@dataclass
class WindowConfig(RateLimitConfig):
    window_s: int = 60


async def _is_post(request: Request[Any, Any, Any]) -> bool:
    return request.method == "POST" and request.url.path.rstrip("/") in POST_PATHS


def configs(overall: Limit, posts: Limit) -> list[WindowConfig]:
    public = ["^/health", "^/metrics", "^/schema"]
    return [
        WindowConfig(rate_limit=("second", overall.count), window_s=overall.window_s, middleware_class=WindowLimit,
                     identifier_for_request=caller, exclude=public, store="rate_limit"),
        WindowConfig(rate_limit=("second", posts.count), window_s=posts.window_s, middleware_class=PostLimit,
                     identifier_for_request=caller, check_throttle_handler=_is_post, exclude=public,
                     store="rate_limit_posts"),
    ]
