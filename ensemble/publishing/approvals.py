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

from ensemble.db import DatabaseLike, database
from ensemble.db.tables import create_tables
from ensemble.publishing.journal import connection

_SCHEMA = "CREATE TABLE IF NOT EXISTS ensemble_keys(name TEXT PRIMARY KEY, value BLOB NOT NULL)"
_NAME = "approvals"


def _key(db: DatabaseLike) -> bytes:
    with connection(database(db), "approval key") as conn:
        create_tables(conn, _SCHEMA)
        conn.execute(
            "INSERT INTO ensemble_keys(name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
            (_NAME, secrets.token_bytes(32)),
        )
        row = conn.execute("SELECT value FROM ensemble_keys WHERE name = ?", (_NAME,)).fetchone()
    return bytes(row[0])


def sign(db_path: DatabaseLike, thread_id: str, approval_id: str, draft_key: str) -> str:
    """The signature of one approval of one exact draft in one thread."""
    message = f"{thread_id}\n{approval_id}\n{draft_key}".encode()
    return hmac.new(_key(db_path), message, hashlib.sha256).hexdigest()


def verify(
    db_path: DatabaseLike, thread_id: str, approval_id: str, draft_key: str, signature: str
) -> bool:
    """Whether `signature` was made by `sign` for exactly these values."""
    expected = sign(db_path, thread_id, approval_id, draft_key)
    return hmac.compare_digest(expected, str(signature))
