"""The distributed problem solver as a user runs it: real `ensemble` processes.

The shipped example workflow and a free-text problem run offline; a bad workflow or agent file
fails in one line before anything is stored; a run killed (SIGKILL) between tasks resumes
without asking the model again for the tasks that had already finished, which is counted at a
fake OpenAI-compatible server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fake_openai import FakeOpenAI
from tests.saved_writes import saved_writes

ENSEMBLE = str(Path(sys.executable).parent / "ensemble")
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "ensemble" / "tasks" / "examples" / "json_report.yaml"
PROBLEM = "Compare two sorting algorithms and recommend one."
SOLVER_MODEL = "openai:solver-model"

PARTS = {
    "alpha": "Name one strength of merge sort for very large inputs.",
    "beta": "Name one strength of quicksort on arrays held in memory.",
    "gamma": "Name one strength of insertion sort on nearly sorted data.",
    "delta": "Name one strength of heapsort when memory is scarce.",
}
FINAL = "Pick one of the sorting algorithms above for a general-purpose library."
HELD_AFTER = 5
"""Requests answered before the kill: two whole tasks (answer + verdict each), a third's answer."""


def cli_env(base_url: str | None = None) -> dict[str, str]:
    """A CLI process's environment: offline model, no inherited Ensemble/OpenAI/proxy settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ENSEMBLE_", "OPENAI_")) and "proxy" not in k.lower()
    }
    env |= {"ENSEMBLE_MODEL": "offline", "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    env["ENSEMBLE_CACHE"] = "0"  # count every request at the server, none served from the cache
    if base_url is not None:
        env |= {"OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": "test-key"}
    return env


def ensemble(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ENSEMBLE, *argv],
        env=env if env is not None else cli_env(),
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def json_of(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, f"{done.args}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    return json.loads(done.stdout)


def write_yaml(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The single `ensemble: error: ...` line of a refused command (exit 2).

    With `--json`, stdout holds one object saying the same; without, nothing.
    """
    assert done.returncode == 2, f"{done.args}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("ensemble: error: "), done.stderr
    if "--json" in done.args:
        refused = {"status": "refused", "error": lines[0].removeprefix("ensemble: error: ")}
        assert json.loads(done.stdout) == refused
    else:
        assert done.stdout == ""
    return lines[0]


# -- offline runs ------------------------------------------------------------------------------


def test_the_shipped_example_runs_offline(db_with_default_corpus: Path) -> None:
    out = json_of(
        ensemble(
            "run", "solver", "--tasks", str(EXAMPLE), "--db", str(db_with_default_corpus),
            "--json",
        )
    )  # fmt: skip
    assert out["status"] == "done", out
    output = out["output"]
    assert output["outcome"] == "solved", output["answer"]

    example = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    wanted = {task["id"]: task for task in example["tasks"]}
    dag = {entry["id"]: entry for entry in output["dag"]}
    assert list(dag) == list(wanted)  # every task, in file order
    for task_id, entry in dag.items():
        replicas = wanted[task_id].get("replicas", 1)
        assert entry["status"] == "done", entry
        assert entry["capability"] == wanted[task_id]["capability"]
        assert entry["depends_on"] == wanted[task_id].get("depends_on", [])
        assert len(entry["agents"]) == replicas, entry
        assert entry["attempts"] and all(a["agent"] for a in entry["attempts"]), entry
        assert len([a for a in entry["attempts"] if a["ok"]]) >= replicas, entry
        assert {a["agent"] for a in entry["attempts"] if a["ok"]} >= set(entry["agents"])
        assert output["results"][task_id]["status"] == "done"

    verdict = dag["verdict"]
    assert len(set(verdict["agents"])) == 3
    vote = verdict["vote"]
    assert vote["status"] == "agreed" and vote["policy"]["policy"] == "majority"
    assert sorted(v["agent"] for v in vote["votes"]) == sorted(verdict["agents"])
    assert vote["value"] == verdict["value"] == output["results"]["verdict"]["value"]

    assert output["results"]["roundtrip"]["value"] is True
    assert 10000 <= output["results"]["size"]["value"] <= 40000
    assert output["results"]["per-record"]["value"] == pytest.approx(
        output["results"]["size"]["value"] / 1000
    )
    for task_id in wanted:
        assert f"**{task_id}**" in output["answer"]  # the trace of who did what


def test_a_problem_in_words_offline_says_it_was_not_worked_out(
    db_with_default_corpus: Path,
) -> None:
    """The offline model can only quote: its result repeats the problem, so it is not `solved`."""
    out = json_of(ensemble("run", "solver", PROBLEM, "--db", str(db_with_default_corpus), "--json"))
    assert out["status"] == "done", out
    output = out["output"]
    assert output["problem"] == PROBLEM
    assert output["outcome"] == "unanswered"
    assert "did not work this out" in output["answer"]
    assert output["dag"]
    for entry in output["dag"]:
        assert entry["status"] == "done" and entry["agents"] and entry["attempts"], entry


