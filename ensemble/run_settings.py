"""Run settings follow the thread: saved when a run starts, reused by every resume and fork.

The settings a thread started with (models, concurrency, search depth, ...) are written into the
metadata of every checkpoint its runs save. Resuming or forking reads them back from the
checkpoint it continues, so a run goes on with the model it began with, whatever the process
default is now. A value given explicitly overrides, and where each value came from is recorded
beside it (`ensemble show THREAD`). Secrets are never part of the settings: a model spec names a
model, and its key comes from the environment of the process that runs it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver

from ensemble.context import SETTINGS_FIELDS, Context, validate_context
from ensemble.errors import InvalidInputError
from ensemble.models import validate_spec

SETTINGS_KEY = "ensemble_settings"
"""Checkpoint-metadata key holding the run settings in force and where each came from.

A JSON string: LangGraph copies only scalar values of a run's metadata into its checkpoints.
"""

DEFAULT = "default"
"""Origin of a value taken from the process defaults when the thread started."""


@dataclass(frozen=True)
class RunSettings:
    """The settings of one run and where each value came from."""

    context: Context
    """The validated settings, ready to pass as `context=`."""
    origin: dict[str, str] = field(default_factory=dict)
    """Setting name -> `default`, `run`, `resume`, `fork` or `client` (who set it, and when)."""

    def metadata(self) -> dict[str, Any]:
        """What a run's config carries in `metadata`, so every checkpoint it saves has it."""
        saved = {"values": asdict(self.context), "origin": dict(self.origin)}
        return {SETTINGS_KEY: json.dumps(saved, sort_keys=True)}

    def rows(self) -> list[tuple[str, Any, str]]:
        """(name, value, origin) per setting, for display."""
        values = asdict(self.context)
        return [(name, values[name], self.origin.get(name, DEFAULT)) for name in SETTINGS_FIELDS]


def saved_in(metadata: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, str]] | None:
    """The settings and origins stored in a checkpoint's metadata, if it has any."""
    raw = (metadata or {}).get(SETTINGS_KEY)
    try:
        saved = json.loads(raw) if isinstance(raw, str) else None
    except json.JSONDecodeError:
        return None
    if not isinstance(saved, dict) or not isinstance(saved.get("values"), dict):
        return None
    values = saved["values"]
    origin = saved["origin"] if isinstance(saved.get("origin"), dict) else {}
    kept = {k: v for k, v in values.items() if k in SETTINGS_FIELDS}
    return kept, {str(k): str(v) for k, v in origin.items() if k in kept}


def resolve(
    saved: tuple[dict[str, Any], dict[str, str]] | None,
    overrides: Mapping[str, Any] | None = None,
    *,
    how: str,
) -> RunSettings:
    """Process defaults, then the thread's saved settings, then explicit overrides (recorded).

    Every model spec is checked (a thread whose model needs a key that is missing fails here,
    before anything runs or is written).

    Raises:
        InvalidInputError: An override names no setting or has a bad value.
        ModelSpecError: A model spec is unknown or its credentials are missing.
    """
    values = asdict(Context())
    origin = dict.fromkeys(values, DEFAULT)
    if saved is not None:
        saved_values, saved_origin = saved
        values.update(saved_values)
        origin.update({k: saved_origin.get(k, DEFAULT) for k in saved_values})
    for name, value in (overrides or {}).items():
        values[name] = value
        origin[name] = how
    context = validate_context(values)
    if "cost" in context.budget and not context.prices:
        raise InvalidInputError(
            "budget.cost needs prices per million tokens for the models the run uses "
            '(--prices FILE with {"openai:gpt-4o": {"input": 2.5, "output": 10}}); '
            "without them a cost budget would never fire"
        )
    chains = [spec for chain in context.fallbacks.values() for spec in chain]
    for spec in {context.model, *context.role_models.values(), *chains}:
        validate_spec(spec)
    return RunSettings(context=context, origin={k: origin[k] for k in SETTINGS_FIELDS})


async def load(saver: BaseCheckpointSaver, config: RunnableConfig) -> RunSettings | None:
    """The settings saved with the checkpoint `config` addresses (None if it has none)."""
    saved = await saver.aget_tuple(config)
    found = saved_in(saved.metadata if saved else None)
    if found is None:
        return None
    values, origin = found
    try:
        context = validate_context(asdict(Context()) | values)
    except ValueError:
        return None  # written by an older Ensemble with other names: fall back to defaults
    return RunSettings(context=context, origin={k: origin.get(k, DEFAULT) for k in SETTINGS_FIELDS})


async def for_thread(
    saver: BaseCheckpointSaver,
    config: RunnableConfig,
    overrides: Mapping[str, Any] | None = None,
    *,
    how: str,
) -> RunSettings:
    """Settings for continuing the checkpoint `config` addresses: saved ones, then overrides.

    The one call a notebook needs before `graph.ainvoke(None, config, context=...)`:

        settings = await for_thread(saver, config, how="resume")
        await graph.ainvoke(None, {**config, "metadata": settings.metadata()},
                            context=settings.context)
    """
    saved = await saver.aget_tuple(config)
    return resolve(saved_in(saved.metadata if saved else None), overrides, how=how)
