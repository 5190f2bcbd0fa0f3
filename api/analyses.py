"""``/v1/analyses``: upload a video, follow its job, fetch the result and its files."""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from litestar import Controller, Request, Response, delete, get, post
from litestar.datastructures import UploadFile
from litestar.enums import RequestEncodingType
from litestar.exceptions import ClientException, NotFoundException, ServiceUnavailableException
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Operation, Schema
from litestar.params import Body, FromPath, QueryParameter
from litestar.response import File, ServerSentEvent
from litestar.response.sse import ServerSentEventMessage
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from pipeline.config import AUTO, DEFAULT_FPS
from pipeline.errors import FormcheckError
from pipeline.exercises import GENERIC, NAMES

from .jobs import ARTIFACTS, Live, artifact_dir
from .service import Service
from .store import TERMINAL, Job, NewJob

EXERCISES = (AUTO, GENERIC, *NAMES)
COPY_CHUNK = 1 << 20
SSE_POLL_S = 0.5
ENDED_S = 10.0  # finished jobs kept in memory; a delete made by another API process shows within this
ENDED_MAX = 10_000
FILES = {"annotated.mp4": "video/mp4", "reps.png": "image/png", "angles.csv": "text/csv",
         "analysis.json": "application/json"}


_ended: dict[str, tuple[float, Job]] = {}
SMALL_FILE = 2 << 20  # artifacts up to this size are served from memory once read
MAX_OFFSET = 1_000_000_000  # a larger one overflowed SQLite's integers (a 500)


class _SmallFiles:
    """Artifact bytes by path, LRU bounded in bytes. Files are written once (to a temporary
    folder renamed into place) and removed only with their last analysis, so bytes never go stale
    while a job that names them exists."""

    def __init__(self, limit: int) -> None:
        self.limit, self.size = limit, 0
        self.items: OrderedDict[str, bytes] = OrderedDict()

    def get(self, key: str) -> bytes | None:
        data = self.items.get(key)
        if data is not None:
            self.items.move_to_end(key)
        return data

    def put(self, key: str, data: bytes) -> None:
        self.drop(key)
        self.items[key] = data
        self.size += len(data)
        while self.size > self.limit and self.items:
            _, old = self.items.popitem(last=False)
            self.size -= len(old)

    def drop_under(self, folder: str) -> None:
        for key in [k for k in self.items if k.startswith(folder)]:
            self.drop(key)

    def drop(self, key: str) -> None:
        old = self.items.pop(key, None)
        if old is not None:
            self.size -= len(old)


_small_files = _SmallFiles(64 << 20)


class Unprocessable(ClientException):
    status_code = 422


class Conflict(ClientException):
    status_code = 409


class TooLarge(ClientException):
    status_code = 413


@dataclass
class Event:
    """One Server-Sent Event (the OpenAPI schema of each): ``data`` is a JSON object, the progress
    or the analysis as ``GET /v1/analyses/{id}`` shows it; ``error`` when it was deleted meanwhile."""

    event: Literal["progress", "done", "failed", "error"]
    data: str
    id: str | None = None


@dataclass
class FileOperation(Operation):
    """The files route's OpenAPI operation: its 200 is one of the files' media types."""

    def __post_init__(self) -> None:
        ok = (self.responses or {}).get("200")
        if isinstance(ok, OpenAPIResponse):
            ok.content = {media: OpenAPIMediaType(schema=Schema(type=OpenAPIType.OBJECT) if media == "application/json"
                                                  else Schema(type=OpenAPIType.STRING, format="binary"))
                          for media in dict.fromkeys(FILES.values())}
            ok.headers = None


# The upload form as OpenAPI shows it (the handler reads a plain dict, to say itself what is missing)
UPLOAD_FORM: dict[str, Any] = {
    "properties": {
        "file": Schema(type=OpenAPIType.STRING, format="binary", description="the video (mp4, mov, avi, mkv, webm)"),
        "exercise": Schema(type=OpenAPIType.STRING, enum=list(EXERCISES), default=AUTO),
        "fps": Schema(type=OpenAPIType.NUMBER, minimum=0, maximum=240, default=DEFAULT_FPS,
                      description="frames analyzed per second (0: every frame)"),
    },
    "required": ["file"],
}


