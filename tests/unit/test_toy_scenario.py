"""A scenario defined only here drives `run`, `resume`, `fork` and `show` of the unchanged CLI.

Its flags, help and validation come from its own input schema; nothing in `ensemble` names it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import pytest
from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt
from pydantic import BaseModel, ConfigDict, Field

from ensemble.cli.main import main
from ensemble.context import Context
from ensemble.errors import InvalidInputError
from ensemble.graphs import registry
from ensemble.graphs.scenario import Scenario
from ensemble.workspace import Workspace


class GreetInput(BaseModel):
    """Whom to greet, and how."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="Who is greeted.", min_length=1, max_length=40)
    times: int = Field(1, ge=1, le=3, description="How many greetings.")
    style: Literal["plain", "loud"] = Field("plain", description="How they sound.")
    sign: bool = Field(False, description="Sign the greeting.")


@dataclass(kw_only=True)
class GreetState:
    """The toy's state."""

    name: str = ""
    times: int = 1
    style: str = "plain"
    sign: bool = False
    greeting: str = ""
    approved: bool = False


def compose(state: GreetState) -> dict:
    word = "HELLO" if state.style == "loud" else "hello"
    text = " ".join([f"{word} {state.name}"] * state.times) + (" -- toy" if state.sign else "")
    return {"greeting": text}


def confirm(state: GreetState) -> dict:
    answer = interrupt({"kind": "confirm", "greeting": state.greeting})
    return {"approved": answer == "ok"}


def build_toy(workspace: Workspace) -> StateGraph:
    builder = StateGraph(GreetState, context_schema=Context, input_schema=GreetInput)
    builder.add_node("compose", compose)
    builder.add_node("confirm", confirm)
    builder.add_edge(START, "compose")
    builder.add_edge("compose", "confirm")
    builder.add_edge("confirm", END)
    return builder


def check_answer(answer: Any, values: Any) -> Any:
    if answer not in ("ok", "no"):
        raise InvalidInputError('answer "ok" or "no"')
    return answer


TOY = Scenario(
    name="toy",
    description="Greets someone after a confirmation.",
    build=build_toy,
    input_schema=GreetInput,
    primary_field="name",
    output_keys=("greeting", "approved"),
    approve_answer="ok",
    check_answer=check_answer,
    summary=lambda values: f"{values.get('greeting')} (approved: {values.get('approved')})",
)


@pytest.fixture(autouse=True)
def toy():
    registry.register(TOY)
    yield
    registry.unregister("toy")


def cli(capsys, *argv: str) -> tuple[int, Any, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    try:
        return code, json.loads(out), err
    except json.JSONDecodeError:
        return code, out, err


def test_flags_and_help_come_from_the_schema(capsys):
    with pytest.raises(SystemExit):
        main(["run", "toy", "--help"])
    help_text = capsys.readouterr().out
    for flag in ("--times", "--style", "--sign", "--no-sign"):
        assert flag in help_text
    assert "How many greetings" in help_text and ">= 1, <= 3" in help_text
    assert "plain | loud" in help_text


def test_bad_input_is_refused_by_the_schema(capsys, tmp_path):
    db = tmp_path / "toy.db"
    code, _, err = cli(capsys, "run", "toy", "Ada", "--times", "9", "--db", str(db))
    assert code == 2 and "times" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli(capsys, "run", "toy", "Ada", "--style", "whisper", "--db", str(db))
    assert code == 2 and "style" in err
    assert not db.exists()


def test_run_resume_fork_show_on_a_scenario_the_cli_never_heard_of(capsys, tmp_path):
    db = str(tmp_path / "toy.db")
    code, out, _ = cli(capsys, "run", "toy", "Ada", "--times", "2", "--sign", "--db", db, "--json")
    assert code == 0 and out["status"] == "interrupted"
    thread = out["thread_id"]
    assert out["interrupt"]["value"]["greeting"] == "hello Ada hello Ada -- toy"

    code, _, err = cli(capsys, "resume", thread, "--answer", '"maybe"', "--db", db)
    assert code == 2 and 'answer "ok" or "no"' in err
    code, out, _ = cli(capsys, "resume", thread, "--answer", '"ok"', "--db", db, "--json")
    assert out["status"] == "done" and out["output"]["approved"] is True

    code, history, _ = cli(capsys, "history", thread, "--db", db, "--json")
    at_confirm = next(c for c in history["checkpoints"] if c["next"] == ["confirm"])
    code, out, _ = cli(
        capsys,
        "fork", thread, "--checkpoint", at_confirm["checkpoint_id"],
        "--set", "style=loud", "--set", "times=1", "--yes", "--db", db, "--json",
    )  # fmt: skip
    assert code == 0 and out["status"] == "done"
    # the fork changed inputs after `compose` ran: the greeting stays, the inputs are the fork's
    code, shown, _ = cli(capsys, "show", thread, "--db", db, "--json")
    assert shown["values"]["style"] == "loud" and shown["values"]["times"] == 1
    code, _, err = cli(
        capsys, "fork", thread, "--checkpoint", at_confirm["checkpoint_id"], "--set", "times=7",
        "--db", db,
    )  # fmt: skip
    assert code == 2 and "times" in err
    code, text, _ = cli(capsys, "show", thread, "--db", db)
    assert "setting     model" in text
