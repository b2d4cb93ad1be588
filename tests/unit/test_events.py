"""Events, subscriptions and the dispatcher, in one process on SQLite.

A toy scenario defined here fails its first N attempts on purpose, so retries, backoff, the
dead-letter list and replay are exercised exactly; the real scenarios run in the integration
tests (`tests/integration/test_events_delivery.py`).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel, ConfigDict, Field

from ensemble.context import Context
from ensemble.errors import InvalidInputError
from ensemble.events.dispatcher import Dispatcher, choose, next_step
from ensemble.events.event import MAX_DATA_BYTES, make_event
from ensemble.events.routing import delivery_thread
from ensemble.events.store import deliveries, event_tables, publish, recent_events, replay
from ensemble.events.subscriptions import SubscriptionError, load_subscriptions
from ensemble.events.templates import TemplateFailure, matches, render
from ensemble.graphs import registry
from ensemble.graphs.scenario import Scenario
from ensemble.persistence import open_async_checkpointer
from ensemble.runner import thread_config
from ensemble.workspace import Workspace

ATTEMPTS: dict[str, int] = {}
"""How many times the toy's `work` node ran, per name (the test's view of side effects)."""


class FlakyInput(BaseModel):
    """A name, and how many times its work fails before it succeeds."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=40)
    fail: int = Field(0, ge=0, le=10)


@dataclass(kw_only=True)
class FlakyState:
    name: str = ""
    fail: int = 0
    result: str = ""


def work(state: FlakyState) -> dict[str, Any]:
    ATTEMPTS[state.name] = ATTEMPTS.get(state.name, 0) + 1
    if ATTEMPTS[state.name] <= state.fail:
        raise RuntimeError(f"flaky failure {ATTEMPTS[state.name]} of {state.name}")
    return {"result": f"worked for {state.name}"}


def build_flaky(workspace: Workspace) -> StateGraph:
    builder = StateGraph(FlakyState, context_schema=Context, input_schema=FlakyInput)
    builder.add_node("work", work)
    builder.add_edge(START, "work")
    builder.add_edge("work", END)
    return builder


FLAKY = Scenario(
    name="flaky",
    description="Works after failing `fail` times.",
    build=build_flaky,
    input_schema=FlakyInput,
    primary_field="name",
    output_keys=("result",),
    approve_answer="ok",
    check_answer=lambda answer, values: answer,
)


@pytest.fixture(autouse=True)
def flaky():
    registry.register(FLAKY)
    ATTEMPTS.clear()
    yield
    registry.unregister("flaky")


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


FLAKY_SUBSCRIPTION = """\
subscriptions:
  - name: work
    event: job.posted
    scenario: flaky
    input:
      name: "{{ data.name }}"
      fail: "{{ data.fail | default(0) }}"
    max_attempts: 3
    backoff: 0.05
    concurrency: 2
"""


async def dispatch_until(dispatcher: Dispatcher, done: Any, timeout: float = 30.0) -> None:
    """Run the dispatcher until `done()` is true (checked between its rounds)."""
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    deadline = time.monotonic() + timeout
    try:
        while not await asyncio.to_thread(done):
            assert time.monotonic() < deadline, "the dispatcher did not get there in time"
            assert not task.done(), task.exception()
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task


def dispatcher_for(tmp_path: Path, subscription_text: str, **options: Any) -> Dispatcher:
    file = write(tmp_path / "subs", "subs.yaml", subscription_text)
    db = tmp_path / "events.db"
    return Dispatcher(
        db=Workspace(db=db).db,
        workspace=Workspace(db=db),
        subscriptions=load_subscriptions([file]),
        poll=0.02,
        say=lambda line: None,
        **options,
    )


