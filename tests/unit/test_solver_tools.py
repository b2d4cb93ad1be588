"""The distributed problem solver's tools: calculator, sandboxed Python, permissions."""

from __future__ import annotations

import math
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ensemble.errors import EnsembleError
from ensemble.tools import sandbox
from ensemble.tools.calculator import CalculatorError, evaluate
from ensemble.tools.permissions import KNOWN_TOOLS, ToolGate, ToolRefused
from ensemble.tools.sandbox import (
    SandboxLimits,
    SandboxUnavailable,
    run_python,
    sandbox_available,
)

REPO = Path(__file__).resolve().parents[2]
FAST = SandboxLimits(cpu_seconds=1, wall_seconds=5)


# --- calculator -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 + 2", 3),
        ("2 + 3 * 4", 14),
        ("(2 + 3) * 4", 20),
        ("2 ** 3 ** 2", 512),
        ("-2 ** 2", -4),
        ("+-+3", -3),
        ("7 / 2", 3.5),
        ("7 // 2", 3),
        ("-7 // 2", -4),
        ("7 % 3", 1),
        ("2 ** -1", 0.5),
        ("1_000 * 3", 3000),
        ("abs(-4.5)", 4.5),
        ("round(2.567, 2)", 2.57),
        ("min(3, 1, 2) + max(4, 9)", 10),
        ("sqrt(16) + floor(2.7) + ceil(2.1)", 9.0),
        ("log(e) + log10(1000) + exp(0)", 5.0),
        ("log(8, 2)", 3.0),
        ("2 ** 1000 // 2 ** 999", 2),
    ],
)
def test_calculator_computes_arithmetic(expression: str, expected: float) -> None:
    result = evaluate(expression)
    assert result == pytest.approx(expected)
    assert type(result) is type(expected)


def test_calculator_knows_trigonometry_and_constants() -> None:
    assert evaluate("sin(pi / 2)") == pytest.approx(1.0)
    assert evaluate("cos(0) + tan(0)") == pytest.approx(1.0)
    assert evaluate("2 * pi") == pytest.approx(2 * math.pi)


@pytest.mark.parametrize(
    ("expression", "complaint"),
    [
        ("__import__('os')", "calling '__import__' is not allowed"),
        ("__import__('os').system('true')", "attribute access (.system)"),
        ("(1).__class__", "attribute access (.__class__)"),
        ("math.pi", "attribute access (.pi)"),
        ("x + 1", "name 'x' is not allowed"),
        ("open", "name 'open' is not allowed"),
        ("(lambda: 1)()", "only the whitelisted functions"),
        ("lambda: 1", "lambda is not allowed"),
        ("[x for x in (1, 2)]", "a list comprehension is not allowed"),
        ("sum(x for x in (1, 2))", "calling 'sum' is not allowed"),
        ("'a' * 3", "only numbers are allowed"),
        ("1 if 1 else 2", "if/else is not allowed"),
        ("1 < 2", "a comparison is not allowed"),
        ("True + 1", "only numbers are allowed"),
        ("1j * 2", "only numbers are allowed"),
        ("1 << 4", "operator << is not allowed"),
        ("~1", "operator ~ is not allowed"),
        ("round(x=1)", "plain positional arguments"),
        ("sqrt", "must be called"),
        ("9 ** 9 ** 9", "too large"),
        ("2 ** 1001", "exponent 1001 is too large"),
        ("99999 ** 1000", "would be too large"),
        ("(2 ** 1000) ** 1000", "would be too large"),
        ("10.0 ** 400", "too large"),
        ("exp(1000)", "too large"),
        ("1 / 0", "division by zero"),
        ("5 % 0", "division by zero"),
        ("sqrt(-1)", "cannot compute"),
        ("(-8) ** 0.5", "not a real number"),
        ("min()", "at least one argument"),
        ("2 +", "not a valid arithmetic expression"),
        ("import os", "not a valid arithmetic expression"),
    ],
)
def test_calculator_refuses_with_a_clear_message(expression: str, complaint: str) -> None:
    with pytest.raises(CalculatorError) as caught:
        evaluate(expression)
    assert complaint in str(caught.value)
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, EnsembleError)


def test_calculator_refuses_long_input() -> None:
    with pytest.raises(CalculatorError, match="too long .501 characters, at most 500"):
        evaluate("1+" * 250 + "1")


