"""Per-user limits of a served Ensemble: runs at once, checked when a run is asked for.

Each user's admitted runs are remembered by thread; an admitted thread counts until its latest
run has finished (read through LangGraph's loopback client), or, if no run ever appeared on it,
for a short grace period. The check and the admission happen under one lock per user, so a burst
of requests cannot slip past the limit before the first of them shows up as a run.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import httpx
from langgraph_sdk import get_client
from langgraph_sdk.auth.exceptions import HTTPException

ADMISSION_GRACE_SECONDS = 30.0
"""How long an admitted thread counts when no run appears on it (the request failed later)."""
IN_FLIGHT = frozenset({"pending", "running"})

_admitted: dict[str, dict[str, float]] = defaultdict(dict)
_locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)


async def admit_run(user: str, thread_id: str | None, limit: int) -> None:
    """Let `user` start a run on `thread_id`, or raise 4xx: 429 naming the limit.

    A run on a thread that already has one in flight adds no concurrency (LangGraph queues or
    refuses it by its multitask strategy), so it is always admitted.
    """
    if thread_id is None:
        raise HTTPException(
            status_code=422,
            detail="thread_id: this server runs on threads; create one first (threads.create) "
            "so that its runs are owned and counted",
        )
    async with _locks[user]:
        admitted = _admitted[user]
        for tid in list(admitted):
            if not await _in_flight(tid, admitted[tid]):
                del admitted[tid]
        if str(thread_id) not in admitted and len(admitted) >= limit:
            raise HTTPException(
                status_code=429,
                detail=f"limit reached: {limit} runs at once per user (the operator's "
                "--max-runs-per-user); wait for one of your runs to finish",
            )
        admitted[str(thread_id)] = time.monotonic()


async def _in_flight(thread_id: str, admitted_at: float) -> bool:
    try:
        runs = await get_client().runs.list(thread_id, limit=1)
    except httpx.HTTPStatusError:
        return False  # the thread is gone
    if runs:
        return runs[0]["status"] in IN_FLIGHT
    return time.monotonic() - admitted_at < ADMISSION_GRACE_SECONDS
