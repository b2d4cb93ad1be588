"""A per-run cap on agents working at once, without throttling LangGraph's own checkpoint writes.

LangGraph's `max_concurrency` config gates every coroutine of a step's executor, including the
writes that save finished tasks: with more tasks than slots, a finished researcher's note waits
behind the running ones and is lost if the process dies. A semaphore inside the node caps the
agents alone.
"""

from __future__ import annotations

import asyncio
import threading
from weakref import WeakValueDictionary

_gates: WeakValueDictionary[tuple[int, str, str, int], asyncio.Semaphore] = WeakValueDictionary()
_lock = threading.Lock()


def agent_gate(scope: str, role: str, limit: int) -> asyncio.Semaphore:
    """The semaphore shared by the `role` agents of one run (`scope`, e.g. the thread id).

    Kept only while some agent holds it (weak values), so finished runs leave nothing behind.
    """
    key = (id(asyncio.get_running_loop()), scope, role, limit)
    with _lock:
        return _gates.setdefault(key, asyncio.Semaphore(max(1, limit)))
