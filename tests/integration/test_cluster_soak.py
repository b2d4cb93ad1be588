"""Issue 19's soak: 30 mixed runs finish exactly once while workers are killed and frozen.

Three `ensemble worker` processes (a short stall timeout and leader lease, two runs each) work
30 queued runs of research, content (publishes) and solver against a model that sleeps on every
call. A seeded chaos loop SIGKILLs a worker every 2-4 s, the leader among them now and then, and
starts a replacement under a new name; once it SIGSTOPs a worker that holds a thread, waits until
another worker has taken that thread over, then SIGCONTs it. Afterwards:

- every run is `done`, in `ensemble_runs` and in `ensemble threads`;
- no thread was forked (two checkpoints with one parent), and, per thread, the checkpoint rows
  were written in epoch order: a test-only trigger on this throwaway database records the lease
  epoch of every checkpoint and write row as it is inserted, so a stale writer shows up;
- the frozen worker wrote nothing to the thread it lost after it woke, and said so in its log;
- a thread's model calls are at most those of the same input run cleanly (one worker, no chaos,
  on a second database) plus, per takeover, the most calls one step of that scenario makes (the
  calls that can be in flight when a worker dies; finished ones come from the shared cache),
  and one step more for the frozen thread (its old holder finishes, and records, the calls it
  was making when it froze);
- each content thread published exactly once: one `done` journal row and one `.md` file.

Each thread gets its own model spec (latency 0.3 s plus a different ten-thousandth), so the
shared cache answers nothing across threads and a thread's clean count does not depend on which
run happened to go first; inside a thread the cache answers a re-asked finished call.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ensemble.cli.main import main
from tests.corpus import write_corpus
from tests.postgres_server import PostgresServer

pytestmark = pytest.mark.integration

RUNS = 30
WORKERS = 3
SEED = 19
LATENCY = 0.3
WORKER_FLAGS = ("--stall-timeout", "4", "--leader-lease", "4", "--concurrency", "2")
KILL_EVERY = (2.0, 4.0)
"""Seconds between two SIGKILLs, drawn from the seeded generator."""
LEADER_SHARE = 0.3
"""How often a kill aims at the current leader on purpose (others hit it by chance)."""
FREEZE_AFTER = 6.0
"""Seconds into the chaos before a worker holding a thread is frozen (once)."""
CHAOS_DEADLINE = 240.0
CLEAN_DEADLINE = 150.0
TAKEOVER_DEADLINE = 60.0
STOP_GRACE = 30.0
SUBJECTS = (
    "the waggle dance",
    "the queen",
    "drones",
    "nectar",
    "pollen",
    "wax comb",
    "honey",
    "almond orchards",
    "apple blossoms",
    "brood cells",
)
ENSEMBLE = [sys.executable, "-m", "ensemble.cli.main"]

SPY = """
CREATE TABLE soak_writes (
    seq BIGSERIAL PRIMARY KEY,
    tbl TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL,
    checkpoint_id TEXT NOT NULL,
    epoch TEXT
);
CREATE FUNCTION soak_spy() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO soak_writes (tbl, thread_id, checkpoint_ns, checkpoint_id, epoch)
    VALUES (TG_TABLE_NAME, NEW.thread_id, NEW.checkpoint_ns, NEW.checkpoint_id,
            current_setting('ensemble.lease_epoch', true));
    RETURN NEW;
END
$$;
CREATE TRIGGER soak_spy AFTER INSERT OR UPDATE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION soak_spy();
CREATE TRIGGER soak_spy AFTER INSERT OR UPDATE ON checkpoint_writes
    FOR EACH ROW EXECUTE FUNCTION soak_spy();
