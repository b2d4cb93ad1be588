"""Synthesizer: one markdown report with numbered citations and a source list."""

from __future__ import annotations

import re

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.runtime import Runtime

from ensemble.context import Context
from ensemble.nodes.citations import NUMBERED_CITATION, numbers_in, renumber
from ensemble.nodes.llm import drop_repeats
from ensemble.progress import emit
from ensemble.prompts import load_prompt
from ensemble.state.research import Note, PassageRef, ResearchState, Source
from ensemble.workspace import Workspace


def ordered_notes(state: ResearchState) -> list[Note]:
    """Notes in reading order: the plan's sub-questions first, then gap rounds as they came."""
    order = {sq["id"]: i for i, sq in enumerate(state.plan)}
    notes = [n for n in state.notes.values() if n["task_id"] in order or n["round"] > 0]
    return sorted(notes, key=lambda n: (n["round"], order.get(n["task_id"], 0), n["task_id"]))


def number_sources(notes: list[Note], passages: dict[str, PassageRef]) -> list[Source]:
    """Number every cited passage once, in order of first citation."""
    cited = {pid: passages[pid] for note in notes for pid in note["cited"] if pid in passages}
    return [
        {"n": n, "passage_id": pid, "title": ref["title"], "source": ref["source"]}
        for n, (pid, ref) in enumerate(cited.items(), 1)
    ]


def source_list(sources: list[Source]) -> str:
    """The report's `## Sources` section."""
    lines = [f"[{s['n']}] {s['title']} ({s['source']}) `{s['passage_id']}`" for s in sources]
    return "## Sources\n\n" + ("\n".join(lines) if lines else "No sources were cited.")


_EMPTY_SECTION = re.compile(r"^#{2,4}[ \t]+[^\n]*(?:\n[ \t]*)*(?=\n#{1,4}[ \t]|\Z)", re.MULTILINE)
"""A heading with nothing under it before the next heading: its text was all repeats."""


def report_body(answer: str, numbered_notes: str, numbers: set[int]) -> str:
    """The writer's text without repeats or unknown citations; the notes follow if it cites none.

    A weak model may return nothing, cite a number no source has, or write prose without a
    single valid `[n]` although the notes cite sources: unknown numbers are dropped (as the
    researchers drop unknown passage ids) and the researchers' cited notes are appended, so
    the report's evidence stays real. A heading left with nothing under it goes too.
    """
    body = NUMBERED_CITATION.sub(
        lambda m: m.group(0) if int(m.group(1)) in numbers else "", drop_repeats(answer)
    )
    body = re.sub(r"\n{3,}", "\n\n", _EMPTY_SECTION.sub("", body)).strip()
    if not body:
        return "The writer returned no text; the notes follow.\n\n" + numbered_notes
    if numbers and not numbers_in(body):
        return f"{body}\n\nThe writer cited no sources; the notes follow.\n\n{numbered_notes}"
    return body


def cited_only(body: str, sources: list[Source]) -> tuple[str, list[Source]]:
    """Keep the sources the body cites, renumbered 1, 2, ... in order of first citation.

    A source list that holds passages the text never cites sends a reader to look for
    support that is not there.
    """
    by_number = {s["n"]: s for s in sources}
    order: dict[int, int] = {}
    for n in numbers_in(body):
        if n in by_number and n not in order:
            order[n] = len(order) + 1
    kept: list[Source] = [{**by_number[old], "n": new} for old, new in order.items()]
    renumbered = NUMBERED_CITATION.sub(
        lambda m: f"[{order[int(m.group(1))]}]" if int(m.group(1)) in order else m.group(0), body
    )
    return renumbered, kept


async def synthesizer(
    state: ResearchState, runtime: Runtime[Context], *, workspace: Workspace
) -> dict:
    """Write the report from the notes; the source list is built here, not by the model."""
    emit("synthesizer", "started")
    notes = ordered_notes(state)
    sources = number_sources(notes, state.passages)
    numbers = {s["passage_id"]: s["n"] for s in sources}
    numbered_notes = "\n\n".join(
        f"### {n['subquestion']}\n{renumber(n['summary'], numbers)}" for n in notes
    )
    model = workspace.chat_model(runtime.context, "synthesizer")
    answer = await model.ainvoke(
        [
            SystemMessage(load_prompt("synthesizer")),
            HumanMessage(f"Question: {state.question}\n\nNotes:\n\n{numbered_notes}"),
        ]
    )
    body = report_body(answer.text, numbered_notes, set(numbers.values()))
    body, sources = cited_only(body, sources)
    text = f"# {state.question}\n\n{body}\n\n{source_list(sources)}\n"
    emit("synthesizer", "finished", sources=len(sources))
    return {"report": text, "sources": sources}
