"""What a scenario declares about itself, next to its graph.

The CLI, the server and the tests learn everything about a scenario from this declaration: its
input schema (flags, help, limits and validation all come from the pydantic fields), how a resume
answer is checked, what a fork may set, what `--yes` answers, which inputs name folders, and what
its output is. Adding a scenario means adding its files; nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import StateGraph
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel

from ensemble.db.state_versions import VERSION_KEY, StateVersion, VersionedStates
from ensemble.errors import InvalidInputError
from ensemble.graphs.compiling import compile_graph
from ensemble.state.inputs import validated
from ensemble.workspace import Workspace

FolderKind = Literal["corpus", "output"]


@dataclass(frozen=True)
class Scenario:
    """A runnable scenario and the hooks entry points use to drive it."""

    name: str
    description: str
    build: Callable[[Workspace], StateGraph[Any, Any, Any, Any]]
    """Builds the uncompiled graph whose nodes use the operator's `Workspace`."""
    input_schema: type[BaseModel]
    """The run's input: one source of truth for names, types, limits and help."""
    primary_field: str
    """The input field the CLI's positional argument fills (e.g. the question)."""
    output_keys: tuple[str, ...]
    """State keys that make up the run's result."""
    approve_answer: Any
    """The answer `--yes` gives at every human review."""
    check_answer: Callable[[Any, Mapping[str, Any]], Any]
    """Validate a resume answer against the paused state; raise `InvalidInputError`."""
    fork_extras: Mapping[str, Callable[[Any, BaseModel], Any]] = field(default_factory=dict)
    """State fields beyond the input a fork may set, each with its validator."""
    folders: Mapping[str, FolderKind] = field(default_factory=dict)
    """Input fields that name folders: checked against the operator's choices before use."""
    summary: Callable[[Mapping[str, Any]], str] | None = None
    """What the CLI prints for a finished run (default: the `report` value)."""
    file_inputs: Mapping[str, tuple[str, Callable[[Path], Any]]] = field(default_factory=dict)
    """CLI-only flags that read a file into an input field: `--tasks FILE` -> `workflow`."""
    check_input: Callable[[BaseModel], None] | None = None
    """Checks beyond the schema, run before anything is stored (e.g. a workflow's DAG)."""
    gates: Mapping[str, Any] = field(default_factory=dict)
    """The scenario's human gates by request `kind` (`nodes.gates.Gate`: answer type, schema)."""
    state_version: StateVersion = field(default_factory=StateVersion)
    """The state's version and the migrations from older ones (in `state/<scenario>.py`)."""

    def describe_result(self, values: Mapping[str, Any]) -> str:
        """The text a person reads at the end of a run."""
        if self.summary is not None:
            return self.summary(values)
        return str(values.get("report") or "")

    def compile(
        self, checkpointer: BaseCheckpointSaver | None, workspace: Workspace
    ) -> CompiledStateGraph[Any, Any, Any, Any]:
        """Compile this scenario's graph for `workspace`, saving with `checkpointer`.

        Every checkpoint the graph saves records the state version; a saver that migrates
        (Ensemble's) learns this scenario's version, so an older thread is migrated on read.
        """
        teach_state_version(checkpointer, self.name, self.state_version)
        graph = compile_graph(self.build(workspace), self.name, checkpointer)
        return graph.with_config(metadata={VERSION_KEY: self.state_version.current})

    def validate_input(self, data: Any) -> BaseModel:
        """Validate raw input; raise `InvalidInputError` with a one-line message."""
        if isinstance(data, self.input_schema):
            return data
        if not isinstance(data, dict):
            raise InvalidInputError(
                f"invalid {self.name} input: expected an object, got {type(data).__name__}"
            )
        valid = validated(self.input_schema, data, self.name)
        if self.check_input is not None:
            self.check_input(valid)
        return valid

    def fork_updates(self, values: Mapping[str, Any], sets: Mapping[str, Any]) -> dict[str, Any]:
        """Validate `--set FIELD=VALUE` changes for a fork; return the state update.

        Input fields are validated together with the checkpoint's other inputs, so a fork can
        never hold an input the scenario would refuse at the start.
        """
        inputs = set(self.input_schema.model_fields)
        if not inputs & set(values):
            raise InvalidInputError(
                "this checkpoint comes before the run's input was read; fork from a later one"
            )
        allowed = sorted(inputs | set(self.fork_extras))
        unknown = sorted(set(sets) - set(allowed))
        if unknown:
            raise InvalidInputError(
                f"cannot set {', '.join(unknown)}; settable: {', '.join(allowed)}"
            )
        merged = {k: values[k] for k in inputs if k in values} | {
            k: v for k, v in sets.items() if k in inputs
        }
        valid = self.validate_input(merged)
        dumped = valid.model_dump()
        update = {k: dumped[k] for k in sets if k in inputs}
        for name, check in self.fork_extras.items():
            if name in sets:
                update[name] = check(sets[name], valid)
        return update


def teach_state_version(saver: Any, scenario: str, version: StateVersion) -> None:
    """Tell a saver that checks state versions on read which version `scenario` is at."""
    known = getattr(saver, "state_versions", None)
    if isinstance(known, VersionedStates):
        known.learn(scenario, version)
