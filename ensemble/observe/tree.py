"""The run -> node -> model tree of a scenario's runs, built once from LangChain callbacks.

`Observer` is the one callback handler `graphs.compiling.compile_graph` attaches to every
compiled graph. It turns callback events into `Item`s (a run, a node, a model call, a request
the model made) and tells its sinks when one opens and when it closes; the sinks (Prometheus
metrics, OpenTelemetry spans) only translate.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult
from langgraph.errors import GraphBubbleUp, GraphInterrupt

log = logging.getLogger(__name__)

Kind = Literal["run", "node", "model", "request"]
Outcome = Literal["done", "interrupted", "handed_up", "cancelled", "failed"]

MAX_OPEN_RUNS = 10_000
"""Upper bound on items tracked at once; the oldest entries are dropped past it.

Every start is normally matched by an end or an error, which pops it. The cap only guards a
long-lived server against callbacks that never come (e.g. a process-level crash of a task).
"""


@dataclass(eq=False)
class Item:
    """One run, node execution, model call or request in flight.

    A `model` is the outermost chat-model call an agent made (with Ensemble, the guard); a
    `request` is a chat-model call made inside another one (the provider's model the guard
    calls, once per attempt). Tokens are counted at the `model` level only, so an answer is
    counted once however many levels report it; a request keeps its own tokens for its span.
    """

    kind: Kind
    name: str
    parent: Item | None
    attributes: dict[str, Any]
    node: str = ""
    """The graph node (agent) it belongs to, "" for a run."""
    started: float = field(default_factory=time.perf_counter)
    tokens_in: int = 0
    tokens_out: int = 0
    interrupted: bool = False
    handle: Any = None
    """What a sink keeps for it (the OpenTelemetry span)."""

    @property
    def elapsed(self) -> float:
        """Seconds since it started."""
        return time.perf_counter() - self.started

    @property
    def root(self) -> Item:
        """The run this item belongs to."""
        item = self
        while item.parent is not None:
            item = item.parent
        return item


class Sink(Protocol):
    """Where the tree goes: told when each item opens and closes; may not raise into a run."""

    def opened(self, item: Item) -> None:
        """An item started (a run's parent is None)."""

    def closed(self, item: Item, outcome: Outcome, error: BaseException | None) -> None:
        """An item ended; tokens and `gen_ai.response.model` are set by then."""


class Observer(BaseCallbackHandler):
    """Turn the callback events of one scenario's graph into the tree, for every sink.

    Attached with `with_config(callbacks=...)`, it is inherited by every node and model call:
    the graph's own chain (no parent) is a run; a chain tagged `graph:step:N` and named after
    its `langgraph_node` is a node (a subgraph's nodes nest inside the node running it); a
    chat-model or LLM call is a model call, or a request when inside another model call. Other
    chains are not items, but what starts inside them goes to the item that encloses them.

    An interrupt is not an error: the node and its run end `interrupted`. The handler runs
    inline (a few dict updates) and never raises: an observation bug must not fail a run.
    """

    run_inline = True
    raise_error = False

    def __init__(self, scenario: str, sinks: Sequence[Sink] = ()) -> None:
        """Observe the runs of the graph called `scenario` for `sinks`."""
        super().__init__()
        self.scenario = scenario
        self.sinks = tuple(sinks)
        self._lock = threading.Lock()
        self._scopes: dict[UUID, Item] = {}  # every chain or model run -> its enclosing item
        self._owned: dict[UUID, Item] = {}  # runs that are items of their own

    def __repr__(self) -> str:
        return f"Observer({self.scenario!r})"

    def open_runs(self) -> int:
        """How many items and chains are tracked right now (for leak tests)."""
        with self._lock:
            return len(self._owned.keys() | self._scopes.keys())

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
        """Open a run (no parent) or a node; remember where other chains sit."""
        try:
            meta = metadata or {}
            with self._lock:
                if parent_run_id is None:
                    item = Item("run", f"run {self.scenario}", None, self._attributes("", meta))
                    self._open(run_id, item)
                    return
                enclosing = self._scopes.get(parent_run_id)
                if enclosing is None:
                    return  # a chain outside any run this handler saw start
                node = meta.get("langgraph_node")
                if node and kwargs.get("name") == node and _is_step(tags):
                    attributes = self._attributes(str(node), meta)
                    self._open(run_id, Item("node", f"node {node}", enclosing, attributes, node))
                else:
                    _bounded_put(self._scopes, run_id, enclosing)
        except Exception:  # never fail a run because of observation
            log.debug("observer: on_chain_start failed", exc_info=True)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """A node or run finished."""
        self._close(run_id, None)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """A node or run stopped: interrupted (its run marked), handed up, cancelled or failed."""
        self._close(run_id, error)

    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[Any]],
        *,
        run_id: UUID,
        **kwargs: Any,
    ) -> None:
        """A chat-model call opens like any other model call."""
        self.on_llm_start(serialized, [], run_id=run_id, **kwargs)

    def on_llm_start(
        self,
        serialized: dict[str, Any] | None,
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Open a model call (or a request inside one) where the call was made."""
        try:
            meta = metadata or {}
            with self._lock:
                enclosing = self._scopes.get(parent_run_id) if parent_run_id else None
                if enclosing is None:
                    return  # not inside a run of this graph
                node = str(meta.get("langgraph_node") or "")
                attributes = self._attributes(node, meta)
                attributes["gen_ai.operation.name"] = "chat"
                model = _model_name(meta, kwargs)
                if model:
                    attributes["gen_ai.request.model"] = model
                if meta.get("ls_provider"):
                    attributes["gen_ai.provider.name"] = str(meta["ls_provider"])
                kind: Kind = "request" if enclosing.kind in ("model", "request") else "model"
                name = f"chat {model}" if model else "chat"
                self._open(run_id, Item(kind, name, enclosing, attributes, node))
        except Exception:
            log.debug("observer: model start failed", exc_info=True)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        """Close a model call with its tokens, added to its node and run (model level only)."""
        try:
            tokens_in, tokens_out, model = _usage(response)
            with self._lock:
                item = self._owned.get(run_id)
                if item is not None:
                    item.tokens_in, item.tokens_out = tokens_in, tokens_out
                    here = item.parent if item.kind == "model" else None
                    while here is not None:
                        here.tokens_in += tokens_in
                        here.tokens_out += tokens_out
                        here = here.parent
                    if model:
                        item.attributes["gen_ai.response.model"] = model
        except Exception:
            log.debug("observer: on_llm_end failed", exc_info=True)
        self._close(run_id, None)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Close a failed model call (a retry that follows is a request of its own)."""
        self._close(run_id, error)

    def _open(self, run_id: UUID, item: Item) -> None:
        """Track `item` (the lock is held) and tell the sinks."""
        _bounded_put(self._owned, run_id, item)
        _bounded_put(self._scopes, run_id, item)
        for sink in self.sinks:
            sink.opened(item)

    def _close(self, run_id: UUID, error: BaseException | None) -> None:
        try:
            with self._lock:
                self._scopes.pop(run_id, None)
                item = self._owned.pop(run_id, None)
            if item is None:
                return
            if isinstance(error, GraphInterrupt):
                item.interrupted = item.root.interrupted = True
            outcome = _outcome(item, error)
            failure = error if outcome == "failed" else None
            for sink in self.sinks:
                sink.closed(item, outcome, failure)
        except Exception:
            log.debug("observer: closing an item failed", exc_info=True)

    def _attributes(self, node: str, meta: dict[str, Any]) -> dict[str, Any]:
        attributes: dict[str, Any] = {"ensemble.scenario": self.scenario}
        if meta.get("thread_id"):
            attributes["ensemble.thread_id"] = str(meta["thread_id"])
        if node:
            attributes["ensemble.node"] = node
            attributes["ensemble.role"] = str(meta.get("role") or node)
        if meta.get("agent"):
            attributes["ensemble.agent"] = str(meta["agent"])
        if node and meta.get("langgraph_step") is not None:
            attributes["ensemble.step"] = int(meta["langgraph_step"])
        return attributes


def _outcome(item: Item, error: BaseException | None) -> Outcome:
    if error is None:
        return "interrupted" if item.interrupted else "done"
    if isinstance(error, GraphInterrupt):
        return "interrupted"
    if isinstance(error, GraphBubbleUp):  # a Command for the parent graph: control flow
        return "handed_up"
    if isinstance(error, asyncio.CancelledError):
        return "cancelled"
    return "failed"


def _is_step(tags: list[str] | None) -> bool:
    """LangGraph tags the chain of each node execution `graph:step:N`."""
    return any(tag.startswith("graph:step:") for tag in tags or ())


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


def _bounded_put(table: dict[UUID, Item], key: UUID, value: Item) -> None:
    """Insert, dropping the oldest entry when the table is full (dicts keep insertion order)."""
    if len(table) >= MAX_OPEN_RUNS:
        table.pop(next(iter(table)), None)
    table[key] = value
