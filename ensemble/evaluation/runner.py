"""Run a question set through the research scenario and collect each question's result.

This is an entry point like the CLI (it drives a scenario graph, so it may import the graphs):
each question runs in its own thread of the workspace's database, through the same `drive`
as `ensemble run research --yes`, with the model cache off so every call is really made and
counted. Calls and tokens come from the audit trail (`ensemble stats`), never counted here.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ensemble import audit
from ensemble.db import DatabaseLike, database
from ensemble.errors import InvalidInputError
from ensemble.evaluation.metrics import Score, mean, score_answer, share
from ensemble.evaluation.questions import Question
from ensemble.graphs.registry import get_scenario
from ensemble.graphs.scenario import Scenario
from ensemble.persistence import ensure_writable, open_async_checkpointer
from ensemble.run_settings import RunSettings
from ensemble.run_settings import resolve as resolve_settings
from ensemble.runner import Progress, Silent, drive, new_thread_id, thread_config
from ensemble.workspace import Workspace

SCENARIO = "research"
"""The scenario a question set evaluates (the only one with cited answers to score)."""


@dataclass(frozen=True)
class QuestionResult:
    """One question's run: its score, how it ended, and what it spent."""

    question: Question
    score: Score
    thread_id: str
    status: str
    """done, failed or interrupted (as `ensemble run` reports it)."""
    outcome: str
    """How the review loop ended (approved, max_revisions, stalled, ...); "" if unfinished."""
    calls: int
    """Model calls that reached a model, from the audit trail."""
    tokens_in: int
    tokens_out: int
    seconds: float
    """Wall time of the run."""
    error: str | None = None

    @property
    def tokens(self) -> int:
        """Tokens in and out."""
        return self.tokens_in + self.tokens_out

    def as_dict(self) -> dict[str, Any]:
        """The question's entry of the JSON summary."""
        score = self.score
        return {
            "id": self.question.id,
            "question": self.question.question,
            "status": self.status,
            "outcome": self.outcome,
            "hit": score.hit,
            "precision": _round(score.precision),
            "cited": len(score.cited),
            "expected_cited": len(score.expected_cited),
            "cited_ids": list(score.cited),
            "citation_validity": _round(score.citation_validity),
            "markers": score.markers,
            "valid_markers": score.valid_markers,
            "unknown_markers": list(score.unknown),
            "well_formed": _round(score.well_formed_share),
            "subquestions": list(score.subquestions),
            "well_formed_subquestions": score.well_formed,
            "calls": self.calls,
            "tokens": self.tokens,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "seconds": round(self.seconds, 2),
            "thread_id": self.thread_id,
            "error": self.error,
        }


@dataclass(frozen=True)
class Evaluation:
    """The results of a whole question set and their totals."""

    results: tuple[QuestionResult, ...]
    model: str
    """The model spec the runs used (every role without an override)."""

    def summary(self) -> dict[str, Any]:
        """The JSON line for scripts: totals first, then one entry per question.

        Rates over nothing (no citation at all, no plan) are None, not 0. `precision` and
        `citation_validity` are micro averages (over all cited sources, all markers);
        `precision_mean` averages the per-question precision of questions that cite anything.
        """
        scores = [r.score for r in self.results]
        cited = sum(len(s.cited) for s in scores)
        expected = sum(len(s.expected_cited) for s in scores)
        markers = sum(s.markers for s in scores)
        valid = sum(s.valid_markers for s in scores)
        planned = sum(len(s.subquestions) for s in scores)
        formed = sum(s.well_formed for s in scores)
        hits = sum(s.hit for s in scores)
        return {
            "questions": len(self.results),
            "hit_rate": _round(share(hits, len(self.results))),
            "precision": _round(share(expected, cited)),
            "citation_validity": _round(share(valid, markers)),
            "well_formed": _round(share(formed, planned)),
            "calls": sum(r.calls for r in self.results),
            "tokens": sum(r.tokens for r in self.results),
            "seconds": round(sum(r.seconds for r in self.results), 2),
            "hits": hits,
            "precision_mean": _round(mean(s.precision for s in scores)),
            "cited": cited,
            "expected_cited": expected,
            "markers": markers,
            "valid_markers": valid,
            "subquestions": planned,
            "well_formed_subquestions": formed,
            "failed": sum(r.status != "done" for r in self.results),
            "model": self.model,
            "scenario": SCENARIO,
            "per_question": [r.as_dict() for r in self.results],
        }


