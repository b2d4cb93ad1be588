"""What a thread's checkpoints hold, read through LangGraph's saver on either database.

The e2e tests look at what a killed process had saved. Reading the saver's tables directly would
tie them to one database's table names; the saver reads both.
"""

from __future__ import annotations

from typing import Any

from ensemble.db import DatabaseLike
from ensemble.persistence import open_checkpointer


def saved_writes(db: DatabaseLike, thread: str, channel: str) -> list[Any]:
    """Every value the thread's tasks wrote to `channel`, pending writes included."""
    with open_checkpointer(db, create=False) as saver:
        return [
            value
            for saved in saver.list({"configurable": {"thread_id": thread}})
            for _task, written, value in saved.pending_writes or ()
            if written == channel
        ]


def saved_counts(db: DatabaseLike) -> tuple[int, int]:
    """How many checkpoints and task writes the database holds, over every thread."""
    with open_checkpointer(db, create=False) as saver:
        checkpoints = list(saver.list(None))
    return len(checkpoints), sum(len(saved.pending_writes or ()) for saved in checkpoints)
