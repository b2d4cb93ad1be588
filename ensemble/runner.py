"""The headless run loop every entry point shares: start, resume, fork, answer, report.

The CLI, the evaluation harness and notebooks drive a scenario's compiled graph through this
module; what a person sees of a run is a `Progress` they pass in (the terminal's lines, nothing
for a script). It knows no terminal and no server: the layers above it only point down.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, StateSnapshot

from ensemble.errors import DatabaseError, NotFoundError
from ensemble.graphs.registry import SCENARIOS
from ensemble.graphs.scenario import Scenario
from ensemble.persistence import ensure_writable, open_async_checkpointer
from ensemble.resilience.pause import is_halt
from ensemble.run_settings import RunSettings
from ensemble.workspace import Workspace


class Progress(Protocol):
    """What a run reports while it goes: each agent event, and free-form lines."""

    def event(self, event: Any) -> None:
        """One event of the graph's custom stream (`{"agent", "status", ...}`)."""

    def line(self, text: str) -> None:
        """A line about the run itself (paused, answered, continuing)."""


class Silent:
    """A `Progress` that shows nothing (scripts, evaluation, tests)."""

    def event(self, event: Any) -> None:
        """Ignore the event."""

    def line(self, text: str) -> None:
        """Ignore the line."""


Answerer = Callable[[dict[str, Any], Scenario, dict[str, Any]], Any | None]
"""Given an interrupt value, return the answer to resume with, or None to stay paused."""


@dataclass
class RunResult:
    """What `--json` prints: the same shape for run, resume and fork."""

    thread_id: str
    scenario: str
    status: str  # done | interrupted | failed
    checkpoint_id: str | None = None
    output: dict[str, Any] | None = None
    interrupt: dict[str, Any] | None = None
    error: str | None = None
    next: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The JSON object printed by `--json`."""
        return asdict(self)


def new_thread_id() -> str:
    """A fresh thread id: a UUID, the only form the LangGraph server accepts for thread ids."""
    return str(uuid.uuid4())


def thread_config(thread_id: str, checkpoint_id: str | None = None) -> RunnableConfig:
    """The config addressing a thread (and optionally one of its checkpoints)."""
    configurable: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": ""}
    if checkpoint_id:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


async def scenario_of(saver: BaseCheckpointSaver, thread_id: str) -> Scenario:
    """Which scenario a thread belongs to, from its latest checkpoint's metadata.

    CLI runs record `scenario`; runs made through `langgraph dev` record `graph_id`.
    """
    saved = await saver.aget_tuple(thread_config(thread_id))
    if saved is None:
        raise NotFoundError(f"unknown thread {thread_id!r}")
    name = saved.metadata.get("scenario") or saved.metadata.get("graph_id")
    if name not in SCENARIOS:
        raise NotFoundError(f"thread {thread_id!r} belongs to no known scenario ({name!r})")
    return SCENARIOS[str(name)]


async def require_checkpoint(graph: CompiledStateGraph, config: RunnableConfig) -> StateSnapshot:
    """Return the snapshot at `config`; raise `NotFoundError` for unknown threads/checkpoints."""
    saver = graph.checkpointer
    if saver is None or await saver.aget_tuple(config) is None:  # type: ignore[union-attr]
        conf = config["configurable"]
        if conf.get("checkpoint_id"):
            raise NotFoundError(
                f"unknown checkpoint {conf['checkpoint_id']!r} in thread {conf['thread_id']!r}"
            )
        raise NotFoundError(f"unknown thread {conf['thread_id']!r}")
    return await graph.aget_state(config)


def pending_interrupt(snapshot: StateSnapshot) -> dict[str, Any] | None:
    """The first pending interrupt of a snapshot as `{"id", "value"}`, if any."""
    if not snapshot.interrupts:
        return None
    first = snapshot.interrupts[0]
    return {"id": first.id, "value": first.value}


def resume_command(snapshot: StateSnapshot, answer: Any) -> Command:
    """Resume with `answer`; several pending questions (parallel agents paused) all get it."""
    if len(snapshot.interrupts) > 1:
        return Command(resume={i.id: answer for i in snapshot.interrupts})
    return Command(resume=answer)


def unfinished(snapshot: StateSnapshot) -> bool:
    """Whether the thread has work left: tasks to run, or results saved but not yet applied.

    A process killed between a step's writes and its next checkpoint leaves `next` empty; only
    `tasks` shows that the run must go on.
    """
    return bool(snapshot.next or snapshot.tasks)


def result_of(snapshot: StateSnapshot, scenario: Scenario, thread_id: str) -> RunResult:
    """Describe a thread's state: done, interrupted (waiting for an answer) or unfinished."""
    values = snapshot.values if isinstance(snapshot.values, dict) else {}
    interrupt = pending_interrupt(snapshot)
    status = "interrupted" if interrupt else ("failed" if unfinished(snapshot) else "done")
    output = {k: values.get(k) for k in scenario.output_keys if k in values}
    return RunResult(
        thread_id=thread_id,
        scenario=scenario.name,
        status=status,
        checkpoint_id=snapshot.config["configurable"].get("checkpoint_id"),
        output=output if status == "done" else None,
        interrupt=interrupt,
        next=list(snapshot.next),
    )


