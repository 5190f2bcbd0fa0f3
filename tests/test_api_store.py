"""The job and key store, one suite over both backends on real databases.

SQLite lives in ``tmp_path``. PostgreSQL is ``postgresql://postgres@127.0.0.1:5432/test``
(``$FORMCHECK_TEST_DATABASE_URL`` overrides), one fresh schema per test, dropped afterwards;
an unreachable server fails the tests, it never skips them.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import anyio
import asyncpg
import pytest

from api.store import STATUSES, ApiKey, Job, NewJob, PostgresStore, SqliteStore, Store, open_store

PG_URL = os.environ.get("FORMCHECK_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
LEASE = 30.0

pytestmark = pytest.mark.anyio

OpenStore = Callable[[], Awaitable[Store]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["sqlite", "postgres"])
async def open_more(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[OpenStore]:
    """Opens stores on one database (each call a new instance, as separate API workers would)."""
    opened: list[Store] = []
    schema = f"t_{uuid.uuid4().hex}"

    async def make() -> Store:
        store: Store
        if request.param == "sqlite":
            store = SqliteStore(tmp_path / "sub" / "store.sqlite3")
        else:
            store = PostgresStore(PG_URL, min_size=1, max_size=5, schema=schema)
        try:
            await store.open()
        except (OSError, asyncpg.PostgresError) as e:
            pytest.fail(f"PostgreSQL at {PG_URL} is unreachable ({type(e).__name__}: {e}); start it or set "
                        "FORMCHECK_TEST_DATABASE_URL", pytrace=False)
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()
    if request.param == "postgres" and opened:  # nothing to drop if the server never answered
        conn = await asyncpg.connect(PG_URL)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


@pytest.fixture
async def store(open_more: OpenStore) -> Store:
    return await open_more()


def new_job(n: int | str, owner: str = "alice", upload: str | None = None, key: str = "") -> NewJob:
    return NewJob(id=f"job{n}", owner=owner, filename=f"clip{n}.mp4", upload_path=upload or f"uploads/{n}.mp4",
                  params='{"exercise": "squat"}', result_key=key)


async def queue(store: Store, count: int, start: float = 1000.0) -> list[Job]:
    return [await store.add_job(new_job(i), now=start + i) for i in range(count)]


# connection and keys


async def test_open_twice_is_idempotent_and_keeps_data(open_more: OpenStore) -> None:
    first = await open_more()
    await first.open()  # already open: nothing happens
    await first.add_job(new_job(1), now=1.0)
    second = await open_more()  # the schema exists: no migration, no error
    await second.ping()
    assert (await second.get_job("job1", None)) is not None


async def test_a_newer_schema_is_refused(open_more: OpenStore) -> None:
    store = await open_more()
    if isinstance(store, SqliteStore):
        db = sqlite3.connect(store.path)
        try:
            db.execute("PRAGMA user_version = 99")
        finally:
            db.close()
    else:
        assert isinstance(store, PostgresStore)
        conn = await asyncpg.connect(PG_URL)
        try:
            await conn.execute(f'INSERT INTO "{store.schema}".schema_version (version) VALUES (99)')
        finally:
            await conn.close()
    with pytest.raises(RuntimeError, match="schema version 99 is newer than this formcheck knows"):
        await open_more()


async def test_closed_store_says_so(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3")
    with pytest.raises(RuntimeError, match="not open"):
        await store.ping()


async def test_keys(store: Store) -> None:
    await store.add_key(ApiKey(id="k1", name="ci", key_hash="h1", created_at=5.0))
    await store.add_key(ApiKey(id="k2", name="old", key_hash="h2", created_at=6.0, revoked=True))
    assert await store.key_by_hash("h1") == ApiKey(id="k1", name="ci", key_hash="h1", created_at=5.0)
    assert await store.key_by_hash("h2") is None  # revoked
    assert await store.key_by_hash("nope") is None


# jobs, the API's side


async def test_add_get_delete_with_owner_isolation(store: Store) -> None:
    job = await store.add_job(new_job(1), now=10.0)
    assert (job.status, job.progress, job.phase, job.attempts, job.runner, job.lease_until) == (
        "queued", 0.0, "queued", 0, None, None)
    assert (job.created_at, job.updated_at, job.params) == (10.0, 10.0, '{"exercise": "squat"}')
    assert await store.get_job("job1", "alice") == job
    assert await store.get_job("job1", None) == job
    assert await store.get_job("job1", "mallory") is None
    assert await store.delete_job("job1", "mallory") is None
    assert await store.delete_job("job1", "alice") == job
    assert await store.get_job("job1", None) is None
    assert await store.delete_job("job1", "alice") is None


async def test_list_pages_newest_first_per_owner(store: Store) -> None:
    await queue(store, 5)
    await store.add_job(new_job("b", owner="bob"), now=2000.0)
    page, total = await store.list_jobs("alice", limit=2, offset=0)
    assert ([j.id for j in page], total) == (["job4", "job3"], 5)
    page, total = await store.list_jobs("alice", limit=2, offset=4)
    assert ([j.id for j in page], total) == (["job0"], 5)
    assert await store.list_jobs("carol", limit=10, offset=0) == ([], 0)


async def test_done_with_key_and_count_with_upload(store: Store) -> None:
    await store.add_job(new_job(1, upload="u/same", key="k"), now=1.0)  # queued: not an answer
    assert await store.done_with_key("k") is None
    done = await store.add_done(new_job(2, upload="u/same", key="k"), '{"reps": 3}', now=2.0)
    assert (done.status, done.progress, done.phase, done.result, done.attempts) == (
        "done", 1.0, "done", '{"reps": 3}', 0)
    assert await store.done_with_key("k") == done
    await store.add_done(new_job(3, key=""), "{}", now=3.0)
    assert await store.done_with_key("") is None  # an unknown key matches nothing
    assert await store.count_with_upload("u/same") == 2
    await store.delete_job("job1", None)
    assert await store.count_with_upload("u/same") == 1
    assert await store.count_with_upload("u/none") == 0


async def test_counts_has_every_status(store: Store) -> None:
    assert await store.counts() == dict.fromkeys(STATUSES, 0)
    await queue(store, 3)
    await store.add_done(new_job("d"), "{}", now=1.0)
    a = await store.claim("r1", now=5000.0, lease_s=LEASE, max_attempts=3)
    b = await store.claim("r1", now=5000.0, lease_s=LEASE, max_attempts=3)
    assert a and b and await store.fail(b.id, "r1", "bad video", now=5001.0)
    assert await store.counts() == {"queued": 1, "running": 1, "done": 1, "failed": 1}


# jobs, the runner's side


async def test_claim_takes_oldest_first(store: Store) -> None:
    await store.add_job(new_job("late"), now=20.0)
    await store.add_job(new_job("early"), now=10.0)
    await store.add_done(new_job("done"), "{}", now=1.0)
    first = await store.claim("r1", now=100.0, lease_s=LEASE, max_attempts=3)
    assert first is not None
    assert (first.id, first.status, first.runner, first.lease_until, first.attempts, first.updated_at) == (
        "jobearly", "running", "r1", 130.0, 1, 100.0)
    second = await store.claim("r2", now=100.0, lease_s=LEASE, max_attempts=3)
    assert second is not None and second.id == "joblate"
    assert await store.claim("r3", now=100.0, lease_s=LEASE, max_attempts=3) is None


async def _claim_all(stores: list[Store], claimers: int) -> list[str]:
    got: list[str] = []

    async def claimer(store: Store, name: str) -> None:
        while (job := await store.claim(name, now=5000.0, lease_s=LEASE, max_attempts=3)) is not None:
            got.append(job.id)
            await anyio.sleep(0)

    async with anyio.create_task_group() as tg:
        for i in range(claimers):
            tg.start_soon(claimer, stores[i % len(stores)], f"r{i}")
    return got


async def test_concurrent_claims_take_each_job_once(store: Store) -> None:
    jobs = await queue(store, 20)
    got = await _claim_all([store], claimers=4)
    assert sorted(got) == sorted(j.id for j in jobs)
    assert (await store.counts())["running"] == 20


async def test_concurrent_claims_across_store_instances(open_more: OpenStore) -> None:
    """Two instances on one database: separate connections, as separate API processes have."""
    one, two = await open_more(), await open_more()
    jobs = await queue(one, 20)
    got = await _claim_all([one, two], claimers=4)
    assert sorted(got) == sorted(j.id for j in jobs)


async def test_expired_lease_is_claimed_again(store: Store) -> None:
    await queue(store, 1)
    job = await store.claim("r1", now=100.0, lease_s=LEASE, max_attempts=3)
    assert job is not None and job.lease_until == 130.0
    assert await store.claim("r2", now=130.0, lease_s=LEASE, max_attempts=3) is None  # not yet *before* now
    again = await store.claim("r2", now=131.0, lease_s=LEASE, max_attempts=3)
    assert again is not None and (again.id, again.runner, again.attempts) == (job.id, "r2", 2)
    # the first runner lost it: everything it tries is refused and changes nothing
    assert not await store.renew(job.id, "r1", now=132.0, lease_s=LEASE, progress=0.5, phase="analyzing")
    assert not await store.finish(job.id, "r1", "{}", now=132.0)
    assert not await store.fail(job.id, "r1", "boom", now=132.0)
    assert not await store.release(job.id, "r1", now=132.0, count_attempt=False)
    assert await store.get_job(job.id, None) == again


async def test_gives_up_after_max_attempts_and_tries_the_next(store: Store) -> None:
    await queue(store, 2)  # job0 is older
    now = 100.0
    for attempt in range(1, 4):
        job = await store.claim(f"r{attempt}", now=now, lease_s=LEASE, max_attempts=3)
        assert job is not None and (job.id, job.attempts) == ("job0", attempt)
        now += LEASE + 1  # the runner dies: its lease runs out
    nxt = await store.claim("r9", now=now, lease_s=LEASE, max_attempts=3)
    assert nxt is not None and nxt.id == "job1"
    failed = await store.get_job("job0", None)
    assert failed is not None
    assert (failed.status, failed.runner, failed.lease_until, failed.attempts) == ("failed", None, None, 3)
    assert failed.error == "gave up after 3 attempts: the analysis worker kept failing (last runner r3)"


async def test_renew_finish_fail_need_the_holder(store: Store) -> None:
    await queue(store, 2)
    a = await store.claim("r1", now=100.0, lease_s=LEASE, max_attempts=3)
    b = await store.claim("r1", now=100.0, lease_s=LEASE, max_attempts=3)
    assert a and b
    assert not await store.renew(a.id, "other", now=110.0, lease_s=LEASE, progress=0.5, phase="analyzing")
    assert await store.get_job(a.id, None) == a
    assert await store.renew(a.id, "r1", now=110.0, lease_s=LEASE, progress=0.5, phase="analyzing")
    renewed = await store.get_job(a.id, None)
    assert renewed and (renewed.lease_until, renewed.progress, renewed.phase, renewed.updated_at) == (
        140.0, 0.5, "analyzing", 110.0)

    assert not await store.finish(a.id, "other", "{}", now=120.0)
    assert await store.finish(a.id, "r1", '{"reps": 5}', now=120.0)
    done = await store.get_job(a.id, None)
    assert done and (done.status, done.result, done.progress, done.phase, done.runner, done.lease_until) == (
        "done", '{"reps": 5}', 1.0, "done", None, None)
    assert not await store.finish(a.id, "r1", "{}", now=121.0)  # no longer running
    assert await store.done_with_key("") is None

    assert not await store.fail(b.id, "other", "nope", now=120.0)
    assert await store.fail(b.id, "r1", "the video has no frames", now=120.0)
    failed = await store.get_job(b.id, None)
    assert failed and (failed.status, failed.error, failed.runner, failed.lease_until) == (
        "failed", "the video has no frames", None, None)
    assert not await store.renew(b.id, "r1", now=121.0, lease_s=LEASE, progress=1.0, phase="x")


@pytest.mark.parametrize(("count_attempt", "attempts_after"), [(False, 0), (True, 1)])
async def test_release(store: Store, count_attempt: bool, attempts_after: int) -> None:
    await queue(store, 1)
    job = await store.claim("r1", now=100.0, lease_s=LEASE, max_attempts=3)
    assert job is not None
    assert not await store.release(job.id, "other", now=101.0, count_attempt=count_attempt)
    assert await store.release(job.id, "r1", now=101.0, count_attempt=count_attempt)
    back = await store.get_job(job.id, None)
    assert back and (back.status, back.runner, back.lease_until, back.attempts, back.phase) == (
        "queued", None, None, attempts_after, "queued")
    assert not await store.release(job.id, "r1", now=102.0, count_attempt=count_attempt)  # queued now
    again = await store.claim("r2", now=102.0, lease_s=LEASE, max_attempts=3)  # claimable at once
    assert again is not None and again.attempts == attempts_after + 1


# choosing the backend


def test_open_store_picks_the_backend(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    assert isinstance(open_store(None, path, 1, 2), SqliteStore)
    assert isinstance(open_store("", path, 1, 2), SqliteStore)
    for url in ("postgres://u@h/db", "postgresql://u@h/db"):
        pg = open_store(url, path, 3, 7)
        assert isinstance(pg, PostgresStore) and (pg.url, pg.min_size, pg.max_size) == (url, 3, 7)


@pytest.mark.parametrize(("url", "got"), [("mysql://u:secret@h/db", "'mysql' URL"),
                                          ("h:secret@x/db", "a value without a scheme")])
def test_open_store_refuses_other_urls_without_echoing_them(tmp_path: Path, url: str, got: str) -> None:
    with pytest.raises(ValueError, match="expected a postgresql://") as err:
        open_store(url, tmp_path / "jobs.sqlite3", 1, 2)
    assert got in str(err.value) and "secret" not in str(err.value)


def test_database_unavailability_is_told_from_other_errors() -> None:
    """What the API answers 503 + Retry-After to (the database down, restarting, its connections cut,
    SQLite locked) rather than 500 (tests/test_faults.py shows it against a stopped PostgreSQL)."""
    import sqlite3

    import asyncpg

    from api.store import unavailable

    down = [ConnectionRefusedError(111, "refused"), ConnectionResetError(), TimeoutError(),
            OSError("Multiple exceptions: [Errno 111] Connect call failed ('::1', 5432, 0, 0), [Errno 111] "
                    "Connect call failed ('127.0.0.1', 5432)"),
            asyncpg.exceptions.CannotConnectNowError("the database system is shutting down"),
            asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
            asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
            asyncpg.exceptions.TooManyConnectionsError("too many clients"),
            asyncpg.InterfaceError("connection is closed"), sqlite3.OperationalError("database is locked"),
            # a status poll racing PostgreSQL's fast shutdown (seen once in test_faults): the server had
            # sent "terminating connection" and the client was still reading it when the poll's query went
            asyncpg.exceptions.InternalClientError("cannot switch to state 12; another operation (2) is in progress")]
    other = [ValueError("bad"), KeyError("id"), OSError(28, "No space left on device"), RuntimeError("bug"),
             asyncpg.exceptions.UniqueViolationError("duplicate key"),
             asyncpg.exceptions.InternalClientError("unexpected codec")]
    assert [unavailable(e) for e in down] == [True] * len(down)
    assert [unavailable(e) for e in other] == [False] * len(other)
