"""The aggregator: the final answer, with the trace of which agent did what."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from ensemble.audit.notes import degradation_note
from ensemble.progress import emit
from ensemble.state.solver import SolverState
from ensemble.workspace import Workspace


def dag_rows(state: SolverState) -> list[dict[str, Any]]:
    """Per task: its result, the agents, every attempt, the vote and the time spent."""
    rows = []
    open_task: dict[str, Any] = {"status": "open", "value": None, "agents": [], "vote": None}
    for task in state.tasks:
        attempts = sorted(
            (a for a in state.attempts.values() if a["task"] == task["id"]),
            key=lambda a: a["started"],
        )
        result = state.results.get(task["id"]) or open_task
        rows.append(
            {key: task[key] for key in ("id", "capability", "depends_on", "priority", "replicas")}
            | {key: result[key] for key in ("status", "value", "agents", "vote")}
            | {
                "attempts": [
                    {key: a[key] for key in ("agent", "replica", "ok", "error", "seconds")}
                    for a in attempts
                ],
                "seconds": round(sum(a["seconds"] for a in attempts), 3),
            }
        )
    return rows


def _show(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text.strip()


def compose_answer(state: SolverState, rows: list[dict[str, Any]], lead: str | None = None) -> str:
    """Markdown: the final task's result (or `lead`) first, then each task with who did it."""
    done = [r for r in rows if r["status"] in {"done", "skipped"}]
    title = state.problem or (state.workflow or {}).get("title") or "Workflow"
    lines = [f"# {title}", ""]
    if lead or done:
        lines += [lead or _show(done[-1]["value"]), ""]
    lines += ["## How the team got there", ""]
    for row in rows:
        agents = ", ".join(row["agents"]) or "-"
        tries = len(row["attempts"])
        lines.append(
            f"- **{row['id']}** ({row['capability']}): {row['status']} by {agents}, "
            f"{tries} attempt{'s' if tries != 1 else ''}, {row['seconds']} s"
        )
        if row["vote"]:
            reason = row["vote"].get("reason") or row["vote"].get("status")
            lines.append(f"  - vote: {' '.join(str(reason).split())[:300]}")
        if row["status"] in {"done", "skipped"} and row is not done[-1]:
            lines.append(f"  - result: {' '.join(_show(row['value']).split())[:300]}")
        errors = [a["error"] for a in row["attempts"] if not a["ok"] and a["error"]]
        if row["status"] not in {"done", "skipped"} and errors:
            lines.append(f"  - why: {' '.join(str(errors[-1]).split())[:300]}")
    if state.plan_notes:
        lines += ["", "Planner notes: " + "; ".join(state.plan_notes)]
    return "\n".join(lines) + "\n"


def restates_the_problem(state: SolverState, rows: list[dict[str, Any]]) -> bool:
    """True when the final result only repeats the problem: it was not worked out."""
    done = [r for r in rows if r["status"] in {"done", "skipped"}]
    if not state.problem or not done:
        return False
    words = re.findall(r"\w+", _show(done[-1]["value"]).lower())
    asked = re.findall(r"\w+", state.problem.lower())
    return not words or words == asked or (len(words) <= len(asked) and set(words) <= set(asked))


UNANSWERED = (
    "The team did not work this out: its final result only repeats the problem. The offline "
    "model can only quote what it is given; try a real model (`--model openai:<name>` or "
    "`--model local`) or a workflow of tasks (`--tasks FILE`)."
)


async def aggregator(state: SolverState, *, workspace: Workspace) -> dict:
    """Compose the answer and the DAG trace; the outcome says how complete it is."""
    rows = dag_rows(state)
    if state.outcome == "aborted":
        outcome = "aborted"
    elif not all(r["status"] in {"done", "skipped"} for r in rows):
        outcome = "partial"
    elif restates_the_problem(state, rows):
        outcome = "unanswered"
    else:
        outcome = "solved"
    emit("aggregator", "finished", outcome=outcome)
    answer = compose_answer(state, rows, UNANSWERED if outcome == "unanswered" else None)
    note = await asyncio.to_thread(degradation_note, workspace.db)
    if note:
        answer = f"{answer.rstrip()}\n\n{note}\n"
    return {"answer": answer, "dag": rows, "outcome": outcome}
