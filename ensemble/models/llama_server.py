"""llama-cpp-python's OpenAI-compatible server as a child process: start, reuse, stop.

One server per GGUF file and process, on a free 127.0.0.1 port; it stops when the process ends
(atexit, or `stop_local_servers()` from the CLI), and a small launcher makes it exit when its
parent dies even by SIGKILL. `ensemble.models.local` drives it through ChatOpenAI.
"""

from __future__ import annotations

import atexit
import importlib.util
import itertools
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ensemble import processes
from ensemble.errors import ModelSpecError

HOST = processes.HOST
"""The server has no authentication: it only ever listens on the loopback interface."""

N_CTX = 4096
"""Context window of a started server, in tokens (prompt plus answer)."""

STARTUP_TIMEOUT = 120.0
"""Seconds a starting server may take to answer `GET /v1/models` (a big GGUF loads slowly)."""

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


def require_server_package() -> None:
    """Raise `ModelSpecError` unless llama-cpp-python's server can be imported."""
    if importlib.util.find_spec("llama_cpp") is None:
        raise ModelSpecError(f"model spec local needs llama-cpp-python; {INSTALL_HINT}")


@dataclass
class LocalServer:
    """A llama-cpp-python server this process started."""

    gguf: Path
    port: int
    child: processes.Child

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL (ends in `/v1`)."""
        return f"http://{HOST}:{self.port}/v1"


_servers: dict[Path, LocalServer] = {}
_servers_lock = threading.Lock()


def ensure_server(gguf: Path) -> str:
    """Return the base URL of this process's server for `gguf`, starting it if needed.

    One server per model file and process: parallel callers wait for the one start, and a
    server that died is replaced.

    Raises:
        processes.StartError: The server exited or did not answer within `STARTUP_TIMEOUT`.
    """
    with _servers_lock:
        server = _servers.get(gguf)
        if server is not None and server.child.alive():
            return server.base_url
        if server is not None:
            log.warning("local model server died; restarting it:\n%s", server.child.log_tail(500))
            server.child.stop()
        server = start_server(gguf)
        _servers[gguf] = server
        return server.base_url


def stop_local_servers() -> None:
    """Stop every local model server this process started (the CLI calls it when it ends)."""
    with _servers_lock:
        servers = list(_servers.values())
        _servers.clear()
    for server in servers:
        server.child.stop()


atexit.register(stop_local_servers)  # a no-op unless this process started a server


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
    return [sys.executable, "-c", _LAUNCHER, str(os.getpid()), *itertools.chain(*options.items())]


def start_server(gguf: Path, timeout: float = STARTUP_TIMEOUT) -> LocalServer:
    """Start a server for `gguf` on a free port and wait until it answers.

    Raises:
        processes.StartError: It exited (the message carries its output's tail) or timed out.
    """
    require_server_package()
    port = processes.free_port()
    server = LocalServer(gguf, port, processes.start(server_command(gguf, port)))
    started = time.monotonic()
    try:
        server.child.wait_ready(
            f"{server.base_url}/models", timeout, f"local model server for {gguf.name}"
        )
    except BaseException:
        server.child.stop()
        raise
    log.info("local model server for %s ready in %.1fs", gguf.name, time.monotonic() - started)
    return server
