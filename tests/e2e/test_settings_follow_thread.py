"""Run settings follow the thread: `ensemble resume` and `fork` go on with the thread's model.

Real `ensemble` processes talk to a fake OpenAI-compatible server. The process default is
`openai:process-default`, so a resume or fork that forgot the thread's model would show up in
the requests the server saw.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.corpus import write_corpus
from tests.databases import DATABASES, database_for
from tests.fake_openai import FakeOpenAI
from tests.saved_writes import saved_counts

ENSEMBLE = str(Path(sys.executable).parent / "ensemble")
QUESTION = "How do honey bees turn nectar into honey?"
THREAD_MODEL, OVERRIDE_MODEL = "openai:thread-model", "openai:override-model"
HELD_AFTER = 2
"""Requests answered before the kill: the planner's plan and one researcher's search call."""


def cli_env(base_url: str | None, default_model: str = "openai:process-default") -> dict[str, str]:
    """The environment of a CLI process: no inherited Ensemble/OpenAI/proxy settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ENSEMBLE_", "OPENAI_")) and "proxy" not in k.lower()
    }
    env |= {"ENSEMBLE_MODEL": default_model, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    env["ENSEMBLE_CACHE"] = "0"  # every call must reach the server to show which model it names
    if base_url is not None:
        env |= {"OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": "test-key"}
    return env


def ensemble(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ENSEMBLE, *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def json_of(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, f"{done.args}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    return json.loads(done.stdout)


def run_argv(db: str | Path, corpus: Path, thread: str, *extra: str) -> list[str]:
    return [
        "run",
        "research",
        QUESTION,
        "--model",
        THREAD_MODEL,
        "--corpus",
        str(corpus),
        "--db",
        str(db),
        "--thread",
        thread,
        "--max-revisions",
        "0",
        "--json",
        *extra,
    ]


def forced_function(request: dict[str, Any]) -> str | None:
    choice = request.get("tool_choice")
    return choice["function"]["name"] if isinstance(choice, dict) else None


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@dataclass
class Finished:
    """A research thread run to the end with the thread model."""

    env: dict[str, str]
    db: str
    thread: str
    checkpoint: str
    """The run's final checkpoint."""

    def lineage(self) -> list[dict[str, Any]]:
        """The original run's checkpoints (forks excluded), newest first."""
        shown = json_of(ensemble(self.env, "history", self.thread, "--db", str(self.db), "--json"))
        rows = {row["checkpoint_id"]: row for row in shown["checkpoints"]}
        chain, at = [], self.checkpoint
        while at is not None:
            chain.append(rows[at])
            at = rows[at]["parent_id"]
        return chain

    def checkpoint_before(self, node: str) -> str:
        return next(row["checkpoint_id"] for row in self.lineage() if node in row["next"])


@pytest.fixture(scope="module", params=DATABASES, ids=DATABASES)
def finished(
    request: pytest.FixtureRequest, server: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Finished:
    folder = tmp_path_factory.mktemp("finished")
    db, thread, env = database_for(request, folder), str(uuid.uuid4()), cli_env(server.base_url)
    start = len(server.requests)
    argv = run_argv(db, write_corpus(folder / "corpus"), thread, "--yes")
    result = json_of(ensemble(env, *argv))
    assert result["status"] == "done"
    assert set(server.models()[start:]) == {"thread-model"}
    return Finished(env, db, thread, result["checkpoint_id"])


def test_killed_run_resumes_with_the_threads_model(tmp_path: Path, corpus_dir: Path) -> None:
    db, thread, log = tmp_path / "ensemble.db", str(uuid.uuid4()), tmp_path / "requests.jsonl"
    with FakeOpenAI(log_path=log) as server:
        env = cli_env(server.base_url)
        server.hold_after(HELD_AFTER)
        proc = subprocess.Popen(
            [ENSEMBLE, *run_argv(db, corpus_dir, thread, "--yes")],
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
        answered = [forced_function(r) for r in server.requests[:HELD_AFTER]]
        assert answered == ["Plan", "search_corpus"]

        shown = json_of(ensemble(env, "show", thread, "--db", str(db), "--json"))
        assert shown["status"] == "failed" and "researcher" in shown["next"]
        start = len(log.read_text().splitlines())
        result = json_of(ensemble(env, "resume", thread, "--db", str(db), "--json"))

    assert result["status"] == "done"
    logged = [json.loads(line) for line in log.read_text().splitlines()]
    after = [line["model"] for line in logged[start:]]
    assert after and set(after) == {"thread-model"}, after
    assert "process-default" not in [line["model"] for line in logged]


def test_fork_without_model_keeps_the_threads_model(finished: Finished, server: FakeOpenAI) -> None:
    checkpoint = finished.checkpoint_before("researcher")
    start = len(server.requests)
    argv = ["fork", finished.thread, "--checkpoint", checkpoint, "--db", str(finished.db)]
    result = json_of(ensemble(finished.env, *argv, "--yes", "--json"))
    assert result["status"] == "done"
    new = server.models()[start:]
    assert new and set(new) == {"thread-model"}, new
    assert "search_corpus" in [forced_function(r) for r in server.requests[start:]]


@pytest.mark.parametrize("finished", ["sqlite"], indirect=True)  # a fork on both: the test above
def test_model_override_at_fork_is_used_and_recorded(
    finished: Finished, server: FakeOpenAI
) -> None:
    checkpoint = finished.checkpoint_before("synthesizer")
    start = len(server.requests)
    argv = ["fork", finished.thread, "--checkpoint", checkpoint, "--db", str(finished.db)]
    result = json_of(ensemble(finished.env, *argv, "--model", OVERRIDE_MODEL, "--yes", "--json"))
    assert result["status"] == "done"
    new = server.models()[start:]
    assert new and set(new) == {"override-model"}, new

    show = ["show", finished.thread, "--db", str(finished.db), "--json"]
    settings = json_of(ensemble(finished.env, *show))["settings"]
    assert settings["model"] == {"value": OVERRIDE_MODEL, "origin": "fork"}
    assert settings["search_k"] == {"value": 5, "origin": "default"}
    original = json_of(ensemble(finished.env, *show, "--checkpoint", finished.checkpoint))
    assert original["settings"]["model"] == {"value": THREAD_MODEL, "origin": "run"}


def test_model_override_at_resume_is_used_and_recorded(
    server: FakeOpenAI, corpus_dir: Path, database: str
) -> None:
    db, thread, env = database, str(uuid.uuid4()), cli_env(server.base_url)
    paused = json_of(ensemble(env, *run_argv(db, corpus_dir, thread, "--review-plan")))
    assert paused["status"] == "interrupted"
    start = len(server.requests)
    resume = ["resume", thread, "--db", str(db), "--yes", "--json"]
    result = json_of(ensemble(env, *resume, "--model", OVERRIDE_MODEL))
    assert result["status"] == "done"
    new = server.models()[start:]
    assert new and set(new) == {"override-model"}, new

    show = ["show", thread, "--db", str(db), "--json"]
    assert json_of(ensemble(env, *show))["settings"]["model"] == {
        "value": OVERRIDE_MODEL,
        "origin": "resume",
    }
    before = json_of(ensemble(env, *show, "--checkpoint", paused["checkpoint_id"]))
    assert before["settings"]["model"] == {"value": THREAD_MODEL, "origin": "run"}


def test_missing_key_for_the_threads_model_fails_in_one_line_and_writes_nothing(
    server: FakeOpenAI, tmp_path: Path, corpus_dir: Path
) -> None:
    db, thread = tmp_path / "ensemble.db", str(uuid.uuid4())
    paused = json_of(
        ensemble(cli_env(server.base_url), *run_argv(db, corpus_dir, thread, "--review-plan"))
    )
    assert paused["status"] == "interrupted" and paused["next"]
    rows, requests = saved_counts(db), len(server.requests)
    no_key = cli_env(None, default_model="offline")  # only the thread's model needs the key

    for argv in (
        ["resume", thread, "--yes"],
        ["fork", thread, "--checkpoint", paused["checkpoint_id"], "--yes"],
    ):
        failed = ensemble(no_key, *argv, "--db", str(db), "--json")
        assert failed.returncode == 2, (argv, failed.stdout, failed.stderr)
        lines = failed.stderr.splitlines()
        assert len(lines) == 1, (argv, failed.stderr)
        assert lines[0].startswith("ensemble: error: ") and "OPENAI_API_KEY" in lines[0]
        assert json.loads(failed.stdout) == {"status": "refused", "error": lines[0][17:]}
        assert saved_counts(db) == rows, argv
    assert len(server.requests) == requests
