"""Prompt templates, one markdown file per role, loaded by name."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def load_prompt(name: str) -> str:
    """Return the template `prompts/<name>.md`; raise `FileNotFoundError` for unknown names."""
    path = resources.files(__package__).joinpath(f"{name}.md")
    if not path.is_file():
        raise FileNotFoundError(f"no prompt named {name!r}")
    return path.read_text(encoding="utf-8").strip()


def render_prompt(name: str, **values: object) -> str:
    """Fill the `{placeholders}` of a template."""
    return load_prompt(name).format(**values)
