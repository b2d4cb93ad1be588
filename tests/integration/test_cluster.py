"""The shared run queue on a real PostgreSQL: `ensemble submit`, `ensemble worker`, schedules.

Every test is real processes against the session's PostgreSQL server, each test on a fresh
database prepared by `ensemble db upgrade`, with the offline model (no key). Workers are
`ensemble worker` subprocesses with a short stall timeout and leader lease, their output in a
file per worker; runs that must be in flight when a worker is killed or frozen use a model that
sleeps on every call. Every wait polls the database or the logs against a deadline, and every
worker is stopped (SIGCONT, SIGTERM, then SIGKILL) when its test ends, whatever happened.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest

from tests.corpus import write_corpus
from tests.postgres_server import PostgresServer

pytestmark = pytest.mark.integration

ENSEMBLE = [sys.executable, "-m", "ensemble.cli.main"]
SLOW_MODEL = "offline?latency=0.5"
"""Every model call sleeps half a second: a run is in flight for a few seconds."""

STALL_TIMEOUT = 3.0
LEADER_LEASE = 3.0
QUESTION = "How do bees make honey?"
CLI_TIMEOUT = 120.0
RUN_TIMEOUT = 60.0
"""Upper bound for a queued run to be finished by a live worker (it takes a few seconds)."""

EXIT_REFUSED = 2
FORKS = (
    "SELECT checkpoint_ns, parent_checkpoint_id, count(*) FROM checkpoints "
    "WHERE thread_id = %s GROUP BY 1, 2 HAVING count(*) > 1"
)
"""Two checkpoints with one parent: two writers continued the thread from the same point."""

T = TypeVar("T")


def clean_env() -> dict[str, str]:
    """The environment of every command: no key (offline model), no database from outside."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENSEMBLE_", "OPENAI_"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def sql(url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of one query on its own short connection ([] for a statement that returns none)."""
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(query, params)  # type: ignore[arg-type]
        return list(cursor.fetchall()) if cursor.description is not None else []


def wait_for(check: Callable[[], T], timeout: float, what: Callable[[], str] | str) -> T:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what() if callable(what) else what}")
        time.sleep(0.05)


class WorkerProcess:
    """One `ensemble worker` subprocess and its log file."""

    def __init__(self, name: str, url: str, cwd: Path, extra: tuple[str, ...]) -> None:
        self.name = name
        self.log_path = cwd / f"worker-{name}.log"
        command = [
            *ENSEMBLE, "worker", "--db", url, "--name", name,
            "--stall-timeout", f"{STALL_TIMEOUT:g}", "--leader-lease", f"{LEADER_LEASE:g}",
            *extra,
        ]  # fmt: skip
        with self.log_path.open("w", encoding="utf-8") as log:
            self.process = subprocess.Popen(
                command,
                cwd=cwd,
                env=clean_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.frozen = False

    def text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def says(self, fragment: str) -> bool:
        return fragment in self.text()

    def wait_for(self, fragment: str, timeout: float) -> None:
        wait_for(
            lambda: self.says(fragment),
            timeout,
            lambda: f"worker {self.name} did not say {fragment!r}; its log:\n{self.text()}",
        )

    def ready(self, timeout: float = 60.0) -> WorkerProcess:
        self.wait_for(f"worker {self.name}: taking ", timeout)
        return self

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def freeze(self) -> None:
        self.process.send_signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        self.process.send_signal(signal.SIGCONT)
        self.frozen = False

    def stop(self, grace: float = 10.0) -> None:
        """SIGCONT if frozen, SIGTERM, then SIGKILL after `grace` seconds."""
        self.terminate()
        self.reap(grace)

    def terminate(self) -> None:
        if self.process.poll() is None:
            if self.frozen:
                self.thaw()
            self.process.send_signal(signal.SIGTERM)

    def reap(self, grace: float) -> None:
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)


def stop_all(workers: list[WorkerProcess], grace: float = 10.0) -> None:
    """Stop workers together (a worker takes a few seconds to stop: pgqueuer's shutdown)."""
    try:
        for worker in workers:
            worker.terminate()
    finally:
        for worker in workers:
            worker.reap(grace)


@dataclass
class Cluster:
    """One test's upgraded database, its working folder (cwd of every command), its workers."""

    url: str
    cwd: Path
    corpus: Path
    workers: list[WorkerProcess] = field(default_factory=list)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*ENSEMBLE, *args],
            cwd=self.cwd,
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
            check=False,
        )

    def ok(self, *args: str) -> str:
        """Stdout of a command that must succeed against this database."""
        result = self.run(*args, "--db", self.url)
        assert result.returncode == 0, f"ensemble {' '.join(args)}:\n{result.stderr}"
        return result.stdout

    def refused(self, *args: str) -> str:
        """Stderr of a command that must be refused (exit 2, no traceback); give it its --db."""
        result = self.run(*args)
        assert result.returncode == EXIT_REFUSED, (
            f"ensemble {' '.join(args)} exited {result.returncode}:\n{result.stderr}"
        )
        assert "Traceback" not in result.stderr, result.stderr
        return result.stderr

    def submit(self, *args: str) -> str:
        """Queue a run; its thread id."""
        return str(json.loads(self.ok("submit", *args, "--json"))["thread_id"])

    def start_worker(self, name: str, *extra: str) -> WorkerProcess:
        worker = WorkerProcess(name, self.url, self.cwd, extra)
        self.workers.append(worker)
        return worker

    def logs(self) -> str:
        return "\n".join(f"--- {w.name}:\n{w.text()}" for w in self.workers)

    def status(self, thread_id: str) -> str | None:
        rows = sql(self.url, "SELECT status FROM ensemble_runs WHERE thread_id = %s", (thread_id,))
        return str(rows[0][0]) if rows else None

    def wait_status(self, thread_id: str, status: str, timeout: float = RUN_TIMEOUT) -> None:
        wait_for(
            lambda: self.status(thread_id) == status,
            timeout,
            lambda: f"thread {thread_id} is {self.status(thread_id)}, not {status}\n{self.logs()}",
        )

    def checkpoints(self, thread_id: str) -> int:
        rows = sql(self.url, "SELECT count(*) FROM checkpoints WHERE thread_id = %s", (thread_id,))
        return int(rows[0][0])

    def model_calls(self, thread_id: str) -> int:
        query = "SELECT count(*) FROM audit WHERE thread_id = %s AND kind = 'model_call'"
        return int(sql(self.url, query, (thread_id,))[0][0])

    def threads(self) -> dict[str, dict[str, Any]]:
        rows = json.loads(self.ok("threads", "--json"))["threads"]
        return {row["thread_id"]: row for row in rows}


