"""`POST /events`: a client publishes an event; the dispatcher starts what subscriptions ask.

The gate has already checked the key and the `publisher` role. The body is read up to a
bound, must be `{"type": ..., "data": {...}, "id": ...}` with nothing else, and passes the
same checks as `ensemble events publish`; the source is the publishing user, never the client's
word. The answer says whether the event was new (a repeated id stores nothing).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ensemble.errors import EnsembleError

MAX_BODY_BYTES = 96 * 1024
"""The largest body read: the data's own limit plus room for the type and id."""
FIELDS = frozenset({"type", "data", "id"})

router = APIRouter()


@router.post("/events", status_code=202, include_in_schema=True)
async def publish_event(request: Request) -> JSONResponse:
    """Publish one event: 202 with the stored event, or 4xx with the reason."""
    from ensemble.events.event import make_event
    from ensemble.events.store import publish
    from ensemble.workspace import from_environment

    body = await _bounded_body(request)
    if body is None:
        return _refuse(413, f"request body over {MAX_BODY_BYTES} bytes")
    try:
        payload: Any = json.loads(body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _refuse(422, "the request body is not valid JSON")
    if not isinstance(payload, dict) or "type" not in payload:
        return _refuse(422, 'the body must be {"type": ..., "data": {...}, "id": ...}')
    unknown = sorted(set(payload) - FIELDS)
    if unknown:
        return _refuse(422, f"unknown field(s): {', '.join(unknown)}; allowed: type, data, id")
    user = getattr(request.state, "ensemble_user", None) or "local"
    try:
        event = make_event(
            payload["type"], payload.get("data", {}), source=f"api:{user}", id=payload.get("id")
        )
        db = from_environment(served=True).db
        (stored,) = await asyncio.to_thread(publish, db, event)
    except EnsembleError as error:
        return _refuse(422, str(error))
    return JSONResponse({"event": event.as_dict(), "stored": stored}, status_code=202)


async def _bounded_body(request: Request) -> bytes | None:
    """The body, or None when it is longer than `MAX_BODY_BYTES` (read no further)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _refuse(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)
