"""Start-up of the `ensemble` command against `python -c pass`, measured in the same run.

    python -m benchmarks.startup [--repeat N]

Prints a table and one JSON line. Commands that run no graph import no LangGraph (the CLI's
grammar is a light module; each command's module is imported when it runs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ENSEMBLE = str(Path(sys.executable).parent / "ensemble")
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "ensemble --help": [ENSEMBLE, "--help"],
    "ensemble --version": [ENSEMBLE, "--version"],
    "ensemble serve --help": [ENSEMBLE, "serve", "--help"],
    "ensemble doctor": [ENSEMBLE, "doctor"],
    "ensemble threads": [ENSEMBLE, "threads", "--db", "/nonexistent/ensemble.db"],
}


def measure(argv: list[str], repeat: int) -> float:
    """The median wall time of `repeat` runs, in seconds."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=False)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    seconds = {name: measure(command, args.repeat) for name, command in COMMANDS.items()}
    base = seconds["python -c pass"]
    print(f"{'command':<24} {'seconds':>8} {'x python':>9}")
    for name, value in seconds.items():
        print(f"{name:<24} {value:>8.3f} {value / base:>9.1f}")
    print(json.dumps({"benchmark": "startup", "seconds": seconds}))
    return seconds


if __name__ == "__main__":
    main()