@pytest.fixture
def cluster(postgres_url: str, tmp_path: Path) -> Iterator[Cluster]:
    """A fresh database after `ensemble db upgrade`; every worker started is stopped at the end."""
    here = Cluster(postgres_url, tmp_path, write_corpus(tmp_path / "corpus"))
    try:
        here.ok("db", "upgrade")
        yield here
    finally:
        stop_all(here.workers)


def research_args(corpus: Path, *extra: str) -> list[str]:
    return ["research", QUESTION, "--corpus", str(corpus), "--yes", *extra]


class ReferenceRun:
    """`ensemble run` of the same request on a SQLite file, started in the background."""

    def __init__(self, cluster: Cluster, name: str, args: list[str]) -> None:
        self.db = cluster.cwd / f"{name}.db"
        self.process = subprocess.Popen(
            [*ENSEMBLE, "run", *args, "--db", str(self.db), "--json", "--quiet"],
            cwd=cluster.cwd,
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def result(self) -> dict[str, Any]:
        out, err = self.process.communicate(timeout=CLI_TIMEOUT)
        assert self.process.returncode == 0, err
        result: dict[str, Any] = json.loads(out)
        assert result["status"] == "done", result
        return result

    def model_calls(self, thread_id: str) -> int:
        with sqlite3.connect(self.db) as conn:
            query = "SELECT count(*) FROM audit WHERE thread_id = ? AND kind = 'model_call'"
            return int(conn.execute(query, (thread_id,)).fetchone()[0])


def which_started(cluster: Cluster, thread_id: str) -> WorkerProcess:
    """The worker that claimed the thread first."""

    def starter() -> WorkerProcess | None:
        return next((w for w in cluster.workers if w.says(f"starting thread {thread_id}")), None)

    found = wait_for(starter, RUN_TIMEOUT, lambda: f"nobody started {thread_id}\n{cluster.logs()}")
    assert found is not None
    return found


def test_a_submitted_run_is_run_by_a_worker_as_ensemble_run_runs_it(cluster: Cluster) -> None:
    args = research_args(cluster.corpus)
    reference = ReferenceRun(cluster, "reference", args)
    thread_id = cluster.submit(*args)
    assert cluster.status(thread_id) == "queued"

    worker = cluster.start_worker("w1")
    cluster.wait_status(thread_id, "done")
    assert worker.says(f"worker w1: starting thread {thread_id} (research, epoch 1)")
    assert worker.says(f"worker w1: thread {thread_id} done")

    assert cluster.threads()[thread_id]["status"] == "done"
    shown = json.loads(cluster.ok("show", thread_id, "--json"))
    expected = reference.result()
    assert shown["status"] == "done"
    assert shown["output"]["report"] == expected["output"]["report"]
    assert shown["output"] == expected["output"]


def test_a_run_waits_for_a_person_and_a_queued_answer_publishes_once(cluster: Cluster) -> None:
    published = cluster.cwd / ".ensemble" / "published"
    thread_id = cluster.ok("submit", "content", "Bees and honey", "--corpus", str(cluster.corpus))
    thread_id = thread_id.strip()
    first = cluster.start_worker("w1")
    cluster.wait_status(thread_id, "waiting")
    assert first.says(f"worker w1: thread {thread_id} waiting")
    assert cluster.threads()[thread_id]["status"] == "interrupted"
    assert not published.exists() or not any(published.iterdir())  # nothing before the approval
    first.stop()  # the answer is queued with no worker running: it stays queued

    answer = ("submit", "resume", thread_id, "--answer", "approve")
    assert cluster.ok(*answer).strip() == thread_id
    assert cluster.status(thread_id) == "queued"
    refusal = cluster.refused(*answer, "--db", cluster.url)
    assert f"thread {thread_id} is already queued" in refusal

    second = cluster.start_worker("w2")
    cluster.wait_status(thread_id, "done")
    assert second.says(f"worker w2: thread {thread_id} done")

    files = sorted(p.name for p in published.iterdir())
    assert len(files) == 2 and {Path(f).suffix for f in files} == {".md", ".html"}, files
    journal = sql(
        cluster.url, "SELECT status, files FROM publish_journal WHERE thread_id = %s", (thread_id,)
    )
    assert [row[0] for row in journal] == ["done"]
    assert sorted(Path(f).name for f in json.loads(journal[0][1])) == files
    # Nobody died: the worker that answers a waiting thread is not taking it over from another.
    assert second.says(f"worker w2: starting thread {thread_id}"), second.text()


def test_a_killed_workers_run_is_taken_over_and_finished_once(cluster: Cluster) -> None:
    args = research_args(cluster.corpus, "--model", SLOW_MODEL, "--max-concurrency", "1")
    reference = ReferenceRun(cluster, "reference", args)
    for name in ("a", "b"):
        cluster.start_worker(name)
    for worker in cluster.workers:
        worker.ready()
    thread_id = cluster.submit(*args)
    victim = which_started(cluster, thread_id)
    survivor = next(w for w in cluster.workers if w is not victim)
    wait_for(lambda: cluster.checkpoints(thread_id) >= 3, RUN_TIMEOUT, "the plan is checkpointed")
    victim.kill()
    assert cluster.status(thread_id) == "running", "the run ended before the kill"
    assert not victim.says(f"thread {thread_id} done")

    survivor.wait_for(f"worker {survivor.name}: taking over thread {thread_id}", 3 * STALL_TIMEOUT)
    cluster.wait_status(thread_id, "done")
    assert survivor.says(f"worker {survivor.name}: thread {thread_id} done")
    assert sql(cluster.url, FORKS, (thread_id,)) == []
    epoch, attempts = sql(
        cluster.url, "SELECT epoch, attempts FROM ensemble_runs WHERE thread_id = %s", (thread_id,)
    )[0]
    assert (epoch, attempts) == (2, 2)

    expected = reference.result()
    uninterrupted = reference.model_calls(expected["thread_id"])
    in_flight = 1  # --max-concurrency 1: one agent, so one model call, at a time
    assert 0 < cluster.model_calls(thread_id) <= uninterrupted + in_flight
    shown = json.loads(cluster.ok("show", thread_id, "--json"))
    assert shown["output"]["report"] == expected["output"]["report"]


def test_a_frozen_worker_wakes_up_fenced_and_writes_nothing(
    cluster: Cluster, postgres_server: PostgresServer
) -> None:
    args = research_args(cluster.corpus, "--model", SLOW_MODEL, "--max-concurrency", "1")
    frozen = cluster.start_worker("a")
    thread_id = cluster.submit(*args)
    frozen.wait_for(f"worker a: starting thread {thread_id}", RUN_TIMEOUT)
    wait_for(lambda: cluster.checkpoints(thread_id) >= 3, RUN_TIMEOUT, "the plan is checkpointed")
    frozen.freeze()
    assert cluster.status(thread_id) == "running", "the run ended before the freeze"
    refusal = cluster.refused("submit", "resume", thread_id, "--db", cluster.url)
    assert f"thread {thread_id} is already running" in refusal  # frozen or not, a worker has it

    other = cluster.start_worker("b")
    other.wait_for(f"worker {other.name}: taking over thread {thread_id}", 3 * STALL_TIMEOUT)
    cluster.wait_status(thread_id, "done")
    head = (
        "SELECT max(checkpoint_id), count(*), "
        "(SELECT count(*) FROM checkpoint_writes WHERE thread_id = %s) "
        "FROM checkpoints WHERE thread_id = %s"
    )
    before = sql(cluster.url, head, (thread_id, thread_id))

    frozen.thaw()
    frozen.wait_for(f"worker {frozen.name}: lost thread {thread_id}", RUN_TIMEOUT)
    assert sql(cluster.url, head, (thread_id, thread_id)) == before
    refused = f"ensemble lease lost: thread {thread_id} is at epoch 2, this worker holds epoch 1"
    assert refused in postgres_server.log_path.read_text(encoding="utf-8", errors="replace")
    assert sql(cluster.url, FORKS, (thread_id,)) == []
    row = sql(
        cluster.url, "SELECT epoch, status, worker FROM ensemble_runs WHERE thread_id = %s",
        (thread_id,),
    )  # fmt: skip
    assert row == [(2, "done", None)]
    assert not frozen.says(f"thread {thread_id} done")


LEADER_LINE = re.compile(r"^worker (\S+): leader \(epoch (\d+)\)$", re.MULTILINE)
LOST_LINE = re.compile(r"^worker (\S+): no longer leader \(epoch (\d+)\)", re.MULTILINE)


def claims(cluster: Cluster) -> list[tuple[str, int]]:
    """Every (worker, epoch) a worker's log says it became leader in."""
    found = []
    for worker in cluster.workers:
        found += [(name, int(epoch)) for name, epoch in LEADER_LINE.findall(worker.text())]
    return found


class LeaderWatch:
    """Samples `ensemble_leader` every 50 ms in a thread: what the row said, in order."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: list[tuple[int, str | None]] = []
        self.rows: set[int] = set()
        """How many rows the table had at each look (one, always)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.wait(0.05):
                rows = conn.execute("SELECT epoch, worker FROM ensemble_leader").fetchall()
                self.rows.add(len(rows))
                self.seen += [(int(epoch), worker) for epoch, worker in rows]

    def stop(self) -> list[tuple[int, str | None]]:
        self._stop.set()
        self._thread.join(timeout=5)
        return self.seen


def test_one_leader_at_a_time_through_a_kill_and_a_freeze(cluster: Cluster) -> None:
    watch = LeaderWatch(cluster.url)
    try:
        for name in ("w1", "w2"):
            cluster.start_worker(name)
        wait_for(lambda: claims(cluster), 60, cluster.logs)
        for worker in cluster.workers:
            worker.ready()
        time.sleep(2.5)  # two more polls of the follower: it must stay a follower
        ((leader_name, first),) = claims(cluster)
        leader = next(w for w in cluster.workers if w.name == leader_name)
        follower = next(w for w in cluster.workers if w is not leader)

        killed_at = time.monotonic()
        leader.kill()
        follower.wait_for(f"worker {follower.name}: leader (epoch {first + 1})", LEADER_LEASE + 4)
        assert time.monotonic() - killed_at <= LEADER_LEASE + 4

        third = cluster.start_worker("w3").ready()
        time.sleep(1.5)  # it has tried for the post and found it taken
        assert not third.says("leader (epoch")
        frozen_at = time.monotonic()
        follower.freeze()
        third.wait_for(f"worker w3: leader (epoch {first + 2})", LEADER_LEASE + 5)
        took = time.monotonic() - frozen_at
        # The frozen leader's session renewed itself at most one poll (1 s) before the freeze.
        assert took >= LEADER_LEASE - 1.2, f"the post was taken {took:.1f} s after, in the lease"
        follower.thaw()
        follower.wait_for(f"worker {follower.name}: no longer leader (epoch {first + 1})", 15)
        time.sleep(1.5)  # the old leader campaigns again and must not win
    finally:
        seen = watch.stop()

    expected = [(leader_name, first), (follower.name, first + 1), ("w3", first + 2)]
    assert sorted(claims(cluster), key=lambda c: c[1]) == expected
    assert LOST_LINE.findall(follower.text()) == [(follower.name, str(first + 1))]
    assert not LOST_LINE.findall(third.text())
    assert watch.rows == {1}
    epochs = [epoch for epoch, _ in seen]
    assert epochs == sorted(epochs), "the leader's epoch went back"
    assert {(worker, epoch) for epoch, worker in seen if epoch} == set(expected)
    assert sql(cluster.url, "SELECT epoch, worker FROM ensemble_leader") == [(first + 2, "w3")]


def test_a_due_schedule_fires_one_run_that_a_worker_finishes(cluster: Cluster) -> None:
    refusal = cluster.refused(
        "schedule", "add", "61 * * * *", *research_args(cluster.corpus), "--db", cluster.url
    )
    assert "not a cron expression: '61 * * * *'" in refusal
    cluster.ok("schedule", "add", "* * * * *", *research_args(cluster.corpus))
    (schedule,) = json.loads(cluster.ok("schedule", "list", "--json"))["schedules"]
    assert (schedule["cron"], schedule["scenario"]) == ("* * * * *", "research")
    assert (schedule["fired"], schedule["last_thread"]) == (0, None)

    # Not due until the test says so: a minute boundary passing while the worker starts would
    # fire it before the moment chosen below.
    later = "UPDATE ensemble_schedules SET next_at = now() + interval '1 day'"
    sql(cluster.url, later)
    worker = cluster.start_worker("w1")
    worker.wait_for("worker w1: leader (epoch 1)", 60)

    def seconds_into_minute() -> float:
        return float(sql(cluster.url, "SELECT extract(second FROM now())")[0][0])

    if seconds_into_minute() > 45:  # fire well inside one minute: the next due time is later
        wait_for(lambda: seconds_into_minute() < 5, 20, "the next minute")
    due_now = "UPDATE ensemble_schedules SET next_at = now() WHERE id = %s"
    sql(cluster.url, due_now, (schedule["id"],))
    worker.wait_for("worker w1: leader (epoch 1) queued scheduled thread ", 10)
    thread_id = re.findall(r"queued scheduled thread (\S+)", worker.text())[0]
    (row,) = sql(
        cluster.url,
        "SELECT fired, last_thread, next_at > now(), "
        "next_at = date_trunc('minute', last_fired_at) + interval '1 minute' "
        "FROM ensemble_schedules WHERE id = %s",
        (schedule["id"],),
    )
    assert row == (1, thread_id, True, True)
    # The run may take longer than the minute on a busy machine: no second due time meanwhile.
    sql(cluster.url, later)
    cluster.wait_status(thread_id, "done")
    worker.stop()
    assert sql(cluster.url, "SELECT thread_id, status FROM ensemble_runs") == [(thread_id, "done")]
    assert worker.says(f"worker w1: thread {thread_id} done")


def test_a_scenario_cap_holds_across_workers_and_priority_orders_the_queue(
    cluster: Cluster,
) -> None:
    slow = research_args(cluster.corpus, "--model", SLOW_MODEL)
    capped = [cluster.submit(*slow) for _ in range(3)]
    for name in ("w1", "w2"):
        cluster.start_worker(name, "--cap", "research=1", "--concurrency", "2")
    most_running = 0
    deadline = time.monotonic() + 3 * RUN_TIMEOUT
    while True:
        rows = sql(cluster.url, "SELECT status FROM ensemble_runs WHERE scenario = 'research'")
        statuses = [status for (status,) in rows]
        most_running = max(most_running, statuses.count("running"))
        if statuses == ["done"] * 3:
            break
        assert time.monotonic() < deadline, f"{statuses}\n{cluster.logs()}"
        time.sleep(0.05)
    assert most_running == 1
    spans = sorted(
        sql(
            cluster.url,
            "SELECT started_at, finished_at, attempts FROM ensemble_runs WHERE thread_id = ANY(%s)",
            (capped,),
        )
    )
    assert [attempts for _, _, attempts in spans] == [1, 1, 1]  # no run was taken over
    for (_, finished, _), (started, _, _) in zip(spans, spans[1:], strict=False):
        assert finished <= started, spans  # one research run at a time, by the database's clock
    stop_all(cluster.workers)

    low = cluster.submit(*research_args(cluster.corpus), "--priority", "0")
    high = cluster.submit(*research_args(cluster.corpus), "--priority", "5")
    single = cluster.start_worker("w3", "--concurrency", "1")
    cluster.wait_status(low, "done")
    cluster.wait_status(high, "done")
    log = single.text()
    assert log.index(f"starting thread {high}") < log.index(f"starting thread {low}"), log
    (high_first,) = sql(
        cluster.url,
        "SELECT h.finished_at <= l.started_at FROM ensemble_runs h, ensemble_runs l "
        "WHERE h.thread_id = %s AND l.thread_id = %s",
        (high, low),
    )
    assert high_first == (True,)


def test_the_queue_refuses_a_sqlite_database(tmp_path: Path) -> None:
    here = Cluster("", tmp_path, tmp_path)
    needs_postgres = "the run queue needs PostgreSQL"
    assert needs_postgres in here.refused("worker", "--db", str(tmp_path / "some.sqlite"))
    assert needs_postgres in here.refused(
        "submit", "research", QUESTION, "--db", str(tmp_path / "file.db")
    )
    assert not (tmp_path / "some.sqlite").exists() and not (tmp_path / "file.db").exists()


def test_ensemble_db_upgrade_a_second_time_has_nothing_to_do(
    postgres_url: str, tmp_path: Path
) -> None:
    here = Cluster(postgres_url, tmp_path, tmp_path)
    assert "schema version 0 -> " in here.ok("db", "upgrade")
    assert "nothing to do" in here.ok("db", "upgrade")


def test_a_database_not_upgraded_is_refused_naming_ensemble_db_upgrade(
    postgres_url: str, tmp_path: Path
) -> None:
    here = Cluster(postgres_url, tmp_path, tmp_path)
    for command in (("submit", "research", QUESTION), ("worker",), ("schedule", "list")):
        stderr = here.refused(*command, "--db", postgres_url)
        assert f"run `ensemble db upgrade --db {postgres_url}` once" in stderr, stderr


def test_a_worker_with_a_corpus_root_refuses_a_run_reading_outside_it(cluster: Cluster) -> None:
    allowed = cluster.cwd / "allowed"
    allowed.mkdir()
    outside = cluster.submit(*research_args(cluster.corpus))  # the corpus is not under `allowed`
    inside_corpus = write_corpus(allowed / "docs")
    inside = cluster.submit(*research_args(inside_corpus))
    worker = cluster.start_worker("w1", "--corpus-root", str(allowed)).ready()
    cluster.wait_status(outside, "failed")
    cluster.wait_status(inside, "done")
    worker.stop()
    ((error,),) = sql(
        cluster.url, "SELECT error FROM ensemble_runs WHERE thread_id = %s", (outside,)
    )
    assert "not a folder inside the allowed corpus roots" in error, error
    assert str(cluster.corpus) in error, error
    assert worker.says(f"worker w1: thread {outside} failed")


def test_doctor_says_whether_the_database_can_run_the_queue(postgres_url: str) -> None:
    def doctor() -> dict[str, Any]:
        done = subprocess.run(
            [*ENSEMBLE, "doctor", "--json"], env=clean_env() | {"ENSEMBLE_DB": postgres_url},
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        pieces = json.loads(done.stdout)["pieces"]
        return next(p for p in pieces if p["name"] == "postgresql")

    before = doctor()
    assert not before["works"] and "ensemble db upgrade" in before["detail"], before
    subprocess.run(
        [*ENSEMBLE, "db", "upgrade", "--db", postgres_url], env=clean_env(), check=True,
        capture_output=True, timeout=120,
    )  # fmt: skip
    after = doctor()
    assert after["works"] and "at schema version" in after["detail"], after


def test_a_worker_with_an_output_root_refuses_to_publish_outside_it(cluster: Cluster) -> None:
    allowed = cluster.cwd / "site"
    allowed.mkdir()
    elsewhere = cluster.cwd / "elsewhere"
    thread = cluster.submit(
        "content", "How bees make honey", "--corpus", str(cluster.corpus),
        "--output-dir", str(elsewhere), "--yes",
    )  # fmt: skip
    worker = cluster.start_worker("w1", "--output-root", str(allowed)).ready()
    cluster.wait_status(thread, "failed")
    worker.stop()
    ((error,),) = sql(
        cluster.url, "SELECT error FROM ensemble_runs WHERE thread_id = %s", (thread,)
    )
    assert "is not a folder inside the allowed output_dir roots" in error, error
    assert not elsewhere.exists()
