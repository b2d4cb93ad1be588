"""Tools agents call: corpus search, a calculator, a sandboxed Python runner, permissions.

The corpus names are still reachable as `from ensemble.tools import ...` (as when this package
was one module), but only looked up when used: importing `ensemble.tools.sandbox` (as
`ensemble doctor` does) loads no LangChain.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "PASSAGE_CHARS",
    "SEARCH_TOOL_NAME",
    "SearchArgs",
    "corpus_search_tool",
    "format_passages",
]


def __getattr__(name: str) -> Any:
    """The corpus names, imported on first use."""
    if name in __all__:
        from ensemble.tools import corpus

        return getattr(corpus, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
