"""The layers point one way, and nodes and graphs read no process-wide settings.

Read from the source with `ast`, imports inside functions included, so the README's map of the
packages stays true: entry points -> graphs -> nodes -> state -> the runtime; the runtime never
reaches up; only the model factory reaches the offline model.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOP_LEVEL = ("graphs", "nodes", "state", "prompts")
ENTRY_POINTS = ("cli", "server", "evaluation", "runner", "cluster", "events")

MAY_IMPORT = {
    "entry": {"entry", "graphs", "nodes", "state", "prompts", "runtime"},
    "graphs": {"graphs", "nodes", "state", "prompts", "runtime"},
    "nodes": {"nodes", "state", "prompts", "runtime"},
    "state": {"state", "runtime"},
    "prompts": {"prompts", "runtime"},
    "runtime": {"runtime"},
    "offline": {"offline", "runtime"},
}
"""Which layers each layer may import from (the README's "Architecture" section)."""


def layer(module: str) -> str:
    """The layer of a dotted `ensemble...` module name."""
    part = module.split(".")[1] if "." in module else ""
    if part in ENTRY_POINTS:
        return "entry"
    if part in TOP_LEVEL:
        return part
    return "offline" if part == "offline" else "runtime"


def sources() -> list[tuple[Path, str]]:
    """Every module of the product with its dotted name (the symlinked folders once)."""
    found = []
    for folder in ("ensemble", *TOP_LEVEL):
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = path.relative_to(ROOT)
            if folder == "ensemble" and relative.parts[1] in TOP_LEVEL:
                continue  # the same files, reached through the symlinks
            parts = list(relative.with_suffix("").parts)
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            found.append((path, ".".join(parts if folder == "ensemble" else ["ensemble", *parts])))
    return found


def imported(path: Path) -> set[str]:
    """Every `ensemble...` module a file imports, at the top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.split(".")[0] == "ensemble" and "." in name}


def test_the_layers_point_one_way() -> None:
    wrong = [
        f"{module} ({layer(module)}) imports {name} ({layer(name)})"
        for path, module in sources()
        for name in sorted(imported(path))
        if layer(name) not in MAY_IMPORT[layer(module)]
        and not (module == "ensemble.models" and layer(name) == "offline")  # the model factory
    ]
    assert wrong == []


def test_the_check_sees_a_wrong_arrow(tmp_path: Path) -> None:
    upward = tmp_path / "up.py"
    upward.write_text("def f():\n    from ensemble.graphs.registry import SCENARIOS\n")
    assert "ensemble.graphs.registry" in imported(upward)
    assert layer("ensemble.graphs.registry") not in MAY_IMPORT[layer("ensemble.resilience.guard")]


@pytest.mark.parametrize("folder", ["nodes", "graphs"])
def test_nodes_and_graphs_read_no_environment_and_no_global_workspace(folder: str) -> None:
    for path in sorted((ROOT / folder).rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for forbidden in ("os.environ", "getenv", "workspace.current", "workspace.configure"):
            assert forbidden not in text, f"{path.name} uses {forbidden}"
