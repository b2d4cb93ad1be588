"""Recognise the lease fence refusing a write (migration 0002's `ensemble_fence` trigger).

A node that keeps going when one of its parts fails (a team of teams) must not swallow this
error: it means another worker owns the thread now, and this run has to stop, not carry on.
"""

from __future__ import annotations

LEASE_LOST = "EN001"
"""SQLSTATE the fence raises."""


def is_lease_lost(error: BaseException | None) -> bool:
    """Whether an error (or its cause) is the fence refusing a stale worker's write."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if getattr(error, "sqlstate", None) == LEASE_LOST or "ensemble lease lost" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False
