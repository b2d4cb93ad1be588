"""A worker: one agent works one replica of one task, and a verifier checks the result.

Tools run through the agent's permissions (a tool it was not given is refused and recorded,
never run); code runs in the sandbox; research uses the research graph. A model task asks the
agent's model for an answer and a confidence. The result is checked (expected type, the task's
own checks, the verifier model's judgement); a failure is recorded as a failed attempt, so the
scheduler gives the task to another capable agent. A failure never cancels other workers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from pydantic import BaseModel, Field

from ensemble.agents.load import LOAD
from ensemble.audit.trail import thread_context
from ensemble.concurrency import agent_gate
from ensemble.context import Context
from ensemble.db.fence import is_lease_lost
from ensemble.nodes.llm import ask_structured
from ensemble.progress import emit
from ensemble.prompts import render_prompt
from ensemble.resilience import BOARD
from ensemble.resilience.guard import BudgetExceeded
from ensemble.state.solver import Attempt, WorkOrder
from ensemble.tools.calculator import evaluate
from ensemble.tools.permissions import ToolGate
from ensemble.tools.sandbox import run_python
from ensemble.workspace import Workspace

log = logging.getLogger(__name__)

_PLACEHOLDER = re.compile(r"\$\{([a-z0-9_-]+)\}")
"""`${task_id}` in a tool's input stands for that dependency's result."""

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


class Answer(BaseModel):
    """An agent's answer to its task."""

    answer: str = Field(description="The result itself.", min_length=1, max_length=4000)
    confidence: float = Field(0.7, ge=0, le=1, description="How sure the agent is (0..1).")


class Judgement(BaseModel):
    """The verifier's judgement of a result."""

    acceptable: bool = Field(description="True when the result answers the task.")
    reason: str = Field("", max_length=300, description="Why not, in one sentence.")


class VerificationError(Exception):
    """A result failed a check; the message lists which."""


def coerce(value: Any, expect: str) -> Any:
    """The result as the expected type, or raise `VerificationError`."""
    if expect == "number":
        if isinstance(value, bool):
            raise VerificationError("expected a number, got a boolean")
        if isinstance(value, int | float):
            return value
        found = _NUMBER.search(str(value))
        if not found:
            raise VerificationError(f"expected a number, got {str(value)[:60]!r}")
        number = float(found.group(0))
        return int(number) if number.is_integer() else number
    if expect == "bool":
        text = str(value).strip().casefold()
        if text in {"true", "yes", "1"}:
            return True
        if text in {"false", "no", "0"}:
            return False
        raise VerificationError(f"expected yes/no, got {str(value)[:60]!r}")
    if expect == "json":
        try:
            return value if isinstance(value, dict | list) else json.loads(str(value))
        except json.JSONDecodeError as error:
            raise VerificationError(f"expected JSON ({error.msg})") from None
    text = str(value).strip()
    if not text:
        raise VerificationError("the result is empty")
    return text


def run_checks(value: Any, checks: list[Mapping[str, Any]]) -> list[str]:
    """The task's own deterministic checks; returns what failed."""
    failed = []
    for check in checks:
        kind = check.get("kind")
        if kind == "equals" and value != check.get("value"):
            failed.append(f"expected {check.get('value')!r}, got {value!r}")
        elif kind == "range":
            low, high = check.get("min"), check.get("max")
            if not isinstance(value, int | float) or (
                (low is not None and value < low) or (high is not None and value > high)
            ):
                failed.append(f"{value!r} is outside [{low}, {high}]")
        elif (
            kind == "contains"
            and str(check.get("value", "")).casefold() not in str(value).casefold()
        ):
            failed.append(f"the result does not mention {check.get('value')!r}")
        elif kind == "regex" and not re.search(str(check.get("value", "")), str(value)):
            failed.append(f"the result does not match {check.get('value')!r}")
    return failed


