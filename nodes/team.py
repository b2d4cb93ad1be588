"""The team of a solver run: the default agents plus the run's own definitions."""

from __future__ import annotations

from functools import lru_cache

from ensemble.agents import AgentRegistry, load_agents
from ensemble.state.solver import SolverState


@lru_cache(maxsize=1)
def default_team() -> AgentRegistry:
    """The team that ships with Ensemble (read once)."""
    return load_agents()


def team_of(state: SolverState) -> AgentRegistry:
    """The run's team: its agents override default ones by name, or replace the team."""
    specs = list(AgentRegistry.from_specs(state.agents).agents)  # one-line errors, by agent
    if state.replace_team:
        return AgentRegistry.from_specs(specs)
    given = {s.name for s in specs}
    kept = [a for a in default_team().agents if a.name not in given]
    return AgentRegistry.from_specs([*kept, *specs])
