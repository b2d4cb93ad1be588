"""Circuit breakers: stop calling an agent or service that keeps failing, then try it again.

A breaker is `closed` (calls go through) until `failure_threshold` calls in a row fail; it is
then `open` (calls are refused at once) for `reset_after` seconds, after which it is
`half_open`: one trial call goes through, and its outcome closes the breaker or opens it again.
The breakers of a process live on `BOARD`, keyed by what they guard (e.g. `agent:<name>`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Literal

BreakerState = Literal["closed", "open", "half_open"]
StateListener = Callable[[BreakerState, BreakerState], None]
"""Called with (old, new) after each change of state, outside the breaker's lock."""
BoardListener = Callable[[str, BreakerState, BreakerState], None]
"""Called with (breaker name, old, new) after a change of any breaker of a board."""

_log = logging.getLogger(__name__)


class CircuitBreaker:
    """One breaker, safe to share between threads (and the tasks of an event loop).

    The caller asks `allow()` before a call and reports the outcome with `record_success()` or
    `record_failure()`. Outcomes reported while the breaker is open (calls let through before it
    opened) change nothing. A half-open trial whose outcome is never reported (say, a cancelled
    call) stops blocking the next trial after another `reset_after` seconds.
    """

    def __init__(
        self,
        name: str,
        failure_threshold: int = 3,
        reset_after: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: StateListener | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be at least 1, got {failure_threshold}")
        if reset_after < 0:
            raise ValueError(f"reset_after must not be negative, got {reset_after}")
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_after = reset_after
        self.on_change = on_change
        self._clock = clock
        self._lock = threading.Lock()
        self._state: BreakerState = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._trial_started: float | None = None

    @property
    def state(self) -> BreakerState:
        """`closed`, `open` or `half_open` (an open breaker turns half-open once it is due)."""
        with self._lock:
            changes = self._refresh()
            state = self._state
        self._notify(changes)
        return state

    @property
    def failures(self) -> int:
        """Failures in a row counted while closed."""
        with self._lock:
            return self._failures

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a trial call through (0 unless open)."""
        with self._lock:
            if self._state != "open":
                return 0.0
            return max(0.0, self._opened_at + self.reset_after - self._clock())

    def allow(self) -> bool:
        """Whether a call may go out now; in half-open state only one trial at a time may."""
        with self._lock:
            changes = self._refresh()
            if self._state == "closed":
                allowed = True
            elif self._state == "open":
                allowed = False
            else:
                now = self._clock()
                started = self._trial_started
                allowed = started is None or now - started >= self.reset_after
                if allowed:
                    self._trial_started = now
        self._notify(changes)
        return allowed

    def record_success(self) -> None:
        """A call succeeded: the failure count starts over, a half-open breaker closes."""
        with self._lock:
            changes = self._move("closed") if self._state == "half_open" else []
            if self._state == "closed":
                self._failures = 0
        self._notify(changes)

    def record_failure(self) -> None:
        """A call failed: count it while closed (opening at the threshold); reopen if half-open."""
        with self._lock:
            changes: list[tuple[BreakerState, BreakerState]] = []
            if self._state == "closed":
                self._failures += 1
                if self._failures >= self.failure_threshold:
                    changes = self._move("open")
            elif self._state == "half_open":
                changes = self._move("open")
        self._notify(changes)

    def reset(self) -> None:
        """Close the breaker and forget its failures (an operator's override, or tests)."""
        with self._lock:
            changes = self._move("closed") if self._state != "closed" else []
            self._failures = 0
        self._notify(changes)

    def _refresh(self) -> list[tuple[BreakerState, BreakerState]]:
        if self._state == "open" and self._clock() - self._opened_at >= self.reset_after:
            return self._move("half_open")
        return []

    def _move(self, new: BreakerState) -> list[tuple[BreakerState, BreakerState]]:
        """Change state (the lock is held); return the change for `_notify` to report."""
        old, self._state = self._state, new
        self._trial_started = None
        if new == "open":
            self._opened_at = self._clock()
        elif new == "closed":
            self._failures = 0
        return [(old, new)]

    def _notify(self, changes: list[tuple[BreakerState, BreakerState]]) -> None:
        listener = self.on_change
        if listener is None:
            return
        for old, new in changes:
            try:
                listener(old, new)
            except Exception:  # an audit sink that fails must not change who may call
                _log.exception("on_change of breaker %r failed (%s -> %s)", self.name, old, new)


class BreakerBoard:
    """The breakers of a process, made on first use with the board's settings.

    `on_change`, when set, hears every change of every breaker of the board as
    (name, old, new): one place for an audit trail to listen.
    """

    def __init__(
        self,
        failure_threshold: int = 3,
        reset_after: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: BoardListener | None = None,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.reset_after = reset_after
        self.clock = clock
        self.on_change = on_change
        self._lock = threading.Lock()
        self._breakers: dict[str, CircuitBreaker] = {}

    def breaker(self, name: str) -> CircuitBreaker:
        """The breaker called `name`, created closed on first use."""
        with self._lock:
            found = self._breakers.get(name)
            if found is None:
                found = CircuitBreaker(
                    name,
                    failure_threshold=self.failure_threshold,
                    reset_after=self.reset_after,
                    clock=self.clock,
                    on_change=partial(self._changed, name),
                )
                self._breakers[name] = found
            return found

    def get(self, name: str) -> CircuitBreaker | None:
        """The breaker called `name` if it was ever used (reading never creates one)."""
        with self._lock:
            return self._breakers.get(name)

    def states(self) -> dict[str, BreakerState]:
        """The state of every breaker, in order of first use."""
        with self._lock:
            breakers = list(self._breakers.values())
        return {b.name: b.state for b in breakers}

    def reset(self) -> None:
        """Forget every breaker: the next use of a name starts closed."""
        with self._lock:
            self._breakers.clear()

    def _changed(self, name: str, old: BreakerState, new: BreakerState) -> None:
        if self.on_change is not None:
            self.on_change(name, old, new)


BOARD = BreakerBoard()
"""The process-wide breakers."""
