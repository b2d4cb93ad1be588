"""The run context: per-run settings every node reads through `Runtime[Context]`.

These are the settings a run's caller may choose (a server client included), so nothing here
names a file: the database and corpus folders are the operator's (`ensemble.workspace`). The
settings are saved with the thread and reused by resume and fork (`ensemble.run_settings`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, with_config

from ensemble import settings
from ensemble.errors import InvalidInputError, describe_validation_error

MAX_SPEC_CHARS = 200

BudgetName = Literal["calls", "tokens", "seconds", "cost"]


@with_config(ConfigDict(use_attribute_docstrings=True))
@dataclass(kw_only=True)
class Context:
    """Run-time settings of one run (the graphs' `context_schema`).

    Everything a node needs that is not part of the task itself lives here, so the same graph
    runs unchanged from the CLI, a notebook or the LangGraph server. Each field's docstring is its
    description: the CLI's run-settings flags and the context's JSON schema show it.
    """

    model: Annotated[str, Field(min_length=1, max_length=MAX_SPEC_CHARS)] = field(
        default_factory=settings.default_model_spec
    )
    """Model spec for every role without an override: `offline`, `openai:<name>`, `local`."""

    role_models: Annotated[
        dict[
            Annotated[str, Field(min_length=1, max_length=40)],
            Annotated[str, Field(min_length=1, max_length=MAX_SPEC_CHARS)],
        ],
        Field(max_length=16),
    ] = field(default_factory=dict)
    """Per-role overrides, e.g. `{"reviewer": "openai:gpt-4o"}`."""

    search_k: Annotated[int, Field(ge=1, le=20)] = 5
    """Passages returned by each corpus search."""

    max_concurrency: Annotated[int, Field(ge=1, le=64)] = 4
    """Agents of one role (e.g. researchers) working at once in a run."""

    model_timeout: Annotated[float, Field(gt=0, le=3600)] = 120.0
    """Seconds one model request may take before it is abandoned (and retried)."""

    role_timeouts: Annotated[
        dict[Annotated[str, Field(min_length=1, max_length=40)], Annotated[float, Field(gt=0)]],
        Field(max_length=16),
    ] = field(default_factory=dict)
    """Per-role overrides of `model_timeout`, e.g. `{"writer": 300}`."""

    model_retries: Annotated[int, Field(ge=0, le=8)] = 2
    """Retries of a failed request on transient errors (timeouts, 429, 5xx, connection errors),
    with exponential backoff and jitter, honouring Retry-After; never on 400 or auth errors."""

    fallbacks: Annotated[
        dict[
            Annotated[str, Field(min_length=1, max_length=40)],
            Annotated[list[Annotated[str, Field(min_length=1, max_length=MAX_SPEC_CHARS)]],
                      Field(max_length=4)],
        ],
        Field(max_length=16),
    ] = field(default_factory=dict)  # fmt: skip
    """Model specs to try, in order, while a role's model is unavailable (its circuit breaker
    open): `{"*": ["offline"], "writer": ["openai:gpt-4o-mini"]}`; `*` applies to every role."""

    budget: Annotated[dict[BudgetName, Annotated[float, Field(gt=0)]], Field(max_length=4)] = field(
        default_factory=dict
    )
    """Limits of the thread's spending, checked before each model call: `calls`, `tokens`,
    `seconds` (time spent in model calls) and `cost` (with `prices`)."""

    prices: Annotated[
        dict[Annotated[str, Field(min_length=1, max_length=MAX_SPEC_CHARS)],
             dict[Literal["input", "output"], Annotated[float, Field(ge=0)]]],
        Field(max_length=32),
    ] = field(default_factory=dict)  # fmt: skip
    """Price per million tokens by model spec, e.g. `{"openai:gpt-4o": {"input": 2.5,
    "output": 10}}`, for the `cost` budget and `ensemble stats`."""

    cache: bool = field(default_factory=settings.cache_default)
    """Reuse the answer of an identical earlier model request (this thread, a fork or another
    run) from the database instead of calling the model again."""

    def model_for(self, role: str) -> str:
        """Return the model spec of `role`."""
        return self.role_models.get(role) or self.model

    def timeout_for(self, role: str) -> float:
        """Return the request timeout of `role`, in seconds."""
        return float(self.role_timeouts.get(role) or self.model_timeout)

    def chain_for(self, role: str, spec: str | None = None) -> tuple[str, ...]:
        """The role's model, then its fallbacks (role-specific first, then `*`), no repeats."""
        first = spec or self.model_for(role)
        rest = [*self.fallbacks.get(role, []), *self.fallbacks.get("*", [])]
        return tuple(dict.fromkeys([first, *rest]))


SETTINGS_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Context))
"""The names a caller may set; anything else in a context is refused."""

_adapter: TypeAdapter[Context] = TypeAdapter(Context)


def validate_context(data: Any) -> Context:
    """Build a `Context` from a mapping, refusing unknown names and bad values in one line.

    Raises:
        InvalidInputError: e.g. `context.db_path: not a run setting (...)`.
    """
    if isinstance(data, Context):
        data = asdict(data)
    if not isinstance(data, dict):
        raise InvalidInputError(f"context must be an object, got {type(data).__name__}")
    unknown = sorted(str(k) for k in data if k not in SETTINGS_FIELDS)
    if unknown:
        raise InvalidInputError(
            f"context.{unknown[0]}: not a run setting (settable: {', '.join(SETTINGS_FIELDS)}); "
            "file locations are chosen by whoever runs Ensemble"
        )
    try:
        return _adapter.validate_python(data, strict=False)
    except ValidationError as error:
        raise InvalidInputError(f"context: {describe_validation_error(error)}") from None
