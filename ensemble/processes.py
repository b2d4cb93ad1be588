"""Child servers: started in their own process group with a log file, stopped as a whole.

A server Ensemble starts (the local model's llama server; the test suite's `ensemble serve`)
runs in a new session: the terminal's Ctrl-C does not reach it, and stopping it signals its
whole process group, so its own children stop too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ensemble.errors import EnsembleError

HOST = "127.0.0.1"
STOP_TIMEOUT = 10.0
"""Seconds a stopping process group may take after SIGTERM before it is killed."""


class StartError(EnsembleError, RuntimeError):
    """A child exited or did not get ready in time (a RuntimeError: retrying would not help)."""


@dataclass
class Child:
    """A process this process started, in its own process group, its output in `log_path`.

    Used as a context manager, it is stopped when the block ends.
    """

    process: subprocess.Popen[bytes]
    log_path: Path
    temporary_log: bool = False
    """Delete the log when the child is stopped (a log nobody asked to keep)."""
    owner_pid: int = field(default_factory=os.getpid)

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.process.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the child's combined stdout/stderr, for error messages."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:].strip()
        except OSError:
            return ""

    def wait_ready(self, url: str, timeout: float, name: str = "server") -> None:
        """Wait until `url` answers 200.

        Raises:
            StartError: The child exited, or `url` did not answer within `timeout` seconds;
                the message names the child and ends with its log's tail.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise StartError(
                    f"{name} exited with code {self.process.returncode}:\n{self.log_tail()}"
                )
            if http_ok(url):
                return
            time.sleep(0.1)
        raise StartError(f"{name} did not answer within {timeout:.0f}s:\n{self.log_tail()}")

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the process group: SIGTERM, then SIGKILL after `timeout` seconds.

        A forked copy of the parent does nothing: the child is its parent's to stop.
        """
        if os.getpid() != self.owner_pid:
            return
        if self.alive():
            _signal_group(self.process, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(self.process, signal.SIGKILL)
                self.process.wait(timeout)
        if self.temporary_log:
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start(
    argv: Sequence[str],
    log_path: Path | None = None,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Child:
    """Start `argv` in its own process group, stdout and stderr into `log_path`.

    Args:
        argv: The command line.
        log_path: Where the output goes; None: a temporary file, deleted when it stops.
        cwd: Working directory of the child.
        env: Its environment (default: this process's).
    """
    temporary = log_path is None
    if log_path is None:
        handle, name = tempfile.mkstemp(prefix="ensemble-child-", suffix=".log")
        os.close(handle)
        log_path = Path(name)
    with log_path.open("wb") as sink:
        process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=None if env is None else dict(env),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Child(process, log_path, temporary_log=temporary)


def http_ok(url: str) -> bool:
    """Whether a GET of `url` answers 200 within 2 seconds."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def free_port(host: str = HOST) -> int:
    """A port on `host` that is free now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)
