"""Run untrusted Python code in a separate, isolated, resource-limited process.

Isolation comes from bubblewrap: a read-only view of `/`, fresh /dev and /proc, new network,
pid, ipc and uts namespaces (no network, no view of other processes), an empty environment,
and one writable place, a fresh scratch directory that is also the working directory and
`/tmp`. Homes, `/run` and the caller's top-level working tree are hidden behind empty
read-only directories. Resource limits (CPU, address space, file size, processes, no core
files) are set by a small launcher inside the sandbox just before it execs the code, which
avoids `preexec_fn` (unsafe in threaded callers such as LangGraph tool threads). The
supervisor enforces wall time and output size itself and kills the whole sandbox.

A caller running as root starts bubblewrap as `nobody`: the kernel never applies
RLIMIT_NPROC to host uid 0 (bubblewrap maps the sandbox user onto the caller's uid), so a
fork bomb would otherwise be stopped only by the wall clock, and root's read access to the
host's files would carry into the sandbox.

Without a working bubblewrap, `run_python` refuses (`SandboxUnavailable`): code is never
run unisolated.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pwd
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ensemble.errors import EnsembleError

Reason = Literal["timeout", "cpu", "memory", "output", "error"]

# Where the scratch directory appears inside the sandbox: the cwd, HOME and /tmp at once.
SANDBOX_DIR = "/tmp"
_SCRIPT = "main.py"
_CHUNK = 65536
# Hidden behind empty read-only directories: homes and runtime sockets (a unix socket such
# as /run/docker.sock is reachable even without a network namespace).
_HIDDEN_DIRS = ("/home", "/root", "/run", "/var/run", "/var/tmp", "/mnt", "/media", "/srv")
# Top-level directories the system needs; the caller's working tree is hidden unless it
# lives in one of these.
_SYSTEM_DIRS = frozenset(
    {"bin", "boot", "dev", "etc", "lib", "lib32", "lib64", "libx32", "nix", "opt", "proc"}
    | {"sbin", "snap", "sys", "usr", "var", "gnu", "tmp"}
)
# Runs first inside the sandbox (trusted): sets the limits, then replaces itself with the
# untrusted script. RLIMIT_NPROC is set here, not before bwrap, so that it counts only the
# processes of the sandbox's own user namespace and bwrap's setup is not limited by it.
_LAUNCHER = """\
import os, resource, sys
cpu, memory, fsize, nproc = (int(a) for a in sys.argv[1:5])
def limit(kind, soft, hard):
    ceiling = resource.getrlimit(kind)[1]
    if ceiling != resource.RLIM_INFINITY:
        soft, hard = min(soft, ceiling), min(hard, ceiling)
    resource.setrlimit(kind, (soft, hard))
