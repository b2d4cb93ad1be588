"""The LangGraph server's checkpointer (`checkpointer.path` in langgraph.json).

The operator's database (`ENSEMBLE_DB`, set by `ensemble serve`), so the server's threads land in
the file `ensemble threads / show / resume` read. The server compiles its graphs without a saver,
so this is where the saver learns every scenario's state version: a client reading a thread of an
older release gets it migrated, or refused in one line, as on the command line.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver

from ensemble.graphs.registry import SCENARIOS
from ensemble.graphs.scenario import teach_state_version
from ensemble.persistence import server_checkpointer


@asynccontextmanager
async def checkpointer() -> AsyncIterator[BaseCheckpointSaver[Any]]:
    """The operator's saver, checking each scenario's state version on read."""
    async with server_checkpointer() as saver:
        for name, scenario in SCENARIOS.items():
            teach_state_version(saver, name, scenario.state_version)
        yield saver
