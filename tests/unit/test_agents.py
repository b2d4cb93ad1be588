"""The agent registry: the default team, user files, every definition error, load and the CLI."""

from __future__ import annotations

import argparse
import json
import threading
from pathlib import Path

import pytest

from ensemble.agents import (
    KNOWN_TOOLS,
    LOAD,
    AgentDefinitionError,
    AgentLoad,
    AgentRegistry,
    AgentSpec,
    load_agents,
)
from ensemble.cli.agents import add_agents_parser, cmd_agents
from ensemble.errors import EnsembleError, NotFoundError
from ensemble.resilience import BOARD

DEFAULT_NAMES = [
    "planner",
    "researcher-a",
    "researcher-b",
    "analyst-a",
    "analyst-b",
    "analyst-c",
    "coder",
    "calc",
    "verifier",
    "writer",
]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def failure(*sources: Path, replace: bool = False) -> str:
    with pytest.raises(AgentDefinitionError) as caught:
        load_agents(sources, replace=replace)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.fixture(autouse=True)
def clean_state():
    LOAD.reset()
    BOARD.reset()
    yield
    LOAD.reset()
    BOARD.reset()


# --- the default team -------------------------------------------------------------------------


def test_default_team_loads():
    registry = load_agents()
    assert [a.name for a in registry.agents] == DEFAULT_NAMES
    assert len(registry) == len(DEFAULT_NAMES)
    assert all(a.model is None for a in registry)  # the run's model: works offline
    assert registry.get("calc").tools == ("calculator",)
    assert set(registry.get("researcher-a").tools) == {"research", "search_corpus"}
    assert {"planning", "research", "analysis", "writing", "code", "math", "verification"} <= (
        registry.capabilities()
    )


def test_three_agents_share_a_capability_for_votes():
    registry = load_agents()
    assert [a.name for a in registry.capable("analysis")] == ["analyst-a", "analyst-b", "analyst-c"]
    assert len({(a.cost, a.reliability) for a in registry.capable("analysis")}) == 3
    assert [a.name for a in registry.capable("writing")][-1] == "writer"
    assert registry.capable("astrology") == []


def test_get_unknown_agent_names_the_known_ones():
    with pytest.raises(NotFoundError, match=r"unknown agent 'nobody' \(known: planner, "):
        load_agents().get("nobody")


# --- user files -------------------------------------------------------------------------------

EXTRA = """\
agents:
  - name: statistician
    role: Fits models to data.
    capabilities: [stats, math]
    model: offline?latency=0.2
    tools: [python, calculator]
    max_concurrent: 3
    cost: 2
    reliability: 1
"""


def test_user_file_adds_agents_after_the_default_team(tmp_path):
    registry = load_agents([write(tmp_path / "extra.yaml", EXTRA)])
    assert [a.name for a in registry.agents] == [*DEFAULT_NAMES, "statistician"]
    spec = registry.get("statistician")
    assert spec.model == "offline?latency=0.2"
    assert spec.cost == 2.0 and spec.reliability == 1.0 and spec.max_concurrent == 3
    assert [a.name for a in registry.capable("math")] == ["calc", "statistician"]


def test_user_file_overrides_a_default_agent_in_place(tmp_path):
    path = write(
        tmp_path / "mine.yml",
        "agents:\n"
        "  - {name: calc, role: My calculator., capabilities: [math, stats],"
        " model: 'openai:gpt-4o-mini'}\n",
    )
    registry = load_agents([path])
    assert [a.name for a in registry.agents] == DEFAULT_NAMES
    calc = registry.get("calc")
    assert calc.role == "My calculator." and calc.model == "openai:gpt-4o-mini"
    assert calc.tools == () and calc.max_concurrent == 2  # nothing kept from the default


def test_json_file(tmp_path):
    data = {"agents": [{"name": "j", "role": "r", "capabilities": ["x"], "cost": 1e-1}]}
    path = write(tmp_path / "team.json", json.dumps(data, indent="\t"))
    assert load_agents([path]).get("j").cost == pytest.approx(0.1)


def test_folder_of_files_is_read_in_name_order(tmp_path):
    folder = tmp_path / "agents"
    write(folder / "b.yaml", "agents:\n  - {name: bee, role: r, capabilities: [x]}\n")
    write(folder / "a.json", '{"agents": [{"name": "ant", "role": "r", "capabilities": ["x"]}]}')
    write(folder / "c.yml", "agents:\n  - {name: cat, role: r, capabilities: [x]}\n")
    write(folder / "notes.txt", "not an agent file")
    write(folder / ".hidden.yaml", "this: is ignored")
    registry = load_agents([folder], replace=True)
    assert [a.name for a in registry.agents] == ["ant", "bee", "cat"]
    assert [a.name for a in registry.capable("x")] == ["ant", "bee", "cat"]


