"""The doors of `ensemble serve`, tried as an attacker would, on three real servers.

- `plain`: the README's exact command, `ensemble serve --port P` (no keys, no flags).
- `keyed`: `--keys` (alice and bob are users, rita a reviewer), a budget ceiling, `/metrics`
  opened, and one extra model offered (an `openai:` model this server cannot build, so a solver
  agent using it fails and asks a person).
- `opened`: `--allow-origin`, `--allow-host`, a slow default model and a 2 s run limit.

Each test says which property it checks; response bodies are searched for the other user's data.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client

from ensemble import processes

pytestmark = pytest.mark.integration

KEYS = {
    "alice": "alice-key-0123456789abcdef",
    "bob": "bob-key-0123456789abcdef",
    "rita": "rita-key-0123456789abcdef",
}
ALLOWED_ORIGIN = "https://allowed.example"
ALLOWED_HOST = "api.example.test"
FAILING_MODEL = "openai:missing"
QUESTION = "How does the json module decode JSON documents?"
TOPIC = "Python's json module: decoding JSON documents"
PREFLIGHT = {"access-control-request-method": "POST", "access-control-request-headers": "x-api-key"}


@dataclass(frozen=True)
class Served:
    url: str
    port: int
    log: Path


@contextmanager
def serving(base: Path, *flags: str) -> Iterator[Served]:
    """`ensemble serve --port P FLAGS...` in `base`, until the block ends."""
    port = processes.free_port()
    log = base / "serve.log"
    argv = [sys.executable, "-m", "ensemble.cli.main", "serve", "--port", str(port), *flags]
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ENSEMBLE_", "OPENAI_")) and "proxy" not in k.lower()
    }
    url = f"http://127.0.0.1:{port}"
    with processes.start(argv, log, cwd=base, env=env) as child:
        child.wait_ready(f"{url}/ok", 120)
        yield Served(url, port, log)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The README's command, exactly: its database is `.ensemble/ensemble.db` in its folder."""
    with serving(tmp_path_factory.mktemp("plain")) as served:
        yield served


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    base = tmp_path_factory.mktemp("keyed")
    entries: list[dict[str, Any]] = [{"user": u, "key": k} for u, k in KEYS.items()]
    entries[2]["roles"] = ["reviewer"]
    (base / "keys.json").write_text(json.dumps({"keys": entries}), encoding="utf-8")
    flags = ["--keys", "keys.json", "--model", "offline", "--open-route", "/metrics"]
    flags += ["--allow-model", FAILING_MODEL, "--max-budget", "calls=500"]
    with serving(base, *flags) as served:
        yield served


