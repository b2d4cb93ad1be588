"""Human plan review: pause with the plan, go on when a person approves, edits or cancels."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ensemble.errors import InvalidInputError, describe_validation_error
from ensemble.nodes.asking import ask_person
from ensemble.nodes.planner import plan_from_texts
from ensemble.progress import emit
from ensemble.state.research import ResearchState
from ensemble.workspace import Workspace


class Approve(BaseModel):
    """Research the plan as it is."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["approve"]


class Edit(BaseModel):
    """Research exactly these sub-questions instead."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["edit"]
    subquestions: list[Annotated[str, Field(min_length=1, max_length=1000)]] = Field(
        min_length=1, max_length=16
    )


class Cancel(BaseModel):
    """End the run without a report."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["cancel"]


PlanReviewAnswer = Annotated[Approve | Edit | Cancel, Field(discriminator="action")]
_answers: TypeAdapter[Approve | Edit | Cancel] = TypeAdapter(PlanReviewAnswer)

ANSWER_HELP = (
    '{"action": "approve"} | {"action": "edit", "subquestions": ["...", ...]} '
    '| {"action": "cancel"}'
)


def parse_plan_answer(answer: Any, max_researchers: int = 16) -> Approve | Edit | Cancel:
    """Validate a plan-review answer; raise `InvalidInputError` saying what is accepted."""
    try:
        parsed = _answers.validate_python(answer)
    except ValidationError as error:
        raise InvalidInputError(
            f"invalid plan-review answer ({describe_validation_error(error)}); "
            f"expected {ANSWER_HELP}"
        ) from None
    if isinstance(parsed, Edit):
        texts = [" ".join(t.split()) for t in parsed.subquestions]
        if not all(texts):
            raise InvalidInputError("invalid plan-review answer: sub-questions must not be blank")
        if len(texts) > max_researchers:
            raise InvalidInputError(
                f"invalid plan-review answer: {len(texts)} sub-questions but max_researchers "
                f"is {max_researchers}"
            )
    return parsed


def plan_review_request(state: ResearchState) -> dict[str, Any]:
    """The interrupt payload: everything a person (or a client UI) needs to answer."""
    return {
        "kind": "plan_review",
        "question": state.question,
        "plan": state.plan,
        "answer_format": ANSWER_HELP,
        "error": state.plan_feedback or None,
    }


async def review_plan(state: ResearchState, *, workspace: Workspace) -> dict:
    """Pause for the plan review; a refused answer loops back here and pauses again.

    `interrupt()` comes first: on resume the node re-runs from its first line.
    """
    answer = ask_person(
        "plan_review", plan_review_request(state), plan=[s["question"] for s in state.plan]
    )
    try:
        parsed = parse_plan_answer(answer, state.max_researchers)
    except InvalidInputError as error:
        emit("plan_review", "failed", error=str(error))
        return {"plan_feedback": str(error)}
    emit("plan_review", "finished", action=parsed.action)
    workspace.audit("human_answer", "plan_review", action=parsed.action)
    if isinstance(parsed, Cancel):
        return {"plan_feedback": "", "outcome": "cancelled"}
    if isinstance(parsed, Edit):
        return {"plan_feedback": "", "plan": plan_from_texts(parsed.subquestions)}
    return {"plan_feedback": ""}
