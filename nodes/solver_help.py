"""A person decides when agents cannot: no capable agent left, or a vote that split.

Answers: `retry` (every capable agent may try the task again, in rotation or not), `skip` with a
stated result (the task counts as done with it), or `abort` (the run ends with what it has).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ensemble.errors import InvalidInputError, describe_validation_error
from ensemble.nodes.asking import ask_person
from ensemble.progress import emit
from ensemble.state.solver import SolverState, TaskResult
from ensemble.workspace import Workspace


class Retry(BaseModel):
    """Try the task again with every capable agent."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["retry"]


class Skip(BaseModel):
    """Take this result for the task and go on."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["skip"]
    result: Any = Field(description="The result the task is given.")


class Abort(BaseModel):
    """End the run with what it has."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["abort"]


HelpAnswer = Annotated[Retry | Skip | Abort, Field(discriminator="action")]
_answers: TypeAdapter[Retry | Skip | Abort] = TypeAdapter(HelpAnswer)
ANSWER_HELP = '{"action": "retry"} | {"action": "skip", "result": ...} | {"action": "abort"}'


def parse_help_answer(answer: Any) -> Retry | Skip | Abort:
    """Validate an answer; raise `InvalidInputError` saying what is accepted."""
    try:
        parsed = _answers.validate_python(answer)
    except ValidationError as error:
        raise InvalidInputError(
            f"invalid answer ({describe_validation_error(error)}); expected {ANSWER_HELP}"
        ) from None
    if isinstance(parsed, Skip) and parsed.result in (None, ""):
        raise InvalidInputError("invalid answer: skip needs a stated result")
    return parsed


async def solver_help(state: SolverState, *, workspace: Workspace) -> dict:
    """Pause with the question; a refused answer asks again. `interrupt()` comes first."""
    request = state.help or {"task": "", "reason": "", "detail": {}}
    question = {
        "kind": "solver_help",
        **request,
        "answer_format": ANSWER_HELP,
        "error": state.help_feedback or None,
    }
    answer = ask_person("help", question, task=request["task"], reason=request["reason"])
    try:
        parsed = parse_help_answer(answer)
    except InvalidInputError as error:
        return {"help_feedback": str(error)}
    emit("help", "finished", action=parsed.action, task=request["task"])
    workspace.audit("human_answer", "help", action=parsed.action, task=request["task"])
    update: dict[str, Any] = {"help_feedback": "", "help": None}
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
