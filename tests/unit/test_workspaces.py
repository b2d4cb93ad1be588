"""Resources are bound when a graph is built: two workspaces in one process never mix."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from ensemble import audit
from ensemble.context import Context
from ensemble.corpus import CorpusError
from ensemble.graphs.registry import SCENARIOS
from ensemble.workspace import Workspace
from tests.corpus import write_corpus


def config(thread: str) -> dict:
    return {"configurable": {"thread_id": thread}}


async def test_two_workspaces_in_one_process_keep_their_own_database(tmp_path: Path) -> None:
    first = Workspace(db=tmp_path / "a" / "ensemble.db")
    second = Workspace(db=tmp_path / "b" / "ensemble.db")
    for space in (first, second):
        space.db_path.parent.mkdir()
    corpus_a = write_corpus(tmp_path / "corpus-a")
    corpus_b = tmp_path / "corpus-b"
    corpus_b.mkdir()
    (corpus_b / "crops.md").write_text(
        "# Crops\n\nBees pollinate crops such as apples and almonds while they collect pollen.",
        encoding="utf-8",
    )
    graph_a = SCENARIOS["research"].compile(InMemorySaver(), first)
    graph_b = SCENARIOS["research"].compile(InMemorySaver(), second)

    out_a, out_b = await asyncio.gather(
        graph_a.ainvoke(
            {"question": "How do bees make honey?", "corpus": str(corpus_a)},
            config("run-a"),
            context=Context(),
        ),
        graph_b.ainvoke(
            {"question": "How do bees pollinate crops?", "corpus": str(corpus_b)},
            config("run-b"),
            context=Context(),
        ),
    )
    assert out_a["sources"] and out_b["sources"]
    assert "crops.md" not in {s["source"] for s in out_a["sources"]}
    assert {s["source"] for s in out_b["sources"]} == {"crops.md"}
    audit.flush()
    assert audit.totals(first.db_path, "run-a")["calls"] > 0
    assert audit.totals(second.db_path, "run-b")["calls"] > 0
    assert audit.totals(first.db_path, "run-b")["calls"] == 0  # nothing leaked across
    assert audit.totals(second.db_path, "run-a")["calls"] == 0


async def test_each_workspace_keeps_its_own_folder_rules(tmp_path: Path) -> None:
    allowed = write_corpus(tmp_path / "allowed")
    elsewhere = write_corpus(tmp_path / "elsewhere")
    served = Workspace(db=tmp_path / "served.db", corpus_roots=(allowed,))
    local = Workspace(db=tmp_path / "local.db")
    served_graph = SCENARIOS["research"].compile(InMemorySaver(), served)
    local_graph = SCENARIOS["research"].compile(InMemorySaver(), local)

    with pytest.raises(CorpusError):
        await served_graph.ainvoke(
            {"question": "How do bees make honey?", "corpus": str(elsewhere)},
            config("served"),
            context=Context(),
        )
    out = await local_graph.ainvoke(
        {"question": "How do bees make honey?", "corpus": str(elsewhere)},
        config("local"),
        context=Context(),
    )
    assert out["outcome"] and out["sources"]