@pytest.fixture(scope="module")
def opened(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    flags = ["--allow-origin", ALLOWED_ORIGIN, "--allow-host", ALLOWED_HOST]
    flags += ["--model", "offline?latency=1", "--run-seconds", "2", "--max-runs-per-user", "2"]
    with serving(tmp_path_factory.mktemp("opened"), *flags) as served:
        yield served


def client(served: Served, user: str | None = None) -> Any:
    return get_client(url=served.url, api_key=KEYS[user] if user else None)


def raw(served: Served, method: str, path: str, user: str | None = None, **kw: Any):
    headers = dict(kw.pop("headers", {}))
    if user:
        headers["x-api-key"] = KEYS[user]
    return httpx.request(method, f"{served.url}{path}", headers=headers, timeout=30, **kw)


async def expect_status(status: int, coroutine: Any) -> str:
    with pytest.raises(httpx.HTTPStatusError) as caught:
        await coroutine
    assert caught.value.response.status_code == status, caught.value.response.text
    return caught.value.response.text


# -- origins and hosts, on every kind of server ------------------------------------------------


@pytest.fixture(params=["plain", "keyed", "opened"])
def any_server(request: pytest.FixtureRequest) -> Served:
    return request.getfixturevalue(request.param)


def test_a_foreign_origin_gets_no_grant(any_server: Served) -> None:
    evil = {"origin": "https://evil.example"}
    preflight = raw(any_server, "OPTIONS", "/threads/search", headers=evil | PREFLIGHT)
    assert preflight.status_code == 403, preflight.text
    simple = raw(any_server, "POST", "/threads/search", "alice", headers=evil, json={})
    assert simple.status_code == 403
    for response in (preflight, simple):
        granted = {k for k in response.headers if k.startswith("access-control-")}
        assert not granted, response.headers


def test_a_request_naming_another_host_is_refused(any_server: Served) -> None:
    """A DNS-rebinding page reaches 127.0.0.1 under its own name: its Host gives it away."""
    for host in ("evil.example", f"evil.example:{any_server.port}", "127.0.0.1:1"):
        response = raw(any_server, "GET", "/ok", headers={"host": host})
        assert response.status_code == 421, (host, response.text)
    assert raw(
        any_server, "GET", "/ok", headers={"host": f"localhost:{any_server.port}"}
    ).is_success


def test_the_servers_own_origin_is_same_origin(any_server: Served) -> None:
    own = {"origin": any_server.url}
    response = raw(any_server, "POST", "/threads/search", "alice", headers=own, json={})
    assert response.status_code == 200, response.text


def test_a_named_origin_gets_exactly_its_own_grant(opened: Served) -> None:
    preflight = raw(
        opened, "OPTIONS", "/threads/search", headers={"origin": ALLOWED_ORIGIN} | PREFLIGHT
    )
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "access-control-allow-private-network" not in preflight.headers
    other = raw(
        opened,
        "OPTIONS",
        "/threads/search",
        headers={"origin": "https://allowed.example.evil"} | PREFLIGHT,
    )
    assert other.status_code == 403


def test_a_named_host_is_answered(opened: Served) -> None:
    response = raw(opened, "GET", "/ok", headers={"host": f"{ALLOWED_HOST}:{opened.port}"})
    assert response.status_code == 200


def test_private_network_access_is_never_granted(plain: Served) -> None:
    own = {"origin": plain.url, "access-control-request-private-network": "true"}
    response = raw(plain, "OPTIONS", "/threads/search", headers=own | PREFLIGHT)
    assert "access-control-allow-private-network" not in response.headers


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("plain", ["UNAUTHENTICATED", "Web origins:     none"]),
        ("keyed", ["API keys from", "except /ok, /metrics", "budget ceiling: calls=500"]),
        ("opened", [ALLOWED_ORIGIN, ALLOWED_HOST, "2 s per run", "2 runs at once per user"]),
    ],
)
def test_the_banner_says_what_is_open(request, fixture: str, expected: list[str]) -> None:
    served: Served = request.getfixturevalue(fixture)
    banner = served.log.read_text(encoding="utf-8", errors="replace").split("INFO:")[0]
    for text in expected:
        assert text in banner, banner
    assert "private-network access is never granted" in banner


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/internal/truncate"),
        ("GET", "/internal/debug/thread/00000000-0000-0000-0000-000000000000"),
        ("POST", "/deploy"),
        ("GET", "/deploy"),
        ("GET", "/profile"),
        ("POST", "/ui/research"),
        ("GET", "/store/items"),
    ],
)
def test_routes_ensemble_does_not_serve_are_not_found(
    any_server: Served, method: str, path: str
) -> None:
    """LangGraph dev mounts more: `/internal/truncate` would wipe every user's threads."""
    thread = raw(any_server, "POST", "/threads", "alice", json={}).json()
    response = raw(any_server, method, path, "alice", json={})
    assert response.status_code == 404, response.text
    assert raw(any_server, "GET", f"/threads/{thread['thread_id']}", "alice").status_code == 200


