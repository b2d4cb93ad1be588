"""Human plan review: pause with the plan, go on when a person approves, edits or cancels."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from ensemble.nodes.gates import Answer, Gate
from ensemble.nodes.planner import plan_from_texts
from ensemble.state.research import MAX_RESEARCHERS, ResearchState
from ensemble.workspace import Workspace

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]


class Approve(Answer):
    """Research the plan as it is."""

    action: Literal["approve"]


class Edit(Answer):
    """Research exactly these sub-questions instead."""

    action: Literal["edit"]
    subquestions: list[Text] = Field(min_length=1, max_length=MAX_RESEARCHERS)


class Cancel(Answer):
    """End the run without a report."""

    action: Literal["cancel"]


def _within_limit(parsed: Approve | Edit | Cancel, values: Mapping[str, Any]) -> str | None:
    limit = int(values.get("max_researchers") or MAX_RESEARCHERS)
    if isinstance(parsed, Edit) and len(parsed.subquestions) > limit:
        return f"{len(parsed.subquestions)} sub-questions but max_researchers is {limit}"
    return None


PLAN_REVIEW: Gate[Approve | Edit | Cancel] = Gate(
    node="plan_review",
    kind="plan_review",
    what="plan-review answer",
    answers=Annotated[Approve | Edit | Cancel, Field(discriminator="action")],
    feedback="plan_feedback",
    check=_within_limit,
)


async def review_plan(state: ResearchState, *, workspace: Workspace) -> dict:
    """Pause for the plan review; a refused answer loops back here and pauses again."""
    request = {"question": state.question, "plan": state.plan}
    shown = {"plan": [s["question"] for s in state.plan]}
    parsed, update = PLAN_REVIEW.ask(state, request, workspace, shown=shown)
    if isinstance(parsed, Cancel):
        return update | {"outcome": "cancelled"}
    if isinstance(parsed, Edit):
        return update | {"plan": plan_from_texts(parsed.subquestions)}
    return update
