"""Throughput of the PostgreSQL run queue against the same runs driven in one process.

    python -m benchmarks.cluster_throughput [--runs 24] [--workers 1 2 4] [--latency 0.2]

N research runs (each its own question, the cache off, a model that sleeps `latency` seconds per
call, a small corpus) are done three ways, all measured in this one invocation:

- cluster: a fresh database per worker count, `ensemble worker` processes (concurrency 2 each,
  on this machine) started and ready before the runs are submitted with `ensemble submit`; runs
  per minute from the first run's start to the last run's end (the database's clock);
- in-process, SQLite: Ensemble's own runner (`drive`, as `ensemble run` does) on the project's
  SQLite saver, the N runs gathered on one event loop, as many at once as the cluster's slots;
- in-process, plain LangGraph: the same compiled graph on an `InMemorySaver`, `ainvoke` gathered
  (its agents still write the audit trail to SQLite).

Also the queue's own overhead: submit to start (`started_at - submitted_at`) of runs submitted
one at a time to idle workers, finish to the next pick on the same worker while runs are waiting
(from the workers' output lines, time-stamped as they arrive), and the `ensemble submit` call.
Starts its own PostgreSQL (tests/postgres_server.py); writes only under a temporary folder.
Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from tests.corpus import write_corpus
from tests.postgres_server import PostgresServer

CONCURRENCY = 2
"""Runs at once per worker process."""
IDLE_PROBES = 3
"""Runs submitted one at a time to idle workers, for the submit-to-start latency."""
READY_TIMEOUT = 120.0
RUNS_TIMEOUT = 600.0
SUBJECTS = ("the waggle dance", "the queen", "drones", "nectar", "pollen", "wax comb", "honey")
WORKER = [sys.executable, "-m", "ensemble.cli.main", "worker"]


def questions(n: int, offset: int = 0) -> list[str]:
    """`n` different research questions: the runs are alike in work, not in their prompts."""
    return [
        f"How do bees use {SUBJECTS[i % len(SUBJECTS)]} (question {i})?"
        for i in range(offset, offset + n)
    ]


def ensemble_cli(*args: str) -> str:
    """One `ensemble` command in this process; its stdout."""
    from ensemble.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    if code != 0:
        raise RuntimeError(f"ensemble {' '.join(args)} failed ({code}): {err.getvalue()}")
    return out.getvalue()


def sql(url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return list(conn.execute(query, params).fetchall())  # type: ignore[arg-type]


@dataclass
class WorkerProcess:
    """An `ensemble worker` whose output lines are time-stamped as they arrive."""

    name: str
    process: subprocess.Popen[str]
    lines: list[tuple[float, str]] = field(default_factory=list)

    def follow(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def said(self, text: str) -> bool:
        return any(text in line for _, line in list(self.lines))


def start_workers(url: str, count: int, workdir: Path) -> list[WorkerProcess]:
    """`count` workers, returned once every one of them is taking runs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENSEMBLE_", "OPENAI_"))}
    env["PYTHONUNBUFFERED"] = "1"
    workers = []
    for i in range(count):
        name = f"bench{i + 1}"
        process = subprocess.Popen(
            [*WORKER, "--db", url, "--name", name, "--concurrency", str(CONCURRENCY)],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        worker = WorkerProcess(name, process)
        threading.Thread(target=worker.follow, daemon=True).start()
        workers.append(worker)
    deadline = time.monotonic() + READY_TIMEOUT
    while not all(w.said(": taking ") for w in workers):
        if time.monotonic() > deadline or any(w.process.poll() is not None for w in workers):
            stop_workers(workers)
            raise RuntimeError("workers did not start:\n" + "\n".join(_output(workers)))
        time.sleep(0.05)
    return workers


def stop_workers(workers: list[WorkerProcess]) -> None:
    for worker in workers:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.process.pid, signal.SIGTERM)
    for worker in workers:
        try:
            worker.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.process.pid, signal.SIGKILL)
            worker.process.wait()


def _output(workers: list[WorkerProcess]) -> list[str]:
    return [f"{w.name}: {line}" for w in workers for _, line in w.lines[-20:]]


