"""`ensemble db copy`: move threads, with their whole history, from one database to another.

Checkpoints go through LangGraph's public saver API (`alist` on the source, `aput` and
`aput_writes` on the target), so each saver stores them in its own layout (PostgreSQL's blobs,
SQLite's whole rows) and nothing depends on either's tables. Ensemble's own rows follow: the
threads' audit trail (budgets and `ensemble stats` read it) and publish journal (so a replay never
publishes twice), the model cache, and the approval key that signed the threads' approvals.

Everything is checked before anything is written: a thread the target holds with another history
is refused, not merged. A thread the target holds as a copy (the same checkpoints, perhaps fewer
of them after a copy that was cut off) gets only what it lacks, so a copy is safe to repeat.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import WRITES_IDX_MAP, BaseCheckpointSaver, CheckpointTuple

from ensemble.audit import trail
from ensemble.db.tables import TableConnection, create_tables, table_exists, write_transaction
from ensemble.db.url import Database
from ensemble.errors import DatabaseError, NotFoundError
from ensemble.persistence import open_async_checkpointer, read_rows, tables
from ensemble.publishing import approvals, journal
from ensemble.resilience import cache

SIGNED_SCENARIOS = frozenset({"content"})
"""Scenarios whose threads carry approvals signed with the database's approval key."""

APPROVAL_KEY = "approvals"
"""The `ensemble_keys` row that signs approvals (`ensemble.publishing.approvals`)."""

_AUDIT_COLUMNS = (
    "thread_id, checkpoint_ns, checkpoint_id, agent, kind, model, "
    "tokens_in, tokens_out, cost, seconds, outcome, detail, at"
)
_JOURNAL_COLUMNS = "thread_id, draft_key, out_dir, slug, status, files, started_at, finished_at"
_CACHE_COLUMNS = "key, spec, result, created_at, hits"

PendingWrite = tuple[str, str, Any]
"""(task_id, channel, value), as a `CheckpointTuple` lists them."""


@dataclass
class CopyReport:
    """What a copy did (printed by `ensemble db copy`, and its `--json`)."""

    source: str
    target: str
    threads: list[str] = field(default_factory=list)
    """Threads written (new, or completed after a copy that was cut off)."""
    skipped: list[str] = field(default_factory=list)
    """Threads the target already held, exactly: nothing written for their checkpoints."""
    checkpoints: int = 0
    writes: int = 0
    audit_rows: int = 0
    journal_rows: int = 0
    cache_rows: int = 0
    keys: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (passwords hidden: `source` and `target` are printable names)."""
        return {
            "source": self.source,
            "target": self.target,
            "threads": self.threads,
            "skipped": self.skipped,
            "checkpoints": self.checkpoints,
            "writes": self.writes,
            "audit_rows": self.audit_rows,
            "journal_rows": self.journal_rows,
            "cache_rows": self.cache_rows,
            "keys": self.keys,
        }

    def summary(self) -> str:
        """One line for the terminal."""
        count = len(self.threads)
        return (
            f"copied {count} thread{'' if count == 1 else 's'} ({self.checkpoints} checkpoints, "
            f"{self.writes} writes, {self.audit_rows} audit rows, {self.journal_rows} journal "
            f"rows, {self.cache_rows} cache rows, {self.keys} keys; {len(self.skipped)} skipped, "
            f"already there) from {self.source} to {self.target}"
        )


async def copy_database(
    source: Database, target: Database, *, threads: list[str] | None = None
) -> CopyReport:
    """Copy `threads` (default: all) with their history and rows from `source` to `target`.

    The target must be prepared: on PostgreSQL by `ensemble db upgrade` (refused otherwise); a
    SQLite file prepares itself.

    Raises:
        DatabaseError: The databases are the same, the target is not prepared, a thread exists
            in the target with another history, or the target's approval key differs.
        NotFoundError: A thread asked for is not in the source.
    """
    if _same(source, target):
        raise DatabaseError(f"cannot copy {source} into itself")
    report = CopyReport(str(source), str(target))
    async with open_async_checkpointer(source, create=False) as src:
        ids = await _thread_ids(src, source, threads)
        async with open_async_checkpointer(target) as dst:
            report.skipped, signed = await _check_threads(src, dst, ids, target)
            rows = await asyncio.to_thread(_rows_to_copy, source, target, ids, signed)
            counts = await asyncio.to_thread(_write_rows, target, rows)
            report.audit_rows, report.journal_rows, report.cache_rows, report.keys = counts
            for thread_id in ids:
                if thread_id in report.skipped:
                    continue
                for saved, put_checkpoint, writes in await _lacking(src, dst, thread_id, target):
                    await _put(dst, saved, put_checkpoint, writes)
                    report.checkpoints += put_checkpoint
                    report.writes += len(writes)
                report.threads.append(thread_id)
    return report


# Checkpoints -----------------------------------------------------------------------------------


def _config(thread_id: str, checkpoint_ns: str | None = "") -> RunnableConfig:
    """A thread's config; `checkpoint_ns=None` lists every namespace (subgraphs too)."""
    configurable: dict[str, Any] = {"thread_id": thread_id}
    if checkpoint_ns is not None:
        configurable["checkpoint_ns"] = checkpoint_ns
    return {"configurable": configurable}


