"""The distributed problem solver: plan a task graph, schedule it on a team, verify, vote.

The planner turns a problem into a task graph (or checks a workflow given directly); the
scheduler releases every ready task as `Send`s to workers, each to a capable, healthy agent with
the least load; workers verify their results; tasks with replicas are decided by vote; a person
is asked when no capable agent is left or a vote splits; the aggregator composes the answer with
the trace of which agent did what.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any, Literal

import yaml
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send
from pydantic import BaseModel

from ensemble.agents import load_agents
from ensemble.context import Context
from ensemble.errors import InvalidInputError, describe_parse_error
from ensemble.graphs.compiling import add_agent
from ensemble.graphs.research import build_research
from ensemble.graphs.scenario import Scenario
from ensemble.nodes.aggregator import aggregator
from ensemble.nodes.scheduler import scheduler
from ensemble.nodes.solver_help import SOLVER_HELP, solver_help
from ensemble.nodes.solver_planner import solver_intake, solver_planner
from ensemble.nodes.solver_worker import solver_worker
from ensemble.nodes.team import team_of
from ensemble.state.solver import (
    STATE_VERSION,
    SolverInput,
    SolverOutput,
    SolverState,
    WorkOrder,
)
from ensemble.tasks import validate_workflow
from ensemble.tools.sandbox import sandbox_available
from ensemble.workspace import Workspace

NAME = "solver"


def dispatch(state: SolverState) -> list[Send] | Literal["help", "aggregator"]:
    """Send the released orders to workers; ask a person; or finish."""
    if state.outcome == "aborted":
        return "aggregator"
    if state.help:
        return "help"
    if state.queue:
        return [Send("worker", order) for order in state.queue]
    return "aggregator"


def route_after_help(state: SolverState) -> Literal["help", "scheduler", "aggregator"]:
    """A refused answer asks again; abort finishes; otherwise scheduling goes on."""
    if state.help_feedback:
        return "help"
    return "aggregator" if state.outcome == "aborted" else "scheduler"


def build_solver(
    workspace: Workspace,
) -> StateGraph[SolverState, Context, SolverInput, SolverOutput]:
    """Build the (uncompiled) solver graph; its nodes read and record in `workspace`."""
    builder = StateGraph(
        SolverState, context_schema=Context, input_schema=SolverInput, output_schema=SolverOutput
    )
    worker = solver_worker(build_research(workspace).compile(name="research_task"), workspace)
    builder.add_node("intake", partial(solver_intake, workspace=workspace))
    add_agent(builder, "planner", solver_planner, workspace=workspace)
    builder.add_node("scheduler", partial(scheduler, workspace=workspace))
    add_agent(builder, "worker", worker, retry=False, input_schema=WorkOrder, workspace=workspace)
    builder.add_node("help", partial(solver_help, workspace=workspace))
    builder.add_node("aggregator", partial(aggregator, workspace=workspace))
    builder.add_edge(START, "intake")
    builder.add_edge("intake", "planner")
    builder.add_edge("planner", "scheduler")
    builder.add_conditional_edges("scheduler", dispatch, ["worker", "help", "aggregator"])
    builder.add_edge("worker", "scheduler")
    builder.add_conditional_edges("help", route_after_help, ["help", "scheduler", "aggregator"])
    builder.add_edge("aggregator", END)
    return builder


def read_workflow(path: Path) -> dict[str, Any]:
    """A workflow file (YAML or JSON) as an object; checked against the team later."""
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except OSError as error:
        raise InvalidInputError(f"cannot read {path}: {error.strerror}") from None
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise InvalidInputError(describe_parse_error(error, str(path))) from None
    if not isinstance(data, dict):
        raise InvalidInputError(f"{path}: a workflow is an object with a `tasks` list")
    return data


def read_agents(path: Path) -> list[dict[str, Any]]:
    """Agent definitions from a file or folder, checked (errors name the file and line)."""
    return [a.model_dump(mode="json") for a in load_agents([path], replace=True).agents]


def check_input(valid: BaseModel) -> None:
    """Deeper checks before anything runs: the team, and the workflow against the team."""
    assert isinstance(valid, SolverInput)
    team = team_of(SolverState(agents=valid.agents, replace_team=valid.replace_team))
    if valid.workflow:
        workflow = validate_workflow(valid.workflow, team.capabilities(), "workflow")
        coded = [t.id for t in workflow.tasks if t.tool == "python"]
        if coded and not sandbox_available():
            raise InvalidInputError(
                f"task {coded[0]!r} runs Python, which needs the solver's sandbox "
                "(bubblewrap), and it does not work here: install it with "
                "`apt-get install bubblewrap` (`make demo` and `make test` do), then "
                "`ensemble doctor` says whether it works"
            )


SCENARIO = Scenario(
    name=NAME,
    state_version=STATE_VERSION,
    description="Distributed problem solver: planner, task graph, capability-based scheduling "
    "on an agent team, sandboxed tools, verification, voting and a human when stuck.",
    build=build_solver,
    input_schema=SolverInput,
    primary_field="problem",
    output_keys=tuple(SolverOutput.__annotations__),
    approve_answer={"action": "retry"},
    check_answer=SOLVER_HELP.check_answer,
    gates={SOLVER_HELP.kind: SOLVER_HELP},
    folders={"corpus": "corpus"},
    summary=lambda values: str(values.get("answer") or ""),  # the answer with its trace
    file_inputs={"tasks": ("workflow", read_workflow), "agents": ("agents", read_agents)},
    check_input=check_input,
)
