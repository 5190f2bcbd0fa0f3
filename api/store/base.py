"""The job and key store: one interface, SQLite (default) and PostgreSQL (``DATABASE_URL``).

Records are frozen; the store hands out copies. Every method is a coroutine: the API's event
loop never blocks on the database. Timestamps are seconds since the epoch (float, UTC).

A job moves queued -> running -> done | failed. A runner *claims* a job (atomically: two
runners never get the same one) and holds it by a lease it renews; a job whose lease has
run out (its runner crashed, was killed, or the server restarted) is claimable again, so a
job accepted with 202 is never lost. A runner that knows the holder's process is gone (same
host, see ``api.jobs``) ends its lease at once (``expire``) rather than wait it out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

Status = Literal["queued", "running", "done", "failed"]
STATUSES: tuple[Status, ...] = ("queued", "running", "done", "failed")
TERMINAL: frozenset[str] = frozenset({"done", "failed"})


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str  # public, short: names the key in logs and owns jobs
    name: str
    key_hash: str  # sha256 hex of the secret; the secret itself is never stored
    created_at: float
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class NewJob:
    """What the API persists before it answers 202."""

    id: str
    owner: str  # ApiKey.id ("" in --open mode)
    filename: str  # the uploaded file's name, as the client sent it (display only)
    upload_path: str  # where the bytes are, under the data dir
    params: str  # JSON object: exercise, fps, ...
    result_key: str  # content hash + parameters (pipeline.stored.result_key), "" if unknown


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    owner: str
    filename: str
    upload_path: str
    params: str
    result_key: str
    status: Status
    progress: float  # 0..1
    phase: str  # what runs now: "queued", "analyzing", "rendering", ...
    error: str | None
    result: str | None  # JSON text of the analysis summary once done
    attempts: int  # claims so far
    created_at: float
    updated_at: float
    runner: str | None  # the runner holding the lease
    lease_until: float | None


class Store(Protocol):
    async def open(self) -> None:
        """Connect, create or migrate the schema (idempotent)."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise if the database does not answer."""

    # keys
    async def add_key(self, key: ApiKey) -> None: ...

    async def key_by_hash(self, key_hash: str) -> ApiKey | None:
        """The non-revoked key with this hash."""

    # jobs
    async def add_job(self, job: NewJob, now: float) -> Job:
        """Persist a queued job (committed before this returns)."""

    async def add_done(self, job: NewJob, result: str, now: float) -> Job:
        """Persist a job that is already done (a cached result)."""

    async def get_job(self, job_id: str, owner: str | None) -> Job | None:
        """The job, if it exists and (``owner`` not None) belongs to ``owner``."""

    async def list_jobs(self, owner: str, limit: int, offset: int) -> tuple[list[Job], int]:
        """``owner``'s jobs, newest first, and how many there are in all."""

    async def delete_job(self, job_id: str, owner: str | None) -> Job | None:
        """Delete and return the job (None if not found / not the owner's)."""

    async def done_with_key(self, result_key: str) -> Job | None:
        """Any done job with this result key (to answer identical content at once)."""

    async def count_with_upload(self, upload_path: str) -> int:
        """How many jobs still refer to this upload (shared by identical content)."""

    async def claim(self, runner: str, now: float, lease_s: float, max_attempts: int) -> Job | None:
        """Atomically take the oldest job that is queued, or running with a lease that ran out
        before ``now``: it becomes running, held by ``runner`` until ``now + lease_s``, attempts
        + 1. A job that would pass ``max_attempts`` is marked failed instead (error says so) and
        the next one is tried."""

    async def renew(self, job_id: str, runner: str, now: float, lease_s: float, progress: float, phase: str) -> bool:
        """Extend the lease and record progress; False if ``runner`` no longer holds the job."""

    async def finish(self, job_id: str, runner: str, result: str, now: float) -> bool:
        """running -> done with the result; False if ``runner`` no longer holds the job."""

    async def fail(self, job_id: str, runner: str, error: str, now: float) -> bool:
        """running -> failed with the reason; False if ``runner`` no longer holds the job."""

    async def release(self, job_id: str, runner: str, now: float, count_attempt: bool) -> bool:
        """running -> queued (shutdown, or a retry after a worker died); ``count_attempt=False``
        gives the attempt back (a clean shutdown is not the job's fault)."""

    async def holders(self) -> list[tuple[str, str]]:
        """(job id, runner) of every running job."""

    async def expire(self, job_id: str, runner: str, now: float) -> bool:
        """End ``runner``'s lease on a running job now (its process is known to be gone): the job
        is claimable at once, not when the lease would have run out; False if ``runner`` no
        longer holds it. The next claim counts an attempt, as after a lease that ran out."""

    async def counts(self) -> dict[str, int]:
        """Jobs by status (every status present, 0 if none)."""
