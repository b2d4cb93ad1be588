"""A fake OpenAI-compatible server over real HTTP, for tests that run `ensemble` as a process.

    with FakeOpenAI(log_path=tmp_path / "requests.jsonl") as server:
        env["OPENAI_BASE_URL"] = server.base_url
        ...
        assert set(server.models()) == {"thread-model"}

`POST /v1/chat/completions` is answered deterministically: a request that forces a function
(`tool_choice` naming it) gets one call of it, with arguments filled from the function's JSON
schema; any other request gets two sentences quoting the last user or tool message, keeping its
first two `[id]` citations so a researcher's or writer's citations resolve. `"stream": true` is
answered as server-sent events. `hold_after(n)` makes later requests wait until `release()`, so a
test can kill a client at a known point.

Every request goes through `handle(body)`, the one place a fault (delay, error status, broken
answer) is meant to be injected.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

CHAT_PATH = "/v1/chat/completions"
QUOTE_WORDS = 8
_BRACKETED = re.compile(r"\[[^\[\]\s]+\]")


class FakeOpenAI:
    """A threaded HTTP server on 127.0.0.1 speaking the chat-completions API."""

    def __init__(self, log_path: Path | str | None = None) -> None:
        self.log_path = Path(log_path) if log_path else None
        self.requests: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        self._hold_after: int | None = None
        self._released = threading.Event()
        self._stopped = False
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.fake = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None
        self.faults: list[dict[str, Any]] = []
        """Faults for the next requests, in order: {"kind": "stall", "seconds": 5},
        {"kind": "status", "code": 429, "headers": {"Retry-After": "1"}, "message": "why"},
        {"kind": "reset"}, {"kind": "garbage"}, {"kind": "bad_args"}, {"kind": "empty"},
        {"kind": "empty_stream"} (a stream request ends with no data, as llama.cpp's server
        ends one whose prompt is too long)."""

    @property
    def base_url(self) -> str:
        """What `OPENAI_BASE_URL` should be set to."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> FakeOpenAI:
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._changed:
            self._stopped = True
        self._released.set()  # held handlers answer (to whoever still listens) and end
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def models(self) -> list[str]:
        """The `model` of every request so far, in order of arrival."""
        with self._changed:
            return [str(body.get("model")) for body in self.requests]

    def hold_after(self, n: int) -> None:
        """Make every request after the n-th wait until `release()` (or `stop()`)."""
        with self._changed:
            self._hold_after = n
            self._released.clear()

    def release(self) -> None:
        """Let held requests be answered, and hold no more."""
        with self._changed:
            self._hold_after = None
        self._released.set()

    def wait_for_requests(self, n: int, timeout: float = 30) -> list[dict[str, Any]]:
        """Wait until at least n requests have arrived; raise `TimeoutError` if they do not."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.requests) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self.requests)} of {n} requests: {self.requests}")
                self._changed.wait(left)
            return list(self.requests)

    def admit(self, body: dict[str, Any]) -> None:
        """Record a request and, if it comes after the `hold_after` count, wait for `release()`."""
        with self._changed:
            self.requests.append(body)
            held = self._hold_after is not None and len(self.requests) > self._hold_after
            if self.log_path is not None:
                line = {
                    "model": body.get("model"),
                    "tools": bool(body.get("tools")),
                    "tool_choice": body.get("tool_choice"),
                }
                with self.log_path.open("a", encoding="utf-8") as log:
                    log.write(json.dumps(line) + "\n")
            self._changed.notify_all()
            held = held and not self._stopped
        if held:
            self._released.wait()

    def next_fault(self) -> dict[str, Any] | None:
        """The fault scheduled for this request, if any (each is used once)."""
        with self._changed:
            return self.faults.pop(0) if self.faults else None

    def handle(self, body: dict[str, Any]) -> dict[str, Any]:
        """The assistant message answering a request (override or extend to inject faults)."""
        forced = _forced_function(body)
        if forced is not None:
            name, schema = forced
            args = fill(schema, schema, _last_text(body, ("user",)) or "text")
            call = {
                "id": f"call_{len(self.requests)}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(args)},
            }
            return {"role": "assistant", "content": None, "tool_calls": [call]}
        return {"role": "assistant", "content": answer_text(_last_text(body, ("user", "tool")))}


def _forced_function(body: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    choice = body.get("tool_choice")
    if not body.get("tools") or not isinstance(choice, dict):
        return None
    name = (choice.get("function") or {}).get("name")
    for tool in body["tools"]:
        function = tool.get("function") or {}
        if function.get("name") == name:
            return name, function.get("parameters") or {"type": "object", "properties": {}}
    return None


def _last_text(body: dict[str, Any], roles: tuple[str, ...]) -> str:
    for message in reversed(body.get("messages") or []):
        if message.get("role") in roles:
            content = message.get("content")
            if isinstance(content, list):  # content parts
                content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            if content:
                return str(content)
    return ""


def _words(text: str, skip: int = 0) -> str:
    return " ".join(_BRACKETED.sub("", text).split()[skip : skip + QUOTE_WORDS])


def answer_text(prompt: str) -> str:
    """Two sentences quoting `prompt`, citing its first two bracketed ids."""
    cites = " ".join(list(dict.fromkeys(_BRACKETED.findall(prompt)))[:2])
    first = _words(prompt) or "nothing was asked"
    second = _words(prompt, QUOTE_WORDS) or first
    return f"The fake model read: {first}. It also noted: {second}. {cites}".strip()


def fill(schema: dict[str, Any], root: dict[str, Any], text: str, index: int = 0) -> Any:
    """A deterministic value matching a JSON schema (`index`: position in an array)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        defs = root.get("$defs") or root.get("definitions") or {}
        return fill(defs[name], root, text, index)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return fill(options[0], root, text, index)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties") or {}
        return {name: fill(sub, root, text, index) for name, sub in props.items()}
    if kind == "array":
        count = max(schema.get("minItems", 0), min(2, schema.get("maxItems", 2)))
        item = schema.get("items") or {}
        return [fill(item, root, text, i) for i in range(count)]
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0) + 1)
        return int(low) if kind == "integer" else low
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    value = (_words(text) or "text") + (f" (part {index + 1})" if index else "")
    value = value.ljust(schema.get("minLength", 0), ".")
    return value[: schema["maxLength"]] if "maxLength" in schema else value


