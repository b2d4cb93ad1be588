"""Checks on what a server client asks for, before a run is created.

Runs through the server take their input, context and command from the client, so each is
checked here (a 4xx naming the field, no run created) and again where it is used (the graph's
intake and the corpus policy), because a client can also write state directly.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, MutableMapping
from dataclasses import asdict
from typing import Any

from langgraph_sdk import Auth

from ensemble.errors import EnsembleError
from ensemble.graphs.registry import SCENARIOS
from ensemble.graphs.scenario import Scenario
from ensemble.persistence import open_checkpointer
from ensemble.run_settings import RunSettings, resolve, saved_in
from ensemble.runner import thread_config
from ensemble.server.policy import ServerPolicy, served_workspace

NAMESPACE_GRAPH = uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")
"""LangGraph's namespace for the assistant ids of graphs named in langgraph.json."""

ALLOWED_COMMAND_KEYS = frozenset({"resume"})
"""A client may answer a pending question; it may not write state or choose the next node."""


def refuse(status: int, detail: str) -> Auth.exceptions.HTTPException:
    """The error a client sees (the server turns it into an HTTP response)."""
    return Auth.exceptions.HTTPException(status_code=status, detail=detail)


def scenario_of_assistant(assistant_id: Any) -> Scenario | None:
    """The scenario an assistant id stands for (only operator-defined assistants exist)."""
    for name, scenario in SCENARIOS.items():
        if str(uuid.uuid5(NAMESPACE_GRAPH, name)) == str(assistant_id):
            return scenario
    return None


def is_answer(kwargs: Mapping[str, Any]) -> bool:
    """True when the run answers a pending human review (`command={"resume": ...}`)."""
    command = kwargs.get("command")
    return isinstance(command, Mapping) and command.get("resume") is not None


def check_command(kwargs: Mapping[str, Any]) -> None:
    """Refuse commands that write state or jump to a node, and server-side webhooks."""
    command = kwargs.get("command")
    if command is not None:
        if not isinstance(command, Mapping):
            raise refuse(422, "command must be an object")
        used = {k for k, v in command.items() if v not in (None, [], {})}
        if used - ALLOWED_COMMAND_KEYS:
            raise refuse(
                422,
                f"command.{sorted(used - ALLOWED_COMMAND_KEYS)[0]}: not accepted; "
                "a client may only answer with command.resume",
            )
    if kwargs.get("webhook"):
        raise refuse(422, "webhook: this server makes no outgoing requests")


async def check_input(
    scenario: Scenario, kwargs: MutableMapping[str, Any], policy: ServerPolicy
) -> None:
    """Validate a run's input with the scenario's own schema; store the normalised input.

    Agent definitions in the input name models too: they are held to the operator's list.
    Validation and the folder check touch the machine (a solver workflow probes the sandbox),
    so they run in a worker thread: the server's event loop never blocks.
    """
    raw = kwargs.get("input")
    if raw is None:
        return
    try:
        valid = (await asyncio.to_thread(scenario.validate_input, raw)).model_dump()
        for n, agent in enumerate(valid.get("agents") or []):
            if isinstance(agent, Mapping) and agent.get("model") is not None:
                check_model_choice(f"input.agents[{n}].model", agent["model"], policy)
        await asyncio.to_thread(check_folders, scenario, valid)
    except EnsembleError as error:
        raise refuse(422, str(error)) from None
    kwargs["input"] = valid


def check_folders(scenario: Scenario, values: Mapping[str, Any]) -> None:
    """Every input that names a folder must name one the operator allows (nothing is made)."""
    current = served_workspace()
    for name, kind in scenario.folders.items():
        if kind == "corpus":
            current.corpus_dir(values.get(name))
        else:
            current.output_dir(values.get(name))


async def apply_settings(
    value: MutableMapping[str, Any], kwargs: MutableMapping[str, Any], policy: ServerPolicy
) -> RunSettings:
    """Give the run the thread's saved settings plus what the client set explicitly.

    The client's settings are held to the operator's policy first (models it offers, the
    budget ceiling); the result becomes the run's context, and its run metadata, so the
    checkpoints it writes carry the settings for the next resume or fork.
    """
    client = kwargs.get("context") or {}
    config = kwargs.get("config") or {}
    checkpoint_id = (config.get("configurable") or {}).get("checkpoint_id")
    thread_id = value.get("thread_id")
    if not isinstance(client, Mapping):
        raise refuse(422, "context must be an object")
    check_client_settings(client, policy)
    saved = await asyncio.to_thread(_saved, thread_id, checkpoint_id) if thread_id else None
    try:  # model specs are checked by building them: imports, files (a worker thread)
        settings = await asyncio.to_thread(resolve, saved, client, how="client")
    except EnsembleError as error:
        raise refuse(422, str(error)) from None
    budget: dict[str, float] = {str(k): v for k, v in settings.context.budget.items()}
    for name, limit in policy.budget_ceiling.items():  # also caps what a thread saved earlier
        budget[name] = min(budget.get(name, limit), limit)
    settings.context.budget = budget  # type: ignore[assignment]  # names checked by the policy
    kwargs["context"] = asdict(settings.context)
    metadata = value.get("metadata")
    if isinstance(metadata, MutableMapping):
        metadata.update(settings.metadata())
    return settings


def check_client_settings(client: Mapping[str, Any], policy: ServerPolicy) -> None:
    """Refuse what only the operator chooses, with a 422 naming the field.

    That is: models the server does not offer, model options (`?latency=`), prices, and
    budgets above the ceiling.
    """
    specs: list[tuple[str, Any]] = [("context.model", client.get("model"))]
    for name in ("role_models", "fallbacks"):
        chosen = client.get(name)
        if isinstance(chosen, Mapping):
            for role, spec in chosen.items():
                listed = spec if isinstance(spec, list) else [spec]
                specs += [(f"context.{name}.{role}", s) for s in listed]
    for where, spec in specs:
        check_model_choice(where, spec, policy)
    if client.get("prices"):
        raise refuse(422, "context.prices: prices are the operator's to set, not a client's")
    budget = client.get("budget")
    if isinstance(budget, Mapping):
        for name, asked in budget.items():
            limit = policy.budget_ceiling.get(str(name))
            if limit is not None and _number(asked) > limit:
                raise refuse(
                    422,
                    f"context.budget.{name}: {asked} is above this server's ceiling of "
                    f"{limit:g} (set by the operator with --max-budget)",
                )


def check_model_choice(where: str, spec: Any, policy: ServerPolicy) -> None:
    """Refuse a client's model spec that the operator does not offer, or that sets options."""
    if not isinstance(spec, str):
        return  # not a spec at all: the schema's own validation names it
    offered = policy.client_models()
    if spec.strip() in offered:
        return
    if "?" in spec:
        raise refuse(
            422,
            f"{where}: model options such as {spec[spec.index('?') :]!r} are the "
            "operator's to set, not a client's",
        )
    raise refuse(
        422,
        f"{where}: {spec!r} is not offered by this server (offered: "
        f"{', '.join(sorted(offered))}; the operator adds models with --allow-model)",
    )


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("-inf")  # not a number: the context's own validation says so


def _saved(thread_id: Any, checkpoint_id: str | None) -> Any:
    db = served_workspace().db
    if not db.is_postgres and not db.sqlite_path.is_file():
        return None
    with open_checkpointer(db, create=False) as saver:
        saved = saver.get_tuple(thread_config(str(thread_id), checkpoint_id))
    return saved_in(saved.metadata if saved else None)
