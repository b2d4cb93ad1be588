"""OpenTelemetry spans for scenario runs: one per run, per node, per model call. Off by default.

`ENSEMBLE_OTEL=console` prints finished spans on stderr (stdout stays for results and `--json`);
`ENSEMBLE_OTEL=otlp` sends them to a collector through `opentelemetry-exporter-otlp`, configured
by the standard `OTEL_EXPORTER_OTLP_*` variables, if that package is installed. The spans come
from a LangChain callback that `graphs.compiling.compile_graph` attaches, like the metrics, so the
CLI, notebooks and the server trace the same way.

Ensemble keeps its own tracer provider, made once per process, instead of replacing the global
one: an application that set up OpenTelemetry itself keeps its setup, and can hand its provider
to `use_provider` to receive Ensemble's spans too.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult
from langgraph.errors import GraphBubbleUp, GraphInterrupt
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

log = logging.getLogger(__name__)

ENV = "ENSEMBLE_OTEL"
"""The variable that turns tracing on: `console` or `otlp` (anything else, or unset: off)."""

MODES = ("console", "otlp")
_OFF = {"", "0", "off", "false", "no", "none"}

TRACER_NAME = "ensemble"

MAX_OPEN_RUNS = 10_000
"""Upper bound on spans and chains tracked at once, as in `ensemble.telemetry`."""

SpanRole = Literal["run", "node", "model"]

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


def tracing_callbacks(scenario: str) -> list[BaseCallbackHandler]:
    """`[TracingCallback(scenario)]` when tracing is on, else `[]` (for `compile_graph`)."""
    provider = tracer_provider()
    if provider is None:
        return []
    return [TracingCallback(scenario, tracer=provider.get_tracer(TRACER_NAME))]


def _exporter(chosen: str) -> SpanExporter | None:
    """The exporter of a mode, or None after a one-line warning (once per setting)."""
    if chosen == "console":
        return ConsoleSpanExporter(out=sys.stderr)
    if chosen == "otlp":
        exporter_class = _otlp_exporter_class()
        if exporter_class is not None:
            return exporter_class()
        _warn_once(
            chosen,
            f"{ENV}=otlp needs the opentelemetry-exporter-otlp package; tracing is off",
        )
        return None
    _warn_once(chosen, f"{ENV}={chosen!r} is not one of {', '.join(MODES)}; tracing is off")
    return None


def _otlp_exporter_class() -> Any:
    """OTLP over HTTP, else over gRPC, whichever is installed (an optional extra)."""
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter
    except ImportError:
        pass
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpanExporter,
        )

        return GrpcSpanExporter
    except ImportError:
        return None


def _provider(chosen: str, exporter: SpanExporter) -> TracerProvider:
    """A provider that flushes at exit; console spans print as they end, OTLP ones in batches."""
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: "ensemble"}
    provider = TracerProvider(resource=Resource.create(attributes))
    if chosen == "console":
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning(message)


# The callback ----------------------------------------------------------------------------------


@dataclass
class _Open:
    """A span in flight, the span it sits in, and the tokens its model calls reported."""

    span: Span
    role: SpanRole
    parent: _Open | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    interrupted: bool = False


class TracingCallback(BaseCallbackHandler):
    """Turn the LangChain callback events of one scenario's graph into OpenTelemetry spans.

    Shaped like `ensemble.telemetry.MetricsCallback`: the graph's own chain (no parent) is a
    run span; a chain tagged `graph:step:N` and named after its `langgraph_node` is a node span
    (so a subgraph's nodes nest inside the node that runs the subgraph); a chat-model or LLM
    call is a model span. Any other chain is not a span, but the spans started inside it go to
    the span that encloses it.

    An interrupt is not an error: the node and its run are marked `interrupted`. The handler
    runs inline (a few dict updates) and never raises: a tracing bug must not fail a run.
    """

    run_inline = True
    raise_error = False

    def __init__(self, scenario: str, tracer: Tracer | None = None) -> None:
        """Trace the runs of the graph called `scenario` with `tracer` (default: the setup's)."""
        super().__init__()
        self.scenario = scenario
        if tracer is None:
            provider = tracer_provider() or trace.get_tracer_provider()
            tracer = provider.get_tracer(TRACER_NAME)
        self.tracer = tracer
        self._lock = threading.Lock()
        self._scopes: dict[UUID, _Open] = {}  # every chain or model run -> its enclosing span
        self._owned: dict[UUID, _Open] = {}  # runs that opened a span of their own

    def __repr__(self) -> str:
        return f"TracingCallback({self.scenario!r})"

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
        """Open a run span (no parent) or a node span; remember where other chains sit."""
        try:
            meta = metadata or {}
            with self._lock:
                if parent_run_id is None:
                    self._open(run_id, "run", f"run {self.scenario}", None, self._run_attrs(meta))
                    return
                enclosing = self._scopes.get(parent_run_id)
                if enclosing is None:
                    return  # a chain outside any run this handler saw start
                node = meta.get("langgraph_node")
                if node and kwargs.get("name") == node and _is_step(tags):
                    attrs = self._node_attrs(str(node), meta)
                    self._open(run_id, "node", f"node {node}", enclosing, attrs)
                else:
                    _bounded_put(self._scopes, run_id, enclosing)
        except Exception:  # never fail a run because of tracing
            log.debug("tracing: on_chain_start failed", exc_info=True)

    def on_chain_end(
        self, outputs: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        """End the chain's span, if it has one: a node or run that finished."""
        try:
            with self._lock:
                opened = self._close(run_id)
            if opened is not None:
                outcome = "interrupted" if opened.interrupted else "done"
                self._end(opened, outcome)
        except Exception:
            log.debug("tracing: on_chain_end failed", exc_info=True)

    def on_chain_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """End the chain's span: interrupted (and its run marked), cancelled or failed."""
        try:
            with self._lock:
                opened = self._close(run_id)
            if opened is None:
                return
            if isinstance(error, GraphInterrupt):
                root = _root_of(opened)
                root.interrupted = opened.interrupted = True
                self._end(opened, "interrupted")
            elif isinstance(error, GraphBubbleUp):  # a Command for the parent graph: control flow
                self._end(opened, "handed_up")
            elif isinstance(error, asyncio.CancelledError):
                self._end(opened, "cancelled")
            else:
                self._end(opened, "failed", error)
        except Exception:
            log.debug("tracing: on_chain_error failed", exc_info=True)

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
        """Open a model span inside the node (or run) that made the call."""
        self._start_model(run_id, parent_run_id, metadata, kwargs)

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
        """Open a span for a (non-chat) LLM call the same way."""
        self._start_model(run_id, parent_run_id, metadata, kwargs)

    def on_llm_end(
        self,
        response: LLMResult,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """End the model span with its tokens; add them to its node's and run's spans."""
        try:
            tokens_in, tokens_out, model = _usage(response)
            with self._lock:
                opened = self._close(run_id)
                if opened is None:
                    return
                here: _Open | None = opened
                while here is not None:
                    here.tokens_in += tokens_in
                    here.tokens_out += tokens_out
                    here = here.parent
            if model:
                opened.span.set_attribute("gen_ai.response.model", model)
            self._end(opened, "done")
        except Exception:
            log.debug("tracing: on_llm_end failed", exc_info=True)

    def on_llm_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """End the model span as failed (a retry that follows gets its own span)."""
        try:
            with self._lock:
                opened = self._close(run_id)
            if opened is not None:
                if isinstance(error, asyncio.CancelledError):
                    self._end(opened, "cancelled")
                else:
                    self._end(opened, "failed", error)
        except Exception:
            log.debug("tracing: on_llm_error failed", exc_info=True)

    # Helpers -----------------------------------------------------------------------------

    def _start_model(
        self,
        run_id: UUID,
        parent_run_id: UUID | None,
        metadata: dict[str, Any] | None,
        extra: dict[str, Any],
    ) -> None:
        try:
            meta = metadata or {}
            with self._lock:
                enclosing = self._scopes.get(parent_run_id) if parent_run_id else None
                if enclosing is None:
                    return  # not inside a run of this graph
                model = _model_name(meta, extra)
                attrs = self._node_attrs(str(meta.get("langgraph_node") or ""), meta)
                attrs["gen_ai.operation.name"] = "chat"
                if model:
                    attrs["gen_ai.request.model"] = model
                if meta.get("ls_provider"):
                    attrs["gen_ai.provider.name"] = str(meta["ls_provider"])
                name = f"chat {model}" if model else "chat"
                self._open(run_id, "model", name, enclosing, attrs)
        except Exception:
            log.debug("tracing: model start failed", exc_info=True)

    def _open(
        self,
        run_id: UUID,
        role: SpanRole,
        name: str,
        parent: _Open | None,
        attributes: dict[str, Any],
    ) -> None:
        """Start a span under `parent` (a run: under whatever span is current); track it."""
        context = trace.set_span_in_context(parent.span) if parent is not None else None
        kind = SpanKind.CLIENT if role == "model" else SpanKind.INTERNAL
        span = self.tracer.start_span(name, context=context, kind=kind, attributes=attributes)
        opened = _Open(span, role, parent)
        _bounded_put(self._owned, run_id, opened)
        if role != "model":
            _bounded_put(self._scopes, run_id, opened)

    def _close(self, run_id: UUID) -> _Open | None:
        self._scopes.pop(run_id, None)
        return self._owned.pop(run_id, None)

    def _end(self, opened: _Open, outcome: str, error: BaseException | None = None) -> None:
        span = opened.span
        span.set_attribute("ensemble.outcome", outcome)
        if opened.tokens_in or opened.tokens_out or opened.role == "model":
            span.set_attribute("gen_ai.usage.input_tokens", opened.tokens_in)
            span.set_attribute("gen_ai.usage.output_tokens", opened.tokens_out)
        if error is not None:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"[:200]))
        span.end()

    def _run_attrs(self, meta: dict[str, Any]) -> dict[str, Any]:
        attrs: dict[str, Any] = {"ensemble.scenario": self.scenario}
        if meta.get("thread_id"):
            attrs["ensemble.thread_id"] = str(meta["thread_id"])
        return attrs

    def _node_attrs(self, node: str, meta: dict[str, Any]) -> dict[str, Any]:
        attrs = self._run_attrs(meta)
        if node:
            attrs["ensemble.node"] = node
            attrs["ensemble.role"] = str(meta.get("role") or node)
        if meta.get("agent"):
            attrs["ensemble.agent"] = str(meta["agent"])
        if meta.get("langgraph_step") is not None:
            attrs["ensemble.step"] = int(meta["langgraph_step"])
        return attrs

    def open_spans(self) -> int:
        """How many spans and chains are tracked right now (for leak tests)."""
        with self._lock:
            return len(self._owned) + len(self._scopes)


def _is_step(tags: list[str] | None) -> bool:
    """LangGraph tags the chain of each node execution `graph:step:N`."""
    return any(tag.startswith("graph:step:") for tag in tags or ())


def _root_of(opened: _Open) -> _Open:
    while opened.parent is not None:
        opened = opened.parent
    return opened


def _model_name(meta: dict[str, Any], extra: dict[str, Any]) -> str:
    """The requested model: LangChain's `ls_model_name`, else the invocation parameters."""
    if meta.get("ls_model_name"):
        return str(meta["ls_model_name"])
    params = extra.get("invocation_params") or {}
    return str(params.get("model") or params.get("model_name") or "")


def _usage(response: LLMResult) -> tuple[int, int, str]:
    """A call's input and output tokens (messages' `usage_metadata`) and the answering model."""
    tokens_in = tokens_out = 0
    model = ""
    for generations in response.generations:
        for generation in generations:
            message = getattr(generation, "message", None)
            usage = getattr(message, "usage_metadata", None)
            if usage:
                tokens_in += int(usage.get("input_tokens") or 0)
                tokens_out += int(usage.get("output_tokens") or 0)
            metadata = getattr(message, "response_metadata", None) or {}
            model = model or str(metadata.get("model_name") or "")
    return tokens_in, tokens_out, model


def _bounded_put(table: dict[UUID, _Open], key: UUID, value: _Open) -> None:
    """Insert, dropping the oldest entry when the table is full (dicts keep insertion order)."""
    if len(table) >= MAX_OPEN_RUNS:
        table.pop(next(iter(table)), None)
    table[key] = value
