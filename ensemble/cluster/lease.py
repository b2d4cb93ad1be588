"""The fenced connection a worker runs one thread on.

The connection says, for its whole session, which thread and epoch it holds; the database's
`ensemble_fence` trigger (migration 0002) checks every checkpoint, write and blob row it inserts
against the thread's current epoch, inside the same statement. A worker that was frozen (a long
GC, a stopped VM) while another took its thread over wakes up holding an old epoch: its next write
is refused, so the thread is never forked by two writers. Locks alone cannot do this: a session
lock is released when its connection drops while the old holder may still be running.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg.rows import dict_row

from ensemble.db import Database


@asynccontextmanager
async def fenced_saver(
    db: Database, thread_id: str, epoch: int
) -> AsyncIterator[AsyncPostgresSaver]:
    """LangGraph's saver on one connection that writes only while `epoch` is the thread's."""
    conn = await psycopg.AsyncConnection.connect(
        db.dsn or "", autocommit=True, prepare_threshold=0, row_factory=dict_row
    )
    async with conn:
        await conn.execute(
            "SELECT set_config('ensemble.lease_thread', %s, false), "
            "set_config('ensemble.lease_epoch', %s, false)",
            (thread_id, str(epoch)),
        )
        yield AsyncPostgresSaver(conn)  # type: ignore[arg-type]


def describe(error: Any) -> str:
    """One line for a log."""
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
