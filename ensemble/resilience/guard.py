"""Every model call of every agent through one guard: cache, budget, breaker, fallbacks, audit.

`GuardedChatModel` wraps the model a role plays with (and its fallbacks). Before a call it
looks the exact request up in the cache (a fork or resume does not pay twice), checks the
thread's budget (before spending, not after), and skips a model whose endpoint's circuit
breaker is open in favour of the role's next fallback. Each call, hit, fallback, breaker change
and budget stop is written to the audit trail. The guard retries transient faults itself (the
clients are built without retries), so each request counts against the budget, is audited and
is refused while its endpoint's breaker is open.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
import time
from collections.abc import AsyncIterator, Generator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import httpx
import openai
from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.chat_models import generate_from_stream
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.constants import TAG_NOSTREAM
from pydantic import ConfigDict

from ensemble.audit import AuditEvent, record, thread_context, totals
from ensemble.errors import EnsembleError
from ensemble.models.chunks import as_chunk
from ensemble.progress import emit
from ensemble.resilience.breaker import BOARD, CircuitBreaker
from ensemble.resilience.cache import ModelCache, request

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
"""Faults of the endpoint, not of the request: retried, and counted against its breaker."""

BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 8.0
MAX_RETRY_AFTER = 60.0
"""Seconds: the first retry's wait, the longest exponential wait, the longest Retry-After."""


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
            spent = asdict(ledger)
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


@dataclass
class _Failed:
    """What a request raised, and whether part of the answer had gone out already."""

    error: Exception
    partial: bool = False


Step = BaseChatModel | float
"""What the decisions ask the caller for: the model to send the request to, or seconds to wait."""
Reply = ChatResult | _Failed | None


class GuardedChatModel(BaseChatModel):
    """A role's model behind the cache, the budget, the breakers, retries and its fallbacks.

    The wrapped models are called through their public `invoke` / `ainvoke` / `astream` with
    the guard's callbacks, so their own callbacks fire as children of the guard's run. The
    decisions (`_steps`) are written once; a sync and an async driver make the requests and
    waits they ask for.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    role: str
    chain: tuple[str, ...]
    """The model specs to use, in order: the role's model, then its fallbacks."""
    models: tuple[BaseChatModel, ...]
    """The chat models of `chain`, built with the run's timeout and no client retries."""
    db: str
    """The database of the audit trail, the cache and the budget ledger."""
    budget: dict[str, float] = {}
    prices: dict[str, dict[str, float]] = {}
    use_cache: bool = True
    retries: int = 2
    """Retries of a transient fault per model, before its fallback (the run's `model_retries`)."""

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
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        """The guard for a synchronous caller: the same decisions, blocking requests."""
        steps = self._steps(messages, stop, kwargs)
        reply: Reply = None
        while not isinstance(step := _advance(steps, reply), ChatResult):
            if isinstance(step, float):
                time.sleep(step)
                reply = None
                continue
            try:
                reply = _result(step.invoke(messages, _inner(run_manager), stop=stop, **kwargs))
            except Exception as error:
                reply = _Failed(error)
        return step

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        chunks = self._astream(messages, stop, run_manager, whole=True, **kwargs)
        return _joined([chunk async for chunk in chunks])

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        *,
        whole: bool = False,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        """The guard for an async caller: the decisions run off the loop (they read SQLite).

        `whole` (for `_agenerate`) asks each model for its answer in one piece (`ainvoke`).
        """
        steps = self._steps(messages, stop, kwargs)
        reply: Reply = None
        streamed = False
        while True:
            step = await asyncio.to_thread(_advance, steps, reply)
            if isinstance(step, ChatResult):
                if not streamed:
                    yield as_chunk(step)
                return
            if isinstance(step, float):
                await asyncio.sleep(step)
                reply = None
                continue
            chunks: list[ChatGenerationChunk] = []
            config = _inner(run_manager)
            try:
                if whole:
                    reply = _result(await step.ainvoke(messages, config, stop=stop, **kwargs))
                else:
                    async for part in step.astream(messages, config, stop=stop, **kwargs):
                        chunks.append(ChatGenerationChunk(message=part))
                        yield chunks[-1]
                    reply = _joined(chunks)
            except Exception as error:
                reply = _Failed(error, partial=bool(chunks))
            streamed = bool(chunks)

    def _steps(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> Generator[Step, Reply, ChatResult]:
        """Every decision of one guarded call; returns the answer.

        Yields the requests to make (sent back: their result, or `_Failed`) and the seconds to
        wait before a retry. Per model of the chain: the cache first, then attempts while its
        breaker allows, each reserved against the budget and audited; a transient fault is
        retried with backoff, then the next model is tried. A fault after part of a streamed
        answer went out is raised (half an answer cannot be undone), as is a fault of the
        request itself (400, auth).
        """
        where = thread_context()
        failures: list[str] = []
        for position, (spec, model) in enumerate(zip(self.chain, self.models, strict=True)):
            prompt, llm_string = request(spec, messages, {**kwargs, "stop": stop})
            cache = ModelCache.for_path(self.db)
            cached = cache.lookup(prompt, llm_string) if self.use_cache else None
            if cached:
                result = ChatResult(generations=cached)
                self._record(where, "cache_hit", spec, result=result)
                return result
            breaker = BOARD.breaker(f"model:{spec}")
            for attempt in range(self.retries + 1):
                if not self._watch(where, breaker, breaker.allow):
                    failures.append(f"{spec}: out of rotation (circuit open)")
                    break
                if position > 0 and attempt == 0:
                    emit("model", "started", role=self.role, fallback=spec, because=failures[-1])
                    self._record(where, "fallback", spec, reason=failures[-1])
                self._reserve(where, spec)
                started = time.monotonic()
                reply = yield model
                seconds = time.monotonic() - started
                if isinstance(reply, ChatResult):
                    self._watch(where, breaker, breaker.record_success)
                    tokens_in, tokens_out = _usage(reply)
                    cost = self._cost(spec, tokens_in, tokens_out)
                    self._spend(where[0], tokens_in + tokens_out, seconds, cost)
                    self._record(
                        where, "model_call", spec, result=reply, seconds=seconds, cost=cost
                    )
                    if self.use_cache:
                        cache.update(prompt, llm_string, reply.generations)
                    return reply
                assert isinstance(reply, _Failed)
                error = reply.error
                self._spend(where[0], 0, seconds, 0.0)
                detail = f"{type(error).__name__}: {error}"
                self._record(
                    where, "model_call", spec, outcome="error", seconds=seconds, reason=detail
                )
                if not isinstance(error, TRANSIENT) or reply.partial:
                    raise error
                self._watch(where, breaker, breaker.record_failure)
                failures.append(f"{spec}: {detail}")
                if attempt < self.retries and breaker.state != "open":
                    yield _backoff(attempt, error)
        raise ModelUnavailable(
            f"no model available for the {self.role}: {'; '.join(failures)}"
            " (resume once the provider is back, or add fallbacks)"
        )

    def _watch(self, where: tuple[str, str, str], breaker: CircuitBreaker, act: Any) -> Any:
        """Do `act` on `breaker`; audit the change of state it made, if any."""
        old = breaker.state
        done = act()
        new = breaker.state
        if new != old:
            self._record(
                where,
                "breaker",
                breaker.name.split(":", 1)[-1],
                outcome=new,
                detail={"breaker": breaker.name, "old": old, "new": new},
            )
        return done

    def _reserve(self, where: tuple[str, str, str], spec: str) -> None:
        """Count the request against the budget before it is made."""
        thread = where[0]
        if not (self.budget and thread):
            return
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
        detail: dict[str, Any] | None = None,
    ) -> None:
        """One audit row for this role's call: tokens from `result`, a short `reason`."""
        thread, namespace, checkpoint = where
        if not thread and kind == "breaker":
            return  # outside a run there is no trail to put it in
        tokens_in, tokens_out = _usage(result) if result is not None else (0, 0)
        record(
            AuditEvent(
                thread_id=thread,
                kind=kind,
                agent=self.role if kind != "breaker" else spec,
                checkpoint_ns=namespace,
                checkpoint_id=checkpoint,
                model=spec if kind != "breaker" else None,
                tokens_in=tokens_in,
                tokens_out=tokens_out,
                cost=cost,
                seconds=round(seconds, 4),
                outcome=outcome,
                detail=detail or ({"reason": reason[:500]} if reason else {}),
            ),
            self.db,
        )


