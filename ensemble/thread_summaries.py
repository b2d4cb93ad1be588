"""What `ensemble threads` shows of each thread, kept so a listing need not load LangGraph.

A thread's status, outcome and input come from its latest state, which only the scenario's
graph can read (`aget_state`). Each summary is stored with what it was computed from: the
thread's latest checkpoint and the key of its saved writes (`ensemble.persistence.list_threads`).
A listing uses a summary only while both are unchanged, so it never shows a stale status: a run
killed after saving a step's writes but before its next checkpoint keeps its checkpoint, yet
its writes (and so its status) changed. Only threads that moved on are read through their graph.
A summary also names the Ensemble release that computed it: another release's graphs (and state
versions) may read the same checkpoint differently, so it computes its own.

The table is a cache: it can always be dropped. A database that cannot be written (a read-only
file, a lock held too long, a PostgreSQL database without the table) is listed without it.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from ensemble.db import DatabaseLike
from ensemble.db.tables import (
    DATABASE_ERRORS,
    PostgresTables,
    create_tables,
    table_exists,
    write_transaction,
)
from ensemble.errors import DatabaseError
from ensemble.persistence import ThreadSummary, read_rows, tables

TABLE = "ensemble_thread_summaries"

SQLITE_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    thread_id TEXT PRIMARY KEY,
    checkpoint_id TEXT NOT NULL,
    writes_key TEXT NOT NULL,
    release TEXT NOT NULL,
    scenario TEXT NOT NULL,
    status TEXT NOT NULL,
    outcome TEXT NOT NULL,
    input_field TEXT NOT NULL,
    input TEXT NOT NULL,
    updated TEXT
);
"""
"""The SQLite table; PostgreSQL's is made by migration 0004 (`ensemble db upgrade`)."""

_COLUMNS = (
    "thread_id, checkpoint_id, writes_key, release, scenario, status, outcome, input_field, "
    "input, updated"
)

_UPSERT = (
    f"INSERT INTO {TABLE} ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (thread_id) DO UPDATE SET checkpoint_id = excluded.checkpoint_id, "
    "writes_key = excluded.writes_key, release = excluded.release, "
    "scenario = excluded.scenario, status = excluded.status, outcome = excluded.outcome, "
    "input_field = excluded.input_field, input = excluded.input, updated = excluded.updated"
)

UNUSABLE: tuple[type[Exception], ...] = (*DATABASE_ERRORS, DatabaseError)
"""What reading or writing the table may raise when it cannot be used; the listing goes on."""

WRITE_WAIT_MS = 500
"""How long saving summaries waits for another process's write lock before giving up: the
listing is ready, and a later one saves them."""


@dataclass(frozen=True)
class Summary:
    """One thread's latest state as listed: computed from its graph, or kept from before."""

    scenario: str
    """The scenario the thread runs."""
    status: str
    """done, interrupted (waiting for an answer) or failed (work left: `ensemble resume`)."""
    outcome: str
    """The scenario's verdict (`approved`, `solved` ...), empty while it has none."""
    input_field: str
    """The scenario's primary input field (`question`, `topic`, `problem`)."""
    input: Any
    """That field's value in the thread's state."""
    updated: str | None
    """When the latest checkpoint was written (ISO time)."""


def release() -> str:
    """This Ensemble's version, stored with each summary it computes."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ensemble")
    except PackageNotFoundError:  # pragma: no cover - a checkout on sys.path, not installed
        return "unknown"


def cached_summaries(db: DatabaseLike, threads: Collection[ThreadSummary]) -> dict[str, Summary]:
    """The stored summaries still true of `threads`: same latest checkpoint, writes and release.

    A table that cannot be read (not made yet, no permission) holds none: all are computed.
    """
    if not threads:
        return {}
    try:
        rows = read_rows(db, TABLE, f"SELECT {_COLUMNS} FROM {TABLE}")
    except UNUSABLE:
        return {}
    ours = release()
    keys = {t.thread_id: (t.last_checkpoint_id, t.writes, ours) for t in threads}
    return {
        str(thread): Summary(scenario, status, outcome, field, json.loads(value), updated)
        for thread, head, writes, made_by, scenario, status, outcome, field, value, updated in rows
        if keys.get(str(thread)) == (head, writes, made_by)
    }


def save_summaries(
    db: DatabaseLike, threads: Collection[ThreadSummary], computed: Mapping[str, Summary]
) -> bool:
    """Store the summaries `computed` for `threads` and forget threads no longer in `db`.

    Returns False, having changed nothing, when the database cannot be written now.
    """
    keys = {t.thread_id: t for t in threads}
    ours = release()
    rows = [
        (thread, keys[thread].last_checkpoint_id, keys[thread].writes, ours, s.scenario, s.status,
         s.outcome, s.input_field, json.dumps(s.input, default=str), s.updated)
        for thread, s in computed.items() if thread in keys
    ]  # fmt: skip
    try:
        with tables(db, create=False) as conn:
            postgres = isinstance(conn, PostgresTables)
            if not postgres:
                conn.execute(f"PRAGMA busy_timeout={WRITE_WAIT_MS}")
                create_tables(conn, SQLITE_SCHEMA)
            elif not table_exists(conn, TABLE):
                return False  # `ensemble db upgrade` has not made it yet
            with write_transaction(conn):
                stored = {str(r[0]) for r in conn.execute(f"SELECT thread_id FROM {TABLE}")}
                gone = [(thread,) for thread in stored - keys.keys()]
                if gone:
                    conn.executemany(f"DELETE FROM {TABLE} WHERE thread_id = ?", gone)
                if rows:
                    conn.executemany(_UPSERT, rows)
    except UNUSABLE:
        return False  # read-only, locked or not prepared: the listing itself is complete
    return True
