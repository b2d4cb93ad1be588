"""Compiling scenario graphs the same way everywhere: named, observed."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import RetryPolicy, TimeoutPolicy

from ensemble.observe import observer
from ensemble.resilience.pause import pauses_for_person
from ensemble.workspace import Workspace

RETRY = RetryPolicy(max_attempts=3)
"""For nodes that may run again whole: a transient fault of theirs is worth another go."""

NODE_IDLE_TIMEOUT = TimeoutPolicy(idle_timeout=600.0)
"""A backstop above the per-call model timeout: an agent node that shows no progress (no model
callback, no stream event) for ten minutes is cancelled; its retry policy, if any, decides next."""


def add_agent(
    builder: StateGraph[Any, Any, Any, Any],
    name: str,
    node: Callable[..., Awaitable[Any]],
    *,
    workspace: Workspace,
    retry: bool = True,
    **kwargs: Any,
) -> None:
    """Add a model-calling node the one way every scenario does.

    It may be retried whole (`RETRY`) unless `retry=False` (a `Send` worker that isolates its
    failures), is cancelled when idle too long, and pauses the run for a person when no model is
    left or the budget is spent (`ensemble.resilience.pause`), after its retries; the pause and
    the person's answer are recorded in `workspace`'s audit trail. A node that declares a
    `workspace` keyword is given this one: resources are bound when the graph is built.
    """
    policy = RETRY if retry else None
    attempts = policy.max_attempts if policy else 1
    if "workspace" in inspect.signature(node).parameters:
        node = partial(node, workspace=workspace)
    builder.add_node(
        name,
        pauses_for_person(node, workspace.audit, attempts=attempts),
        retry_policy=policy,
        timeout=NODE_IDLE_TIMEOUT,
        **kwargs,
    )


def compile_graph(
    builder: StateGraph[Any, Any, Any, Any],
    name: str,
    checkpointer: BaseCheckpointSaver | None = None,
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """Compile `builder` under `name`; without a checkpointer for the LangGraph server.

    The observer (metrics, traces) rides in the graph's own config, so runs from the CLI, a
    notebook or the server are all observed; callbacks a caller passes are added to it.
    No `max_concurrency` here: it would also throttle checkpoint writes (see
    `ensemble.concurrency`); agents are capped by `Context.max_concurrency` instead.
    """
    compiled = builder.compile(checkpointer=checkpointer, name=name)
    return compiled.with_config(callbacks=[observer(name)])
