"""Process-level defaults read from the environment, in one place.

Nodes never read the environment: entry points (CLI, server, notebooks) turn these defaults into
a run `Context` and pass it in.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DB = Path(".ensemble") / "ensemble.db"
"""Where checkpoints and the corpus index live unless `--db` or `ENSEMBLE_DB` says otherwise."""

DEFAULT_OPENAI_MODEL = "openai:gpt-4o-mini"
"""The model used when an OpenAI key is present and no model is named."""


def db_value(explicit: str | os.PathLike[str] | None = None) -> str:
    """The database the operator chose: explicit argument, then `ENSEMBLE_DB`, then the default.

    A SQLite path or a postgresql:// URL; `ensemble.db.database` parses it.
    """
    return os.fspath(explicit or os.environ.get("ENSEMBLE_DB") or DEFAULT_DB)


def default_model_spec() -> str:
    """Return `ENSEMBLE_MODEL`, else OpenAI when a key is set, else the offline model."""
    spec = os.environ.get("ENSEMBLE_MODEL", "").strip()
    if spec:
        return spec
    return DEFAULT_OPENAI_MODEL if os.environ.get("OPENAI_API_KEY") else "offline"


def db_timeout() -> float:
    """Seconds to wait for a locked database before giving up (`ENSEMBLE_DB_TIMEOUT`)."""
    raw = os.environ.get("ENSEMBLE_DB_TIMEOUT", "30")
    try:
        return max(0.0, float(raw))
    except ValueError:
        return 30.0


def corpus_roots() -> tuple[Path, ...] | None:
    """Folders server clients may name as a corpus (`ENSEMBLE_CORPUS_ROOTS`, `os.pathsep`-joined).

    None when unset: the caller decides what that means (a local user may read any folder, a
    server's clients only the default corpus).
    """
    return _roots("ENSEMBLE_CORPUS_ROOTS")


def subscription_paths() -> tuple[Path, ...]:
    """Subscription files or folders (`ENSEMBLE_SUBSCRIPTIONS`, `os.pathsep`-joined)."""
    return _roots("ENSEMBLE_SUBSCRIPTIONS") or ()


def output_roots() -> tuple[Path, ...] | None:
    """Folders server clients may publish into (`ENSEMBLE_OUTPUT_ROOTS`), None when unset."""
    return _roots("ENSEMBLE_OUTPUT_ROOTS")


def _roots(variable: str) -> tuple[Path, ...] | None:
    raw = os.environ.get(variable)
    if raw is None:
        return None
    return tuple(Path(p).expanduser().resolve() for p in raw.split(os.pathsep) if p.strip())


def cache_default() -> bool:
    """Whether runs reuse cached model answers unless told otherwise (`ENSEMBLE_CACHE`, on)."""
    return os.environ.get("ENSEMBLE_CACHE", "1").strip().lower() not in {"0", "false", "no", "off"}