async def drive(
    graph: CompiledStateGraph[Any, Any, Any, Any],
    scenario: Scenario,
    config: RunnableConfig,
    first_input: Any,
    run_settings: RunSettings,
    progress: Progress,
    answerer: Answerer,
) -> RunResult:
    """Run until the graph ends or pauses with no answer available.

    Each answered interrupt resumes the same thread. `durability="sync"` saves every finished
    task before the next starts, so a killed process loses no finished work. The run settings
    ride in every checkpoint's metadata, so a later resume or fork goes on with them.
    """
    thread_id = config["configurable"]["thread_id"]
    extra: dict[str, Any] = {"metadata": {"scenario": scenario.name, **run_settings.metadata()}}
    run_config: RunnableConfig = {**config, **extra}  # type: ignore[typeddict-item]
    payload = first_input
    asked: dict[str, str] = {}  # question -> the answer given, so no question loops
    try:
        while True:
            try:
                async for mode, chunk in graph.astream(
                    payload,
                    run_config,
                    context=run_settings.context,
                    stream_mode=["custom", "updates"],
                    durability="sync",
                ):
                    if mode == "custom":
                        progress.event(chunk)
            except Exception as error:  # the run failed: report it, the thread stays resumable
                result = result_of(
                    await graph.aget_state(thread_config(thread_id)), scenario, thread_id
                )
                result.status, result.error = "failed", f"{type(error).__name__}: {error}"
                return result
            # After a fork the thread's newest checkpoint is the branch just run.
            run_config = {**thread_config(thread_id), **extra}  # type: ignore[typeddict-item]
            snapshot = await graph.aget_state(thread_config(thread_id))
            result = result_of(snapshot, scenario, thread_id)
            if result.status != "interrupted" or result.interrupt is None:
                return result
            question = result.interrupt["value"]
            if is_halt(question):
                progress.line(f"[paused] {question['reason']}")
                return result  # a person decides: retry, raise the budget, or stop
            if asked.get(repr(question)) == repr(scenario.approve_answer):
                progress.line("[human] the same question came back after the automatic answer")
                return result  # stay paused: answering it the same way again would loop forever
            values = snapshot.values if isinstance(snapshot.values, dict) else {}
            answer = answerer(question, scenario, values)
            if answer is None:
                return result
            asked[repr(question)] = repr(answer)
            progress.line(f"[human] answered: {answer}")
            payload = resume_command(snapshot, answer)
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C: say which thread to resume
        raise RunStopped(thread_id) from None


class RunStopped(KeyboardInterrupt):
    """The person stopped a run (Ctrl-C); the thread can be resumed."""

    def __init__(self, thread_id: str) -> None:
        """Keep the thread's id for the message that says how to go on."""
        super().__init__(thread_id)
        self.thread_id = thread_id


@asynccontextmanager
async def open_thread(
    workspace: Workspace, thread_id: str, *, write: bool = False
) -> AsyncIterator[tuple[Scenario, CompiledStateGraph[Any, Any, Any, Any], BaseCheckpointSaver]]:
    """Open the workspace's database; yield the thread's scenario, its graph and the saver.

    With `write`, fail at once if another process holds the write lock.
    """
    db = workspace.db
    if not db.is_postgres and not db.sqlite_path.exists():
        raise DatabaseError(f"no database at {db}, so no thread {thread_id!r}")
    async with open_async_checkpointer(db, create=False) as saver:
        if write:
            await ensure_writable(saver, db)
        if write and db.is_postgres:  # one writer per thread: not while a worker has it
            from ensemble.cluster.runs import refuse_if_active

            await refuse_if_active(db, thread_id)
        scenario = await scenario_of(saver, thread_id)
        yield scenario, scenario.compile(saver, workspace), saver
