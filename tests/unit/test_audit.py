"""The audit trail: rows written promptly off the caller's loop, surviving a killed process."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph

from ensemble import persistence
from ensemble.audit import AuditEvent, events, flush, record, stats, thread_context, totals, trail
from ensemble.cli.audit import add_audit_parsers, cmd_audit, cmd_stats
from ensemble.errors import DatabaseError, InvalidInputError
from ensemble.persistence import connect

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "audit.db"


@pytest.fixture(autouse=True)
def drained():
    yield
    assert flush(10.0), "audit writers did not drain"


def call(agent: str = "planner", **fields: Any) -> AuditEvent:
    return AuditEvent(**({"thread_id": "t1", "kind": "model_call", "agent": agent} | fields))


def sample_thread(db: Path) -> None:
    """Two agents: model calls (one failed), a cache hit, a tool call and a route."""
    base = 1_700_000_000.0
    record(call(model="m1", tokens_in=100, tokens_out=20, cost=0.01, seconds=1.5, at=base), db)
    record(
        call(model="m1", tokens_in=50, tokens_out=0, seconds=0.5, outcome="error", at=base + 1), db
    )
    record(call(kind="cache_hit", model="m1", tokens_in=100, tokens_out=20, at=base + 2), db)
    record(
        call("researcher", kind="tool_call", seconds=0.25, detail={"tool": "search"}, at=base + 3),
        db,
    )
    record(call("researcher", model="m2", tokens_in=10, tokens_out=5, cost=0.002, at=base + 4), db)
    record(call("supervisor", kind="route", detail={"to": "researcher"}, at=base + 5), db)
    record(AuditEvent("other-thread", "model_call", "planner", tokens_in=999), db)
    assert flush()


# Recording ---------------------------------------------------------------------------------------


def test_recorded_events_come_back_in_order_with_every_field(db: Path) -> None:
    event = AuditEvent(
        thread_id="t1",
        kind="model_call",
        agent="planner",
        checkpoint_ns="outer:abc",
        checkpoint_id="1f0-cp",
        model="openai:gpt-4o-mini",
        tokens_in=12,
        tokens_out=3,
        cost=0.25,
        seconds=1.5,
        outcome="error",
        detail={"error": "timeout", "attempt": 2, "nested": {"a": [1, 2]}},
        at=1000.0,
    )
    record(event, db)
    record(call(kind="route", at=999.0), db)  # recorded later, happened earlier
    assert flush()
    rows = events(db, "t1")
    assert [r["kind"] for r in rows] == ["route", "model_call"]
    row = rows[1]
    assert row["id"] >= 1
    assert {k: v for k, v in row.items() if k != "id"} == {
        "thread_id": "t1",
        "checkpoint_ns": "outer:abc",
        "checkpoint_id": "1f0-cp",
        "agent": "planner",
        "kind": "model_call",
        "model": "openai:gpt-4o-mini",
        "tokens_in": 12,
        "tokens_out": 3,
        "cost": 0.25,
        "seconds": 1.5,
        "outcome": "error",
        "detail": {"error": "timeout", "attempt": 2, "nested": {"a": [1, 2]}},
        "at": 1000.0,
    }


def test_an_event_is_stamped_with_the_time_it_was_made(db: Path) -> None:
    before = time.time()
    record(call(), db)
    assert flush()
    (row,) = events(db, "t1")
    assert before <= row["at"] <= time.time()
    assert row["outcome"] == "ok" and row["detail"] == {} and row["model"] is None


def test_detail_is_copied_when_recorded(db: Path) -> None:
    detail: dict[str, Any] = {"step": 1}
    record(call(detail=detail), db)
    detail["step"] = 2
    assert flush()
    assert events(db, "t1")[0]["detail"] == {"step": 1}


def test_recording_never_raises_into_the_caller(
    db: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    circular: dict[str, Any] = {}
    circular["self"] = circular
    folder = tmp_path / "a-folder"
    folder.mkdir()
    with caplog.at_level(logging.WARNING, logger="ensemble.audit.trail"):
        record(call(kind="not-a-kind"), db)  # dropped, logged
        record(call(detail=circular), db)  # stored as a repr
        record(call(tokens_in="many"), db)  # type: ignore[arg-type]  # dropped, logged
        record(call(), folder)  # not a database: the writer logs and drops
        assert flush()
    assert "unknown kind 'not-a-kind'" in caplog.text
    assert "could not queue" in caplog.text
    assert "lost 1 event(s)" in caplog.text
    (row,) = events(db, "t1")
    assert "unserializable" in row["detail"]


def test_record_returns_at_once_while_another_process_holds_the_write_lock(db: Path) -> None:
    record(call("first"), db)
    assert flush()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        started = time.perf_counter()
        for _ in range(20):
            record(call("while-locked"), db)
        assert time.perf_counter() - started < 0.5  # far below the 30 s busy timeout
        assert not flush(timeout=0.3)  # the writer waits for the lock (busy timeout), not us
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert flush()
    assert len(events(db, "t1", kinds={"model_call"})) == 21


def test_a_file_locked_while_it_is_being_created_is_retried(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[Path] = []

    def racing_connect(path: Any, **kwargs: Any) -> sqlite3.Connection:
        attempts.append(path)
        if len(attempts) < 3:  # what PRAGMA journal_mode=WAL does beside another new connection
            raise DatabaseError(
                f"database {path} is locked by another process (database is locked)"
            )
        return connect(path, **kwargs)

    monkeypatch.setattr(persistence, "connect", racing_connect)
    record(call(), db)
    assert flush()
    assert len(attempts) == 3
    assert len(events(db, "t1")) == 1


# Concurrency -------------------------------------------------------------------------------------


def test_threads_recording_at_once_lose_nothing(db: Path) -> None:
    def work(n: int) -> None:
        for i in range(200):
            record(AuditEvent(f"t{n}", "tool_call", f"agent{n}", detail={"i": i}), db)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert flush()
    for n in range(8):
        rows = events(db, f"t{n}")
        assert sorted(r["detail"]["i"] for r in rows) == list(range(200))


async def test_tasks_on_an_event_loop_record_without_blocking_it(db: Path) -> None:
    async def agent(n: int) -> float:
        slowest = 0.0
        for i in range(50):
            started = time.perf_counter()
            record(AuditEvent("loop", "model_call", f"agent{n}", detail={"i": i}), db)
            slowest = max(slowest, time.perf_counter() - started)
            await asyncio.sleep(0)
        return slowest

    slowest = await asyncio.gather(*(agent(n) for n in range(20)))
    assert max(slowest) < 0.25
    assert await asyncio.to_thread(flush)
    assert totals(db, "loop")["calls"] == 1000


def test_two_databases_get_their_own_rows(tmp_path: Path) -> None:
    first, second = tmp_path / "one.db", tmp_path / "two.db"
    for i in range(30):
        record(call(detail={"i": i}), first if i % 2 else second)
    assert flush()
    assert len(events(first, "t1")) == len(events(second, "t1")) == 15


def test_an_idle_writer_stops_and_the_next_event_starts_another(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trail, "IDLE_SECONDS", 0.3)
    [first] = writers_started_by(lambda: record(call(detail={"n": 1}), db))
    assert flush()
    first.join(timeout=5)
    assert not first.is_alive()
    [second] = writers_started_by(lambda: record(call(detail={"n": 2}), db))
    assert second is not first
    assert flush()
    assert [r["detail"]["n"] for r in events(db, "t1")] == [1, 2]


def writers_started_by(action: Callable[[], None]) -> list[threading.Thread]:
    """The audit writer threads that `action` started."""
    before = set(threading.enumerate())
    action()
    return [t for t in threading.enumerate() if t.name == "ensemble-audit" and t not in before]


# Crash -------------------------------------------------------------------------------------------

CRASHING_RUN = textwrap.dedent(
    """
    import os, signal, sys, time
    from pathlib import Path
    from ensemble.audit import AuditEvent, trail, record

    db = Path(sys.argv[1])
    for i in range(40):
        record(AuditEvent("crash", "model_call", "worker", detail={"i": i}), db)
        time.sleep(0.01)
    print(time.time(), flush=True)  # when the process is killed
    record(AuditEvent("crash", "model_call", "worker", detail={"i": 40}), db)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_rows_survive_a_killed_process(db: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CRASHING_RUN, str(db)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ | {"PYTHONPATH": str(REPO)},
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    killed_at = float(done.stdout.strip())
    rows = events(db, "crash")
    kept = {r["detail"]["i"] for r in rows}
    settled = [r for r in rows if r["at"] < killed_at - 0.1]
    assert len(settled) >= 20  # the loop ran for ~400 ms before the kill
    assert kept >= set(range(max(r["detail"]["i"] for r in settled) + 1))
    assert set(range(25)) <= kept  # every event recorded 150 ms or more before the kill


# Queries -----------------------------------------------------------------------------------------


def test_limit_keeps_the_most_recent_events_and_kinds_filter(db: Path) -> None:
    sample_thread(db)
    assert [r["agent"] for r in events(db, "t1", limit=2)] == ["researcher", "supervisor"]
    assert [r["kind"] for r in events(db, "t1", kinds={"route", "tool_call"})] == [
        "tool_call",
        "route",
    ]
    assert [r["kind"] for r in events(db, "t1", kinds={"cache_hit"}, limit=5)] == ["cache_hit"]
    assert events(db, "t1", kinds=set()) == []


def test_stats_group_by_agent_and_kind(db: Path) -> None:
    sample_thread(db)
    grouped = {(r["agent"], r["kind"]): r for r in stats(db, "t1")}
    assert list(grouped) == [
        ("planner", "cache_hit"),
        ("planner", "model_call"),
        ("researcher", "model_call"),
        ("researcher", "tool_call"),
        ("supervisor", "route"),
    ]
    planner = grouped[("planner", "model_call")]
    assert planner["calls"] == 2
    assert (planner["tokens_in"], planner["tokens_out"]) == (150, 20)
    assert planner["cost"] == pytest.approx(0.01)
    assert planner["seconds"] == pytest.approx(2.0)
    assert planner["errors"] == 1
    assert grouped[("researcher", "tool_call")]["seconds"] == pytest.approx(0.25)


def test_totals_count_model_calls_but_not_cache_hits(db: Path) -> None:
    sample_thread(db)
    total = totals(db, "t1")
    assert total["events"] == 6
    assert total["calls"] == 3  # two of the planner (one failed), one of the researcher
    assert total["cache_hits"] == 1
    assert (total["tokens_in"], total["tokens_out"]) == (160, 25)  # the hit's tokens not spent
    assert total["cost"] == pytest.approx(0.012)
    assert total["seconds"] == pytest.approx(2.0)  # the models' time, not the tool's
    assert total["errors"] == 1


def test_an_unknown_thread_or_a_database_without_audit_table_is_empty(db: Path) -> None:
    connect(db).close()  # a database with no audit table yet
    assert events(db, "t1") == [] and stats(db, "t1") == []
    assert totals(db, "t1") == {
        "events": 0,
        "calls": 0,
        "cache_hits": 0,
        "tokens_in": 0,
        "tokens_out": 0,
        "cost": 0,
        "seconds": 0,
        "errors": 0,
    }
    sample_thread(db)
    assert events(db, "nobody") == [] and stats(db, "nobody") == []
    assert totals(db, "nobody")["calls"] == 0


def test_reading_a_missing_database_finds_nothing_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    assert events(missing, "t1") == [] and stats(missing, "t1") == []
    assert totals(missing, "t1")["calls"] == 0
    assert not missing.exists()


def test_reading_a_file_that_is_not_a_database_fails(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_text("not sqlite " * 100)
    with pytest.raises(DatabaseError):
        events(junk, "t1")


# Inside a graph ----------------------------------------------------------------------------------


class State(TypedDict):
    x: int


def test_thread_context_names_the_checkpoint_a_step_started_from(db: Path) -> None:
    seen: list[tuple[str, str, str]] = []

    def step(state: State) -> dict[str, int]:
        thread_id, ns, checkpoint_id = context = thread_context()
        seen.append(context)
        record(AuditEvent(thread_id, "route", "step", ns, checkpoint_id), db)
        return {"x": state["x"] + 1}

    inner = StateGraph(State)
    inner.add_node("step", step)
    inner.add_edge(START, "step")
    builder = StateGraph(State)
    builder.add_node("step", step)
    builder.add_node("sub", inner.compile())
    builder.add_edge(START, "step")
    builder.add_edge("step", "sub")
    builder.add_edge("sub", END)
    saver = InMemorySaver()
    graph = builder.compile(checkpointer=saver)
    graph.invoke({"x": 0}, {"configurable": {"thread_id": "g1"}})
    assert thread_context() == ("", "", "")
    assert flush()

    stored = {
        (c.config["configurable"]["checkpoint_ns"], c.config["configurable"]["checkpoint_id"])
        for c in saver.list(None)
    }
    (top, sub) = seen
    assert top[0] == sub[0] == "g1"
    assert top[1] == "" and sub[1].startswith("sub:")
    assert (top[1], top[2]) in stored and (sub[1], sub[2]) in stored
    rows = events(db, "g1")
    assert [(r["checkpoint_ns"], r["checkpoint_id"]) for r in rows] == [top[1:], sub[1:]]


# CLI ---------------------------------------------------------------------------------------------


def audit_args(db: Path, thread: str = "t1", **extra: Any) -> argparse.Namespace:
    return argparse.Namespace(
        **({"thread": thread, "db": str(db), "limit": None, "kinds": None, "json": False} | extra)
    )


async def test_audit_prints_a_table(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sample_thread(db)
    assert await cmd_audit(audit_args(db)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "TIME",
        "AGENT",
        "KIND",
        "MODEL",
        "TOKENS",
        "SECONDS",
        "OUTCOME",
        "DETAIL",
    ]
    assert len(lines) == 2 + 6
    assert "planner" in lines[2] and "m1" in lines[2] and "100/20" in lines[2]
    assert "1.50" in lines[2] and "ok" in lines[2]
    assert "error" in lines[3]
    assert "tool=search" in lines[5]
    assert "to=researcher" in lines[7]


async def test_audit_json_with_filters(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sample_thread(db)
    await cmd_audit(audit_args(db, kinds=["model_call"], limit=2, json=True))
    payload = json.loads(capsys.readouterr().out)
    assert payload["thread_id"] == "t1"
    assert [(e["agent"], e["outcome"]) for e in payload["events"]] == [
        ("planner", "error"),
        ("researcher", "ok"),
    ]


async def test_stats_table_and_total(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sample_thread(db)
    assert await cmd_stats(audit_args(db)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["AGENT", "KIND", "CALLS"]
    planner = next(line for line in out if line.startswith("planner") and "model_call" in line)
    assert planner.split() == ["planner", "model_call", "2", "150", "20", "0.0100", "2.00", "1"]
    assert out[-1] == (
        "Total: 3 model calls (+1 cache hit), 160 tokens in, 25 out, cost 0.0120, 2.00 s, 1 error"
    )


async def test_stats_json(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sample_thread(db)
    await cmd_stats(audit_args(db, json=True))
    payload = json.loads(capsys.readouterr().out)
    assert len(payload["stats"]) == 5
    assert payload["totals"]["calls"] == 3


async def test_unknown_thread_says_so(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sample_thread(db)
    await cmd_audit(audit_args(db, thread="nobody"))
    await cmd_stats(audit_args(db, thread="nobody"))
    out = capsys.readouterr().out.splitlines()
    assert out == [f"No audit events for thread 'nobody' in {db}."] * 2
    await cmd_audit(audit_args(db, thread="nobody", json=True))
    assert json.loads(capsys.readouterr().out) == {"thread_id": "nobody", "events": []}


async def test_a_missing_database_is_one_line_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    for command in (cmd_audit, cmd_stats):
        with pytest.raises(DatabaseError, match=f"^no database at {missing}$"):
            await command(audit_args(missing))
    assert not missing.exists()
    with pytest.raises(InvalidInputError, match="--limit"):
        await cmd_audit(audit_args(missing, limit=0))


def test_parsers_alone_or_under_the_common_flags(tmp_path: Path) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db")
    common.add_argument("--json", action="store_true")
    for parents in ([], [common]):
        parser = argparse.ArgumentParser()
        add_audit_parsers(parser.add_subparsers(dest="command"), parents)
        args = parser.parse_args(
            ["audit", "T", "--kind", "model_call", "route", "--kind", "retry", "--limit", "3"]
            + ["--db", "x.db", "--json"]
        )
        assert (args.thread, args.kinds, args.limit, args.db, args.json) == (
            "T",
            ["model_call", "route", "retry"],
            3,
            "x.db",
            True,
        )
        args = parser.parse_args(["stats", "T"])
        assert (args.command, args.thread, args.db, args.json) == ("stats", "T", None, False)


async def test_an_unknown_kind_is_refused_with_the_list(tmp_path: Path) -> None:
    """Kinds are checked when the command runs (the grammar imports no audit module)."""
    with pytest.raises(InvalidInputError, match="--kind nonsense: not a kind; kinds: .*model_call"):
        await cmd_audit(audit_args(tmp_path / "missing.db", kinds=["nonsense"]))
