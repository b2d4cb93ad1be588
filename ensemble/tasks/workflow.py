"""The task graph: a workflow file of tasks with dependencies, checked before anything runs.

A person writes a workflow in YAML or JSON; a planner model may propose one too. Both are
validated here up front, so a typo, a missing dependency or a cycle fails in a second with one
line naming the task, not an hour into a run. A model's plan is first repaired where a repair
is safe, and every repair is noted, or it is refused.
"""

from __future__ import annotations

import json
import re
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ensemble.errors import EnsembleError, describe_parse_error, describe_validation_error
from ensemble.voting import VotePolicy

MAX_TASKS = 50


class WorkflowError(EnsembleError, ValueError):
    """A workflow that cannot run: the message names the task at fault."""


class Check(BaseModel):
    """A test a task's answer must pass before it counts as done.

    Attributes:
        kind: equals (`value`), range (`min` and/or `max`), contains or regex (a string `value`).
        value: What equals compares with, the text contains looks for, or the pattern.
        min: Lower bound of a range check, inclusive.
        max: Upper bound of a range check, inclusive.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["equals", "range", "contains", "regex"]
    value: Any = None
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _fits_kind(self) -> Check:
        """Refuse a check that could never be evaluated, now rather than after the task ran."""
        if self.kind == "range":
            if self.min is None and self.max is None:
                raise ValueError("a range check needs min or max")
            if self.min is not None and self.max is not None and self.min > self.max:
                raise ValueError(f"a range check has min {self.min} above max {self.max}")
        elif self.kind in ("contains", "regex"):
            if not isinstance(self.value, str) or not self.value:
                raise ValueError(f"a {self.kind} check needs a text value")
            if self.kind == "regex":
                try:
                    re.compile(self.value)
                except re.error as error:
                    raise ValueError(f"bad regex {self.value!r}: {error}") from None
        elif self.value is None:
            raise ValueError("an equals check needs a value")
        return self


class TaskSpec(BaseModel):
    """One task of a workflow.

    Attributes:
        id: Short name other tasks depend on: `[a-z0-9_-]{1,40}`.
        description: What to do, as the agent will read it.
        capability: Which kind of agent does it (e.g. research, write, review).
        depends_on: Ids of the tasks whose results this one needs.
        priority: -100..100; among ready tasks the higher runs first.
        replicas: 1..7 agents answer independently and vote (see `vote`).
        expect: The answer's type: text, number, bool or json.
        tool: A tool the task runs instead of free text, fed with `input`.
        input: Code for python, an expression for calculator, a question for research.
        checks: Tests the answer must pass.
        vote: How replicas settle; defaults to majority (numeric for numbers) when replicated.
    """

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9_-]{1,40}$")
    description: str = Field(min_length=1, max_length=2000)
    capability: str = Field(pattern=r"^[a-z0-9_-]+$")
    depends_on: list[str] = Field(default_factory=list)
    priority: int = Field(default=0, ge=-100, le=100)
    replicas: int = Field(default=1, ge=1, le=7)
    expect: Literal["text", "number", "bool", "json"] = "text"
    tool: Literal["python", "calculator", "research"] | None = None
    input: str | None = None
    checks: list[Check] = Field(default_factory=list)
    vote: VotePolicy | None = None

    @field_validator("depends_on")
    @classmethod
    def _once_each(cls, ids: list[str]) -> list[str]:
        """A dependency named twice is still one dependency."""
        return list(dict.fromkeys(ids))

    @model_validator(mode="after")
    def _complete(self) -> TaskSpec:
        """Give a tool its input, and replicas a way to settle, before the task runs."""
        if self.tool is not None and not (self.input and self.input.strip()):
            raise ValueError(f"tool {self.tool!r} needs an input")
        if self.replicas > 1 and self.vote is None:
            numeric = self.expect == "number"
            self.vote = VotePolicy(policy="numeric") if numeric else VotePolicy()
        return self


class Workflow(BaseModel):
    """A validated set of tasks: ids unique, dependencies present, no cycle."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = None
    tasks: list[TaskSpec] = Field(min_length=1, max_length=MAX_TASKS)

    @model_validator(mode="after")
    def _is_a_dag(self) -> Workflow:
        """Hold the graph's rules however the workflow was built, not only when loaded."""
        check_graph(self.tasks)
        return self

    def task(self, task_id: str) -> TaskSpec:
        """The task called `task_id`."""
        for task in self.tasks:
            if task.id == task_id:
                return task
        raise WorkflowError(f"no task {task_id!r}")


