"""Subscriptions as files: which events start which scenario, with what input.

    subscriptions:
      - name: digest
        event: document.changed
        filter: data.name.endswith(".md")
        scenario: research
        input:
          question: "What are the main points of {{ data.title }}?"
          corpus: "{{ data.folder }}"
        dedupe: "{{ data.path }}@{{ data.sha256 }}"
        priority: 5
        concurrency: 2

Every file is checked before anything runs: the YAML, the fields, the scenario and its input
fields, every template and the filter, the run settings. An error names the file and line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jinja2 import TemplateError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ensemble.errors import EnsembleError, InvalidInputError
from ensemble.events.event import TYPE_PATTERN
from ensemble.events.templates import check_expression, check_template
from ensemble.graphs.registry import SCENARIOS
from ensemble.run_settings import RunSettings, resolve

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
SUFFIXES = (".yaml", ".yml")


class SubscriptionError(EnsembleError):
    """A subscription file is wrong; the message is `file:line: what`."""


class _Spec(BaseModel):
    """One subscription as written."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(description="Unique name: lower-case letters, digits, _.-")
    event: str = Field(description="An event type, or a prefix ending in .* (run.*)")
    filter: str | None = Field(None, description="A Jinja expression over `data` (and `event`)")
    scenario: str
    input: dict[str, Any] = Field(description="The run's input; strings are Jinja templates")
    settings: dict[str, Any] = Field(default_factory=dict, description="Run settings (model...)")
    approve: bool = Field(
        False, description="Answer the scenario's human reviews with its approval, as --yes"
    )
    priority: int = Field(0, ge=-100, le=100)
    concurrency: int = Field(1, ge=1, le=64, description="At most this many of its runs at once")
    dedupe: str | None = Field(None, description="A template; one run per key (default: event id)")
    max_attempts: int = Field(3, ge=1, le=20)
    backoff: float = Field(5.0, ge=0, le=3600, description="Seconds before the first retry")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_PATTERN.fullmatch(value):
            raise ValueError("must be 1-64 lower-case letters, digits or _.- (e.g. digest)")
        return value

    @field_validator("event")
    @classmethod
    def _event(cls, value: str) -> str:
        if not TYPE_PATTERN.fullmatch(value.removesuffix(".*")):
            raise ValueError("must be an event type (document.changed) or a prefix (run.*)")
        return value

    @field_validator("backoff", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


@dataclass(frozen=True)
class Subscription:
    """A checked subscription, with where it was written and its resolved run settings."""

    name: str
    event: str
    filter: str | None
    scenario: str
    input: dict[str, Any]
    settings: RunSettings
    approve: bool
    priority: int
    concurrency: int
    dedupe: str | None
    max_attempts: int
    backoff: float
    where: str
    """`file:line` of its entry, for messages."""

    def wants(self, event_type: str) -> bool:
        """Whether this subscription is for events of `event_type`."""
        if self.event.endswith(".*"):
            return event_type.startswith(self.event[:-1])
        return event_type == self.event

    def describe(self) -> dict[str, Any]:
        """The JSON form `ensemble subscriptions --json` prints."""
        return {
            "name": self.name,
            "event": self.event,
            "filter": self.filter,
            "scenario": self.scenario,
            "input": self.input,
            "approve": self.approve,
            "priority": self.priority,
            "concurrency": self.concurrency,
            "dedupe": self.dedupe,
            "max_attempts": self.max_attempts,
            "backoff": self.backoff,
            "where": self.where,
        }


def subscription_files(paths: Iterable[Path]) -> list[Path]:
    """The YAML files named: files as given, folders' `*.yaml` / `*.yml` in name order.

    Raises:
        SubscriptionError: A path that does not exist, or a folder with no subscription file.
    """
    files: list[Path] = []
    for path in paths:
        path = Path(path).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in SUFFIXES and p.is_file())
            if not found:
                raise SubscriptionError(f"{path}: no .yaml or .yml subscription files in it")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise SubscriptionError(f"{path}: no such subscription file or folder")
    return files


def load_subscriptions(
    paths: Iterable[Path], *, defaults: dict[str, Any] | None = None
) -> list[Subscription]:
    """Every subscription in the files or folders `paths`, all checked.

    `defaults`: run settings a subscription's own `settings` may override (`ensemble serve
    --model` gives the server's model to the runs its dispatcher starts).

    Raises:
        SubscriptionError: The first problem found, as `file:line: what`.
    """
    loaded: list[Subscription] = []
    seen: dict[str, str] = {}
    for file in subscription_files(paths):
        for subscription in _load_file(file, defaults or {}):
            if subscription.name in seen:
                raise SubscriptionError(
                    f"{subscription.where}: name {subscription.name!r} is already used at "
                    f"{seen[subscription.name]}"
                )
            seen[subscription.name] = subscription.where
            loaded.append(subscription)
    return loaded


