"""`ensemble graph SCENARIO [--xray]`: a scenario's graph as mermaid text, drawn by LangGraph."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def add_graph_parser(
    subparsers: argparse._SubParsersAction, parents: Sequence[argparse.ArgumentParser]
) -> None:
    """Add `ensemble graph` to the CLI."""
    graph = subparsers.add_parser(
        "graph",
        parents=list(parents),
        help="print a scenario's graph as mermaid text",
        description="Print a scenario's graph as LangGraph draws it (mermaid): paste it into "
        "any mermaid renderer, or a ```mermaid block of a Markdown page.",
    )
    graph.add_argument("scenario", help="a scenario: research, content, solver, ...")
    graph.add_argument(
        "--xray", action="store_true", help="draw the nodes of subgraphs too (all levels)"
    )


async def cmd_graph(args: argparse.Namespace) -> int:
    """Print the scenario's mermaid diagram; nothing is run and no database is opened."""
    from ensemble.cli.main import operator_workspace
    from ensemble.graphs.registry import get_scenario

    scenario = get_scenario(args.scenario)
    compiled = scenario.compile(None, operator_workspace(args))
    print(compiled.get_graph(xray=args.xray).draw_mermaid(), end="")
    return 0
