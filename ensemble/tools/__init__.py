"""Tools agents call: corpus search, a calculator, a sandboxed Python runner, permissions.

The corpus names are re-exported so `from ensemble.tools import ...` keeps working as it did
when this package was a single module.
"""

from __future__ import annotations

from ensemble.tools.corpus import (
    PASSAGE_CHARS,
    SEARCH_TOOL_NAME,
    SearchArgs,
    corpus_search_tool,
    format_passages,
)

__all__ = [
    "PASSAGE_CHARS",
    "SEARCH_TOOL_NAME",
    "SearchArgs",
    "corpus_search_tool",
    "format_passages",
]
