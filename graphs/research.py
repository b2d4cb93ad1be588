"""The research assistant: plan, (human review), parallel researchers, synthesis, review loop.

Routing uses typed conditional edges rather than `Command` so that a fork written with
`update_state(..., as_node=...)` re-evaluates the route with the forked values.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

from langgraph.graph import END, START, StateGraph
from langgraph.types import Send
from pydantic import BaseModel

from ensemble.context import Context
from ensemble.errors import InvalidInputError
from ensemble.graphs.compiling import add_agent
from ensemble.graphs.scenario import Scenario
from ensemble.identity import item_id
from ensemble.nodes.finalize import finalize
from ensemble.nodes.intake import research_intake
from ensemble.nodes.plan_review import PLAN_REVIEW, review_plan
from ensemble.nodes.planner import plan_from_texts, planner
from ensemble.nodes.researcher import researcher
from ensemble.nodes.reviewer import reviewer
from ensemble.nodes.synthesizer import synthesizer
from ensemble.state.research import (
    MAX_RESEARCHERS,
    STATE_VERSION,
    ResearchInput,
    ResearchOutput,
    ResearchState,
    ResearchTask,
    SubQuestion,
)
from ensemble.workspace import Workspace

NAME = "research"


def plan_tasks(state: ResearchState) -> list[Send]:
    """One researcher per sub-question that has no note yet (finished research is kept)."""
    return [
        _send(sq["id"], sq["question"], state, round=0)
        for sq in state.plan
        if sq["id"] not in state.notes
    ]


def gap_tasks(state: ResearchState) -> list[Send]:
    """One researcher per research gap of the latest review."""
    gaps = state.review["research_gaps"] if state.review else []
    return [_send(item_id(f"gap{state.revision}", g), g, state, state.revision) for g in gaps]


def _send(tid: str, question: str, state: ResearchState, round: int) -> Send:
    task = ResearchTask(task_id=tid, subquestion=question, corpus=state.corpus, round=round)
    return Send("researcher", task)


def route_after_plan(state: ResearchState) -> list[Send] | Literal["review_plan", "synthesizer"]:
    """Pause for the human when asked, else fan out to the researchers."""
    if state.review_plan:
        return "review_plan"
    return plan_tasks(state) or "synthesizer"


def route_after_plan_review(
    state: ResearchState,
) -> list[Send] | Literal["review_plan", "synthesizer", "__end__"]:
    """Cancelled ends the run; a refused answer asks again; otherwise research."""
    if state.outcome == "cancelled":
        return "__end__"  # END
    if state.plan_feedback:
        return "review_plan"
    return plan_tasks(state) or "synthesizer"


def route_after_review(state: ResearchState) -> list[Send] | Literal["synthesizer", "finalize"]:
    """Finish when the reviewer decided an outcome; else research the gaps (or only rewrite)."""
    if state.outcome:
        return "finalize"
    return gap_tasks(state) or "synthesizer"


def build_research(
    workspace: Workspace,
) -> StateGraph[ResearchState, Context, ResearchInput, ResearchOutput]:
    """Build the (uncompiled) research graph; its nodes read and record in `workspace`."""
    builder = StateGraph(
        ResearchState,
        context_schema=Context,
        input_schema=ResearchInput,
        output_schema=ResearchOutput,
    )
    builder.add_node("intake", partial(research_intake, workspace=workspace))
    add_agent(builder, "planner", planner, workspace=workspace)
    builder.add_node("review_plan", partial(review_plan, workspace=workspace))
    add_agent(
        builder,
        "researcher",
        researcher,
        retry=False,
        input_schema=ResearchTask,
        workspace=workspace,
    )
    add_agent(builder, "synthesizer", synthesizer, workspace=workspace)
    add_agent(builder, "reviewer", reviewer, workspace=workspace)
    builder.add_node("finalize", partial(finalize, workspace=workspace))

    builder.add_edge(START, "intake")
    builder.add_edge("intake", "planner")
    builder.add_conditional_edges(
        "planner", route_after_plan, ["review_plan", "researcher", "synthesizer"]
    )
    builder.add_conditional_edges(
        "review_plan", route_after_plan_review, ["review_plan", "researcher", "synthesizer", END]
    )
    builder.add_edge("researcher", "synthesizer")
    builder.add_edge("synthesizer", "reviewer")
    builder.add_conditional_edges(
        "reviewer", route_after_review, ["researcher", "synthesizer", "finalize"]
    )
    builder.add_edge("finalize", END)
    return builder


def fork_plan(value: Any, valid: BaseModel) -> list[SubQuestion]:
    """A fork may replace the plan: a JSON list of sub-question texts (or {"question": ...})."""
    max_researchers = int(getattr(valid, "max_researchers", MAX_RESEARCHERS))
    items = value if isinstance(value, list) else None
    texts = [i.get("question") if isinstance(i, dict) else i for i in items or []]
    if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise InvalidInputError(
            'plan must be a non-empty JSON list of sub-questions, e.g. ["first", "second"]'
        )
    if len(texts) > max_researchers:
        raise InvalidInputError(
            f"plan has {len(texts)} items but max_researchers={max_researchers}"
        )
    return plan_from_texts([str(t) for t in texts])


SCENARIO = Scenario(
    name=NAME,
    state_version=STATE_VERSION,
    description="Research assistant: planner, parallel researchers with citations, "
    "synthesizer and a reviewer loop over a document corpus.",
    build=build_research,
    input_schema=ResearchInput,
    primary_field="question",
    output_keys=tuple(ResearchOutput.__annotations__),
    approve_answer={"action": "approve"},
    check_answer=PLAN_REVIEW.check_answer,
    gates={PLAN_REVIEW.kind: PLAN_REVIEW},
    fork_extras={"plan": fork_plan},
    folders={"corpus": "corpus"},
)
