"""The Litestar application: routes, middleware, errors, lifecycle.

Everything here is Litestar's own machinery, configured: rate limiting (``limits``),
compression (gzip, brotli), CORS, Prometheus, problem details (RFC 9457), OpenAPI at
``/schema``. Two small pieces are ours: ``X-Response-Time`` and the security headers.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from litestar import Litestar, Request, Response
from litestar.config.compression import CompressionConfig
from litestar.config.cors import CORSConfig
from litestar.datastructures import MutableScopeHeaders
from litestar.exceptions import HTTPException, ValidationException
from litestar.handlers import HTTPRouteHandler
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.problem_details import ProblemDetailsConfig, ProblemDetailsException, ProblemDetailsPlugin
from litestar.plugins.prometheus import PrometheusConfig
from litestar.stores.base import Store
from litestar.stores.memory import MemoryStore
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from . import limits
from .analyses import Analyses
from .auth import PUBLIC, KeyAuth
from .frames import Frames
from .health import Health, Metrics
from .recommend.engine import Recommender
from .recommend.routes import Recommendations
from .recommend.routes import limit_config as recommend_limit
from .service import Service
from .settings import Settings
from .store import unavailable

log = logging.getLogger(__name__)

# Set on every response, errors included (Litestar's response_headers skip exception responses).
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
# HTML is served only by the OpenAPI viewers under /schema, which load their script from a CDN
HTML_CSP = ("default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://unpkg.com; "
            "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com https://unpkg.com; "
            "img-src 'self' data: https://cdn.jsdelivr.net; font-src https://fonts.gstatic.com; connect-src 'self'; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
API_CSP = "default-src 'none'; frame-ancestors 'none'"
PROBLEM = "application/problem+json"
RETRY_DB_S = 5  # Retry-After when the database is down or restarting


def response_clock(app: ASGIApp) -> ASGIApp:
    """Notes when the request arrived (the outermost middleware), for ``X-Response-Time``."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        scope.setdefault("state", {})["formcheck_t0"] = time.perf_counter()
        await app(scope, receive, send)

    return middleware


async def stamp(message: Message, scope: Scope) -> None:
    """Before every response start, error responses included (they are sent outside the
    middleware stack): ``X-Response-Time`` and the security headers, a CSP among them."""
    if message["type"] != "http.response.start":
        return
    headers = MutableScopeHeaders.from_message(message)
    t0 = scope.get("state", {}).get("formcheck_t0")
    if t0 is not None:
        headers["X-Response-Time"] = f"{(time.perf_counter() - t0) * 1000:.1f}ms"
    html = "text/html" in (headers.get("content-type") or "")
    headers["Content-Security-Policy"] = HTML_CSP if html else API_CSP
    for name, value in SECURITY_HEADERS.items():
        headers[name] = value


PART_LIMIT = 1000  # parts in one multipart body (a video and two fields; up to 16 images)
_BODY_ERRORS = ("Invalid multipart/form-data", "Unexpected eof in multipart/form-data", "JSON is malformed")


def _expected_body(request: Request[Any, Any, Any]) -> str:
    """The media type the matched route reads its body as (``data``'s ``Body``)."""
    handler = request.scope.get("route_handler")
    data = handler.parsed_fn_signature.parameters.get("data") if handler is not None else None
    media = getattr(getattr(data, "kwarg_definition", None), "media_type", None)
    return str(getattr(media, "value", media) or "application/json")


def _detail(request: Request[Any, Any, Any], exc: HTTPException) -> tuple[int, str]:
    """Status and detail; Litestar's own terse errors (routing, body parsing) say what was
    expected and what came."""
    status, detail = exc.status_code, str(exc.detail)
    method, path = request.method, request.url.path
    if isinstance(exc, ValidationException) and isinstance(exc.extra, list):
        parts = [f"{e.get('key') or 'body'}: {e.get('message')}" for e in exc.extra if isinstance(e, dict)]
        detail = f"{detail}: {'; '.join(parts)}" if parts else detail
    elif status == 400 and detail == "Request Entity Too Large":  # Litestar 2 keeps its part limit a 400
        status, detail = 413, (f"the multipart body has more than {PART_LIMIT} parts: expected at most "
                               f"{PART_LIMIT} (a file and its fields)")
    elif status == 400 and detail.startswith(_BODY_ERRORS):
        got = request.headers.get("content-type") or "none"
        detail = f"{detail}: expected a {_expected_body(request)} body; got content-type {got!r}"
    elif status == 404 and detail == HTTPStatus.NOT_FOUND.phrase:
        detail = f"no route {method} {path!r}: expected a path listed in /schema/openapi.json"
    elif status == 405:
        allowed = (exc.headers or {}).get("allow", "")
        detail = f"method {method} is not allowed on {path!r}: expected one of {allowed or 'the documented methods'}"
    elif status == 413 and "limit" not in detail:  # Litestar's body-size check
        detail = "the request body is larger than the upload limit (FORMCHECK_MAX_UPLOAD_MB): expected a smaller file"
    return status, detail


