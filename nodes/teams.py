"""The two teams the editor-in-chief sends work to, each a subgraph run for one item.

The research team is the research scenario's own graph; the writing team is the outline ->
writer -> editor loop. A team that fails writes a note saying so instead of cancelling the
other items' teams (they run in the same LangGraph step), and the chief sends it again.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime

from ensemble.audit.trail import thread_context
from ensemble.concurrency import agent_gate
from ensemble.context import Context
from ensemble.db.fence import is_lease_lost
from ensemble.progress import emit
from ensemble.publishing.piece import count_words
from ensemble.resilience.guard import BudgetExceeded, ModelUnavailable
from ensemble.state.content import Digest, Draft, ItemTask

log = logging.getLogger(__name__)

RESEARCH_LIMITS = {"max_researchers": 3, "max_revisions": 1, "review_plan": False}
"""Each item's research is a short run of the research scenario."""

_SOURCES = re.compile(r"\n## Sources\n.*\Z", re.S)
_TITLE = re.compile(r"\A# .*\n+")

Node = Callable[[ItemTask, Runtime[Context]], Awaitable[dict[str, Any]]]


def findings(report: str) -> str:
    """A research report without its title line and source list: what a writer reads."""
    return _SOURCES.sub("", _TITLE.sub("", report)).strip()


def research_team(research: CompiledStateGraph[Any, Any, Any, Any]) -> Node:
    """The node that runs `research` (the research scenario's graph) on one item."""

    async def research_team(task: ItemTask, runtime: Runtime[Context]) -> dict[str, Any]:
        item = task["item"]
        attempts = (task["digest"].get("attempts", 1) if task["digest"] else 0) + 1
        thread = thread_context()[0]
        error: str | None = None
        try:
            async with agent_gate(thread, "team", runtime.context.max_concurrency):
                emit("research_team", "started", item=item["id"], question=item["question"])
                out = await research.ainvoke(
                    {"question": item["question"], "corpus": task["corpus"], **RESEARCH_LIMITS},
                    context=runtime.context,
                )
        except (ModelUnavailable, BudgetExceeded):
            raise  # the provider is down or the money is spent: the run pauses (resilience.pause)
        except Exception as failure:  # keep the other items' work; the chief asks again
            if is_lease_lost(failure):
                raise  # another worker owns the thread now: this run stops here
            log.warning("research team on %s failed: %s", item["id"], failure, exc_info=True)
            emit("research_team", "failed", item=item["id"], error=str(failure))
            out, error = {"outcome": "failed"}, f"{type(failure).__name__}: {failure}"
        digest: Digest = {
            "item_id": item["id"],
            "report": findings(out.get("report", "")),
            "sources": list(out.get("sources", [])),
            "outcome": str(out.get("outcome", "")),
            "error": error,
            "attempts": attempts,
        }
        if error is None:
            emit("research_team", "finished", item=item["id"], sources=len(digest["sources"]))
        return {"research": {item["id"]: digest}}

    return research_team


UNCHANGED = (
    '_Not revised: the writer could not act on the notes ("{notes}"), so the text above is '
    "the previous draft. Edit it yourself (`edit`), or reject it._"
)
"""Said in a draft that came back unchanged after a person's notes, instead of saying nothing."""


def writing_team(team: CompiledStateGraph[Any, Any, Any, Any]) -> Node:
    """The node that runs the writing team on one researched item."""

    async def writing_team(task: ItemTask, runtime: Runtime[Context]) -> dict[str, Any]:
        item, digest, previous = task["item"], task["digest"], task["previous"]
        thread = thread_context()[0]
        revising = previous is not None and bool(task["human_notes"])
        async with agent_gate(thread, "team", runtime.context.max_concurrency):
            emit("writing_team", "started", item=item["id"], round=task["round"])
            out = await team.ainvoke(
                {
                    "item": item,
                    "brief": task["brief"],
                    "report": digest["report"] if digest else "",
                    "sources": digest["sources"] if digest else [],
                    "human_notes": task["human_notes"],
                    "previous": previous["text"] if previous else "",
                    "outline": [],
                    "mode": "human_revision" if revising else "fresh",
                    "max_revisions": task["brief"].get("max_revisions", 2),
                },
                context=runtime.context,
            )
        review = out.get("review") or {}
        text, outcome = out.get("text", ""), str(out.get("outcome") or "")
        if revising and previous and text.strip() == previous["text"].strip():
            notes = "; ".join(task["human_notes"][-1:])
            text = f"{text.rstrip()}\n\n{UNCHANGED.format(notes=notes)}\n"
            outcome = "unchanged: the writer could not act on the notes"
        draft: Draft = {
            "item_id": item["id"],
            "title": out.get("title") or item["title"],
            "text": text,
            "editor_notes": list(review.get("requests", [])),
            "editor_outcome": outcome or ("one round" if revising else ""),
            "revisions": int(out.get("revision", 0)),
            "round": task["round"],
        }
        emit(
            "writing_team",
            "finished",
            item=item["id"],
            words=count_words(draft["text"]),
            **({"unchanged": True} if outcome.startswith("unchanged") else {}),
        )
        return {"drafts": {item["id"]: draft}}

    return writing_team
