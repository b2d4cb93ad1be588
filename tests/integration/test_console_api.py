"""The console's routes on real servers: the README's command with no flags, and with keys.

The page and its files are open (no data); everything under `/console/api` follows the API's
rules: a key, a user's own threads (a reviewer's: all), the origin rule, bounded parameters.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from ensemble.graphs.registry import SCENARIOS
from ensemble.server.console.routes import SECURITY_HEADERS
from tests.integration.test_server_doors import (  # noqa: F401
    FAILING_MODEL,
    Served,
    client,
    keyed,
    plain,
    raw,
)

pytestmark = pytest.mark.integration
QUESTION = "How does the json module decode JSON documents?"


@pytest.fixture(scope="module")
def waiting(keyed: Served) -> Iterator[str]:  # noqa: F811
    """Alice's research run, waiting at its plan review."""

    async def start() -> str:
        alice = client(keyed, "alice")
        thread_id = (await alice.threads.create())["thread_id"]
        brief = {"question": QUESTION, "review_plan": True}
        out = await alice.runs.wait(thread_id, "research", input=brief)
        assert out["__interrupt__"][0]["value"]["kind"] == "plan_review", out
        return str(thread_id)

    yield asyncio.run(start())


def test_the_default_server_serves_the_page_with_a_strict_policy(plain: Served) -> None:  # noqa: F811
    for path in ("/console/", "/console/static/console.js", "/console/static/console.css"):
        answer = raw(plain, "GET", path)
        assert answer.status_code == 200, (path, answer.text)
        for name, value in SECURITY_HEADERS.items():
            assert answer.headers[name] == value
    assert "script-src 'self'" in SECURITY_HEADERS["Content-Security-Policy"]
    assert raw(plain, "GET", "/console", follow_redirects=False).headers["location"] == "/console/"


@pytest.mark.parametrize(
    "path",
    ["/console/static/evil.js", "/console/static/..%2F..%2Fapp.py", "/console/static/index.html",
     "/console/static/.hidden", "/console/api/nothing", "/consoles"],
)  # fmt: skip
def test_only_listed_files_exist(plain: Served, path: str) -> None:  # noqa: F811
    assert raw(plain, "GET", path).status_code == 404


def test_without_keys_the_local_user_may_do_everything(plain: Served) -> None:  # noqa: F811
    me = raw(plain, "GET", "/console/api/me").json()
    assert me == {"user": None, "roles": ["publisher", "reviewer"], "keys": False}


def test_a_foreign_page_reads_nothing_even_from_the_default_server(plain: Served) -> None:  # noqa: F811
    for path in ("/console/api/me", "/console/api/threads", "/console/api/scenarios"):
        answer = raw(plain, "GET", path, headers={"origin": "https://evil.example"})
        assert answer.status_code == 403
        assert "access-control-allow-origin" not in answer.headers
    own = raw(plain, "GET", "/console/api/me", headers={"origin": plain.url})
    assert own.status_code == 200


def test_with_keys_the_page_is_open_and_the_data_is_not(keyed: Served) -> None:  # noqa: F811
    assert raw(keyed, "GET", "/console/").status_code == 200
    for path in ("/console/api/me", "/console/api/threads", "/console/api/scenarios"):
        assert raw(keyed, "GET", path).status_code == 401
        assert (
            raw(keyed, "GET", path, headers={"x-api-key": "wrong-key-0123456789"}).status_code
            == 401
        )
    assert raw(keyed, "GET", "/console/api/me", "alice").json() == {
        "user": "alice", "roles": [], "keys": True}  # fmt: skip
    assert raw(keyed, "GET", "/console/api/me", "rita").json()["roles"] == ["reviewer"]


def test_scenarios_carry_schemas_gates_and_the_drawn_graph(keyed: Served) -> None:  # noqa: F811
    listed = {s["name"]: s for s in raw(keyed, "GET", "/console/api/scenarios", "alice").json()[
        "scenarios"]}  # fmt: skip
    assert set(listed) == set(SCENARIOS)
    assert set(listed["research"]["gates"]) == {"plan_review", "halted"}
    assert set(listed["content"]["gates"]) == {"content_approval", "halted"}
    assert set(listed["solver"]["gates"]) == {"solver_help", "halted"}
    halted = listed["research"]["gates"]["halted"]["oneOf"]
    assert [answer["const"] for answer in halted] == ["retry", "stop"]
    approval = listed["content"]["gates"]["content_approval"]
    assert {"Approve", "RequestChanges", "Edit", "Reject"} <= set(approval["$defs"])
    assert "question" in listed["research"]["input_schema"]["properties"]
    nodes = {n["id"] for n in listed["research"]["graph"]["nodes"]}
    assert {"__start__", "planner", "review_plan", "researcher", "__end__"} <= nodes


