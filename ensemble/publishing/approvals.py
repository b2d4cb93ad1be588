"""Approvals that only a person's answer can make: signed with a key kept in the database.

A client that may write a thread's state (its owner, through `threads.update_state`) could write
an `approval` it never gave. The approval node signs each approval with an HMAC over the thread,
the approval id and the exact draft; the key lives in the project's database, which clients
never read. The publisher publishes only what carries a valid signature.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

from ensemble.publishing.journal import connection

_SCHEMA = "CREATE TABLE IF NOT EXISTS ensemble_keys(name TEXT PRIMARY KEY, value BLOB NOT NULL)"
_NAME = "approvals"


def _key(db_path: Path) -> bytes:
    with connection(db_path, "approval key") as conn:
        conn.execute(_SCHEMA)
        conn.execute(
            "INSERT OR IGNORE INTO ensemble_keys(name, value) VALUES (?, ?)",
            (_NAME, secrets.token_bytes(32)),
        )
        row = conn.execute("SELECT value FROM ensemble_keys WHERE name = ?", (_NAME,)).fetchone()
    return bytes(row[0])


def sign(db_path: Path, thread_id: str, approval_id: str, draft_key: str) -> str:
    """The signature of one approval of one exact draft in one thread."""
    message = f"{thread_id}\n{approval_id}\n{draft_key}".encode()
    return hmac.new(_key(db_path), message, hashlib.sha256).hexdigest()


def verify(db_path: Path, thread_id: str, approval_id: str, draft_key: str, signature: str) -> bool:
    """Whether `signature` was made by `sign` for exactly these values."""
    expected = sign(db_path, thread_id, approval_id, draft_key)
    return hmac.compare_digest(expected, str(signature))
