"""The run context: per-run settings every node reads through `Runtime[Context]`."""

from __future__ import annotations

from dataclasses import dataclass, field

from ensemble import settings


def _default_db() -> str:
    return str(settings.db_path())


@dataclass(kw_only=True)
class Context:
    """Run-time settings of one run (the graphs' `context_schema`).

    Everything a node needs that is not part of the task itself lives here, so the same graph
    runs unchanged from the CLI, a notebook or the LangGraph server.
    """

    model: str = field(default_factory=settings.default_model_spec)
    """Model spec for every role without an override: `offline`, `openai:<name>`."""

    role_models: dict[str, str] = field(default_factory=dict)
    """Per-role overrides, e.g. `{"reviewer": "openai:gpt-4o"}`."""

    db_path: str = field(default_factory=_default_db)
    """SQLite file that holds the corpus index (the same file as the checkpoints)."""

    search_k: int = 5
    """Passages returned by each corpus search."""

    max_concurrency: int = 4
    """Agents of one role (e.g. researchers) working at once in a run."""

    def model_for(self, role: str) -> str:
        """Return the model spec of `role`."""
        return self.role_models.get(role) or self.model
