"""A cache of model responses in the project's database, keyed by the exact request.

A fork that changes only a late setting then re-uses every earlier agent's answer, and a resumed
run does not pay twice for a call it already made. `ModelCache` is a LangChain `BaseCache`; the
guard asks it with `request(...)`'s `(prompt, llm_string)`, which covers what the model
sees (spec, messages, answer-changing call kwargs) and nothing that differs between runs of the
same request (message ids, callbacks, run ids, metadata). Results are stored with LangChain's own
serialisation (`dumpd` / `load`), so messages come back with their tool calls and usage metadata.

The cache only saves work: a database it cannot read or write, or a row it cannot decode, is a
miss (logged), never an error for the caller.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

from langchain_core._api import LangChainBetaWarning
from langchain_core.caches import BaseCache
from langchain_core.load import dumpd, load
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    BaseMessageChunk,
    ChatMessage,
    ToolMessage,
    message_chunk_to_message,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, Generation
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel

from ensemble import persistence
from ensemble.db import DatabaseLike, database
from ensemble.db.tables import (
    DATABASE_ERRORS,
    TableConnection,
    create_tables,
    table_exists,
    write_transaction,
)
from ensemble.errors import DatabaseError

_log = logging.getLogger(__name__)

_KEY_VERSION = 2
"""Part of every key: bump it when the key's contents change, so old rows are never matched."""
_FORMAT = 2
"""Format of the stored `result`; rows in another format are misses."""

_IGNORED_KWARGS = frozenset(
    {
        "callbacks",
        "config",
        "metadata",
        "parent_run_id",
        "run_id",
        "run_manager",
        "run_name",
        "stream",
        "stream_options",
        "tags",
    }
)
"""Call kwargs that do not change the answer. Every other kwarg is part of the key, so an
unknown kwarg can cost a miss but never return another request's answer."""

_ALLOWED = (ChatGeneration, ChatGenerationChunk, AIMessage, AIMessageChunk)
"""The only classes `load` may build from a row: a row is data, not configuration."""

_FAILURES: tuple[type[Exception], ...] = (DatabaseError, *DATABASE_ERRORS)
"""A cache that cannot be read or written is a miss, never a failed call."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS model_cache (
    key TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    result TEXT NOT NULL,
    created_at REAL NOT NULL,
    hits INTEGER NOT NULL DEFAULT 0
)
"""


def request(
    spec: str, messages: Sequence[BaseMessage], kwargs: Mapping[str, Any]
) -> tuple[str, str]:
    """Return the request as LangChain's cache sees it: `(prompt, llm_string)`, canonical JSON.

    Each message counts by type (role for `ChatMessage`), name, content, tool calls (name and
    args: their ids come from the provider) and `tool_call_id`; message ids differ between runs
    and do not count. The call kwargs count except `_IGNORED_KWARGS` and those set to `None`
    (the same as not passed); a model setting that is not in `spec` (temperature set on the
    model, say) must be passed in `kwargs` to be part of the key.
    """
    llm = {
        "v": _KEY_VERSION,
        "spec": spec,
        "kwargs": {
            name: value
            for name, value in kwargs.items()
            if name not in _IGNORED_KWARGS and value is not None
        },
    }
    return _json([_message_entry(message) for message in messages]), _json(llm)


def request_key(spec: str, messages: Sequence[BaseMessage], kwargs: Mapping[str, Any]) -> str:
    """Return the row key of a request (see `request`): a 64-character sha256 hex digest."""
    return _key(*request(spec, messages, kwargs))


def _key(prompt: str, llm_string: str) -> str:
    return hashlib.sha256(f"{llm_string}\n{prompt}".encode()).hexdigest()


def _json(value: Any) -> str:
    return json.dumps(_canonical(value), sort_keys=True, default=str, separators=(",", ":"))


def _message_entry(message: BaseMessage) -> dict[str, Any]:
    if isinstance(message, BaseMessageChunk):
        message = message_chunk_to_message(message)  # a chunk asks the same as its message
    entry: dict[str, Any] = {"type": message.type, "content": message.content}
    if isinstance(message, ChatMessage):
        entry["role"] = message.role
    if message.name is not None:
        entry["name"] = message.name
    if isinstance(message, AIMessage):
        entry["tool_calls"] = [
            {"name": call["name"], "args": call["args"]} for call in message.tool_calls
        ]
        if message.invalid_tool_calls:
            entry["invalid_tool_calls"] = [
                {"name": call.get("name"), "args": call.get("args")}
                for call in message.invalid_tool_calls
            ]
    if isinstance(message, ToolMessage):
        entry["tool_call_id"] = message.tool_call_id
    return entry