def _advance(steps: Generator[Step, Reply, ChatResult], reply: Reply) -> Step | ChatResult:
    """The next step of the decisions, or their answer (a `StopIteration` cannot cross threads)."""
    try:
        return steps.send(reply)
    except StopIteration as done:
        return done.value


def _inner(run_manager: Any) -> RunnableConfig:
    """The wrapped model's config: its callbacks are the guard run's children.

    It is tagged `nostream`: LangGraph's message stream shows the guard's answer, not the same
    answer a second time from the model inside it.
    """
    if run_manager is None:
        return {"tags": [TAG_NOSTREAM]}
    child = CallbackManager(handlers=[], parent_run_id=run_manager.run_id)
    child.set_handlers(run_manager.inheritable_handlers)
    child.add_tags(run_manager.inheritable_tags)
    child.add_metadata(run_manager.inheritable_metadata)
    return {"callbacks": child, "tags": [TAG_NOSTREAM]}


def _result(message: BaseMessage) -> ChatResult:
    return ChatResult(generations=[ChatGeneration(message=message)])


def _backoff(attempt: int, error: Exception) -> float:
    """Seconds before retry `attempt + 1`: the server's Retry-After, else exponential, jittered."""
    headers = getattr(getattr(error, "response", None), "headers", None) or {}
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            return min(float(headers[name]) * scale, MAX_RETRY_AFTER)
        except (KeyError, TypeError, ValueError):
            continue
    return min(BACKOFF_MAX, BACKOFF_INITIAL * 2**attempt) * (1 - 0.25 * random.random())


def _joined(chunks: list[ChatGenerationChunk]) -> ChatResult:
    """Chunks as one answer (what `_agenerate` returns, the audit counts and the cache keeps)."""
    return generate_from_stream(iter(chunks)) if chunks else _result(AIMessage(content=""))


def _usage(result: ChatResult) -> tuple[int, int]:
    tokens_in = tokens_out = 0
    for generation in result.generations:
        usage = getattr(generation.message, "usage_metadata", None) or {}
        tokens_in += int(usage.get("input_tokens", 0))
        tokens_out += int(usage.get("output_tokens", 0))
    return tokens_in, tokens_out
