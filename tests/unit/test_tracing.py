"""OpenTelemetry tracing: off by default; when on, run -> node -> model spans with attributes."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from typing import Any, TypedDict

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from ensemble.observe import Observer, TracingSink, observer, tracing
from ensemble.observe.tracing import ENV, tracer_provider, use_provider


class NamedFakeModel(GenericFakeChatModel):
    """A fake chat model that names itself, as real ones do (`ls_model_name`)."""

    model: str = "fake-model"


def answer(content: str = "hi", tokens: tuple[int, int] = (3, 1)) -> AIMessage:
    usage = {"input_tokens": tokens[0], "output_tokens": tokens[1], "total_tokens": sum(tokens)}
    return AIMessage(content=content, usage_metadata=usage)  # type: ignore[arg-type]


class State(TypedDict):
    question: str
    reply: str


@pytest.fixture(autouse=True)
def clean_setup(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test sees another's environment, providers or warnings."""
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setattr(tracing, "_built", {})
    monkeypatch.setattr(tracing, "_warned", set())
    previous = use_provider(None)
    yield
    use_provider(previous)


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    use_provider(provider)
    yield memory
    provider.shutdown()


def tiny_graph(node: Any, name: str = "tiny", **compile_kwargs: Any):
    builder = StateGraph(State)
    builder.add_node("answer", node)
    builder.add_edge(START, "answer")
    builder.add_edge("answer", END)
    compiled = builder.compile(name=name, **compile_kwargs)
    return compiled.with_config(callbacks=[observer(name)])


def model_node(model: Any):
    async def node(state: State) -> dict[str, str]:
        reply = await model.ainvoke(state["question"])
        return {"reply": str(reply.content)}

    return node


def by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    named = {span.name: span for span in spans}
    assert len(named) == len(spans), [s.name for s in spans]
    return named


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


# Off by default ----------------------------------------------------------------------------------


def tracing_sinks(scenario: str) -> list[TracingSink]:
    return [sink for sink in observer(scenario).sinks if isinstance(sink, TracingSink)]


def test_tracing_is_off_unless_asked() -> None:
    assert tracer_provider() is None
    assert tracing_sinks("research") == []


