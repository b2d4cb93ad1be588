"""What the console shows, gathered for one person: their threads, one thread in full, schemas.

Threads come from LangGraph's own records through its loopback client (which skips the gate), so
every function here applies the gate's rule itself: a user sees their own threads, a reviewer
everyone's, and without keys the one local user sees all. Costs and the timeline come from the
audit trail, sizes from the checkpoint tables, both in the operator's database.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx
from langgraph_sdk import get_client

from ensemble.audit import trail
from ensemble.graphs.registry import SCENARIOS
from ensemble.persistence import thread_sizes
from ensemble.resilience.pause import ANSWER_SCHEMA, HALTED
from ensemble.run_settings import saved_in
from ensemble.server.console.layout import layout
from ensemble.server.keys import PUBLISHER, REVIEWER
from ensemble.server.policy import served_workspace

STATUSES = {"busy": "running", "interrupted": "waiting", "error": "failed"}
"""LangGraph's thread status -> the console's (`idle` is `done` once the thread has values)."""
RESULT_KINDS = {"research": "report", "content": "draft", "solver": "answer"}
MAX_THREADS = 500
HISTORY_LIMIT = 200


@dataclass(frozen=True)
class Viewer:
    """Who is looking: the key's user and roles (no keys: the local user, every role)."""

    user: str | None
    roles: frozenset[str]

    @classmethod
    def local(cls) -> Viewer:
        """The one user of a server without keys."""
        return cls(None, frozenset({REVIEWER, PUBLISHER}))

    def sees(self, thread: dict[str, Any]) -> bool:
        """The gate's rule: your own threads; a reviewer's, everyone's."""
        if self.user is None or REVIEWER in self.roles:
            return True
        return (thread.get("metadata") or {}).get("owner") == self.user


def scenarios() -> list[dict[str, Any]]:
    """Each scenario's input schema, gate answer schemas and drawn graph."""
    workspace = served_workspace()
    return [
        {
            "name": name,
            "description": scenario.description,
            "primary_field": scenario.primary_field,
            "input_schema": scenario.input_schema.model_json_schema(),
            "gates": {
                **{kind: gate.answer_schema for kind, gate in scenario.gates.items()},
                HALTED: ANSWER_SCHEMA,  # any run that cannot go on (no model left, budget spent)
            },
            "graph": layout(scenario.compile(None, workspace).get_graph()),
        }
        for name, scenario in SCENARIOS.items()
    ]


