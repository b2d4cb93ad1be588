"""`ensemble threads delete` and `ensemble prune`: a database that stays the size it needs.

- `threads delete ID...` removes whole threads: every checkpoint and write (all namespaces),
  their audit trail and publish-journal rows, and on PostgreSQL their run-queue row. Published
  files stay where they were written; the model cache is shared by all threads and stays.
- `prune` removes old checkpoints of finished (`done`) threads only, keeping the newest
  `--keep-last` of every branch, so each branch still shows and forks; a thread waiting for a
  person, queued, running or failed is never touched. Audit and journal rows stay: they record
  what happened. SQLite gives the space back with VACUUM.
"""

from __future__ import annotations

import argparse
from typing import Any

from ensemble.cli.commands import human_size, thread_rows
from ensemble.cli.main import operator_workspace
from ensemble.cli.render import print_json, table
from ensemble.db import database
from ensemble.errors import InvalidInputError, NotFoundError
from ensemble.persistence import open_async_checkpointer, tables
from ensemble.runner import thread_config

THREAD_TABLES = ("audit", "publish_journal")
"""Ensemble's own tables with rows per thread, removed with the thread."""


async def delete_threads(args: argparse.Namespace) -> int:
    """Delete the named threads, all or none (an unknown id deletes nothing)."""
    from ensemble.db.tables import table_exists, write_transaction

    if not args.ids:
        raise InvalidInputError("name the threads to delete: ensemble threads delete ID...")
    db = database(args.db)
    ids = list(dict.fromkeys(args.ids))
    async with open_async_checkpointer(db, create=False) as saver:
        missing = [t for t in ids if await saver.aget_tuple(thread_config(t)) is None]
        if missing:
            raise NotFoundError(f"unknown thread(s) {', '.join(missing)}; nothing was deleted")
        if db.is_postgres:
            from ensemble.cluster.runs import refuse_if_active

            for thread_id in ids:
                await refuse_if_active(db, thread_id)
        for thread_id in ids:
            await saver.adelete_thread(thread_id)
    with tables(db) as conn, write_transaction(conn):
        names = [*THREAD_TABLES, *(["ensemble_runs"] if db.is_postgres else [])]
        for name in names:
            if table_exists(conn, name):
                conn.executemany(f"DELETE FROM {name} WHERE thread_id = ?", [(t,) for t in ids])
    if args.json:
        print_json({"deleted": ids})
    else:
        for thread_id in ids:
            print(f"deleted thread {thread_id}")
    return 0


async def cmd_prune(args: argparse.Namespace) -> int:
    """`ensemble prune`: old checkpoints of finished threads go; every branch keeps its newest."""
    from ensemble.cli.commands import _age_cutoff

    if args.keep_last < 1:
        raise InvalidInputError(f"--keep-last must be at least 1, got {args.keep_last}")
    db = database(args.db)
    if db.is_postgres and args.keep_last != 1:
        raise InvalidInputError(
            "on PostgreSQL prune keeps the latest checkpoint only (LangGraph's keep_latest): "
            "--keep-last must be 1"
        )
    cutoff = _age_cutoff(args.older_than) if args.older_than else None
    rows = await thread_rows(db, operator_workspace(args))
    chosen = [
        r for r in rows
        if r.get("status") == "done" and (cutoff is None or str(r.get("updated")) < cutoff)
        and (r.get("checkpoints") or 0) > args.keep_last
    ]  # fmt: skip
    before = _file_size(db)
    report: list[dict[str, Any]] = []
    async with open_async_checkpointer(db, create=False) as saver:
        for row in chosen:
            report.append(await _prune_one(saver, db, row, args.keep_last, args.dry_run))
    if not args.dry_run and report and not db.is_postgres:
        with tables(db) as conn:
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the rewrite went to the WAL
    after = _file_size(db)
    summary = {
        "pruned": report,
        "dry_run": args.dry_run,
        "checkpoints_removed": sum(r["removed"] for r in report),
        "bytes_before": before,
        "bytes_after": after,
    }
    if args.json:
        print_json(summary)
        return 0
    if not report:
        print("Nothing to prune: no finished thread has more checkpoints than it keeps.")
        return 0
    cells = [[r["thread_id"], r["scenario"], r["checkpoints"], r["removed"], r["note"]]
             for r in report]  # fmt: skip
    print(table(cells, ["THREAD", "SCENARIO", "CHECKPOINTS", "REMOVED", "NOTE"]))
    verb = "would remove" if args.dry_run else "removed"
    size = "" if before is None else f"; file {human_size(before)} -> {human_size(after or 0)}"
    print(f"\n{verb} {summary['checkpoints_removed']} checkpoint(s){size}")
    return 0


async def _prune_one(
    saver: Any, db: Any, row: dict[str, Any], keep_last: int, dry_run: bool
) -> dict[str, Any]:
    thread_id = row["thread_id"]
    entry = {"thread_id": thread_id, "scenario": row.get("scenario"),
             "checkpoints": row.get("checkpoints"), "removed": 0, "note": ""}  # fmt: skip
    if db.is_postgres:
        heads = await _branch_heads(saver, thread_id)
        if heads > 1:
            entry["note"] = f"kept: {heads} branches (keep_latest would drop a fork)"
            return entry
        entry["removed"] = int(row.get("checkpoints") or 0) - 1
        if not dry_run:
            await saver.aprune([thread_id], strategy="keep_latest")
        return entry
    if dry_run:
        entry["removed"] = await _would_remove(saver, thread_id, keep_last)
        return entry
    entry["removed"] = await saver.aprune_history(thread_id, keep_last=keep_last)
    return entry


async def _branch_heads(saver: Any, thread_id: str) -> int:
    ids, parents = set(), set()
    async for saved in saver.alist(thread_config(thread_id)):
        ids.add(saved.config["configurable"]["checkpoint_id"])
        if saved.parent_config:
            parents.add(saved.parent_config["configurable"]["checkpoint_id"])
    return len(ids - parents)


async def _would_remove(saver: Any, thread_id: str, keep_last: int) -> int:
    """What `aprune_history` would delete from the root namespace (a dry run)."""
    from ensemble.db.sqlite_saver import kept_on_branches

    parent: dict[str, str | None] = {}
    async for saved in saver.alist(thread_config(thread_id)):
        up = saved.parent_config["configurable"]["checkpoint_id"] if saved.parent_config else None
        parent[saved.config["configurable"]["checkpoint_id"]] = up
    return len(parent) - len(kept_on_branches(parent, keep_last))


def _file_size(db: Any) -> int | None:
    if db.is_postgres or not db.sqlite_path.exists():
        return None
    return sum(
        p.stat().st_size
        for p in (db.sqlite_path, db.sqlite_path.with_name(db.sqlite_path.name + "-wal"))
        if p.exists()
    )
