"""The SQLite store (the default): one file, shared by every API worker process.

WAL lets readers run beside the one writer; ``busy_timeout`` makes a writer wait for another
process instead of failing. Every write runs in ``BEGIN IMMEDIATE``, which takes the file's
write lock up front, so a claim's select and update see no other writer in between. One
connection per store, used by one coroutine at a time (an asyncio lock), since a connection
holds at most one transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from .base import ApiKey, Job, NewJob
from .schema import all_counts, give_up_reason, job_from_row, key_from_row, newer_schema

BUSY_TIMEOUT_MS = 30_000

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            key_hash TEXT NOT NULL UNIQUE,
            created_at REAL NOT NULL,
            revoked INTEGER NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE jobs (
            id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            filename TEXT NOT NULL,
            upload_path TEXT NOT NULL,
            params TEXT NOT NULL,
            result_key TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
            progress REAL NOT NULL,
            phase TEXT NOT NULL,
            error TEXT,
            result TEXT,
            attempts INTEGER NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            runner TEXT,
            lease_until REAL
        )""",
        "CREATE INDEX jobs_owner_created ON jobs (owner, created_at)",
        "CREATE INDEX jobs_status_created ON jobs (status, created_at)",
        "CREATE INDEX jobs_result_key ON jobs (result_key)",
        "CREATE INDEX jobs_upload_path ON jobs (upload_path)",
    ),
)

_INSERT = (
    "INSERT INTO jobs (id, owner, filename, upload_path, params, result_key, status, progress, phase,"
    " result, attempts, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?) RETURNING *"
)
# The runner's hold on a job: the condition of renew/finish/fail/release.
_HELD = "WHERE id = ? AND status = 'running' AND runner = ?"


class SqliteStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    # connection

    async def open(self) -> None:
        if self._db is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(self.path, isolation_level=None)  # autocommit; we BEGIN ourselves
        try:
            db.row_factory = aiosqlite.Row
            await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await db.execute("PRAGMA journal_mode = WAL")
            await db.execute("PRAGMA foreign_keys = ON")
            self._db = db
            await self._migrate()
        except BaseException:
            self._db = None
            await db.close()
            raise

    async def _migrate(self) -> None:
        async with self._write() as db:
            row = await _one(db, "PRAGMA user_version")
            version = int(row[0]) if row else 0
            if version > len(MIGRATIONS):
                raise newer_schema(version, len(MIGRATIONS), str(self.path))
            for statements in MIGRATIONS[version:]:
                for sql in statements:
                    await db.execute(sql)
            if version < len(MIGRATIONS):
                await db.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")

    async def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            await db.close()

    async def ping(self) -> None:
        async with self._read() as db:
            await _one(db, "SELECT 1")

    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError(f"SqliteStore({self.path}) is not open: await open() first")
        return self._db

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            yield self._conn()

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction holding the file's write lock from its first statement."""
        async with self._lock:
            db = self._conn()
            await db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                await db.rollback()
                raise
            await db.commit()

    # keys

    async def add_key(self, key: ApiKey) -> None:
        async with self._write() as db:
            await db.execute(
                "INSERT INTO api_keys (id, name, key_hash, created_at, revoked) VALUES (?, ?, ?, ?, ?)",
                (key.id, key.name, key.key_hash, key.created_at, int(key.revoked)),
            )

    async def key_by_hash(self, key_hash: str) -> ApiKey | None:
        async with self._read() as db:
            row = await _one(db, "SELECT * FROM api_keys WHERE key_hash = ? AND revoked = 0", (key_hash,))
        return key_from_row(row) if row else None

    # jobs

    async def add_job(self, job: NewJob, now: float) -> Job:
        return await self._insert(job, "queued", 0.0, "queued", None, now)

    async def add_done(self, job: NewJob, result: str, now: float) -> Job:
        return await self._insert(job, "done", 1.0, "done", result, now)

    async def _insert(self, job: NewJob, status: str, progress: float, phase: str, result: str | None,
                      now: float) -> Job:
        async with self._write() as db:
            row = await _one(db, _INSERT, (job.id, job.owner, job.filename, job.upload_path, job.params,
                                           job.result_key, status, progress, phase, result, now, now))
        assert row is not None  # INSERT ... RETURNING yields the row or raises
        return job_from_row(row)

    async def get_job(self, job_id: str, owner: str | None) -> Job | None:
        async with self._read() as db:
            row = await _one(db, "SELECT * FROM jobs WHERE id = ? AND (? IS NULL OR owner = ?)",
                             (job_id, owner, owner))
        return job_from_row(row) if row else None

    async def list_jobs(self, owner: str, limit: int, offset: int) -> tuple[list[Job], int]:
        async with self._read() as db:
            async with db.execute(
                "SELECT * FROM jobs WHERE owner = ? ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
                (owner, limit, offset),
            ) as cur:
                rows = await cur.fetchall()
            total = await _one(db, "SELECT count(*) FROM jobs WHERE owner = ?", (owner,))
        return [job_from_row(r) for r in rows], int(total[0]) if total else 0

    async def delete_job(self, job_id: str, owner: str | None) -> Job | None:
        async with self._write() as db:
            row = await _one(db, "DELETE FROM jobs WHERE id = ? AND (? IS NULL OR owner = ?) RETURNING *",
                             (job_id, owner, owner))
        return job_from_row(row) if row else None

    async def done_with_key(self, result_key: str) -> Job | None:
        """The newest done job with this key; None for "" (an unknown key matches nothing)."""
        if not result_key:
            return None
        async with self._read() as db:
            row = await _one(db, "SELECT * FROM jobs WHERE result_key = ? AND status = 'done'"
                             " ORDER BY created_at DESC LIMIT 1", (result_key,))
        return job_from_row(row) if row else None

    async def count_with_upload(self, upload_path: str) -> int:
        async with self._read() as db:
            row = await _one(db, "SELECT count(*) FROM jobs WHERE upload_path = ?", (upload_path,))
        return int(row[0]) if row else 0

    # the runner's side

    async def claim(self, runner: str, now: float, lease_s: float, max_attempts: int) -> Job | None:
        async with self._write() as db:
            while True:
                row = await _one(
                    db, "SELECT id, attempts, runner FROM jobs WHERE status = 'queued'"
                    " OR (status = 'running' AND lease_until < ?) ORDER BY created_at, id LIMIT 1", (now,))
                if row is None:
                    return None
                if row["attempts"] >= max_attempts:
                    await db.execute(
                        "UPDATE jobs SET status = 'failed', phase = 'failed', error = ?, runner = NULL,"
                        " lease_until = NULL, updated_at = ? WHERE id = ?",
                        (give_up_reason(row["attempts"], row["runner"]), now, row["id"]))
                    continue
                claimed = await _one(
                    db, "UPDATE jobs SET status = 'running', runner = ?, lease_until = ?, attempts = attempts + 1,"
                    " updated_at = ? WHERE id = ? RETURNING *", (runner, now + lease_s, now, row["id"]))
                assert claimed is not None  # the row is ours: we hold the write lock
                return job_from_row(claimed)

    async def renew(self, job_id: str, runner: str, now: float, lease_s: float, progress: float, phase: str) -> bool:
        return await self._held(
            "UPDATE jobs SET lease_until = ?, progress = ?, phase = ?, updated_at = ? " + _HELD,
            (now + lease_s, progress, phase, now, job_id, runner))

    async def finish(self, job_id: str, runner: str, result: str, now: float) -> bool:
        return await self._held(
            "UPDATE jobs SET status = 'done', progress = 1.0, phase = 'done', result = ?, error = NULL,"
            " runner = NULL, lease_until = NULL, updated_at = ? " + _HELD, (result, now, job_id, runner))

    async def fail(self, job_id: str, runner: str, error: str, now: float) -> bool:
        return await self._held(
            "UPDATE jobs SET status = 'failed', phase = 'failed', error = ?, runner = NULL, lease_until = NULL,"
            " updated_at = ? " + _HELD, (error, now, job_id, runner))

    async def release(self, job_id: str, runner: str, now: float, count_attempt: bool) -> bool:
        return await self._held(
            "UPDATE jobs SET status = 'queued', progress = 0.0, phase = 'queued', runner = NULL,"
            " lease_until = NULL, attempts = MAX(attempts - ?, 0), updated_at = ? " + _HELD,
            (0 if count_attempt else 1, now, job_id, runner))

    async def holders(self) -> list[tuple[str, str]]:
        async with self._read() as db:
            async with db.execute("SELECT id, runner FROM jobs WHERE status = 'running'") as cur:
                rows = await cur.fetchall()
        return [(r[0], r[1]) for r in rows]

    async def expire(self, job_id: str, runner: str, now: float) -> bool:
        return await self._held("UPDATE jobs SET lease_until = 0, updated_at = ? " + _HELD, (now, job_id, runner))

    async def _held(self, sql: str, args: tuple[object, ...]) -> bool:
        async with self._write() as db:
            cur = await db.execute(sql, args)
            return cur.rowcount == 1

    async def counts(self) -> dict[str, int]:
        async with self._read() as db:
            async with db.execute("SELECT status, count(*) FROM jobs GROUP BY status") as cur:
                rows = await cur.fetchall()
        return all_counts({r[0]: r[1] for r in rows})


async def _one(db: aiosqlite.Connection, sql: str, args: tuple[object, ...] = ()) -> aiosqlite.Row | None:
    """The first row (the statement is stepped to its end: a RETURNING write is then complete)."""
    async with db.execute(sql, args) as cur:
        rows = list(await cur.fetchall())
    return rows[0] if rows else None
