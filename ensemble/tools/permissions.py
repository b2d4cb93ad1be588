"""Tool permissions, enforced where tools execute rather than trusted to the prompt.

A model can ask for any tool by name; the gate decides, just before running it, whether the
agent was given that tool. A refusal is recorded through a callback and raised, and the
tool's code never runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from ensemble.agents.spec import KNOWN_TOOLS
from ensemble.errors import EnsembleError

T = TypeVar("T")

RefusalCallback = Callable[[str, str, str], None]
"""Called as `on_refusal(agent, tool, reason)` before `ToolRefused` is raised."""


class ToolRefused(EnsembleError, PermissionError):
    """An agent asked for a tool it was not given; the tool did not run."""


class ToolGate:
    """The tools one agent may use; every tool call goes through `call`."""

    def __init__(
        self, agent: str, allowed: Iterable[str], on_refusal: RefusalCallback | None = None
    ) -> None:
        """Build the gate of `agent`, which was given the tools named in `allowed`."""
        self.agent = agent
        self.allowed = frozenset(allowed)
        self._on_refusal = on_refusal

    def allows(self, tool: str) -> bool:
        """Whether the agent may use `tool`."""
        return tool in self.allowed

    def call(self, tool: str, run: Callable[[], T]) -> T:
        """Return what `run` returns if the agent may use `tool`; else `run` is never called.

        Raises:
            ToolRefused: The agent was not given `tool` (after `on_refusal` recorded it).
        """
        if tool not in self.allowed:
            reason = self._reason(tool)
            if self._on_refusal is not None:
                self._on_refusal(self.agent, tool, reason)
            raise ToolRefused(f"agent {self.agent!r} was refused tool {tool!r}: {reason}")
        return run()

    def _reason(self, tool: str) -> str:
        """Why `tool` is refused, naming what the agent may use instead."""
        given = ", ".join(sorted(self.allowed)) or "none"
        if tool not in KNOWN_TOOLS:
            return f"there is no tool {tool!r} (tools given: {given})"
        return f"the agent was not given this tool (tools given: {given})"
