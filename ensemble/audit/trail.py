"""The audit trail: one row per agent action, in the project's database, beside the checkpoints.

Recording must never slow or fail a run, yet a row must survive a crash of the run it describes.
So `record` only puts a row on a queue; one writer thread per database file takes whatever is
queued, inserts it and commits at once (no waiting to fill a batch). On PostgreSQL every worker's
rows land in the same table. A killed process loses at
most the rows of the last few milliseconds; a bug or a locked file loses rows, logged, never the
run. The queries open their own short connections and do not create anything.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langgraph.config import get_config

from ensemble.db import Database, DatabaseLike, database
from ensemble.db.tables import DATABASE_ERRORS, create_tables, write_transaction
from ensemble.errors import DatabaseError
from ensemble.persistence import read_rows, tables

log = logging.getLogger(__name__)

KINDS = frozenset(
    "model_call cache_hit tool_call route human_answer refusal retry breaker budget_stop pause "
    "fallback".split()
)
"""What an agent can do that is worth a row."""

OK = "ok"
ERROR = "error"

IDLE_SECONDS = 30.0
"""A writer with nothing to write for this long closes its connection and its thread ends."""

MAX_BATCH = 500
"""Rows per transaction: a burst is split so no single commit holds the write lock for long."""

RETRY_PAUSES = (0.05, 0.1, 0.2, 0.4, 0.8)
"""Seconds between attempts to write a batch while the file is locked, before it is dropped."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    checkpoint_id TEXT NOT NULL DEFAULT '',
    agent TEXT NOT NULL,
    kind TEXT NOT NULL,
    model TEXT,
    tokens_in INTEGER NOT NULL DEFAULT 0,
    tokens_out INTEGER NOT NULL DEFAULT 0,
    cost REAL NOT NULL DEFAULT 0,
    seconds REAL NOT NULL DEFAULT 0,
    outcome TEXT NOT NULL DEFAULT 'ok',
    detail TEXT NOT NULL DEFAULT '{}',
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_thread_at ON audit (thread_id, at);
"""

_COLUMNS = (
    "thread_id, checkpoint_ns, checkpoint_id, agent, kind, model, "
    "tokens_in, tokens_out, cost, seconds, outcome, detail, at"
)
_NAMES = ("id", *(name.strip() for name in _COLUMNS.split(",")))
_INSERT = f"INSERT INTO audit ({_COLUMNS}) VALUES ({', '.join('?' * 13)})"

Row = tuple[str, str, str, str, str, str | None, int, int, float, float, str, str, float]


@dataclass(frozen=True)
class AuditEvent:
    """One agent action: who did what in which thread, what it cost and how it ended."""

    thread_id: str
    kind: str
    """One of `KINDS`; `record` drops (and logs) any other."""
    agent: str
    """The node, role or agent name that acted."""
    checkpoint_ns: str = ""
    checkpoint_id: str = ""
    """The checkpoint the step started from (see `thread_context`), to fork at it later."""
    model: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    seconds: float = 0.0
    outcome: str = OK
    """Usually "ok" or "error"; stats count anything but "ok" as an error."""
    detail: dict[str, Any] = field(default_factory=dict)
    """Anything else, stored as JSON (values JSON cannot hold are stored as strings)."""
    at: float = field(default_factory=time.time)


def thread_context() -> tuple[str, str, str]:
    """(thread_id, checkpoint_ns, checkpoint_id) of the LangGraph step running this code.

    The namespace is the graph's ("" for the top graph, a subgraph's own otherwise), not the
    task's, and the id is the checkpoint the step started from: together they name a row of the
    `checkpoints` table. Outside a run all three are empty strings.
    """
    try:
        configurable = get_config().get("configurable") or {}
    except RuntimeError:  # not inside a runnable context
        return "", "", ""
    task_ns = str(configurable.get("checkpoint_ns") or "")
    graph_ns = task_ns.rpartition("|")[0]
    checkpoint_map = configurable.get("checkpoint_map") or {}
    checkpoint_id = checkpoint_map.get(graph_ns) or configurable.get("checkpoint_id") or ""
    return str(configurable.get("thread_id") or ""), graph_ns, str(checkpoint_id)


# Writing ---------------------------------------------------------------------------------------


def record(event: AuditEvent, db_path: DatabaseLike) -> None:
    """Queue `event` for the database `db_path`; return at once.

    Never raises and never waits on the database: an auditing problem is logged, not the
    caller's failure. The row is committed within milliseconds by a background thread.
    """
    try:
        if event.kind not in KINDS:
            log.warning("audit: dropped an event of unknown kind %r", event.kind)
            return
        _writer_for(db_path).put(_row(event))
    except Exception:
        log.warning("audit: could not queue an event", exc_info=True)


def flush(timeout: float = 5.0) -> bool:
    """Wait until every queued event is written (or dropped); False if `timeout` ran out."""
    deadline = time.monotonic() + timeout
    with _registry_lock:
        writers = list(_writers.values())
    return all(writer.wait_idle(deadline) for writer in writers)


class _Writer:
    """The queue and writer thread of one database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.path = str(db)
        self._rows: deque[Row] = deque()
        self._pending = 0  # queued or being written
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def put(self, row: Row) -> None:
        with self._changed:
            self._rows.append(row)
            self._pending += 1
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="ensemble-audit", daemon=True)
                try:
                    thread.start()
                except RuntimeError:  # at interpreter shutdown: take the row back, `record` logs
                    self._rows.pop()
                    self._pending -= 1
                    raise
                self._thread = thread
            self._changed.notify_all()

    def wait_idle(self, deadline: float) -> bool:
        with self._changed:
            return self._changed.wait_for(
                lambda: self._pending == 0, timeout=max(0.0, deadline - time.monotonic())
            )

    def _run(self) -> None:
        while True:
            with self._changed:
                if not self._changed.wait_for(lambda: self._rows, timeout=IDLE_SECONDS):
                    self._thread = None  # under the lock: the next `put` starts a new one
                    return
                batch = [self._rows.popleft() for _ in range(min(MAX_BATCH, len(self._rows)))]
            self._write(batch)
            with self._changed:
                self._pending -= len(batch)
                self._changed.notify_all()

    def _write(self, batch: list[Row]) -> None:
        """Insert and commit `batch`, retrying a locked file; else log and drop it.

        Retries matter on a new SQLite file: switching it to WAL fails at once, without waiting,
        while another connection (the checkpointer, the model cache) opens it at the same moment.
        """
        for pause in (*RETRY_PAUSES, None):
            try:
                with tables(self.db) as conn:
                    create_tables(conn, _SCHEMA)
                    with write_transaction(conn):
                        conn.executemany(_INSERT, batch)
                return
            except Exception as error:
                if pause is not None and any(word in str(error) for word in ("locked", "busy")):
                    time.sleep(pause)
                    continue
                log.warning("audit: lost %d event(s) for %s", len(batch), self.path, exc_info=True)
                return


