"""How many calls each agent is serving right now, across every run of the process."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager


class AgentLoad:
    """Thread-safe counters of calls in flight, by agent name.

    Dispatchers read them to spread work and to respect `AgentSpec.max_concurrent`;
    `ensemble agents` shows them. Agents with nothing in flight are not listed.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def acquire(self, name: str) -> int:
        """Count one more call of `name`; return how many are now in flight."""
        with self._lock:
            self._counts[name] += 1
            return self._counts[name]

    def release(self, name: str) -> int:
        """Count one call of `name` as finished; return how many are still in flight.

        Raises:
            ValueError: Nothing was in flight: a release without its acquire is a bug, and
                letting the count go negative would hide it.
        """
        with self._lock:
            if self._counts[name] < 1:
                raise ValueError(f"agent {name!r} released more often than acquired")
            self._counts[name] -= 1
            return self._counts[name]

    @contextmanager
    def using(self, name: str) -> Iterator[int]:
        """Hold one call of `name` for the block, released even when the block fails."""
        count = self.acquire(name)
        try:
            yield count
        finally:
            self.release(name)

    def current(self, name: str) -> int:
        """Calls of `name` in flight (0 for an agent never used)."""
        with self._lock:
            return self._counts[name]

    def snapshot(self) -> dict[str, int]:
        """A copy of every non-zero count."""
        with self._lock:
            return dict(+self._counts)

    def reset(self) -> None:
        """Forget every count (tests, or a process starting over)."""
        with self._lock:
            self._counts.clear()


LOAD = AgentLoad()
"""The process-wide load of every agent."""
