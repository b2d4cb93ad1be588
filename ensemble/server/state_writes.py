"""What a client may write into a thread's state through the server, checked on arrival.

LangGraph lets a client write state (`threads.update_state`) and name the node the write counts
as (`as_node`), which decides what runs next: enough to skip a human review, forge an approval
or point a run at another folder. A served client may write only the scenario's input fields
(validated as at the start of a run, folders checked against the operator's roots), never as a
node of its choosing, and never onto a checkpoint that waits for a person: a human gate is
answered only by resuming it, by a user with the role it needs.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from langgraph_sdk import get_client

from ensemble.errors import EnsembleError
from ensemble.graphs.registry import SCENARIOS
from ensemble.server.requests import check_folders

ACCEPTED_KEYS = frozenset({"values", "checkpoint", "checkpoint_id"})
"""The parts of a state write a client may send."""


class Refused(EnsembleError):
    """A request the gate answers itself (a refused state write among them), with this status."""

    def __init__(self, status: int, message: str) -> None:
        """Keep the HTTP status beside the one-line message the client reads."""
        super().__init__(message)
        self.status = status


async def check_state_write(thread: dict[str, Any] | None, body: dict[str, Any]) -> dict[str, Any]:
    """Check a `POST /threads/{id}/state` body; return it with validated values.

    Raises:
        Refused: 404 for an unknown thread, 409 for a thread waiting for a person or
            without a run yet, 422 naming the field for anything else.
    """
    if thread is None:
        raise Refused(404, "Thread not found")
    extra = sorted(k for k in set(body) - ACCEPTED_KEYS if body[k] is not None)
    if "as_node" in extra:
        raise Refused(
            422, "as_node: not accepted; a client's state write never chooses the next node"
        )
    if extra:
        raise Refused(422, f"{extra[0]}: not accepted in a state write")
    values = body.get("values")
    if not isinstance(values, dict) or not values:
        raise Refused(422, "values: must be an object naming the input fields to set")
    scenario = SCENARIOS.get(str((thread.get("metadata") or {}).get("graph_id")))
    if scenario is None:
        raise Refused(409, "this thread has no run yet: start one with its input")
    state = await _state_at(str(thread["thread_id"]), body)
    waiting = [i.get("value", {}) for i in state.get("interrupts") or []]
    if waiting or any(t.get("interrupts") for t in state.get("tasks") or []):
        kind = next((w.get("kind") for w in waiting if isinstance(w, dict)), None) or "a person"
        raise Refused(
            409,
            f"this checkpoint waits for {kind}: only an answer (command.resume, by a user with "
            "the reviewer role) goes on from here",
        )
    inputs = set(scenario.input_schema.model_fields)
    unknown = sorted(set(values) - inputs)
    if unknown:
        raise Refused(
            422,
            f"values.{unknown[0]}: not an input field of {scenario.name} (settable: "
            f"{', '.join(sorted(inputs))}); the rest is written by the server",
        )
    current = state.get("values") or {}
    try:
        update = await asyncio.to_thread(scenario.fork_updates, current, values)
        merged = {k: current.get(k) for k in inputs if k in current} | update
        await asyncio.to_thread(check_folders, scenario, merged)
    except EnsembleError as error:
        raise Refused(422, f"values: {error}") from None
    return {**body, "values": update}


async def _state_at(thread_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """The thread's state at the checkpoint the write targets (its latest by default)."""
    checkpoint = body.get("checkpoint")
    checkpoint_id = body.get("checkpoint_id")
    if checkpoint is not None and not isinstance(checkpoint, dict):
        raise Refused(422, "checkpoint: must be an object")
    if checkpoint_id is not None and not isinstance(checkpoint_id, str):
        raise Refused(422, "checkpoint_id: must be a string")
    try:
        return dict(
            await get_client().threads.get_state(
                thread_id,
                checkpoint=checkpoint,  # type: ignore[arg-type]  # the server checks its shape
                checkpoint_id=checkpoint_id,
            )
        )
    except httpx.HTTPStatusError as error:
        if error.response.status_code in (404, 422):
            raise Refused(404, "checkpoint not found on this thread") from None
        raise
