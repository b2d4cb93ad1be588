"""One call per agent action that is not a model call: what nodes and the runtime report.

Model calls, cache hits, fallbacks and budget stops are recorded by the model guard; this module
is how a node records a human answer, a tool call, a routing decision or a refusal, each with
the run's thread and checkpoint. (The guard audits the changes of the model breakers.)
"""

from __future__ import annotations

from typing import Any

from ensemble.audit.trail import AuditEvent, record, thread_context
from ensemble.db import DatabaseLike


def audit(
    kind: str,
    agent: str,
    *,
    db: DatabaseLike | None = None,
    outcome: str = "ok",
    seconds: float = 0.0,
    **detail: Any,
) -> None:
    """Record one action of `agent` in the current run's trail in `db`.

    A no-op outside a run, or without a database (a model that is not behind the guard).
    """
    thread, namespace, checkpoint = thread_context()
    if not thread or db is None:
        return
    record(
        AuditEvent(
            thread_id=thread,
            kind=kind,
            agent=agent,
            checkpoint_ns=namespace,
            checkpoint_id=checkpoint,
            seconds=round(seconds, 4),
            outcome=outcome,
            detail={k: _short(v) for k, v in detail.items()},
        ),
        db,
    )


def _short(value: Any, limit: int = 500) -> Any:
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + " ..."
    return value
