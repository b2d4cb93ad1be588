"""The research assistant: plan, (human review), parallel researchers, synthesis, review loop.

Routing uses typed conditional edges rather than `Command` so that a fork written with
`update_state(..., as_node=...)` re-evaluates the route with the forked values.
"""

from __future__ import annotations

from typing import Literal

from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy, Send

from ensemble.context import Context
from graphs.compiling import compile_graph
from nodes.finalize import finalize
from nodes.intake import research_intake
from nodes.plan_review import review_plan
from nodes.planner import planner
from nodes.researcher import researcher
from nodes.reviewer import reviewer
from nodes.synthesizer import synthesizer
from state.research import ResearchInput, ResearchOutput, ResearchState, ResearchTask, task_id

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
    return [_send(task_id(f"gap{state.revision}", g), g, state, state.revision) for g in gaps]


def _send(tid: str, question: str, state: ResearchState, round: int) -> Send:
    task: ResearchTask = {
        "task_id": tid,
        "subquestion": question,
        "corpus": state.corpus,
        "round": round,
    }
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


def build_research() -> StateGraph[ResearchState, Context, ResearchInput, ResearchOutput]:
    """Build the (uncompiled) research graph."""
    builder = StateGraph(
        ResearchState,
        context_schema=Context,
        input_schema=ResearchInput,
        output_schema=ResearchOutput,
    )
    builder.add_node("intake", research_intake)
    builder.add_node("planner", planner, retry_policy=RetryPolicy(max_attempts=3))
    builder.add_node("review_plan", review_plan)
    builder.add_node("researcher", researcher, input_schema=ResearchTask)  # isolates failures
    builder.add_node("synthesizer", synthesizer, retry_policy=RetryPolicy(max_attempts=3))
    builder.add_node("reviewer", reviewer, retry_policy=RetryPolicy(max_attempts=3))
    builder.add_node("finalize", finalize)

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


graph = compile_graph(build_research(), NAME)
"""Compiled without a checkpointer: `langgraph dev` adds its own (see langgraph.json)."""
