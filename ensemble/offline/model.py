"""`OfflineChatModel`: the deterministic, extractive chat model used when no API key is set."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.tool import tool_call, tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field

from ensemble.offline.extractive import (
    Unit,
    diverse_top,
    introduces,
    is_question,
    near_duplicate,
    score_units,
    split_units,
    without_labels,
)
from ensemble.offline.schema_fill import FillContext, SchemaFiller
from ensemble.text import is_prose, sentences, terms

MODEL_NAME = "ensemble-offline"
OFFLINE_MARKER = "_(offline model: extractive answer drawn from the prompt)_"
MAX_ANSWER_UNITS = 5
SECTION_UNITS = 3
SECTION_FLOOR = 0.5
"""A writer quotes fewer, surer sentences than a researcher collects (`diverse_top`'s floor)."""
RANK_DECAY = 0.6
"""Each later source in the prompt weighs a little less: search results come best first."""
NAMED_SOURCE_BONUS = 2.0
"""A unit from a source the request names by its id's words counts double."""
LEAD_UNITS = 2
LEAD_WEIGHT = 1.0
"""The opening units of the best source, or of a source the request names, are read first: a
docstring's first sentence says what it documents even when it shares no word with a question."""
MAX_ANSWER_CHARS = 1200
_CONTEXT_TYPES = ("human", "tool")
_PIECE = re.compile(r"\s*\S+|\s+$")


class OfflineChatModel(BaseChatModel):
    """A chat model that answers by quoting its prompt: no network, no randomness.

    Why: the app must run end to end (tests, demos, CI) without an API key, and a
    stand-in that makes things up would hide bugs and mislead readers. This model is
    deterministic (same messages, same answer, same tool-call ids) and extractive:
    every string it writes is copied from the human/tool messages it was given: tool
    arguments come from `SchemaFiller` (so `with_structured_output` works for any schema),
    text answers are the context lines best matching the request under `OFFLINE_MARKER`.

    Attributes:
        latency: Seconds to wait before answering (spread over the chunks when
            streaming), to simulate a slow model in demos and crash tests.
    """

    latency: float = Field(default=0.0, ge=0.0)

    @property
    def _llm_type(self) -> str:
        return MODEL_NAME

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": MODEL_NAME, "latency": self.latency}

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        tool_choice: str | dict[str, Any] | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools (in OpenAI format) and a tool choice, validated now, not at the call.

        `tool_choice` is None/"auto" (call once, then answer), "none", "any"/"required"
        (always call the first tool), a tool name, or ``{"type": "function", "function":
        {"name": ...}}``; a name that is not bound raises ValueError.
        """
        formatted = [convert_to_openai_tool(t) for t in tools]
        _pick_tool(formatted, tool_choice)
        return self.bind(tools=formatted, tool_choice=tool_choice, **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.latency:
            time.sleep(self.latency)
        return ChatResult(generations=[ChatGeneration(message=respond(messages, stop, **kwargs))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.latency:
            await asyncio.sleep(self.latency)
        return ChatResult(generations=[ChatGeneration(message=respond(messages, stop, **kwargs))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        chunks = to_chunks(respond(messages, stop, **kwargs))
        for chunk in chunks:
            if self.latency:
                time.sleep(self.latency / len(chunks))
            yield ChatGenerationChunk(message=chunk)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        chunks = to_chunks(respond(messages, stop, **kwargs))
        for chunk in chunks:
            if self.latency:
                await asyncio.sleep(self.latency / len(chunks))
            yield ChatGenerationChunk(message=chunk)


def respond(
    messages: Sequence[BaseMessage], stop: list[str] | None = None, **kwargs: Any
) -> AIMessage:
    """Return the model's whole answer to `messages` (a tool call or a text answer)."""
    tools = [
        t if _is_openai_tool(t) else convert_to_openai_tool(t) for t in kwargs.get("tools") or []
    ]
    tool = _pick_tool(tools, kwargs.get("tool_choice"), messages) if tools else None
    if tool is not None:
        return _tool_call_message(messages, tool)
    return _text_message(messages, stop)


def to_chunks(message: AIMessage) -> list[AIMessageChunk]:
    """Split an answer into word-sized chunks; the last carries usage and metadata."""
    calls = [
        tool_call_chunk(name=c["name"], args=json.dumps(c["args"]), id=c["id"], index=i)
        for i, c in enumerate(message.tool_calls)
    ]
    pieces = [""] if calls else _PIECE.findall(str(message.content)) or [""]
    last = AIMessageChunk(
        content=pieces[-1],
        tool_call_chunks=calls,
        usage_metadata=message.usage_metadata,
        response_metadata=message.response_metadata,
        chunk_position="last",
    )
    return [*(AIMessageChunk(content=p) for p in pieces[:-1]), last]


def _is_openai_tool(tool: Any) -> bool:
    return isinstance(tool, dict) and isinstance(tool.get("function"), dict)


def _pick_tool(
    tools: list[dict[str, Any]],
    tool_choice: Any,
    messages: Sequence[BaseMessage] | None = None,
) -> dict[str, Any] | None:
    """Return the tool to call now, or None to answer in text.

    Without `messages` it only validates `tool_choice` against `tools`.
    """
    names = [t["function"]["name"] for t in tools]
    if isinstance(tool_choice, dict):
        inner = tool_choice.get("function")
        name = (inner.get("name") if isinstance(inner, dict) else None) or tool_choice.get("name")
        tool_choice = name if name else tool_choice.get("type")
    if tool_choice is True or tool_choice in ("any", "required"):
        forced = tools[0] if tools else None
    elif tool_choice in (None, False, "auto", "none"):
        forced = None
    elif isinstance(tool_choice, str):
        if tool_choice not in names:
            raise ValueError(f"tool_choice {tool_choice!r} is not one of the bound tools {names}")
        forced = tools[names.index(tool_choice)]
    else:
        raise ValueError(f"unsupported tool_choice {tool_choice!r}")
    if messages is None or forced is not None or not tools or tool_choice in (False, "none"):
        return forced
    return None if _answered_by_tool(messages) else tools[0]


def _answered_by_tool(messages: Sequence[BaseMessage]) -> bool:
    """Tell whether a tool result follows the last human message."""
    humans = [i for i, m in enumerate(messages) if m.type == "human"]
    start = humans[-1] + 1 if humans else 0
    return any(m.type == "tool" for m in messages[start:])


def _read_prompt(messages: Sequence[BaseMessage]) -> FillContext:
    """Find the request (last non-empty human message) and cut the context into units."""
    humans = [i for i, m in enumerate(messages) if m.type == "human"]
    spoken = [i for i in humans if messages[i].text.strip()]
    at = (spoken or humans or [len(messages) - 1])[-1]
    request = without_labels(messages[at].text) if messages else ""
    quoted = [i for i, m in enumerate(messages) if m.type in _CONTEXT_TYPES or i == at]
    pieces = [(unit, i == at) for i in quoted for unit in split_units(messages[i].text)]
    return FillContext(request, units=[u for u, _ in pieces], own=[own for _, own in pieces])


def _text_message(messages: Sequence[BaseMessage], stop: list[str] | None) -> AIMessage:
    """Quote the context best matching the request, under the marker line.

    A request organised in sections (markdown headings over notes, as a writer is given) is
    answered section by section under the same headings; otherwise the answer is the most
    relevant, least repetitive prose of the context, in its original order.
    """
    ctx = _read_prompt(messages)
    sections = _sections(ctx.request)
    lines = _sectioned_answer(ctx.request, sections) if sections else _quoted_answer(ctx)
    if not lines:
        lines = (sentences(ctx.request) or [ctx.request.strip()])[:1]
    text = "\n".join([OFFLINE_MARKER, "", *lines]).rstrip()
    for token in stop or []:
        if token and token in text:
            text = text[: text.index(token)]
    return _finish(messages, AIMessage(content=text), "stop")


def _usable(unit: Unit, request: str) -> bool:
    return (
        is_prose(unit.text)
        and not is_question(unit.text)
        and not introduces(unit.text)
        and not near_duplicate(unit.text, request)
        and OFFLINE_MARKER not in unit.text  # its own earlier answers' marker is not content
    )


def _quoted_answer(ctx: FillContext) -> list[str]:
    """The most relevant, least repetitive prose units of the context (maximal marginal rel.)."""
    keep = [i for i, u in enumerate(ctx.units) if _usable(u, ctx.request)]
    texts = [ctx.units[i].text for i in keep]
    scores = score_units(texts, ctx.request, own=[ctx.own[i] for i in keep])
    leads = dict.fromkeys(u.lead for u in ctx.units)  # sources come best first, as searched
    ranks = {lead: rank for rank, lead in enumerate(leads)}
    asked = set(terms(ctx.request))
    best = max(scores, default=0.0) or 1.0
    seen: Counter[str] = Counter()
    weighted = []
    for score, i in zip(scores, keep, strict=True):
        lead = ctx.units[i].lead
        seen[lead] += 1
        named = _named(lead, asked)
        if lead and seen[lead] <= LEAD_UNITS and (named > 1.0 or ranks[lead] == 0):
            score += LEAD_WEIGHT * best  # a source's opening says what it is about
        weighted.append(score * named / (1.0 + RANK_DECAY * ranks[lead]))
    picked = diverse_top(texts, weighted, limit=MAX_ANSWER_UNITS)
    lines: list[str] = []
    for k in picked:
        line = ctx.units[keep[k]].render()
        if lines and sum(map(len, lines)) + len(line) > MAX_ANSWER_CHARS:
            break
        lines.append(line)
    return list(dict.fromkeys(lines))


def _named(lead: str, asked: set[str]) -> float:
    """Weight of a unit whose source the request names ("What does json.loads do?")."""
    name = lead.strip("[]").split("#")[0].split(":", 1)[-1]
    named = set(terms(name.replace(".", " ").replace("-", " "))) & asked
    return 1.0 + NAMED_SOURCE_BONUS * bool(named)


_HEADING = re.compile(r"^#{2,4}\s+(.+?)\s*#*\s*$")


def _sections(request: str) -> list[tuple[str, str]]:
    """(heading, body) of each markdown section (## to ####) in the request that has a body."""
    found: list[tuple[str, list[str]]] = []
    for line in request.splitlines():
        heading = _HEADING.match(line)
        if heading:
            found.append((heading.group(1), []))
        elif found:
            found[-1][1].append(line)
    return [(h, "\n".join(body).strip()) for h, body in found if "\n".join(body).strip()]


def _sectioned_answer(request: str, sections: list[tuple[str, str]]) -> list[str]:
    """One short paragraph per section under its heading: its units best answering it."""
    question = request.strip().splitlines()[0] if request.strip() else ""
    lines: list[str] = []
    said: set[str] = set()  # a sentence already quoted under an earlier heading says nothing new
    for heading, body in sections:
        units = [u for u in split_units(body) if _usable(u, heading) and u.text not in said]
        texts = [u.text for u in units]
        scores = score_units(texts, f"{heading}\n{question}")
        if scores:  # a note's first finding is its researcher's best: keep it in the running
            scores[0] = max(scores[0], max(scores), 1.0)
        picked = diverse_top(texts, scores, limit=SECTION_UNITS, floor=SECTION_FLOOR)
        if picked:
            said.update(units[i].text for i in picked)
            paragraph = " ".join(units[i].render() for i in picked)
            lines.extend([f"## {heading}", "", paragraph, ""])
    return lines


def _tool_call_message(messages: Sequence[BaseMessage], tool: dict[str, Any]) -> AIMessage:
    """Call `tool` with arguments filled from the prompt; the id hashes the transcript."""
    function = tool["function"]
    parameters = function.get("parameters") or {"type": "object", "properties": {}}
    args = SchemaFiller(_read_prompt(messages)).fill(parameters)
    if not isinstance(args, dict):
        args = {}
    transcript = [[m.type, m.text] for m in messages]
    digest = hashlib.sha256(
        json.dumps([function["name"], args, transcript], sort_keys=True, default=str).encode()
    ).hexdigest()
    call = tool_call(name=function["name"], args=args, id=f"call_{digest[:24]}")
    return _finish(messages, AIMessage(content="", tool_calls=[call]), "tool_calls")


def _finish(messages: Sequence[BaseMessage], message: AIMessage, reason: str) -> AIMessage:
    """Attach word-count usage and the offline response metadata."""
    words_in = sum(len(m.text.split()) for m in messages)
    words_out = len(str(message.content).split()) + sum(
        len(json.dumps(c["args"]).split()) for c in message.tool_calls
    )
    message.usage_metadata = {
        "input_tokens": words_in,
        "output_tokens": words_out,
        "total_tokens": words_in + words_out,
    }
    message.response_metadata = {"model_name": MODEL_NAME, "offline": True, "finish_reason": reason}
    return message
