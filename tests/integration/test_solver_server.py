"""The distributed problem solver through a real `ensemble serve` with keys, via `langgraph_sdk`.

An author (no roles) starts solver runs; only a reviewer answers a help request. The shipped
example workflow is solved offline; a team whose only capable agent always fails (its model
cannot be built: the server has no OpenAI key) pauses for a person, whose stated result
finishes the task; a bad workflow or agent definition is a 422 before any run exists. The
pause for a person runs on a server on SQLite and on one on PostgreSQL; the rest on SQLite only.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from langgraph_sdk import get_client

from ensemble import processes
from tests.databases import DATABASES, database_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "ensemble" / "tasks" / "examples" / "json_report.yaml"
KEYS = {"ana": "ana-author-key-0123456789", "rex": "rex-reviewer-key-0123456789"}
AUTHOR, REVIEWER = "ana", "rex"
ASSISTANT = "solver"
FAILING = {
    "name": "doomed",
    "role": "Answers with a model this server cannot build.",
    "capabilities": ["analysis"],
    "model": "openai:missing",
}
ONE_TASK = {
    "title": "Stuck",
    "tasks": [{"id": "estimate", "description": "Estimate the answer.", "capability": "analysis"}],
}
ON_SQLITE_ONLY = pytest.mark.parametrize("served", ["sqlite"], indirect=True)
"""For a test that does not depend on the database: one server is enough."""


@dataclass(frozen=True)
class SolverServer:
    url: str
    db: str
    log: Path


def server_env() -> dict[str, str]:
    """No OpenAI key or base URL: an `openai:` agent model fails every time it is built."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ENSEMBLE_", "OPENAI_")) and "proxy" not in k.lower()
    } | {"NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}


@pytest.fixture(scope="module", params=DATABASES, ids=DATABASES)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SolverServer]:
    """`ensemble serve --keys --model offline` with an author and a reviewer."""
    base = tmp_path_factory.mktemp("solver")
    keys = base / "keys.json"
    entries: list[dict[str, Any]] = [
        {"user": AUTHOR, "key": KEYS[AUTHOR]},
        {"user": REVIEWER, "key": KEYS[REVIEWER], "roles": ["reviewer"]},
    ]
    keys.write_text(json.dumps({"keys": entries}), encoding="utf-8")
    db = database_for(request, base / "data")
    port = processes.free_port()
    log = base / "serve.log"
    argv = [sys.executable, "-m", "ensemble.cli.main", "serve", "--port", str(port)]
    argv += ["--db", db, "--model", "offline", "--keys", str(keys)]
    argv += ["--allow-model", FAILING["model"]]  # the operator offers it; it cannot be built
    url = f"http://127.0.0.1:{port}"
    with processes.start(argv, log, cwd=base, env=server_env()) as child:
        child.wait_ready(f"{url}/ok", 120)
        yield SolverServer(url=url, db=db, log=log)


def client(server: SolverServer, user: str):
    return get_client(url=server.url, api_key=KEYS[user])


async def expect_status(status: int, coroutine: Any) -> str:
    with pytest.raises(httpx.HTTPStatusError) as caught:
        await coroutine
    assert caught.value.response.status_code == status, caught.value.response.text
    return caught.value.response.text


@ON_SQLITE_ONLY
async def test_the_example_workflow_is_solved(served: SolverServer) -> None:
    author = client(served, AUTHOR)
    workflow = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    thread_id = (await author.threads.create())["thread_id"]
    out = await author.runs.wait(thread_id, ASSISTANT, input={"workflow": workflow})
    assert out.get("outcome") == "solved", out
    assert [row["id"] for row in out["dag"]] == [task["id"] for task in workflow["tasks"]]
    assert {tid: r["status"] for tid, r in out["results"].items()} == {
        task["id"]: "done" for task in workflow["tasks"]
    }
    verdict = next(row for row in out["dag"] if row["id"] == "verdict")
    assert verdict["vote"]["status"] == "agreed" and len(set(verdict["agents"])) == 3
    assert out["results"]["roundtrip"]["value"] is True
    assert (await author.threads.get(thread_id))["status"] == "idle"


