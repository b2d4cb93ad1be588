"""A real `ensemble serve` with keys for the console's browser tests and its screenshots.

Three people: rita, a reviewer; alice, an author without roles; pat, who publishes events (one
subscription, `ask`, starts a research run for each `question.asked`). The offline model answers;
a second model the server offers but cannot build (no OpenAI key) makes a solver agent fail so
the solver asks a person; a slow offline model keeps a run going while a picture is taken.
"""

from __future__ import annotations

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

from ensemble import processes
from tests.corpus import write_corpus

KEYS = {
    "rita": "rita-reviewer-key-0123456789",
    "alice": "alice-author-key-0123456789",
    "pat": "pat-publisher-key-0123456789",
}
REVIEWER, AUTHOR, PUBLISHER = "rita", "alice", "pat"
FAILING_MODEL = "openai:missing"
LIVE_MODEL = "offline?latency=2"
"""Two seconds a call: long enough to watch a run move through its graph."""
SLOW_MODEL = "offline?latency=30"
"""A run that stays running while its picture is taken."""
CORPUS = "bees"
CHROMIUM = "/usr/bin/chromium"
QUESTION_EVENT = "question.asked"
SUBSCRIPTIONS = f"""\
subscriptions:
  - name: ask
    event: {QUESTION_EVENT}
    scenario: research
    input:
      question: "{{{{ data.question }}}}"
      corpus: {CORPUS}
      max_researchers: 1
      max_revisions: 0
"""
"""What the keyed server's dispatcher does with a published `question.asked`."""


@dataclass(frozen=True)
class Console:
    """A running server: where it answers, where its data and log are."""

    url: str
    port: int
    base: Path
    log: Path

    @property
    def page(self) -> str:
        """The console's address."""
        return f"{self.url}/console/"

    def call(self, user: str, method: str, path: str, body: Any = None) -> httpx.Response:
        """One API request as `user` (a key, same origin: no Origin header)."""
        return httpx.request(
            method,
            f"{self.url}{path}",
            headers={"x-api-key": KEYS[user]},
            json=body,
            timeout=60,
        )

    def new_thread(self, user: str) -> str:
        """A new, empty thread of `user`; its id."""
        created = self.call(user, "POST", "/threads", {})
        created.raise_for_status()
        return str(created.json()["thread_id"])

    def run(self, user: str, thread_id: str, scenario: str, body: dict[str, Any]) -> None:
        """Start a run of `scenario` on the thread (`body`: input, command, context...)."""
        started = self.call(
            user, "POST", f"/threads/{thread_id}/runs", {"assistant_id": scenario, **body}
        )
        assert started.is_success, started.text

    def start_run(self, user: str, scenario: str, run_input: dict[str, Any], **extra: Any) -> str:
        """A new thread of `user` with a run of `scenario` started on it; its id."""
        thread_id = self.new_thread(user)
        self.run(user, thread_id, scenario, {"input": run_input, **extra})
        return thread_id

    def publish(self, event_type: str, data: dict[str, Any], event_id: str) -> None:
        """`POST /events` as the publisher (pat)."""
        body = {"type": event_type, "data": data, "id": event_id}
        published = self.call(PUBLISHER, "POST", "/events", body)
        assert published.status_code == 202, published.text

    def operations(self) -> dict[str, Any]:
        """The console API's operations view, as the reviewer sees it."""
        response = self.call(REVIEWER, "GET", "/console/api/operations")
        response.raise_for_status()
        return dict(response.json())

    def thread(self, user: str, thread_id: str) -> dict[str, Any]:
        """The console API's view of one thread."""
        response = self.call(user, "GET", f"/console/api/threads/{thread_id}")
        response.raise_for_status()
        return dict(response.json())

    def scenarios(self) -> list[dict[str, Any]]:
        """What the console is told about each scenario (schemas, gates, graph)."""
        response = self.call(REVIEWER, "GET", "/console/api/scenarios")
        response.raise_for_status()
        return list(response.json()["scenarios"])

    def delivered(self, event_id: str, timeout: float = 90) -> dict[str, Any]:
        """The event's first delivery once its run has stopped (done or dead, with a thread)."""
        deadline = time.monotonic() + timeout
        while True:
            events = self.operations()["events"]
            event = next((e for e in events if e["id"] == event_id), None)
            found = event["deliveries"] if event else []
            if found and found[0]["status"] in ("done", "dead") and found[0]["thread_id"]:
                return dict(found[0])
            if time.monotonic() > deadline:
                raise AssertionError(f"event {event_id} not delivered in time: {event}")
            time.sleep(0.5)

    def settled(self, user: str, thread_id: str, timeout: float = 90) -> dict[str, Any]:
        """The thread once its run has stopped (waiting for a person, done or failed)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.thread(user, thread_id)
            if found["status"] in ("waiting", "done", "failed"):
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"thread {thread_id} still {found['status']}")
            time.sleep(0.3)


def server_env() -> dict[str, str]:
    """No OpenAI key or proxy, none of the caller's Ensemble settings."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ENSEMBLE_", "OPENAI_")) and "proxy" not in k.lower()
    } | {"NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}


@contextmanager
def serving(base: Path, *, keys: bool = True) -> Iterator[Console]:
    """`ensemble serve --keys ... --corpus-root ...` in `base`, until the block ends.

    With `keys`, also the event dispatcher with `SUBSCRIPTIONS`. Without, the server of the
    README's first command: no keys, this machine only.
    """
    write_corpus(base / "roots" / CORPUS)
    entries = [
        {"user": REVIEWER, "key": KEYS[REVIEWER], "roles": ["reviewer"]},
        {"user": AUTHOR, "key": KEYS[AUTHOR]},
        {"user": PUBLISHER, "key": KEYS[PUBLISHER], "roles": ["publisher"]},
    ]
    (base / "keys.json").write_text(json.dumps({"keys": entries}), encoding="utf-8")
    (base / "subscriptions.yaml").write_text(SUBSCRIPTIONS, encoding="utf-8")
    port = processes.free_port()
    argv = [sys.executable, "-m", "ensemble.cli.main", "serve", "--port", str(port)]
    argv += ["--db", str(base / "data" / "ensemble.db")]
    argv += ["--keys", str(base / "keys.json")] if keys else []
    argv += ["--subscriptions", str(base / "subscriptions.yaml")] if keys else []
    argv += ["--model", "offline", "--allow-model", FAILING_MODEL, "--allow-model", SLOW_MODEL]
    argv += ["--allow-model", LIVE_MODEL]
    argv += ["--corpus-root", str(base / "roots"), "--max-runs-per-user", "4"]
    log = base / "serve.log"
    url = f"http://127.0.0.1:{port}"
    with processes.start(argv, log, cwd=base, env=server_env()) as child:
        child.wait_ready(f"{url}/ok", 120)
        yield Console(url=url, port=port, base=base, log=log)


def doomed_solver_input(task: str = "Estimate the number of bees in a hive.") -> dict[str, Any]:
    """A solver run whose only capable agent cannot be built: it asks a person for help."""
    workflow = {
        "title": "A stuck estimate",
        "tasks": [{"id": "estimate", "description": task, "capability": "analysis"}],
    }
    doomed = {
        "name": "doomed",
        "role": "Answers with a model this server cannot build.",
        "capabilities": ["analysis"],
        "model": FAILING_MODEL,
    }
    return {"workflow": workflow, "agents": [doomed], "replace_team": True}
