"""Every model call of every agent through one guard: cache, budget, breaker, fallbacks, audit.

`GuardedChatModel` wraps the model a role plays with (and its fallbacks). Before a call it
looks the exact request up in the cache (a fork or resume does not pay twice), checks the
thread's budget (before spending, not after), and skips a model whose endpoint's circuit
breaker is open in favour of the role's next fallback. Each call, hit, fallback, breaker change
and budget stop is written to the audit trail. Retries of transient faults happen in the
model's client (see `ensemble.models.chat_model`); a model that still fails counts against its
breaker.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import openai
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.utils import message_chunk_to_message
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict

from ensemble.audit import AuditEvent, record, thread_context, totals
from ensemble.errors import EnsembleError
from ensemble.progress import emit
from ensemble.resilience.breaker import BOARD
from ensemble.resilience.cache import ModelCache, request_key

log = logging.getLogger(__name__)

TRANSIENT = (
    openai.APITimeoutError,
    openai.APIConnectionError,
    openai.RateLimitError,
    openai.InternalServerError,
    httpx.TimeoutException,
    httpx.TransportError,
    asyncio.TimeoutError,
    ConnectionError,
    json.JSONDecodeError,  # a garbled response body
)
"""Faults of the endpoint, not of the request: they count against its circuit breaker."""


class BudgetExceeded(EnsembleError):
    """The thread spent what its budget allows; raise the budget to go on."""


class ModelUnavailable(EnsembleError):
    """Every model of a role is failing or out of rotation."""


@dataclass
class _Ledger:
    calls: int = 0
    tokens: int = 0
    seconds: float = 0.0
    cost: float = 0.0


class Spending:
    """What each thread spent, seeded from its audit trail, kept exact within the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ledgers: dict[tuple[str, str], _Ledger] = {}

    def ledger(self, db: str, thread: str) -> _Ledger:
        """The thread's ledger (read from the audit trail once per process)."""
        with self._lock:
            found = self._ledgers.get((db, thread))
        if found is not None:
            return found
        spent = totals(db, thread) if thread else {}
        ledger = _Ledger(
            calls=int(spent.get("calls", 0)),
            tokens=int(spent.get("tokens_in", 0)) + int(spent.get("tokens_out", 0)),
            seconds=float(spent.get("seconds", 0.0)),
            cost=float(spent.get("cost", 0.0)),
        )
        with self._lock:
            return self._ledgers.setdefault((db, thread), ledger)

    def reserve(self, db: str, thread: str, budget: Mapping[str, float]) -> None:
        """Count one call before it is made, or raise `BudgetExceeded` naming the limit."""
        ledger = self.ledger(db, thread)
        with self._lock:
            spent = {
                "calls": ledger.calls,
                "tokens": ledger.tokens,
                "seconds": ledger.seconds,
                "cost": ledger.cost,
            }
            for name, limit in budget.items():
                used = spent.get(name, 0)
                if (used + 1 > limit) if name == "calls" else (used >= limit):
                    raise BudgetExceeded(
                        f"budget exhausted: {name} {used:g} of {limit:g}; resume with a higher "
                        f"budget, e.g. --budget '{{\"{name}\": {limit * 2:g}}}'"
                    )
            ledger.calls += 1

    def spend(self, db: str, thread: str, tokens: int, seconds: float, cost: float) -> None:
        """Add what a call cost once it is known."""
        ledger = self.ledger(db, thread)
        with self._lock:
            ledger.tokens += tokens
            ledger.seconds += seconds
            ledger.cost += cost

    def forget(self) -> None:
        """Drop every ledger (tests; a new process starts empty anyway)."""
        with self._lock:
            self._ledgers.clear()


SPENDING = Spending()


