"""The guard every model call goes through: cache, budget, breakers and fallbacks, audit."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import openai
import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from typing_extensions import TypedDict

from ensemble import audit
from ensemble.context import Context
from ensemble.models import chat_model_for
from ensemble.resilience import BOARD
from ensemble.resilience.guard import SPENDING, BudgetExceeded, ModelUnavailable
from ensemble.workspace import Workspace
from tests.fakes import ScriptedChatModel


class Box(TypedDict, total=False):
    prompts: list[str]
    answers: list[str]
    errors: list[str]


def down(messages, kwargs) -> Exception:
    return openai.APIConnectionError(request=httpx.Request("POST", "http://127.0.0.1:9/v1"))


def echo(name: str):
    def respond(messages, kwargs) -> AIMessage:
        return AIMessage(
            content=f"{name}: {messages[-1].text}",
            usage_metadata={"input_tokens": 10, "output_tokens": 5, "total_tokens": 15},
        )

    return respond


def graph(db: Path):
    async def node(state: Box, runtime: Runtime[Context]) -> dict[str, Any]:
        answers, errors = [], []
        model = chat_model_for(runtime.context, "writer", db=db)
        for prompt in state["prompts"]:
            try:
                answers.append((await model.ainvoke([HumanMessage(prompt)])).text)
            except Exception as error:  # noqa: BLE001 - the test looks at what was raised
                errors.append(f"{type(error).__name__}: {error}")
        return {"answers": answers, "errors": errors}

    builder = StateGraph(Box, context_schema=Context)
    builder.add_node("writer", node)
    builder.add_edge(START, "writer")
    builder.add_edge("writer", END)
    return builder.compile(checkpointer=InMemorySaver())


@pytest.fixture(autouse=True)
def fresh(tmp_path):
    BOARD.reset()
    SPENDING.forget()
    yield Workspace(db=tmp_path / "guard.db")
    audit.flush()
    BOARD.reset()
    SPENDING.forget()


@pytest.fixture
def run(fresh):
    async def run(prompts: list[str], context: Context, thread: str = "t") -> Box:
        config = {"configurable": {"thread_id": thread}}
        return await graph(fresh.db_path).ainvoke({"prompts": prompts}, config, context=context)

    return run


async def test_an_open_breaker_sends_calls_to_the_fallback(register, fresh, run):
    primary = ScriptedChatModel(responder=down)
    backup = ScriptedChatModel(responder=echo("backup"))
    context = Context(
        role_models={"writer": register(primary)},
        fallbacks={"writer": [register(backup)]},
    )
    out = await run([f"p{i}" for i in range(5)], context)
    assert out["answers"] == [f"backup: p{i}" for i in range(5)]
    assert len(primary.calls) == 3  # then its breaker opened: no more calls to it
    audit.flush()
    kinds = [e["kind"] for e in audit.events(fresh.db_path, "t")]
    assert kinds.count("fallback") == 5 and "model_call" in kinds


async def test_without_a_fallback_the_reason_is_named(register, run):
    context = Context(role_models={"writer": register(ScriptedChatModel(responder=down))})
    out = await run(["a", "b", "c", "d"], context)
    assert len(out["errors"]) == 4
    assert all(e.startswith("ModelUnavailable") for e in out["errors"])
    assert "out of rotation" in out["errors"][-1]
    assert issubclass(ModelUnavailable, Exception)


async def test_a_budget_stops_before_overspending(register, fresh, run):
    model = ScriptedChatModel(responder=echo("m"))
    context = Context(role_models={"writer": register(model)}, budget={"calls": 2})
    out = await run(["a", "b", "c"], context)
    assert len(model.calls) == 2 and len(out["answers"]) == 2
    assert out["errors"][0].startswith("BudgetExceeded") and "calls 2 of 2" in out["errors"][0]
    SPENDING.forget()  # a new process reads what the thread spent from the audit trail
    audit.flush()
    again = await run(["d"], context)
    assert again["errors"] and len(model.calls) == 2
    raised = Context(role_models={"writer": context.role_models["writer"]}, budget={"calls": 5})
    assert (await run(["e"], raised))["answers"] == ["m: e"]
    assert "budget_stop" in {e["kind"] for e in audit.events(fresh.db_path, "t")}
    assert issubclass(BudgetExceeded, Exception)


async def test_tokens_and_cost_budgets(register, run):
    model = ScriptedChatModel(responder=echo("m"))
    spec = register(model)
    context = Context(role_models={"writer": spec}, budget={"tokens": 20})
    out = await run(["a", "b", "c"], context, thread="tokens")
    assert len(out["answers"]) == 2 and "tokens 30 of 20" in out["errors"][0]
    priced = Context(
        role_models={"writer": spec},
        budget={"cost": 0.0001},
        prices={spec: {"input": 5.0, "output": 10.0}},  # 10 in + 5 out = 0.0001 a call
    )
    out = await run(["a", "b"], priced, thread="cost")
    assert len(out["answers"]) == 1 and out["errors"][0].startswith("BudgetExceeded")


async def test_an_identical_request_is_served_from_the_cache(register, fresh, run):
    model = ScriptedChatModel(responder=echo("m"))
    spec = register(model)
    out = await run(["same", "same", "other"], Context(role_models={"writer": spec}, cache=True))
    assert out["answers"] == ["m: same", "m: same", "m: other"] and len(model.calls) == 2
    await run(["same"], Context(role_models={"writer": spec}, cache=True), thread="t2")
    assert len(model.calls) == 2  # another thread (a fork, a rerun) reuses it too
    await run(["same"], Context(role_models={"writer": spec}, cache=False), thread="t3")
    assert len(model.calls) == 3
    audit.flush()
    assert [e["kind"] for e in audit.events(fresh.db_path, "t")].count("cache_hit") == 1


def cli(capsys, *argv: str) -> tuple[int, Any, str]:
    import json

    from ensemble.cli.main import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    try:
        return code, json.loads(out), err
    except json.JSONDecodeError:
        return code, out, err


def test_a_spent_budget_pauses_for_a_person_who_raises_it(capsys, corpus_dir, tmp_path):
    db = str(tmp_path / "budget.db")
    thread = "00000000-0000-4000-8000-000000000001"
    base = ["--corpus", str(corpus_dir), "--max-revisions", "0", "--db", db, "--thread", thread]
    code, out, err = cli(
        capsys, "run", "research", "How do bees make honey?", *base, "--budget", '{"calls": 2}',
        "--yes", "--json",
    )  # fmt: skip
    assert code == 0 and out["status"] == "interrupted", err
    question = out["interrupt"]["value"]
    assert question["kind"] == "halted" and question["cause"] == "budget"
    assert "budget exhausted: calls 2 of 2" in question["reason"]
    code, _, err = cli(capsys, "resume", thread, "--answer", '"approve"', "--db", db)
    assert code == 2 and "is not one of: retry, stop" in err  # refused, nothing changed
    code, out, err = cli(capsys, "resume", thread, "--answer", '"retry"', "--db", db, "--json")
    assert out["status"] == "interrupted", "the same budget: it asks again"
    code, out, _ = cli(capsys, "resume", thread, "--answer", '{"budget": {"calls": 100}}',
                       "--db", db, "--json")  # fmt: skip
    assert code == 0 and out["status"] == "done"
    assert "**Degraded run:** the run paused for a person" in out["output"]["report"]
    code, shown, _ = cli(capsys, "show", thread, "--db", db, "--json")
    assert shown["settings"]["budget"] == {"value": {"calls": 100.0}, "origin": "resume"}
    code, rows, _ = cli(capsys, "audit", thread, "--db", db, "--json")
    kinds = {r["kind"] for r in rows["events"]}
    assert {"model_call", "budget_stop", "pause"} <= kinds
    code, stats, _ = cli(capsys, "stats", thread, "--db", db, "--json")
    assert code == 0 and stats


def test_a_person_can_stop_a_paused_run_with_its_work_kept(capsys, corpus_dir, tmp_path):
    db = str(tmp_path / "stop.db")
    thread = "00000000-0000-4000-8000-000000000002"
    base = ["--corpus", str(corpus_dir), "--max-revisions", "0", "--db", db, "--thread", thread]
    code, out, _ = cli(
        capsys, "run", "research", "How do bees make honey?", *base, "--budget", '{"calls": 3}',
        "--yes", "--json",
    )  # fmt: skip
    assert out["status"] == "interrupted"
    assert out["next"] == ["synthesizer"]  # the budget ran out before the report
    code, _, err = cli(capsys, "resume", thread, "--answer", '"stop"', "--db", db)
    assert code == 1 and "stopped by a person: budget exhausted" in err
    code, shown, _ = cli(capsys, "show", thread, "--db", db, "--json")
    assert shown["values"]["plan"], "the planner's work is kept"


def test_a_fork_that_changes_only_max_revisions_reuses_earlier_work(
    register, capsys, corpus_dir, tmp_path, monkeypatch
):
    """The issue's measurement: calls made by such a fork, with and without the cache."""
    from tests.fakes import (
        plan_responder,
        researcher_responder,
        sequence,
        verdict,
        writer_responder,
    )

    models = {
        "planner": ScriptedChatModel(
            responder=plan_responder("Where is honey stored?", "What is wax?")
        ),
        "researcher": ScriptedChatModel(responder=researcher_responder()),
        "synthesizer": ScriptedChatModel(responder=writer_responder()),
        "reviewer": ScriptedChatModel(responder=sequence(verdict(False, ["What is comb?"]))),
    }
    roles = [f"--role-model={role}={register(m)}" for role, m in models.items()]
    monkeypatch.setenv("ENSEMBLE_CACHE", "1")
    db = str(tmp_path / "fork.db")
    base = ["--corpus", str(corpus_dir), "--max-revisions", "0", *roles, "--db", db, "--json"]
    code, out, _ = cli(capsys, "run", "research", "How do bees make honey?", *base)
    thread = out["thread_id"]
    _, history, _ = cli(capsys, "history", thread, "--db", db, "--json", "--limit", "100")
    after_plan = next(c for c in history["checkpoints"] if "researcher" in c["next"])

    def calls() -> int:
        return sum(len(m.calls) for m in models.values())

    measured = {}
    for label, extra in (("cache", []), ("no cache", ["--no-cache"])):
        before = calls()
        code, forked, _ = cli(capsys, "fork", thread, "--checkpoint", after_plan["checkpoint_id"],
                              "--set", "max_revisions=0", *extra, "--db", db, "--json")  # fmt: skip
        assert code == 0 and forked["status"] == "done"
        measured[label] = calls() - before
    print(f"\nfork changing only max_revisions: model calls {measured}")
    assert measured == {"cache": 0, "no cache": 6}


