"""The distributed problem solver with scripted agents: scheduling, faults, votes, a person."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from langchain_core.messages import AIMessage, BaseMessage
from langgraph.types import Command

from ensemble import audit
from ensemble.agents import AgentRegistry
from ensemble.agents.load import LOAD
from ensemble.context import Context
from ensemble.graphs.registry import SCENARIOS
from ensemble.nodes.scheduler import plan_round
from ensemble.resilience import BOARD
from ensemble.state.solver import SolverState
from tests.fakes import ScriptedChatModel, tool_call

EXAMPLE = Path(__file__).resolve().parents[2] / "ensemble" / "tasks" / "examples"


@pytest.fixture(autouse=True)
def fresh_health(tmp_path):
    """Breakers and load are process-wide: every test starts healthy and idle."""
    BOARD.reset()
    LOAD.reset()
    yield
    BOARD.reset()
    LOAD.reset()


def answering(value: Any, confidence: float = 0.9, delay: float = 0.0, log: list | None = None):
    """An agent model that answers every task with `value` (and records when it worked)."""
    lock = threading.Lock()

    def respond(messages: list[BaseMessage], kwargs: dict[str, Any]) -> AIMessage:
        name = kwargs["tools"][0]["function"]["name"]
        if name == "Judgement":
            return tool_call("Judgement", {"acceptable": True, "reason": ""})
        started = time.monotonic()
        time.sleep(delay)
        task = messages[-1].text.splitlines()[0].removeprefix("Task: ")
        if log is not None:
            with lock:
                log.append((task, started, time.monotonic()))
        answer = value(task) if callable(value) else value
        return tool_call("Answer", {"answer": str(answer), "confidence": confidence})

    return respond


def failing(messages: list[BaseMessage], kwargs: dict[str, Any]) -> Exception:
    return RuntimeError("provider exploded")


def agent(name: str, model: str, caps: list[str], **extra: Any) -> dict[str, Any]:
    return {"name": name, "role": "tester", "capabilities": caps, "model": model, **extra}


def task(tid: str, **extra: Any) -> dict[str, Any]:
    return {"id": tid, "description": f"Do {tid}.", "capability": "analysis", **extra}


def config(thread: str = "s1") -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}}


@pytest.fixture
def graph(checkpointer, workspace):
    return SCENARIOS["solver"].compile(checkpointer, workspace)


async def test_the_example_workflow_runs_offline_end_to_end(graph):
    workflow = yaml.safe_load((EXAMPLE / "json_report.yaml").read_text())
    out = await graph.ainvoke({"workflow": workflow}, config(), context=Context())
    assert out["outcome"] == "solved"
    rows = {r["id"]: r for r in out["dag"]}
    assert rows["roundtrip"]["value"] is True and rows["size"]["value"] == 21391
    assert rows["per-record"]["value"] == pytest.approx(21.391)  # ${size} flowed in
    assert rows["verdict"]["vote"]["status"] == "agreed" and len(rows["verdict"]["agents"]) == 3
    assert rows["decoding"]["agents"][0].startswith("researcher")
    assert "How the team got there" in out["answer"]


async def test_independent_tasks_overlap_and_dependents_wait(graph, register):
    log: list = []
    slow = register(ScriptedChatModel(responder=answering("ok", delay=0.3, log=log)))
    team = [agent(f"a{i}", slow, ["analysis"], max_concurrent=1) for i in range(3)]
    workflow = {"tasks": [task("x"), task("y"), task("z"), task("join", depends_on=["x", "y"])]}
    out = await graph.ainvoke(
        {"workflow": workflow, "agents": team, "replace_team": True},
        config(),
        context=Context(max_concurrency=3),
    )
    assert out["outcome"] == "solved"
    spans = {t.split()[1].rstrip("."): (s, e) for t, s, e in log}
    assert spans["y"][0] < spans["x"][1] and spans["z"][0] < spans["x"][1]  # overlap
    assert spans["join"][0] >= max(spans["x"][1], spans["y"][1])  # the dependent waited


def test_priority_order_and_least_load_assignment():
    team = AgentRegistry.from_specs(
        [
            agent("cheap", "offline", ["analysis"], cost=1.0),
            agent("dear", "offline", ["analysis"], cost=3.0),
            agent("mid", "offline", ["analysis"], cost=2.0),
        ]
    )
    state = SolverState(
        tasks=[
            task("low", priority=0, depends_on=[], replicas=1),
            task("high", priority=9, depends_on=[], replicas=1),
            task("vote", priority=5, depends_on=[], replicas=2),
        ],
    )
    for t in state.tasks:
        t.setdefault("checks", [])
        t.setdefault("expect", "text")
    _, orders, help_request = plan_round(state, team, is_healthy=lambda name: True)
    assert help_request is None
    assert [(o["task"]["id"], o["agent"]["name"]) for o in orders] == [
        ("high", "cheap"),  # highest priority first, to the cheapest idle agent
        ("vote", "mid"),  # least load next: cheap already has one, so mid then dear
        ("vote", "dear"),
        ("low", "cheap"),  # everyone has one: ties by cost
    ]
    _, orders, _ = plan_round(state, team, is_healthy=lambda name: name != "cheap")
    assert "cheap" not in {o["agent"]["name"] for o in orders}  # out of rotation


async def test_a_scripted_plan_drives_assignment_voting_and_aggregation(graph, register):
    plan = {
        "tasks": [
            {"id": "a", "description": "Find A.", "capability": "analysis"},
            {"id": "b", "description": "Find B.", "capability": "analysis", "replicas": 3},
            {
                "id": "c",
                "description": "Combine.",
                "capability": "writing",
                "depends_on": ["a", "b"],
            },
        ]
    }
    planner = register(ScriptedChatModel(responder=lambda m, k: tool_call("TaskPlan", plan)))
    solver = register(ScriptedChatModel(responder=answering(lambda t: f"answer to {t}")))
    out = await graph.ainvoke(
        {"problem": "Find A and B, then combine them."},
        config(),
        context=Context(role_models={"planner": planner, "solver": solver, "verifier": solver}),
    )
    assert out["outcome"] == "solved" and out["plan_notes"] == []
    rows = {r["id"]: r for r in out["dag"]}
    assert rows["b"]["vote"]["status"] == "agreed" and len(set(rows["b"]["agents"])) == 3
    assert rows["c"]["value"] == "answer to Combine."
    assert out["answer"].startswith("# Find A and B")


@pytest.mark.parametrize(
    "plan, note",
    [
        (
            {"tasks": [
                {"id": "a", "description": "A.", "capability": "analysis", "depends_on": ["b"]},
                {"id": "b", "description": "B.", "capability": "analysis", "depends_on": ["a"]},
            ]},
            "cycle",
        ),
        (
            {"tasks": [
                {"id": "a", "description": "A.", "capability": "analysis", "depends_on": ["zz"]},
            ]},
            "zz",
        ),
        ({"tasks": [{"id": "a", "description": "A.", "capability": "telepathy"}]}, "telepathy"),
    ],
)  # fmt: skip
async def test_malformed_plans_are_repaired_or_refused_honestly(graph, register, plan, note):
    planner = register(ScriptedChatModel(responder=lambda m, k: tool_call("TaskPlan", plan)))
    solver = register(ScriptedChatModel(responder=answering("fine")))
    out = await graph.ainvoke(
        {"problem": "Something hard."},
        config(),
        context=Context(role_models={"planner": planner, "solver": solver, "verifier": solver}),
    )
    assert out["outcome"] == "solved"
    assert any(note in n for n in out["plan_notes"])


async def test_a_failing_agent_is_opened_and_its_tasks_finish_on_others(graph, register, workspace):
    bad = register(ScriptedChatModel(responder=failing))
    good = register(ScriptedChatModel(responder=answering("done")))
    team = [agent("bad", bad, ["analysis"], cost=0.1), agent("good", good, ["analysis"], cost=5)]
    workflow = {"tasks": [task(f"t{i}") for i in range(6)]}  # bad is cheapest: it gets 3
    out = await graph.ainvoke(
        {"workflow": workflow, "agents": team, "replace_team": True},
        config(),
        context=Context(role_models={"verifier": good}),
    )
    assert out["outcome"] == "solved"
    assert all(r["agents"] == ["good"] for r in out["dag"])
    assert BOARD.breaker("agent:bad").state == "open"
    failed = [a for r in out["dag"] for a in r["attempts"] if not a["ok"]]
    assert failed and all("provider exploded" in a["error"] for a in failed)
    audit.flush()
    changes = audit.events(workspace.db_path, "s1", kinds={"breaker"})
    assert [(e["agent"], e["outcome"]) for e in changes] == [("bad", "open")]


async def test_with_no_capable_agent_left_the_run_asks_a_person(graph, register):
    bad = register(ScriptedChatModel(responder=failing))
    team = [agent("bad", bad, ["analysis"])]
    workflow = {"tasks": [task("only"), task("after", depends_on=["only"])]}
    inp = {"workflow": workflow, "agents": team, "replace_team": True}
    await graph.ainvoke(inp, config(), context=Context())
    state = await graph.aget_state(config())
    assert state.next == ("help",)
    question = state.interrupts[0].value
    assert question["kind"] == "solver_help" and question["reason"] == "no capable agent left"
    assert question["task"] == "only"
    await graph.ainvoke(Command(resume={"action": "dance"}), config(), context=Context())
    state = await graph.aget_state(config())
    assert (
        state.next == ("help",)
        and "invalid solver-help answer" in state.interrupts[0].value["error"]
    )
    out = await graph.ainvoke(
        Command(resume={"action": "skip", "result": "stated by hand"}), config(), context=Context()
    )  # `after` fails too (same bad agent): a second question
    state = await graph.aget_state(config())
    assert state.interrupts[0].value["task"] == "after"
    out = await graph.ainvoke(Command(resume={"action": "abort"}), config(), context=Context())
    assert out["outcome"] == "aborted"
    rows = {r["id"]: r for r in out["dag"]}
    assert rows["only"]["status"] == "skipped" and rows["only"]["value"] == "stated by hand"


async def test_retry_after_a_person_answers_lets_a_recovered_agent_finish(graph, register):
    calls = Counter()

    def flaky(messages: list[BaseMessage], kwargs: dict[str, Any]) -> AIMessage | Exception:
        if kwargs["tools"][0]["function"]["name"] == "Judgement":
            return tool_call("Judgement", {"acceptable": True, "reason": ""})
        calls["n"] += 1
        return RuntimeError("down") if calls["n"] <= 2 else tool_call("Answer", {"answer": "up"})

    model = register(ScriptedChatModel(responder=flaky))
    team = [agent("solo", model, ["analysis"])]
    inp = {"workflow": {"tasks": [task("t")]}, "agents": team, "replace_team": True}
    await graph.ainvoke(inp, config(), context=Context(role_models={"verifier": model}))
    assert (await graph.aget_state(config())).next == ("help",)
    out = await graph.ainvoke(
        Command(resume={"action": "retry"}),
        config(),
        context=Context(role_models={"verifier": model}),
    )
    assert out["outcome"] == "solved" and out["results"]["t"]["value"] == "up"


@pytest.mark.parametrize(
    "policy, answers, expected",
    [
        ({"policy": "majority"}, ["blue", "Blue.", "red"], "blue"),
        ({"policy": "quorum", "quorum": 2}, ["7", "7", "8"], "7"),
        ({"policy": "numeric", "tolerance": 0.01}, ["3.14", "3.141", "9"], None),
        ({"policy": "confidence", "threshold": 0.5}, ["x", "y", "y"], "y"),
    ],
)
async def test_each_vote_policy_picks_what_it_should(graph, register, policy, answers, expected):
    team = []
    for i, answer in enumerate(answers):
        model = register(ScriptedChatModel(responder=answering(answer, confidence=0.9)))
        team.append(agent(f"v{i}", model, ["analysis"]))
    expect = "number" if policy["policy"] == "numeric" else "text"
    workflow = {"tasks": [task("pick", replicas=3, vote=policy, expect=expect)]}
    judge = register(ScriptedChatModel(responder=answering("ok")))
    out = await graph.ainvoke(
        {"workflow": workflow, "agents": team, "replace_team": True},
        config(),
        context=Context(role_models={"verifier": judge}),
    )
    result = out["results"]["pick"]
    assert result["status"] == "done" and result["vote"]["status"] == "agreed"
    if expected is None:
        assert result["value"] == pytest.approx(3.1405, abs=1e-3)  # median of the cluster
    else:
        assert str(result["value"]).casefold().rstrip(".") == expected


async def test_a_split_vote_goes_to_a_person_and_every_vote_is_kept(graph, register):
    team = []
    for i, answer in enumerate(["north", "south", "east"]):
        model = register(ScriptedChatModel(responder=answering(answer)))
        team.append(agent(f"v{i}", model, ["analysis"]))
    judge = register(ScriptedChatModel(responder=answering("ok")))
    inp = {
        "workflow": {"tasks": [task("way", replicas=3)]},
        "agents": team,
        "replace_team": True,
    }
    context = Context(role_models={"verifier": judge})
    await graph.ainvoke(inp, config(), context=context)
    state = await graph.aget_state(config())
    question = state.interrupts[0].value
    assert question["reason"] == "split vote"
    assert sorted(v["value"] for v in question["detail"]["votes"]) == ["east", "north", "south"]
    out = await graph.ainvoke(
        Command(resume={"action": "skip", "result": "north"}), config(), context=context
    )
    assert out["outcome"] == "solved" and out["results"]["way"]["value"] == "north"
    assert len(out["results"]["way"]["vote"]["votes"]) == 3


async def test_results_are_verified_and_a_failed_check_moves_the_task(graph, register):
    wrong = register(ScriptedChatModel(responder=answering("41")))
    right = register(ScriptedChatModel(responder=answering("42")))
    team = [agent("wrong", wrong, ["analysis"], cost=0.1), agent("right", right, ["analysis"])]
    checks = [{"kind": "equals", "value": 42}]
    inp = {
        "workflow": {"tasks": [task("answer", expect="number", checks=checks)]},
        "agents": team,
        "replace_team": True,
    }
    out = await graph.ainvoke(inp, config(), context=Context())
    rows = {r["id"]: r for r in out["dag"]}
    assert rows["answer"]["agents"] == ["right"] and rows["answer"]["value"] == 42
    first = rows["answer"]["attempts"][0]
    assert first["agent"] == "wrong" and not first["ok"] and "expected 42" in first["error"]


async def test_sandboxed_code_that_misbehaves_fails_its_task_and_the_run_goes_on(graph):
    workflow = {
        "tasks": [
            {"id": "loop", "description": "Loop.", "capability": "code", "tool": "python",
             "input": "while True: pass"},
            {"id": "net", "description": "Call out.", "capability": "code", "tool": "python",
             "input": "import socket; socket.create_connection(('127.0.0.1', 9), 1)"},
            {"id": "fine", "description": "Add.", "capability": "math", "tool": "calculator",
             "input": "2 + 2", "expect": "number"},
        ]
    }  # fmt: skip
    out = await graph.ainvoke(
        {"workflow": workflow, "max_attempts": 1}, config(), context=Context()
    )
    rows = {r["id"]: r for r in out["dag"]}
    assert rows["fine"]["value"] == 4
    assert rows["loop"]["status"] == "failed" and rows["net"]["status"] == "failed"
    assert out["outcome"] == "partial"


async def test_a_tool_the_agent_was_not_given_is_refused_and_never_runs(monkeypatch, workspace):
    """The gate sits where tools execute: even a wrongly routed order cannot run the tool."""
    from langgraph.graph import END, START, StateGraph

    from ensemble.graphs.research import build_research
    from ensemble.nodes import solver_worker as worker_module
    from ensemble.state.solver import WorkOrder

    ran: list[str] = []
    monkeypatch.setattr(worker_module, "evaluate", lambda expression: ran.append(expression))

    class Box(WorkOrder, total=False):
        attempts: dict[str, Any]

    builder = StateGraph(Box)
    builder.add_node(
        "worker", worker_module.solver_worker(build_research(workspace).compile(), workspace)
    )
    builder.add_edge(START, "worker")
    builder.add_edge("worker", END)
    order: WorkOrder = {
        "task": task("sum", tool="calculator", input="1 + 1", expect="number", checks=[]),
        "agent": agent("writer-only", "offline", ["analysis"], tools=[]),
        "replica": 0,
        "attempt_id": "sum:0:writer-only:x",
        "inputs": {},
        "corpus": None,
    }
    graph = builder.compile()
    updates = [u async for u in graph.astream(order, context=Context(), stream_mode="updates")]
    attempt = updates[0]["worker"]["attempts"]["sum:0:writer-only:x"]
    assert not attempt["ok"] and "ToolRefused" in attempt["error"]
    assert "calculator" in attempt["error"] and ran == []


async def test_a_retried_split_vote_asks_again_and_yes_never_loops(
    graph, register, capsys, workspace
):
    """`retry` on a split discards the votes; `--yes` stops when the same question returns."""
    import json as _json

    from ensemble.cli.main import main

    team = []
    for i, answer in enumerate(["north", "south", "east"]):
        model = register(ScriptedChatModel(responder=answering(answer)))
        team.append(agent(f"v{i}", model, ["analysis"]))
    judge = register(ScriptedChatModel(responder=answering("ok")))
    given = {"workflow": {"tasks": [task("way", replicas=3)]}, "agents": team, "replace_team": True}
    db = workspace.db_path
    code = await asyncio.to_thread(
        main,
        ["run", "solver", "--input", _json.dumps(given), "--role-model", f"verifier={judge}",
         "--yes", "--json", "--db", str(db)],
    )  # fmt: skip
    out, err = capsys.readouterr()
    result = _json.loads(out)
    assert code == 0 and result["status"] == "interrupted"
    assert result["interrupt"]["value"]["reason"] == "split vote"
    assert "the same question came back" in err
    assert err.count("[human] answered") == 1  # one automatic retry, then it stays paused