def submit(url: str, question: str, corpus: Path, model: str) -> tuple[str, float]:
    """`ensemble submit research ...`; the thread id and the seconds the command took."""
    began = time.perf_counter()
    out = ensemble_cli(
        "submit", "research", question, "--yes", "--json", "--no-cache",
        "--model", model, "--corpus", str(corpus), "--db", url,
    )  # fmt: skip
    return json.loads(out)["thread_id"], time.perf_counter() - began


def wait_done(url: str, threads: list[str]) -> None:
    deadline = time.monotonic() + RUNS_TIMEOUT
    while True:
        rows = sql(
            url, "SELECT status, count(*) FROM ensemble_runs WHERE thread_id = ANY(%s) GROUP BY 1",
            (threads,),
        )  # fmt: skip
        counts = dict(rows)
        if counts.get("failed"):
            raise RuntimeError(f"{counts['failed']} runs failed")
        if counts.get("done", 0) == len(threads):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"runs unfinished after {RUNS_TIMEOUT:g} s: {counts}")
        time.sleep(0.1)


def finish_to_pick(workers: list[WorkerProcess], waiting_until: float) -> list[float]:
    """Seconds from a run's end to the next start on the same worker, while runs were waiting."""
    gaps = []
    for worker in workers:
        lines = list(worker.lines)
        for i, (at, line) in enumerate(lines):
            if not line.endswith(" done") or at > waiting_until:
                continue
            starts = [t for t, later in lines[i + 1 :] if ": starting thread " in later]
            if starts:
                gaps.append(starts[0] - at)
    return gaps


def cluster(
    server: PostgresServer, count: int, runs: int, corpus: Path, model: str, workdir: Path
) -> dict[str, Any]:
    """`runs` runs on `count` fresh workers: throughput and the queue's overhead."""
    url = server.new_database(f"bench_{count}_workers")
    ensemble_cli("db", "upgrade", "--db", url)
    workers = start_workers(url, count, workdir)
    try:
        submitted = [submit(url, q, corpus, model) for q in questions(runs)]
        threads = [thread for thread, _ in submitted]
        wait_done(url, threads)
        ((first, last, last_start),) = sql(
            url,
            "SELECT min(started_at), max(finished_at), max(started_at) FROM ensemble_runs "
            "WHERE thread_id = ANY(%s)",
            (threads,),
        )
        seconds = (last - first).total_seconds()
        # runs waited until the last one started: measured on this clock, just after
        backlog_end = time.monotonic() - (last - last_start).total_seconds()
        gaps = finish_to_pick(workers, backlog_end)
        pickups = []
        for question in questions(IDLE_PROBES, offset=runs):
            thread, _ = submit(url, question, corpus, model)
            wait_done(url, [thread])
            ((waited,),) = sql(
                url,
                "SELECT extract(epoch FROM started_at - submitted_at) FROM ensemble_runs "
                "WHERE thread_id = %s",
                (thread,),
            )
            pickups.append(float(waited))
    finally:
        stop_workers(workers)
    return {
        "setup": f"cluster, {count} worker{'s' if count > 1 else ''}",
        "slots": count * CONCURRENCY,
        "seconds": seconds,
        "runs_per_min": runs / seconds * 60,
        "submit_to_start_idle_ms": statistics.median(pickups) * 1000,
        "finish_to_next_pick_ms": statistics.median(gaps) * 1000 if gaps else None,
        "finish_to_next_pick_p90_ms": _p90(gaps) * 1000 if gaps else None,
        "submit_command_ms": statistics.median(s for _, s in submitted) * 1000,
    }


