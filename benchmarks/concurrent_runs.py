"""50 runs at once on one SQLite file: throughput, and no `database is locked` error.

    python -m benchmarks.concurrent_runs [--runs 50] [--latency 0]

All runs start together as asyncio tasks in this one process, as the events dispatcher runs
them, each a research run with its own question (at most 2 researchers, no revision round), the
offline model (no latency by default: the most writes per second), a tiny corpus:

- Ensemble: the research scenario compiled per run on one shared saver
  (`open_async_checkpointer`) and driven by the runner (`drive`, `durability="sync"`); the
  workspace's database is the same file, so the audit trail, the model cache and the corpus
  index are written to it by the same runs, through their own connections;
- plain LangGraph of the same shape, on another file: a `StateGraph` with the same nodes and
  fan-out (intake -> planner -> researchers -> synthesizer -> reviewer -> finalize, see
  `benchmarks.parallel`), one run per Ensemble run with as many researchers as its plan had,
  each task calling the same model as many times as Ensemble's did (the cache is off, so every
  call reaches the model), compiled once on LangGraph's `AsyncSqliteSaver`, `ainvoke` gathered.

Lock errors: runs that failed or raised with "locked" in the error, and log records that say
"database is locked". Throughput: runs / wall time from the first start to the last end.
Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from benchmarks.cluster_throughput import questions
from benchmarks.common import RecordingModel, calls_per_task, report, row
from benchmarks.parallel import plain_research
from tests.corpus import write_corpus

MODEL = "bench-concurrent"
RESEARCHERS = 2


class LockLog(logging.Handler):
    """Counts log records that report a locked database."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "database is locked" in record.getMessage():
            self.count += 1


def locked(text: str | None) -> bool:
    return "locked" in (text or "").lower()


async def ensemble_runs(
    runs: int, latency: float, corpus: Path, db: Path
) -> tuple[dict[str, Any], RecordingModel]:
    from ensemble.db import database
    from ensemble.graphs.registry import get_scenario
    from ensemble.models import register_model, unregister_model
    from ensemble.persistence import open_async_checkpointer
    from ensemble.run_settings import resolve
    from ensemble.runner import Silent, drive, new_thread_id, thread_config
    from ensemble.workspace import Workspace

    scenario = get_scenario("research")
    workspace = Workspace(db=database(db))
    model = RecordingModel(latency=latency)
    register_model(MODEL, model)
    base = {"corpus": str(corpus), "max_researchers": RESEARCHERS, "max_revisions": 0}
    try:
        settings = resolve(None, {"model": MODEL, "cache": False}, how="run")
        async with open_async_checkpointer(db) as saver:
            # warm: imports, the corpus index, the prompts; its calls are not the shape
            await drive(
                scenario.compile(saver, workspace), scenario, thread_config(new_thread_id()),
                scenario.validate_input({**base, "question": "warm up"}).model_dump(),
                settings, Silent(), lambda *_: None,
            )  # fmt: skip
            model.calls.clear()

            async def one(question: str) -> Any:
                data = scenario.validate_input({**base, "question": question}).model_dump()
                graph = scenario.compile(saver, workspace)
                config = thread_config(new_thread_id())
                return await drive(graph, scenario, config, data, settings, Silent(), None)  # type: ignore[arg-type]

            began = time.perf_counter()
            results = await asyncio.gather(
                *(one(q) for q in questions(runs)), return_exceptions=True
            )
            seconds = time.perf_counter() - began
    finally:
        unregister_model(MODEL)
    errors = [
        f"{type(r).__name__}: {r}" if isinstance(r, BaseException) else r.error
        for r in results
        if isinstance(r, BaseException) or r.status != "done"
    ]
    return {
        "seconds": seconds,
        "failed": len(errors),
        "locked": sum(locked(e) for e in errors),
        "errors": errors[:3],
    }, model


async def plain_runs(
    plans: list[int], latency: float, shape: dict[str, int], db: Path
) -> dict[str, Any]:
    """One plain run per Ensemble run, each with as many researchers as that run had."""
    runs = len(plans)
    model = RecordingModel(latency=latency)
    async with AsyncSqliteSaver.from_conn_string(str(db)) as saver:
        graph = plain_research(model, shape).compile(checkpointer=saver)

        async def one(n: int, question: str) -> Any:
            config = {"configurable": {"thread_id": f"plain-{n}"}}
            data = {"question": question, "researchers": plans[n]}
            return await graph.ainvoke(data, config)  # type: ignore[arg-type]

        began = time.perf_counter()
        results = await asyncio.gather(
            *(one(n, q) for n, q in enumerate(questions(runs))), return_exceptions=True
        )
        seconds = time.perf_counter() - began
    errors = [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]
    return {
        "seconds": seconds,
        "failed": len(errors),
        "locked": sum(locked(e) for e in errors),
        "errors": errors[:3],
        "model_calls": len(model.calls),
    }


async def measure_async(runs: int, latency: float, workdir: Path) -> dict[str, Any]:
    corpus = write_corpus(workdir / "corpus")
    lock_log = LockLog()
    logging.getLogger().addHandler(lock_log)
    try:
        ens, model = await ensemble_runs(runs, latency, corpus, workdir / "ensemble.db")
        ens["locked"] += lock_log.count
        tasks = {(c.thread, c.task) for c in model.calls if c.node == "researcher"}
        researchers = Counter(thread for thread, _ in tasks)
        ens["model_calls"] = len(model.calls)
        shape = calls_per_task(model.calls)
        lock_log.count = 0
        plans = [researchers[thread] for thread in sorted({c.thread for c in model.calls})]
        plain = await plain_runs(plans, latency, shape, workdir / "plain.db")
        plain["locked"] += lock_log.count
    finally:
        logging.getLogger().removeHandler(lock_log)
    ens["runs_per_s"] = runs / ens["seconds"]
    plain["runs_per_s"] = runs / plain["seconds"]
    return {
        "runs": runs,
        "latency_s": latency,
        "researchers_per_run": dict(sorted(Counter(plans).items())),
        "calls_per_task": shape,
        "ensemble": ens,
        "plain": plain,
        "summary": [
            row(
                f"{runs} runs at once: throughput",
                ens["runs_per_s"],
                plain["runs_per_s"],
                unit="runs/s",
            ),
            row(
                f"{runs} runs at once: lock errors",
                float(ens["locked"]),
                float(plain["locked"]),
                unit="errors",
                ratio=None,
                value=float(ens["locked"]),
                goal=("<=", 0),
            ),
            row(
                f"{runs} runs at once: failed runs",
                float(ens["failed"]),
                float(plain["failed"]),
                unit="runs",
                ratio=None,
                value=float(ens["failed"]),
                goal=("<=", 0),
            ),
        ],  # fmt: skip
    }


def measure(quick: bool = False, runs: int | None = None, latency: float = 0.0) -> dict:
    runs = runs or (10 if quick else 50)
    with tempfile.TemporaryDirectory(prefix="ensemble-bench-") as tmp:
        return asyncio.run(measure_async(runs, latency, Path(tmp)))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per model call")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    result = measure(args.quick, args.runs, args.latency)
    report("concurrent_runs", result)
    return result


if __name__ == "__main__":
    main()