limit(resource.RLIMIT_CORE, 0, 0)
limit(resource.RLIMIT_CPU, cpu, cpu + 1)
limit(resource.RLIMIT_AS, memory, memory)
limit(resource.RLIMIT_FSIZE, fsize, fsize)
limit(resource.RLIMIT_NPROC, nproc, nproc)
os.execv(sys.executable, [sys.executable, "-I", sys.argv[5]])
"""
# Other places a world-usable Python may live, for a root caller whose own is not.
_SYSTEM_PYTHONS = ("/usr/bin/python3", "/usr/local/bin/python3")


class SandboxUnavailable(EnsembleError):
    """Bubblewrap is missing or does not work here, so code is not run at all."""


@dataclass(frozen=True)
class SandboxLimits:
    """What one run may use; exceeding any of these ends the run.

    Attributes:
        cpu_seconds: CPU time per process (SIGXCPU, then SIGKILL a second later).
        memory_mb: Address space per process (RLIMIT_AS); allocation beyond fails.
        wall_seconds: Real time for the whole run; the sandbox is killed at the deadline.
        output_bytes: Bytes kept per stream; more than this on either stream kills the run.
        max_processes: Processes and threads the sandboxed user may have (fork bombs).
        file_bytes: Largest file the code may write (RLIMIT_FSIZE).
    """

    cpu_seconds: int = 5
    memory_mb: int = 256
    wall_seconds: float = 10.0
    output_bytes: int = 64 * 1024
    max_processes: int = 32
    file_bytes: int = 16 * 1024 * 1024


@dataclass(frozen=True)
class SandboxResult:
    """How a run ended.

    Attributes:
        ok: True when the code exited with status 0 within every limit.
        stdout: Standard output, decoded as UTF-8 (invalid bytes replaced), truncated.
        stderr: Standard error, likewise.
        truncated: True when either stream was cut at `output_bytes`.
        exit_code: The exit status (128 + N for signal N), or None when the supervisor
            killed the sandbox (wall timeout, too much output).
        reason: None when ok, else why it failed: "timeout" (wall clock), "cpu" (CPU
            limit), "memory" (allocation refused), "output" (too much output) or "error"
            (the code failed by itself, e.g. an exception).
        duration: Wall-clock seconds the run took.
    """

    ok: bool
    stdout: str
    stderr: str
    truncated: bool
    exit_code: int | None
    reason: Reason | None
    duration: float


def sandbox_available() -> bool:
    """Whether bubblewrap is installed and can build a sandbox on this machine."""
    return sandbox_problem() is None


def sandbox_problem() -> str | None:
    """Why no sandbox can be built on this machine, or None when one can."""
    try:
        _require_sandbox()
    except SandboxUnavailable as error:
        return str(error)
    return None


def run_python(code: str, *, limits: SandboxLimits = SandboxLimits()) -> SandboxResult:  # noqa: B008
    """Run `code` as a Python script in a fresh sandbox and report what happened.

    The script sees only the standard library (`python -I`), an environment of PATH, HOME,
    LANG, PYTHONDONTWRITEBYTECODE and MALLOC_ARENA_MAX only, no network, and a scratch
    directory (cwd, HOME and /tmp) that is deleted afterwards. It blocks until the run
    ends (at most about `limits.wall_seconds`); call it from a thread in async code.

    Returns:
        The outcome; a failing script is a result with `ok=False`, not an exception.

    Raises:
        SandboxUnavailable: bubblewrap is missing or unusable; the code was not run.
    """
    return _run(_require_sandbox(), code, limits)


def _run(setup: _Setup, code: str, limits: SandboxLimits) -> SandboxResult:
    """Run `code` in a fresh sandbox whose scratch directory is deleted afterwards."""
    scratch = _scratch(setup, code)
    try:
        return _supervise(setup, _command(setup, scratch, limits), limits)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@dataclass(frozen=True)
class _Setup:
    """How sandboxes are built from this process: the tools and the user they run as."""

    bwrap: str
    python: str
    python_dirs: tuple[str, ...]
    user: tuple[int, int] | None  # (uid, gid) to start bwrap as; None keeps the caller's


def _require_sandbox() -> _Setup:
    """A working setup, or refuse: never fall back to running code without isolation."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxUnavailable(
            "the Python tool needs bubblewrap (apt-get install bubblewrap); "
            "refusing to run code without isolation"
        )
    setup = _setup(bwrap)
    if setup is None:
        raise SandboxUnavailable(
            "no Python interpreter that the unprivileged sandbox user can run was found "
            f"(tried {sys.executable} and {', '.join(_SYSTEM_PYTHONS)}); refusing to run "
            "code as root"
        )
    if not _probe(setup):
        raise SandboxUnavailable(
            f"bubblewrap ({bwrap}) cannot create a sandbox here (are user namespaces "
            "disabled?); refusing to run code without isolation"
        )
    return setup


def _setup(bwrap: str) -> _Setup | None:
    """Choose the sandbox user and an interpreter it can run; None when there is none."""
    user = _sandbox_user()
    own = os.path.realpath(sys.executable)
    dirs = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.base_exec_prefix)}
    dirs.add(os.path.dirname(own))
    if user is None or all(_world_usable(path) for path in (own, *dirs)):
        return _Setup(bwrap, own, tuple(sorted(dirs)), user)
    for candidate in _SYSTEM_PYTHONS:
        python = os.path.realpath(candidate)
        if os.path.isfile(python) and _world_usable(python):
            return _Setup(bwrap, python, (os.path.dirname(python),), user)
    return None


