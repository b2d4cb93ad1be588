"""Reads that migrate: a saver that brings a thread of an older state version up to date first.

Shared by Ensemble's SQLite and PostgreSQL savers; each implements `_aupgrade_thread`, the rewrite
of the thread's stored rows in one transaction (see `ensemble.db.state_versions`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import CheckpointTuple

from ensemble.db.state_versions import VersionedStates


class MigratesOnRead:
    """Mixin for a LangGraph saver: `aget_tuple` and `alist` see only current state versions.

    The saver defines `_aupgrade_thread(thread_id)`: migrate every older checkpoint of the
    thread and its saved writes where they are stored, in one transaction.
    """

    state_versions: VersionedStates
    _aupgrade_thread: Callable[[str], Awaitable[None]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """The saver knows no scenario's state version until a graph is compiled on it."""
        super().__init__(*args, **kwargs)
        self.state_versions = VersionedStates()

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint at `config`; a thread of an older state version is migrated first."""
        saved = await super().aget_tuple(config)  # type: ignore[misc]
        if saved is None:
            return None
        thread_id = str(config["configurable"]["thread_id"])
        if self.state_versions.behind(saved.metadata, thread_id):
            await self._aupgrade_thread(thread_id)
            saved = await super().aget_tuple(config)  # type: ignore[misc]
        return saved  # type: ignore[no-any-return]

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """A thread's history, migrated first like `aget_tuple` (so a fork starts current)."""
        thread_id = (config or {}).get("configurable", {}).get("thread_id")
        if thread_id is not None:
            await self.aget_tuple({"configurable": {"thread_id": thread_id}})
        listing = super().alist(config, filter=filter, before=before, limit=limit)  # type: ignore[misc]
        async for saved in listing:
            yield saved
