"""The task graph: loading, validation errors that name the task, ordering, plan repair."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from ensemble.errors import EnsembleError
from ensemble.tasks import (
    TaskSpec,
    Workflow,
    WorkflowError,
    load_workflow,
    ready,
    repair_plan,
    validate_workflow,
)
from ensemble.voting import VotePolicy

CAPABILITIES = {"research", "write", "review", "compute"}

WORKFLOW = {
    "title": "Population report",
    "tasks": [
        {"id": "gather", "description": "Find the population of Paris.", "capability": "research"},
        {
            "id": "count",
            "description": "Compute the density.",
            "capability": "compute",
            "depends_on": ["gather"],
            "replicas": 3,
            "expect": "number",
            "tool": "calculator",
            "input": "2100000 / 105.4",
            "checks": [{"kind": "range", "min": 1000, "max": 50000}],
        },
        {
            "id": "draft",
            "description": "Write the report.",
            "capability": "write",
            "depends_on": ["gather", "count"],
            "replicas": 3,
        },
        {
            "id": "check",
            "description": "Review the report.",
            "capability": "review",
            "depends_on": ["draft"],
            "checks": [{"kind": "contains", "value": "Paris"}],
        },
    ],
}


def run_order(workflow: Workflow) -> list[str]:
    """Task ids as a one-at-a-time runner takes them: always the first of `ready`."""
    done: list[str] = []
    while up := ready(workflow, set(done), set()):
        done.append(up[0].id)
    return done


def tasks(*specs: dict) -> dict:
    return {"tasks": [{"description": "do it", "capability": "write", **s} for s in specs]}


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json"])
def test_a_valid_file_loads_in_yaml_and_json(tmp_path: Path, suffix: str):
    path = tmp_path / f"flow{suffix}"
    text = json.dumps(WORKFLOW) if suffix == ".json" else yaml.safe_dump(WORKFLOW)
    path.write_text(text)
    workflow = load_workflow(path, CAPABILITIES)
    assert workflow.title == "Population report"
    assert [t.id for t in workflow.tasks] == ["gather", "count", "draft", "check"]
    count = workflow.task("count")
    assert count.vote == VotePolicy(policy="numeric")
    assert workflow.task("draft").vote == VotePolicy()
    assert workflow.task("gather").vote is None
    assert count.checks[0].min == 1000
    assert run_order(workflow) == ["gather", "count", "draft", "check"]


def test_unreadable_files_are_one_line_errors(tmp_path: Path):
    with pytest.raises(WorkflowError, match="expected a .yaml, .yml or .json file"):
        load_workflow(tmp_path / "flow.txt")
    with pytest.raises(WorkflowError, match="cannot read"):
        load_workflow(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.json"
    broken.write_text("{tasks: ")
    with pytest.raises(WorkflowError, match=r"broken.json:1: bad JSON: ") as error:
        load_workflow(broken)
    assert "\n" not in str(error.value)
    yaml_file = tmp_path / "broken.yaml"
    yaml_file.write_text("title: x\ntasks:\n  - id: a\n   description: [unclosed\n")
    with pytest.raises(WorkflowError, match=r"broken.yaml:\d: bad YAML: ") as error:
        load_workflow(yaml_file)
    assert "\n" not in str(error.value)
    assert issubclass(WorkflowError, EnsembleError)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (tasks({"id": "a"}, {"id": "a"}), "task 'a' is defined twice (tasks #1 and #2)"),
        (
            tasks({"id": "a", "depends_on": ["ghost"]}),
            "task 'a' depends on 'ghost', which is not a task",
        ),
        (
            tasks({"id": "a", "capability": "dance"}),
            "task 'a' needs capability 'dance'; known: compute, research, review, write",
        ),
        (tasks({"id": "a", "replicas": 9}), "task 'a': replicas: Input should be less than"),
        (tasks({"id": "a", "priority": "high"}), "task 'a': priority: Input should be"),
        (tasks({"id": "Bad Id"}), "task 'Bad Id': id: String should match pattern"),
        (tasks({"description": "no id"}), "task #1: missing field 'id'"),
        (
            tasks({"id": "a"}, {"id": "b", "colour": "red"}),
            "task 'b': unknown field 'colour' (known: id, ",
        ),
        (tasks({"id": "a", "tool": "python"}), "task 'a': tool 'python' needs an input"),
        (
            tasks({"id": "a", "checks": [{"kind": "range"}]}),
            "task 'a': checks.0: a range check needs min or max",
        ),
        ({"tasks": [*tasks({"id": "a"})["tasks"], "b"]}, "task #2: expected a mapping, got text"),
    ],
)
def test_every_error_names_the_task(data: dict, message: str):
    with pytest.raises(WorkflowError) as error:
        validate_workflow(data, CAPABILITIES, source="flow.yaml")
    text = str(error.value)
    assert text.startswith("flow.yaml: ") and message in text, text
    assert "\n" not in text


def test_a_cycle_is_named():
    data = tasks(
        {"id": "start"},
        {"id": "a", "depends_on": ["start", "c"]},
        {"id": "b", "depends_on": ["a"]},
        {"id": "c", "depends_on": ["b"]},
    )
    cycle = r"cycle: a -> c -> b -> a \(each depends on the next\)"
    with pytest.raises(WorkflowError, match=cycle):
        validate_workflow(data)
    with pytest.raises(WorkflowError, match="cycle: a -> a"):
        validate_workflow(tasks({"id": "a", "depends_on": ["a"]}))


def test_the_workflow_itself_refuses_a_bad_graph():
    a = TaskSpec(id="a", description="x", capability="write", depends_on=["a"])
    with pytest.raises(ValidationError, match="cycle: a -> a"):
        Workflow(tasks=[a])


def test_top_level_shape_errors():
    with pytest.raises(WorkflowError, match="non-empty list"):
        validate_workflow({"tasks": []})
    with pytest.raises(WorkflowError, match="unknown field 'steps'"):
        validate_workflow({"tasks": [], "steps": []})
    with pytest.raises(WorkflowError, match="expected a mapping with 'tasks', got a list"):
        validate_workflow([])
    with pytest.raises(WorkflowError, match="at most 50"):
        validate_workflow(tasks(*({"id": f"t{i}"} for i in range(51))))
    assert len(validate_workflow(tasks({"id": "a"}), capabilities=None).tasks) == 1


def test_ready_is_by_priority_then_file_order():
    workflow = validate_workflow(
        tasks(
            {"id": "low", "priority": -5},
            {"id": "plain"},
            {"id": "urgent", "priority": 10},
            {"id": "also-plain"},
            {"id": "after", "depends_on": ["urgent", "plain"], "priority": 100},
        )
    )
    assert [t.id for t in ready(workflow, set(), set())] == [
        "urgent",
        "plain",
        "also-plain",
        "low",
    ]
    assert [t.id for t in ready(workflow, {"urgent"}, {"plain"})] == ["also-plain", "low"]
    assert [t.id for t in ready(workflow, {"urgent", "plain"}, set())][0] == "after"
    everything = {t.id for t in workflow.tasks}
    assert ready(workflow, everything, set()) == []
    assert run_order(workflow) == ["urgent", "plain", "after", "also-plain", "low"]


def test_repair_keeps_a_good_plan_untouched():
    workflow, notes = repair_plan(WORKFLOW, CAPABILITIES)
    assert notes == []
    assert workflow is not None and workflow.title == "Population report"
    assert [t.id for t in workflow.tasks] == ["gather", "count", "draft", "check"]


def test_repair_drops_unknown_dependencies_and_breaks_cycles():
    plan = [
        {"id": "a", "description": "x", "capability": "write", "depends_on": ["b", "ghost"]},
        {"id": "b", "description": "y", "capability": "write", "depends_on": "a"},
    ]
    workflow, notes = repair_plan(plan, CAPABILITIES)
    assert workflow is not None
    assert workflow.task("a").depends_on == ["b"]
    assert workflow.task("b").depends_on == []
    assert notes == [
        "task 'a': dropped dependency on unknown task 'ghost'",
        "task 'b': dropped dependency on 'a' to break the cycle a -> b -> a",
    ]


def test_repair_renames_duplicates_and_fixes_ids():
    plan = {
        "tasks": [
            {"id": "x", "description": "first", "capability": "write"},
            {"id": "x", "description": "second", "capability": "write"},
            {"id": "Fetch Data!", "description": "third", "capability": "research"},
            {"description": "fourth", "capability": "review", "depends_on": ["x", "Fetch Data!"]},
        ]
    }
    workflow, notes = repair_plan(plan, CAPABILITIES)
    assert workflow is not None
    assert [t.id for t in workflow.tasks] == ["x", "x-2", "fetch-data", "task-4"]
    assert workflow.task("task-4").depends_on == ["x", "fetch-data"]
    assert "task #2: duplicate id 'x' renamed 'x-2'" in notes
    assert "task #3: id 'Fetch Data!' replaced by 'fetch-data'" in notes
    assert "task #4: id None replaced by 'task-4'" in notes


def test_repair_maps_capabilities_only_by_containment():
    plan = [
        {"id": "a", "description": "x", "capability": "researcher"},
        {"id": "b", "description": "y", "capability": "Write"},
        {"id": "c", "description": "z", "capability": "dance"},
        {"id": "d", "description": "w", "capability": "write", "depends_on": ["c"]},
    ]
    workflow, notes = repair_plan(plan, CAPABILITIES)
    assert workflow is not None
    assert [(t.id, t.capability) for t in workflow.tasks] == [
        ("a", "research"),
        ("b", "write"),
        ("d", "write"),
    ]
    assert workflow.task("d").depends_on == []
    assert "task 'a': capability 'researcher' read as 'research'" in notes
    assert any(n.startswith("task 'c': dropped, capability 'dance' is not known") for n in notes)
    assert "task 'd': dropped dependency on dropped task 'c'" in notes


def test_repair_drops_invalid_tasks_and_unknown_fields():
    plan = [
        {"id": "a", "description": "x", "capability": "write", "why": "because"},
        {"id": "b", "capability": "write"},
        {"id": "c", "description": "y", "capability": "compute", "tool": "python"},
        "not a task",
    ]
    workflow, notes = repair_plan(plan, CAPABILITIES)
    assert workflow is not None and [t.id for t in workflow.tasks] == ["a"]
    assert notes == [
        "task 'a': dropped unknown field(s) why",
        "task 'b': dropped, missing field 'description'",
        "task 'c': dropped, tool 'python' needs an input",
        "task #4: dropped, text is not a task",
    ]


def test_repair_accepts_json_text_and_a_mapping_of_tasks():
    workflow, notes = repair_plan(
        json.dumps({"a": {"description": "x", "capability": "write"}}), CAPABILITIES
    )
    assert workflow is not None and workflow.tasks[0].id == "a" and notes == []


def test_repair_refuses_honestly_when_nothing_is_left():
    workflow, notes = repair_plan([{"id": "a", "description": "x", "capability": "dance"}], set())
    assert workflow is None
    assert notes[-1] == "no usable task left: plan refused"
    assert repair_plan("not json", CAPABILITIES) == (
        None,
        ["plan is not JSON", "no usable task left: plan refused"],
    )
    assert repair_plan(42, CAPABILITIES)[0] is None