def solver_worker(
    research: CompiledStateGraph[Any, Any, Any, Any], workspace: Workspace
) -> Callable[..., Any]:
    """The worker node; `research` is the research scenario's graph (for research tasks)."""

    async def worker(order: WorkOrder, runtime: Runtime[Context]) -> dict[str, Any]:
        task, agent = order["task"], order["agent"]
        name = agent["name"]
        thread = thread_context()[0]
        breaker = BOARD.breaker(f"agent:{name}")
        started = time.time()
        value: Any = None
        confidence, error, failed_checks = 0.0, None, []
        async with (  # the agent's own slot first: waiting for it holds no run-wide slot
            agent_gate(thread, f"agent:{name}", int(agent.get("max_concurrent", 1))),
            agent_gate(thread, "solver", runtime.context.max_concurrency),
        ):
            LOAD.acquire(name)
            emit("worker", "started", task=task["id"], by=name, replica=order["replica"])
            try:
                raw, confidence = await _execute(order, runtime, research, workspace)
                value = coerce(raw, task.get("expect", "text"))
                failed_checks = run_checks(value, task.get("checks", []))
                if not failed_checks and not task.get("tool"):
                    failed_checks = await _judge(task, value, runtime, workspace)
            except VerificationError as problem:
                failed_checks = [str(problem)]
            except BudgetExceeded:
                raise  # the run's budget, not the agent's fault: the run pauses for a person
            except Exception as problem:  # the agent failed: recorded, retried elsewhere
                if is_lease_lost(problem):
                    raise  # another worker owns the thread now: this run stops here
                log.info("agent %s failed task %s: %s", name, task["id"], problem)
                error = f"{type(problem).__name__}: {problem}"
            finally:
                LOAD.release(name)
        ok = error is None and not failed_checks
        old = breaker.state
        breaker.record_success() if ok else breaker.record_failure()
        if breaker.state != old:  # the agent left (or came back into) rotation
            workspace.audit(
                "breaker", name, outcome=breaker.state, breaker=breaker.name, old=old,
                new=breaker.state,
            )  # fmt: skip
        attempt: Attempt = {
            "id": order["attempt_id"],
            "task": task["id"],
            "agent": name,
            "replica": order["replica"],
            "ok": ok,
            "value": value if ok else None,
            "confidence": float(confidence),
            "error": error or ("; ".join(failed_checks) if failed_checks else None),
            "checks": failed_checks,
            "started": started,
            "seconds": round(time.time() - started, 3),
        }
        if ok:
            emit("worker", "finished", task=task["id"], by=name, ok=ok)
        else:  # the progress line says why, as the trace does
            emit("worker", "failed", task=task["id"], by=name, ok=ok, error=attempt["error"])
        return {"attempts": {order["attempt_id"]: attempt}}

    return worker


def fill_input(text: str, results: Mapping[str, Any], *, code: bool) -> str:
    """Put dependency results into a tool's input: `${size}` -> the result of task `size`.

    In code the value goes in as a Python literal (`repr`), so a result is data, never code.
    """

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in results:
            raise VerificationError(f"input names ${{{name}}}, which is not a dependency")
        found = results[name]
        return repr(found) if code else str(found)

    return _PLACEHOLDER.sub(value, text)


async def _execute(
    order: WorkOrder,
    runtime: Runtime[Context],
    research: CompiledStateGraph[Any, Any, Any, Any],
    workspace: Workspace,
) -> tuple[Any, float]:
    task, agent = order["task"], order["agent"]
    tool = task.get("tool")
    if tool:
        task = {
            **task,
            "input": fill_input(str(task["input"]), order["inputs"], code=tool == "python"),
        }
    gate = ToolGate(
        agent["name"], set(agent.get("tools", [])), on_refusal=partial(_refused, workspace)
    )
    if tool == "calculator":
        value = gate.call("calculator", lambda: evaluate(str(task["input"])))
        workspace.audit("tool_call", agent["name"], tool="calculator", task=task["id"])
        return value, 1.0
    if tool == "python":
        result = await asyncio.to_thread(
            gate.call, "python", lambda: run_python(str(task["input"]))
        )
        workspace.audit(
            "tool_call",
            agent["name"],
            outcome="ok" if result.ok else "error",
            seconds=result.duration,
            tool="python",
            task=task["id"],
            reason=result.reason,
        )
        if not result.ok:
            raise RuntimeError(f"code failed ({result.reason}): {result.stderr.strip()[-300:]}")
        return result.stdout.strip(), 1.0
    if tool == "research":
        gate.call("research", lambda: None)  # permission first, then the subgraph
        out = await research.ainvoke(
            {"question": str(task["input"]), "corpus": order["corpus"], "max_revisions": 0},
            context=runtime.context,
        )
        return out.get("report", ""), 0.8
    model = workspace.chat_model(runtime.context, "solver", agent.get("model"))
    inputs = "\n\n".join(f"Result of {k}:\n{v}" for k, v in order["inputs"].items())
    prompt = render_prompt(
        "solver_worker", agent=agent["name"], role=agent.get("role", "agent"),
        expect=task.get("expect", "text"),
    )  # fmt: skip
    answer = await ask_structured(
        model,
        Answer,
        [SystemMessage(prompt), HumanMessage(f"Task: {task['description']}\n\n{inputs}".strip())],
    )
    if answer is None:
        raise RuntimeError("the model gave no usable answer")
    return answer.answer, answer.confidence


async def _judge(
    task: Mapping[str, Any], value: Any, runtime: Runtime[Context], workspace: Workspace
) -> list[str]:
    model = workspace.chat_model(runtime.context, "verifier")
    judged = await ask_structured(
        model,
        Judgement,
        [
            SystemMessage(render_prompt("solver_verifier")),
            HumanMessage(f"Task: {task['description']}\n\nResult:\n{value}"),
        ],
    )
    if judged is None or judged.acceptable:
        return []
    return [f"the verifier rejected it: {judged.reason or 'no reason given'}"]


def _refused(workspace: Workspace, agent: str, tool: str, reason: str) -> None:
    emit("worker", "failed", by=agent, refused_tool=tool, reason=reason)
    workspace.audit("refusal", agent, outcome="refused", tool=tool, reason=reason)
    log.warning("agent %s was refused tool %s: %s", agent, tool, reason)
