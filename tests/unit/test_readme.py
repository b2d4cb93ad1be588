"""The README shows the graph as LangGraph draws it today."""

from pathlib import Path

from ensemble.graphs.research import graph

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_mermaid_matches_the_graph():
    drawn = graph.get_graph().draw_mermaid().strip()
    assert f"```mermaid\n{drawn}\n```" in README.read_text(encoding="utf-8")
