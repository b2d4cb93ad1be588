"""Intake: validate a run's input inside the graph, for callers that skip the CLI's check."""

from __future__ import annotations

from ensemble.progress import emit
from ensemble.state.inputs import validated
from ensemble.state.research import ResearchInput, ResearchState
from ensemble.workspace import Workspace


async def research_intake(state: ResearchState, *, workspace: Workspace) -> dict:
    """Validate and normalise the research input; raise `InvalidInputError` on bad input.

    LangGraph does not validate `input_schema`, so a notebook or server client that sends a
    blank question gets the same one-line error as the CLI, before any agent runs. Run-level
    fields are written too, so every output key is present from the start.
    """
    valid = validated(ResearchInput, state, "research")
    workspace.corpus_dir(valid.corpus)  # a folder outside the operator's roots stops here
    emit("intake", "finished", question=valid.question)
    fresh = {"plan": [], "report": "", "sources": [], "revision": 0, "review": None, "outcome": ""}
    return valid.model_dump() | fresh
