"""Commands that run no graph import no LangGraph: `--help`, and `ensemble threads` once every
thread's summary is kept (`ensemble.thread_summaries`).

Each command runs in a fresh interpreter, which then names the heavy packages it imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ensemble.cli.main import main

HEAVY = ("langgraph", "langchain_core", "pydantic", "openai")

PROBE = """
import json, sys
from ensemble.cli.main import main
try:
    code = main(sys.argv[1:])
except SystemExit as stop:
    code = stop.code
print("IMPORTED " + json.dumps(sorted({m.split(".")[0] for m in sys.modules})), file=sys.stderr)
raise SystemExit(code)
"""


def imported_heavy(*argv: str) -> tuple[list[str], str]:
    """Run `ensemble ARGV` in a fresh interpreter: the heavy packages it imported, its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stderr.splitlines() if x.startswith("IMPORTED "))
    imported = json.loads(line.removeprefix("IMPORTED "))
    return [name for name in HEAVY if name in imported], done.stdout


def test_help_imports_no_langgraph_and_no_pydantic() -> None:
    heavy, out = imported_heavy("--help")
    assert heavy == [] and "threads" in out


def test_threads_of_a_missing_database_imports_no_langgraph(tmp_path: Path) -> None:
    heavy, out = imported_heavy("threads", "--db", str(tmp_path / "none" / "ensemble.db"))
    assert heavy == [] and out.startswith("No threads in")
    assert not (tmp_path / "none").exists()


def test_threads_whose_summaries_are_kept_imports_no_langgraph(
    capsys, tmp_path: Path, corpus_dir: Path
) -> None:
    db = str(tmp_path / "kept.db")
    for flags in (["--yes"], ["--review-plan"]):  # one done, one waiting for a person
        run = ["run", "research", "How do bees make honey?", "--db", db, "--quiet"]
        assert main([*run, "--corpus", str(corpus_dir), *flags]) == 0
    capsys.readouterr()
    assert main(["threads", "--db", db, "--json"]) == 0  # reads both graphs, keeps summaries
    computed = capsys.readouterr().out

    heavy, listed = imported_heavy("threads", "--db", db, "--json")
    assert heavy == []
    assert listed == computed
    assert {row["status"] for row in json.loads(listed)["threads"]} == {"done", "interrupted"}
