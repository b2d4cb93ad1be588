"""Runs as events: `run.done`, `run.waiting` (for a person) and `run.failed`.

Every entry point that drives a run to its end or its pause announces it (the CLI, a worker, the
dispatcher), so a subscription can chain scenarios (a digest's `run.done` starts a content run)
and a notifier can watch `run.waiting`. The event's id is the thread, checkpoint and outcome, so
announcing the same result twice (a dispatcher killed just after) stores it once. A run started
by an event carries it as `trigger`: the event, the subscription and the event's data.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from ensemble.db import DatabaseLike
from ensemble.errors import EnsembleError
from ensemble.events.event import MAX_DATA_BYTES, Event, make_event
from ensemble.events.store import event_tables, publish
from ensemble.graphs.registry import SCENARIOS
from ensemble.runner import RunResult, thread_config

log = logging.getLogger("ensemble.events")

KINDS = {"done": "run.done", "interrupted": "run.waiting", "failed": "run.failed"}
MAX_TEXT_CHARS = 8_000
MAX_ITEMS = 30


async def announce(db: DatabaseLike, saver: Any, result: RunResult) -> Event | None:
    """Publish the event of `result`; a failure to publish is logged, never raised.

    The run itself succeeded or failed already; losing its announcement must not change that.
    """
    kind = KINDS.get(result.status)
    if kind is None:
        return None
    try:
        saved = await saver.aget_tuple(thread_config(result.thread_id))
        values = saved.checkpoint.get("channel_values", {}) if saved else {}
        event = await asyncio.to_thread(_event, db, kind, result, values)
        await asyncio.to_thread(publish, db, event)
        if kind == "run.done" and event.data["trigger"]:
            await asyncio.to_thread(_finish_waiting_delivery, db, result.thread_id)
        return event
    except (EnsembleError, OSError) as error:
        log.warning("could not announce %s of thread %s: %s", kind, result.thread_id, error)
        return None


def _event(db: DatabaseLike, kind: str, result: RunResult, values: dict[str, Any]) -> Event:
    scenario = SCENARIOS.get(result.scenario)
    fields = scenario.input_schema.model_fields if scenario else {}
    data: dict[str, Any] = {
        "thread_id": result.thread_id,
        "scenario": result.scenario,
        "status": {"interrupted": "waiting"}.get(result.status, result.status),
        "checkpoint_id": result.checkpoint_id,
        "input": _plain({k: values[k] for k in fields if k in values}),
        "output": _trimmed(_plain(result.output or {})),
        "question": _trimmed(_plain(result.interrupt["value"])) if result.interrupt else None,
        "error": result.error,
        "trigger": _trigger(db, result.thread_id),
    }
    if len(json.dumps(data, default=str).encode()) > MAX_DATA_BYTES:
        data["output"], data["output_omitted"] = {}, True
    return make_event(
        kind,
        data,
        source=f"ensemble/{result.scenario}",
        id=f"run:{result.thread_id}:{result.checkpoint_id or 'none'}:{data['status']}",
    )


def _finish_waiting_delivery(db: DatabaseLike, thread_id: str) -> None:
    """A delivery whose run waited for a person is done once the person let it finish."""
    with event_tables(db) as conn:
        conn.execute(
            "UPDATE ensemble_deliveries SET status = 'done', updated_at = ? "
            "WHERE thread_id = ? AND status = 'waiting'",
            (time.time(), thread_id),
        )


def _trigger(db: DatabaseLike, thread_id: str) -> dict[str, Any] | None:
    """The event and subscription that started this thread, if one did."""
    with event_tables(db) as conn:
        row = conn.execute(
            "SELECT d.event_id, d.subscription, e.type, e.data FROM ensemble_deliveries d "
            "JOIN ensemble_events e ON e.id = d.event_id "
            "WHERE d.thread_id = ? AND d.status <> 'duplicate'",
            (thread_id,),
        ).fetchone()
    if row is None:
        return None
    data = json.loads(row[3])
    inner = {k: v for k, v in data.items() if k not in ("output", "trigger", "question")}
    return {"event": row[0], "subscription": row[1], "type": row[2], "data": inner}


def _plain(value: Any) -> Any:
    """JSON values only (state holds dataclasses, paths, tuples)."""
    return json.loads(json.dumps(value, default=_default))


def _default(value: Any) -> Any:
    from dataclasses import asdict, is_dataclass

    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return str(value)


def _trimmed(value: Any) -> Any:
    """Long texts cut and long lists shortened, so the event stays a message, not an archive."""
    if isinstance(value, str) and len(value) > MAX_TEXT_CHARS:
        return value[:MAX_TEXT_CHARS] + " [...]"
    if isinstance(value, list):
        return [_trimmed(item) for item in value[:MAX_ITEMS]]
    if isinstance(value, dict):
        return {key: _trimmed(item) for key, item in value.items()}
    return value
