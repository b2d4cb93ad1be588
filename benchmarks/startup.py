"""Start-up of the `ensemble` command against `python -c pass` and `langgraph --help`.

    python -m benchmarks.startup [--repeat N]

All measured in the same run, each the median of `repeat` runs of the whole process. Commands
that run no graph import no LangGraph (the CLI's grammar is a light module; each command's module
is imported when it runs). `ensemble threads` lists the threads of a database that does not
exist (it says so): the command's own start-up, not a listing. Goal: `ensemble --help` and
`ensemble threads` under 0.3 s. Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import report, row

BIN = Path(sys.executable).parent
ENSEMBLE = str(BIN / "ensemble")
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "langgraph --help": [str(BIN / "langgraph"), "--help"],
    "ensemble --help": [ENSEMBLE, "--help"],
    "ensemble --version": [ENSEMBLE, "--version"],
    "ensemble serve --help": [ENSEMBLE, "serve", "--help"],
    "ensemble doctor": [ENSEMBLE, "doctor"],
    "ensemble threads": [ENSEMBLE, "threads", "--db", "/nonexistent/ensemble.db"],
}
GOAL_SECONDS = 0.3
GOALS = ("ensemble --help", "ensemble threads")
ENV = {**os.environ, "LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGGRAPH_NO_VERSION_CHECK": "true"}


def time_command(argv: list[str], repeat: int) -> float:
    """The median wall time of `repeat` runs, in seconds."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=False, env=ENV)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(quick: bool = False, repeat: int | None = None) -> dict[str, Any]:
    repeat = repeat or (2 if quick else 5)
    seconds = {name: time_command(command, repeat) for name, command in COMMANDS.items()}
    base, langgraph = seconds["python -c pass"], seconds["langgraph --help"]
    summary = [
        row(name, value, langgraph, unit="s", value=value,
            goal=("<", GOAL_SECONDS) if name in GOALS else None)
        for name, value in seconds.items()
        if name.startswith("ensemble")
    ]  # fmt: skip
    summary.append(row("python -c pass", base, None, unit="s"))
    summary.append(row("langgraph --help", langgraph, None, unit="s"))
    return {
        "repeat": repeat,
        "seconds": seconds,
        "x_python": {name: value / base for name, value in seconds.items()},
        "summary": summary,
    }


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    result = measure(repeat=args.repeat)
    report("startup", result)
    return result["seconds"]


if __name__ == "__main__":
    main()
