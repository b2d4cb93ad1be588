"""Metrics: every compiled scenario graph's observer feeds the Prometheus counters, offline."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from langchain_core.outputs import LLMResult
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.errors import GraphInterrupt
from langgraph.types import Command
from prometheus_client import REGISTRY

from ensemble.cli.main import main
from ensemble.context import Context
from ensemble.graphs.registry import SCENARIOS
from ensemble.observe import MetricsSink, Observer, tree
from ensemble.workspace import Workspace


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def snapshot() -> dict[str, float]:
    """The samples these tests look at, to compare before and after a run."""
    return {
        "started": sample("ensemble_runs_started_total", scenario="research"),
        "done": sample("ensemble_runs_finished_total", scenario="research", status="done"),
        "interrupted": sample(
            "ensemble_runs_finished_total", scenario="research", status="interrupted"
        ),
        "failed": sample("ensemble_runs_finished_total", scenario="research", status="failed"),
        "planner_nodes": sample("ensemble_node_seconds_count", scenario="research", node="planner"),
        "researcher_calls": sample("ensemble_model_calls_total", role="researcher"),
        "researcher_in": sample("ensemble_model_tokens_total", role="researcher", kind="input"),
        "researcher_out": sample("ensemble_model_tokens_total", role="researcher", kind="output"),
    }


def moved(before: dict[str, float]) -> dict[str, float]:
    after = snapshot()
    return {key: after[key] - before[key] for key in before}


def config() -> dict[str, Any]:
    return {"configurable": {"thread_id": f"t-{uuid.uuid4().hex[:8]}"}}


@pytest.fixture
def graph(tmp_path: Path):
    return SCENARIOS["research"].compile(InMemorySaver(), Workspace(db=tmp_path / "m.db"))


@pytest.fixture
def context(tmp_path: Path) -> Context:
    return Context(model="offline")


def handler_of(compiled) -> Observer:
    handlers = [h for h in compiled.config["callbacks"] if isinstance(h, Observer)]
    assert len(handlers) == 1
    return handlers[0]


async def test_a_finished_run_moves_every_metric(graph, context, corpus_dir: Path) -> None:
    before = snapshot()
    question = {"question": "How do bees make honey?", "corpus": str(corpus_dir)}
    out = await graph.ainvoke(question | {"max_revisions": 0}, config(), context=context)
    assert out["report"]
    delta = moved(before)
    assert delta["started"] == 1
    assert delta["done"] == 1
    assert delta["interrupted"] == delta["failed"] == 0
    assert delta["planner_nodes"] == 1
    assert delta["researcher_calls"] == 2  # a forced tool call, then the note, per sub-question
    assert delta["researcher_in"] > 0
    assert delta["researcher_out"] > 0
    assert handler_of(graph).open_runs() == 0  # bookkeeping is popped at the end


async def test_an_interrupt_counts_as_interrupted_then_done(
    graph, context, corpus_dir: Path
) -> None:
    cfg = config()
    question = {"question": "Where is honey stored?", "corpus": str(corpus_dir)}
    before = snapshot()
    out = await graph.ainvoke(
        question | {"review_plan": True, "max_revisions": 0}, cfg, context=context
    )
    assert "__interrupt__" in out
    delta = moved(before)
    assert delta["started"] == 1
    assert delta["interrupted"] == 1
    assert delta["done"] == 0

    before = snapshot()
    async for _ in graph.astream(
        Command(resume={"action": "approve"}), cfg, context=context, stream_mode="messages"
    ):
        pass  # streamed model calls report their usage too
    delta = moved(before)
    assert delta["started"] == 1  # a resume is a run of its own
    assert delta["done"] == 1
    assert delta["interrupted"] == 0
    assert delta["researcher_calls"] == 8
    assert delta["researcher_out"] > 0
    assert handler_of(graph).open_runs() == 0


async def test_a_failing_run_counts_as_failed(graph, context) -> None:
    before = snapshot()
    with pytest.raises(Exception, match="question"):
        await graph.ainvoke({"question": "   "}, config(), context=context)
    delta = moved(before)
    assert delta["started"] == 1
    assert delta["failed"] == 1
    assert delta["done"] == 0
    assert handler_of(graph).open_runs() == 0


def test_the_cli_run_is_counted(corpus_dir: Path, tmp_path: Path, capsys) -> None:
    before = snapshot()
    code = main(
        [
            "run",
            "research",
            "What do worker bees collect?",
            "--yes",
            "--quiet",
            "--json",
            "--corpus",
            str(corpus_dir),
            "--max-revisions",
            "0",
            "--db",
            str(tmp_path / "cli.db"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    delta = moved(before)
    assert delta["started"] == 1
    assert delta["done"] == 1
    assert delta["researcher_calls"] == 2


def test_the_callback_never_raises_on_odd_events() -> None:
    handler = Observer("odd", [MetricsSink("odd")])
    run, child = uuid.uuid4(), uuid.uuid4()
    handler.on_chain_end({}, run_id=uuid.uuid4())  # an end without a start
    handler.on_chain_error(RuntimeError("x"), run_id=uuid.uuid4())
    handler.on_llm_end(LLMResult(generations=[]), run_id=uuid.uuid4())
    handler.on_llm_end(object(), run_id=uuid.uuid4())  # type: ignore[arg-type]
    handler.on_chain_start(None, {}, run_id=run, metadata=None)
    handler.on_chain_start(None, {}, run_id=child, parent_run_id=run, metadata={"x": object()})
    handler.on_chain_end({}, run_id=child)
    handler.on_chain_error(GraphInterrupt(), run_id=run)
    assert sample("ensemble_runs_finished_total", scenario="odd", status="interrupted") == 1
    assert handler.open_runs() == 0


def test_open_runs_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tree, "MAX_OPEN_RUNS", 3)
    handler = Observer("bounded", [MetricsSink("bounded")])
    for _ in range(10):
        handler.on_chain_start(None, {}, run_id=uuid.uuid4())  # runs that never end
    assert handler.open_runs() == 3