# --- events ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"type": "Bad Type"}, "lower-case dotted words"),
        ({"type": "a..b"}, "lower-case dotted words"),
        ({"type": "ok.type", "id": "../etc"}, "event id"),
        ({"type": "ok.type", "id": "has space"}, "event id"),
        ({"type": "ok.type", "data": [1, 2]}, "must be a JSON object, got an array"),
        ({"type": "ok.type", "data": {"x": float("nan")}}, "not JSON"),
        ({"type": "ok.type", "data": {"x": "y" * MAX_DATA_BYTES}}, "at most"),
        ({"type": "ok.type", "source": "a\nb"}, "source"),
    ],
)
def test_a_bad_event_is_refused_with_the_reason(kwargs: dict[str, Any], message: str) -> None:
    arguments = {"data": {}, "source": "test"} | kwargs
    event_type = arguments.pop("type")
    with pytest.raises(InvalidInputError, match=message):
        make_event(event_type, **arguments)


def test_publishing_an_id_twice_stores_it_once(tmp_path: Path) -> None:
    db = tmp_path / "e.db"
    first = make_event("note.added", {"n": 1}, source="test", id="n-1")
    again = make_event("note.added", {"n": 2}, source="test", id="n-1")
    assert publish(db, first) == [True]
    assert publish(db, again) == [False]
    (stored,) = recent_events(db)
    assert stored["data"] == {"n": 1}


def test_reading_events_of_a_database_never_written_creates_nothing(tmp_path: Path) -> None:
    assert recent_events(tmp_path / "none.db") == []
    assert deliveries(tmp_path / "none.db") == []
    assert not (tmp_path / "none.db").exists()


# --- templates ------------------------------------------------------------------------------


def test_templates_fill_from_the_event_and_refuse_what_is_missing() -> None:
    context = {"data": {"title": "Bees", "n": 3}, "event": {"id": "e1"}}
    assert render("About {{ data.title }} ({{ event.id }})", context) == "About Bees (e1)"
    assert matches("data.n > 2 and data.title.startswith('B')", context)
    with pytest.raises(TemplateFailure, match="UndefinedError"):
        render("{{ data.missing }}", context)


@pytest.mark.parametrize(
    "attack",
    [
        "{{ data.__class__.__mro__ }}",
        "{{ ''.__class__.__subclasses__() }}",
        "{{ data.title.__globals__ }}",
        "{{ cycler.__init__.__globals__.os.system('touch /tmp/pwned-by-event') }}",
    ],
)
def test_templates_run_in_the_sandbox(attack: str) -> None:
    with pytest.raises(TemplateFailure):
        render(attack, {"data": {"title": "x"}, "event": {}})
    assert not Path("/tmp/pwned-by-event").exists()


# --- subscription files ---------------------------------------------------------------------

GOOD = """\
subscriptions:
  - name: digest
    event: document.changed
    scenario: research
    input:
      question: "About {{ data.title }}?"
"""


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("subscriptions:\n  - name: x\n    event: [unclosed\n", 4, "not valid YAML"),
        ("subs:\n  - name: x\n", 1, "expected `subscriptions:`"),
        (GOOD.replace("    scenario: research\n", "    scenario: nope\n"), 4, "unknown scenario"),
        (GOOD.replace("      question:", "      questoin:"), 6, "research has no input 'questoin'"),
        (GOOD.replace("{{ data.title }}", "{{ data.title }"), 6, "template error"),
        (GOOD + "    filter: data.x ==\n", 7, "template error"),
        (GOOD + "    priority: high\n", 7, "priority: Input should be a valid integer"),
        (GOOD + "    colour: blue\n", 7, "colour: unknown field"),
        (GOOD + "    yes: true\n", 7, "YAML reads unquoted yes/no"),
        (GOOD.replace("name: digest", "name: Digest!"), 2, "lower-case letters"),
        (GOOD.replace("document.changed", "Document Changed"), 3, "event type"),
        (GOOD + "    settings:\n      model: nonsense:model\n", 7, "settings"),
        (GOOD.replace('      question: "About {{ data.title }}?"\n', "      corpus: x\n"), 5,
         "research needs question"),
    ],
)  # fmt: skip
def test_a_wrong_subscription_names_file_and_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    file = write(tmp_path, "subs.yaml", text)
    with pytest.raises(SubscriptionError) as refused:
        load_subscriptions([file])
    assert str(refused.value).startswith(f"{file}:{line}:"), str(refused.value)
    assert message in str(refused.value)


