"""Reading an APScheduler 3 job store: ``RedisJobStore`` or ``SQLAlchemyJobStore``.

The stores are built with APScheduler's own classes (so their keys, table and
connection options are APScheduler's), but each job's pickled state is read here
rather than through ``get_all_jobs``: that call imports every job's function, and
a store that cannot restore a job *deletes* it. Reading only the state leaves the
store untouched and needs none of the jobs' code, except for classes pickled in
their arguments. Unpickling runs code from the store, as APScheduler itself does:
read only stores you trust.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any

from redis.connection import parse_url

DEFAULT_TABLE = "apscheduler_jobs"
DEFAULT_JOBS_KEY = "apscheduler.jobs"
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


class JobStoreError(OSError):
    """The job store could not be read at all (a job that cannot be read is a ``StoredJob``
    with an error instead)."""


@dataclass(frozen=True)
class StoredJob:
    """One job of the store: its pickled state read back, or why it could not be."""

    id: str
    state: dict[str, Any] | None
    error: str | None = None


def read_jobstore(
    url: str, table: str = DEFAULT_TABLE, jobs_key: str = DEFAULT_JOBS_KEY
) -> list[StoredJob]:
    """Every job of the store at ``url``, by id; ``redis://`` (or ``rediss://``, ``unix://``)
    is a ``RedisJobStore``, anything else a SQLAlchemy URL."""
    if url.startswith(REDIS_SCHEMES):
        rows = _redis_rows(url, jobs_key)
    else:
        rows = _sql_rows(url, table)
    return [_unpickle(job_id, blob) for job_id, blob in sorted(rows)]


def _redis_rows(url: str, jobs_key: str) -> list[tuple[str, bytes]]:
    from apscheduler.jobstores.redis import RedisJobStore
    from redis.backoff import NoBackoff
    from redis.exceptions import RedisError
    from redis.retry import Retry

    try:
        options: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
        # one read, told at once when the server is not there: no retries with backoff
        options.update(retry=Retry(NoBackoff(), 0), socket_connect_timeout=10)
        store = RedisJobStore(jobs_key=jobs_key, **options)
    except ValueError as exc:
        raise JobStoreError(f"job store URL {url!r}: {exc}") from None
    try:
        found = store.redis.hgetall(store.jobs_key)
    except RedisError as exc:
        raise JobStoreError(f"cannot read the job store at {url}: {exc}") from None
    finally:
        store.redis.close()
    return [(_text(k), v) for k, v in found.items()]


def _sql_rows(url: str, table: str) -> list[tuple[str, bytes]]:
    try:
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
        from sqlalchemy import select
        from sqlalchemy.exc import ArgumentError, SQLAlchemyError
    except ImportError:
        needed = "reading a SQL job store needs SQLAlchemy: pip install sqlalchemy"
        raise JobStoreError(needed) from None
    try:
        _sqlite_exists(url)
        store = SQLAlchemyJobStore(url=url, tablename=table)
    except (ArgumentError, ImportError) as exc:
        raise JobStoreError(f"job store URL {url!r}: {exc}") from None
    columns = store.jobs_t.c
    try:
        with store.engine.connect() as connection:
            result = connection.execute(select(columns.id, columns.job_state))
            return [(str(row[0]), bytes(row[1])) for row in result]
    except SQLAlchemyError as exc:
        reason = str(exc).splitlines()[0]
        raise JobStoreError(f"cannot read table {table!r} at {url}: {reason}") from None
    finally:
        store.engine.dispose()


def _sqlite_exists(url: str) -> None:
    """SQLite would create a missing file: a job store to read must be there already."""
    from pathlib import Path

    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() == "sqlite" and database and database != ":memory:":
        if not database.startswith("file:") and not Path(database).is_file():
            raise JobStoreError(f"no SQLite job store at {database}")


def _unpickle(job_id: str, blob: bytes) -> StoredJob:
    try:
        state = pickle.loads(blob)  # APScheduler's stores hold pickles
    except Exception as exc:
        return StoredJob(job_id, None, f"cannot read its state: {type(exc).__name__}: {exc}")
    if not isinstance(state, dict) or state.get("version", 1) > 1:
        return StoredJob(job_id, None, "its state is not an APScheduler 3 job (version 1)")
    return StoredJob(job_id, state)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