_registry_lock = threading.Lock()
_writers: dict[str, _Writer] = {}


def _writer_for(db: DatabaseLike) -> _Writer:
    db = database(db)
    if not db.is_postgres:  # no filesystem access on the caller's loop
        db = Database(kind="sqlite", path=Path(os.path.abspath(db.sqlite_path)))
    with _registry_lock:
        writer = _writers.get(db.url)
        if writer is None:
            writer = _writers[db.url] = _Writer(db)
        return writer


def _forget_writers() -> None:
    """In a forked child the parent's writer threads do not exist: start afresh."""
    global _registry_lock, _writers
    _registry_lock, _writers = threading.Lock(), {}


os.register_at_fork(after_in_child=_forget_writers)
atexit.register(flush)  # daemon writers still run during atexit: a normal exit keeps every row


def _row(event: AuditEvent) -> Row:
    """The event as an INSERT row, detail serialised now: later changes to it are not recorded."""
    return (
        str(event.thread_id),
        str(event.checkpoint_ns),
        str(event.checkpoint_id),
        str(event.agent),
        event.kind,
        None if event.model is None else str(event.model),
        int(event.tokens_in),
        int(event.tokens_out),
        float(event.cost),
        float(event.seconds),
        str(event.outcome),
        _dumps(event.detail),
        float(event.at),
    )


def _dumps(detail: dict[str, Any]) -> str:
    try:
        return json.dumps(detail, default=str, ensure_ascii=False)
    except (TypeError, ValueError):  # e.g. a circular structure
        return json.dumps({"unserializable": repr(detail)})


# Reading ---------------------------------------------------------------------------------------