def test_calculator_accepts_500_characters_and_survives_deep_nesting() -> None:
    assert evaluate("+".join(["1"] * 250)) == 250  # 499 characters
    with pytest.raises(CalculatorError):
        evaluate("(" * 240 + "1" + ")" * 240)
    assert evaluate("-" * 499 + "1") == -1


# --- sandbox ----------------------------------------------------------------------------------


def test_sandbox_is_available_here() -> None:
    # The machine and CI install bubblewrap: nothing below is skipped.
    assert sandbox_available()


def test_sandbox_runs_code_and_returns_its_output() -> None:
    result = run_python("import sys\nprint('hello', 6 * 7)\nprint('oops', file=sys.stderr)")
    assert result.ok and result.reason is None and result.exit_code == 0
    assert result.stdout == "hello 42\n"
    assert result.stderr == "oops\n"
    assert not result.truncated
    assert 0 < result.duration < 5


def test_sandbox_reports_a_failing_script_as_an_error() -> None:
    result = run_python("raise ValueError('bad input')")
    assert not result.ok and result.reason == "error" and result.exit_code == 1
    assert "ValueError: bad input" in result.stderr


def test_sandbox_sees_only_the_standard_library() -> None:
    result = run_python("import langgraph", limits=FAST)
    assert result.reason == "error" and "ModuleNotFoundError" in result.stderr


def test_a_few_threads_fit_in_the_memory_limit() -> None:
    code = """
import threading, time
threads = [threading.Thread(target=time.sleep, args=(0.2,)) for _ in range(10)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print("joined")
"""
    result = run_python(code, limits=FAST)
    assert result.ok, result.stderr
    assert result.stdout == "joined\n"


def test_an_infinite_loop_is_stopped_by_the_cpu_limit() -> None:
    result = run_python("while True:\n    pass", limits=FAST)
    assert not result.ok and result.reason == "cpu"
    assert result.duration < FAST.wall_seconds


def test_sleeping_past_the_wall_clock_is_a_timeout() -> None:
    started = time.monotonic()
    result = run_python("import time\ntime.sleep(60)", limits=SandboxLimits(wall_seconds=1.5))
    assert not result.ok and result.reason == "timeout" and result.exit_code is None
    assert time.monotonic() - started < 4


def test_allocating_a_gibibyte_hits_the_memory_limit() -> None:
    result = run_python("data = bytearray(1 << 30)\nprint('allocated')", limits=FAST)
    assert not result.ok and result.reason == "memory"
    assert "allocated" not in result.stdout


def test_too_much_output_is_cut_and_the_run_stopped() -> None:
    limits = SandboxLimits(output_bytes=1024, wall_seconds=5)
    result = run_python("while True:\n    print('x' * 1000)", limits=limits)
    assert not result.ok and result.reason == "output" and result.truncated
    assert 0 < len(result.stdout) <= 1024
    assert result.duration < 5


