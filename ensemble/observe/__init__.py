"""One observer of every scenario run: the run/node/model tree, fed to metrics and traces.

`graphs.compiling.compile_graph` attaches `observer(name)` to each compiled graph, so the CLI,
notebooks and the server all count and trace the same way without any caller remembering to
pass it. The audit trail is written by the model guard, which sees what callbacks do not
(budgets, breakers, cache hits, each request it makes).
"""

from __future__ import annotations

from ensemble.observe.metrics import MetricsSink
from ensemble.observe.tracing import TracingSink, tracer
from ensemble.observe.tree import Item, Observer, Sink


def observer(scenario: str) -> Observer:
    """The observer of `scenario`'s runs: Prometheus always, OpenTelemetry when tracing is on."""
    sinks: list[Sink] = [MetricsSink(scenario)]
    chosen = tracer()
    if chosen is not None:
        sinks.append(TracingSink(chosen))
    return Observer(scenario, sinks)


__all__ = ["Item", "MetricsSink", "Observer", "Sink", "TracingSink", "observer"]
