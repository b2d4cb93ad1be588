"""`ensemble db upgrade`: prepare a database for this Ensemble, explicitly and safely twice."""

from __future__ import annotations

import argparse
from typing import Any


def add_db_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add `ensemble db upgrade` to the CLI."""
    db = sub.add_parser("db", help="prepare or move a database")
    actions = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    actions.add_parser(
        "upgrade",
        parents=parents,
        help="create or upgrade the tables (run once per release; safe to run twice)",
        description="Apply LangGraph's checkpoint migrations, the run queue's tables and "
        "Ensemble's migrations to the database (--db or ENSEMBLE_DB), under a lock.",
    )


async def cmd_db(args: argparse.Namespace) -> int:
    """`ensemble db upgrade`."""
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
