"""The LangGraph server configuration of Ensemble, made from the scenario registry.

`ensemble serve` writes it with absolute paths into the server's working folder, so an installed
Ensemble serves from any folder, no checkout needed. The repository's `langgraph.json` (for plain
`langgraph dev` in a checkout) is the same configuration with paths relative to the checkout; a
test keeps the two equal.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ensemble
from ensemble.graphs.registry import SCENARIOS

PACKAGE = Path(ensemble.__file__).parent
"""The installed `ensemble` package (in a checkout: the repository's `ensemble/`)."""

CORS = {
    "allow_methods": ["GET", "POST", "PUT", "PATCH", "DELETE"],
    "allow_headers": ["*"],
    "expose_headers": ["x-pagination-total", "x-pagination-next", "content-location"],
}
"""CORS beyond the origins: `allow_origins` is always written, empty unless the operator names
origins (left out, langgraph-api would allow every origin)."""

CLOSED_ROUTES = ("disable_store", "disable_mcp", "disable_a2a", "disable_webhooks", "disable_ui")
"""Routes Ensemble does not use, so they are not mounted: less surface, fewer surprises."""


def langgraph_config(
    *, checkout: Path | None = None, allow_origins: Sequence[str] = ()
) -> dict[str, Any]:
    """The langgraph.json content: absolute paths, or `./`-relative to `checkout`."""

    def where(relative: str) -> str:  # a path as laid out in the checkout
        if checkout is not None:
            return f"./{relative}"
        return str(PACKAGE / relative.removeprefix("ensemble/"))

    graphs = {name: where("ensemble/server/graphs.py") + f":{name}" for name in sorted(SCENARIOS)}
    cors: dict[str, Any] = dict(CORS, allow_origins=list(allow_origins))
    return {
        "python_version": f"{sys.version_info.major}.{sys.version_info.minor}"
        if checkout is None
        else "3.11",
        "dependencies": ["."],
        "graphs": graphs,
        "checkpointer": {"path": where("ensemble/server/checkpointer.py") + ":checkpointer"},
        "auth": {"path": where("ensemble/server/auth.py") + ":auth", "disable_studio_auth": True},
        "http": {
            "app": where("ensemble/server/app.py") + ":app",
            "cors": cors,
            **dict.fromkeys(CLOSED_ROUTES, True),
        },
    }