def test_a_name_used_twice_names_both_places(tmp_path: Path) -> None:
    write(tmp_path / "subs", "a.yaml", GOOD)
    write(tmp_path / "subs", "b.yaml", GOOD)
    with pytest.raises(SubscriptionError, match=r"b\.yaml:2: .*already used at .*a\.yaml:2"):
        load_subscriptions([tmp_path / "subs"])


def test_the_shipped_example_loads() -> None:
    import ensemble.events

    example = Path(ensemble.events.__file__).parent / "examples" / "digest.yaml"
    names = [s.name for s in load_subscriptions([example])]
    assert names == ["digest", "brief"]


# --- delivery -------------------------------------------------------------------------------


def status_of(db: Any, event_id: str) -> dict[str, Any]:
    """The event's one delivery ({} until it is routed)."""
    found = [d for d in deliveries(db) if d["event_id"] == event_id]
    assert len(found) <= 1
    return found[0] if found else {}


async def test_an_event_starts_one_run_and_the_run_announces_itself(tmp_path: Path) -> None:
    dispatcher = dispatcher_for(tmp_path, FLAKY_SUBSCRIPTION)
    publish(dispatcher.db, make_event("job.posted", {"name": "ada"}, source="t", id="j1"))
    await dispatch_until(dispatcher, lambda: status_of(dispatcher.db, "j1").get("status") == "done")
    assert ATTEMPTS == {"ada": 1}
    done = [e for e in recent_events(dispatcher.db) if e["type"] == "run.done"]
    assert len(done) == 1
    data = done[0]["data"]
    assert data["thread_id"] == delivery_thread("j1", "work")
    assert data["output"] == {"result": "worked for ada"}
    assert data["input"] == {"name": "ada", "fail": 0}
    assert data["trigger"]["event"] == "j1" and data["trigger"]["subscription"] == "work"


async def test_a_failing_run_is_retried_with_backoff_then_dead_lettered(tmp_path: Path) -> None:
    dispatcher = dispatcher_for(tmp_path, FLAKY_SUBSCRIPTION)
    publish(
        dispatcher.db,
        make_event("job.posted", {"name": "bob", "fail": 1}, source="t", id="recovers"),
        make_event("job.posted", {"name": "cy", "fail": 9}, source="t", id="gives-up"),
    )

    def settled() -> bool:
        found = deliveries(dispatcher.db)
        return len(found) == 2 and {d["status"] for d in found} <= {"done", "dead"}

    await dispatch_until(dispatcher, settled)
    recovered, dead = status_of(dispatcher.db, "recovers"), status_of(dispatcher.db, "gives-up")
    assert recovered["status"] == "done" and recovered["attempts"] == 2
    assert dead["status"] == "dead" and dead["attempts"] == 3
    assert "failed 3 time(s)" in dead["error"] and "flaky failure 3 of cy" in dead["error"]
    assert ATTEMPTS == {"bob": 2, "cy": 3}  # every retry went on with the same thread
    failed = [e for e in recent_events(dispatcher.db, limit=50) if e["type"] == "run.failed"]
    assert {e["data"]["thread_id"] for e in failed} == {
        delivery_thread("recovers", "work"),
        delivery_thread("gives-up", "work"),
    }

    # Replay: the dead delivery goes on with its thread (its work node runs once more).
    assert replay(dispatcher.db, "gives-up") == ["work"]
    ATTEMPTS["cy"] = 99  # the cause is fixed: the next attempt works
    await dispatch_until(
        dispatcher, lambda: status_of(dispatcher.db, "gives-up").get("status") == "done"
    )
    assert ATTEMPTS["cy"] == 100


def test_backoff_doubles_and_the_last_failure_is_dead() -> None:
    status, first, _ = next_step(1, 3, 2.0, "failed", "boom")
    _, second, _ = next_step(2, 3, 2.0, "failed", "boom")
    now = time.time()
    assert status == "pending" and 1.5 < first - now <= 2.0 and 3.5 < second - now <= 4.0
    assert next_step(3, 3, 2.0, "failed", "boom")[::2] == ("dead", "failed 3 time(s); last: boom")
    assert next_step(1, 3, 2.0, "waiting", None)[0] == "waiting"


