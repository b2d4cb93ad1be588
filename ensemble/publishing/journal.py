"""The publish journal: which draft went to which files, so a replay never publishes twice.

It lives in the project's SQLite database, next to the checkpoints. A row is written as
'started' before any file and turned 'done' after both files are in place, so a crash leaves a
'started' row that tells the next attempt exactly which names to finish.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ensemble.db import Database, DatabaseLike, database
from ensemble.db.tables import (
    DATABASE_ERRORS,
    INTEGRITY_ERRORS,
    TableConnection,
    create_tables,
    write_transaction,
)
from ensemble.errors import DatabaseError
from ensemble.persistence import tables
from ensemble.publishing.errors import PublishError, SlugTakenError

Status = Literal["started", "done"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS publish_journal (
    thread_id TEXT NOT NULL,
    draft_key TEXT NOT NULL,
    out_dir TEXT NOT NULL,
    slug TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('started', 'done')),
    files TEXT NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL,
    PRIMARY KEY (thread_id, draft_key)
);
CREATE UNIQUE INDEX IF NOT EXISTS publish_journal_out_dir_slug
    ON publish_journal (out_dir, slug);
"""

_COLUMNS = "thread_id, draft_key, out_dir, slug, status, files, started_at, finished_at"


@dataclass(frozen=True)
class Entry:
    """One publication: a draft of a thread, the folder and names it was given, and its state."""

    thread_id: str
    draft_key: str
    out_dir: Path
    slug: str
    status: Status
    files: tuple[str, ...]
    started_at: float
    finished_at: float | None


class PublishJournal:
    """Publication records in the database `db` (a SQLite file is created if missing).

    Each call opens its own short connection through `ensemble.persistence.tables`, so one
    journal can be shared by threads, processes and (on PostgreSQL) machines: the database's
    locks and unique keys order their writes.
    """

    def __init__(self, db: DatabaseLike) -> None:
        self.db = database(db)
        if str(self.db.path) == ":memory:":
            raise DatabaseError("the publish journal needs a database file, not :memory:")
        with self._connection() as conn:
            create_tables(conn, _SCHEMA)

    def find(self, thread_id: str, draft_key: str) -> Entry | None:
        """Return the record of this draft of this thread, if it was ever reserved."""
        with self._connection() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM publish_journal WHERE thread_id = ? AND draft_key = ?",
                (thread_id, draft_key),
            ).fetchone()
        return _entry(row) if row else None

    def reserve(
        self, thread_id: str, draft_key: str, out_dir: Path, slug: str, files: tuple[str, ...]
    ) -> Entry:
        """Record a 'started' publication before any file is written.

        Raises:
            SlugTakenError: Another draft holds `slug` in `out_dir` (the caller tries the next).
            PublishError: This draft already has a record (another process is publishing it).
        """
        now = time.time()
        with self._connection() as conn, write_transaction(conn):
            mine = conn.execute(
                "SELECT 1 FROM publish_journal WHERE thread_id = ? AND draft_key = ?",
                (thread_id, draft_key),
            ).fetchone()
            if mine:
                raise PublishError(
                    f"thread {thread_id} is already publishing this draft; try again"
                )
            taken = conn.execute(
                "SELECT 1 FROM publish_journal WHERE out_dir = ? AND slug = ?",
                (str(out_dir), slug),
            ).fetchone()
            if taken:
                raise SlugTakenError(f"the name {slug!r} is already taken in {out_dir}")
            try:
                conn.execute(
                    f"INSERT INTO publish_journal ({_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, 'started', ?, ?, NULL)",
                    (thread_id, draft_key, str(out_dir), slug, json.dumps(list(files)), now),
                )
            except INTEGRITY_ERRORS as error:  # another machine reserved between check and insert
                if "slug" in str(error):
                    raise SlugTakenError(
                        f"the name {slug!r} is already taken in {out_dir}"
                    ) from None
                raise PublishError(
                    f"thread {thread_id} is already publishing this draft; try again"
                ) from None
        return Entry(thread_id, draft_key, out_dir, slug, "started", tuple(files), now, None)

    def finish(self, thread_id: str, draft_key: str) -> None:
        """Mark a reserved publication 'done': both files are in place."""
        with self._connection() as conn, write_transaction(conn):
            updated = conn.execute(
                "UPDATE publish_journal SET status = 'done', finished_at = ? "
                "WHERE thread_id = ? AND draft_key = ?",
                (time.time(), thread_id, draft_key),
            ).rowcount
        if not updated:
            raise PublishError(f"no publication of thread {thread_id} to finish")

    def release(self, thread_id: str, draft_key: str) -> None:
        """Forget a 'started' reservation whose attempt was refused (its name becomes free)."""
        with self._connection() as conn, write_transaction(conn):
            conn.execute(
                "DELETE FROM publish_journal "
                "WHERE thread_id = ? AND draft_key = ? AND status = 'started'",
                (thread_id, draft_key),
            )

    def reserved_slugs(self, out_dir: Path) -> set[str]:
        """Slugs recorded for `out_dir` (resolved), whether finished or not."""
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT slug FROM publish_journal WHERE out_dir = ?", (str(out_dir),)
            ).fetchall()
        return {str(slug) for (slug,) in rows}

    def _connection(self) -> AbstractContextManager[TableConnection]:
        return connection(self.db, "publish journal")


@contextmanager
def connection(db: Database, what: str) -> Iterator[TableConnection]:
    """A short connection, autocommit unless in a transaction; database errors name `what`."""
    try:
        with tables(db) as conn:
            yield conn
    except DATABASE_ERRORS as error:
        raise DatabaseError(f"{what} in {db}: {error}") from error


def _entry(row: tuple) -> Entry:
    thread_id, draft_key, out_dir, slug, status, files, started_at, finished_at = row
    try:
        names = json.loads(files)
    except (TypeError, ValueError):
        names = None
    if status not in ("started", "done") or not isinstance(names, list):
        raise PublishError(f"corrupt publish journal entry for thread {thread_id}")
    return Entry(
        thread_id=str(thread_id),
        draft_key=str(draft_key),
        out_dir=Path(out_dir),
        slug=str(slug),
        status=status,
        files=tuple(str(name) for name in names),
        started_at=float(started_at),
        finished_at=None if finished_at is None else float(finished_at),
    )
