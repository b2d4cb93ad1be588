"""Reducers shared by scenario states."""

from __future__ import annotations

from typing import TypeVar

V = TypeVar("V")


def merge_dicts(current: dict[str, V] | None, update: dict[str, V] | None) -> dict[str, V]:
    """Merge keyed results from parallel workers; a later write of the same key wins.

    Keyed (not appended) so a re-run worker overwrites its own entry instead of duplicating it,
    and the checkpoint holds each item once.
    """
    merged = dict(current or {})
    merged.update(update or {})
    return merged
