"""The one place that opens checkpointers: SQLite files with WAL and a busy timeout.

The CLI, notebooks, tests and the LangGraph dev server (`langgraph.json` -> `server_checkpointer`)
all go through here, so every way of running Ensemble reads and writes the same database.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from ensemble import settings
from ensemble.errors import DatabaseError


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


def connect(path: str | Path, *, create: bool = True) -> sqlite3.Connection:
    """Open a sync connection in WAL mode with a busy timeout; check the file is a database."""
    target = _prepare(Path(path), create=create)
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
def open_checkpointer(path: str | Path, *, create: bool = True) -> Iterator[SqliteSaver]:
    """Yield a ready `SqliteSaver` on `path` (for sync code: notebooks, inspection)."""
    with closing(connect(path, create=create)) as conn:
        saver = SqliteSaver(conn)
        try:
            saver.setup()
        except sqlite3.Error as error:
            raise _explain(Path(path), error) from error
        yield saver


async def open_saver(path: str | Path, *, create: bool = True) -> AsyncSqliteSaver:
    """Return a ready `AsyncSqliteSaver`; close it with `await saver.conn.close()`.

    For notebooks, where a saver lives across cells; elsewhere use `open_async_checkpointer`.
    It is bound to the running event loop.
    """
    target = _prepare(Path(path), create=create)
    timeout = settings.db_timeout()
    try:
        conn = await aiosqlite.connect(str(target), timeout=timeout)
    except sqlite3.Error as error:
        raise _explain(target, error) from error
    try:
        await conn.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        await conn.execute("PRAGMA journal_mode=WAL")
        saver = AsyncSqliteSaver(conn)
        await saver.setup()
    except sqlite3.Error as error:
        await conn.close()
        raise _explain(target, error) from error
    return saver


@asynccontextmanager
async def open_async_checkpointer(
    path: str | Path, *, create: bool = True
) -> AsyncIterator[AsyncSqliteSaver]:
    """Yield a ready `AsyncSqliteSaver` on `path` and close it afterwards."""
    saver = await open_saver(path, create=create)
    try:
        yield saver
    finally:
        await saver.conn.close()


async def ensure_writable(saver: AsyncSqliteSaver, path: str | Path) -> None:
    """Fail now, with a clear message, if another process holds the write lock.

    Better than a run that starts and then fails at its first checkpoint.
    """
    try:
        await saver.conn.execute("BEGIN IMMEDIATE")
        await saver.conn.execute("ROLLBACK")
    except sqlite3.Error as error:
        raise _explain(Path(path), error) from error


@asynccontextmanager
async def server_checkpointer() -> AsyncIterator[AsyncSqliteSaver]:
    """Checkpointer for `langgraph dev` (`checkpointer.path` in langgraph.json).

    Uses `ENSEMBLE_DB` (set by `ensemble serve`) so the server's threads land in the same file
    that `ensemble threads / history / show` read.
    """
    async with open_async_checkpointer(settings.db_path()) as saver:
        yield saver


@dataclass(frozen=True)
class ThreadSummary:
    """One thread as listed by `ensemble threads`."""

    thread_id: str
    last_checkpoint_id: str
    checkpoints: int


def list_threads(path: str | Path) -> list[ThreadSummary]:
    """List the threads stored in `path`, newest first, without creating the file."""
    try:
        rows = read_rows(
            path,
            "checkpoints",
            "SELECT thread_id, MAX(checkpoint_id), COUNT(*) FROM checkpoints "
            "WHERE checkpoint_ns = '' GROUP BY thread_id ORDER BY MAX(checkpoint_id) DESC",
        )
    except sqlite3.Error as error:
        raise _explain(Path(path), error) from error
    return [ThreadSummary(str(t), str(c), int(n)) for t, c, n in rows]


def read_rows(
    path: str | Path, table: str, query: str, params: Sequence[Any] = ()
) -> list[tuple[Any, ...]]:
    """Run a read-only query; a missing file, or a database without `table` yet, has no rows.

    A missing file is not created: reading (`ensemble threads`, a budget seeding itself) must
    not leave empty databases behind.

    Raises:
        sqlite3.Error: The query failed (the caller says what it was reading).
    """
    target = Path(path).expanduser()
    if str(path) != ":memory:" and not target.exists():
        return []
    with closing(connect(target, create=False)) as conn:
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchone()
        return conn.execute(query, params).fetchall() if exists else []
