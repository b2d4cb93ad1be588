"""Every model call has a timeout and the guard retries transient faults, against real HTTP.

The OpenAI-compatible test server injects each fault on a schedule: a request held past the
timeout, 429 with Retry-After, 500, a reset connection, 400, malformed tool arguments.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import openai
import pytest
from langchain_core.messages import HumanMessage
from pydantic import BaseModel

from ensemble.models import chat_model
from ensemble.nodes.llm import ask_structured
from ensemble.resilience import BOARD
from ensemble.resilience.guard import GuardedChatModel, ModelUnavailable
from tests.fake_openai import FakeOpenAI

pytestmark = pytest.mark.integration

ENSEMBLE = str(Path(sys.executable).parent / "ensemble")


@pytest.fixture
def server(monkeypatch):
    with FakeOpenAI() as fake:
        monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        yield fake


@pytest.fixture(autouse=True)
def closed_breakers():
    BOARD.reset()
    yield
    BOARD.reset()


def model(timeout: float = 2.0, retries: int = 2) -> GuardedChatModel:
    """A model behind the guard, which does the retrying (its client never retries)."""
    spec = f"openai:fault-{time.monotonic_ns()}"
    db = Path(tempfile.mkdtemp()) / "faults.db"
    client = chat_model(spec, timeout=timeout)
    return GuardedChatModel(
        role="writer", chain=(spec,), models=(client,), db=str(db), retries=retries
    )


async def test_a_request_held_open_times_out_and_is_retried_then_given_up(server):
    server.faults = [{"kind": "stall", "seconds": 3}] * 2
    started = time.monotonic()
    with pytest.raises(ModelUnavailable, match="TimeoutError"):
        await model(timeout=0.5, retries=1).ainvoke([HumanMessage("hello")])
    assert len(server.requests) == 2 and time.monotonic() - started < 3


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "status", "code": 429, "headers": {"Retry-After": "1"}},
        {"kind": "status", "code": 500},
        {"kind": "status", "code": 503},
        {"kind": "reset"},
        {"kind": "stall", "seconds": 2},
    ],
)
async def test_transient_faults_are_retried(server, fault):
    server.faults = [fault]
    started = time.monotonic()
    answer = await model(timeout=1.0).ainvoke([HumanMessage("hello there")])
    assert answer.text and len(server.requests) == 2
    if fault.get("code") == 429:
        assert time.monotonic() - started >= 0.9  # Retry-After was honoured


@pytest.mark.parametrize("code", [400, 401, 403])
async def test_permanent_errors_are_not_retried(server, code):
    server.faults = [{"kind": "status", "code": code}]
    with pytest.raises(openai.APIStatusError):
        await model().ainvoke([HumanMessage("hello")])
    assert len(server.requests) == 1


class Verdict(BaseModel):
    approved: bool
    reasons: list[str]


@pytest.mark.parametrize("fault", [{"kind": "bad_args"}, {"kind": "empty"}])
async def test_malformed_structured_output_is_retried_with_the_error_fed_back(server, fault):
    server.faults = [fault]
    parsed = await ask_structured(model(), Verdict, [HumanMessage("Judge the report.")])
    assert isinstance(parsed, Verdict) and len(server.requests) == 2
    second = server.requests[1]["messages"][-1]["content"]
    assert "could not be used" in second and "Verdict" in second


def test_a_stalled_provider_pauses_a_run_with_a_reason_instead_of_hanging(tmp_path, corpus_dir):
    with FakeOpenAI() as fake:
        fake.faults = [{"kind": "stall", "seconds": 5}] * 100
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ENSEMBLE_"))}
        env |= {"OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": "k", "NO_PROXY": "127.0.0.1"}
        started = time.monotonic()
        done = subprocess.run(
            [ENSEMBLE, "run", "research", "How do bees make honey?", "--corpus", str(corpus_dir),
             "--model", "openai:stuck", "--model-timeout", "0.3", "--model-retries", "0",
             "--db", str(tmp_path / "e.db"), "--max-revisions", "0"],
            capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert "Paused: no model available for the planner" in done.stderr
    assert "Timeout" in done.stderr  # the reason: each request timed out (no retries asked)
    assert "Go on with: ensemble resume" in done.stderr
    assert elapsed < 60
