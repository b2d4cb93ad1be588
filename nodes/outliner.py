"""Outliner: a title and section headings for one item, from its research."""

from __future__ import annotations

import re

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.runtime import Runtime
from pydantic import BaseModel, Field

from ensemble.context import Context
from ensemble.identity import unique
from ensemble.nodes.llm import ask_structured
from ensemble.progress import emit
from ensemble.prompts import render_prompt
from ensemble.state.writing import WritingState
from ensemble.workspace import Workspace

MAX_SECTIONS = 5
_HEADING = re.compile(r"^#{2,3}\s+(.+?)\s*$", re.M)


class Outline(BaseModel):
    """The outliner's proposal."""

    title: str = Field(description="The title of the piece.", min_length=1, max_length=150)
    sections: list[str] = Field(
        min_length=1, max_length=MAX_SECTIONS, description="Section headings, in order."
    )


def fallback_outline(state: WritingState) -> list[str]:
    """Headings from the research report itself, else a plain two-part outline."""
    found = [h for h in _HEADING.findall(state.report) if h.casefold() != "sources"]
    return unique(found)[:MAX_SECTIONS] or ["Overview", "Details"]


async def outliner(state: WritingState, runtime: Runtime[Context], *, workspace: Workspace) -> dict:
    """Outline the item (structured output, with a fallback from the research headings)."""
    if state.mode == "human_revision" and state.outline:
        return {}
    emit("outliner", "started", item=state.item["id"])
    model = workspace.chat_model(runtime.context, "outliner")
    prompt = render_prompt(
        "outliner",
        min_sections=2,
        max_sections=MAX_SECTIONS,
        format=state.brief.get("format", "blog"),
        audience=state.brief.get("audience", "readers"),
    )
    proposed = await ask_structured(
        model,
        Outline,
        [
            SystemMessage(prompt),
            HumanMessage(f"Topic: {state.item['title']}\n\nResearch findings:\n\n{state.report}"),
        ],
    )
    sections = unique(list(proposed.sections)) if proposed else []
    title = " ".join(proposed.title.split()) if proposed else ""
    outline = sections or fallback_outline(state)
    emit("outliner", "finished", item=state.item["id"], sections=outline)
    return {"outline": outline, "title": choose_title(title, state.item["title"])}


MAX_TITLE_WORDS = 12


def choose_title(proposed: str, topic: str) -> str:
    """The model's title when it reads as a title about the topic, else the topic itself.

    A title shares a word with the topic, is short, and is not a run of sentences (a weak or
    extractive model may hand back a quoted passage as its "title"); markdown marks go.
    """
    proposed = re.sub(r"^[#>*_\-\s]+|[*_\s]+$", "", proposed)
    words = set(re.findall(r"\w{4,}", topic.casefold()))
    shared = words & set(re.findall(r"\w{4,}", proposed.casefold()))
    sentence = re.search(r"[.!?]\s+\S", proposed) is not None
    if proposed and shared and not sentence and len(proposed.split()) <= MAX_TITLE_WORDS:
        proposed = proposed.rstrip(".")
        return proposed[:1].upper() + proposed[1:]
    return topic[:1].upper() + topic[1:]
