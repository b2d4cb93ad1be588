"""Orchestration overhead per step with a zero-latency model, against a bare `StateGraph`.

    python -m benchmarks.overhead [--steps 50] [--repeat 5]

The same shape both ways: one node that asks the model once per step, looped `steps` times, the
same prompts, the same model object (a scripted fake that answers at once, `tests/fakes.py`, so
nothing but orchestration is timed; both sides call it exactly `steps` times per run, checked),
each run a fresh thread on a SQLite file in the same folder:

- Ensemble: the node added with `add_agent` (retry and idle-timeout policies, the pause for a
  person), its model from the workspace (the guard: cache, budget, breakers, audit trail),
  compiled with the observer (`compile_graph`), run by the runner (`drive`: `durability="sync"`,
  the custom and updates streams, the run settings in every checkpoint's metadata) on Ensemble's
  saver (`open_async_checkpointer`);
- plain: `StateGraph.add_node`, the model called directly, `ainvoke` with LangGraph's defaults
  on `AsyncSqliteSaver`; also shown with `durability="sync"` (what Ensemble's runner uses), to
  say how much of the gap is the durability choice.

Per step: a run's wall time divided by its steps; the median of `repeat` alternating runs.
Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from pydantic import BaseModel

from benchmarks.common import report, row
from tests.fakes import ScriptedChatModel

MODEL = "bench-instant"
GOAL = 1.15


@dataclass
class LoopState:
    run: str = ""
    step: int = 0
    steps: int = 0
    last: str = ""


class LoopInput(BaseModel):
    run: str
    steps: int


def prompt(state: LoopState) -> list[HumanMessage]:
    """A different prompt every step of every run, so Ensemble's cache never answers."""
    return [HumanMessage(f"run {state.run}, step {state.step}: go on")]


def route(state: LoopState) -> str:
    return "agent" if state.step < state.steps else END


def loop(builder: StateGraph, add: Any) -> StateGraph:
    add("agent")
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", route, ["agent", END])
    return builder


def plain_graph(model: ScriptedChatModel) -> StateGraph:
    async def agent(state: LoopState) -> dict:
        answer = await model.ainvoke(prompt(state))
        return {"step": state.step + 1, "last": str(answer.content)}

    builder = StateGraph(LoopState)
    return loop(builder, lambda name: builder.add_node(name, agent))


def ensemble_scenario() -> Any:
    from ensemble.context import Context
    from ensemble.graphs.compiling import add_agent
    from ensemble.graphs.scenario import Scenario
    from ensemble.workspace import Workspace

    async def agent(state: LoopState, runtime: Runtime[Context], *, workspace: Workspace) -> dict:
        model = workspace.chat_model(runtime.context, "agent")
        answer = await model.ainvoke(prompt(state))
        return {"step": state.step + 1, "last": str(answer.content)}

    def build(workspace: Workspace) -> StateGraph:
        builder = StateGraph(LoopState, context_schema=Context, input_schema=LoopInput)
        return loop(builder, lambda name: add_agent(builder, name, agent, workspace=workspace))

    return Scenario(
        name="overhead",
        description="one model call per step, looped",
        build=build,
        input_schema=LoopInput,
        primary_field="run",
        output_keys=("last", "step"),
        approve_answer=None,
        check_answer=lambda answer, values: answer,
    )


async def measure_async(steps: int, repeat: int, workdir: Path) -> dict[str, Any]:
    from ensemble.db import database
    from ensemble.models import register_model, unregister_model
    from ensemble.persistence import open_async_checkpointer
    from ensemble.run_settings import resolve
    from ensemble.runner import Silent, drive, new_thread_id, thread_config
    from ensemble.workspace import Workspace

    model = ScriptedChatModel(responder=lambda messages, kwargs: AIMessage("ok"))
    register_model(MODEL, model)
    scenario = ensemble_scenario()
    ens_db, plain_db = workdir / "ensemble.db", workdir / "plain.db"
    workspace = Workspace(db=database(ens_db))
    settings = resolve(None, {"model": MODEL}, how="run")
    times: dict[str, list[float]] = {"ensemble": [], "plain": [], "plain_sync": []}
    calls: dict[str, list[int]] = {name: [] for name in times}
    try:
        async with (
            open_async_checkpointer(ens_db) as ens_saver,
            AsyncSqliteSaver.from_conn_string(str(plain_db)) as plain_saver,
        ):
            ensemble = scenario.compile(ens_saver, workspace)
            plain = plain_graph(model).compile(checkpointer=plain_saver)

            async def ensemble_run() -> None:
                data = {"run": uuid.uuid4().hex, "steps": steps}
                config = thread_config(new_thread_id())
                result = await drive(ensemble, scenario, config, data, settings, Silent(), None)  # type: ignore[arg-type]
                if result.status != "done":
                    raise RuntimeError(f"the Ensemble run ended {result.status}: {result.error}")

            def plain_run(durability: str) -> Any:
                async def run() -> None:
                    config = {
                        "configurable": {"thread_id": new_thread_id()},
                        "recursion_limit": steps + 10,
                    }
                    data = {"run": uuid.uuid4().hex, "steps": steps}
                    await plain.ainvoke(data, config, durability=durability)  # type: ignore[arg-type]

                return run

            runs = {
                "ensemble": ensemble_run,
                "plain": plain_run("async"),
                "plain_sync": plain_run("sync"),
            }
            for run in runs.values():  # warm: imports, tables, first-call caches
                await run()
            for _ in range(repeat):
                for name, run in runs.items():
                    before = len(model.calls)
                    began = time.perf_counter()
                    await run()
                    times[name].append((time.perf_counter() - began) / steps)
                    calls[name].append(len(model.calls) - before)
    finally:
        unregister_model(MODEL)
    if any(c != steps for counts in calls.values() for c in counts):
        raise RuntimeError(f"model calls differ from the steps ({steps}): {calls}")
    per_step_ms = {name: statistics.median(values) * 1000 for name, values in times.items()}
    return {
        "steps": steps,
        "repeat": repeat,
        "model_calls_per_run": steps,
        "per_step_ms": per_step_ms,
        "summary": [
            row(
                "per step, zero-latency model",
                per_step_ms["ensemble"],
                per_step_ms["plain"],
                unit="ms",
                goal=("<=", GOAL),
            ),
            row(
                "per step, plain with durability=sync",
                per_step_ms["ensemble"],
                per_step_ms["plain_sync"],
                unit="ms",
            ),
        ],
    }


def measure(quick: bool = False, steps: int | None = None, repeat: int | None = None) -> dict:
    steps = steps or (10 if quick else 50)
    repeat = repeat or (2 if quick else 5)
    with tempfile.TemporaryDirectory(prefix="ensemble-bench-") as tmp:
        return asyncio.run(measure_async(steps, repeat, Path(tmp)))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    result = measure(args.quick, args.steps if not args.quick else None, args.repeat)
    report("overhead", result)
    return result


if __name__ == "__main__":
    main()
