"""Authentication and per-user access for `langgraph dev` (langgraph.json `auth.path`).

With keys configured (`ensemble serve --keys FILE`), every request needs one (`X-Api-Key`, or
`Authorization: Bearer`); each key is a user who sees, runs, forks and resumes only their own
threads; only the `reviewer` role may answer human reviews, on any thread. Without keys the
server is for this machine's user alone (it binds to 127.0.0.1) and everyone is that user.
Whatever the mode, every run request is checked (`ensemble.server.requests`), operator-defined
assistants are the only ones, and crons and the store are closed.
"""

from __future__ import annotations

from typing import Any

from langgraph_sdk import Auth

from ensemble.run_settings import SETTINGS_KEY
from ensemble.server.keys import REVIEWER, configured_keys, presented_key
from ensemble.server.limits import admit_run
from ensemble.server.policy import ServerPolicy
from ensemble.server.requests import (
    apply_settings,
    check_command,
    check_input,
    is_answer,
    refuse,
    scenario_of_assistant,
)

SERVER_METADATA = frozenset({"owner", SETTINGS_KEY, "graph_id"})
"""Thread metadata only the server writes."""
LOCAL_USER = "local"
"""The one user of a server without keys."""

POLICY = ServerPolicy.from_env()
_keys = configured_keys()  # a bad keys file stops the server at start, with the reason

auth = Auth()


@auth.authenticate
async def authenticate(headers: dict[bytes, bytes]) -> Auth.types.MinimalUserDict:
    """Map the presented API key to its user; without configured keys, the local user."""
    if _keys is None:
        return {"identity": LOCAL_USER, "permissions": [REVIEWER], "is_authenticated": True}
    presented = presented_key(
        headers.get(b"x-api-key", b"").decode("latin-1"),
        headers.get(b"authorization", b"").decode("latin-1"),
    )
    if not presented:
        raise refuse(401, "an API key is required: send it as X-Api-Key")
    who = _keys.lookup(presented)
    if who is None:
        raise refuse(401, "unknown API key")
    return {"identity": who.user, "permissions": sorted(who.roles), "is_authenticated": True}


def _owner_filter(ctx: Auth.types.AuthContext) -> dict[str, str] | None:
    return None if _keys is None else {"owner": ctx.user.identity}


def _is_reviewer(ctx: Auth.types.AuthContext) -> bool:
    return REVIEWER in ctx.permissions


@auth.on.threads.create
async def on_thread_create(ctx: Auth.types.AuthContext, value: Any) -> None:
    """A new thread belongs to whoever created it."""
    metadata = value.setdefault("metadata", {})
    if metadata is None:
        metadata = value["metadata"] = {}
    metadata["owner"] = ctx.user.identity


@auth.on(resources="threads", actions=("read", "search"))
async def on_thread_read(ctx: Auth.types.AuthContext, value: Any) -> dict[str, str] | None:
    """Owners read (and search) their threads; reviewers read every thread (to review it)."""
    return None if _is_reviewer(ctx) else _owner_filter(ctx)


@auth.on.threads.update
async def on_thread_update(ctx: Auth.types.AuthContext, value: Any) -> dict[str, str] | None:
    """Only the owner changes a thread (metadata, state, cancelling its runs); never its owner."""
    written = SERVER_METADATA & set(value.get("metadata") or {})
    if written:
        raise refuse(403, f"metadata.{sorted(written)[0]} is set by the server")
    return _owner_filter(ctx)


@auth.on.threads.delete
async def on_thread_delete(ctx: Auth.types.AuthContext, value: Any) -> dict[str, str] | None:
    """Only the owner deletes a thread."""
    return _owner_filter(ctx)


@auth.on.threads.create_run
async def on_run_create(ctx: Auth.types.AuthContext, value: Any) -> dict[str, str] | None:
    """Check a run request: who may run it, its command, input and settings.

    Answering a human review needs the reviewer role; a reviewer may answer on any thread.
    Everything else runs only on the caller's own threads.
    """
    kwargs = value.setdefault("kwargs", {})
    answering = is_answer(kwargs)
    if answering and not _is_reviewer(ctx):
        raise refuse(403, "answering a human review needs the reviewer role")
    check_command(kwargs)
    scenario = scenario_of_assistant(value.get("assistant_id"))
    if scenario is not None:
        await check_input(scenario, kwargs, POLICY)
    await apply_settings(value, kwargs, POLICY)
    await admit_run(ctx.user.identity, value.get("thread_id"), POLICY.max_runs_per_user)
    metadata = value.get("metadata")
    if isinstance(metadata, dict):
        metadata["owner"] = ctx.user.identity  # a thread this run creates is the caller's
    return None if answering else _owner_filter(ctx)


@auth.on(resources="assistants", actions=("read", "search"))
async def on_assistant_read(ctx: Auth.types.AuthContext, value: Any) -> None:
    """Everyone may see and list the scenarios."""


@auth.on
async def everything_else(ctx: Auth.types.AuthContext, value: Any) -> None:
    """Closed: client-made assistants (their context would bypass the checks), crons, store."""
    raise refuse(403, f"{ctx.resource}.{ctx.action} is not available on this server")
