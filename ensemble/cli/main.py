"""`ensemble`: run scenarios, answer their questions, resume, inspect and fork threads.

This module is the grammar and the dispatch only: it imports nothing heavy, so `ensemble --help`
starts fast; each command's module (and LangGraph) is imported when that command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sqlite3
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ensemble import settings
from ensemble.cli.agents import add_agents_parser
from ensemble.cli.audit import add_audit_parsers
from ensemble.cli.cluster import add_cluster_parsers
from ensemble.cli.db import add_db_parser
from ensemble.cli.doctor import add_doctor_parser
from ensemble.cli.eval import add_eval_parser
from ensemble.cli.events import add_events_parsers
from ensemble.cli.graph import add_graph_parser
from ensemble.cli.render import print_json
from ensemble.cli.serve import add_serve_parser
from ensemble.errors import DatabaseError, EnsembleError

if TYPE_CHECKING:
    from ensemble.workspace import Workspace

EXIT_ERROR = 2


def common_flags() -> argparse.ArgumentParser:
    """`--db` and `--json`: the flags of every command that reads a database."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--db",
        help=f"SQLite file or postgresql:// URL (default: $ENSEMBLE_DB or {settings.DEFAULT_DB})",
    )
    common.add_argument("--json", action="store_true", help="print one JSON object at the end")
    return common


STAGED = {
    "resume": "continue a paused or crashed thread",
    "fork": "branch a thread from a checkpoint",
}
"""Commands that take run settings: their flags come from `Context` (pydantic), so their whole
grammar is built once the command is chosen (`ensemble.cli.commands.thread_parser`)."""


