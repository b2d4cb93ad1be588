"""`ensemble --help` and the light commands import no LangGraph; the start-up ratio is printed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from benchmarks.startup import main as startup_benchmark

HEAVY = ("langgraph", "langchain_core", "pydantic", "ensemble.graphs")


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["--version"], ["serve", "--help"], ["doctor"], ["eval", "--help"]],
)
def test_commands_that_run_no_graph_import_no_langgraph(argv: list[str]) -> None:
    probe = (
        "import sys\n"
        "from ensemble.cli.main import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r} "
        f"or m.startswith('ensemble.graphs')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout[-2000:]


def test_the_start_up_benchmark_runs_and_prints_the_ratio(capsys) -> None:
    seconds = startup_benchmark(["--repeat", "3"])
    ratio = seconds["ensemble --help"] / seconds["python -c pass"]
    print(f"\nensemble --help: {seconds['ensemble --help']:.3f} s, {ratio:.1f}x python -c pass")
    assert set(seconds) >= {"python -c pass", "ensemble --help"}
