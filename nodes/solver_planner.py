"""The solver's planner: a workflow given as it is (validated), or a free-text problem decomposed.

A task graph proposed by a model is repaired where it can be (unknown dependencies dropped,
cycles broken, duplicate ids renamed) and refused honestly where it cannot: the run then works
the problem as one task, and the notes say so.
"""

from __future__ import annotations

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.runtime import Runtime
from pydantic import BaseModel, Field

from ensemble.context import Context
from ensemble.nodes.llm import ask_structured
from ensemble.nodes.team import team_of
from ensemble.progress import emit
from ensemble.prompts import render_prompt
from ensemble.state.inputs import validated
from ensemble.state.solver import SolverInput, SolverState
from ensemble.tasks import repair_plan, validate_workflow
from ensemble.workspace import Workspace

MAX_TASKS = 8


class PlannedTask(BaseModel):
    """One task as the planner model proposes it."""

    id: str = Field(description="Short id, e.g. 'facts'.")
    description: str = Field(description="What the agent must do.")
    capability: str = Field(description="The capability it needs.")
    depends_on: list[str] = Field(default_factory=list, description="Ids it needs first.")
    priority: int = Field(0, description="Higher runs first.")
    replicas: int = Field(1, description="Agents solving it independently (1 or 3).")


class TaskPlan(BaseModel):
    """The planner model's task graph."""

    tasks: list[PlannedTask] = Field(min_length=1, max_length=MAX_TASKS)


async def solver_intake(state: SolverState, *, workspace: Workspace) -> dict:
    """Validate the input inside the graph, for callers that skip the entry points' checks."""
    valid = validated(SolverInput, state, "solver")
    workspace.corpus_dir(valid.corpus)
    team_of(state)  # bad agent definitions stop here, before anything runs
    emit("intake", "finished", problem=valid.problem, workflow=bool(valid.workflow))
    fresh: dict[str, object] = {
        "tasks": [], "plan_notes": [], "queue": [], "help": None, "outcome": "", "answer": "",
    }  # fmt: skip
    return valid.model_dump() | fresh


async def solver_planner(
    state: SolverState, runtime: Runtime[Context], *, workspace: Workspace
) -> dict:
    """The task graph: the workflow checked against the team, or the problem decomposed."""
    if state.tasks:
        return {}
    team = team_of(state)
    capabilities = team.capabilities()
    if state.workflow:
        workflow = validate_workflow(state.workflow, capabilities, "workflow")
        tasks = [t.model_dump() for t in workflow.tasks]
        emit("planner", "finished", tasks=[t["id"] for t in tasks])
        return {"tasks": tasks}
    emit("planner", "started")
    model = workspace.chat_model(runtime.context, "planner")
    prompt = render_prompt(
        "solver_planner", max_tasks=MAX_TASKS, capabilities=", ".join(sorted(capabilities))
    )
    proposed = await ask_structured(
        model, TaskPlan, [SystemMessage(prompt), HumanMessage(str(state.problem))]
    )
    raw = [t.model_dump() for t in proposed.tasks] if proposed else []
    repaired, notes = repair_plan({"tasks": raw}, capabilities)
    if repaired is not None:
        workflow = repaired
    else:
        preferred: list[str] = [c for c in ("analysis", "writing", "research") if c in capabilities]
        fallback = (preferred or sorted(capabilities))[0]
        notes = [*notes, f"no usable task graph; the problem is worked as one {fallback} task"]
        workflow = validate_workflow(
            {"tasks": [{"id": "solve", "description": str(state.problem), "capability": fallback}]},
            capabilities,
            "fallback",
        )
    tasks = [t.model_dump() for t in workflow.tasks]
    emit("planner", "finished", tasks=[t["id"] for t in tasks], notes=notes)
    return {"tasks": tasks, "plan_notes": notes}
