"""`ensemble eval research`: score the research assistant on a question set with known sources."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ensemble.cli.render import table
from ensemble.errors import InvalidInputError

if TYPE_CHECKING:
    from ensemble.evaluation.runner import QuestionResult

EVALUATED = ("research",)
"""The scenarios `ensemble eval` scores (the harness imports LangGraph: only when it runs)."""

EXIT_BELOW_GOAL = 1

HEADERS = ["ID", "HIT", "PRECISION", "CITED", "VALID", "WELL-FORMED", "CALLS", "TOKENS", "SECONDS"]


def add_eval_parser(
    subparsers: argparse._SubParsersAction, parents: Sequence[argparse.ArgumentParser]
) -> argparse.ArgumentParser:
    """Add `ensemble eval` to the CLI."""
    parser = subparsers.add_parser(
        "eval",
        parents=list(parents),
        help="score the research assistant on a question set",
        description="Run each question of a set through the research scenario (plan approved "
        "automatically, model cache off, each question in its own thread) and report per "
        "question and in total: hit (an expected source is cited), precision (share of cited "
        "sources that are expected), citation validity, well-formed sub-questions, model "
        "calls, tokens and seconds. Prints a table, a totals line and, last, one JSON line.",
    )
    parser.add_argument("scenario", choices=EVALUATED, help="the scenario to evaluate")
    parser.add_argument(
        "--questions",
        type=Path,
        metavar="FILE",
        help="question set, .yaml/.yml or .jsonl: entries {id, question, expect: [ids or id "
        "prefixes], corpus?} (default: the shipped set of questions on Python's docs)",
    )
    parser.add_argument(
        "--model",
        help="model spec for every role (default: $ENSEMBLE_MODEL, else openai:gpt-4o-mini "
        "when OPENAI_API_KEY is set, else offline)",
    )
    parser.add_argument(
        "--corpus", help="folder corpus for questions that name none (default: Python's docs)"
    )
    parser.add_argument("--limit", type=int, metavar="N", help="only the first N questions")
    parser.add_argument(
        "--db",
        help="keep the threads in this SQLite database (default: a temporary one, deleted "
        "afterwards)",
    )
    parser.add_argument(
        "--min-hit-rate", type=float, metavar="RATE", help="exit 1 when the hit rate is lower"
    )
    parser.add_argument(
        "--min-precision", type=float, metavar="RATE", help="exit 1 when the precision is lower"
    )
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser


async def cmd_eval(args: argparse.Namespace) -> int:
    """`ensemble eval research --questions FILE`: check everything, run, print, compare goals."""
    from ensemble.cli.main import operator_workspace
    from ensemble.evaluation.questions import load_questions, shipped_path
    from ensemble.evaluation.runner import eval_settings, evaluate, temporary_workspace

    _check_args(args)
    questions = load_questions(args.questions or shipped_path()).questions
    if args.limit is not None:
        questions = questions[: args.limit]
    run_settings = eval_settings(args.model)
    operator = operator_workspace(args)
    place = nullcontext(operator) if args.db else temporary_workspace(operator)
    with place as space:
        evaluation = await evaluate(
            questions,
            run_settings,
            workspace=space,
            corpus=args.corpus,
            on_result=None if args.quiet else _progress_line(len(questions)),
        )
    summary = evaluation.summary()
    if not args.json:
        print(table(rows(summary), HEADERS))
        print(totals_line(summary))
        for item in summary["per_question"]:
            if item["error"]:
                print(f"{item['id']}: {item['status']}: {item['error']}")
    print(json.dumps(summary, ensure_ascii=False, default=str))
    return _goals(args, summary)


def rows(summary: dict[str, Any]) -> list[list[str]]:
    """One table row per question of a summary."""
    return [
        [
            item["id"],
            ("yes" if item["hit"] else "no") if item["status"] == "done" else item["status"],
            _rate(item["precision"]),
            str(item["cited"]),
            _rate(item["citation_validity"]),
            f"{item['well_formed_subquestions']}/{len(item['subquestions'])}",
            str(item["calls"]),
            str(item["tokens"]),
            f"{item['seconds']:.2f}",
        ]
        for item in summary["per_question"]
    ]


def totals_line(summary: dict[str, Any]) -> str:
    """The totals of a summary in one line, below the table."""
    s = summary
    failed = f", {s['failed']} not finished" if s["failed"] else ""
    return (
        f"Total: {s['questions']} questions{failed}, model {s['model']}: "
        f"hit rate {_rate(s['hit_rate'])} ({s['hits']}/{s['questions']}), "
        f"precision {_rate(s['precision'])} ({s['expected_cited']}/{s['cited']} cited sources; "
        f"mean per question {_rate(s['precision_mean'])}), "
        f"citation validity {_rate(s['citation_validity'])} "
        f"({s['valid_markers']}/{s['markers']} markers), "
        f"well-formed sub-questions {_rate(s['well_formed'])} "
        f"({s['well_formed_subquestions']}/{s['subquestions']}), "
        f"{s['calls']} model calls, {s['tokens']} tokens, {s['seconds']:.1f} s"
    )


def _check_args(args: argparse.Namespace) -> None:
    if args.limit is not None and args.limit < 1:
        raise InvalidInputError("--limit must be at least 1")
    for flag in ("min_hit_rate", "min_precision"):
        value = getattr(args, flag)
        if value is not None and not 0 <= value <= 1:
            raise InvalidInputError(f"--{flag.replace('_', '-')} must be between 0 and 1")


def _progress_line(total: int) -> Any:
    def line(position: int, result: QuestionResult) -> None:
        score = result.score
        verdict = ("hit" if score.hit else "miss") if result.status == "done" else result.status
        print(
            f"[eval] {position}/{total} {result.question.id}: {verdict}, "
            f"precision {_rate(score.precision)} ({len(score.expected_cited)}/{len(score.cited)}),"
            f" {result.calls} calls, {result.tokens} tokens, {result.seconds:.2f} s",
            file=sys.stderr,
            flush=True,
        )

    return line


def _goals(args: argparse.Namespace, summary: dict[str, Any]) -> int:
    """Exit 1 when a goal given with --min-* is missed (an undefined rate misses it)."""
    missed = [
        f"{name} {_rate(summary[key])} is below --{flag} {goal:g}"
        for name, key, flag, goal in (
            ("hit rate", "hit_rate", "min-hit-rate", args.min_hit_rate),
            ("precision", "precision", "min-precision", args.min_precision),
        )
        if goal is not None and (summary[key] is None or summary[key] < goal)
    ]
    for message in missed:
        print(f"ensemble: {message}", file=sys.stderr)
    return EXIT_BELOW_GOAL if missed else 0


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
