"""What one agent of the distributed problem solver is: its name, skills, model and tools."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ensemble.errors import EnsembleError

KNOWN_TOOLS: frozenset[str] = frozenset({"calculator", "python", "search_corpus", "research"})
"""Tools an agent may be given; anything else is refused when the agent is defined."""

NAME_PATTERN = r"^[a-z0-9_-]{1,40}$"
"""Agent names: short, lower-case and safe in keys such as `agent:<name>` and in file names."""

_WORD = re.compile(r"^[a-z0-9_-]+$")


class AgentDefinitionError(EnsembleError, ValueError):
    """An agent file (or spec) is wrong; the message names the file and line when known."""


class AgentSpec(BaseModel):
    """One agent: what it can do, which model and tools it uses, and what it costs.

    Frozen so a registry can hand the same spec to many runs; the sequences are tuples for the
    same reason (a YAML or JSON list is accepted for them).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN, description="unique name, [a-z0-9_-], 1-40 chars")
    role: str = Field(min_length=1, description="what the agent is for, in words")
    capabilities: tuple[str, ...] = Field(
        min_length=1, description="skills the dispatcher matches tasks against, e.g. math"
    )
    model: str | None = Field(
        default=None, description="model spec such as offline or openai:gpt-4o-mini; None: run's"
    )
    tools: tuple[str, ...] = Field(default=(), description="tools from KNOWN_TOOLS")
    max_concurrent: int = Field(default=2, ge=1, le=16, strict=True)
    cost: float = Field(
        default=1.0, gt=0, strict=True, allow_inf_nan=False, description="relative price of a call"
    )
    reliability: float = Field(
        default=0.9, gt=0, le=1, strict=True, description="expected share of good answers"
    )

    @field_validator("role")
    @classmethod
    def _role_has_text(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value

    @field_validator("capabilities")
    @classmethod
    def _capabilities_are_words(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if not _WORD.match(item):
                raise ValueError(f"capability {item!r} must match [a-z0-9_-]+")
        _no_repeats(value, "capability")
        return value

    @field_validator("tools")
    @classmethod
    def _tools_are_known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if item not in KNOWN_TOOLS:
                known = ", ".join(sorted(KNOWN_TOOLS))
                raise ValueError(f"unknown tool {item!r} (known: {known})")
        _no_repeats(value, "tool")
        return value

    @field_validator("model")
    @classmethod
    def _model_has_a_known_form(cls, value: str | None) -> str | None:
        return None if value is None else model_spec_form(value)


def model_spec_form(value: str) -> str:
    """Check only the form of a model spec (building it may need a key a run provides later).

    Raises:
        ValueError: Not a spec of any known form.
    """
    value = value.strip()
    name = value.partition("?")[0]
    kind, colon, rest = name.partition(":")
    plain = bool(kind) and not colon and not any(c.isspace() for c in value)
    prefixed = kind in ("openai", "local") and bool(rest.strip())
    if not (plain or prefixed):
        from ensemble.models import SPEC_FORMS  # here: the model layer is heavy to import

        raise ValueError(f"model {value!r} is not a model spec; expected {SPEC_FORMS}")
    return value


def _no_repeats(items: tuple[str, ...], what: str) -> None:
    for index, item in enumerate(items):
        if item in items[:index]:
            raise ValueError(f"{what} {item!r} is listed twice")