def _usage(body: dict[str, Any], message: dict[str, Any]) -> dict[str, int]:
    prompt = sum(len(str(m.get("content") or "").split()) for m in body.get("messages") or [])
    completion = len(json.dumps(message).split())
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ThreadingHTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
        pass

    def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
        fake: FakeOpenAI = self.server.fake  # type: ignore[attr-defined]
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.rstrip("/") != CHAT_PATH:
            return self._json(404, {"error": {"message": f"no route {self.path}"}})
        try:
            body = json.loads(raw)
        except json.JSONDecodeError as error:
            return self._json(400, {"error": {"message": f"bad JSON: {error}"}})
        fake.admit(body)
        fault = fake.next_fault() or {}
        kind = fault.get("kind")
        if kind == "stall":
            time.sleep(float(fault.get("seconds", 5)))
        elif kind == "status":
            error = {"message": fault.get("message", "injected")}
            return self._json(int(fault["code"]), {"error": error}, fault.get("headers"))
        elif kind == "reset":
            self.close_connection = True
            self.connection.shutdown(2)
            return None
        elif kind == "garbage":
            return self._raw(200, b'{"id": "x", "choices": [')
        elif kind == "empty_stream" and body.get("stream"):
            return self._events([])
        message = fake.handle(body)
        if kind == "bad_args" and message.get("tool_calls"):
            message["tool_calls"][0]["function"]["arguments"] = '{"not": valid json'
        elif kind == "empty":
            message = {"role": "assistant", "content": ""}
        created, rid = int(time.time()), f"chatcmpl-{len(fake.requests)}"
        head = {"id": rid, "created": created, "model": body.get("model")}
        finish = "tool_calls" if message.get("tool_calls") else "stop"
        try:
            if body.get("stream"):
                self._stream(body, head, message, finish)
            else:
                choice = {"index": 0, "message": message, "finish_reason": finish}
                completion = {"object": "chat.completion", "choices": [choice]}
                self._json(200, head | completion | {"usage": _usage(body, message)})
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client was killed while its request was held

    def _json(
        self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        self._raw(status, json.dumps(payload).encode(), headers)

    def _raw(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, body: dict[str, Any], head: dict, message: dict, finish: str) -> None:
        head = head | {"object": "chat.completion.chunk"}
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
        for n, call in enumerate(message.get("tool_calls") or []):
            start = {"index": n, "id": call["id"], "type": "function"}
            args = call["function"]["arguments"]
            name = {"name": call["function"]["name"], "arguments": ""}
            deltas.append({"tool_calls": [start | {"function": name}]})
            for i in range(0, len(args), 16):
                piece = {"index": n, "function": {"arguments": args[i : i + 16]}}
                deltas.append({"tool_calls": [piece]})
        words = (message.get("content") or "").split(" ")
        deltas += [{"content": w if i == 0 else " " + w} for i, w in enumerate(words) if w]
        chunks = [{"index": 0, "delta": d, "finish_reason": None} for d in deltas]
        chunks.append({"index": 0, "delta": {}, "finish_reason": finish})
        events = [head | {"choices": [c]} for c in chunks]
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append(head | {"choices": [], "usage": _usage(body, message)})
        self._events(events)

    def _events(self, events: list[dict[str, Any]]) -> None:
        """Send server-sent events, then `[DONE]`, and close the connection."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")  # the body ends when the connection does
        self.end_headers()
        self.close_connection = True
        for event in events:
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