@pytest.mark.parametrize("path", ["/threads", "/threads/search"])
def test_a_body_over_2_mib_is_refused(plain: Served, path: str) -> None:
    big = b'{"metadata": {"x": "' + b"a" * (3 * 1024 * 1024) + b'"}}'
    response = raw(plain, "POST", path, content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413, response.text[:300]


def test_deleting_a_thread_that_does_not_exist_is_not_found(any_server: Served) -> None:
    response = raw(any_server, "DELETE", "/threads/00000000-0000-4000-8000-000000000000", "alice")
    assert response.status_code == 404, response.text  # LangGraph dev alone answers 500


# -- keys on every route -----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/docs", "/openapi.json", "/info", "/threads/search"])
def test_with_keys_every_route_needs_a_key(keyed: Served, path: str) -> None:
    method = "POST" if path.endswith("search") else "GET"
    assert raw(keyed, method, path).status_code == 401
    assert (
        raw(keyed, method, path, headers={"x-api-key": "wrong-key-0123456789"}).status_code == 401
    )
    assert raw(keyed, method, path, "bob", json={} if method == "POST" else None).status_code == 200


def test_with_keys_only_ok_and_the_opened_routes_answer_without_one(keyed: Served) -> None:
    assert raw(keyed, "GET", "/ok").status_code == 200
    assert raw(keyed, "GET", "/metrics").status_code == 200  # --open-route /metrics


# -- ownership on every route ------------------------------------------------------------------


@dataclass(frozen=True)
class Waiting:
    """A thread of alice's waiting at a human gate."""

    scenario: str
    thread_id: str
    run_id: str
    checkpoint_id: str
    gate: str
    secret: str
    answer: dict[str, Any]


async def _start_waiting(served: Served, scenario: str) -> Waiting:
    alice = client(served, "alice")
    thread_id = (await alice.threads.create())["thread_id"]
    if scenario == "research":
        run_input: dict[str, Any] = {"question": QUESTION, "review_plan": True, "max_revisions": 0}
        secret, answer = QUESTION, {"action": "approve"}
    elif scenario == "content":
        run_input = {"topic": TOPIC, "target_words": 120}
        secret, answer = TOPIC, {"action": "reject", "reason": "test"}
    else:
        one_task = {"title": "Alice's estimate", "tasks": [
            {"id": "estimate", "description": "Estimate alice's answer.", "capability": "analysis"}
        ]}  # fmt: skip
        doomed = {"name": "doomed", "role": "Fails.", "capabilities": ["analysis"],
                  "model": FAILING_MODEL}  # fmt: skip
        run_input = {"workflow": one_task, "agents": [doomed], "replace_team": True}
        secret, answer = "Estimate alice's answer.", {"action": "skip", "result": "by hand"}
    run = await alice.runs.create(thread_id, scenario, input=run_input)
    await alice.runs.join(thread_id, run["run_id"])
    state = await alice.threads.get_state(thread_id)
    assert state["interrupts"], (scenario, state.get("values", {}).get("outcome"))
    return Waiting(
        scenario,
        thread_id,
        run["run_id"],
        state["checkpoint"]["checkpoint_id"],
        state["next"][0],
        secret,
        answer,
    )


@pytest.fixture(scope="module")
def waiting(keyed: Served) -> dict[str, Waiting]:
    async def start_all() -> dict[str, Waiting]:
        return {s: await _start_waiting(keyed, s) for s in ("research", "content", "solver")}

    return asyncio.run(start_all())


ROUTES = [
    ("GET", "/threads/{t}", None),
    ("PATCH", "/threads/{t}", {"metadata": {"x": 1}}),
    ("DELETE", "/threads/{t}", None),
    ("GET", "/threads/{t}/state", None),
    ("POST", "/threads/{t}/state", {"values": {"max_revisions": 1}}),
    ("GET", "/threads/{t}/state/{c}", None),
    ("POST", "/threads/{t}/state/checkpoint", {"checkpoint": {"checkpoint_id": "{c}"}}),
    ("GET", "/threads/{t}/history", None),
    ("POST", "/threads/{t}/history", {"limit": 10}),
    ("POST", "/threads/{t}/copy", None),
    ("GET", "/threads/{t}/storage", None),
    ("GET", "/threads/{t}/stream", None),
    ("GET", "/threads/{t}/runs", None),
    ("POST", "/threads/{t}/runs", {"assistant_id": "{s}", "input": None}),
    ("POST", "/threads/{t}/runs/wait", {"assistant_id": "{s}", "input": None}),
    ("POST", "/threads/{t}/runs/stream", {"assistant_id": "{s}", "input": None}),
    ("GET", "/threads/{t}/runs/{r}", None),
    ("GET", "/threads/{t}/runs/{r}/join", None),
    ("GET", "/threads/{t}/runs/{r}/stream", None),
    ("POST", "/threads/{t}/runs/{r}/cancel", None),
    ("DELETE", "/threads/{t}/runs/{r}", None),
    ("POST", "/threads", {"thread_id": "{t}", "if_exists": "do_nothing"}),
    ("POST", "/threads", {"thread_id": "{t}", "if_exists": "raise"}),
]


def _fill(template: Any, w: Waiting) -> Any:
    text = json.dumps(template)
    for key, value in {"{t}": w.thread_id, "{c}": w.checkpoint_id, "{r}": w.run_id,
                       "{s}": w.scenario}.items():  # fmt: skip
        text = text.replace(key, value)
    return json.loads(text)


@pytest.mark.parametrize("scenario", ["research", "content", "solver"])
@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_another_users_thread_is_not_found_on_every_route(
    keyed: Served, waiting: dict[str, Waiting], scenario: str, method: str, path: str, body: Any
) -> None:
    w = waiting[scenario]
    response = raw(keyed, method, _fill(path, w), "bob", json=_fill(body, w))
    assert response.status_code == 404, response.text
    assert w.secret not in response.text and w.checkpoint_id not in response.text


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/threads/search", {"limit": 100}),
        ("/threads/search", {"metadata": {"owner": "alice"}}),
        ("/threads/count", {}),
        ("/threads/prune", {"thread_ids": ["{t}"]}),
        ("/runs/cancel", {"thread_id": "{t}", "run_ids": ["{r}"]}),
    ],
)
def test_lists_and_bulk_routes_never_show_or_touch_another_users_thread(
    keyed: Served, waiting: dict[str, Waiting], path: str, body: dict[str, Any]
) -> None:
    for w in waiting.values():
        response = raw(keyed, "POST", path, "bob", json=_fill(body, w))
        assert response.status_code in (200, 204, 404, 422), response.text
        assert w.thread_id not in response.text and w.secret not in response.text
    seen = raw(keyed, "POST", "/threads/search", "bob", json={"limit": 1000}).json()
    assert raw(keyed, "POST", "/threads/count", "bob", json={}).json() == len(seen)
    for w in waiting.values():  # nothing of alice's was deleted or cancelled
        state = raw(keyed, "GET", f"/threads/{w.thread_id}/state", "alice").json()
        assert state["next"] == [w.gate], state["next"]


