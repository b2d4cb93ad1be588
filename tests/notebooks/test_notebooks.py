"""Execute every notebook in notebooks/ top to bottom in a fresh kernel, offline.

Each notebook found is executed automatically; the ones listed in CHECKS also get a few checks
on what they showed, so a notebook that silently stops producing its graph or report fails.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

# notebook -> [(output kind, substrings that must all appear in one output of that kind)]
CHECKS: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    "01_quickstart.ipynb": [
        ("text/vnd.mermaid", ("graph TD;", "planner -.-> researcher;", "reviewer -.-> finalize;")),
        ("stream", ("outcome=approved",)),
        ("stream", ("synthesizer  finished",)),
        ("stream", ("message chunks per node:",)),
        ("text/markdown", ("## Sources", "[1]")),
        ("text/html", ("<th>seconds</th>", "researcher", "synthesizer", "reviewer", "finished")),
    ],
    "02_human_in_the_loop.ipynb": [
        ("stream", ("paused in: ('review_plan',)",)),
        ("stream", ("researched exactly the edited sub-questions: True",)),
        ("text/markdown", ("## Sources",)),
        ("stream", ("fork A: max_revisions | fork B: approved",)),
        ("text/html", ("<td>original</td>", "<td>fork A</td>", "<td>fork B</td>", "stalled")),
        ("text/html", ("fork A", "fork B", "original", "update")),
    ],
    "03_content_pipeline.ipynb": [
        ("text/vnd.mermaid", ("graph TD;", "approval -.-> chief;", "research_team", "publisher")),
        ("text/vnd.mermaid", ("subgraph writing_team", "outliner", "subgraph research_team")),
        ("stream", ("paused in: ('approval',)", "word count:", "editor on")),
        ("text/markdown", ("[1]",)),
        (
            "stream",
            (
                "human_notes: ['Say more about the waggle dance.']",
                "writing_round: 1",
                "research-team runs in this round: 0",
                "writing-team runs in this round: 1",
            ),
        ),
        ("stream", ("outcome: published", ".md", ".html")),
        ("stream", ("title: ", "approved_by: approve")),
        ("stream", ("Content-Security-Policy", "</head>")),
        ("stream", ("research_teams started before the first one finished: 3 of 3",)),
        ("text/html", ("<th>started at +s</th>", "research_team", "writing_team", "item-")),
        ("stream", ("still paused in: ('approval',)", "invalid approval answer")),
        ("stream", ("outcome: rejected | published: None",)),
    ],
    "04_problem_solver.ipynb": [
        ("text/html", ("<td>researcher-a</td>", "<td>analyst-c</td>", "<td>calc</td>", "closed")),
        ("text/vnd.mermaid", ("graph TD;", "worker --> scheduler;", "scheduler -.-> help;")),
        ("stream", ("tasks form a cycle: a -> b -> a", "depends on 'b', which is not a task")),
        ("stream", ("released decoding->researcher-", "per-record by calc", "aggregator finished")),
        ("stream", ("per-record  -> calc", "outcome: solved", "verdict vote: agreed (majority)")),
        ("text/html", ("<th>attempts</th>", "<th>vote</th>", "<td>21391</td>", "<td>21.391</td>")),
        ("text/markdown", ("How the team got there", "**verdict**")),
        (
            "stream",
            (
                "agent:flaky: open",
                "agent:steady-a: closed",
                "flaky's tasks: check-1, check-4, check-7",
                "provider unreachable",
                "summary: ['steady-a']",
            ),
        ),
        ("text/html", ("<td>flaky failed, steady-a ok</td>",)),
        ("stream", ("paused in: ('help',)", "reason: split vote", "1 vs 1 vs 1")),
        ("stream", ("outcome: solved", "way: skipped by human, value 'north'", "votes kept: 3")),
    ],
    "05_events.ipynb": [
        ("stream", ("digest: document.changed -> research", "brief: run.done -> content")),
        ("stream", ("refused: ", "broken.yaml:7: input.corpus: template error")),
        ("stream", ("the brief waits for approval", "bees.md added", "brief <- run:", "waiting")),
        (
            "text/html",
            (
                "<td>document.changed</td>",
                "<td>digest: done (research ",
                "<td>brief: waiting (content ",
                "<td>run.waiting</td>",
            ),
        ),
        ("stream", ("started by: brief <- run.done", "answer format:")),
        ("text/markdown", ('# What are the main points of "Honey bees"?', "## Sources", "[1]")),
        ("text/markdown", ("# Honey bees", "waggle dance")),
        ("stream", ("status: done | outcome: published", "honey-bees.md", "honey-bees.html")),
        ("stream", ("run.done of content | outcome: published", "started: nothing")),
        ("stream", ("same id stored again: [False]",)),
        ("stream", ("file touched and scanned; new events: 0",)),
        (
            "stream",
            (
                "its delivery: digest: duplicate",
                "{'brief': {'done': 1}, 'digest': {'done': 1, 'duplicate': 1}}",
            ),
        ),
        ("text/html", ("<td>resent-bees</td>", "<td>digest: duplicate (research ")),
        ("stream", ("dispatcher: stopped",)),
    ],
}


def outputs(nb: nbformat.NotebookNode) -> list[tuple[str, str]]:
    """Every (kind, text) a notebook showed: stream text, or one entry per mime type."""
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                found.append(("stream", out.text))
            for mime, data in out.get("data", {}).items():
                found.append((mime, data if isinstance(data, str) else "".join(data)))
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_offline(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    execute_and_check(path, tmp_path, monkeypatch, str(tmp_path / "default.db"))


def test_the_quickstart_runs_on_postgresql(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ensemble.db import database
    from ensemble.db.schema import upgrade

    asyncio.run(upgrade(database(postgres_url)))
    execute_and_check(
        ROOT / "notebooks" / "01_quickstart.ipynb", tmp_path, monkeypatch, postgres_url
    )
    assert not (tmp_path / ".ensemble").exists()


def execute_and_check(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db: str) -> None:
    """Run the notebook in a fresh kernel on the database `db`; check what it showed."""
    # The kernel inherits this process's environment: offline model, nothing in $HOME.
    monkeypatch.setenv("ENSEMBLE_MODEL", "offline")
    monkeypatch.setenv("ENSEMBLE_DB", db)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "jupyter-runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")

    nb = nbformat.read(path, as_version=4)
    assert not any(c.get("outputs") for c in nb.cells), f"{path.name} is saved with outputs"
    client = NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    started = time.monotonic()
    client.execute()
    took = time.monotonic() - started

    errors = [
        f"cell {i}: {out.ename}: {out.evalue}\n" + "\n".join(out.traceback)
        for i, cell in enumerate(nb.cells)
        for out in cell.get("outputs", [])
        if out.output_type == "error"
    ]
    assert not errors, "\n\n".join(errors)
    assert took < 60, f"{path.name} took {took:.1f}s"

    shown = outputs(nb)
    for kind, needles in CHECKS.get(path.name, []):
        assert any(k == kind and all(n in text for n in needles) for k, text in shown), (
            f"{path.name}: no {kind} output containing all of {needles}"
        )
    assert not list(ROOT.glob("notebooks/*.db")), "a notebook wrote into the repository"