def events(
    db_path: DatabaseLike,
    thread_id: str,
    *,
    limit: int | None = None,
    kinds: set[str] | None = None,
) -> list[dict[str, Any]]:
    """The thread's events, oldest first; with `limit`, only the most recent `limit` of them.

    Raises:
        DatabaseError: The file at `db_path` is not a readable database.
    """
    params: list[Any] = [thread_id, *sorted(kinds or ())]
    where = "thread_id = ?"
    if kinds is not None:  # SQLite reads an empty `IN ()` as false
        where += f" AND kind IN ({', '.join('?' * len(kinds))})"
    if limit is not None:
        query = (
            f"SELECT * FROM (SELECT id, {_COLUMNS} FROM audit WHERE {where} "
            "ORDER BY at DESC, id DESC LIMIT ?) AS recent ORDER BY at, id"
        )
        params.append(max(0, limit))
    else:
        query = f"SELECT id, {_COLUMNS} FROM audit WHERE {where} ORDER BY at, id"
    return [_event_dict(row) for row in _read(db_path, query, params)]


def stats(db_path: DatabaseLike, thread_id: str) -> list[dict[str, Any]]:
    """Per (agent, kind): calls, tokens in/out, cost, seconds and errors (outcome not "ok").

    Raises:
        DatabaseError: The file at `db_path` is not a readable database.
    """
    rows = _read(
        db_path,
        "SELECT agent, kind, COUNT(*), COALESCE(SUM(tokens_in), 0), COALESCE(SUM(tokens_out), 0), "
        "COALESCE(SUM(cost), 0), COALESCE(SUM(seconds), 0), "
        "SUM(CASE WHEN outcome != 'ok' THEN 1 ELSE 0 END) FROM audit WHERE thread_id = ? "
        "GROUP BY agent, kind ORDER BY agent, kind",
        [thread_id],
    )
    keys = ("agent", "kind", "calls", "tokens_in", "tokens_out", "cost", "seconds", "errors")
    casts = (int, int, int, float, float, int)
    return [dict(zip(keys, _numbers(row, casts), strict=True)) for row in rows]


def totals(db_path: DatabaseLike, thread_id: str) -> dict[str, Any]:
    """What the thread's models spent, as a budget counts it; plus events, cache hits, errors.

    `calls` counts model calls that reached a model (outcome ok or error), never cache hits;
    tokens, cost and seconds add up the `model_call` rows only (a cache hit spends nothing,
    even if it records the tokens of the answer it reused); `events` counts every row and
    `errors` the rows whose outcome is not ok.

    Raises:
        DatabaseError: The file at `db_path` is not a readable database.
    """
    rows = _read(
        db_path,
        "SELECT COUNT(*), "
        "COALESCE(SUM(CASE WHEN kind = 'model_call' AND outcome IN ('ok', 'error') THEN 1 END), 0),"
        " "
        "COALESCE(SUM(CASE WHEN kind = 'cache_hit' THEN 1 END), 0), "
        "COALESCE(SUM(CASE WHEN kind = 'model_call' THEN tokens_in END), 0), "
        "COALESCE(SUM(CASE WHEN kind = 'model_call' THEN tokens_out END), 0), "
        "COALESCE(SUM(CASE WHEN kind = 'model_call' THEN cost END), 0), "
        "COALESCE(SUM(CASE WHEN kind = 'model_call' THEN seconds END), 0), "
        "COALESCE(SUM(CASE WHEN outcome != 'ok' THEN 1 END), 0) FROM audit WHERE thread_id = ?",
        [thread_id],
    )
    keys = "events calls cache_hits tokens_in tokens_out cost seconds errors".split()
    values = rows[0] if rows else (0, 0, 0, 0, 0, 0.0, 0.0, 0)
    casts = (int, int, int, int, int, float, float, int)
    return dict(zip(keys, _numbers(values, casts), strict=True))


def _numbers(row: tuple[Any, ...], casts: tuple[type, ...]) -> tuple[Any, ...]:
    """The row's last values as `casts` say (PostgreSQL sums bigints as decimals)."""
    head = row[: len(row) - len(casts)]
    return head + tuple(cast(v) for cast, v in zip(casts, row[len(head) :], strict=True))


def _read(db_path: DatabaseLike, query: str, params: list[Any]) -> list[tuple[Any, ...]]:
    try:
        return read_rows(db_path, "audit", query, params)
    except DATABASE_ERRORS as error:
        raise DatabaseError(f"cannot read the audit trail in {db_path}: {error}") from error


def _event_dict(row: tuple[Any, ...]) -> dict[str, Any]:
    item = dict(zip(_NAMES, row, strict=True))
    try:
        item["detail"] = json.loads(item["detail"] or "{}")
    except ValueError:
        item["detail"] = {"raw": item["detail"]}
    return item
