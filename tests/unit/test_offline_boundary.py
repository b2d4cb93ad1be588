"""The offline model is reached only through the model factory: ruff keeps graphs and nodes out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMPORTS = {
    "package": "from ensemble.offline import OfflineChatModel\n\nprint(OfflineChatModel)\n",
    "module": "from ensemble.offline.extractive import split_units\n\nprint(split_units)\n",
    "plain": "import ensemble.offline.model\n\nprint(ensemble.offline.model)\n",
}


def banned_imports(path: str, source: str) -> list[str]:
    """Lines ruff reports for TID251 when `source` is linted as if it lived at `path`."""
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--select", "TID251", "--output-format",
         "concise", "--stdin-filename", path, "-"],
        input=source, capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr
    return [line for line in done.stdout.splitlines() if "TID251" in line]


@pytest.mark.parametrize("kind", IMPORTS)
@pytest.mark.parametrize(
    "folder", ["nodes", "graphs", "ensemble/nodes", "ensemble/graphs"]
)  # the second pair: the same folders as the installed package reaches them (symlinks)
def test_graphs_and_nodes_may_not_import_the_offline_model(folder: str, kind: str) -> None:
    found = banned_imports(f"{folder}/probe.py", IMPORTS[kind])
    assert found and all("ensemble.offline" in line for line in found)


@pytest.mark.parametrize("path", ["ensemble/models/__init__.py", "tests/unit/probe.py"])
def test_the_factory_and_tests_may(path: str) -> None:
    assert banned_imports(path, IMPORTS["package"]) == []


def test_no_graph_or_node_imports_it_today() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--select", "TID251", "nodes", "graphs"],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
