"""`pip install .` then `ensemble serve` works from any folder, with no checkout in sight.

The project's wheel is built, unpacked into a plain folder and put first on `PYTHONPATH`, ahead
of the virtualenv's editable install; the server then runs from an unrelated empty folder. The
wheel must carry graphs, nodes, state and prompts as `ensemble.*` and add nothing else to a
user's environment (no top-level `graphs` to clash with other packages).
"""

from __future__ import annotations

import ast
import asyncio
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from langgraph_sdk import get_client

from ensemble import processes
from tests.integration.conftest import tail

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT = 300.0
STARTUP_TIMEOUT = 120.0
RUN_TIMEOUT = 120.0
MOVED = ("graphs", "nodes", "state", "prompts")
"""Top-level folders of the checkout that install as `ensemble.<name>`."""
NOT_COPIED = (".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*cache")
NOT_COPIED += (".hypothesis", ".ensemble", ".langgraph_api", "langgraph-server")


@dataclass(frozen=True)
class Installed:
    wheel: Path
    names: frozenset[str]
    source: Path
    site: Path


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The project's wheel, built like `pip install .` does, unpacked into `site/`.

    Built from a copy of the checkout (symlinks kept): pip builds in the source tree, and its
    `build/` and `*.egg-info` must not land in a checkout others are editing (a stale
    `build/lib` would also leak deleted modules into later wheels).
    """
    base = tmp_path_factory.mktemp("installed")
    source = base / "source"
    shutil.copytree(REPO_ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(*NOT_COPIED))
    wheels = base / "wheels"
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    command += ["--disable-pip-version-check", "-q", "-w", str(wheels), str(source)]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr
    print(f"\nwheel built in {time.monotonic() - started:.1f}s")
    (wheel,) = wheels.glob("ensemble-*.whl")
    site = base / "site"
    with zipfile.ZipFile(wheel) as archive:
        names = frozenset(archive.namelist())
        archive.extractall(site)
    return Installed(wheel=wheel, names=names, source=source, site=site)


def test_the_wheel_installs_only_the_ensemble_package(installed: Installed) -> None:
    tops = {name.split("/")[0] for name in installed.names}
    assert tops == {"ensemble", f"{installed.wheel.name.split('-py')[0]}.dist-info"}, tops
    for folder in MOVED:
        assert not any(n.startswith(f"{folder}/") for n in installed.names), folder
    dist_info = next(n for n in installed.names if n.endswith(".dist-info/top_level.txt"))
    assert (installed.site / dist_info).read_text().split() == ["ensemble"]
    assert "ensemble/graphs/content.py" in installed.names
    assert "ensemble/graphs/research.py" in installed.names
    assert "ensemble/server/auth.py" in installed.names
    for folder, pattern in [
        ("graphs", "*.py"),
        ("nodes", "*.py"),
        ("state", "*.py"),
        ("prompts", "*.py"),
        ("prompts", "*.md"),
    ]:
        wanted = {f"ensemble/{folder}/{p.name}" for p in (installed.source / folder).glob(pattern)}
        assert wanted and wanted <= installed.names, wanted - installed.names
    assert {n for n in installed.names if n.startswith("ensemble/prompts/")} >= {
        "ensemble/prompts/chief.md",
        "ensemble/prompts/writer.md",
        "ensemble/prompts/editor.md",
    }
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in installed.names)
    # The installed folders are real folders, not symlinks back into a checkout.
    for folder in MOVED:
        assert (installed.site / "ensemble" / folder).is_dir()
        assert not (installed.site / "ensemble" / folder).is_symlink()


def _requirements(lines: list[str] | None, *, extras: bool) -> set[str]:
    names = set()
    for line in lines or []:
        if "extra ==" in line and not extras:
            continue
        names.add(_normal(re.match(r"[A-Za-z0-9._-]+", line).group()))  # type: ignore[union-attr]
    return names


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_module_level_import_is_a_declared_dependency(installed: Installed) -> None:
    """A third-party import must come with the install (declared, or required by one that is).

    The environment here has everything installed, so running cannot show a missing
    declaration; a fresh `pip install ensemble` would fail to import.
    """
    (metadata,) = [n for n in installed.names if n.endswith(".dist-info/METADATA")]
    text = (installed.site / metadata).read_text(encoding="utf-8")
    declared = re.findall(r"^Requires-Dist: (.+)$", text, re.M)
    closure = _requirements(declared, extras=False)
    todo = list(closure)
    while todo:  # what the declared packages bring with them, as installed here
        try:
            needs = importlib.metadata.requires(todo.pop())
        except importlib.metadata.PackageNotFoundError:
            continue
        for name in _requirements(needs, extras=True) - closure:
            closure.add(name)
            todo.append(name)
    providers = importlib.metadata.packages_distributions()
    missing = {}
    for path in (installed.site / "ensemble").rglob("*.py"):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top in ("ensemble", "__future__"):
                    continue
                if not {_normal(d) for d in providers.get(top, [top])} & closure:
                    missing[top] = str(path.relative_to(installed.site))
    assert not missing, f"imported but not declared in pyproject dependencies: {missing}"


def installed_env(site: Path) -> dict[str, str]:
    """This virtualenv's Python, but `import ensemble` finds the unpacked wheel first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENSEMBLE_")}
    env["PYTHONPATH"] = str(site)
    env["PYTHONSAFEPATH"] = "1"  # no script folder or cwd on sys.path
    env["ENSEMBLE_MODEL"] = "offline"
    return env


