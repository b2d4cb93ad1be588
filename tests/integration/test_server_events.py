"""`POST /events` of `ensemble serve`, on real servers, read back from each server's database.

- `plain`: the README's command, `ensemble serve --port P` (loopback, no keys): the one local
  user publishes; web pages of other origins may not.
- `keyed`: `--keys` (pat a publisher, rita a reviewer, bob a plain user): only publishers may.
- `dispatching`: `--subscriptions` and `--corpus-root`: the server's own dispatcher starts the
  runs that events ask for, and refuses the ones naming a folder outside the roots.

Every refused request is checked to have stored nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ensemble import processes
from ensemble.events.routing import delivery_thread
from ensemble.events.store import deliveries, recent_events
from ensemble.persistence import list_threads
from tests.corpus import write_corpus
from tests.integration.test_server_doors import Served, serving

pytestmark = pytest.mark.integration

KEYS = {
    "pat": "pat-key-0123456789abcdef",
    "rita": "rita-key-0123456789abcdef",
    "bob": "bob-key-0123456789abcdef",
}
ROLES = {"pat": ["publisher"], "rita": ["reviewer"]}
NOTE = {"type": "note.added", "data": {"x": 1}, "id": "n1"}
QUESTION = "How do bees make honey?"
RUN_TIMEOUT = 60.0

SUBSCRIPTIONS = """\
subscriptions:
  - name: ask
    event: question.asked
    scenario: research
    input:
      question: "{{ data.question }}"
      corpus: bees
      max_researchers: 1
      max_revisions: 0
  - name: routed
    event: question.routed
    scenario: research
    input:
      question: "{{ data.question }}"
      corpus: "{{ data.corpus }}"
      max_researchers: 1
      max_revisions: 0
"""


def database_of(served: Served) -> Path:
    """`.ensemble/ensemble.db` in the folder the server was started in (its default)."""
    return served.log.parent / ".ensemble" / "ensemble.db"


def stored(served: Served) -> dict[str, dict[str, Any]]:
    """Every event in the server's database, by id."""
    return {e["id"]: e for e in recent_events(database_of(served), limit=10_000)}


def post(served: Served, body: Any = None, user: str | None = None, **kw: Any) -> httpx.Response:
    headers = dict(kw.pop("headers", {}))
    if user:
        headers["x-api-key"] = KEYS[user]
    if body is not None:
        kw["json"] = body
    return httpx.post(f"{served.url}/events", headers=headers, timeout=30, **kw)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The README's command, exactly."""
    with serving(tmp_path_factory.mktemp("plain")) as served:
        yield served


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    base = tmp_path_factory.mktemp("keyed")
    entries = [{"user": u, "key": k} | ({"roles": ROLES[u]} if u in ROLES else {})
               for u, k in KEYS.items()]  # fmt: skip
    (base / "keys.json").write_text(json.dumps({"keys": entries}), encoding="utf-8")
    with serving(base, "--keys", "keys.json") as served:
        yield served


