"""Editor: a structured verdict with concrete edit requests, plus checks, in a bounded loop."""

from __future__ import annotations

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.runtime import Runtime
from pydantic import BaseModel, Field

from ensemble.context import Context
from ensemble.identity import unique
from ensemble.nodes import review_loop
from ensemble.nodes.citations import numbers_in
from ensemble.nodes.llm import ask_structured
from ensemble.progress import emit
from ensemble.prompts import render_prompt
from ensemble.state.writing import EditorReview, WritingState
from ensemble.workspace import Workspace

MAX_REQUESTS = 4
LENGTH_SLACK = (0.5, 1.6)
"""A draft between half and 1.6 times its target length passes the length check."""


class EditorVerdict(BaseModel):
    """The editor model's judgement of the draft."""

    approved: bool = Field(description="True when the draft is ready to publish.")
    requests: list[str] = Field(
        default_factory=list,
        max_length=MAX_REQUESTS,
        description="Concrete edit requests, each one short instruction.",
    )


def check_draft(state: WritingState) -> list[str]:
    """Deterministic checks: length near the target, citations that resolve, evidence cited."""
    issues = []
    words = len(state.text.split())
    target = int(state.brief.get("target_words", 400))
    low, high = (int(target * f) for f in LENGTH_SLACK)
    if words < low:
        issues.append(f"Expand the draft to about {target} words (it has {words}).")
    elif words > high:
        issues.append(f"Cut the draft to about {target} words (it has {words}).")
    valid = {s["n"] for s in state.sources}
    cited = numbers_in(state.text)
    if valid and not cited:
        issues.append("Cite the research findings by number, like [1].")
    bad = [n for n in cited if n not in valid]
    if bad:
        issues.append(f"Remove citations that match no source: {bad}.")
    return issues


async def editor(state: WritingState, runtime: Runtime[Context], *, workspace: Workspace) -> dict:
    """Review the draft; approve, request another round, or stop at the limit or a stall."""
    emit("editor", "started", item=state.item["id"], revision=state.revision)
    model = workspace.chat_model(runtime.context, "editor")
    verdict = await ask_structured(
        model,
        EditorVerdict,
        [
            SystemMessage(render_prompt("editor", max_requests=MAX_REQUESTS)),
            HumanMessage(
                f"Brief: {state.brief}\n\nResearch findings:\n\n{state.report}\n\n"
                f"Draft:\n\n{state.text}"
            ),
        ],
    )
    model_approved = bool(verdict and verdict.approved)
    checks = check_draft(state)
    requests = unique(checks + ([] if model_approved or verdict is None else verdict.requests))
    review: EditorReview = {
        "approved": model_approved and not checks,
        "model_approved": model_approved,
        "requests": requests[:MAX_REQUESTS],
    }
    previous = state.review["requests"] if state.review else None
    outcome = review_loop.decide(
        approved=review["approved"],
        issues=review["requests"],
        revision=state.revision,
        max_revisions=state.max_revisions,
        previous_issues=previous,
    )
    update: dict = {"review": review, "outcome": outcome}
    if not outcome:
        update["revision"] = state.revision + 1
    emit("editor", "finished", item=state.item["id"], approved=review["approved"], outcome=outcome)
    return update
