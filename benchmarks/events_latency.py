"""Latency and throughput of the event dispatcher, against a hand-made polling loop.

    python -m benchmarks.events_latency [--probes 30] [--burst 1000] [--runs 60] [--skip-postgres]

Measured in this one invocation, on SQLite and on PostgreSQL (its own server,
tests/postgres_server.py), each with a fresh database and an idle `ensemble events run`
subprocess (on PostgreSQL plus one `ensemble worker`, ready before anything is measured):

- publish to run start, p50 and p95: `probes` events published one at a time
  (`ensemble.events.store.publish`), each after the previous run ended and a random pause of
  0.2-1.2 s, so it finds the dispatcher idle at any phase of its poll. The run starts when its
  thread's first checkpoint is written (the checkpoint's `ts`), read with the saver afterwards.
  That instant exists for the baseline too, where there is no delivery row, so all three rows
  measure the same thing; the delivery's `started_at` (and on PostgreSQL the queue's
  `ensemble_runs.started_at`) go in the JSON line, to show where the time goes. Latency is
  that instant minus the event's `published_at` (same machine clock).
- routed events/s: `burst` events in one `publish` call for a subscription whose filter lets
  none through, from the publish's commit until every one is marked routed (polled every 20 ms).
- started-or-queued events/s: PostgreSQL, no worker running: `burst` events whose deliveries
  are all queued on the run queue (`started`), up to the last `started_at`. A subscription's
  cap counts queued runs, at most 64, so the burst is spread over `burst / 64` subscriptions,
  one event type each. SQLite, where the dispatcher runs the runs itself: `runs` events for the
  probe subscription (cap 4, the dispatcher's default concurrency), up to the last start; the
  `done/s` column is the same burst up to the last run's end.
- baseline: the glue written today with plain LangGraph, a loop polling a SQLite table of events
  every second and calling `ainvoke` on the same compiled research graph with LangGraph's
  `AsyncSqliteSaver` (a subprocess of this module, `--glue`); its latency measured as above.

Every run is a research run with one researcher and no revision, on a tiny corpus
(tests/corpus.py), the offline model, the cache off; the subprocesses get no ENSEMBLE_* or
OPENAI_* variables. Writes only under a temporary folder. Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import math
import os
import platform
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from benchmarks.cluster_throughput import (
    READY_TIMEOUT,
    WorkerProcess,
    ensemble_cli,
    questions,
    start_workers,
    stop_workers,
)
from tests.corpus import write_corpus
from tests.postgres_server import PostgresServer

MODEL = "offline"
DISPATCHER_CONCURRENCY = 4
"""`ensemble events run`'s default `--concurrency` (SQLite); the probe subscription's cap too."""
SHARD_CAP = 64
"""The largest subscription cap: a queued run holds a seat until it ends."""
GLUE_POLL = 1.0
"""Seconds between two looks of the hand-made loop at its table."""
PAUSE = (0.2, 1.2)
"""Seconds between a run's end and the next probe: at least a whole glue poll of phases."""
POLL = 0.02
SETTLE_TIMEOUT = 300.0
ROOT = Path(__file__).resolve().parent.parent
ENSEMBLE = [sys.executable, "-m", "ensemble.cli.main"]


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENSEMBLE_", "OPENAI_"))}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def launch(name: str, command: list[str], workdir: Path, ready: str) -> WorkerProcess:
    """A subprocess whose output lines are time-stamped, returned once it printed `ready`."""
    process = subprocess.Popen(
        command,
        cwd=workdir,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    started = WorkerProcess(name, process)
    threading.Thread(target=started.follow, daemon=True).start()
    deadline = time.monotonic() + READY_TIMEOUT
    while not started.said(ready):
        if time.monotonic() > deadline or process.poll() is not None:
            stop_workers([started])
            tail = "\n".join(line for _, line in started.lines[-20:])
            raise RuntimeError(f"{name} did not start:\n{tail}")
        time.sleep(0.05)
    return started


def run_input(corpus: Path) -> dict[str, Any]:
    return {
        "question": "{{ data.question }}",
        "corpus": str(corpus),
        "max_researchers": 1,
        "max_revisions": 0,
    }


def subscription_file(folder: Path, corpus: Path, shards: int) -> Path:
    """probe (runs), route-only (a filter nobody passes) and `shards` queue-only subscriptions."""

    def subscription(name: str, event: str, **extra: Any) -> dict[str, Any]:
        return {
            "name": name,
            "event": event,
            "scenario": "research",
            "input": run_input(corpus),
            "settings": {"model": MODEL, "cache": False},
            "max_attempts": 1,
            **extra,
        }

    found = [
        subscription("probe", "bench.probe", concurrency=DISPATCHER_CONCURRENCY),
        subscription("route-only", "bench.route", filter="data.n < 0"),
        *(
            subscription(f"shard-{k}", f"bench.shard-{k}", concurrency=SHARD_CAP)
            for k in range(shards)
        ),
    ]
    path = folder / "subscriptions.yaml"
    path.write_text(yaml.safe_dump({"subscriptions": found}, sort_keys=False), encoding="utf-8")
    return path


def rows(db: Any, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """One query on the event tables, `?` placeholders on either database."""
    from ensemble.events.store import event_tables

    with event_tables(db, create=False) as conn:
        return [tuple(row) for row in conn.execute(query, params).fetchall()]


def wait_for(what: str, done: Callable[[], bool]) -> float:
    """Poll `done` every 20 ms; the wall-clock time it first held."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not after {SETTLE_TIMEOUT:g} s")
        time.sleep(POLL)
    return time.time()


def delivery_ended(db: Any, event_id: str) -> bool:
    found = rows(
        db,
        "SELECT status, error FROM ensemble_deliveries WHERE event_id = ? AND subscription = ?",
        (event_id, "probe"),
    )
    if found and found[0][0] not in ("pending", "started"):
        if found[0][0] != "done":
            raise RuntimeError(f"probe {event_id} ended {found[0][0]}: {found[0][1]}")
        return True
    return False


def probe(
    count: int,
    prefix: str,
    publish_one: Callable[[str, str], None],
    ended: Callable[[str], bool],
    rng: random.Random,
) -> list[str]:
    """Publish `count` events one at a time, each once the previous run ended; their ids."""
    ids = []
    for n, question in enumerate(questions(count)):
        event_id = f"{prefix}-{n}"
        publish_one(event_id, question)
        wait_for(f"the run of {event_id}", functools.partial(ended, event_id))
        ids.append(event_id)
        time.sleep(rng.uniform(*PAUSE))
    return ids


def ensemble_probes(db: Any, count: int, prefix: str, rng: random.Random) -> list[str]:
    from ensemble.events.event import make_event
    from ensemble.events.store import publish

    def publish_one(event_id: str, question: str) -> None:
        publish(db, make_event("bench.probe", {"question": question}, source="bench", id=event_id))

    return probe(count, prefix, publish_one, lambda event_id: delivery_ended(db, event_id), rng)


async def first_checkpoints(saver: Any, threads: list[str]) -> list[float]:
    """Epoch seconds of each thread's first checkpoint (`ts`, ISO time)."""
    from ensemble.runner import thread_config

    found = []
    for thread in threads:
        stamps = [
            datetime.fromisoformat(saved.checkpoint["ts"]).timestamp()
            async for saved in saver.alist(thread_config(thread))
        ]
        if not stamps:
            raise RuntimeError(f"thread {thread} has no checkpoint")
        found.append(min(stamps))
    return found


async def ensemble_checkpoints(db: Any, threads: list[str]) -> list[float]:
    from ensemble.persistence import open_async_checkpointer

    async with open_async_checkpointer(db, create=False) as saver:
        return await first_checkpoints(saver, threads)


def percentile(values: list[float], share: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def summary(latencies: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in latencies]
    return {"p50_ms": statistics.median(ms), "p95_ms": percentile(ms, 0.95), "max_ms": max(ms)}


def route_burst(db: Any, burst: int) -> dict[str, float]:
    """`burst` events no subscription lets through: routed per second after the commit."""
    from ensemble.events.event import make_event
    from ensemble.events.store import publish

    events = [
        make_event("bench.route", {"n": n}, source="bench", id=f"route-{n}") for n in range(burst)
    ]
    began = time.time()
    publish(db, *events)
    committed = time.time()

    def all_routed() -> bool:
        query = "SELECT count(*) FROM ensemble_events WHERE type = ? AND routed = 1"
        ((routed,),) = rows(db, query, ("bench.route",))
        return int(routed) == burst

    finished = wait_for("routing the burst", all_routed)
    return {
        "publish_burst_s": committed - began,
        "route_s": finished - committed,
        "routed_per_s": burst / (finished - committed),
    }


def queue_burst(db: Any, burst: int, shards: int) -> dict[str, float]:
    """PostgreSQL, no worker: `burst` deliveries routed and queued; per second after the commit."""
    from ensemble.events.event import make_event
    from ensemble.events.store import publish

    events = [
        make_event(
            f"bench.shard-{n % shards}", {"question": f"Queued {n}?"}, source="bench", id=f"q-{n}"
        )
        for n in range(burst)
    ]
    publish(db, *events)
    committed = time.time()
    count = "SELECT count(*) FROM ensemble_deliveries WHERE subscription LIKE 'shard-%' AND "

    def all_queued() -> bool:
        ((queued,),) = rows(db, count + "status = 'started'")
        return int(queued) == burst

    wait_for("queueing the burst", all_queued)
    ((routed, queued),) = rows(
        db,
        "SELECT max(created_at), max(started_at) FROM ensemble_deliveries "
        "WHERE subscription LIKE 'shard-%'",
    )
    return {
        "routed_with_delivery_per_s": burst / (float(routed) - committed),
        "queue_s": float(queued) - committed,
        "queued_per_s": burst / (float(queued) - committed),
    }


def run_burst(db: Any, runs: int) -> dict[str, float]:
    """SQLite: `runs` probe events at once, run by the dispatcher; starts and ends per second."""
    from ensemble.events.event import make_event
    from ensemble.events.store import publish

    events = [
        make_event("bench.probe", {"question": q}, source="bench", id=f"run-{n}")
        for n, q in enumerate(questions(runs, offset=1000))
    ]
    publish(db, *events)
    committed = time.time()
    status = "SELECT status, count(*) FROM ensemble_deliveries WHERE event_id LIKE 'run-%' "

    def all_ended() -> bool:
        counts = dict(rows(db, status + "GROUP BY status"))
        if set(counts) - {"pending", "started", "done"}:
            raise RuntimeError(f"runs of the burst ended badly: {counts}")
        return int(counts.get("done", 0)) == runs

    wait_for("running the burst", all_ended)
    ((started, ended),) = rows(
        db,
        "SELECT max(started_at), max(updated_at) FROM ensemble_deliveries "
        "WHERE event_id LIKE 'run-%'",
    )
    return {
        "started_per_s": runs / (float(started) - committed),
        "done_per_s": runs / (float(ended) - committed),
        "runs_s": float(ended) - committed,
    }


def measure_ensemble(
    kind: str, db_url: str, args: argparse.Namespace, corpus: Path, workdir: Path
) -> dict[str, Any]:
    """One database: an idle dispatcher (and worker) probed, then the bursts."""
    from ensemble.db import database
    from ensemble.events.routing import delivery_thread

    db = database(db_url)
    folder = workdir / kind
    folder.mkdir()
    shards = math.ceil(args.burst / SHARD_CAP) if db.is_postgres else 0
    subscriptions = subscription_file(folder, corpus, shards)
    rng = random.Random(20)
    workers = start_workers(db_url, 1, folder) if db.is_postgres else []
    dispatcher = launch(
        f"{kind} dispatcher",
        [*ENSEMBLE, "events", "run", "--db", db_url, "--subscriptions", str(subscriptions)],
        folder,
        "dispatcher: ",
    )
    result: dict[str, Any] = {"setup": kind}
    try:
        ensemble_probes(db, 1, "warm", rng)  # imports, the graph, the corpus index: paid once
        ids = ensemble_probes(db, args.probes, "probe", rng)
        if workers:
            stop_workers(workers)
            workers = []
        result |= route_burst(db, args.burst)
        if db.is_postgres:
            result |= queue_burst(db, args.burst, shards)
        else:
            result |= run_burst(db, args.runs)
    finally:
        stop_workers([*workers, dispatcher])
    threads = [delivery_thread(event_id, "probe") for event_id in ids]
    published, claimed = [], []
    for event_id in ids:
        ((at,),) = rows(db, "SELECT published_at FROM ensemble_events WHERE id = ?", (event_id,))
        ((start,),) = rows(
            db,
            "SELECT started_at FROM ensemble_deliveries WHERE event_id = ? AND subscription = ?",
            (event_id, "probe"),
        )
        published.append(float(at))
        claimed.append(float(start))
    checkpoints = asyncio.run(ensemble_checkpoints(db, threads))
    result |= summary([c - p for c, p in zip(checkpoints, published, strict=True)])
    result["to_delivery_started_p50_ms"] = statistics.median(
        (c - p) * 1000 for c, p in zip(claimed, published, strict=True)
    )
    if db.is_postgres:
        taken = [
            float(rows(db, "SELECT extract(epoch FROM started_at) FROM ensemble_runs "
                       "WHERE thread_id = ?", (thread,))[0][0])
            for thread in threads
        ]  # fmt: skip
        result["to_worker_claim_p50_ms"] = statistics.median(
            (t - p) * 1000 for t, p in zip(taken, published, strict=True)
        )
    return result


# --- the baseline: the glue people write today ------------------------------------------------

GLUE_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS events (id TEXT PRIMARY KEY, question TEXT NOT NULL, "
    "published_at REAL NOT NULL, status TEXT NOT NULL DEFAULT 'new')"
)


async def glue(folder: Path, corpus: Path) -> None:
    """Poll a table of events every second; run the research graph for each new one, in turn."""
    from langchain_core.runnables import RunnableConfig
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    from ensemble.db import database
    from ensemble.graphs.registry import SCENARIOS
    from ensemble.run_settings import resolve
    from ensemble.workspace import Workspace

    scenario = SCENARIOS["research"]
    context = resolve(None, {"model": MODEL, "cache": False}, how="run").context
    table = sqlite3.connect(folder / "events.db", isolation_level=None)
    async with AsyncSqliteSaver.from_conn_string(str(folder / "checkpoints.db")) as saver:
        graph = scenario.compile(saver, Workspace(db=database(folder / "audit.db")))
        print("glue: polling", flush=True)
        while True:
            new = table.execute(
                "SELECT id, question FROM events WHERE status = 'new' ORDER BY published_at"
            ).fetchall()
            for event_id, question in new:
                table.execute("UPDATE events SET status = 'running' WHERE id = ?", (event_id,))
                data = run_input(corpus) | {"question": question}
                config: RunnableConfig = {"configurable": {"thread_id": event_id}}
                try:
                    await graph.ainvoke(
                        scenario.validate_input(data).model_dump(), config, context=context
                    )
                    status = "done"
                except Exception as error:  # noqa: BLE001 - the glue records it and goes on
                    status = f"failed: {error}"
                table.execute("UPDATE events SET status = ? WHERE id = ?", (status, event_id))
            await asyncio.sleep(GLUE_POLL)


def measure_baseline(args: argparse.Namespace, corpus: Path, workdir: Path) -> dict[str, Any]:
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    folder = workdir / "baseline"
    folder.mkdir()
    table = sqlite3.connect(folder / "events.db", isolation_level=None)
    table.execute("PRAGMA journal_mode=WAL")
    table.execute(GLUE_SCHEMA)
    rng = random.Random(20)

    def publish_one(event_id: str, question: str) -> None:
        table.execute(
            "INSERT INTO events (id, question, published_at) VALUES (?, ?, ?)",
            (event_id, question, time.time()),
        )

    def ended(event_id: str) -> bool:
        ((status,),) = table.execute("SELECT status FROM events WHERE id = ?", (event_id,))
        if status.startswith("failed"):
            raise RuntimeError(f"glue run {event_id} {status}")
        return bool(status == "done")

    command = [sys.executable, "-m", "benchmarks.events_latency", "--glue"]
    loop = launch("glue", [*command, str(folder), str(corpus)], folder, "glue: polling")
    try:
        probe(1, "warm", publish_one, ended, rng)
        ids = probe(args.probes, "probe", publish_one, ended, rng)
    finally:
        stop_workers([loop])
    published = [
        float(table.execute("SELECT published_at FROM events WHERE id = ?", (i,)).fetchone()[0])
        for i in ids
    ]
    table.close()

    async def read() -> list[float]:
        async with AsyncSqliteSaver.from_conn_string(str(folder / "checkpoints.db")) as saver:
            return await first_checkpoints(saver, ids)

    checkpoints = asyncio.run(read())
    return {"setup": "baseline"} | summary(
        [c - p for c, p in zip(checkpoints, published, strict=True)]
    )


# --- the whole -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=30, help="events published one at a time")
    parser.add_argument("--burst", type=int, default=1000, help="events in one publish call")
    parser.add_argument("--runs", type=int, default=60, help="SQLite: runs in the run burst")
    parser.add_argument("--skip-postgres", action="store_true", help="no PostgreSQL row")
    parser.add_argument("--glue", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.glue:
        asyncio.run(glue(*args.glue))
        return {}
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ensemble-bench-") as tmp:
        workdir = Path(tmp)
        corpus = write_corpus(workdir / "corpus")
        results.append(
            measure_ensemble("sqlite", str(workdir / "events.db"), args, corpus, workdir)
        )
        if not args.skip_postgres:
            server = PostgresServer()
            server.start()
            try:
                url = server.new_database("bench_events")
                ensemble_cli("db", "upgrade", "--db", url)
                results.append(measure_ensemble("postgresql", url, args, corpus, workdir))
            finally:
                server.stop()
        results.append(measure_baseline(args, corpus, workdir))
    return report(results, args)


COLUMNS = ("p50 ms", "p95 ms", "routed/s", "started-or-queued/s", "done/s")


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    baseline = next(r for r in results if r["setup"] == "baseline")
    ratios = {
        f"{r['setup']}_over_baseline": {
            "p50": round(r["p50_ms"] / baseline["p50_ms"], 3),
            "p95": round(r["p95_ms"] / baseline["p95_ms"], 3),
        }
        for r in results
        if r is not baseline
    }

    def cell(value: float | None, width: int) -> str:
        return f"{value:>{width}.0f}" if value is not None else f"{'-':>{width}}"

    print(
        f"events dispatcher: {args.probes} probes, bursts of {args.burst} events "
        f"(SQLite runs: {args.runs}), model {MODEL}, {os.cpu_count()} CPUs"
    )
    print(f"{'setup':<11} " + " ".join(f"{c:>{max(len(c), 8)}}" for c in COLUMNS))
    for r in results:
        started = r.get("queued_per_s", r.get("started_per_s"))
        values = (r["p50_ms"], r["p95_ms"], r.get("routed_per_s"), started, r.get("done_per_s"))
        print(
            f"{r['setup']:<11} "
            + " ".join(cell(v, max(len(c), 8)) for v, c in zip(values, COLUMNS, strict=True))
        )
    for name, ratio in ratios.items():
        print(f"{name.replace('_', ' ')}: p50 {ratio['p50']:.2f}x, p95 {ratio['p95']:.2f}x")
    print(
        "p50/p95: publish to the run's first checkpoint, idle dispatcher (baseline: a loop polling "
        f"every {GLUE_POLL:g} s); routed/s: a filter nobody passes; started-or-queued/s: "
        "PostgreSQL queued with no worker, SQLite started by the dispatcher (concurrency "
        f"{DISPATCHER_CONCURRENCY}); done/s: the same SQLite runs ended"
    )
    found = {
        "benchmark": "events_latency",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "probes": args.probes,
        "burst": args.burst,
        "runs": args.runs,
        "model": MODEL,
        "rows": [{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}
                 for r in results],
        "ratios": ratios,
    }  # fmt: skip
    print(json.dumps(found))
    return found


if __name__ == "__main__":
    main()
