"""Command-line flags made from schemas: a scenario's inputs and the run settings (`Context`).

Each field becomes `--field-name`, with its description, default and limits as help. Values are
passed on as given (text) and validated by the schema itself, so the CLI, a notebook and the
server accept and refuse exactly the same inputs and settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen
from pydantic import BaseModel, TypeAdapter
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from ensemble.context import Context, validate_context
from ensemble.errors import InvalidInputError, describe_parse_error
from ensemble.graphs.registry import parse_json_value

SCALARS = (str, int, float, bool)
"""Types of the run settings whose flag is made from the field; mappings have flags of their own."""

MAPPING_FLAGS = {"role_models": "--role-model", "fallbacks": "--fallback"}
"""Run settings whose flag is not their name: one item of the mapping per (repeated) flag."""

LIMITS = {
    Ge: ">= {0.ge}", Gt: "> {0.gt}", Le: "<= {0.le}", Lt: "< {0.lt}",
    MaxLen: "at most {0.max_length} long", MinLen: "at least {0.min_length} long",
}  # fmt: skip
"""How each limit of a field reads in its help (a minimum length of 0 is no limit)."""


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
        if name != primary and name not in skip:
            _add_flag(group, name, info, f"input__{name}")


def _add_flag(group: argparse._ArgumentGroup, name: str, info: FieldInfo, dest: str) -> None:
    """`--name` for one field, unset by default; the value is validated by the schema later."""
    kind = _kind(info.annotation)
    options: dict[str, Any] = {"metavar": _metavar(info)}
    if kind is bool:
        options = {"action": argparse.BooleanOptionalAction}
    elif kind is list:
        options = {"action": "append", "metavar": "VALUE"}
    about = describe(info) + (" (repeatable)" if kind is list else "")
    group.add_argument(flag_name(name), dest=dest, default=None, help=about, **options)


def setting_fields() -> dict[str, FieldInfo]:
    """`Context`'s fields as pydantic reads them: type, limits, default and docstring."""
    hints = typing.get_type_hints(Context, include_extras=True)
    docs = TypeAdapter(Context).json_schema()["properties"]
    found = {}
    for item in dataclasses.fields(Context):
        found[item.name] = info = FieldInfo.from_annotated_attribute(hints[item.name], item)
        info.description = docs[item.name].get("description")
    return found


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """A flag per run setting: scalars made from their `Context` field, mappings written here.

    Every flag is unset by default, so a resumed or forked thread keeps its own settings
    (`ensemble.run_settings`); the help shows the default a new thread starts with.
    """
    group = parser.add_argument_group(
        "run settings", "unset, a setting keeps the thread's value; a new thread takes the default"
    )
    for name, info in setting_fields().items():
        if info.annotation in SCALARS:
            _add_flag(group, name, info, name)
    group.add_argument(
        MAPPING_FLAGS["role_models"], dest="role_models", action="append", metavar="ROLE=SPEC",
        help="model of one role, e.g. reviewer=openai:gpt-4o (repeatable)",
    )  # fmt: skip
    group.add_argument(
        MAPPING_FLAGS["fallbacks"], dest="fallbacks", action="append", metavar="[ROLE=]SPEC",
        help="a model to use while a role's model is unavailable (repeatable; no ROLE: every role)",
    )  # fmt: skip
    group.add_argument(
        "--budget",
        metavar="JSON",
        help='limits of the thread\'s spending, e.g. \'{"calls": 200, "tokens": 500000}\' '
        "(calls, tokens, seconds, cost)",
    )
    group.add_argument(
        "--prices",
        type=Path,
        metavar="FILE",
        help="prices per million tokens by model, for a cost budget and `ensemble stats`: "
        'YAML or JSON such as {"openai:gpt-4o": {"input": 2.5, "output": 10}}',
    )


def given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The run settings set on the command line, validated (unset ones follow the thread).

    Raises:
        InvalidInputError: A value is refused; the message names the flag.
    """
    given = {k: v for k in setting_fields() if (v := getattr(args, k, None)) not in (None, [])}
    if "budget" in given:
        given["budget"] = parse_json_value(given["budget"], "--budget")
    if "prices" in given:
        given["prices"] = _read_prices(given["prices"])
    if "fallbacks" in given:
        chains: dict[str, list[str]] = {}
        for item in given["fallbacks"]:
            role, sep, spec = item.partition("=")
            if not sep or any(c in role for c in ":?"):  # a plain spec, e.g. offline?latency=1
                role, spec = "*", item
            chains.setdefault(role.strip() or "*", []).append(spec.strip())
        given["fallbacks"] = chains
    if "role_models" in given:
        pairs = [item.partition("=") for item in given["role_models"]]
        if any(not sep or not role.strip() or not spec for role, sep, spec in pairs):
            raise InvalidInputError("--role-model takes ROLE=SPEC, e.g. reviewer=offline")
        given["role_models"] = {role.strip(): spec.strip() for role, _, spec in pairs}
    for name, value in given.items():  # name the flag in the error, not the setting
        try:
            given[name] = getattr(validate_context({name: value}), name)
        except InvalidInputError as error:
            problem = str(error).split(": ", 2)[-1]
            flag = MAPPING_FLAGS.get(name, flag_name(name))
            raise InvalidInputError(f"{flag}: {problem}") from None
    return given


def _read_prices(path: Path) -> Any:
    """The `--prices` file: a YAML or JSON mapping of model spec to input/output prices."""
    import yaml

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise InvalidInputError(f"--prices: cannot read {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise InvalidInputError(f"--prices: {describe_parse_error(error, str(path))}") from None


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
        kind = _type_name(info.annotation) + (" (required)" if info.is_required() else "")
        rows.append((name, kind, describe(info)))
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
    words = [LIMITS[type(item)].format(item) for item in info.metadata if type(item) in LIMITS]
    return ", ".join(word for word in words if word != "at least 0 long")
