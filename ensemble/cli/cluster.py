"""`ensemble submit`, `ensemble worker`, `ensemble schedule`: runs on the shared queue.

These commands need a PostgreSQL database (`--db postgresql://...` or `ENSEMBLE_DB`): the queue,
the leases and the schedules live there, beside the checkpoints. A submitted run is validated and
its settings resolved here, so a worker on any machine runs exactly what was asked.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from ensemble.cli.render import print_json, table

SUBMIT_DESCRIPTION = (
    "ensemble submit SCENARIO [INPUT] [--FIELD VALUE ...] --db postgresql://...: queue a new run "
    "(the same inputs and flags as `ensemble run`); `ensemble submit resume THREAD [--answer A]` "
    "and `ensemble submit fork THREAD --checkpoint ID [--set F=V]` queue a resume or a branch. "
    "Prints the thread id."
)


def add_cluster_parsers(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add `submit`, `worker` and `schedule` to the CLI."""
    from ensemble.cluster import (
        DEFAULT_CONCURRENCY,
        DEFAULT_LEADER_LEASE,
        DEFAULT_STALL_TIMEOUT,
    )

    submit = sub.add_parser(
        "submit", help="queue a run for the workers (PostgreSQL)", description=SUBMIT_DESCRIPTION
    )
    submit.add_argument("scenario", help="a scenario, or `resume` / `fork` and a thread id")
    submit.add_argument("args", nargs=argparse.REMAINDER, metavar="...", help="as `ensemble run`")

    worker = sub.add_parser(
        "worker",
        parents=parents,
        help="take queued runs and run them (PostgreSQL)",
        description="Run queued threads until SIGINT/SIGTERM; start as many as you like, on any "
        "machine that reaches the database. One of them is the leader: it fires schedules and "
        "re-queues runs whose worker died.",
    )
    worker.add_argument(
        "--concurrency", type=int, default=DEFAULT_CONCURRENCY,
        help=f"runs at once in this worker (default: {DEFAULT_CONCURRENCY})",
    )  # fmt: skip
    worker.add_argument(
        "--stall-timeout", type=float, default=DEFAULT_STALL_TIMEOUT, metavar="SECONDS",
        help="a run whose worker sent no heartbeat for this long (database clock) is taken over "
        f"by another worker (default: {DEFAULT_STALL_TIMEOUT:g})",
    )  # fmt: skip
    worker.add_argument(
        "--leader-lease", type=float, default=DEFAULT_LEADER_LEASE, metavar="SECONDS",
        help="a leader silent for this long loses its post to another worker "
        f"(default: {DEFAULT_LEADER_LEASE:g})",
    )  # fmt: skip
    worker.add_argument(
        "--scenarios", help="comma-separated scenarios this worker takes (default: all)"
    )
    worker.add_argument(
        "--cap", action="append", default=[], metavar="SCENARIO=N",
        help="at most N runs of SCENARIO at once across the cluster (give every worker the same)",
    )  # fmt: skip
    worker.add_argument("--name", help="this worker's name in logs (default: HOST-PID)")
    worker.add_argument(
        "--corpus-root", dest="corpus_roots", action="append", default=[], type=Path,
        metavar="DIR", help="only folders inside DIR may be a run's corpus (repeatable; default: "
        "any folder, as for `ensemble run`; also $ENSEMBLE_CORPUS_ROOTS)",
    )  # fmt: skip
    worker.add_argument(
        "--output-root", dest="output_roots", action="append", default=[], type=Path,
        metavar="DIR", help="runs may publish only inside DIR (repeatable; default: any folder; "
        "also $ENSEMBLE_OUTPUT_ROOTS)",
    )  # fmt: skip

    schedule = sub.add_parser(
        "schedule",
        help="events published or runs queued on a cron schedule",
        description="`schedule publish` (SQLite or PostgreSQL) publishes an event at each due "
        "time, for subscriptions to act on; `schedule add` (PostgreSQL) queues a run.",
    )
    actions = schedule.add_subparsers(dest="schedule_command", required=True, metavar="ACTION")
    publish = actions.add_parser(
        "publish",
        parents=parents,
        help="publish an event on a schedule: CRON TYPE [--data JSON]",
        description="ensemble schedule publish '0 7 * * *' digest.due --data '{\"topic\": "
        '"bees"}\': at each due time (UTC) one event is published; the dispatcher fires it '
        "on SQLite, the workers' leader on PostgreSQL.",
    )
    publish.add_argument("cron", help="five cron fields, e.g. '0 7 * * *'")
    publish.add_argument("type", help="the event type, e.g. digest.due")
    publish.add_argument("--data", help="the event's data, a JSON object (default: {})")
    add = actions.add_parser(
        "add",
        help="add a schedule: CRON SCENARIO [INPUT] [flags as ensemble run]",
        description="ensemble schedule add '0 7 * * *' research \"...\" --yes --db URL: the "
        "leader queues the run at each due time (the database's clock, UTC).",
    )
    add.add_argument("cron", help="five cron fields, e.g. '0 7 * * *'")
    add.add_argument("scenario")
    add.add_argument("args", nargs=argparse.REMAINDER, metavar="...")
    actions.add_parser("list", parents=parents, help="list the schedules")
    remove = actions.add_parser("remove", parents=parents, help="remove a schedule")
    remove.add_argument("id", help="a schedule's id: N (a run) or eN (an event)")


