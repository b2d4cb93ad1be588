"""Parallel efficiency: wall time over the critical path of model time, model latency 1 s.

    python -m benchmarks.parallel [--latency 1.0] [--researchers 1 4 16] [--width 10 --depth 5]

The model is Ensemble's offline model with a fixed latency per call, wrapped to record every
call with the graph task and super-step that made it (`benchmarks.common.RecordingModel`). The
critical path is the number of model calls no schedule can overlap (per super-step, the
busiest task's calls, summed) times the latency; efficiency = wall time / critical path, so 1.0
is perfect and the excess is orchestration, database writes and the model's own CPU time.

- research: the research scenario through the runner (`drive`) on Ensemble's SQLite saver, a
  tiny corpus, `max_revisions=0`, the plan set to exactly N sub-questions by the plan review
  (the runner answers `edit` with them), `max_concurrency=N`, the cache off;
- solver: the solver scenario given a workflow of width x depth tasks (each task of level d
  depends on two tasks of level d-1), done by one agent that may take every task of a level at
  once; each task is one answer and one verification by the model.

Plain LangGraph of the same shape, in the same run: a `StateGraph` with the same nodes and the
same fan-out (`Send`), where each task calls the same recording model exactly as many times as
the Ensemble task of that node did in this run (intake -> planner -> N researchers ->
synthesizer -> reviewer -> finalize; planner -> scheduler <-> workers -> aggregator), on
LangGraph's `AsyncSqliteSaver`. Its efficiency is computed from its own calls the same way.
Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import operator
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from langchain_core.messages import HumanMessage
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from benchmarks.common import Call, RecordingModel, calls_per_task, report, row, sequential_calls
from tests.corpus import write_corpus

MODEL = "bench-recorded"
GOAL = 1.05
QUESTION = "How do honey bees make honey and build their hive?"
AGENT = {
    "name": "bench-analyst",
    "role": "Answers the benchmark's tasks in one sentence.",
    "capabilities": ["bench"],
    "max_concurrent": 16,
}


def subquestions(n: int) -> list[str]:
    topics = ("nectar", "wax", "pollen", "the queen", "drones", "the waggle dance", "comb cells")
    return [
        f"What does the corpus say about {topics[i % len(topics)]} (part {i})?" for i in range(n)
    ]


def workflow(width: int, depth: int) -> dict[str, Any]:
    """`width * depth` tasks in `depth` levels; a task needs two tasks of the level before."""
    tasks = []
    for d in range(depth):
        for j in range(width):
            deps = sorted({f"t{d - 1}-{j}", f"t{d - 1}-{(j + 1) % width}"}) if d else []
            tasks.append(
                {
                    "id": f"t{d}-{j}",
                    "description": f"State in one sentence what step {d} of chain {j} adds.",
                    "capability": "bench",
                    "depends_on": deps,
                }
            )
    return {"title": f"{width} wide, {depth} deep", "tasks": tasks}


# --- Ensemble ----------------------------------------------------------------------------------


async def ensemble_run(
    scenario_name: str, data: dict[str, Any], answer: Any, latency: float, db: Path, slots: int
) -> tuple[float, list[Call]]:
    """One run through the runner on Ensemble's saver; its wall time and its model calls."""
    from ensemble.db import database
    from ensemble.graphs.registry import get_scenario
    from ensemble.models import register_model, unregister_model
    from ensemble.persistence import open_async_checkpointer
    from ensemble.run_settings import resolve
    from ensemble.runner import Silent, drive, new_thread_id, thread_config
    from ensemble.workspace import Workspace

    scenario = get_scenario(scenario_name)
    model = RecordingModel(latency=latency)
    register_model(MODEL, model)
    try:
        settings = resolve(
            None, {"model": MODEL, "cache": False, "max_concurrency": slots}, how="run"
        )
        valid = scenario.validate_input(data).model_dump()
        async with open_async_checkpointer(db) as saver:
            graph = scenario.compile(saver, Workspace(db=database(db)))
            began = time.perf_counter()
            result = await drive(
                graph, scenario, thread_config(new_thread_id()), valid, settings, Silent(),
                lambda value, scen, values: answer,
            )  # fmt: skip
            seconds = time.perf_counter() - began
    finally:
        unregister_model(MODEL)
    if result.status != "done":
        raise RuntimeError(f"{scenario_name} run ended {result.status}: {result.error}")
    return seconds, model.calls


