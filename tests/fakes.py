"""Scripted chat models for exact control in tests (rejecting reviewers, failing agents)."""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, PrivateAttr

Responder = Callable[[list[BaseMessage], dict[str, Any]], AIMessage | Exception]

_ids = itertools.count()


def tool_call(name: str, args: dict[str, Any]) -> AIMessage:
    """An AI message calling `name` with `args` (also how structured output arrives)."""
    return AIMessage(
        content="", tool_calls=[{"name": name, "args": args, "id": f"call_{next(_ids)}"}]
    )


class ScriptedChatModel(BaseChatModel):
    """A chat model whose every answer comes from a Python function; it records its calls."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    responder: Responder
    _calls: list[tuple[list[BaseMessage], dict[str, Any]]] = PrivateAttr(default_factory=list)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    @property
    def calls(self) -> list[tuple[list[BaseMessage], dict[str, Any]]]:
        return self._calls

    def bind_tools(self, tools: Sequence[Any], tool_choice: Any = None, **kwargs: Any):
        return self.bind(
            tools=[convert_to_openai_tool(t) for t in tools], tool_choice=tool_choice, **kwargs
        )

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        with self._lock:
            self._calls.append((list(messages), kwargs))
        out = self.responder(list(messages), kwargs)
        if isinstance(out, Exception):
            raise out
        return ChatResult(generations=[ChatGeneration(message=out)])


def sequence(*answers: AIMessage | Exception) -> Responder:
    """Answer with `answers` in order; the last one repeats."""
    items = list(answers)
    lock = threading.Lock()

    def respond(messages: list[BaseMessage], kwargs: dict[str, Any]) -> AIMessage | Exception:
        with lock:
            return items.pop(0) if len(items) > 1 else items[0]

    return respond


def plan_responder(*questions: str) -> Responder:
    """A planner that always proposes `questions`."""
    plan = {"subquestions": [{"question": q, "rationale": f"covers {q}"} for q in questions]}
    return lambda messages, kwargs: tool_call("Plan", plan)


PASSAGE_ID = re.compile(r"^\[([^\]]+#\d+)\]", re.M)


def researcher_responder(fail_on: Callable[[str], bool] = lambda q: False) -> Responder:
    """Searches with the sub-question, then cites the first two passages it was shown."""

    def respond(messages: list[BaseMessage], kwargs: dict[str, Any]) -> AIMessage | Exception:
        question = messages[1].text.removeprefix("Sub-question: ")
        if fail_on(question):
            return RuntimeError(f"researcher failed on {question!r}")
        if kwargs.get("tools"):
            return tool_call("search_corpus", {"query": question})
        shown = [m.text for m in messages if isinstance(m, ToolMessage)]
        ids = PASSAGE_ID.findall("\n".join(shown))[:2]
        lines = [f"Finding {i + 1} about {question} [{pid}]" for i, pid in enumerate(ids)]
        return AIMessage(content="\n".join(lines) or "Nothing found.")

    return respond


def writer_responder() -> Responder:
    """Writes one claim per numbered citation in the notes: the note line that cites it."""

    def respond(messages: list[BaseMessage], kwargs: dict[str, Any]) -> AIMessage:
        lines: dict[str, str] = {}
        for line in messages[-1].text.splitlines():
            for n in re.findall(r"\[(\d+)\]", line):
                lines.setdefault(n, re.sub(r"\s*\[\d+\]", "", line).strip())
        ordered = sorted(lines, key=int)
        return AIMessage(content="\n".join(f"{lines[n]}. [{n}]" for n in ordered))

    return respond


def verdict(approved: bool, gaps: Sequence[str] = ()) -> AIMessage:
    """A reviewer verdict as structured output."""
    return tool_call("Verdict", {"approved": approved, "gaps": list(gaps)})
