"""Prometheus metrics of every scenario run, read off the observer's tree.

The metrics are registered once, here, in a package module: the LangGraph server loads each
graph file by path once per `graphs` entry, so registering in a graph file would fail with
"Duplicated timeseries". The server already exposes the global registry on `/metrics`; the CLI
and notebooks can read the same objects (or `prometheus_client.REGISTRY`).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from ensemble.observe.tree import Item, Outcome

NODE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
"""Node latencies range from milliseconds (offline model) to minutes (slow remote models)."""

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
    "ensemble_model_calls", "Chat-model calls, by the agent (graph node) that made them.", ["role"]
)
MODEL_TOKENS = Counter(
    "ensemble_model_tokens",
    "Tokens reported by chat models in usage metadata, by agent and direction.",
    ["role", "kind"],
)


class MetricsSink:
    """Count runs, node seconds, and model calls and tokens by agent.

    Model calls and tokens count at the `model` level: an agent's call through the guard counts
    once (a cache hit too), whatever requests and retries the guard made for it.
    """

    def __init__(self, scenario: str) -> None:
        """Count under the `scenario` label."""
        self.scenario = scenario

    def opened(self, item: Item) -> None:
        """Count a run started, or a model call by its agent."""
        if item.kind == "run":
            RUNS_STARTED.labels(self.scenario).inc()
        elif item.kind == "model":
            MODEL_CALLS.labels(item.node or UNKNOWN_ROLE).inc()

    def closed(self, item: Item, outcome: Outcome, error: BaseException | None) -> None:
        """Count a finished run, a node's seconds, or a model call's tokens."""
        if item.kind == "run":
            RUNS_FINISHED.labels(self.scenario, outcome).inc()
        elif item.kind == "node":
            NODE_SECONDS.labels(self.scenario, item.node).observe(item.elapsed)
        elif item.kind == "model":
            role = item.node or UNKNOWN_ROLE
            if item.tokens_in:
                MODEL_TOKENS.labels(role, "input").inc(item.tokens_in)
            if item.tokens_out:
                MODEL_TOKENS.labels(role, "output").inc(item.tokens_out)
