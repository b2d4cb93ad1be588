"""Resume latency and history listing against the length of a thread.

    python -m benchmarks.resume_history [--lengths 10 100 1000] [--repeat 7]

The same shape both ways: a loop graph whose `step` node runs until the thread holds about L
checkpoints, then a `gate` node pauses with `interrupt()`; answering it runs one more step and
pauses again. Each state carries a 1 KB text, so a checkpoint is the size of a small run's.

- resume: read the paused state (`aget_state`), then resume with the answer until the next
  pause; Ensemble through its runner (`drive`: `durability="sync"`, the run settings in the
  metadata) on its saver (`open_async_checkpointer`), plain LangGraph with `ainvoke(Command(
  resume=...))` on `AsyncSqliteSaver`; the median of `repeat` resumes;
- history: list every checkpoint of the thread (`aget_state_history`, what `ensemble history`
  and LangGraph's `get_state_history` read), the median of `repeat` listings, before the
  resumes (so the thread holds about L checkpoints).

Each length is a new thread in the same database file per side. Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import START, StateGraph
from langgraph.types import Command, interrupt
from pydantic import BaseModel

from benchmarks.common import report, row

TEXT = "A paragraph of a run's state that stays the same from step to step. " * 15  # ~1 KB


@dataclass
class LoopState:
    target: int = 0
    step: int = 0
    text: str = TEXT
    answers: int = 0


class LoopInput(BaseModel):
    target: int


async def step(state: LoopState) -> dict:
    return {"step": state.step + 1}


async def gate(state: LoopState) -> dict:
    interrupt({"question": "go on?", "step": state.step})
    return {"answers": state.answers + 1, "target": state.target + 1}


def build(workspace: Any = None) -> StateGraph:
    builder = StateGraph(LoopState, input_schema=LoopInput)
    builder.add_node("step", step)
    builder.add_node("gate", gate)
    builder.add_edge(START, "step")
    builder.add_conditional_edges("step", lambda s: "step" if s.step < s.target else "gate")
    builder.add_edge("gate", "step")
    return builder


def scenario() -> Any:
    from ensemble.graphs.scenario import Scenario

    return Scenario(
        name="resume_history",
        description="a loop with a pause at the end",
        build=build,
        input_schema=LoopInput,
        primary_field="target",
        output_keys=("step",),
        approve_answer="yes",
        check_answer=lambda answer, values: answer,
    )


async def history_seconds(graph: Any, config: dict[str, Any]) -> tuple[float, int]:
    began = time.perf_counter()
    count = 0
    async for _ in graph.aget_state_history(config):
        count += 1
    return time.perf_counter() - began, count


async def resume(graph: Any, config: Any, scen: Any, settings: Any) -> float:
    """Seconds to read the paused state and answer it, up to the next pause.

    With a scenario, through Ensemble's runner; without, plain `ainvoke`.
    """
    from ensemble.runner import Silent, drive

    began = time.perf_counter()
    snapshot = await graph.aget_state(config)
    if not snapshot.interrupts:
        raise RuntimeError("the thread is not paused")
    if scen is not None:
        result = await drive(
            graph, scen, config, Command(resume="yes"), settings, Silent(),
            lambda value, s, values: None,
        )  # fmt: skip
        if result.status != "interrupted":
            raise RuntimeError(f"resume ended {result.status}: {result.error}")
    else:
        await graph.ainvoke(Command(resume="yes"), config)
    return time.perf_counter() - began


async def measure_side(name: str, lengths: list[int], repeat: int, db: Path) -> dict[int, dict]:
    """For each length: resume and listing times, and the checkpoints the thread held."""
    from ensemble.persistence import open_async_checkpointer
    from ensemble.run_settings import resolve
    from ensemble.runner import new_thread_id, thread_config

    found: dict[int, dict] = {}
    scen = scenario()
    settings = resolve(None, {"model": "offline"}, how="run")
    opened = (
        open_async_checkpointer(db)
        if name == "ensemble"
        else AsyncSqliteSaver.from_conn_string(str(db))
    )
    async with opened as saver:
        if name == "ensemble":
            graph = scen.compile(saver, None)
        else:
            graph = build().compile(checkpointer=saver)
        for length in lengths:
            thread = new_thread_id()
            config: dict[str, Any] = {**thread_config(thread), "recursion_limit": length + 100}
            # START's input, one checkpoint per step, the gate's pause: length - 2 steps
            await graph.ainvoke({"target": max(1, length - 2)}, config)

            listings = [await history_seconds(graph, config) for _ in range(repeat)]
            await resume(graph, config, scen if name == "ensemble" else None, settings)  # warm
            resumes = [
                await resume(graph, config, scen if name == "ensemble" else None, settings)
                for _ in range(repeat)
            ]
            found[length] = {
                "checkpoints": listings[0][1],
                "resume_ms": statistics.median(resumes) * 1000,
                "history_ms": statistics.median(s for s, _ in listings) * 1000,
            }
    return found


def measure(quick: bool = False, lengths: list[int] | None = None, repeat: int | None = None):
    lengths = lengths or ([10, 50] if quick else [10, 100, 1000])
    repeat = repeat or (2 if quick else 7)
    with tempfile.TemporaryDirectory(prefix="ensemble-bench-") as tmp:
        ens = asyncio.run(measure_side("ensemble", lengths, repeat, Path(tmp) / "ensemble.db"))
        plain = asyncio.run(measure_side("plain", lengths, repeat, Path(tmp) / "plain.db"))
    rows = [
        {
            "length": n,
            "checkpoints": ens[n]["checkpoints"],
            "plain_checkpoints": plain[n]["checkpoints"],
            "resume_ms": ens[n]["resume_ms"],
            "plain_resume_ms": plain[n]["resume_ms"],
            "history_ms": ens[n]["history_ms"],
            "plain_history_ms": plain[n]["history_ms"],
        }
        for n in lengths
    ]
    summary = []
    for r in rows:
        summary.append(
            row(f"resume, {r['checkpoints']} checkpoints", r["resume_ms"], r["plain_resume_ms"],
                unit="ms")
        )  # fmt: skip
    for r in rows:
        summary.append(
            row(f"history, {r['checkpoints']} checkpoints", r["history_ms"],
                r["plain_history_ms"], unit="ms")
        )  # fmt: skip
    return {"repeat": repeat, "rows": rows, "summary": summary}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=None)
    parser.add_argument("--repeat", type=int, default=None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    result = measure(args.quick, args.lengths, args.repeat)
    report("resume_history", result)
    return result


if __name__ == "__main__":
    main()
