"""`ensemble events ...` and `ensemble subscriptions`: publish, dispatch, inspect, replay.

- `ensemble events`: recent events and what each one started.
- `ensemble events publish TYPE --data JSON`: store an event (its id makes a repeat harmless).
- `ensemble events run --subscriptions DIR [--watch FOLDER]`: the dispatcher.
- `ensemble events dead` / `ensemble events replay EVENT_ID`: deliveries that gave up, again.
- `ensemble subscriptions`: the subscriptions, checked, with their deliveries.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path
from typing import Any

from ensemble import settings

SUBSCRIPTIONS_HELP = (
    "a subscription file or a folder of them (repeatable; default: $ENSEMBLE_SUBSCRIPTIONS)"
)


def _common() -> argparse.ArgumentParser:
    """`--db`/`--json` for the actions; SUPPRESS keeps a value given before the action."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", default=argparse.SUPPRESS, help="SQLite file or postgresql:// URL")
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print one JSON object"
    )
    return common


def add_events_parsers(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add `events` (and its actions) and `subscriptions` to the CLI."""
    from ensemble.events import DEFAULT_CONCURRENCY, DEFAULT_WATCH_INTERVAL

    events = sub.add_parser(
        "events",
        parents=parents,
        help="publish events, run the dispatcher, see deliveries",
        description="Without an action: the latest events and the runs they started.",
    )
    events.add_argument("--type", help="only events of this type")
    events.add_argument("--limit", type=int, default=20, help="how many (default: 20)")
    actions = events.add_subparsers(dest="events_command", metavar="ACTION")
    common = [_common()]

    publish = actions.add_parser("publish", parents=common, help="publish an event")
    publish.add_argument("type", help="dotted lower-case words, e.g. invoice.paid")
    publish.add_argument("--data", help="the event's data, a JSON object (default: {})")
    publish.add_argument("--id", help="the event's id; publishing an id again changes nothing")
    publish.add_argument("--source", default="cli", help="where it comes from (default: cli)")

    run = actions.add_parser(
        "run",
        parents=common,
        help="the dispatcher: start the runs events ask for",
        description="Route events to subscriptions and start their runs until SIGINT/SIGTERM. "
        "On SQLite this process runs them (one dispatcher per file); on PostgreSQL it queues "
        "them for `ensemble worker` (any number of dispatchers).",
    )
    run.add_argument(
        "--subscriptions",
        action="append",
        default=[],
        type=Path,
        metavar="PATH",
        help=SUBSCRIPTIONS_HELP,
    )
    run.add_argument(
        "--watch",
        action="append",
        default=[],
        type=Path,
        metavar="DIR",
        help="publish document.changed for documents added or changed in DIR",
    )
    run.add_argument(
        "--watch-interval",
        type=float,
        default=DEFAULT_WATCH_INTERVAL,
        metavar="SECONDS",
        help=f"scan every SECONDS (default: {DEFAULT_WATCH_INTERVAL:g})",
    )
    run.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help=f"SQLite: runs at once (default: {DEFAULT_CONCURRENCY})",
    )
    run.add_argument(
        "--corpus-root",
        dest="corpus_roots",
        action="append",
        default=[],
        type=Path,
        metavar="DIR",
        help="only folders inside DIR may be a run's corpus",
    )
    run.add_argument(
        "--output-root",
        dest="output_roots",
        action="append",
        default=[],
        type=Path,
        metavar="DIR",
        help="runs may publish only inside DIR",
    )

    dead = actions.add_parser("dead", parents=common, help="deliveries that gave up")
    dead.add_argument("--subscription", help="only this subscription's")
    dead.add_argument("--limit", type=int, default=100, help="how many (default: 100)")

    replay = actions.add_parser(
        "replay", parents=common, help="route an event's dead deliveries again"
    )
    replay.add_argument("event", help="the event id (ensemble events dead)")
    replay.add_argument("--subscription", help="only this subscription's delivery")

    subscriptions = sub.add_parser(
        "subscriptions",
        parents=parents,
        help="check and list subscriptions with their deliveries",
        description="Load every subscription file (errors name the file and line) and count "
        "each subscription's deliveries by status.",
    )
    subscriptions.add_argument(
        "--subscriptions",
        action="append",
        default=[],
        type=Path,
        metavar="PATH",
        help=SUBSCRIPTIONS_HELP,
    )


def _subscriptions(given: list[Path]) -> list[Any]:
    from ensemble.errors import InvalidInputError
    from ensemble.events.subscriptions import load_subscriptions

    paths = given or list(settings.subscription_paths())
    if not paths:
        raise InvalidInputError(
            "no subscriptions: pass --subscriptions FILE_OR_DIR (or set ENSEMBLE_SUBSCRIPTIONS)"
        )
    return load_subscriptions(paths)


async def cmd_events(args: argparse.Namespace) -> int:
    """`ensemble events [ACTION]`."""
    action = getattr(args, "events_command", None) or "list"
    return await {
        "list": _list,
        "publish": _publish,
        "run": _run,
        "dead": _dead,
        "replay": _replay,
    }[action](args)


async def _publish(args: argparse.Namespace) -> int:
    from ensemble.cli.render import print_json
    from ensemble.db import database
    from ensemble.events.event import make_event, parse_data
    from ensemble.events.store import publish

    event = make_event(args.type, parse_data(args.data), source=args.source, id=args.id)
    (new,) = await asyncio.to_thread(publish, database(getattr(args, "db", None)), event)
    if getattr(args, "json", False):
        print_json({"event": event.as_dict(), "stored": new})
    elif new:
        print(event.id)
    else:
        print(f"{event.id} (published before: nothing changed)")
    return 0


async def _list(args: argparse.Namespace) -> int:
    from ensemble.cli.render import print_json, table
    from ensemble.db import database
    from ensemble.events.store import recent_events

    found = await asyncio.to_thread(
        recent_events, database(getattr(args, "db", None)), limit=args.limit, event_type=args.type
    )
    if getattr(args, "json", False):
        print_json({"events": found})
        return 0
    if not found:
        print("No events.")
        return 0
    rows = [
        [e["time"][:19].replace("T", " "), e["type"], _short(e["id"]), e["source"],
         "; ".join(_delivery_line(d) for d in e["deliveries"])
         or ("-" if e["routed"] else "not routed yet")]
        for e in found
    ]  # fmt: skip
    print(table(rows, ["TIME (UTC)", "TYPE", "ID", "SOURCE", "DELIVERIES"]))
    return 0


def _delivery_line(delivery: dict[str, Any]) -> str:
    thread = f" {delivery['thread_id'][:8]}" if delivery.get("thread_id") else ""
    return f"{delivery['subscription']}: {delivery['status']}{thread}"


def _short(text: str, width: int = 28) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


async def _dead(args: argparse.Namespace) -> int:
    from ensemble.cli.render import print_json, table
    from ensemble.db import database
    from ensemble.events.store import deliveries

    found = await asyncio.to_thread(
        deliveries,
        database(getattr(args, "db", None)),
        status="dead",
        subscription=args.subscription,
        limit=args.limit,
    )
    if getattr(args, "json", False):
        print_json({"dead": found})
    elif not found:
        print("No dead deliveries.")
    else:
        rows = [[d["event_id"], d["subscription"], d["attempts"], d["error"]] for d in found]
        print(table(rows, ["EVENT", "SUBSCRIPTION", "RUNS", "REASON"]))
        print("\nAfter fixing the cause: ensemble events replay EVENT [--subscription NAME]")
    return 0


async def _replay(args: argparse.Namespace) -> int:
    from ensemble.cli.render import print_json
    from ensemble.db import database
    from ensemble.events.store import replay

    names = await asyncio.to_thread(
        replay, database(getattr(args, "db", None)), args.event, args.subscription
    )
    if getattr(args, "json", False):
        print_json({"event": args.event, "replayed": names})
    else:
        print(f"event {args.event}: routing again for {', '.join(names)}")
    return 0


async def _run(args: argparse.Namespace) -> int:
    from ensemble.cli.serve import rooted_workspace
    from ensemble.db import database
    from ensemble.errors import InvalidInputError
    from ensemble.events.dispatcher import Dispatcher

    subscriptions = _subscriptions(args.subscriptions)
    if args.concurrency < 1:
        raise InvalidInputError(f"--concurrency must be at least 1, got {args.concurrency}")
    if args.watch_interval < 0.1:
        raise InvalidInputError("--watch-interval must be at least 0.1 seconds")
    for folder in args.watch:
        if not folder.is_dir():
            raise InvalidInputError(f"--watch {folder} is not a folder")
    db = database(getattr(args, "db", None))
    if not db.is_postgres:
        from ensemble.db import Database

        db = Database(kind="sqlite", path=db.sqlite_path.resolve())
    workspace = rooted_workspace(db, args)
    dispatcher = Dispatcher(
        db=db,
        workspace=workspace,
        subscriptions=subscriptions,
        watch=tuple(f.resolve() for f in args.watch),
        watch_interval=args.watch_interval,
        concurrency=args.concurrency,
        say=lambda line: print(line, flush=True),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await dispatcher.run(stop)
    return 0


async def cmd_subscriptions(args: argparse.Namespace) -> int:
    """`ensemble subscriptions`: every subscription, checked, with its deliveries by status."""
    from ensemble.cli.render import print_json, table
    from ensemble.db import database
    from ensemble.events.store import STATUSES, delivery_counts

    found = _subscriptions(args.subscriptions)
    counts = await asyncio.to_thread(delivery_counts, database(getattr(args, "db", None)))
    if getattr(args, "json", False):
        listed = [s.describe() | {"deliveries": counts.get(s.name, {})} for s in found]
        print_json({"subscriptions": listed})
        return 0
    rows = [
        [s.name, s.event, s.scenario, s.priority, s.concurrency,
         " ".join(f"{k}={counts[s.name][k]}" for k in STATUSES if counts.get(s.name, {}).get(k))
         or "-", s.where]
        for s in found
    ]  # fmt: skip
    print(table(rows, ["NAME", "EVENT", "SCENARIO", "PRIORITY", "CAP", "DELIVERIES", "FILE"]))
    return 0
