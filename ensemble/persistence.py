"""The one place that opens checkpointers and table connections, on SQLite or PostgreSQL.

The CLI, notebooks, workers, tests and the LangGraph dev server (`langgraph.json` ->
`server_checkpointer`) all go through here, so every way of running Ensemble reads and writes the
same database. SQLite files get WAL and a busy timeout; PostgreSQL gets LangGraph's own saver on a
pool (`ensemble.db.postgres`).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ensemble import settings
from ensemble.db import DatabaseLike, database
from ensemble.db.tables import DATABASE_ERRORS, TableConnection, open_tables, table_exists
from ensemble.errors import DatabaseError

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver

# LangGraph's savers are imported where a saver is opened: `ensemble threads`, the audit trail
# and the corpus read plain tables through this module without paying for LangGraph.


def _prepare(path: Path, *, create: bool) -> Path:
    if str(path) == ":memory:":
        return path
    if path.exists() and not path.is_file():
        raise DatabaseError(f"database path is not a file: {path}")
    if not path.exists():
        if not create:
            raise DatabaseError(f"no database at {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _explain(path: Path, error: Exception) -> DatabaseError:
    text = str(error)
    if "locked" in text or "busy" in text:
        return DatabaseError(f"database {path} is locked by another process ({text})")
    return DatabaseError(f"cannot use database {path}: {text}")


def connect(path: DatabaseLike, *, create: bool = True) -> sqlite3.Connection:
    """Open a sync connection to a SQLite file in WAL mode with a busy timeout; check it."""
    target = _prepare(database(path).sqlite_path, create=create)
    timeout = settings.db_timeout()
    try:
        conn = sqlite3.connect(str(target), check_same_thread=False, timeout=timeout)
        conn.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        _wal(conn, timeout)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as error:
        raise _explain(target, error) from error
    return conn


def _wal(conn: sqlite3.Connection, timeout: float) -> None:
    """Switch to WAL, retrying while another connection is opening a brand-new file.

    The switch then fails at once with "database is locked" (the busy timeout does not apply).
    """
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


@contextmanager
def open_checkpointer(db: DatabaseLike, *, create: bool = True) -> Iterator[Any]:
    """Yield a ready sync saver on `db` (for sync code off the event loop: inspection)."""
    db = database(db)
    if db.is_postgres:
        from ensemble.db.postgres import open_sync_saver

        with open_sync_saver(db) as pg_saver:
            yield pg_saver
        return
    from langgraph.checkpoint.sqlite import SqliteSaver

    path = db.sqlite_path
    with closing(connect(path, create=create)) as conn:
        saver = SqliteSaver(conn)
        try:
            saver.setup()
        except sqlite3.Error as error:
            raise _explain(Path(path), error) from error
        yield saver


async def open_saver(path: DatabaseLike, *, create: bool = True) -> Any:
    """Return a ready async saver; close it with `await saver.conn.close()`.

    For notebooks, where a saver lives across cells; elsewhere use `open_async_checkpointer`.
    A SQLite path gives an `AsyncSqliteSaver` (with prune, delete_for_runs and copy_thread:
    `ensemble.db.sqlite_saver`); a postgresql:// URL LangGraph's
    `AsyncPostgresSaver` on a pool (its `conn`). It is bound to the running event loop.
    """
    db = database(path)
    if db.is_postgres:
        from ensemble.db.postgres import open_pooled_saver

        return await open_pooled_saver(db)
    import aiosqlite

    from ensemble.db.sqlite_saver import EnsembleSqliteSaver

    target = _prepare(db.sqlite_path, create=create)
    timeout = settings.db_timeout()
    try:
        conn = await aiosqlite.connect(str(target), timeout=timeout)
    except sqlite3.Error as error:
        raise _explain(target, error) from error
    try:
        await conn.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        await conn.execute("PRAGMA journal_mode=WAL")
        saver = EnsembleSqliteSaver(conn)
        await saver.setup()
    except sqlite3.Error as error:
        await conn.close()
        raise _explain(target, error) from error
    return saver


@asynccontextmanager
async def open_async_checkpointer(
    db: DatabaseLike, *, create: bool = True
) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    """Yield a ready async saver on `db` and close it afterwards.

    SQLite: an `AsyncSqliteSaver` (the file is made when `create`). PostgreSQL: LangGraph's
    `AsyncPostgresSaver` on a pool, once `ensemble db upgrade` has prepared the database.
    """
    db = database(db)
    if db.is_postgres:
        from ensemble.db.postgres import open_async_saver

        async with open_async_saver(db) as pg_saver:
            yield pg_saver
        return
    saver = await open_saver(db.sqlite_path, create=create)
    try:
        yield saver
    finally:
        await saver.conn.close()


async def ensure_writable(saver: BaseCheckpointSaver[Any], db: DatabaseLike) -> None:
    """Fail now, with a clear message, if another process holds a SQLite file's write lock.

    Better than a run that starts and then fails at its first checkpoint. PostgreSQL has no
    database-wide write lock.
    """
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    if not isinstance(saver, AsyncSqliteSaver):
        return
    path = database(db).sqlite_path
    try:
        await saver.conn.execute("BEGIN IMMEDIATE")
        await saver.conn.execute("ROLLBACK")
    except sqlite3.Error as error:
        raise _explain(Path(path), error) from error


@asynccontextmanager
async def server_checkpointer() -> AsyncIterator[BaseCheckpointSaver[Any]]:
    """Checkpointer for `langgraph dev` (`checkpointer.path` in langgraph.json).

    Uses `ENSEMBLE_DB` (set by `ensemble serve`) so the server's threads land in the same database
    that `ensemble threads / history / show` read.
    """
    async with open_async_checkpointer(database()) as saver:
        yield saver


@dataclass(frozen=True)
class ThreadSummary:
    """One thread as listed by `ensemble threads`."""

    thread_id: str
    last_checkpoint_id: str
    checkpoints: int
    writes: str = ""
    """Changes whenever the thread's saved writes do (a step saved, a question asked or
    answered, an error), even while its latest checkpoint stays the same."""


THREAD_QUERIES = {
    "sqlite": (
        "SELECT c.thread_id, MAX(c.checkpoint_id), COUNT(*), ("
        "SELECT COUNT(*) || ':' || IFNULL(MAX(w.rowid), 0) FROM writes AS w "
        "WHERE w.thread_id = c.thread_id) "
        "FROM checkpoints AS c WHERE c.checkpoint_ns = '' "
        "GROUP BY c.thread_id ORDER BY MAX(c.checkpoint_id) DESC"
    ),
    "postgresql": (
        "SELECT c.thread_id, MAX(c.checkpoint_id), COUNT(*), ("
        "SELECT COUNT(*)::text FROM checkpoint_writes AS w WHERE w.thread_id = c.thread_id) "
        "FROM checkpoints AS c WHERE c.checkpoint_ns = '' "
        "GROUP BY c.thread_id ORDER BY MAX(c.checkpoint_id) DESC"
    ),
}
"""Each thread's latest checkpoint, its number of checkpoints and the key of its saved writes.

