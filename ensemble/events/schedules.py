"""Schedules that publish events: `ensemble schedule publish "0 7 * * *" digest.due`.

A schedule is a cron expression, an event type and its data. At each due time one event is
published, with an id made of the schedule and the due time, so firing again after a crash
stores nothing new. On SQLite the dispatcher fires them; on PostgreSQL the workers' leader does,
in a transaction that first checks its epoch (a leader that lost its post fires nothing). A
dispatcher or leader that was away fires a missed schedule once, then waits for the next time.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from ensemble.db import DatabaseLike
from ensemble.db.tables import write_transaction
from ensemble.events.event import Event, check_data, make_event
from ensemble.events.store import event_tables, insert_events, is_postgres, never_written

ID_PREFIX = "e"
"""Event schedules are listed as e1, e2, ... beside the run queue's numbered schedules."""


def _next(cron: str, after: float) -> float:
    from croniter import croniter

    start = datetime.fromtimestamp(after, UTC)
    return float(croniter(cron, start).get_next(float))


def add(db: DatabaseLike, cron: str, event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """Store a schedule (checked: the cron expression, the event type, the data)."""
    from ensemble.cluster.schedules import check_cron

    cron = check_cron(cron)
    make_event(event_type, data, source="schedule")  # the same checks as a published event
    now = time.time()
    with event_tables(db) as conn, write_transaction(conn):
        row = conn.execute(
            "INSERT INTO ensemble_event_schedules (cron, type, data, next_at, created_at) "
            "VALUES (?, ?, ?, ?, ?) RETURNING id",
            (cron, event_type, check_data(data), _next(cron, now), now),
        ).fetchone()
    return {"id": f"{ID_PREFIX}{row[0]}", "cron": cron, "type": event_type,
            "next_at": _iso(_next(cron, now))}  # fmt: skip


def listing(db: DatabaseLike) -> list[dict[str, Any]]:
    """Every event schedule, with its next time and what it last published."""
    if never_written(db):
        return []
    with event_tables(db) as conn:
        rows = conn.execute(
            "SELECT id, cron, type, data, next_at, fired, last_event FROM ensemble_event_schedules "
            "ORDER BY id"
        ).fetchall()
    return [
        {"id": f"{ID_PREFIX}{r[0]}", "cron": r[1], "type": r[2], "data": json.loads(r[3]),
         "next_at": _iso(r[4]), "fired": int(r[5]), "last_event": r[6]}
        for r in rows
    ]  # fmt: skip


def remove(db: DatabaseLike, schedule_id: str) -> bool:
    """Delete the event schedule `e<N>`; False if there is none."""
    number = schedule_id.removeprefix(ID_PREFIX)
    if not number.isdigit():
        return False
    with event_tables(db) as conn:
        cursor = conn.execute("DELETE FROM ensemble_event_schedules WHERE id = ?", (int(number),))
    return int(cursor.rowcount) == 1


def fire_due(db: DatabaseLike, *, leader_epoch: int | None = None) -> list[Event]:
    """Publish the event of every due schedule, in one transaction with their next times.

    `leader_epoch` (PostgreSQL): fire only while that epoch is still the leader's.
    """
    now = time.time()
    with event_tables(db) as conn:
        if not conn.execute(
            "SELECT 1 FROM ensemble_event_schedules WHERE next_at <= ? LIMIT 1", (now,)
        ).fetchone():
            return []
        with write_transaction(conn):
            if leader_epoch is not None:
                row = conn.execute(
                    "SELECT epoch FROM ensemble_leader WHERE id = 1 FOR SHARE"
                ).fetchone()
                if row is None or int(row[0]) != leader_epoch:
                    return []
            lock = " FOR UPDATE SKIP LOCKED" if is_postgres(conn) else ""
            due = conn.execute(
                "SELECT id, cron, type, data, next_at FROM ensemble_event_schedules "
                f"WHERE next_at <= ? ORDER BY next_at{lock}",
                (now,),
            ).fetchall()
            events = [
                make_event(
                    kind,
                    json.loads(data),
                    source=f"schedule:{ID_PREFIX}{number}",
                    id=f"schedule-{ID_PREFIX}{number}-{int(at)}",
                    time=datetime.fromtimestamp(at, UTC),
                )
                for number, _, kind, data, at in due
            ]
            insert_events(conn, events)
            for (number, cron, *_), event in zip(due, events, strict=True):
                conn.execute(
                    "UPDATE ensemble_event_schedules SET next_at = ?, fired = fired + 1, "
                    "last_fired_at = ?, last_event = ? WHERE id = ?",
                    (_next(cron, now), now, event.id, number),
                )
    return events


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(float(epoch), UTC).isoformat(timespec="seconds")
