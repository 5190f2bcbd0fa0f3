"""The PostgreSQL store (``DATABASE_URL=postgresql://...``), on an asyncpg pool.

``claim`` locks its candidate row with ``FOR UPDATE SKIP LOCKED``: concurrent claimers, in this
process or another, each take a different job and never wait on one another. ``open`` migrates
under a transaction-scoped advisory lock, so API workers starting together do it once.
"""

from __future__ import annotations

import re

import asyncpg

from .base import ApiKey, Job, NewJob
from .schema import all_counts, give_up_reason, job_from_row, key_from_row, newer_schema

# Any constant shared by every formcheck process: serialises schema creation and migration.
MIGRATION_LOCK = 0x666F726D636B  # "formck"
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE api_keys (
            id text PRIMARY KEY,
            name text NOT NULL,
            key_hash text NOT NULL UNIQUE,
            created_at double precision NOT NULL,
            revoked boolean NOT NULL DEFAULT false
        )""",
        """CREATE TABLE jobs (
            id text PRIMARY KEY,
            owner text NOT NULL,
            filename text NOT NULL,
            upload_path text NOT NULL,
            params text NOT NULL,
            result_key text NOT NULL,
            status text NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
            progress double precision NOT NULL,
            phase text NOT NULL,
            error text,
            result text,
            attempts integer NOT NULL,
            created_at double precision NOT NULL,
            updated_at double precision NOT NULL,
            runner text,
            lease_until double precision
        )""",
        "CREATE INDEX jobs_owner_created ON jobs (owner, created_at)",
        "CREATE INDEX jobs_status_created ON jobs (status, created_at)",
        "CREATE INDEX jobs_result_key ON jobs (result_key)",
        "CREATE INDEX jobs_upload_path ON jobs (upload_path)",
    ),
)

_INSERT = (
    "INSERT INTO jobs (id, owner, filename, upload_path, params, result_key, status, progress, phase,"
    " result, attempts, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, $11, $11)"
    " RETURNING *"
)
# The runner's hold on a job ($1 the job, $2 the runner): the condition of renew/finish/fail/release.
_HELD = " WHERE id = $1 AND status = 'running' AND runner = $2 RETURNING id"


class PostgresStore:
    def __init__(self, url: str, min_size: int = 5, max_size: int = 20, schema: str | None = None) -> None:
        """``schema``: keep the tables there instead of in the search path's first schema (the
        tests use one per test); it is created if missing."""
        if schema is not None and not _IDENT.fullmatch(schema):
            raise ValueError(f"schema must be a plain identifier (letters, digits, _), got {schema!r}")
        self.url = url
        self.min_size = min_size
        self.max_size = max_size
        self.schema = schema
        self._pool: asyncpg.Pool | None = None

    # connection

    async def open(self) -> None:
        if self._pool is not None:
            return
        settings = {"search_path": self.schema} if self.schema else None
        pool = await asyncpg.create_pool(self.url, min_size=self.min_size, max_size=self.max_size,
                                         server_settings=settings)
        try:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
                if self.schema:
                    await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                await _migrate(conn, self.schema or "the search path's first schema")
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def ping(self) -> None:
        await self._p().fetchval("SELECT 1")

    def _p(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("PostgresStore is not open: await open() first")
        return self._pool

    # keys

    async def add_key(self, key: ApiKey) -> None:
        await self._p().execute(
            "INSERT INTO api_keys (id, name, key_hash, created_at, revoked) VALUES ($1, $2, $3, $4, $5)",
            key.id, key.name, key.key_hash, key.created_at, key.revoked)

    async def key_by_hash(self, key_hash: str) -> ApiKey | None:
        row = await self._p().fetchrow("SELECT * FROM api_keys WHERE key_hash = $1 AND NOT revoked", key_hash)
        return key_from_row(row) if row else None

    # jobs

    async def add_job(self, job: NewJob, now: float) -> Job:
        return await self._insert(job, "queued", 0.0, "queued", None, now)

    async def add_done(self, job: NewJob, result: str, now: float) -> Job:
        return await self._insert(job, "done", 1.0, "done", result, now)

    async def _insert(self, job: NewJob, status: str, progress: float, phase: str, result: str | None,
                      now: float) -> Job:
        row = await self._p().fetchrow(_INSERT, job.id, job.owner, job.filename, job.upload_path, job.params,
                                       job.result_key, status, progress, phase, result, now)
        return job_from_row(row)

    async def get_job(self, job_id: str, owner: str | None) -> Job | None:
        row = await self._p().fetchrow(
            "SELECT * FROM jobs WHERE id = $1 AND ($2::text IS NULL OR owner = $2)", job_id, owner)
        return job_from_row(row) if row else None

    async def list_jobs(self, owner: str, limit: int, offset: int) -> tuple[list[Job], int]:
        async with self._p().acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            rows = await conn.fetch(
                "SELECT * FROM jobs WHERE owner = $1 ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3",
                owner, limit, offset)
            total = await conn.fetchval("SELECT count(*) FROM jobs WHERE owner = $1", owner)
        return [job_from_row(r) for r in rows], int(total)

    async def delete_job(self, job_id: str, owner: str | None) -> Job | None:
        row = await self._p().fetchrow(
            "DELETE FROM jobs WHERE id = $1 AND ($2::text IS NULL OR owner = $2) RETURNING *", job_id, owner)
        return job_from_row(row) if row else None

    async def done_with_key(self, result_key: str) -> Job | None:
        """The newest done job with this key; None for "" (an unknown key matches nothing)."""
        if not result_key:
            return None
        row = await self._p().fetchrow(
            "SELECT * FROM jobs WHERE result_key = $1 AND status = 'done' ORDER BY created_at DESC LIMIT 1",
            result_key)
        return job_from_row(row) if row else None

    async def count_with_upload(self, upload_path: str) -> int:
        return int(await self._p().fetchval("SELECT count(*) FROM jobs WHERE upload_path = $1", upload_path))

    # the runner's side

    async def claim(self, runner: str, now: float, lease_s: float, max_attempts: int) -> Job | None:
        async with self._p().acquire() as conn, conn.transaction():
            while True:
                row = await conn.fetchrow(
                    "SELECT id, attempts, runner FROM jobs WHERE status = 'queued'"
                    " OR (status = 'running' AND lease_until < $1)"
                    " ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED", now)
                if row is None:
                    return None
                if row["attempts"] >= max_attempts:
                    await conn.execute(
                        "UPDATE jobs SET status = 'failed', phase = 'failed', error = $2, runner = NULL,"
                        " lease_until = NULL, updated_at = $3 WHERE id = $1",
                        row["id"], give_up_reason(row["attempts"], row["runner"]), now)
                    continue
                claimed = await conn.fetchrow(
                    "UPDATE jobs SET status = 'running', runner = $2, lease_until = $3, attempts = attempts + 1,"
                    " updated_at = $4 WHERE id = $1 RETURNING *", row["id"], runner, now + lease_s, now)
                return job_from_row(claimed)

    async def renew(self, job_id: str, runner: str, now: float, lease_s: float, progress: float, phase: str) -> bool:
        return await self._held(
            "UPDATE jobs SET lease_until = $3, progress = $4, phase = $5, updated_at = $6" + _HELD,
            job_id, runner, now + lease_s, progress, phase, now)

    async def finish(self, job_id: str, runner: str, result: str, now: float) -> bool:
        return await self._held(
            "UPDATE jobs SET status = 'done', progress = 1.0, phase = 'done', result = $3, error = NULL,"
            " runner = NULL, lease_until = NULL, updated_at = $4" + _HELD, job_id, runner, result, now)

    async def fail(self, job_id: str, runner: str, error: str, now: float) -> bool:
        return await self._held(
            "UPDATE jobs SET status = 'failed', phase = 'failed', error = $3, runner = NULL, lease_until = NULL,"
            " updated_at = $4" + _HELD, job_id, runner, error, now)

    async def release(self, job_id: str, runner: str, now: float, count_attempt: bool) -> bool:
        return await self._held(
            "UPDATE jobs SET status = 'queued', progress = 0.0, phase = 'queued', runner = NULL,"
            " lease_until = NULL, attempts = GREATEST(attempts - $3, 0), updated_at = $4" + _HELD,
            job_id, runner, 0 if count_attempt else 1, now)

    async def holders(self) -> list[tuple[str, str]]:
        rows = await self._p().fetch("SELECT id, runner FROM jobs WHERE status = 'running'")
        return [(r["id"], r["runner"]) for r in rows]

    async def expire(self, job_id: str, runner: str, now: float) -> bool:
        return await self._held("UPDATE jobs SET lease_until = 0, updated_at = $3" + _HELD, job_id, runner, now)

    async def _held(self, sql: str, *args: object) -> bool:
        return await self._p().fetchval(sql, *args) is not None

    async def counts(self) -> dict[str, int]:
        rows = await self._p().fetch("SELECT status, count(*) AS n FROM jobs GROUP BY status")
        return all_counts({r["status"]: r["n"] for r in rows})


async def _migrate(conn: asyncpg.Connection, where: str) -> None:
    """Bring the schema to ``len(MIGRATIONS)``; the caller holds the migration lock in a transaction."""
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY, applied_at timestamptz NOT NULL"
        " DEFAULT now())")
    version = int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version"))
    if version > len(MIGRATIONS):
        raise newer_schema(version, len(MIGRATIONS), where)
    for number, statements in enumerate(MIGRATIONS[version:], start=version + 1):
        for sql in statements:
            await conn.execute(sql)
        await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", number)