async def test_an_event_that_does_not_fit_is_dead_lettered_and_never_run(tmp_path: Path) -> None:
    dispatcher = dispatcher_for(tmp_path, FLAKY_SUBSCRIPTION)
    publish(
        dispatcher.db,
        make_event("job.posted", {"fail": 0}, source="t", id="no-name"),
        make_event("job.posted", {"name": "x" * 41}, source="t", id="too-long"),
        make_event("job.posted", {"name": "ok", "fail": "lots"}, source="t", id="bad-fail"),
    )

    def routed() -> bool:
        return len(deliveries(dispatcher.db)) == 3

    await dispatch_until(dispatcher, routed)
    reasons = {d["event_id"]: d["error"] for d in deliveries(dispatcher.db, status="dead")}
    assert "UndefinedError" in reasons["no-name"] and "name" in reasons["no-name"]
    assert "invalid flaky input: name" in reasons["too-long"]
    assert "invalid flaky input: fail" in reasons["bad-fail"]
    assert ATTEMPTS == {}
    async with open_async_checkpointer(dispatcher.db) as saver:
        for event_id in reasons:
            assert await saver.aget_tuple(thread_config(delivery_thread(event_id, "work"))) is None


async def test_dedupe_key_filter_priority_and_cap(tmp_path: Path) -> None:
    text = FLAKY_SUBSCRIPTION.replace("    concurrency: 2\n", "    concurrency: 1\n") + (
        '    dedupe: "{{ data.name }}"\n    filter: data.get("kind") != "skip"\n'
    )
    dispatcher = dispatcher_for(tmp_path, text)
    events = [
        make_event("job.posted", {"name": "low"}, source="t", id="a"),
        make_event("job.posted", {"name": "low"}, source="t", id="a-again"),
        make_event("job.posted", {"name": "other", "kind": "skip"}, source="t", id="skipped"),
        make_event("job.posted", {"name": "third"}, source="t", id="c"),
    ]
    publish(dispatcher.db, *events)

    def settled() -> bool:
        found = deliveries(dispatcher.db)
        return len(found) == 3 and {d["status"] for d in found} <= {"done", "duplicate"}

    await dispatch_until(dispatcher, settled)
    found = {d["event_id"]: d for d in deliveries(dispatcher.db)}
    assert set(found) == {"a", "a-again", "c"}  # the filter said no to "skipped"
    assert found["a-again"]["status"] == "duplicate" and found["a-again"]["duplicate_of"] == "a"
    assert ATTEMPTS == {"low": 1, "third": 1}
    # cap 1: the runs did not overlap
    spans = sorted((d["started_at"], d["updated_at"]) for d in found.values() if d["started_at"])
    assert spans[0][1] <= spans[1][0]


def test_choose_orders_by_priority_and_keeps_caps() -> None:
    def row(event: str, sub: str, priority: int) -> tuple[Any, ...]:
        return (event, sub, "flaky", f"t-{event}", 0, 3, 1.0, json.dumps({}), priority)

    rows = [row("e1", "big", 9), row("e2", "big", 9), row("e3", "small", 1), row("e4", "big", 1)]
    chosen = choose(rows, {"small": 0}, {"big": 2, "small": 1}, room=3)
    assert [d.event_id for d in chosen] == ["e1", "e2", "e3"]
    assert [d.event_id for d in choose(rows, {"big": 2}, {"big": 2, "small": 1}, room=3)] == ["e3"]


async def test_a_restarted_dispatcher_goes_on_with_what_the_last_one_started(
    tmp_path: Path,
) -> None:
    """Its deliveries were `started` when it died: the next one finishes them, once."""
    dispatcher = dispatcher_for(tmp_path, FLAKY_SUBSCRIPTION)
    publish(dispatcher.db, make_event("job.posted", {"name": "dee"}, source="t", id="d1"))
    await asyncio.to_thread(dispatcher.housekeeping)
    with event_tables(dispatcher.db) as conn:  # as a dispatcher killed mid-run leaves it
        conn.execute("UPDATE ensemble_deliveries SET status = 'started', attempts = 1")
        conn.execute(
            "INSERT INTO ensemble_dispatcher (id, host, pid, beat) VALUES (1, ?, 999999, ?)",
            (__import__("socket").gethostname(), time.time()),
        )
    await dispatch_until(dispatcher, lambda: status_of(dispatcher.db, "d1").get("status") == "done")
    assert status_of(dispatcher.db, "d1")["attempts"] == 1
    assert ATTEMPTS == {"dee": 1}