def view(job: Job, live: Live | None = None) -> dict[str, Any]:
    """A job as the API shows it (``live``: this process runs it; fresher than the database)."""
    running = live is not None and job.status == "running"
    progress, phase = (live.progress, live.phase) if running and live is not None else (job.progress, job.phase)
    return {
        "id": job.id, "status": job.status, "progress": round(progress, 3), "phase": phase,
        "error": job.error, "filename": job.filename, "params": json.loads(job.params),
        "created_at": job.created_at, "updated_at": job.updated_at, "attempts": job.attempts,
        "result": json.loads(job.result) if job.result else None,
        "links": {"self": f"/v1/analyses/{job.id}", "events": f"/v1/analyses/{job.id}/events",
                  **({name: f"/v1/analyses/{job.id}/{name}" for name in FILES} if job.status == "done" else {})},
    }


def _params(fields: dict[str, Any]) -> dict[str, object]:
    exercise = str(fields.get("exercise") or AUTO).strip()
    if exercise not in EXERCISES:
        raise Unprocessable(detail=f"exercise must be one of {', '.join(EXERCISES)}; got {exercise!r}")
    raw_fps = fields.get("fps")
    try:
        fps = DEFAULT_FPS if raw_fps in (None, "") else float(raw_fps)
    except (TypeError, ValueError):
        raise Unprocessable(detail=f"fps must be a number >= 0 (0: every frame); got {raw_fps!r}") from None
    if not 0 <= fps <= 240:
        raise Unprocessable(detail=f"fps must be 0..240 (0: every frame); got {fps:g}")
    return {"exercise": exercise, "fps": fps}


def _save(upload: UploadFile, dest: Path, limit: int) -> int:
    """Copy the upload to ``dest`` (in a thread); the byte count."""
    size = 0
    tmp = dest.with_name(dest.name + ".part")
    src = upload.file
    src.seek(0)
    with open(tmp, "wb") as out:
        while chunk := src.read(COPY_CHUNK):
            size += len(chunk)
            if size > limit:
                out.close()
                tmp.unlink(missing_ok=True)
                raise _TooLarge(limit)
            out.write(chunk)
    tmp.rename(dest)
    return size


class _TooLarge(Exception):
    pass


def _check_video(service: Service, path: Path, params: dict[str, object]) -> str:
    """Probe (a garbage upload fails here, before it is queued) and return the result key."""
    from pipeline.decode import probe
    from pipeline.stored import resolve_model, result_key

    info = probe(str(path))
    limit = service.settings.server.max_duration_s
    if info.duration_s > limit:
        raise Unprocessable(detail=f"the video lasts {info.duration_s:.0f} s: the limit is {limit} s "
                                   "(FORMCHECK_MAX_DURATION_S)")
    cfg = service.analysis_config(params)
    return result_key(str(path), cfg, resolve_model(cfg))


