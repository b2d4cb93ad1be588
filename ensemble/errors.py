"""Errors that users see: each carries a one-line message and nothing else."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pydantic is imported by whoever raises one; `ensemble --help` needs none
    from pydantic import ValidationError


class EnsembleError(Exception):
    """Base class of errors shown to the user as a single line."""


class InvalidInputError(EnsembleError, ValueError):
    """Input (a run's input, a resume answer, a fork update) failed validation."""


class ModelSpecError(EnsembleError, ValueError):
    """A model spec could not be turned into a chat model."""


class DatabaseError(EnsembleError):
    """The database is missing, corrupt or locked."""


class NotFoundError(EnsembleError, LookupError):
    """An unknown thread, checkpoint or scenario."""


class StateVersionError(EnsembleError):
    """A thread's state was written by a version of its scenario this release cannot read."""


def describe_validation_error(
    error: ValidationError, *, known: Iterable[str] = (), patterns: Mapping[str, str] | None = None
) -> str:
    """Pydantic's errors as one line in the words of someone editing the input.

    `field: problem; missing field 'x'; unknown field 'y' (known: ...)`. `known` lists the
    fields an unknown one is compared with; `patterns` says in words what a field's pattern
    accepts (`{"name": "must be 1-40 characters of [a-z0-9_-]"}`).
    """
    parts = []
    for item in error.errors():
        loc, kind = item["loc"], item["type"]
        where = ".".join(str(p) for p in loc)
        message = item["msg"].removeprefix("Value error, ")
        if kind == "missing":
            parts.append(f"missing field {str(loc[-1])!r}")
        elif kind == "extra_forbidden":
            listed = ", ".join(known)
            parts.append(
                f"unknown field {str(loc[-1])!r}" + (f" (known: {listed})" if listed else "")
            )
        elif (
            kind in ("too_short", "string_too_short") and item.get("ctx", {}).get("min_length") == 1
        ):
            parts.append(f"{where}: must not be empty")
        elif kind in ("list_type", "tuple_type"):
            parts.append(f"{where}: must be a list")
        elif kind == "string_pattern_mismatch" and loc and str(loc[0]) in (patterns or {}):
            parts.append(f"{where}: {item['input']!r} {(patterns or {})[str(loc[0])]}")
        else:
            parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def describe_parse_error(error: Exception, label: str) -> str:
    """One line for a YAML or JSON file that does not parse: `file:line: bad YAML: problem`."""
    line, problem, kind = "", str(error), "JSON"
    if hasattr(error, "lineno") and hasattr(error, "msg"):  # json.JSONDecodeError
        line, problem = f":{error.lineno}", str(error.msg)
    else:
        kind = "YAML"
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        if mark is not None:
            line = f":{mark.line + 1}"
        problem = str(getattr(error, "problem", None) or getattr(error, "context", None) or error)
    return f"{label}{line}: bad {kind}: {' '.join(problem.split()) or 'unreadable'}"