def load_workflow(path: Path, capabilities: set[str] | None = None) -> Workflow:
    """Read and validate a workflow file: YAML (.yaml, .yml) or JSON (.json), by suffix."""
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise WorkflowError(f"{path}: expected a .yaml, .yml or .json file")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise WorkflowError(f"{path}: cannot read: {error.strerror or error}") from None
    try:
        data = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise WorkflowError(describe_parse_error(error, str(path))) from None
    return validate_workflow(data, capabilities, source=str(path))


def validate_workflow(
    data: Any, capabilities: set[str] | None = None, source: str = "workflow"
) -> Workflow:
    """Validate a parsed workflow; raise `WorkflowError` naming the task at fault.

    Args:
        data: The parsed file: a mapping with `tasks` and an optional `title`.
        capabilities: The capabilities agents offer; None skips that check.
        source: Where the data came from, prefixed to every message.
    """
    if not isinstance(data, dict):
        raise WorkflowError(f"{source}: expected a mapping with 'tasks', got {_kind(data)}")
    unknown = sorted(set(data) - {"title", "tasks"}, key=str)
    if unknown:
        raise WorkflowError(f"{source}: unknown field {unknown[0]!r} (allowed: title, tasks)")
    title = data.get("title")
    if title is not None and not isinstance(title, str):
        raise WorkflowError(f"{source}: title must be text, got {_kind(title)}")
    raw_tasks = data.get("tasks")
    if not isinstance(raw_tasks, list) or not raw_tasks:
        raise WorkflowError(f"{source}: 'tasks' must be a non-empty list")
    if len(raw_tasks) > MAX_TASKS:
        raise WorkflowError(f"{source}: {len(raw_tasks)} tasks, at most {MAX_TASKS} allowed")
    tasks = [_task(raw, index, source) for index, raw in enumerate(raw_tasks)]
    try:
        check_graph(tasks, capabilities)
    except WorkflowError as error:
        raise WorkflowError(f"{source}: {error}") from None
    return Workflow(title=title, tasks=tasks)


def check_graph(tasks: list[TaskSpec], capabilities: set[str] | None = None) -> None:
    """Raise `WorkflowError` on a duplicate id, a missing dependency, a cycle, an unknown skill."""
    first_at: dict[str, int] = {}
    for index, task in enumerate(tasks):
        if task.id in first_at:
            raise WorkflowError(
                f"task {task.id!r} is defined twice (tasks #{first_at[task.id] + 1} "
                f"and #{index + 1})"
            )
        first_at[task.id] = index
    for task in tasks:
        for dep in task.depends_on:
            if dep not in first_at:
                raise WorkflowError(f"task {task.id!r} depends on {dep!r}, which is not a task")
    if capabilities is not None:
        for task in tasks:
            if task.capability not in capabilities:
                known = ", ".join(sorted(capabilities)) or "none"
                raise WorkflowError(
                    f"task {task.id!r} needs capability {task.capability!r}; known: {known}"
                )
    cycle = find_cycle({task.id: task.depends_on for task in tasks})
    if cycle:
        raise WorkflowError(f"tasks form a cycle: {' -> '.join(cycle)} (each depends on the next)")


def find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """A cycle in `graph` (id -> dependencies), or None.

    The cycle starts and ends at its earliest id in `graph`'s order and each id depends on the
    next, e.g. [a, b, a]: the last step is the edge that closes it, the one a repair drops.
    """
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as error:
        ring = list(reversed(error.args[1][1:]))  # graphlib lists each id before its dependents
        order = list(graph)
        at = ring.index(min(ring, key=order.index))
        return ring[at:] + ring[: at + 1]
    return None


