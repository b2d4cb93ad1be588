"""The fault-injection suite: every scenario run as a user runs it, with its provider failing.

Real `ensemble` processes talk to the fake OpenAI-compatible server (`tests.fake_openai`), which
breaks the FIRST few requests of a run with one fault: a request held open past the timeout,
429 with Retry-After, 500, a reset connection, a malformed JSON body, malformed tool arguments,
an empty answer. Every run uses `--model openai:fault-model --model-timeout 1
--model-retries 1`, so one model call is at most two requests, both made by Ensemble's guard
(the client never retries); the counts are chosen so that some faults are absorbed by the
guard's retry, others exhaust it (then the node's retry policy, the structured-output retry, a
team's or a solver worker's retry, or nothing, absorbs the failed call), and some open the
endpoint's breaker (three failed requests in a row) and stop the run.

For each case the suite asserts the outcome honestly: the run finishes (status done), or it
stops with a one-line reason and a "Resume with" hint, and `ensemble resume` with the fault
gone finishes it. For every run it also checks that no agent prompt got more good answers
than in a clean run of the scenario (finished work is not redone, by a retry or by the
resume; when the retries absorb the fault, the good answers are exactly the clean run's), and
that the audit trail holds one `model_call` row per request the server saw: `ok` for every
answered request, `error` (naming the fault) for every failed one. Runs that stop
and are resumed, the breaker and the budget read the trail through `ensemble audit THREAD
--json`; the others read the same rows in-process (`ensemble.audit.events`, what the command
prints), which saves a process start per case.

Two more cases: the breaker (a primary that keeps failing, `--fallback offline`) and budgets
(`--budget '{"calls": 3}'`, then a resume with a higher budget).

The full product (3 scenarios x 7 faults) takes too long for the suite's time box (each run is
a few seconds of process start and model calls): research gets every fault, content and solver
a representative subset (`CASES`). The module ends by printing the table
`fault x scenario -> outcome, requests, seconds` (run pytest with `-s` to see it) and writing it
to `benchmarks/results/fault_table.md`.

Two bugs it found are fixed and kept as tests: a malformed body now goes to the fallback, and a
budget stop no longer turns pending research into failed notes.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ensemble.audit import events
from tests.corpus import write_corpus
from tests.fake_openai import FakeOpenAI

pytestmark = pytest.mark.integration

ENSEMBLE = str(Path(sys.executable).parent / "ensemble")
ROOT = Path(__file__).resolve().parents[2]
TASKS = ROOT / "ensemble" / "tasks" / "examples" / "json_report.yaml"
TABLE = ROOT / "benchmarks" / "results" / "fault_table.md"
MODEL = "openai:fault-model"
QUESTION = "How do bees make honey?"
LIMITS = ["--model-timeout", "1", "--model-retries", "1", "--max-concurrency", "2"]
PROCESS_TIMEOUT = 120

FAULTS: dict[str, dict[str, Any]] = {
    "stall": {"kind": "stall", "seconds": 2},  # held open twice the 1 s timeout
    "429": {"kind": "status", "code": 429, "headers": {"Retry-After": "1"}},
    "500": {"kind": "status", "code": 500},
    "reset": {"kind": "reset"},
    "garbage": {"kind": "garbage"},
    "bad_args": {"kind": "bad_args"},
    "empty": {"kind": "empty"},
}
LABELS = {
    "none": "no fault (reference)",
    "stall": "held open past the timeout",
    "429": "429 + Retry-After: 1",
    "500": "500",
    "reset": "connection reset",
    "garbage": "malformed JSON body",
    "bad_args": "malformed tool arguments",
    "empty": "empty answer",
}
REASONS = {
    "stall": "Timeout",
    "429": "429",
    "500": "500",
    "reset": "Connection",
    "garbage": "JSONDecodeError",
}
"""What the audit's error row of a call says about the fault that exhausted its retries."""
ANSWERED = (None, "bad_args", "empty")
"""Faults after which the server still sends a well-formed 200 (the call itself succeeds)."""