async def test_a_failing_team_asks_a_person_whose_result_finishes_the_task(
    served: SolverServer,
) -> None:
    author, reviewer = client(served, AUTHOR), client(served, REVIEWER)
    thread_id = (await author.threads.create())["thread_id"]
    brief = {"workflow": ONE_TASK, "agents": [FAILING], "replace_team": True}
    out = await author.runs.wait(thread_id, ASSISTANT, input=brief)
    assert out["__interrupt__"][0]["value"]["kind"] == "solver_help", out

    state = await author.threads.get_state(thread_id)
    assert state["next"] == ["help"]
    (pending,) = state["interrupts"]
    request = pending["value"]
    assert request["kind"] == "solver_help" and request["task"] == "estimate"
    assert request["reason"] == "no capable agent left"
    assert request["detail"]["capable"] == ["doomed"]
    assert request["detail"]["failed_here"] == ["doomed"]
    assert "skip" in request["answer_format"] and request["error"] is None
    attempts = list(state["values"]["attempts"].values())
    assert attempts and all(not a["ok"] and a["agent"] == "doomed" for a in attempts)
    assert all("ModelSpecError" in a["error"] for a in attempts), attempts
    assert (await author.threads.get(thread_id))["status"] == "interrupted"

    skip = {"resume": {"action": "skip", "result": "by hand"}}
    text = await expect_status(403, author.runs.wait(thread_id, ASSISTANT, command=skip))
    assert "reviewer" in text
    assert (await author.threads.get_state(thread_id))["next"] == ["help"]

    out = await reviewer.runs.wait(thread_id, ASSISTANT, command=skip)
    assert out["outcome"] == "solved", out
    result = out["results"]["estimate"]
    assert result["status"] == "skipped" and result["value"] == "by hand"
    assert result["agents"] == ["human"]
    (row,) = out["dag"]
    assert row["status"] == "skipped" and row["value"] == "by hand"
    assert "by hand" in out["answer"]
    assert (await author.threads.get_state(thread_id))["next"] == []


def bad_task(**changes: Any) -> dict[str, Any]:
    return {"id": "broken", "description": "Go wrong.", "capability": "analysis"} | changes


@pytest.mark.parametrize(
    ("tasks", "expected"),
    [
        ([bad_task(depends_on=["broken"])], "cycle: broken -> broken"),
        ([bad_task(depends_on=["ghost"])], "task 'broken' depends on 'ghost'"),
        ([bad_task(capability="juggling")], "task 'broken' needs capability 'juggling'"),
        ([bad_task(), bad_task()], "task 'broken' is defined twice"),
    ],
    ids=["cycle", "missing-dependency", "unknown-capability", "duplicate-id"],
)
@ON_SQLITE_ONLY
async def test_a_bad_workflow_is_a_422_naming_the_task(
    served: SolverServer, tasks: list[dict[str, Any]], expected: str
) -> None:
    author = client(served, AUTHOR)
    thread_id = (await author.threads.create())["thread_id"]
    text = await expect_status(
        422, author.runs.wait(thread_id, ASSISTANT, input={"workflow": {"tasks": tasks}})
    )
    assert expected in text, text
    assert await author.runs.list(thread_id) == []  # no half-created run
    assert not (await author.threads.get_state(thread_id))["values"]


@ON_SQLITE_ONLY
async def test_an_agent_with_an_unknown_tool_is_a_422(served: SolverServer) -> None:
    author = client(served, AUTHOR)
    thread_id = (await author.threads.create())["thread_id"]
    hacker = FAILING | {"name": "hacker", "model": None, "tools": ["shell"]}
    brief = {"workflow": ONE_TASK, "agents": [hacker], "replace_team": True}
    text = await expect_status(422, author.runs.wait(thread_id, ASSISTANT, input=brief))
    assert "shell" in text, text
    assert await author.runs.list(thread_id) == []
    assert not (await author.threads.get_state(thread_id))["values"]