def ready(workflow: Workflow, done: set[str], running: set[str]) -> list[TaskSpec]:
    """Tasks that can start now: dependencies done, not done or running; by priority, then file."""
    started = done | running
    waiting = [
        task
        for task in workflow.tasks
        if task.id not in started and all(dep in done for dep in task.depends_on)
    ]
    return sorted(waiting, key=lambda task: -task.priority)  # stable: file order among equals


def repair_plan(raw: Any, capabilities: set[str]) -> tuple[Workflow | None, list[str]]:
    """Turn a model's proposed plan into a valid workflow, noting every repair; or refuse.

    Accepted: a mapping with `tasks` (and `title`), a mapping of id -> task, one task, or a list
    of tasks. Repairs: ids made valid and unique (`x`, `x-2`), unknown fields dropped, an unknown
    capability mapped to a known one only when one name contains the other, dependencies on
    unknown or dropped tasks dropped, each cycle broken at the edge that closes it. A task that
    cannot be repaired is dropped.

    Returns:
        The workflow, or None when no task is left; and the notes, one per repair.
    """
    notes: list[str] = []
    title, items = _plan_items(raw, notes)
    if len(items) > MAX_TASKS:
        notes.append(f"kept the first {MAX_TASKS} of {len(items)} tasks")
        items = items[:MAX_TASKS]
    tasks: dict[str, dict[str, Any]] = {}
    aliases: dict[str, str | None] = {}  # each id as the model wrote it -> kept id, None: dropped
    for index, item in enumerate(items):
        fixed = _repair_task(item, index, set(tasks), capabilities, notes)
        if fixed is not None:
            tasks[fixed["id"]] = fixed
        raw_id = item.get("id") if isinstance(item, dict) else None
        if isinstance(raw_id, str) and aliases.get(raw_id) is None:
            aliases[raw_id] = fixed["id"] if fixed is not None else None
    _repair_dependencies(tasks, aliases, notes)
    if not tasks:
        notes.append("no usable task left: plan refused")
        return None, notes
    try:
        workflow = validate_workflow(
            {"title": title, "tasks": list(tasks.values())}, capabilities, source="plan"
        )
    except WorkflowError as error:  # pragma: no cover - the repairs above should prevent it
        notes.append(f"plan refused: {error}")
        return None, notes
    return workflow, notes


def _task(raw: Any, index: int, source: str) -> TaskSpec:
    name = _task_name(raw, index)
    if not isinstance(raw, dict):
        raise WorkflowError(f"{source}: task {name}: expected a mapping, got {_kind(raw)}")
    try:
        return TaskSpec.model_validate(raw)
    except ValidationError as error:
        problem = describe_validation_error(error, known=TaskSpec.model_fields)
        raise WorkflowError(f"{source}: task {name}: {problem}") from None


def _task_name(raw: Any, index: int) -> str:
    """'fetch' when the task has a usable id, else its position: '#3'."""
    task_id = raw.get("id") if isinstance(raw, dict) else None
    if isinstance(task_id, str) and task_id.strip():
        return repr(task_id)
    return f"#{index + 1}"


def _kind(value: Any) -> str:
    for kind, name in ((dict, "a mapping"), (list, "a list"), (str, "text")):
        if isinstance(value, kind):
            return name
    return "nothing" if value is None else type(value).__name__


def _plan_items(raw: Any, notes: list[str]) -> tuple[str | None, list[Any]]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            notes.append("plan is not JSON")
            return None, []
    if isinstance(raw, list):
        return None, raw
    if not isinstance(raw, dict):
        notes.append(f"plan is {_kind(raw)}, expected tasks")
        return None, []
    title = raw.get("title") if isinstance(raw.get("title"), str) else None
    if isinstance(raw.get("tasks"), list):
        return title, raw["tasks"]
    if "description" in raw:
        return None, [raw]
    if raw and all(isinstance(v, dict) for v in raw.values()):
        return None, [{"id": str(k), **v} for k, v in raw.items()]
    notes.append("plan has no list of tasks")
    return None, []


