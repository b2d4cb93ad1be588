"""A run that cannot go on (no model left, budget spent) pauses for a person instead of failing.

`pauses_for_person` wraps a model-calling node. When the model guard raises `ModelUnavailable`
or `BudgetExceeded`, the node asks a person through LangGraph's `interrupt()` with the reason and
what was spent, and the run waits, checkpointed. The answers:

- ``"retry"``: try the node again (the provider may be back; a breaker half-opens after its
  cool-down);
- ``{"budget": {...}}``: the same, with a raised budget. The CLI (`ensemble resume THREAD
  --answer '{"budget": {...}}'`) also records the new budget as the thread's run setting; a
  server client sends it as the run's `context` next to the answer;
- ``"stop"``: end the run here with the reason; everything finished so far stays in the thread.

On resume LangGraph runs the node again from its first line, so a raised budget or a recovered
provider simply lets it finish; if the cause is still there, the node asks again. Sibling `Send`
workers that finished keep their work. A node of a subgraph (the research graph inside a content
team) leaves the question to its parent's node, so a person is asked once per stuck team.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from langgraph.config import get_config
from langgraph.runtime import get_runtime
from langgraph.types import interrupt

from ensemble.errors import EnsembleError
from ensemble.progress import emit
from ensemble.resilience.guard import BudgetExceeded, ModelUnavailable

HALTED = "halted"
"""The `kind` of a pause question asked because the run cannot go on."""

ANSWERS = ("retry", "stop", '{"budget": {...}}')
ANSWER_SCHEMA: dict[str, Any] = {
    "title": "Halted run",
    "oneOf": [
        {"const": "retry", "title": "Retry", "description": "Run the stopped step again."},
        {"const": "stop", "title": "Stop", "description": "End the run here with what is done."},
    ],
}
"""The answers a client's form offers (a raised budget also needs the run's `context`)."""

Node = TypeVar("Node", bound=Callable[..., Awaitable[Any]])
Audit = Callable[..., None]
"""Records an action: `audit(kind, agent, outcome=..., **detail)`."""


class RunStopped(EnsembleError):
    """A person answered "stop" to a pause: the run ends with the reason, its work kept."""


def halt_question(error: Exception, node: str, refused: str = "") -> dict[str, Any]:
    """The interrupt payload: why the run waits and how to answer."""
    budget = isinstance(error, BudgetExceeded)
    question: dict[str, Any] = {
        "kind": HALTED,
        "node": node,
        "reason": str(error),
        "cause": "budget" if budget else "model_unavailable",
        "question": (
            "The run's budget is spent. Raise it to go on, or stop here with what is done."
            if budget
            else "No model of this role is available now. Retry later, or stop with what is done."
        ),
        "answers": list(ANSWERS),
    }
    if refused:
        question["refused"] = refused
    return question


def read_answer(answer: Any) -> str:
    """Return "retry" or "stop" for a valid answer; raise ValueError naming the valid ones."""
    if answer in ("retry", "stop"):
        return str(answer)
    if (
        isinstance(answer, Mapping)
        and set(answer) == {"budget"}
        and isinstance(answer["budget"], Mapping)
    ):
        return "retry"
    raise ValueError(f'answer {answer!r} is not one of: retry, stop, {{"budget": {{...}}}}')


def is_halt(question: Any) -> bool:
    """Tell whether an interrupt's value is a pause of this module."""
    return isinstance(question, Mapping) and question.get("kind") == HALTED


def _nested() -> bool:
    """True inside a subgraph's node: its parent's node asks the person instead."""
    namespace = str(get_config().get("configurable", {}).get("checkpoint_ns", ""))
    return "|" in namespace


def _attempt() -> int:
    """This node's execution attempt under its retry policy (1 on the first run)."""
    info = getattr(get_runtime(), "execution_info", None)
    return int(getattr(info, "node_attempt", 1) or 1)


def pauses_for_person(node: Node, audit: Audit, *, attempts: int = 1) -> Node:
    """Wrap an async node so a spent budget or a down provider pauses the run (see module).

    `attempts` is the node's retry policy's: an unavailable model is first left to those
    retries (the provider may recover within seconds); only the last attempt asks a person. A
    spent budget asks at once, since retrying cannot change it. `audit` records the pause and
    the person's answer (the workspace's `Workspace.audit`).
    """
    name = getattr(node, "__name__", None) or node.func.__name__  # type: ignore[attr-defined]

    @functools.wraps(node)
    async def paused(*args: Any, **kwargs: Any) -> Any:
        refused = ""
        while True:
            try:
                return await node(*args, **kwargs)
            except (ModelUnavailable, BudgetExceeded) as error:
                retried = isinstance(error, ModelUnavailable) and _attempt() < attempts
                if retried or _nested():
                    raise
                emit(name, "waiting", reason=str(error))
                audit("pause", name, outcome="waiting", reason=str(error))
                answer = interrupt(halt_question(error, name, refused))
                try:
                    decision = read_answer(answer)
                except ValueError as problem:
                    refused = str(problem)
                    audit("refusal", name, outcome="refused", answer=repr(answer)[:200])
                    continue  # asks again: the next interrupt of this node
                audit("human_answer", name, outcome=decision, answer=answer)
                if decision == "stop":
                    raise RunStopped(f"stopped by a person: {error}") from error
                refused = ""

    return paused  # type: ignore[return-value]
