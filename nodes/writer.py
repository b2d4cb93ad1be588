"""Writer: one item's draft from its research, outline, editor requests and a person's notes."""

from __future__ import annotations

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.runtime import Runtime

from ensemble.context import Context
from ensemble.nodes.citations import NUMBERED_CITATION
from ensemble.nodes.llm import drop_repeats
from ensemble.progress import emit
from ensemble.prompts import render_prompt
from ensemble.state.writing import WritingState
from ensemble.workspace import Workspace


def writer_request(state: WritingState) -> str:
    """The writer's task: outline, findings, and whatever must change from last time."""
    parts = [
        f"Topic: {state.item['title']}",
        "Outline:\n" + "\n".join(f"- {h}" for h in state.outline),
    ]
    parts.append(f"Research findings (cite these numbers):\n\n{state.report}")
    if state.review and state.review["requests"]:
        parts.append("Editor requests:\n" + "\n".join(f"- {r}" for r in state.review["requests"]))
    if state.human_notes:
        parts.append("A person's notes:\n" + "\n".join(f"- {n}" for n in state.human_notes))
    if state.previous or state.text:
        parts.append(f"Your previous draft:\n\n{state.text or state.previous}")
    return "\n\n".join(parts)


def clean_draft(answer: str, numbers: set[int], outline: list[str]) -> str:
    """The model's text without repeats, unknown citations or a title line; never empty."""
    text = NUMBERED_CITATION.sub(
        lambda m: m.group(0) if int(m.group(1)) in numbers else "", drop_repeats(answer)
    ).strip()
    lines = text.splitlines()
    if lines and lines[0].startswith("# "):
        text = "\n".join(lines[1:]).strip()
    if not text:
        return "\n\n".join(
            f"## {h}\n\nThe writer returned no text for this section." for h in outline
        )
    if not any(line.startswith("## ") for line in text.splitlines()) and outline:
        text = f"## {outline[0]}\n\n{text}"
    return text


async def writer(state: WritingState, runtime: Runtime[Context], *, workspace: Workspace) -> dict:
    """Write (or rewrite) the item; citations that match no source are dropped."""
    emit("writer", "started", item=state.item["id"], revision=state.revision)
    model = workspace.chat_model(runtime.context, "writer")
    prompt = render_prompt(
        "writer",
        format=state.brief.get("format", "blog"),
        audience=state.brief.get("audience", "readers"),
        tone=state.brief.get("tone", "clear"),
        target_words=state.brief.get("target_words", 400),
    )
    answer = await model.ainvoke([SystemMessage(prompt), HumanMessage(writer_request(state))])
    numbers = {s["n"] for s in state.sources}
    text = clean_draft(answer.text, numbers, state.outline)
    emit("writer", "finished", item=state.item["id"], words=len(text.split()))
    return {"text": text}