def build_parser() -> argparse.ArgumentParser:
    """The command-line grammar (each scenario's run flags come from its input schema)."""
    parser = argparse.ArgumentParser(
        prog="ensemble", description="Multi-agent orchestration on LangGraph."
    )
    parser.add_argument("--version", action="version", version=f"ensemble {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = common_flags()

    run = sub.add_parser(
        "run",
        help="start a scenario run",
        description="ensemble run SCENARIO [INPUT] [--FIELD VALUE ...]; "
        "`ensemble run SCENARIO --help` lists a scenario's inputs.",
    )
    run.add_argument(
        "scenario", help="a scenario: research, content, solver, ... (`ensemble scenarios`)"
    )
    run.add_argument(
        "args", nargs=argparse.REMAINDER, help="the scenario's input and flags", metavar="..."
    )

    for name, about in STAGED.items():  # the flags are read by the second stage, in `_main`
        sub.add_parser(name, help=about, add_help=False)

    threads = sub.add_parser(
        "threads",
        parents=[common],
        help="list threads (with their size), or delete some",
        description="ensemble threads [--scenario S] [--status S] [--older-than DAYS] lists; "
        "ensemble threads delete ID... deletes threads with their checkpoints and audit trail.",
    )
    threads.add_argument("action", nargs="?", choices=("delete",), help="delete the threads IDS")
    threads.add_argument("ids", nargs="*", metavar="ID", help="threads to delete")
    threads.add_argument("--scenario", help="only threads of this scenario")
    threads.add_argument(
        "--older-than", type=float, metavar="DAYS", help="only threads not updated for DAYS days"
    )
    threads.add_argument(
        "--status",
        choices=("queued", "running", "interrupted", "done", "failed"),
        help="only threads with this status (interrupted: waiting for an answer; queued and "
        "running: on a PostgreSQL run queue)",
    )

    prune = sub.add_parser(
        "prune",
        parents=[common],
        help="remove old checkpoints of finished threads",
        description="Keep the newest checkpoints of every branch of each finished (done) thread "
        "and remove the rest; threads waiting for a person, running or failed are never touched. "
        "The space is given back (SQLite: VACUUM).",
    )
    prune.add_argument(
        "--keep-last",
        type=int,
        default=1,
        metavar="N",
        help="checkpoints kept on each branch (default: 1, the result)",
    )
    prune.add_argument(
        "--older-than",
        type=float,
        default=0.0,
        metavar="DAYS",
        help="only threads not updated for DAYS days (default: 0: every finished thread)",
    )
    prune.add_argument("--dry-run", action="store_true", help="say what would go; change nothing")

    history = sub.add_parser("history", parents=[common], help="list a thread's checkpoints")
    history.add_argument("thread")
    history.add_argument("--limit", type=int, default=50)

    show = sub.add_parser("show", parents=[common], help="show a thread's state")
    show.add_argument("thread")
    show.add_argument("--checkpoint", help="a past checkpoint instead of the latest")

    export = sub.add_parser(
        "export", parents=[common], help="write a thread's result as Markdown, HTML or JSON"
    )
    export.add_argument("thread")
    export.add_argument("--format", choices=("md", "html", "json"), default="md")
    export.add_argument("--checkpoint", help="a past checkpoint instead of the latest")
    export.add_argument("--out", type=Path, help="write to this file instead of stdout")

    scenarios = sub.add_parser("scenarios", help="list the scenarios and their inputs")
    scenarios.add_argument("--json", action="store_true", help="print one JSON object")
    add_serve_parser(sub, [common])
    add_agents_parser(sub, [])
    add_audit_parsers(sub, [common])
    add_eval_parser(sub, [])
    add_doctor_parser(sub, [])
    add_graph_parser(sub, [])
    add_db_parser(sub, [common])
    add_cluster_parsers(sub, [common])
    add_events_parsers(sub, [common])
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ensemble")
    except PackageNotFoundError:  # pragma: no cover - a checkout on sys.path, not installed
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `ensemble` console script."""
    try:
        return _main(argv)
    except BrokenPipeError:  # `ensemble threads | head`: the reader has all it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes at exit
        return 141  # 128 + SIGPIPE, as a program killed by the closed pipe would report


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command in STAGED:
        from ensemble.cli.commands import thread_parser

        args = thread_parser(args.command, STAGED[args.command]).parse_args(rest, args)
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        return asyncio.run(_command(args.command)(args))
    except EnsembleError as error:
        return _refuse(args, str(error))
    except sqlite3.Error as error:
        return _refuse(args, str(DatabaseError(str(error))))
    except KeyboardInterrupt as stop:
        thread = getattr(stop, "thread_id", None)
        how = f"ensemble resume {thread}" if thread else "ensemble resume THREAD"
        print(f"\nensemble: stopped; go on with: {how}", file=sys.stderr)
        return 130
    finally:
        _finish_process()


def _refuse(args: argparse.Namespace, message: str) -> int:
    """A refused command: one line on stderr, and with `--json` one object on stdout."""
    print(f"ensemble: error: {message}", file=sys.stderr)
    if getattr(args, "json", False):
        print_json({"status": "refused", "error": message})
    return EXIT_ERROR


COMMANDS = (
    dict.fromkeys(("run", "resume", "fork", "history", "show", "scenarios", "export"), "commands")
    | {"stats": "audit", "submit": "cluster", "worker": "cluster", "schedule": "cluster"}
    | {"subscriptions": "events", "prune": "maintenance"}
)
"""The module of a command's `cmd_<name>` function, imported when it runs (default: the
command's own module, `ensemble.cli.<name>`)."""


def operator_workspace(args: argparse.Namespace) -> Workspace:
    """The CLI's user is the operator: the database they name, any folder they name."""
    from ensemble.db import database
    from ensemble.workspace import Workspace

    return Workspace(db=database(getattr(args, "db", None)))


def _finish_process() -> None:
    """Flush the audit trail and stop a local model server, if this command used them.

    Looked up, not imported: a command that used neither pays nothing for them.
    """
    trail = sys.modules.get("ensemble.audit")
    if trail is not None:
        trail.flush()  # the audit trail of this command is on disk before the process ends
    models = sys.modules.get("ensemble.models")
    if models is not None:
        models.stop_local_servers()  # the llama server of `--model local`, if one was started


def _command(name: str):  # type: ignore[no-untyped-def]
    module = importlib.import_module(f"ensemble.cli.{COMMANDS.get(name, name)}")
    return getattr(module, f"cmd_{name}")


if __name__ == "__main__":
    raise SystemExit(main())