# -- validation before anything runs -----------------------------------------------------------


def task(task_id: str, *depends_on: str, capability: str = "analysis") -> dict[str, Any]:
    return {
        "id": task_id,
        "description": f"Task {task_id}.",
        "capability": capability,
        "depends_on": list(depends_on),
    }


@pytest.mark.parametrize(
    ("tasks", "named", "why"),
    [
        ([task("first"), task("loop-a", "loop-b"), task("loop-b", "loop-a")], "loop-a", "cycle"),
        ([task("first"), task("needy", "ghost")], "'needy'", "'ghost', which is not a task"),
        ([task("first"), task("juggle", capability="juggling")], "'juggle'", "'juggling'"),
        ([task("first"), task("twice"), task("twice", "first")], "'twice'", "defined twice"),
    ],
    ids=["cycle", "missing-dependency", "unknown-capability", "duplicate-id"],
)
def test_a_bad_workflow_fails_in_one_line_before_anything_is_stored(
    tmp_path: Path, tasks: list[dict[str, Any]], named: str, why: str
) -> None:
    workflow = write_yaml(tmp_path / "workflow.yaml", {"title": "Broken", "tasks": tasks})
    db = tmp_path / "data" / "ensemble.db"
    line = one_error_line(
        ensemble("run", "solver", "--tasks", str(workflow), "--db", str(db), "--json")
    )
    assert named in line and why in line, line
    assert not db.exists()


def test_an_agent_file_with_an_unknown_tool_names_the_file_and_line(tmp_path: Path) -> None:
    agents = tmp_path / "agents.yaml"
    agents.write_text(
        "agents:\n"
        "  - name: helper\n"
        "    role: Helps.\n"
        "    capabilities: [analysis]\n"
        "  - name: hacker\n"
        "    role: Runs anything.\n"
        "    capabilities: [analysis]\n"
        "    tools: [shell]\n",
        encoding="utf-8",
    )
    db = tmp_path / "data" / "ensemble.db"
    argv = ["run", "solver", "--tasks", str(EXAMPLE), "--agents", str(agents), "--db", str(db)]
    line = one_error_line(ensemble(*argv, "--json"))
    assert f"{agents}:5" in line and "'hacker'" in line and "'shell'" in line, line
    assert not db.exists()

    listed = one_error_line(ensemble("agents", "--agents", str(agents), "--json"))
    assert f"{agents}:5" in listed and "'shell'" in listed, listed


def test_agents_lists_the_default_team_and_an_agent_file_adds_to_it(tmp_path: Path) -> None:
    default = json_of(ensemble("agents", "--json"))["agents"]
    names = [agent["name"] for agent in default]
    shipped = yaml.safe_load(
        (ROOT / "ensemble" / "agents" / "default_team.yaml").read_text(encoding="utf-8")
    )
    assert names == [agent["name"] for agent in shipped["agents"]]
    for agent in default:
        assert agent["capabilities"] and agent["load"] == 0 and agent["health"] == "closed"
    assert "python" in next(a for a in default if a["name"] == "coder")["tools"]

    extra = write_yaml(
        tmp_path / "extra.yaml",
        {
            "agents": [
                {
                    "name": "statistician",
                    "role": "Does statistics.",
                    "capabilities": ["statistics", "math"],
                    "tools": ["calculator"],
                    "cost": 0.7,
                }
            ]
        },
    )
    more = json_of(ensemble("agents", "--agents", str(extra), "--json"))["agents"]
    assert [agent["name"] for agent in more] == [*names, "statistician"]
    added = more[-1]
    assert added["capabilities"] == ["statistics", "math"] and added["tools"] == ["calculator"]
    assert added["cost"] == 0.7 and added["model"] is None


# -- a killed run resumes without redoing finished tasks ---------------------------------------


def task_of(request: dict[str, Any]) -> str | None:
    """Which task a worker's or verifier's request is about: the first line of `Task: ...`."""
    for message in request.get("messages") or []:
        content = message.get("content")
        if message.get("role") == "user" and isinstance(content, str):
            first = content.split("\n", 1)[0]
            if first.startswith("Task: "):
                return first.removeprefix("Task: ")
    return None


def saved_attempts(db: str, thread: str) -> dict[str, dict[str, Any]]:
    """Every attempt the checkpointer stored for the thread, pending writes included."""
    found: dict[str, dict[str, Any]] = {}
    for attempts in saved_writes(db, thread, "attempts"):
        found |= attempts
    return found


