"""Calling chat models the way every node does: structured output that survives weak models."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from pydantic import BaseModel

log = logging.getLogger(__name__)

T = TypeVar("T", bound=BaseModel)


async def ask_structured(
    model: BaseChatModel, schema: type[T], messages: Sequence[BaseMessage], *, attempts: int = 2
) -> T | None:
    """Ask for an instance of `schema`; return None when the model never produced a valid one.

    Uses function calling with the tool named explicitly, which is what OpenAI-compatible local
    servers honour. Malformed output is retried, then left to the caller's fallback: a weak model
    must degrade a run, never crash it.
    """
    runnable = model.with_structured_output(schema, method="function_calling", include_raw=True)
    for attempt in range(1, attempts + 1):
        result = await runnable.ainvoke(list(messages))
        parsed = result.get("parsed") if isinstance(result, dict) else None
        if isinstance(parsed, schema):
            return parsed
        log.info("%s: malformed structured output (attempt %d)", schema.__name__, attempt)
    return None
