"""Routing: an event becomes one delivery per subscription that wants it, in one transaction.

The delivery is decided here, completely: the filter, the dedupe key, the input rendered from
the event and checked against the scenario's schema and the operator's folders. An event that
does not fit is dead-lettered with the reason now, so nothing is ever half-run. Each delivery's
thread id is derived from (event, subscription), so whoever starts it, and however often a
crashed dispatcher tries again, it is one thread.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ensemble.cluster.execute import start_request
from ensemble.errors import EnsembleError
from ensemble.events.event import Event
from ensemble.events.store import is_postgres, row_event
from ensemble.events.subscriptions import Subscription
from ensemble.events.templates import TemplateFailure, matches, render, render_value
from ensemble.graphs.registry import SCENARIOS
from ensemble.workspace import Workspace

THREADS = uuid.UUID("6c1d7a52-3f0e-4e55-9d1b-0a8f8e9f5e20")
"""Namespace of delivery thread ids (UUIDs, the only thread ids the LangGraph server accepts)."""
BATCH = 200
"""Events routed per transaction."""


def delivery_thread(event_id: str, subscription: str) -> str:
    """The thread of the run an (event, subscription) pair starts: always the same one."""
    return str(uuid.uuid5(THREADS, f"{event_id}\n{subscription}"))


@dataclass(frozen=True)
class Decision:
    """What one subscription does with one event."""

    status: str  # pending | dead
    dedupe_key: str
    request: dict[str, Any] | None = None
    error: str | None = None


def template_context(event: Event) -> dict[str, Any]:
    """What templates see: `data` (the event's data) and `event` (type, id, source, time)."""
    return {"data": event.data, "event": event.as_dict()}


def decide(subscription: Subscription, event: Event, workspace: Workspace) -> Decision | None:
    """The delivery of `event` to `subscription`; None when its filter says no."""
    context = template_context(event)
    dedupe = event.id
    try:
        if subscription.filter is not None and not matches(subscription.filter, context):
            return None
    except TemplateFailure as failure:
        return Decision("dead", dedupe, error=f"filter: {failure}")
    try:
        if subscription.dedupe is not None:
            dedupe = render(subscription.dedupe, context)
    except TemplateFailure as failure:
        return Decision("dead", dedupe, error=f"dedupe template: {failure}")
    try:
        data = render_value(subscription.input, context)
    except TemplateFailure as failure:
        return Decision("dead", dedupe, error=f"input template: {failure}")
    scenario = SCENARIOS.get(subscription.scenario)
    if scenario is None:
        return Decision("dead", dedupe, error=f"unknown scenario {subscription.scenario!r}")
    try:
        valid = scenario.validate_input(data).model_dump()
        for field, kind in scenario.folders.items():  # the operator's folders, as for `run`
            if kind == "corpus":
                workspace.corpus_dir(valid.get(field))
            else:
                workspace.output_dir(valid.get(field))
    except EnsembleError as error:
        return Decision("dead", dedupe, error=str(error))
    request = start_request(valid, subscription.settings, yes=subscription.approve)
    return Decision("pending", dedupe, request=request)


def route_pending(
    conn: Any, subscriptions: Sequence[Subscription], workspace: Workspace
) -> list[tuple[Event, int]]:
    """Route a batch of unrouted events (the caller holds a write transaction).

    Returns each routed event with how many deliveries it made. On PostgreSQL events another
    dispatcher is routing are skipped (`SKIP LOCKED`), so several dispatchers share the work.
    """
    lock = " FOR UPDATE SKIP LOCKED" if is_postgres(conn) else ""
    rows = conn.execute(
        "SELECT id, type, data, source, time FROM ensemble_events WHERE routed = 0 "
        f"ORDER BY published_at, id LIMIT ?{lock}",
        (BATCH,),
    ).fetchall()
    routed = []
    for row in rows:
        event = row_event(row)
        made = sum(
            _deliver(conn, event, subscription, workspace)
            for subscription in subscriptions
            if subscription.wants(event.type)
        )
        conn.execute("UPDATE ensemble_events SET routed = 1 WHERE id = ?", (event.id,))
        routed.append((event, made))
    return routed


def _deliver(conn: Any, event: Event, subscription: Subscription, workspace: Workspace) -> int:
    exists = conn.execute(
        "SELECT 1 FROM ensemble_deliveries WHERE event_id = ? AND subscription = ?",
        (event.id, subscription.name),
    ).fetchone()
    if exists:  # routed before (a replay routes only what is missing)
        return 0
    decision = decide(subscription, event, workspace)
    if decision is None:
        return 0
    now = time.time()
    thread = delivery_thread(event.id, subscription.name) if decision.request else None
    row = (
        event.id,
        subscription.name,
        decision.status,
        subscription.scenario,
        thread,
        decision.dedupe_key if decision.request else None,  # a dead one holds no key
        None,
        subscription.priority,
        subscription.max_attempts,
        subscription.backoff,
        now,
        json.dumps(decision.request) if decision.request else None,
        decision.error,
        now,
        now,
    )
    columns = (
        "event_id, subscription, status, scenario, thread_id, dedupe_key, duplicate_of, "
        "priority, max_attempts, backoff, next_at, request, error, created_at, updated_at"
    )
    marks = ", ".join("?" * 15)
    cursor = conn.execute(
        f"INSERT INTO ensemble_deliveries ({columns}) VALUES ({marks}) ON CONFLICT DO NOTHING",
        row,
    )
    if cursor.rowcount == 1:
        return 1
    holder = conn.execute(
        "SELECT event_id, thread_id FROM ensemble_deliveries "
        "WHERE subscription = ? AND dedupe_key = ?",
        (subscription.name, decision.dedupe_key),
    ).fetchone()
    duplicate = (
        event.id, subscription.name, "duplicate", subscription.scenario,
        holder[1] if holder else None, None, holder[0] if holder else None,
        subscription.priority, subscription.max_attempts, subscription.backoff, now, None,
        f"dedupe key {decision.dedupe_key!r} already started by event {holder and holder[0]}",
        now, now,
    )  # fmt: skip
    conn.execute(f"INSERT INTO ensemble_deliveries ({columns}) VALUES ({marks})", duplicate)
    return 1