def _problem(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    status, detail = _detail(request, exc)
    headers = dict(exc.headers or {})
    if status == 429:
        headers.setdefault("Retry-After", headers.get("RateLimit-Reset", "60"))
        detail = "rate limit exceeded: retry after the number of seconds in Retry-After"
    extra = exc.extra if isinstance(exc.extra, dict) else None
    return ProblemDetailsException(status_code=status, title=HTTPStatus(status).phrase, detail=detail,
                                   headers=headers, extra=extra).to_response(request)


def _not_text(request: Request[Any, Any, Any], exc: UnicodeDecodeError) -> Response[dict[str, Any]]:
    """Litestar decodes a multipart part without a filename as UTF-8 text, and lets this through."""
    return _problem(request, HTTPException(status_code=400, detail=(
        f"a multipart field is not UTF-8 text ({exc.reason} at byte {exc.start}): expected text fields, "
        "and files as parts with a filename")))


def _crash(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    if unavailable(exc):  # the database is down or restarting: the client should come back, not give up
        log.warning("%s %s: the database is unavailable (%s: %s)", request.method, request.url.path,
                    type(exc).__name__, exc)
        body = {"status": 503, "title": "Service Unavailable",
                "detail": f"the database is unavailable ({type(exc).__name__}); retry after the seconds in "
                          f"Retry-After"}
        return Response(body, status_code=503, media_type=PROBLEM, headers={"Retry-After": str(RETRY_DB_S)})
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    body = {"status": 500, "title": "Internal Server Error",
            "detail": f"the server failed on this request ({type(exc).__name__}); it was logged"}
    return Response(body, status_code=500, media_type=PROBLEM)


def create_app(settings: Settings, workers: int | None = None, warm: bool = True, render_video: bool = True,
               run_jobs: bool = True, stores: dict[str, Store] | None = None) -> Litestar:
    """The app; its lifespan starts the store, the pool (warm) and the job runner."""
    srv = settings.server
    service = Service(settings, workers or settings.workers, warm=warm, render_video=render_video, run_jobs=run_jobs)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.service = service
        await service.start()
        app.state.recommender = Recommender(settings.recommend, service.cache)
        try:
            yield
        finally:
            await app.state.recommender.close()
            await service.stop()

    if stores is None:
        stores = _stores(settings)
    middleware: list[Any] = [response_clock]
    middleware += [c.middleware for c in limits.configs(srv.rate_limit, srv.post_rate_limit)]
    middleware.append(recommend_limit(settings.recommend.rate_limit).middleware)
    middleware.append(DefineMiddleware(KeyAuth, exclude=PUBLIC))
    prometheus = PrometheusConfig(app_name="formcheck", prefix="formcheck", group_path=True,
                                  exclude=["^/metrics"])
    middleware.insert(1, prometheus.middleware)
    app = Litestar(
        route_handlers=[Analyses, Frames, Health, Metrics, Recommendations],
        lifespan=[lifespan],
        middleware=middleware,
        stores=stores,
        plugins=[ProblemDetailsPlugin(ProblemDetailsConfig())],
        exception_handlers={HTTPException: _problem, UnicodeDecodeError: _not_text, Exception: _crash},
        compression_config=CompressionConfig(backend="brotli", brotli_gzip_fallback=True, minimum_size=500,
                                             exclude=["^/v1/analyses/[^/]+/events$", r"\.mp4$", r"\.png$"]),
        cors_config=CORSConfig(allow_origins=list(srv.cors_origins), allow_headers=["Authorization", "Content-Type"],
                               expose_headers=["Location", "X-Cache", "X-Response-Time", "Retry-After",
                                               "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"])
        if srv.cors_origins else None,
        openapi_config=OpenAPIConfig(
            title="formcheck", version="1", path="/schema", security=[{"ApiKey": []}],
            components=Components(security_schemes={"ApiKey": SecurityScheme(
                type="http", scheme="bearer", bearer_format="fc_<id>_<secret>",
                description="a key from 'formcheck keys create'")}),
            description="Pose analysis of workout videos: reps, range of motion, tempo."),
        request_max_body_size=(srv.max_upload_mb << 20) + (1 << 20),
        multipart_form_part_limit=PART_LIMIT,
        before_send=[stamp],
        logging_config=None,  # logs.configure sets up logging once per process
    )
    _document_errors(app)
    return app


@dataclass
class Problem:
    """RFC 9457 problem details: every error is answered so (``application/problem+json``)."""

    status: int
    title: str
    detail: str


# Answers a route gives without raising (so its ``raises`` cannot say): health.py's readiness
# is 503 with the same checks when something is not ready.
NOT_RAISED = {"/health/ready": {503: ResponseSpec(dict[str, Any], generate_examples=False,
                                                  description="not ready: the same checks, at least one failing")}}


def _document_errors(app: Litestar) -> None:
    """Every error a route can answer in its OpenAPI responses, as problem details: what it
    declares in ``raises``, 400 where it reads parameters or a body (and 413 for a body), and,
    behind the key check and the rate limits (every route but the public ones), 401 and 429.
    Runs before the document is first built (Litestar builds it on first use)."""
    public = re.compile("|".join(PUBLIC))
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            if not isinstance(handler, HTTPRouteHandler) or not handler.include_in_schema:
                continue
            codes = {exc.status_code for exc in handler.raises or ()}
            params = set(handler.parsed_fn_signature.parameters) - {"request", "self"}
            if params or "{" in route.path:
                codes.add(400)
            if "data" in params:
                codes.add(413)
            if public.match(route.path):
                handler.security = [{}]  # no key needed
            else:
                codes |= {401, 429}
            problems = {code: ResponseSpec(Problem, media_type=PROBLEM, generate_examples=False,
                                           description=HTTPStatus(code).description) for code in sorted(codes)}
            handler.responses = {**problems, **(handler.responses or {}), **NOT_RAISED.get(route.path, {})}


def _stores(settings: Settings) -> dict[str, Store]:
    """The rate limits' stores: Redis (shared by every worker process) when configured."""
    if settings.redis_url:
        return {name: limits.RedisLimitStore.with_url(settings.redis_url, namespace=f"formcheck:{name}")
                for name in ("rate_limit", "rate_limit_posts", "rate_limit_recommend")}
    return {"rate_limit": MemoryStore(), "rate_limit_posts": MemoryStore(), "rate_limit_recommend": MemoryStore()}
