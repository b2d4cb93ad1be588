"""Planner: split the question into focused sub-questions, one per researcher."""

from __future__ import annotations

import asyncio
import logging
from functools import cache

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.runtime import Runtime
from pydantic import BaseModel, Field, create_model

from ensemble.context import Context
from ensemble.errors import EnsembleError
from ensemble.identity import item_id, same_key, unique
from ensemble.nodes.llm import ask_structured
from ensemble.progress import emit
from ensemble.prompts import render_prompt
from ensemble.state.research import ResearchState, SubQuestion
from ensemble.workspace import Workspace

log = logging.getLogger(__name__)

PREVIEW_PASSAGES = 8
PREVIEW_CHARS = 160
PREVIEW_SHARE = 0.85


class SubQuestionDraft(BaseModel):
    """One sub-question proposed by the planner."""

    question: str = Field(description="A focused, searchable sub-question.", min_length=1)
    rationale: str = Field(description="Why answering it helps answer the main question.")


@cache
def plan_schema(max_items: int) -> type[BaseModel]:
    """The plan's schema with the run's bounds, so the model sees exactly how many to write."""
    return create_model(
        "Plan",
        __doc__="A research plan: sub-questions to research in parallel.",
        subquestions=(
            list[SubQuestionDraft],
            Field(min_length=1, max_length=max_items, description="The sub-questions."),
        ),
    )


def make_plan(question: str, drafts: list[SubQuestionDraft], max_items: int) -> list[SubQuestion]:
    """Deduplicate and bound the drafts; never return an empty plan.

    A weak model may repeat itself or return a single item: the question itself is then added
    (it is researched as asked), so a plan has two items whenever the model gave at least one.
    """
    seen: set[str] = set()
    plan: list[SubQuestion] = []
    for draft in drafts:
        text = " ".join(draft.question.split())
        key = same_key(text)
        if not text or key in seen:
            continue
        seen.add(key)
        plan.append(_sub(text, " ".join(draft.rationale.split())))
        if len(plan) == max_items:
            break
    if len(plan) < min(2, max_items) and same_key(question) not in seen:
        plan.append(_sub(question, "The question as asked."))
    return plan


def plan_from_texts(texts: list[str]) -> list[SubQuestion]:
    """Build a plan from sub-question texts written by a person (plan review, fork)."""
    return [_sub(text, "Given by a person.") for text in unique(texts)]


def _sub(question: str, rationale: str) -> SubQuestion:
    return {"id": item_id("sq", question), "question": question, "rationale": rationale}


async def corpus_preview(question: str, corpus: str | None, workspace: Workspace) -> str:
    """The titles of the passages best matching the question, one line each with a snippet.

    A planner that sees what the corpus calls things asks questions the researchers can find
    answers to ("What does functools.wraps do?") instead of guessing at vocabulary.
    """
    try:
        index = workspace.corpus(corpus)  # refuses folders outside the roots
        hits = await asyncio.to_thread(index.search, question, PREVIEW_PASSAGES)
    except EnsembleError as error:  # each researcher's note will say why; plan without it
        log.info("planner: no corpus preview: %s", error)
        return ""
    best = max((hit.score for hit in hits), default=0.0)
    lines: dict[str, str] = {}
    for hit in (h for h in hits if h.score >= PREVIEW_SHARE * best):  # strong matches only
        snippet = " ".join(hit.text.split())[:PREVIEW_CHARS]
        lines.setdefault(hit.title, f"- {hit.title}: {snippet}")
    if not lines:
        return ""
    return "Titles of the best matching passages in the corpus:\n" + "\n".join(lines.values())


async def planner(state: ResearchState, runtime: Runtime[Context], *, workspace: Workspace) -> dict:
    """Write the plan with the planner model (structured output, retried, then a fallback)."""
    emit("planner", "started")
    max_items = state.max_researchers
    model = workspace.chat_model(runtime.context, "planner")
    preview = await corpus_preview(state.question, state.corpus, workspace)
    messages = [
        SystemMessage(render_prompt("planner", min_items=min(2, max_items), max_items=max_items)),
        HumanMessage(f"{state.question}\n\n{preview}".strip()),
    ]
    drafted = await ask_structured(model, plan_schema(max_items), messages)
    drafts = list(getattr(drafted, "subquestions", []))
    plan = make_plan(state.question, drafts, max_items)
    emit("planner", "finished", subquestions=[s["question"] for s in plan])
    return {"plan": plan}
