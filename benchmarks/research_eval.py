"""How well the research assistant answers the shipped question set, and what it spends.

Every question of `ensemble/evaluation/questions/python_docs.yaml` (everyday Python questions
with the documentation that answers them) runs through the real research graph, as
`ensemble eval research` does: the plan approved automatically, the model cache off, each
question in its own thread of a temporary database. Per question and in total: hit (the
answer cites an expected source), precision (share of the cited sources that are expected),
citation validity (share of the body's citation markers that point at a retrieved source),
well-formed sub-questions, and the model calls, tokens and seconds from the audit trail.
Writes `benchmarks/results/research_eval.md` (another set: `research_eval_<set name>.md`).
Run: `python -m benchmarks.research_eval [--questions FILE] [--model SPEC] [--limit N]`.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
from pathlib import Path
from typing import Any

from ensemble.cli.eval import HEADERS, rows, totals_line
from ensemble.corpus.sources import python_corpus_key
from ensemble.evaluation import load_questions, shipped_path
from ensemble.evaluation.runner import eval_settings, evaluate, temporary_workspace
from ensemble.models import stop_local_servers
from ensemble.settings import db_path
from ensemble.workspace import Workspace

RESULTS = Path(__file__).resolve().parent / "results" / "research_eval.md"
NUMERIC = {"PRECISION", "CITED", "VALID", "CALLS", "TOKENS", "SECONDS"}


async def run(model: str | None, limit: int | None, path: Path) -> dict[str, Any]:
    questions = load_questions(path).questions
    if limit is not None:
        questions = questions[:limit]
    operator = Workspace(db_path=db_path())  # as the CLI's user: any corpus folder
    with temporary_workspace(operator) as space:
        evaluation = await evaluate(
            questions, eval_settings(model), workspace=space, on_result=_progress(len(questions))
        )
    return evaluation.summary()


def _progress(total: int) -> Any:
    def line(position: int, result: Any) -> None:
        verdict = "hit" if result.score.hit else "miss"
        print(f"[{position}/{total}] {result.question.id}: {verdict}", file=sys.stderr, flush=True)

    return line


def markdown(summary: dict[str, Any], flags: list[str], path: Path) -> str:
    """The results file: how it was made, the per-question table, the totals."""
    align = ["---:" if h in NUMERIC else "---" for h in HEADERS]
    table = [f"| {' | '.join(HEADERS)} |", f"|{'|'.join(align)}|"]
    table += [f"| {' | '.join(cells)} |" for cells in rows(summary)]
    command = " ".join(["python -m benchmarks.research_eval", *flags])
    return "\n".join(
        [
            f"# Research assistant on `{path.name}`",
            "",
            f"`{command}`: {summary['questions']} questions of `{path.name}`, model "
            f"`{summary['model']}`, model cache off, each question in its own thread; Python "
            f"{platform.python_version()}, corpus `{python_corpus_key()}`.",
            "",
            "HIT: the answer cites an expected source. PRECISION: share of the cited sources "
            "that are expected. CITED: sources the report's body cites. VALID: share of the "
            "body's citation markers that point at a retrieved source. WELL-FORMED: planner "
            "sub-questions that are well-formed questions. CALLS and TOKENS: from the audit "
            "trail. SECONDS: wall time of the run.",
            "",
            *table,
            "",
            totals_line(summary),
            "",
        ]
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", help="model spec for every role (default: as `ensemble run`)")
    parser.add_argument("--limit", type=int, help="only the first N questions")
    parser.add_argument(
        "--questions", type=Path, default=shipped_path(), help="question set (default: shipped)"
    )
    parser.add_argument("--out", type=Path, help="the markdown file to write")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    try:
        summary = asyncio.run(run(args.model, args.limit, args.questions))
    finally:
        stop_local_servers()
    flags = [f"--questions {args.questions}"] if args.questions != shipped_path() else []
    flags += [f"--model {args.model}"] if args.model else []
    flags += [f"--limit {args.limit}"] if args.limit else []
    text = markdown(summary, flags, args.questions)
    if args.out is None:  # python_docs_heldout.yaml -> research_eval_heldout.md
        suffix = args.questions.stem.removeprefix(shipped_path().stem).lstrip("_")
        args.out = RESULTS.with_stem(f"{RESULTS.stem}_{suffix}") if suffix else RESULTS
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)
    return summary


if __name__ == "__main__":
    main()
