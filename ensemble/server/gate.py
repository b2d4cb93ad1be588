"""The request gate in front of every route of `ensemble serve` (mounted through `http.app`).

LangGraph's server checks keys and ownership only on its protected routes and answers every web
origin unless told otherwise, so this ASGI middleware, the outermost layer, checks what no
route may skip:

- only the routes Ensemble serves exist (LangGraph dev also mounts `/internal/truncate`, which
  wipes every thread, and `/deploy`, which runs its CLI);
- the `Host` header names this server (a DNS-rebinding page names its own host);
- an `Origin` header is the server's own or one the operator named, else 403 (preflights
  included), and private-network access is never granted;
- with keys, every route needs a valid key except `/ok` and the routes the operator opened;
- a thread is reached only by its owner (reviewers may read any): another user's thread is
  "not found" on every `/threads/{id}` route and on create-if-exists;
- a client's state write is checked before LangGraph sees it (`ensemble.server.state_writes`).

Requests the server makes to itself (LangGraph's loopback client, root path `/noauth`) pass.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httpx
from langgraph_sdk import get_client
from starlette.datastructures import Headers

from ensemble.server.keys import (
    PUBLISHER,
    REVIEWER,
    ApiKeys,
    ApiUser,
    configured_keys,
    presented_key,
)
from ensemble.server.policy import ServerPolicy
from ensemble.server.state_writes import Refused, check_state_write

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_CHECKED_BODY = 2 * 1024 * 1024
"""Largest body the gate reads to check it (thread creation, state writes)."""
SERVED_ROUTES = re.compile(
    r"^/(ok|info|metrics|docs|openapi\.json|events)?$|^/(assistants|threads|runs|console)(/|$)"
    r"|^/console$"
)
"""The routes Ensemble serves; LangGraph dev's others (`/internal/truncate` wipes every thread,
`/deploy` runs the CLI, `/profile`) are not found."""
CONSOLE_PAGE = re.compile(r"^/console(/|/static/[A-Za-z0-9_.-]+)?$")
"""The console's page and its files: the same for everyone, no data, so no key (the data it then
fetches from `/console/api/...` and the API needs one)."""
EVENTS_PATH = "/events"
"""`POST /events` publishes an event (`ensemble.server.app`); with keys, publishers only."""
THREAD_PATH = re.compile(r"^/threads/([0-9a-fA-F-]{32,36})(/.*)?$")
PRIVATE_NETWORK_HEADER = b"access-control-allow-private-network"


class Gate:
    """Pure ASGI middleware: refuse what no route may see, before any route runs."""

    def __init__(
        self,
        app: Callable[[Scope, Receive, Send], Awaitable[None]],
        policy: ServerPolicy | None = None,
        keys: ApiKeys | None = None,
    ) -> None:
        """Wrap `app`; the policy and keys default to what `ensemble serve` configured."""
        self.app = app
        self.policy = policy or ServerPolicy.from_env()
        self.keys = keys if keys is not None else configured_keys()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check one request; pass it on, or answer it with the refusal."""
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # no route speaks websocket
            return
        if scope["type"] != "http" or str(scope.get("root_path", "")).startswith("/noauth"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        if not self.policy.host_allowed(host):
            await _answer(send, 421, f"this server does not answer for host {host!r}")
            return
        origin = headers.get("origin")
        if origin is not None and not self.policy.origin_allowed(origin, host):
            await _answer(send, 403, f"web origin {origin!r} may not call this server")
            return
        path = scope.get("path", "")
        if not SERVED_ROUTES.match(path):
            await _answer(send, 404, "Not Found")
            return
        user = None
        shell = scope.get("method") in ("GET", "HEAD") and CONSOLE_PAGE.match(path)
        if self.keys is not None and path not in self.policy.open_paths and not shell:
            if scope.get("method") == "OPTIONS" and origin is not None:
                pass  # an allowed origin's preflight carries no key; CORS answers it
            else:
                user = self.keys.lookup(
                    presented_key(headers.get("x-api-key", ""), headers.get("authorization", ""))
                )
                if user is None:
                    await _answer(send, 401, "a valid API key is required: send it as X-Api-Key")
                    return
        if path == EVENTS_PATH and user is not None and PUBLISHER not in user.roles:
            await _answer(send, 403, "publishing events needs a key with the publisher role")
            return
        state = scope.setdefault("state", {})
        state["ensemble_user"] = user.user if user else None
        state["ensemble_roles"] = user.roles if user else frozenset()
        state["ensemble_keys"] = self.keys is not None
        try:
            receive = await self._check_threads(scope, receive, user)
        except Refused as refusal:
            await _answer(send, refusal.status, str(refusal))
            return
        await self.app(scope, receive, _without_private_network(send))

    async def _check_threads(self, scope: Scope, receive: Receive, user: ApiUser | None) -> Receive:
        """Ownership on thread routes and the state-write policy; returns the body's receive."""
        method, path = scope.get("method", ""), scope.get("path", "")
        match = THREAD_PATH.match(path)
        if method == "POST" and path == "/threads":
            body, receive = await _read_body(receive)
            thread_id = _json_object(body).get("thread_id")
            if user is not None and thread_id:
                _check_owner(await _lookup(str(thread_id)), user, strict=True)
            return receive
        if match is None:
            return receive
        thread_id, rest = match.group(1), match.group(2) or ""
        deleting = method == "DELETE" and not rest
        writing = method == "POST" and rest in ("/state", "/state/bulk")
        if user is None and not (deleting or writing):
            return receive  # without keys every thread is the one local user's
        thread = await _lookup(thread_id)  # once per request, for every check below
        if user is not None:
            _check_owner(thread, user, strict=False)
        if deleting and thread is None:
            raise Refused(404, f"Thread {thread_id} not found")  # LangGraph dev answers 500
        if writing:
            if rest == "/state/bulk":
                raise Refused(403, "state/bulk: a client may not write a thread's state in bulk")
            body, _ = await _read_body(receive)
            checked = await check_state_write(thread, _json_object(body))
            return _replay(json.dumps(checked).encode())
        return receive


def _check_owner(thread: dict[str, Any] | None, user: ApiUser, *, strict: bool) -> None:
    """Refuse, as "not found", a thread that is another user's (a missing one is LangGraph's).

    `strict` (creating a thread with a chosen id) applies to reviewers too: a reviewer may
    read any thread but never take another user's id.
    """
    if thread is None:
        return
    owner = (thread.get("metadata") or {}).get("owner")
    if owner != user.user and (strict or REVIEWER not in user.roles):
        raise Refused(404, f"Thread {thread['thread_id']} not found")


async def _lookup(thread_id: str) -> dict[str, Any] | None:
    """The thread as the server stores it, read through LangGraph's loopback client."""
    try:
        return dict(await get_client().threads.get(thread_id))
    except httpx.HTTPStatusError as error:
        if error.response.status_code in (404, 422):
            return None
        raise


async def _read_body(receive: Receive) -> tuple[bytes, Receive]:
    """Read the whole request body (bounded), and a `receive` that replays it."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_CHECKED_BODY:
            raise Refused(413, f"request body over {MAX_CHECKED_BODY} bytes")
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    body = b"".join(chunks)
    return body, _replay(body)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


def _json_object(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise Refused(422, "the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise Refused(422, "the request body must be a JSON object")
    return data


def _without_private_network(send: Send) -> Send:
    """Drop LangGraph dev's `Access-Control-Allow-Private-Network` grant from every response."""

    async def filtered(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [
                (k, v) for k, v in message.get("headers", []) if k.lower() != PRIVATE_NETWORK_HEADER
            ]
        await send(message)

    return filtered


async def _answer(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