# -- human gates belong to reviewers -----------------------------------------------------------


@pytest.mark.parametrize("scenario", ["research", "content", "solver"])
async def test_no_state_write_passes_a_human_gate(
    keyed: Served, waiting: dict[str, Waiting], scenario: str
) -> None:
    w = waiting[scenario]
    alice, bob = client(keyed, "alice"), client(keyed, "bob")
    input_field = {"research": "question", "content": "topic", "solver": "question"}[scenario]
    for who, status in ((alice, 422), (bob, 404)):
        text = await expect_status(
            status, who.threads.update_state(w.thread_id, {input_field: "x"}, as_node=w.gate)
        )
        assert status == 404 or "as_node" in text
        await expect_status(
            status,
            who.threads.update_state(
                w.thread_id, {"approval": {"decision": "approve"}}, as_node="approval"
            ),
        )
    text = await expect_status(409, alice.threads.update_state(w.thread_id, {input_field: "x"}))
    assert "waits for" in text and "reviewer" in text
    await expect_status(404, bob.threads.update_state(w.thread_id, {input_field: "x"}))
    forged = {"goto": w.gate, "update": {"plan_feedback": ""}, "resume": w.answer}
    for command in ({"goto": "finalize"}, {"update": {"outcome": "done"}}, forged):
        expected = 403 if "resume" in command else 422  # answering is refused first
        for who, status in ((alice, expected), (bob, 404)):
            await expect_status(status, who.runs.wait(w.thread_id, w.scenario, command=command))
    text = await expect_status(
        403, alice.runs.wait(w.thread_id, w.scenario, command={"resume": w.answer})
    )
    assert "reviewer" in text
    await expect_status(404, bob.runs.wait(w.thread_id, w.scenario, command={"resume": w.answer}))
    bulk = raw(
        keyed, "POST", f"/threads/{w.thread_id}/state/bulk", "alice", json={"supersteps": []}
    )
    assert bulk.status_code == 403
    state = await alice.threads.get_state(w.thread_id)
    assert state["next"] == [w.gate] and state["interrupts"], state["next"]