"""
"""Test-only: the lease epoch every checkpoint and write row was inserted with, in order (an
AFTER trigger, so rows the fence refused leave no trace)."""

FORKS = (
    "SELECT thread_id, checkpoint_ns, parent_checkpoint_id, count(*) FROM checkpoints "
    "WHERE parent_checkpoint_id IS NOT NULL GROUP BY 1, 2, 3 HAVING count(*) > 1"
)
OUT_OF_EPOCH_ORDER = """
SELECT thread_id, tbl, checkpoint_id, epoch, before FROM (
    SELECT thread_id, tbl, checkpoint_id, epoch::bigint AS epoch,
           max(epoch::bigint) OVER (PARTITION BY thread_id ORDER BY seq
               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before
    FROM soak_writes WHERE epoch <> ''
) AS w WHERE epoch < before
"""
"""Rows written with an older epoch after a row of a newer one: a stale worker's write."""


@dataclass(frozen=True)
class Submission:
    thread_id: str
    scenario: str
    args: tuple[str, ...]


def submissions(workdir: Path, corpus: Path) -> list[Submission]:
    """30 runs, research/content/solver in turn, each with its own input and model spec."""
    runs = []
    for i in range(RUNS):
        scenario = ("research", "content", "solver")[i % 3]
        subject = SUBJECTS[i // 3]
        model = f"offline?latency={LATENCY + i / 10_000:.4f}"
        common = ("--yes", "--json", "--cache", "--model", model, "--corpus", str(corpus))
        if scenario == "research":
            first: tuple[str, ...] = (f"What do bees do with {subject} (question {i})?",)
        elif scenario == "content":
            first = (f"Bees and {subject}, part {i}",)
        else:
            first = ("--tasks", str(workflow(workdir / f"workflow-{i}.json", subject, i)))
        thread_id = f"soak-{i:02d}-{scenario}"
        runs.append(
            Submission(thread_id, scenario, (scenario, *first, *common, "--thread", thread_id))
        )
    return runs


def workflow(path: Path, subject: str, i: int) -> Path:
    """A solver workflow that solves offline: research, the sandbox, the calculator, a vote."""
    records = 500 + 37 * i
    code = (
        "import json\n"
        f"print(len(json.dumps([{{'id': n}} for n in range({records})], separators=(',', ':'))))"
    )
    tasks = [
        {
            "id": "look",
            "description": f"Explain what bees do with {subject}.",
            "capability": "research",
            "tool": "research",
            "input": f"How do bees use {subject} (case {i})?",
            "priority": 5,
        },
        {
            "id": "size",
            "description": f"Count the bytes of {records} compact records.",
            "capability": "code",
            "tool": "python",
            "input": code,
            "expect": "number",
            "checks": [{"kind": "range", "min": 1, "max": 10_000_000}],
        },
        {
            "id": "per-record",
            "description": "Average bytes per record.",
            "capability": "math",
            "tool": "calculator",
            "input": f"${{size}} / {records}",
            "expect": "number",
            "depends_on": ["size"],
        },
        {
            "id": "verdict",
            "description": f"In one sentence, what matters most about bees and {subject} ({i})?",
            "capability": "analysis",
            "replicas": 3,
            "vote": {"policy": "majority"},
            "depends_on": ["look", "per-record"],
        },
        {
            "id": "report",
            "description": f"Write a short summary about bees and {subject} ({i}).",
            "capability": "writing",
            "depends_on": ["verdict"],
        },
    ]
    path.write_text(json.dumps({"title": f"Bees and {subject}", "tasks": tasks}), "utf-8")
    return path


def ensemble_cli(*args: str) -> str:
    """Run one `ensemble` command in this process (no start-up per command); its stdout."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    assert code == 0, f"ensemble {' '.join(args)} failed ({code}):\n{err.getvalue()}"
    return out.getvalue()


def sql(url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return list(conn.execute(query, params).fetchall())  # type: ignore[arg-type]


def prepare(url: str, runs: list[Submission]) -> None:
    """Upgrade the database and queue every run, as a user would."""
    ensemble_cli("db", "upgrade", "--db", url)
    for run in runs:
        queued = json.loads(ensemble_cli("submit", *run.args, "--db", url))
        assert queued["thread_id"] == run.thread_id


def finished(url: str) -> Counter[str]:
    return Counter(status for (status,) in sql(url, "SELECT status FROM ensemble_runs"))


def audit_counts(url: str) -> dict[str, Counter[str]]:
    """Per thread: how many model calls and cache hits the audit trail recorded."""
    counts: dict[str, Counter[str]] = {}
    for thread_id, kind, n in sql(
        url,
        "SELECT thread_id, kind, count(*) FROM audit "
        "WHERE kind IN ('model_call', 'cache_hit') GROUP BY 1, 2",
    ):
        counts.setdefault(thread_id, Counter())[kind] = n
    return counts


def calls_per_step(url: str) -> dict[str, int]:
    """Per scenario: the most model requests one step of one thread made (clean run)."""
    rows = sql(
        url,
        "SELECT r.scenario, max(a.n) FROM ensemble_runs r JOIN ("
        "  SELECT thread_id, count(*) AS n FROM audit WHERE kind IN ('model_call', 'cache_hit')"
        "  GROUP BY thread_id, checkpoint_ns, checkpoint_id) AS a USING (thread_id) "
        "GROUP BY r.scenario",
    )
    return {scenario: int(n) for scenario, n in rows}


@dataclass
class Worker:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def signal(self, sig: int) -> None:
        """Signal the worker's whole process group (its sandboxes too): a machine going away."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    def text(self) -> str:
        return self.log.read_text("utf-8", errors="replace") if self.log.exists() else ""


@dataclass
class Pool:
    """The worker processes of one database, named w1, w2, ... (a new name for each start)."""

    url: str
    workdir: Path
    prefix: str = "w"
    extra: tuple[str, ...] = ()
    started: list[Worker] = field(default_factory=list)
    alive: list[Worker] = field(default_factory=list)

    def start(self) -> Worker:
        name = f"{self.prefix}{len(self.started) + 1}"
        log = self.workdir / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ENSEMBLE_", "OPENAI_"))}
        env["PYTHONUNBUFFERED"] = "1"
        command = [*ENSEMBLE, "worker", "--db", self.url, "--name", name, *self.extra]
        with log.open("wb") as out:
            process = subprocess.Popen(
                command,
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = Worker(name, process, log)
        self.started.append(worker)
        self.alive.append(worker)
        return worker

    def kill(self, worker: Worker) -> None:
        worker.signal(signal.SIGKILL)
        worker.process.wait(timeout=30)
        self.alive.remove(worker)

    def stop(self) -> None:
        """SIGCONT and SIGTERM every worker, then SIGKILL what is left after the grace."""
        for worker in self.alive:
            worker.signal(signal.SIGCONT)
            worker.signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for worker in self.alive:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            worker.signal(signal.SIGKILL)
            worker.process.wait(timeout=30)
        self.alive.clear()

    def logs(self) -> str:
        return "\n".join(f"--- {w.name}\n{w.text()}" for w in self.started)


@dataclass
class Freeze:
    """The one frozen worker: which thread it held, at which epoch, and what it did on waking."""

    worker: Worker | None = None
    thread_id: str = ""
    epoch: int = 0
    stopped_at: float = 0.0
    taken_at_epoch: int | None = None
    seq_at_cont: int = 0
    head_at_cont: str = ""
    woke: bool = False
    done: bool = False
    problem: str = ""


def clean_counts(server: PostgresServer, workdir: Path, runs: list[Submission]) -> str:
    """Run every submission once, with one worker and no chaos; the database's URL."""
    url = server.new_database(f"soak_clean_{uuid.uuid4().hex[:12]}")
    workdir.mkdir()
    prepare(url, runs)
    pool = Pool(url, workdir, prefix="clean", extra=("--concurrency", "4"))
    pool.start()
    try:
        deadline = time.monotonic() + CLEAN_DEADLINE
        while finished(url)["done"] + finished(url)["failed"] < RUNS:
            assert time.monotonic() < deadline, f"clean pass unfinished:\n{pool.logs()}"
            time.sleep(0.5)
    finally:
        pool.stop()
    assert finished(url)["done"] == RUNS, pool.logs()
    assert not sql(url, FORKS), "a clean run forked a thread"
    return url


def try_freeze(url: str, pool: Pool, freeze: Freeze, rng: random.Random) -> None:
    """SIGSTOP a live worker that holds a running thread (undone if the thread just moved)."""
    names = {w.name: w for w in pool.alive}
    held = [
        (thread_id, worker, int(epoch))
        for thread_id, worker, epoch in sql(
            url,
            "SELECT thread_id, worker, epoch FROM ensemble_runs "
            "WHERE status = 'running' ORDER BY thread_id",
        )
        if worker in names
    ]
    if not held:
        return
    thread_id, name, epoch = rng.choice(held)
    worker = names[name]
    worker.signal(signal.SIGSTOP)
    now = sql(
        url, "SELECT status, worker, epoch FROM ensemble_runs WHERE thread_id = %s", (thread_id,)
    )
    if now != [("running", name, epoch)]:  # it finished or moved before the stop landed
        worker.signal(signal.SIGCONT)
        return
    freeze.worker, freeze.thread_id, freeze.epoch = worker, thread_id, epoch
    freeze.stopped_at = time.monotonic()


def follow_freeze(url: str, freeze: Freeze) -> None:
    """After the takeover, wake the frozen worker; once it says it lost the thread, release it."""
    assert freeze.worker is not None
    if not freeze.woke:
        ((epoch,),) = sql(
            url, "SELECT epoch FROM ensemble_runs WHERE thread_id = %s", (freeze.thread_id,)
        )
        timed_out = time.monotonic() - freeze.stopped_at > TAKEOVER_DEADLINE
        if int(epoch) == freeze.epoch and not timed_out:
            return
        if timed_out:
            freeze.problem = f"no worker took {freeze.thread_id} over in {TAKEOVER_DEADLINE:g} s"
        freeze.taken_at_epoch = int(epoch)
        ((seq,),) = sql(url, "SELECT coalesce(max(seq), 0) FROM soak_writes")
        ((head,),) = sql(
            url,
            "SELECT coalesce(max(checkpoint_id), '') FROM checkpoints WHERE thread_id = %s",
            (freeze.thread_id,),
        )
        freeze.seq_at_cont, freeze.head_at_cont = int(seq), str(head)
        freeze.worker.signal(signal.SIGCONT)
        freeze.woke, freeze.stopped_at = True, time.monotonic()
        return
    said = f"lost thread {freeze.thread_id}" in freeze.worker.text()
    if said or time.monotonic() - freeze.stopped_at > TAKEOVER_DEADLINE:
        freeze.done = True  # the woken worker may be killed like any other from now on


@dataclass
class Chaos:
    """What the chaos loop did."""

    kills: int = 0
    leader_kills: int = 0
    seconds: float = 0.0
    freeze: Freeze = field(default_factory=Freeze)


def chaos(url: str, pool: Pool, rng: random.Random) -> Chaos:
    """Kill a worker every few seconds and freeze one, until every run ended or the deadline."""
    done = Chaos()
    freeze = done.freeze
    began = time.monotonic()
    next_kill = began + rng.uniform(*KILL_EVERY)
    while time.monotonic() - began < CHAOS_DEADLINE:
        statuses = finished(url)
        if statuses["done"] + statuses["failed"] == RUNS:
            break
        now = time.monotonic()
        if freeze.worker is None and now - began > FREEZE_AFTER:
            try_freeze(url, pool, freeze, rng)
        elif freeze.worker is not None and not freeze.done:
            follow_freeze(url, freeze)
        if now >= next_kill:
            spared = freeze.worker if not freeze.done else None
            targets = [w for w in pool.alive if w is not spared]
            ((leader,),) = sql(url, "SELECT worker FROM ensemble_leader WHERE id = 1")
            leading = [w for w in targets if w.name == leader]
            victim = leading[0] if leading and rng.random() < LEADER_SHARE else rng.choice(targets)
            done.leader_kills += victim.name == leader
            pool.kill(victim)
            done.kills += 1
            pool.start()
            next_kill = now + rng.uniform(*KILL_EVERY)
        time.sleep(0.2)
    done.seconds = time.monotonic() - began
    while freeze.worker is not None and not freeze.done:  # every run ended before it woke up
        follow_freeze(url, freeze)
        time.sleep(0.2)
    return done


@pytest.mark.timeout(600)
def test_soak_kills_and_a_freeze_leave_every_run_done_once(
    postgres_server: PostgresServer, postgres_url: str, tmp_path: Path
) -> None:
    corpus = write_corpus(tmp_path / "corpus")
    runs = submissions(tmp_path, corpus)
    clean_url = clean_counts(postgres_server, tmp_path / "clean", runs)
    clean = audit_counts(clean_url)
    step_calls = calls_per_step(clean_url)

    url = postgres_url
    prepare(url, runs)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SPY)  # type: ignore[arg-type]
    pool = Pool(url, tmp_path, extra=WORKER_FLAGS)
    try:
        for _ in range(WORKERS):
            pool.start()
        done = chaos(url, pool, random.Random(SEED))
    finally:
        pool.stop()
    freeze = done.freeze
    logs = pool.logs()

    rows = {
        thread_id: (status, int(attempts), scenario)
        for thread_id, status, attempts, scenario in sql(
            url, "SELECT thread_id, status, attempts, scenario FROM ensemble_runs"
        )
    }
    listed = {
        t["thread_id"]: t["status"]
        for t in json.loads(ensemble_cli("threads", "--json", "--db", url))["threads"]
    }
    forks = sql(url, FORKS)
    out_of_order = sql(url, OUT_OF_EPOCH_ORDER)
    unfenced = sql(url, "SELECT count(*) FROM soak_writes WHERE coalesce(epoch, '') = ''")[0][0]
    stale_after_wake = sql(
        url,
        "SELECT tbl, checkpoint_id FROM soak_writes WHERE thread_id = %s AND epoch = %s "
        "AND (seq > %s OR (tbl = 'checkpoints' AND checkpoint_id > %s))",
        (freeze.thread_id, str(freeze.epoch), freeze.seq_at_cont, freeze.head_at_cont),
    )
    calls = audit_counts(url)
    takeovers = {t: attempts - 1 for t, (_, attempts, _) in rows.items()}
    bounds = {
        run.thread_id: clean[run.thread_id]["model_call"]
        + (takeovers.get(run.thread_id, 0) + (run.thread_id == freeze.thread_id))
        * step_calls[run.scenario]
        for run in runs
    }  # a frozen holder also finishes, and records, the calls it was making when it froze
    over_bound = [
        (t, calls.get(t, Counter())["model_call"], bound)
        for t, bound in bounds.items()
        if calls.get(t, Counter())["model_call"] > bound
    ]
    content = {r.thread_id for r in runs if r.scenario == "content"}
    journal = sql(url, "SELECT thread_id, status, slug FROM publish_journal")
    published = sorted(p.name for p in (tmp_path / ".ensemble" / "published").glob("*.md"))
    leader_epochs = set(re.findall(r": leader \(epoch (\d+)\)", logs))
    model_calls = sum(c["model_call"] for c in calls.values())
    clean_calls = sum(c["model_call"] for c in clean.values())
    bound_total = sum(bounds.values())
    print(
        f"\nsoak: runs={RUNS} done={sum(s == 'done' for s, _, _ in rows.values())} "
        f"takeovers={sum(takeovers.values())} kills={done.kills} leader_kills={done.leader_kills} "
        f"leader_changes={len(leader_epochs)} workers_started={len(pool.started)} "
        f"model_calls={model_calls} clean_model_calls={clean_calls} bound={bound_total} "
        f"cache_hits={sum(c['cache_hit'] for c in calls.values())} "
        f"clean_cache_hits={sum(c['cache_hit'] for c in clean.values())} "
        f"publications={sum(s == 'done' for _, s, _ in journal)} md_files={len(published)} "
        f"frozen={freeze.worker and freeze.worker.name}:{freeze.thread_id} "
        f"epoch {freeze.epoch}->{freeze.taken_at_epoch} chaos_s={done.seconds:.0f} "
        f"calls_per_step={step_calls}"
    )
    for run in runs:
        c = calls.get(run.thread_id, Counter())
        print(
            f"  {run.thread_id}: takeovers={takeovers.get(run.thread_id)} "
            f"model_calls={c['model_call']} clean={clean[run.thread_id]['model_call']} "
            f"bound={bounds[run.thread_id]} cache_hits={c['cache_hit']}"
        )

    assert {t: s for t, (s, _, _) in rows.items()} == dict.fromkeys(
        (r.thread_id for r in runs), "done"
    ), logs
    assert {t: listed.get(t) for t in rows} == dict.fromkeys(rows, "done")
    assert not forks, f"forked threads: {forks}"
    assert not out_of_order, f"rows written with a stale epoch: {out_of_order[:10]}"
    assert unfenced == 0, "a checkpoint row written by a connection that held no lease"
    assert not over_bound, (
        f"model calls beyond clean + in flight (thread, calls, bound): {over_bound}"
    )
    assert sorted(t for t, s, _ in journal if s == "done") == sorted(content), journal
    assert len(journal) == len(content), journal
    assert published == sorted(f"{slug}.md" for _, _, slug in journal), published
    assert done.kills >= 5 and sum(takeovers.values()) >= 2, "the chaos was too short to mean much"
    assert freeze.worker is not None, "no worker was ever frozen while holding a thread"
    assert not freeze.problem, freeze.problem
    assert freeze.taken_at_epoch is not None and freeze.taken_at_epoch > freeze.epoch
    assert f"lost thread {freeze.thread_id}" in freeze.worker.text(), freeze.worker.text()
    assert not stale_after_wake, f"the frozen worker wrote after waking: {stale_after_wake}"