def test_replace_drops_the_default_team(tmp_path):
    registry = load_agents([write(tmp_path / "extra.yaml", EXTRA)], replace=True)
    assert [a.name for a in registry.agents] == ["statistician"]
    assert len(load_agents(replace=True)) == 0


def test_yaml_merge_keys_share_defaults(tmp_path):
    path = write(
        tmp_path / "merged.yaml",
        "base: &base {role: r, capabilities: [x], cost: 3}\n"
        "agents:\n"
        "  - {<<: *base, name: one}\n"
        "  - {<<: *base, name: two, cost: 4}\n",
    )
    # a top-level key other than `agents` is refused, so anchors live inside the list
    assert "unknown key 'base'" in failure(path)
    write(
        path,
        "agents:\n"
        "  - &one {name: one, role: r, capabilities: [x], cost: 3}\n"
        "  - {<<: *one, name: two, cost: 4}\n",
    )
    registry = load_agents([path], replace=True)
    assert [(a.name, a.cost) for a in registry] == [("one", 3.0), ("two", 4.0)]


# --- errors: each names the file and the line of the agent -------------------------------------

AGENTS_WITH_A_BAD_ONE = """\
# my agents
agents:
  - name: fine
    role: ok
    capabilities: [x]

  - name: calc2
    role: calculates
    capabilities: [math]
    tools: [calculator, shell]
"""


def test_unknown_tool_names_file_line_and_known_tools(tmp_path):
    path = write(tmp_path / "agents.yaml", AGENTS_WITH_A_BAD_ONE)
    known = ", ".join(sorted(KNOWN_TOOLS))
    assert failure(path) == f"{path}:7: agent 'calc2': tools: unknown tool 'shell' (known: {known})"


@pytest.mark.parametrize(
    ("agent", "problem"),
    [
        ("{name: a, role: r}", "agent 'a': missing field 'capabilities'"),
        ("{name: a, role: r, capabilities: []}", "agent 'a': capabilities: must not be empty"),
        ("{name: a, role: r, capabilities: math}", "agent 'a': capabilities: must be a list"),
        ("{name: a, role: r, capabilities: [Math]}", "capability 'Math' must match [a-z0-9_-]+"),
        ("{name: a, role: r, capabilities: [x, x]}", "capability 'x' is listed twice"),
        ("{name: a, role: '  ', capabilities: [x]}", "agent 'a': role: must not be blank"),
        ("{role: r, capabilities: [x]}", "agent #2: missing field 'name'"),
        (
            "{name: Bad Name, role: r, capabilities: [x]}",
            "name: 'Bad Name' must be 1-40 characters",
        ),
        ("{name: a, role: r, capabilities: [x], colour: red}", "unknown field 'colour' (known: "),
        ("{name: a, role: r, capabilities: [x], max_concurrent: 17}", "max_concurrent: Input"),
        ("{name: a, role: r, capabilities: [x], max_concurrent: '2'}", "max_concurrent: Input"),
        ("{name: a, role: r, capabilities: [x], max_concurrent: true}", "max_concurrent: Input"),
        ("{name: a, role: r, capabilities: [x], cost: 0}", "cost: Input should be greater than 0"),
        ("{name: a, role: r, capabilities: [x], cost: .inf}", "cost: Input should be a finite"),
        ("{name: a, role: r, capabilities: [x], reliability: 1.5}", "reliability: Input should"),
        ("{name: a, role: r, capabilities: [x], reliability: 0}", "reliability: Input should"),
        ("{name: a, role: r, capabilities: [x], model: 'anthropic:x'}", "is not a model spec"),
        ("{name: a, role: r, capabilities: [x], model: 'openai:'}", "is not a model spec"),
        ("{name: a, role: r, capabilities: [x], tools: calculator}", "tools: must be a list"),
        ("{name: a, role: r, capabilities: [x], tools: [python, python]}", "tool 'python' is"),
        (
            "{name: a, role: r, capabilities: [x], role: s}",
            "agent 'a': field 'role' is given twice",
        ),
        ("just a string", "agent #2: expected a mapping of fields, got str"),
        ("[a, list]", "agent #2: expected a mapping of fields, got a list"),
    ],
)
def test_bad_agent_names_file_and_line(tmp_path, agent, problem):
    path = write(
        tmp_path / "agents.yaml",
        f"agents:\n  - {{name: ok, role: r, capabilities: [x]}}\n\n  - {agent}\n",
    )
    message = failure(path)
    assert message.startswith(f"{path}:4: agent "), message
    assert problem in message


