"""A run that cannot go on pauses for a person: parallel agents, subgraphs, retries, answers."""

from __future__ import annotations

import operator
from typing import Annotated, Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, Send
from typing_extensions import TypedDict

from ensemble.graphs.compiling import RETRY, add_agent
from ensemble.resilience.guard import BudgetExceeded, ModelUnavailable
from ensemble.resilience.pause import RunStopped, is_halt, read_answer
from ensemble.workspace import Workspace


class Work(TypedDict, total=False):
    items: list[str]
    done: Annotated[list[str], operator.add]


def fan_out(state: Work) -> list[Send]:
    return [Send("worker", {"items": [item]}) for item in state["items"]]


@pytest.fixture(autouse=True)
def in_tmp_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """The graphs below keep their audit trail in `pause.db` of the test's own folder."""
    monkeypatch.chdir(tmp_path)


def build(worker: Any, *, retry: bool = False) -> Any:
    builder = StateGraph(Work)
    add_agent(builder, "worker", worker, workspace=Workspace(db="pause.db"), retry=retry)
    builder.add_conditional_edges(START, fan_out, ["worker"])
    builder.add_edge("worker", END)
    return builder.compile(checkpointer=InMemorySaver())


@pytest.mark.parametrize(
    ("answer", "read"), [("retry", "retry"), ({"budget": {"calls": 9}}, "retry"), ("stop", "stop")]
)
def test_answers_are_read_strictly(answer: Any, read: str) -> None:
    assert read_answer(answer) == read


@pytest.mark.parametrize("answer", ["approve", {"budget": 3}, {"budget": {}, "x": 1}, None, 1])
def test_a_wrong_answer_is_refused_with_the_valid_ones(answer: Any) -> None:
    with pytest.raises(ValueError, match="retry, stop"):
        read_answer(answer)


async def test_parallel_agents_that_hit_the_budget_pause_together_and_siblings_keep_work():
    budget = {"left": 0}
    runs: list[str] = []

    async def worker(state: Work) -> dict[str, Any]:
        item = state["items"][0]
        runs.append(item)
        if item != "a" and budget["left"] <= 0:
            raise BudgetExceeded("budget exhausted: calls 1 of 1")
        return {"done": [item]}

    graph = build(worker)
    config = {"configurable": {"thread_id": "t"}}
    await graph.ainvoke({"items": ["a", "b", "c"]}, config)
    snapshot = await graph.aget_state(config)
    assert len(snapshot.interrupts) == 2 and all(is_halt(i.value) for i in snapshot.interrupts)
    assert {i.value["cause"] for i in snapshot.interrupts} == {"budget"}
    assert snapshot.values["done"] == ["a"]  # the sibling that finished is kept

    budget["left"] = 5  # what a raised budget does for the guard
    runs.clear()
    await graph.ainvoke(Command(resume={i.id: "retry" for i in snapshot.interrupts}), config)
    final = await graph.aget_state(config)
    assert not final.interrupts and sorted(final.values["done"]) == ["a", "b", "c"]
    assert sorted(runs) == ["b", "c"], "finished work is not done again"


async def test_a_refused_answer_asks_again_and_stop_ends_the_run():
    async def worker(state: Work) -> dict[str, Any]:
        raise ModelUnavailable("no model available for the writer: x: 500")

    graph = build(worker)
    config = {"configurable": {"thread_id": "t"}}
    await graph.ainvoke({"items": ["a"]}, config)
    await graph.ainvoke(Command(resume="approve"), config)
    question = (await graph.aget_state(config)).interrupts[0].value
    assert question["cause"] == "model_unavailable" and "retry, stop" in question["refused"]
    with pytest.raises(RunStopped, match="stopped by a person: no model available"):
        await graph.ainvoke(Command(resume="stop"), config)


async def test_an_unavailable_model_is_left_to_the_node_retries_before_a_person_is_asked():
    calls: list[int] = []

    async def worker(state: Work) -> dict[str, Any]:
        calls.append(1)
        if len(calls) < RETRY.max_attempts:
            raise ModelUnavailable("down for a moment")
        return {"done": state["items"]}

    graph = build(worker, retry=True)
    out = await graph.ainvoke({"items": ["a"]}, {"configurable": {"thread_id": "t"}})
    assert out["done"] == ["a"] and len(calls) == RETRY.max_attempts


async def test_a_subgraph_leaves_the_question_to_its_parent_node():
    spent = {"yes": True}

    async def inner(state: Work) -> dict[str, Any]:
        if spent["yes"]:
            raise BudgetExceeded("budget exhausted: tokens 10 of 10")
        return {"done": state["items"]}

    child = build(inner)

    async def team(state: Work) -> dict[str, Any]:
        out = await child.ainvoke({"items": state["items"]})
        return {"done": out["done"]}

    parent = build(team)
    config = {"configurable": {"thread_id": "p"}}
    await parent.ainvoke({"items": ["a"]}, config)
    snapshot = await parent.aget_state(config)
    assert len(snapshot.interrupts) == 1
    assert snapshot.interrupts[0].value["node"] == "team"
    spent["yes"] = False
    out = await parent.ainvoke(Command(resume="retry"), config)
    assert out["done"] == ["a"]


async def test_an_agent_node_that_hangs_is_cancelled_by_its_idle_timeout(monkeypatch):
    import asyncio

    from langgraph.errors import NodeTimeoutError
    from langgraph.types import TimeoutPolicy

    from ensemble.graphs import compiling

    monkeypatch.setattr(compiling, "NODE_IDLE_TIMEOUT", TimeoutPolicy(idle_timeout=0.2))
    started: list[int] = []

    async def worker(state: Work) -> dict[str, Any]:
        started.append(1)
        await asyncio.sleep(30)
        return {}

    graph = build(worker, retry=True)
    with pytest.raises(NodeTimeoutError):
        await asyncio.wait_for(
            graph.ainvoke({"items": ["a"]}, {"configurable": {"thread_id": "t"}}), 10
        )
    assert len(started) == RETRY.max_attempts, "each attempt timed out, then the retries ran out"
