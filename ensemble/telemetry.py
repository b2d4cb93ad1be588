"""Prometheus metrics for every scenario run, fed by a LangChain callback on each compiled graph.

The metrics are registered once, here, in a package module: the LangGraph server loads each
graph file by path once per `graphs` entry, so registering in a graph file would fail with
"Duplicated timeseries". The server already exposes the global registry on `/metrics`; the CLI
and notebooks can read the same objects (or `prometheus_client.REGISTRY`).

The callback is attached by `graphs.compiling.compile_graph`, so the CLI, notebooks and the
server all count the same way without any caller remembering to pass it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult
from langgraph.errors import GraphInterrupt
from prometheus_client import Counter, Histogram

log = logging.getLogger(__name__)

RunStatus = Literal["done", "interrupted", "failed", "cancelled"]

NODE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
"""Node latencies range from milliseconds (offline model) to minutes (slow remote models)."""

MAX_OPEN_RUNS = 10_000
"""Upper bound on runs tracked at once; the oldest entries are dropped past it.

Every start is normally matched by an end or an error, which pops it. The cap only guards a
long-lived server against callbacks that never come (e.g. a process-level crash of a task).
"""

UNKNOWN_ROLE = "unknown"

RUNS_STARTED = Counter(
    "ensemble_runs_started",
    "Graph runs started (a resume or fork counts as a new run).",
    ["scenario"],
)
RUNS_FINISHED = Counter(
    "ensemble_runs_finished",
    "Graph runs finished, by outcome: done, interrupted (waiting for a human), failed, cancelled.",
    ["scenario", "status"],
)
NODE_SECONDS = Histogram(
    "ensemble_node_seconds",
    "Wall-clock seconds of one node execution (every attempt of a retried node counts).",
    ["scenario", "node"],
    buckets=NODE_BUCKETS,
)
MODEL_CALLS = Counter(
    "ensemble_model_calls",
    "Chat-model calls, by the agent (graph node) that made them.",
    ["role"],
)
MODEL_TOKENS = Counter(
    "ensemble_model_tokens",
    "Tokens reported by chat models in usage metadata, by agent and direction.",
    ["role", "kind"],
)


@dataclass
class _Root:
    """A graph run in flight: remembers whether one of its nodes hit an interrupt."""

    interrupted: bool = False


@dataclass
class _Node:
    """A node execution in flight: its name, its graph run and when it started."""

    name: str
    root: UUID
    started: float


class MetricsCallback(BaseCallbackHandler):
    """Turn LangChain callback events of one scenario's graph into Prometheus metrics.

    Attached to a compiled graph through `with_config(callbacks=...)`, the handler is inherited
    by every node and model call of each run, so it sees:

    - the graph's own chain (no parent run): a run started / finished;
    - chains whose parent is that graph run and whose name is their `langgraph_node`: nodes;
    - chat-model calls, attributed to the agent (node) that made them.

    An interrupt does not end the graph's chain with an error: the node that called
    `interrupt()` errors with `GraphInterrupt` and the graph's chain then ends normally. So
    the handler remembers that a node of the run was interrupted.

    It runs inline in the event loop (cheap dict updates, no thread hop) and never raises:
    a metrics bug must not fail a run.
    """

    run_inline = True
    raise_error = False

    def __init__(self, scenario: str) -> None:
        """Count the runs of the graph called `scenario`."""
        super().__init__()
        self.scenario = scenario
        self._roots: dict[UUID, _Root] = {}
        self._nodes: dict[UUID, _Node] = {}
        self._models: dict[UUID, str] = {}

    def __repr__(self) -> str:
        return f"MetricsCallback({self.scenario!r})"

    # Chains: graph runs and nodes ---------------------------------------------------------

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Start tracking a graph run (no parent) or one of its nodes."""
        try:
            if parent_run_id is None:
                _bounded_put(self._roots, run_id, _Root())
                RUNS_STARTED.labels(self.scenario).inc()
            elif parent_run_id in self._roots:
                node = (metadata or {}).get("langgraph_node")
                if node and kwargs.get("name") == node:
                    _bounded_put(self._nodes, run_id, _Node(node, parent_run_id, _now()))
        except Exception:  # never fail a run because of metrics
            log.debug("metrics: on_chain_start failed", exc_info=True)

    def on_chain_end(
        self, outputs: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        """A node took its time; a graph run ended done or interrupted."""
        try:
            self._end_node(run_id)
            root = self._roots.pop(run_id, None)
            if root is not None:
                self._finish(_status_of(root, None))
        except Exception:
            log.debug("metrics: on_chain_end failed", exc_info=True)

    def on_chain_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """A node stopped (an interrupt marks its run); a graph run failed or was cancelled."""
        try:
            node = self._end_node(run_id)
            if node is not None and isinstance(error, GraphInterrupt):
                root_of_node = self._roots.get(node.root)
                if root_of_node is not None:
                    root_of_node.interrupted = True
            root = self._roots.pop(run_id, None)
            if root is not None:
                self._finish(_status_of(root, error))
        except Exception:
            log.debug("metrics: on_chain_error failed", exc_info=True)

    # Models ------------------------------------------------------------------------------

    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Count a chat-model call for the agent (node) that made it."""
        self._start_model(run_id, metadata)

    def on_llm_start(
        self,
        serialized: dict[str, Any] | None,
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Count a (non-chat) LLM call the same way."""
        self._start_model(run_id, metadata)

    def on_llm_end(
        self,
        response: LLMResult,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Add the call's input and output tokens (from the messages' `usage_metadata`)."""
        try:
            role = self._models.pop(run_id, UNKNOWN_ROLE)
            input_tokens, output_tokens = _usage(response)
            if input_tokens:
                MODEL_TOKENS.labels(role, "input").inc(input_tokens)
            if output_tokens:
                MODEL_TOKENS.labels(role, "output").inc(output_tokens)
        except Exception:
            log.debug("metrics: on_llm_end failed", exc_info=True)

    def on_llm_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Forget a failed call (it was counted when it started)."""
        self._models.pop(run_id, None)

    # Helpers -----------------------------------------------------------------------------

    def _start_model(self, run_id: UUID, metadata: dict[str, Any] | None) -> None:
        try:
            role = str((metadata or {}).get("langgraph_node") or UNKNOWN_ROLE)
            _bounded_put(self._models, run_id, role)
            MODEL_CALLS.labels(role).inc()
        except Exception:
            log.debug("metrics: model start failed", exc_info=True)

    def _end_node(self, run_id: UUID) -> _Node | None:
        node = self._nodes.pop(run_id, None)
        if node is not None:
            NODE_SECONDS.labels(self.scenario, node.name).observe(_now() - node.started)
        return node

    def _finish(self, status: RunStatus) -> None:
        RUNS_FINISHED.labels(self.scenario, status).inc()

    def open_runs(self) -> int:
        """How many runs, nodes and model calls are tracked right now (for leak tests)."""
        return len(self._roots) + len(self._nodes) + len(self._models)


def _status_of(root: _Root, error: BaseException | None) -> RunStatus:
    if isinstance(error, GraphInterrupt):
        return "interrupted"
    if isinstance(error, asyncio.CancelledError):
        return "cancelled"
    if error is not None:
        return "failed"
    return "interrupted" if root.interrupted else "done"


def _usage(response: LLMResult) -> tuple[int, int]:
    """Sum input/output tokens over the generations' messages (chat models report them there)."""
    input_tokens = output_tokens = 0
    for generations in response.generations:
        for generation in _as_sequence(generations):
            usage = getattr(getattr(generation, "message", None), "usage_metadata", None)
            if usage:
                input_tokens += int(usage.get("input_tokens") or 0)
                output_tokens += int(usage.get("output_tokens") or 0)
    return input_tokens, output_tokens


def _as_sequence(value: Any) -> Sequence[Any]:
    return value if isinstance(value, Sequence) else ()


def _bounded_put(table: dict[UUID, Any], key: UUID, value: Any) -> None:
    """Insert, dropping the oldest entry when the table is full (dicts keep insertion order)."""
    if len(table) >= MAX_OPEN_RUNS:
        table.pop(next(iter(table)), None)
    table[key] = value


def _now() -> float:
    return time.perf_counter()
