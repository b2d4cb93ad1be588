"""Command-line flags made from a scenario's input schema: one source of truth for inputs.

Each pydantic field of the input schema becomes `--field-name`, with its description, default
and limits as help. Values are passed on as given (text) and validated by the schema itself, so
the CLI, a notebook and the server accept and refuse exactly the same inputs.
"""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Sequence
from typing import Any

from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined


def flag_name(field: str) -> str:
    """`max_revisions` -> `--max-revisions`."""
    return "--" + field.replace("_", "-")


def add_input_flags(
    parser: argparse.ArgumentParser,
    schema: type[BaseModel],
    primary: str,
    skip: frozenset[str] = frozenset(),
) -> None:
    """Add a flag per input field; the primary field is the positional argument.

    Fields in `skip` are read from files by flags of their own (e.g. `--tasks FILE`).
    """
    group = parser.add_argument_group("inputs", f"fields of {schema.__name__}")
    for name, info in schema.model_fields.items():
        if name == primary or name in skip:
            continue
        kind = _kind(info.annotation)
        dest = f"input__{name}"
        if kind is bool:
            group.add_argument(
                flag_name(name),
                dest=dest,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=describe(info),
            )
        elif kind is list:
            group.add_argument(
                flag_name(name),
                dest=dest,
                action="append",
                default=None,
                metavar="VALUE",
                help=describe(info) + " (repeatable)",
            )
        else:
            group.add_argument(
                flag_name(name),
                dest=dest,
                default=None,
                metavar=_metavar(info),
                choices=None,
                help=describe(info),
            )


def given_inputs(args: argparse.Namespace) -> dict[str, Any]:
    """The input fields set on the command line (unset flags are absent, not None)."""
    return {
        key.removeprefix("input__"): value
        for key, value in vars(args).items()
        if key.startswith("input__") and value is not None
    }


def describe(info: FieldInfo) -> str:
    """A field's help: description, allowed values, limits and default."""
    parts = [(info.description or "").rstrip(".")]
    choices = _choices(info.annotation)
    if choices:
        parts.append("one of " + " | ".join(map(str, choices)))
    limits = _limits(info)
    if limits:
        parts.append(limits)
    default = info.get_default(call_default_factory=True)
    if default not in (PydanticUndefined, None, [], ""):
        parts.append(f"default {default}")
    return "; ".join(p for p in parts if p)


def describe_schema(schema: type[BaseModel]) -> list[tuple[str, str, str]]:
    """(name, type, help) per field, for `ensemble scenarios`."""
    rows = []
    for name, info in schema.model_fields.items():
        required = info.is_required()
        rows.append(
            (
                name,
                _type_name(info.annotation) + (" (required)" if required else ""),
                describe(info),
            )
        )
    return rows


def _kind(annotation: Any) -> type:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if annotation is bool:
        return bool
    if origin in (list, tuple, Sequence) or annotation in (list, tuple):
        return list
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return _kind(args[0])
    return str


def _choices(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) is typing.Literal:
        return typing.get_args(annotation)
    return ()


def _metavar(info: FieldInfo) -> str:
    choices = _choices(info.annotation)
    return (
        "{" + ",".join(map(str, choices)) + "}" if choices else _type_name(info.annotation).upper()
    )


def _type_name(annotation: Any) -> str:
    if _choices(annotation):
        return "choice"
    kind = _kind(annotation)
    if kind is str:
        inner = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
        return getattr(inner[0], "__name__", "text").replace("str", "text")
    return kind.__name__


def _limits(info: FieldInfo) -> str:
    words = []
    for item in info.metadata:
        if isinstance(item, Ge):
            words.append(f">= {item.ge}")
        elif isinstance(item, Gt):
            words.append(f"> {item.gt}")
        elif isinstance(item, Le):
            words.append(f"<= {item.le}")
        elif isinstance(item, Lt):
            words.append(f"< {item.lt}")
        elif isinstance(item, MaxLen):
            words.append(f"at most {item.max_length} long")
        elif isinstance(item, MinLen) and item.min_length > 0:
            words.append(f"at least {item.min_length} long")
    return ", ".join(words)
