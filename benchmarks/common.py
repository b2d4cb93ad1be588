"""What the suite's benchmarks share: a model that records its calls, goals, the summary rows.

Every benchmark module has `measure(quick=False, ...) -> dict` (what `python -m benchmarks`
runs) and `main(argv)` (its own table and JSON line). The dict holds the benchmark's own figures
and `summary`: rows of (what, Ensemble, plain LangGraph, ratio, goal, met) for the suite's table.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from langchain_core.outputs import ChatGenerationChunk, ChatResult
from pydantic import PrivateAttr

from ensemble.offline import OfflineChatModel


@dataclass(frozen=True)
class Call:
    """One model call: which graph task made it, in which super-step, and when."""

    thread: str
    step: int
    task: str
    node: str
    started: float
    ended: float


class RecordingModel(OfflineChatModel):
    """Ensemble's offline model (with its `latency`) that records every call it answers.

    The LangGraph metadata of the call (thread, super-step, task namespace) says which task
    made it, so the critical path can be computed from the calls themselves.
    """

    _calls: list[Call] = PrivateAttr(default_factory=list)

    @property
    def calls(self) -> list[Call]:
        return self._calls

    def _record(self, run_manager: Any, started: float) -> None:
        meta = dict(getattr(run_manager, "metadata", None) or {})
        namespace = str(meta.get("langgraph_checkpoint_ns") or "")
        self._calls.append(
            Call(
                thread=str(meta.get("thread_id") or ""),
                step=int(meta.get("langgraph_step") or 0),
                task=namespace,
                node=str(meta.get("langgraph_node") or ""),
                started=started,
                ended=time.perf_counter(),
            )
        )

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        result = await super()._agenerate(messages, stop, run_manager, **kwargs)
        self._record(run_manager, started)
        return result

    async def _astream(  # type: ignore[no-untyped-def]
        self, messages, stop=None, run_manager=None, **kwargs
    ) -> AsyncIterator[ChatGenerationChunk]:
        started = time.perf_counter()
        async for chunk in super()._astream(messages, stop, run_manager, **kwargs):
            yield chunk
        self._record(run_manager, started)


def sequential_calls(calls: list[Call]) -> int:
    """The model calls on the critical path of one run: per super-step, the busiest task's calls.

    Tasks of one super-step run in parallel and the calls inside a task one after another, so
    with a model of fixed latency the run cannot be shorter than this many latencies.
    """
    per_task: dict[tuple[int, str], int] = defaultdict(int)
    for call in calls:
        if "|" in call.task:
            raise ValueError(f"a call from a nested graph ({call.task}): not a flat shape")
        per_task[(call.step, call.task)] += 1
    busiest: dict[int, int] = defaultdict(int)
    for (step, _), count in per_task.items():
        busiest[step] = max(busiest[step], count)
    return sum(busiest.values())


def calls_per_task(calls: list[Call]) -> dict[str, int]:
    """For each node, the most calls one of its tasks made (the shape a plain graph copies)."""
    per_task: dict[tuple[str, str], int] = defaultdict(int)
    for call in calls:
        per_task[(call.node, call.task)] += 1
    found: dict[str, int] = defaultdict(int)
    for (node, _), count in per_task.items():
        found[node] = max(found[node], count)
    return dict(found)


def by_thread(calls: list[Call]) -> Iterator[tuple[str, list[Call]]]:
    grouped: dict[str, list[Call]] = defaultdict(list)
    for call in calls:
        grouped[call.thread].append(call)
    yield from grouped.items()


def median_time(run: Callable[[], float], repeat: int) -> float:
    """The median of `repeat` timings returned by `run`."""
    return statistics.median(run() for _ in range(repeat))


def row(
    what: str,
    ensemble: float | None,
    plain: float | None = None,
    *,
    unit: str = "",
    ratio: float | None = None,
    value: float | None = None,
    goal: tuple[str, float] | None = None,
) -> dict[str, Any]:
    """One line of the suite's table; `goal` is (`<=` or `<`, limit) on `value` (default ratio)."""
    if ratio is None and ensemble is not None and plain:
        ratio = ensemble / plain
    checked = value if value is not None else ratio
    met = None
    if goal is not None and checked is not None:
        op, limit = goal
        met = checked <= limit if op == "<=" else checked < limit
    return {
        "what": what,
        "ensemble": _round(ensemble),
        "plain": _round(plain),
        "unit": unit,
        "ratio": _round(ratio),
        "goal": f"{'ratio' if value is None else 'value'} {goal[0]} {goal[1]:g}" if goal else None,
        "met": met,
    }


def _round(value: float | None) -> float | None:
    if value is None:
        return None
    return round(value, 4 if abs(value) < 10 else 2)


def rounded(data: Any) -> Any:
    """Floats rounded for the JSON line."""
    if isinstance(data, float):
        return _round(data)
    if isinstance(data, dict):
        return {k: rounded(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [rounded(v) for v in data]
    return data


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def cell(value: Any, width: int) -> str:
    if value is None:
        return "-".rjust(width)
    if isinstance(value, float):
        text = f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
        return text.rjust(width)
    return str(value).rjust(width)


def summary_table(rows: list[dict[str, Any]], *, benchmark: str | None = None) -> str:
    """The summary rows as a fixed-width table, with the goal and whether it is met."""
    head = ["benchmark"] if benchmark is None else []
    header = [*head, "measurement", "Ensemble", "plain", "unit", "ratio", "goal", "result"]
    lines = []
    for r in rows:
        status = "" if r["met"] is None else ("met" if r["met"] else "NOT MET")
        name = [r.get("benchmark", "")] if benchmark is None else []
        lines.append(
            [*name, r["what"], cell(r["ensemble"], 9), cell(r["plain"], 9), r["unit"],
             cell(r["ratio"], 6), r["goal"] or "", status]
        )  # fmt: skip
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines, strict=True)]
    text = [
        "  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)).rstrip()
        for line in [header, *lines]
    ]
    return "\n".join([text[0], "-" * len(text[0]), *text[1:]])


def report(name: str, result: dict[str, Any]) -> None:
    """Print a benchmark's summary table and its one JSON line."""
    print(summary_table(result["summary"], benchmark=name))
    print(json.dumps({"benchmark": name, "date": now(), "machine": machine(), **rounded(result)}))
