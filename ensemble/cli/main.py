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
from ensemble.cli.doctor import add_doctor_parser
from ensemble.cli.eval import add_eval_parser
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
        "--db", help=f"SQLite database (default: $ENSEMBLE_DB or {settings.DEFAULT_DB})"
    )
    common.add_argument("--json", action="store_true", help="print one JSON object at the end")
    return common


def running_flags() -> argparse.ArgumentParser:
    """The flags of every command that runs a graph: run settings, answers, output."""
    running = argparse.ArgumentParser(add_help=False)
    running.add_argument(
        "--model",
        help="model spec: offline, openai:<name>, local (default: the thread's, for a new "
        "thread $ENSEMBLE_MODEL)",
    )
    running.add_argument(
        "--role-model",
        dest="role_models",
        action="append",
        default=[],
        metavar="ROLE=SPEC",
        help="model of one role, e.g. reviewer=openai:gpt-4o (repeatable)",
    )
    running.add_argument("--search-k", type=int, help="passages per corpus search (default 5)")
    running.add_argument(
        "--model-timeout",
        type=float,
        metavar="SECONDS",
        help="seconds one model request may take (default 120, or the thread's)",
    )
    running.add_argument(
        "--fallback",
        dest="fallbacks",
        action="append",
        default=[],
        metavar="[ROLE=]SPEC",
        help="a model to use while a role's model is unavailable (repeatable; no ROLE: every role)",
    )
    running.add_argument(
        "--budget",
        metavar="JSON",
        help='limits of the thread\'s spending, e.g. \'{"calls": 200, "tokens": 500000}\' '
        "(calls, tokens, seconds, cost)",
    )
    running.add_argument(
        "--prices",
        type=Path,
        metavar="FILE",
        help="prices per million tokens by model, for a cost budget and `ensemble stats`: "
        'YAML or JSON such as {"openai:gpt-4o": {"input": 2.5, "output": 10}}',
    )
    running.add_argument(
        "--no-cache",
        dest="cache",
        action="store_false",
        default=None,
        help="call the models even for a request answered before",
    )
    running.add_argument(
        "--model-retries",
        type=int,
        metavar="N",
        help="retries of a request on timeouts, 429, 5xx, lost connections (default 2)",
    )
    running.add_argument("--yes", action="store_true", help="approve every human review")
    running.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    running.add_argument("--out", type=Path, help="also write the result (markdown) to this file")
    running.add_argument(
        "--max-concurrency", type=int, help="agents running at once (default 4, or the thread's)"
    )
    return running


def build_parser() -> argparse.ArgumentParser:
    """The command-line grammar (each scenario's run flags come from its input schema)."""
    parser = argparse.ArgumentParser(
        prog="ensemble", description="Multi-agent orchestration on LangGraph."
    )
    parser.add_argument("--version", action="version", version=f"ensemble {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common, running = common_flags(), running_flags()

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

    resume = sub.add_parser(
        "resume", parents=[common, running], help="continue a paused or crashed thread"
    )
    resume.add_argument("thread")
    resume.add_argument(
        "--answer",
        help="answer to the pending question: a word (approve, reject, retry, ...) or JSON "
        'such as \'{"action": "edit", "subquestions": [...]}\'',
    )

    threads = sub.add_parser("threads", parents=[common], help="list threads")
    threads.add_argument("--scenario", help="only threads of this scenario")
    threads.add_argument(
        "--status",
        choices=("done", "interrupted", "failed"),
        help="only threads with this status (interrupted: waiting for an answer)",
    )

    history = sub.add_parser("history", parents=[common], help="list a thread's checkpoints")
    history.add_argument("thread")
    history.add_argument("--limit", type=int, default=50)

    fork = sub.add_parser(
        "fork", parents=[common, running], help="branch a thread from a checkpoint"
    )
    fork.add_argument("thread")
    fork.add_argument("--checkpoint", required=True, help="checkpoint id to branch from")
    fork.add_argument("--set", dest="sets", action="append", default=[], metavar="FIELD=JSON")

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
    args = build_parser().parse_args(argv)
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


COMMANDS = {
    "run": "ensemble.cli.commands:cmd_run",
    "resume": "ensemble.cli.commands:cmd_resume",
    "fork": "ensemble.cli.commands:cmd_fork",
    "threads": "ensemble.cli.commands:cmd_threads",
    "history": "ensemble.cli.commands:cmd_history",
    "show": "ensemble.cli.commands:cmd_show",
    "scenarios": "ensemble.cli.commands:cmd_scenarios",
    "export": "ensemble.cli.commands:cmd_export",
    "serve": "ensemble.cli.serve:cmd_serve",
    "agents": "ensemble.cli.agents:cmd_agents",
    "audit": "ensemble.cli.audit:cmd_audit",
    "stats": "ensemble.cli.audit:cmd_stats",
    "eval": "ensemble.cli.eval:cmd_eval",
    "doctor": "ensemble.cli.doctor:cmd_doctor",
    "graph": "ensemble.cli.graph:cmd_graph",
}
"""Each command's function, imported when it runs."""


def operator_workspace(args: argparse.Namespace) -> Workspace:
    """The CLI's user is the operator: the database they name, any folder they name."""
    from ensemble.workspace import Workspace

    return Workspace(db_path=settings.db_path(getattr(args, "db", None)))


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
    module, _, function = COMMANDS[name].partition(":")
    return getattr(importlib.import_module(module), function)


if __name__ == "__main__":
    raise SystemExit(main())
