"""`ensemble agents`: the agents a run could dispatch to, with their live load and health."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ensemble.cli import add_if_missing
from ensemble.cli.render import print_json, table
from ensemble.errors import InvalidInputError

if TYPE_CHECKING:
    from ensemble.agents import AgentSpec

HEADERS = "NAME ROLE CAPABILITIES MODEL TOOLS MAX COST RELIABILITY LOAD HEALTH".split()


def add_agents_parser(
    subparsers: argparse._SubParsersAction, parents: Sequence[argparse.ArgumentParser]
) -> argparse.ArgumentParser:
    """Add `ensemble agents` to the CLI; `--json` is added unless a parent has it."""
    agents = subparsers.add_parser(
        "agents",
        parents=list(parents),
        help="list the agents, their skills, load and health",
        description="List the default team plus the agents of your files (YAML or JSON with "
        "`agents: [...]`); an agent of a file replaces a default agent of the same name.",
    )
    agents.add_argument(
        "--agents",
        dest="agent_files",
        action="append",
        default=[],
        type=Path,
        metavar="FILE_OR_DIR",
        help="an agent file, or a folder of *.yaml/*.yml/*.json agent files (repeatable)",
    )
    agents.add_argument(
        "--replace", action="store_true", help="leave out the default team: only your agents"
    )
    add_if_missing(agents, "--json", action="store_true", help="print one JSON object")
    return agents


async def cmd_agents(args: argparse.Namespace) -> int:
    """`ensemble agents`: every agent, as a table or (`--json`) as `{"agents": [...]}`."""
    files = list(getattr(args, "agent_files", None) or [])
    replace = bool(getattr(args, "replace", False))
    if replace and not files:
        raise InvalidInputError("--replace leaves no agents; add --agents FILE_OR_DIR")
    from ensemble.agents import load_agents

    rows = [agent_row(spec) for spec in load_agents(files, replace=replace)]
    if getattr(args, "json", False):
        print_json({"agents": rows})
    elif not rows:
        print("No agents.")
    else:
        print(table([_cells(row) for row in rows], HEADERS))
    return 0


def agent_row(spec: AgentSpec) -> dict[str, Any]:
    """One agent as JSON: its spec plus `load` (calls in flight) and `health` (breaker state)."""
    from ensemble.agents import LOAD
    from ensemble.resilience import BOARD

    breaker = BOARD.get(f"agent:{spec.name}")  # never used: no breaker, so closed
    return spec.model_dump(mode="json") | {
        "load": LOAD.current(spec.name),
        "health": breaker.state if breaker is not None else "closed",
    }


def _cells(row: dict[str, Any]) -> list[Any]:
    return [
        row["name"],
        row["role"],
        ",".join(row["capabilities"]),
        row["model"] or "run's",
        ",".join(row["tools"]) or "-",
        row["max_concurrent"],
        f"{row['cost']:g}",
        f"{row['reliability']:g}",
        row["load"],
        row["health"],
    ]
