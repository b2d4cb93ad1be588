"""`ensemble audit THREAD` and `ensemble stats THREAD`: what a thread's agents did and spent."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ensemble import settings
from ensemble.cli import add_if_missing
from ensemble.cli.render import print_json, table
from ensemble.db import Database, database
from ensemble.errors import DatabaseError, InvalidInputError

AUDIT_HEADERS = ["TIME", "AGENT", "KIND", "MODEL", "TOKENS", "SECONDS", "OUTCOME", "DETAIL"]
STATS_HEADERS = ["AGENT", "KIND", "CALLS", "TOKENS IN", "TOKENS OUT", "COST", "SECONDS", "ERRORS"]


def add_audit_parsers(
    subparsers: argparse._SubParsersAction, parents: Sequence[argparse.ArgumentParser]
) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """Add `ensemble audit` and `ensemble stats`; `--db`/`--json` are added unless a parent has."""
    audit = subparsers.add_parser(
        "audit",
        parents=list(parents),
        help="list what a thread's agents did, oldest first",
        description="One line per agent action of a thread: model calls, cache hits, tool calls, "
        "routing, human answers, refusals, retries, breakers, budget stops and fallbacks.",
    )
    audit.add_argument("thread")
    audit.add_argument(
        "--limit", type=int, metavar="N", help="only the most recent N events (still oldest first)"
    )
    audit.add_argument(
        "--kind",
        dest="kinds",
        action="extend",
        nargs="+",
        metavar="KIND",
        help="only these kinds (repeatable): model_call, cache_hit, tool_call, ... "
        "(a wrong one is refused with the list)",
    )
    stats_parser = subparsers.add_parser(
        "stats",
        parents=list(parents),
        help="sum a thread's calls, tokens, cost and time per agent",
        description="Per agent and kind: calls, tokens in and out, cost, seconds and errors, "
        "then the thread's total.",
    )
    stats_parser.add_argument("thread")
    for parser in (audit, stats_parser):
        add_if_missing(parser, "--db", help=f"SQLite database (default: {settings.DEFAULT_DB})")
        add_if_missing(parser, "--json", action="store_true", help="print one JSON object")
    return audit, stats_parser


async def cmd_audit(args: argparse.Namespace) -> int:
    """`ensemble audit THREAD`: the thread's events as a table or (`--json`) `{"events": [...]}`."""
    from ensemble.audit import KINDS, events

    limit = getattr(args, "limit", None)
    if limit is not None and limit < 1:
        raise InvalidInputError("--limit must be at least 1")
    kinds = set(getattr(args, "kinds", None) or []) or None
    unknown = sorted((kinds or set()) - KINDS)
    if unknown:
        raise InvalidInputError(
            f"--kind {unknown[0]}: not a kind; kinds: {', '.join(sorted(KINDS))}"
        )
    db = _existing_db(args)
    rows = await asyncio.to_thread(events, db, args.thread, limit=limit, kinds=kinds)
    if getattr(args, "json", False):
        print_json({"thread_id": args.thread, "events": rows})
    elif not rows:
        print(f"No audit events for thread {args.thread!r} in {db}.")
    else:
        print(table([_event_cells(row) for row in rows], AUDIT_HEADERS))
    return 0


async def cmd_stats(args: argparse.Namespace) -> int:
    """`ensemble stats THREAD`: per agent and kind, then the total (`--json`: both as JSON)."""
    from ensemble.audit import stats, totals

    db = _existing_db(args)
    rows = await asyncio.to_thread(stats, db, args.thread)
    total = await asyncio.to_thread(totals, db, args.thread)
    if getattr(args, "json", False):
        print_json({"thread_id": args.thread, "stats": rows, "totals": total})
    elif not rows:
        print(f"No audit events for thread {args.thread!r} in {db}.")
    else:
        print(table([_stats_cells(row) for row in rows], STATS_HEADERS))
        print(total_line(total))
    return 0


def total_line(total: dict[str, Any]) -> str:
    """The thread's spending in one line, below the stats table."""
    hits = f" (+{_count(total['cache_hits'], 'cache hit')})" if total["cache_hits"] else ""
    return (
        f"Total: {_count(total['calls'], 'model call')}{hits}, {total['tokens_in']} tokens in, "
        f"{total['tokens_out']} out, cost {_cost(total['cost'])}, "
        f"{total['seconds']:.2f} s, {_count(total['errors'], 'error')}"
    )


def _existing_db(args: argparse.Namespace) -> Database:
    """The database the command reads; reading never creates one."""
    db = database(getattr(args, "db", None))
    if not db.is_postgres and not db.sqlite_path.is_file():
        raise DatabaseError(f"no database at {db}")
    return db


def _event_cells(row: dict[str, Any]) -> list[Any]:
    spent = row["tokens_in"] or row["tokens_out"]
    tokens = f"{row['tokens_in']}/{row['tokens_out']}" if spent else "-"
    return [
        datetime.fromtimestamp(row["at"]).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
        row["agent"],
        row["kind"],
        row["model"] or "-",
        tokens,
        f"{row['seconds']:.2f}" if row["seconds"] else "-",
        row["outcome"],
        _short(row["detail"]),
    ]


def _stats_cells(row: dict[str, Any]) -> list[Any]:
    return [
        row["agent"],
        row["kind"],
        row["calls"],
        row["tokens_in"],
        row["tokens_out"],
        _cost(row["cost"]),
        f"{row['seconds']:.2f}",
        row["errors"],
    ]


def _short(detail: Any) -> str:
    """`key=value, ...` of the detail (the table clips it to its column width)."""
    if isinstance(detail, dict):
        return ", ".join(f"{key}={value}" for key, value in detail.items()) or "-"
    return str(detail)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _cost(value: float) -> str:
    return f"{value:.4f}" if value else "0"
