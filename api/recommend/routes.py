"""``POST /v1/recommendations``: advice for the next session, built from a measured set.

Body: ``analysis_id`` (a finished analysis of the caller's key) or ``analysis`` (the summary
JSON itself), ``goal``, ``level`` (default intermediate), ``notes``. Answers 200 with the
recommendation and ``X-Cache: HIT|MISS``; 422 for unusable input, 404 for an analysis the key
does not own, 409 for one that is not done. The model failing is never an error: the rules
answer instead (``source: rules``, ``fallback`` says why).

Its own rate limit (FORMCHECK_RECOMMEND_RATE_LIMIT, default 10/1m per key) is a middleware
beside the API's two (``api.limits``), with its own store.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from litestar import Controller, Request, Response, post
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import Body
from litestar.status_codes import HTTP_200_OK

from ..limits import WindowConfig, WindowLimit, caller
from ..settings import Limit
from .engine import Recommender
from .prompt import normalize
from .schema import DEFAULT_LEVEL, GOALS, LEVELS, RequestError, parse_choice, parse_notes

PATH = "/v1/recommendations"
FIELDS = ("analysis_id", "analysis", "goal", "level", "notes")
STORE = "rate_limit_recommend"


class Unprocessable(ClientException):
    status_code = 422


class Conflict(ClientException):
    status_code = 409


class RecommendLimit(WindowLimit):
    """The recommendation posts' own limit (its own history key and store)."""


async def _is_recommend(request: Request[Any, Any, Any]) -> bool:
    return request.method == "POST" and request.url.path.rstrip("/") == PATH


def limit_config(limit: Limit) -> WindowConfig:
    return WindowConfig(rate_limit=("second", limit.count), window_s=limit.window_s, middleware_class=RecommendLimit,
                        identifier_for_request=caller, check_throttle_handler=_is_recommend,
                        exclude=["^/health", "^/metrics", "^/schema"], store=STORE)


async def _analysis(request: Request[Any, Any, Any], body: dict[str, Any]) -> Any:
    has_id, has_doc = body.get("analysis_id") is not None, body.get("analysis") is not None
    if has_id == has_doc:
        raise RequestError("expected exactly one of analysis_id (a finished analysis of this API key) or analysis "
                           f"(its result JSON); got {'both' if has_id else 'neither'}")
    if has_doc:
        return body["analysis"]
    job_id = body["analysis_id"]
    if not isinstance(job_id, str) or not job_id.strip():
        raise RequestError(f"analysis_id must be a string (an id from POST /v1/analyses); got {job_id!r}")
    job = await request.app.state.service.store.get_job(job_id, request.user.id)
    if job is None:
        raise NotFoundException(detail=f"no analysis {job_id!r} for this API key")
    if job.status != "done" or not job.result:
        raise Conflict(detail=f"analysis {job_id} is {job.status}: a recommendation needs a "
                              "finished analysis (status done)")
    return json.loads(job.result)


class Recommendations(Controller):
    path = PATH
    tags = ["recommendations"]

    @post("/", status_code=HTTP_200_OK, summary="Recommendations for the next session, from a measured set",
          raises=[NotFoundException, Conflict, Unprocessable])
    async def create(
        self, request: Request[Any, Any, Any],
        data: Annotated[dict[str, Any], Body(
            description="analysis_id (a finished analysis of this key) or analysis (its result JSON); goal: "
                        f"{'|'.join(GOALS)}; level: {'|'.join(LEVELS)} (default {DEFAULT_LEVEL}); notes (optional)")],
    ) -> Response[dict[str, Any]]:
        recommender: Recommender = request.app.state.recommender
        try:
            extra = sorted(set(data) - set(FIELDS))
            if extra:
                raise RequestError(f"unexpected field(s) {', '.join(map(repr, extra))}: expected "
                                   f"{', '.join(FIELDS)}")
            goal = parse_choice(data, "goal", GOALS)
            level = parse_choice(data, "level", LEVELS, DEFAULT_LEVEL)
            notes = parse_notes(data.get("notes"))
            inputs = normalize(await _analysis(request, data))
        except RequestError as exc:
            raise Unprocessable(detail=str(exc)) from None
        result = await recommender.recommend(inputs, goal, level, notes)
        return Response(result.body, headers={"X-Cache": "HIT" if result.cached else "MISS"})
