"""``POST /v1/frames``: landmarks and joint angles of one image (or a small batch), synchronously.

The image bytes are hashed here (xxh3-128 with the model and parameters): a repeated
image is answered from the cache without decoding. Otherwise the still worker (a process of
its own, so a frame never waits behind a video's chunks; a pool worker when it is busy) decodes
it and runs the model (:func:`pipeline.still.run_still`, with its own per-pixel cache), and this
process turns the landmarks into angles in a thread.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from typing import Annotated, Any

import numpy as np
import xxhash
from litestar import Controller, Request, Response, post
from litestar.datastructures import UploadFile
from litestar.enums import RequestEncodingType
from litestar.exceptions import ClientException, ServiceUnavailableException
from litestar.openapi.spec import OpenAPIType, Schema
from litestar.params import Body

from pipeline.errors import FormcheckError
from pipeline.still import IDLE_THREADS, NotAnImage, StillJob, StillResult, check_image, image_kind, run_still

from . import metrics
from .analyses import TooLarge, Unprocessable
from .service import Service

FRAME_SCHEMA = "frames-v1"
MAX_IMAGE_MB = 20


class UnsupportedMedia(ClientException):
    status_code = 415


class _Stills:
    """Where this API process's next still runs, and on how many threads: the still worker when it
    is free (two XNNPACK threads when no other still and no job of this process is running, else
    one), else the inference pool on one thread (a burst of frames is not held to one core)."""

    def __init__(self) -> None:
        self.on_still_worker = 0
        self.in_flight = 0

    def route(self, service: Service) -> tuple[bool, int]:
        runner = getattr(service, "runner", None)
        idle = self.in_flight == 0 and (runner is None or runner.running == 0)
        if self.on_still_worker == 0:
            return True, IDLE_THREADS if idle and (os.cpu_count() or 1) >= IDLE_THREADS else 1
        return False, 1


_stills = _Stills()


def _key(data: bytes, service: Service) -> str:
    o = service.pools.options
    h = xxhash.xxh3_128()
    h.update(f"{FRAME_SCHEMA}|{o.model_id}|{o.num_poses}|{service.settings.max_side}|".encode())
    h.update(data)
    return "still:" + h.hexdigest()


def _finite(x: float) -> float | None:
    return round(float(x), 5) if math.isfinite(x) else None


def describe(name: str, res: StillResult) -> dict[str, Any]:
    """JSON for one image: landmarks (normalized x, y and visibility), world landmarks, angles."""
    from pipeline import angles
    from pipeline.records import PoseSeries

    xy, vis, world = res.xy[0], res.visibility[0], res.world[0]
    found = bool(np.isfinite(xy[0, 0]))
    body: dict[str, Any] = {"name": name, "width": res.size[0], "height": res.size[1], "pose_found": found}
    if not found:
        return {**body, "landmarks": None, "world_landmarks": None, "angles": None}
    pose = PoseSeries(np.zeros(1, np.int64), np.zeros(1), xy[None], vis[None], world[None],
                      res.size[0] / max(res.size[1], 1))
    _, _, table = angles.compute_all(pose)
    return {
        **body,
        "landmarks": [[_finite(p[0]), _finite(p[1]), _finite(v)] for p, v in zip(xy, vis, strict=True)],
        "world_landmarks": [[_finite(c) for c in p] for p in world],
        "angles": {n: _finite(table.values[0, j]) for j, n in enumerate(table.names)},
    }


async def _one(service: Service, name: str, data: bytes) -> tuple[dict[str, Any], bool]:
    if image_kind(data) is None:
        raise UnsupportedMedia(detail=f"{name!r} is not a JPEG or PNG image (first bytes {data[:8]!r}): "
                                      "expected image/jpeg or image/png")
    try:
        check_image(data, name)  # a decompression bomb is refused here, before a worker decodes it
    except NotAnImage as exc:
        raise Unprocessable(detail=str(exc)) from None
    key = _key(data, service)
    cache = service.cache
    if cache is not None:
        hit = await asyncio.to_thread(cache.get, key)
        if hit is not None:
            return {**json.loads(hit), "name": name}, True
    dedicated, threads = _stills.route(service)
    job = StillJob(data, name, service.settings.max_side, service.pools.options, service.settings.cache(True),
                   threads)
    executor = service.pools.still_executor() if dedicated else service.pools.executor()
    _stills.in_flight += 1
    _stills.on_still_worker += dedicated
    try:
        res = await asyncio.wrap_future(executor.submit(run_still, job))
    except FormcheckError as exc:
        raise Unprocessable(detail=str(exc)) from None
    except Exception as exc:  # a worker died or the pool broke: replaced, the caller retries
        service.pools.replace_if_broken()
        raise ServiceUnavailableException(detail=f"the inference worker failed ({type(exc).__name__}); retry",
                                          headers={"Retry-After": "2"}) from None
    finally:
        _stills.in_flight -= 1
        _stills.on_still_worker -= dedicated
    metrics.FRAMES.labels("frame").inc()
    metrics.INFER_SECONDS.labels("frame").inc(res.infer_s)
    body = await asyncio.to_thread(describe, name, res)
    if cache is not None:
        await asyncio.to_thread(cache.put, key, json.dumps(body).encode())
    return body, res.cached


class Frames(Controller):
    path = "/v1/frames"
    tags = ["frames"]

    @post("/", status_code=200, summary="Landmarks and joint angles of one or a few images",
          raises=[ClientException, TooLarge, UnsupportedMedia, Unprocessable, ServiceUnavailableException])
    async def analyze_frames(
        self, request: Request[Any, Any, Any],
        data: Annotated[dict[str, Any], Body(media_type=RequestEncodingType.MULTI_PART,
                                             description="multipart: one or more JPEG/PNG files",
                                             schema_extra={"properties": {"file": Schema(
                                                 type=OpenAPIType.STRING, format="binary",
                                                 description="a JPEG or PNG (repeat the field for more)")},
                                                 "required": ["file"]})],
    ) -> Response[dict[str, Any]]:
        service: Service = request.app.state.service
        files: list[UploadFile] = []
        for value in data.values():
            files.extend(v for v in (value if isinstance(value, list) else [value]) if isinstance(v, UploadFile))
        limit = service.settings.server.max_frames
        if not files:
            raise ClientException(detail=f"expected one or more images as multipart files; got fields {sorted(data)}")
        if len(files) > limit:
            raise TooLarge(detail=f"{len(files)} images in one request: the limit is {limit} "
                                  "(FORMCHECK_MAX_FRAMES); post a video instead")
        blobs = []
        for i, f in enumerate(files):
            blob = await f.read()
            await f.close()
            if len(blob) > MAX_IMAGE_MB << 20:
                raise TooLarge(detail=f"image {i} is {len(blob) >> 20} MB: the limit is {MAX_IMAGE_MB} MB per image")
            blobs.append((f.filename or f"image{i}", blob))
        results = await asyncio.gather(*(_one(service, name, blob) for name, blob in blobs))
        hit = all(cached for _, cached in results)
        return Response({"frames": [body for body, _ in results]}, headers={"X-Cache": "HIT" if hit else "MISS"})