@asynccontextmanager
async def cluster_connection(value: str | None) -> AsyncIterator[Any]:
    """A connection to the cluster's PostgreSQL database, checked to be upgraded.

    Raises:
        InvalidInputError: The database is a SQLite file (the queue needs PostgreSQL).
    """
    import psycopg
    from psycopg.rows import dict_row

    from ensemble.db.postgres import CONNECT_TIMEOUT, explain
    from ensemble.db.schema import require_current_async

    db = require_postgres(value)
    try:
        conn = await psycopg.AsyncConnection.connect(
            db.dsn or "",
            autocommit=True,
            row_factory=dict_row,
            connect_timeout=int(CONNECT_TIMEOUT),
        )
    except psycopg.Error as error:
        raise explain(db, error) from error
    async with conn:
        await require_current_async(conn, db)
        yield conn


def require_postgres(value: str | None) -> Any:
    """The database named by `--db` / `ENSEMBLE_DB`, which must be PostgreSQL."""
    from ensemble.db import database
    from ensemble.errors import InvalidInputError

    db = database(value)
    if not db.is_postgres:
        raise InvalidInputError(
            f"the run queue needs PostgreSQL, and {db} is a SQLite file: pass "
            "--db postgresql://... (or set ENSEMBLE_DB); on SQLite use `ensemble run`"
        )
    return db


async def cmd_submit(args: argparse.Namespace) -> int:
    """`ensemble submit ...`: validate here, queue there, print the thread id."""
    from ensemble.cli.render import print_json
    from ensemble.cluster import runs

    if args.scenario in ("resume", "fork"):
        parsed, scenario_name, thread_id, request = await _thread_request(args)
    else:
        parsed, scenario_name, thread_id, request = await _start_request(args, "submit")
    async with cluster_connection(parsed.db) as conn:
        await runs.submit(
            conn,
            thread_id=thread_id,
            scenario=scenario_name,
            request=request,
            priority=parsed.priority,
        )
    if parsed.json:
        print_json({"thread_id": thread_id, "scenario": scenario_name, "status": "queued"})
    else:
        print(thread_id)
    return 0


