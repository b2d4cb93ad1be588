"""A real `langgraph dev` server on 127.0.0.1, started the way `ensemble serve` starts it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ensemble.cli import serve
from ensemble.server.policy import ServerPolicy
from tests.corpus import write_corpus

STARTUP_TIMEOUT = 120.0
STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class Server:
    """A running dev server and what tests need to talk to it and to its database."""

    url: str
    db: Path
    corpus: Path
    log: Path
    process: subprocess.Popen


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_ready(url: str, process: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode}:\n{tail(log)}")
        if http_ok(f"{url}/ok"):
            return
        time.sleep(0.25)
    pytest.fail(f"server not ready after {timeout:.0f}s:\n{tail(log)}")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def tail(log: Path, chars: int = 6000) -> str:
    return log.read_text(encoding="utf-8", errors="replace")[-chars:] if log.exists() else ""


def stop(process: subprocess.Popen, timeout: float = STOP_TIMEOUT) -> None:
    """Terminate the server's process group; kill it if it has not stopped in `timeout`."""
    if process.poll() is None:
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            pass
    _signal_group(process, signal.SIGKILL)
    process.wait(timeout)


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


SLOW_MODEL = "offline?latency=2"
"""A model the dev server's operator offers its clients, for runs that must take a while."""


def served_access(workdir: Path) -> serve.ServerAccess:
    """Corpora under `workdir`; the offline model, and a slow one, offered to clients."""
    policy = ServerPolicy(default_model="offline", models=(SLOW_MODEL,))
    return serve.ServerAccess(corpus_roots=(workdir,), policy=policy)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One dev server for the module: temp database, temp working directory, offline model."""
    workdir = tmp_path_factory.mktemp("devserver")
    corpus = write_corpus(workdir / "corpus")
    db = workdir / "ensemble.db"
    config = serve.server_config(workdir)
    port = free_port()
    log = workdir / "server.log"
    command = serve.server_command(port, jobs=4, config=config)
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command,
            cwd=workdir,
            env=serve.server_env(db, "offline", access=served_access(workdir)),
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = serve.server_url(port)
    try:
        wait_until_ready(url, process, log, STARTUP_TIMEOUT)
        yield Server(url=url, db=db, corpus=corpus, log=log, process=process)
    finally:
        stop(process)
