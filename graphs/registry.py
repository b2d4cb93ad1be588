"""The scenarios Ensemble can run, with what entry points need to drive each one."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import StateGraph
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel

from ensemble.errors import InvalidInputError, NotFoundError
from graphs import research
from graphs.compiling import compile_graph
from nodes.plan_review import parse_plan_answer
from nodes.planner import plan_from_texts
from state.research import ResearchInput, SubQuestion, validate_research_input


@dataclass(frozen=True)
class Scenario:
    """A runnable scenario and the hooks the CLI and tests use to drive it."""

    name: str
    description: str
    primary_field: str
    """The input field the CLI's positional argument fills (e.g. the question)."""
    build: Callable[[], StateGraph[Any, Any, Any, Any]]
    validate_input: Callable[[Any], BaseModel]
    validate_answer: Callable[[Any, Mapping[str, Any]], Any]
    """Check a resume answer against the paused state before anything is written."""
    fork_updates: Callable[[Mapping[str, Any], Mapping[str, Any]], dict[str, Any]]
    """Validate `--set FIELD=VALUE` updates for a fork; return the state update."""
    output_keys: tuple[str, ...]
    approve_answer: Any
    """The answer `--yes` gives at an interrupt."""

    def compile(
        self, checkpointer: BaseCheckpointSaver | None = None
    ) -> CompiledStateGraph[Any, Any, Any, Any]:
        """Compile this scenario's graph with `checkpointer`."""
        return compile_graph(self.build(), self.name, checkpointer)


def _research_answer(answer: Any, values: Mapping[str, Any]) -> Any:
    parse_plan_answer(answer, int(values.get("max_researchers", 16)))
    return answer


def _research_fork(values: Mapping[str, Any], sets: Mapping[str, Any]) -> dict[str, Any]:
    if not values.get("question"):
        raise InvalidInputError(
            "this checkpoint comes before the run's input was read; fork from a later one"
        )
    inputs = set(ResearchInput.model_fields)
    allowed = sorted(inputs | {"plan"})
    unknown = sorted(set(sets) - set(allowed))
    if unknown:
        raise InvalidInputError(f"cannot set {', '.join(unknown)}; settable: {', '.join(allowed)}")
    merged = {k: values.get(k) for k in inputs if k in values} | {
        k: v for k, v in sets.items() if k in inputs
    }
    valid = validate_research_input(merged).model_dump()
    update = {k: valid[k] for k in sets if k in inputs}
    if "plan" in sets:
        update["plan"] = _plan_update(sets["plan"], valid["max_researchers"])
    return update


def _plan_update(value: Any, max_researchers: int) -> list[SubQuestion]:
    items = value if isinstance(value, list) else None
    texts = [i.get("question") if isinstance(i, dict) else i for i in items or []]
    if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise InvalidInputError(
            'plan must be a non-empty JSON list of sub-questions, e.g. ["first", "second"]'
        )
    if len(texts) > max_researchers:
        raise InvalidInputError(
            f"plan has {len(texts)} items but max_researchers={max_researchers}"
        )
    return plan_from_texts([str(t) for t in texts])


SCENARIOS: dict[str, Scenario] = {
    "research": Scenario(
        name="research",
        description="Research assistant: planner, parallel researchers with citations, "
        "synthesizer and a reviewer loop over a document corpus.",
        primary_field="question",
        build=research.build_research,
        validate_input=validate_research_input,
        validate_answer=_research_answer,
        fork_updates=_research_fork,
        output_keys=("question", "plan", "report", "sources", "outcome", "revision"),
        approve_answer={"action": "approve"},
    ),
}


def get_scenario(name: str) -> Scenario:
    """Return the scenario called `name`; raise `NotFoundError` listing the known ones."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise NotFoundError(
            f"unknown scenario {name!r}; known: {', '.join(sorted(SCENARIOS))}"
        ) from None


def parse_json_value(text: str, what: str) -> Any:
    """Parse a JSON value given on the command line, with a clear error."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidInputError(f"{what} is not valid JSON ({error.msg}): {text!r:.80}") from None
