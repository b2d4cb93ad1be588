"""Events and their deliveries, kept in the same database as the checkpoints.

`ensemble_events` holds each event once (its id is the key: publishing it again changes
nothing). `ensemble_deliveries` holds one row per (event, subscription) that matched, created
with the event's routing in one transaction: its status is what the dispatcher does next.

    pending    due at `next_at` (first try, or a retry after a failure)
    started    its run was started (SQLite) or queued (PostgreSQL)
    done       its run finished
    waiting    its run waits for a person (done once the person lets it finish)
    dead       no run, or no more tries: `error` says why (`ensemble events dead`)
    duplicate  another event with the same dedupe key already has this subscription's run

One body of SQL serves SQLite and PostgreSQL (`ensemble.db.tables`); on PostgreSQL the tables
come from `ensemble db upgrade` (migration 0003) and a publish wakes dispatchers by NOTIFY.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from ensemble.db import DatabaseLike, database
from ensemble.db.tables import (
    DATABASE_ERRORS,
    PostgresTables,
    TableConnection,
    create_tables,
    table_exists,
    write_transaction,
)
from ensemble.errors import DatabaseError, NotFoundError
from ensemble.events.event import Event

CHANNEL = "ensemble_events"
"""PostgreSQL NOTIFY channel: a published event wakes the dispatchers at once."""

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS ensemble_events (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    source TEXT NOT NULL,
    time TEXT NOT NULL,
    published_at REAL NOT NULL,
    routed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS ensemble_events_unrouted ON ensemble_events (routed, published_at);
CREATE TABLE IF NOT EXISTS ensemble_deliveries (
    event_id TEXT NOT NULL,
    subscription TEXT NOT NULL,
    status TEXT NOT NULL,
    scenario TEXT NOT NULL,
    thread_id TEXT,
    dedupe_key TEXT,
    duplicate_of TEXT,
    priority INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 1,
    backoff REAL NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    request TEXT,
    error TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (event_id, subscription)
);
CREATE UNIQUE INDEX IF NOT EXISTS ensemble_deliveries_dedupe
    ON ensemble_deliveries (subscription, dedupe_key);
CREATE INDEX IF NOT EXISTS ensemble_deliveries_due ON ensemble_deliveries (status, next_at);
CREATE INDEX IF NOT EXISTS ensemble_deliveries_thread ON ensemble_deliveries (thread_id);
CREATE TABLE IF NOT EXISTS ensemble_watched (
    path TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS ensemble_event_schedules (
    id INTEGER PRIMARY KEY,
    cron TEXT NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    next_at REAL NOT NULL,
    fired INTEGER NOT NULL DEFAULT 0,
    last_fired_at REAL,
    last_event TEXT,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS ensemble_dispatcher (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    beat REAL NOT NULL
);
"""

DELIVERY_COLUMNS = (
    "event_id, subscription, status, scenario, thread_id, dedupe_key, duplicate_of, priority, "
    "attempts, max_attempts, backoff, next_at, request, error, created_at, started_at, updated_at"
)
STATUSES = ("pending", "started", "done", "waiting", "dead", "duplicate")


@contextmanager
def event_tables(db: DatabaseLike, *, create: bool = True) -> Iterator[TableConnection]:
    """A connection with the event tables in place (SQLite makes them; PostgreSQL has them)."""
    from ensemble.persistence import tables

    try:
        with tables(database(db), create=create) as conn:
            if create:
                create_tables(conn, SQLITE_SCHEMA)
            yield conn
    except DATABASE_ERRORS as error:
        raise DatabaseError(f"events in {database(db)}: {error}") from error


def never_written(db: DatabaseLike) -> bool:
    """A SQLite file that does not exist yet: it has no events (and reading must not make it)."""
    db = database(db)
    return not db.is_postgres and not db.sqlite_path.exists()


def is_postgres(conn: TableConnection) -> bool:
    """Whether `conn` is a PostgreSQL connection (a few statements differ)."""
    return isinstance(conn, PostgresTables)


def insert_events(conn: TableConnection, events: Iterable[Event]) -> list[bool]:
    """Store each event unless its id is stored already; True for each one that was new.

    In the caller's transaction. On PostgreSQL a NOTIFY wakes the dispatchers at commit.
    """
    now = time.time()
    new: list[bool] = []
    for event in events:
        cursor = conn.execute(
            "INSERT INTO ensemble_events (id, type, data, source, time, published_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
            (event.id, event.type, json.dumps(event.data), event.source, event.time, now),
        )
        new.append(cursor.rowcount == 1)
    if any(new) and is_postgres(conn):
        conn.execute("SELECT pg_notify(?, '')", (CHANNEL,))
    return new