# --- plain LangGraph of the same shape --------------------------------------------------------


async def ask(model: RecordingModel, times: int, text: str) -> str:
    answer = ""
    for n in range(times):
        message = await model.ainvoke([HumanMessage(f"{text} (call {n})")])
        answer = str(message.content)
    return answer


@dataclass
class ResearchShape:
    question: str = ""
    researchers: int = 0
    plan: list[str] = field(default_factory=list)
    notes: Annotated[list[str], operator.add] = field(default_factory=list)
    report: str = ""
    review: str = ""


def plain_research(model: RecordingModel, calls: dict[str, int]) -> StateGraph:
    async def intake(state: ResearchShape) -> dict:
        return {"question": state.question.strip()}

    async def planner(state: ResearchShape) -> dict:
        await ask(model, calls.get("planner", 0), f"plan: {state.question}")
        return {"plan": subquestions(state.researchers)}

    async def researcher(task: dict[str, str]) -> dict:
        return {"notes": [await ask(model, calls.get("researcher", 0), task["q"])]}

    async def synthesizer(state: ResearchShape) -> dict:
        return {"report": await ask(model, calls.get("synthesizer", 0), "\n".join(state.notes))}

    async def reviewer(state: ResearchShape) -> dict:
        return {"review": await ask(model, calls.get("reviewer", 0), state.report)}

    async def finalize(state: ResearchShape) -> dict:
        return {"report": state.report.strip()}

    builder = StateGraph(ResearchShape)
    for name, node in (("intake", intake), ("planner", planner), ("researcher", researcher),
                       ("synthesizer", synthesizer), ("reviewer", reviewer),
                       ("finalize", finalize)):  # fmt: skip
        builder.add_node(name, node)
    builder.add_edge(START, "intake")
    builder.add_edge("intake", "planner")
    builder.add_conditional_edges(
        "planner", lambda s: [Send("researcher", {"q": q}) for q in s.plan], ["researcher"]
    )
    builder.add_edge("researcher", "synthesizer")
    builder.add_edge("synthesizer", "reviewer")
    builder.add_edge("reviewer", "finalize")
    builder.add_edge("finalize", END)
    return builder


@dataclass
class SolverShape:
    tasks: list[dict[str, Any]] = field(default_factory=list)
    results: Annotated[dict[str, str], operator.or_] = field(default_factory=dict)
    queue: list[dict[str, Any]] = field(default_factory=list)
    answer: str = ""


def plain_solver(model: RecordingModel, calls: dict[str, int]) -> StateGraph:
    async def planner(state: SolverShape) -> dict:
        await ask(model, calls.get("planner", 0), "plan")
        return {}

    async def scheduler(state: SolverShape) -> dict:
        ready = [
            t for t in state.tasks
            if t["id"] not in state.results and all(d in state.results for d in t["depends_on"])
        ]  # fmt: skip
        return {"queue": ready}

    async def worker(task: dict[str, Any]) -> dict:
        return {"results": {task["id"]: await ask(model, calls.get("worker", 0), task["id"])}}

    async def aggregator(state: SolverShape) -> dict:
        return {"answer": await ask(model, calls.get("aggregator", 0), str(len(state.results)))}

    def dispatch(state: SolverShape) -> list[Send] | str:
        return [Send("worker", t) for t in state.queue] or "aggregator"

    builder = StateGraph(SolverShape)
    for name, node in (("planner", planner), ("scheduler", scheduler), ("worker", worker),
                       ("aggregator", aggregator)):  # fmt: skip
        builder.add_node(name, node)
    builder.add_edge(START, "planner")
    builder.add_edge("planner", "scheduler")
    builder.add_conditional_edges("scheduler", dispatch, ["worker", "aggregator"])
    builder.add_edge("worker", "scheduler")
    builder.add_edge("aggregator", END)
    return builder