def _canonical(value: Any) -> Any:
    """Turn `value` into plain JSON data that says what the model is sent.

    Schemas stand for pydantic classes and tools (their `str` names only the class, and two
    classes of one name but different fields must not share a key); anything else unknown
    becomes its `str`, which at worst costs a miss.
    """
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Mapping):
        return {str(name): _canonical(item) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    if isinstance(value, set | frozenset):
        items = [_canonical(item) for item in value]
        return sorted(items, key=lambda item: json.dumps(item, sort_keys=True, default=str))
    try:
        if isinstance(value, type) and issubclass(value, BaseModel):
            return {"pydantic_schema": _canonical(value.model_json_schema())}
        if isinstance(value, BaseTool):
            return {"tool": _canonical(convert_to_openai_tool(value))}
        if isinstance(value, BaseModel):
            return _canonical(value.model_dump(mode="json"))
    except Exception:  # an odd schema falls back to its str below
        _log.debug("cannot describe %r for a cache key; using its str", value, exc_info=True)
    return str(value)


def _encode(generations: Sequence[Generation]) -> str:
    """Serialise `generations` and check that they decode, so a stored row is always usable.

    Raises:
        ValueError: They hold something LangChain cannot serialise or `load` may not build.
    """
    text = json.dumps(
        {"format": _FORMAT, "generations": [dumpd(generation) for generation in generations]},
        separators=(",", ":"),
    )
    _decode(text)
    return text


def _decode(text: Any) -> list[ChatGeneration]:
    """Rebuild stored generations exactly (message ids included).

    Raises:
        ValueError: The row is not a result this module wrote.
    """
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ValueError("not a cached result")
        generations = [_load(item) for item in data["generations"]]
        if not generations or not all(isinstance(g, ChatGeneration) for g in generations):
            raise ValueError("not a list of ChatGenerations")
        return generations
    except ValueError:
        raise
    except Exception as error:  # any failure to decode means a bad row
        raise ValueError(f"cannot decode cached result: {error}") from error


_load_lock = threading.Lock()
_load_warned = False


def _load(payload: Any) -> Any:
    """Call `load`, keeping its once-per-process beta warning from reaching the caller.

    The test suite (and anyone running with `-W error`) turns that warning into an error.
    `warnings.catch_warnings` is not thread-safe, so only the first call runs inside it, under
    a lock; later calls do not warn.
    """
    global _load_warned
    if not _load_warned:
        with _load_lock:
            if not _load_warned:
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", LangChainBetaWarning)
                        return load(payload, allowed_objects=_ALLOWED)
                finally:
                    _load_warned = True
    return load(payload, allowed_objects=_ALLOWED)


class ModelCache(BaseCache):
    """Model responses in the `model_cache` table of one SQLite database: LangChain's `BaseCache`.

    Thread-safe: every lookup / update opens its own short connection (the async forms run them
    in a worker thread, `BaseCache`'s default), and every write is one transaction. The first
    answer stored for a request stays; a second update of it (two identical calls that missed
    at the same time) is dropped, so every reader of a request sees the same answer.
    """

    _instances: ClassVar[dict[str, ModelCache]] = {}
    _instances_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, db: DatabaseLike) -> None:
        """Keep responses in the database `db` (a SQLite file is made on the first update)."""
        self.db = database(db)
        self.path = self.db  # printed in messages
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    @classmethod
    def for_path(cls, db_path: DatabaseLike) -> ModelCache:
        """Return the process-wide cache of a database (one per database, however it is spelt)."""
        name = _identity(db_path)
        with cls._instances_lock:
            cache = cls._instances.get(name)
            if cache is None:
                cache = cls._instances[name] = cls(db_path)
            return cache

    def lookup(self, prompt: str, llm_string: str) -> list[ChatGeneration] | None:
        """Return the stored answer to the request, or `None` on a miss.

        A hit counts in the row's `hits`. Its messages come back with `id=None`, as from a
        fresh call: LangChain then gives each a new run id, so two hits never share an id (which
        LangGraph's `add_messages` would take for one message replacing the other).
        """
        generations = self._lookup(_key(prompt, llm_string))
        with self._lock:
            if generations is None:
                self._misses += 1
            else:
                self._hits += 1
        for generation in generations or ():
            generation.message.id = None
        return generations

    def update(self, prompt: str, llm_string: str, return_val: Sequence[Generation]) -> None:
        """Store the answer unless the request is stored already; never raises."""
        spec = _spec_of(llm_string)
        try:
            text = _encode(return_val)
        except Exception as error:  # whatever LangChain cannot serialise is just not cached
            _log.info("model response for %s not cached: %s", spec, error)
            return
        try:
            with self._connect(create=True) as conn, write_transaction(conn):
                conn.execute(
                    "INSERT INTO model_cache (key, spec, result, created_at, hits) "
                    "VALUES (?, ?, ?, ?, 0) ON CONFLICT(key) DO NOTHING",
                    (_key(prompt, llm_string), spec, text, time.time()),
                )
        except _FAILURES as error:
            _log.warning("cannot write the model cache in %s: %s", self.path, error)

    def clear(self, **kwargs: Any) -> None:
        """Forget every stored answer."""
        if self._exists():
            with self._connect(create=False) as conn, write_transaction(conn):
                if table_exists(conn, "model_cache"):
                    conn.execute("DELETE FROM model_cache")

    def stats(self) -> dict[str, int]:
        """Return the rows and hits stored in the database, and this process's hits and misses."""
        entries = hits = 0
        if self._exists():
            try:
                with self._connect(create=False) as conn:
                    entries, hits = conn.execute(
                        "SELECT COUNT(*), COALESCE(SUM(hits), 0) FROM model_cache"
                    ).fetchone()
            except _FAILURES as error:
                self._read_failed(error)
        with self._lock:
            return {
                "entries": int(entries),
                "hits": int(hits),
                "session_hits": self._hits,
                "session_misses": self._misses,
            }

    def _lookup(self, key: str) -> list[ChatGeneration] | None:
        if not self._exists():
            return None
        try:
            with self._connect(create=False) as conn:
                row = conn.execute(
                    "SELECT result FROM model_cache WHERE key = ?", (key,)
                ).fetchone()
                if row is None:
                    return None
                try:
                    result = _decode(row[0])
                except ValueError as error:
                    _log.warning("dropping a bad model cache row (%s): %s", key, error)
                    with write_transaction(conn):
                        # Only the row as read: a good row written meanwhile stays.
                        conn.execute(
                            "DELETE FROM model_cache "
                            "WHERE key = ? AND result IS NOT DISTINCT FROM ?",
                            (key, row[0]),
                        )
                    return None
                try:
                    with write_transaction(conn):
                        conn.execute("UPDATE model_cache SET hits = hits + 1 WHERE key = ?", (key,))
                except DATABASE_ERRORS as error:  # a lost count must not cost the hit
                    _log.warning("cannot count a model cache hit in %s: %s", self.path, error)
                return result
        except _FAILURES as error:
            self._read_failed(error)
            return None

    def _read_failed(self, error: Exception) -> None:
        if not any(words in str(error) for words in ("no such table", "does not exist")):
            # otherwise nothing was stored yet: a plain miss
            _log.warning("cannot read the model cache in %s: %s", self.path, error)

    def _exists(self) -> bool:
        return (
            self.db.is_postgres or str(self.db.path) == ":memory:" or self.db.sqlite_path.is_file()
        )

    @contextmanager
    def _connect(self, *, create: bool) -> Iterator[TableConnection]:
        with persistence.tables(self.db, create=create) as conn:
            if create:
                create_tables(conn, _SCHEMA)
            yield conn


def _spec_of(llm_string: str) -> str:
    """The model spec in an `llm_string` made by `request` ("" for LangChain's own strings)."""
    try:
        return str(json.loads(llm_string)["spec"])
    except (ValueError, TypeError, KeyError):
        return ""


def _identity(db_path: DatabaseLike) -> str:
    db = database(db_path)
    if db.is_postgres or str(db.path) == ":memory:":
        return db.url
    return str(db.sqlite_path.resolve())
