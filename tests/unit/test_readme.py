"""The README shows the graphs as LangGraph draws them today."""

from pathlib import Path

import pytest

from ensemble.graphs.content import graph as content_graph
from ensemble.graphs.research import graph as research_graph
from ensemble.graphs.solver import graph as solver_graph

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.parametrize(
    ("graph", "section"),
    [
        (research_graph, "## The research assistant"),
        (content_graph, "## The content pipeline"),
        (solver_graph, "## The distributed problem solver"),
    ],
    ids=["research", "content", "solver"],
)
def test_readme_mermaid_matches_the_graph(graph, section):
    drawn = graph.get_graph().draw_mermaid().strip()
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n{section}\n")
    body = text[start : text.find("\n## ", start + 1)]
    assert f"```mermaid\n{drawn}\n```" in body