def test_bad_yaml_names_its_line(tmp_path):
    path = write(tmp_path / "agents.yaml", "agents:\n  - name: a\n    role: [unclosed\n")
    message = failure(path)
    assert message.startswith(f"{path}:4: bad YAML: "), message


def test_bad_json_names_its_line(tmp_path):
    path = write(tmp_path / "agents.json", '{"agents": [\n  {"name": "a",}\n]}')
    assert failure(path).startswith(f"{path}:2: bad JSON: ")


def test_json_agent_errors_name_the_line(tmp_path):
    text = '{"agents": [\n\t{"name": "a", "role": "r", "capabilities": ["x"]},\n\t{"name": "b"}\n]}'
    path = write(tmp_path / "agents.json", text)
    assert (
        failure(path) == f"{path}:3: agent 'b': missing field 'role'; missing field 'capabilities'"
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", ":1: expected a mapping with an 'agents' list"),
        ("- {name: a}\n", ":1: expected a mapping with an 'agents' list"),
        ("team: []\n", ":1: expected a mapping with an 'agents' list"),
        ("agents: {name: a}\n", ":1: 'agents' must be a list"),
        ("# comment\nagents:\n  name: a\n", ":3: 'agents' must be a list"),
        ("agents: []\nversion: 2\n", ":1: unknown key 'version' (only 'agents' is allowed)"),
    ],
)
def test_file_that_is_not_an_agent_list(tmp_path, text, problem):
    path = write(tmp_path / "agents.yaml", text)
    assert failure(path) == f"{path}{problem}"


def test_duplicate_name_in_one_file(tmp_path):
    path = write(
        tmp_path / "agents.yaml",
        "agents:\n  - {name: a, role: r, capabilities: [x]}\n"
        "  - {name: a, role: r, capabilities: [y]}\n",
    )
    assert failure(path) == f"{path}:3: agent 'a': duplicate name (first defined at {path}:2)"


def test_duplicate_name_across_files(tmp_path):
    one = write(tmp_path / "one.yaml", "agents:\n  - {name: a, role: r, capabilities: [x]}\n")
    two = write(tmp_path / "two.yaml", "\nagents:\n  - {name: a, role: r, capabilities: [x]}\n")
    assert failure(one, two) == f"{two}:3: agent 'a': duplicate name (first defined at {one}:2)"


def test_a_default_agent_may_be_overridden_only_once(tmp_path):
    one = write(tmp_path / "one.yaml", "agents:\n  - {name: calc, role: r, capabilities: [x]}\n")
    two = write(tmp_path / "two.yaml", "agents:\n  - {name: calc, role: r, capabilities: [x]}\n")
    assert failure(one, two) == f"{two}:2: agent 'calc': duplicate name (first defined at {one}:2)"


def test_missing_paths_and_empty_folders(tmp_path):
    missing = tmp_path / "nope.yaml"
    assert failure(missing) == f"{missing}: no such agent file or folder"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert failure(empty) == f"{empty}: no *.yaml, *.yml or *.json agent files here"


def test_not_utf8(tmp_path):
    path = tmp_path / "agents.yaml"
    path.write_bytes(b"agents: [\xff]\n")
    assert failure(path) == f"{path}: not a UTF-8 text file"


def test_an_error_in_a_later_file_returns_nothing(tmp_path):
    good = write(tmp_path / "a.yaml", EXTRA)
    bad = write(tmp_path / "b.yaml", AGENTS_WITH_A_BAD_ONE)
    assert failure(good, bad).startswith(f"{bad}:7: ")


def test_definition_errors_are_user_errors():
    assert issubclass(AgentDefinitionError, EnsembleError)


# --- registry for Python callers ---------------------------------------------------------------


def test_from_specs_and_register():
    registry = AgentRegistry.from_specs(
        [
            AgentSpec(name="a", role="r", capabilities=["x"]),
            {"name": "b", "role": "r", "capabilities": ["x", "y"]},
        ]
    )
    assert [a.name for a in registry.capable("x")] == ["a", "b"]
    assert registry.capabilities() == {"x", "y"}
    assert "a" in registry and "z" not in registry
    registry.register(AgentSpec(name="c", role="r", capabilities=["y"]))
    with pytest.raises(AgentDefinitionError, match="agent 'a' is already registered"):
        registry.register(AgentSpec(name="a", role="other", capabilities=["x"]))
    registry.register(AgentSpec(name="a", role="other", capabilities=["z"]), replace=True)
    assert [a.name for a in registry.agents] == ["a", "b", "c"]
    assert registry.get("a").role == "other"
    with pytest.raises(AgentDefinitionError, match=r"^agent 'd': tools: unknown tool 'shell'"):
        registry.register({"name": "d", "role": "r", "capabilities": ["x"], "tools": ["shell"]})


