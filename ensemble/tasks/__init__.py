"""The task graph: workflows of dependent tasks, validated before they run."""

from __future__ import annotations

from ensemble.tasks.workflow import (
    Check,
    TaskSpec,
    Workflow,
    WorkflowError,
    check_graph,
    find_cycle,
    load_workflow,
    ready,
    repair_plan,
    validate_workflow,
)

__all__ = [
    "Check",
    "TaskSpec",
    "Workflow",
    "WorkflowError",
    "check_graph",
    "find_cycle",
    "load_workflow",
    "ready",
    "repair_plan",
    "validate_workflow",
]
