"""Compiling scenario graphs the same way everywhere: named, with a concurrency cap."""

from __future__ import annotations

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import StateGraph
from langgraph.graph.state import CompiledStateGraph

MAX_CONCURRENCY = 4
"""Default cap on tasks (e.g. researchers) running at once; a run's config may override it."""


def compile_graph(
    builder: StateGraph, name: str, checkpointer: BaseCheckpointSaver | None = None
) -> CompiledStateGraph:
    """Compile `builder` under `name`; without a checkpointer for the LangGraph server."""
    compiled = builder.compile(checkpointer=checkpointer, name=name)
    return compiled.with_config(max_concurrency=MAX_CONCURRENCY)
