"""How the checkpoint database grows with the length of a review loop.

Two graphs run the same write -> review loop for N cycles with the same texts, both on the
project's SQLite checkpointer:

- plain: the usual LangGraph way, every draft and critique appended to a `messages` list;
- ensemble: Ensemble's way (see state/research.py), the current draft overwritten, each
  critique stored once under its own key in a merged dict, big texts out of the message list.

SqliteSaver stores the whole state at every step, so the plain loop grows quadratically.
Run: `python -m benchmarks.checkpoint_growth [--cycles 50 100 200]`; prints sizes and ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import operator
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from langgraph.graph import END, START, StateGraph

from ensemble.persistence import open_async_checkpointer
from ensemble.state.reducers import merge_dicts

TEXT = "A paragraph of a draft report that cites its sources [1][2]. " * 16  # ~1 KB


@dataclass
class PlainState:
    messages: Annotated[list[str], operator.add] = field(default_factory=list)
    cycle: int = 0
    cycles: int = 0


@dataclass
class EnsembleState:
    draft: str = ""
    critiques: Annotated[dict[str, str], merge_dicts] = field(default_factory=dict)
    cycle: int = 0
    cycles: int = 0


def plain_graph():
    async def write(state: PlainState) -> dict:
        return {"messages": [f"draft {state.cycle}: {TEXT}"]}

    async def review(state: PlainState) -> dict:
        return {
            "messages": [f"critique {state.cycle}: {TEXT[:300]}", "ok"],
            "cycle": state.cycle + 1,
        }

    return _loop(StateGraph(PlainState), write, review)


def ensemble_graph():
    async def write(state: EnsembleState) -> dict:
        return {"draft": f"draft {state.cycle}: {TEXT}"}

    async def review(state: EnsembleState) -> dict:
        key = f"c{state.cycle % 3}"  # the latest few critiques, keyed: bounded, not appended
        return {
            "critiques": {key: f"critique {state.cycle}: {TEXT[:300]}"},
            "cycle": state.cycle + 1,
        }

    return _loop(StateGraph(EnsembleState), write, review)


def _loop(builder, write, review):
    builder.add_node("write", write)
    builder.add_node("review", review)
    builder.add_edge(START, "write")
    builder.add_edge("write", "review")
    builder.add_conditional_edges(
        "review", lambda s: "write" if s.cycle < s.cycles else END, ["write", END]
    )
    return builder


async def measure(name: str, builder, cycles: int, workdir: Path) -> tuple[int, float]:
    db = workdir / f"{name}-{cycles}.db"
    async with open_async_checkpointer(db) as saver:
        graph = builder.compile(checkpointer=saver)
        start = time.perf_counter()
        await graph.ainvoke(
            {"cycles": cycles},
            {"configurable": {"thread_id": "bench"}, "recursion_limit": 4 * cycles + 10},
        )
        seconds = time.perf_counter() - start
    size = sum(p.stat().st_size for p in workdir.glob(f"{db.name}*"))
    return size, seconds


async def main(cycles_list: list[int]) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for cycles in cycles_list:
            plain_size, plain_s = await measure("plain", plain_graph(), cycles, Path(tmp))
            ens_size, ens_s = await measure("ensemble", ensemble_graph(), cycles, Path(tmp))
            rows.append(
                {
                    "cycles": cycles,
                    "plain_MiB": round(plain_size / 2**20, 2),
                    "ensemble_MiB": round(ens_size / 2**20, 2),
                    "size_ratio": round(ens_size / plain_size, 3),
                    "plain_s": round(plain_s, 2),
                    "ensemble_s": round(ens_s, 2),
                    "time_ratio": round(ens_s / plain_s, 3),
                }
            )
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = asyncio.run(main(args.cycles))
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for row in results:
            print("  ".join(f"{k}={v}" for k, v in row.items()))