@pytest.mark.parametrize("value", ["", "off", "0", "OFF ", "none"])
def test_off_values(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(ENV, value)
    assert tracing_sinks("research") == []


def test_an_unknown_mode_warns_once_and_stays_off(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(ENV, "jaeger")
    with caplog.at_level(logging.WARNING, logger="ensemble.observe.tracing"):
        assert tracing_sinks("research") == []
        assert tracing_sinks("content") == []
    assert [r.getMessage() for r in caplog.records] == [
        "ENSEMBLE_OTEL='jaeger' is not one of console, otlp; tracing is off"
    ]


def test_otlp_without_the_exporter_package_warns_and_stays_off(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(ENV, "otlp")
    for module in (
        "opentelemetry.exporter.otlp.proto.http.trace_exporter",
        "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
    ):
        monkeypatch.setitem(sys.modules, module, None)  # makes the import fail
    with caplog.at_level(logging.WARNING, logger="ensemble.observe.tracing"):
        assert tracing_sinks("research") == []
    assert "needs the opentelemetry-exporter-otlp package; tracing is off" in caplog.text


def test_the_console_provider_is_made_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "console")
    provider = tracer_provider()
    assert isinstance(provider, TracerProvider)
    assert tracer_provider() is provider
    assert len(tracing_sinks("research")) == 1


async def test_console_spans_go_to_stderr_not_stdout(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(ENV, "console")
    graph = tiny_graph(model_node(NamedFakeModel(messages=iter([answer()]))))
    await graph.ainvoke({"question": "q", "reply": ""})
    captured = capsys.readouterr()
    assert captured.out == ""
    assert '"name": "run tiny"' in captured.err and '"name": "chat fake-model"' in captured.err


# Spans -------------------------------------------------------------------------------------------


async def test_run_node_and_model_spans_nest_with_attributes(
    exporter: InMemorySpanExporter,
) -> None:
    graph = tiny_graph(model_node(NamedFakeModel(messages=iter([answer(tokens=(7, 2))]))))
    out = await graph.ainvoke(
        {"question": "q", "reply": ""}, {"configurable": {"thread_id": "th-1"}}
    )
    assert out["reply"] == "hi"
    spans = by_name(exporter.get_finished_spans())
    assert set(spans) == {"run tiny", "node answer", "chat fake-model"}
    run, node, model = spans["run tiny"], spans["node answer"], spans["chat fake-model"]

    assert run.parent is None
    assert parent_of(node) == span_id(run)
    assert parent_of(model) == span_id(node)
    assert len({s.context.trace_id for s in (run, node, model) if s.context}) == 1

    assert run.attributes is not None and node.attributes and model.attributes
    assert dict(run.attributes) == {
        "ensemble.scenario": "tiny",
        "ensemble.thread_id": "th-1",
        "ensemble.outcome": "done",
        "gen_ai.usage.input_tokens": 7,
        "gen_ai.usage.output_tokens": 2,
    }
    assert node.attributes["ensemble.node"] == "answer"
    assert node.attributes["ensemble.role"] == "answer"
    assert node.attributes["ensemble.step"] == 1
    assert node.attributes["gen_ai.usage.input_tokens"] == 7
    assert model.attributes["ensemble.scenario"] == "tiny"
    assert model.attributes["ensemble.node"] == "answer"
    assert model.attributes["ensemble.role"] == "answer"
    assert model.attributes["gen_ai.request.model"] == "fake-model"
    assert model.attributes["gen_ai.usage.input_tokens"] == 7
    assert model.attributes["gen_ai.usage.output_tokens"] == 2
    assert all(s.status.status_code == StatusCode.UNSET for s in (run, node, model))
    handler = graph.config["callbacks"][0]
    assert isinstance(handler, Observer) and handler.open_runs() == 0


async def test_a_role_in_the_metadata_names_the_role(exporter: InMemorySpanExporter) -> None:
    model = NamedFakeModel(messages=iter([answer()])).with_config(metadata={"role": "critic"})
    graph = tiny_graph(model_node(model))
    await graph.ainvoke({"question": "q", "reply": ""})
    spans = by_name(exporter.get_finished_spans())
    assert spans["chat fake-model"].attributes["ensemble.role"] == "critic"  # type: ignore[index]


async def test_a_subgraph_node_nests_inside_the_node_running_it(
    exporter: InMemorySpanExporter,
) -> None:
    inner = StateGraph(State)
    inner.add_node("draft", model_node(NamedFakeModel(messages=iter([answer()]))))
    inner.add_edge(START, "draft")
    graph = tiny_graph(inner.compile())
    await graph.ainvoke({"question": "q", "reply": ""})
    spans = by_name(exporter.get_finished_spans())
    assert set(spans) == {"run tiny", "node answer", "node draft", "chat fake-model"}
    assert parent_of(spans["node draft"]) == span_id(spans["node answer"])
    assert parent_of(spans["chat fake-model"]) == span_id(spans["node draft"])


async def test_a_failed_model_call_and_node_mark_the_run_failed(
    exporter: InMemorySpanExporter,
) -> None:
    class Broken(NamedFakeModel):
        def _generate(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("model down")

    graph = tiny_graph(model_node(Broken(messages=iter([]))))
    with pytest.raises(RuntimeError, match="model down"):
        await graph.ainvoke({"question": "q", "reply": ""})
    spans = by_name(exporter.get_finished_spans())
    for name in ("run tiny", "node answer", "chat fake-model"):
        assert spans[name].status.status_code == StatusCode.ERROR, name
        assert spans[name].attributes["ensemble.outcome"] == "failed"  # type: ignore[index]
    assert any(e.name == "exception" for e in spans["chat fake-model"].events)
    assert graph.config["callbacks"][0].open_runs() == 0


async def test_an_interrupt_is_not_an_error(exporter: InMemorySpanExporter) -> None:
    def ask(state: State) -> dict[str, str]:
        return {"reply": str(interrupt("approve?"))}

    graph = tiny_graph(ask, checkpointer=InMemorySaver())
    await graph.ainvoke({"question": "q", "reply": ""}, {"configurable": {"thread_id": "i-1"}})
    spans = by_name(exporter.get_finished_spans())
    for name in ("run tiny", "node answer"):
        assert spans[name].status.status_code == StatusCode.UNSET
        assert spans[name].attributes["ensemble.outcome"] == "interrupted"  # type: ignore[index]
    assert graph.config["callbacks"][0].open_runs() == 0


def test_a_handler_never_raises_into_the_run() -> None:
    handler = observer("tiny")
    handler.on_chain_start(None, {}, run_id=None, metadata="not a dict")  # type: ignore[arg-type]
    handler.on_llm_end(None, run_id=None)  # type: ignore[arg-type]
    assert handler.open_runs() == 0
