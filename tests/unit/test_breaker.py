"""Circuit breakers: closed -> open -> half-open -> closed/open, on a fake clock."""

from __future__ import annotations

import threading

import pytest

from ensemble.resilience import BOARD, BreakerBoard, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make(clock: Clock, **kwargs) -> tuple[CircuitBreaker, list[tuple[str, str]]]:
    changes: list[tuple[str, str]] = []
    breaker = CircuitBreaker(
        "svc",
        failure_threshold=kwargs.pop("failure_threshold", 3),
        reset_after=kwargs.pop("reset_after", 30.0),
        clock=clock,
        on_change=lambda old, new: changes.append((old, new)),
    )
    return breaker, changes


def test_opens_after_threshold_failures_in_a_row(clock):
    breaker, changes = make(clock)
    assert breaker.state == "closed" and breaker.allow()
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()  # a success starts the count over
    assert breaker.failures == 0
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state == "closed" and breaker.allow() and changes == []
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()
    assert changes == [("closed", "open")]
    assert breaker.retry_in() == 30.0


def test_open_until_reset_after_then_half_open(clock):
    breaker, changes = make(clock, failure_threshold=1)
    breaker.record_failure()
    clock.advance(29.9)
    assert not breaker.allow() and breaker.state == "open"
    assert breaker.retry_in() == pytest.approx(0.1)
    clock.advance(0.1)
    assert breaker.state == "half_open"
    assert changes == [("closed", "open"), ("open", "half_open")]  # reported once
    assert breaker.state == "half_open" and len(changes) == 2


def test_half_open_allows_exactly_one_trial(clock):
    breaker, _ = make(clock, failure_threshold=1)
    breaker.record_failure()
    clock.advance(30)
    assert breaker.allow()
    assert not breaker.allow() and not breaker.allow()  # the trial is still out
    assert breaker.state == "half_open"


def test_half_open_trial_success_closes(clock):
    breaker, changes = make(clock, failure_threshold=2)
    breaker.record_failure()
    breaker.record_failure()
    clock.advance(30)
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed" and breaker.failures == 0
    assert breaker.allow() and breaker.allow()
    breaker.record_failure()
    assert breaker.state == "closed"  # the count started over
    assert changes == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_half_open_trial_failure_opens_again(clock):
    breaker, changes = make(clock, failure_threshold=1)
    breaker.record_failure()
    clock.advance(30)
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()
    clock.advance(29)
    assert not breaker.allow()  # a full reset_after from the reopening
    clock.advance(1)
    assert breaker.allow()
    assert changes == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "open"),
        ("open", "half_open"),
    ]


def test_outcomes_reported_while_open_change_nothing(clock):
    breaker, changes = make(clock, failure_threshold=1)
    breaker.record_failure()
    breaker.record_success()  # a call let through before the breaker opened
    breaker.record_failure()
    assert breaker.state == "open" and changes == [("closed", "open")]
    clock.advance(30)
    assert breaker.state == "half_open"  # the late failure did not push the reopening back


def test_a_lost_trial_stops_blocking_after_reset_after(clock):
    breaker, _ = make(clock, failure_threshold=1)
    breaker.record_failure()
    clock.advance(30)
    assert breaker.allow()  # its outcome is never reported (a cancelled call)
    clock.advance(29)
    assert not breaker.allow()
    clock.advance(1)
    assert breaker.allow()
    assert not breaker.allow()


def test_reset_closes(clock):
    breaker, changes = make(clock, failure_threshold=1)
    breaker.record_failure()
    breaker.reset()
    assert breaker.state == "closed" and breaker.allow()
    breaker.reset()  # already closed: no change reported
    assert changes == [("closed", "open"), ("open", "closed")]


def test_failing_listener_does_not_break_the_breaker(clock, caplog):
    def listener(old: str, new: str) -> None:
        raise RuntimeError("audit sink down")

    breaker = CircuitBreaker("svc", failure_threshold=1, clock=clock, on_change=listener)
    breaker.record_failure()
    assert breaker.state == "open"
    assert "on_change of breaker 'svc' failed" in caplog.text


def test_listener_may_read_the_breaker(clock):
    seen: list[str] = []
    breaker = CircuitBreaker("svc", failure_threshold=1, clock=clock)
    breaker.on_change = lambda old, new: seen.append(breaker.state)  # no deadlock
    breaker.record_failure()
    assert seen == ["open"]


def test_bad_settings():
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker("x", failure_threshold=0)
    with pytest.raises(ValueError, match="reset_after"):
        CircuitBreaker("x", reset_after=-1)


def test_one_trial_among_threads(clock):
    breaker, _ = make(clock, failure_threshold=1)
    breaker.record_failure()
    clock.advance(30)
    threads, start = 8, threading.Barrier(8)
    allowed: list[bool] = []

    def attempt() -> None:
        start.wait()
        allowed.append(breaker.allow())

    workers = [threading.Thread(target=attempt) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert sorted(allowed) == [False] * (threads - 1) + [True]


def test_board_creates_breakers_on_demand(clock):
    changes: list[tuple[str, str, str]] = []
    board = BreakerBoard(failure_threshold=2, reset_after=5, clock=clock)
    board.on_change = lambda name, old, new: changes.append((name, old, new))
    assert board.states() == {} and board.get("agent:a") is None
    a = board.breaker("agent:a")
    assert board.breaker("agent:a") is a
    assert (a.failure_threshold, a.reset_after) == (2, 5)
    board.breaker("agent:b").record_failure()
    a.record_failure()
    a.record_failure()
    assert board.states() == {"agent:a": "open", "agent:b": "closed"}
    clock.advance(5)
    assert board.states() == {"agent:a": "half_open", "agent:b": "closed"}
    assert changes == [("agent:a", "closed", "open"), ("agent:a", "open", "half_open")]
    board.reset()
    assert board.states() == {}
    assert board.breaker("agent:a").state == "closed"


def test_process_board():
    assert isinstance(BOARD, BreakerBoard)
    name = "test:process-board"
    try:
        assert BOARD.breaker(name) is BOARD.breaker(name)
        assert BOARD.states()[name] == "closed"
    finally:
        BOARD.reset()
