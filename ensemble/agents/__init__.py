"""The agents of the distributed problem solver: their specs, the registry and their live load."""

from __future__ import annotations

from ensemble.agents.load import LOAD, AgentLoad
from ensemble.agents.registry import AgentRegistry, load_agents
from ensemble.agents.spec import KNOWN_TOOLS, AgentDefinitionError, AgentSpec

__all__ = [
    "KNOWN_TOOLS",
    "LOAD",
    "AgentDefinitionError",
    "AgentLoad",
    "AgentRegistry",
    "AgentSpec",
    "load_agents",
]
