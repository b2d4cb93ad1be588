"""How the checkpoint database grows with the length of a review loop.

Two graphs run the same write -> review loop for N cycles with the same texts, both on the
project's SQLite checkpointer:

- plain: the usual LangGraph way, every draft and critique appended to a `messages` list;
- ensemble: Ensemble's way (see state/research.py), the current draft overwritten, each
  critique stored once under its own key in a merged dict, big texts out of the message list.

SqliteSaver stores the whole state at every step, so the plain loop grows quadratically.
For each side the growth exponent k of size ~ cycles^k is fitted (least squares on logs), and the
database is measured again after pruning as `ensemble prune` does (the saver's `aprune_history`
keeping the newest checkpoint of the thread, then VACUUM; `ensemble prune` itself only picks
threads of a known scenario, which these loops are not). Goals: Ensemble's exponent at most 1.1,
its database at most 1/20 of the plain loop's at the longest run.

Run: `python -m benchmarks.checkpoint_growth [--cycles 25 50 100 200]`; prints a table and one
JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import operator
import sqlite3
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from langgraph.graph import END, START, StateGraph

from benchmarks.common import report, row
from ensemble.persistence import open_async_checkpointer
from ensemble.state.reducers import merge_dicts

EXPONENT_GOAL = 1.1
SIZE_GOAL = 1 / 20
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


def file_size(db: Path) -> int:
    return sum(p.stat().st_size for p in db.parent.glob(f"{db.name}*"))


async def measure_loop(name: str, builder, cycles: int, workdir: Path) -> dict[str, float]:
    """Run the loop; the database's size and the run's time, then its size after a prune."""
    db = workdir / f"{name}-{cycles}.db"
    async with open_async_checkpointer(db) as saver:
        graph = builder.compile(checkpointer=saver)
        start = time.perf_counter()
        await graph.ainvoke(
            {"cycles": cycles},
            {"configurable": {"thread_id": "bench"}, "recursion_limit": 4 * cycles + 10},
        )
        seconds = time.perf_counter() - start
    size = file_size(db)  # closed: the WAL is checkpointed into the file and removed
    async with open_async_checkpointer(db) as saver:
        await saver.aprune_history("bench", keep_last=1)  # type: ignore[attr-defined]
    with sqlite3.connect(db) as conn:  # as `ensemble prune`: give the space back
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return {"size": size, "seconds": seconds, "pruned": file_size(db)}


def exponent(cycles: list[int], sizes: list[float]) -> float | None:
    """The slope of log(size) against log(cycles): k in size ~ cycles^k."""
    if len(cycles) < 2:
        return None
    xs, ys = [math.log(c) for c in cycles], [math.log(s) for s in sizes]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / spread


async def sweep(cycles_list: list[int]) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="ensemble-bench-") as tmp:
        for cycles in cycles_list:
            plain = await measure_loop("plain", plain_graph(), cycles, Path(tmp))
            ens = await measure_loop("ensemble", ensemble_graph(), cycles, Path(tmp))
            rows.append(
                {
                    "cycles": cycles,
                    "plain_MiB": plain["size"] / 2**20,
                    "ensemble_MiB": ens["size"] / 2**20,
                    "size_ratio": ens["size"] / plain["size"],
                    "plain_pruned_MiB": plain["pruned"] / 2**20,
                    "ensemble_pruned_MiB": ens["pruned"] / 2**20,
                    "plain_s": plain["seconds"],
                    "ensemble_s": ens["seconds"],
                    "time_ratio": ens["seconds"] / plain["seconds"],
                }
            )
    return rows


def measure(quick: bool = False, cycles: list[int] | None = None) -> dict:
    cycles = sorted(cycles or ([5, 10, 20] if quick else [25, 50, 100, 200]))
    rows = asyncio.run(sweep(cycles))
    fitted = {
        side: exponent(cycles, [r[f"{side}_MiB"] for r in rows]) for side in ("ensemble", "plain")
    }
    last = rows[-1]
    summary = [
        row(f"database after {r['cycles']} cycles", r["ensemble_MiB"], r["plain_MiB"], unit="MiB")
        for r in rows
    ]
    summary += [
        row(f"  after prune, {last['cycles']} cycles", last["ensemble_pruned_MiB"],
            last["plain_pruned_MiB"], unit="MiB"),
        row(f"size at {last['cycles']} cycles, Ensemble / plain", last["ensemble_MiB"],
            last["plain_MiB"], unit="MiB", goal=("<=", SIZE_GOAL)),
        row("fitted growth exponent", fitted["ensemble"], fitted["plain"], unit="k",
            ratio=None, value=fitted["ensemble"], goal=("<=", EXPONENT_GOAL)),
        row(f"loop time at {last['cycles']} cycles", last["ensemble_s"], last["plain_s"],
            unit="s"),
    ]  # fmt: skip
    return {"rows": rows, "exponent": fitted, "summary": summary}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, nargs="+", default=None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    result = measure(args.quick, args.cycles)
    report("checkpoint_growth", result)
    return result


if __name__ == "__main__":
    main()