@pytest.fixture(scope="module")
def dispatching(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Corpora under `corpora/` (`bees`); `outside/` is a real corpus no client may name."""
    base = tmp_path_factory.mktemp("dispatching").resolve()
    write_corpus(base / "corpora" / "bees")
    write_corpus(base / "outside")
    (base / "subscriptions.yaml").write_text(SUBSCRIPTIONS, encoding="utf-8")
    flags = ["--subscriptions", "subscriptions.yaml", "--corpus-root", "corpora"]
    with serving(base, *flags) as served:
        yield served


# -- the default server -----------------------------------------------------------------------


def test_an_event_is_stored_once_however_often_it_is_posted(plain: Served) -> None:
    """A retried webhook repeats its id: the second post is accepted and stores nothing."""
    first = post(plain, NOTE)
    assert first.status_code == 202, first.text
    assert first.json()["stored"] is True
    assert first.json()["event"]["source"] == "api:local"
    for again in (NOTE, NOTE | {"data": {"x": 2}}):
        repeated = post(plain, again)
        assert repeated.status_code == 202, repeated.text
        assert repeated.json()["stored"] is False
    rows = [e for e in recent_events(database_of(plain), limit=10_000) if e["id"] == "n1"]
    assert len(rows) == 1, rows
    assert rows[0]["type"] == "note.added" and rows[0]["data"] == {"x": 1}
    assert rows[0]["source"] == "api:local"


def test_a_page_of_another_origin_cannot_publish(plain: Served) -> None:
    """Without keys, a web page the user visits could otherwise post events to loopback."""
    before = stored(plain)
    body = {"type": "note.added", "data": {"x": 1}, "id": "from-evil"}
    for origin in ("https://evil.example", "null", f"http://localhost.evil.example:{plain.port}"):
        response = post(plain, body, headers={"origin": origin})
        assert response.status_code == 403, (origin, response.text)
    assert stored(plain) == before


# -- hostile bodies ---------------------------------------------------------------------------

JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    ("content", "status", "words"),
    [
        (b"{not json", 422, "not valid JSON"),
        (b"\xc3\x28", 422, "not valid JSON"),
        (b"", 422, "the body must be"),
        (b"[1, 2]", 422, "the body must be"),
        (b'"note.added"', 422, "the body must be"),
        (b'{"data": {"x": 1}, "id": "no-type"}', 422, "the body must be"),
        (b'{"type": "Bad Type!", "id": "bad-type"}', 422, "lower-case dotted"),
        (b'{"type": "../x", "id": "bad-type-2"}', 422, "lower-case dotted"),
        (b'{"type": 7, "id": "bad-type-3"}', 422, "lower-case dotted"),
        (b'{"type": "note.added\\n", "id": "bad-type-4"}', 422, "lower-case dotted"),
        (b'{"type": "note.added", "data": [1], "id": "d-list"}', 422, "an array"),
        (b'{"type": "note.added", "data": "x", "id": "d-str"}', 422, "a string"),
        (b'{"type": "note.added", "data": null, "id": "d-null"}', 422, "null"),
        (b'{"type": "note.added", "data": {"x": NaN}, "id": "d-nan"}', 422, "not JSON"),
        (b'{"type": "note.added", "id": "../x"}', 422, "event id"),
        (b'{"type": "note.added", "id": "a b"}', 422, "event id"),
        (b'{"type": "note.added", "id": " n2"}', 422, "event id"),
        (b'{"type": "note.added", "id": ""}', 422, "event id"),
        (b'{"type": "note.added", "id": 5}', 422, "event id"),
        (b'{"type": "note.added", "id": "n1\\n"}', 422, "event id"),
        (b'{"type": "note.added", "id": "x-unknown", "extra": 1}', 422, "unknown field(s): extra"),
        (b'{"type": "note.added", "id": "x-time", "time": "2000-01-01"}', 422, "unknown"),
    ],
)
def test_a_hostile_body_is_refused_and_nothing_is_stored(
    plain: Served, content: bytes, status: int, words: str
) -> None:
    before = stored(plain)
    response = post(plain, content=content, headers=JSON)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"], response.text
    assert stored(plain) == before


def test_data_over_64_kib_is_refused(plain: Served) -> None:
    """Under the body's bound, so the data's own limit is what refuses it."""
    before = stored(plain)
    body = {"type": "note.added", "data": {"text": "a" * (70 * 1024)}, "id": "big-data"}
    response = post(plain, body)
    assert response.status_code == 422, response.text[:300]
    assert "65536" in response.json()["detail"]
    assert stored(plain) == before


def test_a_body_over_96_kib_is_refused_unread(plain: Served) -> None:
    """Both with a Content-Length and streamed in chunks without one."""
    before = stored(plain)
    body = json.dumps({"type": "note.added", "data": {"t": "a" * (97 * 1024)}, "id": "too-big"})
    response = post(plain, content=body.encode(), headers=JSON)
    assert response.status_code == 413, response.text[:300]

    def chunks() -> Iterator[bytes]:
        yield b'{"type": "note.added", "id": "too-big-2", "data": {"t": "'
        for _ in range(200):
            yield b"a" * 1024
        yield b'"}}'

    streamed = post(plain, content=chunks(), headers=JSON)
    assert streamed.status_code == 413, streamed.text[:300]
    assert stored(plain) == before


# -- keys and the publisher role --------------------------------------------------------------


def test_with_keys_publishing_needs_a_key(keyed: Served) -> None:
    body = {"type": "note.added", "data": {}, "id": "k-none"}
    assert post(keyed, body).status_code == 401
    wrong = post(keyed, body, headers={"x-api-key": "wrong-key-0123456789abcdef"})
    assert wrong.status_code == 401
    assert "k-none" not in stored(keyed)


@pytest.mark.parametrize("user", ["rita", "bob"])
def test_a_key_without_the_publisher_role_is_forbidden(keyed: Served, user: str) -> None:
    """A reviewer answers human reviews; starting runs through events is another power."""
    response = post(keyed, {"type": "note.added", "data": {}, "id": f"k-{user}"}, user)
    assert response.status_code == 403, response.text
    assert "publisher role" in response.text
    assert f"k-{user}" not in stored(keyed)


def test_a_publisher_publishes_under_its_own_name(keyed: Served) -> None:
    response = post(keyed, {"type": "note.added", "data": {"x": 1}, "id": "k-pat"}, "pat")
    assert response.status_code == 202, response.text
    assert response.json()["event"]["source"] == "api:pat"
    assert stored(keyed)["k-pat"]["source"] == "api:pat"


def test_the_client_cannot_choose_the_source(keyed: Served) -> None:
    body = {"type": "note.added", "data": {}, "id": "k-forged", "source": "api:rita"}
    response = post(keyed, body, "pat")
    assert response.status_code == 422, response.text
    assert "source" in response.json()["detail"]
    assert "k-forged" not in stored(keyed)


# -- the dispatcher inside the server ---------------------------------------------------------


def wait_for_delivery(served: Served, event_id: str, settled: tuple[str, ...]) -> dict[str, Any]:
    """The event's one delivery once its status is in `settled` (else fail with the log)."""
    deadline = time.monotonic() + RUN_TIMEOUT
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        found = [d for d in deliveries(database_of(served)) if d["event_id"] == event_id]
        if found and found[0]["status"] in settled:
            return found[0]
        time.sleep(0.5)
    log = served.log.read_text(encoding="utf-8", errors="replace")[-4000:]
    raise AssertionError(f"delivery of {event_id} not {settled} in time: {found}\n{log}")


def run_events(served: Served, event_id: str) -> list[dict[str, Any]]:
    """The `run.*` events of runs that `event_id` started."""
    found = recent_events(database_of(served), limit=10_000)
    runs = [e for e in found if e["type"].startswith("run.")]
    return [e for e in runs if (e["data"].get("trigger") or {}).get("event") == event_id]


def test_the_server_says_it_dispatches(dispatching: Served) -> None:
    banner = dispatching.log.read_text(encoding="utf-8", errors="replace")
    assert f"POST {dispatching.url}/events -> ask, routed" in banner, banner[:2000]


def test_a_posted_event_starts_the_run_its_subscription_asks_for(dispatching: Served) -> None:
    body = {"type": "question.asked", "data": {"question": QUESTION}, "id": "ask-1"}
    response = post(dispatching, body)
    assert response.status_code == 202, response.text
    delivery = wait_for_delivery(dispatching, "ask-1", ("done", "waiting", "dead"))
    assert delivery["status"] == "done", delivery
    assert delivery["subscription"] == "ask" and delivery["scenario"] == "research"
    assert delivery["thread_id"] == delivery_thread("ask-1", "ask")
    (done,) = run_events(dispatching, "ask-1")
    assert done["type"] == "run.done", done
    assert done["data"]["thread_id"] == delivery["thread_id"]
    assert done["data"]["trigger"]["subscription"] == "ask"
    assert done["data"]["input"]["question"] == QUESTION
    assert done["data"]["output"], done["data"]
    threads = {t.thread_id for t in list_threads(database_of(dispatching))}
    assert delivery["thread_id"] in threads


def test_an_event_naming_a_folder_outside_the_roots_is_dead_lettered(
    dispatching: Served,
) -> None:
    """The event's data is a client's: it may not point the run at another folder."""
    base = dispatching.log.parent
    for n, corpus in enumerate([str(base / "outside"), "../outside", "/etc"]):
        event_id = f"routed-{n}"
        body = {"type": "question.routed", "data": {"question": QUESTION, "corpus": corpus},
                "id": event_id}  # fmt: skip
        response = post(dispatching, body)
        assert response.status_code == 202, response.text
        delivery = wait_for_delivery(dispatching, event_id, ("dead", "started", "done"))
        assert delivery["status"] == "dead", delivery
        assert corpus in delivery["error"], delivery["error"]
        assert delivery["thread_id"] is None and delivery["attempts"] == 0
        assert run_events(dispatching, event_id) == []
        threads = {t.thread_id for t in list_threads(database_of(dispatching))}
        assert delivery_thread(event_id, "routed") not in threads


# -- a wrong subscription file ----------------------------------------------------------------

BAD_FILES = {
    "unknown scenario": (4, "scenario: reserch", "unknown scenario 'reserch'"),
    "template error": (6, 'question: "{{ data.question "', "template error"),
    "unknown input": (7, "colour: blue", "research has no input 'colour'"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_wrong_subscription_file_stops_serve_before_it_serves(tmp_path: Path, case: str) -> None:
    line, wrong, words = BAD_FILES[case]
    lines = [
        "subscriptions:",
        "  - name: ask",
        "    event: question.asked",
        "    scenario: research",
        "    input:",
        '      question: "{{ data.question }}"',
        "      max_revisions: 0",
    ]
    indent = lines[line - 1][: len(lines[line - 1]) - len(lines[line - 1].lstrip())]
    lines[line - 1] = indent + wrong
    (tmp_path / "bad.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    port = processes.free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ENSEMBLE_", "OPENAI_")) and "proxy" not in k.lower()
    }
    argv = [sys.executable, "-m", "ensemble.cli.main", "serve", "--port", str(port)]
    done = subprocess.run(
        [*argv, "--subscriptions", "bad.yaml"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0, done.stdout
    assert f"bad.yaml:{line}:" in done.stderr and words in done.stderr, done.stderr
    assert "Ensemble server:" not in done.stdout, done.stdout
    assert not processes.http_ok(f"http://127.0.0.1:{port}/ok")
