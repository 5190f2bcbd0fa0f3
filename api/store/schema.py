"""What both backends share: column order, row -> record conversion, the give-up reason.

The tables themselves are written per dialect (``sqlite.MIGRATIONS``, ``postgres.MIGRATIONS``):
migration N is ``MIGRATIONS[N - 1]``, a tuple of statements run in one transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from .base import STATUSES, ApiKey, Job

JOB_COLUMNS: tuple[str, ...] = (
    "id", "owner", "filename", "upload_path", "params", "result_key", "status", "progress", "phase",
    "error", "result", "attempts", "created_at", "updated_at", "runner", "lease_until",
)


class Row(Protocol):
    """A database row by column name (sqlite3.Row, asyncpg.Record)."""

    def __getitem__(self, key: str, /) -> Any: ...


def job_from_row(row: Row) -> Job:
    return Job(**{c: row[c] for c in JOB_COLUMNS})


def key_from_row(row: Row) -> ApiKey:
    return ApiKey(id=row["id"], name=row["name"], key_hash=row["key_hash"],
                  created_at=row["created_at"], revoked=bool(row["revoked"]))


def give_up_reason(attempts: int, last_runner: str | None) -> str:
    """The error of a job that claim() will not hand out again."""
    who = f" (last runner {last_runner})" if last_runner else ""
    return f"gave up after {attempts} attempts: the analysis worker kept failing{who}"


def all_counts(found: Mapping[str, int]) -> dict[str, int]:
    """Every status, 0 where the database had none."""
    return {s: int(found.get(s, 0)) for s in STATUSES}


def newer_schema(found: int, known: int, where: str) -> RuntimeError:
    return RuntimeError(
        f"{where}: database schema version {found} is newer than this formcheck knows "
        f"(expected at most {known}); upgrade formcheck or point it at another database"
    )
