"""What the operator watches: the run queue, the workers and their leader, recent events.

On PostgreSQL the queue (`ensemble_runs`), the leader (`ensemble_leader`) and the workers running
threads; on both databases the latest events with their deliveries and each subscription's
counts. Reviewers only: it names every user's runs.
"""

from __future__ import annotations

from typing import Any

from ensemble.db import database
from ensemble.events.store import delivery_counts, recent_events
from ensemble.persistence import read_rows
from ensemble.server.policy import served_workspace

RECENT = 20
QUEUE_STATUSES = ("queued", "running", "waiting", "done", "failed")


def operations() -> dict[str, Any]:
    """The queue, workers, leader (PostgreSQL) and recent events (both databases)."""
    db = database(served_workspace().db)
    view: dict[str, Any] = {
        "database": "postgresql" if db.is_postgres else "sqlite",
        "leader": None,
        "queue": None,
        "workers": [],
        "runs": [],
        "events": recent_events(db, limit=RECENT),
        "subscriptions": delivery_counts(db),
    }
    if db.is_postgres:
        view.update(_cluster(db))
    return view


def _cluster(db: Any) -> dict[str, Any]:
    """The run queue's counts, the newest runs, the workers running threads, the leader."""
    counts = dict(
        read_rows(db, "ensemble_runs", "SELECT status, COUNT(*) FROM ensemble_runs GROUP BY status")
    )
    runs = read_rows(
        db,
        "ensemble_runs",
        "SELECT thread_id, scenario, status, worker, attempts, error, submitted_at, started_at, "
        "finished_at FROM ensemble_runs ORDER BY updated_at DESC LIMIT ?",
        (RECENT,),
    )
    keys = ("thread_id", "scenario", "status", "worker", "attempts", "error", "submitted_at",
            "started_at", "finished_at")  # fmt: skip
    workers = read_rows(
        db,
        "ensemble_runs",
        "SELECT worker, COUNT(*) FROM ensemble_runs WHERE status = 'running' "
        "AND worker IS NOT NULL GROUP BY worker ORDER BY worker",
    )
    leader = read_rows(db, "ensemble_leader", "SELECT worker, epoch, since FROM ensemble_leader")
    return {
        "queue": {status: int(counts.get(status, 0)) for status in QUEUE_STATUSES},
        "runs": [_jsonable(dict(zip(keys, row, strict=True))) for row in runs],
        "workers": [{"worker": w, "running": int(n)} for w, n in workers],
        "leader": _jsonable(dict(zip(("worker", "epoch", "since"), leader[0], strict=True)))
        if leader and leader[0][0]
        else None,
    }


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    """Times as ISO text (JSON has no time type)."""
    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in row.items()}
