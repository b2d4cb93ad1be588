"""What the terminal shows: live progress on stderr, tables and results on stdout."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO


class Progress:
    """Prints one line per agent event from the graph's custom stream.

    Lines have a fixed shape (`[agent] status task: detail`) so people can scan them and
    scripts (and the crash tests) can parse them.
    """

    def __init__(self, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet

    def event(self, event: Any) -> None:
        """Render one custom-stream event."""
        if self.quiet or not isinstance(event, dict):
            return
        agent, status = event.get("agent", "?"), event.get("status", "?")
        task = event.get("task")
        detail = _detail(event)
        head = f"[{agent}] {status}" + (f" {task}" if task else "")
        self.line(f"{head}: {detail}" if detail else head)

    def line(self, text: str) -> None:
        """Print a free-form progress line."""
        if not self.quiet:
            print(text, file=self.stream, flush=True)


def _detail(event: dict[str, Any]) -> str:
    if "subquestion" in event:
        return str(event["subquestion"])
    if "subquestions" in event:
        items = event["subquestions"]
        return f"{len(items)} sub-questions: " + " | ".join(items)
    if "cited" in event:
        extra = " (fallback: quoted passages)" if event.get("fallback") else ""
        return f"{event['cited']} passages cited{extra}"
    if "approved" in event:
        verdict = "approved" if event["approved"] else f"gaps: {event.get('gaps')}"
        return verdict + (f" -> {event['outcome']}" if event.get("outcome") else "")
    keys = [k for k in event if k not in {"agent", "status", "task"}]
    return ", ".join(f"{k}={event[k]}" for k in keys)


def print_json(payload: Any, stream: TextIO | None = None) -> None:
    """Print one JSON object (the `--json` result)."""
    print(json.dumps(payload, indent=2, ensure_ascii=False, default=str), file=stream or sys.stdout)


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """A plain aligned text table."""
    cells = [[str(h) for h in headers]] + [[_clip(str(c)) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _clip(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plan_text(request: dict[str, Any]) -> str:
    """The plan-review interrupt as a person reads it."""
    lines = [f"Plan for: {request.get('question', '')}"]
    for i, item in enumerate(request.get("plan", []), 1):
        lines.append(f"  {i}. {item.get('question')}")
        if item.get("rationale"):
            lines.append(f"     why: {item['rationale']}")
    if request.get("error"):
        lines.append(f"(previous answer refused: {request['error']})")
    return "\n".join(lines)


def approval_text(request: dict[str, Any]) -> str:
    """The content-approval interrupt as a person reads it: the draft and what to weigh."""
    words, target = request.get("word_count"), request.get("target_words")
    lines = [
        f"Draft for approval: {request.get('title', '')}  ({words} words, target {target})",
        "-" * 72,
        str(request.get("draft", "")).rstrip(),
        "-" * 72,
    ]
    for title, notes in (request.get("editor_notes") or {}).items():
        outcome = notes.get("outcome") or "-"
        lines.append(f"Editor on {title!r}: {outcome}")
        lines += [f"  - {r}" for r in notes.get("requests", [])]
    sources = request.get("sources") or []
    if sources:
        lines.append("Sources:")
        lines += [f"  {s}" for s in sources]
    if request.get("error"):
        lines.append(f"(previous answer refused: {request['error']})")
    return "\n".join(lines)


def stdin_is_interactive() -> bool:
    """True when a person can answer prompts at this terminal."""
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError, OSError):
        return False