def _queue_flags(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--priority", type=int, default=0, help="higher runs first (default: 0)")
    return parser


async def _start_request(
    args: argparse.Namespace, command: str
) -> tuple[Any, str, str, dict[str, Any]]:
    from ensemble.cli.commands import _run_input, scenario_parser
    from ensemble.cli.flags import given_settings
    from ensemble.cluster.execute import start_request
    from ensemble.graphs.registry import get_scenario
    from ensemble.run_settings import resolve
    from ensemble.runner import new_thread_id

    scenario = get_scenario(args.scenario)
    parser = _queue_flags(scenario_parser(scenario))
    parser.prog = f"ensemble {command} {scenario.name}"
    parsed = parser.parse_args(args.args)
    data = _run_input(scenario, parsed)
    run_settings = resolve(None, given_settings(parsed), how="run")
    thread_id = parsed.thread or new_thread_id()
    if parsed.thread:
        await _refuse_existing(parsed.db, thread_id)
    return parsed, scenario.name, thread_id, start_request(data, run_settings, yes=parsed.yes)


async def _refuse_existing(value: str | None, thread_id: str) -> None:
    from ensemble.errors import InvalidInputError
    from ensemble.persistence import open_async_checkpointer
    from ensemble.runner import thread_config

    async with open_async_checkpointer(require_postgres(value)) as saver:
        if await saver.aget_tuple(thread_config(thread_id)) is not None:
            raise InvalidInputError(f"thread {thread_id!r} already exists; submit resume or fork")


async def _thread_request(args: argparse.Namespace) -> tuple[Any, str, str, dict[str, Any]]:
    from ensemble.cli.commands import _parse_set, answer_for, thread_parser
    from ensemble.cli.flags import given_settings
    from ensemble.cluster.execute import fork_request, resume_request
    from ensemble.db import database
    from ensemble.runner import open_thread, require_checkpoint, thread_config
    from ensemble.workspace import Workspace

    parser = _queue_flags(thread_parser(args.scenario, f"queue a {args.scenario}"))
    parser.prog = f"ensemble submit {args.scenario}"
    parsed = parser.parse_args(args.args)
    require_postgres(parsed.db)
    overrides = given_settings(parsed)
    async with open_thread(Workspace(db=database(parsed.db)), parsed.thread) as (
        scenario,
        graph,
        _,
    ):
        head = await require_checkpoint(graph, thread_config(parsed.thread))
        at = head.config["configurable"].get("checkpoint_id")
        if args.scenario == "resume":
            answer = answer_for(parsed.answer, head, scenario, overrides, parsed.thread)
            request = resume_request(at, overrides, answer, yes=parsed.yes)
        else:
            past = await require_checkpoint(graph, thread_config(parsed.thread, parsed.checkpoint))
            sets = dict(_parse_set(item) for item in parsed.sets)
            past_values = past.values if isinstance(past.values, dict) else {}
            updates = scenario.fork_updates(past_values, sets) if sets else {}
            request = fork_request(
                at, parsed.checkpoint, json.loads(json.dumps(updates, default=str)), overrides,
                yes=parsed.yes,
            )  # fmt: skip
    return parsed, scenario.name, parsed.thread, request


async def cmd_worker(args: argparse.Namespace) -> int:
    """`ensemble worker`: run queued threads until SIGINT or SIGTERM."""
    from ensemble.cluster.worker import Worker
    from ensemble.errors import InvalidInputError
    from ensemble.graphs.registry import SCENARIOS

    db = require_postgres(args.db)
    names = tuple(SCENARIOS) if not args.scenarios else tuple(
        s.strip() for s in args.scenarios.split(",") if s.strip()
    )  # fmt: skip
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown or not names:
        raise InvalidInputError(
            f"--scenarios: unknown {', '.join(unknown) or '(none given)'}; known: "
            f"{', '.join(sorted(SCENARIOS))}"
        )
    if args.concurrency < 1:
        raise InvalidInputError(f"--concurrency must be at least 1, got {args.concurrency}")
    if args.stall_timeout <= 1 or args.leader_lease <= 1:
        raise InvalidInputError("--stall-timeout and --leader-lease must be more than 1 second")
    caps: dict[str, int] = {}
    for item in args.cap:
        name, sep, number = item.partition("=")
        if not sep or name not in SCENARIOS or not number.isdigit() or int(number) < 1:
            raise InvalidInputError(f"--cap {item!r}: expected SCENARIO=N with N >= 1")
        caps[name] = int(number)
    async with cluster_connection(args.db):
        pass  # refuse a database that is not upgraded before anything starts
    from ensemble.cli.serve import rooted_workspace

    workspace = rooted_workspace(db, args)
    worker = Worker(
        db=db,
        workspace=workspace,
        concurrency=args.concurrency,
        stall_timeout=args.stall_timeout,
        leader_lease=args.leader_lease,
        scenarios=names,
        caps=caps,
        say=lambda line: print(line, flush=True),
    )
    if args.name:
        worker.name = args.name
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await worker.run(stop)
    return 0


async def cmd_schedule(args: argparse.Namespace) -> int:
    """`ensemble schedule publish|add|list|remove`."""
    from ensemble.cluster import schedules
    from ensemble.db import database
    from ensemble.errors import InvalidInputError, NotFoundError
    from ensemble.events import schedules as event_schedules

    if args.schedule_command == "publish":
        from ensemble.events.event import parse_data

        row = await asyncio.to_thread(
            event_schedules.add, database(args.db), args.cron, args.type, parse_data(args.data)
        )
        if args.json:
            print_json({"schedule": row})
        else:
            print(f"schedule {row['id']}: {row['cron']} {row['type']}, next at {row['next_at']}")
        return 0
    if args.schedule_command == "add":
        schedules.check_cron(args.cron)
        parsed, name, _, request = await _start_request(args, "schedule add")
        if parsed.thread:
            raise InvalidInputError("--thread: each scheduled run gets a new thread")
        async with cluster_connection(parsed.db) as conn:
            row = await schedules.add(conn, args.cron, name, request, parsed.priority)
        if parsed.json:
            print_json({"schedule": row})
        else:
            print(
                f"schedule {row['id']}: {row['cron']} {row['scenario']}, next at {row['next_at']}"
            )
        return 0
    db = database(args.db)
    if args.schedule_command == "remove":
        if args.id.startswith(event_schedules.ID_PREFIX):
            removed = await asyncio.to_thread(event_schedules.remove, db, args.id)
        elif args.id.isdigit() and db.is_postgres:
            async with cluster_connection(args.db) as conn:
                removed = await schedules.remove(conn, int(args.id))
        else:
            removed = False
        if not removed:
            raise NotFoundError(f"no schedule {args.id} (ensemble schedule list)")
        print(f"schedule {args.id} removed")
        return 0
    runs: list[dict[str, Any]] = []
    if db.is_postgres:
        async with cluster_connection(args.db) as conn:
            runs = await schedules.listing(conn)
    events = await asyncio.to_thread(event_schedules.listing, db)
    if args.json:
        print_json({"schedules": runs, "event_schedules": events})
    elif not runs and not events:
        print("No schedules.")
    else:
        cells = [
            [r["id"], r["cron"], f"run {r['scenario']}", r["next_at"], r["fired"],
             r["last_thread"] or "-"]
            for r in runs
        ] + [
            [e["id"], e["cron"], f"event {e['type']}", e["next_at"], e["fired"],
             e["last_event"] or "-"]
            for e in events
        ]  # fmt: skip
        print(table(cells, ["ID", "CRON", "DOES", "NEXT", "FIRED", "LAST"]))
    return 0
