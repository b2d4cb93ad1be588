"""What a run's reader should know about how it was produced: fallbacks and pauses.

A run that went on with a fallback model (its primary's breaker open, or it failed) or that
paused for a person is a degraded run. Its output says so in one short note, read from the
thread's audit trail, so a reader never mistakes a cheaper model's answer for the primary's.
"""

from __future__ import annotations

from collections import Counter

from ensemble.audit.trail import events, flush, thread_context
from ensemble.db import DatabaseLike


def degradation_note(db: DatabaseLike) -> str:
    """A markdown note on fallbacks and pauses of the current run, or "" when there were none.

    Runs inside a node: the thread comes from the running step, `db` is its workspace's
    database. The audit writer is flushed first so the rows of this very run are there to read.
    """
    thread = thread_context()[0]
    if not thread:
        return ""
    flush()
    rows = events(db, thread, kinds={"fallback", "pause"})
    fallbacks = Counter((r["agent"], r["model"]) for r in rows if r["kind"] == "fallback")
    pauses = any(r["kind"] == "pause" for r in rows)
    parts = [
        f"the {agent} used the fallback model `{model}` {n} time{'s' if n != 1 else ''}"
        for (agent, model), n in sorted(fallbacks.items())
    ]
    if pauses:
        parts.append("the run paused for a person (no model left, or the budget spent)")
    if not parts:
        return ""
    return f"> **Degraded run:** {'; '.join(parts)} (see `ensemble audit {thread}`)."
