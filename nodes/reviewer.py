"""Reviewer: a model's verdict plus deterministic checks, and the decision what happens next."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.runtime import Runtime
from pydantic import BaseModel, Field

from ensemble.context import Context
from ensemble.errors import EnsembleError
from ensemble.identity import same_key, unique
from ensemble.nodes import review_loop
from ensemble.nodes.citations import NUMBERED_CITATION, numbers_in
from ensemble.nodes.llm import SENTENCE, ask_structured
from ensemble.progress import emit
from ensemble.prompts import render_prompt
from ensemble.state.research import Outcome, ResearchState, Review
from ensemble.text import key_terms
from ensemble.workspace import Workspace

MAX_GAPS = 4


class Verdict(BaseModel):
    """The reviewer model's judgement of the report."""

    approved: bool = Field(description="True when the report fully answers the question.")
    gaps: list[str] = Field(
        default_factory=list,
        max_length=MAX_GAPS,
        description="Short searchable questions that more research would answer.",
    )


def check_report(
    state: ResearchState, texts: Mapping[str, str] | None = None
) -> tuple[list[str], list[str]]:
    """Deterministic checks, so the review does real work even with an extractive model.

    Returns (research gaps, report issues):
    - a sub-question is a gap unless a note on it (its own, or a later round's on the same
      question) cites a passage that is on topic: one sharing a key term with the question;
    - a citation whose number is in no source is an issue, and so is a cited passage that
      shares no key term with the sentence citing it (the claim it is meant to support).

    `texts` maps passage ids to their text (the excerpt in state is used when missing).
    """
    texts = texts or {}

    def text_of(pid: str) -> str:
        ref = state.passages.get(pid)
        return texts.get(pid) or (f"{ref['title']} {ref['excerpt']}" if ref else "")

    answered = {
        same_key(n["subquestion"])
        for n in state.notes.values()
        if any(key_terms(n["subquestion"]) & key_terms(text_of(pid)) for pid in n["cited"])
    }
    gaps = [sq["question"] for sq in state.plan if same_key(sq["question"]) not in answered]
    valid = {s["n"]: s["passage_id"] for s in state.sources}
    bad = [n for n in numbers_in(state.report) if n not in valid]
    issues = [f"citation [{n}] matches no source" for n in bad]
    for claim, n in cited_claims(state.report):
        if n in valid and not key_terms(claim) & key_terms(text_of(valid[n])):
            issues.append(f"citation [{n}] shares no key term with its claim: {claim[:80]}")
    return gaps, unique(issues)


def cited_claims(report: str) -> list[tuple[str, int]]:
    """(sentence, number) for each numbered citation in the report body."""
    body = report.split("\n## Sources", 1)[0]
    pairs: list[tuple[str, int]] = []
    for line in body.splitlines():
        for sentence in SENTENCE.findall(line):  # citations right after a "." belong to it
            claim = NUMBERED_CITATION.sub("", sentence).strip()
            pairs.extend((claim, int(n)) for n in NUMBERED_CITATION.findall(sentence) if claim)
    return pairs


async def cited_texts(state: ResearchState, workspace: Workspace) -> dict[str, str]:
    """The full text of every cited passage, read from the corpus (empty if it is refused)."""
    ids = {s["passage_id"] for s in state.sources} | {
        pid for n in state.notes.values() for pid in n["cited"]
    }
    try:
        index = workspace.corpus(state.corpus)
        found = await asyncio.to_thread(index.get_many, ids)
    except EnsembleError:
        return {}
    return {pid: f"{p.title} {p.text}" for pid, p in found.items()}


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


async def reviewer(
    state: ResearchState, runtime: Runtime[Context], *, workspace: Workspace
) -> dict:
    """Review the report; approve, ask for one more round on the gaps, or stop honestly."""
    emit("reviewer", "started", revision=state.revision)
    model = workspace.chat_model(runtime.context, "reviewer")
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
    uncovered, issues = check_report(state, await cited_texts(state, workspace))
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
