"""The corpus search tool: what researchers search and cite from."""

from __future__ import annotations

import re

from langchain_core.tools import StructuredTool
from pydantic import BaseModel, Field

from ensemble.corpus import CorpusIndex, Passage

SEARCH_TOOL_NAME = "search_corpus"
PASSAGE_CHARS = 700


class SearchArgs(BaseModel):
    """Arguments of `search_corpus`."""

    query: str = Field(description="A short keyword query, e.g. 'json decoder errors'.")


_RULE = re.compile(r"[*=~^-]{4,}")
_HEADING = re.compile(r"^[ \t]*(\S[^\n]*?)[ \t]*\n[ \t]*[*=~^-]{4,}[ \t]*$", re.MULTILINE)


def plain_text(text: str, title: str) -> str:
    """A passage as one line of prose: its headings end like sentences, the title's dropped.

    Flattened as they are, "Numeric literals" over its rule would run into the next sentence
    ("Numeric literals There are three types...") and be quoted that way.
    """

    def heading(match: re.Match[str]) -> str:
        return "" if match.group(1) == title else f"{match.group(1).rstrip('.:')}."

    text = _HEADING.sub(heading, text)
    return " ".join(_RULE.sub(" ", text).split())  # any other rule is not text either


def format_passages(passages: list[Passage]) -> str:
    """Render passages the way the model sees them: id in brackets, title, trimmed text."""
    if not passages:
        return "No passages found."
    blocks = []
    for p in passages:
        text = plain_text(p.text, p.title)
        if len(text) > PASSAGE_CHARS:
            text = text[:PASSAGE_CHARS].rsplit(" ", 1)[0] + " ..."
        blocks.append(f"[{p.id}] {p.title} ({p.source})\n{text}")
    return "\n\n".join(blocks)


def corpus_search_tool(index: CorpusIndex, k: int = 5) -> StructuredTool:
    """A LangChain tool searching `index`; its schema is what the model is asked to fill."""

    def search_corpus(query: str) -> str:
        """Search the document corpus (BM25) and return passages with their ids."""
        return format_passages(index.search(query, k=k))

    return StructuredTool.from_function(
        func=search_corpus,
        name=SEARCH_TOOL_NAME,
        description="Search the document corpus and return matching passages with their ids.",
        args_schema=SearchArgs,
    )