def eval_settings(model: str | None) -> RunSettings:
    """The runs' settings: the CLI's defaults, the given model, and the cache off.

    Raises:
        InvalidInputError: The model spec is malformed.
        ModelSpecError: The model is unknown or its credentials are missing.
    """
    overrides: dict[str, Any] = {"cache": False}
    if model is not None:
        overrides["model"] = model
    return resolve_settings(None, overrides, how="run")


@contextmanager
def temporary_workspace(base: Workspace) -> Iterator[Workspace]:
    """A copy of `base` whose database lives in a temporary folder, deleted at the end.

    The operator's corpus and output roots stay in force.
    """
    with tempfile.TemporaryDirectory(prefix="ensemble-eval-") as folder:
        try:
            yield replace(base, db=database(Path(folder) / "ensemble.db"))
        finally:
            audit.flush()  # nothing may still be writing into the folder being deleted


OnResult = Callable[[int, QuestionResult], None]
"""Called after each question with its 1-based position and result (progress lines)."""


async def evaluate(
    questions: Sequence[Question],
    run_settings: RunSettings,
    *,
    workspace: Workspace,
    corpus: str | None = None,
    on_result: OnResult | None = None,
    progress: Progress | None = None,
) -> Evaluation:
    """Run every question, one after another, each in a new thread of `workspace`'s database.

    A question's own `corpus` wins over `corpus`; None is Python's documentation. Every
    input and corpus folder is checked before anything is written. A failed run is recorded
    (status `failed`, its error) and the next question goes on.

    Raises:
        InvalidInputError: A question is not a valid research input.
        CorpusError: A corpus folder is missing or outside the operator's roots.
    """
    scenario = get_scenario(SCENARIO)
    inputs = [_input(scenario, q, q.corpus or corpus) for q in questions]
    corpora = {data.get("corpus"): workspace.corpus(data.get("corpus")) for data in inputs}
    quiet = progress or Silent()
    results: list[QuestionResult] = []
    try:
        async with open_async_checkpointer(workspace.db) as saver:
            await ensure_writable(saver, workspace.db)
            for index in corpora.values():
                await asyncio.to_thread(index.ensure)  # indexing is no question's time
            graph = scenario.compile(saver, workspace)
            for position, (question, data) in enumerate(zip(questions, inputs, strict=True), 1):
                result = await _run_one(
                    graph, scenario, question, data, run_settings, quiet, workspace.db
                )
                results.append(result)
                if on_result is not None:
                    on_result(position, result)
    finally:
        for index in corpora.values():
            index.close()  # the shared instance reopens itself if anything searches again
    return Evaluation(tuple(results), run_settings.context.model)


async def _run_one(
    graph: Any,
    scenario: Scenario,
    question: Question,
    data: dict[str, Any],
    run_settings: RunSettings,
    progress: Progress,
    db_path: DatabaseLike,
) -> QuestionResult:
    thread_id = new_thread_id()
    config = thread_config(thread_id)
    started = time.perf_counter()
    run = await drive(graph, scenario, config, data, run_settings, progress, _approve_all)
    seconds = time.perf_counter() - started
    snapshot = await graph.aget_state(config)
    values: Mapping[str, Any] = snapshot.values if isinstance(snapshot.values, dict) else {}
    output = run.output if run.status == "done" and run.output else {"plan": values.get("plan")}
    retrieved = set(values.get("passages") or {})
    score = score_answer(output, question.expect, retrieved, asked=question.question)
    await asyncio.to_thread(audit.flush)  # every queued row is written before it is counted
    spent = await asyncio.to_thread(audit.totals, db_path, thread_id)
    error = run.error
    if run.status == "interrupted":
        asked = (run.interrupt or {}).get("value")
        reason = asked.get("reason") if isinstance(asked, dict) else None
        error = f"paused: {reason}" if reason else "paused for an answer the evaluation cannot give"
    return QuestionResult(
        question=question,
        score=score,
        thread_id=thread_id,
        status=run.status,
        outcome=str(values.get("outcome") or ""),
        calls=int(spent["calls"]),
        tokens_in=int(spent["tokens_in"]),
        tokens_out=int(spent["tokens_out"]),
        seconds=seconds,
        error=error,
    )


def _approve_all(value: Any, scenario: Scenario, values: dict[str, Any]) -> Any:
    """Answer every human review as `--yes` does."""
    return scenario.approve_answer


def _input(scenario: Scenario, question: Question, corpus: str | None) -> dict[str, Any]:
    data: dict[str, Any] = {scenario.primary_field: question.question}
    if corpus is not None:
        data["corpus"] = corpus
    try:
        return scenario.validate_input(data).model_dump()
    except InvalidInputError as error:
        raise InvalidInputError(f"question {question.id!r}: {error}") from None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
