"""The console's routes: its static files (no data, open) and its JSON API (behind the key).

Every response carries a strict Content-Security-Policy: scripts and styles only from this
server, no inline code, no frames, no other origin to connect to, so a model's text that slipped
into the page as markup still could not run.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response

from ensemble.graphs.registry import SCENARIOS
from ensemble.server.console import data
from ensemble.server.keys import PUBLISHER, REVIEWER

STATIC = Path(__file__).resolve().parent / "static"
ASSETS = {
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}
"""The only files served under `/console/static/` (a name not listed is not found)."""
STATUS_FILTERS = frozenset({"running", "waiting", "done", "failed", "idle"})
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
THREAD_ID = r"^[0-9a-fA-F-]{32,36}$"

router = APIRouter(prefix="/console", include_in_schema=False)


@router.get("")
async def console_root() -> Response:
    """`/console` -> `/console/`, where the page's relative links work."""
    return RedirectResponse("/console/", headers=SECURITY_HEADERS)


@router.get("/")
async def console_page() -> Response:
    """The page itself: no data, the same for everyone."""
    return FileResponse(
        STATIC / "index.html", media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS
    )


@router.get("/static/{name}")
async def console_asset(name: str) -> Response:
    """One listed file of the page."""
    if name not in ASSETS or not (STATIC / name).is_file():
        return _json({"detail": "Not Found"}, 404)
    return FileResponse(STATIC / name, media_type=ASSETS[name], headers=SECURITY_HEADERS)


@router.get("/api/me")
async def me(request: Request) -> Response:
    """Who the key belongs to and what they may do (the page shows forms to reviewers only)."""
    viewer = _viewer(request)
    keys = getattr(request.state, "ensemble_keys", False)
    return _json({"user": viewer.user, "roles": sorted(viewer.roles), "keys": bool(keys)})


@router.get("/api/scenarios")
async def scenarios() -> Response:
    """Input schemas, gate answer schemas and the drawn graph of every scenario."""
    return _json({"scenarios": await asyncio.to_thread(data.scenarios)})


@router.get("/api/threads")
async def threads(
    request: Request,
    scenario: str | None = Query(None, max_length=64),
    status: str | None = Query(None, max_length=16),
    owner: str | None = Query(None, max_length=64),
    q: str | None = Query(None, max_length=200),
    limit: int = Query(100, ge=1, le=data.MAX_THREADS),
) -> Response:
    """The threads the caller may see, filtered."""
    if status and status not in STATUS_FILTERS:
        return _json({"detail": f"status: one of {', '.join(sorted(STATUS_FILTERS))}"}, 422)
    if scenario and scenario not in SCENARIOS:
        return _json({"detail": f"scenario: unknown {scenario!r}"}, 422)
    rows = await data.threads(
        _viewer(request), scenario=scenario, status=status, owner=owner, text=q, limit=limit
    )
    return _json({"threads": rows})


@router.get("/api/threads/{thread_id}")
async def thread(request: Request, thread_id: str) -> Response:
    """One thread in full; another user's is not found, as everywhere else."""
    if not re.match(THREAD_ID, thread_id):
        return _json({"detail": f"Thread {thread_id[:40]} not found"}, 404)
    found = await data.thread(_viewer(request), thread_id)
    if found is None:
        return _json({"detail": f"Thread {thread_id} not found"}, 404)
    return _json(found)


@router.get("/api/operations")
async def operations(request: Request) -> Response:
    """The queue, the workers and their leader (PostgreSQL), recent events: reviewers only."""
    if REVIEWER not in _viewer(request).roles:
        return _json({"detail": "the operations view needs a key with the reviewer role"}, 403)
    from ensemble.server.console.operations import operations as gather

    return _json(await asyncio.to_thread(gather))


def _viewer(request: Request) -> data.Viewer:
    """The caller as the gate identified them (no keys: the local user)."""
    user = getattr(request.state, "ensemble_user", None)
    if user is None:
        return data.Viewer.local()
    roles: frozenset[str] = getattr(request.state, "ensemble_roles", frozenset())
    return data.Viewer(str(user), frozenset(r for r in roles if r in {REVIEWER, PUBLISHER}))


def _json(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=SECURITY_HEADERS)