def test_a_synchronous_call_goes_through_the_same_guard(register, fresh):
    model = ScriptedChatModel(responder=echo("m"))
    context = Context(role_models={"writer": register(model)}, cache=True)
    guarded = chat_model_for(context, "writer", db=fresh.db_path)
    assert guarded.invoke([HumanMessage("hi")]).text == "m: hi"
    assert guarded.invoke([HumanMessage("hi")]).text == "m: hi"
    assert len(model.calls) == 1  # the second came from the cache


class Starts(BaseCallbackHandler):
    """Records each chat-model start with its run and parent run."""

    def __init__(self) -> None:
        self.starts: list[tuple[UUID, UUID | None]] = []

    def on_chat_model_start(self, serialized, messages, *, run_id, parent_run_id=None, **kw):
        self.starts.append((run_id, parent_run_id))


async def test_the_wrapped_model_is_called_through_its_public_interface(register, fresh):
    """The provider's model runs as a child of the guard's call, so its callbacks fire."""
    model = ScriptedChatModel(responder=echo("m"))
    guarded = chat_model_for(
        Context(role_models={"writer": register(model)}), "writer", db=fresh.db_path
    )
    seen = Starts()
    answer = await guarded.ainvoke([HumanMessage("hi")], config={"callbacks": [seen]})
    assert answer.text == "m: hi"
    (guard_run, _), (inner_run, inner_parent) = seen.starts
    assert inner_parent == guard_run and inner_run != guard_run
