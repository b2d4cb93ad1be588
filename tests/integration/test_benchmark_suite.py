"""`python -m benchmarks --quick` as a process: every benchmark measured, one table, one JSON line.

No timing thresholds: the figures are the benchmarks' business; this checks that each one ran,
compared Ensemble with plain LangGraph on the same work, and reported in the suite's shape.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = {
    "overhead", "parallel", "checkpoint_growth", "resume_history", "concurrent_runs", "startup"
}  # fmt: skip


@pytest.fixture(scope="module")
def suite() -> tuple[str, dict]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    return done.stdout, json.loads(lines[-1])


def test_the_suite_prints_one_table_and_one_json_line_with_every_benchmark(suite):
    out, found = suite
    assert found["benchmark"] == "suite" and found["quick"] is True and found["date"]
    assert found["machine"]["cores"] >= 1 and found["machine"]["python"]
    assert set(found["results"]) == BENCHMARKS
    assert sum(line.startswith("{") for line in out.splitlines()) == 1
    header = next(line for line in out.splitlines() if line.startswith("benchmark"))
    assert "goal" in header and "result" in header
    rows = [r for result in found["results"].values() for r in result["summary"]]
    goals = [r for r in rows if r["goal"]]
    assert len(goals) >= 8  # overhead 1, parallel 3, growth 2, runs 2, startup 2
    assert sorted(found["goals"]["met"] + found["goals"]["not_met"]) == sorted(
        f"{name}: {r['what']}" for name, result in found["results"].items()
        for r in result["summary"] if r["met"] is not None
    )  # fmt: skip
    for r in rows:
        assert r["ratio"] is None or r["ratio"] > 0, r


def test_orchestration_overhead_compares_the_same_calls(suite):
    overhead = suite[1]["results"]["overhead"]
    assert overhead["model_calls_per_run"] == overhead["steps"] > 0
    assert all(v > 0 for v in overhead["per_step_ms"].values())


def test_parallel_runs_make_the_same_calls_both_ways_and_cannot_beat_the_critical_path(suite):
    rows = suite[1]["results"]["parallel"]["rows"]
    assert [r["run"].split(",")[0] for r in rows] == ["research", "research", "solver"]
    for r in rows:
        assert r["model_calls"] == r["plain_model_calls"] > 0
        assert r["critical_path_s"] == r["plain_critical_path_s"] > 0
        assert r["ensemble_efficiency"] >= 0.99 and r["plain_efficiency"] >= 0.99  # >= 1 - clock


def test_ensemble_state_grows_slower_and_prune_shrinks_it(suite):
    growth = suite[1]["results"]["checkpoint_growth"]
    assert growth["exponent"]["ensemble"] < growth["exponent"]["plain"]
    for r in growth["rows"]:
        assert 0 < r["ensemble_MiB"] < r["plain_MiB"]
        assert r["ensemble_pruned_MiB"] <= r["ensemble_MiB"]
        assert r["plain_pruned_MiB"] < r["plain_MiB"]


def test_resume_and_history_are_measured_on_threads_of_each_length(suite):
    rows = suite[1]["results"]["resume_history"]["rows"]
    assert [r["length"] for r in rows] == sorted(r["length"] for r in rows)
    for r in rows:
        assert r["checkpoints"] == r["plain_checkpoints"] >= r["length"]
        assert min(r["resume_ms"], r["plain_resume_ms"], r["history_ms"]) > 0


def test_concurrent_runs_finish_without_lock_errors(suite):
    runs = suite[1]["results"]["concurrent_runs"]
    assert runs["ensemble"]["locked"] == 0 and runs["ensemble"]["failed"] == 0
    assert runs["plain"]["failed"] == 0
    assert runs["ensemble"]["model_calls"] == runs["plain"]["model_calls"] > 0
    assert runs["ensemble"]["runs_per_s"] > 0 and runs["plain"]["runs_per_s"] > 0


def test_startup_measures_ensemble_beside_python_and_langgraph(suite):
    seconds = suite[1]["results"]["startup"]["seconds"]
    assert {"python -c pass", "langgraph --help", "ensemble --help", "ensemble threads"} <= set(
        seconds
    )
    assert all(v > 0 for v in seconds.values())