async def plain_run(
    builder: StateGraph, model: RecordingModel, data: dict[str, Any], db: Path
) -> tuple[float, list[Call]]:
    async with AsyncSqliteSaver.from_conn_string(str(db)) as saver:
        graph = builder.compile(checkpointer=saver)
        config = {"configurable": {"thread_id": f"plain-{time.time_ns()}"}, "recursion_limit": 200}
        began = time.perf_counter()
        await graph.ainvoke(data, config)  # type: ignore[arg-type]
        return time.perf_counter() - began, model.calls


# --- the measurement ---------------------------------------------------------------------------


def efficiency(
    name: str, seconds: float, calls: list[Call], latency: float, plain: tuple[float, list[Call]]
) -> dict[str, Any]:
    path = sequential_calls(calls) * latency
    plain_path = sequential_calls(plain[1]) * latency
    return {
        "run": name,
        "model_calls": len(calls),
        "plain_model_calls": len(plain[1]),
        "critical_path_s": path,
        "plain_critical_path_s": plain_path,
        "ensemble_s": seconds,
        "plain_s": plain[0],
        "ensemble_efficiency": seconds / path,
        "plain_efficiency": plain[0] / plain_path,
    }


async def measure_async(
    latency: float, researchers: list[int], width: int, depth: int, workdir: Path
) -> dict[str, Any]:
    corpus = write_corpus(workdir / "corpus")
    ens_db = workdir / "ensemble.db"
    research_input = {"question": QUESTION, "corpus": str(corpus), "max_revisions": 0}
    # warm: imports, the corpus index, the prompt templates; not timed
    await ensemble_run("research", {**research_input, "max_researchers": 2}, None, 0.0, ens_db, 4)
    rows: list[dict[str, Any]] = []
    for n in researchers:
        data = {**research_input, "max_researchers": n, "review_plan": True}
        edit = {"action": "edit", "subquestions": subquestions(n)}
        seconds, calls = await ensemble_run("research", data, edit, latency, ens_db, max(n, 4))
        if sum(c.node == "researcher" for c in calls) < n:
            raise RuntimeError(f"fewer researchers than the {n} asked for")
        model = RecordingModel(latency=latency)
        plain = await plain_run(
            plain_research(model, calls_per_task(calls)),
            model,
            {"question": QUESTION, "researchers": n},
            workdir / f"plain-research-{n}.db",
        )
        rows.append(efficiency(f"research, {n} researchers", seconds, calls, latency, plain))
    flow = workflow(width, depth)
    data = {"workflow": flow, "agents": [AGENT]}
    seconds, calls = await ensemble_run("solver", data, None, latency, ens_db, max(width, 4))
    model = RecordingModel(latency=latency)
    plain = await plain_run(
        plain_solver(model, calls_per_task(calls)),
        model,
        {"tasks": [{"id": t["id"], "depends_on": t["depends_on"]} for t in flow["tasks"]]},
        workdir / "plain-solver.db",
    )
    rows.append(
        efficiency(
            f"solver, {width * depth} tasks ({width}x{depth})", seconds, calls, latency, plain
        )
    )
    return {
        "latency_s": latency,
        "rows": rows,
        "summary": [
            row(
                f"{r['run']}: wall / critical path",
                r["ensemble_efficiency"],
                r["plain_efficiency"],
                unit="x",
                value=r["ensemble_efficiency"],
                goal=("<=", GOAL),
            )
            for r in rows
        ],
    }


def measure(
    quick: bool = False,
    latency: float | None = None,
    researchers: list[int] | None = None,
    width: int | None = None,
    depth: int | None = None,
) -> dict[str, Any]:
    latency = latency if latency is not None else (0.05 if quick else 1.0)
    researchers = researchers or ([1, 4] if quick else [1, 4, 16])
    width = width or (4 if quick else 10)
    depth = depth or (3 if quick else 5)
    with tempfile.TemporaryDirectory(prefix="ensemble-bench-") as tmp:
        return asyncio.run(measure_async(latency, researchers, width, depth, Path(tmp)))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=None, help="seconds per model call")
    parser.add_argument("--researchers", type=int, nargs="+", default=None)
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--depth", type=int, default=None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    result = measure(args.quick, args.latency, args.researchers, args.width, args.depth)
    report("parallel", result)
    return result


if __name__ == "__main__":
    main()
