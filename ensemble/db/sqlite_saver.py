"""LangGraph's SQLite saver with the maintenance methods LangGraph's server calls.

`AsyncSqliteSaver` implements the base capabilities only; `langgraph dev` warns at start that it
lacks `aprune` and `adelete_for_runs`, and Ensemble's `prune` and `threads delete` need them.
This subclass adds `aprune`, `adelete_for_runs` and `acopy_thread` (and their sync forms) with
the semantics of LangGraph's PostgreSQL saver, checked by `langgraph-checkpoint-conformance`.
It also migrates a thread written with an older state version when it is read
(`ensemble.db.state_versions`).

The SQLite saver keeps each checkpoint whole (no shared blobs), so deleting old checkpoints never
breaks a newer one. Each method is one transaction under the saver's lock.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any

from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from ensemble.db.migrating import MigratesOnRead
from ensemble.db.state_versions import (
    MIGRATED_KEY,
    VERSION_KEY,
    Migration,
    is_state_channel,
    migrate,
    migrate_write,
    version_of,
)

PRUNE_STRATEGIES = ("keep_latest", "delete")
DELTA_MARKERS = ("counters_since_delta_snapshot", "delta_writes_versioned")
"""Metadata keys of a thread that uses a DeltaChannel, whose history keep_latest would break."""


class EnsembleSqliteSaver(MigratesOnRead, AsyncSqliteSaver):
    """`AsyncSqliteSaver` plus prune, delete_for_runs, copy_thread and state migrations."""

    async def _aupgrade_thread(self, thread_id: str) -> None:
        """Migrate every older checkpoint of the thread and its pending writes, in place.

        One transaction: the thread is read either all old or all current. Ids, parents and
        task ids stay, so pending interrupts and branches are untouched.
        """
        async with self.lock:
            await self.conn.execute("BEGIN IMMEDIATE")
            try:
                rows = await self._fetch(
                    "SELECT checkpoint_ns, checkpoint_id, type, checkpoint, metadata "
                    "FROM checkpoints WHERE thread_id = ?",
                    (thread_id,),
                )
                for ns, checkpoint_id, type_, blob, raw in rows:
                    metadata = _metadata(raw)
                    steps = self.state_versions.behind(metadata, thread_id)
                    if steps:
                        await self._upgrade_checkpoint(
                            thread_id, ns, checkpoint_id, (type_, blob), metadata, steps
                        )
            except BaseException:
                await self.conn.rollback()
                raise
            await self.conn.commit()

    async def _upgrade_checkpoint(
        self,
        thread_id: str,
        ns: str,
        checkpoint_id: str,
        stored: tuple[str, bytes],
        metadata: dict[str, Any],
        steps: list[Migration],
    ) -> None:
        checkpoint = self.serde.loads_typed(stored)
        checkpoint["channel_values"] = migrate(checkpoint["channel_values"], steps)
        type_, blob = self.serde.dumps_typed(checkpoint)
        upgraded = {
            **metadata,
            VERSION_KEY: self.state_versions.current(metadata),
            MIGRATED_KEY: version_of(metadata),
        }
        where = (thread_id, ns, checkpoint_id)
        await self.conn.execute(
            "UPDATE checkpoints SET type = ?, checkpoint = ?, metadata = ? "
            "WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?",
            (type_, blob, json.dumps(upgraded, ensure_ascii=False).encode(), *where),
        )
        writes = await self._fetch(
            "SELECT task_id, idx, channel, type, value FROM writes "
            "WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?",
            where,
        )
        for task_id, idx, channel, value_type, value in writes:
            if not is_state_channel(channel):
                continue  # LangGraph's own: interrupts, resume values, errors, branches
            key = (*where, task_id, idx)
            migrated = migrate_write(channel, self.serde.loads_typed((value_type, value)), steps)
            if migrated is None:
                await self.conn.execute(
                    "DELETE FROM writes WHERE thread_id = ? AND checkpoint_ns = ? "
                    "AND checkpoint_id = ? AND task_id = ? AND idx = ?",
                    key,
                )
                continue
            new_channel, new_value = migrated
            new_type, new_blob = self.serde.dumps_typed(new_value)
            await self.conn.execute(
                "UPDATE writes SET channel = ?, type = ?, value = ? WHERE thread_id = ? "
                "AND checkpoint_ns = ? AND checkpoint_id = ? AND task_id = ? AND idx = ?",
                (new_channel, new_type, new_blob, *key),
            )

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Prune the threads: keep each namespace's latest checkpoint, or delete everything.

        `keep_latest` keeps, per namespace, the newest checkpoint and its pending writes; a
        subgraph call's namespace (`node:task-id`) goes when the root checkpoint it belongs to
        is not kept. A kept checkpoint whose parent was removed gets no parent.

        Raises:
            TypeError: `thread_ids` is a single string.
            ValueError: An unknown strategy.
            NotImplementedError: keep_latest on a thread that uses a DeltaChannel.
        """
        if isinstance(thread_ids, str):
            raise TypeError("thread_ids must be a sequence of thread IDs, not a str")
        if strategy not in PRUNE_STRATEGIES:
            raise ValueError(f"Unknown prune strategy: {strategy!r}")
        ids = [str(t) for t in thread_ids]
        if not ids:
            return
        await self.setup()
        async with self.lock:
            await self.conn.execute("BEGIN IMMEDIATE")
            try:
                for thread_id in ids:
                    if strategy == "delete":
                        await self._delete_thread_rows(thread_id)
                    else:
                        await self._keep_latest(thread_id)
            except BaseException:
                await self.conn.rollback()
                raise
            await self.conn.commit()

    async def _delete_thread_rows(self, thread_id: str) -> None:
        await self.conn.execute("DELETE FROM checkpoints WHERE thread_id = ?", (thread_id,))
        await self.conn.execute("DELETE FROM writes WHERE thread_id = ?", (thread_id,))

    async def _keep_latest(self, thread_id: str) -> None:
        rows = await self._fetch(
            "SELECT checkpoint_ns, checkpoint_id, metadata FROM checkpoints c WHERE thread_id = ? "
            "AND checkpoint_id = (SELECT MAX(checkpoint_id) FROM checkpoints "
            "WHERE thread_id = c.thread_id AND checkpoint_ns = c.checkpoint_ns)",
            (thread_id,),
        )
        heads = {ns: (head, _metadata(raw)) for ns, head, raw in rows}
        if any(
            marker in metadata for _, metadata in heads.values() for marker in DELTA_MARKERS
        ) or await self._fetch(
            "SELECT 1 FROM checkpoints WHERE thread_id = ? AND ("
            + " OR ".join(f"json_extract(CAST(metadata AS TEXT), '$.{m}') IS NOT NULL"
                          for m in DELTA_MARKERS)
            + ") LIMIT 1",
            (thread_id,),
        ):  # fmt: skip
            raise NotImplementedError(
                f"keep_latest can't prune threads that use a DeltaChannel: {thread_id}"
            )
        root_head = heads.get("", (None, {}))[0]
        saved_roots = {
            row[0]
            for row in await self._fetch(
                "SELECT checkpoint_id FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ''",
                (thread_id,),
            )
        }
        for ns, (head, metadata) in heads.items():
            root = (metadata.get("parents") or {}).get("")
            if ":" in ns and root in saved_roots and root != root_head:
                # A finished subgraph call that belongs to a root checkpoint being removed.
                await self._delete_namespace(thread_id, ns)
                continue
            doomed = [
                row[0]
                for row in await self._fetch(
                    "SELECT checkpoint_id FROM checkpoints WHERE thread_id = ? "
                    "AND checkpoint_ns = ? AND checkpoint_id <> ?",
                    (thread_id, ns, head),
                )
            ]
            for start in range(0, len(doomed), 500):
                chunk = doomed[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for table in ("writes", "checkpoints"):
                    await self.conn.execute(
                        f"DELETE FROM {table} WHERE thread_id = ? AND checkpoint_ns = ? "
                        f"AND checkpoint_id IN ({marks})",
                        (thread_id, ns, *chunk),
                    )
            await self.conn.execute(
                "UPDATE checkpoints SET parent_checkpoint_id = NULL WHERE thread_id = ? "
                "AND checkpoint_ns = ? AND checkpoint_id = ? AND parent_checkpoint_id IS NOT NULL",
                (thread_id, ns, head),
            )

    async def aprune_history(self, thread_id: str, *, keep_last: int) -> int:
        """Keep the `keep_last` newest checkpoints of every branch of a thread; delete the rest.

        Every branch head (a checkpoint nothing continues from: the thread's latest, and each
        fork's) is kept with its newest ancestors, so every branch still shows, resumes and
        forks. A subgraph call goes with the root checkpoint it belongs to. Returns how many of
        the thread's own (root) checkpoints were deleted.
        """
        if keep_last < 1:
            raise ValueError("keep_last must be at least 1")
        await self.setup()
        async with self.lock:
            await self.conn.execute("BEGIN IMMEDIATE")
            try:
                deleted = await self._prune_history(str(thread_id), keep_last)
            except BaseException:
                await self.conn.rollback()
                raise
            await self.conn.commit()
        return deleted

    async def _prune_history(self, thread_id: str, keep_last: int) -> int:
        rows = await self._fetch(
            "SELECT checkpoint_ns, checkpoint_id, parent_checkpoint_id, metadata FROM checkpoints "
            "WHERE thread_id = ?",
            (thread_id,),
        )
        root = {cid: parent for ns, cid, parent, _ in rows if ns == ""}
        kept = kept_on_branches(root, keep_last)
        doomed = {("", cid) for cid in root if cid not in kept}
        namespaces: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for ns, cid, _, raw in rows:
            if ns:
                namespaces.setdefault(ns, []).append((cid, _metadata(raw)))
        for ns, checkpoints in namespaces.items():
            newest = max(checkpoints)[0]
            owner = dict(checkpoints)[newest].get("parents", {}).get("")
            if ":" in ns and owner in root and owner not in kept:
                doomed.update((ns, cid) for cid, _ in checkpoints)  # the call of a pruned step
            else:
                doomed.update((ns, cid) for cid, _ in checkpoints if cid != newest)
        for ns, cid in doomed:
            for table in ("writes", "checkpoints"):
                await self.conn.execute(
                    f"DELETE FROM {table} WHERE thread_id = ? AND checkpoint_ns = ? "
                    "AND checkpoint_id = ?",
                    (thread_id, ns, cid),
                )
        await self.conn.execute(
            "UPDATE checkpoints SET parent_checkpoint_id = NULL WHERE thread_id = ? "
            "AND checkpoint_ns = '' AND parent_checkpoint_id IS NOT NULL AND parent_checkpoint_id "
            "NOT IN (SELECT checkpoint_id FROM checkpoints WHERE thread_id = ? "
            "AND checkpoint_ns = '')",
            (thread_id, thread_id),
        )
        return sum(1 for ns, _ in doomed if ns == "")

    async def _delete_namespace(self, thread_id: str, ns: str) -> None:
        for table in ("writes", "checkpoints"):
            await self.conn.execute(
                f"DELETE FROM {table} WHERE thread_id = ? AND checkpoint_ns = ?", (thread_id, ns)
            )

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete every checkpoint whose metadata names one of `run_ids`, with its writes."""
        if isinstance(run_ids, str):
            raise TypeError("run_ids must be a sequence of run IDs, not a str")
        ids = [str(r) for r in run_ids]
        if not ids:
            return
        await self.setup()
        marks = ",".join("?" * len(ids))
        async with self.lock:
            await self.conn.execute("BEGIN IMMEDIATE")
            try:
                doomed = await self._fetch(
                    "SELECT thread_id, checkpoint_ns, checkpoint_id FROM checkpoints "
                    f"WHERE json_extract(CAST(metadata AS TEXT), '$.run_id') IN ({marks})",
                    tuple(ids),
                )
                for key in doomed:
                    for table in ("writes", "checkpoints"):
                        await self.conn.execute(
                            f"DELETE FROM {table} WHERE thread_id = ? AND checkpoint_ns = ? "
                            "AND checkpoint_id = ?",
                            tuple(key),
                        )
            except BaseException:
                await self.conn.rollback()
                raise
            await self.conn.commit()

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint and write of one thread to another (metadata unchanged)."""
        await self.setup()
        source, target = str(source_thread_id), str(target_thread_id)
        async with self.lock:
            await self.conn.execute("BEGIN IMMEDIATE")
            try:
                await self.conn.execute(
                    "INSERT OR REPLACE INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, "
                    "parent_checkpoint_id, type, checkpoint, metadata) SELECT ?, checkpoint_ns, "
                    "checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata "
                    "FROM checkpoints WHERE thread_id = ?",
                    (target, source),
                )
                await self.conn.execute(
                    "INSERT OR REPLACE INTO writes (thread_id, checkpoint_ns, checkpoint_id, "
                    "task_id, task_path, idx, channel, type, value) SELECT ?, checkpoint_ns, "
                    "checkpoint_id, task_id, task_path, idx, channel, type, value FROM writes "
                    "WHERE thread_id = ?",
                    (target, source),
                )
            except BaseException:
                await self.conn.rollback()
                raise
            await self.conn.commit()

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Sync form of `aprune` (from another thread than the saver's loop)."""
        asyncio.run_coroutine_threadsafe(
            self.aprune(thread_ids, strategy=strategy), self.loop
        ).result()

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Sync form of `adelete_for_runs`."""
        asyncio.run_coroutine_threadsafe(self.adelete_for_runs(run_ids), self.loop).result()

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Sync form of `acopy_thread`."""
        asyncio.run_coroutine_threadsafe(
            self.acopy_thread(source_thread_id, target_thread_id), self.loop
        ).result()

    async def _fetch(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        async with self.conn.execute(sql, params) as cursor:
            return list(await cursor.fetchall())


def kept_on_branches(parents: Mapping[str, str | None], keep_last: int) -> set[str]:
    """The checkpoints `aprune_history` keeps: each branch head and its newest ancestors.

    `parents` maps every checkpoint id of the thread's root namespace to its parent's id.
    """
    children = {parent for parent in parents.values() if parent}
    kept: set[str] = set()
    for head in (cid for cid in parents if cid not in children):
        step: str | None = head
        for _ in range(keep_last):
            if step is None or step not in parents:
                break
            kept.add(step)
            step = parents[step]
    return kept


def _metadata(raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    value = json.loads(raw)
    return value if isinstance(value, dict) else {}
