"""The editor-in-chief: reads the brief, plans the items, and decides which team works next."""

from __future__ import annotations

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.runtime import Runtime
from pydantic import BaseModel, Field

from ensemble.context import Context
from ensemble.identity import item_id, unique
from ensemble.nodes.llm import ask_structured
from ensemble.progress import emit
from ensemble.prompts import render_prompt
from ensemble.state.content import ContentInput, ContentState, Item
from ensemble.state.inputs import validated
from ensemble.workspace import Workspace

NEWSLETTER_ITEMS = (2, 4)
"""How many items the chief plans for a newsletter given none."""


class ItemsPlan(BaseModel):
    """The chief's newsletter plan."""

    items: list[str] = Field(
        min_length=1, max_length=NEWSLETTER_ITEMS[1], description="Newsletter item questions."
    )


async def content_intake(state: ContentState, *, workspace: Workspace) -> dict:
    """Validate the brief inside the graph (LangGraph does not validate `input_schema`).

    The folders are checked against the operator's choices here too, so a client that writes
    state directly gets the same refusal as one that starts a run.
    """
    valid = validated(ContentInput, state, "content")
    workspace.corpus_dir(valid.corpus)
    workspace.output_dir(valid.output_dir)
    emit("intake", "finished", topic=valid.topic, format=valid.format)
    fresh = {"brief": [], "title": "", "piece": "", "sources": [], "word_count": 0}
    return valid.model_dump() | fresh | {"approval": None, "published": None, "outcome": ""}


def _item(text: str) -> Item:
    return {"id": item_id("item", text), "title": text, "question": text}


async def chief(state: ContentState, runtime: Runtime[Context], *, workspace: Workspace) -> dict:
    """Plan the items once: the topic itself, the user's items, or a planned newsletter."""
    if state.brief:
        return {}
    emit("chief", "started", format=state.format)
    if state.format != "newsletter":
        texts = [state.topic]
    elif state.items:
        texts = unique(state.items)
    else:
        low, high = NEWSLETTER_ITEMS
        model = workspace.chat_model(runtime.context, "planner")
        plan = await ask_structured(
            model,
            ItemsPlan,
            [
                SystemMessage(render_prompt("chief", min_items=low, max_items=high)),
                HumanMessage(f"Topic: {state.topic}\nAudience: {state.audience}"),
            ],
        )
        texts = unique(list(plan.items) if plan else [])[:high] or [state.topic]
    brief = [_item(t) for t in texts]
    emit("chief", "finished", items=[i["title"] for i in brief])
    return {"brief": brief}