async def test_a_second_live_dispatcher_on_one_file_is_refused(tmp_path: Path) -> None:
    first = dispatcher_for(tmp_path, FLAKY_SUBSCRIPTION)
    first._take_post()
    with event_tables(first.db) as conn:  # a live one in another process on this machine
        conn.execute("UPDATE ensemble_dispatcher SET pid = 1")
    with pytest.raises(InvalidInputError, match="another dispatcher .* one dispatcher per"):
        await dispatcher_for(tmp_path, FLAKY_SUBSCRIPTION).run(asyncio.Event())


# --- the watched folder ---------------------------------------------------------------------


def test_a_watched_folder_publishes_added_and_changed_documents_once(tmp_path: Path) -> None:
    from ensemble.db.tables import write_transaction
    from ensemble.events.watch import scan

    inbox = tmp_path / "inbox"
    write(inbox, "notes.md", "# Field notes\n\nBees.")
    write(inbox, "image.png", "not a document")
    write(inbox, ".hidden.md", "# Hidden")
    (inbox / "link.md").symlink_to(tmp_path / "outside.md")
    write(tmp_path, "outside.md", "# Outside the folder")
    db = Workspace(db=tmp_path / "w.db").db

    def scanned() -> list[Any]:
        with event_tables(db) as conn, write_transaction(conn):
            return scan(conn, inbox)

    (added,) = scanned()
    assert added.type == "document.changed"
    assert added.data["title"] == "Field notes" and added.data["change"] == "added"
    assert added.data["folder"] == str(inbox.resolve()) and added.data["name"] == "notes.md"
    assert scanned() == []  # nothing changed
    (inbox / "notes.md").touch()
    assert scanned() == []  # touched, same content
    write(inbox, "notes.md", "# Field notes\n\nMore bees.")
    (changed,) = scanned()
    assert changed.data["change"] == "modified" and changed.id != added.id


def test_a_default_model_applies_unless_a_subscription_names_its_own(tmp_path: Path) -> None:
    own = GOOD + "    settings:\n      model: offline?latency=0.2\n"
    file = write(
        tmp_path,
        "subs.yaml",
        own + GOOD.replace("subscriptions:\n", "").replace("name: digest", "name: plain"),
    )
    loaded = {
        s.name: s for s in load_subscriptions([file], defaults={"model": "offline?latency=0.1"})
    }
    assert loaded["digest"].settings.context.model == "offline?latency=0.2"
    assert loaded["plain"].settings.context.model == "offline?latency=0.1"


async def test_a_database_error_pauses_the_dispatcher_instead_of_ending_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ensemble.errors import DatabaseError
    from ensemble.events import dispatcher as module

    monkeypatch.setattr(module, "RETRY_SECONDS", 0.05)
    lines: list[str] = []
    dispatcher = dispatcher_for(tmp_path, FLAKY_SUBSCRIPTION)
    dispatcher.say = lines.append
    real = dispatcher.housekeeping
    failures = iter([DatabaseError("database is locked")])

    def flaky_housekeeping() -> int:
        for failure in failures:
            raise failure
        return real()

    monkeypatch.setattr(dispatcher, "housekeeping", flaky_housekeeping)
    publish(dispatcher.db, make_event("job.posted", {"name": "eve"}, source="t", id="e1"))
    await dispatch_until(dispatcher, lambda: status_of(dispatcher.db, "e1").get("status") == "done")
    assert any("database is locked; trying again" in line for line in lines)


def test_the_readme_shows_the_shipped_example() -> None:
    import re

    import yaml

    import ensemble.events

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Events: runs that start runs") :]
    shown = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert shown is not None
    example = Path(ensemble.events.__file__).parent / "examples" / "digest.yaml"
    assert yaml.safe_load(shown.group(1)) == yaml.safe_load(example.read_text(encoding="utf-8"))
