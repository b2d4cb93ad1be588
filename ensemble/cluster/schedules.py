"""Cron schedules: `ensemble schedule add CRON SCENARIO ...`, fired by the leader.

A schedule keeps a submitted request (input and settings resolved when it was added) and the next
time it is due, in the database's clock. The leader fires each due schedule in one transaction
that first checks its own epoch: a leader that lost its post fires nothing.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import psycopg
from croniter import croniter
from psycopg.rows import dict_row

from ensemble.cluster import runs
from ensemble.errors import InvalidInputError
from ensemble.runner import new_thread_id


def check_cron(expression: str) -> str:
    """A cron expression (five fields), or a clear error."""
    text = " ".join(expression.split())
    if len(text.split()) != 5 or not croniter.is_valid(text):
        raise InvalidInputError(
            f"not a cron expression: {expression!r} (five fields, e.g. '0 7 * * *' for 07:00)"
        )
    return text


def next_time(cron: str, after: datetime) -> datetime:
    """When `cron` is next due after `after`."""
    return croniter(cron, after).get_next(datetime)  # type: ignore[no-any-return]


async def add(
    conn: psycopg.AsyncConnection[Any],
    cron: str,
    scenario: str,
    request: dict[str, Any],
    priority: int = 0,
) -> dict[str, Any]:
    """Store a schedule; its first firing is the next due time after the database's now."""
    cron = check_cron(cron)
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute("SELECT now() AS now")
    now = (await cursor.fetchone() or {})["now"]
    await cursor.execute(
        "INSERT INTO ensemble_schedules (cron, scenario, request, priority, next_at) "
        "VALUES (%s, %s, %s, %s, %s) RETURNING id, cron, scenario, next_at",
        (cron, scenario, json.dumps(request), priority, next_time(cron, now)),
    )
    return dict(await cursor.fetchone() or {})


async def listing(conn: psycopg.AsyncConnection[Any]) -> list[dict[str, Any]]:
    """Every schedule with its next time and what it last started."""
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(
        "SELECT id, cron, scenario, priority, next_at, last_fired_at, last_thread, fired "
        "FROM ensemble_schedules ORDER BY id"
    )
    return list(await cursor.fetchall())


async def remove(conn: psycopg.AsyncConnection[Any], schedule_id: int) -> bool:
    """Delete a schedule; False if there is none with that id."""
    cursor = await conn.execute("DELETE FROM ensemble_schedules WHERE id = %s", (schedule_id,))
    return cursor.rowcount == 1


async def fire_due(conn: psycopg.AsyncConnection[Any], leader_epoch: int) -> list[str]:
    """Submit a run for each due schedule, if `leader_epoch` is still the leader's.

    One transaction: the epoch check, the runs and the schedules' next times commit together,
    so a schedule fires once per due time however leaders come and go.
    """
    started: list[str] = []
    async with conn.transaction():
        cursor = conn.cursor(row_factory=dict_row)
        await cursor.execute(
            "SELECT epoch, now() AS now FROM ensemble_leader WHERE id = 1 FOR SHARE"
        )
        row = await cursor.fetchone()
        if row is None or int(row["epoch"]) != leader_epoch:
            return []
        now = row["now"]
        await cursor.execute(
            "SELECT id, cron, scenario, request, priority FROM ensemble_schedules "
            "WHERE next_at <= now() ORDER BY next_at FOR UPDATE SKIP LOCKED"
        )
        for due in await cursor.fetchall():
            thread_id = new_thread_id()
            request = (
                due["request"] if isinstance(due["request"], dict) else json.loads(due["request"])
            )
            await runs.queue_request(conn, thread_id, due["scenario"], request, due["priority"])
            await conn.execute(
                "UPDATE ensemble_schedules SET next_at = %s, last_fired_at = now(), "
                "last_thread = %s, fired = fired + 1 WHERE id = %s",
                (next_time(due["cron"], now), thread_id, due["id"]),
            )
            started.append(thread_id)
    return started