PROBE = """
import importlib.util, json, sys
import ensemble, ensemble.graphs.content, ensemble.prompts
print(json.dumps({
    "ensemble": ensemble.__file__,
    "content": ensemble.graphs.content.__file__,
    "prompts": ensemble.prompts.__file__,
    "graphs": importlib.util.find_spec("graphs") is not None,
    "nodes": importlib.util.find_spec("nodes") is not None,
    "state": importlib.util.find_spec("state") is not None,
    "prompts_top": importlib.util.find_spec("prompts") is not None,
    "path": sys.path,
}))
"""


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty folder that has nothing to do with the project."""
    return tmp_path_factory.mktemp("elsewhere")


def test_the_unpacked_wheel_is_what_python_imports(installed: Installed, elsewhere: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=elsewhere,
        env=installed_env(installed.site),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    for key in ("ensemble", "content", "prompts"):
        assert Path(found[key]).is_relative_to(installed.site), found
    assert not any(found[k] for k in ("graphs", "nodes", "state", "prompts_top")), found
    assert str(REPO_ROOT) not in found["path"] and "" not in found["path"]


@dataclass(frozen=True)
class InstalledServer:
    url: str
    db: Path
    log: Path


@pytest.fixture(scope="module")
def installed_server(installed: Installed, elsewhere: Path) -> Iterator[InstalledServer]:
    """`python -m ensemble.cli.main serve` from the unpacked wheel, in an unrelated folder."""
    data = elsewhere.parent / f"{elsewhere.name}-data"
    data.mkdir()
    db = data / "ensemble.db"
    port = processes.free_port()
    log = data / "serve.log"
    argv = [sys.executable, "-m", "ensemble.cli.main", "serve", "--port", str(port)]
    argv += ["--db", str(db), "--model", "offline"]
    url = f"http://127.0.0.1:{port}"
    with processes.start(argv, log, cwd=elsewhere, env=installed_env(installed.site)) as child:
        child.wait_ready(f"{url}/ok", STARTUP_TIMEOUT)
        yield InstalledServer(url=url, db=db, log=log)


def test_the_server_config_points_into_the_installed_package(
    installed: Installed, installed_server: InstalledServer
) -> None:
    config = json.loads(
        (installed_server.db.parent / "langgraph-server" / "langgraph.json").read_text()
    )
    paths = [*config["graphs"].values(), config["checkpointer"]["path"], config["auth"]["path"]]
    assert {"research", "content"} <= set(config["graphs"])
    for spec in paths:
        assert Path(spec.rpartition(":")[0]).is_relative_to(installed.site / "ensemble"), spec
    checkout = re.compile(re.escape(str(REPO_ROOT)) + r"/(ensemble|graphs|nodes|state|prompts)/")
    assert not checkout.search(tail(installed_server.log, 1_000_000)), "code ran from the checkout"


def test_research_and_content_runs_through_the_installed_server(
    installed_server: InstalledServer, elsewhere: Path
) -> None:
    async def runs() -> tuple[dict, dict, dict]:
        client = get_client(url=installed_server.url)
        assistants = {a["graph_id"] for a in await client.assistants.search(limit=100)}
        assert {"research", "content"} <= assistants
        thread_id = (await client.threads.create())["thread_id"]
        question = "How does json decode JSON documents?"
        research = await client.runs.wait(
            thread_id, "research", input={"question": question, "max_revisions": 0}
        )
        thread_id = (await client.threads.create())["thread_id"]
        topic = {"topic": "How json decodes JSON documents", "target_words": 100}
        paused = await client.runs.wait(thread_id, "content", input=topic | {"max_revisions": 0})
        return research, paused, await client.threads.get_state(thread_id)

    started = time.monotonic()
    research, paused, state = asyncio.run(asyncio.wait_for(runs(), RUN_TIMEOUT))
    print(f"research + content runs: {time.monotonic() - started:.1f}s")
    assert research["report"].startswith("# How does json decode JSON documents?"), research
    assert research["outcome"] in {"approved", "max_revisions", "stalled"}
    assert research["sources"], "the default corpus (Python's documentation) was searched"
    assert paused["__interrupt__"][0]["value"]["kind"] == "content_approval"
    assert state["next"] == ["approval"]
    request = state["interrupts"][0]["value"]
    assert request["draft"].strip() and request["word_count"] > 0 and request["sources"]
    assert not (installed_server.db.parent / "published").exists()
    assert not os.listdir(elsewhere), "the server wrote nothing into the folder it ran in"