class Analyses(Controller):
    path = "/v1/analyses"
    tags = ["analyses"]

    @post("/", status_code=HTTP_202_ACCEPTED, summary="Upload a video for analysis",
          raises=[ClientException, TooLarge, Unprocessable, ServiceUnavailableException],
          responses={HTTP_200_OK: ResponseSpec(dict[str, Any], generate_examples=False, description=(
              "the same bytes and parameters were analyzed before: the finished analysis (X-Cache: HIT)"))})
    async def create(
        self, request: Request[Any, Any, Any],
        data: Annotated[dict[str, Any], Body(media_type=RequestEncodingType.MULTI_PART,
                                             description="multipart: file (video), exercise, fps",
                                             schema_extra=UPLOAD_FORM)],
    ) -> Response[dict[str, Any]]:
        service: Service = request.app.state.service
        srv = service.settings.server
        upload = data.get("file")
        if isinstance(upload, list):
            raise ClientException(detail=f"expected one video in the 'file' field, got {len(upload)}")
        if not isinstance(upload, UploadFile):
            raise ClientException(detail="expected a multipart/form-data upload with the video in a field "
                                         f"named 'file'; got fields {sorted(data)}")
        params = _params(data)
        counts = await service.store.counts()
        if counts["queued"] >= srv.queue_max:
            raise ServiceUnavailableException(
                detail=f"the queue is full ({counts['queued']} jobs waiting, limit {srv.queue_max}): retry later",
                headers={"Retry-After": "30"})
        job_id = secrets.token_hex(10)
        suffix = Path(upload.filename or "").suffix.lower()[:8] or ".bin"
        dest = service.upload_path(job_id, suffix if suffix.isascii() and suffix[1:].isalnum() else ".bin")
        limit = srv.max_upload_mb << 20
        try:
            size = await asyncio.to_thread(_save, upload, dest, limit)
        except _TooLarge:
            raise TooLarge(detail=f"the upload exceeds {srv.max_upload_mb} MB, the limit "
                                  "(FORMCHECK_MAX_UPLOAD_MB)") from None
        finally:
            await upload.close()
        if size == 0:
            dest.unlink(missing_ok=True)
            raise Unprocessable(detail="the uploaded file is empty (0 bytes): expected a video")
        try:
            key = await asyncio.to_thread(_check_video, service, dest, params)
        except FormcheckError as exc:
            dest.unlink(missing_ok=True)
            shown = repr(upload.filename or "the upload")
            raise Unprocessable(detail=str(exc).replace(repr(str(dest)), shown).replace(str(dest), shown)) from None
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
        new = NewJob(job_id, request.user.id, upload.filename or dest.name, str(dest), json.dumps(params), key)
        done = await service.store.done_with_key(key)
        if done is not None and done.result and (artifact_dir(srv.artifacts, done) / ARTIFACTS[0]).exists():
            job = await service.store.add_done(new, done.result, time.time())
            dest.unlink(missing_ok=True)
            return Response(view(job), status_code=HTTP_200_OK,
                            headers={"Location": f"/v1/analyses/{job.id}", "X-Cache": "HIT"})
        job = await service.store.add_job(new, time.time())  # persisted before the 202
        service.runner.wake()
        headers = {"Location": f"/v1/analyses/{job.id}", "X-Cache": "MISS"}
        return Response({"id": job.id, "status": job.status, "links": view(job)["links"]},
                        status_code=HTTP_202_ACCEPTED, headers=headers)

    @get("/", summary="The caller's analyses, newest first")
    async def list_own(
        self, request: Request[Any, Any, Any],
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
        offset: Annotated[int, QueryParameter(ge=0, le=MAX_OFFSET)] = 0,
    ) -> dict[str, Any]:
        service: Service = request.app.state.service
        jobs, total = await service.store.list_jobs(request.user.id, limit, offset)
        nxt = offset + limit if offset + limit < total else None
        items = [{k: v for k, v in view(j).items() if k != "result"} for j in jobs]
        return {"items": items, "total": total, "limit": limit, "offset": offset,
                "next": None if nxt is None else f"/v1/analyses?limit={limit}&offset={nxt}"}

    @get("/{job_id:str}", summary="An analysis: status, progress, error, result", raises=[NotFoundException])
    async def read(self, request: Request[Any, Any, Any], job_id: FromPath[str]) -> dict[str, Any]:
        service: Service = request.app.state.service
        job = await _own(service, request, job_id)
        return view(job, service.runner.live.get(job.id) if job.status not in TERMINAL else None)

    @delete("/{job_id:str}", status_code=HTTP_204_NO_CONTENT, summary="Delete an analysis and its files",
            raises=[NotFoundException])
    async def remove(self, request: Request[Any, Any, Any], job_id: FromPath[str]) -> None:
        service: Service = request.app.state.service
        _ended.pop(job_id, None)
        job = await service.store.delete_job(job_id, request.user.id)
        if job is None:
            raise _not_found(job_id)
        service.runner.cancel(job.id)
        if await service.store.count_with_upload(job.upload_path) == 0:
            Path(job.upload_path).unlink(missing_ok=True)
        if job.result_key and await service.store.done_with_key(job.result_key) is None:
            out = artifact_dir(service.settings.server.artifacts, job)
            _small_files.drop_under(str(out) + "/")
            await asyncio.to_thread(shutil.rmtree, out, True)

    @get("/{job_id:str}/events", summary="Server-Sent Events: progress, then the final state",
         raises=[NotFoundException], responses={HTTP_200_OK: ResponseSpec(
             Event, media_type="text/event-stream", generate_examples=False,
             description="progress events, then done or failed with the analysis")})
    async def events(self, request: Request[Any, Any, Any], job_id: FromPath[str]) -> ServerSentEvent:
        service: Service = request.app.state.service
        await _own(service, request, job_id)
        return ServerSentEvent(_follow(service, request.user.id, job_id), headers={"Cache-Control": "no-cache"})

    @get("/{job_id:str}/{name:str}", summary="A file of a finished analysis: annotated.mp4, reps.png, "
                                              "angles.csv or analysis.json",
         raises=[NotFoundException, Conflict], operation_class=FileOperation)
    async def artifact(self, request: Request[Any, Any, Any], job_id: FromPath[str], name: FromPath[str]) -> File:
        service: Service = request.app.state.service
        if name not in FILES:
            raise NotFoundException(detail=f"no file {name!r}: expected one of {', '.join(FILES)}")
        job = await _own(service, request, job_id)
        if job.status != "done":
            raise Conflict(detail=f"analysis {job_id} is {job.status}: its files exist once it is done "
                                  "(expected status done)")
        path = artifact_dir(service.settings.server.artifacts, job) / name
        small = _small_files.get(str(path))
        if small is not None:
            return Response(small, media_type=FILES[name],
                            headers={"Content-Disposition": f'inline; filename="{name}"'})
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise NotFoundException(detail=f"{name} of analysis {job_id} is not available (not rendered)") from None
        if size <= SMALL_FILE:  # the chart, the CSV and the JSON: from memory after the first read
            data = await asyncio.to_thread(path.read_bytes)
            _small_files.put(str(path), data)
            return Response(data, media_type=FILES[name],
                            headers={"Content-Disposition": f'inline; filename="{name}"'})
        return File(path, media_type=FILES[name], filename=name, content_disposition_type="inline")


