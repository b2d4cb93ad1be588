"""State of the distributed problem solver: a task graph, attempts by agents, votes, a result.

Tasks come from a workflow file or from the planner's decomposition of a free-text problem.
Every attempt (an agent working one replica of a task) is kept, keyed by attempt id, so parallel
workers and re-runs never duplicate entries and the run's output can show who did what.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from typing_extensions import TypedDict

from ensemble.db.state_versions import StateVersion
from ensemble.state.reducers import merge_dicts

Outcome = Literal["", "solved", "partial", "unanswered", "aborted"]
MAX_PROBLEM_CHARS = 4000


class SolverInput(BaseModel):
    """A problem as free text, or a task graph (a workflow) given directly."""

    model_config = ConfigDict(extra="forbid")

    problem: str | None = Field(
        None,
        max_length=MAX_PROBLEM_CHARS,
        description="The problem, in words (planned into tasks).",
    )
    workflow: dict[str, Any] | None = Field(
        None, description="The task graph as an object (the CLI's --tasks FILE reads it)."
    )
    agents: list[dict[str, Any]] = Field(
        default_factory=list,
        max_length=64,
        description="Extra agent definitions (the CLI's --agents FILE/DIR reads them).",
    )
    replace_team: bool = Field(
        False, description="Use only the given agents, not the default team."
    )
    max_attempts: int = Field(3, ge=1, le=6, description="Attempts per task replica.")
    corpus: str | None = Field(None, description="Folder corpus for research tasks.")

    @model_validator(mode="after")
    def _one_source(self) -> SolverInput:
        problem = (self.problem or "").strip()
        if bool(problem) == bool(self.workflow):
            raise ValueError("give either a problem (text) or a workflow (--tasks FILE), not both")
        self.problem = problem or None
        return self


class Attempt(TypedDict):
    """One agent working one replica of one task."""

    id: str
    task: str
    agent: str
    replica: int
    ok: bool
    value: Any
    confidence: float
    error: str | None
    checks: list[str]
    started: float
    seconds: float


class WorkOrder(TypedDict):
    """What one worker is sent: a task, the agent that does it, which replica and attempt."""

    task: dict[str, Any]
    agent: dict[str, Any]
    replica: int
    attempt_id: str
    inputs: dict[str, Any]
    corpus: str | None


class TaskResult(TypedDict):
    """How a task ended."""

    status: Literal["done", "skipped", "failed"]
    value: Any
    agents: list[str]
    vote: dict[str, Any] | None
    note: str


class HelpRequest(TypedDict):
    """Why the run needs a person (no capable agent left, or a split vote)."""

    task: str
    reason: str
    detail: dict[str, Any]


STATE_VERSION = StateVersion(current=1, migrations={})
"""The version of `SolverState` that checkpoints record.

Raise `current` and add `migrations[old]` (a function from the old values to the new, here next to
the state) whenever a change would misread an older checkpoint: a key renamed or removed, a value's
shape changed. A new key with a default needs none. `tests/fixtures/release-*.db` holds threads
written by a release; `tests/integration/test_release_database.py` reads them after every change.
"""


@dataclass(kw_only=True)
class SolverState:
    """Everything the solver graph checkpoints."""

    problem: str | None = None
    """The problem in words (None when a workflow was given)."""
    workflow: dict[str, Any] | None = None
    """The workflow as given."""
    agents: list[dict[str, Any]] = field(default_factory=list)
    """Extra agent definitions for this run."""
    replace_team: bool = False
    """Whether the given agents replace the default team."""
    max_attempts: int = 3
    """Attempts per task replica."""
    corpus: str | None = None
    """Folder corpus for research tasks."""
    tasks: list[dict[str, Any]] = field(default_factory=list)
    """The validated task graph (TaskSpec dumps), in file order."""
    plan_notes: list[str] = field(default_factory=list)
    """What the planner had to repair in a proposed task graph."""
    attempts: Annotated[dict[str, Attempt], merge_dicts] = field(default_factory=dict)
    """Every attempt, by attempt id."""
    results: Annotated[dict[str, TaskResult], merge_dicts] = field(default_factory=dict)
    """Finished tasks, by task id."""
    queue: list[WorkOrder] = field(default_factory=list)
    """The work orders the scheduler released this round (sent to workers)."""
    help: HelpRequest | None = None
    """The question waiting for a person, if any."""
    help_feedback: str = ""
    """Why the last answer to a help request was refused."""
    retry_all: list[str] = field(default_factory=list)
    """Tasks a person asked to retry with every capable agent again."""
    discarded: list[str] = field(default_factory=list)
    """Attempts that no longer count (the answers of a split vote a person sent back)."""
    outcome: Outcome = ""
    """How the run ended."""
    answer: str = ""
    """The aggregated answer, with the trace of which agent did what."""
    dag: list[dict[str, Any]] = field(default_factory=list)
    """Per task: agents, attempts, votes and timings (the run's output)."""


class SolverOutput(TypedDict):
    """What a finished solver run returns."""

    problem: str | None
    answer: str
    outcome: Outcome
    results: dict[str, TaskResult]
    dag: list[dict[str, Any]]
    plan_notes: list[str]
