"""An event: a type, JSON data, where it came from, when, and an id that makes it unique.

Every event is checked the same way wherever it comes from (the CLI, the server's route, a
schedule, a watched folder, a run), so a bad one is refused before anything is stored. The id is
the publisher's to choose: publishing the same id twice stores the event once, which is what
makes a retried webhook or a re-scanned folder harmless.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from ensemble.errors import InvalidInputError

TYPE_PATTERN = re.compile(r"[a-z][a-z0-9_-]*(\.[a-z0-9_-]+){0,7}")
"""`document.changed`, `run.done`, `invoice.paid`: lower-case dotted words."""
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,199}")
"""Patterns are used with `fullmatch`: `$` would let a trailing newline through."""
MAX_TYPE_CHARS = 100
MAX_SOURCE_CHARS = 200
MAX_DATA_BYTES = 64 * 1024
"""Largest event data, as JSON: events carry facts and ids, not documents."""


@dataclass(frozen=True)
class Event:
    """One stored event."""

    id: str
    type: str
    data: dict[str, Any]
    source: str
    time: str
    """When it was published, ISO 8601 in UTC."""

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (CLI `--json`, the server's answer, templates' `event`)."""
        return asdict(self)


def make_event(
    type: str,
    data: Any,
    *,
    source: str,
    id: str | None = None,
    time: datetime | None = None,
) -> Event:
    """A checked event; a fresh id when none is given.

    Raises:
        InvalidInputError: A bad type, id or source, or data that is not a JSON object of at
            most `MAX_DATA_BYTES`.
    """
    if not isinstance(type, str) or len(type) > MAX_TYPE_CHARS or not TYPE_PATTERN.fullmatch(type):
        raise InvalidInputError(
            f"event type {type!r:.120} must be lower-case dotted words, e.g. document.changed"
        )
    if id is None:
        id = str(uuid.uuid4())
    if not isinstance(id, str) or not ID_PATTERN.fullmatch(id):
        raise InvalidInputError(
            f"event id {id!r:.120} must be 1-200 letters, digits or ._:@/+=- "
            "(starting with a letter or digit)"
        )
    if not isinstance(source, str) or not source.isprintable() or len(source) > MAX_SOURCE_CHARS:
        raise InvalidInputError(f"event source must be printable, at most {MAX_SOURCE_CHARS} chars")
    check_data(data)
    when = (time or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="milliseconds")
    return Event(id=id, type=type, data=data, source=source, time=when)


def check_data(data: Any) -> str:
    """The data as JSON text, if it is a JSON object small enough to be an event's data."""
    if not isinstance(data, dict):
        raise InvalidInputError(f"event data must be a JSON object, got {_kind(data)}")
    try:
        text = json.dumps(data, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as error:
        raise InvalidInputError(f"event data is not JSON: {error}") from None
    if len(text.encode()) > MAX_DATA_BYTES:
        raise InvalidInputError(
            f"event data is {len(text.encode())} bytes of JSON; at most {MAX_DATA_BYTES}"
        )
    return text


def parse_data(text: str | None) -> dict[str, Any]:
    """`--data JSON` of the command line (none: `{}`)."""
    if text is None:
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidInputError(f"--data is not valid JSON ({error.msg}): {text!r:.80}") from None
    check_data(data)
    return data  # type: ignore[no-any-return]


def _kind(value: Any) -> str:
    return {list: "an array", str: "a string", type(None): "null"}.get(
        type(value), type(value).__name__
    )