async def _thread_ids(
    saver: BaseCheckpointSaver[Any], source: Database, wanted: list[str] | None
) -> list[str]:
    """The threads to copy: those asked for (each must exist), else every thread in `source`."""
    if wanted:
        unknown = [t for t in dict.fromkeys(wanted) if not await _exists(saver, t)]
        if unknown:
            raise NotFoundError(f"no thread {', '.join(map(repr, unknown))} in {source}")
        return list(dict.fromkeys(wanted))
    rows = await asyncio.to_thread(
        read_rows, source, "checkpoints", "SELECT DISTINCT thread_id FROM checkpoints"
    )
    return sorted(str(thread_id) for (thread_id,) in rows)


async def _check_threads(
    src: BaseCheckpointSaver[Any], dst: BaseCheckpointSaver[Any], ids: list[str], target: Database
) -> tuple[list[str], list[str]]:
    """Refuse a conflicting thread before anything is written; (threads already there, signed).

    Signed threads are those of `SIGNED_SCENARIOS`: they need the source's approval key.
    """
    there, signed = [], []
    for thread_id in ids:
        latest = await src.aget_tuple(_config(thread_id))
        if latest is not None and _scenario(latest) in SIGNED_SCENARIOS:
            signed.append(thread_id)
        if await _exists(dst, thread_id) and not await _lacking(src, dst, thread_id, target):
            there.append(thread_id)
    return there, signed


async def _exists(saver: BaseCheckpointSaver[Any], thread_id: str) -> bool:
    async for _ in saver.alist(_config(thread_id, None), limit=1):
        return True
    return False


async def _history(saver: BaseCheckpointSaver[Any], thread_id: str) -> list[CheckpointTuple]:
    """Every checkpoint of the thread in every namespace, oldest first (parents before children)."""
    found = [saved async for saved in saver.alist(_config(thread_id, None))]
    return sorted(found, key=lambda saved: saved.checkpoint["id"])


async def _lacking(
    src: BaseCheckpointSaver[Any], dst: BaseCheckpointSaver[Any], thread_id: str, target: Database
) -> list[tuple[CheckpointTuple, bool, list[PendingWrite]]]:
    """What the target lacks of the thread (see `_missing`)."""
    source, there = await _history(src, thread_id), await _history(dst, thread_id)
    return _missing(source, there, thread_id, target)


def _scenario(saved: CheckpointTuple) -> str | None:
    """The scenario a thread's checkpoint names (CLI runs: `scenario`; the server: `graph_id`)."""
    name = saved.metadata.get("scenario") or saved.metadata.get("graph_id")  # type: ignore[union-attr]
    return None if name is None else str(name)


def _key(saved: CheckpointTuple) -> tuple[str, str]:
    configurable = saved.config["configurable"]
    return str(configurable.get("checkpoint_ns", "")), str(configurable["checkpoint_id"])


def _parent(saved: CheckpointTuple) -> str | None:
    return ((saved.parent_config or {}).get("configurable") or {}).get("checkpoint_id")


def _same_checkpoint(a: CheckpointTuple, b: CheckpointTuple) -> bool:
    """Equal values (not bytes: PostgreSQL keeps JSON keys in its own order, blobs apart)."""
    return (
        a.checkpoint == b.checkpoint and _metadata(a) == _metadata(b) and _parent(a) == _parent(b)
    )


def _metadata(saved: CheckpointTuple) -> dict[str, Any]:
    """Metadata as both savers keep it (PostgreSQL's saver drops the legacy `writes` key)."""
    return {k: v for k, v in (saved.metadata or {}).items() if k != "writes"}


