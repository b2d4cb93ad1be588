"""`ensemble threads`: every thread in the database with its status, outcome, size and input.

A listing reads plain tables: each thread's latest checkpoint, sizes, and the summaries kept
from earlier listings (`ensemble.thread_summaries`). Only a thread that moved on since (or is
new) is read through its scenario's graph, so LangGraph is imported only when one did.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ensemble.cli.render import print_json, table
from ensemble.db import Database, database
from ensemble.errors import EnsembleError, InvalidInputError
from ensemble.persistence import ThreadSummary, list_threads, thread_sizes
from ensemble.thread_summaries import Summary, cached_summaries, save_summaries

if TYPE_CHECKING:
    from ensemble.workspace import Workspace


async def cmd_threads(args: argparse.Namespace) -> int:
    """`ensemble threads`: every thread in the database, newest first (or `threads delete`)."""
    if args.action == "delete":
        from ensemble.cli.maintenance import delete_threads

        return await delete_threads(args)
    if args.ids:
        raise InvalidInputError(f"unexpected {' '.join(args.ids)}; to delete: threads delete ID")
    db = database(args.db)
    rows = await thread_rows(db)
    cutoff = age_cutoff(args.older_than)
    wanted = {"scenario": args.scenario, "status": args.status}
    rows = [
        r for r in rows
        if all(not v or r.get(k) == v for k, v in wanted.items())
        and (cutoff is None or str(r.get("updated") or "") < cutoff)
    ]  # fmt: skip
    if args.json:
        print_json({"threads": rows})
    elif not rows:
        filtered = args.scenario or args.status or args.older_than is not None
        print(f"No threads in {db}" + (" match." if filtered else "."))
    else:
        cells = [
            [r["thread_id"], r["scenario"], r.get("status"), r.get("outcome") or "-",
             r.get("checkpoints"), human_size(r.get("size") or 0), r.get("updated"),
             str(r.get("input") or "")[:60]]
            for r in rows
        ]  # fmt: skip
        print(
            table(
                cells,
                ["THREAD", "SCENARIO", "STATUS", "OUTCOME", "STEPS", "SIZE", "UPDATED", "INPUT"],
            )
        )
    return 0


def age_cutoff(days: float | None) -> str | None:
    """The ISO time before which a thread is older than `days` (None: no age filter)."""
    if days is None:
        return None
    if days < 0:
        raise InvalidInputError(f"--older-than must not be negative, got {days:g}")
    from datetime import UTC, datetime, timedelta

    return (datetime.now(UTC) - timedelta(days=days)).isoformat()


def human_size(size: int) -> str:
    """Bytes as a person reads them: 812 B, 14.2 KiB, 3.1 MiB."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


async def thread_rows(db: Database, workspace: Workspace | None = None) -> list[dict[str, Any]]:
    """Every thread: scenario, status, outcome, checkpoints, size, last update, input.

    Summaries still true are taken from the table; the others are computed from the threads'
    graphs (in `workspace`, by default the operator's on `db`) and stored for the next listing.
    On PostgreSQL the run queue is read first: a run that ends while the checkpoints are read
    then shows as done, never as a finished run's half-way state.
    """
    queue = await _queue(db) if db.is_postgres else None
    heads = list_threads(db)
    sizes = thread_sizes(db) if heads else {}
    known = cached_summaries(db, heads)
    moved = [head for head in heads if head.thread_id not in known]
    if moved:
        computed = await summarise(db, moved, workspace)
        if computed:
            save_summaries(db, heads, computed)  # skipped where the database cannot be written
        known.update(computed)
    rows = [_row(head, known.get(head.thread_id), sizes.get(head.thread_id, 0)) for head in heads]
    if queue is not None:
        rows = _with_queue(rows, queue)
    return rows


def _row(head: ThreadSummary, summary: Summary | None, size: int) -> dict[str, Any]:
    """One thread as listed; a thread of no known scenario shows its id and size only."""
    if summary is None:
        return {"thread_id": head.thread_id, "scenario": None, "size": size}
    return {
        "thread_id": head.thread_id,
        "scenario": summary.scenario,
        "status": summary.status,
        "outcome": summary.outcome,
        "checkpoints": head.checkpoints,
        "size": size,
        "updated": summary.updated,
        summary.input_field: summary.input,
        "input": summary.input,
    }


async def summarise(
    db: Database, heads: Sequence[ThreadSummary], workspace: Workspace | None = None
) -> dict[str, Summary]:
    """Each thread's summary, read from its latest state through its scenario's graph.

    Threads of no known scenario are left out.
    """
    from ensemble.persistence import open_async_checkpointer
    from ensemble.runner import result_of, scenario_of, thread_config
    from ensemble.workspace import Workspace

    space = workspace or Workspace(db=db)
    found: dict[str, Summary] = {}
    async with open_async_checkpointer(db, create=False) as saver:
        graphs: dict[str, Any] = {}  # one compiled graph per scenario serves all its threads
        for head in heads:
            try:
                scenario = await scenario_of(saver, head.thread_id)
            except EnsembleError:
                continue
            if scenario.name not in graphs:
                graphs[scenario.name] = scenario.compile(saver, space)
            snapshot = await graphs[scenario.name].aget_state(thread_config(head.thread_id))
            values = snapshot.values if isinstance(snapshot.values, dict) else {}
            found[head.thread_id] = Summary(
                scenario=scenario.name,
                status=result_of(snapshot, scenario, head.thread_id).status,
                outcome=values.get("outcome") or "",
                input_field=scenario.primary_field,
                input=values.get(scenario.primary_field),
                updated=snapshot.created_at,
            )
    return found


async def _queue(db: Database) -> dict[str, dict[str, Any]]:
    """The PostgreSQL run queue: every thread it knows, with its status and worker."""
    from ensemble.cli.cluster import cluster_connection
    from ensemble.cluster import runs

    async with cluster_connection(db.url) as conn:
        return await runs.statuses(conn)


def _with_queue(
    rows: list[dict[str, Any]], queue: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Add the run queue's view: queued and running threads (some have no checkpoint yet)."""
    from ensemble.cluster import runs
    from ensemble.graphs.registry import get_scenario

    for row in rows:
        queued = queue.pop(row["thread_id"], None)
        if queued is None:
            continue
        row["worker"] = queued["worker"]
        if queued["status"] in runs.ACTIVE:  # the checkpoints show where it was, not what it is
            row["status"] = queued["status"]
    for thread_id, queued in queue.items():  # queued, never started: no checkpoint yet
        scenario = get_scenario(queued["scenario"])
        given = (queued["request"] or {}).get("input") or {}
        rows.append(
            {
                "thread_id": thread_id,
                "scenario": scenario.name,
                "status": queued["status"],
                "outcome": "",
                "checkpoints": 0,
                "updated": queued["submitted_at"].isoformat(),
                scenario.primary_field: given.get(scenario.primary_field),
                "input": given.get(scenario.primary_field),
                "worker": queued["worker"],
            }
        )
    return sorted(rows, key=lambda r: str(r.get("updated") or ""), reverse=True)
