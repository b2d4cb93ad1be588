"""The aggregator: the final answer, with the trace of which agent did what."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from ensemble.audit.notes import degradation_note
from ensemble.nodes.progress import emit
from ensemble.state.solver import SolverState


def dag_rows(state: SolverState) -> list[dict[str, Any]]:
    """Per task: its result, the agents, every attempt, the vote and the time spent."""
    rows = []
    for task in state.tasks:
        attempts = sorted(
            (a for a in state.attempts.values() if a["task"] == task["id"]),
            key=lambda a: a["started"],
        )
        result = state.results.get(task["id"])
        rows.append(
            {
                "id": task["id"],
                "capability": task["capability"],
                "depends_on": task["depends_on"],
                "priority": task["priority"],
                "replicas": task["replicas"],
                "status": result["status"] if result else "open",
                "value": result["value"] if result else None,
                "agents": result["agents"] if result else [],
                "vote": result["vote"] if result else None,
                "attempts": [
                    {
                        "agent": a["agent"],
                        "replica": a["replica"],
                        "ok": a["ok"],
                        "error": a["error"],
                        "seconds": a["seconds"],
                    }
                    for a in attempts
                ],
                "seconds": round(sum(a["seconds"] for a in attempts), 3),
            }
        )
    return rows


def _show(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text.strip()


def compose_answer(state: SolverState, rows: list[dict[str, Any]]) -> str:
    """Markdown: the final task's result first, then each task with who did it and how."""
    done = [r for r in rows if r["status"] in {"done", "skipped"}]
    title = state.problem or (state.workflow or {}).get("title") or "Workflow"
    lines = [f"# {title}", ""]
    if done:
        lines += [_show(done[-1]["value"]), ""]
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
    if state.plan_notes:
        lines += ["", "Planner notes: " + "; ".join(state.plan_notes)]
    return "\n".join(lines) + "\n"


async def aggregator(state: SolverState) -> dict:
    """Compose the answer and the DAG trace; the outcome says how complete it is."""
    rows = dag_rows(state)
    if state.outcome == "aborted":
        outcome = "aborted"
    elif all(r["status"] in {"done", "skipped"} for r in rows):
        outcome = "solved"
    else:
        outcome = "partial"
    emit("aggregator", "finished", outcome=outcome)
    answer = compose_answer(state, rows)
    note = await asyncio.to_thread(degradation_note)
    if note:
        answer = f"{answer.rstrip()}\n\n{note}\n"
    return {"answer": answer, "dag": rows, "outcome": outcome}
