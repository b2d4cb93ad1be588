"""The agents a run may dispatch to: the shipped default team plus the user's agent files.

An agent file is YAML (or JSON) holding `agents: [ {name: ..., role: ..., ...}, ... ]`.
`load_agents` reads the default team, then each file in the order given (a folder stands for
its `*.yaml`, `*.yml` and `*.json` files, sorted by name). Names must be unique, with one
exception: a user file may override an agent of the default team by giving one of the same
name, which takes the default's place in the order. Every mistake is reported as one
`AgentDefinitionError` naming the file and the line of the agent, and nothing is returned.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ensemble.agents.spec import AgentDefinitionError, AgentSpec
from ensemble.errors import NotFoundError, describe_parse_error, describe_validation_error

PATTERNS = {"name": "must be 1-40 characters of [a-z0-9_-]"}
"""What the pattern of an agent's name accepts, in words."""

AGENT_FILE_SUFFIXES = (".yaml", ".yml", ".json")
"""What a folder given to `load_agents` contributes; other files there are ignored."""

DEFAULT_TEAM = "default_team.yaml"
_DEFAULT_LABEL = f"ensemble/agents/{DEFAULT_TEAM}"


class AgentRegistry:
    """Agents by name, in the order they were defined.

    Built once (by `load_agents` or `from_specs`) and then only read, so it has no lock.
    """

    def __init__(self) -> None:
        self._agents: dict[str, AgentSpec] = {}

    @classmethod
    def from_specs(cls, specs: Iterable[AgentSpec | Mapping[str, Any]]) -> AgentRegistry:
        """A registry of exactly these agents (mappings are validated as `AgentSpec`s).

        Raises:
            AgentDefinitionError: An invalid mapping or a repeated name.
        """
        registry = cls()
        for spec in specs:
            registry.register(spec)
        return registry

    def register(self, spec: AgentSpec | Mapping[str, Any], *, replace: bool = False) -> AgentSpec:
        """Add one agent (a replaced agent keeps its place); return the validated spec.

        Raises:
            AgentDefinitionError: An invalid mapping, or a known name without `replace`.
        """
        if not isinstance(spec, AgentSpec):
            spec = _validate(spec, f"agent {_name_of(spec)}")
        if spec.name in self._agents and not replace:
            raise AgentDefinitionError(f"agent {spec.name!r} is already registered")
        self._agents[spec.name] = spec
        return spec

    @property
    def agents(self) -> tuple[AgentSpec, ...]:
        """Every agent, in definition order."""
        return tuple(self._agents.values())

    def get(self, name: str) -> AgentSpec:
        """The agent called `name`.

        Raises:
            NotFoundError: No such agent; the message lists the known ones.
        """
        try:
            return self._agents[name]
        except KeyError:
            known = ", ".join(self._agents) or "none"
            raise NotFoundError(f"unknown agent {name!r} (known: {known})") from None

    def capable(self, capability: str) -> list[AgentSpec]:
        """The agents that have `capability`, in definition order (empty when none has)."""
        return [spec for spec in self._agents.values() if capability in spec.capabilities]

    def capabilities(self) -> set[str]:
        """Every capability some agent has."""
        return {c for spec in self._agents.values() for c in spec.capabilities}

    def __len__(self) -> int:
        return len(self._agents)

    def __iter__(self) -> Iterator[AgentSpec]:
        return iter(self.agents)

    def __contains__(self, name: object) -> bool:
        return name in self._agents


def load_agents(sources: Sequence[str | Path] = (), *, replace: bool = False) -> AgentRegistry:
    """The default team (unless `replace`) plus the agents of each file or folder in `sources`.

    Raises:
        AgentDefinitionError: A missing path, bad YAML/JSON, an invalid agent or a repeated
            name; the message names the file and line.
    """
    placed: dict[str, _Entry] = {}
    overridable: set[str] = set()
    if not replace:
        placed = {entry.spec.name: entry for entry in _default_team()}
        overridable = set(placed)
    for path in _agent_files(sources):
        for entry in _read_file(path, str(path)):
            name = entry.spec.name
            if name in overridable:
                overridable.discard(name)  # one override per default agent
            elif name in placed:
                raise AgentDefinitionError(
                    f"{entry.where}: agent {name!r}: duplicate name "
                    f"(first defined at {placed[name].where})"
                )
            placed[name] = entry
    return AgentRegistry.from_specs(entry.spec for entry in placed.values())


@dataclass(frozen=True)
class _Entry:
    spec: AgentSpec
    where: str
    """`file:line` of the agent, for messages."""


@lru_cache(maxsize=1)
def _default_team() -> tuple[_Entry, ...]:
    text = resources.files("ensemble.agents").joinpath(DEFAULT_TEAM).read_text(encoding="utf-8")
    return tuple(_parse(text, _DEFAULT_LABEL, json_file=False))