SQLite replaces a write with a new row (a new rowid). PostgreSQL updates one in place only when
a task saves an error, a question or an answer again, which leaves its status as it was, so
there the count suffices."""


def list_threads(db: DatabaseLike) -> list[ThreadSummary]:
    """List the threads stored in `db`, newest first, without creating a file."""
    db = database(db)
    try:
        rows = read_rows(db, "checkpoints", THREAD_QUERIES[db.kind])
    except DATABASE_ERRORS as error:
        raise DatabaseError(f"cannot list the threads in {db}: {error}") from error
    return [ThreadSummary(str(t), str(c), int(n), str(w)) for t, c, n, w in rows]


SIZE_QUERIES = {
    "sqlite": (
        "SELECT thread_id, SUM(size) FROM ("
        "SELECT thread_id, length(checkpoint) + length(metadata) AS size FROM checkpoints "
        "UNION ALL SELECT thread_id, length(value) FROM writes) GROUP BY thread_id"
    ),
    "postgresql": (
        "SELECT thread_id, SUM(size) FROM ("
        "SELECT thread_id, pg_column_size(checkpoint) + pg_column_size(metadata) AS size "
        "FROM checkpoints UNION ALL SELECT thread_id, pg_column_size(blob) FROM checkpoint_blobs "
        "UNION ALL SELECT thread_id, pg_column_size(blob) FROM checkpoint_writes) AS sizes "
        "GROUP BY thread_id"
    ),
}
"""Bytes of each thread's checkpoints and writes, as stored (before the database's own pages)."""


def thread_sizes(db: DatabaseLike) -> dict[str, int]:
    """How many bytes each thread's checkpoints and writes take."""
    db = database(db)
    try:
        rows = read_rows(db, "checkpoints", SIZE_QUERIES[db.kind])
    except DATABASE_ERRORS as error:
        raise DatabaseError(f"cannot measure the threads in {db}: {error}") from error
    return {str(thread): int(size or 0) for thread, size in rows}


def read_rows(
    db: DatabaseLike, table: str, query: str, params: Sequence[Any] = ()
) -> list[tuple[Any, ...]]:
    """Run a read-only query; a missing file, or a database without `table` yet, has no rows.

    A missing file is not created: reading (`ensemble threads`, a budget seeding itself) must
    not leave empty databases behind.

    Raises:
        sqlite3.Error | psycopg.Error: The query failed (the caller says what it was reading).
    """
    db = database(db)
    if not db.is_postgres:
        target = db.sqlite_path
        if str(target) != ":memory:" and not target.exists():
            return []
    with tables(db, create=False) as conn:
        if not table_exists(conn, table):
            return []
        return [tuple(row) for row in conn.execute(query, params).fetchall()]


@contextmanager
def tables(db: DatabaseLike, *, create: bool = True) -> Iterator[TableConnection]:
    """A short connection for Ensemble's own tables, autocommit until a transaction is asked for.

    SQLite: a `sqlite3.Connection` in autocommit mode. PostgreSQL: a pooled connection with the
    same methods (`ensemble.db.tables`).
    """

    def sqlite(path: Path) -> sqlite3.Connection:
        conn = connect(path, create=create)
        conn.isolation_level = None
        return conn

    with open_tables(database(db), sqlite_connect=sqlite) as conn:
        yield conn