def _missing(
    source: list[CheckpointTuple], target: list[CheckpointTuple], thread_id: str, db: Database
) -> list[tuple[CheckpointTuple, bool, list[PendingWrite]]]:
    """What the target lacks of the source's thread: (checkpoint, put it?, writes to put).

    Raises:
        DatabaseError: The target's thread is not a copy of the source's: it has a checkpoint
            the source lacks or holds differently, or a write the source does not have.
    """
    have = {_key(saved): saved for saved in target}
    conflict = DatabaseError(
        f"thread {thread_id!r} already exists in {db} with a different history; nothing was "
        "copied (copy the other threads with --thread, or delete it there first)"
    )
    if not have.keys() <= {_key(saved) for saved in source}:
        raise conflict
    missing = []
    for saved in source:
        there = have.get(_key(saved))
        if there is not None and not _same_checkpoint(saved, there):
            raise conflict
        present = list(there.pending_writes or []) if there is not None else []
        writes = list(saved.pending_writes or [])
        for write in present:
            if write not in writes:
                raise conflict
        absent = _without(writes, present)
        if there is None or absent:
            tasks = {task_id for task_id, _, _ in absent}
            # A task's writes are put again whole: their positions (idx) are part of the key.
            again = [write for write in writes if write[0] in tasks]
            missing.append((saved, there is None, again if there is not None else writes))
    return missing


def _without(writes: list[PendingWrite], present: list[PendingWrite]) -> list[PendingWrite]:
    """`writes` minus one match for each of `present` (values compared with ==)."""
    left = list(writes)
    for write in present:
        if write in left:
            left.remove(write)
    return left


async def _put(
    saver: BaseCheckpointSaver[Any],
    saved: CheckpointTuple,
    put_checkpoint: bool,
    writes: list[PendingWrite],
) -> None:
    """Put one checkpoint (every channel's value: all its versions are "new") and its writes.

    The parent config links the copy to the same parent in the same namespace. Each task's
    writes go in one call, its special channels (interrupt, resume, error) in another, so every
    write keeps its position. `task_path` is not in a `CheckpointTuple`; it only orders the
    writes of delta channels, which Ensemble's graphs do not use.
    """
    thread_id = saved.config["configurable"]["thread_id"]
    checkpoint_ns, checkpoint_id = _key(saved)
    if put_checkpoint:
        parent = saved.parent_config or _config(thread_id, checkpoint_ns)
        checkpoint = saved.checkpoint
        metadata = saved.metadata or {}
        await saver.aput(parent, checkpoint, metadata, dict(checkpoint["channel_versions"]))
    config: RunnableConfig = {
        "configurable": {
            "thread_id": thread_id,
            "checkpoint_ns": checkpoint_ns,
            "checkpoint_id": checkpoint_id,
        }
    }
    for task_id, task_writes in _by_task(writes).items():
        plain = [(c, v) for c, v in task_writes if c not in WRITES_IDX_MAP]
        special = [(c, v) for c, v in task_writes if c in WRITES_IDX_MAP]
        for batch in (plain, special):
            if batch:
                await saver.aput_writes(config, batch, task_id)  # type: ignore[arg-type]


def _by_task(writes: Iterable[PendingWrite]) -> dict[str, list[tuple[str, Any]]]:
    grouped: dict[str, list[tuple[str, Any]]] = {}
    for task_id, channel, value in writes:
        grouped.setdefault(task_id, []).append((channel, value))
    return grouped


def _same(source: Database, target: Database) -> bool:
    if source.is_postgres or target.is_postgres:
        return source.url == target.url
    return source.sqlite_path.resolve() == target.sqlite_path.resolve()


# Ensemble's tables -----------------------------------------------------------------------------


@dataclass
class _Rows:
    """The rows a copy inserts into the target, read and checked before anything is written."""

    audit: list[tuple[Any, ...]]
    journal: list[tuple[Any, ...]]
    cache: list[tuple[Any, ...]]
    keys: list[tuple[Any, ...]]


_SQLITE_SCHEMAS = (trail._SCHEMA, journal._SCHEMA, cache._SCHEMA, approvals._SCHEMA)
"""Each table's own SQLite schema (a SQLite target may not have them yet)."""


