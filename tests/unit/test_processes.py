"""Child servers: ready when their URL answers, stopped with their whole process group."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from ensemble import processes

GRANDCHILD = (
    "import subprocess, sys, time; "
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
)


def group_gone(pgid: int) -> bool:
    """Whether no process of group `pgid` is left (waits up to 5 s for it to go)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_a_server_is_ready_when_it_answers_and_stops_with_its_children(tmp_path: Path) -> None:
    port = processes.free_port()
    log = tmp_path / "server.log"
    script = GRANDCHILD + f"import runpy; sys.argv = ['http.server', '-b', '127.0.0.1', '{port}']; "
    script += "runpy.run_module('http.server', run_name='__main__')"
    with processes.start([sys.executable, "-c", script], log, cwd=tmp_path) as child:
        child.wait_ready(f"http://127.0.0.1:{port}/", timeout=30)
        assert processes.http_ok(f"http://127.0.0.1:{port}/")
    assert not child.alive()
    assert group_gone(child.process.pid), "a grandchild outlived the stop"
    assert log.exists(), "a log the caller named is kept"


def test_a_child_that_exits_at_start_reports_its_output() -> None:
    dying = "import sys; print('bad config', file=sys.stderr); sys.exit(3)"
    child = processes.start([sys.executable, "-c", dying])
    with pytest.raises(processes.StartError, match="^toy exited with code 3:\nbad config$"):
        child.wait_ready(f"http://127.0.0.1:{processes.free_port()}/", timeout=30, name="toy")
    child.stop()
    assert not child.log_path.exists(), "a temporary log goes with the child"


def test_a_child_that_never_answers_times_out_with_its_output() -> None:
    silent = "import time; print('loading ...', flush=True); time.sleep(60)"
    with processes.start([sys.executable, "-c", silent]) as child:
        url = f"http://127.0.0.1:{processes.free_port()}/"
        with pytest.raises(processes.StartError, match="did not answer within 1s:\nloading"):
            child.wait_ready(url, timeout=1.0)
        assert child.alive()
    assert not child.alive()


def test_a_child_that_ignores_sigterm_is_killed_after_the_timeout() -> None:
    stubborn = GRANDCHILD + (
        "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )
    child = processes.start([sys.executable, "-c", stubborn])
    deadline = time.monotonic() + 10
    while "ready" not in child.log_tail() and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    child.stop(timeout=0.5)
    assert child.process.returncode == -9
    assert time.monotonic() - started < 5
    assert group_gone(child.process.pid)
