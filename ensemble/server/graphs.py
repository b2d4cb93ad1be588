"""The graphs a LangGraph server serves: every scenario, built once for the operator's workspace.

`langgraph.json` names `ensemble/server/graphs.py:<scenario>`. The server imports this module
once and adds its own checkpointer; the workspace (database, corpus and output roots) is the
server's configuration, which `ensemble serve` passes in its environment and is read here, once.
A served client chooses no folder outside the roots (`served=True`), and no node reads settings.
"""

from __future__ import annotations

from ensemble.graphs.registry import SCENARIOS
from ensemble.server.policy import served_workspace

globals().update(
    {name: scenario.compile(None, served_workspace()) for name, scenario in SCENARIOS.items()}
)