# -- the server --------------------------------------------------------------------------------


class FaultServer(FakeOpenAI):
    """The fake server, remembering which fault each request got (None: answered normally)."""

    def __init__(self) -> None:
        super().__init__()
        self.served: list[tuple[dict[str, Any], str | None]] = []
        self._lock = threading.Lock()
        self._local = threading.local()

    def admit(self, body: dict[str, Any]) -> None:
        self._local.body = body  # the handler asks for its fault next, on the same thread
        super().admit(body)

    def next_fault(self) -> dict[str, Any] | None:
        with self._lock:
            fault = super().next_fault()
            self.served.append((self._local.body, fault["kind"] if fault else None))
        return fault

    def mark(self) -> int:
        with self._lock:
            return len(self.served)

    def since(self, start: int) -> list[tuple[dict[str, Any], str | None]]:
        with self._lock:
            return list(self.served[start:])


def request_key(body: dict[str, Any]) -> str:
    """One agent prompt: the conversation and the function it forces, if any.

    Tool-call ids are left out: the fake server numbers them by arrival, so a faulted request
    earlier in the run would change the key of an otherwise identical prompt.
    """
    messages = json.loads(json.dumps(body.get("messages") or []))
    for message in messages:
        message.pop("tool_call_id", None)
        for call in message.get("tool_calls") or []:
            call.pop("id", None)
    asked = {"messages": messages, "tool_choice": body.get("tool_choice")}
    return hashlib.sha256(json.dumps(asked, sort_keys=True).encode()).hexdigest()[:16]


def describe(body: dict[str, Any]) -> str:
    """A readable name of a request, for assertion messages."""
    choice = body.get("tool_choice")
    forced = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
    messages = body.get("messages") or [{}]
    system = " ".join(str(messages[0].get("content") or "").split()[:6])
    last = " ".join(str(messages[-1].get("content") or "").split()[:8])
    return f"{forced or 'text'} | {system} | {last}"


# -- running the CLI ---------------------------------------------------------------------------