def _agent_files(sources: Sequence[str | Path]) -> list[Path]:
    files: list[Path] = []
    for source in sources:
        path = Path(source).expanduser()
        if path.is_dir():
            found = sorted(
                p
                for p in path.iterdir()
                if p.is_file()
                and not p.name.startswith(".")
                and p.suffix.lower() in AGENT_FILE_SUFFIXES
            )
            if not found:
                raise AgentDefinitionError(f"{path}: no *.yaml, *.yml or *.json agent files here")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise AgentDefinitionError(f"{path}: no such agent file or folder")
    return files


def _read_file(path: Path, label: str) -> Iterator[_Entry]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise AgentDefinitionError(f"{label}: not a UTF-8 text file") from None
    except OSError as error:
        raise AgentDefinitionError(f"{label}: cannot read ({error.strerror})") from None
    return _parse(text, label, json_file=path.suffix.lower() == ".json")


def _parse(text: str, label: str, *, json_file: bool) -> Iterator[_Entry]:
    """The file's agents one by one, so a repeated name is reported before later agents."""
    data, layout = _load_json(text, label) if json_file else _load_yaml(text, label)
    top = f"{label}:{layout.top}"
    if not isinstance(data, dict) or "agents" not in data:
        raise AgentDefinitionError(f"{top}: expected a mapping with an 'agents' list")
    extra = sorted(str(key) for key in data if key != "agents")
    if extra:
        raise AgentDefinitionError(f"{top}: unknown key {extra[0]!r} (only 'agents' is allowed)")
    items = data["agents"]
    if not isinstance(items, list):
        raise AgentDefinitionError(f"{label}:{layout.agents}: 'agents' must be a list")
    for index, item in enumerate(items):
        line, repeated = layout.items[index] if index < len(layout.items) else (layout.top, None)
        where = f"{label}:{line}"
        prefix = f"{where}: agent {_name_of(item, index)}"
        if not isinstance(item, dict):
            kind = "a list" if isinstance(item, list) else type(item).__name__
            raise AgentDefinitionError(f"{prefix}: expected a mapping of fields, got {kind}")
        if repeated:
            raise AgentDefinitionError(f"{prefix}: field {repeated!r} is given twice")
        yield _Entry(_validate(item, prefix), where)


@dataclass(frozen=True)
class _Layout:
    """Where things are in a file: lines (1-based) read from its YAML node tree."""

    top: int = 1
    agents: int = 1
    """The line of the `agents` value."""
    items: tuple[tuple[int, str | None], ...] = ()
    """Each agent's line and the first field it gives twice, if any."""


def _layout(root: yaml.Node | None) -> _Layout:
    """Read before the values are built: building merges `<<` keys into the nodes."""
    if not isinstance(root, yaml.MappingNode):
        return _Layout(_line(root), _line(root))
    agents = next(
        (v for k, v in root.value if isinstance(k, yaml.ScalarNode) and k.value == "agents"), None
    )
    items = agents.value if isinstance(agents, yaml.SequenceNode) else []
    return _Layout(
        _line(root),
        _line(agents or root),
        tuple((_line(item), _repeated_key(item)) for item in items),
    )


def _load_yaml(text: str, label: str) -> tuple[Any, _Layout]:
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        layout = _layout(root)
        return (loader.construct_document(root) if root is not None else None), layout
    except yaml.YAMLError as error:
        raise AgentDefinitionError(describe_parse_error(error, label)) from None
    finally:
        loader.dispose()


def _load_json(text: str, label: str) -> tuple[Any, _Layout]:
    """The values come from `json` (YAML 1.1 would read `1e5` as a string); lines from YAML."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise AgentDefinitionError(f"{label}:{error.lineno}: bad JSON: {error.msg}") from None
    try:  # valid JSON has tabs only between tokens, where YAML takes spaces
        layout = _layout(yaml.compose(text.replace("\t", " "), Loader=yaml.SafeLoader))
    except yaml.YAMLError:
        layout = _Layout()  # messages then point at the first line
    return data, layout


def _repeated_key(node: yaml.Node) -> str | None:
    """YAML and JSON quietly keep the last of two equal keys; a person meant something else."""
    if not isinstance(node, yaml.MappingNode):
        return None
    keys = [k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode) and k.value != "<<"]
    return next((k for i, k in enumerate(keys) if k in keys[:i]), None)


def _line(node: yaml.Node | None) -> int:
    return node.start_mark.line + 1 if node is not None else 1


def _name_of(item: Any, index: int | None = None) -> str:
    name = item.get("name") if isinstance(item, Mapping) else None
    if isinstance(name, str) and name:
        return repr(name)
    return f"#{index + 1}" if index is not None else "(unnamed)"


def _validate(item: Mapping[str, Any], prefix: str) -> AgentSpec:
    try:
        return AgentSpec.model_validate(dict(item))
    except ValidationError as error:
        problem = describe_validation_error(error, known=AgentSpec.model_fields, patterns=PATTERNS)
        raise AgentDefinitionError(f"{prefix}: {problem}") from None
