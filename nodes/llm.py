"""Calling chat models the way every node does: structured output that survives weak models."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage
from pydantic import BaseModel

from ensemble.audit.actions import audit

log = logging.getLogger(__name__)

T = TypeVar("T", bound=BaseModel)

MIN_REPEAT_CHARS = 30
"""Sentences shorter than this may repeat on purpose ("Yes."), so they are never dropped."""

SENTENCE = re.compile(r"\S.*?(?:[.!?](?:\s*\[[^\[\]\s]+\])*(?=\s|$)|$)")
"""A sentence ends at . ! or ? before a space; citations right after it belong to it."""
_CITATION = re.compile(r"\[[^\[\]\s]+\]")


async def ask_structured(
    model: BaseChatModel, schema: type[T], messages: Sequence[BaseMessage], *, attempts: int = 3
) -> T | None:
    """Ask for an instance of `schema`; return None when the model never produced a valid one.

    Uses function calling with the tool named explicitly, which is what OpenAI-compatible local
    servers honour. A malformed answer is retried with the parse error fed back to the model (a
    bounded number of times), then left to the caller's fallback: a weak model must degrade a
    run, never crash it.
    """
    runnable = model.with_structured_output(schema, method="function_calling", include_raw=True)
    conversation = list(messages)
    for attempt in range(1, attempts + 1):
        result = await runnable.ainvoke(conversation)
        parsed = result.get("parsed") if isinstance(result, dict) else None
        if isinstance(parsed, schema):
            return parsed
        problem = result.get("parsing_error") if isinstance(result, dict) else None
        log.info(
            "%s: malformed structured output (attempt %d): %s", schema.__name__, attempt, problem
        )
        audit(  # in the trail of the model's own workspace (the guard knows its database)
            "retry",
            str(getattr(model, "role", schema.__name__)),
            db=getattr(model, "db", None),
            outcome="retry" if attempt < attempts else "gave_up",
            schema=schema.__name__,
            attempt=attempt,
            problem=_short(problem),
        )
        conversation = [
            *messages,
            HumanMessage(
                f"Your last answer could not be used ({_short(problem)}). Call "
                f"{schema.__name__} again with arguments that match its schema exactly."
            ),
        ]
    return None


def _short(problem: object, limit: int = 300) -> str:
    text = " ".join(str(problem or "no tool call was made").split())
    return text if len(text) <= limit else text[:limit] + " ..."


def drop_repeats(text: str) -> str:
    """Drop every sentence the model already wrote, keeping the first.

    Small local models loop, writing one sentence again and again until they are cut off;
    the repeats add nothing and crowd out the context of the next agent. Sentences are compared
    without their citations and case, so the same claim cited twice is kept once.
    """
    seen: set[str] = set()
    lines: list[str] = []
    for line in text.splitlines():
        kept = []
        for sentence in SENTENCE.findall(line):
            key = " ".join(_CITATION.sub("", sentence).casefold().split())
            if len(key) >= MIN_REPEAT_CHARS:
                if key in seen:
                    continue
                seen.add(key)
            kept.append(sentence)
        if kept or not line.strip():
            lines.append(" ".join(kept))
    return "\n".join(lines)
