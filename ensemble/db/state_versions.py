"""Which version of its scenario's state a checkpoint holds, and how an older one is brought up.

Every checkpoint records its scenario's state version in its metadata (`state_version`; a
checkpoint without one was written before versions existed: version 1). A scenario declares its
current version and one small migration per earlier version (next to the state it changes, in
`state/<scenario>.py`). When a saver reads a thread whose checkpoints are older, it migrates the
whole thread where it is stored (every checkpoint and every pending write, in one transaction), so
what LangGraph loads is always the current shape; with no way to get there, the read is refused
with one line naming both versions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ensemble.errors import StateVersionError

VERSION_KEY = "state_version"
"""The checkpoint metadata key holding the state version."""
MIGRATED_KEY = "state_migrated_from"
"""Set on a migrated checkpoint: the version it was written with."""

Migration = Callable[[dict[str, Any]], dict[str, Any]]
"""Turns state of version k into version k + 1.

It receives a checkpoint's state values, or one node's partial update (a pending write), and
returns the same kind of mapping: it must not assume that every key is present.
"""


@dataclass(frozen=True)
class StateVersion:
    """A scenario's current state version and the migrations that lead to it."""

    current: int = 1
    migrations: Mapping[int, Migration] = field(default_factory=dict)
    """`migrations[k]` migrates version k to k + 1."""

    def steps(self, scenario: str, thread_id: str, found: int) -> list[Migration]:
        """The migrations from `found` to the current version; refuse when there is no way."""
        if found > self.current:
            raise StateVersionError(
                f"thread {thread_id} holds {scenario} state v{found}, newer than this release's "
                f"v{self.current}: use the release that wrote it"
            )
        missing = [k for k in range(found, self.current) if k not in self.migrations]
        if missing:
            raise StateVersionError(
                f"thread {thread_id} holds {scenario} state v{found}; this release reads "
                f"v{self.current} and has no migration from v{missing[-1]}"
            )
        return [self.migrations[k] for k in range(found, self.current)]


def version_of(metadata: Mapping[str, Any] | None) -> int:
    """The state version a checkpoint was written with (1 when it says none)."""
    value = (metadata or {}).get(VERSION_KEY, 1)
    return value if isinstance(value, int) and not isinstance(value, bool) else 1


def scenario_of(metadata: Mapping[str, Any] | None) -> str | None:
    """The scenario a checkpoint belongs to: CLI runs record `scenario`, the server `graph_id`."""
    name = (metadata or {}).get("scenario") or (metadata or {}).get("graph_id")
    return str(name) if name else None


def is_state_channel(channel: str) -> bool:
    """A channel holding a state key (not LangGraph's own `__start__`, `branch:to:x`, ...)."""
    return not channel.startswith("__") and ":" not in channel


def migrate(values: Mapping[str, Any], steps: list[Migration]) -> dict[str, Any]:
    """Apply `steps` to the state keys of `values`; LangGraph's own channels pass through."""
    state = {k: v for k, v in values.items() if is_state_channel(k)}
    for step in steps:
        state = dict(step(state))
    return {**{k: v for k, v in values.items() if not is_state_channel(k)}, **state}


def migrate_write(channel: str, value: Any, steps: list[Migration]) -> tuple[str, Any] | None:
    """A node's saved update of one state key, migrated: its new key and value, or None (gone).

    Raises:
        ValueError: A migration turned the one key into several (a saved write holds one).
    """
    update = migrate({channel: value}, steps)
    if len(update) > 1:
        raise ValueError(f"a migration turned the write of {channel!r} into several")
    return next(iter(update.items()), None)


class VersionedStates:
    """The state versions a saver checks on read, one per scenario it has been told about."""

    def __init__(self) -> None:
        """Start knowing no scenario: checkpoints of unknown scenarios are read as they are."""
        self.known: dict[str, StateVersion] = {}

    def learn(self, scenario: str, version: StateVersion) -> None:
        """Check threads of `scenario` against `version` from now on."""
        self.known[scenario] = version

    def behind(self, metadata: Mapping[str, Any] | None, thread_id: str) -> list[Migration]:
        """The migrations a checkpoint needs ([] when current or of an unknown scenario)."""
        name = scenario_of(metadata)
        version = self.known.get(name) if name else None
        if version is None or name is None:
            return []
        found = version_of(metadata)
        return [] if found == version.current else version.steps(name, thread_id, found)

    def current(self, metadata: Mapping[str, Any] | None) -> int | None:
        """The current version of a checkpoint's scenario, if known."""
        name = scenario_of(metadata)
        version = self.known.get(name) if name else None
        return version.current if version else None