def cli_env(base_url: str) -> dict[str, str]:
    """No inherited Ensemble/OpenAI/proxy settings; no cache, so every call reaches the server."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ENSEMBLE_", "OPENAI_")) and "proxy" not in k.lower()
    }
    env |= {"ENSEMBLE_MODEL": "offline", "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    env |= {"ENSEMBLE_CACHE": "0", "OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": "test-key"}
    return env


def ensemble(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ENSEMBLE, *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def scenario_argv(scenario: str, corpus: Path) -> list[str]:
    """A small run of each scenario."""
    if scenario == "research":
        return ["research", QUESTION, "--corpus", str(corpus), "--max-revisions", "0",
                "--max-researchers", "2"]  # fmt: skip
    if scenario == "content":
        return ["content", QUESTION, "--corpus", str(corpus), "--target-words", "120", "--yes"]
    return ["solver", "--tasks", str(TASKS), "--corpus", str(corpus), "--yes"]


@dataclass
class Step:
    """One CLI process (a run or a resume) and what the server saw while it ran."""

    done: subprocess.CompletedProcess[str]
    served: list[tuple[dict[str, Any], str | None]]
    seconds: float

    @property
    def result(self) -> dict[str, Any]:
        try:
            return json.loads(self.done.stdout)
        except json.JSONDecodeError:
            pytest.fail(f"no JSON on stdout:\n{self.done.stdout}\nstderr:\n{self.done.stderr}")

    def why(self) -> str:
        return f"{self.done.args}\nexit {self.done.returncode}\nstderr:\n{self.done.stderr[-4000:]}"


def step(server: FaultServer, env: dict[str, str], *argv: str) -> Step:
    start, started = server.mark(), time.monotonic()
    done = ensemble(env, *argv)
    return Step(done, server.since(start), time.monotonic() - started)


def assert_paused_with_a_reason(run: Step, thread: str, *words: str) -> str:
    """Status interrupted (a person decides), the reason in one line, then how to go on."""
    assert run.done.returncode == 0, run.why()
    result = run.result
    assert result["status"] == "interrupted" and result["next"], result
    question = result["interrupt"]["value"]
    assert question["kind"] == "halted", question
    reason = question["reason"]
    assert reason and "\n" not in reason, reason
    lines = run.done.stderr.rstrip("\n").splitlines()
    assert lines[-2] == f"Paused: {reason}", run.why()
    assert lines[-1].startswith(f"Go on with: ensemble resume {thread} --answer"), run.why()
    for word in words:
        assert word in reason, reason
    return reason


def audit_rows(env: dict[str, str], db: Path, thread: str) -> list[dict[str, Any]]:
    """`ensemble audit THREAD --json`: the thread's audit events, oldest first."""
    done = ensemble(env, "audit", thread, "--db", str(db), "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["events"]


def model_calls(rows: list[dict[str, Any]], outcome: str) -> list[dict[str, Any]]:
    return [r for r in rows if r["kind"] == "model_call" and r["outcome"] == outcome]


def answered_keys(served: list[tuple[dict[str, Any], str | None]]) -> Counter[str]:
    """How many good answers each agent prompt got."""
    return Counter(request_key(body) for body, fault in served if fault is None)


def assert_no_work_repeated(
    steps: list[Step], clean: Counter[str], *, same_requests: bool = False
) -> None:
    """No agent prompt got more good answers than in a clean run: finished work is not redone.

    Counted over the run and its resume together, so a resume that redid a finished node (or a
    retry that redid a finished call) shows up as a prompt answered once too often. Prompts may
    repeat in a clean run (the voting replicas of the solver, the editor's rounds), hence the
    comparison with one. With `same_requests` (a fault the retries absorb entirely), the good
    answers must be exactly those of the clean run: nothing redone, nothing lost.
    """
    served = [pair for s in steps for pair in s.served]
    got = answered_keys(served)
    extra = {k: n - clean[k] for k, n in got.items() if k in clean and n > clean[k]}
    if extra:
        where = [
            (i, describe(body))
            for i, s in enumerate(steps)
            for body, fault in s.served
            if fault is None and request_key(body) in extra
        ]
        pytest.fail(f"answered more often than in a clean run (step, prompt): {where}")
    if same_requests:
        missing = clean - got
        assert got == clean, (sum(missing.values()), sum((got - clean).values()))


def assert_audit_matches_the_server(
    rows: list[dict[str, Any]], served: list[tuple[dict[str, Any], str | None]]
) -> None:
    """One `ok` model_call row per answered request, each naming the model that answered."""
    ok = model_calls(rows, "ok")
    answered = [body for body, fault in served if fault in ANSWERED]
    assert len(ok) == len(answered), (len(ok), [describe(b) for b in answered])
    assert {r["model"] for r in ok} <= {MODEL}, ok


# -- the outcome table -------------------------------------------------------------------------


@dataclass
class Row:
    scenario: str
    fault: str
    injected: str
    handled_by: str
    outcome: str
    requests: int
    """Requests the server saw, run and resume together."""
    seconds: float
    """Wall-clock seconds of the CLI processes, run and resume together."""


TABLE_ROWS: list[Row] = []


def table_markdown(rows: list[Row]) -> str:
    order = {"research": 0, "content": 1, "solver": 2, "breaker": 3, "budget": 4}
    faults = ["none", *FAULTS]
    rows = sorted(
        rows,
        key=lambda r: (order.get(r.scenario, 9), faults.index(r.fault) if r.fault in faults else 9),
    )
    lines = [
        f"Fault injection: `ensemble run SCENARIO --model {MODEL} --model-timeout 1 "
        "--model-retries 1` against the fake OpenAI server; the fault hits the first N requests.",
        "",
        "| fault | scenario | injected into | handled by | outcome | requests | seconds |",
        "|---|---|---|---|---|---:|---:|",
    ]
    for r in rows:
        label = LABELS.get(r.fault, r.fault)
        lines.append(
            f"| {label} | {r.scenario} | {r.injected} | {r.handled_by} | {r.outcome} "
            f"| {r.requests} | {r.seconds:.1f} |"
        )
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module", autouse=True)
def fault_table() -> Iterator[None]:
    """Print the table and write it to `benchmarks/results/fault_table.md` when the module ends."""
    TABLE_ROWS.clear()
    yield
    if not TABLE_ROWS:
        return
    text = table_markdown(TABLE_ROWS)
    TABLE.parent.mkdir(parents=True, exist_ok=True)
    TABLE.write_text(text, encoding="utf-8")
    print(f"\n\n{text}\n(written to {TABLE.relative_to(ROOT)})")


def describe_outcome(scenario: str, result: dict[str, Any]) -> str:
    """The run's status and, where the scenario says more, its own outcome."""
    output = result.get("output") or {}
    if result["status"] != "done":
        return result["status"]
    if scenario == "content":
        return "done, published" if output.get("published") else f"done, {output.get('outcome')}"
    return f"done, {output.get('outcome')}"


# -- scenario x fault --------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    scenario: str
    fault: str
    count: int
    """How many of the first requests get the fault."""
    errors: int
    """`model_call` rows with outcome `error`: one per failed request."""
    stops: bool = False
    """The run pauses for a person (no model left) and a resume with the fault gone finishes it."""
    outcome: str | None = None
    """The scenario's own outcome at the end (research/solver `outcome`), if it is checked."""
    absorbed_by: str = ""
    """What absorbs the fault (for the reader; the table shows what happened)."""
    same_requests: bool = True
    """The good answers are exactly those of a clean run (False: the fault changed the work)."""

    @property
    def id(self) -> str:
        return f"{self.scenario}-{self.fault}x{self.count}"


CLEAN = "as in the clean run"
"""A case's expected outcome when the fault must not change how the run ends."""

CASES = [
    # research: every fault. The planner calls first; its node retries 3 times.
    Case("research", "stall", 1, 1, outcome=CLEAN, absorbed_by="the guard's retry"),
    Case("research", "429", 2, 2, outcome=CLEAN, absorbed_by="the planner node's retry"),
    Case("research", "500", 3, 3, stops=True, outcome=CLEAN,
         absorbed_by="nothing: 3 failed requests open the breaker, the run pauses for a person"),
    Case("research", "reset", 2, 2, outcome=CLEAN, absorbed_by="the planner node's retry"),
    Case("research", "garbage", 1, 1, outcome=CLEAN,
         absorbed_by="the planner node's retry (a garbled body counts as an endpoint fault)"),
    Case("research", "bad_args", 3, 0, same_requests=False,
         absorbed_by="structured-output retries exhausted; the plan falls back to the question"),
    # The fake model fills a retried plan from the last user message, the retry's note, so
    # the plan's sub-questions are that note and the reviewer finds gaps: max_revisions.
    Case("research", "empty", 2, 0, outcome="max_revisions", same_requests=False,
         absorbed_by="the structured-output retry (the fake then plans from the retry's note)"),
    # content: the research team (a subgraph) calls first; a failed team is sent again.
    Case("content", "429", 1, 1, absorbed_by="the guard's retry"),
    Case("content", "stall", 2, 2, absorbed_by="the research planner node's retry"),
    Case("content", "500", 3, 3, stops=True,
         absorbed_by="nothing: the breaker opens, the run pauses for a person"),
    Case("content", "garbage", 1, 1, absorbed_by="the chief sends the failed research team again"),
    Case("content", "bad_args", 3, 0, same_requests=False,
         absorbed_by="structured-output retries exhausted; the plan falls back to the topic"),
    # solver: the research task's planner calls first (the code tasks call no model).
    Case("solver", "500", 2, 2, outcome="solved", absorbed_by="a retry of the research task"),
    Case("solver", "reset", 3, 3, outcome="partial", same_requests=False,
         absorbed_by="nothing: the breaker opens, the research task and its dependants fail"),
    Case("solver", "garbage", 1, 1, outcome="solved", absorbed_by="a retry of the research task"),
    Case("solver", "empty", 3, 0, outcome="solved", same_requests=False,
         absorbed_by="structured-output retries exhausted; the plan falls back to the question"),
]  # fmt: skip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("fault-corpus") / "corpus")


CLEAN_OUTCOMES: dict[str, Any] = {}
"""Each scenario's outcome without faults: a run the fault did not change ends the same way."""


@pytest.fixture(scope="module")
def clean_run(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Counter]:
    """Each scenario's agent prompts in a run without faults (run on first use, then kept)."""
    made: dict[str, Counter[str]] = {}

    def clean(scenario: str) -> Counter[str]:
        if scenario not in made:
            db = tmp_path_factory.mktemp(f"clean-{scenario}") / "ensemble.db"
            with FaultServer() as server:
                argv = ["run", *scenario_argv(scenario, corpus), "--model", MODEL, *LIMITS,
                        "--db", str(db), "--json"]  # fmt: skip
                run = step(server, cli_env(server.base_url), *argv)
            assert run.done.returncode == 0 and run.result["status"] == "done", run.why()
            outcome = describe_outcome(scenario, run.result)
            TABLE_ROWS.append(
                Row(scenario, "none", "-", "-", outcome, len(run.served), run.seconds)
            )
            made[scenario] = answered_keys(run.served)
            CLEAN_OUTCOMES[scenario] = run.result["output"].get("outcome")
        return made[scenario]

    return clean


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_scenario_under_fault(
    case: Case, corpus: Path, tmp_path: Path, clean_run: Callable[[str], Counter]
) -> None:
    clean = clean_run(case.scenario)
    db, thread = tmp_path / "ensemble.db", str(uuid.uuid4())
    with FaultServer() as server:
        env = cli_env(server.base_url)
        server.faults = [dict(FAULTS[case.fault]) for _ in range(case.count)]
        argv = ["run", *scenario_argv(case.scenario, corpus), "--model", MODEL, *LIMITS,
                "--db", str(db), "--thread", thread, "--json"]  # fmt: skip
        run = step(server, env, *argv)
        steps = [run]
        faulted = [fault for _, fault in run.served if fault is not None]
        assert faulted == [FAULTS[case.fault]["kind"]] * case.count, faulted  # all were used
        if case.stops:
            reason = assert_paused_with_a_reason(run, thread)
            before = events(db, thread)  # the trail at the stop
            assert len(model_calls(before, "error")) == case.errors, before
            server.faults = []  # the provider is back
            approve = ["--yes"] if case.scenario != "research" else []  # as the run was
            resumed = step(server, env, "resume", thread, "--db", str(db), *approve, "--json")
            steps.append(resumed)
            assert resumed.done.returncode == 0, resumed.why()
            final = resumed.result
            rows = audit_rows(env, db, thread)  # through the CLI: `ensemble audit --json`
            assert [r["id"] for r in rows[: len(before)]] == [r["id"] for r in before]
            new_ok = model_calls(rows[len(before) :], "ok")
            assert len(new_ok) == len([b for b, f in resumed.served if f in ANSWERED])
        else:
            assert run.done.returncode == 0, run.why()
            final = run.result
            reason = ""
            rows = events(db, thread)  # what `ensemble audit --json` prints, read in-process

    assert final["status"] == "done", final
    output = final["output"] or {}
    if case.outcome is not None:
        expected = CLEAN_OUTCOMES[case.scenario] if case.outcome == CLEAN else case.outcome
        assert output.get("outcome") == expected, output.get("outcome")
    if case.scenario == "content":
        assert output.get("published"), output
    assert_no_work_repeated(steps, clean, same_requests=case.same_requests)
    served = [pair for s in steps for pair in s.served]
    assert_audit_matches_the_server(rows, served)
    errors = model_calls(rows, "error")
    assert len(errors) == case.errors, [e["detail"] for e in errors]
    for row in errors:
        assert REASONS[case.fault] in row["detail"]["reason"], row
        assert row["model"] == MODEL

    outcome = describe_outcome(case.scenario, final)
    if case.stops:
        outcome = f"paused ({reason.split(':')[0]}) -> resume: {outcome}"
    outcome += f"; {case.errors} error row{'s' if case.errors != 1 else ''}"
    TABLE_ROWS.append(
        Row(case.scenario, case.fault,
            f"first {case.count} requests" if case.count > 1 else "first request",
            case.absorbed_by,
            outcome, len(served), sum(s.seconds for s in steps))
    )  # fmt: skip


# -- the breaker -------------------------------------------------------------------------------


def test_a_primary_that_keeps_failing_is_replaced_by_the_fallback(
    corpus: Path, tmp_path: Path
) -> None:
    db, thread = tmp_path / "ensemble.db", str(uuid.uuid4())
    with FaultServer() as server:
        env = cli_env(server.base_url)
        server.faults = [dict(FAULTS["500"]) for _ in range(200)]  # the provider stays down
        argv = ["run", *scenario_argv("research", corpus), "--model", MODEL, *LIMITS,
                "--fallback", "offline", "--db", str(db), "--thread", thread, "--json"]  # fmt: skip
        run = step(server, env, *argv)
        rows = audit_rows(env, db, thread)

    assert run.done.returncode == 0, run.why()
    result = run.result
    assert result["status"] == "done" and result["output"]["report"], result
    errors = model_calls(rows, "error")
    assert len(errors) == 3 and {r["model"] for r in errors} == {MODEL}, errors
    # every failed request is an error row; once the breaker opened, none went out
    assert len(run.served) == len(errors), len(run.served)
    assert {fault for _, fault in run.served} == {"status"}
    opened = [r for r in rows if r["kind"] == "breaker" and r["outcome"] == "open"]
    assert [r["detail"]["breaker"] for r in opened] == [f"model:{MODEL}"], opened
    fallbacks = [r for r in rows if r["kind"] == "fallback"]
    assert fallbacks and {r["model"] for r in fallbacks} == {"offline"}, fallbacks
    ok = model_calls(rows, "ok")
    assert ok and {r["model"] for r in ok} == {"offline"}, ok
    assert len(fallbacks) == len(ok)  # every answer came from the fallback, each one audited
    circuit_open = [r for r in fallbacks if "circuit open" in r["detail"]["reason"]]
    assert circuit_open, "after the breaker opened, calls went to the fallback without trying"
    report = result["output"]["report"]
    assert "**Degraded run:**" in report and "the fallback model `offline`" in report, report
    TABLE_ROWS.append(
        Row("breaker", "500", "every request; `--fallback offline`",
            "the breaker opens after 3 failed requests; the fallback answers",
            f"{result['status']} on the fallback, {result['output']['outcome']}; "
            f"{len(errors)} error rows, breaker open, {len(fallbacks)} fallback rows",
            len(run.served), run.seconds)
    )  # fmt: skip


def test_a_malformed_body_from_the_primary_goes_to_the_fallback(
    corpus: Path, tmp_path: Path
) -> None:
    db, thread = tmp_path / "ensemble.db", str(uuid.uuid4())
    with FaultServer() as server:
        env = cli_env(server.base_url)
        server.faults = [dict(FAULTS["garbage"])]
        argv = ["run", *scenario_argv("research", corpus), "--model", MODEL, *LIMITS,
                "--fallback", "offline", "--db", str(db), "--thread", thread, "--json"]  # fmt: skip
        run = step(server, env, *argv)
    outcome = describe_outcome("research", run.result)
    if run.result["status"] == "failed":
        outcome = f"failed ({run.result['error'].split(':')[0]})"
    TABLE_ROWS.append(
        Row("breaker", "garbage", "first request; `--fallback offline`",
            "a garbled body is an endpoint fault: the planner node retries it", outcome,
            len(run.served), run.seconds)
    )  # fmt: skip
    assert run.done.returncode == 0, run.why()
    assert run.result["status"] == "done"


# -- budgets -----------------------------------------------------------------------------------


@dataclass
class BudgetRun:
    env: dict[str, str]
    thread: str
    run: Step
    resumed: Step
    before: list[dict[str, Any]]
    """The audit trail when the budget stopped the run."""
    after: list[dict[str, Any]]
    """The audit trail after the resume (from `ensemble audit --json`)."""


@pytest.fixture(scope="module")
def budget_run(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> BudgetRun:
    """A research run with a budget of 3 calls, resumed with a budget of 100."""
    db, thread = tmp_path_factory.mktemp("budget") / "ensemble.db", str(uuid.uuid4())
    with FaultServer() as server:
        env = cli_env(server.base_url) | {"ENSEMBLE_CACHE": "1"}  # answered calls are kept
        argv = ["run", *scenario_argv("research", corpus), "--model", MODEL, *LIMITS,
                "--budget", '{"calls": 3}', "--db", str(db), "--thread", thread,
                "--json"]  # fmt: skip
        run = step(server, env, *argv)
        before = events(db, thread)
        resume = ["resume", thread, "--db", str(db), "--budget", '{"calls": 100}', "--json"]
        resumed = step(server, env, *resume)
        after = audit_rows(env, db, thread)
    return BudgetRun(env, thread, run, resumed, before, after)


def test_a_budget_stops_the_run_and_a_higher_budget_finishes_it(
    budget_run: BudgetRun, clean_run: Callable[[str], Counter]
) -> None:
    run, resumed = budget_run.run, budget_run.resumed
    reason = assert_paused_with_a_reason(run, budget_run.thread, "budget exhausted")
    assert "calls 3 of 3" in reason and "--budget" in reason, reason
    assert len(run.served) <= 3, [describe(b) for b, _ in run.served]
    stops = [r for r in budget_run.before if r["kind"] == "budget_stop"]
    assert stops and {r["outcome"] for r in stops} == {"stopped"}, stops
    # a call answered while its sibling hit the budget is cancelled with the step: no ok row
    assert len(model_calls(budget_run.before, "ok")) <= len(run.served) <= 3

    assert resumed.done.returncode == 0, resumed.why()
    final = resumed.result
    assert final["status"] == "done", final
    assert final["output"]["report"], final
    served = run.served + resumed.served
    # Not `assert_no_work_repeated`: the budget stop cancels the step's sibling researchers, and
    # a call answered while it was being cancelled is neither saved nor cached, so it is asked
    # once more on resume. Everything that finished is kept (the cache serves it).
    assert len(served) <= len(run.served) + sum(clean_run("research").values())
    assert not model_calls(budget_run.after, "error")
    TABLE_ROWS.append(
        Row("budget", "budget", '`--budget \'{"calls": 3}\'`, then resume with 100',
            "the budget check before each call",
            f"paused (budget exhausted) after {len(run.served)} requests -> resume: "
            f"{describe_outcome('research', final)}, {len(final['output']['sources'])} sources",
            len(served), run.seconds + resumed.seconds)
    )  # fmt: skip


def test_a_resume_with_a_higher_budget_redoes_the_work_the_budget_stopped(
    budget_run: BudgetRun, clean_run: Callable[[str], Counter]
) -> None:
    clean_run("research")  # its outcome is the one to reach
    output = budget_run.resumed.result["output"]
    assert output["sources"] and output["outcome"] == CLEAN_OUTCOMES["research"], output
