"""Progress events on LangGraph's custom stream, so any client sees which agent is working."""

from __future__ import annotations

from typing import Any, Literal

from langgraph.config import get_stream_writer

Status = Literal["started", "finished", "failed", "waiting"]


def emit(agent: str, status: Status, **detail: Any) -> None:
    """Emit `{"agent", "status", ...detail}` on the `custom` stream (a no-op when not streamed)."""
    get_stream_writer()({"agent": agent, "status": status, **detail})
