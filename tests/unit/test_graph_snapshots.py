"""Every scenario's graph, as LangGraph draws it (subgraphs included), against a snapshot.

A node or an edge that changes fails here. When the change is meant, rewrite the snapshots with
`ENSEMBLE_UPDATE_SNAPSHOTS=1 pytest tests/unit/test_graph_snapshots.py` and review their diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ensemble.cli.main import main
from ensemble.graphs.registry import SCENARIOS
from ensemble.workspace import Workspace

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("ENSEMBLE_UPDATE_SNAPSHOTS") == "1"


def mermaid(name: str, tmp_path: Path) -> str:
    """The scenario's graph as `ensemble graph NAME --xray` prints it (building opens no db)."""
    compiled = SCENARIOS[name].compile(None, Workspace(db=tmp_path / "unused.db"))
    return compiled.get_graph(xray=True).draw_mermaid()


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_graph_matches_its_snapshot(name: str, tmp_path: Path) -> None:
    drawn = mermaid(name, tmp_path)
    snapshot = SNAPSHOTS / f"{name}.mmd"
    if UPDATE:
        SNAPSHOTS.mkdir(exist_ok=True)
        snapshot.write_text(drawn, encoding="utf-8")
    assert snapshot.exists(), f"no snapshot of {name}: run with ENSEMBLE_UPDATE_SNAPSHOTS=1"
    assert drawn == snapshot.read_text(encoding="utf-8"), (
        f"the {name} graph changed; if that is meant, run with ENSEMBLE_UPDATE_SNAPSHOTS=1"
    )


def test_every_snapshot_belongs_to_a_scenario() -> None:
    assert {path.stem for path in SNAPSHOTS.glob("*.mmd")} == set(SCENARIOS)


def test_an_added_edge_or_node_shows_in_the_drawing(tmp_path: Path) -> None:
    """The comparison above is sensitive to exactly what it guards: nodes and edges."""
    snapshot = (SNAPSHOTS / "research.mmd").read_text(encoding="utf-8")
    workspace = Workspace(db=tmp_path / "unused.db")
    with_edge = SCENARIOS["research"].build(workspace)
    with_edge.add_edge("intake", "synthesizer")
    with_node = SCENARIOS["research"].build(workspace)
    with_node.add_node("auditor", lambda state: {})
    with_node.add_edge("finalize", "auditor")
    for changed in (with_edge, with_node):
        assert changed.compile().get_graph(xray=True).draw_mermaid() != snapshot


def test_ensemble_graph_prints_the_snapshot(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", "content", "--xray"]) == 0
    assert capsys.readouterr().out == (SNAPSHOTS / "content.mmd").read_text(encoding="utf-8")
    assert main(["graph", "content"]) == 0
    plain = capsys.readouterr().out
    assert "\tresearch_team(research_team)\n" in plain and "subgraph" not in plain


def test_ensemble_graph_refuses_an_unknown_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", "nope"]) == 2
    assert "unknown scenario 'nope'; known: content, research, solver" in capsys.readouterr().err