async def test_on_the_plain_server_too_a_state_write_never_passes_a_gate(plain: Served) -> None:
    """Without keys the one local user is the reviewer, yet a gate is still answered only by
    resuming it: a state write cannot choose the next node or land on a waiting checkpoint."""
    local = client(plain)
    thread_id = (await local.threads.create())["thread_id"]
    run_input = {"question": QUESTION, "review_plan": True, "max_revisions": 0}
    await local.runs.wait(thread_id, "research", input=run_input)
    text = await expect_status(
        422, local.threads.update_state(thread_id, {"question": "x"}, as_node="review_plan")
    )
    assert "as_node" in text
    await expect_status(409, local.threads.update_state(thread_id, {"question": "x"}))
    await expect_status(422, local.runs.wait(thread_id, "research", command={"goto": "finalize"}))
    assert (await local.threads.get_state(thread_id))["next"] == ["review_plan"]
    out = await local.runs.wait(thread_id, "research", command={"resume": {"action": "approve"}})
    assert out["report"]


async def test_the_reviewers_answer_still_goes_on(keyed: Served) -> None:
    """Fresh threads (the other tests share theirs): rita answers each gate, and it goes on."""
    rita = client(keyed, "rita")
    for scenario in ("research", "content", "solver"):
        w = await _start_waiting(keyed, scenario)
        out = await rita.runs.wait(w.thread_id, scenario, command={"resume": w.answer})
        assert not out.get("__interrupt__"), out
        expected = {"research": None, "content": "rejected", "solver": "solved"}[scenario]
        if expected:
            assert out["outcome"] == expected, out
        else:
            assert out["report"]


async def test_a_state_write_names_only_input_fields_and_allowed_folders(keyed: Served) -> None:
    alice = client(keyed, "alice")
    thread_id = (await alice.threads.create())["thread_id"]
    await alice.runs.wait(thread_id, "research", input={"question": QUESTION, "max_revisions": 0})
    text = await expect_status(422, alice.threads.update_state(thread_id, {"corpus": "/etc"}))
    assert "corpus" in text
    text = await expect_status(422, alice.threads.update_state(thread_id, {"outcome": "done"}))
    assert "values.outcome" in text
    history = await alice.threads.get_history(thread_id, limit=100)
    past = next(h for h in history if h["next"] == ["synthesizer"])["checkpoint"]
    forked = await alice.threads.update_state(
        thread_id, {"question": "Forked: " + QUESTION}, checkpoint=past
    )
    out = await alice.runs.wait(
        thread_id, "research", input=None, checkpoint_id=forked["checkpoint"]["checkpoint_id"]
    )
    assert out["report"].startswith("# Forked: ")


# -- the operator sets the limits --------------------------------------------------------------


@pytest.mark.parametrize(
    ("context", "field", "words"),
    [
        ({"model": "offline?latency=3600"}, "context.model", "operator's to set"),
        ({"model": "openai:gpt-4o"}, "context.model", "not offered"),
        (
            {"role_models": {"writer": "offline?latency=5"}},
            "context.role_models.writer",
            "operator",
        ),
        ({"fallbacks": {"*": ["openai:gpt-4o"]}}, "context.fallbacks.*", "not offered"),
        ({"prices": {"offline": {"input": 0}}}, "context.prices", "operator"),
        ({"budget": {"calls": 501}}, "context.budget.calls", "ceiling of 500"),
    ],
)
async def test_settings_only_the_operator_chooses_are_refused(
    keyed: Served, context: dict[str, Any], field: str, words: str
) -> None:
    alice = client(keyed, "alice")
    thread_id = (await alice.threads.create())["thread_id"]
    text = await expect_status(
        422, alice.runs.wait(thread_id, "research", input={"question": QUESTION}, context=context)
    )
    assert field in text and words in text, text
    assert await alice.runs.list(thread_id) == []


