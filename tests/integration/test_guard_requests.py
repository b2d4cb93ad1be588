"""Every request that reaches a provider is the guard's: budgeted, audited, stopped by a breaker.

Against the OpenAI-compatible test server on 127.0.0.1 (real HTTP, ChatOpenAI without client
retries): the guard retries a 500 itself, so the budget, the audit trail and `ensemble stats`
count exactly the requests the server saw; and an endpoint whose breaker is open gets none.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from typing_extensions import TypedDict

from ensemble import audit
from ensemble.cli.main import main
from ensemble.context import Context
from ensemble.models import chat_model_for
from ensemble.resilience import BOARD
from ensemble.resilience.guard import SPENDING
from tests.fake_openai import FakeOpenAI

pytestmark = pytest.mark.integration

FAIL = {"kind": "status", "code": 500}


class Box(TypedDict, total=False):
    prompts: list[str]
    answers: list[str]


@pytest.fixture(autouse=True)
def fresh():
    BOARD.reset()
    SPENDING.forget()
    yield
    audit.flush()
    BOARD.reset()
    SPENDING.forget()


def spec_on(server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, name: str) -> str:
    """A model spec whose client talks to `server` (the URL is read when the model is built)."""
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    spec = f"openai:{name}-{time.monotonic_ns()}"
    chat_model_for(Context(model=spec), "writer", db=":memory:")  # builds (and caches) it now
    return spec


async def run(db: Path, context: Context, prompts: list[str], thread: str) -> Box:
    async def writer(state: Box, runtime: Runtime[Context]) -> dict[str, Any]:
        model = chat_model_for(runtime.context, "writer", db=db)
        return {
            "answers": [(await model.ainvoke([HumanMessage(p)])).text for p in state["prompts"]]
        }

    builder = StateGraph(Box, context_schema=Context)
    builder.add_node("writer", writer)
    builder.add_edge(START, "writer")
    builder.add_edge("writer", END)
    config = {"configurable": {"thread_id": thread}}
    return await builder.compile().ainvoke({"prompts": prompts}, config, context=context)


async def test_a_retried_500_is_counted_by_budget_audit_and_stats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db, thread = tmp_path / "requests.db", "retried"
    with FakeOpenAI() as server:
        spec = spec_on(server, monkeypatch, "flaky")
        server.faults = [{}, FAIL]  # the 2nd request fails once
        context = Context(model=spec, cache=False, budget={"calls": 100})
        out = await run(db, context, ["first question", "second question"], thread)
        seen = len(server.requests)
    assert len(out["answers"]) == 2 and all(out["answers"])
    assert seen == 3  # the 500 was retried by the guard, not by the client
    assert SPENDING.ledger(str(db), thread).calls == seen
    assert audit.flush()
    calls = [e for e in audit.events(db, thread) if e["kind"] == "model_call"]
    assert [e["outcome"] for e in calls] == ["ok", "error", "ok"]
    assert await asyncio.to_thread(main, ["stats", thread, "--db", str(db), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["totals"]["calls"] == seen and stats["totals"]["errors"] == 1


async def test_no_request_reaches_an_endpoint_while_its_breaker_is_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "breaker.db"
    with FakeOpenAI() as failing, FakeOpenAI() as backup:
        failing.faults = [FAIL] * 100
        primary = spec_on(failing, monkeypatch, "down")
        fallback = spec_on(backup, monkeypatch, "backup")
        context = Context(model=primary, fallbacks={"writer": [fallback]}, cache=False)
        out = await run(db, context, ["one", "two"], "open")
        reached = len(failing.requests)
        assert BOARD.breaker(f"model:{primary}").state == "open"
        out_later = await run(db, context, ["three", "four", "five"], "open-later")
        assert len(failing.requests) == reached  # refused while open: the count stops
        assert len(backup.requests) == 5  # the fallback answered every question
    assert reached == BOARD.failure_threshold
    assert all(out["answers"]) and all(out_later["answers"])
    assert audit.flush()
    rows = audit.events(db, "open")
    errors = [r for r in rows if r["kind"] == "model_call" and r["model"] == primary]
    assert len(errors) == reached and all(r["outcome"] == "error" for r in errors)
    opened = [r for r in rows if r["kind"] == "breaker" and r["outcome"] == "open"]
    assert [r["detail"]["breaker"] for r in opened] == [f"model:{primary}"]
