"""A whole chat answer as one stream chunk, for a stream that cannot be served by streaming."""

from __future__ import annotations

import json

from langchain_core.messages import AIMessageChunk
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGenerationChunk, ChatResult


def as_chunk(result: ChatResult) -> ChatGenerationChunk:
    """One chunk carrying a whole answer: a cache hit, a model that does not stream, a refusal.

    llama-cpp-python's server ends a stream whose prompt is too long with no data and no error,
    so such a streaming call is answered by a plain call, which sees the error and trims to fit.
    """
    generation = result.generations[0]
    message = generation.message
    chunk = AIMessageChunk(
        content=message.content,
        tool_call_chunks=[
            tool_call_chunk(name=c["name"], args=json.dumps(c["args"]), id=c.get("id"), index=i)
            for i, c in enumerate(getattr(message, "tool_calls", []) or [])
        ],
        usage_metadata=getattr(message, "usage_metadata", None),
        additional_kwargs=message.additional_kwargs,
        response_metadata=message.response_metadata,
        id=message.id,
    )
    return ChatGenerationChunk(message=chunk, generation_info=generation.generation_info)
