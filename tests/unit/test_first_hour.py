"""What a newcomer meets in the first hour: answers, versions, refusals, pipes, folders, sandbox."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ensemble.cli.main import main
from ensemble.publishing import PublishError
from ensemble.workspace import Workspace
from tests.unit.test_cli import QUESTION, cli, run_research

ENSEMBLE = [sys.executable, "-m", "ensemble.cli.main"]


def test_a_bare_word_answers_a_review_as_the_prompt_does(capsys, tmp_path, corpus_dir):
    db = tmp_path / "cli.db"
    code, paused, _ = run_research(capsys, db, corpus_dir, "--review-plan")
    assert code == 0 and paused["status"] == "interrupted"
    code, done, err = cli(
        capsys, "resume", paused["thread_id"], "--db", str(db), "--answer", "approve", "--json"
    )
    assert code == 0, err
    assert done["status"] == "done" and done["output"]["report"]


def test_a_bare_word_that_is_no_action_is_refused_in_one_line(capsys, tmp_path, corpus_dir):
    db = tmp_path / "cli.db"
    _, paused, _ = run_research(capsys, db, corpus_dir, "--review-plan")
    code, out, err = cli(
        capsys, "resume", paused["thread_id"], "--db", str(db), "--answer", "maybe"
    )
    assert code == 2 and "invalid plan-review answer" in err and len(err.strip().splitlines()) == 1


def test_with_json_a_refused_command_prints_one_object_on_stdout(capsys, tmp_path):
    code, out, err = cli(capsys, "show", "nope", "--db", str(tmp_path / "none.db"), "--json")
    assert code == 2
    assert out == {"status": "refused", "error": err.strip().removeprefix("ensemble: error: ")}


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("ensemble ")


def test_doctor_lists_every_optional_piece(capsys):
    code, out, _ = cli(capsys, "doctor", "--json")
    assert code == 0
    names = {p["name"] for p in out["pieces"]}
    assert names == {"sandbox", "server", "local model", "openai", "postgresql"}
    for piece in out["pieces"]:
        assert piece["detail"] and (piece["works"] or piece["how"])


def test_a_closed_pipe_ends_quietly(tmp_path, corpus_dir):
    """`ensemble threads | head -2`: the reader is gone before the first line is written."""
    db = tmp_path / "many.db"
    argv = ["run", "research", QUESTION, "--db", str(db), "--corpus", str(corpus_dir)]
    subprocess.run([*ENSEMBLE, *argv, "--yes", "--quiet"], check=True, capture_output=True)
    for argv in (["threads", "--db", str(db)], ["history", "--db", str(db), "x"],
                 ["scenarios", "--json"], ["agents", "--json"]):  # fmt: skip
        if argv[0] == "history":
            listed = subprocess.run([*ENSEMBLE, "threads", "--db", str(db), "--json"],
                                    capture_output=True, text=True, check=True)  # fmt: skip
            argv[-1] = json.loads(listed.stdout)["threads"][0]["thread_id"]
        process = subprocess.Popen(
            [*ENSEMBLE, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert process.stdout is not None
        process.stdout.close()  # long before the command has imported anything
        _, err = process.communicate(timeout=60)
        assert "Traceback" not in err and "BrokenPipe" not in err, (argv, err)
        assert process.returncode == 141, (argv, process.returncode, err)


def test_an_output_folder_that_is_a_symlink_is_refused(tmp_path, monkeypatch):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    local = Workspace(db=tmp_path / "x.db")
    with pytest.raises(PublishError, match="is a symlink"):
        local.output_dir(str(tmp_path / "link"), create=True)
    with pytest.raises(PublishError, match="is a symlink"):
        local.output_dir(str(tmp_path / "link" / "posts"), create=True)  # a symlinked parent
    assert not (real / "posts").exists()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PublishError, match="is a symlink"):
        local.output_dir("link/posts", create=True)  # relative, from the working folder down
    assert local.output_dir(str(real / "posts"), create=True) == real / "posts"


def test_a_solver_task_that_runs_python_is_refused_without_a_sandbox(capsys, tmp_path, monkeypatch):
    import ensemble.graphs.solver as solver

    monkeypatch.setattr(solver, "sandbox_available", lambda: False)
    example = Path(__file__).resolve().parents[2] / "ensemble/tasks/examples/json_report.yaml"
    db = tmp_path / "s.db"
    code, _, err = cli(capsys, "run", "solver", "--tasks", str(example), "--db", str(db), "--yes")
    assert code == 2
    assert "bubblewrap" in err and "ensemble doctor" in err and len(err.strip().splitlines()) == 1
    code, listed, _ = cli(capsys, "threads", "--db", str(db), "--json")
    assert not db.exists() or listed["threads"] == []


def test_an_answer_that_repeats_the_problem_is_not_solved():
    from ensemble.nodes.aggregator import restates_the_problem
    from ensemble.state.solver import SolverState

    state = SolverState(problem="How many bytes does the euro sign take in UTF-8?")
    rows = [{"status": "done", "value": "How many bytes does the euro sign take in UTF-8?"}]
    assert restates_the_problem(state, rows)
    rows = [{"status": "done", "value": "Three bytes: E2 82 AC."}]
    assert not restates_the_problem(state, rows)
    assert not restates_the_problem(SolverState(problem=""), rows)


def test_threads_shows_the_outcome_and_filters(capsys, tmp_path, corpus_dir):
    db = tmp_path / "cli.db"
    run_research(capsys, db, corpus_dir)
    run_research(capsys, db, corpus_dir, "--review-plan")
    code, listed, _ = cli(capsys, "threads", "--db", str(db), "--json")
    assert {r["status"] for r in listed["threads"]} == {"done", "interrupted"}
    assert all("outcome" in r for r in listed["threads"])
    _, waiting, _ = cli(capsys, "threads", "--db", str(db), "--status", "interrupted", "--json")
    assert [r["status"] for r in waiting["threads"]] == ["interrupted"]
    _, none, _ = cli(capsys, "threads", "--db", str(db), "--scenario", "solver", "--json")
    assert none["threads"] == []


def test_a_cost_budget_needs_prices(capsys, tmp_path, corpus_dir):
    db = tmp_path / "cli.db"
    code, _, err = run_research(capsys, db, corpus_dir, "--budget", '{"cost": 1}')
    assert code == 2 and "budget.cost needs prices" in err and len(err.strip().splitlines()) == 1
    prices = tmp_path / "prices.yaml"
    prices.write_text("offline: {input: 1.0, output: 2.0}\n", encoding="utf-8")
    code, done, err = run_research(
        capsys, db, corpus_dir, "--budget", '{"cost": 1}', "--prices", str(prices)
    )
    assert code == 0, err
    assert done["status"] == "done"
    code, stats, _ = cli(capsys, "stats", done["thread_id"], "--db", str(db), "--json")
    assert code == 0 and sum(row["cost"] for row in stats["stats"]) > 0


def test_progress_lines_only_for_work_that_happens(capsys, tmp_path, corpus_dir):
    db = tmp_path / "cli.db"
    _, paused, err = run_research(capsys, db, corpus_dir, "--review-plan")
    assert "[corpus] indexing" in err and "documents indexed" in err
    assert err.count("[plan_review] waiting") == 1
    code, _, err = cli(
        capsys, "resume", paused["thread_id"], "--db", str(db), "--answer", "approve", "--json"
    )
    assert code == 0 and "[plan_review] waiting" not in err  # answered: nobody waits
    _, _, err = run_research(capsys, db, corpus_dir)
    assert "[corpus]" not in err  # indexed already, nothing changed


def test_a_malformed_workflow_file_is_one_line_with_file_and_line(capsys, tmp_path):
    bad = tmp_path / "tasks.yaml"
    bad.write_text("title: x\ntasks:\n  - id: a\n   description: [unclosed\n", encoding="utf-8")
    db = tmp_path / "s.db"
    code, _, err = cli(capsys, "run", "solver", "--tasks", str(bad), "--db", str(db))
    assert code == 2
    (line,) = err.strip().splitlines()
    assert line.startswith(f"ensemble: error: {bad}:") and "bad YAML" in line


def test_a_plan_rationale_never_quotes_the_requests_scaffolding():
    from ensemble.offline.schema_fill import FillContext

    request = (
        "Question: How does Python's json module decode JSON documents?\n\n"
        "Titles of the best matching passages in the corpus:\n- json.loads\n- json.decoder"
    )
    said = FillContext(request=request).request_sentences
    assert not any(s.endswith(":") for s in said)
    assert said[0].startswith("Question: How does")


def test_export_writes_markdown_html_and_json(capsys, tmp_path, corpus_dir):
    db = tmp_path / "cli.db"
    _, done, _ = run_research(capsys, db, corpus_dir)
    thread = done["thread_id"]
    code, markdown, _ = cli(capsys, "export", thread, "--db", str(db))
    assert code == 0 and markdown == done["output"]["report"].strip() + "\n"
    page = tmp_path / "out" / "report.html"
    assert (
        cli(capsys, "export", thread, "--db", str(db), "--format", "html", "--out", str(page))[0]
        == 0
    )
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "Content-Security-Policy" in html
    assert f"<h1>{QUESTION}</h1>" in html and "<script" not in html.split("</head>")[1]
    code, exported, _ = cli(capsys, "export", thread, "--db", str(db), "--format", "json")
    assert exported["status"] == "done" and exported["input"]["question"] == QUESTION
    assert exported["output"]["report"] == done["output"]["report"]
    _, paused, _ = run_research(capsys, db, corpus_dir, "--review-plan")
    code, _, err = cli(capsys, "export", paused["thread_id"], "--db", str(db))
    assert code == 2 and "no result yet (status interrupted)" in err


def test_a_failed_task_says_why_in_the_progress_lines(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    agents = tmp_path / "agents.yaml"
    agents.write_text(
        "agents:\n  - {name: doomed, role: Fails., capabilities: [analysis], "
        "model: 'openai:missing'}\n",
        encoding="utf-8",
    )
    tasks = tmp_path / "tasks.yaml"
    tasks.write_text(
        "tasks:\n  - {id: estimate, description: Estimate it., capability: analysis}\n",
        encoding="utf-8",
    )
    argv = ["run", "solver", "--tasks", str(tasks), "--agents", str(agents), "--replace-team"]
    code, out, err = cli(capsys, *argv, "--db", str(tmp_path / "s.db"), "--json")
    assert code == 0 and out["status"] == "interrupted"  # the person is asked
    failed = [line for line in err.splitlines() if line.startswith("[worker] failed")]
    assert failed and all("ModelSpecError" in line for line in failed), err