async def threads(
    viewer: Viewer,
    *,
    scenario: str | None = None,
    status: str | None = None,
    owner: str | None = None,
    text: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """The threads the viewer may see, newest first, filtered; with cost and size."""
    found = await get_client().threads.search(
        metadata={"graph_id": scenario} if scenario else None,
        limit=MAX_THREADS,
        sort_by="updated_at",
        sort_order="desc",
    )
    rows = [_row(dict(t)) for t in found if viewer.sees(dict(t))]
    for row in rows:
        if row["status"] == "running" and not row["input"]:  # its record has no values yet
            state: dict[str, Any] = dict(await get_client().threads.get_state(row["thread_id"]))
            values: dict[str, Any] = (
                state["values"] if isinstance(state.get("values"), dict) else {}
            )
            row["input"] = _title(SCENARIOS.get(str(row["scenario"])), values)
    needle = (text or "").strip().lower()
    rows = [
        r
        for r in rows
        if (not status or r["status"] == status)
        and (not owner or r["owner"] == owner)
        and (not needle or needle in f"{r['input']} {r['thread_id']} {r['outcome']}".lower())
    ][:limit]
    db = served_workspace().db
    sizes = await asyncio.to_thread(thread_sizes, db) if rows else {}
    for row in rows:
        totals = await asyncio.to_thread(trail.totals, db, row["thread_id"])
        row["cost"] = totals["cost"]
        row["tokens"] = totals["tokens_in"] + totals["tokens_out"]
        row["size"] = sizes.get(row["thread_id"], 0)
    return rows


def _row(thread: dict[str, Any]) -> dict[str, Any]:
    """One line of the threads list, from LangGraph's thread record."""
    metadata = thread.get("metadata") or {}
    values: dict[str, Any] = thread["values"] if isinstance(thread.get("values"), dict) else {}
    name = str(metadata.get("graph_id") or "")
    scenario = SCENARIOS.get(name)
    interrupts = thread.get("interrupts") or {}
    waiting = [i for pending in interrupts.values() for i in pending]
    kind = next((i.get("value", {}).get("kind") for i in waiting if isinstance(i, dict)), None)
    return {
        "thread_id": str(thread["thread_id"]),
        "scenario": name or None,
        "status": _status(str(thread.get("status")), values),
        "owner": metadata.get("owner"),
        "input": _title(scenario, values),
        "outcome": values.get("outcome") or "",
        "waiting_for": kind,
        "created_at": str(thread.get("created_at") or ""),
        "updated_at": str(thread.get("updated_at") or ""),
    }


def _title(scenario: Any, values: dict[str, Any]) -> str:
    """What names the run: its primary input, else a titled input (a solver's workflow)."""
    if scenario is None:
        return ""
    primary = values.get(scenario.primary_field)
    if primary:
        return str(primary)
    for name in scenario.input_schema.model_fields:
        value = values.get(name)
        if isinstance(value, dict) and isinstance(value.get("title"), str):
            return value["title"]
    return ""


def _status(langgraph_status: str, values: dict[str, Any]) -> str:
    if langgraph_status in STATUSES:
        return STATUSES[langgraph_status]
    return "done" if values else "idle"


async def thread(viewer: Viewer, thread_id: str) -> dict[str, Any] | None:
    """One thread in full, or None when it does not exist or is not the viewer's."""
    client = get_client()
    try:
        record = dict(await client.threads.get(thread_id))
    except httpx.HTTPStatusError as error:
        if error.response.status_code in (404, 422):
            return None
        raise
    if not viewer.sees(record):
        return None
    row = _row(record)
    name = row["scenario"]
    scenario = SCENARIOS.get(str(name))
    state: dict[str, Any] = dict(await client.threads.get_state(thread_id)) if name else {}
    values: dict[str, Any] = state["values"] if isinstance(state.get("values"), dict) else {}
    history = await client.threads.get_history(thread_id, limit=HISTORY_LIMIT) if name else []
    db = served_workspace().db
    totals = await asyncio.to_thread(trail.totals, db, thread_id)
    agents = await asyncio.to_thread(trail.stats, db, thread_id)
    events = await asyncio.to_thread(trail.events, db, thread_id)
    sizes = await asyncio.to_thread(thread_sizes, db)
    settings = saved_in(state.get("metadata"))
    interrupts = state.get("interrupts") or []
    return {
        **row,
        "input": {k: values.get(k) for k in scenario.input_schema.model_fields if k in values}
        if scenario
        else {},
        "settings": settings[0] if settings else {},
        "values": values,
        "current": list(state.get("next") or []),
        "interrupt": dict(interrupts[0]) if interrupts else None,
        "result": _result(str(name), values) if scenario and values else None,
        "totals": totals,
        "agents": agents,
        "timeline": [_span(e) for e in events],
        "checkpoints": [_checkpoint(dict(s)) for s in history],
        "size": sizes.get(thread_id, 0),
    }


def _result(name: str, values: dict[str, Any]) -> dict[str, Any]:
    """The report, draft or answer as text (the console shows it as text, never as HTML)."""
    scenario = SCENARIOS[name]
    return {
        "kind": RESULT_KINDS.get(name, "result"),
        "title": str(values.get("title") or values.get(scenario.primary_field) or ""),
        "text": scenario.describe_result(values),
    }


def _span(event: dict[str, Any]) -> dict[str, Any]:
    """An audit row as a bar of the timeline: who, what, from when to when."""
    end = float(event["at"])
    seconds = float(event.get("seconds") or 0)
    return {
        "agent": event["agent"],
        "kind": event["kind"],
        "model": event.get("model"),
        "start": end - seconds,
        "end": end,
        "seconds": seconds,
        "outcome": event.get("outcome"),
        "tokens_in": event.get("tokens_in", 0),
        "tokens_out": event.get("tokens_out", 0),
        "cost": event.get("cost", 0.0),
    }


def _checkpoint(state: dict[str, Any]) -> dict[str, Any]:
    """A line of the history: the checkpoint, its parent, its step and what ran next."""
    config = (state.get("checkpoint") or {}) if isinstance(state.get("checkpoint"), dict) else {}
    parent = state.get("parent_checkpoint") or {}
    metadata = state.get("metadata") or {}
    return {
        "checkpoint_id": config.get("checkpoint_id"),
        "parent_id": parent.get("checkpoint_id") if isinstance(parent, dict) else None,
        "step": metadata.get("step"),
        "source": metadata.get("source"),
        "next": list(state.get("next") or []),
        "created_at": state.get("created_at"),
    }