def test_spec_is_frozen_and_hashable():
    spec = AgentSpec(name="a", role="r", capabilities=["x"])
    with pytest.raises(ValueError):
        spec.name = "b"  # type: ignore[misc]
    assert len({spec, AgentSpec(name="a", role="r", capabilities=("x",))}) == 1
    assert (spec.max_concurrent, spec.cost, spec.reliability, spec.tools) == (2, 1.0, 0.9, ())


# --- live load ---------------------------------------------------------------------------------


def test_load_counters():
    load = AgentLoad()
    assert load.acquire("a") == 1 and load.acquire("a") == 2 and load.acquire("b") == 1
    assert load.current("a") == 2 and load.current("never") == 0
    assert load.snapshot() == {"a": 2, "b": 1}
    assert load.release("a") == 1 and load.release("b") == 0
    assert load.snapshot() == {"a": 1}
    with load.using("c") as count:
        assert count == 1 and load.current("c") == 1
    assert load.current("c") == 0
    with pytest.raises(ValueError, match="released more often than acquired"):
        load.release("c")


def test_load_counters_are_thread_safe():
    load = AgentLoad()
    rounds, threads = 2000, 8
    peak: list[int] = []
    start = threading.Barrier(threads)

    def work() -> None:
        start.wait()
        for _ in range(rounds):
            peak.append(load.acquire("hot"))
            load.release("hot")
        for _ in range(rounds):
            load.acquire("kept")

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert load.current("hot") == 0
    assert load.snapshot() == {"kept": rounds * threads}
    assert 1 <= max(peak) <= threads


# --- ensemble agents ---------------------------------------------------------------------------


def namespace(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ensemble")
    add_agents_parser(parser.add_subparsers(dest="command"), [])
    return parser.parse_args(["agents", *argv])


async def test_cmd_agents_table(capsys, tmp_path):
    LOAD.acquire("calc")
    breaker = BOARD.breaker("agent:coder")
    for _ in range(breaker.failure_threshold):
        breaker.record_failure()
    path = write(tmp_path / "extra.yaml", EXTRA)
    assert await cmd_agents(namespace("--agents", str(path))) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "NAME",
        "ROLE",
        "CAPABILITIES",
        "MODEL",
        "TOOLS",
        "MAX",
        "COST",
        "RELIABILITY",
        "LOAD",
        "HEALTH",
    ]
    rows = {line.split()[0]: line for line in lines[2:]}
    assert list(rows) == [*DEFAULT_NAMES, "statistician"]
    assert rows["calc"].split()[-2:] == ["1", "closed"]
    assert rows["coder"].split()[-2:] == ["0", "open"]
    assert "run's" in rows["planner"] and "offline?latency=0.2" in rows["statistician"]
    assert "python,calculator" in rows["statistician"]


async def test_cmd_agents_json(capsys, tmp_path):
    LOAD.acquire("writer")
    BOARD.breaker("agent:planner").record_success()
    path = write(tmp_path / "extra.yaml", EXTRA)
    assert await cmd_agents(namespace("--agents", str(path), "--replace", "--json")) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload == {
        "agents": [
            {
                "name": "statistician",
                "role": "Fits models to data.",
                "capabilities": ["stats", "math"],
                "model": "offline?latency=0.2",
                "tools": ["python", "calculator"],
                "max_concurrent": 3,
                "cost": 2.0,
                "reliability": 1.0,
                "load": 0,
                "health": "closed",
            }
        ]
    }
    assert await cmd_agents(namespace("--json")) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)["agents"]}
    assert list(rows) == DEFAULT_NAMES
    assert rows["writer"]["load"] == 1 and rows["planner"]["health"] == "closed"
    assert rows["planner"]["model"] is None


async def test_cmd_agents_errors(tmp_path):
    with pytest.raises(EnsembleError, match="--replace leaves no agents"):
        await cmd_agents(namespace("--replace"))
    bad = write(tmp_path / "agents.yaml", AGENTS_WITH_A_BAD_ONE)
    with pytest.raises(AgentDefinitionError, match=r"agents\.yaml:7: agent 'calc2'"):
        await cmd_agents(namespace("--agents", str(bad)))


def test_json_flag_of_a_parent_is_reused():
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--json", action="store_true")
    parser = argparse.ArgumentParser(prog="ensemble")
    add_agents_parser(parser.add_subparsers(dest="command"), [parent])
    args = parser.parse_args(["agents", "--json", "--agents", "a", "--agents", "b"])
    assert args.json and args.agent_files == [Path("a"), Path("b")]
