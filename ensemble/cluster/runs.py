"""The `ensemble_runs` table: one row per thread handed to the cluster.

The queue (pgqueuer) carries only the thread id; the row says what was asked (start with an
input, resume with an answer, fork from a checkpoint), with the run settings resolved where it was
submitted, so every worker runs it the same way. The row also holds the thread's lease epoch: each
claim by a worker raises it, and the fence (`lease`) refuses checkpoint writes of any other epoch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

from ensemble.db import Database
from ensemble.errors import InvalidInputError

QUEUE_PREFIX = "ensemble."
"""pgqueuer entrypoint of a scenario: `ensemble.research`, one per scenario, so the queue's own
per-entrypoint limit is a cluster-wide per-scenario cap."""

ACTIVE = ("queued", "running")
STATUSES = ("queued", "running", "waiting", "done", "failed")


def entrypoint(scenario: str) -> str:
    """The queue entrypoint of a scenario."""
    return QUEUE_PREFIX + scenario


@dataclass(frozen=True)
class Claim:
    """A worker's hold on a thread: the epoch its writes carry, and what to do."""

    thread_id: str
    scenario: str
    epoch: int
    attempts: int
    request: dict[str, Any]


async def submit(
    conn: psycopg.AsyncConnection[Any],
    *,
    thread_id: str,
    scenario: str,
    request: dict[str, Any],
    priority: int = 0,
) -> None:
    """Record the request and queue the thread, in one transaction.

    Raises:
        InvalidInputError: The thread is already queued or running (one run per thread at once).
    """
    async with conn.transaction():
        cursor = conn.cursor(row_factory=dict_row)
        await cursor.execute(
            "SELECT status FROM ensemble_runs WHERE thread_id = %s FOR UPDATE", (thread_id,)
        )
        row = await cursor.fetchone()
        if row is not None and row["status"] in ACTIVE:
            raise InvalidInputError(
                f"thread {thread_id} is already {row['status']} on the cluster; "
                "wait for it (ensemble threads) before submitting to it again"
            )
        await queue_request(conn, thread_id, scenario, request, priority)


async def queue_request(
    conn: psycopg.AsyncConnection[Any],
    thread_id: str,
    scenario: str,
    request: dict[str, Any],
    priority: int,
) -> None:
    """Write the thread's row (a new request starts afresh) and its job.

    In the caller's transaction: `submit`'s, or the leader's as it fires a schedule.
    """
    from pgqueuer.queries import Queries

    await conn.execute(
        "INSERT INTO ensemble_runs (thread_id, scenario, status, request, priority) "
        "VALUES (%s, %s, 'queued', %s, %s) ON CONFLICT (thread_id) DO UPDATE SET "
        "scenario = EXCLUDED.scenario, status = 'queued', request = EXCLUDED.request, "
        "priority = EXCLUDED.priority, error = NULL, worker = NULL, attempts = 0, "
        "submitted_at = now(), started_at = NULL, updated_at = now(), finished_at = NULL",
        (thread_id, scenario, json.dumps(request), priority),
    )
    await enqueue(Queries.from_psycopg_connection(conn), thread_id, scenario, priority)


async def enqueue(queries: Any, thread_id: str, scenario: str, priority: int) -> bool:
    """Put the thread on the queue unless a job for it is queued or picked already."""
    payload = json.dumps({"thread_id": thread_id}).encode()
    ids = await queries.enqueue(
        entrypoint(scenario), payload, priority, dedupe_key=thread_id, on_conflict="skip"
    )
    return ids != [None]


async def claim(conn: psycopg.AsyncConnection[Any], thread_id: str, worker: str) -> Claim | None:
    """Take the thread: raise its epoch (fencing out any earlier holder) and mark it running.

    None when the thread is no longer queued or running (a job left over after it finished).
    The UPDATE waits for any statement of the earlier holder still checking the old epoch.
    """
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(
        "UPDATE ensemble_runs SET epoch = epoch + 1, worker = %s, status = 'running', "
        "attempts = attempts + 1, started_at = coalesce(started_at, now()), updated_at = now() "
        "WHERE thread_id = %s AND status IN ('queued', 'running') "
        "RETURNING scenario, epoch, attempts, request",
        (worker, thread_id),
    )
    row = await cursor.fetchone()
    if row is None:
        return None
    request = row["request"] if isinstance(row["request"], dict) else json.loads(row["request"])
    return Claim(thread_id, row["scenario"], int(row["epoch"]), int(row["attempts"]), request)


