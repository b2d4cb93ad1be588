"""Finalize: put an honest note on the report saying how the review loop ended."""

from __future__ import annotations

import asyncio

from ensemble.audit.notes import degradation_note
from ensemble.progress import emit
from ensemble.state.research import ResearchState
from ensemble.workspace import Workspace


def outcome_note(state: ResearchState) -> str:
    """One markdown paragraph explaining the outcome; gaps that stayed open are named."""
    review = state.review
    open_items = (review["research_gaps"] + review["report_issues"]) if review else []
    listed = "; ".join(open_items) if open_items else "none named"
    rounds = f"{state.revision} revision round{'s' if state.revision != 1 else ''}"
    if state.outcome == "approved":
        return f"_Reviewed and approved after {rounds}._"
    if state.outcome == "max_revisions":
        return (
            f"> **Note:** the reviewer was still not satisfied after {rounds} (the limit, "
            f"max_revisions={state.max_revisions}). Open gaps: {listed}."
        )
    if review and not open_items:
        return (
            f"> **Note:** the reviewer did not approve the report but named nothing to fix, so "
            f"research stopped after {rounds}."
        )
    return (
        f"> **Note:** the review stalled: the same gaps were reported twice in a row after "
        f"{rounds}, so more research would not help. Open gaps: {listed}."
    )


async def finalize(state: ResearchState, *, workspace: Workspace) -> dict:
    """Append the outcome note (and, for a degraded run, how it was degraded) to the report."""
    notes = [outcome_note(state), await asyncio.to_thread(degradation_note, workspace.db)]
    text = state.report.rstrip() + "".join(f"\n\n{n}" for n in notes if n) + "\n"
    emit("finalize", "finished", outcome=state.outcome)
    return {"report": text}
