"""Errors that users see: each carries a one-line message and nothing else."""

from __future__ import annotations

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


def describe_validation_error(error: ValidationError) -> str:
    """Turn a pydantic error into one readable line: `field: problem; field: problem`."""
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "input"
        message = item["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        parts.append(f"{where}: {message}")
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
