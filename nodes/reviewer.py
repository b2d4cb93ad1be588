"""Reviewer: a model's verdict plus deterministic checks, and the decision what happens next."""

from __future__ import annotations

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.runtime import Runtime
from pydantic import BaseModel, Field

from ensemble.context import Context
from ensemble.models import chat_model_for
from ensemble.nodes import review_loop
from ensemble.nodes.citations import numbers_in
from ensemble.nodes.llm import ask_structured
from ensemble.nodes.progress import emit
from ensemble.prompts import render_prompt
from ensemble.state.identity import same_key, unique
from ensemble.state.research import Outcome, ResearchState, Review

MAX_GAPS = 4


class Verdict(BaseModel):
    """The reviewer model's judgement of the report."""

    approved: bool = Field(description="True when the report fully answers the question.")
    gaps: list[str] = Field(
        default_factory=list,
        max_length=MAX_GAPS,
        description="Short searchable questions that more research would answer.",
    )


def check_report(state: ResearchState) -> tuple[list[str], list[str]]:
    """Deterministic checks: uncovered sub-questions and citations that match no source.

    Returns (research gaps, report issues). A sub-question is covered when a note on it (its
    own, or a later round's on the same question) cites at least one retrieved passage; a
    citation is valid when its number is in the source list.
    """
    answered = {same_key(n["subquestion"]) for n in state.notes.values() if n["cited"]}
    gaps = [sq["question"] for sq in state.plan if same_key(sq["question"]) not in answered]
    valid = {s["n"] for s in state.sources}
    bad = [n for n in numbers_in(state.report) if n not in valid]
    issues = [f"citation [{n}] matches no source" for n in bad]
    return gaps, issues


def decide(state: ResearchState, review: Review) -> Outcome:
    """Return the outcome, or "" to run another revision round (the shared loop decision)."""
    previous = state.review
    return review_loop.decide(
        approved=review["approved"],
        issues=review["research_gaps"] + review["report_issues"],
        revision=state.revision,
        max_revisions=state.max_revisions,
        previous_issues=previous["research_gaps"] + previous["report_issues"] if previous else None,
    )


async def reviewer(state: ResearchState, runtime: Runtime[Context]) -> dict:
    """Review the report; approve, ask for one more round on the gaps, or stop honestly."""
    emit("reviewer", "started", revision=state.revision)
    model = chat_model_for(runtime.context, "reviewer")
    verdict = await ask_structured(
        model,
        Verdict,
        [
            SystemMessage(render_prompt("reviewer", max_gaps=MAX_GAPS)),
            HumanMessage(f"Question: {state.question}\n\nReport:\n\n{state.report}"),
        ],
    )
    model_approved = bool(verdict and verdict.approved)
    model_gaps = [] if model_approved or verdict is None else verdict.gaps
    uncovered, issues = check_report(state)
    gaps = unique(uncovered + model_gaps)
    review: Review = {
        "approved": model_approved and not uncovered and not issues,
        "model_approved": model_approved,
        "research_gaps": gaps[: state.max_researchers],
        "report_issues": issues,
    }
    outcome = decide(state, review)
    update: dict = {"review": review, "outcome": outcome}
    if not outcome:
        update["revision"] = state.revision + 1
    emit("reviewer", "finished", approved=review["approved"], gaps=gaps, outcome=outcome or None)
    return update
