"""Human gates: pause with a question, validate the answer with its pydantic type, ask again.

Every gate (plan review, content approval, solver help) is the same four steps: `interrupt()`
with a request, validate the resume value against the gate's answer type (a union of models
told apart by `action`), record the person's decision, or hand the refusal back to the graph so
the gate's own edge asks again with the reason. The answer format shown to people is made from
the answer type, so help and validation never disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Generic, TypeVar, get_args

from langgraph.errors import GraphInterrupt
from langgraph.types import interrupt
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from ensemble.errors import InvalidInputError, describe_validation_error
from ensemble.progress import emit
from ensemble.workspace import Workspace


class Answer(BaseModel):
    """One kind of answer to a gate; a field it does not declare is refused, not ignored."""

    model_config = ConfigDict(extra="forbid")


A = TypeVar("A", bound=BaseModel)


def ask_person(node: str, request: dict[str, Any], **shown: Any) -> Any:
    """`interrupt(request)`, with a `waiting` progress event when the run pauses.

    On resume the node runs again from its first line and `interrupt` returns the answer at
    once: no `waiting` line then, since nobody is waiting any more.
    """
    try:
        return interrupt(request)
    except GraphInterrupt:
        emit(node, "waiting", **shown)
        raise


@dataclass(frozen=True)
class Gate(Generic[A]):
    """One human gate of a scenario."""

    node: str
    """The node's name, used in progress events and the audit trail."""
    kind: str
    """The request's `kind`, which clients switch on."""
    what: str
    """How refusals name the answer ("plan-review answer")."""
    answers: Any
    """The answer type: `Annotated[X | Y, Field(discriminator="action")]` of pydantic models."""
    feedback: str
    """The state field that holds the last refusal; the gate's edge loops back while it is set."""
    check: Callable[[A, Mapping[str, Any]], str | None] | None = None
    """A check that needs the paused state's values; returns the reason to refuse, or None."""

    @cached_property
    def _adapter(self) -> TypeAdapter[A]:
        return TypeAdapter(self.answers)

    @cached_property
    def help(self) -> str:
        """The accepted answers, one JSON shape per model: `{"action": "approve"} | ...`."""
        return " | ".join(_shape(model) for model in get_args(get_args(self.answers)[0]))

    @cached_property
    def answer_schema(self) -> dict[str, Any]:
        """The answer type as JSON schema: what a client builds the gate's form from."""
        return self._adapter.json_schema()

    def parse(self, answer: Any, values: Mapping[str, Any] | None = None) -> A:
        """Validate an answer; raise `InvalidInputError` saying why and what is accepted."""
        try:
            parsed = self._adapter.validate_python(answer)
        except ValidationError as error:
            raise InvalidInputError(
                f"invalid {self.what} ({describe_validation_error(error)}); expected {self.help}"
            ) from None
        problem = self.check(parsed, values or {}) if self.check else None
        if problem:
            raise InvalidInputError(f"invalid {self.what}: {problem}")
        return parsed

    def check_answer(self, answer: Any, values: Mapping[str, Any]) -> Any:
        """A scenario's resume-answer check (`Scenario.check_answer`): the answer, if valid."""
        self.parse(answer, values)
        return answer

    def ask(
        self,
        state: Any,
        request: dict[str, Any],
        workspace: Workspace,
        *,
        shown: Mapping[str, Any] | None = None,
        recorded: Mapping[str, Any] | None = None,
    ) -> tuple[A | None, dict[str, Any]]:
        """Pause with `request`; return the valid answer (or None) and the feedback update.

        `interrupt()` comes first: on resume the node re-runs from its first line. A refused
        answer returns None with the reason in the feedback field, so the person is asked again.
        `shown` goes into the `waiting` event, `recorded` into the progress and audit records.
        """
        values = vars(state)  # a scenario state is a dataclass; read, never written
        question = {
            "kind": self.kind,
            **request,
            "answer_format": self.help,
            "error": values.get(self.feedback) or None,
        }
        answer = ask_person(self.node, question, **(shown or {}))
        try:
            parsed = self.parse(answer, values)
        except InvalidInputError as error:
            emit(self.node, "failed", error=str(error))
            return None, {self.feedback: str(error)}
        action = getattr(parsed, "action", type(parsed).__name__)
        emit(self.node, "finished", action=action, **(recorded or {}))
        workspace.audit("human_answer", self.node, action=action, **(recorded or {}))
        return parsed, {self.feedback: ""}


def _shape(model: type[BaseModel]) -> str:
    """`{"action": "edit", "text": "...", "notes": ["...", ...]}` for one answer model."""
    parts = []
    for name, field in model.model_fields.items():
        if name == "action":
            value = f'"{get_args(field.annotation)[0]}"'
        elif "list" in str(field.annotation):
            value = '["...", ...]'
        elif field.annotation in (str, str | None):
            value = '"..."'
        else:
            value = "..."
        parts.append(f'"{name}": {value}')
    return "{" + ", ".join(parts) + "}"
