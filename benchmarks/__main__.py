"""The benchmark suite: Ensemble against plain LangGraph of the same shape, in one run.

    python -m benchmarks [--quick] [--only NAME ...]

Runs each benchmark's `measure()` in turn (each also runs alone: `python -m benchmarks.NAME`)
and prints one table, with each goal and whether it is met, then one JSON line:
`{"benchmark": "suite", "date", "machine": {cores, python, platform}, "elapsed_s", "quick",
"goals": {"met", "not_met"}, "results": {NAME: {..., "summary", "elapsed_s"}}}`. `--quick` uses
small sizes and a 0.05 s model latency (a smoke run: its figures do not decide the goals).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

from benchmarks import (
    checkpoint_growth,
    concurrent_runs,
    overhead,
    parallel,
    resume_history,
    startup,
)
from benchmarks.common import machine, now, rounded, summary_table

BENCHMARKS: dict[str, Callable[..., dict[str, Any]]] = {
    "overhead": overhead.measure,
    "parallel": parallel.measure,
    "checkpoint_growth": checkpoint_growth.measure,
    "resume_history": resume_history.measure,
    "concurrent_runs": concurrent_runs.measure,
    "startup": startup.measure,
}
LEGEND = (
    "plain: LangGraph of the same shape on LangGraph's own SQLite saver (startup: "
    "`langgraph --help`); ratio: Ensemble / plain; parallel: wall time / critical path of model "
    "time (1.0 is perfect)."
)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run only these")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    results: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    for name, measure in BENCHMARKS.items():
        if args.only and name not in args.only:
            continue
        print(f"[{name}] ...", flush=True)
        started = time.perf_counter()
        results[name] = measure(quick=args.quick)
        results[name]["elapsed_s"] = time.perf_counter() - started
        rows += [{"benchmark": name, **r} for r in results[name]["summary"]]
    seconds = time.perf_counter() - began
    print()
    print(summary_table(rows))
    print(LEGEND)
    not_met = [f"{r['benchmark']}: {r['what']}" for r in rows if r["met"] is False]
    met = [f"{r['benchmark']}: {r['what']}" for r in rows if r["met"] is True]
    if args.quick:
        print("--quick: small sizes and a short latency; these figures do not decide the goals.")
    if not_met:
        print("Goals NOT MET: " + "; ".join(not_met))
    found = {
        "benchmark": "suite",
        "date": now(),
        "machine": machine(),
        "elapsed_s": seconds,
        "quick": args.quick,
        "goals": {"met": met, "not_met": not_met},
        "results": results,
    }
    print(json.dumps(rounded(found)))
    return found


if __name__ == "__main__":
    main()
