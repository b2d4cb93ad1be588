"""Small helpers the notebooks share: state rows as an HTML table, progress events as spans."""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


class HTML(str):
    """HTML text that Jupyter renders as a table and code can still use as a string."""

    def _repr_html_(self) -> str:
        return str(self)


def html_table(rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None) -> HTML:
    """Dict rows as an escaped HTML table (values may be model output); lists join with commas.

    Args:
        rows: one mapping per row.
        columns: the keys to show, in order; by default those of the first row.
    """
    rows = list(rows)
    keys = list(columns) if columns is not None else list(rows[0]) if rows else []

    def cell(value: Any) -> str:
        if isinstance(value, list | tuple):
            value = ", ".join(map(str, value))
        return "" if value is None else html.escape(str(value))

    head = "".join(f"<th>{html.escape(key)}</th>" for key in keys)
    body = "".join(
        "<tr>" + "".join(f"<td>{cell(row.get(key))}</td>" for key in keys) + "</tr>" for row in rows
    )
    return HTML(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def agent_spans(events: Iterable[tuple[float, Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """One row per agent run from `(seconds, progress event)` pairs of a streamed run.

    A `started` event opens a run of (agent, task or item); the next `finished` or `failed` of
    the same pair closes it. Agents that only say when they are done have no row.
    """
    rows: list[dict[str, Any]] = []
    running: dict[tuple[str, str], dict[str, Any]] = {}
    for at, event in events:
        key = (event["agent"], str(event.get("task") or event.get("item") or ""))
        if event["status"] == "started":
            row = {"agent": key[0], "task": key[1], "started at +s": round(at, 3)}
            running[key] = row | {"seconds": None, "status": "running"}
            rows.append(running[key])
        elif event["status"] in ("finished", "failed") and key in running:
            row = running.pop(key)
            row.update(seconds=round(at - row["started at +s"], 3), status=event["status"])
    return rows