def publish(db: DatabaseLike, *events: Event) -> list[bool]:
    """Store events (one transaction); True for each that was new, False for a repeated id."""
    with event_tables(db) as conn, write_transaction(conn):
        return insert_events(conn, events)


def row_event(row: Any) -> Event:
    """An `Event` from a `SELECT id, type, data, source, time` row."""
    return Event(id=row[0], type=row[1], data=json.loads(row[2]), source=row[3], time=row[4])


def _delivery(row: Any) -> dict[str, Any]:
    names = [c.strip() for c in DELIVERY_COLUMNS.split(",")]
    found = dict(zip(names, row, strict=True))
    found["request"] = json.loads(found["request"]) if found["request"] else None
    return found


def recent_events(
    db: DatabaseLike, *, limit: int = 20, event_type: str | None = None
) -> list[dict[str, Any]]:
    """The latest events, newest first, each with its deliveries."""
    if never_written(db):
        return []
    with event_tables(db, create=False) as conn:
        if not table_exists(conn, "ensemble_events"):
            return []
        where, params = ("WHERE type = ?", [event_type]) if event_type else ("", [])
        rows = conn.execute(
            f"SELECT id, type, data, source, time, routed FROM ensemble_events {where} "
            "ORDER BY published_at DESC, id DESC LIMIT ?",
            (*params, limit),
        ).fetchall()
        found = []
        for row in rows:
            item = row_event(row).as_dict() | {"routed": bool(row[5])}
            item["deliveries"] = [
                _delivery(d)
                for d in conn.execute(
                    f"SELECT {DELIVERY_COLUMNS} FROM ensemble_deliveries WHERE event_id = ? "
                    "ORDER BY subscription",
                    (row[0],),
                ).fetchall()
            ]
            found.append(item)
    return found


def deliveries(
    db: DatabaseLike,
    *,
    status: str | None = None,
    subscription: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Deliveries, newest first, optionally of one status or one subscription."""
    if never_written(db):
        return []
    with event_tables(db, create=False) as conn:
        if not table_exists(conn, "ensemble_deliveries"):
            return []
        clauses, params = [], []
        if status:
            clauses.append("status = ?")
            params.append(status)
        if subscription:
            clauses.append("subscription = ?")
            params.append(subscription)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = conn.execute(
            f"SELECT {DELIVERY_COLUMNS} FROM ensemble_deliveries {where} "
            "ORDER BY updated_at DESC, event_id LIMIT ?",
            (*params, limit),
        ).fetchall()
    return [_delivery(row) for row in rows]


def delivery_counts(db: DatabaseLike) -> dict[str, dict[str, int]]:
    """How many deliveries each subscription has in each status."""
    if never_written(db):
        return {}
    with event_tables(db, create=False) as conn:
        if not table_exists(conn, "ensemble_deliveries"):
            return {}
        rows = conn.execute(
            "SELECT subscription, status, COUNT(*) FROM ensemble_deliveries "
            "GROUP BY subscription, status"
        ).fetchall()
    counts: dict[str, dict[str, int]] = {}
    for subscription, status, n in rows:
        counts.setdefault(subscription, {})[status] = int(n)
    return counts


def replay(db: DatabaseLike, event_id: str, subscription: str | None = None) -> list[str]:
    """Give an event's dead deliveries another go: routed again with the current subscriptions.

    The dead rows are removed and the event marked unrouted, in one transaction; the dispatcher
    then routes it afresh (the input is rendered and checked again, so a fixed subscription file
    applies). A run that failed keeps its thread: the new delivery goes on from its checkpoints.

    Raises:
        NotFoundError: The event has no dead delivery (of that subscription).
    """
    with event_tables(db) as conn, write_transaction(conn):
        params: list[Any] = [event_id]
        extra = ""
        if subscription:
            extra, params = " AND subscription = ?", [event_id, subscription]
        rows = conn.execute(
            f"SELECT subscription FROM ensemble_deliveries WHERE event_id = ? AND status = 'dead'"
            f"{extra}",
            params,
        ).fetchall()
        if not rows:
            what = f" for subscription {subscription!r}" if subscription else ""
            raise NotFoundError(f"event {event_id!r} has no dead delivery{what} to replay")
        conn.execute(
            f"DELETE FROM ensemble_deliveries WHERE event_id = ? AND status = 'dead'{extra}",
            params,
        )
        conn.execute("UPDATE ensemble_events SET routed = 0 WHERE id = ?", (event_id,))
        if is_postgres(conn):
            conn.execute("SELECT pg_notify(?, '')", (CHANNEL,))
    return [str(row[0]) for row in rows]
