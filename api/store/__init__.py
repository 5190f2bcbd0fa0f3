"""The job and key store (see ``base``): ``open_store`` picks the backend from ``DATABASE_URL``."""

from __future__ import annotations

import re
from pathlib import Path

from .base import STATUSES, TERMINAL, ApiKey, Job, NewJob, Status, Store
from .postgres import PostgresStore
from .sqlite import SqliteStore

__all__ = [
    "STATUSES", "TERMINAL", "ApiKey", "Job", "NewJob", "PostgresStore", "SqliteStore", "Status", "Store",
    "open_store", "unavailable",
]

POSTGRES_SCHEMES = ("postgres", "postgresql")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


def open_store(database_url: str | None, sqlite_path: Path, min_size: int, max_size: int) -> Store:
    """PostgreSQL for a ``postgres://`` / ``postgresql://`` URL, else SQLite at ``sqlite_path``
    (no URL). The store is not opened yet: the caller awaits ``open()``."""
    if not database_url:
        return SqliteStore(sqlite_path)
    scheme, sep, _ = database_url.partition("://")
    if sep and scheme.lower() in POSTGRES_SCHEMES:
        return PostgresStore(database_url, min_size=min_size, max_size=max_size)
    # Never echo the URL itself: it may carry a password.
    got = f"a {scheme!r} URL" if sep and _SCHEME.fullmatch(scheme) else "a value without a scheme"
    raise ValueError(
        f"DATABASE_URL: expected a postgresql:// or postgres:// URL (or nothing, for SQLite at {sqlite_path}), "
        f"got {got}"
    )


def unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot be reached now (down, restarting, connections cut,
    SQLite locked or its file unreadable) rather than that a request is wrong: the API answers
    503 with Retry-After to these, not 500."""
    import sqlite3

    import asyncpg

    if type(exc) is OSError:  # asyncio's connect to several addresses: "Multiple exceptions: [Errno 111] ..."
        return "Connect call failed" in str(exc)
    if isinstance(exc, asyncpg.exceptions.InternalClientError):  # a query sent on a connection the server is
        return "cannot switch to state" in str(exc)  # ending: "cannot switch to state 12; another operation (2) ..."
    return isinstance(exc, (ConnectionError, TimeoutError, asyncpg.PostgresConnectionError,
                            asyncpg.exceptions.OperatorInterventionError, asyncpg.exceptions.TooManyConnectionsError,
                            asyncpg.InterfaceError, sqlite3.OperationalError))