def test_a_user_sees_their_waiting_thread_in_full(keyed: Served, waiting: str) -> None:  # noqa: F811
    rows = raw(keyed, "GET", "/console/api/threads", "alice").json()["threads"]
    (row,) = [r for r in rows if r["thread_id"] == waiting]
    assert row["status"] == "waiting" and row["waiting_for"] == "plan_review"
    assert row["scenario"] == "research" and row["owner"] == "alice" and row["input"] == QUESTION
    assert row["size"] > 0 and row["tokens"] > 0
    detail = raw(keyed, "GET", f"/console/api/threads/{waiting}", "alice").json()
    assert detail["current"] == ["review_plan"]
    assert detail["interrupt"]["value"]["kind"] == "plan_review"
    assert detail["input"]["question"] == QUESTION
    assert detail["settings"]["model"] == "offline"
    assert detail["totals"]["calls"] >= 1 and detail["agents"]
    assert {span["kind"] for span in detail["timeline"]} >= {"model_call"}
    assert all(span["end"] >= span["start"] for span in detail["timeline"])
    assert len(detail["checkpoints"]) >= 3 and detail["checkpoints"][0]["checkpoint_id"]


def test_another_user_sees_nothing_of_it_and_a_reviewer_sees_it(
    keyed: Served,  # noqa: F811
    waiting: str,
) -> None:
    bob_rows = raw(keyed, "GET", "/console/api/threads", "bob").json()["threads"]
    assert waiting not in {r["thread_id"] for r in bob_rows}
    hidden = raw(keyed, "GET", f"/console/api/threads/{waiting}", "bob")
    assert hidden.status_code == 404 and QUESTION not in hidden.text
    rita_rows = raw(keyed, "GET", "/console/api/threads?status=waiting", "rita").json()["threads"]
    assert waiting in {r["thread_id"] for r in rita_rows}
    assert raw(keyed, "GET", f"/console/api/threads/{waiting}", "rita").status_code == 200


@pytest.mark.parametrize(
    ("query", "found"),
    [("status=waiting", True), ("status=done", False), ("scenario=research", True),
     ("scenario=content", False), ("q=JSON+MODULE", True), ("q=bees", False),
     ("owner=alice", True), ("owner=bob", False)],
)  # fmt: skip
def test_filters(keyed: Served, waiting: str, query: str, found: bool) -> None:  # noqa: F811
    rows = raw(keyed, "GET", f"/console/api/threads?{query}", "alice").json()["threads"]
    assert (waiting in {r["thread_id"] for r in rows}) is found


@pytest.mark.parametrize(
    "query", ["status=lost", "scenario=nope", "limit=0", "limit=501", f"q={'x' * 201}"]
)
def test_bad_parameters_are_refused(keyed: Served, query: str) -> None:  # noqa: F811
    assert raw(keyed, "GET", f"/console/api/threads?{query}", "alice").status_code == 422


@pytest.mark.parametrize("thread_id", ["not-a-thread", "0" * 36, "../../etc/passwd"])
def test_unknown_threads_are_not_found(keyed: Served, thread_id: str) -> None:  # noqa: F811
    assert raw(keyed, "GET", f"/console/api/threads/{thread_id}", "rita").status_code == 404


def test_a_solver_run_is_named_by_its_workflow_and_its_halt_is_listed(keyed: Served) -> None:  # noqa: F811
    """A workflow has no `problem`: the list names the run by the workflow's title."""
    doomed = {"name": "doomed", "role": "Fails.", "capabilities": ["analysis"],
              "model": FAILING_MODEL}  # fmt: skip
    workflow = {"title": "Stuck estimate", "tasks": [
        {"id": "estimate", "description": "Estimate it.", "capability": "analysis"}]}  # fmt: skip

    async def start() -> str:
        alice = client(keyed, "alice")
        thread_id = (await alice.threads.create())["thread_id"]
        brief = {"workflow": workflow, "agents": [doomed], "replace_team": True}
        out = await alice.runs.wait(thread_id, "solver", input=brief)
        assert out["__interrupt__"][0]["value"]["kind"] == "solver_help", out
        return str(thread_id)

    thread_id = asyncio.run(start())
    rows = raw(keyed, "GET", "/console/api/threads?scenario=solver", "alice").json()["threads"]
    (row,) = [r for r in rows if r["thread_id"] == thread_id]
    assert row["input"] == "Stuck estimate" and row["waiting_for"] == "solver_help"