def _not_found(job_id: str) -> NotFoundException:
    """The same answer for an id that does not exist and one another key owns (nothing leaks)."""
    return NotFoundException(detail=f"no analysis {job_id!r} for this API key: expected the id of one of its "
                                    "analyses (as POST /v1/analyses or GET /v1/analyses gave it)")


async def _own(service: Service, request: Request[Any, Any, Any], job_id: str) -> Job:
    """The caller's job. A finished job never changes (only a delete ends it), so it is kept in
    memory for ``ENDED_S``: status polls and file downloads of finished jobs skip the database."""
    owner = request.user.id
    now = time.monotonic()
    kept = _ended.get(job_id)
    if kept is not None and now - kept[0] < ENDED_S and kept[1].owner == owner:
        return kept[1]
    job = await service.store.get_job(job_id, owner)
    if job is None:
        raise _not_found(job_id)
    if job.status in TERMINAL:
        if len(_ended) >= ENDED_MAX:
            _ended.clear()
        _ended[job_id] = (now, job)
    return job


async def _follow(service: Service, owner: str, job_id: FromPath[str]) -> AsyncIterator[ServerSentEventMessage]:
    """Progress while the job runs (from this process's runner when it runs here, else from the
    database, so any API worker can follow any job), then the final state, then the end."""
    last: tuple[str, float, str] | None = None
    seq = 0
    while True:
        job = await service.store.get_job(job_id, owner)
        if job is None:
            yield ServerSentEventMessage(event="error", data=json.dumps({"detail": f"analysis {job_id} was deleted"}))
            return
        live = service.runner.live.get(job_id)
        progress = live.progress if live is not None and job.status == "running" else job.progress
        phase = live.phase if live is not None and job.status == "running" else job.phase
        state = (job.status, round(progress, 3), phase)
        if job.status in TERMINAL:
            seq += 1
            yield ServerSentEventMessage(event=job.status, id=seq, data=json.dumps(view(job)))
            return
        if state != last:
            seq += 1
            yield ServerSentEventMessage(event="progress", id=seq, data=json.dumps(
                {"id": job_id, "status": job.status, "progress": state[1], "phase": phase}))
            last = state
        if live is not None:
            live.changed.clear()
            try:
                await asyncio.wait_for(live.changed.wait(), SSE_POLL_S)
            except TimeoutError:
                pass
        else:
            await asyncio.sleep(SSE_POLL_S)
