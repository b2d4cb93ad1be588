"""Errors that users see: each carries a one-line message and nothing else."""

from __future__ import annotations

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