async def touch(conn: psycopg.AsyncConnection[Any], held: Claim) -> bool:
    """Say the run is alive (the leader re-queues running rows that stop saying so)."""
    cursor = await conn.execute(
        "UPDATE ensemble_runs SET updated_at = now() WHERE thread_id = %s AND epoch = %s",
        (held.thread_id, held.epoch),
    )
    return cursor.rowcount == 1


async def finish(
    conn: psycopg.AsyncConnection[Any], held: Claim, status: str, error: str | None = None
) -> bool:
    """Record how the run ended; False when the lease was lost (another worker has it now)."""
    cursor = await conn.execute(
        "UPDATE ensemble_runs SET status = %s, error = %s, worker = NULL, updated_at = now(), "
        "finished_at = CASE WHEN %s IN ('done', 'failed') THEN now() END "
        "WHERE thread_id = %s AND epoch = %s",
        (status, error, status, held.thread_id, held.epoch),
    )
    return cursor.rowcount == 1


async def current_epoch(conn: psycopg.AsyncConnection[Any], thread_id: str) -> int | None:
    """The thread's lease epoch now (None if it was never queued)."""
    cursor = await conn.execute(
        "SELECT epoch FROM ensemble_runs WHERE thread_id = %s", (thread_id,)
    )
    row = await cursor.fetchone()
    return None if row is None else int(row[0] if not isinstance(row, dict) else row["epoch"])


async def refuse_if_active(db: Database, thread_id: str) -> None:
    """Refuse to run a thread here while the cluster has it queued or running.

    One writer per thread: `ensemble resume` / `fork` on a machine would race a worker.

    Raises:
        InvalidInputError: The thread is queued or running on a worker.
    """
    async with await psycopg.AsyncConnection.connect(db.dsn or "", autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT status, worker FROM ensemble_runs WHERE thread_id = %s", (thread_id,)
        )
        row = await cursor.fetchone()
    if row is not None and row[0] in ACTIVE:
        where = f" on worker {row[1]}" if row[1] else ""
        raise InvalidInputError(
            f"thread {thread_id} is {row[0]} on the run queue{where}; wait until it is done "
            "(ensemble threads) or queue the next step with `ensemble submit resume`"
        )


async def statuses(conn: psycopg.AsyncConnection[Any]) -> dict[str, dict[str, Any]]:
    """Every thread the cluster knows: status, scenario, worker, epoch, times, error."""
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(
        "SELECT thread_id, scenario, status, worker, epoch, attempts, error, priority, "
        "submitted_at, started_at, finished_at, request FROM ensemble_runs"
    )
    return {row["thread_id"]: row for row in await cursor.fetchall()}


async def requeue_orphans(
    conn: psycopg.AsyncConnection[Any], leader_epoch: int, stall_seconds: float
) -> list[str]:
    """Queue again the active runs that have no job and no sign of life (the leader's duty).

    The queue itself hands a job whose worker stopped heart-beating to another worker; this
    catches the rest: a run whose job row is gone while its worker died (a job finished by a
    stale holder, a lost enqueue). Checked against the leader's epoch in the same transaction.
    """
    from pgqueuer.queries import Queries

    requeued: list[str] = []
    async with conn.transaction():
        cursor = conn.cursor(row_factory=dict_row)
        await cursor.execute("SELECT epoch FROM ensemble_leader WHERE id = 1 FOR SHARE")
        row = await cursor.fetchone()
        if row is None or int(row["epoch"]) != leader_epoch:
            return []
        await cursor.execute(
            "SELECT r.thread_id, r.scenario, r.priority FROM ensemble_runs r "
            "WHERE r.status IN ('queued', 'running') "
            "AND r.updated_at < now() - make_interval(secs => %s) "
            "AND NOT EXISTS (SELECT 1 FROM pgqueuer q WHERE q.dedupe_key = r.thread_id)",
            (stall_seconds,),
        )
        queries = Queries.from_psycopg_connection(conn)
        for orphan in await cursor.fetchall():
            if await enqueue(queries, orphan["thread_id"], orphan["scenario"], orphan["priority"]):
                requeued.append(orphan["thread_id"])
    return requeued
