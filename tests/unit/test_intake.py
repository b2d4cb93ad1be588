"""A graph invoked directly (a notebook, a server client) refuses bad input in one line."""

from __future__ import annotations

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from ensemble.context import Context
from ensemble.errors import InvalidInputError
from ensemble.graphs.registry import SCENARIOS


@pytest.mark.parametrize(
    ("name", "bad", "message"),
    [
        ("research", {"question": "   "}, "invalid research input: question: must not be blank"),
        ("research", {"question": "x", "max_researchers": 99}, "max_researchers: Input should"),
        ("content", {"topic": "  "}, "invalid content input: topic: must not be blank"),
        ("content", {"topic": "x", "target_words": 5}, "content input: target_words: Input"),
        ("solver", {}, "invalid solver input: "),
        ("solver", {"problem": "x", "max_attempts": 0}, "solver input: max_attempts: Input should"),
    ],
)
async def test_bad_input_is_refused_in_one_line_before_any_agent(name, bad, message, workspace):
    graph = SCENARIOS[name].compile(InMemorySaver(), workspace)
    config = {"configurable": {"thread_id": "t"}}
    with pytest.raises(InvalidInputError) as refused:
        await graph.ainvoke(bad, config, context=Context())
    text = str(refused.value)
    assert message in text and "\n" not in text, text
    assert (await graph.aget_state(config)).values.get("plan") in (None, [])
