"""A throwaway PostgreSQL 15 cluster for a test session, on 127.0.0.1 and a free port.

The tests that run Ensemble on PostgreSQL need a real server, not a mock: the saver's SQL, its
migrations and the job queue's LISTEN/NOTIFY only show their faults on one. The cluster lives in
a temporary folder with durability off (it is thrown away), trusts local connections, and is
stopped and deleted when the session ends, even when the session is interrupted: Ctrl-C
(the fixture's finaliser, then atexit) or SIGTERM (a CI job's timeout; see `_stop_on_sigterm`).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from pathlib import Path
from types import FrameType

BIN_DIR = Path("/usr/lib/postgresql/15/bin")
"""Where Debian's `postgresql` (15 on bookworm) puts the server programs."""

HOST = "127.0.0.1"
SUPERUSER = "ensemble"
DATABASE = "ensemble"
SERVER_OS_USER = "postgres"
"""initdb and postgres refuse to run as root; as root they run as this user."""

START_ATTEMPTS = 5
"""Fresh ports to try when another process takes the chosen one before the server binds it."""

COMMAND_TIMEOUT = 120.0


def install_advice(bin_dir: Path = BIN_DIR) -> str:
    """What to run when the server programs are missing (the Makefile's `postgres` target)."""
    return (
        "PostgreSQL 15 is needed by the PostgreSQL tests and its server programs are not in "
        f"{bin_dir}: run 'make postgres' (or 'sudo apt-get install postgresql')"
    )


_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

_running: set[PostgresServer] = set()


class PostgresServer:
    """One PostgreSQL cluster: `start()` it, connect to `url`, `stop()` it (deletes its files)."""

    def __init__(self, bin_dir: Path = BIN_DIR) -> None:
        self.bin_dir = bin_dir
        self.port: int | None = None
        self.base_dir: Path | None = None
        """The temporary folder holding the data dir, the socket and the log."""
        self._owner_pid = os.getpid()

    @property
    def data_dir(self) -> Path:
        return self._base() / "data"

    @property
    def log_path(self) -> Path:
        return self._base() / "postgres.log"

    @property
    def url(self) -> str:
        """The `ensemble` database, as superuser `ensemble` (no password: trust auth)."""
        return self.url_for(DATABASE)

    def url_for(self, database: str) -> str:
        if self.port is None:
            raise RuntimeError("the PostgreSQL test server is not running: call start() first")
        return f"postgresql://{SUPERUSER}@{HOST}:{self.port}/{database}"

    def start(self) -> None:
        """Create the cluster, start it on a free port and create the `ensemble` database.

        Raises:
            RuntimeError: PostgreSQL 15 is not installed (the message says how to install it),
                or the cluster did not start (the message ends with the server's log).
        """
        if self.port is not None:
            return
        if not (self.bin_dir / "initdb").exists() or not (self.bin_dir / "pg_ctl").exists():
            raise RuntimeError(install_advice(self.bin_dir))
        self.base_dir = _make_base_dir()
        atexit.register(self.stop)
        _running.add(self)
        _stop_on_sigterm()
        try:
            self._run(
                "initdb",
                "-D",
                str(self.data_dir),
                "-A",
                "trust",
                "-U",
                SUPERUSER,
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            )
            self._start_on_free_port()
            self.new_database(DATABASE)
        except BaseException:
            self.stop()
            raise

    def new_database(self, name: str) -> str:
        """Create an empty database `name` and return its URL."""
        import psycopg
        from psycopg import sql

        if not _NAME.fullmatch(name):
            raise ValueError(f"not a plain database name: {name!r}")
        with psycopg.connect(self.url_for("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_for(name)

    def stop(self) -> None:
        """Stop the server (fast shutdown: open connections are cut) and delete its files.

        Safe to call twice; a forked copy of the owning process does nothing.
        """
        if os.getpid() != self._owner_pid or self.base_dir is None:
            return
        atexit.unregister(self.stop)
        _running.discard(self)
        if (self.data_dir / "postmaster.pid").exists():
            try:
                self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
            except RuntimeError:
                with contextlib.suppress(RuntimeError):
                    self._run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.base_dir, ignore_errors=True)
        self.base_dir = None
        self.port = None

    def _start_on_free_port(self) -> None:
        for _ in range(START_ATTEMPTS):
            port = _free_port()
            options = (
                f"-h {HOST} -p {port} -k {self._base()} -c fsync=off -c synchronous_commit=off "
                "-c full_page_writes=off -c max_connections=200"
            )
            try:
                self._run(
                    "pg_ctl",
                    "-D",
                    str(self.data_dir),
                    "-o",
                    options,
                    "-l",
                    str(self.log_path),
                    "-w",
                    "-t",
                    "60",
                    "start",
                )
            except RuntimeError:
                if "could not bind" in self._log_tail():
                    continue
                raise
            self.port = port
            return
        raise RuntimeError(f"PostgreSQL found no free port in {START_ATTEMPTS} tries")

    def _run(self, program: str, *args: str) -> None:
        """Run a server program as the user the server runs as; its output in the error."""
        argv = [str(self.bin_dir / program), *args]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", SERVER_OS_USER, "--", *argv]
        result = subprocess.run(
            argv,
            cwd=self._base(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{program} failed with code {result.returncode}:\n"
                f"{result.stdout}{result.stderr}\n{self._log_tail()}".strip()
            )

    def _log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return ""

    def _base(self) -> Path:
        if self.base_dir is None:
            raise RuntimeError("the PostgreSQL test server has no files: call start() first")
        return self.base_dir


def _stop_on_sigterm() -> None:
    """Stop the running servers when this process is terminated, then die of SIGTERM as before.

    A terminated process runs no atexit handlers, and a server started by pg_ctl outlives it.
    Installed once, and only where SIGTERM still has its default action. A forked child that
    inherits the handler dies at once: the servers are its parent's.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return
    owner_pid = os.getpid()

    def stop_then_die(signum: int, frame: FrameType | None) -> None:
        if os.getpid() == owner_pid:
            for server in list(_running):
                with contextlib.suppress(Exception):
                    server.stop()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop_then_die)


def _make_base_dir() -> Path:
    """A new folder the server's OS user owns, under a parent that user can traverse.

    As root the server runs as `postgres`, which cannot enter a 0700 folder such as pytest's
    tmp_path: so the folder is made directly under /tmp and given to `postgres`.
    """
    if os.geteuid() != 0:
        return Path(tempfile.mkdtemp(prefix="ensemble-postgres-"))
    try:
        server_user = pwd.getpwnam(SERVER_OS_USER)
    except KeyError:
        raise RuntimeError(
            f"running as root, the PostgreSQL tests start the server as the OS user "
            f"{SERVER_OS_USER!r}, which does not exist: {install_advice()}"
        ) from None
    base = Path(tempfile.mkdtemp(prefix="ensemble-postgres-", dir="/tmp"))
    base.chmod(0o755)
    os.chown(base, server_user.pw_uid, server_user.pw_gid)
    return base


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])
