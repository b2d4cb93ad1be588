"""OpenTelemetry spans of the observer's tree: one per run, node, model call and request.

Off by default. `ENSEMBLE_OTEL=console` prints finished spans on stderr (stdout stays for results
and `--json`); `ENSEMBLE_OTEL=otlp` sends them to a collector through
`opentelemetry-exporter-otlp`, configured by the standard `OTEL_EXPORTER_OTLP_*` variables, if
that package is installed.

Ensemble keeps its own tracer provider, made once per process, instead of replacing the global
one: an application that set up OpenTelemetry itself keeps its setup, and can hand its provider
to `use_provider` to receive Ensemble's spans too.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from ensemble.observe.tree import Item, Outcome

log = logging.getLogger(__name__)

ENV = "ENSEMBLE_OTEL"
"""The variable that turns tracing on: `console` or `otlp` (anything else, or unset: off)."""

MODES = ("console", "otlp")
_OFF = {"", "0", "off", "false", "no", "none"}

TRACER_NAME = "ensemble"

_lock = threading.Lock()
_chosen: trace.TracerProvider | None = None  # set by `use_provider`; wins over the environment
_built: dict[str, TracerProvider] = {}  # one provider per mode, made on first use
_warned: set[str] = set()  # each bad setting is reported once per process


def mode() -> str:
    """The tracing mode `ENSEMBLE_OTEL` asks for, lower-cased; "" when tracing is off."""
    value = os.environ.get(ENV, "").strip().lower()
    return "" if value in _OFF else value


def use_provider(provider: trace.TracerProvider | None) -> trace.TracerProvider | None:
    """Send Ensemble's spans to `provider` whatever `ENSEMBLE_OTEL` says (None: follow it again).

    For applications with their own OpenTelemetry setup, and tests. Returns the previous choice
    so it can be restored. Graphs compiled before the call keep the tracer they were given.
    """
    global _chosen
    with _lock:
        previous, _chosen = _chosen, provider
    return previous


def tracer_provider() -> trace.TracerProvider | None:
    """The provider spans go to, made on first use and then reused; None when tracing is off."""
    with _lock:
        if _chosen is not None:
            return _chosen
        chosen = mode()
        if not chosen:
            return None
        if chosen not in _built:
            exporter = _exporter(chosen)
            if exporter is None:
                return None
            _built[chosen] = _provider(chosen, exporter)
        return _built[chosen]


def tracer() -> Tracer | None:
    """Ensemble's tracer from `tracer_provider`, or None when tracing is off."""
    provider = tracer_provider()
    return provider.get_tracer(TRACER_NAME) if provider is not None else None


def _exporter(chosen: str) -> SpanExporter | None:
    """The exporter of a mode, or None after a one-line warning (once per setting)."""
    if chosen == "console":
        return ConsoleSpanExporter(out=sys.stderr)
    if chosen == "otlp":
        exporter_class = _otlp_exporter_class()
        if exporter_class is not None:
            return exporter_class()
        _warn_once(
            chosen, f"{ENV}=otlp needs the opentelemetry-exporter-otlp package; tracing is off"
        )
        return None
    _warn_once(chosen, f"{ENV}={chosen!r} is not one of {', '.join(MODES)}; tracing is off")
    return None


def _otlp_exporter_class() -> Any:
    """OTLP over HTTP, else over gRPC, whichever is installed (an optional extra)."""
    for transport in ("http", "grpc"):
        try:
            module = importlib.import_module(
                f"opentelemetry.exporter.otlp.proto.{transport}.trace_exporter"
            )
        except ImportError:
            continue
        return module.OTLPSpanExporter
    return None


def _provider(chosen: str, exporter: SpanExporter) -> TracerProvider:
    """A provider that flushes at exit; console spans print as they end, OTLP ones in batches."""
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: "ensemble"}
    provider = TracerProvider(resource=Resource.create(attributes))
    processor = SimpleSpanProcessor if chosen == "console" else BatchSpanProcessor
    provider.add_span_processor(processor(exporter))
    return provider


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning(message)


class TracingSink:
    """One span per item of the tree, nested as the items are, ended with the item's outcome.

    A model span carries the call's tokens; a node or run span the sum of its model calls
    (requests inside a model call are spans of their own, not counted again).
    """

    def __init__(self, tracer: Tracer) -> None:
        """Start spans with `tracer`."""
        self.tracer = tracer

    def opened(self, item: Item) -> None:
        """Start the item's span under its parent's (a run: under whatever span is current)."""
        parent = item.parent.handle if item.parent is not None else None
        context = trace.set_span_in_context(parent) if parent is not None else None
        kind = SpanKind.CLIENT if item.kind in ("model", "request") else SpanKind.INTERNAL
        item.handle = self.tracer.start_span(
            item.name, context=context, kind=kind, attributes=item.attributes
        )

    def closed(self, item: Item, outcome: Outcome, error: BaseException | None) -> None:
        """End the span with its outcome, tokens and error."""
        span = item.handle
        if span is None:
            return
        span.set_attribute("ensemble.outcome", outcome)
        if "gen_ai.response.model" in item.attributes:
            span.set_attribute("gen_ai.response.model", item.attributes["gen_ai.response.model"])
        if item.tokens_in or item.tokens_out or item.kind in ("model", "request"):
            span.set_attribute("gen_ai.usage.input_tokens", item.tokens_in)
            span.set_attribute("gen_ai.usage.output_tokens", item.tokens_out)
        if error is not None:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"[:200]))
        span.end()
