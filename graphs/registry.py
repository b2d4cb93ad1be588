"""The scenarios Ensemble can run: every `SCENARIO` declared by a module of this package.

The registry holds nothing scenario-specific; a scenario declares itself next to its graph
(`ensemble.graphs.scenario.Scenario`). `register` adds one from elsewhere (a plugin, a test).
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from typing import Any

from ensemble import graphs
from ensemble.errors import InvalidInputError, NotFoundError
from ensemble.graphs.scenario import Scenario

SCENARIOS: dict[str, Scenario] = {}


def _discover() -> None:
    for info in sorted(pkgutil.iter_modules(graphs.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{graphs.__name__}.{info.name}")
        declared = getattr(module, "SCENARIO", None)
        if isinstance(declared, Scenario):
            SCENARIOS[declared.name] = declared


def register(scenario: Scenario) -> None:
    """Make `scenario` runnable by name (CLI, server config, tests)."""
    SCENARIOS[scenario.name] = scenario


def unregister(name: str) -> None:
    """Forget a scenario added with `register`."""
    SCENARIOS.pop(name, None)


def get_scenario(name: str) -> Scenario:
    """Return the scenario called `name`; raise `NotFoundError` listing the known ones."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise NotFoundError(
            f"unknown scenario {name!r}; known: {', '.join(sorted(SCENARIOS))}"
        ) from None


def parse_json_value(text: str, what: str) -> Any:
    """Parse a JSON value given on the command line, with a clear error."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidInputError(f"{what} is not valid JSON ({error.msg}): {text!r:.80}") from None


_discover()