class GuardedChatModel(BaseChatModel):
    """A role's model behind the cache, the budget, the breakers and its fallbacks."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    role: str
    chain: tuple[str, ...]
    """The model specs to use, in order: the role's model, then its fallbacks."""
    models: tuple[BaseChatModel, ...]
    """The chat models of `chain`, built with the run's timeout and retries."""
    db: str
    """The database of the audit trail, the cache and the budget ledger."""
    budget: dict[str, float] = {}
    prices: dict[str, dict[str, float]] = {}
    use_cache: bool = True

    @property
    def _llm_type(self) -> str:
        return "ensemble-guarded"

    def bind_tools(
        self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any
    ) -> Runnable[Any, Any]:
        """Bind tools as the primary model would (all Ensemble models speak OpenAI's format).

        A forced call of the only tool ("any" / "required", which structured output asks for)
        names that tool: the one form every OpenAI-compatible server turns into a tool call.
        """
        if tool_choice in ("any", "required", True) and len(tools) == 1:
            tool_choice = convert_to_openai_tool(tools[0])["function"]["name"]
        bound = self.models[0].bind_tools(tools, tool_choice=tool_choice, **kwargs)
        return self.bind(**getattr(bound, "kwargs", {}))

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        """The same guard for a synchronous caller (a notebook's `invoke`).

        It runs on an event loop of its own in a worker thread, with the caller's context
        (LangGraph's config), so it works whether or not the caller's thread has a loop.
        """
        context = contextvars.copy_context()
        call = self._agenerate(messages, stop, None, **kwargs)
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(context.run, asyncio.run, call).result()

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        chunks = [c async for c in self._guarded(messages, stop, kwargs, stream=False)]
        return _joined(chunks)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        async for chunk in self._guarded(messages, stop, kwargs, stream=True):
            yield chunk

    async def _guarded(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        kwargs: dict[str, Any],
        *,
        stream: bool,
    ) -> AsyncIterator[ChatGenerationChunk]:
        """One call through the guard; chunks of the answer (one, unless streaming).

        A model that fails before its first token is replaced by the next in the chain; one
        that fails after it is not (the error goes up), since half an answer cannot be undone.
        """
        where = thread_context()
        thread = where[0]
        failures: list[str] = []
        for position, (spec, model) in enumerate(zip(self.chain, self.models, strict=True)):
            breaker = BOARD.breaker(f"model:{spec}")
            key = request_key(spec, messages, {**kwargs, "stop": stop})
            if self.use_cache:
                cached = await asyncio.to_thread(ModelCache.for_path(self.db).get, key)
                if cached is not None:
                    self._record(where, "cache_hit", spec, result=cached)
                    yield _as_chunk(cached)
                    return
            if not breaker.allow():
                failures.append(f"{spec}: out of rotation (circuit open)")
                continue
            if position > 0:
                emit("model", "started", role=self.role, fallback=spec, because=failures[-1])
                self._record(where, "fallback", spec, reason=failures[-1])
            await self._reserve(where, spec)
            started = time.monotonic()
            chunks: list[ChatGenerationChunk] = []
            try:
                if stream and type(model)._astream is not BaseChatModel._astream:
                    async for chunk in model._astream(messages, stop=stop, **kwargs):
                        chunks.append(chunk)
                        yield chunk
                else:
                    whole = await model._agenerate(messages, stop=stop, **kwargs)
                    chunks.append(_as_chunk(whole))
                    yield chunks[-1]
            except Exception as error:
                seconds = time.monotonic() - started
                self._spend(thread, 0, seconds, 0.0)
                detail = f"{type(error).__name__}: {error}"
                self._record(
                    where, "model_call", spec, outcome="error", seconds=seconds, reason=detail
                )
                if not isinstance(error, TRANSIENT) or chunks:
                    raise  # a fault of the request (400, auth), or half an answer already out
                breaker.record_failure()
                failures.append(f"{spec}: {detail}")
                continue
            seconds = time.monotonic() - started
            breaker.record_success()
            result = _joined(chunks)
            tokens_in, tokens_out = _usage(result)
            cost = self._cost(spec, tokens_in, tokens_out)
            self._spend(thread, tokens_in + tokens_out, seconds, cost)
            self._record(where, "model_call", spec, result=result, seconds=seconds, cost=cost)
            if self.use_cache:
                await asyncio.to_thread(ModelCache.for_path(self.db).put, key, spec, result)
            return
        raise ModelUnavailable(
            f"no model available for the {self.role}: "
            + "; ".join(failures)
            + " (resume once the provider is back, or add fallbacks)"
        )

    async def _reserve(self, where: tuple[str, str, str], spec: str) -> None:
        """Count the call against the budget first (the ledger is read once, off the loop)."""
        thread = where[0]
        if not (self.budget and thread):
            return
        await asyncio.to_thread(SPENDING.ledger, self.db, thread)
        try:
            SPENDING.reserve(self.db, thread, self.budget)
        except BudgetExceeded as error:
            self._record(where, "budget_stop", spec, outcome="stopped", reason=str(error))
            raise

    def _spend(self, thread: str, tokens: int, seconds: float, cost: float) -> None:
        if self.budget and thread:
            SPENDING.spend(self.db, thread, tokens, seconds, cost)

    def _cost(self, spec: str, tokens_in: int, tokens_out: int) -> float:
        price = self.prices.get(spec) or {}
        return (tokens_in * price.get("input", 0.0) + tokens_out * price.get("output", 0.0)) / 1e6

    def _record(
        self,
        where: tuple[str, str, str],
        kind: str,
        spec: str,
        *,
        outcome: str = "ok",
        result: ChatResult | None = None,
        seconds: float = 0.0,
        cost: float = 0.0,
        reason: str | None = None,
    ) -> None:
        """One audit row for this role's call: tokens from `result`, a short `reason`."""
        thread, namespace, checkpoint = where
        tokens_in, tokens_out = _usage(result) if result is not None else (0, 0)
        record(
            AuditEvent(
                thread_id=thread,
                kind=kind,
                agent=self.role,
                checkpoint_ns=namespace,
                checkpoint_id=checkpoint,
                model=spec,
                tokens_in=tokens_in,
                tokens_out=tokens_out,
                cost=cost,
                seconds=round(seconds, 4),
                outcome=outcome,
                detail={"reason": reason[:500]} if reason else {},
            ),
            self.db,
        )


def _as_chunk(result: ChatResult) -> ChatGenerationChunk:
    """A whole answer as one chunk (a cache hit, a model that does not stream)."""
    message = result.generations[0].message
    chunk = AIMessageChunk(
        content=message.content,
        tool_call_chunks=[
            {"name": c["name"], "args": json.dumps(c["args"]), "id": c.get("id"), "index": i}
            for i, c in enumerate(getattr(message, "tool_calls", []) or [])
        ],
        usage_metadata=getattr(message, "usage_metadata", None),
        additional_kwargs=message.additional_kwargs,
        response_metadata=message.response_metadata,
        id=message.id,
    )
    return ChatGenerationChunk(message=chunk)


def _joined(chunks: list[ChatGenerationChunk]) -> ChatResult:
    """Chunks as one answer (what `_agenerate` returns, the audit counts and the cache keeps)."""
    if not chunks:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=""))])
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole += chunk
    return ChatResult(generations=[ChatGeneration(message=message_chunk_to_message(whole.message))])


def _usage(result: ChatResult) -> tuple[int, int]:
    tokens_in = tokens_out = 0
    for generation in result.generations:
        usage = getattr(generation.message, "usage_metadata", None) or {}
        tokens_in += int(usage.get("input_tokens", 0))
        tokens_out += int(usage.get("output_tokens", 0))
    return tokens_in, tokens_out
