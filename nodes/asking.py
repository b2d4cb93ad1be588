"""Asking a person: pause the run with a question, and say so only when it really pauses."""

from __future__ import annotations

from typing import Any

from langgraph.errors import GraphInterrupt
from langgraph.types import interrupt

from ensemble.progress import emit


def ask_person(node: str, request: dict[str, Any], **shown: Any) -> Any:
    """`interrupt(request)`, with a `waiting` progress event when the run pauses.

    On resume the node runs again from its first line and `interrupt` returns the answer at
    once: no `waiting` line then, since nobody is waiting any more.
    """
    try:
        return interrupt(request)
    except GraphInterrupt:
        emit(node, "waiting", **shown)
        raise
