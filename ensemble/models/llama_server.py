"""llama-cpp-python's OpenAI-compatible server as a child process: start, reuse, stop.

One server per GGUF file and process, on a free 127.0.0.1 port; it stops when the process ends
(atexit, or `stop_local_servers()` from the CLI), and a small launcher makes it exit when its
parent dies even by SIGKILL. `ensemble.models.local` drives it through ChatOpenAI.
"""

from __future__ import annotations

import atexit
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ensemble.errors import EnsembleError, ModelSpecError

HOST = "127.0.0.1"
"""The server has no authentication: it only ever listens on the loopback interface."""

N_CTX = 4096
"""Context window of a started server, in tokens (prompt plus answer)."""

STARTUP_TIMEOUT = 120.0
"""Seconds a starting server may take to answer `GET /v1/models` (a big GGUF loads slowly)."""

STOP_TIMEOUT = 10.0
"""Seconds a stopping server may take before its process group is killed."""

INSTALL_HINT = 'install the local extra: pip install -e ".[local]"'

_LAUNCHER = """\
import os, runpy, sys, threading, time
parent = int(sys.argv.pop(1))
def _watch():
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)
threading.Thread(target=_watch, daemon=True).start()
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""
"""Runs the server and exits it when its parent dies, even by SIGKILL (no atexit then)."""

log = logging.getLogger(__name__)


class LocalServerError(EnsembleError, RuntimeError):
    """The local model server could not be started (a RuntimeError: retrying would not help)."""


def require_server_package() -> None:
    """Raise `ModelSpecError` unless llama-cpp-python's server can be imported."""
    if importlib.util.find_spec("llama_cpp") is None:
        raise ModelSpecError(f"model spec local needs llama-cpp-python; {INSTALL_HINT}")


@dataclass
class LocalServer:
    """A llama-cpp-python server this process started."""

    gguf: Path
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    owner_pid: int = field(default_factory=os.getpid)

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL (ends in `/v1`)."""
        return f"http://{HOST}:{self.port}/v1"

    def alive(self) -> bool:
        """Whether the server process is still running."""
        return self.process.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the server's combined stdout/stderr, for error messages."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:].strip()
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the server's process group: SIGTERM, then SIGKILL after `STOP_TIMEOUT`."""
        if os.getpid() == self.owner_pid:  # a forked child must not stop its parent's server
            if self.alive():
                _signal_group(self.process, signal.SIGTERM)
                try:
                    self.process.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    _signal_group(self.process, signal.SIGKILL)
                    self.process.wait(STOP_TIMEOUT)
            self.log_path.unlink(missing_ok=True)


_servers: dict[Path, LocalServer] = {}
_servers_lock = threading.Lock()
_atexit_registered = False


def ensure_server(gguf: Path) -> str:
    """Return the base URL of this process's server for `gguf`, starting it if needed.

    One server per model file and process: parallel callers wait for the one start, and a
    server that died is replaced.

    Raises:
        LocalServerError: The server exited or did not answer within `STARTUP_TIMEOUT`.
    """
    global _atexit_registered
    with _servers_lock:
        server = _servers.get(gguf)
        if server is not None and server.alive():
            return server.base_url
        if server is not None:
            log.warning("local model server died; restarting it:\n%s", server.log_tail(500))
            server.stop()
        if not _atexit_registered:
            atexit.register(stop_local_servers)
            _atexit_registered = True
        server = start_server(gguf)
        _servers[gguf] = server
        return server.base_url


def stop_local_servers() -> None:
    """Stop every local model server this process started (the CLI calls it when it ends)."""
    with _servers_lock:
        servers = list(_servers.values())
        _servers.clear()
    for server in servers:
        server.stop()


def server_command(gguf: Path, port: int, threads: int | None = None) -> list[str]:
    """The command line of a server for `gguf` on `port`, run with this Python."""
    threads = threads or max(1, min(os.cpu_count() or 1, 8))
    options = {
        "--model": str(gguf),
        "--model_alias": gguf.stem,
        "--host": HOST,
        "--port": str(port),
        "--n_ctx": str(N_CTX),
        "--n_threads": str(threads),
        "--n_threads_batch": str(threads),
        "--interrupt_requests": "False",
        "--verbose": "False",
    }
    command = [sys.executable, "-c", _LAUNCHER, str(os.getpid())]
    for flag, value in options.items():
        command += [flag, value]
    return command


def start_server(gguf: Path, timeout: float = STARTUP_TIMEOUT) -> LocalServer:
    """Start a server for `gguf` on a free port and wait until it answers.

    Raises:
        LocalServerError: It exited (the message carries its output's tail) or timed out.
    """
    require_server_package()
    port = free_port()
    handle, name = tempfile.mkstemp(prefix="ensemble-llama-", suffix=".log")
    log_path = Path(name)
    with os.fdopen(handle, "wb") as sink:
        process = subprocess.Popen(
            server_command(gguf, port),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole, never by Ctrl-C
        )
    server = LocalServer(gguf=gguf, port=port, process=process, log_path=log_path)
    started = time.monotonic()
    try:
        _wait_until_ready(server, timeout)
    except BaseException:
        server.stop()
        raise
    log.info("local model server for %s ready in %.1fs", gguf.name, time.monotonic() - started)
    return server


def _wait_until_ready(server: LocalServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive():
            raise LocalServerError(
                f"local model server for {server.gguf.name} exited with code "
                f"{server.process.returncode}:\n{server.log_tail()}"
            )
        if answers(server.base_url):
            return
        time.sleep(0.1)
    raise LocalServerError(
        f"local model server for {server.gguf.name} did not answer within "
        f"{timeout:.0f}s:\n{server.log_tail()}"
    )


def answers(base_url: str) -> bool:
    """Whether an OpenAI-compatible server at `base_url` lists its models."""
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def free_port() -> int:
    """A port on 127.0.0.1 that is free now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