def test_a_killed_run_resumes_without_redoing_finished_tasks(
    tmp_path: Path, database: str, corpus_dir: Path
) -> None:
    db, thread = database, str(uuid.uuid4())
    tasks = [
        {"id": tid, "description": text, "capability": "analysis"} for tid, text in PARTS.items()
    ]
    tasks.append(
        {"id": "pick", "description": FINAL, "capability": "writing", "depends_on": list(PARTS)}
    )
    workflow = write_yaml(tmp_path / "sorting.yaml", {"title": "Sorting", "tasks": tasks})
    descriptions = {text: tid for tid, text in PARTS.items()} | {FINAL: "pick"}
    argv = [
        "run", "solver", "--tasks", str(workflow), "--model", SOLVER_MODEL,
        "--max-concurrency", "1", "--db", str(db), "--thread", thread, "--json",
        "--corpus", str(corpus_dir),  # small: `run` indexes its corpus, on PostgreSQL in memory
    ]  # fmt: skip

    with FakeOpenAI(log_path=tmp_path / "requests.jsonl") as server:
        env = cli_env(server.base_url)
        server.hold_after(HELD_AFTER)
        proc = subprocess.Popen(
            [ENSEMBLE, *argv],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            server.wait_for_requests(HELD_AFTER + 1, timeout=60)  # the first held request
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            server.release()
        assert proc.returncode == -signal.SIGKILL

        before = [descriptions.get(task_of(r) or "") for r in server.requests]
        assert before[: HELD_AFTER + 1] == before and None not in before, before
        # one task at a time: each task's answer then its verdict, none interleaved
        assert before[0] == before[1] and before[2] == before[3] and before[4] == before[5]
        assert before[0] != before[2] != before[4] != before[0] and "pick" not in before
        verified = {before[1], before[3]}  # both requests of these tasks were answered

        shown = json_of(ensemble("show", thread, "--db", str(db), "--json", env=env))
        assert shown["status"] != "done" and "worker" in shown["next"], shown
        saved = saved_attempts(db, thread)
        finished = {a["task"] for a in saved.values() if a["ok"]}
        assert finished, "no attempt was saved before the kill"
        assert finished <= verified, (finished, verified)
        assert {a["task"] for a in shown["values"]["attempts"].values()} == finished

        start = len(server.requests)
        done = json_of(ensemble("resume", thread, "--db", str(db), "--json", env=env))
        after = [descriptions.get(task_of(r) or "") for r in server.requests[start:]]

    assert done["status"] == "done", done
    output = done["output"]
    assert output["outcome"] == "solved", output["answer"]
    assert None not in after, after
    redone = finished & set(after)
    assert not redone, f"finished before the kill, asked again after the resume: {redone}"
    assert set(after) == (set(PARTS) - finished) | {"pick"}, after
    assert sorted(after) == sorted(2 * [*(set(PARTS) - finished), "pick"])  # answer + verdict
    assert {tid: r["status"] for tid, r in output["results"].items()} == dict.fromkeys(
        [*PARTS, "pick"], "done"
    )
    for entry in output["dag"]:  # one successful attempt per task, none repeated
        assert [a["ok"] for a in entry["attempts"]] == [True], entry
    logged = (tmp_path / "requests.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(logged) == len(server.requests)
    assert {json.loads(line)["model"] for line in logged} == {"solver-model"}


def test_a_solver_run_forks_from_a_past_checkpoint(
    tmp_path: Path, database: str, corpus_dir: Path
) -> None:
    """A finished solver thread branches from a checkpoint and runs the branch to its end."""
    tasks = [task("first"), task("second", "first"), task("last", "second", capability="writing")]
    workflow = write_yaml(tmp_path / "chain.yaml", {"title": "Chain", "tasks": tasks})
    db, thread = database, str(uuid.uuid4())
    done = json_of(
        ensemble(
            "run", "solver", "--tasks", str(workflow), "--db", db, "--thread", thread,
            "--corpus", str(corpus_dir), "--json",
        )
    )  # fmt: skip
    assert done["status"] == "done", done
    history = json_of(ensemble("history", thread, "--db", db, "--json"))["checkpoints"]
    middle = history[len(history) // 2]["checkpoint_id"]
    forked = json_of(ensemble("fork", thread, "--checkpoint", middle, "--db", db, "--json"))
    assert forked["status"] == "done", forked
    assert forked["checkpoint_id"] != done["checkpoint_id"]
    assert [e["status"] for e in forked["output"]["dag"]] == ["done", "done", "done"]
    after = json_of(ensemble("history", thread, "--db", db, "--json"))["checkpoints"]
    parents = [c["parent_id"] for c in after if c.get("parent_id")]
    assert parents.count(middle) == 2  # the original child and the branch's first step
