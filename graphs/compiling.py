"""Compiling scenario graphs the same way everywhere: named, with metrics."""

from __future__ import annotations

from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import StateGraph
from langgraph.graph.state import CompiledStateGraph

from ensemble.telemetry import MetricsCallback
from ensemble.tracing import tracing_callbacks


def compile_graph(
    builder: StateGraph[Any, Any, Any, Any],
    name: str,
    checkpointer: BaseCheckpointSaver | None = None,
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """Compile `builder` under `name`; without a checkpointer for the LangGraph server.

    The metrics callback rides in the graph's own config, so runs from the CLI, a notebook or
    the server are all counted; callbacks a caller passes are added to it, not replacing it.
    No `max_concurrency` here: it would also throttle checkpoint writes (see
    `ensemble.concurrency`); agents are capped by `Context.max_concurrency` instead.
    """
    compiled = builder.compile(checkpointer=checkpointer, name=name)
    return compiled.with_config(callbacks=[MetricsCallback(name), *tracing_callbacks(name)])
