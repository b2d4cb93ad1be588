"""Delivery you can trust: 500 events, three subscriptions, a dispatcher killed at random.

The same test on SQLite (the dispatcher runs the deliveries itself) and on PostgreSQL (the
dispatcher queues them for two `ensemble worker` processes). Events are published in batches
while the dispatcher is SIGKILLed every 1-3 seconds and started again; among them are events
published twice under one id, events whose dedupe key repeats an earlier one, and events whose
data does not fit the subscription's input. At the end:

- every (event, subscription) pair that should run has exactly one thread, whose history holds
  exactly one start (one `input` checkpoint): nothing started twice, whatever the kills hit;
- no other thread exists; repeated ids stored one event; repeated keys started nothing;
- every bad event is in the dead-letter list with the validation error, and has no thread;
- every content brief was published once (one file pair per brief).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from ensemble.db import database
from ensemble.events.event import make_event
from ensemble.events.routing import delivery_thread
from ensemble.events.store import deliveries, publish
from ensemble.persistence import list_threads, open_async_checkpointer
from ensemble.runner import thread_config
from tests.corpus import write_corpus
from tests.databases import upgraded

pytestmark = pytest.mark.integration

ENSEMBLE = [sys.executable, "-m", "ensemble.cli.main"]
SETTLE_TIMEOUT = 420.0
QUESTIONS = 300
REPEATED_IDS = 60
REPEATED_KEYS = 40
BAD = 30
NOTES = 70
URGENT_EVERY = 10

SUBSCRIPTIONS = """\
subscriptions:
  - name: answer
    event: question.asked
    scenario: research
    input:
      question: "{{{{ data.question }}}}"
      corpus: {corpus}
      max_researchers: 1
      max_revisions: 0
    dedupe: "{{{{ data.key }}}}"
    concurrency: 3
    backoff: 0.2
  - name: brief
    event: question.asked
    filter: data.get("urgent") == true
    scenario: content
    approve: true
    input:
      topic: "{{{{ data.question }}}}"
      corpus: {corpus}
      target_words: 80
      max_revisions: 0
      output_dir: {out}
    concurrency: 2
    priority: 5
  - name: recap
    event: note.added
    scenario: research
    input:
      question: "What does the note {{{{ data.title }}}} say about bees?"
      corpus: {corpus}
      max_researchers: 1
      max_revisions: 0
    concurrency: 2
