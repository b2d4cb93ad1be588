"""A person decides when agents cannot: no capable agent left, or a vote that split.

Answers: `retry` (every capable agent may try the task again, in rotation or not), `skip` with a
stated result (the task counts as done with it), or `abort` (the run ends with what it has).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field

from ensemble.nodes.gates import Answer, Gate
from ensemble.state.solver import SolverState, TaskResult
from ensemble.workspace import Workspace


class Retry(Answer):
    """Try the task again with every capable agent."""

    action: Literal["retry"]


class Skip(Answer):
    """Take this result for the task and go on."""

    action: Literal["skip"]
    result: Any = Field(description="The result the task is given.")


class Abort(Answer):
    """End the run with what it has."""

    action: Literal["abort"]


def _stated(parsed: Retry | Skip | Abort, values: Mapping[str, Any]) -> str | None:
    return (
        "skip needs a stated result"
        if isinstance(parsed, Skip) and parsed.result in (None, "")
        else None
    )


SOLVER_HELP: Gate[Retry | Skip | Abort] = Gate(
    node="help",
    kind="solver_help",
    what="solver-help answer",
    answers=Annotated[Retry | Skip | Abort, Field(discriminator="action")],
    feedback="help_feedback",
    check=_stated,
)


async def solver_help(state: SolverState, *, workspace: Workspace) -> dict:
    """Pause with the question; a refused answer asks again."""
    request = state.help or {"task": "", "reason": "", "detail": {}}
    shown = {"task": request["task"], "reason": request["reason"]}
    parsed, feedback = SOLVER_HELP.ask(
        state, dict(request), workspace, shown=shown, recorded={"task": request["task"]}
    )
    if parsed is None:
        return feedback
    update: dict[str, Any] = feedback | {"help": None}
    if isinstance(parsed, Abort):
        return update | {"outcome": "aborted"}
    if isinstance(parsed, Skip):
        result: TaskResult = {
            "status": "skipped",
            "value": parsed.result,
            "agents": ["human"],
            "vote": (request.get("detail") or {}) if request["reason"] == "split vote" else None,
            "note": "result stated by a person",
        }
        return update | {"results": {request["task"]: result}}
    if request["reason"] == "split vote":  # ask again: the split answers no longer count
        split = [a["id"] for a in state.attempts.values() if a["task"] == request["task"]]
        return update | {"discarded": sorted({*state.discarded, *split})}
    return update | {"retry_all": sorted({*state.retry_all, request["task"]})}