async def test_an_agent_model_outside_the_list_is_refused(keyed: Served) -> None:
    alice = client(keyed, "alice")
    thread_id = (await alice.threads.create())["thread_id"]
    agent = {"name": "x", "role": "x", "capabilities": ["analysis"], "model": "offline?latency=60"}
    task = {"tasks": [{"id": "t", "description": "Do it.", "capability": "analysis"}]}
    text = await expect_status(
        422, alice.runs.wait(thread_id, "solver", input={"workflow": task, "agents": [agent]})
    )
    assert "input.agents[0].model" in text


async def test_the_budget_ceiling_applies_when_the_client_sets_none(keyed: Served) -> None:
    alice = client(keyed, "alice")
    thread_id = (await alice.threads.create())["thread_id"]
    await alice.runs.wait(thread_id, "research", input={"question": QUESTION, "max_revisions": 0},
                          context={"budget": {"calls": 100}})  # fmt: skip
    history = await alice.threads.get_history(thread_id, limit=1)
    assert json.loads(history[0]["metadata"]["ensemble_settings"])["values"]["budget"] == {
        "calls": 100
    }
    other = (await alice.threads.create())["thread_id"]
    await alice.runs.wait(other, "research", input={"question": QUESTION, "max_revisions": 0})
    history = await alice.threads.get_history(other, limit=1)
    assert json.loads(history[0]["metadata"]["ensemble_settings"])["values"]["budget"] == {
        "calls": 500
    }


async def test_runs_beyond_the_per_user_limit_get_429_naming_it(opened: Served) -> None:
    local = client(opened)
    started = []
    for _ in range(2):
        thread_id = (await local.threads.create())["thread_id"]
        started.append(await local.runs.create(thread_id, "research", input={"question": QUESTION}))
    thread_id = (await local.threads.create())["thread_id"]
    text = await expect_status(
        429, local.runs.create(thread_id, "research", input={"question": QUESTION})
    )
    assert "2 runs at once per user" in text
    for run in started:
        await local.runs.join(run["thread_id"], run["run_id"])


async def test_a_run_past_its_time_limit_stops_with_the_reason(opened: Served) -> None:
    local = client(opened)
    await asyncio.sleep(10)  # the admissions of the test before have expired
    thread_id = (await local.threads.create())["thread_id"]
    run = await local.runs.create(thread_id, "research", input={"question": QUESTION})
    await local.runs.join(thread_id, run["run_id"])
    finished = await local.runs.get(thread_id, run["run_id"])
    assert finished["status"] == "timeout", finished


async def test_one_user_flooding_does_not_stop_another_users_runs(keyed: Served) -> None:
    bob, alice = client(keyed, "bob"), client(keyed, "alice")
    refused = accepted = 0

    async def one() -> None:
        nonlocal refused, accepted
        thread_id = (await bob.threads.create())["thread_id"]
        try:
            await bob.runs.create(thread_id, "research", input={"question": QUESTION})
            accepted += 1
        except httpx.HTTPStatusError as error:
            assert error.response.status_code == 429, error.response.text
            refused += 1

    async def flood() -> None:
        deadline = time.monotonic() + 20
        for _ in range(5):  # bounded in count and time, loopback only: 5 bursts of 6
            if time.monotonic() > deadline:
                break
            await asyncio.gather(*(one() for _ in range(6)))

    async def work() -> list[str]:
        outcomes = []
        for _ in range(2):
            thread_id = (await alice.threads.create())["thread_id"]
            out = await alice.runs.wait(
                thread_id, "research", input={"question": QUESTION, "max_revisions": 0}
            )
            outcomes.append(out["outcome"])
        return outcomes

    _, outcomes = await asyncio.gather(flood(), work())
    print(f"\nflood: {accepted} of bob's runs accepted, {refused} refused with 429")
    assert refused > 0 and accepted >= 1
    assert len(outcomes) == 2 and all(outcomes)