def test_a_fork_loop_is_contained_and_leaves_no_process_behind() -> None:
    marker = f"29.{uuid.uuid4().int % 10**9}"  # a unique `sleep` argument to look for
    code = f"""
import os
made = failed = 0
for _ in range(200):
    try:
        pid = os.fork()
    except OSError:
        failed += 1
        continue
    if pid == 0:
        try:
            os.execv("/bin/sleep", ["sleep", "{marker}"])
        finally:
            os._exit(1)
    made += 1
print(made, failed, flush=True)
"""
    limits = SandboxLimits(wall_seconds=5, max_processes=16)
    started = time.monotonic()
    result = run_python(code, limits=limits)
    assert time.monotonic() - started < limits.wall_seconds + 1
    made, failed = (int(n) for n in result.stdout.split())
    assert made < 16 and failed > 0  # the process limit held
    deadline = time.monotonic() + 3
    while _processes_mentioning(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_mentioning(marker) == []


def test_the_sandbox_has_no_network(host_listener: int) -> None:
    code = f"""
import socket
try:
    socket.create_connection(("127.0.0.1", {host_listener}), timeout=2)
    print("connected")
except OSError as error:
    print("blocked", type(error).__name__)
"""
    result = run_python(code, limits=FAST)
    assert result.ok, result.stderr
    assert result.stdout.startswith("blocked")


def test_the_callers_environment_is_not_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_TOKEN", "hunter2-do-not-leak")
    code = "import os\nprint(os.environ.get('SECRET_TOKEN'))\nprint(sorted(os.environ))"
    result = run_python(code, limits=FAST)
    assert result.ok, result.stderr
    assert "hunter2" not in result.stdout
    first, names = result.stdout.splitlines()
    assert first == "None"
    assert "SECRET_TOKEN" not in names and "HOME" in names


def test_only_the_scratch_directory_is_writable() -> None:
    escapes = [REPO / "sandbox-escape.txt", Path("/etc/sandbox-escape"), Path.home() / "x"]
    code = f"""
for path in {[str(p) for p in escapes]!r}:
    try:
        open(path, "w").write("escaped")
        print("wrote", path)
    except OSError as error:
        print("refused", type(error).__name__)
with open("result.txt", "w") as out:
    out.write("fine")
print(open("result.txt").read())
"""
    result = run_python(code, limits=FAST)
    assert result.ok, result.stderr
    lines = result.stdout.splitlines()
    assert all(line.startswith("refused") for line in lines[:-1]), lines
    assert lines[-1] == "fine"
    assert not any(path.exists() for path in escapes)


def test_the_callers_files_are_hidden() -> None:
    code = f"import os\nprint(os.path.exists({str(REPO / 'pyproject.toml')!r}))"
    result = run_python(code, limits=FAST)
    assert result.ok, result.stderr
    assert result.stdout.strip() == "False"


def test_the_scratch_directory_is_deleted(monkeypatch: pytest.MonkeyPatch) -> None:
    created: list[str] = []
    real_mkdtemp = sandbox.tempfile.mkdtemp

    def spy(*args: object, **kwargs: object) -> str:
        path = real_mkdtemp(*args, **kwargs)
        created.append(path)
        return path

    monkeypatch.setattr(sandbox.tempfile, "mkdtemp", spy)
    result = run_python("open('left-behind.txt', 'w').write('data')\nprint('ok')", limits=FAST)
    assert result.ok, result.stderr
    assert created and not any(os.path.exists(path) for path in created)


def test_missing_bubblewrap_refuses_and_runs_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    monkeypatch.setattr(sandbox.shutil, "which", lambda name, *a, **k: None)
    with pytest.raises(SandboxUnavailable, match="needs bubblewrap") as caught:
        run_python(f"open({str(marker)!r}, 'w').write('ran')")
    assert "refusing to run code without isolation" in str(caught.value)
    assert isinstance(caught.value, EnsembleError)
    assert not marker.exists()
    assert not sandbox_available()


def test_an_unusable_bubblewrap_refuses_and_runs_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    monkeypatch.setattr(sandbox, "_probe", lambda setup: False)

    def no_process(*args: object, **kwargs: object) -> None:
        raise AssertionError("started a process although the sandbox is unusable")

    monkeypatch.setattr(sandbox.subprocess, "Popen", no_process)
    with pytest.raises(SandboxUnavailable, match="cannot create a sandbox"):
        run_python(f"open({str(marker)!r}, 'w').write('ran')")
    assert not marker.exists()
    assert not sandbox_available()


# --- permissions ----------------------------------------------------------------------------


def test_a_given_tool_runs() -> None:
    refusals: list[tuple[str, str, str]] = []
    gate = ToolGate("solver-1", {"calculator"}, on_refusal=lambda *r: refusals.append(r))
    assert gate.call("calculator", lambda: evaluate("6 * 7")) == 42
    assert gate.allows("calculator") and refusals == []


@pytest.mark.parametrize("tool", ["python", "made_up_tool"])
def test_a_tool_not_given_is_refused_recorded_and_never_run(tool: str) -> None:
    refusals: list[tuple[str, str, str]] = []
    ran: list[bool] = []
    gate = ToolGate("solver-1", {"calculator"}, on_refusal=lambda *r: refusals.append(r))
    with pytest.raises(ToolRefused) as caught:
        gate.call(tool, lambda: ran.append(True))
    assert ran == []
    assert isinstance(caught.value, EnsembleError)
    assert "solver-1" in str(caught.value) and tool in str(caught.value)
    [(agent, refused_tool, reason)] = refusals
    assert (agent, refused_tool) == ("solver-1", tool)
    assert "calculator" in reason  # says what the agent was given


def test_known_tools() -> None:
    assert KNOWN_TOOLS == {"calculator", "python", "search_corpus", "research"}


# --- helpers ----------------------------------------------------------------------------------


@pytest.fixture
def host_listener() -> Iterator[int]:
    """A port on the host's loopback where a server does listen (but the sandbox can't reach)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


def _processes_mentioning(marker: str) -> list[int]:
    """Host pids whose command line contains `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(entry.name))
    return found
