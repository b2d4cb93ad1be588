"""One connection type for Ensemble's own tables on SQLite and on PostgreSQL.

The audit trail, model cache, publish journal and approval key are written with portable SQL and
`?` placeholders. On SQLite a module gets a plain `sqlite3.Connection`; on PostgreSQL it gets a
`PostgresTables` that speaks the same few methods (`execute`, `executemany`, `with conn:` for a
transaction), so each module has one body of SQL, not two.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Protocol

import psycopg

from ensemble.db.postgres import connection, explain
from ensemble.db.url import Database

DATABASE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, psycopg.Error)
"""What a failed query raises on either database (callers turn it into a `DatabaseError`)."""

INTEGRITY_ERRORS: tuple[type[Exception], ...] = (sqlite3.IntegrityError, psycopg.IntegrityError)
"""A unique key refused a row (two writers raced for the same name)."""


class TableConnection(Protocol):
    """What Ensemble's table modules use of a connection."""

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Any:
        """Run one statement with `?` placeholders; return a cursor."""

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> Any:
        """Run one statement for each row."""

    def __enter__(self) -> Any:
        """Start a transaction."""

    def __exit__(self, *exc: Any) -> Any:
        """Commit it, or roll it back on an error."""

    def close(self) -> None:
        """Give the connection back."""


def _placeholders(sql: str) -> str:
    """`?` placeholders (and literal `%`) in psycopg's spelling."""
    return sql.replace("%", "%%").replace("?", "%s")


class PostgresTables:
    """A pooled psycopg connection with the `sqlite3.Connection` methods the tables use."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn
        self._transactions: list[Any] = []

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        """Run one statement; its `?` placeholders become psycopg's."""
        return self._conn.execute(_placeholders(sql), tuple(params))  # type: ignore[arg-type]

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> psycopg.Cursor[Any]:
        """Run one statement for each row, in one round of the protocol."""
        cursor = self._conn.cursor()
        cursor.executemany(_placeholders(sql), [tuple(row) for row in rows])  # type: ignore[arg-type]
        return cursor

    def __enter__(self) -> PostgresTables:
        """Start a transaction, committed on leaving (rolled back on an error), as `sqlite3`."""
        transaction = self._conn.transaction()
        transaction.__enter__()
        self._transactions.append(transaction)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._transactions.pop().__exit__(kind, error, trace)

    def close(self) -> None:
        """Connections go back to the pool when `open_tables` ends; nothing to do here."""


@contextmanager
def open_tables(db: Database, *, sqlite_connect: Any) -> Iterator[TableConnection]:
    """A connection for Ensemble's tables in `db`; `sqlite_connect(path)` opens a SQLite one."""
    if not db.is_postgres:
        conn = sqlite_connect(db.sqlite_path)
        try:
            yield conn
        finally:
            conn.close()
        return
    try:
        with connection(db) as conn:
            yield PostgresTables(conn)
    except psycopg.OperationalError as error:
        raise explain(db, error) from error


@contextmanager
def write_transaction(conn: TableConnection) -> Iterator[None]:
    """A transaction that takes the write lock up front (SQLite `BEGIN IMMEDIATE`).

    On SQLite this waits (busy timeout) for the lock instead of failing when a read turns into a
    write; PostgreSQL's row locks need nothing special.
    """
    if isinstance(conn, PostgresTables):
        with conn:
            yield
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def table_exists(conn: TableConnection, table: str) -> bool:
    """Whether `table` exists (a database that has never been written has none)."""
    if isinstance(conn, PostgresTables):
        row = conn.execute("SELECT to_regclass(?)", (table,)).fetchone()
        return row is not None and row[0] is not None
    found = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    return found is not None


def create_tables(conn: TableConnection, sqlite_schema: str) -> None:
    """Create a module's tables on SQLite; on PostgreSQL `ensemble db upgrade` made them."""
    if not isinstance(conn, PostgresTables):
        conn.executescript(sqlite_schema)  # type: ignore[attr-defined]
