"""LangGraph's PostgreSQL saver, migrating a thread of an older state version when it is read.

PostgreSQL stores a checkpoint's primitive values inline and every other value once per channel
version in `checkpoint_blobs`, shared by the checkpoints that did not change it. So a migrated
checkpoint gets new versions for the state keys it changes (their new blobs are its own) instead
of rewriting blobs other checkpoints may still read. State keys are never a node's trigger
(LangGraph triggers nodes through `branch:to:*` channels), so new versions schedule nothing.
"""

from __future__ import annotations

from typing import Any

from langgraph.checkpoint.postgres import _ainternal
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg.types.json import Jsonb

from ensemble.db.migrating import MigratesOnRead
from ensemble.db.state_versions import (
    MIGRATED_KEY,
    VERSION_KEY,
    is_state_channel,
    migrate,
    migrate_write,
    version_of,
)


def _inline(value: Any) -> bool:
    """Stored in the checkpoint row itself (as LangGraph's saver decides), not as a blob."""
    return value is None or isinstance(value, (str, int, float, bool))


class EnsemblePostgresSaver(MigratesOnRead, AsyncPostgresSaver):
    """`AsyncPostgresSaver` that migrates older threads on read."""

    async def _aupgrade_thread(self, thread_id: str) -> None:
        """Migrate every older checkpoint of the thread and its saved writes, in one transaction."""
        thread = {"configurable": {"thread_id": thread_id}}
        behind = [
            (saved, steps)
            async for saved in AsyncPostgresSaver.alist(self, thread)  # type: ignore[arg-type]
            if (steps := self.state_versions.behind(saved.metadata, thread_id))
        ]
        if not behind:
            return
        async with (
            _ainternal.get_connection(self.conn) as conn,
            conn.transaction(),
            conn.cursor(binary=True) as cur,
        ):
            await cur.execute(  # another process may have migrated it meanwhile: lock, look again
                "SELECT checkpoint_ns, checkpoint_id, metadata FROM checkpoints "
                "WHERE thread_id = %s FOR UPDATE",
                (thread_id,),
            )
            still = {
                (row["checkpoint_ns"], row["checkpoint_id"])
                for row in await cur.fetchall()
                if self.state_versions.behind(row["metadata"], thread_id)
            }
            for saved, steps in behind:
                conf = saved.config["configurable"]
                ns, checkpoint_id = conf["checkpoint_ns"], conf["checkpoint_id"]
                if (ns, checkpoint_id) not in still:
                    continue
                checkpoint = saved.checkpoint
                values = migrate(checkpoint["channel_values"], steps)
                versions = {
                    k: v
                    for k, v in checkpoint["channel_versions"].items()
                    if not is_state_channel(k) or k in values  # a removed key stays removed
                }
                fresh = {
                    k: self.get_next_version(versions.get(k), None)  # type: ignore[arg-type]
                    for k in values
                    if is_state_channel(k)
                }
                versions.update(fresh)
                blobs = {k: v for k, v in values.items() if not _inline(v)}
                await cur.executemany(
                    self.UPSERT_CHECKPOINT_BLOBS_SQL,
                    self._dump_blobs(
                        thread_id, ns, blobs, {k: fresh[k] for k in blobs if k in fresh}
                    ),
                )
                stored = {
                    **checkpoint,
                    "channel_values": {k: v for k, v in values.items() if _inline(v)},
                    "channel_versions": versions,
                }
                metadata = {
                    **saved.metadata,
                    VERSION_KEY: self.state_versions.current(saved.metadata),
                    MIGRATED_KEY: version_of(saved.metadata),
                }
                where = (thread_id, ns, checkpoint_id)
                await cur.execute(
                    "UPDATE checkpoints SET checkpoint = %s, metadata = %s "
                    "WHERE thread_id = %s AND checkpoint_ns = %s AND checkpoint_id = %s",
                    (Jsonb(stored), Jsonb(metadata), *where),
                )
                await self._upgrade_writes(cur, where, steps)

    async def _upgrade_writes(self, cur: Any, where: tuple[str, str, str], steps: list) -> None:
        await cur.execute(
            "SELECT task_id, idx, channel, type, blob FROM checkpoint_writes "
            "WHERE thread_id = %s AND checkpoint_ns = %s AND checkpoint_id = %s",
            where,
        )
        for row in await cur.fetchall():
            task_id, idx, channel, type_, blob = (
                row[k] for k in ("task_id", "idx", "channel", "type", "blob")
            )
            if not is_state_channel(channel):
                continue  # LangGraph's own: interrupts, resume values, errors, branches
            key = (*where, task_id, idx)
            migrated = migrate_write(channel, self.serde.loads_typed((type_, blob)), steps)
            if migrated is None:
                await cur.execute(
                    "DELETE FROM checkpoint_writes WHERE thread_id = %s AND checkpoint_ns = %s "
                    "AND checkpoint_id = %s AND task_id = %s AND idx = %s",
                    key,
                )
                continue
            new_channel, value = migrated
            new_type, new_blob = self.serde.dumps_typed(value)
            await cur.execute(
                "UPDATE checkpoint_writes SET channel = %s, type = %s, blob = %s "
                "WHERE thread_id = %s AND checkpoint_ns = %s AND checkpoint_id = %s "
                "AND task_id = %s AND idx = %s",
                (new_channel, new_type, new_blob, *key),
            )
