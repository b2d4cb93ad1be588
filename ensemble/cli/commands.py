"""The commands that run and inspect threads: run, resume, fork, history, show, scenarios.

Imported only when one of them runs, so `ensemble --help` and the light commands start fast.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from pathlib import Path
from typing import Any

from langgraph.types import StateSnapshot

from ensemble.cli import prompt
from ensemble.cli.flags import (
    add_input_flags,
    add_setting_flags,
    describe,
    describe_schema,
    flag_name,
    given_inputs,
    given_settings,
)
from ensemble.cli.main import common_flags, operator_workspace
from ensemble.cli.render import Progress, print_json, stdin_is_interactive, table
from ensemble.cli.threads import age_cutoff as _age_cutoff  # noqa: F401 (maintenance's import)
from ensemble.cli.threads import human_size, thread_rows  # noqa: F401 (maintenance's import)
from ensemble.context import validate_context
from ensemble.errors import InvalidInputError
from ensemble.events.announce import announce
from ensemble.graphs.registry import SCENARIOS, get_scenario, parse_json_value
from ensemble.graphs.scenario import Scenario
from ensemble.persistence import ensure_writable, open_async_checkpointer
from ensemble.resilience.pause import is_halt, read_answer
from ensemble.run_settings import for_thread
from ensemble.run_settings import load as load_settings
from ensemble.run_settings import resolve as resolve_settings
from ensemble.runner import (
    Answerer,
    RunResult,
    drive,
    new_thread_id,
    open_thread,
    require_checkpoint,
    result_of,
    resume_command,
    thread_config,
    unfinished,
)

EXIT_FAILED = 1


def running_flags() -> argparse.ArgumentParser:
    """The flags of every command that runs a graph: run settings, answers, output."""
    running = argparse.ArgumentParser(add_help=False)
    add_setting_flags(running)
    running.add_argument("--yes", action="store_true", help="approve every human review")
    running.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    running.add_argument("--out", type=Path, help="also write the result (markdown) to this file")
    return running


def thread_parser(command: str, about: str) -> argparse.ArgumentParser:
    """`ensemble resume|fork THREAD ...`: the whole grammar, built once the command is chosen."""
    parser = argparse.ArgumentParser(
        prog=f"ensemble {command}", description=about, parents=[common_flags(), running_flags()]
    )
    parser.add_argument("thread")
    if command == "resume":
        parser.add_argument(
            "--answer",
            help="answer to the pending question: a word (approve, reject, retry, ...) or JSON "
            'such as \'{"action": "edit", "subquestions": [...]}\'',
        )
    else:
        parser.add_argument("--checkpoint", required=True, help="checkpoint id to branch from")
        parser.add_argument("--set", dest="sets", action="append", default=[], metavar="FIELD=JSON")
    return parser


def scenario_parser(scenario: Scenario) -> argparse.ArgumentParser:
    """`ensemble run SCENARIO ...`: the common flags plus one flag per input field."""
    primary = scenario.input_schema.model_fields[scenario.primary_field]
    parser = argparse.ArgumentParser(
        prog=f"ensemble run {scenario.name}",
        parents=[common_flags(), running_flags()],
        description=scenario.description,
    )
    parser.add_argument(
        "text", nargs="?", metavar=scenario.primary_field.upper(), help=describe(primary)
    )
    parser.add_argument("--thread", help="thread id to create (default: a new one)")
    parser.add_argument("--input", dest="input_json", help="the whole input as a JSON object")
    from_files = frozenset(field_name for field_name, _ in scenario.file_inputs.values())
    add_input_flags(parser, scenario.input_schema, scenario.primary_field, from_files)
    for flag, (field_name, _) in scenario.file_inputs.items():
        parser.add_argument(
            f"--{flag}", dest=f"file__{field_name}", type=Path, metavar="PATH",
            help=f"read `{field_name}` from this file (YAML or JSON)",
        )  # fmt: skip
    return parser


def _budget_answer(raw: str | None) -> Any:
    """The budget of an answer of the form `{"budget": {...}}`, else None."""
    if raw is None:
        return None
    answer = parse_json_value(raw, "--answer")
    if isinstance(answer, dict) and set(answer) == {"budget"}:
        validate_context({"budget": answer["budget"]})
        return answer["budget"]
    return None


def answer_for(
    raw: str | None,
    snapshot: StateSnapshot,
    scenario: Scenario,
    overrides: dict[str, Any],
    thread_id: str,
) -> Any:
    """The answer `--answer` gives a thread's pending question, checked (None: no answer).

    `{"budget": {...}}` to a run paused by its budget raises the budget (in `overrides`); a
    paused run resumed without an answer retries.

    Raises:
        InvalidInputError: An answer to a thread that asks nothing, or one its gate refuses.
    """
    halted = bool(snapshot.interrupts) and all(is_halt(i.value) for i in snapshot.interrupts)
    budget = _budget_answer(raw) if halted or not snapshot.interrupts else None
    if budget is not None:  # `--answer '{"budget": {...}}'` raises the run's budget
        overrides["budget"] = budget
        if not snapshot.interrupts:  # a run stopped by the budget: no question to answer
            raw = None
    if raw is None:
        return "retry" if halted else None
    if not snapshot.interrupts:
        raise InvalidInputError(f"thread {thread_id!r} is not waiting for an answer")
    values = snapshot.values if isinstance(snapshot.values, dict) else {}
    answer = _parse_answer(raw, halted=halted)
    _check_answer(answer, scenario, values, halted=halted)
    return answer


BARE_WORD = re.compile(r"[a-z][a-z_]*")


def _parse_answer(raw: str, *, halted: bool) -> Any:
    """`--answer`: JSON, or a bare word as the terminal prompt takes it (`approve`, `retry`).

    A bare word is the action of a review (`{"action": "approve"}`), or the word itself for a
    paused run (`retry`, `stop`).
    """
    if BARE_WORD.fullmatch(raw.strip()) and raw.strip() not in ("true", "false", "null"):
        word = raw.strip()
        return word if halted else {"action": word}
    return parse_json_value(raw, "--answer")


def _check_answer(answer: Any, scenario: Scenario, values: Any, *, halted: bool) -> None:
    """Refuse a wrong answer before resuming: a pause's answers, else the scenario's own."""
    if not halted:
        scenario.check_answer(answer, values)
        return
    try:
        read_answer(answer)
    except ValueError as error:
        raise InvalidInputError(str(error)) from error


def _answerer(args: argparse.Namespace, given: Any = None) -> Answerer:
    interactive = not args.yes and stdin_is_interactive()
    pending = [given] if given is not None else []

    def answer(value: Any, scenario: Any, values: dict[str, Any]) -> Any:
        if pending:
            return pending.pop()
        if args.yes:
            return scenario.approve_answer
        if interactive:
            return prompt.ask(value, scenario, values)
        return None

    return answer


def _finish(result: RunResult, args: argparse.Namespace) -> int:
    report = get_scenario(result.scenario).describe_result(result.output or {})
    if args.out and report:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report, encoding="utf-8")
    if args.json:
        print_json(result.as_dict())
    elif result.status == "done":
        print(report if report else json.dumps(result.output, indent=2, default=str))
    question = result.interrupt["value"] if result.interrupt else None
    if result.status == "interrupted" and is_halt(question):
        print(f"Paused: {question.get('reason')}", file=sys.stderr)  # type: ignore[union-attr]
        print(
            f"Go on with: ensemble resume {result.thread_id} --answer '\"retry\"' "
            f"(or '{{\"budget\": {{...}}}}' to raise the budget, '\"stop\"' to end here)",
            file=sys.stderr,
        )
    elif result.status == "interrupted":
        answer = json.dumps(get_scenario(result.scenario).approve_answer)
        print(
            f"Paused for a human answer. Resume with: ensemble resume {result.thread_id} "
            f"--answer '{answer}'",
            file=sys.stderr,
        )
    elif result.status == "failed":
        print(f"Run failed: {result.error}", file=sys.stderr)
        print(f"Resume with: ensemble resume {result.thread_id}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _run_input(scenario: Scenario, args: argparse.Namespace) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if args.input_json:
        data = parse_json_value(args.input_json, "--input")
        if not isinstance(data, dict):
            raise InvalidInputError("--input must be a JSON object")
    if args.text is not None:
        data[scenario.primary_field] = args.text
    data.update(given_inputs(args))
    for field_name, load in scenario.file_inputs.values():
        path = getattr(args, f"file__{field_name}", None)
        if path is not None:
            data[field_name] = load(path)
    required = scenario.input_schema.model_fields[scenario.primary_field].is_required()
    if required and scenario.primary_field not in data:
        raise InvalidInputError(
            f'missing the {scenario.primary_field}: ensemble run {scenario.name} "..."'
        )
    return scenario.validate_input(data).model_dump()


async def cmd_run(args: argparse.Namespace) -> int:
    """`ensemble run SCENARIO TEXT`: validate everything, then start a new thread."""
    scenario = get_scenario(args.scenario)
    args = scenario_parser(scenario).parse_args(args.args, namespace=args)
    current = operator_workspace(args)  # `--db` of `run` is known only now
    data = _run_input(scenario, args)
    db = current.db
    run_settings = resolve_settings(None, given_settings(args), how="run")
    for field, kind in scenario.folders.items():  # refuse a bad folder before anything is stored
        if kind == "output":
            current.output_dir(data.get(field))
    corpora = [current.corpus(data.get(f)) for f, k in scenario.folders.items() if k == "corpus"]
    progress = Progress(quiet=args.quiet)
    async with open_async_checkpointer(db) as saver:
        await ensure_writable(saver, db)
        graph = scenario.compile(saver, current)
        thread_id = args.thread or new_thread_id()
        if await saver.aget_tuple(thread_config(thread_id)) is not None:
            raise InvalidInputError(f"thread {thread_id!r} already exists; use resume or fork")
        for corpus in corpora:  # progress lines only for work that happens
            if not await asyncio.to_thread(corpus.built):
                progress.line(f"[corpus] indexing {corpus.key} once; later runs reuse it")
            stats = await asyncio.to_thread(corpus.ensure)
            if stats.indexed_now:
                progress.line(
                    f"[corpus] {stats.indexed_now} documents indexed, {stats.passages} passages "
                    f"ready ({stats.seconds:.1f} s)"
                )
        progress.line(f"[run] thread {thread_id}")
        result = await drive(
            graph,
            scenario,
            thread_config(thread_id),
            data,
            run_settings,
            progress,
            _answerer(args),
        )
        await announce(db, saver, result)
    return _finish(result, args)


async def cmd_resume(args: argparse.Namespace) -> int:
    """`ensemble resume THREAD`: answer a pending question or finish a crashed run."""
    progress = Progress(quiet=args.quiet)
    space = operator_workspace(args)
    async with open_thread(space, args.thread, write=True) as (scenario, graph, saver):
        config = thread_config(args.thread)
        snapshot = await require_checkpoint(graph, config)
        overrides = given_settings(args)
        answer = answer_for(args.answer, snapshot, scenario, overrides, args.thread)
        run_settings = await for_thread(saver, config, overrides, how="resume")
        values = snapshot.values if isinstance(snapshot.values, dict) else {}
        if snapshot.interrupts:
            first = _answerer(args, answer)(snapshot.interrupts[0].value, scenario, values)
            if first is None:
                return _finish(result_of(snapshot, scenario, args.thread), args)
            payload: Any = resume_command(snapshot, first)
        elif unfinished(snapshot):
            where = ", ".join(snapshot.next or [task.name for task in snapshot.tasks])
            progress.line(f"[run] continuing thread {args.thread} at {where}")
            payload = None
        else:
            progress.line(f"[run] thread {args.thread} has already finished")
            return _finish(result_of(snapshot, scenario, args.thread), args)
        result = await drive(
            graph, scenario, config, payload, run_settings, progress, _answerer(args)
        )
        await announce(space.db, saver, result)
    return _finish(result, args)


async def cmd_fork(args: argparse.Namespace) -> int:
    """`ensemble fork THREAD --checkpoint ID`: branch, optionally with changed values, and run."""
    sets = dict(_parse_set(item) for item in args.sets)
    progress = Progress(quiet=args.quiet)
    space = operator_workspace(args)
    async with open_thread(space, args.thread, write=True) as (scenario, graph, saver):
        at = thread_config(args.thread, args.checkpoint)
        snapshot = await require_checkpoint(graph, at)
        run_settings = await for_thread(saver, at, given_settings(args), how="fork")
        values = snapshot.values if isinstance(snapshot.values, dict) else {}
        updates = scenario.fork_updates(values, sets) if sets else {}
        config = snapshot.config
        if updates:
            try:
                config = await graph.aupdate_state(snapshot.config, updates)
            except Exception as error:  # LangGraph's InvalidUpdateError and kin, made readable
                raise InvalidInputError(f"cannot fork at {args.checkpoint}: {error!r}") from error
        progress.line(f"[fork] thread {args.thread} from checkpoint {args.checkpoint}")
        result = await drive(graph, scenario, config, None, run_settings, progress, _answerer(args))
        await announce(space.db, saver, result)
    return _finish(result, args)


async def cmd_history(args: argparse.Namespace) -> int:
    """`ensemble history THREAD`: checkpoints of every branch, newest first."""
    if args.limit < 1:
        raise InvalidInputError("--limit must be at least 1")
    async with open_thread(operator_workspace(args), args.thread) as (scenario, graph, saver):
        rows = []
        async for snap in graph.aget_state_history(thread_config(args.thread), limit=args.limit):
            parent = (snap.parent_config or {}).get("configurable", {}).get("checkpoint_id")
            rows.append(
                {
                    "checkpoint_id": snap.config["configurable"]["checkpoint_id"],
                    "parent_id": parent,
                    "step": snap.metadata.get("step") if snap.metadata else None,
                    "source": snap.metadata.get("source") if snap.metadata else None,
                    "next": list(snap.next),
                    "created_at": snap.created_at,
                }
            )
    if args.json:
        print_json({"thread_id": args.thread, "checkpoints": rows})
    else:
        cells = [
            [r["checkpoint_id"], r["parent_id"] or "-", r["step"], r["source"],
             ",".join(r["next"]) or "-", r["created_at"]]
            for r in rows
        ]  # fmt: skip
        print(table(cells, ["CHECKPOINT", "PARENT", "STEP", "SOURCE", "NEXT", "CREATED"]))
    return 0


async def cmd_show(args: argparse.Namespace) -> int:
    """`ensemble show THREAD [--checkpoint ID]`: the state at the latest or a past checkpoint."""
    async with open_thread(operator_workspace(args), args.thread) as (scenario, graph, saver):
        at = thread_config(args.thread, args.checkpoint)
        snapshot = await require_checkpoint(graph, at)
        saved = await load_settings(saver, at)
    result = result_of(snapshot, scenario, args.thread)
    values = snapshot.values if isinstance(snapshot.values, dict) else {}
    rows = saved.rows() if saved else []
    if args.json:
        print_json(
            result.as_dict()
            | {
                "values": values,
                "created_at": snapshot.created_at,
                "settings": {name: {"value": v, "origin": o} for name, v, o in rows},
            }
        )
        return 0
    print(f"thread      {args.thread} ({scenario.name})")
    print(f"checkpoint  {result.checkpoint_id}  ({snapshot.created_at})")
    print(
        f"status      {result.status}"
        + (f"  next: {', '.join(result.next)}" if result.next else "")
    )
    chosen = [(n, v, o) for n, v, o in rows if o != "default" or n == "model"]
    for name, value, origin in chosen:  # the rest are defaults: `--json` shows every one
        print(f"setting     {name} = {json.dumps(value)}  ({_ORIGINS.get(origin, origin)})")
    if len(rows) > len(chosen):
        print(f"            ({len(rows) - len(chosen)} more settings at their defaults; --json)")
    if result.interrupt:
        print(prompt.describe(result.interrupt["value"]))
    for key in scenario.output_keys:
        if key in values and key != "report" and values[key] not in (None, "", [], {}):
            print(f"{key:<11} {json.dumps(values[key], default=str)[:300]}")
    if values.get("report"):
        print("\n" + values["report"])
    return 0


async def cmd_export(args: argparse.Namespace) -> int:
    """`ensemble export THREAD --format md|html|json`: the result, ready to share.

    HTML is a standalone page that runs and loads nothing (the published pieces' renderer);
    JSON holds the input, the output fields and the status.
    """
    from ensemble.publishing.render import render_page

    async with open_thread(operator_workspace(args), args.thread) as (scenario, graph, _):
        snapshot = await require_checkpoint(graph, thread_config(args.thread, args.checkpoint))
    result = result_of(snapshot, scenario, args.thread)
    values = snapshot.values if isinstance(snapshot.values, dict) else {}
    text = scenario.describe_result(values).strip()
    if args.format == "json":
        inputs = {k: values.get(k) for k in scenario.input_schema.model_fields if k in values}
        outputs = {k: values.get(k) for k in scenario.output_keys if k in values}
        content = json.dumps(
            {"thread_id": args.thread, "scenario": scenario.name, "status": result.status,
             "outcome": values.get("outcome") or "", "input": inputs, "output": outputs},
            indent=2, ensure_ascii=False, default=str,
        ) + "\n"  # fmt: skip
    elif not text:
        raise InvalidInputError(
            f"thread {args.thread!r} has no result yet (status {result.status}); "
            "`ensemble show` says where it stands"
        )
    elif args.format == "html":
        first, _, rest = text.partition("\n")
        title = first.removeprefix("# ").strip() if first.startswith("# ") else scenario.name
        body = rest if first.startswith("# ") else text
        details = " · ".join(p for p in (scenario.name, values.get("outcome") or "") if p)
        content = render_page(title, body, details)
    else:
        content = text + "\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(content, encoding="utf-8")
    else:
        sys.stdout.write(content)
    return 0


async def cmd_scenarios(args: argparse.Namespace) -> int:
    """`ensemble scenarios`: what can be run, with each scenario's inputs."""
    listed: dict[str, dict[str, Any]] = {
        s.name: {
            "description": s.description,
            "primary": s.primary_field,
            "inputs": [
                {"name": n, "type": t, "help": h} for n, t, h in describe_schema(s.input_schema)
            ],
        }
        for s in SCENARIOS.values()
    }
    if getattr(args, "json", False):
        print_json({"scenarios": listed})
        return 0
    for name, item in listed.items():
        print(f"{name}: {item['description']}")
        for field in item["inputs"]:
            positional = " (the positional argument)" if field["name"] == item["primary"] else ""
            print(
                f"    {flag_name(field['name']):<20} {field['type']}{positional}: {field['help']}"
            )
        print()
    return 0


_ORIGINS = {
    "default": "the default when the thread started",
    "run": "set when the thread started",
    "resume": "overridden at a resume",
    "fork": "overridden at a fork",
    "client": "set by a server client",
}


def _parse_set(item: str) -> tuple[str, Any]:
    field, sep, raw = item.partition("=")
    if not sep or not field.strip():
        raise InvalidInputError(f"--set takes FIELD=JSON, got {item!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw  # a bare word is taken as a string
    return field.strip(), value
