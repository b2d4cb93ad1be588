"""The audit trail: what every agent did, what it cost, and how it ended, per thread."""

from __future__ import annotations

from ensemble.audit.actions import audit
from ensemble.audit.trail import (
    KINDS,
    AuditEvent,
    events,
    flush,
    record,
    stats,
    thread_context,
    totals,
)

__all__ = [
    "KINDS",
    "audit",
    "AuditEvent",
    "events",
    "flush",
    "record",
    "stats",
    "thread_context",
    "totals",
]
