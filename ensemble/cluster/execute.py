"""What a worker does with one claimed thread: the request, or whatever is left of it.

A request is recorded with the checkpoint it applies to (`at`): the thread's head when it was
submitted. A worker that finds the thread still there applies the request (start with the input,
answer the question, branch from the checkpoint). A worker that finds the thread moved on is
taking over from one that died or froze: it applies nothing again and continues from the latest
checkpoint, so finished agents are not redone and an answer is not given twice.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ensemble.cluster.runs import Claim
from ensemble.context import validate_context
from ensemble.graphs.registry import SCENARIOS
from ensemble.run_settings import RunSettings, for_thread
from ensemble.runner import (
    RunResult,
    Silent,
    drive,
    result_of,
    resume_command,
    thread_config,
    unfinished,
)
from ensemble.workspace import Workspace


async def execute(saver: Any, workspace: Workspace, held: Claim) -> RunResult:
    """Run the claimed thread on `saver` (fenced to `held.epoch`) until it ends or waits."""
    scenario = SCENARIOS[held.scenario]
    graph = scenario.compile(saver, workspace)
    request = held.request
    config = thread_config(held.thread_id)
    head = await saver.aget_tuple(config)
    head_id = head.config["configurable"]["checkpoint_id"] if head else None
    fresh = head_id == request.get("at")  # nothing has happened since the request was made
    yes = bool(request.get("yes"))

    def answerer(value: Any, scen: Any, values: dict[str, Any]) -> Any:
        return scen.approve_answer if yes else None  # otherwise: wait for a person

    kind = request["kind"]
    if kind == "start" and head is None:
        settings = RunSettings(
            context=validate_context(request["settings"]), origin=request["origin"]
        )
        return await drive(graph, scenario, config, request["input"], settings, Silent(), answerer)
    overrides = request.get("settings") if fresh and kind != "start" else None
    settings = await for_thread(saver, config, overrides, how=kind if fresh else "resume")
    snapshot = await graph.aget_state(config)
    payload: Any = None
    if fresh and kind == "resume" and "answer" in request and snapshot.interrupts:
        payload = resume_command(snapshot, request["answer"])
    elif fresh and kind == "fork":
        at = thread_config(held.thread_id, request["checkpoint"])
        branch = await graph.aget_state(at)
        config = branch.config
        if request.get("updates"):
            config = await graph.aupdate_state(branch.config, request["updates"])
    elif snapshot.interrupts:
        answer = answerer(snapshot.interrupts[0].value, scenario, {})
        if answer is None:  # still waiting for a person: nothing to run
            return result_of(snapshot, scenario, held.thread_id)
        payload = resume_command(snapshot, answer)
    elif not unfinished(snapshot):  # finished before the takeover
        return result_of(snapshot, scenario, held.thread_id)
    return await drive(graph, scenario, config, payload, settings, Silent(), answerer)


def start_request(data: dict[str, Any], settings: RunSettings, *, yes: bool) -> dict[str, Any]:
    """The request of a new run: the validated input and the settings resolved by the submitter."""
    return {
        "kind": "start",
        "at": None,
        "input": data,
        "settings": asdict(settings.context),
        "origin": dict(settings.origin),
        "yes": yes,
    }


def resume_request(
    at: str | None, overrides: dict[str, Any], answer: Any, *, yes: bool
) -> dict[str, Any]:
    """A resume of a thread whose head is `at`, with an answer to its question if given."""
    request: dict[str, Any] = {"kind": "resume", "at": at, "settings": overrides, "yes": yes}
    if answer is not None:
        request["answer"] = answer
    return request


def fork_request(
    at: str | None,
    checkpoint: str,
    updates: dict[str, Any],
    overrides: dict[str, Any],
    *,
    yes: bool,
) -> dict[str, Any]:
    """A branch from `checkpoint` of a thread whose head is `at`, with changed values."""
    return {
        "kind": "fork",
        "at": at,
        "checkpoint": checkpoint,
        "updates": updates,
        "settings": overrides,
        "yes": yes,
    }
