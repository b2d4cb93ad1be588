"""Researcher: answer one sub-question from the corpus, citing the passages it used."""

from __future__ import annotations

import asyncio
import logging

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langgraph.runtime import Runtime

from ensemble.audit.trail import thread_context
from ensemble.concurrency import agent_gate
from ensemble.context import Context
from ensemble.corpus import CorpusIndex, Passage
from ensemble.db.fence import is_lease_lost
from ensemble.nodes.citations import attribute, drop_unknown, passage_ids_in
from ensemble.nodes.llm import drop_repeats
from ensemble.progress import emit
from ensemble.prompts import load_prompt
from ensemble.resilience.guard import BudgetExceeded, ModelUnavailable
from ensemble.state.research import Note, PassageRef, ResearchTask
from ensemble.text import is_prose, sentences
from ensemble.tools.corpus import SEARCH_TOOL_NAME, corpus_search_tool, format_passages, plain_text
from ensemble.workspace import Workspace

EXCERPT_CHARS = 240
FALLBACK_PASSAGES = 2
RELEVANT_SHARE = 0.7

log = logging.getLogger(__name__)


async def researcher(
    state: ResearchTask, runtime: Runtime[Context], *, workspace: Workspace
) -> dict:
    """Research one task; a failure becomes a note saying so instead of stopping the run.

    Parallel researchers run in one LangGraph step, where one raised exception cancels the
    siblings still running. Catching it here keeps their work; the reviewer then sees the
    sub-question as uncovered and sends it back for another round.
    """
    task = state  # what `Send` delivered: one task, not the graph's state
    task_id, question = task["task_id"], task["subquestion"]
    thread = thread_context()[0]
    try:
        async with agent_gate(thread, "researcher", runtime.context.max_concurrency):
            emit("researcher", "started", task=task_id, subquestion=question)
            note, found = await _research(task, runtime, workspace)
    except (ModelUnavailable, BudgetExceeded):
        raise  # the provider is down or the money is spent: the run pauses (resilience.pause)
    except Exception as error:
        if is_lease_lost(error):
            raise  # another worker owns the thread now: this run stops here
        log.warning("researcher %s failed: %s", task_id, error, exc_info=True)
        message = f"{type(error).__name__}: {error}"
        emit("researcher", "failed", task=task_id, error=message)
        return {"notes": {task_id: failed_note(task, message)}}
    emit(
        "researcher", "finished", task=task_id, cited=len(note["cited"]), fallback=note["fallback"]
    )
    return {"notes": {task_id: note}, "passages": {pid: _ref(p) for pid, p in found.items()}}


async def _research(
    task: ResearchTask, runtime: Runtime[Context], workspace: Workspace
) -> tuple[Note, dict[str, Passage]]:
    """Search (a tool call forced by name), read, and write cited notes.

    The search is forced by naming the tool, which every OpenAI-compatible server honours; the
    node also searches the sub-question itself so a poor query from a weak model still finds
    material. The tool-call transcript stays inside this node: only the note is checkpointed.
    """
    question = task["subquestion"]
    k = runtime.context.search_k * (1 + task["round"])  # a gap the reviewer found: dig deeper
    index = workspace.corpus(task["corpus"])  # refuses folders outside the roots
    model = workspace.chat_model(runtime.context, "researcher")
    tool = corpus_search_tool(index, k)

    messages: list[BaseMessage] = [
        SystemMessage(load_prompt("researcher")),
        HumanMessage(f"Sub-question: {question}"),
    ]
    call = await model.bind_tools([tool], tool_choice=SEARCH_TOOL_NAME).ainvoke(messages)
    found: dict[str, Passage] = {}
    own = await _search(index, question, k)
    if call.tool_calls:
        messages.append(call)
        for position, tool_call in enumerate(call.tool_calls):
            query = tool_call["args"].get("query")
            results = await _search(index, query, k) if isinstance(query, str) else []
            if position == 0:  # the sub-question itself searches best: its hits come first
                ids = {p.id for p in own}
                results = own + [p for p in results if p.id not in ids]
            found.update((p.id, p) for p in results)
            messages.append(ToolMessage(format_passages(results), tool_call_id=tool_call["id"]))
    else:
        found.update((p.id, p) for p in own)
        messages.append(HumanMessage(f"Search results:\n\n{format_passages(own)}"))

    answer = await model.ainvoke(messages)
    return write_note(task, drop_repeats(answer.text), found), found


def failed_note(task: ResearchTask, error: str) -> Note:
    """The note of a researcher that failed: no citations, so the reviewer asks again."""
    return _note(task, f"Research failed: {error}", [], fallback=False, error=error)


def write_note(task: ResearchTask, answer: str, found: dict[str, Passage]) -> Note:
    """Turn the model's answer into a note whose citations all point at retrieved passages.

    Uncited lines are attributed to the passage they come from; citations of passages that were
    not retrieved are dropped. With no valid citation left, the note quotes the best passages
    instead (marked as a fallback), so a weak model still yields evidence that is real.
    """
    text = attribute(answer.strip(), {pid: p.text for pid, p in found.items()})
    text, _dropped = drop_unknown(text, found)
    cited = passage_ids_in(text)
    fallback = not cited
    if fallback:
        best = list(found.values())[:FALLBACK_PASSAGES]
        text = "\n".join(f"{_opening_prose(p)} [{p.id}]" for p in best)
        cited = [p.id for p in best]
        if not best:
            text = "No passage of the corpus matched this sub-question."
    return _note(task, text, cited, fallback=fallback, error=None)


def _note(
    task: ResearchTask, summary: str, cited: list[str], *, fallback: bool, error: str | None
) -> Note:
    return {
        "task_id": task["task_id"],
        "subquestion": task["subquestion"],
        "summary": summary,
        "cited": cited,
        "round": task["round"],
        "fallback": fallback,
        "error": error,
    }


async def _search(index: CorpusIndex, query: str, k: int) -> list[Passage]:
    """The hits worth reading: those scoring at least `RELEVANT_SHARE` of the best one.

    A passage far below the best match is rarely about the question; shown to a writer, it
    only invites an off-topic citation.
    """
    hits = await asyncio.to_thread(index.search, query, k)
    best = max((p.score for p in hits), default=0.0)
    return [p for p in hits if p.score >= RELEVANT_SHARE * best]


def _opening_prose(passage: Passage, limit: int = 300) -> str:
    """The passage's first prose sentences, as a reader would quote it: no code, no tables."""
    prose = [s for s in sentences(plain_text(passage.text, passage.title)) if is_prose(s)]
    return _first_sentences(" ".join(prose) or passage.text, limit)


def _first_sentences(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit]
    end = cut.rfind(". ")
    return cut[: end + 1] if end > 60 else cut.rsplit(" ", 1)[0] + " ..."


def _ref(passage: Passage) -> PassageRef:
    return {
        "id": passage.id,
        "title": passage.title,
        "source": passage.source,
        "excerpt": _first_sentences(passage.text, EXCERPT_CHARS),
    }
