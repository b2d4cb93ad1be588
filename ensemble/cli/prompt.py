"""Asking the person at the terminal to answer an interrupt."""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ensemble.cli.render import approval_text, plan_text
from ensemble.errors import InvalidInputError


def describe(value: Any) -> str:
    """An interrupt's question as text."""
    kind = value.get("kind") if isinstance(value, dict) else None
    if kind == "plan_review":
        return plan_text(value)
    if kind == "content_approval":
        return approval_text(value)
    return json.dumps(value, indent=2, default=str)


def ask(value: Any, scenario: Any, values: dict[str, Any]) -> Any:
    """Ask until the person gives an answer the scenario accepts; EOF keeps the run paused."""
    print(describe(value), file=sys.stderr)
    while True:
        try:
            answer = _ask_once(value)
        except EOFError:
            return None
        try:
            scenario.check_answer(answer, values)
        except InvalidInputError as error:
            print(f"Not accepted: {error}", file=sys.stderr)
            continue
        return answer


def _ask_once(value: Any) -> Any:
    if isinstance(value, dict) and value.get("kind") == "plan_review":
        choice = _input("[a]pprove, [e]dit or [c]ancel the plan? ").strip().lower()
        if choice in {"a", "approve", "y", "yes", ""}:
            return {"action": "approve"}
        if choice in {"c", "cancel"}:
            return {"action": "cancel"}
        if choice in {"e", "edit"}:
            print("Enter the sub-questions, one per line; an empty line ends.", file=sys.stderr)
            lines = [line.strip() for line in _lines(lambda line: not line)]
            return {"action": "edit", "subquestions": lines}
        return {"action": choice}
    if isinstance(value, dict) and value.get("kind") == "content_approval":
        return _ask_approval()
    raw = _input("Answer (JSON): ")
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _ask_approval() -> Any:
    choice = _input("[a]pprove, [r]equest changes, [e]dit or re[j]ect? ").strip().lower()
    if choice in {"a", "approve", "y", "yes", ""}:
        return {"action": "approve"}
    if choice in {"j", "reject"}:
        return {"action": "reject"}
    if choice in {"r", "request", "request_changes"}:
        print("What should change? An empty line ends.", file=sys.stderr)
        return {"action": "request_changes", "notes": "\n".join(_lines(lambda line: not line))}
    if choice in {"e", "edit"}:
        print("Enter the text to publish; a line with a single '.' ends.", file=sys.stderr)
        return {"action": "edit", "text": "\n".join(_lines(lambda line: line == "."))}
    return {"action": choice}


def _lines(done: Any) -> list[str]:
    lines: list[str] = []
    while not done(line := _input("> ").rstrip()):
        lines.append(line)
    return lines


@contextmanager
def _interruptible() -> Iterator[None]:
    """One Ctrl-C stops a blocked read at once.

    asyncio's runner only cancels its task on the first Ctrl-C, and a read blocked in `readline`
    would wait for a second; Python's own handler raises `KeyboardInterrupt` in the read.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _input(prompt: str) -> str:
    """Like `input`, but the prompt goes to stderr so stdout stays clean for `--json`."""
    with _interruptible():  # before the prompt: a Ctrl-C the moment it shows must stop the read
        print(prompt, end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line.rstrip("\n")