def _rows_to_copy(
    source: Database, target: Database, thread_ids: Sequence[str], signed: Sequence[str]
) -> _Rows:
    """Read the source's rows for `thread_ids` and the shared tables; keep what the target lacks.

    Audit rows have no natural key: a row counts as present when the target has one equal in
    every column, so a repeated copy adds none twice.

    Raises:
        DatabaseError: A published name or the approval key conflicts with the target's.
    """
    with tables(source, create=False) as src, tables(target) as dst:
        for schema in _SQLITE_SCHEMAS:
            create_tables(dst, schema)
        audit: list[tuple[Any, ...]] = []
        journal_rows: list[tuple[Any, ...]] = []
        for thread_id in thread_ids:
            query = f"SELECT {_AUDIT_COLUMNS} FROM audit WHERE thread_id = ? ORDER BY at, id"
            there = Counter(_select(dst, "audit", query, (thread_id,)))
            for row in _select(src, "audit", query, (thread_id,)):
                if there[row]:
                    there[row] -= 1
                else:
                    audit.append(row)
            query = f"SELECT {_JOURNAL_COLUMNS} FROM publish_journal WHERE thread_id = ?"
            journal_rows += _journal_rows(dst, _select(src, "publish_journal", query, (thread_id,)))
        cache_rows = _select(src, "model_cache", f"SELECT {_CACHE_COLUMNS} FROM model_cache")
        keys = _select(src, "ensemble_keys", "SELECT name, value FROM ensemble_keys")
        _check_approval_key(dst, keys, signed, source, target)
    return _Rows(audit, journal_rows, cache_rows, keys)


def _select(
    conn: TableConnection, table: str, query: str, params: Sequence[Any] = ()
) -> list[tuple[Any, ...]]:
    if not table_exists(conn, table):
        return []
    return [_plain(row) for row in conn.execute(query, params).fetchall()]


def _plain(row: Sequence[Any]) -> tuple[Any, ...]:
    """A row with `bytes` for binary values (PostgreSQL gives memoryview), hashable."""
    return tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)


def _journal_rows(dst: TableConnection, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The journal rows the target lacks; a name it gave another draft is refused."""
    wanted = []
    for row in rows:
        thread_id, draft_key, out_dir, slug = row[:4]
        found = dst.execute(
            "SELECT thread_id, draft_key FROM publish_journal WHERE "
            "(thread_id = ? AND draft_key = ?) OR (out_dir = ? AND slug = ?)",
            (thread_id, draft_key, out_dir, slug),
        ).fetchall()
        if any((t, d) != (thread_id, draft_key) for t, d in found):
            raise DatabaseError(
                f"the target's publish journal already gives the name {slug!r} in {out_dir} to "
                f"another draft; thread {thread_id!r} published under it: nothing was copied"
            )
        if not found:
            wanted.append(row)
    return wanted


def _check_approval_key(
    dst: TableConnection,
    keys: list[tuple[Any, ...]],
    signed: Sequence[str],
    source: Database,
    target: Database,
) -> None:
    """Refuse a target whose own approval key would not verify the copied threads' approvals."""
    ours = next((value for name, value in keys if name == APPROVAL_KEY), None)
    row = dst.execute("SELECT value FROM ensemble_keys WHERE name = ?", (APPROVAL_KEY,)).fetchone()
    theirs = None if row is None else bytes(row[0])
    if ours is None or theirs is None or ours == theirs or not signed:
        return
    raise DatabaseError(
        f"{target} already has its own approval key, and the approvals of content thread(s) "
        f"{', '.join(signed)} are signed with the key of {source}: they would not verify there. "
        "Nothing was copied; copy into a database that has no approval key yet, or leave the "
        "content threads out (--thread)"
    )


def _write_rows(target: Database, rows: _Rows) -> tuple[int, int, int, int]:
    """Insert the rows in one transaction; (audit, journal, cache, keys) rows added."""
    with tables(target) as dst, write_transaction(dst):
        if rows.audit:
            placeholders = ", ".join("?" * 13)
            dst.executemany(
                f"INSERT INTO audit ({_AUDIT_COLUMNS}) VALUES ({placeholders})", rows.audit
            )
        if rows.journal:
            dst.executemany(
                f"INSERT INTO publish_journal ({_JOURNAL_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (thread_id, draft_key) DO NOTHING",
                rows.journal,
            )
        cache_rows = _inserted(
            dst,
            "model_cache",
            f"INSERT INTO model_cache ({_CACHE_COLUMNS}) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (key) DO NOTHING",
            rows.cache,
        )
        keys = _inserted(
            dst,
            "ensemble_keys",
            "INSERT INTO ensemble_keys (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
            rows.keys,
        )
    return len(rows.audit), len(rows.journal), cache_rows, keys


def _inserted(dst: TableConnection, table: str, insert: str, rows: list[tuple[Any, ...]]) -> int:
    """Insert `rows` (existing keys kept); how many were new."""
    if not rows:
        return 0
    before = int(dst.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    dst.executemany(insert, rows)
    return int(dst.execute(f"SELECT count(*) FROM {table}").fetchone()[0]) - before
