"""`ensemble db upgrade` and `ensemble db copy`: prepare a database, move threads between two."""

from __future__ import annotations

import argparse
from typing import Any


def add_db_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add `ensemble db upgrade` and `ensemble db copy` to the CLI."""
    db = sub.add_parser("db", help="prepare or move a database")
    actions = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    actions.add_parser(
        "upgrade",
        parents=parents,
        help="create or upgrade the tables (run once per release; safe to run twice)",
        description="Apply LangGraph's checkpoint migrations, the run queue's tables and "
        "Ensemble's migrations to the database (--db or ENSEMBLE_DB), under a lock.",
    )
    copy = actions.add_parser(
        "copy",
        help="copy threads with their whole history into another database (safe to repeat)",
        description="Copy every thread (or those given with --thread), each with all its "
        "checkpoints, pending writes, audit trail and publish journal, plus the model cache and "
        "the approval key, from one database to another: e.g. a SQLite file into PostgreSQL. "
        "A PostgreSQL target must be prepared first (ensemble db upgrade). A thread the target "
        "holds with another history is refused; one it holds as a copy is skipped.",
    )
    copy.add_argument(
        "--from", dest="source", required=True, help="the SQLite file or postgresql:// URL to read"
    )
    copy.add_argument(
        "--to", dest="target", required=True, help="the SQLite file or postgresql:// URL to fill"
    )
    copy.add_argument(
        "--thread",
        dest="threads",
        action="append",
        metavar="ID",
        help="copy only this thread (repeatable; default: every thread)",
    )
    copy.add_argument("--json", action="store_true", help="print one JSON object at the end")


async def cmd_db(args: argparse.Namespace) -> int:
    """`ensemble db upgrade` or `ensemble db copy`."""
    if args.db_command == "copy":
        return await _copy(args)
    from ensemble.cli.render import print_json
    from ensemble.db import database
    from ensemble.db.schema import upgrade

    report = await upgrade(database(args.db))
    if args.json:
        print_json(report.as_dict())
    elif report.applied or report.before != report.after:
        print(
            f"{report.database}: schema version {report.before} -> {report.after} "
            f"({', '.join(report.applied)})"
        )
    else:
        print(f"{report.database}: already at schema version {report.after}; nothing to do")
    return 0


async def _copy(args: argparse.Namespace) -> int:
    from ensemble.cli.render import print_json
    from ensemble.db import database
    from ensemble.db.copy import copy_database

    report = await copy_database(database(args.source), database(args.target), threads=args.threads)
    if args.json:
        print_json(report.as_dict())
    else:
        print(report.summary())
    return 0