def _sandbox_user() -> tuple[int, int] | None:
    """`nobody` when this process is root (see the module docstring), else None."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        return (65534, 65534)
    return (entry.pw_uid, entry.pw_gid)


def _world_usable(path: str) -> bool:
    """Whether any user can reach `path` (every parent searchable) and read and run it."""
    try:
        parents = [os.stat(parent).st_mode for parent in Path(path).parents]
        mode = os.stat(path).st_mode
    except OSError:
        return False
    wanted = stat.S_IROTH | stat.S_IXOTH
    return all(m & stat.S_IXOTH for m in parents) and mode & wanted == wanted


@functools.cache
def _probe(setup: _Setup) -> bool:
    """Build one real sandbox running a tiny script; cached, as the answer does not change."""
    try:
        result = _run(setup, "print('ok')\n", SandboxLimits())
    except (OSError, subprocess.SubprocessError):
        return False
    return result.ok and result.stdout.strip() == "ok"


def _scratch(setup: _Setup, code: str) -> str:
    """A fresh directory holding the script, owned by the sandbox user."""
    scratch = tempfile.mkdtemp(prefix="ensemble-sandbox-")
    try:
        Path(scratch, _SCRIPT).write_text(code, encoding="utf-8")
        if setup.user is not None:
            os.chown(scratch, *setup.user)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return scratch


def _user_arguments(setup: _Setup) -> dict[str, Any]:
    """Popen arguments starting bwrap as the sandbox user (done in C, safe with threads)."""
    if setup.user is None:
        return {}
    uid, gid = setup.user
    return {"user": uid, "group": gid, "extra_groups": []}


def _hidden_dirs() -> list[str]:
    """Directories replaced by empty read-only ones inside the sandbox."""
    hidden = [d for d in _HIDDEN_DIRS if os.path.isdir(d) and not os.path.islink(d)]
    callers = [os.path.expanduser("~")]
    with contextlib.suppress(OSError):  # a deleted working directory
        callers.append(os.getcwd())
    for path in callers:
        parts = Path(path).resolve().parts
        if len(parts) > 1 and parts[1] not in _SYSTEM_DIRS:
            top = f"/{parts[1]}"
            if top not in hidden and os.path.isdir(top):
                hidden.append(top)
    return hidden


def _command(setup: _Setup, scratch: str, limits: SandboxLimits) -> list[str]:
    """The bwrap command line running the launcher, then the script, in `scratch`."""
    hidden = _hidden_dirs()
    args = [setup.bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    for directory in hidden:
        args += ["--tmpfs", directory]
    for directory in setup.python_dirs:  # the interpreter may live under a hidden directory
        if any(directory == h or directory.startswith(h + "/") for h in hidden):
            args += ["--ro-bind", directory, directory]
    for directory in hidden:
        args += ["--remount-ro", directory]
    args += ["--bind", scratch, SANDBOX_DIR, "--chdir", SANDBOX_DIR]
    args += ["--unshare-all", "--die-with-parent", "--new-session", "--clearenv"]
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": SANDBOX_DIR,
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        # One malloc arena: each extra one reserves 64 MiB of address space, which under
        # RLIMIT_AS would leave room for only a handful of threads.
        "MALLOC_ARENA_MAX": "1",
    }
    for name, value in env.items():
        args += ["--setenv", name, value]
    memory = limits.memory_mb * 1024 * 1024
    numbers = (limits.cpu_seconds, memory, limits.file_bytes, limits.max_processes)
    launcher = [setup.python, "-I", "-S", "-c", _LAUNCHER, *map(str, numbers), _SCRIPT]
    return [*args, "--", *launcher]


def _supervise(setup: _Setup, command: list[str], limits: SandboxLimits) -> SandboxResult:
    """Run the sandbox, collecting bounded output, and kill it at the deadline or overflow."""
    started = time.monotonic()
    deadline = started + limits.wall_seconds
    out, err = bytearray(), bytearray()
    killed: Reason | None = None
    with subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, killed as a whole
        **_user_arguments(setup),
    ) as process:
        try:
            killed = _collect(process, out, err, deadline, limits.output_bytes)
            if killed is None:
                try:
                    process.wait(timeout=max(deadline - time.monotonic(), 0))
                except subprocess.TimeoutExpired:
                    killed = "timeout"
        finally:
            if killed is not None or process.poll() is None:
                _kill(process)
            process.wait()
    exit_code = None if killed is not None else process.returncode
    # Invalid or cut-off UTF-8 must not fail the run.
    stdout, stderr = (bytes(b[: limits.output_bytes]).decode(errors="replace") for b in (out, err))
    reason = killed or _reason(exit_code, stderr)
    return SandboxResult(
        ok=reason is None,
        stdout=stdout,
        stderr=stderr,
        truncated=len(out) > limits.output_bytes or len(err) > limits.output_bytes,
        exit_code=exit_code,
        reason=reason,
        duration=time.monotonic() - started,
    )


def _collect(
    process: subprocess.Popen[bytes],
    out: bytearray,
    err: bytearray,
    deadline: float,
    output_bytes: int,
) -> Reason | None:
    """Read both pipes until they close; stop early at the deadline or on too much output.

    At most `output_bytes + 1` bytes are kept per stream, so memory stays bounded however
    much the code prints.
    """
    with selectors.DefaultSelector() as selector:
        for pipe, buffer in ((process.stdout, out), (process.stderr, err)):
            if pipe is not None:
                selector.register(pipe, selectors.EVENT_READ, buffer)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "timeout"
            for key, _ in selector.select(timeout=remaining):
                chunk = os.read(key.fd, _CHUNK)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                buffer = key.data
                buffer += chunk[: output_bytes + 1 - len(buffer)]
                if len(buffer) > output_bytes:
                    return "output"
    return None


def _kill(process: subprocess.Popen[bytes]) -> None:
    """Kill bwrap's process group; the sandbox's pid namespace dies with bwrap."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _reason(exit_code: int | None, stderr: str) -> Reason | None:
    """Classify how the code ended by itself."""
    if exit_code == 0:
        return None
    if exit_code in (128 + signal.SIGXCPU, -signal.SIGXCPU):
        return "cpu"
    if "MemoryError" in stderr:
        return "memory"
    return "error"