def _load_file(file: Path, defaults: dict[str, Any]) -> list[Subscription]:
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SubscriptionError(f"{file}: cannot read it: {error}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        line = error.problem_mark.line + 1 if error.problem_mark else 1
        raise SubscriptionError(f"{file}:{line}: not valid YAML: {error.problem}") from None
    except yaml.YAMLError as error:
        raise SubscriptionError(f"{file}:1: not valid YAML: {error}") from None
    lines: dict[tuple[Any, ...], int] = {}
    try:
        data = _value(root, (), lines) if root is not None else None
    except _BadKey as bad:
        raise SubscriptionError(
            f"{file}:{bad.line}: key {bad.key!r} is not text (YAML reads unquoted yes/no/on/off "
            "as true/false: quote it)"
        ) from None
    items = data.get("subscriptions") if isinstance(data, dict) else None
    if not isinstance(data, dict) or set(data) != {"subscriptions"} or not isinstance(items, list):
        raise SubscriptionError(f"{file}:1: expected `subscriptions:` and a list of subscriptions")
    return [_checked(file, lines, n, item, defaults) for n, item in enumerate(items)]


class _BadKey(Exception):
    def __init__(self, line: int, key: Any) -> None:
        self.line, self.key = line, key


def _value(node: yaml.Node, path: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> Any:
    """The Python value of a composed node, noting the line of every key and item."""
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node)
            if not isinstance(key, str):
                raise _BadKey(key_node.start_mark.line + 1, key)
            out[key] = _value(value_node, (*path, key), lines)
            lines[(*path, key)] = key_node.start_mark.line + 1  # the key's line, not its value's
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_value(item, (*path, n), lines) for n, item in enumerate(node.value)]
    return _scalar(node)


def _scalar(node: yaml.Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def _checked(
    file: Path, lines: dict[tuple[Any, ...], int], n: int, item: Any, defaults: dict[str, Any]
) -> Subscription:
    base: tuple[Any, ...] = ("subscriptions", n)

    def fail(where: tuple[Any, ...], message: str) -> SubscriptionError:
        line = next((lines[where[:k]] for k in range(len(where), 0, -1) if where[:k] in lines), 1)
        label = ".".join(str(p) for p in where[2:]) or f"subscription {n + 1}"
        return SubscriptionError(f"{file}:{line}: {label}: {message}")

    if not isinstance(item, dict):
        raise fail(base, "must be a mapping of name, event, scenario, input, ...")
    try:
        spec = _Spec.model_validate(item)
    except ValidationError as error:
        first = error.errors()[0]
        loc = tuple(first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "missing":
            raise fail(base, f"{loc[0]} is required") from None
        if first["type"] == "extra_forbidden":
            raise fail((*base, *loc), "unknown field") from None
        raise fail((*base, *loc), message) from None
    scenario = SCENARIOS.get(spec.scenario)
    if scenario is None:
        raise fail(
            (*base, "scenario"),
            f"unknown scenario {spec.scenario!r}; known: {', '.join(sorted(SCENARIOS))}",
        )
    fields = scenario.input_schema.model_fields
    for key in spec.input:
        if key not in fields:
            raise fail(
                (*base, "input", key),
                f"{scenario.name} has no input {key!r}; its inputs: {', '.join(fields)}",
            )
    missing = [k for k, f in fields.items() if f.is_required() and k not in spec.input]
    if missing:
        raise fail((*base, "input"), f"{scenario.name} needs {', '.join(missing)}")
    for path, text in _strings(spec.input, ("input",)):
        _compile(fail, (*base, *path), text, check_template)
    if spec.dedupe is not None:
        _compile(fail, (*base, "dedupe"), spec.dedupe, check_template)
    if spec.filter is not None:
        _compile(fail, (*base, "filter"), spec.filter, check_expression)
    try:
        settings = resolve(None, defaults | spec.settings, how="subscription")
    except (InvalidInputError, EnsembleError) as error:
        raise fail((*base, "settings"), str(error)) from None
    return Subscription(
        **spec.model_dump(exclude={"settings"}),
        settings=settings,
        where=f"{file}:{lines.get(base, 1)}",
    )


def _strings(value: Any, path: tuple[Any, ...]) -> Iterable[tuple[tuple[Any, ...], str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, list):
        for n, item in enumerate(value):
            yield from _strings(item, (*path, n))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (*path, key))


def _compile(fail: Any, where: tuple[Any, ...], text: str, check: Any) -> None:
    try:
        check(text)
    except TemplateError as error:
        message = str(getattr(error, "message", None) or error).strip().splitlines()[0]
        raise fail(where, f"template error: {message}") from None