"""


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENSEMBLE_", "OPENAI_"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def the_events() -> tuple[list[Any], set[tuple[str, str]], set[str]]:
    """500 publishes in a shuffled order; the pairs that must run; the bad event ids."""
    rng = random.Random(20)
    topics = ["honey", "pollen", "the waggle dance", "wax comb", "the queen", "drones"]
    events, expected, bad = [], set(), set()
    for n in range(QUESTIONS):
        urgent = n % URGENT_EVERY == 0
        data = {"question": f"What about {topics[n % len(topics)]}, case {n}?", "key": f"k{n}"}
        if urgent:
            data["urgent"] = True
        events.append(make_event("question.asked", data, source="test", id=f"q{n}"))
        expected.add((f"q{n}", "answer"))
        if urgent:
            expected.add((f"q{n}", "brief"))
    events += [events[n] for n in rng.sample(range(QUESTIONS), REPEATED_IDS)]
    for n in range(REPEATED_KEYS):  # a new id, an old key: `answer` starts nothing
        data = {"question": f"Again about case {n}?", "key": f"k{n}"}
        events.append(make_event("question.asked", data, source="test", id=f"again{n}"))
    for n in range(BAD):  # no question: `answer` cannot fill its input
        events.append(make_event("question.asked", {"key": f"bad{n}"}, source="t", id=f"bad{n}"))
        bad.add(f"bad{n}")
    for n in range(NOTES):
        data = {"title": f"hive note {n}"}
        events.append(make_event("note.added", data, source="test", id=f"note{n}"))
        expected.add((f"note{n}", "recap"))
    rng.shuffle(events)
    assert len(events) == 500
    return events, expected, bad


class Killer:
    """Starts the dispatcher, SIGKILLs it every 1-3 s and starts it again."""

    def __init__(self, command: list[str], cwd: Path, db: Any) -> None:
        self.command, self.cwd, self.db = command, cwd, db
        self.rng = random.Random(7)
        self.kills = 0
        self.mid_delivery = 0
        self.starts = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.next_kill = 0.0

    def start(self) -> None:
        log = (self.cwd / f"dispatcher-{self.starts}.log").open("wb")
        self.process = subprocess.Popen(
            self.command, cwd=self.cwd, env=clean_env(), stdout=log, stderr=subprocess.STDOUT
        )
        self.starts += 1
        self.next_kill = time.monotonic() + self.rng.uniform(1.0, 3.0)

    def tick(self, killing: bool) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"the dispatcher exited by itself ({self.process.returncode})")
        if killing and time.monotonic() >= self.next_kill:
            started = [d for d in deliveries(self.db, limit=10000) if d["status"] == "started"]
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.kills += 1
            self.mid_delivery += bool(started)
            self.start()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def settled(db: Any, pairs: int) -> bool:
    found = deliveries(db, limit=10000)
    return len(found) >= pairs and all(d["status"] in ("done", "dead", "duplicate") for d in found)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_every_pair_runs_exactly_once_while_the_dispatcher_is_killed(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    corpus = write_corpus(tmp_path / "corpus")
    out = tmp_path / "published"
    out.mkdir()
    subscriptions = tmp_path / "subscriptions.yaml"
    subscriptions.write_text(SUBSCRIPTIONS.format(corpus=corpus, out=out), encoding="utf-8")
    if kind == "sqlite":
        url = str(tmp_path / "events.db")
    else:
        url = upgraded(str(request.getfixturevalue("postgres_url")))
    db = database(url)
    events, expected, bad = the_events()
    dispatcher = [*ENSEMBLE, "events", "run", "--db", url, "--subscriptions", str(subscriptions)]
    killer = Killer(dispatcher, tmp_path, db)
    workers: list[subprocess.Popen[bytes]] = []
    if kind == "postgresql":
        for n in range(2):
            log = (tmp_path / f"worker-{n}.log").open("wb")
            workers.append(
                subprocess.Popen(
                    [*ENSEMBLE, "worker", "--db", url, "--name", f"w{n}", "--concurrency", "2"],
                    cwd=tmp_path, env=clean_env(), stdout=log, stderr=subprocess.STDOUT,
                )
            )  # fmt: skip
    pairs = len(expected) + BAD + REPEATED_KEYS
    try:
        killer.start()
        batches = [events[i : i + 50] for i in range(0, len(events), 50)]
        deadline = time.monotonic() + SETTLE_TIMEOUT
        next_batch = time.monotonic()
        while batches or not settled(db, pairs):
            assert time.monotonic() < deadline, (
                f"not settled: {Counter(d['status'] for d in deliveries(db, limit=10000))}"
            )
            if batches and time.monotonic() >= next_batch:
                publish(db, *batches.pop(0))
                next_batch = time.monotonic() + 0.5
            killer.tick(killing=killer.kills < 12)
            time.sleep(0.1)
    finally:
        killer.stop()
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(60)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()

    assert killer.kills >= 5 and killer.mid_delivery >= 2, (killer.kills, killer.mid_delivery)
    found = {(d["event_id"], d["subscription"]): d for d in deliveries(db, limit=10000)}
    duplicates = {pair: d for pair, d in found.items() if d["status"] == "duplicate"}
    assert len(duplicates) == REPEATED_KEYS
    for n in range(REPEATED_KEYS):  # one key, two events: the one routed first ran
        first, second = (f"q{n}", "answer"), (f"again{n}", "answer")
        if first in duplicates:
            expected.remove(first)
            expected.add(second)
            first, second = second, first
        assert duplicates[second]["duplicate_of"] == first[0]
        assert duplicates[second]["thread_id"] == delivery_thread(*first)
    done = {pair for pair, d in found.items() if d["status"] == "done"}
    assert done == expected
    dead = {pair: d["error"] for pair, d in found.items() if d["status"] == "dead"}
    assert set(dead) == {(event_id, "answer") for event_id in bad}
    assert all("UndefinedError" in reason and "question" in reason for reason in dead.values())

    threads = {t.thread_id for t in list_threads(db)}
    assert threads == {delivery_thread(*pair) for pair in expected}

    async def starts_and_results() -> tuple[Counter[str], list[str]]:
        counted: Counter[str] = Counter()
        empty: list[str] = []  # "done" threads without their result: a run that never finished
        async with open_async_checkpointer(db) as saver:
            for thread in threads:
                async for saved in saver.alist(thread_config(thread)):
                    if saved.metadata.get("source") == "input":
                        counted[thread] += 1
                latest = await saver.aget_tuple(thread_config(thread))
                values = latest.checkpoint["channel_values"] if latest else {}
                if not values.get("report") and values.get("outcome") != "published":
                    empty.append(thread)
        return counted, empty

    import asyncio

    counted, empty = asyncio.run(starts_and_results())
    assert set(counted.values()) == {1}, [t for t, n in counted.items() if n != 1]
    assert empty == []
    briefs = sum(1 for pair in expected if pair[1] == "brief")
    assert len(list(out.glob("*.md"))) == briefs
    print(
        f"\n{kind}: {len(events)} events, {len(expected)} runs, kills={killer.kills} "
        f"(mid-delivery {killer.mid_delivery}), dead={len(dead)}, duplicates={len(duplicates)}"
    )


def test_two_postgresql_dispatchers_share_the_work_and_repeat_nothing(
    tmp_path: Path, postgres_url: str
) -> None:
    """Any number of dispatchers may run on PostgreSQL: each delivery is queued by one."""
    corpus = write_corpus(tmp_path / "corpus")
    subscriptions = tmp_path / "subscriptions.yaml"
    subscriptions.write_text(
        SUBSCRIPTIONS.format(corpus=corpus, out=tmp_path / "published"), encoding="utf-8"
    )
    url = upgraded(postgres_url)
    db = database(url)
    command = [*ENSEMBLE, "events", "run", "--db", url, "--subscriptions", str(subscriptions)]
    logs = [tmp_path / f"dispatcher-{n}.log" for n in range(2)]
    processes = [
        subprocess.Popen(command, cwd=tmp_path, env=clean_env(), stdout=log.open("wb"),
                         stderr=subprocess.STDOUT)
        for log in logs
    ]  # fmt: skip
    worker_log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [*ENSEMBLE, "worker", "--db", url, "--concurrency", "2"],
        cwd=tmp_path, env=clean_env(), stdout=worker_log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    events = [
        make_event("note.added", {"title": f"hive note {n}"}, source="test", id=f"n{n}")
        for n in range(60)
    ]
    try:
        for start in range(0, len(events), 5):
            publish(db, *events[start : start + 5])
            time.sleep(0.2)
        deadline = time.monotonic() + 180
        while not settled(db, len(events)):
            assert time.monotonic() < deadline, Counter(d["status"] for d in deliveries(db))
            time.sleep(0.2)
    finally:
        for process in [*processes, worker]:
            process.send_signal(signal.SIGTERM)
        for process in [*processes, worker]:
            process.wait(60)
    found = deliveries(db, limit=1000)
    assert {d["status"] for d in found} == {"done"} and len(found) == len(events)
    assert all(d["attempts"] == 1 for d in found)
    queued = [log.read_text().count(": queued research thread") for log in logs]
    assert sum(queued) == len(events) and all(queued), queued  # both took part, none twice