async def in_process(
    slots: int, runs: int, corpus: Path, model: str, db: Path, *, plain: bool
) -> dict[str, Any]:
    """The same runs in this process: Ensemble's runner on SQLite, or `ainvoke` in memory."""
    from langgraph.checkpoint.memory import InMemorySaver

    from ensemble.db import database
    from ensemble.graphs.registry import get_scenario
    from ensemble.persistence import open_async_checkpointer
    from ensemble.run_settings import resolve
    from ensemble.runner import Silent, drive, new_thread_id, thread_config
    from ensemble.workspace import Workspace

    scenario = get_scenario("research")
    workspace = Workspace(db=database(db))
    settings = resolve(None, {"model": model, "cache": False}, how="run")
    inputs = [
        scenario.validate_input({"question": q, "corpus": str(corpus)}).model_dump()
        for q in questions(runs)
    ]
    gate = asyncio.Semaphore(slots)

    def approve(value: Any, scen: Any, values: dict[str, Any]) -> Any:
        return scen.approve_answer

    async with open_async_checkpointer(db) as sqlite_saver:
        graph = scenario.compile(InMemorySaver() if plain else sqlite_saver, workspace)

        async def one(data: dict[str, Any]) -> None:
            async with gate:
                config = thread_config(new_thread_id())
                if plain:
                    await graph.ainvoke(data, config, context=settings.context)
                else:
                    result = await drive(graph, scenario, config, data, settings, Silent(), approve)
                    if result.status != "done":
                        raise RuntimeError(f"in-process run ended {result.status}: {result.error}")

        began = time.perf_counter()
        await asyncio.gather(*(one(data) for data in inputs))
        seconds = time.perf_counter() - began
    return {
        "setup": "in-process, plain LangGraph (InMemorySaver)"
        if plain
        else "in-process, Ensemble runner (SQLite)",
        "slots": slots,
        "seconds": seconds,
        "runs_per_min": runs / seconds * 60,
    }


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=24)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--latency", type=float, default=0.2)
    args = parser.parse_args(argv)
    model = f"offline?latency={args.latency:g}"
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ensemble-bench-") as tmp:
        workdir = Path(tmp)
        corpus = write_corpus(workdir / "corpus")
        warm = workdir / "warm.db"  # imports and the corpus index, paid once before timing
        asyncio.run(in_process(1, 1, corpus, model, warm, plain=False))
        server = PostgresServer()
        server.start()
        try:
            for count in args.workers:
                slots = count * CONCURRENCY
                for plain in (False, True):
                    db = workdir / f"inprocess-{slots}-{plain}.db"
                    rows.append(
                        asyncio.run(in_process(slots, args.runs, corpus, model, db, plain=plain))
                    )
                rows.append(cluster(server, count, args.runs, corpus, model, workdir))
        finally:
            server.stop()
    report(rows, args.runs, model)
    return rows


def report(rows: list[dict[str, Any]], runs: int, model: str) -> None:
    base = {(r["slots"], r["setup"].startswith("in-process, Ensemble")): r for r in rows}
    print(f"{runs} research runs, model {model}, {os.cpu_count()} CPUs")
    print(
        f"{'setup':<44} {'slots':>5} {'s':>7} {'runs/min':>9} {'x runner':>9} "
        f"{'pick ms':>8} {'next ms':>8} {'submit ms':>9}"
    )
    for row in rows:
        runner = base.get((row["slots"], True))
        ratio = row["runs_per_min"] / runner["runs_per_min"] if runner else float("nan")
        row["x_inprocess_runner"] = round(ratio, 3)
        extra = (
            f"{row['submit_to_start_idle_ms']:>8.0f} {row['finish_to_next_pick_ms'] or 0:>8.0f} "
            f"{row['submit_command_ms']:>9.0f}"
            if "submit_command_ms" in row
            else ""
        )
        print(
            f"{row['setup']:<44} {row['slots']:>5} {row['seconds']:>7.1f} "
            f"{row['runs_per_min']:>9.1f} {ratio:>9.2f} {extra}"
        )
    print(
        "x runner: runs/min over Ensemble's runner in-process at the same slots; pick: submit "
        f"to start with idle workers (median of {IDLE_PROBES}); next: a run's end to the next "
        "start on its worker while runs wait (median); submit: one `ensemble submit` call"
    )
    rounded = [{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for r in rows]
    print(
        json.dumps(
            {"benchmark": "cluster_throughput", "runs": runs, "model": model, "rows": rounded}
        )
    )


if __name__ == "__main__":
    main()