def _repair_task(
    item: Any, index: int, taken: set[str], capabilities: set[str], notes: list[str]
) -> dict[str, Any] | None:
    """One task made valid, or None (noted) when it cannot be."""
    name = _task_name(item, index)
    if not isinstance(item, dict):
        notes.append(f"task {name}: dropped, {_kind(item)} is not a task")
        return None
    task = {k: v for k, v in item.items() if k in TaskSpec.model_fields}
    dropped = sorted(set(map(str, item)) - set(TaskSpec.model_fields))
    if dropped:
        notes.append(f"task {name}: dropped unknown field(s) {', '.join(dropped)}")
    task["id"] = _repair_id(task.get("id"), index, taken, notes)
    capability = _closest_capability(task.get("capability"), capabilities)
    if capability is None:
        shown = task.get("capability")
        known = ", ".join(sorted(capabilities)) or "none"
        notes.append(f"task {name}: dropped, capability {shown!r} is not known ({known})")
        return None
    if capability != task.get("capability"):
        notes.append(f"task {name}: capability {task.get('capability')!r} read as {capability!r}")
        task["capability"] = capability
    deps = task.get("depends_on", [])
    if isinstance(deps, str):
        deps = [deps]
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        notes.append(f"task {name}: dropped unreadable depends_on {deps!r}")
        deps = [d for d in deps if isinstance(d, str)] if isinstance(deps, list) else []
    task["depends_on"] = deps
    try:
        TaskSpec.model_validate({**task, "depends_on": []})
    except ValidationError as error:
        notes.append(
            f"task {name}: dropped, {describe_validation_error(error, known=TaskSpec.model_fields)}"
        )
        return None
    return task


def _repair_id(raw_id: Any, index: int, taken: set[str], notes: list[str]) -> str:
    text = raw_id if isinstance(raw_id, str) else ""
    base = re.sub(r"[^a-z0-9_-]+", "-", text.strip().lower()).strip("-")[:40] or f"task-{index + 1}"
    if base != raw_id:
        notes.append(f"task #{index + 1}: id {raw_id!r} replaced by {base!r}")
    task_id, n = base, 1
    while task_id in taken:
        n += 1
        suffix = f"-{n}"
        task_id = base[: 40 - len(suffix)] + suffix
    if task_id != base:
        notes.append(f"task #{index + 1}: duplicate id {base!r} renamed {task_id!r}")
    return task_id


def _closest_capability(raw: Any, capabilities: set[str]) -> str | None:
    """`raw` if known; else the known name containing it or contained in it, nearest in length."""
    if not isinstance(raw, str):
        return None
    if raw in capabilities:
        return raw
    wanted = raw.strip().lower()
    if wanted in capabilities:
        return wanted
    related = [c for c in capabilities if wanted and (c in wanted or wanted in c)]
    return min(related, key=lambda c: (abs(len(c) - len(wanted)), c), default=None)


def _repair_dependencies(
    tasks: dict[str, dict[str, Any]], aliases: dict[str, str | None], notes: list[str]
) -> None:
    """Follow renamed ids, drop dependencies on unknown tasks, then break cycles; note each.

    The edge dropped for a cycle is the one that closes it (see `find_cycle`).
    """
    for task_id, task in tasks.items():
        kept: list[str] = []
        for dep in task["depends_on"]:
            target = aliases.get(dep, dep if dep in tasks else None)
            if target is None:
                why = "dropped" if dep in aliases else "unknown"
                notes.append(f"task {task_id!r}: dropped dependency on {why} task {dep!r}")
            elif target not in kept:
                kept.append(target)
        task["depends_on"] = kept
    while cycle := find_cycle({task_id: task["depends_on"] for task_id, task in tasks.items()}):
        node, dep = cycle[-2], cycle[-1]
        tasks[node]["depends_on"].remove(dep)
        notes.append(
            f"task {node!r}: dropped dependency on {dep!r} to break the cycle {' -> '.join(cycle)}"
        )
