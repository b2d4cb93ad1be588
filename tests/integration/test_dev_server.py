"""Every scenario through a real `langgraph dev` server, driven by the LangGraph SDK.

The server writes its checkpoints into the Ensemble database, so the `ensemble` CLI must
see (and show) the threads the server ran. What touches the database runs on SQLite and on
PostgreSQL (one server each); what does not runs on SQLite only.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from langgraph_sdk import get_client
from prometheus_client.parser import text_string_to_metric_families

from ensemble import processes
from ensemble.cli import serve
from ensemble.graphs.registry import SCENARIOS
from tests.integration.conftest import SLOW_MODEL, Server, tail

pytestmark = pytest.mark.integration

ASSISTANT = "research"
ON_SQLITE_ONLY = pytest.mark.parametrize("server", ["sqlite"], indirect=True)
"""For a test that does not depend on the database: one server is enough."""


def research_input(server: Server, **extra: Any) -> dict[str, Any]:
    return {
        "question": "How do bees make honey?",
        "corpus": str(server.corpus),
        "max_revisions": 0,
    } | extra


def metric(server: Server, name: str, **labels: str) -> float:
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def ensemble_cli(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "ensemble.cli.main", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "ENSEMBLE_DB"},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@ON_SQLITE_ONLY
async def test_every_scenario_is_an_assistant(server: Server) -> None:
    client = get_client(url=server.url)
    assistants = await client.assistants.search(limit=100)
    assert set(SCENARIOS) <= {a["graph_id"] for a in assistants}


@ON_SQLITE_ONLY  # a run on PostgreSQL: the tests below
async def test_wait_returns_a_cited_report(server: Server) -> None:
    client = get_client(url=server.url)
    thread = await client.threads.create()
    out = await client.runs.wait(thread["thread_id"], ASSISTANT, input=research_input(server))
    assert out["report"].startswith("# How do bees make honey?")
    assert out["sources"] and out["sources"][0]["source"] in {"bees.md", "honey.txt"}
    assert out["outcome"] == "approved"


@ON_SQLITE_ONLY
async def test_stream_shows_agents_and_message_chunks(server: Server) -> None:
    client = get_client(url=server.url)
    thread = await client.threads.create()
    seen: dict[str, list[Any]] = {}
    async for part in client.runs.stream(
        thread["thread_id"],
        ASSISTANT,
        input=research_input(server),
        stream_mode=["updates", "custom", "messages-tuple"],
    ):
        seen.setdefault(part.event, []).append(part.data)
    agents = {event["agent"] for event in seen["custom"]}
    assert {"planner", "researcher", "synthesizer", "reviewer"} <= agents
    updated = {node for update in seen["updates"] for node in update}
    assert {"intake", "planner", "researcher", "synthesizer", "finalize"} <= updated
    chunks = seen["messages"]
    assert len(chunks) >= 5  # streamed word by word, not one message per node
    message, meta = chunks[-1]
    assert message["type"] == "AIMessageChunk"
    assert {m["langgraph_node"] for _, m in chunks} >= {"planner", "researcher", "synthesizer"}


async def test_plan_review_pauses_and_an_edit_is_researched(server: Server) -> None:
    client = get_client(url=server.url)
    thread_id = (await client.threads.create())["thread_id"]
    out = await client.runs.wait(
        thread_id, ASSISTANT, input=research_input(server, review_plan=True)
    )
    assert out["__interrupt__"][0]["value"]["kind"] == "plan_review"

    state = await client.threads.get_state(thread_id)
    assert state["next"] == ["review_plan"]
    (pending,) = state["interrupts"]
    assert pending["value"]["plan"]
    assert state["tasks"][0]["interrupts"][0]["id"] == pending["id"]
    assert (await client.threads.get(thread_id))["status"] == "interrupted"

    edited = ["What do worker bees forage?", "How is honey stored?"]
    out = await client.runs.wait(
        thread_id, ASSISTANT, command={"resume": {"action": "edit", "subquestions": edited}}
    )
    assert [item["question"] for item in out["plan"]] == edited
    values = (await client.threads.get_state(thread_id))["values"]
    researched = {note["subquestion"] for note in values["notes"].values()}
    assert researched == set(edited)
    assert (await client.threads.get(thread_id))["status"] == "idle"


@ON_SQLITE_ONLY  # a resume on PostgreSQL: the test above
async def test_a_second_client_resumes_a_thread_the_first_started(server: Server) -> None:
    first = get_client(url=server.url)
    thread_id = (await first.threads.create())["thread_id"]
    await first.runs.wait(thread_id, ASSISTANT, input=research_input(server, review_plan=True))

    second = get_client(url=server.url)
    state = await second.threads.get_state(thread_id)
    assert state["interrupts"][0]["value"]["kind"] == "plan_review"
    out = await second.runs.wait(thread_id, ASSISTANT, command={"resume": {"action": "approve"}})
    assert out["report"]
    assert (await first.threads.get_state(thread_id))["next"] == []


async def test_history_and_a_fork_keep_both_branches(server: Server) -> None:
    client = get_client(url=server.url)
    thread_id = (await client.threads.create())["thread_id"]
    await client.runs.wait(thread_id, ASSISTANT, input=research_input(server))
    history = await client.threads.get_history(thread_id, limit=100)
    assert history[0]["next"] == [] and history[-1]["next"] == ["__start__"]
    before_synthesis = next(h for h in history if h["next"] == ["synthesizer"])
    past = before_synthesis["checkpoint"]

    forked = await client.threads.update_state(
        thread_id, {"question": "Forked: how do bees make honey?"}, checkpoint=past
    )
    out = await client.runs.wait(
        thread_id, ASSISTANT, input=None, checkpoint_id=forked["checkpoint"]["checkpoint_id"]
    )
    assert out["report"].startswith("# Forked: how do bees make honey?")

    history = await client.threads.get_history(thread_id, limit=100)
    children = [
        h
        for h in history
        if (h.get("parent_checkpoint") or {}).get("checkpoint_id") == past["checkpoint_id"]
    ]
    assert {c["metadata"]["source"] for c in children} == {"loop", "update"}
    finals = [h for h in history if h["next"] == []]
    assert {f["values"]["question"] for f in finals} == {
        "How do bees make honey?",
        "Forked: how do bees make honey?",
    }


async def test_a_running_run_can_be_cancelled(server: Server) -> None:
    client = get_client(url=server.url)
    thread_id = (await client.threads.create())["thread_id"]
    cancelled_before = metric(
        server, "ensemble_runs_finished_total", scenario="research", status="cancelled"
    )
    run = await client.runs.create(
        thread_id,
        ASSISTANT,
        input=research_input(server, max_researchers=1),
        context={"model": SLOW_MODEL},  # every model call takes 2 s
    )
    await wait_for_status(client, thread_id, run["run_id"], {"running"})
    await client.runs.cancel(thread_id, run["run_id"], wait=True)
    status = (await client.runs.get(thread_id, run["run_id"]))["status"]
    assert status in {"interrupted", "cancelled"}  # the default cancel action is "interrupt"
    assert (await client.threads.get_state(thread_id))["values"].get("report", "") == ""
    assert (
        metric(server, "ensemble_runs_finished_total", scenario="research", status="cancelled")
        == cancelled_before + 1
    )


async def wait_for_status(
    client: Any, thread_id: str, run_id: str, wanted: set[str], timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (await client.runs.get(thread_id, run_id))["status"] in wanted:
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"run {run_id} never reached {wanted}")


async def test_the_cli_reads_what_the_server_wrote(server: Server) -> None:
    client = get_client(url=server.url)
    thread_id = (await client.threads.create())["thread_id"]
    out = await client.runs.wait(thread_id, ASSISTANT, input=research_input(server))

    threads = ensemble_cli("threads", "--db", server.db)["threads"]
    row = next(t for t in threads if t["thread_id"] == thread_id)
    assert row["scenario"] == "research"
    assert row["status"] == "done"

    shown = ensemble_cli("show", thread_id, "--db", server.db)
    assert shown["scenario"] == "research"
    assert shown["values"]["report"] == out["report"]


@ON_SQLITE_ONLY
async def test_metrics_count_server_runs(server: Server) -> None:
    client = get_client(url=server.url)
    started = metric(server, "ensemble_runs_started_total", scenario="research")
    done = metric(server, "ensemble_runs_finished_total", scenario="research", status="done")
    thread_id = (await client.threads.create())["thread_id"]
    await client.runs.wait(thread_id, ASSISTANT, input=research_input(server))
    assert metric(server, "ensemble_runs_started_total", scenario="research") == started + 1
    assert (
        metric(server, "ensemble_runs_finished_total", scenario="research", status="done")
        == done + 1
    )
    assert metric(server, "ensemble_node_seconds_count", scenario="research", node="planner") > 0
    assert metric(server, "ensemble_model_tokens_total", role="researcher", kind="output") > 0


def serve_argv(port: int, db: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "ensemble.cli.main",
        "serve",
        "--port",
        str(port),
        "--db",
        str(db),
        "--model",
        "offline",
    ]


def test_ensemble_serve_starts_prints_and_stops_on_sigint(tmp_path: Path) -> None:
    port = processes.free_port()
    db = tmp_path / "served.db"
    log = tmp_path / "serve.log"
    with processes.start(serve_argv(port, db), log) as child:
        child.wait_ready(f"{serve.server_url(port)}/ok", 120)
        child.process.send_signal(signal.SIGINT)  # only to `ensemble serve`: it forwards it
        assert child.process.wait(30) == 0, tail(log)
        assert not processes.http_ok(f"{serve.server_url(port)}/ok")
    output = log.read_text(encoding="utf-8", errors="replace")
    assert f"http://127.0.0.1:{port}" in output
    assert str(db.resolve()) in output
    assert "UNAUTHENTICATED" in output and "loopback only" in output
    # The SQLite saver has every method the server calls (no "missing aprune" at start).
    assert "Custom checkpointer missing" not in output
    # The server's own records sit beside the database, not in the project checkout.
    assert (tmp_path / serve.SERVER_DIR / ".langgraph_api").is_dir()
